//! `scan --event-history`: regions → their event history's pages for the worker threads, as
//! if each page were a fetched object.
//!
//! Every region is read at once, each at LookupEvents' own pace (see
//! [`event_history`](crate::intake::event_history)). Pages are numbered as they arrive, so
//! within a region they print in CloudTrail's order (newest first) while regions interleave as
//! their answers come; `--sort time` gives one order for all. Pages numbered and not yet
//! printed hold a permit of the print window, as S3 objects do, so a slow worker holds back
//! the reads, never memory.

use std::io::{Cursor, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_config::SdkConfig;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::ScanError;
use super::remote::{Fetched, Order};
use crate::intake::LogSource;
use crate::intake::event_history::{EventHistory, Stats};
use crate::intake::listing::TimeRange;

/// One region to read, and what its read did so far.
pub struct Region {
    pub history: Arc<EventHistory>,
    pub stats: Arc<Stats>,
}

/// The regions to read: `regions` as given (each once), or the SDK's own region when none
/// is. Fails as the rest of the CLI does when nothing could be read at all: no region, or
/// no credentials anywhere the SDK's chain looks.
pub async fn connect(sdk: &SdkConfig, regions: &[String]) -> Result<Vec<Region>, ScanError> {
    let mut names: Vec<String> = Vec::new();
    for region in regions {
        if !names.contains(region) {
            names.push(region.clone());
        }
    }
    if names.is_empty() {
        names.push(sdk.region().ok_or(ScanError::NoRegion)?.as_ref().to_owned());
    }
    crate::daemon::start::check_credentials(sdk)
        .await
        .map_err(ScanError::Credentials)?;
    Ok(names
        .iter()
        .map(|name| Region {
            history: Arc::new(EventHistory::new(sdk, name)),
            stats: Arc::new(Stats::default()),
        })
        .collect())
}

/// Pages a region's read may run ahead of the workers before it waits.
const PAGES_AHEAD: usize = 2;

/// Reads every region's history of `range` and sends its pages to `out`, numbered from
/// `order.first`; a region whose call failed sends the failure in its place, and its read
/// ends there. Returns when every region is done, with the number after the last one.
pub async fn feed(
    regions: &[Region],
    range: TimeRange,
    out: mpsc::Sender<Fetched>,
    order: Order,
) -> usize {
    let next = Arc::new(AtomicUsize::new(order.first));
    let mut reads = JoinSet::new();
    for region in regions {
        let (history, stats) = (region.history.clone(), region.stats.clone());
        let (out, window, next) = (out.clone(), order.window.clone(), next.clone());
        reads.spawn(async move {
            let (tx, mut rx) = mpsc::channel(PAGES_AHEAD);
            let read = history.read(&range, &stats, tx);
            let forward = async {
                let mut last = 0;
                while let Some(page) = rx.recv().await {
                    window
                        .acquire()
                        .await
                        .expect("the print window is never closed")
                        .forget();
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    let (number, body) = match page {
                        Ok(page) => (
                            page.number,
                            Ok(Box::new(Cursor::new(page.body)) as Box<dyn Read + Send>),
                        ),
                        // The call that failed would have read the next page.
                        Err(e) => (last + 1, Err(e)),
                    };
                    last = number;
                    let source = LogSource::EventHistory {
                        region: history.region().to_owned(),
                        page: number,
                    };
                    let _ = out.send(Fetched { seq, source, body }).await;
                }
            };
            tokio::join!(read, forward);
        });
    }
    while reads.join_next().await.is_some() {}
    next.load(Ordering::Relaxed)
}
