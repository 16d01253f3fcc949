//! SigmaHQ's published CloudTrail rules (`rules/cloud/aws/cloudtrail`, vendored unmodified in
//! tests/fixtures/sigmahq) load through the same path as `--rules DIR` and run.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};
use support::{record, role};
use trailwarden::detect::{RuleKind, RuleSet};
use trailwarden::finding::alert::Alert;
use trailwarden::incidents::correlate;
use trailwarden::pipeline;

fn dir() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sigmahq/cloudtrail"
    ))
}

fn scan(rules: &RuleSet, records: &[Value]) -> Vec<Alert> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&serde_json::to_vec(&json!({ "Records": records })).expect("json"))
        .expect("gzip");
    let bytes = enc.finish().expect("gzip");
    let mut alerts = Vec::new();
    let report = pipeline::object(
        rules,
        "t.json.gz",
        std::io::Cursor::new(bytes),
        u64::MAX,
        &mut |_, a| alerts.push(a),
    )
    .expect("a local read never breaks");
    alerts.extend(correlate::decide_all(
        rules,
        report.correlation.into_events().collect(),
    ));
    alerts
}

#[test]
fn every_listed_sigmahq_cloudtrail_rule_loads() {
    let list = std::fs::read_to_string(dir().with_file_name("cloudtrail.list")).expect("list");
    let listed: BTreeSet<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert!(
        listed.len() >= 80,
        "the list holds SigmaHQ's CloudTrail folder"
    );

    let rules = RuleSet::load(&[dir().to_owned()]).expect("rule dir");
    assert!(rules.errors().is_empty(), "{:#?}", rules.errors());
    let loaded: BTreeSet<String> = rules
        .rules()
        .iter()
        .filter(|r| !r.origin.starts_with("builtin:"))
        .filter_map(|r| {
            Path::new(&r.origin)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        })
        .collect();
    for file in &listed {
        assert!(loaded.contains(*file), "{file} did not load");
    }
}

#[test]
fn sigmahq_rules_run_over_the_examples_and_rule_cases() {
    let rules = RuleSet::load(&[dir().to_owned()]).expect("rule dir");
    let mut records = Vec::new();
    for entry in std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rule_cases"
    ))
    .expect("cases")
    {
        let v: Value = serde_json::from_str(
            &std::fs::read_to_string(entry.expect("entry").path()).expect("read"),
        )
        .expect("json");
        for case in v["cases"].as_array().into_iter().flatten() {
            records.push(case["record"].clone());
        }
    }
    let alerts = scan(&rules, &records);
    let sigmahq: BTreeSet<&str> = alerts
        .iter()
        .filter(|a| {
            rules
                .rules()
                .iter()
                .any(|r| r.name == a.rule && !r.origin.starts_with("builtin:"))
        })
        .map(|a| a.rule.as_str())
        .collect();
    assert!(
        sigmahq.len() >= 5,
        "SigmaHQ rules fire on AWS-shaped records: {sigmahq:?}"
    );
}

#[test]
fn legacy_count_aggregation_runs_as_a_correlation() {
    let rules = RuleSet::load(&[dir().to_owned()]).expect("rule dir");
    let id = "52a27427-d366-4152-b728-f0157aa2ba64";
    let rule = rules
        .rules()
        .iter()
        .find(|r| r.name == id)
        .expect("discovery rule");
    assert_eq!(rule.kind, RuleKind::Correlation);

    // `n` distinct discovery calls by one principal, 30 seconds apart, from `hour`:00.
    let burst = |n: usize, arn: &str, hour: u32| -> Vec<Value> {
        [
            "ListRoles",
            "ListBuckets",
            "DescribeVpcs",
            "DescribeSubnets",
            "DescribeSecurityGroups",
            "DescribeVolumes",
            "DescribeSnapshots",
        ]
        .iter()
        .take(n)
        .enumerate()
        .map(|(i, name)| {
            let mut r = record(&format!("{arn}-{i}"), "ec2.amazonaws.com", name, role());
            r["userIdentity"]["arn"] = json!(arn);
            r["eventTime"] = json!(format!(
                "2026-11-20T{hour:02}:{:02}:{:02}Z",
                i / 2,
                (i % 2) * 30
            ));
            r
        })
        .collect()
    };
    // The rule counts distinct eventNames per principal within 5 minutes and needs more than 6.
    let mut records = burst(6, "arn:aws:sts::123456789012:assumed-role/a/x", 9);
    records.extend(burst(7, "arn:aws:sts::123456789012:assumed-role/b/y", 10));
    let alerts = scan(&rules, &records);
    let fired: Vec<_> = alerts.iter().filter(|a| a.rule == id).collect();
    assert_eq!(fired.len(), 1, "{fired:#?}");
    assert_eq!(
        fired[0].principal_arn.as_deref(),
        Some("arn:aws:sts::123456789012:assumed-role/b/y")
    );
    assert!(
        !alerts.iter().any(|a| a.rule == format!("{id}-events")),
        "single discovery calls do not alert on their own"
    );
}
