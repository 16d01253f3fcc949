//! The daemon end to end against a real moto server: S3 → SQS → `trailwarden run` → SNS → SQS.
//!
//! Each test starts its own moto server on a free loopback port and runs the daemon as a
//! separate process, exactly as it is deployed.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

const WAIT: Duration = Duration::from_secs(45);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_notification_to_sns_alert_and_message_deleted() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    // A pager subscribes with a filter policy on the `level` attribute: critical only.
    let pager_url = stack
        .sqs
        .create_queue()
        .queue_name("pager")
        .send()
        .await
        .expect("pager queue")
        .queue_url
        .expect("url");
    stack
        .sns
        .subscribe()
        .topic_arn(&stack.topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn(&stack.sqs, &pager_url).await)
        .attributes("FilterPolicy", json!({"level": ["critical"]}).to_string())
        .send()
        .await
        .expect("subscribe pager");
    let daemon = Daemon::start(&moto, &stack, DaemonOptions::default());

    // A real S3 → SQS notification, from moto, for a key with a space (URL-encoded in the event).
    let mut records = vec![root_login("login-1")];
    records.extend((0..200).map(|i| {
        record(
            &format!("root-call-{i}"),
            "s3.amazonaws.com",
            "ListBuckets",
            root(),
        )
    }));
    records.push(record(
        "benign-1",
        "ec2.amazonaws.com",
        "DescribeInstances",
        role(),
    ));
    stack.put(&key("with space=1"), log_file(&records)).await;

    let docs = stack
        .alerts_until(WAIT, |d| {
            !for_rule(d, "root-console-login").is_empty()
                && !for_rule(d, "root-activity").is_empty()
        })
        .await;
    let login = for_rule(&docs, "root-console-login")[0];
    assert_eq!(login["doc"]["level"], "critical");
    assert_eq!(
        login["subject"],
        format!("[CRITICAL] root-console-login in {ACCOUNT}")
    );
    assert_eq!(login["attributes"]["level"]["Value"], "critical");
    assert_eq!(login["attributes"]["account_id"]["Value"], ACCOUNT);
    assert!(
        login["doc"]["summary"]
            .as_str()
            .unwrap_or("")
            .contains("without MFA"),
        "{login}"
    );

    // 200 root calls from one session page once.
    let activity = for_rule(&docs, "root-activity");
    assert_eq!(activity.len(), 1, "{activity:#?}");
    assert_eq!(activity[0]["doc"]["count"], 200);

    stack.wait_depth(&stack.queue_url, 0, WAIT).await;
    let paged = stack
        .sqs
        .receive_message()
        .queue_url(&pager_url)
        .max_number_of_messages(10)
        .wait_time_seconds(2)
        .send()
        .await
        .expect("receive pager")
        .messages
        .unwrap_or_default();
    assert_eq!(paged.len(), 1, "the pager gets the critical alert only");
    assert!(paged[0].body().unwrap_or("").contains("root-console-login"));
    let metrics = daemon.metrics();
    assert!(
        metrics.contains("trailwarden_sqs_messages_deleted_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("trailwarden_records_total 202"),
        "{metrics}"
    );
    let logs = daemon.logs();
    assert!(logs.contains("\"message\":\"object processed\""), "{logs}");
    // Every log line is one JSON object; alerts are logged with their fields at top level.
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let login = lines
        .iter()
        .find(|l| l["message"] == "alert" && l["rule"] == "root-console-login")
        .unwrap_or_else(|| panic!("alerts are logged too:\n{logs}"));
    assert_eq!(login["level"], "INFO");
    assert_eq!(login["alert_level"], "critical");
    assert_eq!(login["event_id"], "login-1");
    let object_line = lines
        .iter()
        .find(|l| l["message"] == "object processed")
        .expect("object line");
    assert_eq!(object_line["records"], 202);
    assert!(object_line["elapsed_ms"].is_u64(), "{object_line}");
    let span = &object_line["span"];
    assert!(
        span["message_id"].is_string() && span["bucket"] == "trail-bucket",
        "{object_line}"
    );
    assert!(
        span["key"]
            .as_str()
            .unwrap_or("")
            .ends_with("with space=1.json.gz"),
        "{object_line}"
    );
    assert!(
        !logs.contains("benign-1"),
        "records that raise nothing are never logged one by one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_notification_shape_is_accepted() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    stack.notifications_off().await;
    // One account each: every object is its own incident and pages.
    for (i, (name, id)) in [
        ("a", "shape-direct"),
        ("b", "shape-sns"),
        ("c", "shape-raw"),
        ("d", "shape-eb"),
        ("e", "shape-ct1"),
        ("f", "shape-ct2"),
        ("g h+i", "shape-encoded"),
    ]
    .into_iter()
    .enumerate()
    {
        stack
            .put(&key(name), log_file(&[root_login_in(id, &account(i))]))
            .await;
    }
    stack.purge(&stack.queue_url).await;
    let daemon = Daemon::start(&moto, &stack, DaemonOptions::default());

    let test_event =
        json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-20T09:00:00.000Z",
                            "Bucket": stack.bucket, "RequestId": "r", "HostId": "h"})
        .to_string();
    stack.send(&test_event).await;
    stack.send(&sns_envelope(&test_event)).await;
    stack.send(&s3_event(&stack.bucket, &[&key("a")])).await;
    stack
        .send(&sns_envelope(&s3_event(&stack.bucket, &[&key("b")])))
        .await;
    // Raw message delivery: the S3 JSON itself arrives through SNS unchanged.
    stack.send(&s3_event(&stack.bucket, &[&key("c")])).await;
    let eb = json!({"version": "0", "id": "e1", "detail-type": "Object Created", "source": "aws.s3",
                    "account": ACCOUNT, "time": "2026-11-20T09:05:00Z", "region": "us-east-1",
                    "resources": [format!("arn:aws:s3:::{}", stack.bucket)],
                    "detail": {"version": "0", "bucket": {"name": stack.bucket}, "object": {"key": key("d"), "size": 10}}});
    stack.send(&eb.to_string()).await;
    // CloudTrail's own notice names several objects in one message.
    let ct = json!({"s3Bucket": stack.bucket, "s3ObjectKey": [key("e"), key("f")]}).to_string();
    stack.send(&sns_envelope(&ct)).await;
    // URL-encoded key with '+' for a space, as S3 writes it.
    let encoded = key("g h+i")
        .replace('/', "%2F")
        .replace('+', "%2B")
        .replace(' ', "+");
    stack.send(&s3_event(&stack.bucket, &[&encoded])).await;

    let docs = stack.alerts_until(WAIT, |d| event_ids(d).len() >= 7).await;
    let mut ids = event_ids(&docs);
    ids.sort();
    assert_eq!(
        ids,
        vec![
            "shape-ct1",
            "shape-ct2",
            "shape-direct",
            "shape-eb",
            "shape-encoded",
            "shape-raw",
            "shape-sns"
        ]
    );
    // Test events are acknowledged and deleted with everything else.
    stack.wait_depth(&stack.queue_url, 0, WAIT).await;
    stack
        .wait_depth(&stack.dlq_url, 0, Duration::from_secs(1))
        .await;
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_missing_and_forbidden_objects() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 2).await;
    stack.notifications_off().await;
    let daemon = Daemon::start(
        &moto,
        &stack,
        DaemonOptions {
            visibility_timeout_secs: 10,
            ..Default::default()
        },
    );

    // Corrupt: a truncated gzip whose first records are readable.
    let full = log_file(&padded(root_login("before-damage"), 3000, "corrupt"));
    stack
        .put(&key("corrupt"), full[..full.len() / 2].to_vec())
        .await;
    stack
        .send(&s3_event(&stack.bucket, &[&key("corrupt")]))
        .await;
    let docs = stack
        .alerts_until(WAIT, |d| {
            !for_rule(d, "log-file-unreadable").is_empty()
                && !for_rule(d, "root-console-login").is_empty()
        })
        .await;
    let unreadable = for_rule(&docs, "log-file-unreadable")[0];
    assert_eq!(unreadable["doc"]["level"], "medium");
    let summary = unreadable["doc"]["summary"].as_str().unwrap_or("");
    assert!(
        summary.contains(&key("corrupt")),
        "names the object: {summary}"
    );
    stack.wait_depth(&stack.queue_url, 0, WAIT).await;

    // Missing: warned about and deleted.
    stack
        .send(&s3_event(&stack.bucket, &[&key("never-written")]))
        .await;
    stack.wait_depth(&stack.queue_url, 0, WAIT).await;
    assert!(
        daemon.logs().contains("object is gone"),
        "{}",
        daemon.logs()
    );

    // Another service's file in a shared bucket is skipped, not reported as a damaged log.
    let check_file = format!("AWSLogs/{ACCOUNT}/Config/ConfigWritabilityCheckFile");
    stack
        .put(&check_file, b"Config writability check".to_vec())
        .await;
    stack.send(&s3_event(&stack.bucket, &[&check_file])).await;
    stack.wait_depth(&stack.queue_url, 0, WAIT).await;
    assert!(
        daemon.logs().contains("not a CloudTrail log file name"),
        "{}",
        daemon.logs()
    );

    // A bucket outside allowed_buckets: refused, nothing fetched, kept for the DLQ.
    stack
        .send(&s3_event("someone-elses-bucket", &["AWSLogs/1/x.json.gz"]))
        .await;
    stack
        .wait_depth(&stack.dlq_url, 1, Duration::from_secs(60))
        .await;
    let logs = daemon.logs();
    assert!(
        logs.contains("its bucket is not in allowed_buckets"),
        "{logs}"
    );
    assert!(logs.contains("\"level\":\"ERROR\""), "{logs}");
    let gets = daemon
        .metrics()
        .lines()
        .find(|l| l.starts_with("trailwarden_aws_requests_total{operation=\"GetObject\"}"))
        .map(str::to_owned);
    assert_eq!(
        gets.as_deref(),
        Some("trailwarden_aws_requests_total{operation=\"GetObject\"} 2"),
        "nothing fetched for the refused bucket"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_outage_then_recovery_delivers_every_alert_once() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 10).await;
    let daemon = Daemon::start(
        &moto,
        &stack,
        DaemonOptions {
            visibility_timeout_secs: 10,
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
    stack
        .put(
            &key("during-outage"),
            log_file(&[root_login("outage-login")]),
        )
        .await;

    // Publishing fails; the message is not deleted.
    let deadline = std::time::Instant::now() + WAIT;
    while !daemon
        .metrics()
        .lines()
        .any(|l| l.starts_with("trailwarden_delivery_failures_total") && !l.ends_with(" 0"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "publish never failed:\n{}",
            daemon.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        stack.depth(&stack.queue_url).await,
        1,
        "the message stays while SNS fails"
    );

    // The topic comes back (same name, same ARN) with its subscription.
    let arn = create_topic(&stack.sns, &stack.sqs, &stack.alerts_url).await;
    assert_eq!(arn, stack.topic_arn);
    let docs = stack
        .alerts_until(Duration::from_secs(60), |d| !d.is_empty())
        .await;
    assert_eq!(event_ids(&docs), vec!["outage-login"]);
    stack.wait_depth(&stack.queue_url, 0, WAIT).await;
    // Nothing more arrives.
    let later = stack.alerts_for(Duration::from_secs(5)).await;
    assert!(later.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_batch_loses_nothing() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 10).await;
    let mut daemon = Daemon::start(
        &moto,
        &stack,
        DaemonOptions {
            visibility_timeout_secs: 6,
            workers: 2,
            ..Default::default()
        },
    );

    // Large enough objects that some are in flight when SIGTERM lands.
    let n = 12;
    for i in 0..n {
        let records = padded(
            root_login_in(&format!("term-{i}"), &account(i)),
            20_000,
            &format!("term-{i}"),
        );
        stack
            .put(&key(&format!("term-{i}")), log_file(&records))
            .await;
    }
    let before = stack.alerts_until(WAIT, |d| !d.is_empty()).await;
    let status = daemon.terminate();
    assert!(status.success(), "exit status {status}:\n{}", daemon.logs());
    assert!(daemon.logs().contains("shutting down"), "{}", daemon.logs());

    // A new task picks up whatever was not finished.
    let _second = Daemon::start(
        &moto,
        &stack,
        DaemonOptions {
            visibility_timeout_secs: 6,
            ..Default::default()
        },
    );
    stack
        .wait_depth(&stack.queue_url, 0, Duration::from_secs(120))
        .await;
    let after = stack.alerts_for(Duration::from_secs(3)).await;
    let mut ids = event_ids(&before);
    ids.extend(event_ids(&after));
    ids.sort();
    ids.dedup();
    let mut want: Vec<String> = (0..n).map(|i| format!("term-{i}")).collect();
    want.sort();
    assert_eq!(ids, want, "every object's alert arrives across the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_and_duplicate_notifications_do_not_page_twice() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 3).await;
    stack.notifications_off().await;
    let daemon = Daemon::start(
        &moto,
        &stack,
        DaemonOptions {
            visibility_timeout_secs: 10,
            ..Default::default()
        },
    );
    stack
        .put(
            &key("dup"),
            log_file(&[
                root_login("dup-login"),
                failed_login("fail-0"),
                failed_login("fail-1"),
                failed_login("fail-2"),
            ]),
        )
        .await;

    // S3 delivers at least once: the same notification twice.
    stack.send(&s3_event(&stack.bucket, &[&key("dup")])).await;
    stack.send(&s3_event(&stack.bucket, &[&key("dup")])).await;
    // A message whose second object is refused is redelivered until the DLQ takes it; its
    // first object's alert must still page only once.
    stack
        .send(&sns_envelope(
            &json!({"s3Bucket": "not-allowed", "s3ObjectKey": ["x"]}).to_string(),
        ))
        .await;
    let both = json!({"Records": [
        serde_json::from_str::<Value>(&s3_event(&stack.bucket, &[&key("dup")])).expect("json")["Records"][0],
        serde_json::from_str::<Value>(&s3_event("not-allowed", &["x"])).expect("json")["Records"][0],
    ]});
    stack.send(&both.to_string()).await;

    stack
        .wait_depth(&stack.dlq_url, 2, Duration::from_secs(90))
        .await;
    let docs = stack.alerts_for(Duration::from_secs(3)).await;
    let mut ids = event_ids(&docs);
    ids.sort();
    assert_eq!(
        ids,
        vec!["dup-login", "fail-0", "fail-1", "fail-2"],
        "{docs:#?}"
    );
    // Three failed sign-ins delivered several times are still three, not a brute force.
    assert!(
        for_rule(&docs, "console-login-brute-force").is_empty(),
        "{docs:#?}"
    );
    // Two incidents (the root sign-in, bob's failures) paged once each, however often the
    // object was read.
    let metrics = daemon.metrics();
    assert!(
        metrics.contains("trailwarden_incidents_paged_total 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bodies_never_crash_the_daemon() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 1).await;
    let mut daemon = Daemon::start(
        &moto,
        &stack,
        DaemonOptions {
            visibility_timeout_secs: 5,
            ..Default::default()
        },
    );
    let garbage = [
        "".to_owned(),
        "not json at all".to_owned(),
        "{\"Records\": 5}".to_owned(),
        "[1,2,3]".to_owned(),
        "{\"Type\":\"Notification\",\"Message\":\"{broken\"}".to_owned(),
        json!({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": stack.bucket}, "object": {"key": "%FF%FE"}}}]}).to_string(),
        "\u{202e}binary ☃ \u{fffd}".to_owned(),
        "x".repeat(200_000),
    ];
    for body in &garbage {
        if !body.is_empty() {
            stack.send(body).await;
        }
    }
    // A good object after the garbage is still processed.
    stack
        .put(
            &key("after-garbage"),
            log_file(&[root_login("still-alive")]),
        )
        .await;
    let docs = stack.alerts_until(WAIT, |d| !d.is_empty()).await;
    assert_eq!(event_ids(&docs), vec!["still-alive"]);
    stack
        .wait_depth(
            &stack.dlq_url,
            (garbage.len() - 1) as u64,
            Duration::from_secs(60),
        )
        .await;
    assert!(daemon.is_running(), "{}", daemon.logs());
    assert!(
        daemon.logs().contains("message_id"),
        "bad bodies are logged with their message id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_backfills_an_s3_prefix() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    stack
        .put(&key("old-1"), log_file(&[root_login("backfill-1")]))
        .await;
    stack
        .put(
            &key("old-2"),
            log_file(&[record(
                "backfill-2",
                "s3.amazonaws.com",
                "ListBuckets",
                root(),
            )]),
        )
        .await;
    stack.put("AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2026/11/20/123456789012_CloudTrail-Digest_us-east-1_t_us-east-1_20261120T100000Z.json.gz", log_file(&[])).await;
    stack
        .put(
            "elsewhere/ignored.json.gz",
            log_file(&[root_login("outside-prefix")]),
        )
        .await;

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trailwarden"))
        .args(["scan", &format!("s3://{}/AWSLogs/", stack.bucket)])
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run scan");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let alerts: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let mut ids: Vec<&str> = alerts
        .iter()
        .filter_map(|a| a["event_id"].as_str())
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["backfill-1", "backfill-2"], "{alerts:#?}");
    assert!(alerts.iter().all(|a| {
        a["source"]
            .as_str()
            .unwrap_or("")
            .starts_with("s3://trail-bucket/AWSLogs/")
    }));
    assert!(stderr.contains("2 read, 1 skipped, 0 failed"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_record_between_good_ones_costs_only_itself() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    let _daemon = Daemon::start(&moto, &stack, DaemonOptions::default());
    let before = serde_json::to_string(&root_login_in("before-bad", &account(1))).expect("json");
    let after = serde_json::to_string(&root_login_in("after-bad", &account(2))).expect("json");
    // Invalid UTF-8 inside a string, then an element that is not an object.
    let mut body = format!("{{\"Records\":[{before},{{\"eventID\":\"bad\",\"x\":\"").into_bytes();
    body.extend_from_slice(b"\xff\xfe\"},7,");
    body.extend_from_slice(after.as_bytes());
    body.extend_from_slice(b"]}");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &body).expect("gzip");
    stack
        .put(&key("bad-record"), gz.finish().expect("gzip"))
        .await;
    let docs = stack
        .alerts_until(WAIT, |d| {
            event_ids(d).len() >= 2 && !for_rule(d, "log-file-unreadable").is_empty()
        })
        .await;
    let mut ids = event_ids(&docs);
    ids.sort();
    assert_eq!(
        ids,
        vec!["after-bad", "before-bad"],
        "both sides of the bad records"
    );
    let damaged = for_rule(&docs, "log-file-unreadable")[0]["doc"]["summary"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        damaged.contains("2 records could not be parsed")
            && damaged.contains("record 1 at decompressed byte"),
        "{damaged}"
    );
    stack.wait_depth(&stack.queue_url, 0, WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_cannot_be_forged_by_keys_or_record_values() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 1).await;
    stack.notifications_off().await;
    let daemon = Daemon::start(
        &moto,
        &stack,
        DaemonOptions {
            extra_env: vec![("TRAILWARDEN_LOG_FORMAT".into(), "text".into())],
            ..Default::default()
        },
    );
    // A key that decodes to a line break and a fake log line (the emulator will not store it,
    // so reading it fails and is logged with the key), and a record whose user name and user agent
    // carry line breaks, an escape sequence and a direction override.
    let hostile = key("x\n2026-11-20T00:00:00.000000Z  INFO trailwarden: forged");
    let mut login = failed_login("hostile-values");
    login["userIdentity"]["userName"] = json!("bob\n2026-11-20T00:00:00Z ERROR forged");
    login["userAgent"] = json!("curl\r\n\u{1b}[31mred\u{202e}txt");
    stack.put(&key("values"), log_file(&[login])).await;
    let encoded = hostile
        .replace('%', "%25")
        .replace('\n', "%0A")
        .replace(' ', "+");
    stack
        .send(&s3_event(&stack.bucket, &[&encoded, &key("values")]))
        .await;
    stack.send("not json\nINFO forged by a body").await;
    stack.wait_depth(&stack.queue_url, 0, WAIT).await;
    let docs = stack.alerts_until(WAIT, |d| !d.is_empty()).await;
    assert_eq!(event_ids(&docs), vec!["hostile-values"]);
    let logs = daemon.logs();
    assert!(logs.contains("object processed"), "{logs}");
    assert!(
        logs.contains("_x 2026-11-20T00:00:00.000000Z  INFO") || logs.contains("_x\\n2026"),
        "{logs}"
    );
    for line in logs.lines() {
        assert!(
            line.len() > 20 && line.as_bytes()[..4].iter().all(u8::is_ascii_digit),
            "every line is a log event of its own: {line:?}"
        );
        assert!(
            !line.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "no control characters or colour codes in a file: {line:?}"
        );
    }
    assert!(
        logs.contains("forged"),
        "the values are kept, escaped: {logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_refuses_a_queue_topic_or_table_that_does_not_exist() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    let missing_topic = stack
        .topic_arn
        .replace("trailwarden-alerts", "trailwarden-alrets");
    let missing_queue = stack.queue_url.replace("trail-events", "trail-evnets");
    for (setting, var, value) in [
        ("topic_arn", "TRAILWARDEN_TOPIC_ARN", missing_topic.as_str()),
        ("queue_url", "TRAILWARDEN_QUEUE_URL", missing_queue.as_str()),
        ("state_table", "TRAILWARDEN_STATE_TABLE", "no-such-table"),
    ] {
        let started = std::time::Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_trailwarden"))
            .arg("run")
            .env_clear()
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("TRAILWARDEN_ENDPOINT_URL", &moto.endpoint)
            .env("TRAILWARDEN_QUEUE_URL", &stack.queue_url)
            .env("TRAILWARDEN_TOPIC_ARN", &stack.topic_arn)
            .env("TRAILWARDEN_ALLOWED_BUCKETS", &stack.bucket)
            .env("TRAILWARDEN_LOG_FORMAT", "json")
            .env(
                "TRAILWARDEN_HEALTH_LISTEN",
                format!("127.0.0.1:{}", free_port()),
            )
            .env(var, value)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{setting}: {stderr}");
        let line = stderr
            .lines()
            .find(|l| l.contains("\"level\":\"ERROR\""))
            .unwrap_or_else(|| panic!("{setting}: {stderr}"));
        assert!(line.contains(&format!("setting {setting}")), "{line}");
        assert!(
            !line.contains("ServiceError {"),
            "a sentence, not a dump: {line}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{setting}: not retried as if it might appear"
        );
    }
}

/// With `metrics_emf_interval_secs`, the daemon writes CloudWatch Embedded Metric Format lines
/// on stdout, the last one as it stops; and every field the docs' log queries name is in its
/// JSON log lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emf_metric_lines_and_the_documented_log_fields() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    let mut daemon = Daemon::start(
        &moto,
        &stack,
        DaemonOptions {
            extra_env: vec![
                ("TRAILWARDEN_METRICS_EMF_INTERVAL_SECS".into(), "10".into()),
                (
                    "TRAILWARDEN_METRICS_NAMESPACE".into(),
                    "Trailwarden/test".into(),
                ),
            ],
            // The audit of moto's account opens findings, whose log lines the docs name.
            posture: true,
            ..DaemonOptions::default()
        },
    );
    stack
        .put(&key("emf"), log_file(&[root_login("emf-login")]))
        .await;
    stack
        .alerts_until(WAIT, |d| !for_rule(d, "root-console-login").is_empty())
        .await;
    let deadline = std::time::Instant::now() + WAIT;
    while !daemon.logs().contains("finding opened") {
        assert!(std::time::Instant::now() < deadline, "{}", daemon.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(daemon.terminate().success());

    let lines: Vec<Value> = daemon
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert!(!lines.is_empty(), "an EMF line at least at shutdown");
    for line in &lines {
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Trailwarden/test");
        for metric in directive["Metrics"].as_array().expect("metrics") {
            let name = metric["Name"].as_str().expect("name");
            assert!(line[name].is_number(), "{name} in {line}");
        }
    }
    let paged: u64 = lines
        .iter()
        .filter_map(|l| l["IncidentsPaged"].as_u64())
        .sum();
    assert_eq!(paged, 1, "{lines:#?}");
    assert!(
        lines.iter().any(|l| l["AlertLagMaxSeconds"].is_number()),
        "{lines:#?}"
    );

    // The fields the READMEs tell operators to query.
    let logs: Vec<Value> = daemon
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for (doc, message, fields) in support::documented_log_fields() {
        let line = logs
            .iter()
            .find(|l| l["message"] == message.as_str())
            .unwrap_or_else(|| panic!("{doc}: no {message:?} log line"));
        for field in fields {
            assert!(
                line.get(&field).is_some(),
                "{doc} names log field {field:?}, which the {message:?} line lacks: {line}"
            );
        }
    }
}

/// examples/local-trial.py, the README's one-command trial: it brings up moto, the bucket,
/// queue, notification, topic and subscriber, runs this binary, uploads the examples, prints
/// each page, and stops by itself.
#[test]
fn the_local_trial_script_prints_the_examples_pages() {
    // Starting moto once makes sure the .venv the script runs in exists.
    drop(Moto::start());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("examples/local-trial.py"))
        .args(["--binary", env!("CARGO_BIN_EXE_trailwarden")])
        .output()
        .expect("run examples/local-trial.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let subjects: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("PAGE "))
        .collect();
    // The medium-and-above incidents of examples/README.md's story, one page each.
    assert_eq!(subjects.len(), 8, "{stdout}");
    for rule in [
        "root-console-login",
        "root-access-key-created",
        "console-login-brute-force",
        "cloudtrail-changed",
    ] {
        assert!(
            subjects.iter().any(|s| s.contains(rule)),
            "{rule}: {stdout}"
        );
    }
    assert!(stderr.contains("8 pages from 13 files"), "{stderr}");
}
