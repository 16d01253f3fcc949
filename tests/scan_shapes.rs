//! `trailwarden scan` over every shape of CloudTrail input: each gives the alerts the same
//! records give in an S3 log file, a damaged one names the file and where, and the output does
//! not depend on the thread count.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};
use support::{key, log_file, record, role, root, root_login};

fn trailwarden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trailwarden"))
        .args(args)
        .output()
        .expect("run trailwarden")
}

/// The alerts printed, without the `source` each names (it differs by file, by design).
fn alerts(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            if let Some(map) = v.as_object_mut() {
                map.remove("source");
            }
            v
        })
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write(dir: &Path, rel: &str, bytes: &[u8]) -> String {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, bytes).expect("write");
    path.display().to_string()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

/// Records that raise a few different alerts, and one that raises none.
fn records() -> Vec<Value> {
    vec![
        root_login("shape-1"),
        record("shape-2", "ec2.amazonaws.com", "DescribeInstances", role()),
        record("shape-3", "s3.amazonaws.com", "ListBuckets", root()),
        root_login("shape-4"),
    ]
}

fn jsonl(values: &[Value]) -> Vec<u8> {
    values
        .iter()
        .map(|v| format!("{v}\n"))
        .collect::<String>()
        .into_bytes()
}

fn lookup_entry(r: &Value) -> Value {
    json!({
        "EventId": r["eventID"],
        "EventName": r["eventName"],
        "ReadOnly": "false",
        "EventTime": "2026-11-20T09:03:11+00:00",
        "EventSource": r["eventSource"],
        "Username": "root",
        "Resources": [],
        "CloudTrailEvent": r.to_string(),
    })
}

fn eventbridge(r: &Value) -> Value {
    json!({
        "version": "0",
        "id": format!("eb-{}", r["eventID"].as_str().unwrap_or("")),
        "detail-type": support::detail_type_of(r),
        "source": support::eventbridge_source_of(r),
        "account": "123456789012",
        "time": "2026-11-20T09:03:11Z",
        "region": "us-east-1",
        "resources": [],
        "detail": r,
    })
}

/// `get-query-results` output as the CLI prints it: metadata before the rows.
fn lake(rows: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec_pretty(&json!({
        "QueryStatus": "FINISHED",
        "QueryStatistics": {"ResultsCount": rows.len(), "TotalResultsCount": rows.len(), "BytesScanned": 1},
        "QueryResultRows": rows,
    }))
    .expect("json")
}

#[test]
fn every_shape_gives_the_alerts_of_an_s3_log_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rs = records();
    let reference = trailwarden(&["scan", &write(dir.path(), &key("ref"), &log_file(&rs))]);
    assert!(reference.status.success(), "{}", stderr(&reference));
    let expected = alerts(&reference);
    assert!(expected.len() >= 3, "{expected:?}");

    let bridged: Vec<Value> = rs.iter().map(eventbridge).collect();
    let lookups: Vec<Value> = rs.iter().map(lookup_entry).collect();
    let shapes: Vec<(&str, Vec<u8>)> = vec![
        ("records.jsonl", jsonl(&rs)),
        ("records.jsonl.gz", gzip(&jsonl(&rs))),
        ("array.json", serde_json::to_vec_pretty(&rs).expect("json")),
        (
            "lookup.json",
            serde_json::to_vec_pretty(&json!({"Events": lookups, "NextToken": "abc"}))
                .expect("json"),
        ),
        (
            "lookup-events-only.json",
            serde_json::to_vec(&lookups).expect("json"),
        ),
        ("eventbridge.jsonl", jsonl(&bridged)),
        (
            "eventbridge-array.json",
            serde_json::to_vec(&bridged).expect("json"),
        ),
        (
            "lake.json",
            lake(
                rs.iter()
                    .map(|r| json!([{"eventJson": r.to_string()}]))
                    .collect(),
            ),
        ),
        // Two log files one after the other, as `cat a.json b.json` makes.
        (
            "concatenated.json",
            [
                serde_json::to_vec(&json!({"Records": rs[..2]})).expect("json"),
                serde_json::to_vec(&json!({"Records": rs[2..]})).expect("json"),
            ]
            .join(&b'\n'),
        ),
    ];
    for (name, bytes) in shapes {
        let path = write(dir.path(), name, &bytes);
        let out = trailwarden(&["scan", &path]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert_eq!(alerts(&out), expected, "{name}");
        assert!(
            stderr(&out).contains("1 read, 0 skipped, 0 failed; 4 records"),
            "{name}: {}",
            stderr(&out)
        );
    }

    // One record on its own, and one EventBridge event on its own.
    let single_ref = alerts(&trailwarden(&[
        "scan",
        &write(dir.path(), &key("one"), &log_file(&rs[..1])),
    ]));
    assert_eq!(single_ref.len(), 1, "{single_ref:?}");
    for (name, value) in [("one.json", &rs[0]), ("one-event.json", &bridged[0])] {
        let path = write(
            dir.path(),
            name,
            &serde_json::to_vec_pretty(value).expect("json"),
        );
        let out = trailwarden(&["scan", &path]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert_eq!(alerts(&out), single_ref, "{name}");
    }
}

#[test]
fn a_damaged_file_of_each_shape_names_the_file_and_where_and_good_records_still_alert() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rs = records();
    let mut lookups: Vec<Value> = rs.iter().map(lookup_entry).collect();
    lookups[1]["CloudTrailEvent"] = json!("{not json");
    let full_jsonl = jsonl(&rs);
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "truncated.jsonl",
            full_jsonl[..full_jsonl.len() - 40].to_vec(),
            &["truncated", "record 3"],
        ),
        (
            "wrong-type.json",
            serde_json::to_vec(&json!([rs[0], 5, rs[3]])).expect("json"),
            &["record 1", "a JSON number"],
        ),
        (
            "bad-lookup.json",
            serde_json::to_vec(&json!({"Events": lookups})).expect("json"),
            &["record 1", "CloudTrailEvent", "not a CloudTrail record"],
        ),
        (
            "bad-line.jsonl",
            [
                format!("{}\n", rs[0]).into_bytes(),
                b"{\"eventName\": tru}\n".to_vec(),
                format!("{}\n", rs[3]).into_bytes(),
            ]
            .concat(),
            &["record 1"],
        ),
        (
            "lake-truncated.json",
            {
                let doc = lake(
                    rs.iter()
                        .map(|r| json!([{"eventJson": r.to_string()}]))
                        .collect(),
                );
                doc[..doc.len() * 9 / 10].to_vec()
            },
            &["truncated", "record 3"],
        ),
    ];
    for (name, bytes, says) in cases {
        let path = write(dir.path(), name, &bytes);
        let out = trailwarden(&["scan", &path]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(&format!("error: {path}: ")), "{name}: {err}");
        for s in says {
            assert!(err.contains(s), "{name}: says {s:?}: {err}");
        }
        let got = alerts(&out);
        assert!(
            got.iter().any(|a| a["event_id"] == "shape-1"),
            "{name}: good records alert: {got:?}"
        );
    }
}

