//! AWS at the edge: SDK clients with timeouts and the SDK's retry configuration (the only retry
//! layer for a single call), and the one place a failed call is described and its cause found.
//!
//! Credentials and region come from aws-config's default chain (the ECS task role in
//! production). `endpoint_url` points every client at an emulator; S3 then needs path-style
//! addressing because `bucket.127.0.0.1` does not resolve.

pub mod signed;

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::time::Duration;

use std::sync::Arc;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_async::rt::sleep::{SharedAsyncSleep, TokioSleep};
use aws_smithy_http_client::{Connector, proxy::ProxyConfig, tls};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, Metadata};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::retry::ProvideErrorKind;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

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
/// Attempts per call of a paced client: a paced reader is slow on purpose, and a throttled
/// call (another reader sharing the account's limit) is worth waiting for rather than losing
/// the rest of the read.
const PACED_ATTEMPTS: u32 = 8;
/// Longest wait between a paced client's attempts.
const PACED_MAX_BACKOFF: Duration = Duration::from_secs(20);
/// Longest wait for a paced call including its retries: the backoffs of [`PACED_ATTEMPTS`]
/// (1, 2, 4, 8, 16 s and then 20 s, each jittered) and the attempts themselves.
const PACED_OPERATION_TIMEOUT: Duration = Duration::from_secs(180);

/// Where a call was made. The same answer means different things at different edges: a
/// missing log object is nothing to read, a missing topic is a setting to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// Log records: S3 log objects (GetObject, ListObjectsV2) and CloudTrail's event history
    /// (LookupEvents).
    Object,
    /// The SQS queue work arrives on.
    Queue,
    /// An output that pages go to (the SNS topic, PagerDuty's Events API), and where an
    /// output's credential is kept (the PagerDuty routing key's secret or parameter).
    Sink,
    /// The shared state table.
    Store,
    /// The account settings the posture audit reads (IAM, CloudTrail, IAM Access Analyzer,
    /// Organizations, STS).
    Posture,
}

/// What a service's answer says, read from the SDK's own error kinds: its retry
/// classification, its throttling and transient codes, and the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Throttling, 5xx, a timeout, a broken connection: it will answer again.
    Unavailable,
    /// The thing asked for does not exist (404, `NoSuch*`, `*NotFound*`).
    Missing,
    /// Credentials or permissions refused the call (401, 403, `AccessDenied*`, KMS refusals).
    Denied,
    /// The request itself was refused as wrong (any other 4xx), or could not be built.
    Invalid,
}

/// What a failed call means for the work that made it: the only input to ack, hold, hand
/// back or exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A dependency is unavailable: hold the work, retry with backoff, receive nothing new.
    Outage,
    /// This work itself was refused; trying it again the same way fails the same way: hand the
    /// message back, and after maxReceiveCount it reaches the dead-letter queue.
    Rejected,
    /// What the work names is gone (a log object deleted or expired): nothing is left to do.
    Gone,
    /// A setting that cannot work as set (a missing or forbidden queue, topic or table): at
    /// start-up the daemon exits 2 naming it; while running, work is held as in an outage,
    /// because a page must never be dropped while an operator fixes it.
    Setting,
}

impl Edge {
    /// The one table: what an answer at this edge means for the work.
    pub fn fault(self, answer: Answer) -> Fault {
        match (self, answer) {
            // The dependency will answer again and the work is fine: wait it out.
            (_, Answer::Unavailable) => Fault::Outage,
            // A log object deleted or expired before it was read: waiting will not bring it
            // back, and the notification is stale.
            (Edge::Object, Answer::Missing) => Fault::Gone,
            // This object may not be read (a bucket policy, its KMS key) or cannot be (archived):
            // other objects can, so only the message naming it is refused, to reach the DLQ where
            // an operator sees it.
            (Edge::Object, Answer::Denied | Answer::Invalid) => Fault::Rejected,
            // The queue, topic or table that every message needs is missing or forbidden: no
            // message can succeed until someone fixes it, so no message is blamed for it.
            (Edge::Queue | Edge::Sink | Edge::Store, Answer::Missing | Answer::Denied) => {
                Fault::Setting
            }
            // The service refused this request as malformed (a message or an item too large):
            // the same work fails the same way every time.
            (Edge::Queue | Edge::Sink | Edge::Store, Answer::Invalid) => Fault::Rejected,
            // The audit's role lacks a permission: an operator grants it; until then the
            // checks that need it are could-not-check and the others still run.
            (Edge::Posture, Answer::Denied) => Fault::Setting,
            // What the audit listed went away before it was read (a trail deleted between
            // DescribeTrails and GetTrailStatus): there is nothing left to check.
            (Edge::Posture, Answer::Missing) => Fault::Gone,
            // The same read fails the same way until something changes.
            (Edge::Posture, Answer::Invalid) => Fault::Rejected,
        }
    }
}

