//! Fast path latency benchmark against moto server: a CloudTrail event put on EventBridge →
//! rule → SQS → `trailwarden run` → SNS → the subscribed queue.
//!
//! The time from PutEvents to the page's arrival is measured for each event, beside a *floor*
//! client run in the same process on a fresh moto: it makes the same calls (ReceiveMessage,
//! Publish, DeleteMessage) and does no work. The daemon runs as deployed, with its state in a
//! DynamoDB table. The headline is what the daemon adds to the floor at p50 and p99.
//!
//! Every event is a root sign-in to its own account, so each opens its own incident and pages.
//!
//! Run: `cargo bench --bench fastpath` (needs moto_server, e.g. `.venv/bin` on PATH).
//! Knobs: FASTPATH_EVENTS (default 200), FASTPATH_INTERVAL_MS (default 100).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Daemon, DaemonOptions, Moto, Stack, account, knob, put_event, root_login_in};

/// The floor: receive the event, publish a page naming it, delete the message; no work.
async fn floor(stack: Arc<Stack>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let out = stack
            .sqs
            .receive_message()
            .queue_url(&stack.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        for m in out.messages.unwrap_or_default() {
            let stack = stack.clone();
            tokio::spawn(async move {
                let body: Value =
                    serde_json::from_str(m.body().unwrap_or("")).unwrap_or(Value::Null);
                let id = body["detail"]["eventID"].as_str().unwrap_or("").to_owned();
                let doc = serde_json::json!({"alerts": [{"event_id": id}]}).to_string();
                stack
                    .sns
                    .publish()
                    .topic_arn(&stack.topic_arn)
                    .message(doc)
                    .send()
                    .await
                    .expect("publish");
                let _ = stack
                    .sqs
                    .delete_message()
                    .queue_url(&stack.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await;
            });
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Latencies in ms, sorted, for `events` events put `interval` apart.
async fn run(contender: &str, events: usize, interval: Duration) -> Vec<f64> {
    let moto = Moto::start();
    let stack = Arc::new(Stack::create(&moto, 5).await);
    let bus = stack.eventbridge(&moto).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut daemon = None;
    let floor_task = if contender == "floor" {
        Some(tokio::spawn(floor(stack.clone(), stop.clone())))
    } else {
        let table = stack.state_table("trailwarden-state").await;
        daemon = Some(Daemon::start(
            &moto,
            &stack,
            DaemonOptions {
                state_table: Some(table),
                ..Default::default()
            },
        ));
        None
    };
    let collector = {
        let stack = stack.clone();
        tokio::spawn(async move {
            let mut seen = HashMap::new();
            let deadline = Instant::now() + Duration::from_secs(600);
            while seen.len() < events && Instant::now() < deadline {
                let docs = stack.receive_alerts().await;
                let now = Instant::now();
                for id in support::event_ids(&docs) {
                    seen.entry(id).or_insert(now);
                }
            }
            seen
        })
    };
    let mut put_at = HashMap::new();
    for i in 0..events {
        let id = format!("fast-{i}");
        let record = root_login_in(&id, &account(i));
        put_at.insert(id, Instant::now());
        put_event(&bus, &record, None).await;
        tokio::time::sleep(interval).await;
    }
    let arrived = collector.await.expect("collector");
    assert_eq!(arrived.len(), events, "every event paged");
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = floor_task {
        t.abort();
    }
    drop(daemon);
    let mut lat: Vec<f64> = put_at
        .iter()
        .map(|(id, t)| arrived[id].duration_since(*t).as_secs_f64() * 1000.0)
        .collect();
    lat.sort_by(f64::total_cmp);
    lat
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let events = knob("FASTPATH_EVENTS", 200);
    let interval = Duration::from_millis(knob("FASTPATH_INTERVAL_MS", 100) as u64);
    eprintln!("fast path benchmark: {events} events, one every {interval:?}");
    let floor = run("floor", events, interval).await;
    let daemon = run("daemon", events, interval).await;
    println!();
    println!("| contender | events | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for (name, lat) in [
        ("floor (no work)", &floor),
        ("trailwarden run, DynamoDB state", &daemon),
    ] {
        println!(
            "| {name} | {} | {:.0} | {:.0} | {:.0} |",
            lat.len(),
            percentile(lat, 0.5),
            percentile(lat, 0.99),
            lat[lat.len() - 1]
        );
    }
    println!();
    println!(
        "added by the daemon: p50 {:+.0} ms, p99 {:+.0} ms (target p99 < 100 ms)",
        percentile(&daemon, 0.5) - percentile(&floor, 0.5),
        percentile(&daemon, 0.99) - percentile(&floor, 0.99)
    );
    println!(
        "reproduce: PATH=$PWD/.venv/bin:$PATH FASTPATH_EVENTS={events} FASTPATH_INTERVAL_MS={} cargo bench --bench fastpath",
        interval.as_millis()
    );
}
