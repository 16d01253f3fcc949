//! End-to-end daemon benchmark against moto server: S3 → SQS → `trailwarden run` → SNS → SQS.
//!
//! moto is a single Python process, so absolute numbers measure the emulator as much as us.
//! The comparison that means something is against a *floor* client run in the same process on
//! a fresh moto: it makes the same calls (ReceiveMessage in batches of 10, GetObject with the
//! body read to the end, one Publish per object, DeleteMessage) at the same concurrency, and
//! does no work. The daemon's objects/s divided by the floor's is the headline.
//!
//! Two phases per contender:
//! - throughput: N objects are uploaded first, then the consumer drains the backlog;
//! - latency: objects are uploaded one every LAT_INTERVAL while the consumer runs, and the
//!   time from PutObject to the alert's arrival in the subscribed queue is recorded.
//!
//! Run: `cargo bench --bench daemon` (needs moto_server, e.g. `.venv/bin` on PATH).
//! Knobs: BENCH_OBJECTS (default 200), BENCH_RECORDS (per object, default 2000),
//! BENCH_LATENCY_OBJECTS (default 40), BENCH_ROUNDS (default 3; each contender's best round
//! is reported).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Daemon, DaemonOptions, Moto, Stack, key, log_file, root_login};
use tokio::sync::Semaphore;

const WORKERS: usize = 4;
const BATCH: usize = 10;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One object's body: a root sign-in (one alert, one publish) among `records` benign records.
fn object(i: usize, records: usize) -> Vec<u8> {
    log_file(&support::padded(
        root_login(&format!("obj-{i}")),
        records - 1,
        &format!("obj-{i}"),
    ))
}

/// Receives alert messages and records when each object's alert arrived.
async fn collect(stack: &Stack, want: usize, timeout: Duration) -> HashMap<String, Instant> {
    let deadline = Instant::now() + timeout;
    let mut seen = HashMap::new();
    while seen.len() < want {
        assert!(
            Instant::now() < deadline,
            "only {} of {want} alerts arrived",
            seen.len()
        );
        let docs = stack.receive_alerts().await;
        let now = Instant::now();
        for id in support::event_ids(&docs) {
            seen.entry(id).or_insert(now);
        }
    }
    seen
}

/// API calls made by a contender.
#[derive(Default)]
struct Calls {
    receive: AtomicU64,
    get: AtomicU64,
    publish: AtomicU64,
    delete: AtomicU64,
}

