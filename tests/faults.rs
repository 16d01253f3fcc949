//! Fault injection, end to end: planted CloudTrail objects and hostile message bodies in;
//! pages, follow-ups, the dead-letter queue and the daemons' logs out, checked against what
//! was planted.
//!
//! Two daemon processes share one DynamoDB state table in moto server. Every AWS request they
//! make goes through a proxy on 127.0.0.1 ([`proxy`]) that, for a fraction of each operation's
//! requests, answers 500/503 itself, carries the request out and then loses the response,
//! resets the connection before forwarding, or stalls. On top of that the test takes SNS
//! Publish and DynamoDB down for ten seconds each, kills one daemon with SIGKILL and starts a
//! replacement, rolls a restart (SIGTERM one, start another), and deletes the alert topic for
//! twenty seconds before recreating it (and its subscription) under the same name.
//!
//! What must hold, whatever the faults:
//! - every planted incident pages exactly once; a repeat carries the same `incident_id` and
//!   `message_id`, and the same count;
//! - every brute force (five failed sign-ins for one user within ten minutes, spread over
//!   several objects) pages, and no near miss (four failures, or five over seventeen minutes)
//!   does;
//! - for each incident the page's count and its follow-up's add up to the alerts planted;
//! - every object is read, the queue drains, and only the hostile bodies reach the DLQ.
//!
//! Knobs: `FAULTS_SCALE` (families of incidents per wave, default 1; raise it for a soak),
//! `FAULTS_RATE_PCT` (scales every fault rate, default 100), `FAULTS_SEED` (the proxy's and
//! the planting order's random seed; by default the clock's), `FAULTS_DEADLINE_SECS` (how long
//! the run may take before what is missing is reported, default 480), `FAULTS_KEEP_LOGS=1` (keep
//! the daemons' and the proxy's logs under the target directory even when the run passes; a
//! failing run always keeps them).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;
use tokio_util::sync::CancellationToken;

/// Receives per message before the queue's redrive policy moves it to the DLQ. Every fault
/// here that costs a receive (a lost ReceiveMessage response, SIGKILL, a hand-back) is rare
/// per message; four also brings the hostile bodies to the DLQ within the run (their retry
/// delays are 5, 10, 20 and 40 s).
const MAX_RECEIVE: u32 = 4;
/// Short enough that a killed daemon's messages come back quickly, long enough that a lease
/// extension (every third of it) survives a stalled request.
const VISIBILITY_SECS: u64 = 12;
/// Incident window. An incident whose objects are committed further apart than this is, by
/// definition, two incidents, so it must outlast every delay the faults put between an
/// incident's first and last object: after the 20 s topic outage the held work's backoff
/// (1, 2, 4 ... 32 s) keeps receiving paused for up to about a minute. Still short enough that
/// follow-ups go out within the run.
const WINDOW_SECS: u64 = 90;
/// An attempt at a message that takes longer is abandoned and retried.
const MESSAGE_TIMEOUT_SECS: u64 = 20;
/// How long a stalled request waits before it is forwarded: under the SDK's attempt timeout
/// (10 s), over a third of the visibility timeout.
const STALL: Duration = Duration::from_secs(3);

/// When things happen, in seconds from the first wave. The daemon is killed in the middle of
/// the SNS outage, while it holds pages whose publish may have gone out (a 503 leaves the
/// claim in place): their claims are orphaned, and another task must take them over under the
/// same incident ids once the claim lease (120 s) ends.
const WAVES: usize = 10;
const WAVE_EVERY_SECS: u64 = 5;
const SNS_OUTAGE: (u64, u64) = (8, 10);
const KILL_AT: u64 = 13;
const DYNAMODB_OUTAGE: (u64, u64) = (23, 10);
const ROLL_AT: u64 = 36;
const TOPIC_GONE: (u64, u64) = (40, 20);
/// Brute forces are planted only after the kill. A brute force's last object commits the
/// brute-force page before it folds the failed sign-ins; were SIGKILL to orphan that page's
/// claim, the fold would wait out the claim lease (120 s), longer than the window, and the
/// failures would rightly open a second incident. Every other object raises one incident,
/// which an orphaned claim only delays before its page.
const FIRST_BRUTE_WAVE: usize = (KILL_AT / WAVE_EVERY_SECS) as usize + 1;

/// How long after the last expected message arrived the test keeps listening for repeats.
const LINGER: Duration = Duration::from_secs(10);

/// Bodies that are not notifications: refused, retried with growing delays, then moved to
/// the DLQ by the redrive policy. Nothing else may end up there.
const HOSTILE: &[&str] = &[
    "this is not a notification",
    "[1, 2, 3]",
    r#"{"Type":"Notification","MessageId":"m","Message":"not json either"}"#,
    r#"{"Records":"nope"}"#,
];

/// The fault each fraction of an operation's requests gets (before `FAULTS_RATE_PCT`).
fn rates(op: &str) -> proxy::Rates {
    use proxy::Rates;
    match op {
        // A lost receive costs its messages a receive count and a visibility timeout.
        "SQS.ReceiveMessage" => Rates {
            error: 0.03,
            lost: 0.02,
            reset: 0.03,
            stall: 0.02,
        },
        op if op.starts_with("SNS.") => Rates {
            error: 0.05,
            lost: 0.05,
            reset: 0.05,
            stall: 0.03,
        },
        op if op.starts_with("DynamoDB.") => Rates {
            error: 0.04,
            lost: 0.04,
            reset: 0.04,
            stall: 0.02,
        },
        // A lost GetObject response often breaks off in the middle of the body.
        op if op.starts_with("S3.") => Rates {
            error: 0.04,
            lost: 0.06,
            reset: 0.04,
            stall: 0.02,
        },
        _ => Rates {
            error: 0.03,
            lost: 0.03,
            reset: 0.03,
            stall: 0.02,
        },
    }
}

