//! Every builtin rule against CloudTrail records shaped after AWS's documented examples,
//! through the same engine path `scan` and the daemon use (gzip → reader → lazy record →
//! rsigma → alerts → correlator). Correlation sequences run through both deciders: `scan`'s,
//! and the daemon's commit over the state store.
//!
//! `tests/fixtures/rule_cases/<rule>.test.json` holds each rule's cases in the format of
//! `trailwarden rules test` (`trailwarden::rule_test`), and runs through that code: `cases`
//! (one record, fires or not) for detections, `sequences` (records in order, how many alerts)
//! for correlations. The tests here add what only the builtin set promises.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};
use trailwarden::clock::Clock;
use trailwarden::detect::{Derivation, RuleKind, RuleSet};
use trailwarden::finding::alert::Alert;
use trailwarden::finding::fold::Folder;
use trailwarden::finding::sink::{FollowUp, Opened, Page, Resolved, Sink, SinkError};
use trailwarden::finding::{Findings, Level};
use trailwarden::incidents::commit::{Committer, Policy, Progress};
use trailwarden::incidents::correlate;
use trailwarden::incidents::store::memory::MemoryStore;
use trailwarden::pipeline::{self, Outcome};
use trailwarden::rule_test::{Fires, TestFile};
use trailwarden::telemetry::Metrics;

/// Builtin rules: the 25 CIS-era rules, 21 more, and secret-value-read (feeds
/// secrets-mass-read).
const BUILTIN_RULES: usize = 47;

/// The account the cases' own policies may trust besides their own.
const TRUSTED_ACCOUNT: &str = "444455556666";

/// The bucket the cases treat as holding the trail's logs.
const TRAIL_BUCKET: &str = "aws-cloudtrail-logs-111122223333-7f3a2b";

/// The builtin rules, with the derivation context the cases are written for: one trusted
/// account, one trail bucket, and a small AWS IP ranges file of the tests' own.
fn builtin() -> RuleSet {
    let ranges = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/ip-ranges.json"
    ));
    let ranges = Derivation::load_ip_ranges(Some(ranges)).expect("the tests' ranges file");
    RuleSet::load(&[])
        .expect("builtin rules")
        .with_derivation(Derivation::new(
            [TRUSTED_ACCOUNT.to_owned()],
            [TRAIL_BUCKET.to_owned()],
            ranges,
        ))
}

fn gz(records: &[Value]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&serde_json::to_vec(&json!({ "Records": records })).expect("json"))
        .expect("gzip");
    enc.finish().expect("gzip")
}

/// Runs records through the engine as one log file; returns every alert, correlations included.
fn run(rules: &RuleSet, records: &[Value]) -> Vec<Alert> {
    let mut alerts = Vec::new();
    let report = pipeline::object(
        rules,
        "case.json.gz",
        std::io::Cursor::new(gz(records)),
        u64::MAX,
        &mut |_, a| alerts.push(a),
    )
    .expect("a local read never breaks");
    assert!(
        matches!(report.outcome, Outcome::Complete),
        "{:?}",
        report.outcome
    );
    alerts.extend(correlate::decide_all(
        rules,
        report.correlation.into_events().collect(),
    ));
    alerts
}

fn cases_dir() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rule_cases"
    ))
}

