//! End-to-end daemon benchmark against moto server: S3 → SQS → `trailwarden run` → SNS → SQS.
//!
//! moto is a single Python process, so absolute numbers measure the emulator as much as us.
//! The comparison that means something is against a *floor* client run in the same process on
//! a fresh moto: it makes the same calls (ReceiveMessage in batches of 10, GetObject with the
//! body read to the end, one Publish per object, DeleteMessage) at the same concurrency, and
//! does no work. The daemon runs twice: with its state in memory, and in a DynamoDB table (the
//! deployment's setting), which adds per paging object a page claim, its record, and the
//! outbox's enqueue, lease and settle of the page's delivery. A second floor makes those five
//! state calls too, one request each (the enqueue and the settle are transactions, as the
//! daemon's), so the DynamoDB daemon is also compared with a client making the same AWS
//! calls. Each daemon's objects/s divided by its floor's is the headline.
//!
//! Every object holds one root sign-in to its own account, so every object opens its own
//! incident and pages once, as the floor publishes once.
//!
//! Three phases per contender:
//! - throughput: N objects are uploaded first, then the consumer drains the backlog;
//! - latency: objects are uploaded one every 200 ms while the consumer runs, and the time
//!   from PutObject to the page's arrival in the subscribed queue is recorded;
//! - quiet: objects that raise nothing, to count the state store calls they make (none).
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
use support::{Daemon, DaemonOptions, Moto, Stack, key, knob, log_file, root_login_in};
use tokio::sync::Semaphore;

const WORKERS: usize = 4;
const BATCH: usize = 10;
/// Objects that raise nothing, sent after the latency phase.
const QUIET_OBJECTS: usize = 20;

/// One object's body: a root sign-in to account `i` (one incident, one page) among `records`
/// benign records.
fn object(i: usize, records: usize) -> Vec<u8> {
    log_file(&support::padded(
        root_login_in(&format!("obj-{i}"), &support::account(i)),
        records - 1,
        &format!("obj-{i}"),
    ))
}

/// An object that raises nothing.
fn quiet_object(i: usize, records: usize) -> Vec<u8> {
    let benign = support::record(
        &format!("quiet-{i}"),
        "ec2.amazonaws.com",
        "DescribeInstances",
        support::role(),
    );
    log_file(&support::padded(benign, records - 1, &format!("quiet-{i}")))
}

/// DynamoDB operations the state store uses, as counted in the daemon's metrics.
const STORE_OPERATIONS: &[&str] = &[
    "GetItem",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "Query",
    "BatchWriteItem",
    "TransactWriteItems",
];

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
    store: AtomicU64,
}

/// The outbox's enqueue: one transaction, a check that the message was not delivered already
/// and the pending delivery, as the daemon records a page for its output.
async fn outbox_enqueue(ddb: &aws_sdk_dynamodb::Client, table: &str, id: &str) {
    use aws_sdk_dynamodb::types::{AttributeValue::S, ConditionCheck, Put, TransactWriteItem};
    let check = ConditionCheck::builder()
        .table_name(table)
        .key("pk", S(format!("sent#sns#{id}")))
        .key("sk", S("sent".into()))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .expect("check");
    let put = Put::builder()
        .table_name(table)
        .item("pk", S("out#sns".into()))
        .item("sk", S(id.to_owned()))
        .item(
            "message",
            S(format!("{{\"alerts\":[{{\"event_id\":\"{id}\"}}]}}")),
        )
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .expect("put");
    ddb.transact_write_items()
        .transact_items(TransactWriteItem::builder().condition_check(check).build())
        .transact_items(TransactWriteItem::builder().put(put).build())
        .send()
        .await
        .expect("enqueue");
}

/// The outbox's lease on a pending delivery before it is sent.
async fn outbox_take(ddb: &aws_sdk_dynamodb::Client, table: &str, id: &str) {
    use aws_sdk_dynamodb::types::AttributeValue::{N, S};
    ddb.update_item()
        .table_name(table)
        .key("pk", S("out#sns".into()))
        .key("sk", S(id.to_owned()))
        .update_expression("SET lease_owner = :owner, lease_until = :until")
        .condition_expression("attribute_exists(pk) AND attribute_not_exists(lease_until)")
        .expression_attribute_values(":owner", S("floor".into()))
        .expression_attribute_values(":until", N("0".into()))
        .send()
        .await
        .expect("take");
}

