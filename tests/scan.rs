//! `trailwarden scan` and `trailwarden rules` as a user runs them: real files, real exit codes.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use support::{key, log_file, record, role, root, root_login};

fn trailwarden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trailwarden"))
        .args(args)
        .output()
        .expect("run trailwarden")
}

fn alerts(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
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

#[test]
fn example_tree_quickstart() {
    let out = trailwarden(&[
        "scan",
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/cloudtrail"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rules: std::collections::BTreeSet<String> = alerts(&out)
        .iter()
        .map(|a| a["rule"].as_str().unwrap_or("").to_owned())
        .collect();
    for expected in [
        "root-console-login",
        "root-access-key-created",
        "console-login-brute-force",
        "cloudtrail-changed",
    ] {
        assert!(
            rules.contains(expected),
            "{expected} missing from {rules:?}"
        );
    }
    let err = stderr(&out);
    assert!(err.contains("12 read, 1 skipped, 0 failed"), "{err}");
    assert!(err.contains("digest file"), "{err}");
}

#[test]
fn account_names_are_shown_beside_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        dir.path(),
        "root.json.gz",
        &log_file(&[root_login("named")]),
    );
    let named = ["--account-name", "123456789012=prod-payments"];
    let out = trailwarden(&[&["scan"][..], &named, &[file.as_str()]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let found = alerts(&out);
    assert_eq!(found[0]["account_id"], "123456789012");
    assert_eq!(found[0]["account_name"], "prod-payments");
    let text = trailwarden(&[&["scan", "--format", "text"][..], &named, &[file.as_str()]].concat());
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.lines()
            .next()
            .is_some_and(|l| l.ends_with("(account prod-payments, 123456789012)")),
        "{text}"
    );
    // Without a name, the alert has no account_name; a malformed pair is a usage error.
    let plain = alerts(&trailwarden(&["scan", &file]));
    assert!(plain[0].get("account_name").is_none(), "{plain:?}");
    let bad = trailwarden(&["scan", "--account-name", "prod-payments", &file]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("ID=NAME"), "{}", stderr(&bad));
}

#[test]
fn multi_member_gzip_plain_json_and_stdin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let doc = serde_json::to_vec(&json!({"Records": [record("m1", "ec2.amazonaws.com", "DescribeInstances", role()), root_login("m2")]})).expect("json");
    let mut two_members = gzip(&doc[..doc.len() / 2]);
    two_members.extend(gzip(&doc[doc.len() / 2..]));
    let gz = write(dir.path(), &key("multi"), &two_members);
    let plain = write(dir.path(), "plain.json", &doc);

    for path in [&gz, &plain] {
        let out = trailwarden(&["scan", path]);
        assert!(out.status.success(), "{path}: {}", stderr(&out));
        let got = alerts(&out);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0]["event_id"], "m2");
        assert_eq!(got[0]["source"], path.as_str());
        assert!(stderr(&out).contains("2 records"), "{}", stderr(&out));
    }

    let mut child = Command::new(env!("CARGO_BIN_EXE_trailwarden"))
        .args(["scan", "--format", "text", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&two_members)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("CRITICAL "), "{text}");
    assert!(
        text.contains("root-console-login Root user signed in to the console of"),
        "{text}"
    );
}

