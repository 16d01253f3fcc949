//! The delivery loop in process, through its seams, for faults moto cannot make: a publish
//! that hangs while a duplicate copy of its message arrives, responses lost after SNS accepted
//! a message, a state store outage, shutdown with messages waiting; and the posture audit's
//! interval on a paused clock, over an account in plain data.
//!
//! The queue, the objects, the store and the sink are in-process fakes here; the tests
//! against moto server (tests/daemon.rs, tests/incidents.rs) prove the AWS paths.

mod support;

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use support::{failed_login_at, key, log_file, root_login, root_login_in, s3_event};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use trailwarden::aws::{Answer, Edge, Failed};
use trailwarden::clock::Clock;
use trailwarden::config::Settings;
use trailwarden::daemon::{self, Daemon, Edges};
use trailwarden::detect::RuleSet;
use trailwarden::finding::IncidentKey;
use trailwarden::finding::accounts::AccountNames;
use trailwarden::finding::correlation::CorrEvent;
use trailwarden::finding::sink::{FollowUp, Message, Opened, Page, Resolved, Sink, SinkError};
use trailwarden::incidents::correlate::Span;
use trailwarden::incidents::store::memory::MemoryStore;
use trailwarden::incidents::store::{
    Claim, Claimed, Due, Open, OpenFinding, Part, Store, StoreError,
};
use trailwarden::intake::sqs::{Queue, QueueError, Received};
use trailwarden::intake::{Objects, SourceError};
use trailwarden::output::outbox::Outputs;
use trailwarden::output::sns::render;
use trailwarden::posture::{
    self, AccountSummary, AccountView, Analyzer, Grants, LiveUser, Organization, PasswordPolicy,
    Selectors, Trail,
};
use trailwarden::telemetry::Metrics;

const BUCKET: &str = "trail-bucket";

/// A queue with SQS's visibility rules, in memory.
#[derive(Default)]
struct FakeQueue {
    inner: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    next: usize,
    /// id → (body, visible at, receive count), on tokio's clock so paused time moves it.
    messages: HashMap<String, (String, tokio::time::Instant, u32)>,
    deleted: Vec<String>,
    /// (id, seconds) of every visibility change.
    visibility: Vec<(String, u64)>,
    receives: usize,
}

impl FakeQueue {
    fn send(&self, body: &str) -> String {
        let mut q = self.inner.lock().expect("queue");
        q.next += 1;
        let id = format!("m{}", q.next);
        q.messages.insert(
            id.clone(),
            (body.to_owned(), tokio::time::Instant::now(), 0),
        );
        id
    }

    fn deleted(&self) -> Vec<String> {
        self.inner.lock().expect("queue").deleted.clone()
    }

    fn receives(&self) -> usize {
        self.inner.lock().expect("queue").receives
    }

    fn receive_count(&self, id: &str) -> u32 {
        self.inner
            .lock()
            .expect("queue")
            .messages
            .get(id)
            .map_or(0, |m| m.2)
    }

    fn handed_back(&self, id: &str) -> bool {
        self.inner
            .lock()
            .expect("queue")
            .visibility
            .iter()
            .any(|(m, s)| m == id && *s == 0)
    }
}

