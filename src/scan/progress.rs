//! The scan's counters, shown on stderr by [`telemetry::progress`](crate::telemetry::progress).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::intake::event_history;
use crate::intake::listing::ListStats;
use crate::telemetry::progress::{self, Counts};

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

    /// Shows progress until `finished` is set; then clears the bar (the summary follows).
    pub fn run(&self, finished: &AtomicBool) {
        progress::show(self, finished);
    }
}

impl Counts for Progress {
    /// What the inputs are: objects (files count too), or the event history's pages.
    fn unit(&self) -> &'static str {
        if self.history.is_empty() {
            "objects"
        } else {
            "pages"
        }
    }

    fn done(&self) -> u64 {
        self.files_done.load(Ordering::Relaxed)
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

    fn detail(&self, secs: f64) -> String {
        let mb = self.bytes.load(Ordering::Relaxed) as f64 / 1e6;
        let listing = if self.listing_done.load(Ordering::Relaxed) {
            ""
        } else {
            " (listing)"
        };
        let mut detail = format!(
            "{} records, {:.1} MB/s, {} alerts{listing}",
            self.records.load(Ordering::Relaxed),
            mb / secs,
            self.alerts.load(Ordering::Relaxed)
        );
        // Per region: pages and events read so far, and which are still reading.
        for (region, stats) in &self.history {
            detail.push_str(&format!(
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
        detail
    }
}
