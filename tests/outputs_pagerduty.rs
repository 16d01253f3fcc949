//! The `pagerduty` output against a small Events API v2 server of the test's own on 127.0.0.1,
//! through the real HTTP client: what each message sends, how each answer is classified, and
//! the delivery loop holding PagerDuty's deliveries through an outage while another output
//! gets everything. The routing key's secret and parameter are read from moto server.

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ssm::types::ParameterType;
use serde_json::{Value, json};
use support::{ACCOUNT, Moto, free_port, root_login};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use trailwarden::aws::{Answer, Failed, Fault};
use trailwarden::clock::Clock;
use trailwarden::config::OutputKind;
use trailwarden::detect::RuleSet;
use trailwarden::finding::accounts::{AccountNames, SharedAccountNames};
use trailwarden::finding::fold::{Fold, Folder, Stats};
use trailwarden::finding::sink::{FollowUp, Message, Page, Resolved, Sink};
use trailwarden::finding::{Level, Standing};
use trailwarden::output::outbox::memory::MemoryOutbox;
use trailwarden::output::outbox::{Loop, Outputs, Settle, deliver};
use trailwarden::output::pagerduty::{Events, routing_key};
use trailwarden::output::{Output, Route};
use trailwarden::pipeline;
use trailwarden::telemetry::Metrics;

const KEY: &str = "0123456789abcdef0123456789abcdef";

/// One request the server received, and the status it answered.
#[derive(Debug, Clone)]
struct Received {
    body: Value,
    status: u16,
}

