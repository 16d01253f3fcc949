//! Deliveries in this task's memory: one task, nothing to set up, lost on restart (as the
//! memory state store is).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{Delivery, Outbox, OutboxError, Settle, oldest_first};

/// Pending deliveries and the settled ones' ids, by output.
#[derive(Default)]
pub struct MemoryOutbox {
    inner: Mutex<Inner>,
    /// Told whenever a delivery settles.
    changed: Notify,
    /// Answer as a durable outbox would: the sink returns once deliveries are recorded
    /// instead of waiting for them to settle ([`MemoryOutbox::recorded_only`]).
    recorded_only: bool,
}

#[derive(Default)]
struct Inner {
    /// By (output, message id).
    pending: HashMap<(String, String), Delivery>,
    /// When and how each was settled; kept a week, as the state table keeps its markers, so
    /// a repeat of the same message is not delivered again.
    settled: HashMap<(String, String), (i64, Settle)>,
    /// Failed attempts by output, and the last one's error: a message waiting behind a
    /// failing delivery of its output is held as well.
    failures: HashMap<String, (u64, String)>,
}

/// How long a settled delivery is remembered.
const KEEP_SECS: i64 = 7 * 24 * 3600;

impl MemoryOutbox {
    pub fn new() -> MemoryOutbox {
        MemoryOutbox::default()
    }

    /// An outbox that answers as the state table's does: a message is accepted once its
    /// deliveries are recorded. For tests of the delivery loops and tools that keep the
    /// message elsewhere; the daemon without a state table uses [`MemoryOutbox::new`].
    pub fn recorded_only() -> MemoryOutbox {
        MemoryOutbox {
            recorded_only: true,
            ..MemoryOutbox::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How each message to `output` was settled, by message id: for tests and inspection.
    pub fn settled(&self, output: &str) -> Vec<(String, Settle)> {
        let mut out: Vec<_> = self
            .lock()
            .settled
            .iter()
            .filter(|((o, _), _)| o == output)
            .map(|((_, id), (_, s))| (id.clone(), s.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

fn key(d: &Delivery) -> (String, String) {
    (d.output.clone(), d.message.id())
}

#[async_trait]
impl Outbox for MemoryOutbox {
    async fn enqueue(&self, deliveries: &[Delivery]) -> Result<(), OutboxError> {
        let mut inner = self.lock();
        for d in deliveries {
            let k = key(d);
            if !inner.settled.contains_key(&k) {
                inner.pending.entry(k).or_insert_with(|| d.clone());
            }
        }
        Ok(())
    }

    async fn pending(&self, output: &str, limit: usize) -> Result<Vec<Delivery>, OutboxError> {
        let mut out: Vec<Delivery> = self
            .lock()
            .pending
            .values()
            .filter(|d| d.output == output)
            .cloned()
            .collect();
        oldest_first(&mut out);
        out.truncate(limit);
        Ok(out)
    }

    async fn take(
        &self,
        delivery: &Delivery,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, OutboxError> {
        let mut inner = self.lock();
        let Some(d) = inner.pending.get_mut(&key(delivery)) else {
            return Ok(false);
        };
        if !d.ready(now) {
            return Ok(false);
        }
        d.lease = Some((owner.to_owned(), until));
        Ok(true)
    }

    async fn settle(
        &self,
        delivery: &Delivery,
        owner: &str,
        now: i64,
        how: &Settle,
    ) -> Result<(), OutboxError> {
        let mut inner = self.lock();
        let k = key(delivery);
        match how {
            Settle::Retry { at, error } => {
                if let Some(d) = inner.pending.get_mut(&k)
                    && d.lease.as_ref().is_some_and(|(o, _)| o == owner)
                {
                    d.lease = None;
                    d.attempts += 1;
                    d.next_at = *at;
                    d.last_error = Some(error.clone());
                    let failures = inner.failures.entry(k.0.clone()).or_default();
                    *failures = (failures.0 + 1, error.clone());
                    self.changed.notify_waiters();
                }
            }
            Settle::Delivered | Settle::Dead { .. } => {
                inner.pending.remove(&k);
                inner.settled.retain(|_, (at, _)| *at > now - KEEP_SECS);
                inner.settled.insert(k, (now, how.clone()));
                self.changed.notify_waiters();
            }
        }
        Ok(())
    }

    fn durable(&self) -> bool {
        self.recorded_only
    }

    async fn settled(&self, output: &str, id: &str) -> Result<(), String> {
        let k = (output.to_owned(), id.to_owned());
        let failures = |inner: &Inner| inner.failures.get(output).cloned().unwrap_or_default();
        let (failed, _) = failures(&self.lock());
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let inner = self.lock();
                // Neither pending nor settled: settled and forgotten a week ago.
                if inner.settled.contains_key(&k) || !inner.pending.contains_key(&k) {
                    return Ok(());
                }
                let (now_failed, why) = failures(&inner);
                if now_failed > failed {
                    return Err(why);
                }
            }
            changed.await;
        }
    }
}
