//! `trailwarden backfill`: an S3 prefix and a selection → one S3 event notification per
//! CloudTrail log object in range, on the daemon's queue, so the daemon's tasks work through
//! history by the same rules, incidents and state as live traffic.
//!
//! ```text
//! listing (shared with scan) → notification body → batches of 10 → SendMessageBatch
//!   intake::listing             notification        send              edge
//! ```
//!
//! The listing streams keys while up to `concurrency` batches are in flight; a batch's failed
//! entries are retried with backoff a bounded number of times, and every object that could
//! not be queued is named in the summary. A queue that is missing or refused stops the
//! backfill: no later batch could succeed. Nothing here reads a log object: the daemon does.

pub mod edge;
pub mod notification;
pub mod send;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::intake::SourceError;
use crate::intake::listing::{self, ListStats, Listed, Selection};
use crate::telemetry::Metrics;
use crate::telemetry::progress::{self, Counts};
use notification::Bucket;
use send::{BATCH, BatchQueue, Pending, Sent};

/// Listed keys waiting for a batch.
const LISTED_QUEUE: usize = 1024;

/// What to backfill, and where to.
#[derive(Debug, Clone)]
pub struct Options {
    pub bucket: String,
    pub prefix: String,
    /// The time range (required by the command), accounts and regions.
    pub selection: Selection,
    /// The daemon's queue; `None` lists and counts without sending (`--dry-run`).
    pub queue_url: Option<String>,
    /// SendMessageBatch calls in flight at once.
    pub concurrency: usize,
    /// Show progress on stderr.
    pub progress: bool,
}

/// What a backfill did, printed to stderr.
#[derive(Debug, Default)]
pub struct Summary {
    pub bucket: String,
    /// The queue sent to; `None` for a dry run.
    pub queue_url: Option<String>,
    /// Objects queued (in a dry run: that would be).
    pub objects: u64,
    pub bytes: u64,
    /// Objects queued by the day their key names; `None` for keys outside CloudTrail's layout
    /// (only when the whole prefix is selected).
    pub days: BTreeMap<Option<NaiveDate>, u64>,
    /// SendMessageBatch calls, retries included (in a dry run: those it would make).
    pub calls: u64,
    /// Keys not queued, each with why.
    pub not_queued: Vec<(String, String)>,
    /// Listings that failed: objects under them may be missing.
    pub listing_errors: Vec<String>,
    /// Why the backfill stopped before the end of the range.
    pub stopped: Option<String>,
    pub list_calls: u64,
    pub prefixes_listed: u64,
    pub day_prefixes_listed: u64,
    /// Keys under the prefix outside CloudTrail's layout, not queued.
    pub outside_layout: u64,
    pub elapsed: Duration,
}

impl Summary {
    /// Whether anything in range may not be on the queue: exit status 1.
    pub fn failed(&self) -> bool {
        !self.not_queued.is_empty() || !self.listing_errors.is_empty() || self.stopped.is_some()
    }

    fn queued(&mut self, object: &Listed) {
        self.objects += 1;
        self.bytes += object.size;
        let day = listing::place(&object.key).map(|(_, _, day)| day);
        *self.days.entry(day).or_default() += 1;
    }

    fn not_queued(&mut self, object: &Listed, why: String) {
        self.not_queued.push((object.key.clone(), why));
    }

    fn absorb(&mut self, sent: Sent, counters: &Counters) {
        self.calls += sent.calls;
        counters.add(&counters.queued, sent.queued.len());
        counters.add(&counters.failed, sent.not_queued.len());
        for object in &sent.queued {
            self.queued(object);
        }
        for (object, why) in sent.not_queued {
            self.not_queued(&object, why);
        }
        if let Some(f) = sent.fatal
            && self.stopped.is_none()
        {
            self.stopped = Some(f.to_string());
        }
    }

