//! The state store's contract, run step by step against both implementations: in memory, and a
//! DynamoDB table in moto server (real HTTP, real conditional writes). The daemon tests show
//! the outcomes (one page, one follow-up); these pin the steps those outcomes rest on,
//! including the ones a race between tasks reaches only rarely.

mod support;

use serde_json::value::RawValue;
use support::{Moto, Stack};
use trailwarden::finding::correlation::CorrEvent;
use trailwarden::finding::fold::Stats;
use trailwarden::finding::sink::{Message, Resolved};
use trailwarden::finding::{IncidentKey, Level, Standing};
use trailwarden::incidents::store::dynamo::DynamoStore;
use trailwarden::incidents::store::memory::MemoryStore;
use trailwarden::incidents::store::{Claim, Claimed, Due, Open, OpenFinding, Part, Store};
use trailwarden::output::outbox::memory::MemoryOutbox;
use trailwarden::output::outbox::{Delivery, Outbox, Settle};
use trailwarden::telemetry::Metrics;

fn key(principal: &str) -> IncidentKey {
    IncidentKey {
        rule: "root-activity".into(),
        account: "111122223333".into(),
        principal: principal.into(),
    }
}

fn claim(owner: &str, source: &str, now: i64) -> Claim {
    Claim {
        incident_id: format!("inc-{owner}"),
        owner: owner.into(),
        source: source.into(),
        now,
        lease_secs: 60,
    }
}

fn part(source: &str, count: u64) -> Part {
    Part {
        source: source.into(),
        stats: Stats {
            count,
            ..Stats::default()
        },
        event_ids: vec![],
    }
}

fn event(id: &str, ts: i64) -> CorrEvent {
    CorrEvent {
        ts,
        event_id: id.into(),
        rule_ref: "console-login-failed".into(),
        value: None,
        record: RawValue::from_string("{}".into()).expect("raw"),
        source: "s3://trail/a".into(),
    }
}

