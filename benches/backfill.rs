//! `trailwarden backfill` benchmark against moto server: BENCH_OBJECTS CloudTrail log objects
//! (5,000 by default, over 2 regions and 5 days) are queued as S3 notifications.
//!
//! moto is a single Python process, so absolute rates measure the emulator as much as us. The
//! comparison that means something is against a *floor* client in the same run, on a fresh
//! queue each time: it makes the same SendMessageBatch calls (10 entries each, the same number
//! in flight) with the SDK, from bodies built before the clock starts, and nothing else.
//! Two backfill contenders:
//! - `deliver`: the library's send path (`backfill::deliver` over the SQS edge) fed the same
//!   objects, already listed: notification bodies, batching, bounded concurrency and the
//!   per-entry bookkeeping. Its messages/s over the floor's is the headline.
//! - the binary: `trailwarden backfill s3://... --quiet`, the whole command as an operator
//!   runs it, process start and the ListObjectsV2 calls of the day prefixes included.
//!
//! Each contender's queue is checked to hold exactly BENCH_OBJECTS messages afterwards.
//!
//! Run: `cargo bench --bench backfill` (needs moto_server, e.g. `.venv/bin` on PATH).
//! Knobs: BENCH_OBJECTS (default 5000), BENCH_CONCURRENCY (default 8, the command's default),
//! BENCH_ROUNDS (default 3; each contender's best round is reported).

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use chrono::Utc;
use futures_util::StreamExt as _;
use support::{ACCOUNT, Moto, knob, log_file};
use trailwarden::backfill::edge::SqsBatches;
use trailwarden::backfill::notification::{self, Bucket};
use trailwarden::backfill::send::{BATCH, BatchQueue};
use trailwarden::backfill::{self, Counters};
use trailwarden::intake::listing::Listed;
use trailwarden::telemetry::Metrics;

const BUCKET: &str = "trail-bucket";
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
const DAYS: u32 = 5;

/// The objects' keys, spread evenly over the regions and days.
fn keys(objects: usize) -> Vec<String> {
    (0..objects)
        .map(|i| {
            let region = REGIONS[i % REGIONS.len()];
            let day = 1 + (i / REGIONS.len()) as u32 % DAYS;
            format!(
                "AWSLogs/{ACCOUNT}/CloudTrail/{region}/2026/11/{day:02}/{ACCOUNT}_CloudTrail_{region}_202611{day:02}T0905Z_obj{i}.json.gz"
            )
        })
        .collect()
}

async fn fresh_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("url")
}

async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .and_then(|a| {
            a.get(&QueueAttributeName::ApproximateNumberOfMessages)
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// The floor: the same SendMessageBatch calls from prebuilt bodies; returns the calls made.
async fn floor(sqs: &aws_sdk_sqs::Client, url: &str, bodies: &[String], concurrency: usize) -> u64 {
    futures_util::stream::iter(bodies.chunks(BATCH))
        .map(|chunk| async move {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                        .expect("entry")
                })
                .collect();
            let out = sqs
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("send message batch");
            assert!(out.failed().is_empty(), "{:?}", out.failed());
        })
        .buffer_unordered(concurrency)
        .count()
        .await as u64
}

/// One contender's round: seconds and SendMessageBatch calls.
struct Round {
    secs: f64,
    calls: u64,
}