/// A failed AWS call, described and classified once.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{sentence}")]
pub struct Failed {
    /// The AWS error code, when the service answered.
    pub code: Option<String>,
    /// What the service's answer says.
    pub answer: Answer,
    /// What it means for the work, from [`Edge::fault`].
    pub fault: Fault,
    /// Whether the request may have been carried out although no answer said so (the
    /// response was lost or timed out, or a 5xx came back): a publish may have gone out.
    pub ambiguous: bool,
    /// One readable sentence: what was called on what, and why it failed, with the cause.
    pub sentence: String,
}

impl Failed {
    /// A failure that is not an SDK error (a batch entry, an unprocessed item, a check of
    /// what a call returned), classified by the same table.
    pub fn new(edge: Edge, answer: Answer, sentence: String) -> Failed {
        Failed {
            code: None,
            answer,
            fault: edge.fault(answer),
            ambiguous: false,
            sentence,
        }
    }

    /// The same failure, marked as one whose request may have been carried out (or not).
    pub fn maybe_done(mut self, ambiguous: bool) -> Failed {
        self.ambiguous = ambiguous;
        self
    }

    /// Whether waiting may help: an outage, or a setting someone may fix.
    pub fn is_transient(&self) -> bool {
        self.answer == Answer::Unavailable
    }
}

/// The one backoff for the retries the SDK does not make (held work, receives, start-up checks,
/// unprocessed batch items): waits doubling from `first` up to `max`, each stretched by a
/// random share of up to itself, so tasks that failed together do not retry together.
pub fn backoff(first: Duration, max: Duration) -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(first)
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
}

/// The next wait of `backoff`, which never runs out.
pub fn next_wait(backoff: &mut ExponentialBackoff) -> Duration {
    backoff.next().unwrap_or(Duration::from_secs(1))
}

/// Loads the shared SDK configuration with the daemon's timeouts and retry policy.
pub async fn sdk_config(region: Option<&str>, endpoint_url: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
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

/// A CloudTrail client for `region` that starts at most one HTTP request per `every`, the
/// SDK's retries included, for an API with a per-region call rate limit (LookupEvents: 2 per
/// second). Pacing the requests themselves, rather than the calls, keeps a retried attempt
/// inside the limit too; a ThrottlingException is still retried by the SDK's standard retry,
/// with more attempts than other clients.
pub fn cloudtrail_paced_client(
    config: &SdkConfig,
    region: &str,
    every: Duration,
) -> aws_sdk_cloudtrail::Client {
    let conf = aws_sdk_cloudtrail::config::Builder::from(config)
        .region(aws_config::Region::new(region.to_owned()))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(PACED_ATTEMPTS)
                .with_max_backoff(PACED_MAX_BACKOFF),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(PACED_OPERATION_TIMEOUT)
                .build(),
        )
        .http_client(Paced {
            pacer: Arc::new(Pacer::new(every)),
            inner: https_client(),
        })
        .build();
    aws_sdk_cloudtrail::Client::from_conf(conf)
}

/// Spaces the starts of calls at least `every` apart, in the order they ask, on tokio's clock
/// (so a test with paused time can check it).
#[derive(Debug)]
pub struct Pacer {
    every: Duration,
    /// The earliest start of the next call.
    next: std::sync::Mutex<tokio::time::Instant>,
}

