//! The commit protocol on a paused clock: windows, leases and follow-ups that take an hour in
//! production run here in milliseconds, through the same committer, memory store and metrics
//! the daemon uses, all reading one clock.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use support::root_login;
use trailwarden::aws::{Answer, Edge, Failed};
use trailwarden::clock::Clock;
use trailwarden::detect::RuleSet;
use trailwarden::finding::Findings;
use trailwarden::finding::alert::{Alert, UNREADABLE_RULE};
use trailwarden::finding::fold::Folder;
use trailwarden::finding::sink::{FollowUp, Opened, Page, Resolved, Sink, SinkError};
use trailwarden::finding::{IncidentKey, Level, Scope, Standing};
use trailwarden::incidents::commit::{Committer, Policy, Progress};
use trailwarden::incidents::store::memory::MemoryStore;
use trailwarden::incidents::store::{Claim, Claimed, Store};
use trailwarden::pipeline;
use trailwarden::telemetry::Metrics;

/// 2026-11-20T09:00:00Z.
const T0: i64 = 1_795_165_200;

/// What reached the sink: (kind, incident id, count).
#[derive(Default)]
struct Recorded(
    Mutex<Vec<(&'static str, String, u64)>>,
    Mutex<Vec<FollowUp>>,
);

#[async_trait]
impl Sink for Recorded {
    async fn page(&self, page: Page<'_>) -> Result<(), SinkError> {
        let entry = ("page", page.incident_id.to_owned(), page.fold.stats.count);
        self.0.lock().expect("sink").push(entry);
        Ok(())
    }

    async fn follow_up(&self, f: &FollowUp) -> Result<(), SinkError> {
        let entry = ("follow-up", f.incident_id.clone(), f.stats.count);
        self.0.lock().expect("sink").push(entry);
        self.1.lock().expect("sink").push(f.clone());
        Ok(())
    }

    async fn finding(&self, f: Opened<'_>) -> Result<(), SinkError> {
        let entry = ("finding", f.incident_id.to_owned(), 1);
        self.0.lock().expect("sink").push(entry);
        Ok(())
    }

    async fn resolved(&self, r: &Resolved) -> Result<(), SinkError> {
        let entry = ("resolved", r.incident_id.clone(), 0);
        self.0.lock().expect("sink").push(entry);
        Ok(())
    }
}

/// The findings of one root sign-in that arrived through EventBridge.
fn sign_in(rules: &RuleSet, id: &str, time: &str) -> Findings {
    let mut record: Value = root_login(id);
    record["eventTime"] = Value::from(time);
    let source = format!("eventbridge:us-east-1:{id}");
    let mut folder = Folder::new();
    let report = pipeline::event(
        rules,
        &source,
        record.to_string().as_bytes(),
        &mut |key, alert| folder.add(key(), alert),
    )
    .expect("a record");
    Findings {
        source,
        folds: folder.finish(),
        correlation: report.correlation,
        ..Findings::default()
    }
}

#[tokio::test(start_paused = true)]
async fn an_hour_long_window_and_its_follow_up_on_a_paused_clock() {
    let clock = Clock::tokio(T0);
    let rules = RuleSet::load(&[]).expect("rules");
    let store = MemoryStore::with_clock(clock.clone());
    let sink = Recorded::default();
    let metrics = Metrics::with_clock(clock.clone());
    let policy = Policy {
        window: Duration::from_secs(3600),
        lease: Duration::from_secs(120),
        min_level: Level::Medium,
        retention: Duration::from_secs(24 * 3600),
    };
    let committer = Committer {
        rules: &rules,
        store: &store,
        sink: &sink,
        policy: &policy,
        owner: "task-a/m1",
        metrics: &metrics,
        clock: &clock,
    };

    committer
        .commit(
            &sign_in(&rules, "first", "2026-11-20T09:00:00Z"),
            &mut Progress::default(),
        )
        .await
        .expect("page");
    // Twenty minutes later, another sign-in folds into the open incident.
    tokio::time::advance(Duration::from_secs(20 * 60)).await;
    committer
        .commit(
            &sign_in(&rules, "second", "2026-11-20T09:20:00Z"),
            &mut Progress::default(),
        )
        .await
        .expect("fold");
    // Nothing is due before the window ends...
    let sent = committer.follow_ups(clock.now(), 2).await.expect("sweep");
    assert_eq!(sent, 0);
    // ...and one follow-up once it has, with its grace period.
    tokio::time::advance(Duration::from_secs(41 * 60 + policy.grace().as_secs())).await;
    let sent = committer.follow_ups(clock.now(), 2).await.expect("sweep");
    assert_eq!(sent, 1);
    let recorded = sink.0.lock().expect("sink").clone();
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert_eq!((recorded[0].0, recorded[0].2), ("page", 1));
    assert_eq!((recorded[1].0, recorded[1].2), ("follow-up", 1));
    assert_eq!(recorded[0].1, recorded[1].1, "one incident");
    // The metrics read the same clock.
    metrics.delivered("sns", "delivered");
    assert!(
        metrics.encode().contains(&format!(
            "trailwarden_last_publish_timestamp_seconds {}",
            clock.now()
        )),
        "{}",
        metrics.encode()
    );

    // After the window, the same key opens a new incident.
    committer
        .commit(
            &sign_in(&rules, "third", "2026-11-20T10:05:00Z"),
            &mut Progress::default(),
        )
        .await
        .expect("page");
    let recorded = sink.0.lock().expect("sink").clone();
    assert_eq!(recorded.len(), 3);
    assert_ne!(recorded[2].1, recorded[0].1, "a new incident");
}

#[tokio::test(start_paused = true)]
async fn a_claim_expires_after_its_lease_on_the_store_clock() {
    let clock = Clock::tokio(T0);
    let store = MemoryStore::with_clock(clock.clone());
    let key = IncidentKey {
        rule: "root-console-login".into(),
        account: "111122223333".into(),
        principal: "arn:aws:iam::111122223333:root".into(),
    };
    let claim = |owner: &str| Claim {
        incident_id: format!("inc-{owner}"),
        owner: owner.into(),
        source: "s3://trail/a".into(),
        now: clock.now(),
        lease_secs: 120,
    };
    assert!(matches!(
        store.claim(&key, &claim("a")).await.expect("claim"),
        Claimed::Won { .. }
    ));
    tokio::time::advance(Duration::from_secs(119)).await;
    assert!(matches!(
        store.claim(&key, &claim("b")).await.expect("claim"),
        Claimed::Busy { .. }
    ));
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(
        store.claim(&key, &claim("b")).await.expect("claim"),
        Claimed::Won {
            incident_id: "inc-a".into()
        },
        "taken over under the stopped task's id"
    );
}

/// A follow-up says what its page said, whatever raised it: a damaged log file is no rule, and
/// its follow-up still has its level and next steps.
#[tokio::test(start_paused = true)]
async fn a_follow_up_keeps_the_level_and_next_steps_of_its_page() {
    let clock = Clock::tokio(T0);
    let rules = RuleSet::load(&[]).expect("rules");
    let store = MemoryStore::with_clock(clock.clone());
    let sink = Recorded::default();
    let metrics = Metrics::with_clock(clock.clone());
    let policy = Policy {
        window: Duration::from_secs(600),
        lease: Duration::from_secs(120),
        min_level: Level::Medium,
        retention: Duration::from_secs(3600),
    };
    let committer = Committer {
        rules: &rules,
        store: &store,
        sink: &sink,
        policy: &policy,
        owner: "task-a/m1",
        metrics: &metrics,
        clock: &clock,
    };
    let damaged = |name: &str| {
        let source = format!("s3://trail/AWSLogs/111122223333/CloudTrail/us-east-1/{name}");
        let alert = Alert::unreadable(&source, 3, "file is truncated");
        let mut folder = Folder::new();
        folder.add(
            IncidentKey {
                rule: UNREADABLE_RULE.into(),
                account: "111122223333".into(),
                principal: "trail".into(),
            },
            alert,
        );
        Findings {
            source,
            folds: folder.finish(),
            ..Findings::default()
        }
    };
    for name in ["a.json.gz", "b.json.gz"] {
        committer
            .commit(&damaged(name), &mut Progress::default())
            .await
            .expect("commit");
    }
    tokio::time::advance(Duration::from_secs(600) + policy.grace()).await;
    assert_eq!(
        committer.follow_ups(clock.now(), 2).await.expect("sweep"),
        1
    );
    let follow_ups = sink.1.lock().expect("sink").clone();
    assert_eq!(follow_ups.len(), 1);
    assert_eq!(follow_ups[0].level, Level::Medium);
    assert_eq!(follow_ups[0].title, "CloudTrail log file could not be read");
    assert!(!follow_ups[0].next_steps.is_empty(), "{:?}", follow_ups[0]);
}

/// A user without MFA in account 111122223333, as the posture checks describe it.
fn without_mfa(user: &str) -> Standing {
    Standing {
        check: "user-without-mfa".into(),
        account: "111122223333".into(),
        resource: format!("arn:aws:iam::111122223333:user/{user}"),
        level: Level::High,
        title: "Every IAM user with a console password has MFA (CIS 1.10)".into(),
        evidence: format!("{user} has a console password and no MFA device"),
        next_steps: vec!["Have the user assign an MFA device".into()],
    }
}

/// An evaluation of user-without-mfa: the account's or one user's, with what it found.
fn evaluated(source: &str, user: Option<&str>, found: Vec<Standing>) -> Findings {
    Findings {
        source: source.into(),
        standing: found,
        scope: vec![Scope {
            check: "user-without-mfa".into(),
            level: Level::High,
            account: "111122223333".into(),
            resource: user.map(|u| format!("arn:aws:iam::111122223333:user/{u}")),
        }],
        ..Findings::default()
    }
}

/// Delivers to a [`Recorded`] sink, then loses the response of the next findings counted by
/// the first number; refuses the next resolutions counted by the second.
struct Losing<'a>(
    &'a Recorded,
    std::sync::atomic::AtomicUsize,
    std::sync::atomic::AtomicUsize,
);

