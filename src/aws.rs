//! AWS at the edge: SDK clients with timeouts and the SDK's retry configuration (the only retry
//! layer for a single call), and the one place a failed call is described and its cause found.
//!
//! Credentials and region come from aws-config's default chain (the ECS task role in
//! production). `endpoint_url` points every client at an emulator; S3 then needs path-style
//! addressing because `bucket.127.0.0.1` does not resolve.

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::time::Duration;

use std::sync::Arc;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

use crate::telemetry::Metrics;

/// Longest wait for a TCP and TLS connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one attempt of a call (a response's headers, not a streamed body).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a call including the SDK's retries.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts per call: the SDK retries throttling, 5xx and connection failures with backoff.
/// Work that still fails is held and retried by the daemon, not by another retry loop here.
const MAX_ATTEMPTS: u32 = 3;

/// What a failed call means for the work that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A dependency is unavailable (throttling, 5xx, timeouts, a resource every message needs
    /// is missing or forbidden): the work is fine; hold it and try again.
    Outage,
    /// This work itself was refused (bad input, an object the role may not read): trying it
    /// again the same way fails the same way.
    Rejected,
}

/// A failed AWS call, described once.
#[derive(Debug, Clone)]
pub struct Failed {
    /// The AWS error code, when the service answered.
    pub code: Option<String>,
    /// Whether trying the same call later may succeed: throttling, 5xx, timeouts, network.
    pub transient: bool,
    /// One readable sentence: what was called on what, and why it failed, with the cause.
    pub sentence: String,
}

/// Loads the shared SDK configuration with the daemon's timeouts and retry policy.
pub async fn sdk_config(region: Option<&str>, endpoint_url: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        );
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// An S3 client; path-style when an endpoint override (emulator, VPC endpoint URL) is set.
pub fn s3_client(config: &SdkConfig, metrics: &Arc<Metrics>) -> aws_sdk_s3::Client {
    let s3 = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(config.endpoint_url().is_some())
        .interceptor(RetryCounter(metrics.clone()))
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

/// An SQS client whose attempt timeout leaves room for a long poll of `wait_secs`.
pub fn sqs_client(
    config: &SdkConfig,
    wait_secs: u64,
    metrics: &Arc<Metrics>,
) -> aws_sdk_sqs::Client {
    let attempt = Duration::from_secs(wait_secs) + ATTEMPT_TIMEOUT;
    let sqs = aws_sdk_sqs::config::Builder::from(config)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(attempt)
                .operation_timeout(attempt * MAX_ATTEMPTS)
                .build(),
        )
        .interceptor(RetryCounter(metrics.clone()))
        .build();
    aws_sdk_sqs::Client::from_conf(sqs)
}

/// An SNS client.
pub fn sns_client(config: &SdkConfig, metrics: &Arc<Metrics>) -> aws_sdk_sns::Client {
    let sns = aws_sdk_sns::config::Builder::from(config)
        .interceptor(RetryCounter(metrics.clone()))
        .build();
    aws_sdk_sns::Client::from_conf(sns)
}

/// A DynamoDB client.
pub fn dynamodb_client(config: &SdkConfig, metrics: &Arc<Metrics>) -> aws_sdk_dynamodb::Client {
    let ddb = aws_sdk_dynamodb::config::Builder::from(config)
        .interceptor(RetryCounter(metrics.clone()))
        .build();
    aws_sdk_dynamodb::Client::from_conf(ddb)
}

/// Counts the attempts the SDK's retry layer makes beyond the first, by operation: a rising
/// count is throttling or a flaky network before it becomes an outage.
struct RetryCounter(Arc<Metrics>);

impl std::fmt::Debug for RetryCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetryCounter")
    }
}

impl Intercept for RetryCounter {
    fn name(&self) -> &'static str {
        "trailwarden::RetryCounter"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if cfg
            .load::<RequestAttempts>()
            .is_some_and(|a| a.attempts() > 1)
        {
            let operation = cfg.load::<Metadata>().map_or("unknown", |m| m.name());
            self.0.retried(operation);
        }
        Ok(())
    }
}

/// Error codes AWS services use for throttling and passing faults.
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "KMS.ThrottlingException",
];

