//! Test support: a real moto server on a free loopback port, AWS clients pointed at it, the
//! trailwarden binary as a separate process, and CloudTrail record builders.
//!
//! moto is a real HTTP implementation of S3, SQS and SNS: the SDK signs and sends real
//! requests to it. If `moto_server` cannot be found or started, tests fail; they never skip.

#![allow(dead_code)]

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};

pub const ACCOUNT: &str = "123456789012";

/// A benchmark's setting from the environment, or its default.
pub fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A free port on 127.0.0.1 (bound, then released for the child to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The moto server to run: `MOTO_SERVER`, else `.venv/bin/moto_server`, else one on `PATH`,
/// else one installed into `.venv` now by tests/bootstrap_moto.py (with only python3 on the
/// machine). Installing is done once, under a file lock, whatever runs tests in parallel.
fn moto_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Ok(p) = std::env::var("MOTO_SERVER") {
                return PathBuf::from(p);
            }
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            let venv = root.join(".venv/bin/moto_server");
            if venv.exists() {
                return venv;
            }
            let on_path = std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join("moto_server"))
                    .find(|p| p.is_file())
            });
            if let Some(p) = on_path {
                return p;
            }
            let lock = std::fs::File::create(
                PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("moto-install.lock"),
            )
            .expect("lock file for the moto install");
            lock.lock().expect("lock the moto install");
            if !venv.exists() {
                eprintln!("installing moto server into .venv (tests/bootstrap_moto.py)");
                let status = Command::new("python3")
                    .arg(root.join("tests/bootstrap_moto.py"))
                    .status()
                    .unwrap_or_else(|e| panic!("cannot run python3 to install moto server: {e}"));
                assert!(
                    status.success() && venv.exists(),
                    "tests/bootstrap_moto.py could not install moto server ({status}); the AWS \
                     tests need it. Install it with `pip install 'moto[server]'` or set MOTO_SERVER."
                );
            }
            venv
        })
        .clone()
}