/// Takes one from `n` if it is not zero.
fn take(n: &std::sync::atomic::AtomicUsize) -> bool {
    n.fetch_update(
        std::sync::atomic::Ordering::SeqCst,
        std::sync::atomic::Ordering::SeqCst,
        |n| n.checked_sub(1),
    )
    .is_ok()
}

#[async_trait]
impl Sink for Losing<'_> {
    async fn page(&self, page: Page<'_>) -> Result<(), SinkError> {
        self.0.page(page).await
    }
    async fn follow_up(&self, f: &FollowUp) -> Result<(), SinkError> {
        self.0.follow_up(f).await
    }
    async fn finding(&self, f: Opened<'_>) -> Result<(), SinkError> {
        self.0.finding(f).await?;
        if take(&self.1) {
            let mut failed = Failed::new(Edge::Sink, Answer::Unavailable, "response lost".into());
            failed.ambiguous = true;
            return Err(SinkError(failed));
        }
        Ok(())
    }
    async fn resolved(&self, r: &Resolved) -> Result<(), SinkError> {
        if take(&self.2) {
            let failed = Failed::new(Edge::Sink, Answer::Unavailable, "throttled".into());
            return Err(SinkError(failed));
        }
        self.0.resolved(r).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_standing_finding_pages_once_resolves_once_and_pages_again_when_it_returns() {
    let clock = Clock::tokio(T0);
    let rules = RuleSet::load(&[]).expect("rules");
    let store = MemoryStore::with_clock(clock.clone());
    let recorded = Recorded::default();
    let sink = Losing(&recorded, 1.into(), 1.into());
    let metrics = Metrics::with_clock(clock.clone());
    let policy = Policy {
        window: Duration::from_secs(3600),
        lease: Duration::from_secs(120),
        min_level: Level::Medium,
        retention: Duration::from_secs(24 * 3600),
    };
    let committer = Committer {
        rules: &rules,
        store: &store,
        sink: &sink,
        policy: &policy,
        owner: "task-a/posture",
        metrics: &metrics,
        clock: &clock,
    };
    let kinds = || -> Vec<(&'static str, String)> {
        recorded
            .0
            .lock()
            .expect("sink")
            .iter()
            .map(|(kind, id, _)| (*kind, id.clone()))
            .collect()
    };

    // The first audit finds alice; its message's response is lost, so the claim is kept and
    // the retry repeats the message under the same incident id.
    let audit = evaluated("posture:audit", None, vec![without_mfa("alice")]);
    let mut progress = Progress::default();
    committer
        .commit(&audit, &mut progress)
        .await
        .expect_err("the response was lost");
    let done = committer
        .commit(&audit, &mut progress)
        .await
        .expect("retry");
    assert_eq!(done.opened, 1);
    let sent = kinds();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], sent[1], "the repeat carries the same incident id");
    let first_id = sent[0].1.clone();

    // A day later the audit finds her again: nothing pages. bob's re-check evaluates only bob.
    tokio::time::advance(Duration::from_secs(24 * 3600)).await;
    let done = committer
        .commit(&audit, &mut Progress::default())
        .await
        .expect("second audit");
    assert_eq!((done.opened, done.resolved, done.repeated), (0, 0, 1));
    let done = committer
        .commit(
            &evaluated("posture:recheck:bob", Some("bob"), Vec::new()),
            &mut Progress::default(),
        )
        .await
        .expect("bob's re-check");
    assert_eq!(done.resolved, 0, "bob's re-check does not cover alice");
    // A check that could not be made has no scope: it resolves nothing.
    let unchecked = Findings {
        source: "posture:audit".into(),
        ..Findings::default()
    };
    let done = committer
        .commit(&unchecked, &mut Progress::default())
        .await
        .expect("nothing evaluated");
    assert_eq!(done.resolved, 0);
    assert_eq!(kinds().len(), 2);
    assert!(
        metrics
            .encode()
            .contains("trailwarden_findings_open{check=\"user-without-mfa\",level=\"high\"} 1"),
        "{}",
        metrics.encode()
    );

    // She assigns an MFA device. The re-check's resolution fails to publish; another task's
    // audit seeing the fix at the same moment leaves it to the re-check, whose retry sends it.
    let fixed = evaluated("posture:recheck:EnableMFADevice", Some("alice"), Vec::new());
    let mut progress = Progress::default();
    committer
        .commit(&fixed, &mut progress)
        .await
        .expect_err("SNS refused the resolution");
    let other = Committer {
        owner: "task-b/posture",
        ..committer
    };
    let fixed_too = evaluated("posture:audit", None, Vec::new());
    let done = other
        .commit(&fixed_too, &mut Progress::default())
        .await
        .expect("the other task's audit");
    assert_eq!(done.resolved, 0, "the re-check is resolving it");
    let done = committer
        .commit(&fixed, &mut progress)
        .await
        .expect("retry");
    assert_eq!(done.resolved, 1);
    let done = committer
        .commit(&fixed, &mut Progress::default())
        .await
        .expect("again");
    assert_eq!(done.resolved, 0);
    assert_eq!(kinds()[2], ("resolved", first_id.clone()));
    assert!(
        store
            .open_findings("111122223333", "user-without-mfa")
            .await
            .expect("read")
            .is_empty()
    );
    assert!(
        metrics
            .encode()
            .contains("trailwarden_findings_open{check=\"user-without-mfa\",level=\"high\"} 0")
    );

    // The device is removed again an hour later: a new incident pages.
    tokio::time::advance(Duration::from_secs(3600)).await;
    let done = committer
        .commit(&audit, &mut Progress::default())
        .await
        .expect("back");
    assert_eq!(done.opened, 1);
    let sent = kinds();
    assert_eq!(sent.len(), 4);
    assert_eq!(sent[3].0, "finding");
    assert_ne!(
        sent[3].1, first_id,
        "a finding that comes back is a new incident"
    );
}
