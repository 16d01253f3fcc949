//! One message in hand: its lease, its attempts, and the one place a failure decides between
//! ack, hold, wait and hand back.
//!
//! An attempt runs the producer of every job the message names (once: a job's findings are
//! kept across attempts; see `produce`) and commits what they found. Then:
//! - done: the message is deleted — only now, when every object was read or deliberately
//!   skipped, every incident it raised was paged or folded and recorded, and each object it
//!   read was recorded as read (so a notification of it sent again reads nothing);
//! - a dependency is out ([`Disposition::Hold`]): the message stays in hand, its lease
//!   extended, receiving pauses, and the attempt is repeated with backoff until it succeeds;
//! - another worker is publishing one of its pages ([`Disposition::Wait`]): retry shortly,
//!   never delete early;
//! - the message itself is refused ([`Disposition::Reject`]): it is handed back with a delay
//!   that grows with each delivery, and the queue's redrive policy parks it in the DLQ.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::Daemon;
use crate::aws::{self, Fault};
use crate::finding::Findings;
use crate::finding::alert::clean;
use crate::incidents::commit::{CommitError, Committed, Progress};
use crate::intake::SourceError;
use crate::intake::notice::{self, Notice, NoticeError, ObjectRef};
use crate::intake::sqs::{Lease, Received};
use crate::pipeline::Broken;
use crate::telemetry::Dependency;

/// Attempts that may hit the deadline before the message is handed back as refused.
const MAX_DEADLINE_MISSES: u32 = 3;
/// Longest wait between two attempts of a held message.
const MAX_HOLD_BACKOFF: Duration = Duration::from_secs(60);
/// Wait before retrying a message whose page another worker is publishing.
const BUSY_WAIT: Duration = Duration::from_secs(2);
/// How long a log object is remembered as read, so that a notification of it sent again
/// (a second `backfill` of the same days, months later) reads nothing twice. CloudTrail logs
/// are commonly kept a year; the record is one small item per object (about 100,000 a year
/// per account and region) that DynamoDB's TTL removes.
const OBJECT_READ_SECS: i64 = 400 * 24 * 3600;

