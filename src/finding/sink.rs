//! How findings leave: the messages people receive (a page when an incident opens, a
//! follow-up when its window ends with more alerts, a finding when a posture check first
//! fails for a resource, a resolution when a later check no longer finds it) and the [`Sink`]
//! seam every output implements.
//!
//! The daemon deletes a queue message only after every sink accepted what came from it, so a
//! sink's error says whether the sink is unavailable (hold the work and retry), refused this
//! message (it will never be accepted), or may have taken it after all.

use async_trait::async_trait;
use serde::Serialize;

use super::fold::{Fold, Stats};
use super::{IncidentKey, Level, Standing};
use crate::aws::Failed;

/// The first message of an incident.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    pub incident_id: &'a str,
    /// The alerts of the source that opened the incident.
    pub fold: &'a Fold,
    /// What to do about it, from the rule.
    pub next_steps: &'a [String],
}

/// The one message that closes an incident's window: what happened after the page.
#[derive(Debug, Clone, Serialize)]
pub struct FollowUp {
    pub incident_id: String,
    pub key: IncidentKey,
    pub title: String,
    pub level: Level,
    /// What to do, as the page said.
    pub next_steps: Vec<String>,
    /// The page's summary sentence.
    pub paged_summary: String,
    /// When the page went out, epoch seconds.
    pub paged_at: i64,
    /// The alerts folded into the incident after the page.
    pub stats: Stats,
    /// How many log files or events they came from.
    pub sources: usize,
}

/// The message that opens a standing finding: the first time a check fails for a resource.
#[derive(Debug, Clone, Copy)]
pub struct Opened<'a> {
    pub incident_id: &'a str,
    pub finding: &'a Standing,
}

/// The message that closes a standing finding: a check that evaluated its resource no longer
/// finds it.
#[derive(Debug, Clone, Serialize)]
pub struct Resolved {
    pub incident_id: String,
    /// The finding as it was opened.
    pub finding: Standing,
    /// When the finding was opened and when it was seen fixed, epoch seconds.
    pub opened_at: i64,
    pub resolved_at: i64,
    /// What saw it fixed: the scheduled audit, or a re-check after an event.
    pub by: String,
}

/// A message a sink could not take, classified at the [`Edge::Sink`](crate::aws::Edge::Sink)
/// edge: whether the sink is unavailable, refused this message, or is misconfigured, and
/// whether it may have taken the message after all.
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct SinkError(#[from] pub Failed);

/// Where pages, follow-ups, findings and resolutions go.
#[async_trait]
pub trait Sink: Send + Sync {
    async fn page(&self, page: Page<'_>) -> Result<(), SinkError>;
    async fn follow_up(&self, follow_up: &FollowUp) -> Result<(), SinkError>;
    async fn finding(&self, finding: Opened<'_>) -> Result<(), SinkError>;
    async fn resolved(&self, resolved: &Resolved) -> Result<(), SinkError>;
}
