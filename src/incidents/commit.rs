//! One source's findings → pages, folds and correlation state, recording nothing before the
//! outputs accepted it.
//!
//! For each source (a log file or an event):
//! 1. Correlation events are added to their groups (idempotent by eventID) and each group is
//!    replayed on event time; a window that fires and holds one of this source's events
//!    becomes a correlation alert.
//! 2. Every incident (detections and correlation alerts, most severe first) is claimed. The
//!    winner publishes the page and only then records the incident as open; a publish that
//!    surely failed releases the claim, so the retry pages, while one that may have gone out
//!    (its response lost) keeps it, so only a repeat under the same ids can follow. An open incident takes the source's alerts as a
//!    folded part and schedules the follow-up; if that follow-up is already being sent, the
//!    incident has closed and the alerts open a new one. A claim held elsewhere means the page
//!    is being published right now: the work waits rather than finish (and be deleted) early.
//! 3. Fires whose alerts were accepted are recorded, so later replays count their events as
//!    consumed.
//!
//! Standing findings (posture checks) use the same claims: a finding's incident is claimed,
//! its message published, and only then recorded as open with the finding listed under its
//! check ([`Store::finding_opened`]); while it stays open, its claim answers "open" and a later
//! audit pages nothing. For every check and account the source evaluated ([`Scope`]), an open
//! finding the source no longer holds has its resolution taken (one task at a time), gets one
//! `resolved` message, and only then is removed.
//!
//! [`Progress`] survives the retries of one message, so a retry neither repeats a page that
//! was accepted nor forgets to record it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use tracing::{info, warn};

use super::correlate::{self, Span};
use super::store::{Claim, Claimed, Due, Meta, Open, OpenFinding, Part, Store, StoreError};
use crate::clock::Clock;
use crate::detect::RuleSet;
use crate::finding::alert::clean;
use crate::finding::correlation::Batch;
use crate::finding::fold::{Fold, Folder, Stats};
use crate::finding::sink::{FollowUp, Opened, Page, Resolved, Sink, SinkError};
use crate::finding::{Findings, IncidentKey, Level, Scope, Standing};
use crate::telemetry::Metrics;
use crate::telemetry::metrics::{FindingLabels, Path};

/// How incidents behave; from the daemon's settings.
#[derive(Debug, Clone)]
pub struct Policy {
    /// An incident's window when its rule names none.
    pub window: Duration,
    /// How long a page claim holds before another task may take it over.
    pub lease: Duration,
    /// Alerts below this level are logged, never paged or stored.
    pub min_level: Level,
    /// How long correlation events are kept after they arrive, so a late file still meets
    /// the events it belongs with.
    pub retention: Duration,
}

impl Policy {
    /// How long after a window ends its follow-up goes out, so alerts still being committed
    /// when it ended are in it.
    pub fn grace(&self) -> Duration {
        (self.window / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }
}

/// Work of one message already accepted downstream, kept across its retries.
#[derive(Debug, Default)]
pub struct Progress {
    /// Incidents of a source fully handled: paged, folded, or below the paging level.
    done: HashSet<(String, IncidentKey)>,
    /// Pages accepted downstream whose incident is not yet recorded as open.
    unconfirmed: Vec<(IncidentKey, Claim, Open)>,
    /// The incident id each claim of this message used: a page published again after a lost
    /// response carries the same incident and message ids, so subscribers can drop the repeat.
    ids: HashMap<IncidentKey, String>,
    /// Findings whose message was accepted but which are not yet recorded as open.
    unconfirmed_findings: Vec<(Claim, OpenFinding)>,
    /// Incident ids of findings whose resolution was accepted: a retry only records it.
    resolved: HashSet<String>,
}

/// Why a commit stopped; the work is retried.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// Another worker is publishing this incident's page right now.
    #[error("the page of incident {key} is being published by {owner}; waiting for it")]
    Busy { key: IncidentKey, owner: String },
    /// The incident's follow-up is being sent although its window has not ended by this
    /// task's clock (clocks disagree); once it has ended, these alerts open a new incident.
    #[error("incident {key} is closing; its alerts will open a new incident")]
    Closing { key: IncidentKey },
}

