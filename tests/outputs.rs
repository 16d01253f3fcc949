//! Outputs delivered on their own, end to end: the daemon as a process, moto for SQS, S3, SNS
//! and DynamoDB. One output fails for the whole first run: the other gets every page, intake
//! goes on, and after a crash and a restart the failing one gets its backlog, each page once.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{
    Daemon, DaemonOptions, Moto, Stack, account, key, log_file, queue_arn, root_login_in,
};

const WAIT: Duration = Duration::from_secs(60);

/// A second topic with its own subscribed queue: another team's channel.
async fn second_topic(stack: &Stack, queue_url: &str) -> String {
    let arn = stack
        .sns
        .create_topic()
        .name("trailwarden-second")
        .send()
        .await
        .expect("topic")
        .topic_arn
        .expect("arn");
    stack
        .sns
        .subscribe()
        .topic_arn(&arn)
        .protocol("sqs")
        .endpoint(queue_arn(&stack.sqs, queue_url).await)
        .send()
        .await
        .expect("subscribe");
    arn
}

/// The second output's queue and topic.
async fn second_output(stack: &Stack) -> (String, String) {
    let url = stack
        .sqs
        .create_queue()
        .queue_name("second-alerts")
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("url");
    let arn = second_topic(stack, &url).await;
    (url, arn)
}

/// The documents that arrive in a queue until `want` distinct message ids arrived and then a
/// quiet moment passed (so a repeat would show); by message id, every copy.
async fn message_ids(stack: &Stack, url: &str, want: usize) -> BTreeMap<String, Vec<Value>> {
    let deadline = Instant::now() + WAIT;
    let mut seen: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut quiet_until: Option<Instant> = None;
    loop {
        let out = stack
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        for m in out.messages.unwrap_or_default() {
            let envelope: Value = serde_json::from_str(m.body().unwrap_or("")).expect("envelope");
            let doc: Value =
                serde_json::from_str(envelope["Message"].as_str().expect("Message")).expect("doc");
            seen.entry(doc["message_id"].as_str().expect("message_id").to_owned())
                .or_default()
                .push(doc);
            stack
                .sqs
                .delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete");
        }
        if seen.len() >= want {
            let until = *quiet_until.get_or_insert_with(|| Instant::now() + Duration::from_secs(4));
            if Instant::now() >= until {
                return seen;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} of {want} pages arrived: {seen:?}",
            seen.len()
        );
    }
}