/// Small deterministic randomness for the planting order (the proxy has its own).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn seed() -> u64 {
    let default = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    std::env::var("FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
        | 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a fault-injection soak of about 6 minutes: cargo test --test faults -- --ignored"]
async fn pages_stay_exact_under_injected_faults() {
    let began = Instant::now();
    let scale = knob("FAULTS_SCALE", 1).max(1);
    let rate_pct = knob("FAULTS_RATE_PCT", 100);
    let deadline_secs = knob("FAULTS_DEADLINE_SECS", 480) as u64;
    let seed = seed();

    let moto = Moto::start();
    let stack = Stack::create(&moto, MAX_RECEIVE).await;
    let table = stack.state_table("trailwarden-state").await;
    let proxy = proxy::Proxy::start(&moto.endpoint, seed, rate_pct as f64 / 100.0, STALL, rates);
    let options = || DaemonOptions {
        visibility_timeout_secs: VISIBILITY_SECS,
        workers: 4,
        state_table: Some(table.clone()),
        endpoint_url: Some(proxy.url.clone()),
        extra_env: vec![
            (
                "TRAILWARDEN_INCIDENT_WINDOW_SECS".into(),
                WINDOW_SECS.to_string(),
            ),
            (
                "TRAILWARDEN_MESSAGE_TIMEOUT_SECS".into(),
                MESSAGE_TIMEOUT_SECS.to_string(),
            ),
        ],
        ..DaemonOptions::default()
    };
    let mut fleet = Fleet::default();
    tokio::task::block_in_place(|| {
        fleet.start("a", Daemon::start(&moto, &stack, options()));
        fleet.start("b", Daemon::start(&moto, &stack, options()));
    });

    let t0 = tokio::time::Instant::now();
    let stop = CancellationToken::new();
    let received = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let collector = tokio::spawn(collect(
        stack.sqs.clone(),
        stack.alerts_url.clone(),
        received.clone(),
        stop.clone(),
        t0,
    ));

    for body in HOSTILE {
        stack.send(body).await;
    }
    let mut plan = Plan::new(scale, seed);
    let mut steps: Vec<(u64, Step)> = (0..WAVES)
        .map(|w| (w as u64 * WAVE_EVERY_SECS, Step::Wave(w)))
        .collect();
    steps.extend([
        (KILL_AT, Step::Kill),
        (SNS_OUTAGE.0, Step::SnsOutage),
        (DYNAMODB_OUTAGE.0, Step::DynamoOutage),
        (ROLL_AT, Step::Roll),
        (TOPIC_GONE.0, Step::DeleteTopic),
        (TOPIC_GONE.0 + TOPIC_GONE.1, Step::RecreateTopic),
    ]);
    steps.sort_by_key(|(at, _)| *at);

    let mut events: Vec<String> = Vec::new();
    let mut stopping = None;
    for (at, step) in steps {
        tokio::time::sleep_until(t0 + Duration::from_secs(at)).await;
        let at = t0.elapsed().as_secs_f64();
        match step {
            Step::Wave(w) => {
                let (objects, duplicates) = plan.plant(&stack, w, t0.elapsed()).await;
                events.push(format!(
                    "{at:6.1}s wave {w}: {objects} objects, {duplicates} duplicate notifications"
                ));
            }
            Step::SnsOutage => {
                proxy.outage("SNS.Publish", Duration::from_secs(SNS_OUTAGE.1));
                events.push(format!("{at:6.1}s SNS Publish down for {} s", SNS_OUTAGE.1));
            }
            Step::DynamoOutage => {
                proxy.outage("DynamoDB.", Duration::from_secs(DYNAMODB_OUTAGE.1));
                events.push(format!(
                    "{at:6.1}s DynamoDB down for {} s",
                    DYNAMODB_OUTAGE.1
                ));
            }
            Step::Kill => {
                let status = tokio::task::block_in_place(|| {
                    let status = fleet.get("a").kill();
                    fleet.start("c", Daemon::start(&moto, &stack, options()));
                    status
                });
                events.push(format!(
                    "{at:6.1}s daemon a killed ({status}); replacement c started"
                ));
            }
            Step::Roll => {
                tokio::task::block_in_place(|| {
                    fleet.start("d", Daemon::start(&moto, &stack, options()));
                });
                let mut old = fleet.take("b");
                stopping = Some(tokio::task::spawn_blocking(move || {
                    let status = old.terminate();
                    (old, status)
                }));
                events.push(format!(
                    "{at:6.1}s rolling restart: d started, SIGTERM to b"
                ));
            }
            Step::DeleteTopic => {
                stack
                    .sns
                    .delete_topic()
                    .topic_arn(&stack.topic_arn)
                    .send()
                    .await
                    .expect("delete topic");
                events.push(format!("{at:6.1}s alert topic deleted"));
            }
            Step::RecreateTopic => {
                // Publishes wait at the proxy until the subscription exists again: a page
                // accepted by a topic with no subscriber yet would be lost to this test, not by
                // the daemon.
                proxy.block("SNS.Publish");
                let arn = create_topic(&stack.sns, &stack.sqs, &stack.alerts_url).await;
                proxy.unblock("SNS.Publish");
                assert_eq!(arn, stack.topic_arn, "moto keeps a topic's ARN by name");
                events.push(format!("{at:6.1}s alert topic and subscription recreated"));
            }
        }
    }
    if let Some(stopping) = stopping {
        let (old, status) = stopping.await.expect("SIGTERM'd daemon");
        events.push(format!(
            "{:6.1}s daemon b exited after SIGTERM: {status}",
            t0.elapsed().as_secs_f64()
        ));
        fleet.stopped("b", old, status.success());
    }

    // Wait until everything planted has arrived, the queue is empty and the hostile bodies are
    // in the DLQ, then listen a little longer for repeats.
    let deadline = began + Duration::from_secs(deadline_secs);
    let mut waited_out = false;
    let mut milestones: BTreeMap<&str, f64> = BTreeMap::new();
    loop {
        let docs = received.lock().expect("received").clone();
        let queue = stack.depth(&stack.queue_url).await;
        let dlq = stack.depth(&stack.dlq_url).await;
        let now = t0.elapsed().as_secs_f64();
        let done = [
            ("every page and follow-up arrived", plan.complete(&docs)),
            ("the queue was empty", queue == 0),
            (
                "the hostile bodies were in the DLQ",
                dlq >= HOSTILE.len() as u64,
            ),
        ];
        for (what, reached) in done {
            if reached {
                milestones.entry(what).or_insert(now);
            } else {
                milestones.remove(what);
            }
        }
        if done.iter().all(|(_, reached)| *reached) {
            break;
        }
        if Instant::now() > deadline {
            waited_out = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for (what, at) in &milestones {
        events.push(format!("{at:6.1}s {what}"));
    }
    tokio::time::sleep(LINGER).await;
    stop.cancel();
    collector.await.expect("alert collector");
    let docs = received.lock().expect("received").clone();
    let runtime = began.elapsed();

    // Everything is checked, then reported at once.
    let mut failures = plan.check(&docs, &fleet);
    if waited_out {
        failures.insert(
            0,
            format!("the run did not complete within {deadline_secs} s; what is missing follows"),
        );
    }
    let queue = stack.depth(&stack.queue_url).await;
    if queue != 0 {
        failures.push(format!("{queue} messages are left in the queue"));
    }
    let dead = drain(&stack.sqs, &stack.dlq_url).await;
    let mut hostile: Vec<&str> = HOSTILE.to_vec();
    for body in &dead {
        match hostile.iter().position(|h| h == body) {
            Some(i) => {
                hostile.remove(i);
            }
            None => failures.push(format!(
                "a message reached the DLQ that is not hostile: {body}"
            )),
        }
    }
    if !hostile.is_empty() {
        failures.push(format!(
            "hostile bodies that never reached the DLQ: {hostile:?}"
        ));
    }
    for (name, fine) in &fleet.exits {
        if !fine {
            failures.push(format!("daemon {name} did not exit cleanly after SIGTERM"));
        }
    }
    for (name, daemon) in &fleet.daemons {
        if daemon.logs().contains("panicked") {
            failures.push(format!("daemon {name} panicked:\n{}", daemon.logs()));
        }
    }

    let run = Run {
        seed,
        runtime,
        events,
        dead,
    };
    let mut report = report(&proxy, &plan, &fleet, &docs, &run);
    if !failures.is_empty() || knob("FAULTS_KEEP_LOGS", 0) > 0 {
        report.push_str(&fleet.keep_logs(seed, &proxy.log()));
    }
    println!("{report}");
    assert!(
        failures.is_empty(),
        "{} guarantees failed:\n- {}\n\n{report}",
        failures.len(),
        failures.join("\n- ")
    );
}

/// How the run went, for the report.
struct Run {
    seed: u64,
    runtime: Duration,
    /// The script as it happened, with times.
    events: Vec<String>,
    /// The DLQ's bodies.
    dead: Vec<String>,
}

/// One scripted event of the run.
enum Step {
    Wave(usize),
    SnsOutage,
    Kill,
    DynamoOutage,
    Roll,
    DeleteTopic,
    RecreateTopic,
}

/// Every daemon of the run, kept (killed or stopped ones too) so their logs can be read.
#[derive(Default)]
struct Fleet {
    daemons: Vec<(String, Daemon)>,
    /// Daemons stopped with SIGTERM, and whether they exited cleanly.
    exits: Vec<(String, bool)>,
}

impl Fleet {
    fn start(&mut self, name: &str, daemon: Daemon) {
        self.daemons.push((name.to_owned(), daemon));
    }

    fn get(&mut self, name: &str) -> &mut Daemon {
        &mut self
            .daemons
            .iter_mut()
            .find(|(n, _)| n == name)
            .expect("a daemon of that name")
            .1
    }

    fn take(&mut self, name: &str) -> Daemon {
        let i = self
            .daemons
            .iter()
            .position(|(n, _)| n == name)
            .expect("a daemon of that name");
        self.daemons.remove(i).1
    }

    fn stopped(&mut self, name: &str, daemon: Daemon, clean: bool) {
        self.daemons.push((name.to_owned(), daemon));
        self.exits.push((name.to_owned(), clean));
    }

    /// Copies every daemon's log under the target directory, for a failure to be read in full;
    /// says where.
    fn keep_logs(&self, seed: u64, proxy_log: &str) -> String {
        let dir =
            std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("faults-{seed}"));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            return format!("\ncannot keep the daemon logs in {}: {e}\n", dir.display());
        }
        for (name, d) in &self.daemons {
            let _ = std::fs::write(dir.join(format!("{name}.log")), d.logs());
        }
        let _ = std::fs::write(dir.join("proxy.log"), proxy_log);
        format!("\ndaemon logs kept in {}\n", dir.display())
    }

    /// Lines of every daemon's log that contain `needle`, each prefixed with the daemon's name.
    fn lines(&self, needle: &str, max: usize) -> Vec<String> {
        self.daemons
            .iter()
            .flat_map(|(name, d)| {
                d.logs()
                    .lines()
                    .filter(|l| l.contains(needle))
                    .map(|l| format!("[{name}] {l}"))
                    .collect::<Vec<_>>()
            })
            .take(max)
            .collect()
    }
}

/// One message the alert topic delivered to its subscribed queue.
#[derive(Clone)]
struct Seen {
    /// SNS's own id for this delivery: two deliveries of one page mean two publishes.
    sns_id: String,
    doc: Value,
    /// When it arrived, from the first wave.
    at: Duration,
}

impl Seen {
    fn str(&self, field: &str) -> &str {
        self.doc[field].as_str().unwrap_or("")
    }

    fn count(&self) -> u64 {
        self.doc["count"].as_u64().unwrap_or(0)
    }

    /// The eventIDs of the alerts a page lists (a correlation alert lists several).
    fn alert_ids(&self) -> Vec<String> {
        let ids = |a: &Value| -> Vec<String> {
            let many = a["event_ids"].as_array().into_iter().flatten();
            a["event_id"]
                .as_str()
                .into_iter()
                .chain(many.filter_map(Value::as_str))
                .map(str::to_owned)
                .collect()
        };
        self.doc["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(ids)
            .collect()
    }
}

/// Reads the alert queue directly from moto (no faults) until `stop`.
async fn collect(
    sqs: aws_sdk_sqs::Client,
    url: String,
    into: Arc<Mutex<Vec<Seen>>>,
    stop: CancellationToken,
    t0: tokio::time::Instant,
) {
    loop {
        let out = tokio::select! {
            _ = stop.cancelled() => return,
            out = sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send() => out.expect("receive alerts"),
        };
        let mut delete = sqs.delete_message_batch().queue_url(&url);
        let mut any = false;
        for (i, m) in out.messages.unwrap_or_default().into_iter().enumerate() {
            let envelope: Value =
                serde_json::from_str(m.body().unwrap_or("")).expect("SNS envelope");
            let doc: Value = serde_json::from_str(envelope["Message"].as_str().expect("Message"))
                .expect("alert document");
            into.lock().expect("received").push(Seen {
                sns_id: envelope["MessageId"].as_str().unwrap_or("").to_owned(),
                doc,
                at: t0.elapsed(),
            });
            delete = delete.entries(
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or(""))
                    .build()
                    .expect("entry"),
            );
            any = true;
        }
        if any {
            delete.send().await.expect("delete alerts");
        }
    }
}

/// Every body in a queue, each received once.
async fn drain(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(600)
            .wait_time_seconds(0)
            .send()
            .await
            .expect("receive");
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return bodies;
        }
        bodies.extend(messages.iter().map(|m| m.body().unwrap_or("").to_owned()));
    }
}