#[async_trait]
impl Queue for FakeQueue {
    async fn receive(&self, max: u32, visibility_secs: u64) -> Result<Vec<Received>, QueueError> {
        let out = {
            let mut q = self.inner.lock().expect("queue");
            q.receives += 1;
            let now = tokio::time::Instant::now();
            let mut out = Vec::new();
            let mut ids: Vec<String> = q.messages.keys().cloned().collect();
            ids.sort();
            for id in ids {
                if out.len() as u32 >= max {
                    break;
                }
                let (body, visible_at, count) = q.messages.get_mut(&id).expect("message");
                if *visible_at <= now {
                    *visible_at = now + Duration::from_secs(visibility_secs);
                    *count += 1;
                    out.push(Received {
                        id: id.clone(),
                        receipt: id.clone(),
                        body: body.clone(),
                        receive_count: *count,
                    });
                }
            }
            out
        };
        if out.is_empty() {
            // A short long poll.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(out)
    }

    async fn set_visibility(&self, receipt: &str, secs: u64) -> Result<(), QueueError> {
        let mut q = self.inner.lock().expect("queue");
        q.visibility.push((receipt.to_owned(), secs));
        if let Some(m) = q.messages.get_mut(receipt) {
            m.1 = tokio::time::Instant::now() + Duration::from_secs(secs);
        }
        Ok(())
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        let mut q = self.inner.lock().expect("queue");
        q.messages.remove(receipt);
        q.deleted.push(receipt.to_owned());
        Ok(())
    }
}

/// Log objects in memory.
#[derive(Default)]
struct FakeObjects(Mutex<HashMap<String, Vec<u8>>>);

impl FakeObjects {
    fn put(&self, key: &str, bytes: Vec<u8>) {
        self.0
            .lock()
            .expect("objects")
            .insert(key.to_owned(), bytes);
    }
}

#[async_trait]
impl Objects for FakeObjects {
    async fn open(&self, bucket: &str, key: &str) -> Result<Box<dyn Read + Send>, SourceError> {
        match self.0.lock().expect("objects").get(key) {
            Some(bytes) => Ok(Box::new(std::io::Cursor::new(bytes.clone()))),
            None => Err(SourceError::S3(Failed::new(
                Edge::Object,
                Answer::Missing,
                format!("s3://{bucket}/{key} does not exist"),
            ))),
        }
    }
}

/// A sink that records what it accepted and can hold, fail, or lose the response.
#[derive(Default)]
struct FakeSink {
    /// Every message that reached the topic, as its JSON document.
    delivered: Mutex<Vec<Value>>,
    /// Publishes that fail outright (the topic is unavailable).
    fail: AtomicUsize,
    /// Publishes that reach the topic but whose response is lost.
    lose_response: AtomicUsize,
    /// When set, a publish waits for a permit first.
    hold: Mutex<Option<Arc<Semaphore>>>,
    attempts: AtomicUsize,
}

impl FakeSink {
    fn delivered(&self) -> Vec<Value> {
        self.delivered.lock().expect("sink").clone()
    }

