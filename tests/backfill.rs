//! `trailwarden backfill` against moto server: the objects of a range, accounts and regions
//! are queued as S3 notifications and nothing else; the daemon pages what they hold once,
//! however often the range is backfilled and whichever task reads it; and a batch that half
//! fails (which moto cannot make: an in-process fake at the SendMessageBatch seam) is retried
//! or reported, key by key.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use futures_util::StreamExt;
use serde_json::Value;
use support::*;
use trailwarden::aws::Failed;
use trailwarden::backfill::notification::{self, Bucket};
use trailwarden::backfill::send::{ATTEMPTS, BatchQueue, Entry, Rejected};
use trailwarden::backfill::{self, Counters};
use trailwarden::intake::listing::Listed;
use trailwarden::intake::notice::{self, Notice};

const BUCKET: &str = "org-trail-logs";
const PREFIX: &str = "org-trail/AWSLogs/o-abc123defg";
const ACCOUNTS: [&str; 2] = ["111122223333", "444455556666"];
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
const DAYS: [u32; 4] = [1, 2, 3, 4];
const FILES_PER_DAY: u32 = 3;
/// A key S3 must URL-encode, in the first account's us-east-1 on 2 November.
const ODD_NAME: &str = "f odd+name ünï=1";

fn backfill(endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trailwarden"))
        .arg("backfill")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run trailwarden backfill")
}