/// What a commit did, for the log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// Incidents opened with a page.
    pub paged: u64,
    /// Incidents that took alerts for their follow-up.
    pub folded: u64,
    /// Incidents below the paging level (logged only).
    pub quiet: u64,
    /// Incidents this same source had already paged (a redelivery or a duplicate notice).
    pub repeated: u64,
    /// Correlation windows that fired.
    pub fires: u64,
    /// Standing findings opened with a message.
    pub opened: u64,
    /// Standing findings resolved with a message.
    pub resolved: u64,
}

impl Committed {
    pub fn add(&mut self, other: Committed) {
        self.paged += other.paged;
        self.folded += other.folded;
        self.quiet += other.quiet;
        self.repeated += other.repeated;
        self.fires += other.fires;
        self.opened += other.opened;
        self.resolved += other.resolved;
    }
}

/// What happened to one incident of a source.
enum Action {
    Paged,
    Folded,
    Repeated,
}

/// Commits findings through a store and a sink.
pub struct Committer<'a> {
    pub rules: &'a RuleSet,
    pub store: &'a dyn Store,
    pub sink: &'a dyn Sink,
    pub policy: &'a Policy,
    /// This task and the message being worked on.
    pub owner: &'a str,
    pub metrics: &'a Metrics,
    /// Where "now" comes from for claims, windows and expiry.
    pub clock: &'a Clock,
}