fn load(name: &str) -> Value {
    let path = cases_dir().join(format!("{name}.test.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn builtin_rules_all_load() {
    let rules = builtin();
    assert!(rules.errors().is_empty(), "{:?}", rules.errors());
    assert_eq!(rules.rules().len(), BUILTIN_RULES);
    let names: BTreeSet<_> = rules.rules().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.len(), BUILTIN_RULES, "names are unique");
}

#[test]
fn every_builtin_rule_says_what_to_do_next() {
    let rules = builtin();
    for rule in rules.rules() {
        assert!(
            (1..=3).contains(&rule.next_steps.len()),
            "{}: {} next steps",
            rule.name,
            rule.next_steps.len()
        );
        for step in &rule.next_steps {
            assert!(
                !step.is_empty() && step.len() <= 110 && !step.ends_with('.'),
                "{}: next step {step:?} should be one short imperative line",
                rule.name
            );
        }
    }
}

/// rsigma's candidate index gates a rule on one conjunct of each selection: the most selective
/// kind (an exact value before a substring), and of those the fewest values. A selection
/// `eventName: [PutKeyPolicy, CreateKey], eventSource: kms.amazonaws.com` is gated on the one
/// source, so the rule runs for every KMS Decrypt. Matching the service with `|endswith` makes
/// it a substring, and the calls gate the rule: on the scan benchmark, rule evaluation took a
/// fifth less time, with the same alerts.
#[test]
fn selections_are_gated_on_their_calls_not_their_service() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/rules"));
    let mut exact = Vec::new();
    for entry in std::fs::read_dir(dir).expect("rules dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "yml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("rule");
        for doc in yaml_serde::Deserializer::from_str(&text) {
            let doc = yaml_serde::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let Some(detection) = doc.get("detection").and_then(|d| d.as_mapping()) else {
                continue;
            };
            for (name, selection) in detection {
                let Some(selection) = selection.as_mapping() else {
                    continue;
                };
                let keys: Vec<_> = selection.keys().filter_map(|k| k.as_str()).collect();
                let names_calls = keys
                    .iter()
                    .any(|k| k.split('|').next() == Some("eventName"));
                if names_calls && keys.contains(&"eventSource") {
                    exact.push(format!("{}: {:?}", path.display(), name.as_str()));
                }
            }
        }
    }
    assert!(
        exact.is_empty(),
        "eventSource matched exactly beside eventName in {exact:#?}"
    );
}