impl Pacer {
    pub fn new(every: Duration) -> Pacer {
        Pacer {
            every,
            next: std::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// Waits for this call's turn.
    pub async fn wait(&self) {
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let at = (*next).max(tokio::time::Instant::now());
            *next = at + self.every;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// The HTTPS client of every AWS call: the SDK's own hyper client, on rustls with ring, with
/// the environment's proxy settings (`HTTPS_PROXY`, `NO_PROXY`), as the SDK's default client
/// has them. Ring rather than the default aws-lc: the SDK crates are built without their
/// default client, because aws-lc's C build was one of the longest steps of a cold release
/// build, and nothing here needs what it adds (FIPS, post-quantum key exchange).
pub fn https_client() -> SharedHttpClient {
    // The SDK's own default client is built with this (documented-hidden) builder function;
    // it caches one connector, so one connection pool, per distinct connector settings.
    aws_smithy_http_client::Builder::new().build_with_connector_fn(|settings, components| {
        connector(settings, components.and_then(|c| c.sleep_impl()))
    })
}

/// A connector like [`https_client`]'s, for the plain HTTPS calls made outside an SDK client
/// (PagerDuty's Events API, AWS's ip-ranges.json).
pub fn https_connector(settings: &HttpConnectorSettings) -> SharedHttpConnector {
    SharedHttpConnector::new(connector(
        Some(settings),
        Some(SharedAsyncSleep::new(TokioSleep::new())),
    ))
}

fn connector(
    settings: Option<&HttpConnectorSettings>,
    sleep: Option<SharedAsyncSleep>,
) -> Connector {
    let mut builder = Connector::builder().tls_provider(tls::Provider::Rustls(
        tls::rustls_provider::CryptoMode::Ring,
    ));
    builder.set_connector_settings(settings.cloned());
    builder.set_sleep_impl(sleep);
    builder.set_proxy_config(Some(ProxyConfig::from_env()));
    builder.build()
}

/// What a plain HTTPS call got back: its status, headers and body, the body cut at the
/// caller's cap.
pub struct Reply {
    pub status: u16,
    pub headers: aws_smithy_runtime_api::http::Headers,
    pub body: Vec<u8>,
    /// Why the body is not whole (it broke off, or passed the cap); `None` when it is.
    pub cut: Option<String>,
}

/// Sends `request` through `connector` and reads the reply, at most `max_body` bytes of its
/// body, within `timeout`: the one exchange of the plain HTTPS calls (PagerDuty's Events API,
/// [`signed`] AWS calls). No reply at all is a failure at `edge`, as [`unanswered`] or a
/// timeout; what the reply means is the caller's to say.
pub async fn exchange(
    connector: &SharedHttpConnector,
    request: HttpRequest,
    edge: Edge,
    what: &str,
    timeout: Duration,
    max_body: usize,
) -> Result<Reply, Failed> {
    let call = async {
        let response = connector
            .call(request)
            .await
            .map_err(|e| unanswered(edge, what, &e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut stream = aws_smithy_types::byte_stream::ByteStream::new(response.into_body());
        let (mut body, mut cut) = (Vec::new(), None);
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(e) => {
                    cut = Some(format!("it broke off: {e}{}", causes(&e)));
                    break;
                }
            }
            if body.len() > max_body {
                body.truncate(max_body);
                cut = Some(format!("it is longer than {max_body} bytes"));
                break;
            }
        }
        Ok(Reply {
            status,
            headers,
            body,
            cut,
        })
    };
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| {
            Err(Failed::new(
                edge,
                Answer::Unavailable,
                format!("{what} failed: no answer within {} s", timeout.as_secs()),
            )
            .maybe_done(true))
        })
}

/// [`https_client`], its every request waiting for the [`Pacer`] first.
#[derive(Debug)]
struct Paced {
    pacer: Arc<Pacer>,
    inner: SharedHttpClient,
}

impl HttpClient for Paced {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(PacedConnector {
            inner: self.inner.http_connector(settings, components),
            pacer: self.pacer.clone(),
        })
    }
}

#[derive(Debug)]
struct PacedConnector {
    inner: SharedHttpConnector,
    pacer: Arc<Pacer>,
}

impl HttpConnector for PacedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (inner, pacer) = (self.inner.clone(), self.pacer.clone());
        HttpConnectorFuture::new(async move {
            pacer.wait().await;
            inner.call(request).await
        })
    }
}

/// Whose credentials these are: the account and partition of sts GetCallerIdentity's caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub account: String,
    /// `aws`, `aws-cn` or `aws-us-gov`: the second field of the caller's ARN.
    pub partition: String,
}