/// Why an attempt did not complete.
#[derive(Debug, thiserror::Error)]
pub(super) enum WorkError {
    #[error("unrecognised message body: {0}")]
    Body(#[from] NoticeError),
    #[error("refused {0}: its bucket is not in allowed_buckets; nothing was fetched")]
    BucketNotAllowed(ObjectRef),
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The connection broke while the object was read; the cause (a reset, a timeout, the
    /// SDK's stalled-stream protection) is deep in the error chain, so it is spelled out.
    #[error(transparent)]
    Broken(#[from] Broken),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("internal error while reading {0}: the worker thread stopped")]
    Worker(ObjectRef),
    #[error("{event}: the event's record is not a JSON object: {message}")]
    Event { event: String, message: String },
    #[error("the attempt did not finish within message_timeout_secs ({0} s)")]
    Deadline(u64),
}

/// What a failure means for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disposition {
    /// The message will never succeed as it is: hand it back towards the DLQ.
    Reject,
    /// A dependency is out: hold the message and retry; receive nothing new meanwhile.
    Hold(Dependency),
    /// Retry in hand without pausing receives (another worker is busy with the same page, or
    /// the attempt ran out of time).
    Wait,
}

impl WorkError {
    /// What the failure means for the message: the failure table's [`Fault`] alone decides.
    fn disposition(&self) -> Disposition {
        let by_fault = |fault, dependency| match fault {
            // A misconfigured dependency is held like an outage: every message needs it, and a
            // page must not be dropped while an operator fixes it.
            Fault::Outage | Fault::Setting => Disposition::Hold(dependency),
            // `Gone` is answered before it gets here (a missing object is nothing to read);
            // refusing is the choice that never deletes work.
            Fault::Rejected | Fault::Gone => Disposition::Reject,
        };
        match self {
            WorkError::Body(_)
            | WorkError::BucketNotAllowed(_)
            | WorkError::Worker(_)
            | WorkError::Event { .. } => Disposition::Reject,
            WorkError::Source(e) => by_fault(e.fault(), Dependency::Objects),
            WorkError::Broken(_) => Disposition::Hold(Dependency::Objects),
            WorkError::Commit(CommitError::Store(e)) => by_fault(e.0.fault, Dependency::Store),
            WorkError::Commit(CommitError::Sink(e)) => by_fault(e.0.fault, Dependency::Sink),
            WorkError::Commit(CommitError::Busy { .. } | CommitError::Closing { .. })
            | WorkError::Deadline(_) => Disposition::Wait,
        }
    }
}

/// A message's work, kept across its attempts.
struct Work {
    notice: Result<Notice, NoticeError>,
    /// Per object: its findings once read.
    findings: Vec<Option<Findings>>,
    /// The first object the message may never have read, reported after the others.
    refused: Option<WorkError>,
    progress: Progress,
    /// Objects this message read whose record of being read is not written yet.
    unrecorded: Vec<String>,
    /// What the attempts amounted to, for the log line.
    records: u64,
}

impl Work {
    fn new(msg: &Received) -> Work {
        let notice = notice::parse(&msg.body);
        let objects = match &notice {
            Ok(Notice::Objects(objects)) => objects.len(),
            Ok(Notice::Event(_)) => 1,
            _ => 0,
        };
        Work {
            notice,
            findings: (0..objects).map(|_| None).collect(),
            refused: None,
            progress: Progress::default(),
            unrecorded: Vec::new(),
            records: 0,
        }
    }
}

impl Daemon {
    /// Handles one message until it is deleted, handed back, or shutdown takes it back.
    /// `permit` holds the message's place among those in hand; it is given up as soon as the
    /// work is done, before the (batched) delete.
    pub(super) async fn handle(
        self: Arc<Self>,
        msg: Received,
        permit: OwnedSemaphorePermit,
        shutdown: CancellationToken,
    ) {
        let span = info_span!("message", message_id = %msg.id, receive_count = msg.receive_count);
        async {
            self.metrics.messages_in_flight.inc();
            let started = Instant::now();
            let lease = Lease::start(
                self.edges.queue.clone(),
                msg.receipt.clone(),
                self.settings.visibility_timeout_secs,
            );
            let mut work = Work::new(&msg);
            let mut retry = aws::backoff(Duration::from_secs(1), MAX_HOLD_BACKOFF);
            let mut held = None;
            let mut deadline_misses = 0;
            let mut failing: Vec<Dependency> = Vec::new();
            let timeout = Duration::from_secs(self.settings.message_timeout_secs);
            loop {
                let result = match tokio::time::timeout(timeout, self.attempt(&msg, &mut work)).await {
                    Ok(result) => result,
                    Err(_) => Err(WorkError::Deadline(timeout.as_secs())),
                };
                let e = match result {
                    Ok(done) => {
                        drop(held);
                        self.request_rechecks(work.findings.iter().flatten());
                        for d in failing {
                            self.metrics.outage(d, true);
                        }
                        drop(permit);
                        self.finish(lease, &work, done, started).await;
                        break;
                    }
                    Err(e) => e,
                };
                let disposition = match e.disposition() {
                    Disposition::Wait if matches!(e, WorkError::Deadline(_)) => {
                        deadline_misses += 1;
                        if deadline_misses >= MAX_DEADLINE_MISSES {
                            Disposition::Reject
                        } else {
                            Disposition::Wait
                        }
                    }
                    d => d,
                };
                let pause = match disposition {
                    Disposition::Reject => {
                        drop(held);
                        self.reject(lease, &msg, &e).await;
                        break;
                    }
                    Disposition::Hold(dependency) => {
                        let pause = aws::next_wait(&mut retry);
                        let retry_in_ms = pause.as_millis() as u64;
                        if held.is_none() {
                            warn!(error = %e, retry_in_ms, "message held: a dependency is out; receiving pauses and the work is retried until it succeeds");
                            held = Some(Holding::new(&self));
                        } else {
                            debug!(error = %e, retry_in_ms, "message still held");
                        }
                        if !failing.contains(&dependency) {
                            failing.push(dependency);
                        }
                        self.metrics.outage(dependency, false);
                        pause
                    }
                    Disposition::Wait => {
                        info!(error = %e, "message waits and retries");
                        BUSY_WAIT
                    }
                };
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        drop(held);
                        hand_back(lease).await;
                        break;
                    }
                    _ = tokio::time::sleep(pause) => {}
                }
            }
            self.leases().remove(&msg.id);
            self.metrics.messages_in_flight.dec();
        }
        .instrument(span)
        .await
    }

    /// Deletes a message whose work is complete.
    async fn finish(&self, lease: Lease, work: &Work, done: Committed, started: Instant) {
        // Every object was read (or deliberately skipped) and every incident it raised was
        // paged or folded and recorded: only now may the message go.
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match lease.ack().await {
            Ok(()) => {
                self.metrics.messages_deleted.inc();
                self.metrics
                    .processing_seconds
                    .observe(started.elapsed().as_secs_f64());
                info!(
                    objects = work.findings.len(),
                    records = work.records,
                    paged = done.paged,
                    folded = done.folded,
                    quiet = done.quiet,
                    repeated = done.repeated,
                    fires = done.fires,
                    elapsed_ms,
                    "message done"
                );
            }
            Err(e) => {
                warn!(error = %e, "message done but not deleted; its redelivery will not page twice")
            }
        }
    }

