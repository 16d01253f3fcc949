//! AWS's ip-ranges.json over HTTP, at start-up and then daily → the list the rules read,
//! replaced whole when AWS published a newer one (a greater `syncToken`).
//!
//! A fetch that fails, or a body that is not a usable list, keeps the list in use and is
//! tried again with backoff; the daemon never stops over it. Each fetch is logged and counted
//! (`trailwarden_ip_ranges_refreshes_total{result}`).
//! <https://docs.aws.amazon.com/vpc/latest/userguide/aws-ip-ranges.html>

use std::sync::Arc;
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::byte_stream::ByteStream;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::aws;
use crate::detect::ip_ranges::{AwsIpRanges, SharedIpRanges};
use crate::telemetry::Metrics;
use crate::telemetry::metrics::RefreshLabels;

/// How often AWS's list is fetched. AWS publishes changes several times a week; a day-old
/// list misses at most a few new prefixes.
pub const REFRESH_EVERY: Duration = Duration::from_secs(24 * 3600);
/// The first retry after a failed fetch, doubling up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(60);
const RETRY_MAX: Duration = Duration::from_secs(3600);
/// The file is a few megabytes; a body past this is not AWS's list.
const MAX_BODY: usize = 32 * 1024 * 1024;
/// Bounds one whole fetch, connection to last byte.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a fetch brought no body.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("request failed: {0}")]
    Request(String),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("body larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("no answer within {FETCH_TIMEOUT:?}")]
    Timeout,
}

/// Where the list comes from: AWS's URL in production; the seam lets the schedule be tested
/// on a paused clock.
#[async_trait::async_trait]
pub trait Fetch: Send + Sync {
    /// The URL, for logs and the list's label.
    fn url(&self) -> &str;
    async fn fetch(&self) -> Result<Vec<u8>, FetchError>;
}

/// A GET with the AWS SDK's own HTTP client (hyper and rustls with the system's roots), which
/// the daemon already carries for every AWS call.
pub struct Http {
    url: String,
    connector: SharedHttpConnector,
}

impl Http {
    pub fn new(url: String) -> Http {
        let settings = HttpConnectorSettings::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(30))
            .build();
        Http {
            url,
            connector: aws::https_connector(&settings),
        }
    }
}

#[async_trait::async_trait]
impl Fetch for Http {
    fn url(&self) -> &str {
        &self.url
    }

    async fn fetch(&self) -> Result<Vec<u8>, FetchError> {
        let get = async {
            let request =
                HttpRequest::get(&self.url).map_err(|e| FetchError::Request(e.to_string()))?;
            let response = self
                .connector
                .call(request)
                .await
                .map_err(|e| FetchError::Request(format!("{e}{}", aws::causes(&e))))?;
            let status = response.status().as_u16();
            if status != 200 {
                return Err(FetchError::Status(status));
            }
            let mut body = ByteStream::new(response.into_body());
            let mut bytes = Vec::new();
            while let Some(chunk) = body.next().await {
                let chunk =
                    chunk.map_err(|e| FetchError::Request(format!("{e}{}", aws::causes(&e))))?;
                if bytes.len() + chunk.len() > MAX_BODY {
                    return Err(FetchError::TooLarge);
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(bytes)
        };
        tokio::time::timeout(FETCH_TIMEOUT, get)
            .await
            .unwrap_or(Err(FetchError::Timeout))
    }
}

/// What one refresh did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A newer list is in use; its label.
    Updated(String),
    /// AWS's list is the one in use (or older).
    Unchanged,
    /// No usable list came; the one in use stays.
    Failed(String),
}

/// Fetches the list and replaces the one the rules read when it is newer.
pub struct Refresher<F> {
    pub source: F,
    pub ranges: SharedIpRanges,
    pub metrics: Arc<Metrics>,
}

impl<F: Fetch> Refresher<F> {
    /// One fetch, checked, swapped in when newer, logged and counted.
    pub async fn refresh_once(&self) -> Outcome {
        let url = self.source.url();
        let outcome = match self.source.fetch().await {
            Err(e) => Outcome::Failed(e.to_string()),
            Ok(bytes) => match AwsIpRanges::parse(&bytes, url) {
                Err(reason) => {
                    Outcome::Failed(format!("not AWS's ip-ranges.json format: {reason}"))
                }
                Ok(new) => {
                    let current = self.ranges.current();
                    if new.newer_than(current.as_deref()) {
                        let label = new.label.clone();
                        self.ranges.replace(new);
                        Outcome::Updated(label)
                    } else if new.sync_token.is_none() {
                        Outcome::Failed("the list has no syncToken to order it by".to_owned())
                    } else {
                        Outcome::Unchanged
                    }
                }
            },
        };
        let result = match &outcome {
            Outcome::Updated(label) => {
                info!(url, list = %label, "AWS IP ranges updated; rules now read this list");
                "updated"
            }
            Outcome::Unchanged => "unchanged",
            Outcome::Failed(reason) => {
                let kept = self.ranges.current().map(|r| r.label.clone());
                warn!(url, error = %reason, kept = kept.as_deref().unwrap_or("none"), "cannot refresh AWS IP ranges; keeping the list in use");
                "failed"
            }
        };
        self.metrics
            .ip_ranges_refreshes
            .get_or_create(&RefreshLabels { result })
            .inc();
        outcome
    }