/// Asks sts GetCallerIdentity whose credentials these are; a failure is classified at `edge`.
pub async fn caller(sts: &aws_sdk_sts::Client, edge: Edge) -> Result<Caller, Failed> {
    const ACTION: &str = "sts:GetCallerIdentity";
    let out = sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| failed(edge, ACTION, &e))?;
    let account = out.account().map(str::to_owned).ok_or_else(|| {
        Failed::new(
            edge,
            Answer::Invalid,
            format!("{ACTION} answered without an account id"),
        )
    })?;
    let partition = out
        .arn()
        .and_then(|arn| arn.split(':').nth(1))
        .filter(|p| !p.is_empty())
        .unwrap_or("aws")
        .to_owned();
    Ok(Caller { account, partition })
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

/// How a service's error code reads, where the status alone does not say.
fn answer_of_code(code: &str) -> Option<Answer> {
    // The SDK's own lists of throttling and transient codes, which its retry layer uses, and
    // the services' own spellings of throttling (SNS's KMSThrottling).
    let bare = code.rsplit('.').next().unwrap_or(code);
    if THROTTLING_ERRORS.contains(&code)
        || TRANSIENT_ERRORS.contains(&code)
        || bare.contains("Throttl")
    {
        return Some(Answer::Unavailable);
    }
    // AWS spells "not found" per service: NoSuchKey, NoSuchBucket, NotFound,
    // ResourceNotFoundException, AWS.SimpleQueueService.NonExistentQueue.
    if bare.starts_with("NoSuch") || bare.contains("NotFound") || bare.starts_with("NonExistent") {
        return Some(Answer::Missing);
    }
    // Access and credential refusals, including KMS's for an SSE-KMS object or topic.
    if bare.contains("AccessDenied")
        || bare.contains("Unauthorized")
        || bare.starts_with("AuthorizationError")
        || bare.starts_with("InvalidClientTokenId")
        || bare.starts_with("ExpiredToken")
        || bare.starts_with("Disabled")
        || bare.starts_with("InvalidSecurity")
        // SNS's refusals for the topic's KMS key (KMSDisabled, KMSInvalidState,
        // KMSOptInRequired, ...): the key, not the message, must be fixed.
        || code.starts_with("KMS")
    {
        return Some(Answer::Denied);
    }
    None
}

/// What every SDK operation error provides: its code and message, and the SDK's retry
/// classification.
pub trait OperationError: ProvideErrorMetadata + ProvideErrorKind + StdError + 'static {}

impl<E: ProvideErrorMetadata + ProvideErrorKind + StdError + 'static> OperationError for E {}

/// Describes and classifies a failed call made at `edge`. `what` names the call and its
/// target, e.g. `SNS Publish to arn:aws:sns:...:alerts`.
pub fn failed<E, R>(edge: Edge, what: &str, err: &SdkError<E, R>) -> Failed
where
    E: OperationError,
    R: HttpStatus + std::fmt::Debug + 'static,
{
    let (answer, ambiguous, reason) = match err {
        SdkError::ServiceError(ctx) => {
            let e = ctx.err();
            return answered(
                edge,
                what,
                ctx.raw().status_code(),
                ProvideErrorMetadata::code(e),
                ProvideErrorMetadata::message(e),
                e.retryable_error_kind().is_some(),
            );
        }
        // The request may have arrived and been carried out, its answer lost.
        SdkError::TimeoutError(_) => (
            Answer::Unavailable,
            true,
            format!("timed out{}", causes(err)),
        ),
        SdkError::ResponseError(_) => (
            Answer::Unavailable,
            true,
            format!("the response could not be read{}", causes(err)),
        ),
        // The SDK documents that a request that failed in dispatch may have been sent; only a
        // connection that was never made is sure not to have been.
        SdkError::DispatchFailure(d) => (
            Answer::Unavailable,
            !d.is_timeout() && !causes(err).contains("onnect"),
            format!("the request could not be sent{}", causes(err)),
        ),
        _ => (
            Answer::Invalid,
            false,
            format!("the request could not be built{}", causes(err)),
        ),
    };
    Failed::new(edge, answer, format!("{what} failed: {reason}")).maybe_done(ambiguous)
}

