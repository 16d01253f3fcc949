//! Start-up: settings → AWS clients, and a check that the queue, the topic and the table exist
//! and are reachable with the task's permissions before the first poll.
//!
//! As Vector checks its sinks: a permanent misconfiguration (a resource that does not exist,
//! access denied, no region) stops start-up with one line naming the setting, instead of
//! failing every message into the dead-letter queue. A passing fault is retried for a while.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::Edges;
use super::account_names::{Directory, Organizations};
use crate::aws::{self, Edge, Fault};
use crate::clock::Clock;
use crate::config::Settings;
use crate::config::{OutputKind, OutputSettings, PAGERDUTY_EVENTS_URL};
use crate::finding::accounts::SharedAccountNames;
use crate::incidents::store::dynamo::DynamoStore;
use crate::incidents::store::memory::MemoryStore;
use crate::intake::s3::S3Objects;
use crate::intake::sqs::SqsQueue;
use crate::output::chatbot;
use crate::output::outbox::memory::MemoryOutbox;
use crate::output::outbox::{Outbox, Outputs};
use crate::output::pagerduty::{self, Events};
use crate::output::securityhub::{Home, Hub};
use crate::output::sns::{self, Topic};
use crate::output::{Output, Route};
use crate::posture::aws::{AwsAccount, AwsMembers};
use crate::telemetry::Metrics;

/// How long start-up retries a check that fails for a passing reason.
const CHECK_PATIENCE: Duration = Duration::from_secs(60);

/// Why the daemon cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting that cannot work: fix it (exit code 2).
    #[error("setting {setting}: {message}")]
    Setting {
        setting: &'static str,
        message: String,
    },
    /// The SDK's credential chain found no credentials in any of its sources (exit code 2):
    /// nothing will change by waiting.
    #[error("no AWS credentials found; looked in, in order: {SOURCES_TRIED}. {detail}")]
    NoCredentials { detail: String },
    /// A dependency stayed unreachable (exit code 1; the orchestrator retries).
    #[error("{0}")]
    Unavailable(String),
    /// Shutdown was requested during start-up.
    #[error("shutdown requested during start-up")]
    Shutdown,
}

/// The sources of aws-config's default credential chain, in the order it tries them
/// (`DefaultCredentialsChain`: environment, profile, web identity token, ECS container
/// endpoint, EC2 instance metadata).
pub const SOURCES_TRIED: &str = "environment variables (AWS_ACCESS_KEY_ID), \
the shared config and credentials files (AWS_PROFILE, AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE), \
a web identity token (AWS_WEB_IDENTITY_TOKEN_FILE), \
the ECS container credentials endpoint (a task role), \
EC2 instance metadata (an instance profile)";

/// Longest wait for the credential chain at start-up: IMDS and the ECS endpoint answer within
/// a second or two, or say no.
const CREDENTIALS_PATIENCE: Duration = Duration::from_secs(20);

/// Asks the credential chain once, so that missing credentials stop start-up at once, named,
/// instead of surfacing as every start-up check's failed signature after a minute of retries.
pub async fn check_credentials(sdk: &aws_config::SdkConfig) -> Result<(), StartError> {
    use aws_credential_types::provider::ProvideCredentials;
    use aws_credential_types::provider::error::CredentialsError;
    let Some(provider) = sdk.credentials_provider() else {
        return Err(StartError::NoCredentials {
            detail: "no credential provider is configured".into(),
        });
    };
    match tokio::time::timeout(CREDENTIALS_PATIENCE, provider.provide_credentials()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e @ CredentialsError::CredentialsNotLoaded(_))) => Err(StartError::NoCredentials {
            // The chain's own answer says why each source had none, one per line.
            detail: format!(
                "The chain answered: {}",
                describe(&e).replace(":\n ", ":").replace("\n ", ";")
            ),
        }),
        // A broken profile file, a role that cannot be assumed: a setting to fix.
        Ok(Err(e @ CredentialsError::InvalidConfiguration(_))) => Err(StartError::Setting {
            setting: "credentials",
            message: describe(&e),
        }),
        // STS or the ECS endpoint failing to answer: an outage, retried by the orchestrator.
        Ok(Err(e)) => Err(StartError::Unavailable(format!(
            "cannot load AWS credentials: {}",
            describe(&e)
        ))),
        Err(_) => Err(StartError::Unavailable(format!(
            "the AWS credential chain did not answer within {} s",
            CREDENTIALS_PATIENCE.as_secs()
        ))),
    }
}