/// What one planted incident must produce.
struct Expected {
    rule: &'static str,
    account: String,
    /// Alerts planted: the page's count plus its follow-up's.
    alerts: u64,
    /// For a brute force, the eventIDs its one alert must list.
    event_ids: Option<BTreeSet<String>>,
    /// The objects it is spread over, for the report.
    keys: Vec<String>,
    /// When its objects were put, from the first wave.
    planted: Duration,
}

/// The workload: families of incidents, each spread over several objects, planted in waves.
struct Plan {
    scale: usize,
    rng: Rng,
    expected: Vec<Expected>,
    /// Accounts whose near miss must raise no brute force.
    near_misses: Vec<String>,
    keys: Vec<String>,
    duplicates: usize,
}

/// A root call (root-activity) by `account`'s root user.
fn root_call_in(id: &str, account: &str, minute: usize) -> Value {
    let name = if minute.is_multiple_of(2) {
        "ListBuckets"
    } else {
        "GetBucketPolicy"
    };
    let mut r = root_call_at(
        id,
        name,
        &format!("2026-11-20T10:{minute:02}:00Z"),
        "us-east-1",
    );
    r["recipientAccountId"] = json!(account);
    r["userIdentity"]["accountId"] = json!(account);
    r["userIdentity"]["principalId"] = json!(account);
    r["userIdentity"]["arn"] = json!(format!("arn:aws:iam::{account}:root"));
    r
}

/// A failed console sign-in for `user` in `account` from `ip` at `10:MM:SS`.
fn failure(id: &str, account: &str, user: &str, ip: &str, time: &str) -> Value {
    let mut r = failed_login_at(id, &format!("2026-11-20T{time}Z"));
    r["recipientAccountId"] = json!(account);
    r["userIdentity"]["accountId"] = json!(account);
    r["userIdentity"]["userName"] = json!(user);
    r["sourceIPAddress"] = json!(ip);
    r
}

