//! Rule unit tests: test files (records, and which rules must and must not fire) → one
//! pass/fail result per case, run offline through the same producer and correlation decider
//! as `scan`.
//!
//! A test file is JSON (`*.test.json`) or YAML (`*.test.yml`, `*.test.yaml`), written beside
//! the rules it tests; the rule loader skips these names. The builtin rules' own cases
//! (`tests/fixtures/rule_cases/`) are in this format and run through this module.
//!
//! ```yaml
//! rule: access-key-created      # optional: the rule `fires: true|false` and expect_* mean
//! context:                      # optional: what derived fields are computed from
//!   trusted_accounts: ["444455556666"]
//!   trail_buckets: [aws-cloudtrail-logs-111122223333]
//!   aws_ip_ranges_file: ip-ranges.json   # relative to the test file
//! cases:
//!   - name: a user creates a key for themselves
//!     record: {eventName: CreateAccessKey, ...}   # or `records:` for a sequence
//!     fires: true                # or a list of rule names that must fire
//!     not_fires: [root-activity] # rules that must not fire
//!     expect_alerts: 1           # alerts of `rule` over the records (correlations)
//!     expect_count: 5            # each such alert's count
//!     expect_names: [alice, bob] # each such alert's distinct values
//! ```
//!
//! `sequences:` is accepted as another name for `cases:`. A case's records are read as one
//! log file, in order, and its correlations decided on event time, as `scan` decides them. A
//! rule "fires" when it raises an alert, or, for a detection that only feeds a correlation,
//! when it matches one of the records.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::detect::{Derivation, RuleSet, is_test_file};
use crate::finding::alert::Alert;
use crate::incidents::correlate;
use crate::pipeline::{self, Outcome};

/// One test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The rule `fires: true|false`, `expect_alerts`, `expect_count` and `expect_names` are
    /// about.
    #[serde(default)]
    pub rule: Option<String>,
    /// What derived fields are computed from, added to the command line's.
    #[serde(default)]
    pub context: Option<Context>,
    /// The cases.
    #[serde(default)]
    pub cases: Vec<Case>,
    /// More cases (the builtin correlations' files name their record sequences so).
    #[serde(default)]
    pub sequences: Vec<Case>,
}

/// What derived fields are computed from (see `detect::derived`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// Accounts that are ours besides each record's own.
    #[serde(default)]
    pub trusted_accounts: Vec<String>,
    /// Buckets that hold CloudTrail logs.
    #[serde(default)]
    pub trail_buckets: Vec<String>,
    /// AWS's ip-ranges.json, relative to the test file.
    #[serde(default)]
    pub aws_ip_ranges_file: Option<PathBuf>,
}

/// One case: records, and what must happen.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Shown on its result line.
    pub name: String,
    /// A single record.
    #[serde(default)]
    pub record: Option<Value>,
    /// Records read in order as one log file.
    #[serde(default)]
    pub records: Option<Vec<Value>>,
    /// `true`/`false`: whether the file's `rule` fires; a list: rules that must fire.
    #[serde(default)]
    pub fires: Option<Fires>,
    /// Rules that must not fire.
    #[serde(default)]
    pub not_fires: Vec<String>,
    /// How many alerts the file's `rule` raises over the records.
    #[serde(default)]
    pub expect_alerts: Option<u64>,
    /// The count each alert of the file's `rule` carries.
    #[serde(default)]
    pub expect_count: Option<u64>,
    /// The distinct values each alert of the file's `rule` names.
    #[serde(default)]
    pub expect_names: Option<Vec<String>>,
}

/// What `fires:` says.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Fires {
    /// Whether the file's `rule` fires.
    Rule(bool),
    /// Rules that must fire.
    Rules(Vec<String>),
}

/// A test file that cannot be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum TestFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: context: {message}")]
    Context { path: PathBuf, message: String },
}

/// The result of one case.
#[derive(Debug)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// Why it failed; empty when it passed.
    pub failures: Vec<String>,
    /// Every alert the case's records raised, for callers that check more.
    pub alerts: Vec<Alert>,
}

impl CaseResult {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for CaseResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.passed() {
            write!(f, "PASS {}", self.name)
        } else {
            write!(f, "FAIL {}: {}", self.name, self.failures.join("; "))
        }
    }
}

/// Every test file under `dir`, sorted by path.
pub fn find(dir: &Path) -> Result<Vec<PathBuf>, TestFileError> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(|e| TestFileError::Read {
            path: dir.to_owned(),
            source: e.into(),
        })?;
        if entry.file_type().is_file() && is_test_file(entry.path()) {
            out.push(entry.into_path());
        }
    }
    Ok(out)
}

