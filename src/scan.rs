//! `trailwarden scan`: files, directories, stdin and S3 prefixes → alerts on stdout, a summary
//! on stderr.
//!
//! Each input's shape is told from its content: S3 log files, JSON lines, arrays, single
//! records or EventBridge events, `lookup-events` and CloudTrail Lake exports (see
//! [`pipeline::export`]). An input that is none of them fails, naming where it broke.
//!
//! Files are read in parallel, one worker thread per core, each running the whole pipeline on
//! one file at a time. Alerts are printed in input order (by path, then record position),
//! whatever the thread count: a file's alerts, rendered as they are raised, wait until the
//! inputs before it are printed.
//! The few records that feed a correlation are gathered from all files and decided on event
//! time at the end, as the daemon decides them. An event delivered twice (two trails writing
//! one bucket) is reported once, from the first input that holds it.
//!
//! S3 prefixes are listed as the workers read: keys stream from the listing (only the day
//! prefixes in range when a time range, accounts or regions are given) to a bounded number of
//! GetObjects on a small tokio runtime, and the fetched bodies to the workers. Alerts whose
//! eventTime is outside the time range are left out, whatever the source.
//!
//! S3 objects come after the local inputs, numbered in the order the listing yields their
//! keys: S3's key order for a prefix read whole. With --from, --to, --account or --region the
//! day prefixes are listed a few at once, so keys of one day prefix keep S3's order but days
//! interleave as their listings answer. The objects read ahead of the next one to print are
//! bounded (see [`remote::feed`]), so a slow GetObject holds back printing, not memory.
//!
//! `--event-history` reads CloudTrail's event history instead (LookupEvents, see
//! [`history`]): each page of each region is one more input of the `lookup-events` shape,
//! fed to the workers as an S3 object is.

mod history;
mod progress;
mod remote;
mod sort;

pub use sort::RUN_BYTES as SORT_RUN_BYTES;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::detect::RuleSet;
use crate::finding::Level;
use crate::finding::accounts::AccountNames;
use crate::finding::alert::Alert;
use crate::finding::correlation::{CorrEvent, Group};
use crate::incidents::correlate;
use crate::intake::listing::Selection;
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

/// The order alerts are printed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Sort {
    /// As the inputs hold them: by path and record position, then S3 objects as listed.
    Input,
    /// By event time, ties in input order; alerts without a time (a damaged file's) last.
    Time,
}

/// Options of one scan.
#[derive(Debug, Clone)]
pub struct Options {
    pub format: Format,
    /// Alerts below this level are neither built nor printed.
    pub min_level: Level,
    /// Cap on decompressed bytes per file.
    pub max_decompressed: u64,
    /// Worker threads.
    pub threads: usize,
    /// Names shown beside account ids.
    pub account_names: AccountNames,
    /// Which objects of S3 prefixes to read; its time range also leaves out alerts of any
    /// source whose eventTime is outside it.
    pub selection: Selection,
    /// GetObjects in flight at once.
    pub s3_concurrency: usize,
    /// Show progress on stderr.
    pub progress: bool,
    /// Read CloudTrail's event history of these regions instead of paths (none given: the
    /// SDK's configured region).
    pub event_history: Option<Vec<String>>,
    pub sort: Sort,
    /// With [`Sort::Time`], rendered alerts held in memory before a sorted run is spilled to
    /// a temporary file.
    pub sort_run_bytes: usize,
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
    /// Alerts left out because their eventTime is outside the time range.
    pub alerts_outside_range: u64,
    /// S3 listings: objects sent to be read.
    pub s3_objects_listed: u64,
    /// S3 listings: ListObjectsV2 requests.
    pub s3_list_calls: u64,
    /// S3 listings: prefixes listed, and how many of them were CloudTrail day prefixes.
    pub s3_prefixes_listed: u64,
    pub s3_day_prefixes_listed: u64,
    /// S3 keys outside CloudTrail's key layout, not read because a selection was given.
    pub s3_outside_layout: u64,
    /// Event history read, per region: (region, pages, events).
    pub event_history: Vec<(String, u64, u64)>,
    /// With --sort time: sorted runs spilled to temporary files.
    pub sort_runs_spilled: usize,
    pub elapsed: Duration,
}

