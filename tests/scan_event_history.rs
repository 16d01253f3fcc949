//! `trailwarden scan --event-history` against a stand-in for CloudTrail's LookupEvents on
//! 127.0.0.1, through the real binary and the real SDK client.
//!
//! moto (5.2) does not serve LookupEvents: its CloudTrail answers trail management calls
//! only. So the stand-in speaks the documented AWS JSON 1.1 protocol itself (POST /,
//! `X-Amz-Target: CloudTrail_20131101.LookupEvents` as the SDK sends it, or the long form
//! `com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents` of AWS's examples; a
//! JSON body with StartTime/EndTime in epoch seconds, MaxResults and NextToken; errors as HTTP
//! 400 with `__type`), tells regions apart by the SigV4 credential scope, and records when
//! each call arrived.
//! <https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_LookupEvents.html>

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{record, role, root_login};

const TARGET: &str = "CloudTrail_20131101.LookupEvents";

/// One LookupEvents call as the stand-in saw it.
#[derive(Debug, Clone)]
struct Call {
    region: String,
    at: Instant,
    body: Value,
}

/// What the stand-in answers, per region.
#[derive(Default)]
struct Trail {
    /// Each region's events, newest first, as pages of LookupEvents entries.
    pages: BTreeMap<String, Vec<Vec<Value>>>,
    /// (region, call number from 1) answered with ThrottlingException instead.
    throttle: Vec<(String, usize)>,
    /// Regions whose every call is refused with AccessDeniedException.
    deny: Vec<String>,
    calls: Mutex<Vec<Call>>,
}

impl Trail {
    fn answer(&self, target: &str, region: &str, body: &str) -> (u16, String) {
        let body: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let call = {
            let mut calls = self.calls.lock().expect("lock");
            calls.push(Call {
                region: region.to_owned(),
                at: Instant::now(),
                body: body.clone(),
            });
            calls.iter().filter(|c| c.region == region).count()
        };
        if target.rsplit("v20131101.").next() != Some(TARGET) {
            return error("UnknownOperationException", "not served by this test");
        }
        if self.deny.iter().any(|r| r == region) {
            return error(
                "AccessDeniedException",
                "User: arn:aws:iam::123456789012:user/reader is not authorized to perform: cloudtrail:LookupEvents because no identity-based policy allows the cloudtrail:LookupEvents action",
            );
        }
        if self.throttle.contains(&(region.to_owned(), call)) {
            return error("ThrottlingException", "Rate exceeded");
        }
        let pages = self.pages.get(region).map(Vec::as_slice).unwrap_or(&[]);
        let page = match body["NextToken"].as_str() {
            None => 0,
            Some(token) => match token.strip_prefix("page-").and_then(|n| n.parse().ok()) {
                Some(n) => n,
                None => return error("InvalidNextTokenException", "bad token"),
            },
        };
        let mut answer = json!({"Events": pages.get(page).cloned().unwrap_or_default()});
        if page + 1 < pages.len() {
            answer["NextToken"] = json!(format!("page-{}", page + 1));
        }
        (200, answer.to_string())
    }

    fn calls_in(&self, region: &str) -> Vec<Call> {
        let calls = self.calls.lock().expect("lock");
        calls
            .iter()
            .filter(|c| c.region == region)
            .cloned()
            .collect()
    }
}

fn error(kind: &str, message: &str) -> (u16, String) {
    (400, json!({"__type": kind, "message": message}).to_string())
}

/// A LookupEvents entry holding `record` as its CloudTrailEvent string.
fn entry(record: &Value) -> Value {
    let time = chrono::DateTime::parse_from_rfc3339(record["eventTime"].as_str().expect("time"))
        .expect("rfc3339");
    json!({
        "EventId": record["eventID"],
        "EventName": record["eventName"],
        "ReadOnly": "false",
        "EventTime": time.timestamp(),
        "EventSource": record["eventSource"],
        "Username": "root",
        "Resources": [],
        "CloudTrailEvent": record.to_string(),
    })
}

/// `n` records of `region`, newest first, every seventh a root sign-in (an alert) and the
/// rest benign.
fn records(region: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let id = format!("{region}-{i}");
            let mut r = if i % 7 == 0 {
                root_login(&id)
            } else {
                record(&id, "ec2.amazonaws.com", "DescribeInstances", role())
            };
            r["awsRegion"] = json!(region);
            r["eventTime"] = json!(format!(
                "2026-11-20T{:02}:{:02}:00Z",
                23 - i / 60,
                59 - i % 60
            ));
            r
        })
        .collect()
}