/// The outbox's settle: one transaction, the pending delivery deleted and its marker written.
async fn outbox_settle(ddb: &aws_sdk_dynamodb::Client, table: &str, id: &str) {
    use aws_sdk_dynamodb::types::{AttributeValue::S, Delete, Put, TransactWriteItem};
    let delete = Delete::builder()
        .table_name(table)
        .key("pk", S("out#sns".into()))
        .key("sk", S(id.to_owned()))
        .build()
        .expect("delete");
    let marker = Put::builder()
        .table_name(table)
        .item("pk", S(format!("sent#sns#{id}")))
        .item("sk", S("sent".into()))
        .item("outcome", S("delivered".into()))
        .build()
        .expect("marker");
    ddb.transact_write_items()
        .transact_items(TransactWriteItem::builder().delete(delete).build())
        .transact_items(TransactWriteItem::builder().put(marker).build())
        .send()
        .await
        .expect("settle");
}

/// The floor: same calls, same concurrency, no work. Runs until `stop` is set. With `table`,
/// it also makes the state calls an object and its page need, one request each, as a client
/// without batching would: the object's read record looked up, a conditional claim, the
/// outbox's enqueue and take before the publish, the outbox's settle, the incident's record
/// and the object's read record after it.
async fn floor(
    stack: Arc<Stack>,
    calls: Arc<Calls>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    table: Option<String>,
) {
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
            let table = table.clone();
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
                    let read_record = || {
                        use aws_sdk_dynamodb::types::AttributeValue::S;
                        HashMap::from([
                            ("pk".to_owned(), S(format!("obj#s3://{bucket}/{k}"))),
                            ("sk".to_owned(), S("read".to_owned())),
                        ])
                    };
                    if let Some(table) = &table {
                        calls.store.fetch_add(1, Ordering::Relaxed);
                        stack
                            .ddb
                            .get_item()
                            .table_name(table)
                            .set_key(Some(read_record()))
                            .consistent_read(true)
                            .send()
                            .await
                            .expect("object read?");
                    }
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
                    let item = |state: &str| {
                        use aws_sdk_dynamodb::types::AttributeValue::S;
                        HashMap::from([
                            ("pk".to_owned(), S(format!("inc#{id}"))),
                            ("sk".to_owned(), S("meta".to_owned())),
                            ("state".to_owned(), S(state.to_owned())),
                        ])
                    };
                    if let Some(table) = &table {
                        calls.store.fetch_add(3, Ordering::Relaxed);
                        stack
                            .ddb
                            .put_item()
                            .table_name(table)
                            .set_item(Some(item("claimed")))
                            .condition_expression("attribute_not_exists(pk)")
                            .send()
                            .await
                            .expect("claim");
                        outbox_enqueue(&stack.ddb, table, &id).await;
                        outbox_take(&stack.ddb, table, &id).await;
                    }
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
                    if let Some(table) = &table {
                        calls.store.fetch_add(2, Ordering::Relaxed);
                        outbox_settle(&stack.ddb, table, &id).await;
                        stack
                            .ddb
                            .put_item()
                            .table_name(table)
                            .set_item(Some(item("open")))
                            .send()
                            .await
                            .expect("record");
                        calls.store.fetch_add(1, Ordering::Relaxed);
                        stack
                            .ddb
                            .put_item()
                            .table_name(table)
                            .set_item(Some(read_record()))
                            .send()
                            .await
                            .expect("object read");
                    }
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
    /// State store calls per paging object (DynamoDB contender only).
    store_per_object: f64,
    /// State store calls made for objects that raised nothing.
    store_quiet: f64,
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
    let floor_task = if contender.starts_with("floor") {
        let table = match contender {
            "floor-state" => Some(stack.state_table("floor-state").await),
            _ => None,
        };
        Some(tokio::spawn(floor(
            stack.clone(),
            calls.clone(),
            stop.clone(),
            table,
        )))
    } else {
        let state_table = match contender {
            "dynamodb" => Some(stack.state_table("trailwarden-state").await),
            _ => None,
        };
        daemon = Some(Daemon::start(
            &moto,
            &stack,
            DaemonOptions {
                workers: WORKERS,
                state_table,
                ..Default::default()
            },
        ));
        None
    };
    collect(&stack, objects, Duration::from_secs(600)).await;
    let elapsed = started.elapsed().as_secs_f64();

    let store_calls = |d: &Daemon| {
        let m = d.metrics();
        STORE_OPERATIONS
            .iter()
            .map(|o| {
                metric(
                    &m,
                    &format!("trailwarden_aws_requests_total{{operation=\"{o}\"}}"),
                )
            })
            .sum::<f64>()
    };
    let store_per_object = daemon.as_ref().map_or(
        calls.store.load(Ordering::Relaxed) as f64 / objects as f64,
        |d| store_calls(d) / objects as f64,
    );
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
                // Deletes of finished messages go out in batches when several finish at once.
                op("DeleteMessage") + op("DeleteMessageBatch"),
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

    // Quiet: objects that raise nothing make only their read record's two state calls.
    let mut store_quiet = 0.0;
    if let Some(d) = &daemon {
        let before = store_calls(d);
        for i in 0..QUIET_OBJECTS {
            stack
                .put(&key(&format!("quiet-{i}")), quiet_object(i, records))
                .await;
        }
        stack
            .wait_depth(&stack.queue_url, 0, Duration::from_secs(300))
            .await;
        store_quiet = store_calls(d) - before;
    }

    stop.store(true, Ordering::Relaxed);
    if let Some(t) = floor_task {
        t.abort();
    }
    drop(daemon);
    Result {
        objects_per_sec: objects as f64 / elapsed,
        records_per_sec: (objects * records) as f64 / elapsed,
        calls_per_object,
        store_per_object,
        store_quiet,
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
    let contenders = ["floor", "memory", "floor-state", "dynamodb"];
    let mut best: Vec<Option<Result>> = contenders.iter().map(|_| None).collect();
    for round in 1..=rounds {
        for (name, best) in contenders.iter().zip(best.iter_mut()) {
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
    let best: Vec<Result> = best
        .into_iter()
        .map(|b| b.expect("at least one round"))
        .collect();
    println!();
    println!(
        "| contender | objects/s | x its floor | records/s | Receive/obj | Get/obj | Publish/obj | Delete calls/obj | store calls/obj | store calls, quiet objects | p50 ms | p99 ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let names = [
        ("floor (no work)", 0),
        ("trailwarden run, state in memory", 0),
        (
            "floor + the state calls of a page (claim, record, outbox)",
            0,
        ),
        ("trailwarden run, state in DynamoDB", 2),
    ];
    for ((name, floor), r) in names.iter().zip(&best) {
        println!(
            "| {name} | {:.1} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} |",
            r.objects_per_sec,
            r.objects_per_sec / best[*floor].objects_per_sec,
            r.records_per_sec,
            r.calls_per_object[0],
            r.calls_per_object[1],
            r.calls_per_object[2],
            r.calls_per_object[3],
            r.store_per_object,
            r.store_quiet,
            r.p50_ms,
            r.p99_ms
        );
    }
    println!();
    println!(
        "DynamoDB / floor objects/s: {:.2}x (target >= 0.8x); DynamoDB / floor with the same state calls: {:.2}x; memory / floor: {:.2}x",
        best[3].objects_per_sec / best[0].objects_per_sec,
        best[3].objects_per_sec / best[2].objects_per_sec,
        best[1].objects_per_sec / best[0].objects_per_sec
    );
    println!(
        "state store calls while {QUIET_OBJECTS} objects with no alert were read: {:.0} (their read records: {}, a GetItem and a PutItem each; any more are periodic sweeps)",
        best[3].store_quiet,
        2 * QUIET_OBJECTS
    );
    println!(
        "reproduce: PATH=$PWD/.venv/bin:$PATH BENCH_OBJECTS={objects} BENCH_RECORDS={records} BENCH_LATENCY_OBJECTS={latency_objects} BENCH_ROUNDS={rounds} cargo bench --bench daemon"
    );
}