/// A moto server child process, killed on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        Moto::start_with(&[])
    }

    /// A moto server with extra environment, e.g. `MOTO_IAM_LOAD_MANAGED_POLICIES=true`.
    pub fn start_with(env: &[(&str, &str)]) -> Moto {
        let port = free_port();
        let bin = moto_binary();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start moto server ({}): {e}. Install it with `pip install 'moto[server]'` \
                     (bash .ci/run does this in .venv) or set MOTO_SERVER.",
                    bin.display()
                )
            });
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                let _ = s.write_all(b"GET /moto-api/ HTTP/1.0\r\n\r\n");
                break;
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto server exited at start-up with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "moto server did not listen on {addr} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// SDK configuration for the test's own clients.
    pub async fn sdk(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .http_client(trailwarden::aws::https_client())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .load()
            .await
    }

    /// An SDK configuration whose credentials moto ties to `account`: moto scopes every
    /// resource to the account of the credentials that made it, and an assumed role's
    /// credentials are its account's.
    pub async fn sdk_in(&self, account: &str) -> SdkConfig {
        let sdk = self.sdk().await;
        let c = aws_sdk_sts::Client::new(&sdk)
            .assume_role()
            .role_arn(format!("arn:aws:iam::{account}:role/setup"))
            .role_session_name("setup")
            .send()
            .await
            .expect("assume role")
            .credentials
            .expect("credentials");
        sdk.to_builder()
            .credentials_provider(aws_sdk_sts::config::SharedCredentialsProvider::new(
                aws_sdk_sts::config::Credentials::new(
                    c.access_key_id,
                    c.secret_access_key,
                    Some(c.session_token),
                    None,
                    "setup",
                ),
            ))
            .build()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The AWS resources of one test: a trail bucket notifying a queue (with a DLQ), and an SNS
/// topic with an SQS subscription where alerts arrive.
pub struct Stack {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
    pub ddb: aws_sdk_dynamodb::Client,
    pub bucket: String,
    pub queue_url: String,
    pub dlq_url: String,
    pub topic_arn: String,
    pub alerts_url: String,
}

/// A path-style S3 client of `sdk` (moto's `127.0.0.1` has no bucket subdomains), with the
/// bucket `name` created.
pub async fn bucket(sdk: &SdkConfig, name: &str) -> aws_sdk_s3::Client {
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket()
        .bucket(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket {name}: {e:?}"));
    s3
}

impl Stack {
    pub async fn create(moto: &Moto, max_receive_count: u32) -> Stack {
        let sdk = moto.sdk().await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let sns = aws_sdk_sns::Client::new(&sdk);
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        let bucket = "trail-bucket".to_owned();
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("create bucket");

        let dlq_url = sqs
            .create_queue()
            .queue_name("trail-dlq")
            .send()
            .await
            .expect("dlq")
            .queue_url
            .expect("url");
        let dlq_arn = queue_arn(&sqs, &dlq_url).await;
        let queue_url = sqs
            .create_queue()
            .queue_name("trail-events")
            .attributes(
                QueueAttributeName::RedrivePolicy,
                json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count.to_string()}).to_string(),
            )
            .send()
            .await
            .expect("queue")
            .queue_url
            .expect("url");
        let arn = queue_arn(&sqs, &queue_url).await;
        s3.put_bucket_notification_configuration()
            .bucket(&bucket)
            .notification_configuration(
                aws_sdk_s3::types::NotificationConfiguration::builder()
                    .queue_configurations(
                        aws_sdk_s3::types::QueueConfiguration::builder()
                            .queue_arn(arn)
                            .events(aws_sdk_s3::types::Event::S3ObjectCreated)
                            .build()
                            .expect("queue configuration"),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("bucket notification");

        let alerts_url = sqs
            .create_queue()
            .queue_name("alerts")
            .send()
            .await
            .expect("alerts")
            .queue_url
            .expect("url");
        let topic_arn = create_topic(&sns, &sqs, &alerts_url).await;
        let stack = Stack {
            s3,
            sqs,
            sns,
            ddb,
            bucket,
            queue_url,
            dlq_url,
            topic_arn,
            alerts_url,
        };
        // S3 sends a test event when notifications are configured (moto may too); drain it so
        // each test starts from an empty queue unless it sends its own.
        stack.purge(&stack.queue_url).await;
        stack
    }

    /// Creates the state table as deploy/template.yaml does: string keys pk and sk, on demand,
    /// TTL on `expires_at`.
    pub async fn state_table(&self, name: &str) -> String {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
            TimeToLiveSpecification,
        };
        let attr = |n: &str| {
            AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute")
        };
        let key = |n: &str, t| {
            KeySchemaElement::builder()
                .attribute_name(n)
                .key_type(t)
                .build()
                .expect("key")
        };
        self.ddb
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk"))
            .attribute_definitions(attr("sk"))
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .send()
            .await
            .expect("create table");
        self.ddb
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name("expires_at")
                    .build()
                    .expect("ttl"),
            )
            .send()
            .await
            .expect("ttl");
        name.to_owned()
    }

    /// Turns the bucket's notifications off, so a test can send exactly the bodies it wants.
    pub async fn notifications_off(&self) {
        self.s3
            .put_bucket_notification_configuration()
            .bucket(&self.bucket)
            .notification_configuration(
                aws_sdk_s3::types::NotificationConfiguration::builder().build(),
            )
            .send()
            .await
            .expect("clear notifications");
    }

    pub async fn purge(&self, url: &str) {
        let _ = self.sqs.purge_queue().queue_url(url).send().await;
    }

    pub async fn put(&self, key: &str, body: Vec<u8>) {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .expect("put object");
    }

    pub async fn send(&self, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .expect("send");
    }

    /// Messages currently in a queue, visible or in flight.
    pub async fn depth(&self, url: &str) -> u64 {
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes");
        let a = attrs.attributes.unwrap_or_default();
        let n = |k| {
            a.get(&k)
                .and_then(|v: &String| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        n(QueueAttributeName::ApproximateNumberOfMessages)
            + n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
    }

    /// Waits until `pred` holds on the alert documents received so far (each an SNS message
    /// body as subscribers see it), or panics after `timeout`.
    pub async fn alerts_until(
        &self,
        timeout: Duration,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut docs = Vec::new();
        loop {
            if pred(&docs) {
                return docs;
            }
            assert!(
                Instant::now() < deadline,
                "alerts did not arrive in time; got {} ids {:?}",
                docs.len(),
                event_ids(&docs)
            );
            docs.extend(self.receive_alerts().await);
        }
    }

    /// Collects every alert document that arrives within `window`.
    pub async fn alerts_for(&self, window: Duration) -> Vec<Value> {
        let until = Instant::now() + window;
        let mut docs = Vec::new();
        while Instant::now() < until {
            docs.extend(self.receive_alerts().await);
        }
        docs
    }

    /// One receive (up to 1 s) from the alerts queue; received messages are deleted in one
    /// batch call.
    pub async fn receive_alerts(&self) -> Vec<Value> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.alerts_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive alerts");
        let mut docs = Vec::new();
        let mut receipts = Vec::new();
        for (i, m) in out.messages.unwrap_or_default().into_iter().enumerate() {
            let envelope: Value =
                serde_json::from_str(m.body().unwrap_or("")).expect("SNS envelope");
            let doc: Value = serde_json::from_str(envelope["Message"].as_str().expect("Message"))
                .expect("alert document");
            docs.push(json!({"doc": doc, "subject": envelope["Subject"], "attributes": envelope["MessageAttributes"]}));
            receipts.push(
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .expect("batch entry"),
            );
        }
        if !receipts.is_empty() {
            self.sqs
                .delete_message_batch()
                .queue_url(&self.alerts_url)
                .set_entries(Some(receipts))
                .send()
                .await
                .expect("delete alerts");
        }
        docs
    }

    /// Waits until a queue holds `n` messages.
    pub async fn wait_depth(&self, url: &str, n: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let d = self.depth(url).await;
            if d == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "queue {url} holds {d} messages, expected {n}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue arn")
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .expect("QueueArn")
}

/// Creates the alert topic and subscribes the alerts queue (raw delivery off).
pub async fn create_topic(
    sns: &aws_sdk_sns::Client,
    sqs: &aws_sdk_sqs::Client,
    alerts_url: &str,
) -> String {
    let topic_arn = sns
        .create_topic()
        .name("trailwarden-alerts")
        .send()
        .await
        .expect("topic")
        .topic_arn
        .expect("arn");
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn(sqs, alerts_url).await)
        .send()
        .await
        .expect("subscribe");
    topic_arn
}

