//! trailwarden watches CloudTrail and pages once when something that matters happens.
//!
//! # Layout
//!
//! Work flows through the modules in this order, and no module imports from one later in it:
//!
//! ```text
//! SQS message → S3 object → gunzip → records → rules → producer → incidents → SNS → delete
//!   intake       intake     cloudtrail cloudtrail detect pipeline   incidents  output daemon
//! ```
//!
//! - [`finding`]: the vocabulary below every stage: severity, the alert model and text
//!   cleaning, incident keys, folds and stats, correlation events, [`finding::Findings`], and
//!   the sink seam outputs implement.
//! - [`intake`]: where work comes from: the SQS seam, notification bodies, S3 objects, local
//!   files.
//! - [`cloudtrail`]: gunzip (size-capped) and stream the `Records` one at a time, lazily parsed.
//! - [`detect`]: the Sigma rule set (builtin + user directories): record → rules fired, and the
//!   alerts they raise.
//! - [`pipeline`]: the producers: a log file or an event (bytes, no SDK type) → alerts keyed
//!   by incident and correlation events, with the one skip rule, the one damage policy and the
//!   one keying function; shared by the daemon, `scan` and the tests.
//! - [`incidents`]: what pages and when: correlation on event time, the commit protocol, and
//!   the state store (memory or DynamoDB) that makes "page once" hold across tasks.
//! - [`output`]: the sinks findings leave through (SNS), each with its renderer.
//! - [`daemon`]: the loop: lease → producer → commit → ack, with backpressure, start-up checks
//!   and shutdown; and the posture audit on an interval, with re-checks as records change it.
//!
//! Around them:
//!
//! - [`posture`]: the posture audit as a producer: the account's IAM, CloudTrail, Access
//!   Analyzer and Organizations settings (read through a small view trait) → standing
//!   findings per check, or could-not-check naming the refused call; and the one table of
//!   records that change posture, which the log-file and event producers turn into re-checks.
//! - [`scan`]: the offline command over files, directories, stdin and S3 prefixes.
//! - [`backfill`]: the CloudTrail log objects of a time range → S3 notifications on the
//!   daemon's queue, so the daemon's tasks read history as they read live traffic.
//! - [`rule_test`]: rule unit tests (records, and which rules must and must not fire) run
//!   through the `scan` producer, for `rules test` and the builtin rules' own cases.
//! - [`audit`]: the `audit` command over the posture producer.
//! - [`config`]: daemon settings from TOML and `TRAILWARDEN_*` variables, strictly validated.
//! - [`telemetry`]: logs, Prometheus metrics, `/healthz` and the `healthcheck` probe.
//! - [`aws`]: SDK timeouts and retries, and the one table that says what a failed AWS call
//!   means at each edge (outage, rejected, gone, setting).
//! - [`clock`]: the one clock decisions read, which tests can pause and advance.
//! - [`coalesce`]: concurrent small writes (message deletes, page records) batched into one call.

pub mod audit;
pub mod aws;
pub mod backfill;
pub mod clock;
pub mod cloudtrail;
pub mod coalesce;
pub mod config;
pub mod daemon;
pub mod detect;
pub mod finding;
pub mod incidents;
pub mod intake;
pub mod output;
pub mod pipeline;
pub mod posture;
pub mod rule_test;
pub mod scan;
pub mod telemetry;