/// The floor: same calls, same concurrency, no work. Runs until `stop` is set.
async fn floor(stack: Arc<Stack>, calls: Arc<Calls>, stop: Arc<std::sync::atomic::AtomicBool>) {
    let in_flight = Arc::new(Semaphore::new(WORKERS + BATCH));
    let readers = Arc::new(Semaphore::new(WORKERS));
    while !stop.load(Ordering::Relaxed) {
        let permits = in_flight
            .clone()
            .acquire_many_owned(BATCH as u32)
            .await
            .expect("permits");
        calls.receive.fetch_add(1, Ordering::Relaxed);
        let out = stack
            .sqs
            .receive_message()
            .queue_url(&stack.queue_url)
            .max_number_of_messages(BATCH as i32)
            .wait_time_seconds(1)
            .visibility_timeout(30)
            .send()
            .await
            .expect("receive");
        let mut permits = permits;
        for m in out.messages.unwrap_or_default() {
            let permit = permits.split(1).expect("permit");
            let (stack, calls, readers) = (stack.clone(), calls.clone(), readers.clone());
            tokio::spawn(async move {
                let body: Value =
                    serde_json::from_str(m.body().unwrap_or("")).unwrap_or(Value::Null);
                let rec = &body["Records"][0]["s3"];
                if let (Some(bucket), Some(k)) = (
                    rec["bucket"]["name"].as_str(),
                    rec["object"]["key"].as_str(),
                ) {
                    let k = percent_encoding::percent_decode_str(&k.replace('+', " "))
                        .decode_utf8_lossy()
                        .into_owned();
                    let _reader = readers.acquire().await.expect("reader");
                    calls.get.fetch_add(1, Ordering::Relaxed);
                    let obj = stack
                        .s3
                        .get_object()
                        .bucket(bucket)
                        .key(&k)
                        .send()
                        .await
                        .expect("get");
                    let _ = obj.body.collect().await.expect("body");
                    drop(_reader);
                    let id = k
                        .rsplit('_')
                        .next()
                        .unwrap_or("")
                        .trim_end_matches(".json.gz")
                        .to_owned();
                    calls.publish.fetch_add(1, Ordering::Relaxed);
                    let doc = serde_json::json!({"alerts": [{"event_id": id}]}).to_string();
                    stack
                        .sns
                        .publish()
                        .topic_arn(&stack.topic_arn)
                        .message(doc)
                        .send()
                        .await
                        .expect("publish");
                }
                calls.delete.fetch_add(1, Ordering::Relaxed);
                let _ = stack
                    .sqs
                    .delete_message()
                    .queue_url(&stack.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await;
                drop(permit);
            });
        }
    }
}

struct Result {
    objects_per_sec: f64,
    records_per_sec: f64,
    calls_per_object: [f64; 4],
    p50_ms: f64,
    p99_ms: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Metric value from the daemon's /metrics text.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

async fn run(contender: &str, objects: usize, records: usize, latency_objects: usize) -> Result {
    let moto = Moto::start();
    let stack = Arc::new(Stack::create(&moto, 5).await);
    // Object names end in the alert's event id so the floor can echo it.
    let bodies: Vec<Vec<u8>> = (0..objects + latency_objects)
        .map(|i| object(i, records))
        .collect();
    for (i, body) in bodies.iter().enumerate().take(objects) {
        stack.put(&key(&format!("obj-{i}")), body.clone()).await;
    }

    let calls = Arc::new(Calls::default());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = Instant::now();
    let mut daemon = None;
    let floor_task = if contender == "floor" {
        Some(tokio::spawn(floor(
            stack.clone(),
            calls.clone(),
            stop.clone(),
        )))
    } else {
        daemon = Some(Daemon::start(
            &moto,
            &stack,
            DaemonOptions {
                workers: WORKERS,
                ..Default::default()
            },
        ));
        None
    };
    collect(&stack, objects, Duration::from_secs(600)).await;
    let elapsed = started.elapsed().as_secs_f64();

    let calls_per_object = match &daemon {
        Some(d) => {
            let m = d.metrics();
            let op = |o: &str| {
                metric(
                    &m,
                    &format!("trailwarden_aws_requests_total{{operation=\"{o}\"}}"),
                ) / objects as f64
            };
            [
                op("ReceiveMessage"),
                op("GetObject"),
                op("Publish"),
                op("DeleteMessage"),
            ]
        }
        None => {
            let n = objects as f64;
            [
                calls.receive.load(Ordering::Relaxed) as f64 / n,
                calls.get.load(Ordering::Relaxed) as f64 / n,
                calls.publish.load(Ordering::Relaxed) as f64 / n,
                calls.delete.load(Ordering::Relaxed) as f64 / n,
            ]
        }
    };

    // Latency: a steady trickle while the consumer runs.
    let mut put_at = HashMap::new();
    let collector = {
        let stack = stack.clone();
        tokio::spawn(
            async move { collect(&stack, latency_objects, Duration::from_secs(300)).await },
        )
    };
    for (i, body) in bodies.iter().enumerate().skip(objects) {
        put_at.insert(format!("obj-{i}"), Instant::now());
        stack.put(&key(&format!("obj-{i}")), body.clone()).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let arrived = collector.await.expect("collector");
    let mut lat: Vec<f64> = put_at
        .iter()
        .filter_map(|(id, t)| {
            arrived
                .get(id)
                .map(|a| a.duration_since(*t).as_secs_f64() * 1000.0)
        })
        .collect();
    lat.sort_by(f64::total_cmp);

    stop.store(true, Ordering::Relaxed);
    if let Some(t) = floor_task {
        t.abort();
    }
    drop(daemon);
    Result {
        objects_per_sec: objects as f64 / elapsed,
        records_per_sec: (objects * records) as f64 / elapsed,
        calls_per_object,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; anything else (e.g. `cargo test --benches`) only checks it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let objects = knob("BENCH_OBJECTS", 200);
    let records = knob("BENCH_RECORDS", 2000);
    let latency_objects = knob("BENCH_LATENCY_OBJECTS", 40);
    eprintln!(
        "daemon benchmark: {objects} objects x {records} records, {latency_objects} latency probes, {WORKERS} workers"
    );

    // Alternate the contenders and keep each one's best round: moto and the daemon share this
    // machine's cores, so a single round is at the mercy of whatever else runs.
    let rounds = knob("BENCH_ROUNDS", 3);
    let mut floor: Option<Result> = None;
    let mut daemon: Option<Result> = None;
    for round in 1..=rounds {
        for (name, best) in [("floor", &mut floor), ("daemon", &mut daemon)] {
            let r = run(name, objects, records, latency_objects).await;
            eprintln!("round {round}: {name} {:.1} objects/s", r.objects_per_sec);
            if best
                .as_ref()
                .is_none_or(|b| r.objects_per_sec > b.objects_per_sec)
            {
                *best = Some(r);
            }
        }
    }
    let (floor, daemon) = (
        floor.expect("at least one round"),
        daemon.expect("at least one round"),
    );
    println!();
    println!(
        "| contender | objects/s | records/s | Receive/obj | Get/obj | Publish/obj | Delete/obj | p50 ms | p99 ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, r) in [("floor (no work)", &floor), ("trailwarden run", &daemon)] {
        println!(
            "| {name} | {:.1} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} |",
            r.objects_per_sec,
            r.records_per_sec,
            r.calls_per_object[0],
            r.calls_per_object[1],
            r.calls_per_object[2],
            r.calls_per_object[3],
            r.p50_ms,
            r.p99_ms
        );
    }
    println!();
    println!(
        "daemon / floor objects/s: {:.2}x (target >= 0.8x)",
        daemon.objects_per_sec / floor.objects_per_sec
    );
    println!(
        "daemon GetObject per object: {:.2} (target <= 1)",
        daemon.calls_per_object[1]
    );
    println!(
        "daemon ReceiveMessage per object under load: {:.2} (target <= 0.2)",
        daemon.calls_per_object[0]
    );
    println!(
        "reproduce: PATH=$PWD/.venv/bin:$PATH BENCH_OBJECTS={objects} BENCH_RECORDS={records} BENCH_LATENCY_OBJECTS={latency_objects} BENCH_ROUNDS={rounds} cargo bench --bench daemon"
    );
}