#[test]
fn empty_records_and_digest_files_are_not_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), &key("empty"), &gzip(br#"{"Records":[]}"#));
    write(
        dir.path(),
        "AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2026/11/20/123456789012_CloudTrail-Digest_us-east-1_trail_us-east-1_20261120T100000Z.json.gz",
        &gzip(br#"{"awsAccountId":"123456789012","digestStartTime":"2026-11-20T09:00:00Z","logFiles":[]}"#),
    );
    write(dir.path(), "AWSLogs/123456789012/CloudTrail-Insight/us-east-1/2026/11/20/insight.json.gz", &gzip(br#"{"Records":[{"eventVersion":"1.08","eventTime":"2026-11-20T09:00:00Z","eventSource":"ec2.amazonaws.com","eventName":"RunInstances","awsRegion":"us-east-1","eventID":"i1","eventCategory":"Insight","insightDetails":{"state":"Start"}}]}"#));
    let out = trailwarden(&["scan", &dir.path().display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("files: 2 read, 1 skipped, 0 failed; 1 records"),
        "{err}"
    );
    assert!(err.contains("skipped 1: digest file"), "{err}");
}

#[test]
fn damaged_files_name_the_file_and_where_reading_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = support::padded(root_login("early-login"), 5000, "damaged");
    let full = log_file(&records);
    let truncated_gz = write(dir.path(), "truncated.json.gz", &full[..full.len() / 2]);
    let doc = serde_json::to_vec(&json!({"Records": records})).expect("json");
    let truncated_json = write(dir.path(), "truncated.json", &doc[..doc.len() / 3]);
    let not_json = write(dir.path(), "notjson.json", b"<html>403 Forbidden</html>");
    let bad_record = write(
        dir.path(),
        "badrecord.json",
        format!(
            r#"{{"Records":[{{"eventName":"ConsoleLogin"}},{{"eventName": tru}},{}]}}"#,
            root_login("after-bad-record")
        )
        .as_bytes(),
    );

    for (path, expect) in [
        (&truncated_gz, "record"),
        (&truncated_json, "truncated"),
        (&not_json, "byte 0"),
        (&bad_record, "record 1"),
    ] {
        let out = trailwarden(&["scan", path]);
        assert_eq!(out.status.code(), Some(1), "{path}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("error: {path}: ")),
            "names the file: {err}"
        );
        assert!(err.contains(expect), "{path}: says where: {err}");
    }
    // A bad record costs only itself: the records after it are still read.
    let got = alerts(&trailwarden(&["scan", &bad_record]));
    assert!(
        got.iter().any(|a| a["event_id"] == "after-bad-record"),
        "{got:?}"
    );
    // Alerts for records before the damage are still emitted.
    for path in [&truncated_gz, &truncated_json] {
        let got = alerts(&trailwarden(&["scan", path]));
        assert!(
            got.iter().any(|a| a["event_id"] == "early-login"),
            "{path}: {got:?}"
        );
    }
}

#[test]
fn hundred_thousand_records_in_one_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records: Vec<Value> = (0..100_000)
        .map(|i| {
            if i % 10_000 == 0 {
                record(
                    &format!("root-{i}"),
                    "s3.amazonaws.com",
                    "ListBuckets",
                    root(),
                )
            } else {
                record(
                    &format!("r-{i}"),
                    "ec2.amazonaws.com",
                    "DescribeInstances",
                    role(),
                )
            }
        })
        .collect();
    let path = write(dir.path(), &key("big"), &log_file(&records));
    let out = trailwarden(&["scan", &path]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("100000 records"), "{}", stderr(&out));
    let got = alerts(&out);
    assert_eq!(got.len(), 10);
    assert!(got.iter().all(|a| a["rule"] == "root-activity"));
}

#[test]
fn min_level_and_decompression_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        &key("levels"),
        &log_file(&[
            root_login("l1"),
            record("l2", "s3.amazonaws.com", "ListBuckets", root()),
        ]),
    );
    let out = trailwarden(&["scan", "--min-level", "critical", &path]);
    let got = alerts(&out);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["level"], "critical");

    let out = trailwarden(&["scan", "--max-decompressed-bytes", "100", &path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("exceeds the cap of 100 bytes"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn usage_and_rule_errors_exit_2_and_good_rules_still_run() {
    let out = trailwarden(&["scan", "/no/such/path"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/no/such/path"), "{}", stderr(&out));
    let out = trailwarden(&["scan", "--min-level", "severe", "x"]);
    assert_eq!(out.status.code(), Some(2));

    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    write(
        &rules,
        "broken.yml",
        b"title: broken\ndetection:\n  condition: nothing_here\n",
    );
    write(
        &rules,
        "mine.yml",
        br#"
title: Describe by CI
name: ci-describe
logsource: {product: aws, service: cloudtrail}
detection:
  selection:
    eventName: DescribeInstances
  condition: selection
level: low
"#,
    );
    let log = write(
        dir.path(),
        &key("x"),
        &log_file(&[record(
            "c1",
            "ec2.amazonaws.com",
            "DescribeInstances",
            role(),
        )]),
    );
    let rules = rules.display().to_string();
    let out = trailwarden(&["scan", "--rules", &rules, &log]);
    assert_eq!(out.status.code(), Some(2), "a rule failed to load");
    assert!(stderr(&out).contains("broken.yml"), "{}", stderr(&out));
    let got = alerts(&out);
    assert_eq!(got.len(), 1, "the good user rule still ran");
    assert_eq!(got[0]["rule"], "ci-describe");

    let out = trailwarden(&["rules", "--rules", &rules]);
    assert_eq!(out.status.code(), Some(2));
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("ci-describe") && listing.contains("root-console-login"),
        "{listing}"
    );
    assert!(
        stderr(&out).contains("48 rules loaded, 1 failed to load"),
        "{}",
        stderr(&out)
    );

    let out = trailwarden(&["scan", "--trusted-account", "12345", &log]);
    assert_eq!(out.status.code(), Some(2), "not an account id");
    assert!(stderr(&out).contains("12-digit"), "{}", stderr(&out));
    let out = trailwarden(&[
        "scan",
        "--aws-ip-ranges",
        "/nonexistent/ip-ranges.json",
        &log,
    ]);
    assert_eq!(out.status.code(), Some(2), "an unreadable ranges file");
    assert!(
        stderr(&out).contains("/nonexistent/ip-ranges.json"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn run_rejects_bad_settings_with_exit_2_naming_the_key() {
    let base = [
        ("TRAILWARDEN_QUEUE_URL", "http://127.0.0.1:9/q"),
        (
            "TRAILWARDEN_TOPIC_ARN",
            "arn:aws:sns:us-east-1:123456789012:t",
        ),
        ("TRAILWARDEN_ALLOWED_BUCKETS", "b"),
    ];
    for (var, value, named) in [
        ("TRAILWARDEN_MAX_MESSAGES", "11", "max_messages"),
        ("TRAILWARDEN_QUEUE_URLL", "x", "TRAILWARDEN_QUEUE_URLL"),
        ("TRAILWARDEN_MIN_LEVEL", "urgent", "urgent"),
        // Settings that would start and then fail on every poll or at shutdown.
        ("TRAILWARDEN_QUEUE_URL", "trailwarden-events", "queue_url"),
        ("TRAILWARDEN_TOPIC_ARN", "alerts", "topic_arn"),
        ("TRAILWARDEN_ENDPOINT_URL", "not a url", "endpoint_url"),
        (
            "TRAILWARDEN_SHUTDOWN_GRACE_SECS",
            "40",
            "shutdown_grace_secs",
        ),
        // No region in the settings or the environment.
        ("TRAILWARDEN_HEALTH_LISTEN", "127.0.0.1:0", "setting region"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_trailwarden"))
            .arg("run")
            .env_clear()
            .envs(base)
            // Never ask the EC2 instance metadata service for a region or credentials.
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env(var, value)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{var}");
        assert!(stderr(&out).contains(named), "{var}: {}", stderr(&out));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        dir.path(),
        "c.toml",
        b"queue_url = \"https://sqs.us-east-1.amazonaws.com/123456789012/q\"\n\
          topic_arn = \"arn:aws:sns:us-east-1:123456789012:t\"\n\
          allowed_buckets = [\"b\"]\nworkers = 0\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_trailwarden"))
        .args(["run", "--config", &file])
        .env_clear()
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("workers"), "{}", stderr(&out));
}

/// An event two files both hold (two trails writing to one bucket) is printed once, across
/// the batches a worker prints a long file in, with one or two threads and when sorted.
#[test]
fn an_event_in_two_files_is_printed_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logins = |ids: std::ops::Range<usize>| -> Vec<Value> {
        ids.map(|i| root_login(&format!("event-{i}"))).collect()
    };
    let a = write(dir.path(), "a.json.gz", &log_file(&logins(0..1500)));
    let b = write(dir.path(), "b.json.gz", &log_file(&logins(1000..2600)));
    let one = write(dir.path(), "one.json.gz", &log_file(&logins(0..1)));
    let per_event = alerts(&trailwarden(&["scan", &one])).len();
    assert!(per_event > 0);
    for extra in [
        &["--threads", "1"][..],
        &["--threads", "2"],
        &["--sort", "time"],
    ] {
        let out = trailwarden(&[&["scan"][..], extra, &[a.as_str(), b.as_str()]].concat());
        assert!(out.status.success(), "{}", stderr(&out));
        let printed = alerts(&out);
        let pairs: std::collections::HashSet<(String, String)> = printed
            .iter()
            .map(|a| (a["rule"].to_string(), a["event_id"].to_string()))
            .collect();
        assert_eq!(
            pairs.len(),
            printed.len(),
            "{extra:?}: an alert printed twice"
        );
        assert_eq!(printed.len(), 2600 * per_event, "{extra:?}");
        let ids: Vec<String> = printed
            .iter()
            .map(|a| a["event_id"].as_str().unwrap_or("").to_owned())
            .collect();
        let mut firsts = ids.clone();
        firsts.dedup();
        let expected: Vec<String> = (0..2600).map(|i| format!("event-{i}")).collect();
        assert_eq!(firsts, expected, "{extra:?}: not in input order");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{} duplicate events", 500 * per_event)),
            "{extra:?}: {err}"
        );
    }
}