/// The trailwarden daemon as a child process, killed on drop.
pub struct Daemon {
    pub child: Child,
    pub health: SocketAddr,
    pub log: PathBuf,
    /// The daemon's stdout (the EMF metric lines, when on).
    pub out: PathBuf,
    _dir: tempfile::TempDir,
}

/// Settings of a daemon under test, beyond the stack's.
pub struct DaemonOptions {
    pub visibility_timeout_secs: u64,
    pub workers: usize,
    /// The shared DynamoDB state table; `None` keeps state in the daemon's memory.
    pub state_table: Option<String>,
    /// Whether the daemon audits posture. Off unless a test is about it: the audit's findings
    /// in moto's account would otherwise join every test's alerts.
    pub posture: bool,
    pub extra_env: Vec<(String, String)>,
    /// Where the daemon sends its AWS requests; `None` is moto itself. A test puts a
    /// fault-injecting proxy in front of moto here (tests/faults.rs).
    pub endpoint_url: Option<String>,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            visibility_timeout_secs: 30,
            workers: 4,
            state_table: None,
            posture: false,
            extra_env: Vec::new(),
            endpoint_url: None,
        }
    }
}

impl Daemon {
    pub fn start(moto: &Moto, stack: &Stack, opts: DaemonOptions) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("daemon.log");
        let out = dir.path().join("stdout.log");
        let health: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_trailwarden"));
        cmd.arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            // Tests talk to 127.0.0.1 only: no fetch of AWS's IP ranges from the internet.
            .env("TRAILWARDEN_AWS_IP_RANGES_URL", "false")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info")
            .env(
                "TRAILWARDEN_ENDPOINT_URL",
                opts.endpoint_url.as_deref().unwrap_or(&moto.endpoint),
            )
            .env("TRAILWARDEN_QUEUE_URL", &stack.queue_url)
            .env("TRAILWARDEN_TOPIC_ARN", &stack.topic_arn)
            .env("TRAILWARDEN_ALLOWED_BUCKETS", &stack.bucket)
            .env("TRAILWARDEN_WAIT_TIME_SECS", "1")
            .env(
                "TRAILWARDEN_VISIBILITY_TIMEOUT_SECS",
                opts.visibility_timeout_secs.to_string(),
            )
            .env("TRAILWARDEN_WORKERS", opts.workers.to_string())
            .env("TRAILWARDEN_LOG_FORMAT", "json")
            .env("TRAILWARDEN_HEALTH_LISTEN", health.to_string())
            .env("TRAILWARDEN_SHUTDOWN_GRACE_SECS", "20")
            .env("TRAILWARDEN_POSTURE", opts.posture.to_string())
            // The tests page single failed sign-ins and other low rules, below the default.
            .env("TRAILWARDEN_MIN_LEVEL", "low")
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&log).expect("log file"));
        if let Some(table) = &opts.state_table {
            cmd.env("TRAILWARDEN_STATE_TABLE", table);
        }
        for (k, v) in &opts.extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start trailwarden run");
        let mut daemon = Daemon {
            child,
            health,
            log,
            out,
            _dir: dir,
        };
        daemon.wait_healthy();
        daemon
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new(env!("CARGO_BIN_EXE_trailwarden"))
                .args(["healthcheck", "--addr", &self.health.to_string()])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("daemon exited with {status}:\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "daemon not healthy within 30 s:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What the daemon wrote to stdout.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    pub fn metrics(&self) -> String {
        use std::io::Read;
        let mut s = TcpStream::connect(self.health).expect("connect metrics");
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
            .expect("request");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("response");
        out
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not stop within 40 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the daemon with SIGKILL, as a crash or an out-of-memory kill would: no shutdown,
    /// no hand-back. Its log stays readable until the `Daemon` is dropped.
    pub fn kill(&mut self) -> std::process::ExitStatus {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait for the killed daemon")
    }

    /// Freezes (`STOP`) or resumes (`CONT`) the daemon, so a test decides which of several
    /// daemons on one queue takes a message.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal}");
    }

    /// Whether this daemon read an object whose key contains `name`.
    pub fn read_object(&self, name: &str) -> bool {
        self.logs()
            .lines()
            .any(|l| l.contains("\"message\":\"object processed\"") && l.contains(name))
    }

    /// Waits until this daemon read an object whose key contains `name`.
    pub fn wait_read(&self, name: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.read_object(name) {
            assert!(
                Instant::now() < deadline,
                "{name} was not read in time:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CloudTrail record shaped after AWS's documented examples.
pub fn record(event_id: &str, source: &str, name: &str, identity: Value) -> Value {
    json!({
        "eventVersion": "1.08",
        "userIdentity": identity,
        "eventTime": "2026-11-20T09:03:11Z",
        "eventSource": source,
        "eventName": name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.7",
        "userAgent": "aws-cli/2.15.0",
        "requestParameters": null,
        "responseElements": null,
        "requestID": "req",
        "eventID": event_id,
        "readOnly": true,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": ACCOUNT,
    })
}

pub fn root() -> Value {
    json!({"type": "Root", "principalId": ACCOUNT, "arn": format!("arn:aws:iam::{ACCOUNT}:root"), "accountId": ACCOUNT})
}

pub fn role() -> Value {
    json!({"type": "AssumedRole", "principalId": "AROAEXAMPLE:ci", "arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/ci/session"), "accountId": ACCOUNT})
}

/// A successful root console sign-in without MFA to `account`: each account's root is its own
/// incident, so sign-ins to different accounts page separately.
pub fn root_login_in(event_id: &str, account: &str) -> Value {
    let mut r = root_login(event_id);
    r["recipientAccountId"] = json!(account);
    r["userIdentity"]["accountId"] = json!(account);
    r["userIdentity"]["principalId"] = json!(account);
    r["userIdentity"]["arn"] = json!(format!("arn:aws:iam::{account}:root"));
    r
}

/// A 12-digit account id numbered `n`, for tests that need many incidents.
pub fn account(n: usize) -> String {
    format!("{:012}", 100_000_000_000 + n)
}

/// A successful root console sign-in without MFA.
pub fn root_login(event_id: &str) -> Value {
    let mut r = record(event_id, "signin.amazonaws.com", "ConsoleLogin", root());
    r["eventType"] = json!("AwsConsoleSignIn");
    r["responseElements"] = json!({"ConsoleLogin": "Success"});
    r["additionalEventData"] =
        json!({"MFAUsed": "No", "LoginTo": "https://console.aws.amazon.com/"});
    r
}

/// `first`, followed by `n` benign role calls (event ids `{tag}-pad-0`, ...) that raise nothing.
pub fn padded(first: Value, n: usize, tag: &str) -> Vec<Value> {
    let mut records = vec![first];
    records.extend((0..n).map(|i| {
        record(
            &format!("{tag}-pad-{i}"),
            "ec2.amazonaws.com",
            "DescribeInstances",
            role(),
        )
    }));
    records
}

/// A gzipped CloudTrail log file holding `records`.
pub fn log_file(records: &[Value]) -> Vec<u8> {
    let body = serde_json::to_vec(&json!({"Records": records})).expect("json");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&body).expect("gzip");
    enc.finish().expect("gzip")
}

/// A CloudTrail key for this account.
pub fn key(name: &str) -> String {
    format!(
        "AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2026/11/20/{ACCOUNT}_CloudTrail_us-east-1_20261120T0905Z_{name}.json.gz"
    )
}

/// The alert documents for one rule.
pub fn for_rule<'a>(docs: &'a [Value], rule: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["doc"]["rule"] == rule).collect()
}