/// Describes a failed call. `what` names the call and its target, e.g.
/// `SNS Publish to arn:aws:sns:...:alerts`.
pub fn failed<E, R>(what: &str, err: &SdkError<E, R>) -> Failed
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: HttpStatus + std::fmt::Debug + 'static,
{
    let (code, transient, reason) = match err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status_code();
            let code = ctx.err().code().map(str::to_owned);
            let transient = status >= 500
                || status == 429
                || code
                    .as_deref()
                    .is_some_and(|c| TRANSIENT_CODES.contains(&c));
            let mut reason = match (&code, ctx.err().message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.clone(),
                (None, Some(message)) => message.to_owned(),
                (None, None) => format!("the service answered HTTP {status}"),
            };
            if code.is_none() || ctx.err().message().is_none() {
                let _ = write!(reason, " (HTTP {status})");
            }
            (code, transient, reason)
        }
        SdkError::TimeoutError(_) => (None, true, format!("timed out{}", causes(err))),
        SdkError::DispatchFailure(_) => (
            None,
            true,
            format!("the request could not be sent{}", causes(err)),
        ),
        SdkError::ResponseError(_) => (
            None,
            true,
            format!("the response could not be read{}", causes(err)),
        ),
        _ => (
            None,
            false,
            format!("the request could not be built{}", causes(err)),
        ),
    };
    Failed {
        code,
        transient,
        sentence: format!("{what} failed: {reason}"),
    }
}

/// `: cause: deeper cause` from an error's source chain, each message once. This is where a
/// reset connection, a refused port or the SDK's stalled-stream protection shows up.
pub fn causes(err: &(dyn StdError + 'static)) -> String {
    let mut out = String::new();
    let mut seen: Vec<String> = Vec::new();
    let mut next = err.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !seen.iter().any(|s| s.contains(&text)) {
            let _ = write!(out, ": {text}");
            seen.push(text);
        }
        next = e.source();
    }
    out
}

/// Access to the HTTP status of a raw response, so [`failed`] stays generic.
pub trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;

    fn service_error(status: u16, code: &str) -> SdkError<GetObjectError, Response> {
        let err = GetObjectError::generic(
            ErrorMetadata::builder()
                .code(code)
                .message("the message")
                .build(),
        );
        let raw = Response::new(
            StatusCode::try_from(status).expect("status"),
            SdkBody::empty(),
        );
        SdkError::service_error(err, raw)
    }

    #[test]
    fn service_errors_read_as_one_sentence() {
        let f = failed("S3 GetObject s3://b/k", &service_error(503, "SlowDown"));
        assert!(f.transient);
        assert_eq!(
            f.sentence,
            "S3 GetObject s3://b/k failed: SlowDown: the message"
        );
        let f = failed("S3 GetObject s3://b/k", &service_error(403, "AccessDenied"));
        assert!(!f.transient);
        assert_eq!(f.code.as_deref(), Some("AccessDenied"));
        let f = failed("x", &service_error(400, "ThrottlingException"));
        assert!(f.transient);
    }

    #[tokio::test]
    async fn sdk_retries_are_counted_by_operation() {
        // A closed loopback port: every attempt fails to connect, and the SDK retries.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "a", "b", None, None, "t",
            ))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(MAX_ATTEMPTS)
                    .with_initial_backoff(Duration::from_millis(1)),
            )
            .load()
            .await;
        let metrics = Metrics::new();
        let sqs = sqs_client(&sdk, 0, &metrics);
        let err = sqs
            .receive_message()
            .queue_url("http://127.0.0.1/q")
            .send()
            .await
            .expect_err("nothing listens");
        let f = failed("SQS ReceiveMessage", &err);
        assert!(
            f.transient && f.sentence.contains("could not be sent"),
            "{}",
            f.sentence
        );
        let text = metrics.encode();
        assert!(
            text.contains(&format!(
                "trailwarden_aws_retries_total{{operation=\"ReceiveMessage\"}} {}",
                MAX_ATTEMPTS - 1
            )),
            "{text}"
        );
    }

    #[test]
    fn network_failures_carry_their_cause() {
        let io = std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by peer",
        );
        let err: SdkError<GetObjectError, Response> = SdkError::timeout_error(io);
        let f = failed("SQS ReceiveMessage on q", &err);
        assert!(f.transient);
        assert!(
            f.sentence.contains("connection reset by peer"),
            "{}",
            f.sentence
        );
        assert!(!f.sentence.contains('{'), "no debug dumps: {}", f.sentence);
    }
}
