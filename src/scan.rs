//! `trailwarden scan`: files, directories, stdin and S3 prefixes → alerts on stdout, a summary
//! on stderr.
//!
//! Each input's shape is told from its content: S3 log files, JSON lines, arrays, single
//! records or EventBridge events, `lookup-events` and CloudTrail Lake exports (see
//! [`pipeline::export`]). An input that is none of them fails, naming where it broke.
//!
//! Files are read in parallel, one worker thread per core, each running the whole pipeline on
//! one file at a time. Alerts are printed in input order (by path, then record position),
//! whatever the thread count: a file's alerts wait until the files before it are printed.
//! The few records that feed a correlation are gathered from all files and decided on event
//! time at the end, as the daemon decides them. An event delivered twice (two trails writing
//! one bucket) is reported once, from the first input that holds it.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::detect::RuleSet;
use crate::finding::Level;
use crate::finding::accounts::AccountNames;
use crate::finding::alert::Alert;
use crate::finding::correlation::{CorrEvent, Group};
use crate::incidents::correlate;
use crate::intake::{LogSource, SourceError, local, s3};
use crate::pipeline::{self, Outcome, RecentIds};

/// How alerts are written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Json,
    /// One readable line per alert.
    Text,
}

/// Options of one scan.
#[derive(Debug, Clone)]
pub struct Options {
    pub format: Format,
    /// Alerts below this level are counted but not printed.
    pub min_level: Level,
    /// Cap on decompressed bytes per file.
    pub max_decompressed: u64,
    /// Worker threads.
    pub threads: usize,
    /// Names shown beside account ids.
    pub account_names: AccountNames,
}

/// Totals of a scan, printed to stderr.
#[derive(Debug, Default)]
pub struct Summary {
    pub files_read: u64,
    pub files_skipped: u64,
    pub files_failed: u64,
    /// Files read to the end with records that could not be parsed and were skipped.
    pub files_damaged: u64,
    pub records: u64,
    pub bytes: u64,
    /// Records that could not be parsed and were skipped.
    pub records_skipped: u64,
    /// Events seen again (same eventID) and reported once.
    pub duplicates: u64,
    /// Alerts printed, by (level, rule).
    pub alerts: BTreeMap<(Level, String), u64>,
    pub skipped_reasons: BTreeMap<String, u64>,
    pub elapsed: Duration,
}

impl Summary {
    /// Writes the human summary.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let mb = self.bytes as f64 / 1e6;
        writeln!(
            out,
            "files: {} read, {} skipped, {} failed; {} records, {:.1} MB in {:.2} s ({:.1} MB/s, {:.0} records/s)",
            self.files_read,
            self.files_skipped,
            self.files_failed,
            self.records,
            mb,
            secs,
            mb / secs,
            self.records as f64 / secs
        )?;
        if self.files_damaged > 0 {
            writeln!(
                out,
                "  {} files read with unparseable records skipped",
                self.files_damaged
            )?;
        }
        for (reason, n) in &self.skipped_reasons {
            writeln!(out, "  skipped {n}: {reason}")?;
        }
        if self.records_skipped > 0 {
            writeln!(
                out,
                "  {} records could not be parsed and were skipped",
                self.records_skipped
            )?;
        }
        if self.duplicates > 0 {
            writeln!(
                out,
                "  {} duplicate events (same eventID) reported once",
                self.duplicates
            )?;
        }
        let total: u64 = self.alerts.values().sum();
        writeln!(out, "alerts: {total}")?;
        for ((level, rule), n) in self.alerts.iter().rev() {
            writeln!(out, "  {:<8} {:<36} {n}", level.as_str(), rule)?;
        }
        Ok(())
    }
}

/// Usage-level failures that stop a scan before it starts.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("no log files found under {0}")]
    Empty(String),
}

/// Where alerts go: stdout, written whole lines at a time under a lock.
struct Output<'a> {
    format: Format,
    min_level: Level,
    names: &'a AccountNames,
    out: Mutex<io::Stdout>,
}

/// An alert as printed, with its account's name when one is known.
#[derive(Serialize)]
struct Named<'a> {
    #[serde(flatten)]
    alert: &'a Alert,
    account_name: String,
}

