//! Each output delivered on its own: committed messages are recorded once per output as
//! pending deliveries, and each output's loop works through its own.
//!
//! - [`Enqueue`] is the committer's sink. A message counts as accepted once a delivery for
//!   every output that takes it is durably recorded, pending or done; the queue message it came
//!   from may then be deleted. Enqueueing is idempotent by `(output, message id)`, so a retry,
//!   or another task repeating the page after a lost reply, records nothing twice, and a
//!   message already delivered to an output is not delivered to it again.
//! - [`deliver`] runs one output's loop: oldest first, each delivery taken with a lease so one
//!   task at a time sends it, settled as delivered, retried later (an outage, a setting), or
//!   dead (refused for good: logged and counted). An outage pauses only this output, with
//!   backoff, and the rest of its backlog waits behind the failed delivery, so a follow-up
//!   never overtakes its page.
//! - The backlog of every output (pending count, oldest age) is reported on /metrics and
//!   /healthz, and intake pauses while an output's backlog is at its bound, so memory and the
//!   store stay bounded through an outage of any length.
//!
//! Where deliveries are kept: [`memory::MemoryOutbox`] for one task, the state table
//! ([`DynamoStore`](crate::incidents::store::dynamo::DynamoStore)), so a restart or another task finishes what one task left.

pub mod memory;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::Route;
use crate::aws::{self, Failed, Fault};
use crate::clock::Clock;
use crate::finding::accounts::SharedAccountNames;
use crate::finding::sink::{FollowUp, Message, Opened, Page, Resolved, Sink, SinkError};
use crate::telemetry::Metrics;

/// How long a taken delivery is held before another task may send it: a send, with its
/// retries and timeouts, fits well inside it.
pub const LEASE_SECS: i64 = 120;
/// How often a loop looks for deliveries it was not woken for: other tasks' retries, or work
/// left by a task that stopped.
const POLL: Duration = Duration::from_secs(5);
/// The longest pause between two attempts while an output fails: short enough that an
/// output back from an outage gets its backlog within a minute.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One message held for one output.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The output's name.
    pub output: String,
    pub message: Message,
    /// When it was recorded, epoch seconds: how far behind its output is.
    pub created_at: i64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not sent before this time, epoch seconds.
    pub next_at: i64,
    /// The task holding it and until when; `None` when free.
    pub lease: Option<(String, i64)>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

impl Delivery {
    /// A new pending delivery of `message` to `output`.
    pub fn new(output: &str, message: Message, now: i64) -> Delivery {
        Delivery {
            output: output.to_owned(),
            message,
            created_at: now,
            attempts: 0,
            next_at: now,
            lease: None,
            last_error: None,
        }
    }

    /// Whether it may be taken at `now`: due, and nobody's lease holds it.
    pub fn ready(&self, now: i64) -> bool {
        self.next_at <= now && self.lease.as_ref().is_none_or(|(_, until)| *until < now)
    }
}

/// Sorts deliveries oldest first, as an output sends them; within one second an incident's
/// first message goes before what follows it.
pub fn oldest_first(deliveries: &mut [Delivery]) {
    deliveries.sort_by_key(|d| {
        let after = matches!(d.message, Message::FollowUp(_) | Message::Resolved(_));
        (d.created_at, after, d.message.id())
    });
}

/// How a taken delivery ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    /// Accepted by the output.
    Delivered,
    /// Not accepted yet: tried again at `at`.
    Retry { at: i64, error: String },
    /// Refused for good: kept out of the backlog, with why.
    Dead { error: String },
}

/// A call to where deliveries are kept failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct OutboxError(#[from] pub Failed);

