//! The state store in one process's memory: the default for a single task, with nothing to set
//! up. The same contract as the DynamoDB store, under one lock; state is lost on restart.
//!
//! Expired entries are pruned as the store is used, so a long-running task's memory follows
//! the number of open incidents and live correlation windows, not its uptime.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Claim, Claimed, Due, Open, OpenFinding, Part, Store, StoreError};
use crate::clock::Clock;
use crate::finding::IncidentKey;
use crate::finding::correlation::CorrEvent;
use crate::incidents::correlate::Span;

/// Mutations between two prunes of expired entries.
const PRUNE_EVERY: u32 = 256;
/// How long a sent follow-up's schedule is kept.
const SENT_KEEP_SECS: i64 = 24 * 3600;

#[derive(Debug)]
enum Incident {
    Claimed {
        owner: String,
        until: i64,
        incident_id: String,
    },
    Open(Open),
}

#[derive(Debug, Default)]
struct GroupState {
    /// `(event time, eventID)` → (event, expires_at).
    events: BTreeMap<(i64, String), (CorrEvent, i64)>,
    fires: Vec<(Span, i64)>,
}

#[derive(Debug)]
struct Scheduled {
    due: Due,
    owner: Option<(String, i64)>,
    sent: bool,
    parts: BTreeMap<String, Part>,
    /// Every source the schedule took a part from, kept after sending: a retried fold of one
    /// of them answers as it did the first time.
    listed: HashSet<String>,
}

/// An open finding, and who is resolving it until when.
#[derive(Debug)]
struct Listed {
    open: OpenFinding,
    resolving: Option<(String, i64)>,
}

#[derive(Debug, Default)]
struct Inner {
    incidents: HashMap<IncidentKey, Incident>,
    /// `(due_at, incident id)` → the follow-up and its parts.
    scheduled: BTreeMap<(i64, String), Scheduled>,
    groups: HashMap<String, GroupState>,
    /// `(account, check)` → resource → the open finding.
    findings: HashMap<(String, String), BTreeMap<String, Listed>>,
    /// Account → (the audit's holder, when it is next due).
    audits: HashMap<String, (String, i64)>,
    /// Log objects read and committed → until when that is remembered.
    objects: HashMap<String, i64>,
    mutations: u32,
}

impl Inner {
    fn prune(&mut self, now: i64) {
        self.mutations += 1;
        if self.mutations < PRUNE_EVERY {
            return;
        }
        self.mutations = 0;
        self.incidents.retain(|_, i| match i {
            Incident::Claimed { until, .. } => *until >= now,
            Incident::Open(open) => open.window_end >= now,
        });
        self.groups.retain(|_, g| {
            g.events.retain(|_, (_, expires)| *expires >= now);
            g.fires.retain(|(_, expires)| *expires >= now);
            !g.events.is_empty() || !g.fires.is_empty()
        });
        self.objects.retain(|_, expires| *expires >= now);
        // A sent follow-up is kept while a fold that read its incident as open could still
        // arrive: such a fold stalls at most a message deadline, far under a day.
        self.scheduled
            .retain(|(due_at, _), s| !s.sent || *due_at + SENT_KEEP_SECS >= now);
    }
}

/// State in this process only.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    clock: Clock,
}

