//! Notifications → the daemon's queue: batches of [`BATCH`], each sent by one task, each
//! batch's failed entries retried with backoff a bounded number of times.
//!
//! [`BatchQueue`] is the seam over SendMessageBatch: this file sees plain [`Entry`]s and
//! [`Rejected`] entries, so faults SQS makes and an emulator cannot (a batch that half
//! fails) are tested in process.
//! <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatch.html>

use std::time::Duration;

use async_trait::async_trait;

use crate::aws::{self, Fault};
use crate::intake::listing::Listed;

/// Entries per SendMessageBatch call: SQS's maximum.
pub const BATCH: usize = 10;
/// Sends of one entry before it is reported as not queued: the first and four retries.
pub const ATTEMPTS: u32 = 5;
/// The first wait before a retry; it doubles, with jitter, up to [`MAX_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(200);
const MAX_WAIT: Duration = Duration::from_secs(5);

/// One message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Unique within its batch.
    pub id: String,
    pub body: String,
}

/// An entry SQS did not queue, as SendMessageBatch's `Failed` list names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub id: String,
    /// SQS's error code, e.g. `InternalError` or `InvalidMessageContents`.
    pub code: String,
    pub message: String,
    /// True when the request was at fault: sending it again fails the same way.
    pub sender_fault: bool,
}

/// Where notifications go: the seam over SQS SendMessageBatch.
#[async_trait]
pub trait BatchQueue: Send + Sync {
    /// Sends up to [`BATCH`] entries in one call; answers the entries that were not queued
    /// (every entry not named was), or why the call itself failed.
    async fn send(&self, entries: &[Entry]) -> Result<Vec<Rejected>, aws::Failed>;
}

/// One object and its notification.
#[derive(Debug, Clone)]
pub struct Pending {
    pub object: Listed,
    pub body: String,
}

/// What became of one batch.
#[derive(Debug, Default)]
pub struct Sent {
    /// Objects queued.
    pub queued: Vec<Listed>,
    /// Objects not queued, each with why.
    pub not_queued: Vec<(Listed, String)>,
    /// A failure no batch can get past (the queue is missing or this role may not send to
    /// it): the backfill stops.
    pub fatal: Option<aws::Failed>,
    /// SendMessageBatch calls made, retries included.
    pub calls: u64,
}

