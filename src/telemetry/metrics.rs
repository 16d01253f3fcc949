//! Every metric the daemon exports, and the recovery lines for failing dependencies.
//!
//! Metric names read `trailwarden_<name>_<unit>_total`; label values have low cardinality
//! (rule names, levels, operations, paths). Saturation, backpressure and store errors are
//! metrics here, never health: a busy task is a healthy task.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tracing::{info, warn};

use crate::clock::Clock;

/// Labels of the alert counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    pub rule: String,
    pub level: String,
}

/// Labels of the open findings gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    pub check: String,
    pub level: &'static str,
}

/// Labels of the counter of things left out on purpose.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub what: &'static str,
}

/// Labels of per-operation counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: &'static str,
}

/// Labels of the SDK retry counter (operation names come from the SDK at run time).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    pub operation: String,
}

/// Labels of the AWS IP ranges refresh counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefreshLabels {
    /// `updated`, `unchanged` or `failed`.
    pub result: &'static str,
}

/// Labels of the per-output gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutputLabels {
    pub output: String,
}

/// Labels of the delivery counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub output: String,
    /// `delivered`, `retried` or `dead`.
    pub outcome: &'static str,
}

/// One output's backlog as its loop last saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputState {
    pub pending: usize,
    /// When the oldest pending delivery was recorded, epoch seconds.
    pub oldest: Option<i64>,
    /// The backlog is at its bound: intake pauses.
    pub full: bool,
    /// Why its last attempt failed, while it fails.
    pub error: Option<String>,
}

/// How an event reached the daemon.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Path {
    /// A CloudTrail log file in S3.
    LogFile,
    /// An EventBridge event carrying the record.
    Eventbridge,
}

impl Path {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Path::LogFile => "log_file",
            Path::Eventbridge => "eventbridge",
        }
    }
}

/// Labels of the alert lag histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabels {
    /// `log_file` or `eventbridge`.
    pub path: &'static str,
}

/// A dependency whose outages are reported once, and whose recovery is said once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dependency {
    Queue,
    Objects,
    Store,
    Sink,
}

impl Dependency {
    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Dependency::Queue => "SQS receives",
            Dependency::Objects => "S3 reads",
            Dependency::Store => "state store calls",
            Dependency::Sink => "alert deliveries",
        }
    }
}

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    pub messages_received: Counter,
    pub messages_deleted: Counter,
    /// Messages handed back to the queue as refused (they reach the DLQ after maxReceiveCount).
    pub messages_rejected: Counter,
    /// Messages in hand right now.
    pub messages_in_flight: Gauge,
    /// Messages held in hand while a dependency is out; receiving pauses while any are.
    pub messages_held: Gauge,
    pub objects: Counter,
    /// Objects not read because an earlier message read them and committed what they raised.
    pub objects_already_read: Counter,
    /// CloudTrail events that arrived through EventBridge (the fast path).
    pub events: Counter,
    pub records: Counter,
    /// Things left out on purpose, by what: only [`super::Dropped`] counts here.
    pub dropped: Family<DropLabels, Counter>,
    pub alerts: Family<AlertLabels, Counter>,
    /// Fetches of AWS's ip-ranges.json, by result.
    pub ip_ranges_refreshes: Family<RefreshLabels, Counter>,
    pub account_names_refreshes: Family<RefreshLabels, Counter>,
    pub incidents_paged: Counter,
    pub incidents_folded: Counter,
    pub follow_ups: Counter,
    /// Standing findings open, by check and level, as this task last evaluated them.
    pub findings_open: Family<FindingLabels, Gauge>,
    /// Posture audits this task ran, and those that failed before committing.
    pub audits: Counter,
    pub audits_failed: Counter,
    /// Re-checks run after a record changed posture.
    pub rechecks: Counter,
    pub publish_failures: Counter,
    pub store_errors: Counter,
    pub aws_requests: Family<OperationLabels, Counter>,
    /// Requests the SDK sent again after a failed attempt.
    aws_retries: Family<RetryLabels, Counter>,
    /// Seconds from receiving a message to deleting it.
    pub processing_seconds: Histogram,
    /// Seconds from a record's eventTime to its page being accepted, by path.
    pub alert_lag_seconds: Family<PathLabels, Histogram>,
    /// Unix time of the last accepted publish; 0 before the first.
    pub last_publish: Gauge,
    /// Deliveries waiting, and the age of the oldest, by output.
    output_pending: Family<OutputLabels, Gauge>,
    output_oldest_seconds: Family<OutputLabels, Gauge>,
    /// Delivery attempts by output and outcome.
    output_deliveries: Family<DeliveryLabels, Counter>,
    outputs: Mutex<BTreeMap<String, OutputState>>,
    /// Unix time the receive loop last went round; 0 before the first.
    loop_alive: AtomicI64,
    /// Unix time of the last successful receive, negated while the latest one failed.
    last_receive: AtomicI64,
    /// Per dependency: unix time its current outage started, 0 when it works.
    outage_since: [AtomicI64; 4],
    /// The longest alert lag observed since [`Self::take_alert_lag_max`] last read it, in
    /// seconds; -1 when none was.
    lag_max: AtomicI64,
    clock: Clock,
}

