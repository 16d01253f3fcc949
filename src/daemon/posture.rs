//! The posture producer as the daemon runs it: an audit of the account its credentials are in
//! at start-up and every `posture_interval_secs`, and a re-check of one resource as soon as a
//! record changes it. Both commit through the same [`Committer`](crate::incidents::commit)
//! as alerts, so a finding pages once and resolves once whatever the number of tasks.
//!
//! - Audits: every task tries; the store's audit lease lets one audit per interval (a restart
//!   within the interval audits nothing). A task that stops mid-audit holds the lease only
//!   for [`AUDIT_HOLD`], after which another task audits.
//! - Re-checks: requests from the producers arrive on a bounded channel; each distinct one is
//!   run once per batch, for this task's own account, and in organization mode for a member
//!   account's record too, through the member role (the accounts are those ListAccounts gave
//!   at most [`MEMBERS_MAX_AGE`] ago). Other accounts' records (a trail bucket shared beyond
//!   the organization) are read, but their posture is not this task's to check.
//! - Organization mode (`audit_accounts = "organization"`): the audit covers every ACTIVE
//!   member account under the one lease of the task's own account, and each account's
//!   findings are committed on their own, scoped to that account.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::Daemon;
use crate::aws;
use crate::finding::{Findings, Recheck, Target};
use crate::incidents::commit::Progress;
use crate::posture::organization::{self, Members};
use crate::posture::{self, AccountView};
use crate::telemetry::Dropped;

/// How long a task holds the audit lease: an audit of a large account (the credential report,
/// every user's grants) takes well under this.
pub const AUDIT_HOLD: Duration = Duration::from_secs(900);
/// How often a task asks whether the audit is due: another task's lease may have expired, or
/// its interval ended.
const AUDIT_POLL: Duration = Duration::from_secs(300);
/// Re-check requests waiting at most; past this they are dropped (and counted), and the next
/// audit covers them.
pub const RECHECK_QUEUE: usize = 256;
/// Attempts at committing one audit's or re-check's findings before it is given up.
const COMMIT_ATTEMPTS: u32 = 5;
/// How old the list of member accounts may be before a member's re-check lists them again:
/// an account that joined since is re-checked within this, and audited at the next audit.
pub const MEMBERS_MAX_AGE: Duration = Duration::from_secs(3600);

/// Where the message handlers send re-check requests.
pub type Rechecks = mpsc::Sender<Recheck>;

impl Daemon {
    /// Asks for the re-checks a message's records raised; a full queue drops them, counted.
    pub(super) fn request_rechecks<'a>(&self, findings: impl Iterator<Item = &'a Findings>) {
        let Some(tx) = &self.rechecks else {
            return;
        };
        for f in findings {
            let mut dropped = 0;
            for r in &f.rechecks {
                if tx.try_send(r.clone()).is_err() {
                    dropped += 1;
                }
            }
            Dropped {
                what: "posture_rechecks",
                count: dropped,
                source: &f.source,
                detail: "the re-check queue is full; the next audit covers these resources"
                    .to_owned(),
            }
            .report(&self.metrics);
        }
    }
}