/// Every builtin rule read by a strict YAML reader (yaml_serde, which refuses duplicate keys
/// and tabs) holds what Sigma says each key holds. rsigma is lenient where other Sigma tools
/// are not: an unquoted `falsepositives` entry with `: ` in it is a mapping to them, and the
/// rule fails to convert.
#[test]
fn every_builtin_rule_is_strict_yaml_with_sigma_types() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/rules"));
    let mut wrong = Vec::new();
    let mut docs = 0;
    for entry in std::fs::read_dir(dir).expect("rules dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "yml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("rule");
        for doc in yaml_serde::Deserializer::from_str(&text) {
            let doc = yaml_serde::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let doc = doc
                .as_mapping()
                .unwrap_or_else(|| panic!("{}", path.display()));
            docs += 1;
            for (key, value) in doc {
                let key = key.as_str().unwrap_or_else(|| panic!("{}", path.display()));
                let ok = match key {
                    "title" | "id" | "name" | "status" | "description" | "author" | "date"
                    | "modified" | "level" | "license" => value.is_string(),
                    "falsepositives" | "tags" | "references" | "fields" | "next_steps" => value
                        .as_sequence()
                        .is_some_and(|items| items.iter().all(yaml_serde::Value::is_string)),
                    _ => true,
                };
                if !ok {
                    wrong.push(format!("{}: {key}: {value:?}", path.display()));
                }
            }
        }
    }
    assert_eq!(docs, BUILTIN_RULES, "one Sigma document per rule");
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// A rule's test file, read as `trailwarden rules test` reads it.
fn test_file(name: &str) -> TestFile {
    TestFile::read(&cases_dir().join(format!("{name}.test.json"))).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_detection_rule_fires_on_its_positives_and_not_its_negatives() {
    let rules = builtin();
    let mut failures = Vec::new();
    for rule in rules
        .rules()
        .iter()
        .filter(|r| r.kind == RuleKind::Detection)
    {
        let file = test_file(&rule.name);
        assert_eq!(file.rule.as_deref(), Some(rule.name.as_str()));
        let positives = file
            .cases
            .iter()
            .filter(|c| matches!(c.fires, Some(Fires::Rule(true))))
            .count();
        assert!(
            positives >= 1 && positives < file.cases.len(),
            "{}: needs positive and negative cases",
            rule.name
        );
        for result in file.run(&rules) {
            if !result.passed() {
                failures.push(format!("{}: {result}", rule.name));
            }
            let mine = result.alerts.iter().filter(|a| a.rule == rule.name);
            if rule.alerts {
                for alert in mine {
                    assert_eq!(alert.next_steps, rule.next_steps, "{}", rule.name);
                }
            } else {
                // A rule that only feeds a correlation matches, but never alerts alone.
                assert_eq!(mine.count(), 0, "{}: {}", rule.name, result.name);
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn every_correlation_rule_raises_the_expected_alerts() {
    let rules = builtin();
    let mut failures = Vec::new();
    for rule in rules
        .rules()
        .iter()
        .filter(|r| r.kind == RuleKind::Correlation)
    {
        let file = test_file(&rule.name);
        assert_eq!(file.rule.as_deref(), Some(rule.name.as_str()));
        let sequences = &file.sequences;
        assert!(
            sequences.iter().any(|s| s.expect_alerts != Some(0))
                && sequences.iter().any(|s| s.expect_alerts == Some(0)),
            "{}: needs sequences that alert and sequences that do not",
            rule.name
        );
        for (seq, result) in sequences.iter().zip(file.run(&rules)) {
            if !result.passed() {
                failures.push(format!("{}: {result}", rule.name));
                continue;
            }
            let records = seq.records.as_deref().expect("records");
            let want = seq.expect_alerts.expect("expect_alerts");
            // The daemon decides through the state store, on its own path: it must agree.
            let committed = committed_alerts(&rules, records, &rule.name);
            if committed != want {
                failures.push(format!(
                    "{}: {}: the daemon's commit path raised {committed} alerts, expected {want}",
                    rule.name, seq.name,
                ));
            }
            for a in result.alerts.iter().filter(|a| a.rule == rule.name) {
                let count = a.count.unwrap_or(0);
                if rule.value_field.is_some() {
                    // Every distinct value counted is named, as far as the window kept events.
                    let values = a.distinct_values.as_ref().expect("distinct values");
                    assert_eq!(values.len() as u64, count.min(50), "{a:?}");
                }
                assert!(!a.next_steps.is_empty(), "{a:?}");
                let ids = a.event_ids.as_ref().expect("event ids");
                if rule.name == "console-login-brute-force" {
                    assert!(count >= 5 && ids.len() >= 5, "{a:?}");
                }
                let unique: BTreeSet<_> = ids.iter().collect();
                assert_eq!(unique.len(), ids.len(), "eventIDs listed once: {a:?}");
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// `trailwarden rules test` over the builtin rules' cases, with the derivation context they
/// are written for given as flags: every case passes, one line each.
#[test]
fn rules_test_command_runs_the_builtin_cases() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trailwarden"))
        .args(["rules", "test", "--trusted-account", TRUSTED_ACCOUNT])
        .args(["--trail-bucket", TRAIL_BUCKET, "--aws-ip-ranges"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ip-ranges.json"))
        .arg(cases_dir())
        .output()
        .expect("run trailwarden");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{stdout}");
    let cases: usize = std::fs::read_dir(cases_dir())
        .expect("cases dir")
        .map(|e| {
            test_file(
                e.expect("entry")
                    .path()
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".test.json"))
                    .expect("a .test.json file"),
            )
            .all_cases()
            .count()
        })
        .sum();
    assert!(cases >= 300, "{cases} cases");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("PASS ")).count(),
        cases
    );
    assert!(
        stderr.contains(&format!(
            "{cases} cases in {BUILTIN_RULES} files: {cases} passed, 0 failed"
        )),
        "{stderr}"
    );
}

/// Pages of the incidents a commit opened, and follow-ups' counts: what the daemon raised.
#[derive(Default)]
struct Raised(std::sync::Mutex<Vec<(String, u64)>>);

#[async_trait::async_trait]
impl Sink for Raised {
    async fn page(&self, page: Page<'_>) -> Result<(), SinkError> {
        let entry = (page.fold.key.rule.clone(), page.fold.stats.count);
        self.0.lock().expect("sink").push(entry);
        Ok(())
    }

    async fn follow_up(&self, f: &FollowUp) -> Result<(), SinkError> {
        let entry = (f.key.rule.clone(), f.stats.count);
        self.0.lock().expect("sink").push(entry);
        Ok(())
    }

    async fn finding(&self, f: Opened<'_>) -> Result<(), SinkError> {
        let entry = (f.finding.check.clone(), 1);
        self.0.lock().expect("sink").push(entry);
        Ok(())
    }

    async fn resolved(&self, r: &Resolved) -> Result<(), SinkError> {
        let entry = (r.finding.check.clone(), 0);
        self.0.lock().expect("sink").push(entry);
        Ok(())
    }
}

/// Runs records as one log file through the daemon's decider: the producer, then the
/// committer over a memory store (events stored by eventID, windows replayed on event time,
/// fires recorded), then every follow-up; returns how many alerts of `rule` were raised.
fn committed_alerts(rules: &RuleSet, records: &[Value], rule: &str) -> u64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let clock = Clock::tokio(chrono::Utc::now().timestamp());
        let store = MemoryStore::with_clock(clock.clone());
        let sink = Raised::default();
        let metrics = Metrics::with_clock(clock.clone());
        let policy = Policy {
            window: std::time::Duration::from_secs(3600),
            lease: std::time::Duration::from_secs(120),
            min_level: Level::Informational,
            retention: std::time::Duration::from_secs(24 * 3600),
        };
        let committer = Committer {
            rules,
            store: &store,
            sink: &sink,
            policy: &policy,
            owner: "task/case",
            metrics: &metrics,
            clock: &clock,
        };
        let mut folder = Folder::new();
        let report = pipeline::object(
            rules,
            "s3://trail/case.json.gz",
            std::io::Cursor::new(gz(records)),
            u64::MAX,
            &mut |key, alert| folder.add(key(), alert),
        )
        .expect("an in-memory read never breaks");
        let findings = Findings {
            source: "s3://trail/case.json.gz".into(),
            folds: folder.finish(),
            correlation: report.correlation,
            ..Findings::default()
        };
        committer
            .commit(&findings, &mut Progress::default())
            .await
            .expect("commit");
        tokio::time::advance(std::time::Duration::from_secs(2 * 3600)).await;
        committer
            .follow_ups(clock.now(), 4)
            .await
            .expect("follow-ups");
        let raised = sink.0.lock().expect("sink").clone();
        raised
            .iter()
            .filter(|(r, _)| r == rule)
            .map(|(_, n)| n)
            .sum()
    })
}

/// Reads records as one gzipped log file and returns its alerts and correlation events.
fn read_file(
    rules: &RuleSet,
    name: &str,
    records: &[Value],
) -> (
    Vec<Alert>,
    Vec<(
        trailwarden::finding::correlation::Group,
        trailwarden::finding::correlation::CorrEvent,
    )>,
) {
    let mut alerts = Vec::new();
    let report = pipeline::object(
        rules,
        name,
        std::io::Cursor::new(gz(records)),
        u64::MAX,
        &mut |_, a| alerts.push(a),
    )
    .expect("a local read never breaks");
    assert!(matches!(report.outcome, Outcome::Complete));
    (alerts, report.correlation.into_events().collect())
}

#[test]
fn a_spray_split_across_two_log_files_is_one_alert() {
    let rules = builtin();
    let file = load("password-spraying");
    let seq = file["sequences"]
        .as_array()
        .expect("sequences")
        .iter()
        .find(|s| s["expect_alerts"] == 1 && s["expect_count"] == 5)
        .expect("a five-name spray");
    let records = seq["records"].as_array().expect("records");
    // Two files, as two regions' or two delivery periods' logs, in the opposite order.
    let (early, late) = records.split_at(2);
    let (_, mut events) = read_file(&rules, "late.json.gz", late);
    let (_, early_events) = read_file(&rules, "early.json.gz", early);
    events.extend(early_events);
    let alerts = correlate::decide_all(&rules, events);
    let sprays: Vec<_> = alerts
        .iter()
        .filter(|a| a.rule == "password-spraying")
        .collect();
    assert_eq!(sprays.len(), 1, "{alerts:#?}");
    let spray = sprays[0];
    assert_eq!(spray.count, Some(5));
    assert_eq!(
        spray.distinct_values.as_deref().unwrap_or_default(),
        ["alice", "bob", "carol", "dave", "erin"]
    );
    assert!(
        spray.summary.contains("5 different user names")
            && spray.summary.contains("alice, bob, carol, dave, erin"),
        "{}",
        spray.summary
    );
    assert_eq!(spray.source, "late.json.gz", "the newest record's file");
}

#[test]
fn derived_findings_are_named_in_summaries() {
    let rules = builtin();
    let stolen = alert_for(
        &rules,
        "instance-credentials-outside-aws",
        "instance credentials used from an address outside AWS",
    );
    for part in [
        "EC2 instance i-0a1b2c3d4e5f60718",
        "role web-server-role",
        "from 198.51.100.23",
        "not in AWS's IP ranges",
        "created 2026-11-25-10-00-05",
        "user agent aws-cli/2.22.4",
    ] {
        assert!(stolen.summary.contains(part), "{part}: {}", stolen.summary);
    }
    // With no ranges loaded the rule still fires, and says the check was not made.
    let unchecked = alert_for(
        &RuleSet::load(&[]).expect("builtin rules"),
        "instance-credentials-outside-aws",
        "the instance's own public address, in AWS's EC2 range",
    );
    assert!(
        unchecked.summary.contains("none were loaded"),
        "{}",
        unchecked.summary
    );

    let shared = alert_for(
        &rules,
        "resource-policy-opened",
        "KMS key policy letting a foreign account decrypt",
    );
    assert!(
        shared
            .summary
            .contains("to account 999988887777 with PutKeyPolicy"),
        "{}",
        shared.summary
    );
    let trust = alert_for(
        &rules,
        "role-trust-opened",
        "trust replaced to let one foreign account's root assume the role",
    );
    assert!(
        trust
            .summary
            .contains("let account 999988887777 assume role ops-admin"),
        "{}",
        trust.summary
    );
    let filtered = alert_for(
        &rules,
        "secrets-mass-read-by-filter",
        "secrets read by a tag filter",
    );
    assert!(
        filtered.summary.contains(
            "read the values of the secrets matching filter tag-key=StratusRedTeam in one \
             BatchGetSecretValue call"
        ),
        "{}",
        filtered.summary
    );
}

/// The alert a rule raises on the case named `case` of its fixture file.
fn alert_for(rules: &RuleSet, rule: &str, case: &str) -> Alert {
    let file = load(rule);
    let record = &file["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["name"] == case)
        .unwrap_or_else(|| panic!("{rule}: no case {case:?}"))["record"];
    run(rules, std::slice::from_ref(record))
        .into_iter()
        .find(|a| a.rule == rule)
        .unwrap_or_else(|| panic!("{rule}: {case:?} raised no alert"))
}

#[test]
fn root_alerts_say_whether_only_root_could_do_it() {
    let rules = builtin();
    let task = alert_for(
        &rules,
        "root-activity",
        "root deletes its own access key (a root-only task)",
    );
    assert_eq!(task.root_only_task, Some(true));
    assert!(
        task.summary
            .contains("a task only root can do (manage the root user's own access keys"),
        "{}",
        task.summary
    );
    let everyday = alert_for(
        &rules,
        "root-activity",
        "root lists IAM users (read-only counts)",
    );
    assert_eq!(everyday.root_only_task, Some(false));
    assert!(
        everyday
            .summary
            .ends_with("not a root-only task, an IAM role could have done it"),
        "{}",
        everyday.summary
    );
    let v = serde_json::to_value(&everyday).expect("json");
    assert_eq!(v["root_only_task"], false);
    assert!(v.get("assumed_root").is_none());

    let session = alert_for(
        &rules,
        "root-activity",
        "AssumeRoot session (sessionContext.assumedRoot true) deletes the root login profile",
    );
    assert_eq!(session.assumed_root, Some(true));
    assert_eq!(session.root_only_task, Some(true));
    assert!(
        session
            .summary
            .starts_with("Root user (a centralized root access session opened with sts AssumeRoot) called DeleteLoginProfile"),
        "{}",
        session.summary
    );
    // Other rules' alerts carry neither field.
    let login = alert_for(
        &rules,
        "root-console-login",
        "root signs in with MFA (MFAUsed Yes)",
    );
    assert_eq!(login.root_only_task, None);
}

#[test]
fn summaries_give_the_details_that_decide_the_response() {
    let rules = builtin();
    let reset = alert_for(
        &rules,
        "console-password-set-for-other-user",
        "administrator sets a first password for another user, reset required",
    );
    assert!(
        reset.summary.contains("IAM user bob")
            && reset.summary.contains("a password reset is required"),
        "{}",
        reset.summary
    );
    let no_reset = alert_for(
        &rules,
        "console-password-set-for-other-user",
        "IAM user changes another user's console password (request holds only the user name)",
    );
    assert!(
        no_reset.summary.contains("no password reset is required"),
        "{}",
        no_reset.summary
    );

    let to_user = alert_for(
        &rules,
        "admin-policy-attached",
        "AWS managed AdministratorAccess attached to a new user",
    );
    assert!(
        to_user.summary.contains(
            "attached the AWS managed policy AdministratorAccess to IAM user malicious-iam-user"
        ) && to_user.summary.contains("granted straight to a user"),
        "{}",
        to_user.summary
    );
    let to_role = alert_for(
        &rules,
        "admin-policy-attached",
        "AdministratorAccess attached to a role",
    );
    assert!(
        !to_role.summary.contains("straight to a user"),
        "{}",
        to_role.summary
    );
    let customer = alert_for(
        &rules,
        "admin-policy-attached",
        "customer managed policy named AdministratorAccess (counted: its content is not in the record)",
    );
    assert!(
        customer.summary.contains(
            "customer managed policy arn:aws:iam::111122223333:policy/AdministratorAccess"
        ),
        "{}",
        customer.summary
    );

    let shared = alert_for(&rules, "snapshot-shared-externally", "AMI made public");
    assert!(
        shared
            .summary
            .contains("AMI ami-0de1fbcab6ccb03e7 with everyone (public)"),
        "{}",
        shared.summary
    );
}

#[test]
fn scan_text_output_shows_next_steps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = load("root-access-key-created");
    let record = &file["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["fires"] == true)
        .expect("a positive case")["record"];
    let path = dir.path().join("root-key.json.gz");
    std::fs::write(&path, gz(std::slice::from_ref(record))).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trailwarden"))
        .args(["scan", "--format", "text"])
        .arg(&path)
        .output()
        .expect("run trailwarden");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with("CRITICAL ") && l.contains("root-access-key-created")),
        "{text}"
    );
    assert_eq!(
        lines.collect::<Vec<_>>(),
        [
            "    next: Delete the root access key",
            "    next: Check CloudTrail for calls made with the key",
            "    next: Enable MFA on the root user",
        ],
        "{text}"
    );
}

#[test]
fn alerts_carry_the_documented_fields() {
    let rules = builtin();
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

#[test]
fn a_rules_suppression_stays_with_that_rule() {
    // A user's correlation over the builtin failed-login rule, with no rsigma.suppress of its
    // own: the builtin brute force's `rsigma.suppress: 10m` must not quiet it.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("mine.yml"),
        r#"
title: Three failed sign-ins
id: 6d0a3c0e-3c9c-4d8e-9b52-6a2f3a1e0b01
name: three-failed-sign-ins
correlation:
  type: event_count
  rules: [console-login-failed]
  group-by: [userIdentity.userName]
  timespan: 10m
  condition: {gte: 3}
generate: true
level: medium
"#,
    )
    .expect("write rule");
    let rules = RuleSet::load(&[dir.path().to_owned()]).expect("rules");
    assert!(rules.errors().is_empty(), "{:?}", rules.errors());
    // Ten failures in ten minutes: the brute force fires at the fifth and would again at the
    // tenth, which its suppression holds back.
    let failures: Vec<Value> = (0..10)
        .map(|i| {
            json!({"eventVersion": "1.08", "eventID": format!("s{i}"),
                "eventTime": format!("2026-11-20T10:{i:02}:00Z"), "eventSource": "signin.amazonaws.com",
                "eventName": "ConsoleLogin", "eventType": "AwsConsoleSignIn", "awsRegion": "us-east-1",
                "errorMessage": "Failed authentication", "recipientAccountId": "111122223333",
                "responseElements": {"ConsoleLogin": "Failure"}, "additionalEventData": {"MFAUsed": "No"},
                "userIdentity": {"type": "IAMUser", "accountId": "111122223333", "userName": "bob"}})
        })
        .collect();
    let alerts = run(&rules, &failures);
    let count = |name: &str| alerts.iter().filter(|a| a.rule == name).count();
    assert_eq!(count("three-failed-sign-ins"), 3, "three windows of three");
    assert_eq!(
        count("console-login-brute-force"),
        1,
        "its own suppression holds"
    );
}

/// A flood of cheap correlation events early in a file (failed sign-ins for 25,000 made-up
/// user names, each its own group, or all hidden behind AWS's placeholder name) must not
/// crowd out a real burst at its end: memory is bounded per group and shared fairly, and what
/// was left out is counted.
#[test]
fn a_flood_of_made_up_users_does_not_hide_a_burst_at_the_end() {
    let rules = builtin();
    for made_up in [
        |i: usize| format!("made-up-{i}"),
        |_: usize| "HIDDEN_DUE_TO_SECURITY_REASONS".to_owned(),
    ] {
        let mut records: Vec<Value> = (0..25_000)
            .map(|i| {
                let mut r = support::failed_login_at(&format!("flood-{i}"), "2026-11-20T10:00:00Z");
                r["userIdentity"]["userName"] = json!(made_up(i));
                r["sourceIPAddress"] = json!(format!("198.51.{}.{}", i / 250, i % 250));
                r
            })
            .collect();
        records.extend((0..5).map(|i| {
            let mut r =
                support::failed_login_at(&format!("real-{i}"), &format!("2026-11-20T10:0{i}:30Z"));
            r["userIdentity"]["userName"] = json!("alice");
            r
        }));
        let mut report_dropped = 0;
        let mut alerts = Vec::new();
        let report = pipeline::object(
            &rules,
            "flood.json.gz",
            std::io::Cursor::new(gz(&records)),
            u64::MAX,
            &mut |_, a| alerts.push(a),
        )
        .expect("a local read never breaks");
        for (_, n, _) in report.correlation.dropped() {
            report_dropped += n;
        }
        let fired = correlate::decide_all(&rules, report.correlation.into_events().collect());
        let alice: Vec<&Alert> = fired
            .iter()
            .filter(|a| a.rule == "console-login-brute-force")
            .filter(|a| {
                a.event_ids
                    .as_ref()
                    .is_some_and(|ids| ids.iter().any(|id| id.starts_with("real-")))
            })
            .collect();
        assert_eq!(alice.len(), 1, "{}: {fired:#?}", made_up(0));
        assert_eq!(alice[0].count, Some(5));
        assert!(report_dropped > 0, "what was left out is counted");
    }
}
