//! trailwarden watches CloudTrail and pages once when something that matters happens.
//!
//! # Layout
//!
//! The data flows through the modules in this order:
//!
//! - [`notification`]: an SQS message body → the S3 objects it announces.
//! - [`object`]: where log bytes come from: a local file, stdin, or S3 `GetObject`.
//! - [`cloudtrail`]: gunzip (size-capped) and stream the `Records` one at a time.
//! - [`detect`]: the Sigma rule set (builtin + user directories): record → rules fired.
//! - [`engine`]: one log file → alerts, shared by `scan` and the daemon.
//! - [`alert`]: the alert model and its summary sentence.
//! - [`publish`]: alerts → grouped SNS messages.
//! - [`daemon`]: SQS workers, visibility heartbeat, delete only when done, shutdown.
//! - [`scan`]: the offline command over files, directories, stdin and S3 prefixes.
//! - [`config`], [`telemetry`], [`aws`]: settings, logs/metrics/health, AWS client setup.

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