/// Audits and re-checks until shutdown.
pub(super) async fn run(
    daemon: Arc<Daemon>,
    view: Arc<dyn AccountView>,
    members: Option<Arc<dyn Members>>,
    mut requests: mpsc::Receiver<Recheck>,
    shutdown: CancellationToken,
) {
    let Some(account) = identify(view.as_ref(), &shutdown).await else {
        return;
    };
    let owner = format!("{}/posture", daemon.task);
    let interval = Duration::from_secs(daemon.settings.posture_interval_secs);
    // The first try is at once: start-up audits when the interval has passed.
    let mut next_try = tokio::time::Instant::now();
    let mut known = KnownMembers::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(next_try) => {
                next_try = tokio::time::Instant::now() + AUDIT_POLL.min(interval);
                audit(&daemon, view.as_ref(), members.as_deref(), &account, &owner, interval, &shutdown)
                    .instrument(info_span!("posture_audit", account_id = %account))
                    .await;
            }
            first = requests.recv() => {
                let Some(first) = first else { return };
                // Whatever else is waiting joins this batch, each distinct request once.
                let mut batch = BTreeMap::new();
                let mut next = Some(first);
                while let Some(r) = next {
                    batch.entry((r.account.clone(), r.target.clone())).or_insert(r);
                    next = requests.try_recv().ok();
                }
                for ((_, target), request) in batch {
                    let span = info_span!("posture_recheck", account_id = %request.account, event = %request.event);
                    if request.account == account {
                        recheck(&daemon, view.as_ref(), &account, &owner, &target, &request.event, &shutdown)
                            .instrument(span)
                            .await;
                        continue;
                    }
                    let member = match &members {
                        Some(members) => known.enter(members.as_ref(), &request.account).instrument(span.clone()).await,
                        None => None,
                    };
                    let Some(member) = member else {
                        debug!(account_id = %request.account, event = %request.event, "a posture change in an account outside the organization audit; not this task's to re-check");
                        continue;
                    };
                    recheck(&daemon, member.as_ref(), &request.account, &owner, &target, &request.event, &shutdown)
                        .instrument(span)
                        .await;
                }
            }
        }
    }
}

/// The organization's member accounts as last listed, for re-checks of members' records.
#[derive(Default)]
struct KnownMembers {
    accounts: std::collections::HashSet<String>,
    listed_at: Option<tokio::time::Instant>,
}

impl KnownMembers {
    /// `account` entered through the member role, when it is a member; `None` (logged) when
    /// it is not, or cannot be listed or entered: the next audit reports that.
    async fn enter(
        &mut self,
        members: &dyn Members,
        account: &str,
    ) -> Option<Arc<dyn AccountView>> {
        let stale = self
            .listed_at
            .is_none_or(|at| at.elapsed() >= MEMBERS_MAX_AGE);
        if stale && !self.accounts.contains(account) {
            match members.accounts().await {
                Ok(accounts) => {
                    self.accounts = accounts.into_iter().collect();
                    self.listed_at = Some(tokio::time::Instant::now());
                }
                Err(e) => {
                    warn!(error = %e, action = e.action, "cannot list the organization's accounts; a member's change waits for the next audit");
                    return None;
                }
            }
        }
        if !self.accounts.contains(account) {
            return None;
        }
        match members.enter(account).await {
            Ok(view) => Some(view),
            Err(e) => {
                warn!(error = %e, action = e.action, role = %members.role_arn(account), "cannot enter the member account to re-check it; the next audit reports it");
                None
            }
        }
    }
}

