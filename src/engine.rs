//! One log file's bytes → records → rule evaluation → alerts, for `scan` and the daemon alike.
//!
//! Detection alerts are handed to a sink as they are found, so a huge file never accumulates
//! them. Records that feed a correlation rule are returned to the caller, which owns the
//! correlation state: the daemon feeds them as objects complete, `scan` sorts them by time first.

use std::io::Read;

use rsigma_eval::result::EvaluationResult;

use crate::alert::Alert;
use crate::cloudtrail::{self, Finish, ReadError, Record};
use crate::detect::{Correlator, RuleKind, RuleSet};

/// Default cap on the decompressed size of one log file: 4 GiB.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: u64 = 4 << 30;

/// How reading one log file ended.
#[derive(Debug)]
pub enum Outcome {
    /// Every record was read.
    Complete,
    /// The file was deliberately not read (or held no `Records`), for this reason.
    Skipped(&'static str),
    /// Reading stopped early; alerts for the records before the damage were still emitted.
    Failed(ReadError),
}

/// A record whose detections a correlation rule consumes, kept for the correlator.
#[derive(Debug)]
pub struct CorrelationInput {
    /// The record as JSON: correlation windows store their events.
    pub event: serde_json::Value,
    /// Its detections that feed a correlation.
    pub detections: Vec<EvaluationResult>,
    /// `eventTime` in epoch seconds.
    pub timestamp: i64,
    /// Where the record came from.
    pub source: String,
}

/// What reading one log file produced, besides the alerts given to the sink.
#[derive(Debug)]
pub struct LogReport {
    pub outcome: Outcome,
    /// Records read (and evaluated).
    pub records: u64,
    /// Decompressed bytes read.
    pub bytes: u64,
    pub correlation_inputs: Vec<CorrelationInput>,
}

/// Reads one log file from `input` and evaluates every record against `rules`.
///
/// `source` names the file in alerts and errors (a path or `s3://bucket/key`). Runs on the
/// calling thread and blocks: call it from a worker thread or `spawn_blocking`.
pub fn read_log(
    rules: &RuleSet,
    source: &str,
    input: impl Read + Send + 'static,
    max_decompressed: u64,
    sink: &mut dyn FnMut(Alert),
) -> LogReport {
    let mut report = LogReport {
        outcome: Outcome::Complete,
        records: 0,
        bytes: 0,
        correlation_inputs: Vec::new(),
    };
    if let Some(reason) = cloudtrail::skip_reason(source) {
        report.outcome = Outcome::Skipped(reason);
        return report;
    }
    let mut reader = match cloudtrail::open(input, max_decompressed) {
        Ok(r) => r,
        Err(source) => {
            report.outcome = Outcome::Failed(ReadError::Io {
                offset: 0,
                record: 0,
                source,
            });
            return report;
        }
    };
    loop {
        let raw = match reader.next_record() {
            Ok(Some(raw)) => raw,
            Ok(None) => break,
            Err(e) => {
                report.outcome = Outcome::Failed(e);
                break;
            }
        };
        let record = match Record::parse(raw.bytes) {
            Ok(r) => r,
            Err(e) => {
                report.outcome = Outcome::Failed(ReadError::Syntax {
                    // serde_json counts columns from 1 on the record's single line.
                    offset: raw.offset + (e.column() as u64).saturating_sub(1),
                    record: raw.index,
                    message: e.to_string(),
                });
                break;
            }
        };
        let results = rules.evaluate(&record);
        if !results.is_empty() {
            evaluate_hits(rules, &record, source, results, sink, &mut report);
        }
    }
    report.records = reader.records_read();
    report.bytes = reader.bytes_read();
    if matches!(report.outcome, Outcome::Complete) && reader.finish() == Finish::NoRecords {
        report.outcome = Outcome::Skipped("no Records array (not a CloudTrail log file)");
    }
    report
}

fn evaluate_hits(
    rules: &RuleSet,
    record: &Record<'_>,
    source: &str,
    results: Vec<EvaluationResult>,
    sink: &mut dyn FnMut(Alert),
    report: &mut LogReport,
) {
    let mut feeds = Vec::new();
    for result in results {
        let Some(index) = rules.rule_of(&result) else {
            continue;
        };
        let rule = &rules.rules()[index];
        if rule.kind == RuleKind::Detection && rule.alerts {
            sink(Alert::from_detection(rule, record, source));
        }
        if rules.feeds_correlation(index) {
            feeds.push(result);
        }
    }
    if !feeds.is_empty() {
        report.correlation_inputs.push(CorrelationInput {
            event: record.value().clone(),
            detections: feeds,
            timestamp: event_time(record),
            source: source.to_owned(),
        });
    }
}

/// `eventTime` as epoch seconds; records always carry it, but a broken one reads as now.
fn event_time(record: &Record<'_>) -> i64 {
    record
        .str_at("eventTime")
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.timestamp())
        .unwrap_or_else(|| chrono::Utc::now().timestamp())
}

/// Feeds correlation inputs to a correlator and turns what fires into alerts.
pub fn correlate(
    rules: &RuleSet,
    correlator: &mut Correlator,
    inputs: Vec<CorrelationInput>,
    sink: &mut dyn FnMut(Alert),
) {
    for input in inputs {
        let event = rsigma_eval::event::JsonEvent::borrow(&input.event);
        for hit in correlator.process(rules, &event, input.detections, input.timestamp) {
            sink(Alert::from_correlation(
                &rules.rules()[hit.rule],
                &hit,
                &input.source,
            ));
        }
    }
}