impl Summary {
    /// Writes the human summary.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let mb = self.bytes as f64 / 1e6;
        // An event history scan's inputs are LookupEvents pages.
        let inputs = if self.event_history.is_empty() {
            "files"
        } else {
            "pages"
        };
        writeln!(
            out,
            "{inputs}: {} read, {} skipped, {} failed; {} records, {:.1} MB in {:.2} s ({:.1} MB/s, {:.0} records/s)",
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
        if self.s3_list_calls > 0 {
            writeln!(
                out,
                "s3: {} objects listed in {} ListObjectsV2 calls over {} prefixes ({} day prefixes)",
                self.s3_objects_listed,
                self.s3_list_calls,
                self.s3_prefixes_listed,
                self.s3_day_prefixes_listed
            )?;
        }
        if !self.event_history.is_empty() {
            let (pages, events) = self
                .event_history
                .iter()
                .fold((0, 0), |(p, e), (_, pages, events)| (p + pages, e + events));
            let regions: Vec<String> = self
                .event_history
                .iter()
                .map(|(region, _, events)| format!("{region} ({events})"))
                .collect();
            writeln!(
                out,
                "event history: {events} events in {pages} LookupEvents pages from {}",
                regions.join(", ")
            )?;
        }
        if self.s3_outside_layout > 0 {
            writeln!(
                out,
                "  {} objects outside CloudTrail's key layout were not read (scan without --from, --to, --account and --region to read them)",
                self.s3_outside_layout
            )?;
        }
        if self.alerts_outside_range > 0 {
            writeln!(
                out,
                "  {} alerts outside the time range left out",
                self.alerts_outside_range
            )?;
        }
        if self.sort_runs_spilled > 0 {
            writeln!(
                out,
                "  alerts sorted by event time in {} runs spilled to temporary files",
                self.sort_runs_spilled
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
    #[error(
        "--event-history needs a region: give --region, or set AWS_REGION or a profile's region"
    )]
    NoRegion,
    #[error("cannot read the event history: {0}")]
    Credentials(crate::daemon::start::StartError),
    /// Alerts sorted by time could not be spilled to, or read back from, a temporary file.
    #[error("cannot sort the alerts by time (temporary files in {dir}): {source}", dir = std::env::temp_dir().display())]
    Sort {
        #[source]
        source: io::Error,
    },
}

/// Where alerts go: stdout, written whole lines at a time under a lock.
struct Output<'a> {
    format: Format,
    min_level: Level,
    names: &'a AccountNames,
    out: Mutex<io::Stdout>,
    /// With --sort time, where rendered alerts wait instead of stdout.
    sorter: Option<Mutex<sort::Sorter>>,
}

/// An alert as printed, with its account's name when one is known.
#[derive(Serialize)]
struct Named<'a> {
    #[serde(flatten)]
    alert: &'a Alert,
    account_name: String,
}

