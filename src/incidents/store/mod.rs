//! The state that makes "page once" hold across files, restarts and tasks: incidents and their
//! page claims, folded alerts awaiting a follow-up, correlation windows, the standing findings
//! still open, and the lease that lets one task at a time audit an account.
//!
//! Two implementations share one contract:
//! - [`memory::MemoryStore`]: one task, nothing to set up; state is lost on restart.
//! - [`dynamo::DynamoStore`]: a DynamoDB table every task of a service shares, surviving
//!   restarts and deploys.
//!
//! The contract is built from idempotent and conditional steps, so that at-least-once
//! delivery is safe: a page is *claimed* before it is published and *confirmed* after, a
//! claim left by a crashed task expires, folded alerts are written per source (a redelivered
//! object overwrites its own part), and correlation events are keyed by eventID. Expired
//! entries may still be read (DynamoDB's TTL deletes lazily), so every read compares expiry
//! times itself.

pub mod dynamo;
pub mod memory;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::correlate::Span;
use crate::aws::Failed;
use crate::finding::correlation::CorrEvent;
use crate::finding::fold::Stats;
use crate::finding::{IncidentKey, Level, Standing};

/// A request to page an incident, held by one message's work.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The id the incident gets if this claim opens it.
    pub incident_id: String,
    /// Who holds the claim: the task and the message, for logs and conditional updates.
    pub owner: String,
    /// The source being paged from (an object or an event).
    pub source: String,
    /// Now, epoch seconds.
    pub now: i64,
    /// How long the claim holds before another task may take it over (publish timeouts fit
    /// well inside it).
    pub lease_secs: i64,
}

/// An incident that has paged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Open {
    pub incident_id: String,
    /// The source whose alerts the page carried.
    pub paged_by: String,
    /// When the page was accepted, epoch seconds.
    pub paged_at: i64,
    /// Until when further alerts fold into this incident, epoch seconds.
    pub window_end: i64,
    /// The page's summary sentence, repeated in the follow-up.
    pub summary: String,
    /// The eventIDs the page listed: the same events arriving again (another trail's file,
    /// the other path) are not counted as more alerts.
    #[serde(default)]
    pub event_ids: Vec<String>,
    /// What the page said the incident is: its title, level and next steps, so its follow-up
    /// says the same whatever raised it (a rule, a damaged file, a posture check) and whatever
    /// rules the sending task loaded. Absent from records written before they were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
}

/// The description every kind of finding carries, for the messages about its incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub title: String,
    pub level: Level,
    #[serde(default)]
    pub next_steps: Vec<String>,
    /// The rule's tags (ATT&CK and CIS), for outputs that classify by them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// How many alerts the page carried.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub count: u64,
    /// The page's first event time, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_time: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claimed {
    /// This claim holds the page: publish it under `incident_id`, then confirm with
    /// [`Store::paged`] or give it up with [`Store::release`]. The id is the claim's own, or
    /// the one held by an expired claim (a task that stopped between its publish and its
    /// record) or by this owner's earlier claim: a repeat of that page carries the same
    /// incident and message ids, so a subscriber can drop it.
    Won { incident_id: String },
    /// The incident already paged; further alerts fold into it.
    Open(Open),
    /// Another claim is publishing this incident's page right now.
    Busy { owner: String, until: i64 },
}

/// What one source added to an open incident after its page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Part {
    pub source: String,
    pub stats: Stats,
    /// The eventIDs of the listed alerts, so the same event seen on two paths or in two
    /// trails' files is counted once where possible.
    pub event_ids: Vec<String>,
}

/// An incident whose window has ended with folded alerts: its follow-up is due.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Due {
    pub key: IncidentKey,
    pub incident: Open,
    /// When the follow-up may go out, epoch seconds.
    pub due_at: i64,
}

/// How long a standing finding's incident stays open without being resolved: for good, in
/// practice. Only a check that evaluates its resource again and no longer finds it closes it.
pub const STANDING_OPEN_SECS: i64 = 10 * 365 * 24 * 3600;

/// A standing finding that paged and is open until a check no longer finds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenFinding {
    pub incident_id: String,
    /// The finding as its message described it.
    pub finding: Standing,
    /// When its message was accepted, epoch seconds.
    pub opened_at: i64,
}

impl OpenFinding {
    /// The incident record that keeps the finding's claim answered as open: a later audit
    /// that finds it again pages nothing.
    pub fn incident(&self, source: &str) -> Open {
        Open {
            incident_id: self.incident_id.clone(),
            paged_by: source.to_owned(),
            paged_at: self.opened_at,
            window_end: self.opened_at + STANDING_OPEN_SECS,
            summary: self.finding.evidence.clone(),
            event_ids: Vec::new(),
            meta: Some(Meta {
                title: self.finding.title.clone(),
                level: self.finding.level,
                next_steps: self.finding.next_steps.clone(),
                tags: Vec::new(),
                count: 0,
                first_time: None,
            }),
        }
    }
}