    /// Writes the human summary: totals, the listing, the days, and every key not queued.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let mb = self.bytes as f64 / 1e6;
        match &self.queue_url {
            Some(url) => writeln!(
                out,
                "backfill: {} objects ({mb:.1} MB of logs) queued to {url} in {} SendMessageBatch calls, {secs:.2} s ({:.0} objects/s)",
                self.objects,
                self.calls,
                self.objects as f64 / secs
            )?,
            None => writeln!(
                out,
                "backfill (dry run): {} objects ({mb:.1} MB of logs) would be queued in {} SendMessageBatch calls; nothing was sent",
                self.objects, self.calls
            )?,
        }
        writeln!(
            out,
            "s3: {} ListObjectsV2 calls over {} prefixes ({} day prefixes)",
            self.list_calls, self.prefixes_listed, self.day_prefixes_listed
        )?;
        if self.outside_layout > 0 {
            writeln!(
                out,
                "  {} objects outside CloudTrail's key layout were not queued",
                self.outside_layout
            )?;
        }
        if !self.days.is_empty() {
            writeln!(out, "{:<12} {:>9}", "day", "objects")?;
            for (day, n) in &self.days {
                let day = day.map_or_else(|| "(no day)".to_owned(), |d| d.to_string());
                writeln!(out, "{day:<12} {n:>9}")?;
            }
        }
        for e in &self.listing_errors {
            writeln!(out, "error: {e}")?;
        }
        if let Some(why) = &self.stopped {
            writeln!(out, "stopped: {why}; the rest of the range was not queued")?;
        }
        if !self.not_queued.is_empty() {
            writeln!(
                out,
                "not queued: {} objects: {}",
                self.not_queued.len(),
                self.not_queued
                    .iter()
                    .map(|(key, _)| format!("s3://{}/{key}", self.bucket))
                    .collect::<Vec<_>>()
                    .join(" ")
            )?;
            for (key, why) in &self.not_queued {
                writeln!(out, "  s3://{}/{key}: {why}", self.bucket)?;
            }
        }
        Ok(())
    }
}

/// What the progress display reads.
#[derive(Default)]
pub struct Counters {
    /// What the listing found so far.
    pub listed: Arc<ListStats>,
    pub listing_done: AtomicBool,
    pub queued: AtomicU64,
    pub failed: AtomicU64,
}