impl TestFile {
    /// Reads a test file, JSON or YAML by its name.
    pub fn read(path: &Path) -> Result<TestFile, TestFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TestFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let parsed = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| e.to_string())
        } else {
            yaml_serde::from_str(&text).map_err(|e| e.to_string())
        };
        parsed.map_err(|message| TestFileError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Every case, `cases` then `sequences`.
    pub fn all_cases(&self) -> impl Iterator<Item = &Case> {
        self.cases.iter().chain(&self.sequences)
    }

    /// The derivation for this file: `base` (the command line's) plus its own `context`.
    pub fn derivation(&self, path: &Path, base: &Context) -> Result<Derivation, TestFileError> {
        let own = self.context.clone().unwrap_or_default();
        let bad = |message: String| TestFileError::Context {
            path: path.to_owned(),
            message,
        };
        if let Some(id) = own
            .trusted_accounts
            .iter()
            .find(|id| !crate::detect::policy::is_account_id(id))
        {
            return Err(bad(format!(
                "trusted_accounts: {id:?} is not a 12-digit AWS account id"
            )));
        }
        let ranges_file = match &own.aws_ip_ranges_file {
            Some(file) => Some(path.parent().unwrap_or(Path::new(".")).join(file)),
            None => base.aws_ip_ranges_file.clone(),
        };
        let ranges = Derivation::load_ip_ranges(ranges_file.as_deref())
            .map_err(|e| bad(format!("aws_ip_ranges_file: {e}")))?;
        Ok(Derivation::new(
            base.trusted_accounts
                .iter()
                .chain(&own.trusted_accounts)
                .cloned(),
            base.trail_buckets.iter().chain(&own.trail_buckets).cloned(),
            ranges,
        ))
    }

    /// Runs every case against `rules` (which carry this file's derivation).
    pub fn run(&self, rules: &RuleSet) -> Vec<CaseResult> {
        self.all_cases()
            .map(|case| run_case(rules, self.rule.as_deref(), case))
            .collect()
    }
}

/// Reads `records` as one log file and decides its correlations; every alert raised.
pub fn alerts_of(rules: &RuleSet, records: &[Value]) -> Result<Vec<Alert>, String> {
    let body = serde_json::to_vec(&serde_json::json!({ "Records": records }))
        .map_err(|e| format!("records cannot be written as JSON: {e}"))?;
    let mut alerts = Vec::new();
    let report = pipeline::object(
        rules,
        "case.json",
        std::io::Cursor::new(body),
        u64::MAX,
        &mut |_, a| alerts.push(a),
    )
    .map_err(|e| format!("the records could not be read: {}", e.error))?;
    if !matches!(report.outcome, Outcome::Complete) {
        return Err(format!(
            "the records were not all read: {:?}",
            report.outcome
        ));
    }
    alerts.extend(correlate::decide_all(
        rules,
        report.correlation.into_events().collect(),
    ));
    Ok(alerts)
}

/// Runs one case; `rule` is the file's rule.
pub fn run_case(rules: &RuleSet, rule: Option<&str>, case: &Case) -> CaseResult {
    let mut result = CaseResult {
        name: case.name.clone(),
        failures: Vec::new(),
        alerts: Vec::new(),
    };
    let records: Vec<Value> = match (&case.record, &case.records) {
        (Some(record), None) => vec![record.clone()],
        (None, Some(records)) if !records.is_empty() => records.clone(),
        _ => {
            result
                .failures
                .push("give either `record` or a non-empty `records`".to_owned());
            return result;
        }
    };
    let mut named: Vec<&str> = case.not_fires.iter().map(String::as_str).collect();
    if let Some(Fires::Rules(list)) = &case.fires {
        named.extend(list.iter().map(String::as_str));
    }
    let needs_rule = matches!(case.fires, Some(Fires::Rule(_)))
        || case.expect_alerts.is_some()
        || case.expect_count.is_some()
        || case.expect_names.is_some();
    match rule {
        Some(r) => named.push(r),
        None if needs_rule => {
            result.failures.push(
                "fires: true|false and expect_* need the file's `rule:`; or list rule names in fires"
                    .to_owned(),
            );
            return result;
        }
        None => {}
    }
    if named.is_empty() {
        result
            .failures
            .push("the case expects nothing: add fires, not_fires or expect_alerts".to_owned());
        return result;
    }
    for name in &named {
        if rules.by_name(name).is_none() {
            result
                .failures
                .push(format!("no rule named {name:?} is loaded"));
        }
    }
    if !result.passed() {
        return result;
    }
    let alerts = match alerts_of(rules, &records) {
        Ok(alerts) => alerts,
        Err(e) => {
            result.failures.push(e);
            return result;
        }
    };
    let fired = fired(rules, &records, &alerts);
    let mut must_fire: Vec<&str> = Vec::new();
    let mut must_not: Vec<&str> = case.not_fires.iter().map(String::as_str).collect();
    match (&case.fires, rule) {
        (Some(Fires::Rule(true)), Some(r)) => must_fire.push(r),
        (Some(Fires::Rule(false)), Some(r)) => must_not.push(r),
        (Some(Fires::Rules(list)), _) => must_fire.extend(list.iter().map(String::as_str)),
        _ => {}
    }
    for name in must_fire {
        if !fired.contains(name) {
            result.failures.push(format!("{name} did not fire"));
        }
    }
    for name in must_not {
        if fired.contains(name) {
            result.failures.push(format!("{name} fired"));
        }
    }
    if let Some(rule) = rule {
        let mine: Vec<&Alert> = alerts.iter().filter(|a| a.rule == rule).collect();
        if let Some(want) = case.expect_alerts
            && mine.len() as u64 != want
        {
            result.failures.push(format!(
                "{rule} raised {} alerts, expected {want}",
                mine.len()
            ));
        }
        for alert in &mine {
            if let Some(want) = case.expect_count
                && alert.count.unwrap_or(0) != want
            {
                result.failures.push(format!(
                    "{rule} alert counts {}, expected {want}",
                    alert.count.unwrap_or(0)
                ));
            }
            if let Some(want) = &case.expect_names
                && alert.distinct_values.as_deref().unwrap_or_default() != want.as_slice()
            {
                result.failures.push(format!(
                    "{rule} alert names {:?}, expected {want:?}",
                    alert.distinct_values.as_deref().unwrap_or_default()
                ));
            }
        }
    }
    result.alerts = alerts;
    result
}

