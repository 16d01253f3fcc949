//! `trailwarden run`: a message in hand (a lease) → its jobs' producers → findings → commit →
//! ack. The daemon dispatches; producers (`pipeline`) read, the committer (`incidents`) pages.
//!
//! The promises, and where each is kept:
//! - A message is deleted only when every object it names was read (or deliberately skipped)
//!   and every incident it raised was paged or folded and recorded ([`message`]); the
//!   producers run in [`produce`].
//! - While a dependency (S3, KMS, SNS, the state store) is out, work in hand is held and
//!   retried, and no new message is received: an outage costs no receive count and sends
//!   nothing to the dead-letter queue ([`Gate`]). Only a message that fails on its own (a body
//!   that is not a notification, a refused bucket, an object the role may not read) is handed
//!   back with a delay, to reach the DLQ after maxReceiveCount.
//! - Every AWS call has a timeout and every attempt a deadline; a message's lease is extended
//!   while its work goes on and not a moment longer.
//! - On shutdown no new message is received, messages that are waiting are handed back at
//!   once (visibility 0), and attempts in progress get the grace period, after which their
//!   messages are handed back too.
//! - Follow-ups of incidents whose window ended are sent from here as well ([`follow_ups`]).
//! - The posture of the task's own account is audited on an interval and re-checked when a
//!   record changes it ([`posture`]).

pub mod account_names;
pub mod ip_ranges;
mod message;
mod posture;
mod produce;
pub mod start;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::aws;
use crate::clock::Clock;
use crate::config::Settings;
use crate::detect::RuleSet;
use crate::finding::accounts::SharedAccountNames;
use crate::finding::sink::Sink;
use crate::incidents::commit::{Committer, Policy};
use crate::incidents::store::Store;
use crate::intake::Objects;
use crate::intake::sqs::Queue;
use crate::output::outbox::{self, Outputs};
use crate::posture::AccountView;
use crate::posture::organization::Members;
use crate::telemetry::{Dependency, Metrics};

/// How long correlation events are kept after they arrive: a log file can be hours late and
/// must still meet the events it belongs with.
const CORRELATION_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// How long a page claim holds: a publish, with the SDK's retries and timeouts, fits well
/// inside it, and a crashed task's claim is taken over after it.
const CLAIM_LEASE: Duration = Duration::from_secs(120);
/// How far back the first follow-up sweep looks, for follow-ups due while no task ran.
const FIRST_SWEEP_LOOKBACK_HOURS: i64 = 48;

/// What the daemon talks to. Each is a seam: SQS, S3, the state store and the outputs in
/// production, in-process fakes in tests that need faults the emulator cannot make.
pub struct Edges {
    pub queue: Arc<dyn Queue>,
    pub objects: Arc<dyn Objects>,
    pub store: Arc<dyn Store>,
    /// Where committed messages go: in production the outbox of `outputs`.
    pub sink: Arc<dyn Sink>,
    /// The outputs whose loops deliver from the outbox.
    pub outputs: Outputs,
    /// The account whose posture is audited; `None` when `posture` is off.
    pub account: Option<Arc<dyn AccountView>>,
    /// The organization's member accounts, audited too; `None` unless `audit_accounts` is
    /// `organization`.
    pub members: Option<Arc<dyn Members>>,
    /// The one clock for claims, windows, expiry and follow-ups: the system's in production.
    pub clock: Clock,
    /// The account names every output shows.
    pub names: SharedAccountNames,
    /// Where more names are listed from; `None` unless `account_names_from_organizations`.
    pub directory: Option<Arc<dyn account_names::Directory>>,
}

/// The running daemon's shared state.
pub struct Daemon {
    settings: Settings,
    rules: Arc<RuleSet>,
    edges: Edges,
    metrics: Arc<Metrics>,
    policy: Policy,
    /// Names this task in page claims, so another task's claims are told apart.
    task: String,
    /// Bounds the blocking read+evaluate work.
    readers: Semaphore,
    gate: Gate,
    /// Receipts of the messages in hand, by message id, to hand back on shutdown.
    leases: Mutex<HashMap<String, String>>,
    /// Where posture re-checks are requested; `None` when posture is off.
    rechecks: Option<posture::Rechecks>,
    /// The re-check requests, until the posture task takes them.
    recheck_requests: Mutex<Option<tokio::sync::mpsc::Receiver<crate::finding::Recheck>>>,
}