    async fn deliver(&self, message: &str) -> Result<(), SinkError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let hold = self.hold.lock().expect("hold").clone();
        if let Some(hold) = hold {
            hold.acquire().await.expect("permit").forget();
        }
        let take = |n: &AtomicUsize| {
            n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
                .is_ok()
        };
        let outage = |what: &str, ambiguous: bool| {
            let mut f = Failed::new(
                Edge::Sink,
                Answer::Unavailable,
                format!("fake topic: {what}"),
            );
            f.ambiguous = ambiguous;
            SinkError(f)
        };
        if take(&self.fail) {
            return Err(outage("unavailable", false));
        }
        let body: Value = serde_json::from_str(message).expect("json body");
        let doc: Value = serde_json::from_str(body["sqs"].as_str().expect("sqs")).expect("doc");
        self.delivered.lock().expect("sink").push(doc);
        if take(&self.lose_response) {
            return Err(outage("the response was lost", true));
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for FakeSink {
    async fn page(&self, page: Page<'_>) -> Result<(), SinkError> {
        self.deliver(&render(&Message::page(page), &AccountNames::default()).message)
            .await
    }

    async fn follow_up(&self, follow_up: &FollowUp) -> Result<(), SinkError> {
        let message = Message::FollowUp(follow_up.clone());
        self.deliver(&render(&message, &AccountNames::default()).message)
            .await
    }

    async fn finding(&self, finding: Opened<'_>) -> Result<(), SinkError> {
        self.deliver(&render(&Message::finding(finding), &AccountNames::default()).message)
            .await
    }

    async fn resolved(&self, resolved: &Resolved) -> Result<(), SinkError> {
        let message = Message::Resolved(resolved.clone());
        self.deliver(&render(&message, &AccountNames::default()).message)
            .await
    }
}

/// The memory store, failing every call while `down` is set.
struct FlakyStore {
    inner: MemoryStore,
    down: std::sync::atomic::AtomicBool,
    failures: AtomicUsize,
    /// Claims left to answer as of 10 s earlier: a task whose claim read the incident just
    /// before its window ended, then stalled.
    stale_claims: AtomicUsize,
    /// Folds left to apply and then answer with a lost reply.
    lose_fold_reply: AtomicUsize,
    /// When set, a fold waits for a permit first.
    hold_folds: Mutex<Option<Arc<Semaphore>>>,
}

impl FlakyStore {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            self.failures.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError(Failed::new(
                Edge::Store,
                Answer::Unavailable,
                "fake table: throttled".into(),
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl Store for FlakyStore {
    async fn claim(&self, key: &IncidentKey, claim: &Claim) -> Result<Claimed, StoreError> {
        self.check()?;
        let stale = self
            .stale_claims
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
            .is_ok();
        if stale {
            let mut earlier = claim.clone();
            earlier.now -= 10;
            return self.inner.claim(key, &earlier).await;
        }
        self.inner.claim(key, claim).await
    }
    async fn paged(&self, key: &IncidentKey, claim: &Claim, open: &Open) -> Result<(), StoreError> {
        self.check()?;
        self.inner.paged(key, claim, open).await
    }
    async fn release(&self, key: &IncidentKey, claim: &Claim) -> Result<(), StoreError> {
        self.check()?;
        self.inner.release(key, claim).await
    }
    async fn fold(&self, due: &Due, part: &Part) -> Result<bool, StoreError> {
        let hold = self.hold_folds.lock().expect("hold").clone();
        if let Some(hold) = hold {
            hold.acquire().await.expect("permit").forget();
        }
        self.check()?;
        let folded = self.inner.fold(due, part).await?;
        let lost = self
            .lose_fold_reply
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
            .is_ok();
        if lost {
            // Applied, but the reply never arrived.
            let mut f = Failed::new(
                Edge::Store,
                Answer::Unavailable,
                "fake table: the reply was lost".into(),
            );
            f.ambiguous = true;
            return Err(StoreError(f));
        }
        Ok(folded)
    }
    async fn due(&self, now: i64, lookback: i64) -> Result<Vec<Due>, StoreError> {
        self.check()?;
        self.inner.due(now, lookback).await
    }
    async fn take_follow_up(
        &self,
        due: &Due,
        owner: &str,
        now: i64,
        lease: i64,
    ) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.take_follow_up(due, owner, now, lease).await
    }
    async fn give_back_follow_up(&self, due: &Due, owner: &str) -> Result<(), StoreError> {
        self.check()?;
        self.inner.give_back_follow_up(due, owner).await
    }
    async fn parts(&self, due: &Due) -> Result<Vec<Part>, StoreError> {
        self.check()?;
        self.inner.parts(due).await
    }
    async fn followed_up(&self, due: &Due) -> Result<(), StoreError> {
        self.check()?;
        self.inner.followed_up(due).await
    }
    async fn add_events(&self, g: &str, e: &[CorrEvent], x: i64) -> Result<(), StoreError> {
        self.check()?;
        self.inner.add_events(g, e, x).await
    }
    async fn window(
        &self,
        g: &str,
        from: i64,
        to: i64,
    ) -> Result<(Vec<CorrEvent>, Vec<Span>), StoreError> {
        self.check()?;
        self.inner.window(g, from, to).await
    }
    async fn fired(&self, g: &str, s: Span, x: i64) -> Result<(), StoreError> {
        self.check()?;
        self.inner.fired(g, s, x).await
    }
    async fn finding_opened(&self, claim: &Claim, open: &OpenFinding) -> Result<(), StoreError> {
        self.check()?;
        self.inner.finding_opened(claim, open).await
    }
    async fn open_findings(&self, a: &str, c: &str) -> Result<Vec<OpenFinding>, StoreError> {
        self.check()?;
        self.inner.open_findings(a, c).await
    }
    async fn take_resolution(
        &self,
        open: &OpenFinding,
        owner: &str,
        now: i64,
        lease: i64,
    ) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.take_resolution(open, owner, now, lease).await
    }
    async fn finding_resolved(&self, open: &OpenFinding) -> Result<(), StoreError> {
        self.check()?;
        self.inner.finding_resolved(open).await
    }
    async fn take_audit(&self, a: &str, o: &str, now: i64, hold: i64) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.take_audit(a, o, now, hold).await
    }
    async fn audited(&self, a: &str, o: &str, next_due: i64) -> Result<(), StoreError> {
        self.check()?;
        self.inner.audited(a, o, next_due).await
    }
    async fn object_read(&self, source: &str) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.object_read(source).await
    }
    async fn mark_object_read(&self, source: &str, expires_at: i64) -> Result<(), StoreError> {
        self.check()?;
        self.inner.mark_object_read(source, expires_at).await
    }
}

struct Harness {
    queue: Arc<FakeQueue>,
    objects: Arc<FakeObjects>,
    sink: Arc<FakeSink>,
    store: Arc<FlakyStore>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    run: tokio::task::JoinHandle<()>,
}

impl Harness {
    fn start(extra: &[(&str, &str)]) -> Harness {
        Harness::start_with(extra, None)
    }