/// An Events API v2 endpoint: answers from its script in order, then 202 with PagerDuty's
/// success body, and records every event it was sent.
#[derive(Clone, Default)]
struct Server {
    script: Arc<Mutex<VecDeque<(u16, String)>>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Server {
    /// Listens on `port` (0: any) and answers until the test ends.
    async fn start(port: u16, script: Vec<(u16, &str)>) -> (Server, String) {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the test server");
        let addr = listener.local_addr().expect("addr");
        let server = Server {
            script: Arc::new(Mutex::new(
                script.into_iter().map(|(s, b)| (s, b.to_owned())).collect(),
            )),
            received: Arc::default(),
        };
        let s = server.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move { s.answer(stream).await });
            }
        });
        (server, format!("http://{addr}/v2/enqueue"))
    }

    /// One request per connection: read the head and the body by Content-Length, answer, and
    /// close.
    async fn answer(&self, mut stream: TcpStream) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
        assert!(head.starts_with("post /v2/enqueue "), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("a Content-Length");
        while buf.len() < head_end + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Value = serde_json::from_slice(&buf[head_end..head_end + length]).expect("JSON");
        let (status, answer) = self
            .script
            .lock()
            .expect("script")
            .pop_front()
            .unwrap_or_else(|| {
                let dedup = body["dedup_key"].as_str().unwrap_or_default();
                (
                    202,
                    json!({"status": "success", "message": "Event processed", "dedup_key": dedup})
                        .to_string(),
                )
            });
        self.received
            .lock()
            .expect("received")
            .push(Received { body, status });
        let response = format!(
            "HTTP/1.1 {status} Answer\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
            answer.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("received").clone()
    }

    /// The events PagerDuty accepted, as (action, dedup key, kind).
    fn accepted(&self) -> Vec<(String, String, String)> {
        self.received()
            .into_iter()
            .filter(|r| r.status == 202)
            .map(|r| {
                (
                    r.body["event_action"].as_str().unwrap_or("").to_owned(),
                    r.body["dedup_key"].as_str().unwrap_or("").to_owned(),
                    r.body["payload"]["custom_details"]["kind"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                )
            })
            .collect()
    }
}

fn names() -> AccountNames {
    AccountNames::new([(ACCOUNT.to_owned(), "prod-payments".to_owned())])
}

/// The fold of one root console sign-in, as the rules raise it.
fn sign_in_fold(event_id: &str) -> Fold {
    let rules = RuleSet::load(&[]).expect("rules");
    let mut folder = Folder::new();
    pipeline::event(
        &rules,
        "eventbridge:us-east-1:test",
        root_login(event_id).to_string().as_bytes(),
        &mut |key, alert| folder.add(key(), alert),
    )
    .expect("a record");
    folder
        .finish()
        .into_iter()
        .find(|f| f.key.rule == "root-console-login")
        .expect("a root-console-login alert")
}

fn page_message(incident_id: &str, fold: &Fold) -> Message {
    Message::page(Page {
        incident_id,
        fold,
        next_steps: &["Find out who signed in as root".to_owned()],
    })
}

fn follow_up(incident_id: &str, fold: &Fold) -> FollowUp {
    FollowUp {
        incident_id: incident_id.to_owned(),
        key: fold.key.clone(),
        title: fold.alerts[0].title.clone(),
        level: fold.level(),
        next_steps: vec![],
        paged_summary: fold.alerts[0].summary.clone(),
        paged_at: 1_795_165_200,
        paged_count: 1,
        paged_first_time: None,
        tags: vec![],
        stats: Stats {
            count: 3,
            first_time: Some("2026-11-20T09:10:00Z".into()),
            last_time: Some("2026-11-20T09:20:00Z".into()),
            ..Stats::default()
        },
        sources: 2,
    }
}

fn resolved(incident_id: &str) -> Message {
    Message::Resolved(Resolved {
        incident_id: incident_id.to_owned(),
        finding: Standing {
            check: "root-access-key-present".into(),
            account: ACCOUNT.into(),
            resource: format!("arn:aws:iam::{ACCOUNT}:root"),
            level: Level::High,
            title: "The root user has no access keys".into(),
            evidence: "key AKIA... created 2020-01-01".into(),
            next_steps: vec![],
        },
        opened_at: 1_795_000_000,
        resolved_at: 1_795_165_200,
        by: "audit".into(),
    })
}

#[tokio::test]
async fn a_page_triggers_a_follow_up_updates_and_a_fix_resolves() {
    let (server, url) = Server::start(0, vec![]).await;
    let events = Events::new(url, KEY.into());
    events
        .check()
        .await
        .expect("a 32-character key and a loopback URL");
    let fold = sign_in_fold("e-1");
    events
        .deliver(&page_message("inc-1", &fold), &names())
        .await
        .expect("the page");
    events
        .deliver(&Message::FollowUp(follow_up("inc-1", &fold)), &names())
        .await
        .expect("the follow-up");
    events
        .deliver(&resolved("inc-2"), &names())
        .await
        .expect("the resolution");

    let got = server.received();
    assert_eq!(got.len(), 3);
    let page = &got[0].body;
    assert_eq!(page["routing_key"], KEY);
    assert_eq!(page["event_action"], "trigger");
    assert_eq!(page["dedup_key"], "inc-1");
    assert_eq!(page["payload"]["severity"], "critical");
    let summary = page["payload"]["summary"].as_str().expect("summary");
    assert!(
        summary.starts_with("[CRITICAL] root-console-login in prod-payments (123456789012): "),
        "{summary}"
    );
    assert_eq!(page["payload"]["source"], "prod-payments (123456789012)");
    assert_eq!(
        page["payload"]["custom_details"]["message_id"],
        "inc-1:page"
    );
    assert_eq!(
        page["payload"]["custom_details"]["alerts"][0]["event_id"],
        "e-1"
    );

    let again = &got[1].body;
    assert_eq!(
        (&again["event_action"], &again["dedup_key"]),
        (&json!("trigger"), &json!("inc-1")),
        "a follow-up updates the page's alert"
    );
    assert_eq!(again["payload"]["custom_details"]["count"], 3);

    assert_eq!(
        got[2].body,
        json!({"routing_key": KEY, "event_action": "resolve", "dedup_key": "inc-2"})
    );
}

#[tokio::test]
async fn throttling_and_server_errors_are_outages_to_retry() {
    let (server, url) = Server::start(
        0,
        vec![
            (429, r#"{"status":"throttle event","message":"Requests for this service are arriving too quickly"}"#),
            (502, "Bad Gateway"),
        ],
    )
    .await;
    let events = Events::new(url, KEY.into());
    let page = page_message("inc-1", &sign_in_fold("e-1"));

    let throttled = events.deliver(&page, &names()).await.expect_err("429");
    assert_eq!(
        (throttled.answer, throttled.fault),
        (Answer::Unavailable, Fault::Outage)
    );
    assert!(!throttled.ambiguous, "a throttled event was not taken");
    assert!(
        throttled.sentence.contains("HTTP 429")
            && throttled.sentence.contains("arriving too quickly"),
        "{}",
        throttled.sentence
    );

    let failed = events.deliver(&page, &names()).await.expect_err("502");
    assert_eq!(failed.fault, Fault::Outage);
    assert!(failed.ambiguous, "a 5xx may come after the event was taken");

    events.deliver(&page, &names()).await.expect("then 202");
    assert_eq!(server.received().len(), 3);
}

#[tokio::test]
async fn a_refused_event_is_a_setting_with_pagerdutys_reasons() {
    let (_server, url) = Server::start(
        0,
        vec![(
            400,
            r#"{"status":"invalid event","message":"Event object is invalid","errors":["Length of 'routing_key' is incorrect (should be 32 characters)"]}"#,
        )],
    )
    .await;
    let events = Events::new(url, KEY.into());
    let f: Failed = events
        .deliver(&page_message("inc-1", &sign_in_fold("e-1")), &names())
        .await
        .expect_err("400");
    assert_eq!(f.fault, Fault::Setting, "held, not dropped: {}", f.sentence);
    assert!(
        f.sentence.contains("HTTP 400")
            && f.sentence.contains("Event object is invalid")
            && f.sentence.contains("Length of 'routing_key' is incorrect"),
        "{}",
        f.sentence
    );
    assert!(!f.sentence.contains(KEY), "{}", f.sentence);
}

#[tokio::test]
async fn nobody_listening_is_an_outage_and_nothing_was_sent() {
    let url = format!("http://127.0.0.1:{}/v2/enqueue", free_port());
    let events = Events::new(url, KEY.into());
    let f = events
        .deliver(&page_message("inc-1", &sign_in_fold("e-1")), &names())
        .await
        .expect_err("connection refused");
    assert_eq!(f.fault, Fault::Outage, "{}", f.sentence);
    assert!(!f.ambiguous, "no connection, no event: {}", f.sentence);
    assert!(f.sentence.contains("could not be sent"), "{}", f.sentence);
}

/// Another output, always up: records the ids of what it was given.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

#[async_trait]
impl Output for Recorder {
    async fn deliver(&self, message: &Message, _names: &AccountNames) -> Result<(), Failed> {
        self.0.lock().expect("recorder").push(message.id());
        Ok(())
    }
    async fn check(&self) -> Result<(), Failed> {
        Ok(())
    }
}

fn route(name: &str, kind: OutputKind, output: Arc<dyn Output>) -> Arc<Route> {
    Arc::new(Route {
        name: name.to_owned(),
        kind,
        min_level: Level::Informational,
        rules: vec![],
        output,
    })
}

/// Polls `cond` every 50 ms for up to `secs`.
async fn eventually(secs: u64, what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn pagerduty_down_holds_only_its_own_deliveries_and_sends_each_once_in_order() {
    // PagerDuty's port, with nothing listening yet: the first attempt is refused.
    let port = free_port();
    let events = Arc::new(Events::new(
        format!("http://127.0.0.1:{port}/v2/enqueue"),
        KEY.into(),
    ));
    let recorder = Arc::new(Recorder::default());
    let memory = Arc::new(MemoryOutbox::recorded_only());
    let outputs = Outputs::new(
        vec![
            route("pagerduty", OutputKind::Pagerduty, events),
            route("topic", OutputKind::Sns, recorder.clone()),
        ],
        memory.clone(),
    );
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    for r in &outputs.routes {
        tokio::spawn(deliver(
            Loop {
                route: r.clone(),
                outbox: outputs.outbox.clone(),
                names: SharedAccountNames::new(names()),
                wakers: outputs.wakers.clone(),
                clock: Clock::system(),
                metrics: metrics.clone(),
                owner: "test/deliver".into(),
                max_pending: 100,
            },
            shutdown.clone(),
        ));
    }

    // The page is recorded a second before its follow-up (the outbox sends oldest first, by
    // the second), as the follow-up comes at the end of the incident's window.
    let now = Clock::system().now();
    let fold = sign_in_fold("e-1");
    outputs
        .sink(Clock::tokio(now - 1))
        .page(Page {
            incident_id: "inc-1",
            fold: &fold,
            next_steps: &[],
        })
        .await
        .expect("the page is recorded");
    outputs
        .sink(Clock::tokio(now))
        .follow_up(&follow_up("inc-1", &fold))
        .await
        .expect("the follow-up is recorded");

    // The other output gets both at once, while PagerDuty's first attempt is refused.
    eventually(5, "the other output gets both", || {
        recorder.0.lock().expect("recorder").len() == 2
    })
    .await;
    assert_eq!(
        *recorder.0.lock().expect("recorder"),
        ["inc-1:page", "inc-1:follow-up"]
    );
    let mut refused = Vec::new();
    for _ in 0..100 {
        refused = outputs
            .outbox
            .pending("pagerduty", 10)
            .await
            .expect("pending");
        if refused.iter().any(|d| d.attempts > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(refused.len(), 2, "both held for PagerDuty");
    let error = refused[0].last_error.as_deref().unwrap_or_default();
    assert!(
        refused[0].attempts == 1 && error.contains("could not be sent"),
        "{refused:?}"
    );
    assert_eq!(
        refused[1].attempts, 0,
        "the follow-up waits behind its page"
    );

    // PagerDuty comes up failing: a 500, then a 429, then it accepts.
    let (server, _) = Server::start(
        port,
        vec![
            (500, r#"{"status":"error","message":"internal"}"#),
            (
                429,
                r#"{"status":"throttle event","message":"too quickly"}"#,
            ),
        ],
    )
    .await;
    eventually(25, "PagerDuty accepts both", || {
        server.accepted().len() == 2
    })
    .await;
    assert_eq!(
        server.accepted(),
        [
            ("trigger".into(), "inc-1".into(), "page".into()),
            ("trigger".into(), "inc-1".into(), "follow-up".into()),
        ]
    );
    let statuses: Vec<u16> = server.received().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 429, 202, 202], "only the page was retried");

    // Nothing is sent again, to either output.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.received().len(), 4);
    assert_eq!(recorder.0.lock().expect("recorder").len(), 2);
    assert!(
        outputs
            .outbox
            .pending("pagerduty", 10)
            .await
            .expect("pending")
            .is_empty()
    );
    assert_eq!(
        memory.settled("pagerduty"),
        [
            ("inc-1:follow-up".to_owned(), Settle::Delivered),
            ("inc-1:page".to_owned(), Settle::Delivered),
        ]
    );
    shutdown.cancel();
}

#[tokio::test]
async fn the_routing_key_is_read_from_secrets_manager_or_ssm() {
    let moto = Moto::start();
    let sdk = moto.sdk().await;
    let metrics = Metrics::new();
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);

    let plain = sm
        .create_secret()
        .name("trailwarden/pagerduty")
        .secret_string(KEY)
        .send()
        .await
        .expect("a plain secret")
        .arn
        .expect("arn");
    assert_eq!(
        routing_key(&sdk, &plain, &metrics).await.expect("plain"),
        KEY
    );

    let other = "fedcba9876543210fedcba9876543210";
    let as_json = sm
        .create_secret()
        .name("trailwarden/pagerduty-json")
        .secret_string(json!({"routing_key": other, "note": "Security"}).to_string())
        .send()
        .await
        .expect("a JSON secret")
        .arn
        .expect("arn");
    assert_eq!(
        routing_key(&sdk, &as_json, &metrics).await.expect("JSON"),
        other
    );

    aws_sdk_ssm::Client::new(&sdk)
        .put_parameter()
        .name("/trailwarden/pagerduty")
        .value(KEY)
        .r#type(ParameterType::SecureString)
        .send()
        .await
        .expect("a SecureString parameter");
    let parameter = format!("arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/trailwarden/pagerduty");
    assert_eq!(
        routing_key(&sdk, &parameter, &metrics)
            .await
            .expect("parameter"),
        KEY
    );

    let missing = format!("arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:nope-AbCdEf");
    let f = routing_key(&sdk, &missing, &metrics)
        .await
        .expect_err("no such secret");
    assert_eq!(f.fault, Fault::Setting, "{}", f.sentence);
    assert!(f.sentence.contains(&missing), "{}", f.sentence);

    let gone = format!("arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/nope");
    let f = routing_key(&sdk, &gone, &metrics)
        .await
        .expect_err("no such parameter");
    assert_eq!(f.fault, Fault::Setting, "{}", f.sentence);
    assert!(f.sentence.contains(&gone), "{}", f.sentence);

    let text = metrics.encode();
    assert!(
        text.contains("operation=\"GetSecretValue\"} 3")
            && text.contains("operation=\"GetParameter\"} 2"),
        "{text}"
    );
}

/// A routing key that cannot be read, or is not a key, stops start-up with exit code 2 and
/// one line naming the output, without waiting as if it might appear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_refuses_an_unreadable_or_malformed_routing_key() {
    let moto = Moto::start();
    let sdk = moto.sdk().await;
    let queue_url = aws_sdk_sqs::Client::new(&sdk)
        .create_queue()
        .queue_name("trail-events")
        .send()
        .await
        .expect("a queue")
        .queue_url
        .expect("url");
    let not_a_key = aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name("trailwarden/not-a-key")
        .secret_string("paste the key here")
        .send()
        .await
        .expect("a secret")
        .arn
        .expect("arn");
    let missing = format!("arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:nope-AbCdEf");
    for (at, says) in [
        (missing.as_str(), "ResourceNotFoundException"),
        (not_a_key.as_str(), "not the 32 letters and digits"),
    ] {
        let outputs = json!([{"name": "pager", "kind": "pagerduty", "routing_key": at}]);
        let started = std::time::Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_trailwarden"))
            .arg("run")
            .env_clear()
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("TRAILWARDEN_ENDPOINT_URL", &moto.endpoint)
            .env("TRAILWARDEN_QUEUE_URL", &queue_url)
            .env("TRAILWARDEN_ALLOWED_BUCKETS", "trail-bucket")
            .env("TRAILWARDEN_OUTPUTS", outputs.to_string())
            .env("TRAILWARDEN_LOG_FORMAT", "json")
            .env(
                "TRAILWARDEN_HEALTH_LISTEN",
                format!("127.0.0.1:{}", free_port()),
            )
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        let line = stderr
            .lines()
            .find(|l| l.contains("\"level\":\"ERROR\""))
            .unwrap_or_else(|| panic!("{stderr}"));
        assert!(
            line.contains("setting outputs")
                && line.contains(r#"output \"pager\" (pagerduty)"#)
                && line.contains(says),
            "{line}"
        );
        assert!(
            !line.contains("paste the key"),
            "the secret is not logged: {line}"
        );
        assert!(started.elapsed() < Duration::from_secs(20), "{line}");
    }
}

/// The daemon as a process with two outputs, the alert topic and PagerDuty, and PagerDuty
/// down at first: SNS pages keep flowing and intake goes on, and once PagerDuty answers it
/// gets every page, once, from the DynamoDB outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_down_for_a_while_loses_nothing_and_sns_pages_flow() {
    let moto = Moto::start();
    let stack = support::Stack::create(&moto, 5).await;
    let table = stack.state_table("trailwarden-state").await;
    let secret = aws_sdk_secretsmanager::Client::new(&moto.sdk().await)
        .create_secret()
        .name("trailwarden/pagerduty")
        .secret_string(KEY)
        .send()
        .await
        .expect("a secret")
        .arn
        .expect("arn");
    // Nothing listens on the port yet.
    let port = free_port();
    let outputs = json!([{
        "name": "pager",
        "kind": "pagerduty",
        "routing_key": secret,
        "events_url": format!("http://127.0.0.1:{port}/v2/enqueue"),
    }]);
    let daemon = support::Daemon::start(
        &moto,
        &stack,
        support::DaemonOptions {
            state_table: Some(table),
            extra_env: vec![("TRAILWARDEN_OUTPUTS".into(), outputs.to_string())],
            ..Default::default()
        },
    );
    let n = 4;
    for i in 0..n {
        let id = format!("pd-{i}");
        stack
            .put(
                &support::key(&id),
                support::log_file(&[support::root_login_in(&id, &support::account(i))]),
            )
            .await;
    }
    let docs = stack
        .alerts_until(Duration::from_secs(60), |d| {
            support::event_ids(d).len() >= n
        })
        .await;
    let mut incidents: Vec<String> = docs
        .iter()
        .filter(|d| d["doc"]["rule"] == "root-console-login")
        .map(|d| d["doc"]["incident_id"].as_str().expect("id").to_owned())
        .collect();
    incidents.sort();
    incidents.dedup();
    assert_eq!(incidents.len(), n, "{docs:#?}");
    stack
        .wait_depth(&stack.queue_url, 0, Duration::from_secs(60))
        .await;
    assert!(
        daemon
            .metrics()
            .contains("trailwarden_output_deliveries_total{output=\"pager\",outcome=\"retried\"}"),
        "{}",
        daemon.logs()
    );

    // PagerDuty answers again: its backlog goes out, each page once, within the backoff.
    let (server, _) = Server::start(port, vec![]).await;
    eventually(90, "PagerDuty got every root page", || {
        let mut got: Vec<String> = server
            .accepted()
            .into_iter()
            .filter(|(action, _, _)| action == "trigger")
            .map(|(_, dedup, _)| dedup)
            .collect();
        got.sort();
        got.dedup();
        incidents.iter().all(|i| got.contains(i))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut dedups: Vec<String> = server.accepted().into_iter().map(|(_, d, _)| d).collect();
    let all = dedups.len();
    dedups.sort();
    dedups.dedup();
    assert_eq!(all, dedups.len(), "nothing twice: {:?}", server.accepted());
}