/// Sends one batch: the entries SQS failed on its side, and calls that failed on the way
/// (throttling, 5xx, a lost connection), are sent again after a wait, up to [`ATTEMPTS`]
/// times; the others are reported at once. A call whose answer was lost may have queued its
/// entries, which are then queued twice: the daemon reads an object twice without paging
/// twice, and a duplicate is better than a loss.
pub async fn batch(queue: &dyn BatchQueue, batch: Vec<Pending>) -> Sent {
    let mut sent = Sent::default();
    // Ids are positions in the first call, so a retry's subset keeps them unique.
    let mut left: Vec<(String, Pending)> = batch
        .into_iter()
        .enumerate()
        .map(|(i, p)| (i.to_string(), p))
        .collect();
    let mut backoff = aws::backoff(FIRST_WAIT, MAX_WAIT);
    for attempt in 1..=ATTEMPTS {
        let entries: Vec<Entry> = left
            .iter()
            .map(|(id, p)| Entry {
                id: id.clone(),
                body: p.body.clone(),
            })
            .collect();
        sent.calls += 1;
        let mut again = Vec::new();
        match queue.send(&entries).await {
            Ok(rejected) => {
                for (id, pending) in left {
                    match rejected.iter().find(|r| r.id == id) {
                        None => sent.queued.push(pending.object),
                        Some(r) if r.sender_fault => sent.not_queued.push((
                            pending.object,
                            format!("SQS refused the message: {}: {}", r.code, r.message),
                        )),
                        Some(r) if attempt == ATTEMPTS => sent.not_queued.push((
                            pending.object,
                            format!(
                                "SQS did not queue it in {ATTEMPTS} attempts: {}: {}",
                                r.code, r.message
                            ),
                        )),
                        Some(_) => again.push((id, pending)),
                    }
                }
            }
            Err(f) if f.is_transient() && attempt < ATTEMPTS => again = left,
            Err(f) => {
                let why = if f.is_transient() {
                    format!("still failing after {ATTEMPTS} attempts: {f}")
                } else {
                    f.to_string()
                };
                sent.not_queued
                    .extend(left.into_iter().map(|(_, p)| (p.object, why.clone())));
                if f.fault == Fault::Setting {
                    sent.fatal = Some(f);
                }
            }
        }
        if again.is_empty() {
            break;
        }
        left = again;
        tokio::time::sleep(aws::next_wait(&mut backoff)).await;
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::{Answer, Edge};
    use std::sync::Mutex;

    /// Answers each call from a script, and records what it was sent.
    struct Scripted {
        answers: Mutex<Vec<Result<Vec<Rejected>, aws::Failed>>>,
        calls: Mutex<Vec<Vec<String>>>,
    }

    #[async_trait]
    impl BatchQueue for Scripted {
        async fn send(&self, entries: &[Entry]) -> Result<Vec<Rejected>, aws::Failed> {
            self.calls
                .lock()
                .expect("calls")
                .push(entries.iter().map(|e| e.id.clone()).collect());
            let mut answers = self.answers.lock().expect("answers");
            if answers.is_empty() {
                Ok(Vec::new())
            } else {
                answers.remove(0)
            }
        }
    }

    fn pending(n: usize) -> Vec<Pending> {
        (0..n)
            .map(|i| Pending {
                object: Listed {
                    key: format!("k{i}"),
                    size: 1,
                    etag: String::new(),
                    modified: None,
                },
                body: format!("body {i}"),
            })
            .collect()
    }

    fn rejected(id: &str, sender_fault: bool) -> Rejected {
        Rejected {
            id: id.into(),
            code: if sender_fault {
                "InvalidMessageContents"
            } else {
                "InternalError"
            }
            .into(),
            message: "m".into(),
            sender_fault,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failed_entries_are_sent_again_with_their_ids_and_refused_ones_reported() {
        let queue = Scripted {
            answers: Mutex::new(vec![Ok(vec![rejected("2", false), rejected("7", true)])]),
            calls: Mutex::default(),
        };
        let sent = batch(&queue, pending(10)).await;
        assert_eq!(sent.queued.len(), 9);
        assert_eq!(sent.not_queued.len(), 1);
        assert_eq!(sent.not_queued[0].0.key, "k7");
        assert!(sent.not_queued[0].1.contains("InvalidMessageContents"));
        assert_eq!(sent.calls, 2);
        let calls = queue.calls.lock().expect("calls");
        assert_eq!(calls[1], vec!["2".to_owned()]);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_end_and_a_setting_stops_the_backfill() {
        let outage = || {
            Err(aws::Failed::new(
                Edge::Queue,
                Answer::Unavailable,
                "SQS SendMessageBatch on q failed: ServiceUnavailable".into(),
            ))
        };
        let queue = Scripted {
            answers: Mutex::new((0..ATTEMPTS).map(|_| outage()).collect()),
            calls: Mutex::default(),
        };
        let sent = batch(&queue, pending(3)).await;
        assert_eq!(sent.calls, u64::from(ATTEMPTS));
        assert_eq!(sent.not_queued.len(), 3);
        assert!(
            sent.not_queued[0]
                .1
                .starts_with("still failing after 5 attempts")
        );
        assert!(sent.fatal.is_none());

        let queue = Scripted {
            answers: Mutex::new(vec![Err(aws::Failed::new(
                Edge::Queue,
                Answer::Missing,
                "SQS SendMessageBatch on q failed: NonExistentQueue".into(),
            ))]),
            calls: Mutex::default(),
        };
        let sent = batch(&queue, pending(3)).await;
        assert_eq!((sent.calls, sent.not_queued.len()), (1, 3));
        assert!(sent.fatal.is_some());
    }
}
