//! How findings leave: the messages people receive (a page when an incident opens, a
//! follow-up when its window ends with more alerts, a finding when a posture check first
//! fails for a resource, a resolution when a later check no longer finds it) and the [`Sink`]
//! seam every output implements.
//!
//! The daemon deletes a queue message only after every sink accepted what came from it, so a
//! sink's error says whether the sink is unavailable (hold the work and retry), refused this
//! message (it will never be accepted), or may have taken it after all.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// How many alerts the page carried, and its first event time (RFC 3339): with the
    /// follow-up's own, the incident's whole span. Zero and `None` for incidents recorded
    /// before they were kept.
    #[serde(default)]
    pub paged_count: u64,
    #[serde(default)]
    pub paged_first_time: Option<String>,
    /// The rule's tags (ATT&CK and CIS), as the page's alerts carried them.
    #[serde(default)]
    pub tags: Vec<String>,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// Longest text kept in a field of a message held for delivery: record fields such as a user
/// agent are set by the caller and could otherwise fill a stored delivery or a message.
pub const MAX_FIELD_CHARS: usize = 1024;

/// `text` cut to [`MAX_FIELD_CHARS`] characters, marked where it was cut.
pub fn shorten(text: &mut String) {
    if let Some((at, _)) = text.char_indices().nth(MAX_FIELD_CHARS) {
        text.truncate(at);
        text.push('…');
    }
}

/// A page as it is held for delivery: owned, with long record fields shortened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageMessage {
    pub incident_id: String,
    pub fold: Fold,
    pub next_steps: Vec<String>,
}

/// A standing finding's first message as it is held for delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingMessage {
    pub incident_id: String,
    pub finding: Standing,
}

/// Any message, owned: what an output delivers, and what the outbox holds until it has.
/// Every message is one of an incident's, so `<incident id>:<kind>` names it for good: a repeat
/// carries the same id in every output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Message {
    Page(PageMessage),
    FollowUp(FollowUp),
    Finding(FindingMessage),
    Resolved(Resolved),
}

impl Message {
    /// A page, owned, its listed alerts' free-text fields shortened.
    pub fn page(page: Page<'_>) -> Message {
        let mut fold = page.fold.clone();
        for a in &mut fold.alerts {
            for field in [
                &mut a.user_agent,
                &mut a.principal_arn,
                &mut a.source_ip,
                &mut a.event_name,
                &mut a.error_code,
            ]
            .into_iter()
            .flatten()
            {
                shorten(field);
            }
            shorten(&mut a.summary);
        }
        Message::Page(PageMessage {
            incident_id: page.incident_id.to_owned(),
            fold,
            next_steps: page.next_steps.to_vec(),
        })
    }

    pub fn finding(opened: Opened<'_>) -> Message {
        let mut finding = opened.finding.clone();
        shorten(&mut finding.evidence);
        Message::Finding(FindingMessage {
            incident_id: opened.incident_id.to_owned(),
            finding,
        })
    }

    /// `page`, `follow-up`, `finding` or `resolved`.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Page(_) => "page",
            Message::FollowUp(_) => "follow-up",
            Message::Finding(_) => "finding",
            Message::Resolved(_) => "resolved",
        }
    }

    pub fn incident_id(&self) -> &str {
        match self {
            Message::Page(p) => &p.incident_id,
            Message::FollowUp(f) => &f.incident_id,
            Message::Finding(f) => &f.incident_id,
            Message::Resolved(r) => &r.incident_id,
        }
    }

    /// The message's stable id, the same in every output and on every repeat.
    pub fn id(&self) -> String {
        format!("{}:{}", self.incident_id(), self.kind())
    }

    /// The incident's level.
    pub fn level(&self) -> Level {
        match self {
            Message::Page(p) => p.fold.level(),
            Message::FollowUp(f) => f.level,
            Message::Finding(f) => f.finding.level,
            Message::Resolved(r) => r.finding.level,
        }
    }

    /// The rule, or the check of a standing finding.
    pub fn rule(&self) -> &str {
        match self {
            Message::Page(p) => &p.fold.key.rule,
            Message::FollowUp(f) => &f.key.rule,
            Message::Finding(f) => &f.finding.check,
            Message::Resolved(r) => &r.finding.check,
        }
    }

    /// The account the incident is in.
    pub fn account(&self) -> &str {
        match self {
            Message::Page(p) => &p.fold.key.account,
            Message::FollowUp(f) => &f.key.account,
            Message::Finding(f) => &f.finding.account,
            Message::Resolved(r) => &r.finding.account,
        }
    }
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