fn pages(records: &[Value], size: usize) -> Vec<Vec<Value>> {
    records
        .chunks(size)
        .map(|c| c.iter().map(entry).collect())
        .collect()
}

/// A loopback HTTP/1.1 server, one request per connection, each on its own thread, until
/// dropped (or a minute passes: it never outlives a stuck test for long).
struct Server {
    endpoint: String,
    stop: Arc<AtomicBool>,
    trail: Arc<Trail>,
}

impl Server {
    fn start(trail: Trail) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let stop = Arc::new(AtomicBool::new(false));
        let trail = Arc::new(trail);
        let (flag, served) = (stop.clone(), trail.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !flag.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let served = served.clone();
                        std::thread::spawn(move || handle(conn, &served));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Server {
            endpoint,
            stop,
            trail,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn handle(conn: TcpStream, trail: &Trail) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(&conn);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let (mut length, mut target, mut region) = (0, String::new(), String::new());
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().unwrap_or(0);
        } else if name.eq_ignore_ascii_case("x-amz-target") {
            target = value.to_owned();
        } else if name.eq_ignore_ascii_case("authorization") {
            // SigV4: Credential=AKID/20261120/us-east-1/cloudtrail/aws4_request
            region = value
                .split("Credential=")
                .nth(1)
                .and_then(|c| c.split('/').nth(2))
                .unwrap_or("")
                .to_owned();
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let (status, payload) = trail.answer(&target, &region, &String::from_utf8_lossy(&body));
    let mut out = &conn;
    let _ = write!(
        out,
        "HTTP/1.1 {status} X\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nx-amzn-RequestId: 7a62c49f\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
}

fn scan(endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trailwarden"))
        .arg("scan")
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run scan")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// (rule, event_id) of every alert printed, sorted, repeats kept.
fn alerts(out: &Output) -> Vec<(String, String)> {
    let mut alerts: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .map(|a| {
            (
                a["rule"].as_str().unwrap_or("").to_owned(),
                a["event_id"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    alerts.sort();
    alerts
}

/// The same records as a local JSON-lines file, scanned.
fn scan_local(records: &[Value]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("events.jsonl");
    let lines: Vec<String> = records.iter().map(Value::to_string).collect();
    std::fs::write(&file, lines.join("\n")).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_trailwarden"))
        .args(["scan", "--quiet"])
        .arg(&file)
        .output()
        .expect("run scan");
    assert!(out.status.success(), "{}", stderr(&out));
    out
}

/// Gaps between a region's consecutive calls, as the stand-in saw them.
fn gaps(calls: &[Call]) -> Vec<Duration> {
    calls.windows(2).map(|w| w[1].at - w[0].at).collect()
}

#[test]
fn every_page_of_every_region_is_read_once_within_the_rate_limit() {
    let east = records("us-east-1", 120);
    let west = records("eu-west-1", 60);
    let server = Server::start(Trail {
        pages: BTreeMap::from([
            ("us-east-1".to_owned(), pages(&east, 50)),
            ("eu-west-1".to_owned(), pages(&west, 50)),
        ]),
        // us-east-1's second call is throttled: the SDK retries it.
        throttle: vec![("us-east-1".to_owned(), 2)],
        ..Trail::default()
    });
    let out = scan(
        &server.endpoint,
        &[
            "--event-history",
            "--region",
            "us-east-1",
            "--region",
            "eu-west-1",
            "--quiet",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // The same alerts as the same records read from a file, each once.
    let all: Vec<Value> = east.iter().chain(&west).cloned().collect();
    let got = alerts(&out);
    assert_eq!(got, alerts(&scan_local(&all)));
    let planted = all
        .iter()
        .filter(|r| r["eventName"] == "ConsoleLogin")
        .count();
    assert_eq!(
        got.iter()
            .filter(|(rule, _)| rule == "root-console-login")
            .count(),
        planted,
        "{got:?}"
    );

    // us-east-1: three pages, the second asked twice; eu-west-1: two pages.
    let east_calls = server.trail.calls_in("us-east-1");
    let west_calls = server.trail.calls_in("eu-west-1");
    let tokens = |calls: &[Call]| -> Vec<Value> {
        calls.iter().map(|c| c.body["NextToken"].clone()).collect()
    };
    assert_eq!(
        tokens(&east_calls),
        [
            Value::Null,
            json!("page-1"),
            json!("page-1"),
            json!("page-2")
        ]
    );
    assert_eq!(tokens(&west_calls), [Value::Null, json!("page-1")]);
    for call in east_calls.iter().chain(&west_calls) {
        assert_eq!(call.body["MaxResults"], 50, "{:?}", call.body);
        assert!(
            call.body.get("StartTime").is_none() && call.body.get("EndTime").is_none(),
            "no range given, all 90 days: {:?}",
            call.body
        );
    }

    // At most 2 calls a second per region, the retry of the throttled call included; the
    // regions are read at once, not one after the other.
    for calls in [&east_calls, &west_calls] {
        for gap in gaps(calls) {
            assert!(gap >= Duration::from_millis(450), "{:?}", gaps(calls));
        }
    }
    assert!(
        west_calls[0].at < east_calls[1].at,
        "eu-west-1 began while us-east-1 was read"
    );

    let err = stderr(&out);
    assert!(
        err.contains(
            "event history: 180 events in 5 LookupEvents pages from us-east-1 (120), eu-west-1 (60)"
        ),
        "{err}"
    );
    assert!(
        err.contains("pages: 5 read, 0 skipped, 0 failed; 180 records"),
        "{err}"
    );
}

#[test]
fn from_and_to_are_sent_as_start_and_end_time() {
    let east = records("us-east-1", 10);
    let server = Server::start(Trail {
        pages: BTreeMap::from([("us-east-1".to_owned(), pages(&east, 50))]),
        ..Trail::default()
    });
    // No --region: the SDK's region (AWS_REGION).
    let out = scan(
        &server.endpoint,
        &[
            "--event-history",
            "--from",
            "2026-11-20T12:00:00Z",
            "--to",
            "2026-11-20",
            "--quiet",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let calls = server.trail.calls_in("us-east-1");
    assert_eq!(calls.len(), 1);
    let epoch = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .expect("rfc3339")
            .timestamp()
    };
    // --to a date runs through the end of that day.
    assert_eq!(
        calls[0].body["StartTime"].as_f64(),
        Some(epoch("2026-11-20T12:00:00Z") as f64)
    );
    assert_eq!(
        calls[0].body["EndTime"].as_f64(),
        Some(epoch("2026-11-21T00:00:00Z") as f64)
    );
    assert_eq!(alerts(&out), alerts(&scan_local(&east)));
}

#[test]
fn a_damaged_event_and_a_refused_region_are_reported_and_the_rest_read() {
    let mut east = records("us-east-1", 30);
    let mut damaged = pages(&east, 50);
    damaged[0][3]["CloudTrailEvent"] = json!("{\"eventVersion\":\"1.08\",\"eventID\":");
    let broken_id = east[3]["eventID"].as_str().expect("id").to_owned();
    let server = Server::start(Trail {
        pages: BTreeMap::from([("us-east-1".to_owned(), damaged)]),
        deny: vec!["eu-west-1".to_owned()],
        ..Trail::default()
    });
    let out = scan(
        &server.endpoint,
        &[
            "--event-history",
            "--region",
            "us-east-1",
            "--region",
            "eu-west-1",
            "--quiet",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    // The damaged record: named with its region (in the page's name) and its event id, and
    // counted; the records around it are still read.
    assert!(
        err.contains("event-history:us-east-1:page-1")
            && err.contains(&format!("lookup-events entry {broken_id}")),
        "{err}"
    );
    assert!(
        err.contains("1 records could not be parsed and were skipped"),
        "{err}"
    );
    east.remove(3);
    let got: Vec<(String, String)> = alerts(&out)
        .into_iter()
        .filter(|(rule, _)| rule != "log-file-unreadable")
        .collect();
    assert_eq!(got, alerts(&scan_local(&east)));
    // The refused region: the permission and the region are named.
    assert!(
        err.contains("CloudTrail LookupEvents in eu-west-1 failed: AccessDeniedException")
            && err.contains("needs the cloudtrail:LookupEvents permission in eu-west-1"),
        "{err}"
    );
    assert_eq!(server.trail.calls_in("eu-west-1").len(), 1, "not retried");
}

#[test]
fn paths_and_event_history_exclude_each_other_and_credentials_are_required() {
    let out = Command::new(env!("CARGO_BIN_EXE_trailwarden"))
        .args(["scan", "--event-history", "some.json"])
        .output()
        .expect("run scan");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot be used with"),
        "{}",
        stderr(&out)
    );

    let empty = tempfile::NamedTempFile::new().expect("tempfile");
    let out = Command::new(env!("CARGO_BIN_EXE_trailwarden"))
        .args(["scan", "--event-history", "--region", "us-east-1"])
        .env_clear()
        .env("HOME", "/nonexistent")
        .env("AWS_CONFIG_FILE", empty.path())
        .env("AWS_SHARED_CREDENTIALS_FILE", empty.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run scan");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot read the event history: no AWS credentials found"),
        "{}",
        stderr(&out)
    );
}