/// An error with its causes, each once.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    format!("{e}{}", aws::causes(e))
}

/// Builds the AWS edges from the settings and checks each one.
pub async fn connect(
    settings: &Settings,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
) -> Result<Edges, StartError> {
    let sdk = aws::sdk_config(settings.region.as_deref(), settings.endpoint_url.as_deref()).await;
    if sdk.region().is_none() {
        return Err(StartError::Setting {
            setting: "region",
            message: "no AWS region is set: set region (TRAILWARDEN_REGION) or AWS_REGION".into(),
        });
    }
    check_credentials(&sdk).await?;
    let queue = SqsQueue::new(
        aws::sqs_client(&sdk, settings.wait_time_secs, metrics),
        settings.queue_url.clone(),
        settings.wait_time_secs,
        metrics.clone(),
    );
    check("queue_url", shutdown, || queue.check()).await?;
    // The settings' names serve at once; Organizations' join them when listed.
    let names = SharedAccountNames::new(settings.account_names());
    let mut routes = Vec::new();
    for o in settings.all_outputs() {
        let output = output(&sdk, o.clone(), metrics, shutdown).await?;
        check_output(&o, shutdown, output.as_ref()).await?;
        routes.push(Arc::new(Route::new(&o, settings.min_level, output)));
    }
    let (store, outbox): (Arc<dyn crate::incidents::store::Store>, Arc<dyn Outbox>) =
        match &settings.state_table {
            Some(table) => {
                let store = DynamoStore::new(
                    aws::dynamodb_client(&sdk, metrics),
                    table.clone(),
                    metrics.clone(),
                );
                check("state_table", shutdown, || store.check()).await?;
                let store = Arc::new(store);
                (store.clone(), store)
            }
            None => (Arc::new(MemoryStore::new()), Arc::new(MemoryOutbox::new())),
        };
    let outputs = Outputs::new(routes, outbox);
    let clock = Clock::system();
    Ok(Edges {
        queue: Arc::new(queue),
        objects: Arc::new(S3Objects::new(
            aws::s3_client(&sdk, metrics),
            metrics.clone(),
        )),
        store,
        sink: Arc::new(outputs.sink(clock.clone())),
        outputs,
        // The audit's reads are checked by the audit itself: a refused one makes its checks
        // could-not-check, named by the permission to grant.
        account: settings
            .posture
            .then(|| Arc::new(AwsAccount::new(&sdk)) as Arc<dyn crate::posture::AccountView>),
        // Organization mode: ListAccounts and AssumeRole are refused or not at each audit,
        // and a refusal is that audit's warning or that account's finding.
        members: settings
            .member_role()
            .filter(|_| settings.posture)
            .map(|role| {
                Arc::new(AwsMembers::new(
                    &sdk,
                    role,
                    settings.audit_external_id.clone(),
                )) as Arc<dyn crate::posture::organization::Members>
            }),
        clock,
        names,
        // A refused or failed listing is logged and retried; alerts show ids meanwhile.
        directory: settings.account_names_from_organizations.then(|| {
            Arc::new(Organizations(aws_sdk_organizations::Client::new(&sdk))) as Arc<dyn Directory>
        }),
    })
}

