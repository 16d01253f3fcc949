//! Logs, metrics and the health endpoint: what operators tail, scrape and probe.
//!
//! - Logs: JSON lines (or text on a terminal), one per processed message or object, never one
//!   per record.
//! - Metrics: Prometheus text on `/metrics`, named `trailwarden_<name>_<unit>_total`.
//! - Health: `/healthz` answers 200 while SQS polls succeed, 503 otherwise.
//!
//! The listener serves two fixed GET routes to a local prober, so it is a few lines over a
//! TCP socket rather than an HTTP framework.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::config::LogFormat;

/// Sets up the tracing subscriber. `RUST_LOG` overrides the default `info` filter.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,aws_config=warn,aws_smithy_runtime=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let format = match format {
        LogFormat::Auto if std::io::IsTerminal::is_terminal(&std::io::stderr()) => LogFormat::Text,
        LogFormat::Auto => LogFormat::Json,
        other => other,
    };
    // A second initialisation (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text | LogFormat::Auto => builder.try_init(),
    };
}

/// Labels of the alert counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    pub rule: String,
    pub level: String,
}

/// Labels of the AWS request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: &'static str,
}

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    pub messages_received: Counter,
    pub messages_deleted: Counter,
    pub messages_failed: Counter,
    pub objects: Counter,
    pub records: Counter,
    pub alerts: Family<AlertLabels, Counter>,
    pub alerts_suppressed: Counter,
    pub publish_failures: Counter,
    pub aws_requests: Family<OperationLabels, Counter>,
    /// Seconds from receiving a message to deleting it.
    pub processing_seconds: Histogram,
    /// Seconds from a record's eventTime to its alert being published.
    pub alert_lag_seconds: Histogram,
    /// Unix time of the last successful ReceiveMessage; 0 before the first.
    last_poll_ok: AtomicI64,
    /// Whether the most recent ReceiveMessage failed.
    last_poll_failed: AtomicBool,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("trailwarden");
        let m = Metrics {
            messages_received: Counter::default(),
            messages_deleted: Counter::default(),
            messages_failed: Counter::default(),
            objects: Counter::default(),
            records: Counter::default(),
            alerts: Family::default(),
            alerts_suppressed: Counter::default(),
            publish_failures: Counter::default(),
            aws_requests: Family::default(),
            processing_seconds: Histogram::new([
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            alert_lag_seconds: Histogram::new([
                10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 86400.0,
            ]),
            last_poll_ok: AtomicI64::new(0),
            last_poll_failed: AtomicBool::new(false),
            registry: Registry::default(),
        };
        registry.register(
            "sqs_messages_received",
            "SQS messages received",
            m.messages_received.clone(),
        );
        registry.register(
            "sqs_messages_deleted",
            "SQS messages deleted after their work completed",
            m.messages_deleted.clone(),
        );
        registry.register(
            "sqs_messages_failed",
            "SQS messages left for redelivery after a failure",
            m.messages_failed.clone(),
        );
        registry.register("objects", "Log objects read or skipped", m.objects.clone());
        registry.register("records", "CloudTrail records evaluated", m.records.clone());
        registry.register(
            "alerts",
            "Alerts raised, by rule and level",
            m.alerts.clone(),
        );
        registry.register(
            "alerts_suppressed",
            "Alerts not published again because they were already published",
            m.alerts_suppressed.clone(),
        );
        registry.register(
            "sns_publish_failures",
            "SNS Publish calls that failed",
            m.publish_failures.clone(),
        );
        registry.register(
            "aws_requests",
            "AWS API requests, by operation",
            m.aws_requests.clone(),
        );
        registry.register(
            "message_processing_seconds",
            "Time from receiving a message to deleting it",
            m.processing_seconds.clone(),
        );
        registry.register(
            "alert_lag_seconds",
            "Time from a record's eventTime to its alert being published",
            m.alert_lag_seconds.clone(),
        );
        Arc::new(Metrics { registry, ..m })
    }

    /// Counts one AWS API call.
    pub fn aws_request(&self, operation: &'static str) {
        self.aws_requests
            .get_or_create(&OperationLabels { operation })
            .inc();
    }

    /// Records the outcome of a ReceiveMessage call for `/healthz`.
    pub fn poll_result(&self, ok: bool) {
        if ok {
            self.last_poll_ok
                .store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
        }
        self.last_poll_failed.store(!ok, Ordering::Relaxed);
    }

    /// Healthy when the latest poll succeeded and happened recently enough.
    pub fn healthy(&self, max_silence: Duration) -> bool {
        let ok = self.last_poll_ok.load(Ordering::Relaxed);
        let now = chrono::Utc::now().timestamp();
        ok > 0
            && !self.last_poll_failed.load(Ordering::Relaxed)
            && now - ok <= max_silence.as_secs() as i64
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serves `/healthz` and `/metrics` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, max_silence: Duration) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                respond(stream, &metrics, max_silence),
            )
            .await;
        });
    }
}

async fn respond(
    mut stream: TcpStream,
    metrics: &Metrics,
    max_silence: Duration,
) -> std::io::Result<()> {
    let mut buf = [0u8; 1024];
    let mut len = 0;
    // The request line is all we need; stop at its end or at 1 KiB.
    while len < buf.len() && !buf[..len].contains(&b'\n') {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let line = String::from_utf8_lossy(&buf[..len]);
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let (status, content_type, body) = match path {
        "/healthz" if metrics.healthy(max_silence) => ("200 OK", "text/plain", "ok\n".to_owned()),
        "/healthz" => (
            "503 Service Unavailable",
            "text/plain",
            "SQS polls are not succeeding\n".to_owned(),
        ),
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.encode(),
        ),
        _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// `trailwarden healthcheck`: true when `/healthz` at `addr` answers 200 within 3 seconds.
pub fn probe(addr: SocketAddr) -> Result<(), String> {
    use std::io::{Read, Write};
    let timeout = Duration::from_secs(3);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|_| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\nhost: localhost\r\n\r\n")
        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut response = Vec::new();
    let _ = stream.take(4096).read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    let status = response.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(format!("unhealthy: {}", status.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn health_follows_polls_and_metrics_render() {
        let metrics = Metrics::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(serve(listener, metrics.clone(), Duration::from_secs(60)));

        let check = move || tokio::task::spawn_blocking(move || probe(addr));
        assert!(check().await.expect("join").is_err(), "no poll yet");
        metrics.poll_result(true);
        assert!(check().await.expect("join").is_ok());
        metrics.poll_result(false);
        assert!(check().await.expect("join").is_err());

        metrics
            .alerts
            .get_or_create(&AlertLabels {
                rule: "root-activity".into(),
                level: "high".into(),
            })
            .inc();
        metrics.aws_request("ReceiveMessage");
        let text = metrics.encode();
        assert!(
            text.contains("trailwarden_alerts_total{rule=\"root-activity\",level=\"high\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("trailwarden_aws_requests_total{operation=\"ReceiveMessage\"} 1"),
            "{text}"
        );
        server.abort();
    }
}