impl Daemon {
    pub fn new(
        settings: Settings,
        rules: Arc<RuleSet>,
        edges: Edges,
        metrics: Arc<Metrics>,
    ) -> Arc<Daemon> {
        let policy = Policy {
            window: Duration::from_secs(settings.incident_window_secs),
            lease: CLAIM_LEASE,
            min_level: settings.min_level,
            retention: CORRELATION_RETENTION,
        };
        let task = format!(
            "task-{:016x}",
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        );
        let (rechecks, recheck_requests) = match &edges.account {
            Some(_) if settings.posture => {
                let (tx, rx) = tokio::sync::mpsc::channel(posture::RECHECK_QUEUE);
                (Some(tx), Some(rx))
            }
            _ => (None, None),
        };
        Arc::new(Daemon {
            readers: Semaphore::new(settings.workers),
            rechecks,
            recheck_requests: Mutex::new(recheck_requests),
            settings,
            rules,
            edges,
            metrics,
            policy,
            task,
            gate: Gate::default(),
            leases: Mutex::new(HashMap::new()),
        })
    }

    fn committer<'a>(&'a self, owner: &'a str) -> Committer<'a> {
        Committer {
            rules: &self.rules,
            store: self.edges.store.as_ref(),
            sink: self.edges.sink.as_ref(),
            policy: &self.policy,
            owner,
            metrics: &self.metrics,
            clock: &self.edges.clock,
        }
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Pauses receiving while any message in hand is held for an outage.
#[derive(Default)]
struct Gate {
    held: AtomicUsize,
    changed: Notify,
}

impl Gate {
    /// A message starts waiting for a dependency.
    fn enter(&self) {
        self.held.fetch_add(1, Ordering::SeqCst);
    }

    /// A held message stops waiting.
    fn leave(&self) {
        self.held.fetch_sub(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Waits until nothing is held.
    async fn open(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.held.load(Ordering::SeqCst) == 0 {
                return;
            }
            changed.await;
        }
    }
}

/// How often the receive loop shows it is alive while it waits for room or for the gate.
const TICK: Duration = Duration::from_secs(5);

/// Runs until `shutdown` is cancelled, then hands back or finishes the messages in hand.
pub async fn run(daemon: Arc<Daemon>, shutdown: CancellationToken) {
    let settings = &daemon.settings;
    let batch = settings.max_messages;
    // One permit per message in hand. A receive waits for a full batch of free permits, so
    // under load every ReceiveMessage can return up to 10 messages.
    let in_hand = Arc::new(Semaphore::new(settings.workers + batch as usize));
    let mut tasks = JoinSet::new();
    let sweeper = tokio::spawn(follow_ups(daemon.clone(), shutdown.clone()));
    let mut deliverers = JoinSet::new();
    for route in &daemon.edges.outputs.routes {
        let outputs = &daemon.edges.outputs;
        let l = outbox::Loop {
            route: route.clone(),
            outbox: outputs.outbox.clone(),
            names: daemon.edges.names.clone(),
            wakers: outputs.wakers.clone(),
            clock: daemon.edges.clock.clone(),
            metrics: daemon.metrics.clone(),
            owner: format!("{}/deliver", daemon.task),
            max_pending: settings.outputs_max_pending,
        };
        deliverers.spawn(outbox::deliver(l, shutdown.clone()));
    }
    let requests = daemon
        .recheck_requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let auditor = match (&daemon.edges.account, requests) {
        (Some(view), Some(requests)) => Some(tokio::spawn(posture::run(
            daemon.clone(),
            view.clone(),
            daemon.edges.members.clone(),
            requests,
            shutdown.clone(),
        ))),
        _ => None,
    };
    let mut retry = aws::backoff(Duration::from_secs(1), Duration::from_secs(30));
    info!(
        queue_url = %settings.queue_url,
        workers = settings.workers,
        rules = daemon.rules.rules().len(),
        state = if settings.state_table.is_some() { "dynamodb" } else { "memory" },
        posture = auditor.is_some(),
        outputs = %daemon.edges.outputs.routes.iter().map(|r| format!("{} ({})", r.name, r.kind.as_str())).collect::<Vec<_>>().join(", "),
        task = %daemon.task,
        "trailwarden started"
    );
    loop {
        daemon.metrics.loop_alive();
        while tasks.try_join_next().is_some() {}
        // Backpressure: while an output's backlog is at its bound, take no new work; its loop
        // says so once, and /healthz names it.
        if daemon.metrics.output_full().is_some() {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(TICK) => continue,
            }
        }
        // Backpressure: while work in hand waits for a dependency, take no new work.
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = daemon.gate.open() => {}
            _ = tokio::time::sleep(TICK) => continue,
        }
        let permits = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = in_hand.clone().acquire_many_owned(batch) => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = tokio::time::sleep(TICK) => continue,
        };
        let received = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = daemon.edges.queue.receive(batch, settings.visibility_timeout_secs) => r,
        };
        match received {
            Ok(messages) => {
                daemon.metrics.received(true);
                retry = aws::backoff(Duration::from_secs(1), Duration::from_secs(30));
                let mut permits = permits;
                for msg in messages {
                    daemon.metrics.messages_received.inc();
                    let permit = permits
                        .split(1)
                        .expect("one permit per message of the batch");
                    daemon.leases().insert(msg.id.clone(), msg.receipt.clone());
                    let (daemon, shutdown) = (daemon.clone(), shutdown.clone());
                    tasks.spawn(daemon.handle(msg, permit, shutdown));
                }
            }
            Err(e) => {
                daemon.metrics.received(false);
                let wait = aws::next_wait(&mut retry);
                error!(error = %e, retry_in_ms = wait.as_millis() as u64, "cannot receive from SQS");
                drop(permits);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }

    let grace = Duration::from_secs(settings.shutdown_grace_secs);
    info!(
        in_hand = tasks.len(),
        grace_secs = grace.as_secs(),
        "shutting down: waiting messages go back to the queue now, work in progress gets the grace period"
    );
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let left: Vec<(String, String)> = daemon.leases().drain().collect();
        warn!(
            unfinished = left.len(),
            "shutdown grace period expired; handing the unfinished messages back to the queue"
        );
        hand_back(&daemon, left).await;
    }
    sweeper.abort();
    // Deliveries in progress get a few seconds to settle; one cut short is sent again under
    // the same id once its lease runs out.
    let settled = tokio::time::timeout(Duration::from_secs(5), async {
        while deliverers.join_next().await.is_some() {}
    })
    .await;
    if settled.is_err() {
        deliverers.abort_all();
    }
    if let Some(auditor) = auditor {
        // An audit in progress is abandoned: its lease runs out and a task audits again.
        auditor.abort();
    }
    info!("trailwarden stopped");
}