async fn round(
    contender: &str,
    moto: &Moto,
    listed: &[Listed],
    bodies: &[String],
    concurrency: usize,
    n: usize,
    number: usize,
) -> Round {
    let sdk = moto.sdk().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = fresh_queue(&sqs, &format!("{contender}-{number}")).await;
    let started = Instant::now();
    let calls = match contender {
        "floor" => floor(&sqs, &url, bodies, concurrency).await,
        "deliver" => {
            let queue: Arc<dyn BatchQueue> =
                Arc::new(SqsBatches::new(&sdk, url.clone(), Metrics::new()));
            let (tx, rx) = tokio::sync::mpsc::channel(1024);
            let feed = listed.to_vec();
            tokio::spawn(async move {
                for object in feed {
                    tx.send(Ok(object)).await.expect("feed");
                }
            });
            let bucket = Bucket {
                name: BUCKET.into(),
                region: "us-east-1".into(),
            };
            let summary =
                backfill::deliver(rx, &bucket, Some(queue), concurrency, &Counters::default())
                    .await;
            assert!(!summary.failed(), "{:?}", summary.not_queued.first());
            summary.calls
        }
        _ => {
            let out = Command::new(env!("CARGO_BIN_EXE_trailwarden"))
                .args([
                    "backfill",
                    &format!("s3://{BUCKET}/"),
                    "--from",
                    "2026-11-01",
                ])
                .args(["--to", "2026-11-05", "--queue", &url, "--quiet"])
                .args(["--concurrency", &concurrency.to_string()])
                .env("AWS_ENDPOINT_URL", &moto.endpoint)
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .env("AWS_REGION", "us-east-1")
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .output()
                .expect("run trailwarden backfill");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{err}");
            err.split(" SendMessageBatch calls")
                .next()
                .and_then(|head| head.rsplit(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no call count in {err}"))
        }
    };
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(
        depth(&sqs, &url).await,
        n as u64,
        "{contender} queued them all"
    );
    sqs.delete_queue()
        .queue_url(&url)
        .send()
        .await
        .expect("delete queue");
    Round { secs, calls }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; anything else (e.g. `cargo test --benches`) only checks it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n = knob("BENCH_OBJECTS", 5000);
    let concurrency = knob("BENCH_CONCURRENCY", 8);
    let rounds = knob("BENCH_ROUNDS", 3);
    eprintln!("backfill benchmark: {n} objects, {concurrency} batches in flight, {rounds} rounds");

    let moto = Moto::start();
    let sdk = moto.sdk().await;
    let s3 = support::bucket(&sdk, BUCKET).await;
    let body = log_file(&[]);
    let keys = keys(n);
    futures_util::stream::iter(keys.clone())
        .map(|key| {
            let (s3, body) = (s3.clone(), body.clone());
            async move {
                s3.put_object()
                    .bucket(BUCKET)
                    .key(key)
                    .body(ByteStream::from(body))
                    .send()
                    .await
                    .expect("put object");
            }
        })
        .buffer_unordered(32)
        .count()
        .await;
    let listed: Vec<Listed> = keys
        .iter()
        .map(|key| Listed {
            key: key.clone(),
            size: body.len() as u64,
            etag: "d41d8cd98f00b204e9800998ecf8427e".into(),
            modified: Some(Utc::now()),
        })
        .collect();
    let bucket = Bucket {
        name: BUCKET.into(),
        region: "us-east-1".into(),
    };
    let bodies: Vec<String> = listed
        .iter()
        .map(|l| notification::body(&bucket, l, Utc::now()))
        .collect();

    // Alternate the contenders and keep each one's best round: moto and the contenders share
    // this machine's cores, so a single round is at the mercy of whatever else runs.
    let contenders = ["floor", "deliver", "binary"];
    let mut best: Vec<Option<Round>> = contenders.iter().map(|_| None).collect();
    for r in 1..=rounds {
        for (name, best) in contenders.iter().zip(best.iter_mut()) {
            let round = round(name, &moto, &listed, &bodies, concurrency, n, r).await;
            eprintln!(
                "round {r}: {name} {:.2} s, {:.0} messages/s",
                round.secs,
                n as f64 / round.secs
            );
            if best.as_ref().is_none_or(|b| round.secs < b.secs) {
                *best = Some(round);
            }
        }
    }
    let best: Vec<Round> = best.into_iter().map(|b| b.expect("a round")).collect();
    let rate = |r: &Round| n as f64 / r.secs;
    println!();
    println!("| contender | seconds | messages/s | x the floor | SendMessageBatch calls |");
    println!("|---|---:|---:|---:|---:|");
    let names = [
        "floor (SDK SendMessageBatch, prebuilt bodies)",
        "backfill::deliver (bodies, batches, bookkeeping)",
        "`trailwarden backfill` (process, listing included)",
    ];
    for (name, r) in names.iter().zip(&best) {
        println!(
            "| {name} | {:.2} | {:.0} | {:.2} | {} |",
            r.secs,
            rate(r),
            rate(r) / rate(&best[0]),
            r.calls
        );
    }
    println!();
    println!(
        "deliver / floor messages/s: {:.2}x; the whole command / floor: {:.2}x",
        rate(&best[1]) / rate(&best[0]),
        rate(&best[2]) / rate(&best[0])
    );
    println!(
        "reproduce: PATH=$PWD/.venv/bin:$PATH BENCH_OBJECTS={n} BENCH_CONCURRENCY={concurrency} BENCH_ROUNDS={rounds} cargo bench --bench backfill"
    );
}