/// Records plus benign role calls that raise nothing.
fn with_padding(mut records: Vec<Value>, tag: &str) -> Vec<Value> {
    records.extend((0..5).map(|i| {
        record(
            &format!("{tag}-pad-{i}"),
            "ec2.amazonaws.com",
            "DescribeInstances",
            role(),
        )
    }));
    records
}

impl Plan {
    fn new(scale: usize, seed: u64) -> Plan {
        Plan {
            scale,
            rng: Rng(seed.rotate_left(17) | 1),
            expected: Vec::new(),
            near_misses: Vec::new(),
            keys: Vec::new(),
            duplicates: 0,
        }
    }

    /// The objects of one wave: per family a root session (nine calls over three objects),
    /// root sign-ins (two over two objects), a brute force (five failures within four minutes
    /// over three objects; from [`FIRST_BRUTE_WAVE`] on), four failures within six minutes
    /// (two objects) and five failures over seventeen minutes (three objects). Each family has its own accounts, users and
    /// source addresses, so incidents and correlation groups never mix.
    fn wave(&mut self, w: usize) -> Vec<(String, Vec<Value>)> {
        let mut objects = Vec::new();
        for f in 0..self.scale {
            let n = w * self.scale + f;
            let acct = |kind: usize| account(1000 + n * 5 + kind);
            let ip = |kind: usize| {
                let i = n * 5 + kind;
                format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
            };
            let mut add = |expected: Expected, parts: Vec<Vec<Value>>, tag: &str| {
                let mut keys = Vec::new();
                for (p, records) in parts.into_iter().enumerate() {
                    let name = format!("{tag}-{n}-part{p}");
                    keys.push(key(&name));
                    objects.push((key(&name), with_padding(records, &name)));
                }
                Expected { keys, ..expected }
            };

            let a = acct(0);
            let calls = |from: usize, to: usize| -> Vec<Value> {
                (from..to)
                    .map(|m| root_call_in(&format!("session-{n}-{m}"), &a, m))
                    .collect()
            };
            let e = add(
                Expected {
                    rule: "root-activity",
                    account: a.clone(),
                    alerts: 9,
                    event_ids: None,
                    keys: Vec::new(),
                    planted: Duration::ZERO,
                },
                vec![calls(0, 2), calls(2, 5), calls(5, 9)],
                "session",
            );
            self.expected.push(e);

            let a = acct(1);
            let e = add(
                Expected {
                    rule: "root-console-login",
                    account: a.clone(),
                    alerts: 2,
                    event_ids: None,
                    keys: Vec::new(),
                    planted: Duration::ZERO,
                },
                vec![
                    vec![root_login_in(&format!("login-{n}-0"), &a)],
                    vec![root_login_in(&format!("login-{n}-1"), &a)],
                ],
                "login",
            );
            self.expected.push(e);

            // (family tag, kind, failure times by object, whether it is a brute force)
            let families: [(&str, usize, Vec<Vec<&str>>, bool); 3] = [
                (
                    "brute",
                    2,
                    vec![
                        vec!["10:00:10", "10:01:00"],
                        vec!["10:02:00", "10:03:00"],
                        vec!["10:03:50"],
                    ],
                    true,
                ),
                (
                    "four",
                    3,
                    vec![vec!["10:00:00", "10:02:00"], vec!["10:04:00", "10:06:00"]],
                    false,
                ),
                (
                    "spread",
                    4,
                    vec![
                        vec!["10:00:00", "10:02:00"],
                        vec!["10:04:00", "10:06:00"],
                        vec!["10:17:00"],
                    ],
                    false,
                ),
            ];
            for (tag, kind, times, brute) in families {
                if brute && w < FIRST_BRUTE_WAVE {
                    continue;
                }
                let a = acct(kind);
                let user = format!("{tag}-user-{n}");
                let address = ip(kind);
                let mut ids = BTreeSet::new();
                let mut k = 0;
                let parts: Vec<Vec<Value>> = times
                    .iter()
                    .map(|part| {
                        part.iter()
                            .map(|t| {
                                let id = format!("{tag}-{n}-{k}");
                                k += 1;
                                ids.insert(id.clone());
                                failure(&id, &a, &user, &address, t)
                            })
                            .collect()
                    })
                    .collect();
                let e = add(
                    Expected {
                        rule: "console-login-failed",
                        account: a.clone(),
                        alerts: ids.len() as u64,
                        event_ids: None,
                        keys: Vec::new(),
                        planted: Duration::ZERO,
                    },
                    parts,
                    tag,
                );
                if brute {
                    self.expected.push(Expected {
                        rule: "console-login-brute-force",
                        account: a.clone(),
                        alerts: 1,
                        event_ids: Some(ids),
                        keys: e.keys.clone(),
                        planted: Duration::ZERO,
                    });
                } else {
                    self.near_misses.push(a.clone());
                }
                self.expected.push(e);
            }
        }
        objects
    }

    /// Puts one wave's objects in a shuffled order; about one in four is announced twice, as
    /// S3 may do. Returns the objects and the duplicate notifications.
    async fn plant(&mut self, stack: &Stack, w: usize, now: Duration) -> (usize, usize) {
        let first = self.expected.len();
        let mut objects = self.wave(w);
        for e in &mut self.expected[first..] {
            e.planted = now;
        }
        for i in (1..objects.len()).rev() {
            let j = self.rng.below(i + 1);
            objects.swap(i, j);
        }
        let mut duplicates = 0;
        for (key, records) in &objects {
            stack.put(key, log_file(records)).await;
            if self.rng.below(4) == 0 {
                stack.send(&s3_event(&stack.bucket, &[key])).await;
                duplicates += 1;
            }
            self.keys.push(key.clone());
        }
        self.duplicates += duplicates;
        (objects.len(), duplicates)
    }

