//! Metrics → CloudWatch Embedded Metric Format (EMF) lines on stdout, one per interval.
//!
//! On ECS the container's stdout goes to CloudWatch Logs (the awslogs driver), and CloudWatch
//! Logs turns each EMF line into metric data points on its own: no agent, no sidecar, no
//! PutMetricData permission. The Prometheus `/metrics` endpoint stays for scrapers.
//! <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>
//!
//! Counters are written as what they added during the interval, gauges as their value at its
//! end. The metric names below are what the stack's alarms and dashboard read
//! (deploy/template.yaml); a test pins them.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::Metrics;

/// The metrics an EMF line carries: name, CloudWatch unit, and what it is.
pub const METRICS: &[(&str, &str, &str)] = &[
    (
        "AlertLagMaxSeconds",
        "Seconds",
        "longest time from a record's eventTime to its page being accepted (absent when nothing paged)",
    ),
    (
        "PublishFailures",
        "Count",
        "deliveries an output did not accept (each retried, or dropped if refused for good)",
    ),
    (
        "OutputBehindSeconds",
        "Seconds",
        "age of the oldest delivery waiting for its output, across outputs (0 when all are caught up)",
    ),
    (
        "MessagesHeld",
        "Count",
        "SQS messages held in hand while a dependency is out",
    ),
    ("MessagesInFlight", "Count", "SQS messages in hand"),
    ("MessagesReceived", "Count", "SQS messages received"),
    (
        "MessagesRejected",
        "Count",
        "SQS messages handed back as refused (towards the DLQ)",
    ),
    ("IncidentsPaged", "Count", "incidents opened with a page"),
    ("StateStoreErrors", "Count", "state store calls that failed"),
    ("RecordsEvaluated", "Count", "CloudTrail records evaluated"),
];

/// Counter values at the last line, to write what each added since.
#[derive(Default)]
struct Last {
    publish_failures: u64,
    received: u64,
    rejected: u64,
    paged: u64,
    store_errors: u64,
    records: u64,
}

/// Writes EMF lines from [`Metrics`].
pub struct Emitter {
    metrics: Arc<Metrics>,
    namespace: String,
    last: Last,
}

impl Emitter {
    /// An emitter into CloudWatch namespace `namespace`.
    pub fn new(metrics: Arc<Metrics>, namespace: String) -> Emitter {
        Emitter {
            metrics,
            namespace,
            last: Last::default(),
        }
    }

    /// The next line: the interval's values, stamped with the metrics' clock.
    pub fn line(&mut self) -> String {
        let m = &self.metrics;
        let delta = |now: u64, last: &mut u64| {
            let d = now.saturating_sub(*last);
            *last = now;
            d
        };
        let mut values: Vec<(&str, Value)> = vec![
            (
                "PublishFailures",
                json!(delta(
                    m.publish_failures.get(),
                    &mut self.last.publish_failures
                )),
            ),
            ("OutputBehindSeconds", json!(m.output_behind_secs())),
            ("MessagesHeld", json!(m.messages_held.get())),
            ("MessagesInFlight", json!(m.messages_in_flight.get())),
            (
                "MessagesReceived",
                json!(delta(m.messages_received.get(), &mut self.last.received)),
            ),
            (
                "MessagesRejected",
                json!(delta(m.messages_rejected.get(), &mut self.last.rejected)),
            ),
            (
                "IncidentsPaged",
                json!(delta(m.incidents_paged.get(), &mut self.last.paged)),
            ),
            (
                "StateStoreErrors",
                json!(delta(m.store_errors.get(), &mut self.last.store_errors)),
            ),
            (
                "RecordsEvaluated",
                json!(delta(m.records.get(), &mut self.last.records)),
            ),
        ];
        // No page, no lag: an absent value is no data point, which the lag alarm treats as
        // fine, rather than a 0 that would drag an average down.
        if let Some(lag) = m.take_alert_lag_max() {
            values.insert(0, ("AlertLagMaxSeconds", json!(lag)));
        }
        let definitions: Vec<Value> = values
            .iter()
            .map(|(name, _)| {
                let unit = METRICS
                    .iter()
                    .find(|(n, _, _)| n == name)
                    .map_or("None", |(_, unit, _)| unit);
                json!({"Name": name, "Unit": unit})
            })
            .collect();
        let mut line = Map::new();
        line.insert(
            "_aws".to_owned(),
            json!({
                "Timestamp": m.clock().now() * 1000,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [[]],
                    "Metrics": definitions,
                }],
            }),
        );
        for (name, value) in values {
            line.insert(name.to_owned(), value);
        }
        Value::Object(line).to_string()
    }

    /// Writes a line to stdout every `interval` until shutdown, and a last one then, so the
    /// final interval of a stopping task is not lost.
    pub async fn run(mut self, interval: Duration, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let last = tokio::select! {
                _ = ticks.tick() => false,
                _ = shutdown.cancelled() => true,
            };
            let line = self.line();
            let mut out = std::io::stdout().lock();
            // A closed stdout loses metrics, not work: nothing to do but carry on.
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
            if last {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::telemetry::metrics::Path;

    #[tokio::test(start_paused = true)]
    async fn lines_carry_interval_deltas_gauges_and_their_definitions() {
        let clock = Clock::tokio(1_700_000_000);
        let metrics = Metrics::with_clock(clock);
        let mut emitter = Emitter::new(metrics.clone(), "Trailwarden/prod".to_owned());
        metrics.publish_failures.inc_by(3);
        metrics.messages_held.set(2);
        metrics.observe_alert_lag(Path::LogFile, 300);
        metrics.observe_alert_lag(Path::Eventbridge, 4);
        metrics.output_backlog("pager", 2, Some(1_700_000_000), 1000);
        let first: Value = serde_json::from_str(&emitter.line()).expect("json");
        assert_eq!(first["_aws"]["Timestamp"], 1_700_000_000_000i64);
        let directive = &first["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Trailwarden/prod");
        assert_eq!(directive["Dimensions"], json!([[]]));
        let defined: Vec<&str> = directive["Metrics"]
            .as_array()
            .expect("metrics")
            .iter()
            .map(|d| d["Name"].as_str().expect("name"))
            .collect();
        let documented: Vec<&str> = METRICS.iter().map(|(n, _, _)| *n).collect();
        assert_eq!(defined, documented, "every metric defined, in order");
        for name in defined {
            assert!(first.get(name).is_some(), "{name} has a value");
        }
        assert_eq!(first["AlertLagMaxSeconds"], 300);
        assert_eq!(first["PublishFailures"], 3);
        assert_eq!(first["MessagesHeld"], 2);
        assert_eq!(first["OutputBehindSeconds"], 0, "pending since this second");

        metrics.publish_failures.inc();
        tokio::time::advance(Duration::from_secs(60)).await;
        let second: Value = serde_json::from_str(&emitter.line()).expect("json");
        assert_eq!(second["PublishFailures"], 1, "what the interval added");
        assert!(
            second.get("AlertLagMaxSeconds").is_none(),
            "no page, no lag"
        );
        assert_eq!(second["MessagesHeld"], 2);
        assert_eq!(second["OutputBehindSeconds"], 60);
    }
}