    /// Hands a refused message back with a delay that grows with each delivery; after
    /// maxReceiveCount deliveries the queue's redrive policy moves it to the DLQ.
    async fn reject(&self, lease: Lease, msg: &Received, e: &WorkError) {
        self.metrics.messages_rejected.inc();
        let retry_secs = (5u64 << msg.receive_count.clamp(1, 12).saturating_sub(1)).min(900);
        match e {
            WorkError::Body(_) => error!(
                error = %e,
                body = %truncate(&msg.body, 512),
                retry_secs,
                "message refused: it is not a notification trailwarden reads; it moves to the dead-letter queue after maxReceiveCount"
            ),
            _ => error!(
                error = %e,
                retry_secs,
                "message refused; fix the cause, it is retried and moves to the dead-letter queue after maxReceiveCount"
            ),
        }
        if let Err(e) = lease.release(retry_secs).await {
            warn!(error = %e, "cannot delay the refused message; it returns after its visibility timeout");
        }
    }

    /// One attempt: read what is not read yet, then commit everything.
    async fn attempt(&self, msg: &Received, work: &mut Work) -> Result<Committed, WorkError> {
        let objects = match &work.notice {
            Ok(Notice::Objects(objects)) => objects.clone(),
            Ok(Notice::Event(event)) => {
                if work.findings[0].is_none() {
                    let span = info_span!("event", event_id = %event.id, region = %event.region);
                    work.findings[0] = Some(self.read_event(event).instrument(span).await?);
                    work.records += 1;
                }
                Vec::new()
            }
            Ok(Notice::TestEvent) => {
                info!("S3 test event acknowledged");
                return Ok(Committed::default());
            }
            Ok(Notice::Ignored(what)) => {
                info!(notification = %clean(what), "notification needs no work");
                return Ok(Committed::default());
            }
            Err(e) => return Err(WorkError::Body(e.clone())),
        };
        for (i, obj) in objects.iter().enumerate() {
            if work.findings[i].is_some() {
                continue;
            }
            let span =
                info_span!("object", message_id = %msg.id, bucket = %obj.bucket, key = %obj.key);
            let read = if self.settings.allowed_buckets.contains(&obj.bucket) {
                self.read_object(obj).instrument(span).await
            } else {
                Err(WorkError::BucketNotAllowed(obj.clone()))
            };
            match read {
                Ok(read) => {
                    work.records += read.records;
                    work.findings[i] = Some(read.findings);
                    if read.fresh {
                        work.unrecorded.push(obj.to_string());
                    }
                }
                Err(e) if e.disposition() == Disposition::Reject => {
                    // The other objects are still read and committed; the message is then
                    // refused for this one.
                    error!(bucket = %obj.bucket, key = %clean(&obj.key), error = %e, "object refused");
                    work.findings[i] = Some(Findings::default());
                    work.refused.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        let owner = format!("{}/{}", self.task, msg.id);
        let committer = self.committer(&owner);
        let mut done = Committed::default();
        for findings in work.findings.iter().flatten() {
            if findings.is_empty() {
                continue;
            }
            done.add(committer.commit(findings, &mut work.progress).await?);
        }
        self.metrics.incidents_paged.inc_by(done.paged);
        self.metrics.incidents_folded.inc_by(done.folded);
        // Only now, with everything the objects raised committed, are they recorded as read:
        // a task stopping before this reads them again, and their alerts fold into the
        // incidents this attempt recorded.
        let expires_at = self.edges.clock.now() + OBJECT_READ_SECS;
        while let Some(source) = work.unrecorded.last() {
            self.edges
                .store
                .mark_object_read(source, expires_at)
                .await
                .map_err(|e| WorkError::Commit(e.into()))?;
            work.unrecorded.pop();
        }
        match work.refused.take() {
            Some(e) => Err(e),
            None => Ok(done),
        }
    }
}

/// Makes a message visible again at once (shutdown), for another task.
async fn hand_back(lease: Lease) {
    match lease.release(0).await {
        Ok(()) => info!("message handed back to the queue for another task"),
        Err(e) => {
            warn!(error = %e, "cannot hand the message back; it returns after its visibility timeout")
        }
    }
}

/// Holds the gate closed (and the held gauge up) while a message waits for a dependency.
struct Holding {
    daemon: Arc<Daemon>,
}

impl Holding {
    fn new(daemon: &Arc<Daemon>) -> Holding {
        daemon.gate.enter();
        daemon.metrics.messages_held.inc();
        Holding {
            daemon: daemon.clone(),
        }
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        self.daemon.metrics.messages_held.dec();
        self.daemon.gate.leave();
    }
}

fn truncate(s: &str, max: usize) -> String {
    let cleaned = clean(s);
    if cleaned.chars().count() <= max {
        return cleaned.into_owned();
    }
    cleaned.chars().take(max).chain("…".chars()).collect()
}
