//! The scan's counters → a progress bar on stderr when it is a terminal (indicatif), else
//! one progress line every few seconds, so a long scan of a bucket is never silent.

use std::io::{self, IsTerminal};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::intake::event_history;
use crate::intake::listing::ListStats;

/// How often a progress line is written when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(5);
/// How often the bar is redrawn.
const BAR_EVERY: Duration = Duration::from_millis(200);

/// Counters the workers and listings update, read by [`Progress::run`].
#[derive(Default)]
pub struct Progress {
    /// Local files to read, known before the scan starts.
    pub local_files: AtomicU64,
    /// What S3 listings found so far.
    pub listed: Arc<ListStats>,
    /// Set once every listing has ended: the total is then known.
    pub listing_done: AtomicBool,
    /// The event history's reads, by region.
    pub history: Vec<(String, Arc<event_history::Stats>)>,
    pub files_done: AtomicU64,
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub alerts: AtomicU64,
}

impl Progress {
    /// Counts one file read.
    pub fn file_done(&self, records: u64, bytes: u64, alerts: u64) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.alerts.fetch_add(alerts, Ordering::Relaxed);
    }

    fn total(&self) -> u64 {
        let pages: u64 = self
            .history
            .iter()
            .map(|(_, s)| s.pages.load(Ordering::Relaxed))
            .sum();
        self.local_files.load(Ordering::Relaxed)
            + self.listed.objects.load(Ordering::Relaxed)
            + pages
    }

    /// Shows progress until `finished` is set; then clears the bar (the summary follows).
    pub fn run(&self, finished: &AtomicBool) {
        let started = Instant::now();
        if io::stderr().is_terminal() {
            self.bar(finished, started);
        } else {
            self.lines(finished, started);
        }
    }

    fn bar(&self, finished: &AtomicBool, started: Instant) {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{spinner}} {{elapsed_precise}} [{{wide_bar}}] {{pos}}/{{len}} {}  {{msg}}  ETA {{eta}}",
                self.unit()
            ))
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        while !finished.load(Ordering::Relaxed) {
            bar.set_length(self.total());
            bar.set_position(self.files_done.load(Ordering::Relaxed));
            bar.set_message(self.message(started));
            std::thread::park_timeout(BAR_EVERY);
        }
        bar.finish_and_clear();
    }

    fn lines(&self, finished: &AtomicBool, started: Instant) {
        let mut next = started + LINE_EVERY;
        while !finished.load(Ordering::Relaxed) {
            if Instant::now() >= next {
                eprintln!(
                    "progress: {}/{} {}, {}, {:.0} s",
                    self.files_done.load(Ordering::Relaxed),
                    self.total(),
                    self.unit(),
                    self.message(started),
                    started.elapsed().as_secs_f64()
                );
                next += LINE_EVERY;
            }
            std::thread::park_timeout(BAR_EVERY);
        }
    }

    /// What the inputs are: objects (files count too), or the event history's pages.
    fn unit(&self) -> &'static str {
        if self.history.is_empty() {
            "objects"
        } else {
            "pages"
        }
    }

    fn message(&self, started: Instant) -> String {
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        let mb = self.bytes.load(Ordering::Relaxed) as f64 / 1e6;
        let listing = if self.listing_done.load(Ordering::Relaxed) {
            ""
        } else {
            " (listing)"
        };
        let mut message = format!(
            "{} records, {:.1} MB/s, {} alerts{listing}",
            self.records.load(Ordering::Relaxed),
            mb / secs,
            self.alerts.load(Ordering::Relaxed)
        );
        // Per region: pages and events read so far, and which are still reading.
        for (region, stats) in &self.history {
            message.push_str(&format!(
                "; {region}: {} pages, {} events{}",
                stats.pages.load(Ordering::Relaxed),
                stats.events.load(Ordering::Relaxed),
                if stats.done.load(Ordering::Relaxed) {
                    ""
                } else {
                    " (reading)"
                }
            ));
        }
        message
    }
}