impl Metrics {
    /// Metrics on the system clock.
    pub fn new() -> Arc<Metrics> {
        Metrics::with_clock(Clock::system())
    }

    /// Metrics whose times (last publish, health, outages) are read from `clock`.
    pub fn with_clock(clock: Clock) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("trailwarden");
        let lag = || {
            Histogram::new([
                1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 86400.0,
            ])
        };
        let m = Metrics {
            messages_received: Counter::default(),
            messages_deleted: Counter::default(),
            messages_rejected: Counter::default(),
            messages_in_flight: Gauge::default(),
            messages_held: Gauge::default(),
            objects: Counter::default(),
            objects_already_read: Counter::default(),
            events: Counter::default(),
            records: Counter::default(),
            dropped: Family::default(),
            alerts: Family::default(),
            ip_ranges_refreshes: Family::default(),
            account_names_refreshes: Family::default(),
            incidents_paged: Counter::default(),
            incidents_folded: Counter::default(),
            follow_ups: Counter::default(),
            findings_open: Family::default(),
            audits: Counter::default(),
            audits_failed: Counter::default(),
            rechecks: Counter::default(),
            publish_failures: Counter::default(),
            store_errors: Counter::default(),
            aws_requests: Family::default(),
            aws_retries: Family::default(),
            processing_seconds: Histogram::new([
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            alert_lag_seconds: Family::new_with_constructor(lag),
            last_publish: Gauge::default(),
            output_pending: Family::default(),
            output_oldest_seconds: Family::default(),
            output_deliveries: Family::default(),
            outputs: Mutex::default(),
            loop_alive: AtomicI64::new(0),
            last_receive: AtomicI64::new(0),
            outage_since: Default::default(),
            lag_max: AtomicI64::new(-1),
            clock,
            registry: Registry::default(),
        };
        let counters: [(&str, &str, &Counter); 15] = [
            (
                "sqs_messages_received",
                "SQS messages received",
                &m.messages_received,
            ),
            (
                "sqs_messages_deleted",
                "SQS messages deleted after their work completed",
                &m.messages_deleted,
            ),
            (
                "sqs_messages_rejected",
                "SQS messages handed back as refused; they reach the dead-letter queue after maxReceiveCount",
                &m.messages_rejected,
            ),
            ("objects", "Log objects read or skipped", &m.objects),
            (
                "objects_already_read",
                "Log objects not read again: an earlier message read them and committed what they raised",
                &m.objects_already_read,
            ),
            (
                "eventbridge_events",
                "CloudTrail events received through EventBridge",
                &m.events,
            ),
            ("records", "CloudTrail records evaluated", &m.records),
            (
                "incidents_paged",
                "Incidents opened with a page",
                &m.incidents_paged,
            ),
            (
                "incidents_folded",
                "Times a source's alerts folded into an open incident instead of paging",
                &m.incidents_folded,
            ),
            (
                "follow_ups",
                "Follow-up messages sent when an incident's window ended",
                &m.follow_ups,
            ),
            ("posture_audits", "Posture audits run", &m.audits),
            (
                "posture_audits_failed",
                "Posture audits that could not identify the account or commit their findings",
                &m.audits_failed,
            ),
            (
                "posture_rechecks",
                "Posture re-checks run after a record changed posture",
                &m.rechecks,
            ),
            (
                "delivery_failures",
                "Deliveries an output did not accept (by output and outcome: output_deliveries)",
                &m.publish_failures,
            ),
            (
                "state_store_errors",
                "State store calls that failed",
                &m.store_errors,
            ),
        ];
        for (name, help, c) in counters {
            registry.register(name, help, c.clone());
        }
        registry.register(
            "dropped",
            "Things left out on purpose, each also logged: unparseable records, correlation events past a source's share, state reads past their bound",
            m.dropped.clone(),
        );
        registry.register(
            "findings_open",
            "Standing findings open, by check and level, as this task last evaluated them",
            m.findings_open.clone(),
        );
        registry.register(
            "sqs_messages_in_flight",
            "SQS messages in hand",
            m.messages_in_flight.clone(),
        );
        registry.register(
            "sqs_messages_held",
            "SQS messages held in hand while a dependency is out (receiving pauses)",
            m.messages_held.clone(),
        );
        registry.register(
            "alerts",
            "Alerts raised, by rule and level",
            m.alerts.clone(),
        );
        registry.register(
            "ip_ranges_refreshes",
            "Fetches of AWS's ip-ranges.json: updated (a newer list is in use), unchanged, or failed (the list in use is kept)",
            m.ip_ranges_refreshes.clone(),
        );
        registry.register(
            "account_names_refreshes",
            "Listings of account names from AWS Organizations: updated, unchanged, or failed (the names in use are kept)",
            m.account_names_refreshes.clone(),
        );
        registry.register(
            "aws_requests",
            "AWS API requests, by operation",
            m.aws_requests.clone(),
        );
        registry.register(
            "aws_retries",
            "AWS API requests the SDK retried, by operation",
            m.aws_retries.clone(),
        );
        registry.register(
            "message_processing_seconds",
            "Time from receiving a message to deleting it",
            m.processing_seconds.clone(),
        );
        registry.register(
            "output_pending",
            "Deliveries waiting for their output, by output; intake pauses at outputs_max_pending",
            m.output_pending.clone(),
        );
        registry.register(
            "output_oldest_pending_seconds",
            "Age of the oldest delivery waiting for its output, by output",
            m.output_oldest_seconds.clone(),
        );
        registry.register(
            "output_deliveries",
            "Delivery attempts by output and outcome: delivered, retried (the output failed; tried again with backoff) or dead (refused for good)",
            m.output_deliveries.clone(),
        );
        registry.register(
            "alert_lag_seconds",
            "Time from a record's eventTime to its page being accepted, by path",
            m.alert_lag_seconds.clone(),
        );
        registry.register(
            "last_publish_timestamp_seconds",
            "Unix time of the last delivery an output accepted",
            m.last_publish.clone(),
        );
        Arc::new(Metrics { registry, ..m })
    }

    /// Counts one AWS API call.
    pub fn aws_request(&self, operation: &'static str) {
        self.aws_requests
            .get_or_create(&OperationLabels { operation })
            .inc();
    }

    /// Counts an attempt the SDK made again after a failed one.
    pub fn retried(&self, operation: &str) {
        self.aws_retries
            .get_or_create(&RetryLabels {
                operation: operation.to_owned(),
            })
            .inc();
    }

    /// The receive loop went round (it is alive even while it waits).
    pub fn loop_alive(&self) {
        self.loop_alive.store(self.clock.now(), Ordering::Relaxed);
    }

    /// Records the outcome of a ReceiveMessage call.
    pub fn received(&self, ok: bool) {
        let t = self.clock.now();
        if ok {
            self.last_receive.store(t, Ordering::Relaxed);
        } else {
            let last = self.last_receive.load(Ordering::Relaxed).abs();
            self.last_receive.store(-last.max(1), Ordering::Relaxed);
        }
        self.outage(Dependency::Queue, ok);
    }

    /// Healthy when the receive loop went round within `max_silence` seconds and its last
    /// receive succeeded. Busy, held or waiting work does not count against it.
    pub fn healthy(&self, max_silence: i64) -> bool {
        let alive = self.loop_alive.load(Ordering::Relaxed);
        let received = self.last_receive.load(Ordering::Relaxed);
        alive > 0 && self.clock.now() - alive <= max_silence && received > 0
    }

    /// Notes whether a dependency works. The first failure of an outage is logged by the
    /// caller with its cause; here the recovery is said once, with how long it lasted.
    pub fn outage(&self, dependency: Dependency, ok: bool) {
        let slot = &self.outage_since[dependency.index()];
        if ok {
            let since = slot.swap(0, Ordering::Relaxed);
            if since > 0 {
                let secs = (self.clock.now() - since).max(0);
                info!(
                    dependency = dependency.name(),
                    outage_secs = secs,
                    "{} succeed again after {}",
                    dependency.name(),
                    human(secs)
                );
            }
        } else if slot
            .compare_exchange(0, self.clock.now(), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            warn!(
                dependency = dependency.name(),
                "{} are failing; work is held and retried until they succeed",
                dependency.name()
            );
        }
    }

    /// Records the lag from a record's eventTime to its page being accepted.
    pub fn observe_alert_lag(&self, path: Path, secs: i64) {
        self.alert_lag_seconds
            .get_or_create(&PathLabels {
                path: path.as_str(),
            })
            .observe(secs as f64);
        self.lag_max.fetch_max(secs, Ordering::Relaxed);
    }

    /// The longest alert lag since the last call, in seconds; `None` when no page went out.
    pub fn take_alert_lag_max(&self) -> Option<i64> {
        let max = self.lag_max.swap(-1, Ordering::Relaxed);
        (max >= 0).then_some(max)
    }

    fn outputs(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, OutputState>> {
        self.outputs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an output's backlog as its loop read it.
    pub fn output_backlog(&self, output: &str, pending: usize, oldest: Option<i64>, bound: usize) {
        let mut outputs = self.outputs();
        let state = outputs.entry(output.to_owned()).or_default();
        let full = pending >= bound;
        if full && !state.full {
            warn!(
                output,
                pending, bound, "output backlog at its bound: intake pauses until it catches up"
            );
        } else if state.full && !full {
            info!(
                output,
                pending, "output backlog below its bound: intake resumes"
            );
        }
        state.pending = pending;
        state.oldest = oldest;
        state.full = full;
        self.output_pending
            .get_or_create(&OutputLabels {
                output: output.to_owned(),
            })
            .set(pending as i64);
    }

    /// Records why an output's last attempt failed, or `None` once it works.
    pub fn output_failing(&self, output: &str, error: Option<&str>) {
        self.outputs().entry(output.to_owned()).or_default().error = error.map(str::to_owned);
    }

    /// Counts one delivery attempt.
    pub fn delivered(&self, output: &str, outcome: &'static str) {
        if outcome == "delivered" {
            self.last_publish.set(self.clock.now());
        } else {
            self.publish_failures.inc();
        }
        self.output_deliveries
            .get_or_create(&DeliveryLabels {
                output: output.to_owned(),
                outcome,
            })
            .inc();
    }

    /// The first output whose backlog is at its bound: intake waits for it.
    pub fn output_full(&self) -> Option<String> {
        self.outputs()
            .iter()
            .find(|(_, s)| s.full)
            .map(|(name, _)| name.clone())
    }

    /// Every output's backlog, by name.
    pub fn output_states(&self) -> BTreeMap<String, OutputState> {
        self.outputs().clone()
    }

    /// How far behind the furthest-behind output is: the age of its oldest pending delivery,
    /// in seconds; 0 when every output is caught up.
    pub fn output_behind_secs(&self) -> i64 {
        let now = self.clock.now();
        self.outputs()
            .values()
            .filter_map(|s| s.oldest)
            .map(|oldest| (now - oldest).max(0))
            .max()
            .unwrap_or(0)
    }

    /// The clock metrics read.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        // Ages grow between two reads of a backlog: they are computed now.
        let now = self.clock.now();
        for (output, state) in self.outputs().iter() {
            self.output_oldest_seconds
                .get_or_create(&OutputLabels {
                    output: output.clone(),
                })
                .set(state.oldest.map_or(0, |o| (now - o).max(0)));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// `1h 2m 3s`, `4m 0s`, `12s`.
fn human(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m {s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_follows_the_loop_and_receives() {
        let m = Metrics::new();
        assert!(!m.healthy(60), "nothing yet");
        m.loop_alive();
        assert!(!m.healthy(60), "no receive yet");
        m.received(true);
        assert!(m.healthy(60));
        m.received(false);
        assert!(!m.healthy(60));
        m.received(true);
        assert!(m.healthy(60));
    }

    #[test]
    fn metrics_render() {
        let m = Metrics::new();
        m.alerts
            .get_or_create(&AlertLabels {
                rule: "root-activity".into(),
                level: "high".into(),
            })
            .inc();
        m.aws_request("ReceiveMessage");
        m.messages_in_flight.inc();
        let text = m.encode();
        assert!(
            text.contains("trailwarden_alerts_total{rule=\"root-activity\",level=\"high\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("trailwarden_aws_requests_total{operation=\"ReceiveMessage\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("trailwarden_sqs_messages_in_flight 1"),
            "{text}"
        );
        assert!(!text.contains("alerts_suppressed"), "{text}");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(12), "12s");
        assert_eq!(human(240), "4m 0s");
        assert_eq!(human(3723), "1h 2m 3s");
    }
}