impl Output<'_> {
    fn render(&self, alert: &Alert, buf: &mut Vec<u8>) {
        if alert.level < self.min_level {
            return;
        }
        let account_name = alert
            .account_id
            .as_deref()
            .and_then(|id| self.names.name(id));
        match self.format {
            Format::Json => {
                // Serializing our own structs cannot fail. The flattened wrapper only when
                // there is a name to add: flattening serializes through a map, which costs.
                let _ = match account_name {
                    Some(account_name) => serde_json::to_writer(
                        &mut *buf,
                        &Named {
                            alert,
                            account_name,
                        },
                    ),
                    None => serde_json::to_writer(&mut *buf, alert),
                };
                buf.push(b'\n');
            }
            Format::Text => {
                buf.extend_from_slice(alert.text_block(account_name.as_deref()).as_bytes());
                buf.push(b'\n');
            }
        }
    }

    fn flush(&self, buf: &mut Vec<u8>) {
        if buf.is_empty() {
            return;
        }
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // A closed stdout (e.g. piped into `head`) is not worth failing the scan over.
        let _ = out.write_all(buf);
        let _ = out.flush();
        buf.clear();
    }
}

/// Files finished out of order, held until the files before them are printed, so the output
/// is the same whatever the thread count.
struct InOrder {
    /// The next source index to print.
    next: usize,
    /// Finished files after `next`: their alerts and correlation events.
    done: BTreeMap<usize, Finished>,
    /// EventIDs already printed, across files.
    seen: RecentIds,
}

/// What one file raised, waiting for its turn.
#[derive(Default)]
struct Finished {
    alerts: Vec<Alert>,
    correlation: Vec<(Group, CorrEvent)>,
}

/// `bytes`, shown as text where printable, for a message about what a file starts with.
fn shown(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(16)
        .map(|&b| match b {
            b' '..=b'~' => (b as char).to_string(),
            _ => format!("\\x{b:02x}"),
        })
        .collect()
}

/// When `name` says gzip and the bytes do not, why, naming what they start with. Such a file
/// is still read as plain JSON: a browser or `aws s3 cp` with a Content-Encoding header
/// inflates a `.json.gz` on download and keeps the name, and the records are still good.
fn misnamed_gzip(name: &str, input: &mut BufReader<Box<dyn Read + Send>>) -> Option<String> {
    if !name.ends_with(".gz") {
        return None;
    }
    let head = input.fill_buf().ok()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        return None;
    }
    Some(format!(
        "named .gz but is not gzip (starts with \"{}\"); read as plain JSON",
        shown(head)
    ))
}

/// EventIDs remembered across files, so an event two trails both delivered is reported once.
/// About 16 bytes each: long backfills stay flat.
const SCAN_DUPLICATE_WINDOW: usize = 1_000_000;

