//! `trailwarden run`: SQS messages → S3 objects → engine → SNS alerts → delete, at least once.
//!
//! The rules that keep alerts from being lost:
//! - A message is deleted only after every object it names was read to the end (or
//!   deliberately skipped) and SNS accepted every alert that came from it.
//! - While a message is in work its visibility is extended (a heartbeat every third of the
//!   visibility timeout), so a large object is never processed twice at once.
//! - On failure the message is not deleted: SQS redelivers it, with a growing delay, and the
//!   queue's redrive policy finally parks it in the dead-letter queue.
//! - Redelivery does not page twice: published (rule, event) pairs are remembered in a bounded
//!   set and skipped.
//!
//! Messages are handled concurrently, so one slow object does not hold the others; the
//! CPU-bound reading runs on blocking threads, at most `workers` at a time. Shutdown is a
//! parameter: once it resolves no more messages are received, and those in flight get the
//! grace period to finish. Whatever does not finish is simply not deleted.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{Instrument, error, info, info_span, warn};

use crate::alert::Alert;
use crate::cloudtrail::{self, ReadError};
use crate::config::Settings;
use crate::detect::{Correlator, RuleSet};
use crate::engine::{self, Outcome};
use crate::notification::{self, Notice, NoticeError, ObjectRef};
use crate::object::{self, ObjectError};
use crate::publish::{self, PublishError, Topic};
use crate::queue::{Queue, Received};
use crate::telemetry::{AlertLabels, Metrics};

/// The AWS clients the daemon talks to.
pub struct Clients {
    pub s3: aws_sdk_s3::Client,
    pub queue: Queue,
    pub topic: Topic,
}

/// Why a message is left for redelivery.
#[derive(Debug, thiserror::Error)]
enum MessageError {
    #[error("unrecognised message body: {0}")]
    Body(#[from] NoticeError),
    #[error("refused {0}: its bucket is not in allowed_buckets")]
    BucketNotAllowed(ObjectRef),
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error("{object}: reading stopped: {source}")]
    Read {
        object: ObjectRef,
        #[source]
        source: ReadError,
    },
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("internal error while reading {0}: the worker thread stopped")]
    Worker(ObjectRef),
}

/// Remembers recently published (rule, event) pairs; the oldest are forgotten first.
///
/// Pairs being published right now are held in `pending`, so two copies of one notification
/// handled at the same time cannot both page. If that publish fails, the pair is released and
/// the failed message's redelivery publishes it.
struct Dedup {
    seen: HashSet<(String, String)>,
    order: VecDeque<(String, String)>,
    pending: HashSet<(String, String)>,
    capacity: usize,
}

impl Dedup {
    fn new(capacity: usize) -> Dedup {
        Dedup {
            seen: HashSet::new(),
            order: VecDeque::new(),
            pending: HashSet::new(),
            capacity,
        }
    }

    /// Claims a pair for publishing; false if it is published or being published.
    fn claim(&mut self, key: (String, String)) -> bool {
        !self.seen.contains(&key) && self.pending.insert(key)
    }

    /// Releases a claimed pair after its publish failed.
    fn release(&mut self, key: &(String, String)) {
        self.pending.remove(key);
    }

    /// Records a pair as published.
    fn insert(&mut self, key: (String, String)) {
        self.pending.remove(&key);
        if self.seen.insert(key.clone()) {
            self.order.push_back(key);
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.seen.remove(&old);
                }
            }
        }
    }
}

/// The identity of an alert for de-duplication: its rule and the event behind it.
fn dedup_key(alert: &Alert) -> (String, String) {
    let event = alert
        .event_id
        .clone()
        .or_else(|| alert.event_ids.as_ref().and_then(|ids| ids.last().cloned()))
        .unwrap_or_else(|| alert.source.clone());
    (alert.rule.clone(), event)
}

