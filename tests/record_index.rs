//! Every log file record takes the reader's fast path: split, checked and indexed in one pass
//! (`cloudtrail::object`), with rsigma's candidate index reading fields from those spans. This
//! holds that path to the slow, plain one: for realistic records (every rule test case and the
//! example log tree), the builtin and SigmaHQ rules fire on exactly the records they fire on
//! when each record is parsed whole by serde_json and evaluated as a JSON value, so the fast
//! path never drops a record a rule would match, nor adds one.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;

use rsigma_eval::event::JsonEvent;
use serde_json::{Value, json};
use trailwarden::detect::{RuleKind, RuleSet};
use trailwarden::pipeline;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Realistic records: every rule test case's record, and the example log tree's records.
fn records() -> Vec<Value> {
    let mut records = Vec::new();
    for entry in std::fs::read_dir(root().join("tests/fixtures/rule_cases")).expect("cases") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
        let file: Value = serde_json::from_str(&text).expect("json");
        for case in file["cases"].as_array().into_iter().flatten() {
            records.push(case["record"].clone());
        }
    }
    for entry in walkdir::WalkDir::new(root().join("examples/cloudtrail")) {
        let entry = entry.expect("entry");
        let name = entry.path().to_string_lossy().into_owned();
        if !name.ends_with(".json.gz") || name.contains("CloudTrail-Digest") {
            continue;
        }
        let mut text = String::new();
        // The repository's own example files, not untrusted input: no cap needed.
        #[allow(clippy::disallowed_types)]
        flate2::read::MultiGzDecoder::new(std::fs::File::open(entry.path()).expect("open"))
            .read_to_string(&mut text)
            .expect("gzip");
        let file: Value = serde_json::from_str(&text).expect("json");
        records.extend(file["Records"].as_array().into_iter().flatten().cloned());
    }
    records
}

/// The alerting detections that fire on `record`, judged on its plain JSON value.
fn fired_plain(rules: &RuleSet, record: &Value) -> BTreeSet<String> {
    rules
        .evaluate(&JsonEvent::borrow(record))
        .iter()
        .filter_map(|result| rules.rule_of(result))
        .map(|index| &rules.rules()[index])
        .filter(|rule| rule.kind == RuleKind::Detection && rule.alerts)
        .map(|rule| rule.name.clone())
        .collect()
}

/// The same, read from a gzipped log file holding only `record`, as every log file is read.
fn fired_read(rules: &RuleSet, record: &Value) -> BTreeSet<String> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&serde_json::to_vec(&json!({ "Records": [record] })).expect("json"))
        .expect("gzip");
    let mut fired = BTreeSet::new();
    let report = pipeline::object(
        rules,
        "t.json.gz",
        std::io::Cursor::new(gz.finish().expect("gzip")),
        u64::MAX,
        &mut |_, alert| {
            fired.insert(alert.rule);
        },
    )
    .expect("a local read never breaks");
    assert_eq!(report.skipped.count, 0, "{record}");
    fired
}

#[test]
fn the_fast_path_fires_exactly_the_rules_a_whole_parse_fires() {
    let sigmahq = root().join("tests/fixtures/sigmahq/cloudtrail");
    let rules = RuleSet::load(&[sigmahq]).expect("rule dirs");
    let records = records();
    assert!(records.len() > 100, "{} records", records.len());
    let mut fired = 0;
    for record in &records {
        let plain = fired_plain(&rules, record);
        assert_eq!(fired_read(&rules, record), plain, "{record}");
        fired += plain.len();
    }
    assert!(fired > 100, "the records exercise the rules: {fired} fired");
}
