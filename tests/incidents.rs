//! Page once per incident and lose nothing, end to end against moto server: several daemons
//! sharing a DynamoDB state table, restarts, SNS failures and outages, late files, long root
//! sessions and alert storms.
//!
//! Each test starts its own moto server (S3, SQS, SNS and DynamoDB over real HTTP) and runs
//! the daemons as separate processes, as they are deployed.

mod support;

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use support::*;

const WAIT: Duration = Duration::from_secs(45);

/// The alert documents of one rule and kind (`page` or `follow-up`).
fn of_kind<'a>(docs: &'a [Value], rule: &str, kind: &str) -> Vec<&'a Value> {
    for_rule(docs, rule)
        .into_iter()
        .filter(|d| d["doc"]["kind"] == kind)
        .collect()
}

fn with_table(table: &str) -> DaemonOptions {
    DaemonOptions {
        visibility_timeout_secs: 20,
        state_table: Some(table.to_owned()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_sharing_the_table_page_one_brute_force() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    let table = stack.state_table("trailwarden-state").await;
    let a = Daemon::start(&moto, &stack, with_table(&table));
    let b = Daemon::start(&moto, &stack, with_table(&table));

    // Five failed sign-ins for bob within four minutes, in three files; each file is taken by
    // a chosen daemon: the other one is frozen, and its pending long poll has ended.
    let files = [
        (
            &a,
            &b,
            "part-1",
            vec![("f1", "10:00:10"), ("f2", "10:01:00")],
        ),
        (
            &b,
            &a,
            "part-2",
            vec![("f3", "10:02:00"), ("f4", "10:03:00")],
        ),
        (&a, &b, "part-3", vec![("f5", "10:03:50")]),
    ];
    for (taker, frozen, name, failures) in &files {
        frozen.signal("STOP");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let records: Vec<Value> = failures
            .iter()
            .map(|(id, t)| failed_login_at(id, &format!("2026-11-20T{t}Z")))
            .collect();
        stack.put(&key(name), log_file(&records)).await;
        stack.wait_depth(&stack.queue_url, 0, WAIT).await;
        assert!(taker.read_object(name), "{name}:\n{}", taker.logs());
        frozen.signal("CONT");
    }
    assert!(!b.read_object("part-1") && !a.read_object("part-2"));

    let docs = stack
        .alerts_until(WAIT, |d| {
            !for_rule(d, "console-login-brute-force").is_empty()
        })
        .await;
    let later = stack.alerts_for(Duration::from_secs(5)).await;
    let all: Vec<Value> = docs.into_iter().chain(later).collect();
    let brute = for_rule(&all, "console-login-brute-force");
    assert_eq!(brute.len(), 1, "{brute:#?}");
    assert_eq!(brute[0]["doc"]["count"], 1, "one window, one alert");
    let ids = brute[0]["doc"]["alerts"][0]["event_ids"].clone();
    assert_eq!(ids, json!(["f1", "f2", "f3", "f4", "f5"]));
    // The failures themselves are one incident too: one page, the rest folded.
    assert_eq!(of_kind(&all, "console-login-failed", "page").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_between_deliveries_does_not_page_again() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    stack.notifications_off().await;
    let table = stack.state_table("trailwarden-state").await;
    stack
        .put(&key("once"), log_file(&[root_login("restart-login")]))
        .await;
    let notice = s3_event(&stack.bucket, &[&key("once")]);

    let mut first = Daemon::start(&moto, &stack, with_table(&table));
    stack.send(&notice).await;
    let docs = stack.alerts_until(WAIT, |d| !d.is_empty()).await;
    assert_eq!(event_ids(&docs), vec!["restart-login"]);
    stack.wait_depth(&stack.queue_url, 0, WAIT).await;
    assert!(first.terminate().success());

    // S3 delivers the notification again; a new task (empty memory) handles it: the object
    // is recorded as read, so nothing is read again.
    let second = Daemon::start(&moto, &stack, with_table(&table));
    stack.send(&notice).await;
    stack.wait_depth(&stack.queue_url, 0, WAIT).await;
    assert!(!second.read_object("once"), "{}", second.logs());
    assert!(
        second
            .logs()
            .contains("object already read and committed by an earlier message"),
        "{}",
        second.logs()
    );

    // As if the first task had stopped between committing the page and recording the read:
    // the object is read again, and the shared state knows its page.
    stack
        .ddb
        .delete_item()
        .table_name(&table)
        .key(
            "pk",
            AttributeValue::S(format!("obj#s3://{}/{}", stack.bucket, key("once"))),
        )
        .key("sk", AttributeValue::S("read".into()))
        .send()
        .await
        .expect("delete the read record");
    stack.send(&notice).await;
    stack.wait_depth(&stack.queue_url, 0, WAIT).await;
    second.wait_read("once", WAIT);
    let again = stack.alerts_for(Duration::from_secs(4)).await;
    assert!(again.is_empty(), "paged again: {again:#?}");
    assert!(
        second
            .logs()
            .contains("\"outcome\":\"already paged from this source\""),
        "{}",
        second.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brute_force_page_survives_a_failing_publish() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    let daemon = Daemon::start(&moto, &stack, DaemonOptions::default());

    stack
        .sns
        .delete_topic()
        .topic_arn(&stack.topic_arn)
        .send()
        .await
        .expect("delete topic");
    let records: Vec<Value> = (0..5)
        .map(|i| failed_login_at(&format!("bf-{i}"), &format!("2026-11-20T10:0{i}:00Z")))
        .collect();
    stack.put(&key("burst"), log_file(&records)).await;
    let deadline = std::time::Instant::now() + WAIT;
    while !daemon.logs().contains("message held") {
        assert!(std::time::Instant::now() < deadline, "{}", daemon.logs());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        stack.depth(&stack.queue_url).await,
        1,
        "the message is kept"
    );

    create_topic(&stack.sns, &stack.sqs, &stack.alerts_url).await;
    let docs = stack
        .alerts_until(Duration::from_secs(90), |d| {
            !for_rule(d, "console-login-brute-force").is_empty()
                && !for_rule(d, "console-login-failed").is_empty()
        })
        .await;
    assert_eq!(for_rule(&docs, "console-login-brute-force").len(), 1);
    stack.wait_depth(&stack.queue_url, 0, WAIT).await;
    assert!(
        daemon
            .logs()
            .contains("alert deliveries succeed again after"),
        "the recovery is said once: {}",
        daemon.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_files_cannot_fake_a_burst_but_can_complete_one() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    let table = stack.state_table("trailwarden-state").await;
    let daemon = Daemon::start(&moto, &stack, with_table(&table));

    // Four failures at 10:20-10:23 arrive first.
    let four: Vec<Value> = (0..4)
        .map(|i| failed_login_at(&format!("at-2{i}"), &format!("2026-11-20T10:2{i}:00Z")))
        .collect();
    stack.put(&key("on-time"), log_file(&four)).await;
    stack.wait_depth(&stack.queue_url, 0, WAIT).await;
    // A file an hour late holds one failure at 10:00: in event time that is no burst.
    stack
        .put(
            &key("late-1"),
            log_file(&[failed_login_at("at-00", "2026-11-20T10:00:00Z")]),
        )
        .await;
    stack.wait_depth(&stack.queue_url, 0, WAIT).await;
    daemon.wait_read("late-1", WAIT);
    let docs = stack.alerts_for(Duration::from_secs(4)).await;
    assert!(
        for_rule(&docs, "console-login-brute-force").is_empty(),
        "a late file faked a burst: {docs:#?}"
    );
    // Another late file holds a failure at 10:19:30, which completes five within ten minutes.
    stack
        .put(
            &key("late-2"),
            log_file(&[failed_login_at("at-19", "2026-11-20T10:19:30Z")]),
        )
        .await;
    let docs = stack
        .alerts_until(WAIT, |d| {
            !for_rule(d, "console-login-brute-force").is_empty()
        })
        .await;
    let brute = for_rule(&docs, "console-login-brute-force");
    assert_eq!(
        brute[0]["doc"]["alerts"][0]["event_ids"],
        json!(["at-19", "at-20", "at-21", "at-22", "at-23"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_session_across_six_files_pages_once_and_follows_up_once() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    let table = stack.state_table("trailwarden-state").await;
    let mut opts = with_table(&table);
    opts.extra_env
        .push(("TRAILWARDEN_INCIDENT_WINDOW_SECS".into(), "12".into()));
    let _daemon = Daemon::start(&moto, &stack, opts);

    // Thirty minutes of root calls, five per five-minute file, in two regions.
    let mut total = 0;
    for file in 0..6 {
        let region = if file % 2 == 0 {
            "us-east-1"
        } else {
            "eu-west-1"
        };
        let records: Vec<Value> = (0..5)
            .map(|i| {
                let minute = file * 5 + i;
                root_call_at(
                    &format!("session-{file}-{i}"),
                    if i % 2 == 0 {
                        "ListBuckets"
                    } else {
                        "GetBucketPolicy"
                    },
                    &format!("2026-11-20T10:{minute:02}:00Z"),
                    region,
                )
            })
            .collect();
        total += records.len();
        stack
            .put(
                &key_in(region, &format!("session-{file}")),
                log_file(&records),
            )
            .await;
        // CloudTrail delivers a region's file every five minutes; here one a second.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let docs = stack
        .alerts_until(Duration::from_secs(60), |d| {
            !of_kind(d, "root-activity", "follow-up").is_empty()
        })
        .await;
    let later = stack.alerts_for(Duration::from_secs(4)).await;
    let all: Vec<Value> = docs.into_iter().chain(later).collect();
    let pages = of_kind(&all, "root-activity", "page");
    let follow_ups = of_kind(&all, "root-activity", "follow-up");
    assert_eq!(pages.len(), 1, "{all:#?}");
    assert_eq!(follow_ups.len(), 1, "{all:#?}");
    let paged = pages[0]["doc"]["count"].as_u64().expect("count");
    let f = &follow_ups[0]["doc"];
    assert_eq!(f["count"].as_u64().expect("count") + paged, total as u64);
    assert_eq!(f["incident_id"], pages[0]["doc"]["incident_id"]);
    assert_eq!(
        follow_ups[0]["attributes"]["incident_id"]["Value"],
        pages[0]["doc"]["incident_id"]
    );
    let regions: Vec<&str> = f["regions"]
        .as_array()
        .expect("regions")
        .iter()
        .filter_map(|r| r["value"].as_str())
        .collect();
    assert!(
        regions.contains(&"us-east-1") && regions.contains(&"eu-west-1"),
        "{f}"
    );
    assert_eq!(f["last_time"], "2026-11-20T10:29:00Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_storm_pages_once_per_incident() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    let daemon = Daemon::start(&moto, &stack, DaemonOptions::default());

    // 100,000 denied calls from two roles, under 1,000 caller-chosen session names.
    let records: Vec<Value> = (0..100_000)
        .map(|i| {
            let role = if i % 10 == 0 { "scanner" } else { "app" };
            let session = format!("s{}", i % 1000);
            let mut r = record(
                &format!("storm-{i}"),
                "s3.amazonaws.com",
                "GetObject",
                json!({
                    "type": "AssumedRole",
                    "principalId": format!("AROAEXAMPLE:{session}"),
                    "arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}"),
                    "accountId": ACCOUNT,
                    "sessionContext": {"sessionIssuer": {"type": "Role", "arn": format!("arn:aws:iam::{ACCOUNT}:role/{role}"), "userName": role}}
                }),
            );
            r["errorCode"] = json!("AccessDenied");
            r["errorMessage"] = json!("Access Denied");
            r
        })
        .collect();
    stack.put(&key("storm"), log_file(&records)).await;
    stack
        .wait_depth(&stack.queue_url, 0, Duration::from_secs(120))
        .await;
    let docs = stack.alerts_for(Duration::from_secs(4)).await;
    let pages = for_rule(&docs, "unauthorized-api-call");
    assert_eq!(pages.len(), 2, "one page per role: {}", pages.len());
    let counts: u64 = pages
        .iter()
        .map(|p| p["doc"]["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(counts, 100_000);
    for p in &pages {
        assert!(
            p["doc"]["principal"]
                .as_str()
                .unwrap_or("")
                .starts_with(&format!("arn:aws:iam::{ACCOUNT}:role/")),
            "{p}"
        );
    }
    let alert_lines = daemon
        .logs()
        .lines()
        .filter(|l| l.contains("\"message\":\"alert\""))
        .count();
    assert_eq!(alert_lines, 2, "one log line per incident, not per record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sns_outage_sends_nothing_to_the_dlq() {
    let moto = Moto::start();
    // Two receives before the DLQ: without holding work in hand, a 15 s outage parks every
    // message there.
    let stack = Stack::create(&moto, 2).await;
    let daemon = Daemon::start(
        &moto,
        &stack,
        DaemonOptions {
            visibility_timeout_secs: 6,
            ..Default::default()
        },
    );
    stack
        .sns
        .delete_topic()
        .topic_arn(&stack.topic_arn)
        .send()
        .await
        .expect("delete topic");
    for i in 0..3 {
        stack
            .put(
                &key(&format!("outage-{i}")),
                log_file(&[root_login_in(&format!("outage-{i}"), &account(i))]),
            )
            .await;
    }
    // Two visibility timeouts and more: a message received again would be in the DLQ by now.
    // (tests/delivery.rs holds through an hour-long outage on a paused clock.)
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(stack.depth(&stack.dlq_url).await, 0, "nothing in the DLQ");
    assert_eq!(stack.depth(&stack.queue_url).await, 3, "every message kept");
    let metrics = daemon.metrics();
    assert!(
        metrics.contains("trailwarden_sqs_messages_held 3"),
        "{metrics}"
    );

    create_topic(&stack.sns, &stack.sqs, &stack.alerts_url).await;
    let docs = stack
        .alerts_until(Duration::from_secs(90), |d| event_ids(d).len() >= 3)
        .await;
    let mut ids = event_ids(&docs);
    ids.sort();
    assert_eq!(ids, vec!["outage-0", "outage-1", "outage-2"]);
    stack.wait_depth(&stack.queue_url, 0, WAIT).await;
    assert_eq!(stack.depth(&stack.dlq_url).await, 0);
    assert!(daemon.metrics().contains("trailwarden_sqs_messages_held 0"));
}