/// Shared state of the running daemon.
struct Daemon {
    settings: Settings,
    rules: Arc<RuleSet>,
    clients: Clients,
    metrics: Arc<Metrics>,
    /// Bounds the blocking read+evaluate work.
    readers: Semaphore,
    dedup: Mutex<Dedup>,
    /// Correlation state, with the eventIDs it has already been fed: a redelivered object must
    /// not count its records twice (three failed sign-ins seen twice are not six).
    correlator: Mutex<(Option<Correlator>, Dedup)>,
}

/// Runs until `shutdown` resolves, then drains in-flight messages within the grace period.
pub async fn run(
    settings: Settings,
    rules: Arc<RuleSet>,
    clients: Clients,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let in_flight_cap = settings.workers + settings.max_messages as usize;
    let daemon = Arc::new(Daemon {
        readers: Semaphore::new(settings.workers),
        dedup: Mutex::new(Dedup::new(settings.dedup_capacity)),
        correlator: Mutex::new((rules.correlator(), Dedup::new(settings.dedup_capacity))),
        settings,
        rules,
        clients,
        metrics,
    });
    // One permit per message in flight. A receive waits for a full batch of free permits, so
    // under load every ReceiveMessage can return up to 10 messages.
    let in_flight = Arc::new(Semaphore::new(in_flight_cap));
    let mut tasks = JoinSet::new();
    let mut backoff = Duration::from_secs(1);
    tokio::pin!(shutdown);

    info!(
        queue_url = %daemon.settings.queue_url,
        workers = daemon.settings.workers,
        rules = daemon.rules.rules().len(),
        "trailwarden started"
    );
    loop {
        let batch = daemon.settings.max_messages;
        let permits = tokio::select! {
            _ = &mut shutdown => break,
            p = in_flight.clone().acquire_many_owned(batch) => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        // Reap finished handlers so the set does not grow.
        while tasks.try_join_next().is_some() {}
        let received = tokio::select! {
            _ = &mut shutdown => break,
            r = daemon.clients.queue.receive(batch, daemon.settings.wait_time_secs, daemon.settings.visibility_timeout_secs) => r,
        };
        match received {
            Ok(messages) => {
                daemon.metrics.poll_result(true);
                backoff = Duration::from_secs(1);
                let mut permits = permits;
                for msg in messages {
                    daemon.metrics.messages_received.inc();
                    let permit = permits
                        .split(1)
                        .expect("one permit per message of the batch");
                    let daemon = daemon.clone();
                    tasks.spawn(async move {
                        daemon.handle(msg).await;
                        drop(permit);
                    });
                }
            }
            Err(e) => {
                daemon.metrics.poll_result(false);
                error!(error = %e, retry_in_secs = backoff.as_secs(), "cannot receive from SQS");
                drop(permits);
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }

    let grace = Duration::from_secs(daemon.settings.shutdown_grace_secs);
    info!(
        in_flight = tasks.len(),
        grace_secs = grace.as_secs(),
        "shutting down: finishing in-flight messages"
    );
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        warn!(
            unfinished = tasks.len(),
            "shutdown grace period expired; unfinished messages are not deleted and will be redelivered"
        );
        tasks.abort_all();
    }
    info!("trailwarden stopped");
}

/// Extends a message's visibility until dropped.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Daemon {
    fn heartbeat(self: &Arc<Self>, receipt: String) -> Heartbeat {
        let daemon = self.clone();
        let secs = self.settings.visibility_timeout_secs;
        let every = Duration::from_secs((secs / 3).max(1));
        Heartbeat(tokio::spawn(
            async move {
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(e) = daemon.clients.queue.set_visibility(&receipt, secs).await {
                        warn!(error = %e, "cannot extend message visibility; it may be delivered twice");
                    }
                }
            }
            .in_current_span(),
        ))
    }

    async fn handle(self: Arc<Self>, msg: Received) {
        let span = info_span!("message", message_id = %msg.id, receive_count = msg.receive_count);
        async {
            let started = Instant::now();
            let heartbeat = self.heartbeat(msg.receipt.clone());
            let result = self.process(&msg).await;
            drop(heartbeat);
            let elapsed_ms = started.elapsed().as_millis() as u64;
            match result {
                Ok(done) => {
                    // Every object is read (or deliberately skipped) and SNS accepted every
                    // alert: only now may the message go.
                    match self.clients.queue.delete(&msg.receipt).await {
                        Ok(()) => {
                            self.metrics.messages_deleted.inc();
                            self.metrics.processing_seconds.observe(started.elapsed().as_secs_f64());
                            info!(objects = done.objects, records = done.records, alerts = done.alerts, elapsed_ms, "message done");
                        }
                        Err(e) => warn!(error = %e, "message done but not deleted; redelivery will not page twice"),
                    }
                }
                Err(e) => {
                    self.metrics.messages_failed.inc();
                    // Retry sooner than the full visibility timeout, backing off with each
                    // delivery; after maxReceiveCount the redrive policy moves it to the DLQ.
                    let retry_secs = (5u64 << msg.receive_count.clamp(1, 12).saturating_sub(1))
                        .min(self.settings.visibility_timeout_secs);
                    match &e {
                        MessageError::Body(_) | MessageError::BucketNotAllowed(_) => {
                            error!(error = %e, body = %truncate(&msg.body, 512), retry_secs, elapsed_ms, "message not processed; it stays on the queue and moves to the dead-letter queue after maxReceiveCount");
                        }
                        MessageError::Object(ObjectError::AccessDenied { .. }) => {
                            error!(error = %e, retry_secs, elapsed_ms, "message not processed; fix the permission, the message will be retried");
                        }
                        _ => warn!(error = %e, retry_secs, elapsed_ms, "message failed; it will be retried"),
                    }
                    if let Err(e) = self.clients.queue.set_visibility(&msg.receipt, retry_secs).await {
                        warn!(error = %e, "cannot shorten visibility; the message returns after the full timeout");
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn process(self: &Arc<Self>, msg: &Received) -> Result<Done, MessageError> {
        let objects = match notification::parse(&msg.body)? {
            Notice::TestEvent => {
                info!("S3 test event acknowledged");
                return Ok(Done::default());
            }
            Notice::Ignored(what) => {
                info!(notification = %what, "notification needs no work");
                return Ok(Done::default());
            }
            Notice::Objects(objects) => objects,
        };
        let mut done = Done::default();
        let mut first_error = None;
        for obj in objects {
            if !self.settings.allowed_buckets.contains(&obj.bucket) {
                error!(bucket = %obj.bucket, key = %obj.key, "refused: bucket is not in allowed_buckets; nothing was fetched");
                first_error.get_or_insert(MessageError::BucketNotAllowed(obj));
                continue;
            }
            let span =
                info_span!("object", message_id = %msg.id, bucket = %obj.bucket, key = %obj.key);
            match self.process_object(&obj).instrument(span).await {
                Ok(d) => done.add(d),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            None => Ok(done),
            Some(e) => Err(e),
        }
    }

    async fn process_object(self: &Arc<Self>, obj: &ObjectRef) -> Result<Done, MessageError> {
        let started = Instant::now();
        let reason =
            cloudtrail::skip_reason(&obj.key).or_else(|| cloudtrail::skip_object_key(&obj.key));
        if let Some(reason) = reason {
            self.metrics.objects.inc();
            info!(reason, "object skipped");
            return Ok(Done {
                objects: 1,
                ..Done::default()
            });
        }
        let permit = self
            .readers
            .acquire()
            .await
            .expect("the reader semaphore is never closed");
        self.metrics.aws_request("GetObject");
        let body = match object::get_object(&self.clients.s3, &obj.bucket, &obj.key).await {
            Ok(body) => body,
            Err(e @ ObjectError::NotFound { .. }) => {
                self.metrics.objects.inc();
                warn!(error = %e, "object is gone; nothing to read");
                return Ok(Done {
                    objects: 1,
                    ..Done::default()
                });
            }
            Err(e) => return Err(e.into()),
        };
        let rules = self.rules.clone();
        let source = obj.to_string();
        let cap = self.settings.max_decompressed_bytes;
        let handle = tokio::runtime::Handle::current();
        let (mut alerts, report) = tokio::task::spawn_blocking(move || {
            let mut alerts = Vec::new();
            let report = engine::read_log(
                &rules,
                &source,
                object::blocking_body(body, handle),
                cap,
                &mut |a| alerts.push(a),
            );
            (alerts, report)
        })
        .await
        .map_err(|_| MessageError::Worker(obj.clone()))?;
        drop(permit);
        self.metrics.objects.inc();
        self.metrics.records.inc_by(report.records);

        match report.outcome {
            Outcome::Complete | Outcome::Skipped(_) => {}
            Outcome::Failed(e) if is_transport(&e) => {
                // The connection broke, not the file: read it again later.
                return Err(MessageError::Read {
                    object: obj.clone(),
                    source: e,
                });
            }
            Outcome::Failed(e) => {
                // A damaged log file can mean tampering: say so, after the alerts for the
                // records that were readable.
                warn!(error = %e, records = report.records, "log file is damaged; raising log-file-unreadable");
                alerts.push(Alert::unreadable(
                    &obj.to_string(),
                    report.records,
                    &e.to_string(),
                ));
            }
        }
        if !report.correlation_inputs.is_empty() {
            let mut guard = self.correlator.lock().unwrap_or_else(|p| p.into_inner());
            let (correlator, fed) = &mut *guard;
            if let Some(correlator) = correlator.as_mut() {
                let fresh: Vec<_> = report
                    .correlation_inputs
                    .into_iter()
                    .filter(
                        |input| match input.event.get("eventID").and_then(|v| v.as_str()) {
                            Some(id) => {
                                let key = (String::new(), id.to_owned());
                                let new = fed.claim(key.clone());
                                fed.insert(key);
                                new
                            }
                            None => true,
                        },
                    )
                    .collect();
                engine::correlate(&self.rules, correlator, fresh, &mut |a| alerts.push(a));
            }
        }
        let raised = alerts.len() as u64;
        self.publish(alerts).await?;
        info!(
            records = report.records,
            bytes = report.bytes,
            alerts = raised,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "object processed"
        );
        Ok(Done {
            objects: 1,
            records: report.records,
            alerts: raised,
        })
    }

    /// Logs every alert, then publishes the new ones at or above `min_level`, grouped.
    async fn publish(&self, alerts: Vec<Alert>) -> Result<(), MessageError> {
        let mut to_publish = Vec::new();
        {
            let mut dedup = self.dedup.lock().unwrap_or_else(|p| p.into_inner());
            for alert in alerts {
                self.metrics
                    .alerts
                    .get_or_create(&AlertLabels {
                        rule: alert.rule.clone(),
                        level: alert.level.to_string(),
                    })
                    .inc();
                log_alert(&alert);
                if alert.level < self.settings.min_level {
                    continue;
                }
                if !dedup.claim(dedup_key(&alert)) {
                    self.metrics.alerts_suppressed.inc();
                    continue;
                }
                to_publish.push(alert);
            }
        }
        let groups = publish::group(to_publish);
        let result = self.publish_groups(&groups).await;
        if result.is_err() {
            let mut dedup = self.dedup.lock().unwrap_or_else(|p| p.into_inner());
            for alert in groups.iter().flat_map(|g| &g.alerts) {
                dedup.release(&dedup_key(alert));
            }
        }
        result
    }

    /// Publishes groups in order; each published group's pairs are recorded at once.
    async fn publish_groups(&self, groups: &[publish::Group]) -> Result<(), MessageError> {
        for group in groups {
            let rendered = publish::render(group);
            let result = self
                .clients
                .topic
                .publish(&rendered, &|| self.metrics.aws_request("Publish"))
                .await;
            if let Err(e) = result {
                self.metrics.publish_failures.inc();
                return Err(e.into());
            }
            let now = chrono::Utc::now();
            let mut dedup = self.dedup.lock().unwrap_or_else(|p| p.into_inner());
            for alert in &group.alerts {
                dedup.insert(dedup_key(alert));
                if let Some(t) = alert
                    .event_time
                    .as_deref()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                {
                    let lag = (now - t.with_timezone(&chrono::Utc))
                        .num_milliseconds()
                        .max(0) as f64
                        / 1000.0;
                    self.metrics.alert_lag_seconds.observe(lag);
                }
            }
        }
        Ok(())
    }
}

/// What one message or object amounted to, for the log line.
#[derive(Debug, Default)]
struct Done {
    objects: u64,
    records: u64,
    alerts: u64,
}

impl Done {
    fn add(&mut self, other: Done) {
        self.objects += other.objects;
        self.records += other.records;
        self.alerts += other.alerts;
    }
}

/// Whether reading stopped because the S3 connection failed rather than because the bytes
/// are bad. Corrupt gzip surfaces as InvalidInput/InvalidData, a cut-off stream as
/// UnexpectedEof; anything else came from the transport.
fn is_transport(e: &ReadError) -> bool {
    match e {
        ReadError::Io { source, .. } => !matches!(
            source.kind(),
            std::io::ErrorKind::InvalidInput
                | std::io::ErrorKind::InvalidData
                | std::io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

/// Writes an alert to the log as one structured line.
fn log_alert(alert: &Alert) {
    let json = serde_json::to_string(alert).unwrap_or_default();
    let text = |v: &Option<String>| {
        v.as_deref()
            .map(crate::alert::clean)
            .unwrap_or_default()
            .into_owned()
    };
    // `alert_level`, not `level`: JSON log lines already carry the log record's own level.
    info!(
        target: "trailwarden::alert",
        rule = %alert.rule,
        alert_level = %alert.level,
        event_id = %text(&alert.event_id),
        event_name = %text(&alert.event_name),
        account_id = %text(&alert.account_id),
        principal_arn = %text(&alert.principal_arn),
        source_ip = %text(&alert.source_ip),
        source = %crate::alert::clean(&alert.source),
        summary = %crate::alert::clean(&alert.summary),
        alert = %json,
        "alert"
    );
}

fn truncate(s: &str, max: usize) -> String {
    let cleaned = crate::alert::clean(s);
    if cleaned.chars().count() <= max {
        return cleaned.into_owned();
    }
    cleaned.chars().take(max).chain("…".chars()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_is_bounded_and_forgets_oldest() {
        let mut d = Dedup::new(2);
        for i in 0..3 {
            d.insert(("r".into(), i.to_string()));
        }
        assert!(
            d.claim(("r".into(), "0".into())),
            "the oldest was forgotten"
        );
        assert!(!d.claim(("r".into(), "2".into())));
        assert_eq!(d.seen.len(), 2);
    }

    #[test]
    fn concurrent_claims_page_once_and_failures_release() {
        let mut d = Dedup::new(10);
        let key = ("root-console-login".to_owned(), "e1".to_owned());
        assert!(d.claim(key.clone()));
        assert!(
            !d.claim(key.clone()),
            "a second copy in flight is suppressed"
        );
        d.release(&key);
        assert!(
            d.claim(key.clone()),
            "after a failed publish the redelivery may publish"
        );
        d.insert(key.clone());
        assert!(!d.claim(key));
    }

    #[test]
    fn transport_errors_are_told_apart_from_damage() {
        let io = |kind| ReadError::Io {
            offset: 0,
            record: 0,
            source: std::io::Error::from(kind),
        };
        assert!(is_transport(&io(std::io::ErrorKind::ConnectionReset)));
        assert!(!is_transport(&io(std::io::ErrorKind::InvalidInput)));
        assert!(!is_transport(&ReadError::Truncated {
            offset: 1,
            record: 1
        }));
    }
}