impl Counters {
    fn add(&self, counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl Counts for Counters {
    fn done(&self) -> u64 {
        self.queued.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }

    fn total(&self) -> u64 {
        self.listed.objects.load(Ordering::Relaxed)
    }

    fn detail(&self, secs: f64) -> String {
        let queued = self.queued.load(Ordering::Relaxed);
        let listing = if self.listing_done.load(Ordering::Relaxed) {
            ""
        } else {
            " (listing)"
        };
        format!(
            "{queued} queued, {:.0}/s, {} not queued{listing}",
            queued as f64 / secs,
            self.failed.load(Ordering::Relaxed)
        )
    }
}

/// Lists the selection and queues every object's notification (or, without a queue, counts
/// them); returns the summary.
pub async fn run(options: &Options) -> Summary {
    let started = Instant::now();
    let metrics = Metrics::new();
    let (sdk, clients) = edge::connect(&metrics).await;
    let queue = options.queue_url.as_ref().map(|url| {
        Arc::new(edge::SqsBatches::new(&sdk, url.clone(), metrics.clone())) as Arc<dyn BatchQueue>
    });
    let bucket = Bucket {
        name: options.bucket.clone(),
        region: clients.region,
    };
    let counters = Arc::new(Counters::default());
    let (tx, rx) = mpsc::channel(LISTED_QUEUE);
    let lister = tokio::spawn(listing::stream(
        clients.s3,
        options.bucket.clone(),
        options.prefix.clone(),
        Arc::new(options.selection.clone()),
        Utc::now().date_naive(),
        counters.listed.clone(),
        tx,
    ));
    let finished = Arc::new(AtomicBool::new(false));
    let shown = options.progress.then(|| {
        let (counters, finished) = (counters.clone(), finished.clone());
        tokio::task::spawn_blocking(move || progress::show(&*counters, &finished))
    });
    let mut summary = deliver(rx, &bucket, queue, options.concurrency, &counters).await;
    // A listing still going has been told to stop by the closed channel.
    let _ = lister.await;
    counters.listing_done.store(true, Ordering::Relaxed);
    finished.store(true, Ordering::Relaxed);
    if let Some(shown) = shown {
        let _ = shown.await;
    }
    let listed = &counters.listed;
    summary.queue_url = options.queue_url.clone();
    summary.list_calls = listed.calls.load(Ordering::Relaxed);
    summary.prefixes_listed = listed.prefixes.load(Ordering::Relaxed);
    summary.day_prefixes_listed = listed.day_prefixes.load(Ordering::Relaxed);
    summary.outside_layout = listed.outside_layout.load(Ordering::Relaxed);
    summary.elapsed = started.elapsed();
    summary
}

/// Turns listed objects into notifications and sends them in batches of [`BATCH`], up to
/// `concurrency` batches at once, until `listed` ends or a batch meets a failure no batch can
/// get past; without a queue, only counts what it would send. Every object received is in the
/// summary, queued or not.
pub async fn deliver(
    mut listed: mpsc::Receiver<Result<Listed, SourceError>>,
    bucket: &Bucket,
    queue: Option<Arc<dyn BatchQueue>>,
    concurrency: usize,
    counters: &Counters,
) -> Summary {
    let mut summary = Summary {
        bucket: bucket.name.clone(),
        ..Summary::default()
    };
    let now = Utc::now();
    let mut batch: Vec<Pending> = Vec::with_capacity(BATCH);
    let mut running = JoinSet::new();
    // The objects of each batch in flight, so a sending task that panicked still has its
    // objects reported.
    let mut in_flight: HashMap<tokio::task::Id, Vec<Listed>> = HashMap::new();
    loop {
        let next = if summary.stopped.is_some() {
            None
        } else {
            listed.recv().await
        };
        let last = match next {
            Some(Ok(object)) => {
                let body = notification::body(bucket, &object, now);
                batch.push(Pending { object, body });
                false
            }
            Some(Err(e)) => {
                summary.listing_errors.push(e.to_string());
                false
            }
            None => true,
        };
        if batch.len() == BATCH || (last && !batch.is_empty()) {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            match &queue {
                Some(_) if summary.stopped.is_some() => {
                    let why = "not sent: the backfill stopped";
                    for p in &full {
                        summary.not_queued(&p.object, why.to_owned());
                    }
                }
                Some(queue) => {
                    while running.len() >= concurrency.max(1) {
                        let done = running.join_next_with_id().await;
                        finish(done, &mut in_flight, &mut summary, counters);
                    }
                    let objects = full.iter().map(|p| p.object.clone()).collect();
                    let queue = queue.clone();
                    let task =
                        running.spawn(async move { send::batch(queue.as_ref(), full).await });
                    in_flight.insert(task.id(), objects);
                }
                None => {
                    summary.calls += 1;
                    for p in &full {
                        summary.queued(&p.object);
                    }
                    counters.add(&counters.queued, full.len());
                }
            }
        }
        while let Some(done) = running.try_join_next_with_id() {
            finish(Some(done), &mut in_flight, &mut summary, counters);
        }
        if last {
            break;
        }
    }
    // Closing the channel tells the listing to stop, when the backfill stopped early.
    drop(listed);
    while let Some(done) = running.join_next_with_id().await {
        finish(Some(done), &mut in_flight, &mut summary, counters);
    }
    summary
}

/// Adds a finished batch to the summary.
fn finish(
    done: Option<Result<(tokio::task::Id, Sent), tokio::task::JoinError>>,
    in_flight: &mut HashMap<tokio::task::Id, Vec<Listed>>,
    summary: &mut Summary,
    counters: &Counters,
) {
    match done {
        None => {}
        Some(Ok((id, sent))) => {
            in_flight.remove(&id);
            summary.absorb(sent, counters);
        }
        Some(Err(e)) => {
            let objects = in_flight.remove(&e.id()).unwrap_or_default();
            counters.add(&counters.failed, objects.len());
            for object in &objects {
                summary.not_queued(object, format!("the task sending it failed: {e}"));
            }
        }
    }
}
