//! CloudTrail's event history in one region (LookupEvents) → pages of `lookup-events`
//! documents, for `scan`.
//!
//! An account keeps 90 days of management events in each region, readable with or without a
//! trail. LookupEvents gives at most 50 events a call and allows 2 calls per second per account
//! and region; a faster caller gets ThrottlingException.
//! <https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_LookupEvents.html>
//!
//! Each page is handed on as the bytes of `{"Events":[{"EventId":...,"CloudTrailEvent":"..."}]}`,
//! the shape `aws cloudtrail lookup-events` prints, so it goes through the same reader, shape
//! and rules as an exported file; no SDK type leaves this module. The client paces its own
//! requests ([`aws::cloudtrail_paced_client`]), the SDK's retries of a throttled call included.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use aws_config::SdkConfig;
use serde::Serialize;
use tokio::sync::mpsc;

use super::SourceError;
use super::listing::TimeRange;
use crate::aws::{self, Answer, Edge};

/// One call per this, per region: LookupEvents' documented limit of 2 calls per second.
pub const CALL_EVERY: Duration = Duration::from_millis(500);
/// Events per call: LookupEvents' maximum.
pub const PAGE_SIZE: i32 = 50;
/// The permission LookupEvents needs, named when it is refused.
pub const PERMISSION: &str = "cloudtrail:LookupEvents";

/// One LookupEvents answer, as a `lookup-events` document.
#[derive(Debug)]
pub struct Page {
    /// Its number in the region's read, from 1.
    pub number: u64,
    /// Events in it.
    pub events: u64,
    /// `{"Events":[...]}`: each event's EventId and its CloudTrailEvent string (the whole
    /// record), as CloudTrail gave them.
    pub body: Vec<u8>,
}

/// What a region's read did so far, for progress and the summary.
#[derive(Debug, Default)]
pub struct Stats {
    pub pages: AtomicU64,
    pub events: AtomicU64,
    /// Set when the read ended, done or failed.
    pub done: AtomicBool,
}

/// The event history of one region.
pub struct EventHistory {
    client: aws_sdk_cloudtrail::Client,
    region: String,
}

/// The part of an event a page document keeps.
#[derive(Serialize)]
struct Entry<'a> {
    #[serde(rename = "EventId", skip_serializing_if = "Option::is_none")]
    event_id: Option<&'a str>,
    #[serde(rename = "CloudTrailEvent", skip_serializing_if = "Option::is_none")]
    cloudtrail_event: Option<&'a str>,
}

#[derive(Serialize)]
struct Document<'a> {
    #[serde(rename = "Events")]
    events: Vec<Entry<'a>>,
}

impl EventHistory {
    /// The event history of `region`, read with `sdk`'s credentials and endpoint.
    pub fn new(sdk: &SdkConfig, region: &str) -> EventHistory {
        EventHistory {
            client: aws::cloudtrail_paced_client(sdk, region, CALL_EVERY),
            region: region.to_owned(),
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Reads every event of `range` (`from` as StartTime, `to` as EndTime; unset reads all 90
    /// days), newest first as CloudTrail returns them, and sends each page to `out`. A failed
    /// call is sent as the last item: the pages after it cannot be asked for. Returns when
    /// done, failed, or `out` is closed.
    pub async fn read(
        &self,
        range: &TimeRange,
        stats: &Stats,
        out: mpsc::Sender<Result<Page, SourceError>>,
    ) {
        let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map(|t| {
                aws_smithy_types::DateTime::from_secs_and_nanos(
                    t.timestamp(),
                    t.timestamp_subsec_nanos(),
                )
            })
        };
        let mut token: Option<String> = None;
        let mut number = 0;
        loop {
            let answer = self
                .client
                .lookup_events()
                .set_start_time(time(range.from))
                .set_end_time(time(range.to))
                .max_results(PAGE_SIZE)
                .set_next_token(token.take())
                .send()
                .await;
            let answer = match answer {
                Ok(answer) => answer,
                Err(e) => {
                    let _ = out.send(Err(self.failed(&e))).await;
                    break;
                }
            };
            number += 1;
            let events: Vec<Entry<'_>> = answer
                .events()
                .iter()
                .map(|e| Entry {
                    event_id: e.event_id(),
                    cloudtrail_event: e.cloud_trail_event(),
                })
                .collect();
            let page = Page {
                number,
                events: events.len() as u64,
                body: serde_json::to_vec(&Document { events }).expect("strings serialize to JSON"),
            };
            stats.pages.fetch_add(1, Ordering::Relaxed);
            stats.events.fetch_add(page.events, Ordering::Relaxed);
            if out.send(Ok(page)).await.is_err() {
                break;
            }
            // CloudTrail ends a read without a token (an empty one has been seen in SDKs'
            // paginators too).
            match answer.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => break,
            }
        }
        stats.done.store(true, Ordering::Relaxed);
    }

    /// A failed call, named with the region; a refusal also names the permission it needs.
    fn failed<E, R>(&self, e: &aws_sdk_cloudtrail::error::SdkError<E, R>) -> SourceError
    where
        E: aws::OperationError,
        R: aws::HttpStatus + std::fmt::Debug + 'static,
    {
        let region = &self.region;
        let mut failed = aws::failed(
            Edge::Object,
            &format!("CloudTrail LookupEvents in {region}"),
            e,
        );
        if failed.answer == Answer::Denied {
            failed.sentence.push_str(&format!(
                " (reading the event history needs the {PERMISSION} permission in {region})"
            ));
        }
        SourceError::EventHistory(failed)
    }
}
