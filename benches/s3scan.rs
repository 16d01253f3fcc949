//! `trailwarden scan s3://...` against moto server: BENCH_OBJECTS CloudTrail log objects (2,000
//! by default, over 2 regions and 5 days, BENCH_RECORDS records each, one of them a root
//! sign-in that raises an alert) are listed, fetched, inflated and evaluated.
//!
//! moto is a single Python process, so absolute rates measure the emulator as much as us. The
//! comparison that means something is against a *floor* client in the same run: it lists the
//! same prefix with ListObjectsV2 and GETs every object with the SDK at the same concurrency
//! (BENCH_CONCURRENCY, the command's default of 32 in flight), reading each body whole and
//! doing nothing with it. The contender is the binary as an operator runs it, process start
//! included: `trailwarden scan s3://bucket/AWSLogs/ --quiet`, its alerts written to a pipe
//! and counted, so every object is known to have been read (each raises the same alerts).
//!
//! Run: `cargo bench --bench s3scan` (needs moto_server, e.g. `.venv/bin` on PATH).
//! Knobs: BENCH_OBJECTS (default 2000), BENCH_RECORDS (default 50), BENCH_CONCURRENCY
//! (default 32), BENCH_ROUNDS (default 3; each contender's best round is reported).

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::Instant;

use aws_sdk_s3::primitives::ByteStream;
use futures_util::StreamExt as _;
use support::{ACCOUNT, Moto, knob, log_file};

const BUCKET: &str = "trail-bucket";
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
const DAYS: usize = 5;

/// Object `i`'s key, spread evenly over the regions and days.
fn key(i: usize) -> String {
    let region = REGIONS[i % REGIONS.len()];
    let day = 1 + (i / REGIONS.len()) % DAYS;
    format!(
        "AWSLogs/{ACCOUNT}/CloudTrail/{region}/2026/11/{day:02}/{ACCOUNT}_CloudTrail_{region}_202611{day:02}T0905Z_obj{i}.json.gz"
    )
}

/// The floor: ListObjectsV2 over the prefix, then every object's GET with `concurrency` in
/// flight, each body read whole; returns the bytes read.
async fn floor(s3: &aws_sdk_s3::Client, concurrency: usize) -> (usize, u64) {
    let mut keys = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("AWSLogs/")
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.expect("list objects");
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
    }
    let bytes = futures_util::stream::iter(keys.iter())
        .map(|key| async move {
            let out = s3
                .get_object()
                .bucket(BUCKET)
                .key(key)
                .send()
                .await
                .expect("get object");
            out.body.collect().await.expect("body").into_bytes().len() as u64
        })
        .buffer_unordered(concurrency)
        .fold(0, |sum, n| async move { sum + n })
        .await;
    (keys.len(), bytes)
}

/// The binary's scan of the prefix; returns the alerts it printed.
fn scan(moto: &Moto, concurrency: usize) -> usize {
    let out = Command::new(env!("CARGO_BIN_EXE_trailwarden"))
        .args(["scan", &format!("s3://{BUCKET}/AWSLogs/"), "--quiet"])
        .args(["--s3-concurrency", &concurrency.to_string()])
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run trailwarden scan");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; anything else (e.g. `cargo test --benches`) only checks it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n = knob("BENCH_OBJECTS", 2000);
    let records = knob("BENCH_RECORDS", 50);
    let concurrency = knob("BENCH_CONCURRENCY", 32);
    let rounds = knob("BENCH_ROUNDS", 3);
    eprintln!(
        "s3 scan benchmark: {n} objects of {records} records, {concurrency} GETs in flight, {rounds} rounds"
    );

    let moto = Moto::start();
    let sdk = moto.sdk().await;
    let s3 = support::bucket(&sdk, BUCKET).await;
    futures_util::stream::iter(0..n)
        .map(|i| {
            let s3 = s3.clone();
            let body = log_file(&support::padded(
                support::root_login(&format!("obj-{i}")),
                records.saturating_sub(1),
                &format!("obj-{i}"),
            ));
            async move {
                s3.put_object()
                    .bucket(BUCKET)
                    .key(key(i))
                    .body(ByteStream::from(body))
                    .send()
                    .await
                    .expect("put object");
            }
        })
        .buffer_unordered(32)
        .count()
        .await;

    // Alternate the contenders and keep each one's best round: moto and the contenders share
    // this machine's cores, so a single round is at the mercy of whatever else runs.
    let (mut best_floor, mut best_scan) = (f64::MAX, f64::MAX);
    for r in 1..=rounds {
        let started = Instant::now();
        let (objects, bytes) = floor(&s3, concurrency).await;
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(objects, n, "the floor listed every object");
        eprintln!(
            "round {r}: floor {secs:.2} s, {:.0} objects/s ({:.1} MB)",
            n as f64 / secs,
            bytes as f64 / 1e6
        );
        best_floor = best_floor.min(secs);

        let started = Instant::now();
        let alerts = tokio::task::block_in_place(|| scan(&moto, concurrency));
        let secs = started.elapsed().as_secs_f64();
        assert!(
            alerts >= n && alerts % n == 0,
            "the same alerts from every object: every object was read ({alerts} alerts)"
        );
        eprintln!(
            "round {r}: scan {secs:.2} s, {:.0} objects/s",
            n as f64 / secs
        );
        best_scan = best_scan.min(secs);
    }
    let rate = |secs: f64| n as f64 / secs;
    println!();
    println!("| contender | seconds | objects/s | x the floor |");
    println!("|---|---:|---:|---:|");
    println!(
        "| floor (SDK ListObjectsV2 + GetObject, bodies read, no work) | {best_floor:.2} | {:.0} | 1.00 |",
        rate(best_floor)
    );
    println!(
        "| `trailwarden scan s3://...` (process, listing, inflate, rules, output) | {best_scan:.2} | {:.0} | {:.2} |",
        rate(best_scan),
        rate(best_scan) / rate(best_floor)
    );
    println!();
    println!(
        "reproduce: PATH=$PWD/.venv/bin:$PATH BENCH_OBJECTS={n} BENCH_RECORDS={records} BENCH_CONCURRENCY={concurrency} BENCH_ROUNDS={rounds} cargo bench --bench s3scan"
    );
}