    fn of<'a>(docs: &'a [Seen], e: &Expected, kind: &str) -> Vec<&'a Seen> {
        docs.iter()
            .filter(|d| {
                d.str("rule") == e.rule && d.str("account_id") == e.account && d.str("kind") == kind
            })
            .collect()
    }

    /// Whether every expected page, and every follow-up its count calls for, has arrived.
    fn complete(&self, docs: &[Seen]) -> bool {
        self.expected.iter().all(|e| {
            let pages = Plan::of(docs, e, "page");
            let Some(page) = pages.first() else {
                return false;
            };
            page.count() >= e.alerts || !Plan::of(docs, e, "follow-up").is_empty()
        })
    }

    /// Every guarantee, checked against what arrived; one line (with evidence) per failure.
    fn check(&self, docs: &[Seen], fleet: &Fleet) -> Vec<String> {
        let mut failures = Vec::new();
        let evidence = |e: &Expected, ids: &[&str]| -> String {
            let mut lines = fleet.lines(&format!("\"account_id\":\"{}\"", e.account), 40);
            for id in ids {
                lines.extend(fleet.lines(id, 20));
            }
            for key in &e.keys {
                let name = key.rsplit('/').next().unwrap_or(key);
                lines.extend(
                    fleet
                        .lines(name, 40)
                        .into_iter()
                        .filter(|l| !l.contains("\"message\":\"alert\"")),
                );
            }
            let shown: Vec<String> = docs
                .iter()
                .filter(|d| d.str("account_id") == e.account)
                .map(|d| {
                    format!(
                        "  {} {} incident_id={} message_id={} count={} sns_id={}",
                        d.str("kind"),
                        d.str("rule"),
                        d.str("incident_id"),
                        d.str("message_id"),
                        d.count(),
                        d.sns_id
                    )
                })
                .collect();
            format!(
                "\n  objects: {:?}\n  received:\n{}\n  daemon log lines:\n    {}",
                e.keys,
                shown.join("\n"),
                lines.join("\n    ")
            )
        };
        for e in &self.expected {
            let what = format!("{} in {} ({} alerts)", e.rule, e.account, e.alerts);
            let pages = Plan::of(docs, e, "page");
            let follow_ups = Plan::of(docs, e, "follow-up");
            let Some(page) = pages.first() else {
                failures.push(format!("{what}: never paged{}", evidence(e, &[])));
                continue;
            };
            let incident_ids: BTreeSet<&str> = pages.iter().map(|p| p.str("incident_id")).collect();
            let message_ids: BTreeSet<&str> = pages.iter().map(|p| p.str("message_id")).collect();
            let ids: Vec<&str> = incident_ids.iter().copied().collect();
            if incident_ids.len() > 1 || message_ids.len() > 1 {
                failures.push(format!(
                    "{what}: paged {} times under incident ids {incident_ids:?} and message ids {message_ids:?}{}",
                    pages.len(),
                    evidence(e, &ids)
                ));
                continue;
            }
            // A repeat is the same message: a subscriber that drops it by message id must
            // lose nothing, so its count and its alerts are those of the first copy.
            let variants: BTreeSet<(u64, Vec<String>)> =
                pages.iter().map(|p| (p.count(), p.alert_ids())).collect();
            if variants.len() > 1 {
                failures.push(format!(
                    "{what}: copies of one page (same incident and message ids) differ, as (count, alerts): {variants:?}{}",
                    evidence(e, &ids)
                ));
            }
            let foreign: Vec<&str> = follow_ups
                .iter()
                .map(|f| f.str("incident_id"))
                .filter(|id| !incident_ids.contains(id))
                .collect();
            let follow_messages: BTreeSet<&str> =
                follow_ups.iter().map(|f| f.str("message_id")).collect();
            let follow_counts: BTreeSet<u64> = follow_ups.iter().map(|f| f.count()).collect();
            if !foreign.is_empty() || follow_messages.len() > 1 || follow_counts.len() > 1 {
                failures.push(format!(
                    "{what}: follow-ups under other incidents {foreign:?}, message ids {follow_messages:?}, counts {follow_counts:?}{}",
                    evidence(e, &ids)
                ));
            }
            // A subscriber that drops repeats by message id keeps the first copy.
            let total = page.count() + follow_ups.first().map_or(0, |f| f.count());
            if total != e.alerts {
                failures.push(format!(
                    "{what}: page ({}) and follow-up ({:?}) count {total}, not {}{}",
                    page.count(),
                    follow_ups.first().map(|f| f.count()),
                    e.alerts,
                    evidence(e, &ids)
                ));
            }
            if let Some(want) = &e.event_ids {
                let got: BTreeSet<String> = page.doc["alerts"][0]["event_ids"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                if &got != want {
                    failures.push(format!(
                        "{what}: the brute force lists {got:?}, not {want:?}{}",
                        evidence(e, &ids)
                    ));
                }
            }
        }
        let expected: BTreeSet<(&str, &str)> = self
            .expected
            .iter()
            .map(|e| (e.rule, e.account.as_str()))
            .collect();
        let mut unexpected: BTreeMap<(String, String), usize> = BTreeMap::new();
        for d in docs {
            if !expected.contains(&(d.str("rule"), d.str("account_id"))) {
                *unexpected
                    .entry((d.str("rule").to_owned(), d.str("account_id").to_owned()))
                    .or_default() += 1;
            }
        }
        for ((rule, acct), n) in unexpected {
            let near = if self.near_misses.contains(&acct) {
                " (a near miss: four failures in ten minutes at most)"
            } else {
                ""
            };
            let lines = fleet.lines(&format!("\"account_id\":\"{acct}\""), 30);
            failures.push(format!(
                "unexpected {rule} in {acct}{near}: {n} messages\n    {}",
                lines.join("\n    ")
            ));
        }
        let read: BTreeSet<&str> = self
            .keys
            .iter()
            .filter(|k| {
                fleet
                    .daemons
                    .iter()
                    .any(|(_, d)| d.read_object(k.rsplit('/').next().unwrap_or(k)))
            })
            .map(String::as_str)
            .collect();
        let unread: Vec<&String> = self
            .keys
            .iter()
            .filter(|k| !read.contains(k.as_str()))
            .collect();
        if !unread.is_empty() {
            failures.push(format!("objects never read: {unread:?}"));
        }
        failures
    }
}

/// The run in numbers: faults by operation and kind, what was planted and what arrived.
fn report(proxy: &proxy::Proxy, plan: &Plan, fleet: &Fleet, docs: &[Seen], run: &Run) -> String {
    let Run {
        seed,
        runtime,
        events,
        dead,
    } = run;
    let mut out = String::new();
    out.push_str(&format!(
        "fault injection run: {:.1} s, seed {seed}\n\nscript:\n",
        runtime.as_secs_f64()
    ));
    for e in events {
        out.push_str(&format!("  {e}\n"));
    }
    out.push_str(&proxy.report());
    let mut by_rule: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &plan.expected {
        *by_rule.entry(e.rule).or_default() += 1;
    }
    let alerts: u64 = plan.expected.iter().map(|e| e.alerts).sum();
    out.push_str(&format!(
        "\nplanted: {} objects (+{} duplicate notifications), {} incidents {by_rule:?} with {alerts} alerts, {} near misses, {} hostile bodies\n",
        plan.keys.len(),
        plan.duplicates,
        plan.expected.len(),
        plan.near_misses.len(),
        HOSTILE.len()
    ));
    let pages: Vec<&Seen> = docs.iter().filter(|d| d.str("kind") == "page").collect();
    let follow_ups: Vec<&Seen> = docs
        .iter()
        .filter(|d| d.str("kind") == "follow-up")
        .collect();
    let distinct = |v: &[&Seen]| {
        v.iter()
            .map(|d| d.str("message_id"))
            .collect::<BTreeSet<_>>()
            .len()
    };
    out.push_str(&format!(
        "observed: {} pages ({} distinct), {} follow-ups ({} distinct), {} in the DLQ\n",
        pages.len(),
        distinct(&pages),
        follow_ups.len(),
        distinct(&follow_ups),
        dead.len()
    ));
    let mut repeats: BTreeMap<&str, usize> = BTreeMap::new();
    for d in docs {
        *repeats.entry(d.str("message_id")).or_default() += 1;
    }
    let repeated: Vec<String> = repeats
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, n)| format!("{id} x{n}"))
        .collect();
    out.push_str(&format!("repeats (same ids): {repeated:?}\n"));
    // The slowest incidents: where a fault held work up, and for how long.
    for kind in ["page", "follow-up"] {
        let mut slow: Vec<(f64, String)> = plan
            .expected
            .iter()
            .filter_map(|e| {
                let first = Plan::of(docs, e, kind).first().map(|d| d.at)?;
                let waited = first.saturating_sub(e.planted).as_secs_f64();
                let id = Plan::of(docs, e, kind)[0].str("incident_id").to_owned();
                Some((waited, format!("{} in {} ({id})", e.rule, e.account)))
            })
            .collect();
        slow.sort_by(|a, b| b.0.total_cmp(&a.0));
        out.push_str(&format!("slowest {kind}s, from planting to arrival:\n"));
        for (waited, what) in slow.iter().take(5) {
            out.push_str(&format!("  {waited:6.1}s {what}\n"));
        }
    }
    // Warnings and errors by message, per daemon: where the faults showed.
    out.push_str("\ndaemon warnings and errors by message:\n");
    for (name, d) in &fleet.daemons {
        let mut by_message: BTreeMap<String, usize> = BTreeMap::new();
        for line in d.logs().lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let level = v["level"].as_str().unwrap_or("");
            if level == "WARN" || level == "ERROR" {
                let message = v["message"].as_str().unwrap_or("?");
                *by_message.entry(format!("{level} {message}")).or_default() += 1;
            }
        }
        out.push_str(&format!("  {name}:\n"));
        for (m, n) in by_message {
            out.push_str(&format!("    {n:5} {m}\n"));
        }
    }
    out
}