/// The whole life of an incident, and the races at its edges.
async fn keeps_the_contract(store: &dyn Store) {
    let now = chrono::Utc::now().timestamp();
    let t0 = now - 600;
    let k = key("arn:aws:iam::111122223333:root");

    // Claims: one winner; a rival waits while the lease holds; the holder may claim again.
    let won = |id: &str| Claimed::Won {
        incident_id: id.to_owned(),
    };
    let a = claim("task-a", "s3://trail/1", t0);
    assert_eq!(store.claim(&k, &a).await.expect("claim"), won("inc-task-a"));
    let rival = claim("task-b", "s3://trail/2", t0 + 1);
    assert!(matches!(
        store.claim(&k, &rival).await.expect("claim"),
        Claimed::Busy { ref owner, .. } if owner == "task-a"
    ));
    assert_eq!(store.claim(&k, &a).await.expect("again"), won("inc-task-a"));
    // Once the lease has run out (task-a stopped between its publish and its record), a rival
    // takes the claim over under task-a's incident id: a repeat of the page has the same ids.
    let after_lease = claim("task-c", "s3://trail/2", t0 + a.lease_secs + 1);
    assert_eq!(
        store.claim(&k, &after_lease).await.expect("takeover"),
        won("inc-task-a")
    );
    assert!(matches!(
        store.claim(&k, &a).await.expect("claim"),
        Claimed::Busy { ref owner, .. } if owner == "task-c"
    ));
    let a = Claim {
        now: after_lease.now + a.lease_secs + 1,
        ..a
    };
    assert_eq!(store.claim(&k, &a).await.expect("back"), won("inc-task-a"));

    // Paged: the incident is open to every later claim within its window.
    let open = Open {
        incident_id: a.incident_id.clone(),
        paged_by: a.source.clone(),
        paged_at: t0,
        window_end: t0 + 300,
        summary: "Root user called ListBuckets".into(),
        event_ids: vec!["e1".into()],
        meta: None,
    };
    store.paged(&k, &a, &open).await.expect("paged");
    assert_eq!(
        store.claim(&k, &rival).await.expect("claim"),
        Claimed::Open(open.clone())
    );

    // Folds: one part per source, written again by a redelivery, not added twice.
    let due = Due {
        key: k.clone(),
        incident: open.clone(),
        due_at: open.window_end + 60,
    };
    assert!(
        store
            .fold(&due, &part("s3://trail/2", 3))
            .await
            .expect("fold")
    );
    assert!(
        store
            .fold(&due, &part("s3://trail/2", 3))
            .await
            .expect("again")
    );
    assert!(
        store
            .fold(&due, &part("s3://trail/3", 2))
            .await
            .expect("fold")
    );
    let mut counts: Vec<u64> = store
        .parts(&due)
        .await
        .expect("parts")
        .iter()
        .map(|p| p.stats.count)
        .collect();
    counts.sort();
    assert_eq!(counts, vec![2, 3]);

    // The follow-up: due once its time has come, taken by one sender.
    assert!(store.due(due.due_at - 1, 1).await.expect("due").is_empty());
    assert_eq!(store.due(now, 1).await.expect("due"), vec![due.clone()]);
    assert!(
        store
            .take_follow_up(&due, "task-a", now, 60)
            .await
            .expect("take")
    );
    assert!(
        !store
            .take_follow_up(&due, "task-b", now, 60)
            .await
            .expect("take")
    );

    // A fold that read the incident as open but lands after the sender took the follow-up
    // is refused: the sender may have read the parts already, so these alerts must open a new
    // incident rather than vanish.
    assert!(
        !store
            .fold(&due, &part("s3://trail/4", 1))
            .await
            .expect("late fold")
    );
    // A retried fold of a part the schedule already lists (its first reply was lost) answers
    // as the first did: the alerts stay with this incident and are not paged again.
    assert!(
        store
            .fold(&due, &part("s3://trail/2", 3))
            .await
            .expect("retried fold")
    );

    // A follow-up whose publish failed is given back by its owner only, and can then be
    // taken at once rather than after the lease.
    store
        .give_back_follow_up(&due, "task-b")
        .await
        .expect("not the owner");
    assert!(
        !store
            .take_follow_up(&due, "task-b", now, 60)
            .await
            .expect("take")
    );
    store
        .give_back_follow_up(&due, "task-a")
        .await
        .expect("give back");
    assert!(
        store
            .take_follow_up(&due, "task-b", now, 60)
            .await
            .expect("take after give back")
    );

    // Sent: never due again, never taken again, and still closed to folds.
    store.followed_up(&due).await.expect("followed up");
    assert!(store.due(now, 1).await.expect("due").is_empty());
    assert!(
        !store
            .take_follow_up(&due, "task-b", now + 3600, 60)
            .await
            .expect("take")
    );
    assert!(
        !store
            .fold(&due, &part("s3://trail/5", 1))
            .await
            .expect("fold after sent")
    );

    // After the window the same key opens a new incident.
    let later = claim("task-b", "s3://trail/6", open.window_end + 1);
    assert_eq!(
        store.claim(&k, &later).await.expect("claim"),
        won("inc-task-b")
    );

    // A released claim (its publish failed) can be won at once by another task.
    let k2 = key("arn:aws:iam::111122223333:user/alice");
    let mine = claim("task-a", "s3://trail/7", now);
    assert_eq!(
        store.claim(&k2, &mine).await.expect("claim"),
        won("inc-task-a")
    );
    store.release(&k2, &mine).await.expect("release");
    let theirs = claim("task-b", "s3://trail/8", now);
    assert_eq!(
        store.claim(&k2, &theirs).await.expect("claim"),
        won("inc-task-b")
    );

    // Correlation events are keyed by eventID: a redelivered event is stored once.
    let expires = now + 3600;
    store
        .add_events("g", &[event("f1", t0), event("f2", t0 + 5)], expires)
        .await
        .expect("add");
    store
        .add_events("g", &[event("f2", t0 + 5)], expires)
        .await
        .expect("again");
    let (events, fires) = store.window("g", t0 - 60, t0 + 60).await.expect("window");
    let mut ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, vec!["f1", "f2"]);
    assert!(fires.is_empty());

    // A log object's read record: absent until written, then there until it expires, for the
    // exact object only.
    let object = "s3://trail/AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/20/a b+ü.json.gz";
    assert!(!store.object_read(object).await.expect("read?"));
    store
        .mark_object_read(object, now + 3600)
        .await
        .expect("mark");
    assert!(store.object_read(object).await.expect("read?"));
    store
        .mark_object_read(object, now + 3600)
        .await
        .expect("marked again: idempotent");
    assert!(store.object_read(object).await.expect("read?"));
    assert!(
        !store
            .object_read(&object.replace("a b", "a c"))
            .await
            .expect("read?")
    );
    let expired = "s3://trail/expired.json.gz";
    store
        .mark_object_read(expired, now - 1)
        .await
        .expect("mark");
    assert!(
        !store.object_read(expired).await.expect("read?"),
        "an expired record (TTL not run yet) counts as absent"
    );
}