    /// A harness whose daemon audits `account`'s posture.
    fn start_with(extra: &[(&str, &str)], account: Option<Arc<dyn AccountView>>) -> Harness {
        let mut env = vec![
            (
                "TRAILWARDEN_QUEUE_URL",
                "https://sqs.us-east-1.amazonaws.com/123456789012/q",
            ),
            (
                "TRAILWARDEN_TOPIC_ARN",
                "arn:aws:sns:us-east-1:123456789012:alerts",
            ),
            ("TRAILWARDEN_ALLOWED_BUCKETS", BUCKET),
            ("TRAILWARDEN_VISIBILITY_TIMEOUT_SECS", "30"),
            ("TRAILWARDEN_SHUTDOWN_GRACE_SECS", "5"),
        ];
        env.extend_from_slice(extra);
        let settings = Settings::load(None, &env[..]).expect("settings");
        let queue = Arc::new(FakeQueue::default());
        let objects = Arc::new(FakeObjects::default());
        let sink = Arc::new(FakeSink::default());
        // Tokio's clock: real time in the multi-threaded tests, paused time where a test
        // pauses it.
        let clock = Clock::tokio(chrono::Utc::now().timestamp());
        let store = Arc::new(FlakyStore {
            inner: MemoryStore::with_clock(clock.clone()),
            down: false.into(),
            failures: AtomicUsize::new(0),
            stale_claims: AtomicUsize::new(0),
            lose_fold_reply: AtomicUsize::new(0),
            hold_folds: Mutex::new(None),
        });
        let metrics = Metrics::with_clock(clock.clone());
        let daemon = Daemon::new(
            settings,
            Arc::new(RuleSet::load(&[]).expect("rules")),
            Edges {
                queue: queue.clone(),
                objects: objects.clone(),
                store: store.clone(),
                sink: sink.clone(),
                outputs: Outputs::none(),
                account,
                members: None,
                clock,
                names: Default::default(),
                directory: None,
            },
            metrics.clone(),
        );
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(daemon::run(daemon, shutdown.clone()));
        Harness {
            queue,
            objects,
            sink,
            store,
            metrics,
            shutdown,
            run,
        }
    }

    /// Puts an object and sends its notification; returns the message id.
    fn put(&self, name: &str, records: &[Value]) -> String {
        self.objects.put(&key(name), log_file(records));
        self.queue.send(&s3_event(BUCKET, &[&key(name)]))
    }