#[test]
fn what_is_no_shape_fails_with_the_reason_and_a_misnamed_gz_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rs = records();
    let columns = lake(
        rs.iter()
            .map(|r| json!([{"eventName": r["eventName"]}, {"eventTime": r["eventTime"]}]))
            .collect(),
    );
    for (name, bytes, says) in [
        (
            "lake-columns.json",
            columns,
            "without an eventJson column (columns: eventName, eventTime)",
        ),
        (
            "other.json",
            br#"{"name":"x","items":[1,2]}"#.to_vec(),
            "keys items, name",
        ),
        (
            "failed-query.json",
            br#"{"QueryStatus":"FAILED","ErrorMessage":"boom"}"#.to_vec(),
            "no Records, Events or QueryResultRows",
        ),
        (
            "report.csv",
            b"eventName,eventTime\nx,y\n".to_vec(),
            "not CloudTrail JSON",
        ),
        ("empty.json", Vec::new(), "empty"),
    ] {
        let path = write(dir.path(), name, &bytes);
        let out = trailwarden(&["scan", &path]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(&format!("error: {path}: ")), "{name}: {err}");
        assert!(err.contains(says), "{name}: says {says:?}: {err}");
        assert!(!err.contains("skipped 1"), "{name}: never a skip: {err}");
    }

    // A .json.gz a browser inflated on download: read, with a warning naming its start.
    let path = write(
        dir.path(),
        &key("inflated"),
        &serde_json::to_vec(&json!({"Records": rs})).expect("json"),
    );
    let out = trailwarden(&["scan", &path]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "warning: {path}: named .gz but is not gzip (starts with \"{{\"Records\":["
        )),
        "{err}"
    );
    assert_eq!(alerts(&out).len(), 3);
    // And when it is not JSON either, the failure says both.
    let path = write(dir.path(), "page.json.gz", b"<html>403</html>");
    let err = stderr(&trailwarden(&["scan", &path]));
    assert!(
        err.contains("not CloudTrail JSON") && err.contains("named .gz but is not gzip"),
        "{err}"
    );
}

#[test]
fn output_is_the_same_whatever_the_thread_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Many files of different sizes and shapes, with one event delivered in two of them.
    for i in 0..12 {
        let mut rs = support::padded(root_login(&format!("t-{i}")), i * 400, &format!("t{i}"));
        rs.push(record(
            &format!("t-{i}-b"),
            "s3.amazonaws.com",
            "ListBuckets",
            root(),
        ));
        rs.push(root_login("delivered-twice"));
        let bytes = match i % 3 {
            0 => log_file(&rs),
            1 => gzip(&jsonl(&rs)),
            _ => serde_json::to_vec(&rs).expect("json"),
        };
        write(dir.path(), &format!("{i:02}.json.gz"), &bytes);
    }
    let root_dir = dir.path().display().to_string();
    let one = trailwarden(&["scan", "--threads", "1", &root_dir]);
    assert!(one.status.success(), "{}", stderr(&one));
    assert_eq!(
        String::from_utf8_lossy(&one.stdout)
            .matches("delivered-twice")
            .count(),
        1,
        "reported once"
    );
    for _ in 0..3 {
        let four = trailwarden(&["scan", "--threads", "4", &root_dir]);
        assert!(four.status.success(), "{}", stderr(&four));
        assert_eq!(
            String::from_utf8_lossy(&four.stdout),
            String::from_utf8_lossy(&one.stdout)
        );
    }
}