impl Committer<'_> {
    /// Commits one source's findings.
    pub async fn commit(
        &self,
        findings: &Findings,
        progress: &mut Progress,
    ) -> Result<Committed, CommitError> {
        let mut done = Committed::default();
        // Pages accepted by an earlier attempt: record them before anything else.
        while let Some((key, claim, open)) = progress.unconfirmed.first() {
            self.store.paged(key, claim, open).await?;
            progress.unconfirmed.remove(0);
        }

        while let Some((claim, open)) = progress.unconfirmed_findings.first() {
            self.store.finding_opened(claim, open).await?;
            progress.unconfirmed_findings.remove(0);
        }
        self.commit_standing(findings, progress, &mut done).await?;
        let (corr_folds, fires) = self.correlate(&findings.correlation).await?;
        let mut folds: Vec<&Fold> = findings.folds.iter().chain(&corr_folds).collect();
        folds.sort_by_key(|f| std::cmp::Reverse(f.level()));
        for fold in folds {
            let id = (findings.source.clone(), fold.key.clone());
            if progress.done.contains(&id) {
                continue;
            }
            if fold.level() < self.policy.min_level {
                log_incident(fold, "below min_level: logged, not paged");
                done.quiet += 1;
            } else {
                match self.page_or_fold(&findings.source, fold, progress).await? {
                    Action::Paged => done.paged += 1,
                    Action::Folded => done.folded += 1,
                    Action::Repeated => done.repeated += 1,
                }
            }
            progress.done.insert(id);
        }
        // The fires' alerts were accepted (or deliberately quiet): their events are consumed.
        let expires = self.clock.now() + self.retention_secs();
        for (group, span, _) in &fires {
            self.store.fired(group, *span, expires).await?;
        }
        done.fires = fires.len() as u64;
        Ok(done)
    }

    /// Opens the findings that are new, then resolves the open findings of every evaluated
    /// check and account that the source no longer holds.
    async fn commit_standing(
        &self,
        findings: &Findings,
        progress: &mut Progress,
        done: &mut Committed,
    ) -> Result<(), CommitError> {
        let source = &findings.source;
        for finding in &findings.standing {
            let key = finding.key();
            let id = (source.clone(), key.clone());
            if progress.done.contains(&id) {
                continue;
            }
            if finding.level < self.policy.min_level {
                log_finding(finding, "", "below min_level: logged, not paged");
                done.quiet += 1;
            } else if self.open_finding(source, finding, progress).await? {
                done.opened += 1;
            } else {
                done.repeated += 1;
            }
            progress.done.insert(id);
        }

        let found: HashSet<IncidentKey> = findings.standing.iter().map(Standing::key).collect();
        let mut evaluated: BTreeMap<(&str, &str), Vec<&Scope>> = BTreeMap::new();
        for scope in &findings.scope {
            evaluated
                .entry((scope.account.as_str(), scope.check.as_str()))
                .or_default()
                .push(scope);
        }
        for ((account, check), scopes) in evaluated {
            let open = self.store.open_findings(account, check).await?;
            let mut still_open = open.len() as i64;
            for o in open {
                let resource = &o.finding.resource;
                if found.contains(&o.finding.key()) || !scopes.iter().any(|s| s.covers(resource)) {
                    continue;
                }
                if !progress.resolved.contains(&o.incident_id) {
                    let lease = self.policy.lease.as_secs() as i64;
                    if !self
                        .store
                        .take_resolution(&o, self.owner, self.clock.now(), lease)
                        .await?
                    {
                        // Resolved meanwhile, or another task is saying so right now.
                        continue;
                    }
                    let resolved = Resolved {
                        incident_id: o.incident_id.clone(),
                        finding: o.finding.clone(),
                        opened_at: o.opened_at,
                        resolved_at: self.clock.now(),
                        by: source.clone(),
                    };
                    // A failed publish keeps the take until its lease ends, so only this
                    // owner's retry repeats it, under the same message id.
                    self.sink.resolved(&resolved).await?;
                    progress.resolved.insert(o.incident_id.clone());
                    log_finding(&o.finding, &o.incident_id, "resolved");
                    done.resolved += 1;
                }
                self.store.finding_resolved(&o).await?;
                still_open -= 1;
            }
            self.metrics
                .findings_open
                .get_or_create(&FindingLabels {
                    check: check.to_owned(),
                    level: scopes[0].level.as_str(),
                })
                .set(still_open.max(0));
        }
        Ok(())
    }

    /// Claims a standing finding's incident; the winner publishes its message and records it
    /// open. True when this call opened it; false when it was already open.
    async fn open_finding(
        &self,
        source: &str,
        finding: &Standing,
        progress: &mut Progress,
    ) -> Result<bool, CommitError> {
        let key = finding.key();
        let now = self.clock.now();
        let incident_id = progress
            .ids
            .entry(key.clone())
            .or_insert_with(|| format!("{}-{now}", &key.digest()[..16]))
            .clone();
        let mut claim = Claim {
            incident_id,
            owner: self.owner.to_owned(),
            source: source.to_owned(),
            now,
            lease_secs: self.policy.lease.as_secs() as i64,
        };
        match self.store.claim(&key, &claim).await? {
            Claimed::Open(_) => return Ok(false),
            Claimed::Busy { owner, .. } => return Err(CommitError::Busy { key, owner }),
            Claimed::Won { incident_id } => {
                progress.ids.insert(key.clone(), incident_id.clone());
                claim.incident_id = incident_id;
            }
        }
        let opened = Opened {
            incident_id: &claim.incident_id,
            finding,
        };
        if let Err(e) = self.sink.finding(opened).await {
            // As with pages: a message that may have gone out keeps its claim, so only a
            // repeat under the same ids can follow.
            if e.0.ambiguous {
                warn!(error = %e, incident_id = %claim.incident_id, "the finding may have been published; its claim is kept so only a repeat with the same ids can follow");
            } else if let Err(release) = self.store.release(&key, &claim).await {
                warn!(error = %release, "cannot release a finding's claim; it expires after its lease");
            }
            return Err(e.into());
        }
        let open = OpenFinding {
            incident_id: claim.incident_id.clone(),
            finding: finding.clone(),
            opened_at: self.clock.now(),
        };
        log_finding(finding, &open.incident_id, "opened");
        if let Err(e) = self.store.finding_opened(&claim, &open).await {
            progress.unconfirmed_findings.push((claim, open));
            return Err(e.into());
        }
        Ok(true)
    }

    fn retention_secs(&self) -> i64 {
        self.policy.retention.as_secs() as i64
    }

    /// Adds the source's correlation events and returns the alerts of the windows that fire
    /// with them, folded, and each fire's group and span.
    async fn correlate(
        &self,
        batch: &Batch,
    ) -> Result<(Vec<Fold>, Vec<(String, Span, IncidentKey)>), CommitError> {
        let mut folder = Folder::new();
        let mut fires = Vec::new();
        for (group, events) in batch.groups() {
            let corr = &self.rules.correlations()[group.correlation].compiled;
            let span = corr.timespan_secs as i64;
            let digest = group.digest(&self.rules.correlation_rule(group.correlation).name);
            let lo = events.iter().map(|e| e.ts).min().unwrap_or(0);
            let hi = events.iter().map(|e| e.ts).max().unwrap_or(0);
            self.store
                .add_events(
                    &digest,
                    &events,
                    self.clock.now() + span + self.retention_secs(),
                )
                .await?;
            // Twice the span before: the replay needs the window that could hold the first of
            // these events, and the events that came before that window to place it.
            let (mut stored, committed) =
                self.store.window(&digest, lo - 2 * span, hi + span).await?;
            correlate::normalise(&mut stored);
            let ours: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
            for fire in correlate::replay(corr, &stored, &committed) {
                if !fire
                    .members
                    .iter()
                    .any(|&i| ours.contains(stored[i].event_id.as_str()))
                {
                    continue;
                }
                let (key, alert) = correlate::alert_for(self.rules, &group, &stored, &fire);
                fires.push((
                    digest.clone(),
                    Span {
                        start: fire.start,
                        end: fire.end,
                    },
                    key.clone(),
                ));
                folder.add(key, alert);
            }
        }
        Ok((folder.finish(), fires))
    }

    /// Pages the incident if it is new, or folds the alerts into it.
    async fn page_or_fold(
        &self,
        source: &str,
        fold: &Fold,
        progress: &mut Progress,
    ) -> Result<Action, CommitError> {
        // A second round only when the incident closed while this source was being committed.
        let mut closed_once = false;
        loop {
            let now = self.clock.now();
            let incident_id = progress
                .ids
                .entry(fold.key.clone())
                .or_insert_with(|| format!("{}-{now}", &fold.key.digest()[..16]))
                .clone();
            let mut claim = Claim {
                incident_id,
                owner: self.owner.to_owned(),
                source: source.to_owned(),
                now,
                lease_secs: self.policy.lease.as_secs() as i64,
            };
            return match self.store.claim(&fold.key, &claim).await? {
                Claimed::Won { incident_id } => {
                    // The store's id wins: a page another task may already have published
                    // before it stopped is repeated under the same ids.
                    progress.ids.insert(fold.key.clone(), incident_id.clone());
                    claim.incident_id = incident_id;
                    self.page(source, fold, claim, progress).await
                }
                Claimed::Open(open) if open.paged_by == source => {
                    // This source opened the incident: a redelivery, or a retry after the page.
                    log_incident(fold, "already paged from this source");
                    Ok(Action::Repeated)
                }
                Claimed::Open(open) => {
                    let Some(part) = part_of(source, fold, &open) else {
                        log_incident(fold, "its events were already paged");
                        return Ok(Action::Repeated);
                    };
                    let due = Due {
                        key: fold.key.clone(),
                        due_at: open.window_end + self.policy.grace().as_secs() as i64,
                        incident: open,
                    };
                    if self.store.fold(&due, &part).await? {
                        log_incident(fold, "folded into an open incident");
                        return Ok(Action::Folded);
                    }
                    // Its follow-up is already being sent: the window has ended, and these
                    // alerts open a new incident.
                    if closed_once {
                        return Err(CommitError::Closing {
                            key: fold.key.clone(),
                        });
                    }
                    closed_once = true;
                    continue;
                }
                Claimed::Busy { owner, .. } => Err(CommitError::Busy {
                    key: fold.key.clone(),
                    owner,
                }),
            };
        }
    }

    /// Publishes the page of a won claim, then records the incident as open; a failed publish
    /// gives the claim up so the retry pages.
    async fn page(
        &self,
        source: &str,
        fold: &Fold,
        claim: Claim,
        progress: &mut Progress,
    ) -> Result<Action, CommitError> {
        let rule = self.rules.by_name(&fold.key.rule);
        let page = Page {
            incident_id: &claim.incident_id,
            fold,
            next_steps: rule.map_or(&[], |r| r.next_steps.as_slice()),
        };
        if let Err(e) = self.sink.page(page).await {
            if e.0.ambiguous {
                // The page may have gone out. Keeping the claim means only this message's retry
                // (or, should this task stop, a takeover after the lease) publishes it again,
                // under the same ids; another message would page under a new id and fold this
                // alert in as well.
                warn!(error = %e, incident_id = %claim.incident_id, "the page may have been published; its claim is kept so only a repeat with the same ids can follow");
            } else if let Err(release) = self.store.release(&fold.key, &claim).await {
                // Best effort: an unreleased claim expires after its lease.
                warn!(error = %release, "cannot release a page claim; it expires after its lease");
            }
            return Err(e.into());
        }
        let paged_at = self.clock.now();
        self.observe_lag(source, fold, paged_at);
        let window = rule
            .and_then(|r| r.incident_window)
            .unwrap_or(self.policy.window);
        let first = &fold.alerts[0];
        let open = Open {
            incident_id: claim.incident_id.clone(),
            paged_by: source.to_owned(),
            paged_at,
            window_end: paged_at + window.as_secs() as i64,
            summary: first.summary.clone(),
            event_ids: fold.event_ids(),
            meta: Some(Meta {
                title: first.title.clone(),
                level: fold.level(),
                next_steps: first.next_steps.clone(),
                tags: first.tags.clone(),
                count: fold.stats.count,
                first_time: fold.stats.first_time.clone(),
            }),
        };
        log_incident(fold, "paged");
        info!(
            target: "trailwarden::incident",
            incident_id = %open.incident_id,
            "incident opened"
        );
        if let Err(e) = self.store.paged(&fold.key, &claim, &open).await {
            progress.unconfirmed.push((fold.key.clone(), claim, open));
            return Err(e.into());
        }
        Ok(Action::Paged)
    }

    /// The time from the page's first event to its page, by the path the event came by.
    fn observe_lag(&self, source: &str, fold: &Fold, paged_at: i64) {
        let Some(first) = fold.alerts[0]
            .event_time
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        else {
            return;
        };
        let path = if source.starts_with("eventbridge:") {
            Path::Eventbridge
        } else {
            Path::LogFile
        };
        self.metrics
            .observe_alert_lag(path, (paged_at - first.timestamp()).max(0));
    }

    /// Sends the follow-ups that are due; returns how many went out.
    pub async fn follow_ups(&self, now: i64, lookback_hours: i64) -> Result<u64, CommitError> {
        let mut sent = 0;
        for due in self.store.due(now, lookback_hours).await? {
            if !self
                .store
                .take_follow_up(&due, self.owner, now, self.policy.lease.as_secs() as i64)
                .await?
            {
                continue;
            }
            let parts = self.store.parts(&due).await?;
            let (stats, sources) = merge(&due.incident, &parts);
            if stats.count > 0 {
                // The incident's own description; records written before it was kept fall
                // back on the rule, and only an unknown rule on its name.
                let meta = due.incident.meta.clone().unwrap_or_else(|| {
                    let rule = self.rules.by_name(&due.key.rule);
                    Meta {
                        title: rule.map_or_else(|| due.key.rule.clone(), |r| r.title.clone()),
                        level: rule.map_or(Level::Medium, |r| r.level),
                        next_steps: rule.map(|r| r.next_steps.clone()).unwrap_or_default(),
                        tags: rule.map(|r| r.tags.clone()).unwrap_or_default(),
                        count: 0,
                        first_time: None,
                    }
                });
                let follow_up = FollowUp {
                    incident_id: due.incident.incident_id.clone(),
                    key: due.key.clone(),
                    title: meta.title,
                    level: meta.level,
                    next_steps: meta.next_steps,
                    paged_summary: due.incident.summary.clone(),
                    paged_at: due.incident.paged_at,
                    paged_count: meta.count,
                    paged_first_time: meta.first_time,
                    tags: meta.tags,
                    stats,
                    sources,
                };
                if let Err(e) = self.sink.follow_up(&follow_up).await {
                    // Give the lease back so the next sweep retries it as soon as the sink
                    // answers; a repeat carries the same message id.
                    if let Err(give_back) = self.store.give_back_follow_up(&due, self.owner).await {
                        warn!(error = %give_back, "cannot give a follow-up back; it is retried after its lease");
                    }
                    return Err(e.into());
                }
                info!(
                    target: "trailwarden::incident",
                    incident_id = %due.incident.incident_id,
                    rule = %clean(&due.key.rule),
                    account_id = %clean(&due.key.account),
                    count = follow_up.stats.count,
                    "incident follow-up sent"
                );
                sent += 1;
            }
            self.store.followed_up(&due).await?;
        }
        Ok(sent)
    }
}

