//! An S3 prefix → fetched log object bodies for the scan's worker threads.
//!
//! The listing streams keys into a bounded channel while up to `concurrency` GetObjects run
//! at once on the runtime; each fetched body waits in the workers' bounded channel. So the
//! network wait overlaps the inflating and evaluating, and memory holds at most a few
//! channels' worth of keys and bodies, whatever the number of objects.

use std::io::Read;
use std::sync::Arc;

use chrono::Utc;
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::intake::listing::{self, ListStats, Selection};
use crate::intake::{LogSource, SourceError, s3};

/// Listed keys waiting for a fetch slot.
const LISTED_QUEUE: usize = 1024;

/// One object for a worker: its body, or why it (or a listing) could not be read.
pub struct Fetched {
    /// Its place among the objects of the scan's S3 prefixes, from 0: the order the listing
    /// yielded it. Every number is sent once, a failed fetch or listing included.
    pub seq: usize,
    pub source: LogSource,
    pub body: Result<Box<dyn Read + Send>, SourceError>,
}

/// How the objects of a prefix are numbered for printing in order.
pub struct Order {
    /// The number of the first object listed.
    pub first: usize,
    /// One permit per object numbered and not yet printed; the printer adds one back per
    /// object it prints. A key waits for a permit before it is numbered and fetched, so the
    /// bodies and alerts held for an earlier, slower object stay bounded.
    pub window: Arc<Semaphore>,
}

/// Lists `s3://bucket/prefix` as `selection` says and sends every object's body to `out`,
/// numbered from `order.first` in the order listed, with at most `concurrency` GetObjects in
/// flight. Returns when all were sent, with the number after the last one.
#[allow(clippy::too_many_arguments)]
pub async fn feed(
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    selection: Arc<Selection>,
    concurrency: usize,
    stats: Arc<ListStats>,
    out: mpsc::Sender<Fetched>,
    order: Order,
) -> usize {
    let (tx, mut rx) = mpsc::channel(LISTED_QUEUE);
    let lister = tokio::spawn(listing::stream(
        client.clone(),
        bucket.clone(),
        prefix.clone(),
        selection,
        Utc::now().date_naive(),
        stats,
        tx,
    ));
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut fetches = JoinSet::new();
    let mut seq = order.first;
    while let Some(listed) = rx.recv().await {
        order
            .window
            .acquire()
            .await
            .expect("the print window is never closed")
            .forget();
        let this = seq;
        seq += 1;
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the fetch semaphore is never closed");
        while fetches.try_join_next().is_some() {}
        let listed = match listed {
            Ok(listed) => listed,
            Err(e) => {
                // A listing that failed is reported as a source that failed: the scan's
                // exit status then says that objects may have been missed.
                let source = LogSource::S3 {
                    bucket: bucket.clone(),
                    key: prefix.clone(),
                };
                let _ = out
                    .send(Fetched {
                        seq: this,
                        source,
                        body: Err(e),
                    })
                    .await;
                continue;
            }
        };
        let (client, bucket, out) = (client.clone(), bucket.clone(), out.clone());
        fetches.spawn(async move {
            let body = s3::fetch(&client, &bucket, &listed.key, Handle::current()).await;
            let source = LogSource::S3 {
                bucket,
                key: listed.key,
            };
            // The slot is held until a worker's queue took the body, so bodies in memory
            // stay bounded by the slots plus that queue.
            let _ = out
                .send(Fetched {
                    seq: this,
                    source,
                    body,
                })
                .await;
            drop(slot);
        });
    }
    while fetches.join_next().await.is_some() {}
    let _ = lister.await;
    seq
}