#[tokio::test]
async fn the_memory_store_keeps_the_contract() {
    keeps_the_contract(&MemoryStore::new()).await;
}

#[tokio::test]
async fn the_dynamodb_store_keeps_the_contract() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    let table = stack.state_table("trailwarden-state").await;
    let store = DynamoStore::new(stack.ddb.clone(), table, Metrics::new());
    keeps_the_contract(&store).await;
}

fn standing(user: &str) -> Standing {
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

/// Open findings and the audit lease: a finding's claim answers "open" until it is resolved,
/// resolving removes exactly the incident it names, and one owner at a time audits.
async fn keeps_the_posture_contract(store: &dyn Store) {
    let now = chrono::Utc::now().timestamp();
    let alice = standing("alice");
    let k = alice.key();
    let mine = claim("task-a/posture", "posture:audit", now);
    assert_eq!(
        store.claim(&k, &mine).await.expect("claim"),
        Claimed::Won {
            incident_id: "inc-task-a/posture".into()
        }
    );
    let open = OpenFinding {
        incident_id: "inc-task-a/posture".into(),
        finding: alice.clone(),
        opened_at: now,
    };
    store.finding_opened(&mine, &open).await.expect("opened");
    store
        .finding_opened(&mine, &open)
        .await
        .expect("recording again is harmless");
    // Found again a year later by another task: open, nothing to page.
    let later = claim("task-b/posture", "posture:audit", now + 365 * 24 * 3600);
    assert!(matches!(
        store.claim(&k, &later).await.expect("claim"),
        Claimed::Open(o) if o.incident_id == "inc-task-a/posture"
    ));
    assert_eq!(
        store
            .open_findings("111122223333", "user-without-mfa")
            .await
            .expect("listed"),
        vec![open.clone()]
    );
    assert!(
        store
            .open_findings("111122223333", "user-admin-direct")
            .await
            .expect("other check")
            .is_empty()
    );
    assert!(
        store
            .open_findings("444455556666", "user-without-mfa")
            .await
            .expect("other account")
            .is_empty()
    );

    // A stale resolution (of an earlier incident) leaves the open one alone.
    let stale = OpenFinding {
        incident_id: "inc-earlier".into(),
        ..open.clone()
    };
    store.finding_resolved(&stale).await.expect("stale");
    assert_eq!(
        store
            .open_findings("111122223333", "user-without-mfa")
            .await
            .expect("still listed")
            .len(),
        1
    );

    // Of two tasks seeing the fix at once, one resolves; the other may once the first's take
    // has run out (it stopped before saying so). A stale incident id takes nothing.
    assert!(
        store
            .take_resolution(&open, "task-a", now, 60)
            .await
            .expect("a")
    );
    assert!(
        !store
            .take_resolution(&open, "task-b", now + 1, 60)
            .await
            .expect("b")
    );
    assert!(
        store
            .take_resolution(&open, "task-a", now + 2, 60)
            .await
            .expect("a again")
    );
    assert!(
        !store
            .take_resolution(&stale, "task-c", now + 100, 60)
            .await
            .expect("stale")
    );
    assert!(
        store
            .take_resolution(&open, "task-b", now + 100, 60)
            .await
            .expect("b after")
    );

    // Resolved: unlisted, and the same finding coming back claims anew; resolving twice is
    // harmless, and there is nothing left to take.
    store.finding_resolved(&open).await.expect("resolved");
    assert!(
        !store
            .take_resolution(&open, "task-c", now + 200, 60)
            .await
            .expect("gone")
    );
    store.finding_resolved(&open).await.expect("again");
    assert!(
        store
            .open_findings("111122223333", "user-without-mfa")
            .await
            .expect("unlisted")
            .is_empty()
    );
    assert_eq!(
        store.claim(&k, &later).await.expect("claim"),
        Claimed::Won {
            incident_id: "inc-task-b/posture".into()
        }
    );

    // The audit lease: one of two tasks audits; nobody audits again before it is due; a
    // holder that stopped leaves it to another after the hold.
    let account = "111122223333";
    assert!(store.take_audit(account, "a", now, 900).await.expect("a"));
    assert!(
        !store
            .take_audit(account, "b", now + 1, 900)
            .await
            .expect("b")
    );
    assert!(
        store
            .take_audit(account, "b", now + 900, 900)
            .await
            .expect("b after the hold")
    );
    store
        .audited(account, "a", now + 86_400)
        .await
        .expect("a's late record is ignored");
    store
        .audited(account, "b", now + 900 + 86_400)
        .await
        .expect("b done");
    assert!(
        !store
            .take_audit(account, "c", now + 86_400, 900)
            .await
            .expect("not due")
    );
    assert!(
        store
            .take_audit(account, "c", now + 900 + 86_400, 900)
            .await
            .expect("due")
    );
    assert!(
        store
            .take_audit("444455556666", "a", now, 900)
            .await
            .expect("another account")
    );
}

#[tokio::test]
async fn the_memory_store_keeps_the_posture_contract() {
    keeps_the_posture_contract(&MemoryStore::new()).await;
}

#[tokio::test]
async fn the_dynamodb_store_keeps_the_posture_contract() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    let table = stack.state_table("trailwarden-state").await;
    let store = DynamoStore::new(stack.ddb.clone(), table, Metrics::new());
    keeps_the_posture_contract(&store).await;
}