/// A row of the summary's day table.
fn day_row(day: &str, objects: u64) -> String {
    format!("{day:<12} {objects:>9}\n")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn day_key(account: &str, region: &str, day: u32, name: &str) -> String {
    format!(
        "{PREFIX}/{account}/CloudTrail/{region}/2026/11/{day:02}/{account}_CloudTrail_{region}_202611{day:02}T0900Z_{name}.json.gz"
    )
}

/// The tree: 2 accounts × 2 regions × 4 days × 3 files, the odd key, and beside the layout a
/// digest, an ELB log and a stray file.
fn tree() -> Vec<String> {
    let mut keys = Vec::new();
    for account in ACCOUNTS {
        for region in REGIONS {
            for day in DAYS {
                for file in 0..FILES_PER_DAY {
                    keys.push(day_key(account, region, day, &format!("f{file}")));
                }
            }
        }
    }
    keys.push(day_key(ACCOUNTS[0], REGIONS[0], 2, ODD_NAME));
    keys.push(format!(
        "{PREFIX}/{a}/CloudTrail-Digest/us-east-1/2026/11/02/{a}_CloudTrail-Digest_us-east-1_t_us-east-1_20261102T100000Z.json.gz",
        a = ACCOUNTS[0]
    ));
    keys.push(format!("{PREFIX}/elb/x.json.gz"));
    keys.push("org-trail/notes/stray.json.gz".into());
    keys
}

/// Every message on a queue: its body's objects, read by the daemon's own parser.
async fn drain(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<(String, String)> {
    let mut objects = Vec::new();
    let mut empty = 0;
    while empty < 2 {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(600)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            empty += 1;
        }
        for m in messages {
            let body = m.body().unwrap_or("");
            let v: Value = serde_json::from_str(body).expect("json body");
            assert_eq!(
                v["Records"][0]["userIdentity"]["principalId"],
                notification::PRINCIPAL
            );
            assert_eq!(v["Records"][0]["awsRegion"], "us-east-1");
            match notice::parse(body) {
                Ok(Notice::Objects(refs)) => {
                    objects.extend(refs.into_iter().map(|r| (r.bucket, r.key)))
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }
    objects
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_of_accounts_and_regions_queues_exactly_its_objects() {
    let moto = Moto::start();
    let sdk = moto.sdk().await;
    let s3 = support::bucket(&sdk, BUCKET).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    futures_util::stream::iter(tree())
        .map(|key| {
            let s3 = s3.clone();
            async move {
                s3.put_object()
                    .bucket(BUCKET)
                    .key(key)
                    .body(ByteStream::from(log_file(&[])))
                    .send()
                    .await
                    .expect("put object");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let queue = sqs
        .create_queue()
        .queue_name("trail-events")
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("url");
    let url = format!("s3://{BUCKET}/org-trail/");

    // One account, one region, two days.
    let out = backfill(
        &moto.endpoint,
        &[
            &url,
            "--from",
            "2026-11-02",
            "--to",
            "2026-11-03",
            "--account",
            ACCOUNTS[0],
            "--region",
            REGIONS[0],
            "--queue",
            &queue,
            "--quiet",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let mut expected: BTreeSet<(String, String)> = [2, 3]
        .iter()
        .flat_map(|&day| {
            (0..FILES_PER_DAY).map(move |f| day_key(ACCOUNTS[0], REGIONS[0], day, &format!("f{f}")))
        })
        .map(|k| (BUCKET.to_owned(), k))
        .collect();
    expected.insert((
        BUCKET.to_owned(),
        day_key(ACCOUNTS[0], REGIONS[0], 2, ODD_NAME),
    ));
    let queued = drain(&sqs, &queue).await;
    assert_eq!(queued.len(), expected.len(), "one message per object");
    assert_eq!(queued.into_iter().collect::<BTreeSet<_>>(), expected);
    assert!(
        err.starts_with("backfill: 7 objects (") && err.contains(" in 1 SendMessageBatch calls"),
        "{err}"
    );
    assert!(
        err.contains("(2 day prefixes)"),
        "only the days in range are listed: {err}"
    );
    assert!(
        err.contains(&day_row("2026-11-02", 4)) && err.contains(&day_row("2026-11-03", 3)),
        "{err}"
    );

    // Every account and region of four days, as a dry run: counted, not sent.
    let out = backfill(
        &moto.endpoint,
        &[
            &url,
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-04",
            "--dry-run",
            "--quiet",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.starts_with("backfill (dry run): 49 objects (")
            && err.contains("would be queued in 5 SendMessageBatch calls"),
        "{err}"
    );
    assert!(err.contains("(16 day prefixes)"), "{err}");
    assert!(
        err.contains("2 objects outside CloudTrail's key layout were not queued"),
        "{err}"
    );
    for (day, n) in [(1, 12), (2, 13), (3, 12), (4, 12)] {
        assert!(
            err.contains(&day_row(&format!("2026-11-{day:02}"), n)),
            "{err}"
        );
    }
    assert!(
        drain(&sqs, &queue).await.is_empty(),
        "a dry run sends nothing"
    );

    // A queue that does not exist: exit 1, the backfill stops, and every key listed but not
    // queued is named.
    let missing = format!("{}/123456789012/no-such-queue", moto.endpoint);
    let out = backfill(
        &moto.endpoint,
        &[
            &url,
            "--from",
            "2026-11-02",
            "--to",
            "2026-11-02",
            "--account",
            ACCOUNTS[0],
            "--region",
            REGIONS[0],
            "--queue",
            &missing,
            "--quiet",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("stopped: SQS SendMessageBatch on"), "{err}");
    assert!(err.contains("not queued: 4 objects: s3://"), "{err}");
    for f in ["f0", "f1", "f2", ODD_NAME] {
        assert!(
            err.contains(&format!(
                "  s3://{BUCKET}/{}: SQS SendMessageBatch",
                day_key(ACCOUNTS[0], REGIONS[0], 2, f)
            )),
            "{f}: {err}"
        );
    }
}

/// Root sign-ins planted in log objects page once each through backfill and the daemon; a
/// second backfill of the same range, after their incidents closed, sent to another task
/// sharing the state table, reads nothing again and pages nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfilled_history_pages_once_however_often_it_is_backfilled() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    let table = stack.state_table("trailwarden-state").await;
    stack.notifications_off().await;
    let planted = [
        (key("bf-a"), "bf-login-a"),
        (key("bf d+e ü"), "bf-login-d"),
        (key_in("eu-west-1", "bf-c"), "bf-login-c"),
    ];
    for (i, (k, id)) in planted.iter().enumerate() {
        let records = padded(root_login_in(id, &account(i)), 50, id);
        stack.put(k, log_file(&records)).await;
    }
    stack
        .put(
            &key("bf-b"),
            log_file(&[root_login_in("bf-login-b", &account(9))]),
        )
        .await;
    stack
        .put(
            &key("bf-quiet"),
            log_file(&padded(
                record("q", "ec2.amazonaws.com", "DescribeInstances", role()),
                9,
                "q",
            )),
        )
        .await;
    // A day outside the range: never queued, never paged.
    let outside = key("bf-outside").replace("/2026/11/20/", "/2026/11/19/");
    stack
        .put(
            &outside,
            log_file(&[root_login_in("bf-login-outside", &account(7))]),
        )
        .await;
    stack.purge(&stack.queue_url).await;

    let url = format!("s3://{}/", stack.bucket);
    let args = [
        url.as_str(),
        "--from",
        "2026-11-20",
        "--to",
        "2026-11-20",
        "--queue",
        &stack.queue_url,
        "--quiet",
    ];
    // Incidents close 3 s after their page, so the second backfill comes after they closed:
    // only the record of each object being read keeps their pages from going out again.
    let options = || DaemonOptions {
        state_table: Some(table.clone()),
        extra_env: vec![("TRAILWARDEN_INCIDENT_WINDOW_SECS".into(), "3".into())],
        ..Default::default()
    };
    let mut first = Daemon::start(&moto, &stack, options());
    let out = backfill(&moto.endpoint, &args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("backfill: 5 objects ("),
        "{}",
        stderr(&out)
    );
    let wanted = ["bf-login-a", "bf-login-d", "bf-login-c", "bf-login-b"];
    let mut docs = stack
        .alerts_until(Duration::from_secs(60), |d| {
            let ids = event_ids(d);
            wanted.iter().all(|w| ids.iter().any(|id| id == w))
        })
        .await;
    stack
        .wait_depth(&stack.queue_url, 0, Duration::from_secs(60))
        .await;
    assert!(first.read_object("bf-quiet"), "{}", first.logs());
    assert!(!first.read_object("bf-outside"));
    assert!(first.terminate().success());

    // The same range again, once the incidents closed, to a new task: every object is known
    // as read, nothing is read again, nothing pages.
    std::thread::sleep(Duration::from_secs(4));
    let second_task = Daemon::start(&moto, &stack, options());
    let out = backfill(&moto.endpoint, &args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stack
        .wait_depth(&stack.queue_url, 0, Duration::from_secs(60))
        .await;
    let skipped = |name: &str| {
        second_task.logs().lines().any(|l| {
            l.contains("object already read and committed by an earlier message")
                && l.contains(name)
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for (k, _) in &planted {
        let name = k
            .rsplit('_')
            .next()
            .unwrap_or("")
            .trim_end_matches(".json.gz");
        while !skipped(name) {
            assert!(
                std::time::Instant::now() < deadline,
                "{name} was not found already read:\n{}",
                second_task.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(!second_task.read_object(name), "{name} was read again");
    }
    docs.extend(stack.alerts_for(Duration::from_secs(5)).await);
    let logins = for_rule(&docs, "root-console-login");
    let mut paged: BTreeMap<String, usize> = BTreeMap::new();
    for doc in &logins {
        let first = doc["doc"]["alerts"][0]["event_id"].as_str().unwrap_or("");
        *paged.entry(first.to_owned()).or_default() += 1;
    }
    let once: BTreeMap<String, usize> = wanted.iter().map(|w| ((*w).to_owned(), 1)).collect();
    assert_eq!(paged, once, "{logins:#?}");
    let metrics = second_task.metrics();
    assert!(
        metrics.contains("trailwarden_objects_already_read_total 5"),
        "{metrics}"
    );
}

/// A SendMessageBatch seam that half fails: `flaky` entries fail on SQS's side once, `stuck`
/// ones every time, `poison` ones are refused as the sender's fault; one whole call is
/// throttled.
#[derive(Default)]
struct HalfFailing {
    calls: Mutex<u32>,
    seen: Mutex<BTreeMap<String, u32>>,
    queued: Mutex<Vec<String>>,
}

#[async_trait]
impl BatchQueue for HalfFailing {
    async fn send(&self, entries: &[Entry]) -> Result<Vec<Rejected>, Failed> {
        let ids: BTreeSet<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids.len(), entries.len(), "ids are unique in a batch");
        assert!(entries.len() <= 10);
        {
            let mut calls = self.calls.lock().expect("calls");
            *calls += 1;
            if *calls == 2 {
                return Err(Failed::new(
                    trailwarden::aws::Edge::Queue,
                    trailwarden::aws::Answer::Unavailable,
                    "SQS SendMessageBatch on q failed: ThrottlingException".into(),
                ));
            }
        }
        let mut rejected = Vec::new();
        for e in entries {
            let key = match notice::parse(&e.body) {
                Ok(Notice::Objects(refs)) => refs[0].key.clone(),
                other => panic!("{other:?}"),
            };
            let tries = {
                let mut seen = self.seen.lock().expect("seen");
                let n = seen.entry(key.clone()).or_default();
                *n += 1;
                *n
            };
            let fail = |code: &str, sender_fault| Rejected {
                id: e.id.clone(),
                code: code.into(),
                message: "as scripted".into(),
                sender_fault,
            };
            if key.contains("poison") {
                rejected.push(fail("InvalidMessageContents", true));
            } else if key.contains("stuck") || (key.contains("flaky") && tries == 1) {
                rejected.push(fail("InternalError", false));
            } else {
                self.queued.lock().expect("queued").push(key);
            }
        }
        Ok(rejected)
    }
}

#[tokio::test(start_paused = true)]
async fn a_half_failed_batch_is_retried_and_what_cannot_go_is_named() {
    let mut keys: Vec<String> = (0..23)
        .map(|i| format!("AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/20/f{i}.json.gz"))
        .collect();
    keys[3] = keys[3].replace("f3", "flaky f3");
    keys[14] = keys[14].replace("f14", "flaky+f14");
    keys.push("AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/20/poison.json.gz".into());
    keys.push("AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/21/stuck.json.gz".into());
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    for key in &keys {
        tx.send(Ok(Listed {
            key: key.clone(),
            size: 100,
            etag: "e".into(),
            modified: None,
        }))
        .await
        .expect("send");
    }
    drop(tx);
    let queue = Arc::new(HalfFailing::default());
    let bucket = Bucket {
        name: "trail".into(),
        region: "us-east-1".into(),
    };
    let summary =
        backfill::deliver(rx, &bucket, Some(queue.clone()), 2, &Counters::default()).await;

    assert_eq!(summary.objects, 23);
    assert_eq!(summary.bytes, 2300);
    let mut queued = queue.queued.lock().expect("queued").clone();
    queued.sort();
    let mut expected: Vec<String> = keys[..23].to_vec();
    expected.sort();
    assert_eq!(
        queued, expected,
        "every good key queued, the flaky ones once"
    );
    assert!(summary.failed());
    let not_queued: BTreeMap<&str, &str> = summary
        .not_queued
        .iter()
        .map(|(k, why)| (k.as_str(), why.as_str()))
        .collect();
    assert_eq!(not_queued.len(), 2, "{not_queued:?}");
    assert!(not_queued[keys[23].as_str()].contains("InvalidMessageContents"));
    assert!(
        not_queued[keys[24].as_str()].contains(&format!("in {ATTEMPTS} attempts: InternalError"))
    );
    let seen = queue.seen.lock().expect("seen");
    assert_eq!(
        seen[keys[23].as_str()],
        1,
        "a sender's fault is not sent again"
    );
    assert_eq!(seen[keys[24].as_str()], ATTEMPTS, "retries end");
    let mut text = Vec::new();
    summary.write_to(&mut text).expect("write");
    let text = String::from_utf8(text).expect("utf-8");
    assert!(
        text.contains(&format!(
            "not queued: 2 objects: s3://trail/{} s3://trail/{}",
            keys[23], keys[24]
        )) || text.contains(&format!(
            "not queued: 2 objects: s3://trail/{} s3://trail/{}",
            keys[24], keys[23]
        )),
        "{text}"
    );
    assert!(text.contains(&day_row("2026-11-20", 23)), "{text}");
    assert!(
        !text.contains("2026-11-21"),
        "a day with nothing queued has no row: {text}"
    );
}
