//! Alerts → incidents: what pages, when, and what is only counted.
//!
//! An incident is one rule firing for one account and one principal. The first alert of an
//! incident pages at once; further alerts within the incident's window are folded into it and
//! summarised in one follow-up when the window ends. (The producers key alerts by incident:
//! `pipeline::key`.)
//!
//! - [`correlate`]: Sigma correlations decided on event time, whatever order files arrive in.
//! - [`store`]: the shared state (incidents, follow-ups, correlation windows), in memory or in
//!   DynamoDB.
//! - [`commit`]: the protocol that turns one source's findings into pages, folds and
//!   correlation state, recording nothing before the outputs accepted it.

pub mod commit;
pub mod correlate;
pub mod store;