/// Describes and classifies a service's error answer at `edge`: its HTTP status, its error
/// code and message, and whether the SDK's retry layer counts it as retryable.
pub fn answered(
    edge: Edge,
    what: &str,
    status: u16,
    code: Option<&str>,
    message: Option<&str>,
    retryable: bool,
) -> Failed {
    let answer = if retryable || status == 429 || status >= 500 {
        Answer::Unavailable
    } else if let Some(answer) = code.and_then(answer_of_code) {
        answer
    } else {
        match status {
            404 => Answer::Missing,
            401 | 403 => Answer::Denied,
            _ => Answer::Invalid,
        }
    };
    let mut reason = match (code, message) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        (None, Some(message)) => message.to_owned(),
        (None, None) => format!("the service answered HTTP {status}"),
    };
    // The status adds to a bare code or message; a bare status is already the reason.
    if code.is_some() != message.is_some() {
        let _ = write!(reason, " (HTTP {status})");
    }
    Failed {
        code: code.map(str::to_owned),
        answer,
        fault: edge.fault(answer),
        // A 5xx may come after the work was done (AWS documents InternalError as "may have
        // succeeded"); throttling means it was not.
        ambiguous: status >= 500,
        sentence: format!("{what} failed: {reason}"),
    }
}

/// Describes and classifies a plain HTTP call that got no answer: outside an SDK client, a
/// connector's error is all there is. Only a connection that was never made is sure not to
/// have carried the request.
pub fn unanswered(edge: Edge, what: &str, err: &ConnectorError) -> Failed {
    let why = if err.is_timeout() {
        format!("timed out{}", causes(err))
    } else {
        format!("the request could not be sent: {err}{}", causes(err))
    };
    Failed::new(edge, Answer::Unavailable, format!("{what} failed: {why}"))
        .maybe_done(!not_sent(err))
}

