//! One log file (or one event) → what its records raised: the one read-and-detect path that
//! the daemon, `scan` and the tests all call.
//!
//! Records are streamed one at a time and evaluated against the stateless rules. A detection
//! is handed to the caller's sink as it is found (with the record, so the caller can key it
//! into an incident), so a huge file never accumulates alerts here. Records that feed a
//! correlation are kept, slimmed, in a bounded [`Batch`] for the caller to decide
//! on event time. Records that match nothing cost nothing beyond their evaluation.
//!
//! A record that changes posture (a root key created, MFA removed; the table is
//! `posture::recheck`) is also returned as a re-check request, so the daemon can run the
//! affected checks at once.
//!
//! A record that cannot be parsed costs only itself: it is counted in [`Skips`] with where it
//! was, and the records after it are read. The same eventID twice in one file is one event.
//!
//! The producers here ([`object`], [`event`]) take bytes, never an SDK type, and give each
//! alert with its incident key; the daemon folds them into [`Findings`](crate::finding::Findings) to commit, `scan`
//! prints them.

use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hash, Hasher};
use std::io::Read;

pub mod correlation;
pub mod key;

pub use key::key;

use crate::aws;
use crate::cloudtrail::{self, Finish, ReadError, Record, Shapes};
use crate::detect::{Derived, RuleKind, RuleSet};
use crate::finding::alert::{Alert, UNREADABLE_RULE};
use crate::finding::correlation::Batch;
use crate::finding::{IncidentKey, Level, Recheck};

/// Default cap on the decompressed size of one log file: 4 GiB.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: u64 = 4 << 30;

/// EventIDs remembered per file to drop duplicates.
const FILE_DUPLICATE_WINDOW: usize = 100_000;
/// Distinct re-checks one source asks for at most: a file of IAM changes names a handful of
/// users; a bulk change past this is left to the next audit.
pub const MAX_RECHECKS: usize = 100;

/// How reading one log file ended.
#[derive(Debug)]
pub enum Outcome {
    /// Every record was read (some may have been skipped; see [`LogReport::skipped`]).
    Complete,
    /// The file was deliberately not read (or held no `Records`), for this reason.
    Skipped(&'static str),
    /// Reading stopped early; alerts for the records before the damage were still raised.
    Failed(ReadError),
}

/// Records that could not be parsed and were skipped.
#[derive(Debug, Default)]
pub struct Skips {
    pub count: u64,
    /// The first one: its index in `Records`, its decompressed byte offset, and why.
    pub first: Option<(u64, u64, String)>,
}

impl Skips {
    /// A sentence for logs and the `log-file-unreadable` alert.
    pub fn describe(&self) -> Option<String> {
        let (index, offset, why) = self.first.as_ref()?;
        Some(format!(
            "{} record{} could not be parsed and {} skipped; the first is record {index} at decompressed byte {offset}: {why}",
            self.count,
            if self.count == 1 { "" } else { "s" },
            if self.count == 1 { "was" } else { "were" },
        ))
    }
}

/// What reading one source produced, besides the alerts given to the sink.
#[derive(Debug)]
pub struct LogReport {
    pub outcome: Outcome,
    /// Records read (parsed and evaluated, or skipped).
    pub records: u64,
    /// Decompressed bytes read.
    pub bytes: u64,
    pub skipped: Skips,
    /// Records dropped because their eventID already appeared in this source.
    pub duplicates: u64,
    /// The records that feed correlations.
    pub correlation: Batch,
    /// What posture changes the records asked to re-check, each once.
    pub rechecks: Vec<Recheck>,
    /// Re-checks left out past [`MAX_RECHECKS`].
    pub rechecks_over: u64,
}

impl LogReport {
    fn new() -> LogReport {
        LogReport {
            outcome: Outcome::Complete,
            records: 0,
            bytes: 0,
            skipped: Skips::default(),
            duplicates: 0,
            correlation: Batch::default(),
            rechecks: Vec::new(),
            rechecks_over: 0,
        }
    }