impl MemoryStore {
    /// A store on the system clock.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// A store whose expiry checks read `clock`.
    pub fn with_clock(clock: Clock) -> MemoryStore {
        MemoryStore {
            inner: Mutex::default(),
            clock,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere must not take the state with it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn claim(&self, key: &IncidentKey, claim: &Claim) -> Result<Claimed, StoreError> {
        let mut inner = self.lock();
        inner.prune(claim.now);
        let incident_id = match inner.incidents.get(key) {
            Some(Incident::Open(open)) if open.window_end >= claim.now => {
                return Ok(Claimed::Open(open.clone()));
            }
            Some(Incident::Claimed { owner, until, .. })
                if *until >= claim.now && *owner != claim.owner =>
            {
                return Ok(Claimed::Busy {
                    owner: owner.clone(),
                    until: *until,
                });
            }
            // An expired claim, or this owner's own: its page may have gone out, so it is
            // taken over under the same id.
            Some(Incident::Claimed { incident_id, .. }) => incident_id.clone(),
            _ => claim.incident_id.clone(),
        };
        inner.incidents.insert(
            key.clone(),
            Incident::Claimed {
                owner: claim.owner.clone(),
                until: claim.now + claim.lease_secs,
                incident_id: incident_id.clone(),
            },
        );
        Ok(Claimed::Won { incident_id })
    }

    async fn paged(
        &self,
        key: &IncidentKey,
        claim: &Claim,
        incident: &Open,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if matches!(inner.incidents.get(key), Some(Incident::Claimed { owner, .. }) if *owner == claim.owner)
        {
            inner
                .incidents
                .insert(key.clone(), Incident::Open(incident.clone()));
        }
        Ok(())
    }

    async fn release(&self, key: &IncidentKey, claim: &Claim) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if matches!(inner.incidents.get(key), Some(Incident::Claimed { owner, .. }) if *owner == claim.owner)
        {
            inner.incidents.remove(key);
        }
        Ok(())
    }

    async fn fold(&self, due: &Due, part: &Part) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        inner.prune(self.clock.now());
        let scheduled = inner
            .scheduled
            .entry((due.due_at, due.incident.incident_id.clone()))
            .or_insert_with(|| Scheduled {
                due: due.clone(),
                owner: None,
                sent: false,
                parts: BTreeMap::new(),
                listed: HashSet::new(),
            });
        let listed = scheduled.listed.contains(&part.source);
        if scheduled.owner.is_some() && !listed {
            return Ok(false);
        }
        if !scheduled.sent {
            scheduled.parts.insert(part.source.clone(), part.clone());
        }
        scheduled.listed.insert(part.source.clone());
        Ok(true)
    }

    async fn due(&self, now: i64, _lookback_hours: i64) -> Result<Vec<Due>, StoreError> {
        Ok(self
            .lock()
            .scheduled
            .range(..=(now, String::from("\u{10ffff}")))
            .filter(|(_, s)| !s.sent)
            .map(|(_, s)| s.due.clone())
            .collect())
    }

    async fn take_follow_up(
        &self,
        due: &Due,
        owner: &str,
        now: i64,
        lease_secs: i64,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(s) = inner
            .scheduled
            .get_mut(&(due.due_at, due.incident.incident_id.clone()))
        else {
            return Ok(false);
        };
        if s.sent || s.owner.as_ref().is_some_and(|(_, until)| *until >= now) {
            return Ok(false);
        }
        s.owner = Some((owner.to_owned(), now + lease_secs));
        Ok(true)
    }