/// Makes messages visible again at once, so another task takes them without waiting out
/// their visibility timeout.
async fn hand_back(daemon: &Daemon, leases: Vec<(String, String)>) {
    let mut calls = JoinSet::new();
    for (id, receipt) in leases {
        let queue = daemon.edges.queue.clone();
        calls.spawn(async move {
            let call = queue.set_visibility(&receipt, 0);
            match tokio::time::timeout(Duration::from_secs(3), call).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(message_id = %id, error = %e, "cannot hand a message back; it returns after its visibility timeout"),
                Err(_) => warn!(message_id = %id, "handing a message back timed out; it returns after its visibility timeout"),
            }
        });
    }
    while calls.join_next().await.is_some() {}
}

/// Sends due follow-ups until shutdown. Every task sweeps; a conditional claim in the store
/// lets exactly one send each follow-up.
async fn follow_ups(daemon: Arc<Daemon>, shutdown: CancellationToken) {
    let every = daemon.policy.grace().min(Duration::from_secs(30));
    let owner = format!("{}/follow-up", daemon.task);
    let mut lookback = FIRST_SWEEP_LOOKBACK_HOURS;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let now = daemon.edges.clock.now();
        match daemon.committer(&owner).follow_ups(now, lookback).await {
            Ok(sent) => {
                daemon.metrics.follow_ups.inc_by(sent);
                daemon.metrics.outage(Dependency::Store, true);
                lookback = 2;
            }
            Err(e) => warn!(error = %e, "cannot send follow-ups yet; retrying"),
        }
    }
}