    /// Notes the re-check a record asks for, once per source and within the bound.
    fn note_recheck(&mut self, record: &Record<'_>) {
        let Some(recheck) = crate::posture::recheck::of(record) else {
            return;
        };
        if self
            .rechecks
            .iter()
            .any(|r| r.account == recheck.account && r.target == recheck.target)
        {
            return;
        }
        if self.rechecks.len() >= MAX_RECHECKS {
            self.rechecks_over += 1;
            return;
        }
        self.rechecks.push(recheck);
    }
}

/// Where a producer's alerts go, each with the incident it belongs to. The incident is worked
/// out only for a sink that asks (`scan` prints alerts and never does).
pub type AlertSink<'a> = dyn FnMut(&dyn Fn() -> IncidentKey, Alert) + 'a;

/// The connection broke while a log file was read: the file is fine, read it again. (A
/// damaged file is not an error: it raises `log-file-unreadable`.)
#[derive(Debug, thiserror::Error)]
#[error("{source}: reading stopped: {error}{}", aws::causes(error))]
pub struct Broken {
    pub source: String,
    #[source]
    pub error: ReadError,
}

/// Reads one log file from `input`, evaluates every record against `rules`, and gives each
/// alert to `sink` with its incident key: the one producer of log files, for the daemon and
/// `scan` alike. It applies the one skip rule ([`cloudtrail::skip`]) and the one damage
/// policy: a file that breaks off, or has records that cannot be parsed, raises
/// `log-file-unreadable` after the alerts of its readable records, since damage can mean
/// tampering; a connection that breaks is [`Broken`], to read the file again.
///
/// `source` names the file in alerts and errors (a path or `s3://bucket/key`). Runs on the
/// calling thread and blocks: call it from a worker thread or `spawn_blocking`.
pub fn object(
    rules: &RuleSet,
    source: &str,
    input: impl Read + Send + 'static,
    max_decompressed: u64,
    sink: &mut AlertSink<'_>,
) -> Result<LogReport, Broken> {
    file(
        rules,
        source,
        input,
        max_decompressed,
        Shapes::LogFile,
        Level::Informational,
        sink,
    )
}

/// Like [`object`], for a file that may be any shape of CloudTrail input people keep (JSON
/// lines, arrays, single events, lookup-events and Lake exports; see [`Shapes::Any`]), as
/// `scan` reads them. A file that is none of them fails with the reason, never reads as
/// holding no records. Only the alerts at or above `min_level` are built: the matches of
/// rules below it still count towards correlations, and damage is always raised.
pub fn export(
    rules: &RuleSet,
    source: &str,
    input: impl Read + Send + 'static,
    max_decompressed: u64,
    min_level: Level,
    sink: &mut AlertSink<'_>,
) -> Result<LogReport, Broken> {
    file(
        rules,
        source,
        input,
        max_decompressed,
        Shapes::Any,
        min_level,
        sink,
    )
}

fn file(
    rules: &RuleSet,
    source: &str,
    input: impl Read + Send + 'static,
    max_decompressed: u64,
    shapes: Shapes,
    min_level: Level,
    sink: &mut AlertSink<'_>,
) -> Result<LogReport, Broken> {
    let mut report = LogReport::new();
    if let Some(reason) = cloudtrail::skip(source) {
        report.outcome = Outcome::Skipped(reason);
        return Ok(report);
    }
    let opened = match shapes {
        Shapes::LogFile => cloudtrail::open(input, max_decompressed),
        Shapes::Any => cloudtrail::open_any(input, max_decompressed),
    };
    match opened {
        Ok(mut reader) => read_records(rules, source, &mut reader, min_level, sink, &mut report),
        Err(source) => {
            report.outcome = Outcome::Failed(ReadError::Io {
                offset: 0,
                record: 0,
                source,
            })
        }
    }
    let damage = |sink: &mut AlertSink<'_>, alert: Alert| {
        let account = alert.account_id.clone();
        let key = || IncidentKey {
            rule: UNREADABLE_RULE.to_owned(),
            account: account.clone().unwrap_or_else(|| "unknown".to_owned()),
            principal: source.to_owned(),
        };
        sink(&key, alert);
    };
    if let Outcome::Failed(e) = &report.outcome {
        if is_transport(e) {
            let Outcome::Failed(error) = report.outcome else {
                unreachable!("matched above")
            };
            return Err(Broken {
                source: source.to_owned(),
                error,
            });
        }
        damage(
            sink,
            Alert::unreadable(source, report.records, &e.to_string()),
        );
    }
    if let Some(what) = report.skipped.describe() {
        damage(sink, Alert::damaged(source, &what));
    }
    Ok(report)
}