fn resolved_message(user: &str, incident: &str) -> Message {
    Message::Resolved(Resolved {
        incident_id: incident.into(),
        finding: standing(user),
        opened_at: 1_700_000_000,
        resolved_at: 1_700_003_600,
        by: "audit".into(),
    })
}

/// Deliveries: each message is pending once per output, taken by one owner at a time, kept in
/// order, given back on failure, and never queued again for an output that settled it.
async fn keeps_the_outbox_contract(outbox: &dyn Outbox) {
    let now = chrono::Utc::now().timestamp();
    let first = resolved_message("alice", "inc-1");
    let second = resolved_message("bob", "inc-2");
    let pager = |m: &Message, at: i64| Delivery::new("pager", m.clone(), at);
    outbox
        .enqueue(&[
            pager(&first, now),
            Delivery::new("chat", first.clone(), now),
        ])
        .await
        .expect("enqueue");
    outbox
        .enqueue(&[pager(&second, now + 1)])
        .await
        .expect("enqueue");
    // A repeat of the same message (a retry, another task's lost reply) adds nothing.
    outbox
        .enqueue(&[pager(&first, now + 5)])
        .await
        .expect("repeat");
    let pending = outbox.pending("pager", 100).await.expect("pending");
    let ids: Vec<String> = pending.iter().map(|d| d.message.id()).collect();
    assert_eq!(
        ids,
        vec!["inc-1:resolved", "inc-2:resolved"],
        "oldest first"
    );
    assert_eq!(pending[0].created_at, now, "the first record stands");
    assert_eq!(
        pending[0].message, first,
        "the message survives the round trip"
    );
    assert_eq!(outbox.pending("chat", 100).await.expect("chat").len(), 1);
    assert_eq!(outbox.pending("pager", 1).await.expect("limit").len(), 1);

    // One owner at a time; an expired lease can be taken over.
    let d = &pending[0];
    assert!(outbox.take(d, "a", now, now + 60).await.expect("take"));
    assert!(!outbox.take(d, "b", now + 1, now + 61).await.expect("held"));
    assert!(
        outbox
            .take(d, "b", now + 61, now + 121)
            .await
            .expect("expired")
    );
    // The first owner's late answer changes nothing it no longer holds.
    let retry = Settle::Retry {
        at: now + 200,
        error: "PagerDuty answered 503".into(),
    };
    outbox
        .settle(d, "a", now + 62, &retry)
        .await
        .expect("stale");
    let held = &outbox.pending("pager", 100).await.expect("pending")[0];
    assert_eq!(held.attempts, 0, "{held:?}");
    assert_eq!(held.lease.as_ref().map(|l| l.0.as_str()), Some("b"));
    // The holder gives it back: tried again at its time, with why it failed.
    outbox
        .settle(d, "b", now + 62, &retry)
        .await
        .expect("retry");
    let back = &outbox.pending("pager", 100).await.expect("pending")[0];
    assert_eq!(
        (back.attempts, back.next_at, back.lease.clone()),
        (1, now + 200, None)
    );
    assert_eq!(back.last_error.as_deref(), Some("PagerDuty answered 503"));
    assert!(!back.ready(now + 100), "not before its retry time");
    assert!(
        !outbox
            .take(back, "c", now + 100, now + 160)
            .await
            .expect("early")
    );
    assert!(
        outbox
            .take(back, "c", now + 200, now + 260)
            .await
            .expect("due")
    );
    outbox
        .settle(back, "c", now + 201, &Settle::Delivered)
        .await
        .expect("delivered");
    let left = outbox.pending("pager", 100).await.expect("pending");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].message.id(), "inc-2:resolved");
    // Delivered to the pager, the message is not queued for it again; the chat output keeps
    // its own copy.
    outbox
        .enqueue(&[pager(&first, now + 300)])
        .await
        .expect("repeat after delivery");
    assert_eq!(
        outbox.pending("pager", 100).await.expect("pending").len(),
        1
    );
    assert_eq!(outbox.pending("chat", 100).await.expect("chat").len(), 1);
    // Refused for good: out of the backlog, and not queued again either.
    assert!(
        outbox
            .take(&left[0], "c", now + 300, now + 360)
            .await
            .expect("take")
    );
    outbox
        .settle(
            &left[0],
            "c",
            now + 301,
            &Settle::Dead {
                error: "invalid".into(),
            },
        )
        .await
        .expect("dead");
    outbox
        .enqueue(&[pager(&second, now + 400)])
        .await
        .expect("repeat after dead");
    assert!(
        outbox
            .pending("pager", 100)
            .await
            .expect("pending")
            .is_empty()
    );
}

#[tokio::test]
async fn the_memory_outbox_keeps_the_contract() {
    keeps_the_outbox_contract(&MemoryOutbox::new()).await;
}

#[tokio::test]
async fn the_dynamodb_outbox_keeps_the_contract() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    let table = stack.state_table("trailwarden-state").await;
    let store = DynamoStore::new(stack.ddb.clone(), table, Metrics::new());
    keeps_the_outbox_contract(&store).await;
}