/// One output's transport, as its settings describe it.
async fn output(
    sdk: &aws_config::SdkConfig,
    o: OutputSettings,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
) -> Result<Arc<dyn Output>, StartError> {
    let topic = |render: sns::Renderer| -> Arc<dyn Output> {
        Arc::new(Topic::new(
            aws::sns_client(sdk, metrics),
            o.topic_arn.clone().unwrap_or_default(),
            metrics.clone(),
            render,
        ))
    };
    Ok(match o.kind {
        OutputKind::Sns => topic(sns::render),
        OutputKind::Chatbot => topic(chatbot::render),
        OutputKind::Pagerduty => {
            // Read once: a rotated key takes effect at the next start, as a changed setting
            // does. An unreadable secret stops start-up naming the output; an outage of
            // Secrets Manager or SSM is waited out as any start-up check is.
            let at = o.routing_key.clone().unwrap_or_default();
            let key = check("outputs", shutdown, || {
                pagerduty::routing_key(sdk, &at, metrics)
            })
            .await
            .map_err(|e| naming(&o, e))?;
            let url = o
                .events_url
                .clone()
                .unwrap_or_else(|| PAGERDUTY_EVENTS_URL.to_owned());
            Arc::new(Events::new(url, key))
        }
        OutputKind::Securityhub => {
            // Findings are imported into the task's own account (the only one the default
            // product accepts them for), so that account is looked up once, here.
            let sts = aws_sdk_sts::Client::new(sdk);
            let caller = check("outputs", shutdown, || aws::caller(&sts, Edge::Sink))
                .await
                .map_err(|e| naming(&o, e))?;
            let home = Home {
                account: caller.account,
                region: sdk.region().map(|r| r.to_string()).unwrap_or_default(),
                partition: caller.partition,
            };
            Arc::new(Hub::new(sdk, home, metrics))
        }
    })
}

/// Checks an output at start-up; a failure names the output.
async fn check_output(
    o: &OutputSettings,
    shutdown: &CancellationToken,
    output: &dyn Output,
) -> Result<(), StartError> {
    // The legacy topic keeps its own setting's name in the message.
    let setting = if o.name == "sns" && o.kind == OutputKind::Sns {
        "topic_arn"
    } else {
        "outputs"
    };
    check(setting, shutdown, || output.check())
        .await
        .map_err(|e| naming(o, e))
}

/// A start-up error about an output, naming it.
fn naming(o: &OutputSettings, e: StartError) -> StartError {
    match e {
        StartError::Setting { setting, message } => StartError::Setting {
            setting,
            message: format!("output {:?} ({}): {message}", o.name, o.kind.as_str()),
        },
        StartError::Unavailable(m) => {
            StartError::Unavailable(format!("output {:?} ({}): {m}", o.name, o.kind.as_str()))
        }
        other => other,
    }
}

/// Runs one check (or a start-up read), retrying passing faults for [`CHECK_PATIENCE`].
async fn check<T, F, Fut>(
    setting: &'static str,
    shutdown: &CancellationToken,
    call: F,
) -> Result<T, StartError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, aws::Failed>>,
{
    let deadline = tokio::time::Instant::now() + CHECK_PATIENCE;
    let mut retry = aws::backoff(Duration::from_secs(1), Duration::from_secs(15));
    loop {
        let failed = match call().await {
            Ok(value) => return Ok(value),
            Err(f) => f,
        };
        // The failure table decides: only an outage is worth waiting for at start-up. A missing
        // or forbidden queue, topic or table (Fault::Setting) is a misconfiguration here, even
        // though running tasks hold their work through the same answer: they must not drop
        // pages while it is fixed, but a new task should not start against it.
        if failed.fault != Fault::Outage {
            return Err(StartError::Setting {
                setting,
                message: format!(
                    "{}; this is a misconfiguration, not an outage: fix the setting or the resource (tasks already running hold their work until it answers)",
                    failed.sentence
                ),
            });
        }
        let wait = aws::next_wait(&mut retry);
        if tokio::time::Instant::now() + wait > deadline {
            return Err(StartError::Unavailable(failed.sentence));
        }
        warn!(setting, error = %failed.sentence, retry_in_ms = wait.as_millis() as u64, "start-up check failed; retrying");
        tokio::select! {
            _ = shutdown.cancelled() => return Err(StartError::Shutdown),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
