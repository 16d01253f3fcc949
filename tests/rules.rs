//! Every builtin rule against CloudTrail records shaped after AWS's documented examples,
//! through the same engine path `scan` and the daemon use (gzip → reader → lazy record →
//! rsigma → alerts → correlator).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};
use trailwarden::alert::Alert;
use trailwarden::detect::{RuleKind, RuleSet};
use trailwarden::incidents::correlate;
use trailwarden::pipeline::{self, Outcome};

fn gz(records: &[Value]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&serde_json::to_vec(&json!({ "Records": records })).expect("json"))
        .expect("gzip");
    enc.finish().expect("gzip")
}

/// Runs records through the engine as one log file; returns every alert, correlations included.
fn run(rules: &RuleSet, records: &[Value]) -> Vec<Alert> {
    let mut alerts = Vec::new();
    let report = pipeline::read_log(
        rules,
        "case.json.gz",
        std::io::Cursor::new(gz(records)),
        u64::MAX,
        &mut |a, _| alerts.push(a),
    );
    assert!(
        matches!(report.outcome, Outcome::Complete),
        "{:?}",
        report.outcome
    );
    alerts.extend(correlate::decide_all(rules, report.correlation.events));
    alerts
}

fn cases_dir() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rule_cases"
    ))
}

fn load(name: &str) -> Value {
    let path = cases_dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn builtin_rules_all_load() {
    let rules = RuleSet::load(&[]).expect("builtin rules");
    assert!(rules.errors().is_empty(), "{:?}", rules.errors());
    assert_eq!(rules.rules().len(), 25);
    let names: BTreeSet<_> = rules.rules().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.len(), 25, "names are unique");
}

#[test]
fn every_detection_rule_fires_on_its_positives_and_not_its_negatives() {
    let rules = RuleSet::load(&[]).expect("builtin rules");
    let mut failures = Vec::new();
    for rule in rules
        .rules()
        .iter()
        .filter(|r| r.kind == RuleKind::Detection)
    {
        let file = load(&rule.name);
        assert_eq!(file["rule"], rule.name);
        let cases = file["cases"].as_array().expect("cases");
        let positives = cases.iter().filter(|c| c["fires"] == true).count();
        assert!(
            positives >= 1 && positives < cases.len(),
            "{}: needs positive and negative cases",
            rule.name
        );
        for case in cases {
            let fired = run(&rules, std::slice::from_ref(&case["record"]))
                .iter()
                .any(|a| a.rule == rule.name);
            if fired != (case["fires"] == true) {
                failures.push(format!("{}: {:?} fired={fired}", rule.name, case["name"]));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn brute_force_correlation_sequences() {
    let rules = RuleSet::load(&[]).expect("builtin rules");
    let file = load("console-login-brute-force");
    for seq in file["sequences"].as_array().expect("sequences") {
        let records = seq["records"].as_array().expect("records");
        let alerts: Vec<_> = run(&rules, records)
            .into_iter()
            .filter(|a| a.rule == "console-login-brute-force")
            .collect();
        assert_eq!(
            alerts.len() as u64,
            seq["expect_alerts"].as_u64().expect("n"),
            "{}",
            seq["name"]
        );
        for a in &alerts {
            assert!(a.count.unwrap_or(0) >= 5, "{a:?}");
            assert!(
                a.event_ids.as_ref().is_some_and(|ids| ids.len() >= 5),
                "{a:?}"
            );
        }
    }
}

#[test]
fn alerts_carry_the_documented_fields() {
    let rules = RuleSet::load(&[]).expect("builtin rules");
    let file = load("root-console-login");
    let positive = file["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["fires"] == true)
        .expect("a positive case");
    let alert = run(&rules, std::slice::from_ref(&positive["record"]))
        .into_iter()
        .find(|a| a.rule == "root-console-login")
        .expect("alert");
    let v = serde_json::to_value(&alert).expect("json");
    for field in [
        "rule",
        "title",
        "level",
        "tags",
        "event_id",
        "event_time",
        "event_name",
        "event_source",
        "aws_region",
        "account_id",
        "principal_type",
        "principal_arn",
        "source_ip",
        "user_agent",
        "mfa_used",
        "summary",
        "source",
    ] {
        assert!(v.get(field).is_some(), "missing {field}: {v}");
    }
    assert_eq!(v["level"], "critical");
    assert_eq!(v["principal_type"], "Root");
    assert!(
        v["summary"]
            .as_str()
            .expect("summary")
            .starts_with("Root user signed in to the console of ")
    );
}