    /// Refreshes at once, then every [`REFRESH_EVERY`]; after a failure, sooner, with
    /// backoff. Returns when `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = aws::backoff(RETRY_FIRST, RETRY_MAX);
        loop {
            let wait = match self.refresh_once().await {
                Outcome::Failed(_) => aws::next_wait(&mut backoff),
                Outcome::Updated(_) | Outcome::Unchanged => {
                    backoff = aws::backoff(RETRY_FIRST, RETRY_MAX);
                    REFRESH_EVERY
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn list(token: u64) -> Vec<u8> {
        format!(
            r#"{{"syncToken":"{token}","createDate":"2026-11-25-10-00-05","prefixes":[{{"ip_prefix":"3.5.140.0/22"}}]}}"#
        )
        .into_bytes()
    }

    /// Serves one canned answer per connection on 127.0.0.1, in order, then stops.
    async fn serve(answers: Vec<(u16, Vec<u8>)>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/ip-ranges.json",
            listener.local_addr().expect("addr")
        );
        tokio::spawn(async move {
            for (status, body) in answers {
                let (mut conn, _) = listener.accept().await.expect("accept");
                let mut request = vec![0; 4096];
                let _ = conn.read(&mut request).await.expect("request");
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                conn.write_all(head.as_bytes()).await.expect("head");
                conn.write_all(&body).await.expect("body");
            }
        });
        url
    }

    fn count(metrics: &Metrics, result: &'static str) -> u64 {
        metrics
            .ip_ranges_refreshes
            .get_or_create(&RefreshLabels { result })
            .get()
    }

    #[tokio::test]
    async fn a_newer_list_is_swapped_in_and_a_bad_one_keeps_it() {
        let url = serve(vec![
            (200, list(1_700_086_400)),
            (200, b"<html>not json</html>".to_vec()),
            (200, br#"{"syncToken":"1800000000","prefixes":[]}"#.to_vec()),
            (500, Vec::new()),
            (200, list(1_700_086_400)),
            (200, list(1_600_000_000)),
        ])
        .await;
        let start = AwsIpRanges::parse(&list(1_700_000_000), "file.json").expect("start");
        let refresher = Refresher {
            source: Http::new(url.clone()),
            ranges: SharedIpRanges::new(Some(start)),
            metrics: Metrics::new(),
        };
        let token = |r: &Refresher<Http>| r.ranges.current().and_then(|l| l.sync_token);

        assert_eq!(
            refresher.refresh_once().await,
            Outcome::Updated(format!(
                "{url} (created 2026-11-25-10-00-05, syncToken 1700086400)"
            ))
        );
        assert_eq!(token(&refresher), Some(1_700_086_400));
        for _ in 0..3 {
            // A body that is not JSON, a list without prefixes, a server error.
            let outcome = refresher.refresh_once().await;
            assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
            assert_eq!(
                token(&refresher),
                Some(1_700_086_400),
                "the list in use stays"
            );
        }
        // The same list again, then an older one: neither replaces the list in use.
        assert_eq!(refresher.refresh_once().await, Outcome::Unchanged);
        assert_eq!(refresher.refresh_once().await, Outcome::Unchanged);
        assert_eq!(token(&refresher), Some(1_700_086_400));
        let m = &refresher.metrics;
        assert_eq!(
            (
                count(m, "updated"),
                count(m, "failed"),
                count(m, "unchanged")
            ),
            (1, 3, 2)
        );
    }

    /// Answers from a list, and when each was asked for.
    struct Script {
        answers: Mutex<Vec<Result<Vec<u8>, FetchError>>>,
        asked: Mutex<Vec<tokio::time::Instant>>,
    }

    #[async_trait::async_trait]
    impl Fetch for Arc<Script> {
        fn url(&self) -> &str {
            "script"
        }
        async fn fetch(&self) -> Result<Vec<u8>, FetchError> {
            self.asked
                .lock()
                .expect("asked")
                .push(tokio::time::Instant::now());
            let mut answers = self.answers.lock().expect("answers");
            if answers.is_empty() {
                Err(FetchError::Status(404))
            } else {
                answers.remove(0)
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn fetches_at_start_retries_failures_soon_and_then_waits_a_day() {
        let script = Arc::new(Script {
            answers: Mutex::new(vec![
                Err(FetchError::Status(503)),
                Err(FetchError::Timeout),
                Ok(list(1_700_000_000)),
                Ok(list(1_700_086_400)),
            ]),
            asked: Mutex::new(Vec::new()),
        });
        let ranges = SharedIpRanges::default();
        let shutdown = CancellationToken::new();
        let start = tokio::time::Instant::now();
        let task = tokio::spawn(
            Refresher {
                source: script.clone(),
                ranges: ranges.clone(),
                metrics: Metrics::new(),
            }
            .run(shutdown.clone()),
        );
        tokio::time::sleep(REFRESH_EVERY + Duration::from_secs(2 * 3600)).await;
        let asked: Vec<Duration> = script
            .asked
            .lock()
            .expect("asked")
            .iter()
            .map(|t| *t - start)
            .collect();
        assert_eq!(asked.len(), 4, "{asked:?}");
        assert_eq!(asked[0], Duration::ZERO, "the first fetch is at start-up");
        // Retries with backoff from a minute (jitter adds up to as much again).
        let retry = asked[1] - asked[0];
        assert!(retry >= RETRY_FIRST && retry < 2 * RETRY_FIRST, "{asked:?}");
        assert!(asked[2] - asked[1] >= 2 * RETRY_FIRST, "{asked:?}");
        // After a success, the next fetch is a day later.
        assert_eq!(asked[3] - asked[2], REFRESH_EVERY, "{asked:?}");
        assert_eq!(
            ranges.current().and_then(|l| l.sync_token),
            Some(1_700_086_400)
        );
        shutdown.cancel();
        task.await.expect("the refresher stops on shutdown");
    }
}