/// Every eventID listed in the given alert documents.
pub fn event_ids(docs: &[Value]) -> Vec<String> {
    docs.iter()
        .flat_map(|d| d["doc"]["alerts"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["event_id"].as_str().map(str::to_owned))
        .collect()
}

/// An S3 event notification body for `keys`, as S3 sends it (keys as given).
pub fn s3_event(bucket: &str, keys: &[&str]) -> String {
    let records: Vec<Value> = keys
        .iter()
        .map(|k| {
            json!({
                "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                "eventTime": "2026-11-20T09:05:00.000Z", "eventName": "ObjectCreated:Put",
                "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
                       "object": {"key": k, "size": 100}}
            })
        })
        .collect();
    json!({"Records": records}).to_string()
}

/// A failed console sign-in by IAM user bob.
pub fn failed_login(event_id: &str) -> Value {
    let mut r = record(
        event_id,
        "signin.amazonaws.com",
        "ConsoleLogin",
        json!({"type": "IAMUser", "principalId": "AIDAEXAMPLE", "accountId": ACCOUNT, "userName": "bob"}),
    );
    r["eventType"] = json!("AwsConsoleSignIn");
    r["errorMessage"] = json!("Failed authentication");
    r["responseElements"] = json!({"ConsoleLogin": "Failure"});
    r["additionalEventData"] = json!({"MFAUsed": "No"});
    r
}