/// Runs a scan over `paths` and prints alerts; returns the summary.
pub fn run(rules: &RuleSet, paths: &[String], options: &Options) -> Result<Summary, ScanError> {
    let started = Instant::now();
    let mut runtime = None;
    let mut s3 = None;
    let mut sources = Vec::new();
    for path in paths {
        if let Some((bucket, prefix)) = s3::parse_url(path) {
            let rt = runtime.get_or_insert_with(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("a tokio runtime can be built at startup")
            });
            let client = s3.get_or_insert_with(|| {
                rt.block_on(async {
                    crate::aws::s3_client(
                        &crate::aws::sdk_config(None, None).await,
                        &crate::telemetry::Metrics::new(),
                    )
                })
            });
            let keys = rt.block_on(s3::list(client, &bucket, &prefix))?;
            if keys.is_empty() {
                return Err(ScanError::Empty(path.clone()));
            }
            sources.extend(keys.into_iter().map(|key| LogSource::S3 {
                bucket: bucket.clone(),
                key,
            }));
        } else {
            let found = local::expand(path)?;
            if found.is_empty() {
                return Err(ScanError::Empty(path.clone()));
            }
            sources.extend(found);
        }
    }

    let output = Output {
        format: options.format,
        min_level: options.min_level,
        names: &options.account_names,
        out: Mutex::new(io::stdout()),
    };
    let summary = Mutex::new(Summary::default());
    let correlation: Mutex<Vec<(Group, CorrEvent)>> = Mutex::new(Vec::new());
    let in_order = Mutex::new(InOrder {
        next: 0,
        done: BTreeMap::new(),
        seen: RecentIds::new(SCAN_DUPLICATE_WINDOW),
    });
    // Prints every finished file whose turn has come; called by the worker that finished one.
    let print_ready = |i: usize, finished: Finished| {
        let mut state = lock(&in_order);
        state.done.insert(i, finished);
        let mut buf = Vec::new();
        let mut counts: BTreeMap<(Level, String), u64> = BTreeMap::new();
        let mut duplicates = 0;
        let mut held = Vec::new();
        loop {
            let next = state.next;
            let Some(finished) = state.done.remove(&next) else {
                break;
            };
            state.next += 1;
            for alert in finished.alerts {
                // The same event in two files (two trails, one bucket) is one.
                if let Some(id) = &alert.event_id
                    && !state.seen.insert(&format!("{}\u{0}{id}", alert.rule))
                {
                    duplicates += 1;
                    continue;
                }
                if alert.level >= options.min_level {
                    *counts.entry((alert.level, alert.rule.clone())).or_default() += 1;
                }
                output.render(&alert, &mut buf);
                if buf.len() > 64 * 1024 {
                    output.flush(&mut buf);
                }
            }
            held.extend(finished.correlation);
        }
        output.flush(&mut buf);
        drop(state);
        if !held.is_empty() {
            lock(&correlation).extend(held);
        }
        let mut s = lock(&summary);
        s.duplicates += duplicates;
        for (k, n) in counts {
            *s.alerts.entry(k).or_default() += n;
        }
    };
    let next = AtomicUsize::new(0);
    let handle = runtime.as_ref().map(|rt| rt.handle().clone());
    let threads = options.threads.clamp(1, sources.len().max(1));

    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(source) = sources.get(i) else { break };
                    let name = source.to_string();
                    let opened: Result<Box<dyn Read + Send>, SourceError> = match source {
                        // An S3 source was listed through the client, so both are there.
                        LogSource::S3 { bucket, key } => match (&handle, &s3) {
                            (Some(handle), Some(client)) => handle
                                .block_on(s3::open(client, bucket, key, handle.clone()))
                                .map(|body| Box::new(body) as Box<dyn Read + Send>),
                            _ => Err(SourceError::Local {
                                path: name.clone().into(),
                                source: io::Error::other("no S3 client"),
                            }),
                        },
                        LogSource::File(path) => local::open(Some(path)),
                        LogSource::Stdin => local::open(None),
                    };
                    let input = match opened {
                        Ok(input) => input,
                        Err(e) => {
                            eprintln!("error: {e}");
                            lock(&summary).files_failed += 1;
                            print_ready(i, Finished::default());
                            continue;
                        }
                    };
                    let mut input = BufReader::with_capacity(64 * 1024, input);
                    let misnamed = misnamed_gzip(&name, &mut input);
                    if let Some(why) = &misnamed {
                        eprintln!("warning: {name}: {why}");
                    }
                    let mut finished = Finished::default();
                    let read = pipeline::export(
                        rules,
                        &name,
                        input,
                        options.max_decompressed,
                        &mut |_, alert| finished.alerts.push(alert),
                    );
                    // A failure of a misnamed file says so again: it may be why it failed.
                    let also = misnamed
                        .as_deref()
                        .map(|why| format!(" (it was {why})"))
                        .unwrap_or_default();
                    let report = match read {
                        Ok(report) => report,
                        Err(broken) => {
                            eprintln!("error: {broken}{also}");
                            lock(&summary).files_failed += 1;
                            print_ready(i, finished);
                            continue;
                        }
                    };
                    if let Some(what) = report.skipped.describe() {
                        // Read to the end, but not every record was checked: an error.
                        eprintln!("error: {name}: {what}{also}");
                    }
                    let mut s = lock(&summary);
                    s.files_damaged += u64::from(report.skipped.count > 0);
                    s.records += report.records;
                    s.bytes += report.bytes;
                    s.records_skipped += report.skipped.count;
                    s.duplicates += report.duplicates;
                    match &report.outcome {
                        Outcome::Complete => s.files_read += 1,
                        Outcome::Skipped(reason) => {
                            s.files_skipped += 1;
                            *s.skipped_reasons.entry((*reason).to_owned()).or_default() += 1;
                        }
                        Outcome::Failed(e) => {
                            s.files_failed += 1;
                            eprintln!("error: {name}: {e}{also}");
                        }
                    }
                    drop(s);
                    for (c, n, group) in report.correlation.dropped() {
                        let rule = &rules.rules()[rules.correlations()[c].rule].name;
                        eprintln!(
                            "warning: {name}: {n} events of correlation {rule} left out past the file's share (first group {:?}); a burst there may be missed",
                            group.0
                        );
                    }
                    if !report.correlation.is_empty() {
                        finished.correlation = report.correlation.into_events().collect();
                    }
                    print_ready(i, finished);
                }
            });
        }
    });

    let mut summary = summary.into_inner().unwrap_or_else(|p| p.into_inner());
    let events = correlation.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut buf = Vec::new();
    for alert in correlate::decide_all(rules, events) {
        if alert.level >= options.min_level {
            *summary
                .alerts
                .entry((alert.level, alert.rule.clone()))
                .or_default() += 1;
        }
        output.render(&alert, &mut buf);
    }
    output.flush(&mut buf);
    summary.elapsed = started.elapsed();
    Ok(summary)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicked worker must not hide the others' results.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