/// The rules that fired: those that raised an alert, and the detections that only feed a
/// correlation and matched a record.
fn fired(rules: &RuleSet, records: &[Value], alerts: &[Alert]) -> BTreeSet<String> {
    let mut fired: BTreeSet<String> = alerts.iter().map(|a| a.rule.clone()).collect();
    for record in records {
        let event = rsigma_eval::event::JsonEvent::borrow(record);
        for result in rules.evaluate(&event) {
            if let Some(index) = rules.rule_of(&result) {
                let info = &rules.rules()[index];
                if !info.alerts {
                    fired.insert(info.name.clone());
                }
            }
        }
    }
    fired
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> RuleSet {
        RuleSet::load(&[]).expect("builtin rules")
    }

    fn root_login() -> Value {
        serde_json::json!({
            "eventVersion": "1.08", "eventID": "e1", "eventTime": "2026-11-20T10:00:00Z",
            "eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin",
            "eventType": "AwsConsoleSignIn", "awsRegion": "us-east-1",
            "recipientAccountId": "111122223333",
            "userIdentity": {"type": "Root", "accountId": "111122223333",
                "arn": "arn:aws:iam::111122223333:root"},
            "responseElements": {"ConsoleLogin": "Success"},
            "additionalEventData": {"MFAUsed": "No"}
        })
    }

    #[test]
    fn yaml_cases_pass_and_fail_with_reasons() {
        let file: TestFile = yaml_serde::from_str(&format!(
            "rule: root-console-login\ncases:\n  - name: root signs in\n    record: {}\n    fires: true\n    not_fires: [console-login-failed]\n  - name: wrongly expected quiet\n    record: {}\n    fires: false\n  - name: by list\n    record: {}\n    fires: [root-console-login]\n    not_fires: [console-login-without-mfa]\n",
            root_login(),
            root_login(),
            root_login()
        ))
        .expect("yaml test file");
        let results = file.run(&rules());
        assert!(results[0].passed(), "{}", results[0]);
        assert!(!results[1].passed());
        assert_eq!(
            results[1].to_string(),
            "FAIL wrongly expected quiet: root-console-login fired"
        );
        assert!(results[2].passed(), "{}", results[2]);
    }

    #[test]
    fn unknown_rules_and_empty_expectations_fail() {
        let file: TestFile = serde_json::from_value(serde_json::json!({
            "cases": [
                {"name": "typo", "record": root_login(), "fires": ["root-console-logn"]},
                {"name": "nothing", "record": root_login()},
                {"name": "no rule", "record": root_login(), "fires": true}
            ]
        }))
        .expect("test file");
        let results = file.run(&rules());
        assert!(results[0].failures[0].contains("no rule named \"root-console-logn\""));
        assert!(results[1].failures[0].contains("expects nothing"));
        assert!(results[2].failures[0].contains("need the file's `rule:`"));
    }

    #[test]
    fn test_file_names() {
        assert!(is_test_file(Path::new("rules/mine.test.yml")));
        assert!(is_test_file(Path::new("mine.test.json")));
        assert!(!is_test_file(Path::new("mine.yml")));
        assert!(!is_test_file(Path::new("mine.json")));
    }
}