/// Where deliveries are kept until their output accepted them. Every call is idempotent or
/// conditional, so retries and concurrent tasks deliver each message to each output once, or
/// again under the same id after a lost reply.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Records each delivery as pending, unless that output already holds that message,
    /// pending or settled.
    async fn enqueue(&self, deliveries: &[Delivery]) -> Result<(), OutboxError>;

    /// The output's pending deliveries, oldest first, at most `limit`.
    async fn pending(&self, output: &str, limit: usize) -> Result<Vec<Delivery>, OutboxError>;

    /// Takes a pending delivery for `owner` until `until`: false when it was settled, or
    /// another owner's unexpired lease holds it.
    async fn take(
        &self,
        delivery: &Delivery,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, OutboxError>;

    /// Settles a delivery `owner` took.
    async fn settle(
        &self,
        delivery: &Delivery,
        owner: &str,
        now: i64,
        how: &Settle,
    ) -> Result<(), OutboxError>;

    /// Whether a recorded delivery outlives this task. When it does not, the queue is the only
    /// durable place: a message is accepted only once its deliveries settled
    /// ([`Self::settled`]), so the queue keeps it until then.
    fn durable(&self) -> bool {
        true
    }

    /// Waits until `output` settled the message `id`, or failed an attempt at it (why);
    /// asked only of an outbox that is not [durable](Self::durable).
    async fn settled(&self, _output: &str, _id: &str) -> Result<(), String> {
        Ok(())
    }
}

/// What wakes each output's loop, with the deliveries this task just recorded for it: the loop
/// sends those at once, without reading its backlog back from the store (a read of every
/// pending message per page would cost a burst of pages the square of its size). The periodic
/// sweep reads the backlog for everything else: retries, other tasks' work, a stopped task's.
#[derive(Default)]
pub struct Wakers(HashMap<String, Arc<Fresh>>);

/// One output's just-recorded deliveries, and the bell its loop waits on.
#[derive(Default)]
pub struct Fresh {
    bell: Notify,
    deliveries: std::sync::Mutex<Vec<Delivery>>,
}