pub fn sns_envelope(message: &str) -> String {
    json!({
        "Type": "Notification", "MessageId": "5f3c4a0e-0000-4000-8000-000000000001",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:trail-notices", "Message": message,
        "Timestamp": "2026-11-20T09:05:01.000Z", "SignatureVersion": "1",
    })
    .to_string()
}

/// `failed_login` at a given eventTime (`2026-11-20T10:MM:SSZ`-style).
pub fn failed_login_at(event_id: &str, time: &str) -> Value {
    let mut r = failed_login(event_id);
    r["eventTime"] = json!(time);
    r
}

/// A root API call (root-activity) at `time` in `region`.
pub fn root_call_at(event_id: &str, name: &str, time: &str, region: &str) -> Value {
    let mut r = record(event_id, "s3.amazonaws.com", name, root());
    r["eventTime"] = json!(time);
    r["awsRegion"] = json!(region);
    r
}

/// A CloudTrail key for this account in `region`.
pub fn key_in(region: &str, name: &str) -> String {
    format!(
        "AWSLogs/{ACCOUNT}/CloudTrail/{region}/2026/11/20/{ACCOUNT}_CloudTrail_{region}_20261120T0905Z_{name}.json.gz"
    )
}

/// The detail-type EventBridge gives a CloudTrail record, as CloudTrail sets it.
pub fn detail_type_of(record: &Value) -> &'static str {
    match (record["eventType"].as_str(), record["eventSource"].as_str()) {
        (Some("AwsConsoleSignIn"), _) => "AWS Console Sign In via CloudTrail",
        (Some("AwsServiceEvent"), _) => "AWS Service Event via CloudTrail",
        (Some("AwsConsoleAction"), _) => "AWS Console Action via CloudTrail",
        _ => "AWS API Call via CloudTrail",
    }
}