fn read_records(
    rules: &RuleSet,
    source: &str,
    reader: &mut cloudtrail::LogReader,
    min_level: Level,
    sink: &mut AlertSink<'_>,
    report: &mut LogReport,
) {
    let mut seen = RecentIds::new(FILE_DUPLICATE_WINDOW);
    loop {
        let raw = match reader.next_record() {
            Ok(Some(raw)) => raw,
            Ok(None) => break,
            Err(e) => {
                report.outcome = Outcome::Failed(e);
                break;
            }
        };
        let unwrapped = match cloudtrail::shape::record_json(raw.item, raw.bytes) {
            Ok(unwrapped) => unwrapped,
            Err(why) => {
                report.skipped.count += 1;
                report
                    .skipped
                    .first
                    .get_or_insert((raw.index, raw.offset, why));
                continue;
            }
        };
        let parsed = match raw.members {
            // Split and checked in one pass by the reader: only its members are kept.
            Some(members) => Record::from_members(raw.bytes, members),
            None => Record::parse(&unwrapped.json),
        };
        match parsed {
            Ok(record) => {
                report.note_recheck(&record);
                evaluate(rules, &record, source, min_level, &mut seen, sink, report)
            }
            Err(e) => {
                report.skipped.count += 1;
                report.skipped.first.get_or_insert_with(|| {
                    if unwrapped.within.is_empty() {
                        // serde_json counts columns from 1 on the record's single line.
                        let at = raw.offset + (e.column() as u64).saturating_sub(1);
                        (raw.index, at, e.to_string())
                    } else {
                        (
                            raw.index,
                            raw.offset,
                            format!("{} is not a CloudTrail record: {e}", unwrapped.within),
                        )
                    }
                });
            }
        }
    }
    report.records = reader.records_read();
    report.bytes = reader.bytes_read();
    if matches!(report.outcome, Outcome::Complete) && reader.finish() == Finish::NoRecords {
        report.outcome = Outcome::Skipped("no Records array (not a CloudTrail log file)");
    }
}

/// Evaluates one record that arrived on its own (an EventBridge event's `detail`): the
/// producer of the fast path.
pub fn event(
    rules: &RuleSet,
    source: &str,
    json: &[u8],
    sink: &mut AlertSink<'_>,
) -> Result<LogReport, serde_json::Error> {
    let record = Record::parse(json)?;
    let mut report = LogReport::new();
    report.records = 1;
    report.bytes = json.len() as u64;
    report.note_recheck(&record);
    evaluate(
        rules,
        &record,
        source,
        Level::Informational,
        &mut RecentIds::new(1),
        sink,
        &mut report,
    );
    Ok(report)
}

