//! trailwarden watches CloudTrail and pages once when something that matters happens.
//!
//! # Layout
//!
//! The daemon's data flows through the modules in this order:
//!
//! ```text
//! SQS message → S3 object → gunzip → records → rules → alerts → SNS → delete message
//! ```
//!
//! - [`queue`]: receive, extend visibility, delete (the SQS seam).
//! - [`notification`]: an SQS message body → the S3 objects it announces.
//! - [`object`]: where log bytes come from: S3 `GetObject`, a local file, or stdin.
//! - [`cloudtrail`]: gunzip (size-capped) and stream the `Records` one at a time.
//! - [`detect`]: the Sigma rule set (builtin + user directories): record → rules fired.
//! - [`engine`]: one log file → alerts, shared by the daemon and `scan`.
//! - [`alert`]: the alert model and its one-sentence summary.
//! - [`publish`]: alerts → grouped SNS messages → `Publish` (the SNS seam).
//! - [`daemon`]: ties the above together: workers, heartbeat, at-least-once delivery, shutdown.
//!
//! Around them:
//!
//! - [`scan`]: the offline command over files, directories, stdin and S3 prefixes.
//! - [`config`]: daemon settings from TOML and `TRAILWARDEN_*` variables, strictly validated.
//! - [`telemetry`]: logs, Prometheus metrics, `/healthz` and the `healthcheck` probe.
//! - [`aws`]: SDK configuration and the one place AWS errors are classified as retryable.

pub mod alert;
pub mod aws;
pub mod cloudtrail;
pub mod config;
pub mod daemon;
pub mod detect;
pub mod engine;
pub mod notification;
pub mod object;
pub mod publish;
pub mod queue;
pub mod scan;
pub mod telemetry;