fn health(daemon: &Daemon) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(daemon.health).expect("connect");
    s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n")
        .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_output_holds_only_its_own_pages_and_catches_up_after_a_restart() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    let table = stack.state_table("trailwarden-state").await;
    let (second_url, second) = second_output(&stack).await;
    let options = || DaemonOptions {
        state_table: Some(table.clone()),
        extra_env: vec![(
            "TRAILWARDEN_OUTPUTS".into(),
            json!([{"name": "second", "kind": "sns", "topic_arn": second}]).to_string(),
        )],
        ..Default::default()
    };
    let mut daemon = Daemon::start(&moto, &stack, options());
    assert!(
        daemon.logs().contains("sns (sns), second (sns)"),
        "{}",
        daemon.logs()
    );

    // The second output breaks while the daemon runs (its topic is deleted).
    stack
        .sns
        .delete_topic()
        .topic_arn(&second)
        .send()
        .await
        .expect("delete topic");
    let n = 5;
    for i in 0..n {
        let id = format!("login-{i}");
        stack
            .put(&key(&id), log_file(&[root_login_in(&id, &account(i))]))
            .await;
    }
    // The first output gets every page, once, and intake goes on: the queue drains.
    let first = message_ids(&stack, &stack.alerts_url, n).await;
    assert_eq!(first.len(), n, "{first:?}");
    assert!(first.values().all(|c| c.len() == 1), "{first:?}");
    stack.wait_depth(&stack.queue_url, 0, WAIT).await;
    // The second output's backlog is there to see, by name.
    let deadline = Instant::now() + WAIT;
    loop {
        let metrics = daemon.metrics();
        if metrics.contains(&format!(
            "trailwarden_output_pending{{output=\"second\"}} {n}"
        )) {
            assert!(
                metrics.contains("trailwarden_output_pending{output=\"sns\"} 0"),
                "{metrics}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}\n{}", daemon.logs());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let body = health(&daemon);
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains(&format!("output second: {n} pending")) && body.contains("failing: "),
        "{body}"
    );

    // A crash, the output fixed, a new task: the backlog goes out from the state table.
    daemon.kill();
    let fixed = second_topic(&stack, &second_url).await;
    assert_eq!(fixed, second, "moto keeps a topic's ARN by name");
    let daemon = Daemon::start(&moto, &stack, options());
    let caught_up = message_ids(&stack, &second_url, n).await;
    assert_eq!(
        caught_up.keys().collect::<Vec<_>>(),
        first.keys().collect::<Vec<_>>(),
        "the same pages, under the same ids"
    );
    assert!(caught_up.values().all(|c| c.len() == 1), "{caught_up:?}");
    // The first output is not paged again.
    let again = message_ids(&stack, &stack.alerts_url, 0).await;
    assert!(again.is_empty(), "{again:?}\n{}", daemon.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_output_takes_the_levels_and_rules_it_asks_for() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    let (second_url, second) = second_output(&stack).await;
    let _daemon = Daemon::start(
        &moto,
        &stack,
        DaemonOptions {
            extra_env: vec![(
                "TRAILWARDEN_OUTPUTS".into(),
                json!([{
                    "name": "root-only",
                    "kind": "sns",
                    "topic_arn": second,
                    "min_level": "high",
                    "rules": ["root-*"],
                }])
                .to_string(),
            )],
            ..Default::default()
        },
    );
    stack
        .put(
            &key("mixed"),
            log_file(&[
                root_login_in("root-1", &account(1)),
                support::failed_login("fail-1"),
            ]),
        )
        .await;
    let rules = |docs: &BTreeMap<String, Vec<Value>>| -> Vec<String> {
        docs.values()
            .map(|d| d[0]["rule"].as_str().expect("rule").to_owned())
            .collect()
    };
    let all = rules(&message_ids(&stack, &stack.alerts_url, 2).await);
    assert!(all.contains(&"console-login-failed".to_owned()), "{all:?}");
    assert!(all.contains(&"root-console-login".to_owned()), "{all:?}");
    let root_only = rules(&message_ids(&stack, &second_url, 1).await);
    assert!(
        root_only.contains(&"root-console-login".to_owned()),
        "{root_only:?}"
    );
    assert!(
        root_only.iter().all(|r| r.starts_with("root-")),
        "only root rules at high or above: {root_only:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_pauses_while_an_output_backlog_is_at_its_bound() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    let table = stack.state_table("trailwarden-state").await;
    let (second_url, second) = second_output(&stack).await;
    let daemon = Daemon::start(
        &moto,
        &stack,
        DaemonOptions {
            state_table: Some(table),
            workers: 1,
            extra_env: vec![
                (
                    "TRAILWARDEN_OUTPUTS".into(),
                    json!([{"name": "second", "kind": "sns", "topic_arn": second}]).to_string(),
                ),
                ("TRAILWARDEN_OUTPUTS_MAX_PENDING".into(), "2".into()),
                // One message in hand at a time, so the pause shows in the queue.
                ("TRAILWARDEN_MAX_MESSAGES".into(), "1".into()),
            ],
            ..Default::default()
        },
    );
    stack
        .sns
        .delete_topic()
        .topic_arn(&second)
        .send()
        .await
        .expect("delete topic");
    let n = 8;
    for i in 0..n {
        let id = format!("bound-{i}");
        stack
            .put(&key(&id), log_file(&[root_login_in(&id, &account(i))]))
            .await;
    }
    // The backlog reaches its bound and intake stops short of the queue's end.
    let deadline = Instant::now() + WAIT;
    loop {
        let body = health(&daemon);
        if body.contains("at its bound (intake paused)") {
            break;
        }
        assert!(Instant::now() < deadline, "{body}\n{}", daemon.logs());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The bound holds up to the messages already in hand (here two: one worker, one in the
    // receive batch) and the moment the loop reads its backlog again.
    let waiting = stack.depth(&stack.queue_url).await;
    assert!(
        waiting >= 1,
        "intake paused with {waiting} messages waiting"
    );
    assert!(
        daemon
            .logs()
            .contains("output backlog at its bound: intake pauses until it catches up"),
        "{}",
        daemon.logs()
    );

    // The output comes back: its backlog drains, intake resumes, and both outputs get every
    // page once.
    second_topic(&stack, &second_url).await;
    let caught_up = message_ids(&stack, &second_url, n).await;
    assert_eq!(caught_up.len(), n, "{caught_up:?}");
    assert!(caught_up.values().all(|c| c.len() == 1), "{caught_up:?}");
    let first = message_ids(&stack, &stack.alerts_url, n).await;
    assert_eq!(first.len(), n, "{first:?}");
    stack.wait_depth(&stack.queue_url, 0, WAIT).await;
}