/// The account the credentials are in, retried while it cannot be read.
async fn identify(view: &dyn AccountView, shutdown: &CancellationToken) -> Option<String> {
    let mut retry = aws::backoff(Duration::from_secs(5), Duration::from_secs(300));
    loop {
        match view.account().await {
            Ok(account) => return Some(account),
            Err(e) => {
                let wait = aws::next_wait(&mut retry);
                warn!(error = %e, action = e.action, retry_in_ms = wait.as_millis() as u64, "cannot identify the account to audit; posture waits");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Runs the audit if it is due and nobody else holds it.
async fn audit(
    daemon: &Daemon,
    view: &dyn AccountView,
    members: Option<&dyn Members>,
    account: &str,
    owner: &str,
    interval: Duration,
    shutdown: &CancellationToken,
) {
    let store = daemon.edges.store.as_ref();
    let now = daemon.edges.clock.now();
    match store
        .take_audit(account, owner, now, AUDIT_HOLD.as_secs() as i64)
        .await
    {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            warn!(error = %e, "cannot ask the state store whether the audit is due; asking again later");
            return;
        }
    }
    daemon.metrics.audits.inc();
    let settings = daemon.settings.posture_settings();
    let at = chrono::DateTime::from_timestamp(now, 0).unwrap_or_default();
    let audits = match members {
        None => posture::audit(view, &settings, at).await.map(|a| vec![a]),
        Some(members) => organization::audit_organization(view, members, &settings, at).await,
    };
    let audits = match audits {
        Ok(audits) => audits,
        Err(e) => {
            // The lease runs out after AUDIT_HOLD, and a task tries again.
            daemon.metrics.audits_failed.inc();
            warn!(error = %e, action = e.action, "the posture audit could not identify the account or list the organization's accounts");
            return;
        }
    };
    // Each account's findings are committed on their own: one account's failed commit
    // leaves the others' done, and the next audit commits it again.
    let mut failed = false;
    for audit in &audits {
        let unchecked = audit
            .results
            .iter()
            .filter(|r| {
                matches!(
                    r.outcome,
                    posture::Outcome::Unchecked(_) | posture::Outcome::Unreadable(_)
                )
            })
            .count();
        let findings = audit.findings(format!("posture:audit:{}", audit.account));
        let Some(done) = commit(daemon, owner, &findings, shutdown).await else {
            failed = true;
            continue;
        };
        info!(
            audited_account_id = %audit.account,
            checks = audit.results.len(),
            could_not_check = unchecked,
            findings = findings.standing.len(),
            opened = done.opened,
            resolved = done.resolved,
            "posture audited"
        );
    }
    if failed {
        daemon.metrics.audits_failed.inc();
        return;
    }
    let next_due = daemon.edges.clock.now() + interval.as_secs() as i64;
    if let Err(e) = store.audited(account, owner, next_due).await {
        warn!(error = %e, "cannot record the audit as done; another task may audit again after the lease");
    }
}

/// Runs the checks a posture change asks for, and commits what they found.
async fn recheck(
    daemon: &Daemon,
    view: &dyn AccountView,
    account: &str,
    owner: &str,
    target: &Target,
    event: &str,
    shutdown: &CancellationToken,
) {
    daemon.metrics.rechecks.inc();
    let settings = daemon.settings.posture_settings();
    let at = chrono::DateTime::from_timestamp(daemon.edges.clock.now(), 0).unwrap_or_default();
    let (results, resource) = posture::recheck(view, &settings, at, account, target).await;
    for r in &results {
        if let posture::Outcome::Unchecked(e) = &r.outcome {
            warn!(check = r.check.name, error = %e, action = e.action, "re-check could not read what it needs; the next audit checks it");
        }
    }
    let findings = posture::findings(
        format!("posture:recheck:{event}"),
        account,
        &results,
        resource.as_deref(),
    );
    if let Some(done) = commit(daemon, owner, &findings, shutdown).await {
        info!(
            resource = resource.as_deref().unwrap_or("account"),
            findings = findings.standing.len(),
            opened = done.opened,
            resolved = done.resolved,
            "posture re-checked"
        );
    }
}

/// Commits posture findings, retrying with backoff; `None` when it gave up (the next audit
/// or re-check commits again) or shutdown came first.
async fn commit(
    daemon: &Daemon,
    owner: &str,
    findings: &Findings,
    shutdown: &CancellationToken,
) -> Option<crate::incidents::commit::Committed> {
    let committer = daemon.committer(owner);
    let mut progress = Progress::default();
    let mut retry = aws::backoff(Duration::from_secs(1), Duration::from_secs(30));
    for attempt in 1..=COMMIT_ATTEMPTS {
        match committer.commit(findings, &mut progress).await {
            Ok(done) => return Some(done),
            Err(e) if attempt == COMMIT_ATTEMPTS => {
                Dropped {
                    what: "posture_commits",
                    count: 1,
                    source: &findings.source,
                    detail: format!(
                        "gave up committing posture findings after {COMMIT_ATTEMPTS} attempts ({e}); the next audit or re-check commits them"
                    ),
                }
                .report(&daemon.metrics);
            }
            Err(e) => {
                let wait = aws::next_wait(&mut retry);
                warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "cannot commit posture findings yet; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    None
}