/// What a source adds to an open incident, without the events its page already listed.
/// `None` when it adds nothing.
fn part_of(source: &str, fold: &Fold, open: &Open) -> Option<Part> {
    let paged: HashSet<&str> = open.event_ids.iter().map(String::as_str).collect();
    let complete = fold.stats.count == fold.alerts.len() as u64;
    let stats = if complete {
        // Every alert is at hand: count only the events the page did not already carry.
        let mut stats = Stats::default();
        for a in &fold.alerts {
            if !a.event_id.as_deref().is_some_and(|id| paged.contains(id)) {
                stats.add(a);
            }
        }
        stats
    } else {
        fold.stats.clone()
    };
    if stats.count == 0 {
        return None;
    }
    Some(Part {
        source: source.to_owned(),
        stats,
        event_ids: fold.event_ids(),
    })
}

/// The parts' stats added up, counting an event listed by several parts once where the parts
/// listed all their events; and how many sources they came from.
fn merge(open: &Open, parts: &[Part]) -> (Stats, usize) {
    let mut seen: HashSet<&str> = open.event_ids.iter().map(String::as_str).collect();
    let mut stats = Stats::default();
    let mut sources = 0;
    for part in parts {
        let complete = part.stats.count == part.event_ids.len() as u64;
        let fresh = part
            .event_ids
            .iter()
            .filter(|id| seen.insert(id.as_str()))
            .count() as u64;
        let mut s = part.stats.clone();
        if complete {
            s.count = fresh;
        }
        if s.count > 0 {
            sources += 1;
            stats.merge(&s);
        }
    }
    (stats, sources)
}

/// One log line per standing finding opened, resolved or left quiet.
fn log_finding(finding: &Standing, incident_id: &str, what: &str) {
    info!(
        target: "trailwarden::finding",
        check = %finding.check,
        finding_level = %finding.level,
        account_id = %clean(&finding.account),
        resource = %clean(&finding.resource),
        incident_id = %incident_id,
        evidence = %clean(&finding.evidence),
        outcome = what,
        "finding {what}"
    );
}

/// One log line per incident and source, never one per alert.
fn log_incident(fold: &Fold, what: &str) {
    let first = &fold.alerts[0];
    info!(
        target: "trailwarden::alert",
        rule = %clean(&fold.key.rule),
        alert_level = %first.level,
        account_id = %clean(&fold.key.account),
        principal = %clean(&fold.key.principal),
        count = fold.stats.count,
        event_id = %clean(first.event_id.as_deref().unwrap_or("")),
        event_name = %clean(first.event_name.as_deref().unwrap_or("")),
        source_ip = %clean(first.source_ip.as_deref().unwrap_or("")),
        summary = %clean(&first.summary),
        source = %clean(&first.source),
        outcome = what,
        "alert"
    );
}