impl Output<'_> {
    /// Renders `alert` to wait in `held` for its file's turn; the alert itself is dropped.
    fn hold(&self, mut alert: Alert, held: &mut Held) {
        if alert.level >= self.min_level {
            self.render_one(&alert, &mut held.bytes);
        }
        held.alerts.push(HeldAlert {
            id: alert
                .event_id
                .as_ref()
                .map(|id| RecentIds::hash(&(&alert.rule, id))),
            time: self.sorter.as_ref().and(alert.event_time.take()),
            level: alert.level,
            end: held.bytes.len(),
            rule: alert.rule,
        });
    }

    /// Puts out one rendered alert: into `buf`, flushed when full, or with --sort time to
    /// the sorter.
    fn put(&self, time: Option<&str>, bytes: &[u8], buf: &mut Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        match &self.sorter {
            None => {
                buf.extend_from_slice(bytes);
                if buf.len() > 64 * 1024 {
                    self.flush(buf);
                }
            }
            Some(sorter) => lock(sorter).push(time, bytes.to_vec()),
        }
    }

    fn render_one(&self, alert: &Alert, buf: &mut Vec<u8>) {
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

/// Alerts printed and left out as duplicates, to add to the summary.
#[derive(Default)]
struct Tally {
    /// Alerts by rule name, with the rule's level.
    counts: HashMap<String, (Level, u64)>,
    duplicates: u64,
}

/// What one file raised, waiting for its turn.
#[derive(Default)]
struct Finished {
    alerts: Held,
    correlation: Vec<(Group, CorrEvent)>,
}

/// Alerts rendered as they are raised, waiting to be printed. Rendering at once frees each
/// alert's strings while they are still hot in the allocator's caches: holding a thousand
/// built alerts and freeing them together made the allocator merge and split its free
/// lists, a fifth of a scan's time when most records raise an alert.
#[derive(Default)]
struct Held {
    /// The alerts as printed, one after another.
    bytes: Vec<u8>,
    alerts: Vec<HeldAlert>,
}

/// What printing still decides about a rendered alert.
struct HeldAlert {
    /// The hash of its (rule, eventID), to leave out an event two files both hold.
    id: Option<u64>,
    /// Its event time, kept only for --sort time.
    time: Option<String>,
    level: Level,
    rule: String,
    /// Where its rendering ends in [`Held::bytes`]; empty below --min-level.
    end: usize,
}

impl Held {
    fn len(&self) -> usize {
        self.alerts.len()
    }

    /// Each alert with its rendering, emptying `self` but keeping its memory.
    fn drain(&mut self, mut each: impl FnMut(HeldAlert, &[u8])) {
        let mut start = 0;
        for alert in self.alerts.drain(..) {
            let end = alert.end;
            each(alert, &self.bytes[start..end]);
            start = end;
        }
        self.bytes.clear();
    }
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

/// Alerts' (rule, eventID) pairs remembered across files, so an event two trails both
/// delivered is reported once: at least the last 458,752 and at most twice that, however long
/// the scan. Each generation just fits a hash table of 2^19 slots (7/8 of them used), 4.7 MB:
/// one more entry would double it.
const SCAN_DUPLICATE_WINDOW: usize = 2 * 458_752;

/// Alerts a worker holds before printing them, or, for a local file whose turn has not come,
/// before it waits for its turn: memory stays flat however many alerts a file raises.
const ALERTS_HELD: usize = 1024;

/// Fetched S3 bodies waiting for a worker, per worker thread.
const FETCHED_PER_WORKER: usize = 2;

/// The small runtime of a scan's AWS calls.
fn aws_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime can be built at startup")
}

/// Runs a scan over `paths` (or the event history) and prints alerts; returns the summary.
pub fn run(rules: &RuleSet, paths: &[String], options: &Options) -> Result<Summary, ScanError> {
    let started = Instant::now();
    let mut runtime = None;
    let mut s3 = None;
    let mut prefixes = Vec::new();
    let mut sources = Vec::new();
    let mut regions = Vec::new();
    if let Some(names) = &options.event_history {
        let rt = runtime.get_or_insert_with(aws_runtime);
        regions = rt.block_on(async {
            history::connect(&crate::aws::sdk_config(None, None).await, names).await
        })?;
    }
    for path in paths {
        if let Some((bucket, prefix)) = s3::parse_url(path) {
            let rt = runtime.get_or_insert_with(aws_runtime);
            s3.get_or_insert_with(|| {
                rt.block_on(async {
                    crate::aws::s3_client(
                        &crate::aws::sdk_config(None, None).await,
                        &crate::telemetry::Metrics::new(),
                    )
                })
            });
            prefixes.push((path, bucket, prefix));
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
        sorter: (options.sort == Sort::Time)
            .then(|| Mutex::new(sort::Sorter::new(options.sort_run_bytes))),
    };
    let summary = Mutex::new(Summary::default());
    let correlation: Mutex<Vec<(Group, CorrEvent)>> = Mutex::new(Vec::new());
    let threads = if prefixes.is_empty() && regions.is_empty() {
        options.threads.clamp(1, sources.len().max(1))
    } else {
        options.threads.max(1)
    };
    // S3 objects numbered but not yet printed: those fetching, waiting in the workers' queue,
    // being read, or read and waiting for an earlier one. A slow object holds back the rest
    // of the listing, so what waits to be printed stays bounded.
    let window = Arc::new(tokio::sync::Semaphore::new(
        options.s3_concurrency.max(1) + threads * (FETCHED_PER_WORKER + 1),
    ));
    let local_inputs = sources.len();
    let in_order = Mutex::new(InOrder {
        next: 0,
        done: BTreeMap::new(),
        seen: RecentIds::new(SCAN_DUPLICATE_WINDOW),
    });
    // Wakes the workers waiting for their file's turn to print.
    let turn = Condvar::new();
    // Prints alerts in order (the cross-file duplicates left out) and counts them.
    let print = |state: &mut InOrder, alerts: &mut Held, buf: &mut Vec<u8>, tally: &mut Tally| {
        alerts.drain(|alert, bytes| {
            // The same event in two files (two trails, one bucket) is one.
            if let Some(id) = alert.id
                && !state.seen.insert_hash(id)
            {
                tally.duplicates += 1;
                return;
            }
            if alert.level >= options.min_level {
                // Looked up by name first: most alerts are of a rule already counted.
                match tally.counts.get_mut(alert.rule.as_str()) {
                    Some((_, n)) => *n += 1,
                    None => {
                        tally.counts.insert(alert.rule, (alert.level, 1));
                    }
                }
            }
            output.put(alert.time.as_deref(), bytes, buf);
        });
    };
    let add_tally = |tally: Tally| {
        let mut s = lock(&summary);
        s.duplicates += tally.duplicates;
        for (rule, (level, n)) in tally.counts {
            *s.alerts.entry((level, rule)).or_default() += n;
        }
    };
    // A file's alerts so far, printed at once when it is the file's turn. Otherwise they wait
    // with the file, or, for a local file (`wait`), the worker waits for its turn: the files
    // before it are all being read, so the turn comes, and alerts never pile up in memory.
    // (An S3 object's worker does not wait: the object before it may still be fetching.)
    let emit = |i: usize, alerts: &mut Held, wait: bool| {
        let mut state = lock(&in_order);
        if state.next != i {
            if !wait {
                return;
            }
            while state.next != i {
                state = turn.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        }
        let mut buf = Vec::new();
        let mut tally = Tally::default();
        print(&mut state, alerts, &mut buf, &mut tally);
        output.flush(&mut buf);
        drop(state);
        add_tally(tally);
    };
    // Prints every finished file whose turn has come; called by the worker that finished one.
    let print_ready = |i: usize, finished: Finished| {
        let mut state = lock(&in_order);
        state.done.insert(i, finished);
        let mut buf = Vec::new();
        let mut tally = Tally::default();
        let mut held = Vec::new();
        loop {
            let next = state.next;
            let Some(mut finished) = state.done.remove(&next) else {
                break;
            };
            state.next += 1;
            if next >= local_inputs {
                window.add_permits(1);
            }
            print(&mut state, &mut finished.alerts, &mut buf, &mut tally);
            held.extend(finished.correlation);
        }
        output.flush(&mut buf);
        drop(state);
        turn.notify_all();
        if !held.is_empty() {
            lock(&correlation).extend(held);
        }
        add_tally(tally);
    };
    let next = AtomicUsize::new(0);
    let (fetched_tx, fetched_rx) =
        tokio::sync::mpsc::channel::<remote::Fetched>(threads * FETCHED_PER_WORKER);
    let fetched_rx = Mutex::new(fetched_rx);
    let progress = progress::Progress {
        history: regions
            .iter()
            .map(|r| (r.history.region().to_owned(), r.stats.clone()))
            .collect(),
        ..Default::default()
    };
    progress
        .local_files
        .store(sources.len() as u64, Ordering::Relaxed);
    let scan_done = AtomicBool::new(false);
    let mut empty = None;

    std::thread::scope(|scope| {
        let shown = options
            .progress
            .then(|| scope.spawn(|| progress.run(&scan_done)));
        let mut workers = Vec::new();
        for _ in 0..threads {
            workers.push(scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let (i, name, opened) = match sources.get(i) {
                        Some(source) => {
                            let opened: Result<Box<dyn Read + Send>, SourceError> = match source {
                                LogSource::File(path) => local::open(Some(path)),
                                LogSource::Stdin => local::open(None),
                                LogSource::S3 { .. } | LogSource::EventHistory { .. } => {
                                    unreachable!("remote inputs come fetched")
                                }
                            };
                            (i, source.to_string(), opened)
                        }
                        // Local files done: the objects fetched from S3 prefixes, if any, each
                        // with its place in the output after the local inputs.
                        None => match lock(&fetched_rx).blocking_recv() {
                            Some(fetched) => (
                                local_inputs + fetched.seq,
                                fetched.source.to_string(),
                                fetched.body,
                            ),
                            None => break,
                        },
                    };
                    let input = match opened {
                        Ok(input) => input,
                        Err(e) => {
                            eprintln!("error: {e}");
                            lock(&summary).files_failed += 1;
                            progress.file_done(0, 0, 0);
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
                    let mut outside_range = 0;
                    let mut raised = 0u64;
                    let read = pipeline::export(
                        rules,
                        &name,
                        input,
                        options.max_decompressed,
                        options.min_level,
                        &mut |_, alert| {
                            if !options.selection.range.contains(alert.event_time.as_deref()) {
                                outside_range += 1;
                                return;
                            }
                            // Before duplicates are known: they are left out when printed.
                            raised += u64::from(alert.level >= options.min_level);
                            output.hold(alert, &mut finished.alerts);
                            if finished.alerts.len() >= ALERTS_HELD {
                                emit(i, &mut finished.alerts, i < local_inputs);
                            }
                        },
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
                            let mut s = lock(&summary);
                            s.files_failed += 1;
                            s.alerts_outside_range += outside_range;
                            drop(s);
                            progress.file_done(0, 0, 0);
                            print_ready(i, finished);
                            continue;
                        }
                    };
                    if let Some(what) = report.skipped.describe() {
                        // Read to the end, but not every record was checked: an error.
                        eprintln!("error: {name}: {what}{also}");
                    }
                    progress.file_done(report.records, report.bytes, raised);
                    let mut s = lock(&summary);
                    s.alerts_outside_range += outside_range;
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
            }));
        }
        // Every listed object, page (and failed listing or call) gets the next number, once.
        let mut seq = 0;
        if let (Some(rt), Some(client)) = (&runtime, &s3) {
            let selection = Arc::new(options.selection.clone());
            for (path, bucket, prefix) in &prefixes {
                let before = progress.listed.objects.load(Ordering::Relaxed);
                seq = rt.block_on(remote::feed(
                    client.clone(),
                    bucket.clone(),
                    prefix.clone(),
                    selection.clone(),
                    options.s3_concurrency,
                    progress.listed.clone(),
                    fetched_tx.clone(),
                    remote::Order {
                        first: seq,
                        window: window.clone(),
                    },
                ));
                let found = progress.listed.objects.load(Ordering::Relaxed) - before;
                if found == 0 && options.selection.is_all() && empty.is_none() {
                    empty = Some((*path).clone());
                }
            }
        }
        if let (Some(rt), false) = (&runtime, regions.is_empty()) {
            rt.block_on(history::feed(
                &regions,
                options.selection.range,
                fetched_tx.clone(),
                remote::Order {
                    first: seq,
                    window: window.clone(),
                },
            ));
        }
        progress.listing_done.store(true, Ordering::Relaxed);
        // The workers stop once the fetched bodies are all taken.
        drop(fetched_tx);
        for worker in workers {
            let _ = worker.join();
        }
        scan_done.store(true, Ordering::Relaxed);
        // Woken now rather than at its next redraw, which the scan's end would wait for.
        if let Some(shown) = shown {
            shown.thread().unpark();
        }
    });
    if let Some(path) = empty {
        return Err(ScanError::Empty(path));
    }

    let mut summary = summary.into_inner().unwrap_or_else(|p| p.into_inner());
    let events = correlation.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut held = Held::default();
    for alert in correlate::decide_all(rules, events) {
        if !options
            .selection
            .range
            .contains(alert.event_time.as_deref())
        {
            summary.alerts_outside_range += 1;
            continue;
        }
        if alert.level >= options.min_level {
            *summary
                .alerts
                .entry((alert.level, alert.rule.clone()))
                .or_default() += 1;
        }
        output.hold(alert, &mut held);
    }
    // Not checked for duplicates: a correlation's alert is one of a kind.
    let mut buf = Vec::new();
    held.drain(|alert, bytes| output.put(alert.time.as_deref(), bytes, &mut buf));
    output.flush(&mut buf);
    if let Some(sorter) = output.sorter {
        let sorter = sorter.into_inner().unwrap_or_else(|p| p.into_inner());
        summary.sort_runs_spilled = sorter.runs_spilled();
        let mut out = io::BufWriter::with_capacity(64 * 1024, io::stdout().lock());
        sorter
            .finish(&mut out)
            .map_err(|source| ScanError::Sort { source })?;
    }
    let listed = &progress.listed;
    summary.s3_objects_listed = listed.objects.load(Ordering::Relaxed);
    summary.s3_list_calls = listed.calls.load(Ordering::Relaxed);
    summary.s3_prefixes_listed = listed.prefixes.load(Ordering::Relaxed);
    summary.s3_day_prefixes_listed = listed.day_prefixes.load(Ordering::Relaxed);
    summary.s3_outside_layout = listed.outside_layout.load(Ordering::Relaxed);
    summary.event_history = regions
        .iter()
        .map(|r| {
            (
                r.history.region().to_owned(),
                r.stats.pages.load(Ordering::Relaxed),
                r.stats.events.load(Ordering::Relaxed),
            )
        })
        .collect();
    summary.elapsed = started.elapsed();
    Ok(summary)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicked worker must not hide the others' results.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