/// Whether reading stopped because the connection failed rather than because the bytes are
/// bad. Corrupt gzip surfaces as InvalidInput/InvalidData, a cut-off stream as
/// UnexpectedEof; anything else came from the transport.
fn is_transport(e: &ReadError) -> bool {
    match e {
        ReadError::Io { source, .. } => !matches!(
            source.kind(),
            std::io::ErrorKind::InvalidInput
                | std::io::ErrorKind::InvalidData
                | std::io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

fn evaluate(
    rules: &RuleSet,
    record: &Record<'_>,
    source: &str,
    min_level: Level,
    seen: &mut RecentIds,
    sink: &mut AlertSink<'_>,
    report: &mut LogReport,
) {
    let derived = Derived::new(record, rules.derivation());
    let results = rules.evaluate_derived(&derived);
    if results.is_empty() {
        return;
    }
    // Only records that raised something are checked for duplicates: it costs nothing for the
    // rest. CloudTrail itself occasionally writes an event twice.
    if let Some(id) = record.str_at("eventID")
        && !seen.insert(&id)
    {
        report.duplicates += 1;
        return;
    }
    for result in results {
        let Some(index) = rules.rule_of(&result) else {
            continue;
        };
        let rule = &rules.rules()[index];
        if rule.kind == RuleKind::Detection && rule.alerts && rule.level >= min_level {
            sink(
                &|| key(&rule.name, record),
                Alert::from_detection(rule, &derived, source),
            );
        }
        let feeds = rules.feeds(index);
        if !feeds.is_empty() {
            report.correlation.add(rules, feeds, record, source);
        }
    }
}

/// The most recent eventIDs, remembered in bounded memory (a 64-bit hash each), to tell a
/// repeat from a new event. Two generations of up to `capacity / 2` hashes: when the newer
/// fills, the older is dropped whole. So at least the last `capacity / 2` ids and at most the
/// last `capacity` are remembered, in two hash sets and nothing else: an exact
/// first-in-first-out window needs a queue of every hash beside the set, about as large again.
#[derive(Debug)]
pub struct RecentIds {
    newer: Hashes,
    older: Hashes,
    generation: usize,
}

/// A set of ids' 64-bit hashes, which serve as their own hashes in the set.
type Hashes = HashSet<u64, BuildHasherDefault<Prehashed>>;

/// Hashes a `u64` that is already a hash to itself: SipHash again would only cost.
#[derive(Debug, Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64s are hashed here; any other input is still folded in, not lost.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl RecentIds {
    pub fn new(capacity: usize) -> RecentIds {
        RecentIds {
            newer: Hashes::default(),
            older: Hashes::default(),
            generation: capacity.div_ceil(2).max(1),
        }
    }

    /// Remembers `id` (a string, or a tuple of them); false if it is already remembered.
    pub fn insert(&mut self, id: &(impl Hash + ?Sized)) -> bool {
        self.insert_hash(Self::hash(id))
    }

    /// The hash by which `id` is remembered: from a fixed-key hasher, the same in every run.
    pub fn hash(id: &(impl Hash + ?Sized)) -> u64 {
        BuildHasherDefault::<DefaultHasher>::default().hash_one(id)
    }

    /// Remembers an id by its [`Self::hash`]; false if it is already remembered.
    pub fn insert_hash(&mut self, h: u64) -> bool {
        if self.newer.contains(&h) || self.older.contains(&h) {
            return false;
        }
        if self.newer.len() >= self.generation {
            self.older = std::mem::take(&mut self.newer);
        }
        self.newer.insert(h);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = r#"
title: Root did something
id: 5b9d2a8e-0d0e-4a4e-9d47-000000000001
name: root-did-something
logsource: {product: aws, service: cloudtrail}
detection:
  selection:
    userIdentity.type: Root
  condition: selection
level: high
"#;

    fn run(doc: &str) -> (Vec<Alert>, LogReport) {
        let rules = RuleSet::from_yaml([("r.yml", RULE)]);
        let mut alerts = Vec::new();
        let report = object(
            &rules,
            "f.json",
            std::io::Cursor::new(doc.as_bytes().to_vec()),
            u64::MAX,
            &mut |_, a| alerts.push(a),
        )
        .expect("not a transport failure");
        (alerts, report)
    }

    #[test]
    fn a_bad_record_costs_only_itself() {
        let doc = "{\"Records\":[{\"eventID\":\"a\",\"userIdentity\":{\"type\":\"Root\"}},\
                   {\"eventID\":\"bad\",\"x\":\"\u{1}\"},5,\
                   {\"eventID\":\"b\",\"userIdentity\":{\"type\":\"Root\"}}]}";
        let (alerts, report) = run(doc);
        let ids: Vec<_> = alerts
            .iter()
            .filter_map(|a| a.event_id.as_deref())
            .collect();
        assert_eq!(ids, vec!["a", "b"], "records on both sides alert");
        assert_eq!(
            alerts.last().map(|a| a.rule.as_str()),
            Some(UNREADABLE_RULE),
            "the damage is raised after them"
        );
        assert!(matches!(report.outcome, Outcome::Complete));
        assert_eq!(report.records, 4);
        assert_eq!(report.skipped.count, 2);
        let (index, offset, _) = report.skipped.first.clone().expect("first skip");
        assert_eq!(index, 1);
        assert!(offset > 40, "{offset}");
        assert!(
            report
                .skipped
                .describe()
                .expect("sentence")
                .contains("record 1")
        );
    }

    #[test]
    fn the_same_event_twice_in_a_file_is_one() {
        let rec = r#"{"eventID":"same","userIdentity":{"type":"Root"}}"#;
        let (alerts, report) = run(&format!("{{\"Records\":[{rec},{rec}]}}"));
        assert_eq!(alerts.len(), 1);
        assert_eq!(report.duplicates, 1);
    }

    #[test]
    fn a_broken_read_names_its_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("streaming error")]
        struct Streaming(#[source] std::io::Error);
        let cause = std::io::Error::other(Streaming(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "minimum throughput was specified at 1 B/s, but throughput of 0 B/s was observed",
        )));
        let e = Broken {
            source: "s3://b/k".into(),
            error: ReadError::Io {
                offset: 10,
                record: 2,
                source: cause,
            },
        };
        let text = e.to_string();
        assert!(text.contains("streaming error"), "{text}");
        assert!(text.contains("throughput of 0 B/s"), "{text}");
    }

    #[test]
    fn transport_errors_are_told_apart_from_damage() {
        let io = |kind| ReadError::Io {
            offset: 0,
            record: 0,
            source: std::io::Error::from(kind),
        };
        assert!(is_transport(&io(std::io::ErrorKind::ConnectionReset)));
        assert!(!is_transport(&io(std::io::ErrorKind::InvalidInput)));
        assert!(!is_transport(&ReadError::Truncated {
            offset: 1,
            record: 1
        }));
    }

    #[test]
    fn recent_ids_are_bounded() {
        let mut ids = RecentIds::new(4);
        assert!(ids.insert("a"));
        assert!(!ids.insert("a"));
        assert!(ids.insert("b"));
        // The first generation (a, b) is full: c starts the next.
        assert!(ids.insert("c"));
        assert!(!ids.insert("a"), "the older generation is still remembered");
        assert!(ids.insert("d"));
        // The second generation (c, d) is full: e drops the first.
        assert!(ids.insert("e"));
        assert!(!ids.insert("c") && !ids.insert("d") && !ids.insert("e"));
        assert!(ids.insert("a"), "the oldest generation was forgotten");
        assert!(ids.newer.len() + ids.older.len() <= 4);
    }
}