    async fn until(&self, what: &str, timeout: Duration, pred: impl Fn(&Harness) -> bool) {
        let deadline = Instant::now() + timeout;
        while !pred(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.run.await.expect("run");
    }
}

/// Event ids listed by the delivered pages of `rule`.
fn paged_ids(docs: &[Value], rule: &str) -> Vec<String> {
    docs.iter()
        .filter(|d| d["rule"] == rule && d["kind"] == "page")
        .flat_map(|d| d["alerts"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["event_id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_arriving_while_the_page_is_in_flight_is_not_deleted_early() {
    let h = Harness::start(&[]);
    let gate = Arc::new(Semaphore::new(0));
    *h.sink.hold.lock().expect("hold") = Some(gate.clone());

    let first = h.put("dup", &[root_login("in-flight")]);
    h.until("the first publish to start", Duration::from_secs(10), |h| {
        h.sink.attempts.load(Ordering::SeqCst) == 1
    })
    .await;
    // S3 delivered the notification twice: the copy reads the object and finds the page
    // claimed by the first message.
    let copy = h.queue.send(&s3_event(BUCKET, &[&key("dup")]));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        h.queue.deleted().is_empty(),
        "nothing is deleted while the page is unpublished"
    );
    gate.add_permits(10);
    h.until("both messages deleted", Duration::from_secs(10), |h| {
        h.queue.deleted().len() == 2
    })
    .await;
    let deleted = h.queue.deleted();
    assert!(deleted.contains(&first) && deleted.contains(&copy));
    assert_eq!(
        paged_ids(&h.sink.delivered(), "root-console-login"),
        vec!["in-flight"]
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_publish_is_paged_by_the_copy_that_waited() {
    let h = Harness::start(&[]);
    let gate = Arc::new(Semaphore::new(0));
    *h.sink.hold.lock().expect("hold") = Some(gate.clone());
    h.sink.fail.store(1, Ordering::SeqCst);

    h.put("dup", &[root_login("takeover")]);
    h.until("the first publish to start", Duration::from_secs(10), |h| {
        h.sink.attempts.load(Ordering::SeqCst) == 1
    })
    .await;
    h.queue.send(&s3_event(BUCKET, &[&key("dup")]));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The first publish fails; its claim is released and one of the two pages.
    gate.add_permits(100);
    h.until("both messages deleted", Duration::from_secs(15), |h| {
        h.queue.deleted().len() == 2
    })
    .await;
    assert_eq!(
        paged_ids(&h.sink.delivered(), "root-console-login"),
        vec!["takeover"]
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_publish_responses_repeat_one_page_with_the_same_ids() {
    let h = Harness::start(&[]);
    // Every page's first response is lost: SNS accepted it, the daemon cannot know.
    h.sink.lose_response.store(3, Ordering::SeqCst);
    for i in 0..3 {
        h.put(
            &format!("lost-{i}"),
            &[root_login_in(&format!("lost-{i}"), &support::account(i))],
        );
    }
    h.until("all messages deleted", Duration::from_secs(20), |h| {
        h.queue.deleted().len() == 3
    })
    .await;
    let docs = h.sink.delivered();
    // Each incident reached the topic at most twice per retry burst, and a repeat carries the
    // same incident and message ids, so a subscriber can drop it.
    let mut by_incident: HashMap<String, Vec<&Value>> = HashMap::new();
    for d in &docs {
        by_incident
            .entry(d["incident_id"].as_str().expect("id").to_owned())
            .or_default()
            .push(d);
    }
    assert_eq!(by_incident.len(), 3, "{docs:#?}");
    for copies in by_incident.values() {
        // The lost one and its repeat by the same message, nothing more.
        assert_eq!(copies.len(), 2, "{copies:#?}");
        assert!(
            copies
                .iter()
                .all(|c| c["message_id"] == copies[0]["message_id"])
        );
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_holds_the_work_and_pauses_receiving() {
    let h = Harness::start(&[]);
    h.store.down.store(true, Ordering::SeqCst);
    h.put("during", &[root_login("store-outage")]);
    h.until("the store to be tried", Duration::from_secs(10), |h| {
        h.store.failures.load(Ordering::SeqCst) >= 1
    })
    .await;
    h.until("the message to be held", Duration::from_secs(5), |h| {
        h.metrics
            .encode()
            .contains("trailwarden_sqs_messages_held 1")
    })
    .await;
    // While held, no new message is received (and no receive count is spent).
    let receives = h.queue.receives();
    h.put("queued", &[root_login_in("waits", &support::account(7))]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(h.queue.receives(), receives, "receiving paused");
    assert!(h.metrics.healthy(60), "held work is not ill health");
    h.store.down.store(false, Ordering::SeqCst);
    h.until("both messages deleted", Duration::from_secs(20), |h| {
        h.queue.deleted().len() == 2
    })
    .await;
    let mut ids = paged_ids(&h.sink.delivered(), "root-console-login");
    ids.sort();
    assert_eq!(ids, vec!["store-outage", "waits"]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_hands_waiting_messages_back_at_once() {
    let h = Harness::start(&[]);
    h.sink.fail.store(usize::MAX, Ordering::SeqCst);
    let id = h.put("held", &[root_login("held-at-shutdown")]);
    h.until("the message to be held", Duration::from_secs(10), |h| {
        h.metrics
            .encode()
            .contains("trailwarden_sqs_messages_held 1")
    })
    .await;
    let started = Instant::now();
    let queue = h.queue.clone();
    h.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no grace period is waited out"
    );
    assert!(queue.handed_back(&id), "visibility 0 on shutdown");
    assert!(queue.deleted().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correlation_counts_redelivered_events_once() {
    let h = Harness::start(&[]);
    // Three failures, delivered in two messages, the second a copy of the first object plus
    // two more: five distinct events would fire, three seen twice must not.
    let three: Vec<Value> = (0..3)
        .map(|i| failed_login_at(&format!("r{i}"), &format!("2026-11-20T10:0{i}:00Z")))
        .collect();
    h.put("three", &three);
    h.queue.send(&s3_event(BUCKET, &[&key("three")]));
    h.until("both deleted", Duration::from_secs(10), |h| {
        h.queue.deleted().len() == 2
    })
    .await;
    assert!(paged_ids(&h.sink.delivered(), "console-login-brute-force").is_empty());
    let two: Vec<Value> = (3..5)
        .map(|i| failed_login_at(&format!("r{i}"), &format!("2026-11-20T10:0{i}:00Z")))
        .collect();
    h.put("two", &two);
    h.until("brute force paged", Duration::from_secs(10), |h| {
        h.sink
            .delivered()
            .iter()
            .any(|d| d["rule"] == "console-login-brute-force")
    })
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_that_finds_its_incident_closing_opens_a_new_one() {
    let h = Harness::start(&[("TRAILWARDEN_INCIDENT_WINDOW_SECS", "3")]);
    let kinds = |h: &Harness, kind: &str| {
        h.sink
            .delivered()
            .into_iter()
            .filter(|d| d["rule"] == "root-console-login" && d["kind"] == kind)
            .collect::<Vec<_>>()
    };
    h.put("first", &[root_login("first")]);
    h.until("the page", Duration::from_secs(10), |h| {
        kinds(h, "page").len() == 1
    })
    .await;
    h.put("second", &[root_login("second")]);
    h.until("the follow-up", Duration::from_secs(15), |h| {
        kinds(h, "follow-up").len() == 1
    })
    .await;

    // The third sign-in's claim reads the incident as still open (it stalled before its
    // window ended), but the follow-up has gone out: folding it there would lose it, so it
    // opens a new incident and pages.
    h.store.stale_claims.store(1, Ordering::SeqCst);
    h.put("third", &[root_login("third")]);
    h.until("all messages deleted", Duration::from_secs(15), |h| {
        h.queue.deleted().len() == 3
    })
    .await;
    assert_eq!(
        h.store.stale_claims.load(Ordering::SeqCst),
        0,
        "the stale claim was used"
    );
    assert_eq!(
        paged_ids(&h.sink.delivered(), "root-console-login"),
        vec!["first", "third"]
    );
    let pages = kinds(&h, "page");
    assert_ne!(pages[0]["incident_id"], pages[1]["incident_id"]);
    assert_eq!(kinds(&h, "follow-up").len(), 1, "no second follow-up");
    assert_eq!(kinds(&h, "follow-up")[0]["count"], 1);
    h.stop().await;
}

/// Pages of `rule` as delivered: (incident id, message id, event ids).
fn pages(docs: &[Value], rule: &str) -> Vec<(String, String, Vec<String>)> {
    docs.iter()
        .filter(|d| d["rule"] == rule && d["kind"] == "page")
        .map(|d| {
            (
                d["incident_id"].as_str().unwrap_or_default().to_owned(),
                d["message_id"].as_str().unwrap_or_default().to_owned(),
                d["alerts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|a| a["event_id"].as_str().map(str::to_owned))
                    .collect(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_publish_response_keeps_the_claim_so_a_copy_cannot_page_anew() {
    let h = Harness::start(&[]);
    let gate = Arc::new(Semaphore::new(0));
    *h.sink.hold.lock().expect("hold") = Some(gate.clone());
    // SNS takes the page, and the reply is lost on the way back.
    h.sink.lose_response.store(1, Ordering::SeqCst);
    h.put("a", &[root_login("lost-reply")]);
    h.until("the first publish to start", Duration::from_secs(10), |h| {
        h.sink.attempts.load(Ordering::SeqCst) == 1
    })
    .await;
    // A second object with another alert of the same incident arrives meanwhile.
    h.put("b", &[root_login("second-file")]);
    gate.add_permits(100);
    h.until("both messages deleted", Duration::from_secs(20), |h| {
        h.queue.deleted().len() == 2
    })
    .await;
    let pages = pages(&h.sink.delivered(), "root-console-login");
    // The page and its repeat, under one incident and message id: the second file neither
    // paged under a new id nor had the first file's alert counted twice.
    assert!(!pages.is_empty());
    assert!(
        pages.iter().all(|p| p.0 == pages[0].0 && p.1 == pages[0].1),
        "{pages:#?}"
    );
    assert!(
        pages.iter().all(|p| p.2 == vec!["lost-reply"]),
        "only the first file pages: {pages:#?}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_left_by_a_stopped_task_is_paged_under_its_incident_id() {
    let h = Harness::start(&[]);
    let account = support::account(3);
    let key = IncidentKey {
        rule: "root-console-login".into(),
        account: account.clone(),
        principal: format!("arn:aws:iam::{account}:root"),
    };
    // A task claimed the incident, published, and was killed before recording it; its lease
    // has run out.
    let now = chrono::Utc::now().timestamp();
    let dead = Claim {
        incident_id: "killed-task-incident".into(),
        owner: "task-killed/message".into(),
        source: format!("s3://{BUCKET}/{}", key_of("killed")),
        now: now - 300,
        lease_secs: 120,
    };
    assert!(matches!(
        h.store.inner.claim(&key, &dead).await.expect("claim"),
        Claimed::Won { .. }
    ));
    h.put("killed", &[root_login_in("redelivered", &account)]);
    h.until("the message deleted", Duration::from_secs(10), |h| {
        h.queue.deleted().len() == 1
    })
    .await;
    let pages = pages(&h.sink.delivered(), "root-console-login");
    assert_eq!(pages.len(), 1);
    assert_eq!(
        pages[0].0, "killed-task-incident",
        "the repeat keeps the ids"
    );
    assert_eq!(pages[0].1, "killed-task-incident:page");
    h.stop().await;
}

fn key_of(name: &str) -> String {
    key(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fold_whose_reply_was_lost_stays_with_its_incident() {
    let h = Harness::start(&[("TRAILWARDEN_INCIDENT_WINDOW_SECS", "2")]);
    h.put("first", &[root_login("first")]);
    h.until("the page", Duration::from_secs(10), |h| {
        !pages(&h.sink.delivered(), "root-console-login").is_empty()
    })
    .await;
    // The second file's fold is applied but its reply is lost; its retry is held back until
    // the follow-up, which counts it, has gone out.
    let gate = Arc::new(Semaphore::new(1));
    *h.store.hold_folds.lock().expect("hold") = Some(gate.clone());
    h.store.lose_fold_reply.store(1, Ordering::SeqCst);
    h.put("second", &[root_login("second")]);
    let follow_ups = |h: &Harness| {
        h.sink
            .delivered()
            .into_iter()
            .filter(|d| d["rule"] == "root-console-login" && d["kind"] == "follow-up")
            .collect::<Vec<_>>()
    };
    h.until("the follow-up", Duration::from_secs(15), |h| {
        follow_ups(h).len() == 1
    })
    .await;
    gate.add_permits(100);
    h.until("both messages deleted", Duration::from_secs(15), |h| {
        h.queue.deleted().len() == 2
    })
    .await;
    // Counted once, by the incident that listed it; never paged again in a new incident.
    assert_eq!(follow_ups(&h)[0]["count"], 1);
    assert_eq!(
        paged_ids(&h.sink.delivered(), "root-console-login"),
        vec!["first"]
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_follow_up_is_retried_at_the_next_sweep_not_after_its_lease() {
    let h = Harness::start(&[("TRAILWARDEN_INCIDENT_WINDOW_SECS", "2")]);
    h.put("first", &[root_login("first")]);
    h.until("the page", Duration::from_secs(10), |h| {
        !pages(&h.sink.delivered(), "root-console-login").is_empty()
    })
    .await;
    h.put("second", &[root_login("second")]);
    h.until("the fold", Duration::from_secs(10), |h| {
        h.queue.deleted().len() == 2
    })
    .await;
    // The follow-up's first publish fails.
    h.sink.fail.store(1, Ordering::SeqCst);
    let started = Instant::now();
    h.until("the follow-up", Duration::from_secs(20), |h| {
        h.sink.delivered().iter().any(|d| d["kind"] == "follow-up")
    })
    .await;
    assert_eq!(
        h.sink.fail.load(Ordering::SeqCst),
        0,
        "the first try failed"
    );
    // The lease is 120 s; the given-back follow-up went out within a few sweeps.
    assert!(started.elapsed() < Duration::from_secs(20));
    h.stop().await;
}

/// An EventBridge delivery of a CloudTrail record, as SQS receives it from the rule.
fn eventbridge_body(record: &Value) -> String {
    serde_json::json!({
        "version": "0",
        "id": format!("eb-{}", record["eventID"].as_str().unwrap_or("x")),
        "detail-type": support::detail_type_of(record),
        "source": support::eventbridge_source_of(record),
        "account": record["recipientAccountId"],
        "time": record["eventTime"],
        "region": "us-east-1",
        "resources": [],
        "detail": record,
    })
    .to_string()
}

/// An hour-long SNS outage, on a paused clock: the message is held in hand the whole hour, its
/// visibility extended, and never received again, so it spends no receive count and cannot
/// reach the dead-letter queue; when SNS answers again, it pages once. (An event needs no
/// worker thread, so paused time moves only when the daemon waits.)
#[tokio::test(start_paused = true)]
async fn an_hour_long_outage_spends_no_receive_count() {
    let h = Harness::start(&[]);
    h.sink.fail.store(usize::MAX, Ordering::SeqCst);
    let id = h
        .queue
        .send(&eventbridge_body(&root_login("through-the-outage")));
    h.until("the message to be held", Duration::from_secs(10), |h| {
        h.metrics
            .encode()
            .contains("trailwarden_sqs_messages_held 1")
    })
    .await;
    let attempts = h.sink.attempts.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(
        h.sink.attempts.load(Ordering::SeqCst) > attempts + 30,
        "retried with backoff all hour"
    );
    assert_eq!(h.queue.receive_count(&id), 1, "never received again");
    assert!(h.queue.deleted().is_empty());
    assert!(h.metrics.healthy(60), "held work is not ill health");
    h.sink.fail.store(0, Ordering::SeqCst);
    h.until("the message deleted", Duration::from_secs(10), |h| {
        h.queue.deleted().len() == 1
    })
    .await;
    assert_eq!(
        paged_ids(&h.sink.delivered(), "root-console-login"),
        vec!["through-the-outage"]
    );
    h.stop().await;
}

/// An account whose only finding can be alice's missing MFA: a strong password policy, root
/// with MFA and no keys, a logging multi-region trail, an active analyzer.
#[derive(Default)]
struct FakeAccount {
    alice_has_mfa: std::sync::atomic::AtomicBool,
    /// Credential reports read: one per audit.
    audits: AtomicUsize,
}

#[async_trait]
impl AccountView for FakeAccount {
    async fn account(&self) -> posture::Read<String> {
        Ok("123456789012".into())
    }
    fn region(&self) -> String {
        "us-east-1".into()
    }
    async fn credential_report(&self) -> posture::Read<Vec<u8>> {
        self.audits.fetch_add(1, Ordering::SeqCst);
        let mfa = self.alice_has_mfa.load(Ordering::SeqCst);
        Ok(format!(
            "user,arn,password_enabled,mfa_active\nalice,arn:aws:iam::123456789012:user/alice,true,{mfa}\n"
        )
        .into_bytes())
    }
    async fn account_summary(&self) -> posture::Read<AccountSummary> {
        Ok(AccountSummary {
            root_mfa: true,
            root_access_keys: false,
        })
    }
    async fn password_policy(&self) -> posture::Read<Option<PasswordPolicy>> {
        Ok(Some(PasswordPolicy {
            min_length: Some(14),
            require_symbols: true,
            require_numbers: true,
            require_uppercase: true,
            require_lowercase: true,
            reuse_prevention: Some(24),
        }))
    }
    async fn grants(&self) -> posture::Read<Grants> {
        Ok(Grants::default())
    }
    async fn trails(&self) -> posture::Read<Vec<Trail>> {
        Ok(vec![Trail {
            name: "main".into(),
            arn: "arn:aws:cloudtrail:us-east-1:123456789012:trail/main".into(),
            home_region: "us-east-1".into(),
            multi_region: true,
            organization: false,
            log_file_validation: true,
            kms_key_id: Some("arn:aws:kms:us-east-1:123456789012:key/k".into()),
        }])
    }
    async fn trail_logging(&self, _: &str) -> posture::Read<bool> {
        Ok(true)
    }
    async fn event_selectors(&self, _: &str) -> posture::Read<Selectors> {
        Ok(Selectors::Basic(Vec::new()))
    }
    async fn analyzers(&self) -> posture::Read<Vec<Analyzer>> {
        Ok(vec![Analyzer {
            name: "account".into(),
            arn: "arn:aws:access-analyzer:us-east-1:123456789012:analyzer/account".into(),
            kind: "ACCOUNT".into(),
            status: "ACTIVE".into(),
        }])
    }
    async fn organization(&self) -> posture::Read<Option<Organization>> {
        Ok(None)
    }
    async fn trusted_services(&self) -> posture::Read<Vec<String>> {
        Ok(Vec::new())
    }
    async fn organization_features(&self) -> posture::Read<Vec<String>> {
        Ok(Vec::new())
    }
    async fn user(&self, _: &str) -> posture::Read<Option<LiveUser>> {
        Ok(None)
    }
}

#[tokio::test(start_paused = true)]
async fn audits_follow_the_interval_page_once_and_resolve_what_was_fixed() {
    let account = Arc::new(FakeAccount::default());
    let h = Harness::start_with(
        &[("TRAILWARDEN_POSTURE_INTERVAL_SECS", "900")],
        Some(account.clone()),
    );
    let of = |h: &Harness, kind: &str| {
        h.sink
            .delivered()
            .into_iter()
            .filter(|d| d["kind"] == kind)
            .collect::<Vec<_>>()
    };
    h.until(
        "the start-up audit's finding",
        Duration::from_secs(10),
        |h| !of(h, "finding").is_empty(),
    )
    .await;
    assert_eq!(account.audits.load(Ordering::SeqCst), 1);
    let found = of(&h, "finding");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["check"], "user-without-mfa");

    // 1300 s later the interval (900 s) has passed once: one more audit, and nothing pages.
    tokio::time::sleep(Duration::from_secs(1300)).await;
    assert_eq!(account.audits.load(Ordering::SeqCst), 2);
    assert_eq!(of(&h, "finding").len(), 1);

    // alice assigns a device; the next audit resolves her finding, once.
    account.alice_has_mfa.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1300)).await;
    assert_eq!(account.audits.load(Ordering::SeqCst), 3);
    let resolved = of(&h, "resolved");
    assert_eq!(resolved.len(), 1, "{resolved:#?}");
    assert_eq!(resolved[0]["incident_id"], found[0]["incident_id"]);
    assert_eq!(resolved[0]["resolved_by"], "posture:audit:123456789012");
    assert_eq!(of(&h, "finding").len(), 1);
    h.stop().await;
}