/// CloudTrail's EventBridge source for a record: `aws.<service>` of its eventSource.
pub fn eventbridge_source_of(record: &Value) -> String {
    let service = record["eventSource"]
        .as_str()
        .unwrap_or("unknown")
        .trim_end_matches(".amazonaws.com");
    format!("aws.{service}")
}

impl Stack {
    /// An EventBridge rule on the default bus that sends CloudTrail's detail-types to the
    /// daemon's queue, as deploy/template.yaml does (moto delivers put_events to SQS targets).
    pub async fn eventbridge(&self, moto: &Moto) -> aws_sdk_eventbridge::Client {
        let events = aws_sdk_eventbridge::Client::new(&moto.sdk().await);
        let pattern = json!({"detail-type": [
            "AWS API Call via CloudTrail",
            "AWS Console Sign In via CloudTrail",
            "AWS Console Signin via CloudTrail",
            "AWS Console Action via CloudTrail",
            "AWS Service Event via CloudTrail",
        ]});
        events
            .put_rule()
            .name("trailwarden-cloudtrail-events")
            .event_pattern(pattern.to_string())
            .state(aws_sdk_eventbridge::types::RuleState::Enabled)
            .send()
            .await
            .expect("put rule");
        events
            .put_targets()
            .rule("trailwarden-cloudtrail-events")
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(queue_arn(&self.sqs, &self.queue_url).await)
                    .build()
                    .expect("target"),
            )
            .send()
            .await
            .expect("put targets");
        events
    }
}

/// Puts a CloudTrail record on the default bus as CloudTrail would (or with the given
/// detail-type); returns the EventBridge event id.
pub async fn put_event(
    events: &aws_sdk_eventbridge::Client,
    record: &Value,
    detail_type: Option<&str>,
) -> String {
    let out = events
        .put_events()
        .entries(
            aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .source(eventbridge_source_of(record))
                .detail_type(detail_type.unwrap_or(detail_type_of(record)))
                .detail(record.to_string())
                .build(),
        )
        .send()
        .await
        .expect("put events");
    assert_eq!(out.failed_entry_count(), 0, "{out:?}");
    out.entries()[0].event_id().expect("event id").to_owned()
}

/// What README.md and deploy/README.md tell operators to look for in the daemon's JSON logs:
/// `(document, message, fields)` for each "`"message":"X"`, with `a`, `b`, ...)" sentence and
/// each CloudWatch Logs filter pattern (`{ $.message = "X" && $.field ... }`).
pub fn documented_log_fields() -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    for doc in ["README.md", "deploy/README.md"] {
        let text = std::fs::read_to_string(format!("{}/{doc}", env!("CARGO_MANIFEST_DIR")))
            .expect("read doc");
        let words = |s: &str| -> Vec<String> {
            s.split('`')
                .skip(1)
                .step_by(2)
                .filter(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
                .map(str::to_owned)
                .collect()
        };
        let marker = "`\"message\":\"";
        let mut rest = text.as_str();
        while let Some(at) = rest.find(marker) {
            let after = &rest[at + marker.len()..];
            let message = after.split('"').next().unwrap_or("").to_owned();
            let sentence = after.split(')').next().unwrap_or("");
            out.push((doc.to_owned(), message, words(sentence)));
            rest = after;
        }
        for pattern in text.split("'{").skip(1) {
            let pattern = pattern.split("}'").next().unwrap_or("");
            let mut message = None;
            let mut fields = Vec::new();
            for term in pattern.split("$.").skip(1) {
                let field: String = term
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if field == "message" {
                    message = term.split('"').nth(1).map(str::to_owned);
                }
                fields.push(field);
            }
            if let Some(message) = message {
                out.push((doc.to_owned(), message, fields));
            }
        }
    }
    assert!(!out.is_empty(), "the docs name log fields somewhere");
    out
}