/// A state store call failed, classified at the [`Edge::Store`](crate::aws::Edge::Store) edge.
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct StoreError(#[from] pub Failed);

/// The shared state's operations. Every method is idempotent or conditional: calling it again
/// after a failure, or from another task, never pages twice or counts twice.
#[async_trait]
pub trait Store: Send + Sync {
    /// Claims the page of `key`'s incident, unless it is open (paged, within its window) or
    /// another owner's unexpired claim holds it. A claim by the same owner, or an expired one,
    /// is taken over with the incident id it holds.
    async fn claim(&self, key: &IncidentKey, claim: &Claim) -> Result<Claimed, StoreError>;

    /// Records that the claimed page was accepted downstream; the incident is open until
    /// `incident.window_end`.
    async fn paged(
        &self,
        key: &IncidentKey,
        claim: &Claim,
        incident: &Open,
    ) -> Result<(), StoreError>;

    /// Gives up a claim whose page failed, so the retry (or another task) can page.
    async fn release(&self, key: &IncidentKey, claim: &Claim) -> Result<(), StoreError>;

    /// Adds one source's alerts to an open incident and schedules its follow-up for `due_at`,
    /// in one atomic step: the part is stored exactly when the schedule lists its source.
    /// Writing the same source again replaces its part and answers as the first write did,
    /// even after the follow-up was taken (a retry after a lost reply). False when the
    /// follow-up was already taken for sending without this part: the incident is closed, and
    /// these alerts belong to a new one. Either way an alert is counted by one incident.
    async fn fold(&self, due: &Due, part: &Part) -> Result<bool, StoreError>;

    /// Follow-ups due at `now`, oldest first. `lookback_hours` bounds how far back to look for
    /// ones that nobody sent (all tasks stopped).
    async fn due(&self, now: i64, lookback_hours: i64) -> Result<Vec<Due>, StoreError>;

    /// Takes a due follow-up for sending; false if another task holds it.
    async fn take_follow_up(
        &self,
        due: &Due,
        owner: &str,
        now: i64,
        lease_secs: i64,
    ) -> Result<bool, StoreError>;

    /// Gives back a follow-up taken by `owner` whose publish failed, so the next sweep (of any
    /// task) sends it without waiting out the lease.
    async fn give_back_follow_up(&self, due: &Due, owner: &str) -> Result<(), StoreError>;

    /// The parts folded into a due incident.
    async fn parts(&self, due: &Due) -> Result<Vec<Part>, StoreError>;

    /// Records that the follow-up was accepted downstream. Its schedule stays, marked sent,
    /// so a late fold finds the incident closed rather than scheduling a second follow-up.
    async fn followed_up(&self, due: &Due) -> Result<(), StoreError>;

    /// Adds events to a correlation group; an eventID already there is not added twice.
    async fn add_events(
        &self,
        group: &str,
        events: &[CorrEvent],
        expires_at: i64,
    ) -> Result<(), StoreError>;

    /// A group's events with event time in `from..=to`, and the committed fires that end at or
    /// after `from`.
    async fn window(
        &self,
        group: &str,
        from: i64,
        to: i64,
    ) -> Result<(Vec<CorrEvent>, Vec<Span>), StoreError>;

    /// Records a fire whose alert was accepted downstream: its events are consumed.
    async fn fired(&self, group: &str, span: Span, expires_at: i64) -> Result<(), StoreError>;

    /// Records that a standing finding's claimed message was accepted: its incident is open
    /// (see [`OpenFinding::incident`]) and the finding is listed under its check and account,
    /// in one step.
    async fn finding_opened(&self, claim: &Claim, finding: &OpenFinding) -> Result<(), StoreError>;

    /// The open findings of one check in one account.
    async fn open_findings(
        &self,
        account: &str,
        check: &str,
    ) -> Result<Vec<OpenFinding>, StoreError>;

    /// Takes the resolution of an open finding for `owner`, for `lease_secs`: false when it is
    /// no longer open under this incident id, or another owner's unexpired take holds it. Of
    /// two tasks that see the same fix at once (an audit and a re-check), one says so.
    async fn take_resolution(
        &self,
        finding: &OpenFinding,
        owner: &str,
        now: i64,
        lease_secs: i64,
    ) -> Result<bool, StoreError>;

    /// Closes a finding whose resolution was accepted: its incident and its listing go, in one
    /// step, unless the incident has been opened again under another id meanwhile. The same
    /// finding coming back later claims and pages anew.
    async fn finding_resolved(&self, finding: &OpenFinding) -> Result<(), StoreError>;

    /// Takes the account's audit if it is due at `now` and nobody holds it: true when this
    /// `owner` should audit now. It holds for `hold_secs`, so a task that stops mid-audit
    /// leaves it to another soon.
    async fn take_audit(
        &self,
        account: &str,
        owner: &str,
        now: i64,
        hold_secs: i64,
    ) -> Result<bool, StoreError>;

    /// Records `owner`'s audit as done: the next is due at `next_due`, whichever task restarts
    /// or shares the table meanwhile.
    async fn audited(&self, account: &str, owner: &str, next_due: i64) -> Result<(), StoreError>;

    /// Whether the log object `source` (`s3://bucket/key`) was read, and everything it raised
    /// committed, by any task, and that record has not expired.
    async fn object_read(&self, source: &str) -> Result<bool, StoreError>;

    /// Records that `source` was read and everything it raised committed, until `expires_at`.
    async fn mark_object_read(&self, source: &str, expires_at: i64) -> Result<(), StoreError>;
}