impl Fresh {
    fn take(&self) -> Vec<Delivery> {
        std::mem::take(&mut *self.deliveries.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Just-recorded deliveries kept for a loop at most; past it they wait for the sweep (they are
/// in the outbox already).
const MAX_FRESH: usize = 1000;

impl Wakers {
    pub fn new(routes: &[Arc<Route>]) -> Arc<Wakers> {
        Arc::new(Wakers(
            routes
                .iter()
                .map(|r| (r.name.clone(), Arc::default()))
                .collect(),
        ))
    }

    fn wake(&self, delivery: &Delivery) {
        if let Some(fresh) = self.0.get(&delivery.output) {
            let mut list = fresh.deliveries.lock().unwrap_or_else(|p| p.into_inner());
            if list.len() < MAX_FRESH {
                list.push(delivery.clone());
            }
            drop(list);
            fresh.bell.notify_one();
        }
    }

    fn of(&self, output: &str) -> Arc<Fresh> {
        self.0.get(output).cloned().unwrap_or_default()
    }
}

/// The outputs of a daemon: their routes, where their deliveries are kept, and what wakes
/// their loops.
pub struct Outputs {
    pub routes: Vec<Arc<Route>>,
    pub outbox: Arc<dyn Outbox>,
    pub wakers: Arc<Wakers>,
}

impl Outputs {
    pub fn new(routes: Vec<Arc<Route>>, outbox: Arc<dyn Outbox>) -> Outputs {
        let wakers = Wakers::new(&routes);
        Outputs {
            routes,
            outbox,
            wakers,
        }
    }

    /// No outputs: for a daemon whose sink delivers by itself (tests of the commit protocol).
    pub fn none() -> Outputs {
        Outputs::new(Vec::new(), Arc::new(memory::MemoryOutbox::new()))
    }

    /// The committer's sink over these outputs.
    pub fn sink(&self, clock: Clock) -> Enqueue {
        Enqueue {
            outbox: self.outbox.clone(),
            routes: self.routes.clone(),
            wakers: self.wakers.clone(),
            clock,
        }
    }
}

/// The committer's sink: records each message for every output that takes it.
pub struct Enqueue {
    pub outbox: Arc<dyn Outbox>,
    pub routes: Vec<Arc<Route>>,
    pub wakers: Arc<Wakers>,
    pub clock: Clock,
}

impl Enqueue {
    async fn enqueue(&self, message: Message) -> Result<(), SinkError> {
        let now = self.clock.now();
        let deliveries: Vec<Delivery> = self
            .routes
            .iter()
            .filter(|r| r.accepts(&message))
            .map(|r| Delivery::new(&r.name, message.clone(), now))
            .collect();
        if deliveries.is_empty() {
            info!(
                target: "trailwarden::output",
                message_id = %message.id(),
                "no output takes this message (levels and rule filters); it is logged only"
            );
            return Ok(());
        }
        self.outbox
            .enqueue(&deliveries)
            .await
            .map_err(|e| SinkError(e.0))?;
        for d in &deliveries {
            self.wakers.wake(d);
        }
        if !self.outbox.durable() {
            // Without a state table the message stays in the queue until every output took
            // it: a restart then loses nothing, at the price of intake waiting for outputs.
            // A failed attempt holds the message as an outage would; the message is queued
            // and will go out, so the error says it may have (the claim is kept, and only a
            // repeat under the same ids can follow).
            let id = message.id();
            for d in &deliveries {
                if let Err(why) = self.outbox.settled(&d.output, &id).await {
                    return Err(SinkError(
                        Failed::new(
                            crate::aws::Edge::Sink,
                            crate::aws::Answer::Unavailable,
                            format!("output {} has not taken {id} yet: {why}", d.output),
                        )
                        .maybe_done(true),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for Enqueue {
    async fn page(&self, page: Page<'_>) -> Result<(), SinkError> {
        self.enqueue(Message::page(page)).await
    }

    async fn follow_up(&self, follow_up: &FollowUp) -> Result<(), SinkError> {
        self.enqueue(Message::FollowUp(follow_up.clone())).await
    }

    async fn finding(&self, finding: Opened<'_>) -> Result<(), SinkError> {
        self.enqueue(Message::finding(finding)).await
    }

    async fn resolved(&self, resolved: &Resolved) -> Result<(), SinkError> {
        self.enqueue(Message::Resolved(resolved.clone())).await
    }
}

/// What one output's loop needs.
pub struct Loop {
    pub route: Arc<Route>,
    pub outbox: Arc<dyn Outbox>,
    pub names: SharedAccountNames,
    pub wakers: Arc<Wakers>,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    /// This task, for leases.
    pub owner: String,
    /// The backlog at which intake pauses; also the most deliveries read at once.
    pub max_pending: usize,
}

/// Delivers one output's pending messages until `shutdown`.
pub async fn deliver(l: Loop, shutdown: CancellationToken) {
    let name = l.route.name.as_str();
    let fresh = l.wakers.of(name);
    let mut backoff = aws::backoff(Duration::from_secs(1), MAX_BACKOFF);
    // While the output fails, the next attempt waits for its backoff whatever wakes the loop.
    let mut paused_until: Option<tokio::time::Instant> = None;
    // The first sweep at once (a restart's backlog), then every POLL however busy the loop.
    let mut next_sweep = tokio::time::Instant::now();
    loop {
        let until = paused_until.unwrap_or(next_sweep);
        let woken = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = fresh.bell.notified() => true,
            _ = tokio::time::sleep_until(until) => false,
        };
        if !woken {
            next_sweep = tokio::time::Instant::now() + POLL;
        }
        if woken && paused_until.is_some_and(|t| t > tokio::time::Instant::now()) {
            // The output fails: what was just recorded waits for the next attempt, and the
            // backlog is read again so that intake pauses at its bound in time.
            fresh.take();
            if let Err(e) = backlog(&l).await {
                warn!(output = name, error = %e, "cannot read the output's backlog");
            }
            continue;
        }
        // After a failure, one delivery probes the output before the rest follow.
        let probe = paused_until.take().is_some();
        let just = fresh.take();
        let sent = if woken && !probe && !just.is_empty() {
            let sent = send_all(&l, group(just, i64::MAX), false).await;
            if sent.is_err()
                && let Err(e) = backlog(&l).await
            {
                warn!(output = name, error = %e, "cannot read the output's backlog");
            }
            sent
        } else {
            // A sweep reads the whole backlog, the just-recorded deliveries with it.
            pass(&l, probe).await
        };
        match sent {
            Ok(()) => backoff = aws::backoff(Duration::from_secs(1), MAX_BACKOFF),
            Err(failed) => {
                let wait = aws::next_wait(&mut backoff);
                l.metrics.output_failing(name, Some(&failed.sentence));
                paused_until = Some(tokio::time::Instant::now() + wait);
            }
        }
    }
}

/// Reads the output's backlog and reports it (pending count, oldest age, at the bound).
async fn backlog(l: &Loop) -> Result<Vec<Delivery>, Failed> {
    let pending = l
        .outbox
        .pending(&l.route.name, l.max_pending)
        .await
        .map_err(|e| e.0)?;
    let oldest = pending.iter().map(|d| d.created_at).min();
    l.metrics
        .output_backlog(&l.route.name, pending.len(), oldest, l.max_pending);
    Ok(pending)
}

/// Records an accepted delivery, retrying the store for up to half the lease: sending it
/// again would repeat it (under the same id, so a subscriber can drop the copy).
async fn settle_delivered(l: &Loop, d: &Delivery, now: i64) -> Result<(), Failed> {
    let mut retry = aws::backoff(Duration::from_millis(200), Duration::from_secs(10));
    let until = tokio::time::Instant::now() + Duration::from_secs(LEASE_SECS as u64 / 2);
    loop {
        match l.outbox.settle(d, &l.owner, now, &Settle::Delivered).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                let wait = aws::next_wait(&mut retry);
                if tokio::time::Instant::now() + wait > until {
                    return Err(e.0);
                }
                warn!(output = %d.output, message_id = %d.message.id(), error = %e, "cannot record a delivery as done; retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Deliveries of one output in flight at once: an output's calls (a Publish, an import, an
/// event) and the outbox's own take and settle take tens of milliseconds each, and a burst
/// of pages must not wait on them one by one.
const IN_FLIGHT: usize = 16;

/// One pass over the output's backlog: sends what is ready, oldest first, up to [`IN_FLIGHT`]
/// incidents at a time (an incident's own messages one after another, so a follow-up never
/// overtakes its page), and stops starting new ones at the first failure that is not a
/// message's own. With `probe` (the output failed last time) the oldest incident goes alone
/// first, so a failing output gets one attempt per backoff, not a burst.
async fn pass(l: &Loop, probe: bool) -> Result<(), Failed> {
    let name = l.route.name.as_str();
    let pending = backlog(l).await?;
    let oldest = pending.iter().map(|d| d.created_at).min();
    let total = pending.len();
    let incidents = group(pending, l.clock.now());
    let ready: usize = incidents.iter().map(Vec::len).sum();
    let sent = send_all(l, incidents, probe).await;
    // What this pass did not send is still pending (approximately: some may have been
    // dropped as dead, or taken by another task).
    let left = if sent.is_ok() { total - ready } else { total };
    l.metrics
        .output_backlog(name, left, oldest.filter(|_| left > 0), l.max_pending);
    sent
}

/// The deliveries ready at `now`, oldest first, by incident: up to the first one that waits for
/// its retry time (what is behind it waits too, so the output's messages keep their order);
/// one another task holds is left to it.
fn group(deliveries: Vec<Delivery>, now: i64) -> Vec<Vec<Delivery>> {
    let mut incidents: Vec<Vec<Delivery>> = Vec::new();
    let mut by_incident: HashMap<String, usize> = HashMap::new();
    for d in deliveries {
        if !d.ready(now) {
            if d.lease.is_none() {
                break;
            }
            continue;
        }
        let at = *by_incident
            .entry(d.message.incident_id().to_owned())
            .or_insert_with(|| {
                incidents.push(Vec::new());
                incidents.len() - 1
            });
        incidents[at].push(d);
    }
    incidents
}

/// Sends incidents' deliveries, [`IN_FLIGHT`] incidents at a time, each incident's in order;
/// stops starting new ones at the first failure. With `probe` the first incident goes alone.
async fn send_all(l: &Loop, incidents: Vec<Vec<Delivery>>, probe: bool) -> Result<(), Failed> {
    use futures_util::stream::{self, StreamExt};

    let failed: std::sync::Mutex<Option<Failed>> = std::sync::Mutex::new(None);
    let send = |deliveries: Vec<Delivery>| {
        let failed = &failed;
        async move {
            for d in deliveries {
                if failed.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
                    return;
                }
                if let Err(f) = one(l, &d).await {
                    failed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(f);
                    return;
                }
            }
        }
    };
    let mut incidents = incidents.into_iter();
    if probe && let Some(first) = incidents.next() {
        send(first).await;
    }
    stream::iter(incidents)
        .for_each_concurrent(IN_FLIGHT, send)
        .await;
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(f) => Err(f),
        None => {
            l.metrics.output_failing(&l.route.name, None);
            Ok(())
        }
    }
}

/// Takes one delivery, sends it and settles it: true when it left the backlog (delivered, or
/// refused for good), false when another task holds it; an error when the output failed.
async fn one(l: &Loop, d: &Delivery) -> Result<bool, Failed> {
    let name = l.route.name.as_str();
    let now = l.clock.now();
    if !l
        .outbox
        .take(d, &l.owner, now, now + LEASE_SECS)
        .await
        .map_err(|e| e.0)?
    {
        return Ok(false);
    }
    let names = l.names.current();
    let outcome = l.route.output.deliver(&d.message, &names).await;
    let now = l.clock.now();
    let id = d.message.id();
    match outcome {
        Ok(()) => {
            settle_delivered(l, d, now).await?;
            l.metrics.delivered(name, "delivered");
            info!(
                target: "trailwarden::output",
                output = name,
                message_id = %id,
                attempts = d.attempts + 1,
                behind_secs = now - d.created_at,
                "delivered"
            );
            Ok(true)
        }
        Err(failed) if failed.fault == Fault::Rejected => {
            let dead = Settle::Dead {
                error: failed.sentence.clone(),
            };
            l.outbox
                .settle(d, &l.owner, now, &dead)
                .await
                .map_err(|e| e.0)?;
            l.metrics.delivered(name, "dead");
            error!(
                target: "trailwarden::output",
                output = name,
                message_id = %id,
                error = %failed.sentence,
                "the output refused this message for good; it is dropped from this output and kept in the outbox for 14 days"
            );
            Ok(true)
        }
        Err(failed) => {
            // Tried again after the output's backoff; the loop pauses until then.
            let retry = Settle::Retry {
                at: now + 1,
                error: failed.sentence.clone(),
            };
            if let Err(e) = l.outbox.settle(d, &l.owner, now, &retry).await {
                warn!(output = name, error = %e, "cannot give a failed delivery back; it is retried after its lease");
            }
            l.metrics.delivered(name, "retried");
            if failed.fault == Fault::Outage {
                warn!(target: "trailwarden::output", output = name, message_id = %id, error = %failed.sentence, "output unavailable; its deliveries wait and are retried with backoff");
            } else {
                error!(target: "trailwarden::output", output = name, message_id = %id, error = %failed.sentence, "output misconfigured: its deliveries are held until the setting or the resource is fixed");
            }
            Err(failed)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;
    use crate::aws::{Answer, Edge};
    use crate::config::OutputKind;
    use crate::finding::accounts::AccountNames;
    use crate::finding::{Level, Standing};
    use crate::output::Output;

    /// An output that answers from a script (`None` accepts), then accepts everything.
    #[derive(Default)]
    struct Scripted {
        answers: Mutex<VecDeque<Option<Answer>>>,
        got: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Output for Scripted {
        async fn deliver(&self, message: &Message, _: &AccountNames) -> Result<(), Failed> {
            let answer = self.answers.lock().expect("script").pop_front().flatten();
            match answer {
                Some(answer) => Err(Failed::new(Edge::Sink, answer, format!("{answer:?}"))),
                None => {
                    self.got.lock().expect("got").push(message.id());
                    Ok(())
                }
            }
        }

        async fn check(&self) -> Result<(), Failed> {
            Ok(())
        }
    }

    fn route(name: &str, min_level: Level, output: Arc<Scripted>) -> Arc<Route> {
        Arc::new(Route {
            name: name.into(),
            kind: OutputKind::Sns,
            min_level,
            rules: vec!["user-*".into()],
            output,
        })
    }

    fn resolved(incident: &str, level: Level) -> Resolved {
        Resolved {
            incident_id: incident.into(),
            finding: Standing {
                check: "user-without-mfa".into(),
                account: "111122223333".into(),
                resource: format!("arn:aws:iam::111122223333:user/{incident}"),
                level,
                title: "MFA".into(),
                evidence: "no MFA".into(),
                next_steps: vec![],
            },
            opened_at: 0,
            resolved_at: 1,
            by: "audit".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_output_holds_only_its_own_deliveries_in_order() {
        let pager = Arc::new(Scripted::default());
        pager.answers.lock().expect("script").extend([
            Some(Answer::Unavailable),
            Some(Answer::Unavailable),
            Some(Answer::Denied),
            None,
            Some(Answer::Invalid),
        ]);
        let chat = Arc::new(Scripted::default());
        let routes = vec![
            route("pager", Level::High, pager.clone()),
            route("chat", Level::Low, chat.clone()),
        ];
        let outputs = Outputs::new(routes, Arc::new(memory::MemoryOutbox::new()));
        let clock = Clock::tokio(1_700_000_000);
        let metrics = Metrics::with_clock(clock.clone());
        let shutdown = CancellationToken::new();
        for route in &outputs.routes {
            tokio::spawn(deliver(
                Loop {
                    route: route.clone(),
                    outbox: outputs.outbox.clone(),
                    names: SharedAccountNames::default(),
                    wakers: outputs.wakers.clone(),
                    clock: clock.clone(),
                    metrics: metrics.clone(),
                    owner: "task".into(),
                    max_pending: 2,
                },
                shutdown.clone(),
            ));
        }
        let sink = Arc::new(outputs.sink(clock.clone()));
        // The memory outbox accepts a message once its outputs settled it, and says so when an
        // output failed an attempt: the daemon holds the message and tries again, as here.
        let send = |r: Resolved| {
            let sink = sink.clone();
            tokio::spawn(async move {
                loop {
                    match sink.resolved(&r).await {
                        Ok(()) => return Ok::<(), SinkError>(()),
                        Err(e) => assert!(e.0.ambiguous, "{e}"),
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
        };
        let first = send(resolved("a", Level::High));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let second = send(resolved("b", Level::High));
        let low = send(resolved("c", Level::Low));
        // The chat output takes what it is sent while the pager fails.
        low.await.expect("join").expect("low");
        assert!(
            chat.got
                .lock()
                .expect("got")
                .contains(&"c:resolved".to_owned())
        );
        assert!(pager.got.lock().expect("got").is_empty());
        assert!(
            metrics.output_states()["pager"].error.is_some(),
            "the pager says why"
        );
        first.await.expect("join").expect("first");
        second.await.expect("join").expect("second");
        let mut got = chat.got.lock().expect("got").clone();
        got.sort();
        assert_eq!(got, vec!["a:resolved", "b:resolved", "c:resolved"]);
        // Two outages and a refused setting later, the pager gets the first, in order; the
        // second it refuses for good: dropped from this output only.
        assert_eq!(*pager.got.lock().expect("got"), vec!["a:resolved"]);
        let states = metrics.output_states();
        assert_eq!(states["pager"].pending, 0, "{states:?}");
        assert_eq!(states["pager"].error, None);
        let text = metrics.encode();
        for line in [
            "trailwarden_output_deliveries_total{output=\"pager\",outcome=\"retried\"} 3",
            "trailwarden_output_deliveries_total{output=\"pager\",outcome=\"delivered\"} 1",
            "trailwarden_output_deliveries_total{output=\"pager\",outcome=\"dead\"} 1",
            "trailwarden_output_deliveries_total{output=\"chat\",outcome=\"delivered\"} 3",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
        shutdown.cancel();
    }

    /// An output that is down until `up_at` on `clock`.
    struct DownUntil {
        clock: Clock,
        up_at: i64,
        got: Mutex<Vec<String>>,
        tries: Mutex<u64>,
    }

    #[async_trait]
    impl Output for DownUntil {
        async fn deliver(&self, message: &Message, _: &AccountNames) -> Result<(), Failed> {
            *self.tries.lock().expect("tries") += 1;
            if self.clock.now() < self.up_at {
                return Err(Failed::new(Edge::Sink, Answer::Unavailable, "down".into()));
            }
            self.got.lock().expect("got").push(message.id());
            Ok(())
        }

        async fn check(&self) -> Result<(), Failed> {
            Ok(())
        }
    }

    /// A day-long outage costs nothing but retries at the longest backoff: every message goes
    /// out, once, in order, within a backoff of the output's return.
    #[tokio::test(start_paused = true)]
    async fn an_output_down_for_a_day_gets_every_message_after() {
        let clock = Clock::tokio(1_700_000_000);
        let day = 24 * 3600;
        let output = Arc::new(DownUntil {
            clock: clock.clone(),
            up_at: clock.now() + day,
            got: Mutex::default(),
            tries: Mutex::default(),
        });
        let route = Arc::new(Route {
            name: "pager".into(),
            kind: OutputKind::Pagerduty,
            min_level: Level::Low,
            rules: vec![],
            output: output.clone(),
        });
        let outputs = Outputs::new(
            vec![route.clone()],
            Arc::new(memory::MemoryOutbox::recorded_only()),
        );
        let metrics = Metrics::with_clock(clock.clone());
        let shutdown = CancellationToken::new();
        tokio::spawn(deliver(
            Loop {
                route,
                outbox: outputs.outbox.clone(),
                names: SharedAccountNames::default(),
                wakers: outputs.wakers.clone(),
                clock: clock.clone(),
                metrics: metrics.clone(),
                owner: "task".into(),
                max_pending: 1000,
            },
            shutdown.clone(),
        ));
        let sink = outputs.sink(clock.clone());
        for i in 0..3 {
            sink.resolved(&resolved(&format!("r{i}"), Level::High))
                .await
                .expect("recorded");
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
        tokio::time::sleep(Duration::from_secs(day as u64)).await;
        assert_eq!(
            *output.got.lock().expect("got"),
            vec!["r0:resolved", "r1:resolved", "r2:resolved"]
        );
        // About one try a minute or two at the longest backoff (with jitter), not a storm.
        let tries = *output.tries.lock().expect("tries");
        assert!((500..=2_000).contains(&tries), "{tries} tries in a day");
        assert_eq!(metrics.output_behind_secs(), 0);
        shutdown.cancel();
    }
}