    async fn give_back_follow_up(&self, due: &Due, owner: &str) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if let Some(s) = inner
            .scheduled
            .get_mut(&(due.due_at, due.incident.incident_id.clone()))
            && s.owner.as_ref().is_some_and(|(o, _)| o == owner)
        {
            s.owner = None;
        }
        Ok(())
    }

    async fn parts(&self, due: &Due) -> Result<Vec<Part>, StoreError> {
        Ok(self
            .lock()
            .scheduled
            .get(&(due.due_at, due.incident.incident_id.clone()))
            .map(|s| s.parts.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn followed_up(&self, due: &Due) -> Result<(), StoreError> {
        if let Some(s) = self
            .lock()
            .scheduled
            .get_mut(&(due.due_at, due.incident.incident_id.clone()))
        {
            s.sent = true;
            s.parts.clear();
        }
        Ok(())
    }

    async fn add_events(
        &self,
        group: &str,
        events: &[CorrEvent],
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.prune(self.clock.now());
        let state = inner.groups.entry(group.to_owned()).or_default();
        for e in events {
            state
                .events
                .entry((e.ts, e.event_id.clone()))
                .or_insert_with(|| (e.clone(), expires_at));
        }
        Ok(())
    }

    async fn window(
        &self,
        group: &str,
        from: i64,
        to: i64,
    ) -> Result<(Vec<CorrEvent>, Vec<Span>), StoreError> {
        let inner = self.lock();
        let Some(state) = inner.groups.get(group) else {
            return Ok((Vec::new(), Vec::new()));
        };
        let now = self.clock.now();
        let events = state
            .events
            .range((from, String::new())..(to.saturating_add(1), String::new()))
            .filter(|(_, (_, expires))| *expires >= now)
            .map(|(_, (e, _))| e.clone())
            .collect();
        let fires = state
            .fires
            .iter()
            .filter(|(span, expires)| span.end >= from && *expires >= now)
            .map(|(span, _)| *span)
            .collect();
        Ok((events, fires))
    }

    async fn fired(&self, group: &str, span: Span, expires_at: i64) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let state = inner.groups.entry(group.to_owned()).or_default();
        if !state.fires.iter().any(|(s, _)| *s == span) {
            state.fires.push((span, expires_at));
        }
        Ok(())
    }

    async fn finding_opened(&self, claim: &Claim, finding: &OpenFinding) -> Result<(), StoreError> {
        let f = &finding.finding;
        let mut inner = self.lock();
        inner
            .incidents
            .insert(f.key(), Incident::Open(finding.incident(&claim.source)));
        inner
            .findings
            .entry((f.account.clone(), f.check.clone()))
            .or_default()
            .insert(
                f.resource.clone(),
                Listed {
                    open: finding.clone(),
                    resolving: None,
                },
            );
        Ok(())
    }

    async fn open_findings(
        &self,
        account: &str,
        check: &str,
    ) -> Result<Vec<OpenFinding>, StoreError> {
        Ok(self
            .lock()
            .findings
            .get(&(account.to_owned(), check.to_owned()))
            .map(|by_resource| by_resource.values().map(|l| l.open.clone()).collect())
            .unwrap_or_default())
    }

    async fn take_resolution(
        &self,
        finding: &OpenFinding,
        owner: &str,
        now: i64,
        lease_secs: i64,
    ) -> Result<bool, StoreError> {
        let f = &finding.finding;
        let mut inner = self.lock();
        let Some(listed) = inner
            .findings
            .get_mut(&(f.account.clone(), f.check.clone()))
            .and_then(|by_resource| by_resource.get_mut(&f.resource))
        else {
            return Ok(false);
        };
        if listed.open.incident_id != finding.incident_id
            || listed
                .resolving
                .as_ref()
                .is_some_and(|(holder, until)| holder != owner && *until >= now)
        {
            return Ok(false);
        }
        listed.resolving = Some((owner.to_owned(), now + lease_secs));
        Ok(true)
    }

    async fn finding_resolved(&self, finding: &OpenFinding) -> Result<(), StoreError> {
        let f = &finding.finding;
        let mut inner = self.lock();
        let key = f.key();
        if matches!(inner.incidents.get(&key), Some(Incident::Open(open)) if open.incident_id == finding.incident_id)
        {
            inner.incidents.remove(&key);
        }
        let listed = (f.account.clone(), f.check.clone());
        if let Some(by_resource) = inner.findings.get_mut(&listed)
            && by_resource
                .get(&f.resource)
                .is_some_and(|l| l.open.incident_id == finding.incident_id)
        {
            by_resource.remove(&f.resource);
            if by_resource.is_empty() {
                inner.findings.remove(&listed);
            }
        }
        Ok(())
    }

    async fn take_audit(
        &self,
        account: &str,
        owner: &str,
        now: i64,
        hold_secs: i64,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if inner
            .audits
            .get(account)
            .is_some_and(|(_, next_due)| *next_due > now)
        {
            return Ok(false);
        }
        inner
            .audits
            .insert(account.to_owned(), (owner.to_owned(), now + hold_secs));
        Ok(true)
    }

    async fn audited(&self, account: &str, owner: &str, next_due: i64) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if let Some((holder, due)) = inner.audits.get_mut(account)
            && holder == owner
        {
            *due = next_due;
        }
        Ok(())
    }

    async fn object_read(&self, source: &str) -> Result<bool, StoreError> {
        let now = self.clock.now();
        Ok(self
            .lock()
            .objects
            .get(source)
            .is_some_and(|expires| *expires >= now))
    }

    async fn mark_object_read(&self, source: &str, expires_at: i64) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.prune(self.clock.now());
        inner.objects.insert(source.to_owned(), expires_at);
        Ok(())
    }
}
