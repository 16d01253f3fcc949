//! trailwarden watches CloudTrail and pages once when something that matters happens.
//!
//! # Layout
//!
//! Work flows through the modules in this order:
//!
//! ```text
//! SQS message → S3 object → gunzip → records → rules → incidents → SNS → delete message
//!   intake       intake     cloudtrail cloudtrail detect   incidents  output   daemon
//! ```
//!
//! - [`intake`]: where work comes from: the SQS seam, notification bodies, S3 objects, local
//!   files.
//! - [`cloudtrail`]: gunzip (size-capped) and stream the `Records` one at a time, lazily parsed.
//! - [`detect`]: the Sigma rule set (builtin + user directories): record → rules fired.
//! - [`pipeline`]: the producers: a log file or an event (bytes, no SDK type) → alerts keyed
//!   by incident, correlation events and [`pipeline::Findings`], with the one skip rule and the
//!   one damage policy; shared by the daemon, `scan` and the tests.
//! - [`incidents`]: what pages and when: incident keys, folding, correlation on event time,
//!   and the state store (memory or DynamoDB) that makes "page once" hold across tasks.
//! - [`alert`]: the alert model and its one-sentence summary.
//! - [`output`]: pages and follow-ups, and the sinks they go to (SNS).
//! - [`daemon`]: the loop: lease → pipeline → incidents → outputs → ack, with backpressure,
//!   start-up checks and shutdown.
//!
//! Around them:
//!
//! - [`scan`]: the offline command over files, directories, stdin and S3 prefixes.
//! - [`config`]: daemon settings from TOML and `TRAILWARDEN_*` variables, strictly validated.
//! - [`telemetry`]: logs, Prometheus metrics, `/healthz` and the `healthcheck` probe.
//! - [`aws`]: SDK timeouts and retries, and the one table that says what a failed AWS call
//!   means at each edge (outage, rejected, gone, setting).
//! - [`coalesce`]: concurrent small writes (message deletes, page records) batched into one call.

pub mod alert;
pub mod aws;
pub mod cloudtrail;
pub mod coalesce;
pub mod config;
pub mod daemon;
pub mod detect;
pub mod incidents;
pub mod intake;
pub mod output;
pub mod pipeline;
pub mod scan;
pub mod telemetry;