/// A fault-injecting HTTP/1.1 proxy for the daemons' AWS requests: it parses just enough of
/// each request to name its operation, then answers it itself, forwards it to moto, or
/// breaks the exchange on purpose.
///
/// Operations are named `DynamoDB.<op>` and `SQS.<op>` from `X-Amz-Target` (JSON protocols),
/// `SNS.<Action>` from the form body (query protocol) and `S3.<method> ...` from the request
/// line (REST). Each request gets at most one fault:
/// - `error`: a 500 or 503 in the service's own error format, without forwarding;
/// - `lost`: forwarded and carried out, then the connection is closed before or in the middle
///   of the response (a GetObject may break off inside the body);
/// - `reset`: the connection is reset before forwarding;
/// - `stall`: forwarded after a pause.
///
/// An outage (or a block) makes every matching request fail with a 503 or a reset.
mod proxy {
    use std::collections::BTreeMap;
    use std::io;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_util::sync::CancellationToken;

    /// How often each fault is injected into one operation's requests.
    #[derive(Debug, Clone, Copy)]
    pub struct Rates {
        pub error: f64,
        pub lost: f64,
        pub reset: f64,
        pub stall: f64,
    }

    /// What happens to one request.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Fault {
        None,
        Error(u16),
        Lost,
        Reset,
        Stall,
    }

    /// The columns of the tally, after the request count.
    const KINDS: [&str; 5] = ["error", "lost", "reset", "stall", "outage"];

    struct Outage {
        prefix: String,
        /// `None` until unblocked.
        until: Option<Instant>,
    }

    struct State {
        upstream: SocketAddr,
        rates: fn(&str) -> Rates,
        scale: f64,
        stall: Duration,
        rng: Mutex<u64>,
        outages: Mutex<Vec<Outage>>,
        /// Per operation: requests, then one count per entry of [`KINDS`].
        tally: Mutex<BTreeMap<String, [u64; 6]>>,
        /// One line per injected fault: wall-clock time (as in the daemons' logs), operation,
        /// fault and what the request was about.
        log: Mutex<Vec<String>>,
    }

    impl State {
        fn random(&self) -> f64 {
            let mut s = self.rng.lock().expect("rng");
            *s ^= *s >> 12;
            *s ^= *s << 25;
            *s ^= *s >> 27;
            (s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
        }

        fn note(&self, op: &str, what: &str, head: &Head, body: &[u8]) {
            let line = format!(
                "{} {op} {what} {}",
                chrono::Utc::now().format("%H:%M:%S%.3f"),
                about(op, head, body)
            );
            self.log.lock().expect("log").push(line);
        }

        fn decide(&self, op: &str) -> Fault {
            let now = Instant::now();
            let down = self
                .outages
                .lock()
                .expect("outages")
                .iter()
                .any(|o| op.starts_with(&o.prefix) && o.until.is_none_or(|u| now < u));
            let r = (self.rates)(op);
            let x = self.random();
            let fault = if down {
                if self.random() < 0.5 {
                    Fault::Error(503)
                } else {
                    Fault::Reset
                }
            } else if x < r.error * self.scale {
                Fault::Error(if self.random() < 0.5 { 500 } else { 503 })
            } else if x < (r.error + r.lost) * self.scale {
                Fault::Lost
            } else if x < (r.error + r.lost + r.reset) * self.scale {
                Fault::Reset
            } else if x < (r.error + r.lost + r.reset + r.stall) * self.scale {
                Fault::Stall
            } else {
                Fault::None
            };
            let mut tally = self.tally.lock().expect("tally");
            let row = tally.entry(op.to_owned()).or_default();
            row[0] += 1;
            let column = match (down, fault) {
                (true, _) => Some(5),
                (_, Fault::Error(_)) => Some(1),
                (_, Fault::Lost) => Some(2),
                (_, Fault::Reset) => Some(3),
                (_, Fault::Stall) => Some(4),
                (_, Fault::None) => None,
            };
            if let Some(c) = column {
                row[c] += 1;
            }
            fault
        }

        /// Where a lost response breaks off: before any byte, inside the head, or inside the
        /// body.
        fn cut_at(&self, response: &Response) -> usize {
            let x = self.random();
            let body = response.bytes.len() - response.head_len;
            if x < 1.0 / 3.0 {
                0
            } else if x < 2.0 / 3.0 || body == 0 {
                response.head_len / 2
            } else {
                response.head_len + body / 2
            }
        }
    }

    /// The proxy, on its own thread and runtime so that a test blocking its own runtime (a
    /// daemon starting or stopping) never stalls the daemons' traffic. Stopped on drop.
    pub struct Proxy {
        pub url: String,
        state: Arc<State>,
        stop: CancellationToken,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Proxy {
        pub fn start(
            upstream: &str,
            seed: u64,
            scale: f64,
            stall: Duration,
            rates: fn(&str) -> Rates,
        ) -> Proxy {
            let upstream: SocketAddr = upstream
                .trim_start_matches("http://")
                .parse()
                .expect("moto's endpoint is http://127.0.0.1:<port>");
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy port");
            listener.set_nonblocking(true).expect("non-blocking");
            let url = format!("http://{}", listener.local_addr().expect("proxy address"));
            let state = Arc::new(State {
                upstream,
                rates,
                scale,
                stall,
                rng: Mutex::new(seed | 1),
                outages: Mutex::new(Vec::new()),
                tally: Mutex::new(BTreeMap::new()),
                log: Mutex::new(Vec::new()),
            });
            let stop = CancellationToken::new();
            let thread = std::thread::spawn({
                let (state, stop) = (state.clone(), stop.clone());
                move || {
                    let rt = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                        .expect("proxy runtime");
                    rt.block_on(async {
                        let listener = TcpListener::from_std(listener).expect("proxy listener");
                        serve(listener, state, stop).await;
                    });
                    rt.shutdown_timeout(Duration::from_secs(1));
                }
            });
            Proxy {
                url,
                state,
                stop,
                thread: Some(thread),
            }
        }

        /// Every request whose operation starts with `prefix` fails for `length`.
        pub fn outage(&self, prefix: &str, length: Duration) {
            self.state.outages.lock().expect("outages").push(Outage {
                prefix: prefix.to_owned(),
                until: Some(Instant::now() + length),
            });
        }

        /// Every request whose operation starts with `prefix` fails until [`Proxy::unblock`].
        pub fn block(&self, prefix: &str) {
            self.state.outages.lock().expect("outages").push(Outage {
                prefix: prefix.to_owned(),
                until: None,
            });
        }

        pub fn unblock(&self, prefix: &str) {
            self.state
                .outages
                .lock()
                .expect("outages")
                .retain(|o| !(o.prefix == prefix && o.until.is_none()));
        }

        /// Every injected fault, one line each.
        pub fn log(&self) -> String {
            self.state.log.lock().expect("log").join("\n")
        }

        /// The tally as a table: requests and faults per operation, and totals per kind.
        pub fn report(&self) -> String {
            let tally = self.state.tally.lock().expect("tally");
            let mut out = format!(
                "\nfaults injected by the proxy:\n  {:<32} {:>8} {:>6} {:>6} {:>6} {:>6} {:>6}\n",
                "operation", "requests", KINDS[0], KINDS[1], KINDS[2], KINDS[3], KINDS[4]
            );
            let mut total = [0u64; 6];
            for (op, row) in tally.iter() {
                out.push_str(&format!(
                    "  {op:<32} {:>8} {:>6} {:>6} {:>6} {:>6} {:>6}\n",
                    row[0], row[1], row[2], row[3], row[4], row[5]
                ));
                for (t, r) in total.iter_mut().zip(row) {
                    *t += r;
                }
            }
            out.push_str(&format!(
                "  {:<32} {:>8} {:>6} {:>6} {:>6} {:>6} {:>6}\n",
                "total", total[0], total[1], total[2], total[3], total[4], total[5]
            ));
            out
        }
    }

    impl Drop for Proxy {
        fn drop(&mut self) {
            self.stop.cancel();
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    async fn serve(listener: TcpListener, state: Arc<State>, stop: CancellationToken) {
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((stream, _)) = accepted else { continue };
            let (state, stop) = (state.clone(), stop.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = connection(stream, state) => {}
                }
            });
        }
    }

    /// One client connection, request by request (HTTP/1.1 keep-alive). Each forwarded
    /// request gets its own connection to moto, so a broken exchange never leaves a
    /// half-read response on a connection that is used again.
    async fn connection(stream: TcpStream, state: Arc<State>) {
        let _ = stream.set_nodelay(true);
        let mut client = Conn::new(stream);
        loop {
            let Ok(Some(head_bytes)) = client.head().await else {
                return;
            };
            let Some(head) = Head::parse(&head_bytes) else {
                return;
            };
            let Ok((body, _)) = client.body(&head, true, false).await else {
                return;
            };
            let op = operation(&head, &body);
            let fault = state.decide(&op);
            if fault != Fault::None {
                state.note(&op, &format!("{fault:?}"), &head, &body);
            }
            match fault {
                Fault::Error(status) => {
                    if client
                        .stream
                        .write_all(&error_response(&op, status))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    continue;
                }
                Fault::Reset => {
                    let _ = client.stream.set_zero_linger();
                    return;
                }
                Fault::Stall => tokio::time::sleep(state.stall).await,
                Fault::Lost | Fault::None => {}
            }
            let forwarded = tokio::time::timeout(
                Duration::from_secs(60),
                forward(state.upstream, &head_bytes, &body, head.start.0 == "HEAD"),
            )
            .await;
            let Ok(Ok(response)) = forwarded else {
                // moto did not answer: the client sees a reset, as from a load balancer.
                let _ = client.stream.set_zero_linger();
                return;
            };
            if fault == Fault::Lost {
                let cut = state.cut_at(&response);
                let status = String::from_utf8_lossy(&response.bytes[..response.head_len.min(12)])
                    .into_owned();
                state.note(
                    &op,
                    &format!(
                        "carried out ({status}), response cut at byte {cut} of {}",
                        response.bytes.len()
                    ),
                    &head,
                    &body,
                );
                let _ = client.stream.write_all(&response.bytes[..cut]).await;
                let _ = client.stream.shutdown().await;
                return;
            }
            if client.stream.write_all(&response.bytes).await.is_err() || response.close {
                return;
            }
        }
    }

    /// A whole response from moto, as bytes to pass on.
    struct Response {
        bytes: Vec<u8>,
        head_len: usize,
        /// The connection must close after it (no length, or `Connection: close`).
        close: bool,
    }

    async fn forward(
        upstream: SocketAddr,
        head: &[u8],
        body: &[u8],
        head_request: bool,
    ) -> io::Result<Response> {
        let stream = TcpStream::connect(upstream).await?;
        let _ = stream.set_nodelay(true);
        let mut up = Conn::new(stream);
        up.stream.write_all(head).await?;
        up.stream.write_all(body).await?;
        loop {
            let bytes = up.head().await?.ok_or_else(eof)?;
            let parsed = Head::parse(&bytes).ok_or_else(|| invalid("response head"))?;
            let status: u16 = parsed.start.1.parse().map_err(|_| invalid("status code"))?;
            // An interim response (100 Continue) is not passed on; the final one follows.
            if (100..200).contains(&status) {
                continue;
            }
            let no_body = head_request || status == 204 || status == 304;
            let (body, close_delimited) = up.body(&parsed, false, no_body).await?;
            let close = close_delimited
                || parsed
                    .header("connection")
                    .is_some_and(|c| c.eq_ignore_ascii_case("close"));
            let head_len = bytes.len();
            let mut all = bytes;
            all.extend_from_slice(&body);
            return Ok(Response {
                bytes: all,
                head_len,
                close,
            });
        }
    }

    /// A request or status line and its headers (names lower-cased).
    struct Head {
        start: (String, String),
        headers: Vec<(String, String)>,
    }

    impl Head {
        fn parse(bytes: &[u8]) -> Option<Head> {
            let text = std::str::from_utf8(bytes).ok()?;
            let mut lines = text.split("\r\n");
            let mut first = lines.next()?.splitn(3, ' ');
            let start = (first.next()?.to_owned(), first.next()?.to_owned());
            let mut headers = Vec::new();
            for line in lines.take_while(|l| !l.is_empty()) {
                let (name, value) = line.split_once(':')?;
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
            Some(Head { start, headers })
        }

        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// What a request is about, for the fault log: DynamoDB's item keys, SNS's subject, S3's
    /// path.
    fn about(op: &str, head: &Head, body: &[u8]) -> String {
        let text = String::from_utf8_lossy(body);
        if op.starts_with("DynamoDB.") {
            let mut keys = Vec::new();
            for name in ["\"pk\":{\"S\":\"", "\"sk\":{\"S\":\""] {
                if let Some(i) = text.find(name) {
                    let rest = &text[i + name.len()..];
                    keys.push(rest.split('"').next().unwrap_or("").to_owned());
                }
            }
            return keys.join(" ");
        }
        if op.starts_with("SNS.") {
            return text
                .split('&')
                .find_map(|kv| kv.strip_prefix("Subject="))
                .unwrap_or("")
                .to_owned();
        }
        if op.starts_with("S3.") {
            return head.start.1.clone();
        }
        String::new()
    }

    /// The AWS operation a request calls.
    fn operation(head: &Head, body: &[u8]) -> String {
        if let Some(target) = head.header("x-amz-target") {
            let (service, op) = target.split_once('.').unwrap_or(("?", target));
            let service = if service.starts_with("DynamoDB") {
                "DynamoDB"
            } else if service.starts_with("AmazonSQS") {
                "SQS"
            } else {
                service
            };
            return format!("{service}.{op}");
        }
        if head
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
        {
            let form = String::from_utf8_lossy(body);
            let field = |name: &str| {
                form.split('&')
                    .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                    .map(str::to_owned)
            };
            if let Some(action) = field("Action") {
                // SNS's query API is version 2010-03-31; SQS's (not used by this SDK) differs.
                let service = if field("Version").as_deref() == Some("2010-03-31") {
                    "SNS"
                } else {
                    "SQS"
                };
                return format!("{service}.{action}");
            }
        }
        let path = head.start.1.split('?').next().unwrap_or("/");
        let depth = path.split('/').filter(|s| !s.is_empty()).count();
        match (head.start.0.as_str(), depth) {
            ("GET", d) if d >= 2 => "S3.GetObject".to_owned(),
            (method, d) if d >= 2 => format!("S3.{method} object"),
            (method, _) => format!("S3.{method} bucket"),
        }
    }

    /// A 500 or 503 as the service itself would send it.
    fn error_response(op: &str, status: u16) -> Vec<u8> {
        let unavailable = status == 503;
        let message = "injected by the test's fault proxy";
        let (content_type, extra, body) = match op.split('.').next() {
            Some("DynamoDB") => (
                "application/x-amz-json-1.0",
                String::new(),
                serde_json::json!({
                    "__type": if unavailable {
                        "com.amazonaws.dynamodb.v20120810#ServiceUnavailable"
                    } else {
                        "com.amazonaws.dynamodb.v20120810#InternalServerError"
                    },
                    "message": message,
                })
                .to_string(),
            ),
            Some("SQS") => {
                let code = if unavailable {
                    "ServiceUnavailable"
                } else {
                    "InternalError"
                };
                (
                    "application/x-amz-json-1.0",
                    format!("x-amzn-query-error: {code};Receiver\r\n"),
                    serde_json::json!({"__type": format!("com.amazonaws.sqs#{code}"), "message": message})
                        .to_string(),
                )
            }
            Some("SNS") => (
                "text/xml",
                String::new(),
                format!(
                    "<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><Error><Type>Receiver</Type><Code>{}</Code><Message>{message}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>",
                    if unavailable {
                        "ServiceUnavailable"
                    } else {
                        "InternalError"
                    }
                ),
            ),
            _ => (
                "application/xml",
                String::new(),
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{}</Code><Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>",
                    if unavailable {
                        "SlowDown"
                    } else {
                        "InternalError"
                    }
                ),
            ),
        };
        let reason = if unavailable {
            "Service Unavailable"
        } else {
            "Internal Server Error"
        };
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nx-amzn-requestid: fault-proxy\r\n{extra}\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn eof() -> io::Error {
        io::Error::from(io::ErrorKind::UnexpectedEof)
    }

    fn invalid(what: &str) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, format!("unreadable {what}"))
    }

    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    /// A connection with what was read but not yet used.
    struct Conn {
        stream: TcpStream,
        buf: Vec<u8>,
    }

    impl Conn {
        fn new(stream: TcpStream) -> Conn {
            Conn {
                stream,
                buf: Vec::new(),
            }
        }

        /// Reads more; false at end of stream.
        async fn fill(&mut self) -> io::Result<bool> {
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk).await?;
            self.buf.extend_from_slice(&chunk[..n]);
            Ok(n > 0)
        }

        /// A message head through its blank line; `None` if the peer closed between messages.
        async fn head(&mut self) -> io::Result<Option<Vec<u8>>> {
            loop {
                if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                    return Ok(Some(self.buf.drain(..i + 4).collect()));
                }
                if self.buf.len() > 1 << 20 {
                    return Err(invalid("head (over 1 MiB)"));
                }
                if !self.fill().await? {
                    return if self.buf.is_empty() {
                        Ok(None)
                    } else {
                        Err(eof())
                    };
                }
            }
        }

        async fn exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
            while self.buf.len() < n {
                if !self.fill().await? {
                    return Err(eof());
                }
            }
            Ok(self.buf.drain(..n).collect())
        }

        async fn line(&mut self) -> io::Result<Vec<u8>> {
            loop {
                if let Some(i) = find(&self.buf, b"\r\n") {
                    return Ok(self.buf.drain(..i + 2).collect());
                }
                if !self.fill().await? {
                    return Err(eof());
                }
            }
        }

        /// A chunked body, as its raw bytes (sizes, chunks and trailers).
        async fn chunked(&mut self) -> io::Result<Vec<u8>> {
            let mut out = Vec::new();
            loop {
                let line = self.line().await?;
                let text = std::str::from_utf8(&line).map_err(|_| invalid("chunk size"))?;
                let size_text = text.trim_end().split(';').next().unwrap_or("").trim();
                let size =
                    usize::from_str_radix(size_text, 16).map_err(|_| invalid("chunk size"))?;
                out.extend_from_slice(&line);
                if size == 0 {
                    loop {
                        let trailer = self.line().await?;
                        let last = trailer == b"\r\n";
                        out.extend_from_slice(&trailer);
                        if last {
                            return Ok(out);
                        }
                    }
                }
                out.extend(self.exact(size + 2).await?);
            }
        }

        /// The body that follows `head`, framed as HTTP/1.1 frames it, and whether it ran to
        /// the end of the connection.
        async fn body(
            &mut self,
            head: &Head,
            request: bool,
            no_body: bool,
        ) -> io::Result<(Vec<u8>, bool)> {
            if no_body {
                return Ok((Vec::new(), false));
            }
            if head
                .header("transfer-encoding")
                .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
            {
                return Ok((self.chunked().await?, false));
            }
            if let Some(length) = head.header("content-length") {
                let n = length.parse().map_err(|_| invalid("content-length"))?;
                return Ok((self.exact(n).await?, false));
            }
            if request {
                return Ok((Vec::new(), false));
            }
            while self.fill().await? {}
            Ok((std::mem::take(&mut self.buf), true))
        }
    }
}