/// Whether a failed request never left this host: the connection was not made (refused,
/// unreachable, no DNS answer). Anything later may have carried it.
fn not_sent(err: &(dyn StdError + 'static)) -> bool {
    // hyper-util reports a failed connection as `client error (Connect)` over the connector's
    // `tcp connect error` / `dns error`; the SDK's connector keeps that chain as the source.
    let chain = format!("{err}{}", causes(err));
    chain.contains("(Connect)") || chain.contains("connect error") || chain.contains("dns error")
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
        let f = failed(
            Edge::Object,
            "S3 GetObject s3://b/k",
            &service_error(503, "SlowDown"),
        );
        assert_eq!((f.answer, f.fault), (Answer::Unavailable, Fault::Outage));
        assert_eq!(
            f.sentence,
            "S3 GetObject s3://b/k failed: SlowDown: the message"
        );
        let bare = SdkError::service_error(
            GetObjectError::generic(ErrorMetadata::builder().build()),
            Response::new(StatusCode::try_from(500).expect("status"), SdkBody::empty()),
        );
        assert_eq!(
            failed(Edge::Posture, "access-analyzer:ListAnalyzers", &bare).sentence,
            "access-analyzer:ListAnalyzers failed: the service answered HTTP 500"
        );
        let f = failed(Edge::Object, "x", &service_error(403, "AccessDenied"));
        assert_eq!((f.answer, f.fault), (Answer::Denied, Fault::Rejected));
        assert_eq!(f.code.as_deref(), Some("AccessDenied"));
        let f = failed(Edge::Sink, "x", &service_error(400, "ThrottlingException"));
        assert_eq!((f.answer, f.fault), (Answer::Unavailable, Fault::Outage));
        assert!(!f.ambiguous, "throttled means not done");
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_cap() {
        let mut b = backoff(Duration::from_secs(1), Duration::from_secs(8));
        let waits: Vec<Duration> = (0..6).map(|_| next_wait(&mut b)).collect();
        for (wait, base) in waits.iter().zip([1, 2, 4, 8, 8, 8]) {
            let base = Duration::from_secs(base);
            assert!(*wait >= base && *wait < base * 2, "{waits:?}");
        }
    }

    #[test]
    fn the_table_decides_by_edge() {
        let at = |edge, status, code| failed(edge, "x", &service_error(status, code)).fault;
        // A missing object is stale work; a missing topic, queue or table is a setting.
        assert_eq!(at(Edge::Object, 404, "NoSuchKey"), Fault::Gone);
        assert_eq!(at(Edge::Sink, 404, "NotFound"), Fault::Setting);
        assert_eq!(
            at(Edge::Queue, 400, "AWS.SimpleQueueService.NonExistentQueue"),
            Fault::Setting
        );
        assert_eq!(
            at(Edge::Store, 400, "ResourceNotFoundException"),
            Fault::Setting
        );
        assert_eq!(at(Edge::Sink, 403, "AuthorizationError"), Fault::Setting);
        assert_eq!(at(Edge::Sink, 400, "KMSDisabled"), Fault::Setting);
        assert_eq!(at(Edge::Sink, 400, "KMSInvalidState"), Fault::Setting);
        assert_eq!(at(Edge::Sink, 400, "KMSThrottling"), Fault::Outage);
        assert_eq!(
            at(Edge::Object, 400, "KMS.ThrottlingException"),
            Fault::Outage
        );
        // The request itself is wrong: only this work fails.
        assert_eq!(at(Edge::Sink, 400, "InvalidParameter"), Fault::Rejected);
        assert_eq!(at(Edge::Store, 400, "ValidationException"), Fault::Rejected);
        assert_eq!(at(Edge::Object, 403, "InvalidObjectState"), Fault::Rejected);
        // Unknown codes fall back on the status, at every edge alike.
        assert_eq!(at(Edge::Object, 400, "SomethingNew"), Fault::Rejected);
        assert_eq!(at(Edge::Sink, 400, "SomethingNew"), Fault::Rejected);
        assert_eq!(at(Edge::Object, 502, "SomethingNew"), Fault::Outage);
        assert_eq!(at(Edge::Sink, 502, "SomethingNew"), Fault::Outage);
        assert!(failed(Edge::Sink, "x", &service_error(500, "InternalError")).ambiguous);
        // The audit: a missing permission is a setting, IAM's throttling an outage.
        assert_eq!(at(Edge::Posture, 403, "AccessDenied"), Fault::Setting);
        assert_eq!(
            at(Edge::Posture, 400, "AccessDeniedException"),
            Fault::Setting
        );
        assert_eq!(at(Edge::Posture, 400, "Throttling"), Fault::Outage);
        assert_eq!(at(Edge::Posture, 404, "NoSuchEntity"), Fault::Gone);
    }

    #[tokio::test]
    async fn sdk_retries_are_counted_by_operation() {
        // A closed loopback port: every attempt fails to connect, and the SDK retries.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .http_client(https_client())
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
        let f = failed(Edge::Queue, "SQS ReceiveMessage", &err);
        assert!(
            f.fault == Fault::Outage && f.sentence.contains("could not be sent"),
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

    #[tokio::test(start_paused = true)]
    async fn a_pacer_spaces_call_starts() {
        let pacer = Arc::new(Pacer::new(Duration::from_millis(500)));
        let start = tokio::time::Instant::now();
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let pacer = pacer.clone();
            calls.spawn(async move {
                pacer.wait().await;
                tokio::time::Instant::now()
            });
        }
        let mut starts: Vec<Duration> = calls
            .join_all()
            .await
            .into_iter()
            .map(|t| t - start)
            .collect();
        starts.sort();
        assert_eq!(
            starts,
            [0, 500, 1000, 1500].map(Duration::from_millis),
            "four calls at once start 500 ms apart"
        );
        // After a pause longer than the pace, the next call goes at once.
        tokio::time::advance(Duration::from_secs(5)).await;
        let before = tokio::time::Instant::now();
        pacer.wait().await;
        assert_eq!(tokio::time::Instant::now(), before);
    }

    #[test]
    fn network_failures_carry_their_cause() {
        let io = std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by peer",
        );
        let err: SdkError<GetObjectError, Response> = SdkError::timeout_error(io);
        let f = failed(Edge::Queue, "SQS ReceiveMessage on q", &err);
        assert_eq!(f.fault, Fault::Outage);
        assert!(f.ambiguous, "a timed-out request may have been carried out");
        assert!(
            f.sentence.contains("connection reset by peer"),
            "{}",
            f.sentence
        );
        assert!(!f.sentence.contains('{'), "no debug dumps: {}", f.sentence);
    }
}
