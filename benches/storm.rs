//! Alert storm benchmark: the daemon's peak memory while it reads one CloudTrail object whose
//! 1,000,000 records all raise an alert (denied calls by one role under 1,000 caller-chosen
//! session names), against moto server, S3 → SQS → `trailwarden run` → SNS → SQS.
//!
//! Anyone with credentials can write such records into a trail, so memory must not grow with
//! the number of alerts: they fold into incidents as the object streams. The figure is the
//! daemon's peak resident memory (`VmHWM`) above what it held idle before the object arrived,
//! measured on the process itself; the bench also checks the storm paged once.
//!
//! Run: `cargo bench --bench storm` (needs moto_server, e.g. `.venv/bin` on PATH).
//! Knob: STORM_RECORDS (default 1,000,000).

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use support::{ACCOUNT, Daemon, DaemonOptions, Moto, Stack, for_rule, key, knob};

/// A field of /proc/<pid>/status in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The storm object, written straight into gzip without building the records in memory.
fn storm_object(records: usize) -> (Vec<u8>, u64) {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut raw = 0u64;
    let mut write = |s: &str| {
        raw += s.len() as u64;
        enc.write_all(s.as_bytes()).expect("in-memory gzip");
    };
    write("{\"Records\":[");
    for i in 0..records {
        let session = format!("s{}", i % 1000);
        let record = format!(
            r#"{}{{"eventVersion":"1.08","userIdentity":{{"type":"AssumedRole","principalId":"AROAEXAMPLE:{session}","arn":"arn:aws:sts::{ACCOUNT}:assumed-role/scanner/{session}","accountId":"{ACCOUNT}","sessionContext":{{"sessionIssuer":{{"type":"Role","arn":"arn:aws:iam::{ACCOUNT}:role/scanner","accountId":"{ACCOUNT}","userName":"scanner"}}}}}},"eventTime":"2026-11-20T09:{:02}:{:02}Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.{}","userAgent":"aws-cli/2.15.0","errorCode":"AccessDenied","errorMessage":"Access Denied","requestParameters":{{"bucketName":"b{}","key":"k"}},"responseElements":null,"requestID":"r{i}","eventID":"storm-{i}","readOnly":true,"eventType":"AwsApiCall","managementEvent":false,"recipientAccountId":"{ACCOUNT}"}}"#,
            if i == 0 { "" } else { "," },
            (i / 60) % 60,
            i % 60,
            i % 250,
            i % 97,
        );
        write(&record);
    }
    write("]}");
    (enc.finish().expect("in-memory gzip"), raw)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let records = knob("STORM_RECORDS", 1_000_000);
    let (object, raw) = storm_object(records);
    eprintln!(
        "storm benchmark: {records} matching records, {:.0} MB decompressed, {:.1} MB gzipped",
        raw as f64 / 1e6,
        object.len() as f64 / 1e6
    );

    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    let daemon = Daemon::start(&moto, &stack, DaemonOptions::default());
    let pid = daemon.child.id();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = status_kib(pid, "VmRSS:");

    let started = Instant::now();
    stack.put(&key("storm"), object).await;
    stack
        .wait_depth(&stack.queue_url, 0, Duration::from_secs(900))
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let peak = status_kib(pid, "VmHWM:");
    let docs = stack.alerts_for(Duration::from_secs(3)).await;
    let pages = for_rule(&docs, "unauthorized-api-call");
    assert_eq!(pages.len(), 1, "one incident, one page");
    assert_eq!(pages[0]["doc"]["count"], records as u64);

    let mib = |kib: u64| kib as f64 / 1024.0;
    println!();
    println!(
        "| records | decompressed MB | idle RSS MiB | peak RSS MiB | peak above idle MiB | seconds (PutObject to delete) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {records} | {:.0} | {:.1} | {:.1} | **{:.1}** | {elapsed:.1} |",
        raw as f64 / 1e6,
        mib(idle),
        mib(peak),
        mib(peak.saturating_sub(idle)),
    );
    println!();
    println!(
        "peak above idle: {:.1} MiB (target < 64 MiB); pages: {} with count {}",
        mib(peak.saturating_sub(idle)),
        pages.len(),
        pages[0]["doc"]["count"]
    );
    println!(
        "reproduce: PATH=$PWD/.venv/bin:$PATH STORM_RECORDS={records} cargo bench --bench storm"
    );
}
