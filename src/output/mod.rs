//! The outputs: where messages go once their findings are committed, each rendered as its
//! destination expects and delivered on its own.
//!
//! - [`outbox`]: the committer's sink. It records each message once per output that takes it
//!   (pending), and each output's delivery loop works through its own pending deliveries with
//!   its own backoff, so one output being down holds only its own deliveries.
//! - [`pagerduty`]: PagerDuty's Events API v2 (one alert per incident: a page triggers it, a
//!   follow-up triggers it again, a fixed finding resolves it), its key read from Secrets
//!   Manager or SSM at start-up.
//! - [`sns`]: an SNS topic (email text with next steps, then JSON; message attributes for
//!   filter policies).
//! - [`chatbot`]: AWS Chatbot custom notifications on an SNS topic (Slack or Teams markdown,
//!   record text escaped, one thread per incident).
//! - [`securityhub`]: AWS Security Hub, one AWS Security Finding Format finding per incident
//!   (BatchImportFindings), updated by its follow-up and archived by its resolution.
//!
//! Rendering is separate from transport: each kind's renderer is a pure function of the
//! [`Message`] and the account names.

pub mod chatbot;
pub mod outbox;
pub mod pagerduty;
pub mod securityhub;
pub mod sns;

use std::sync::Arc;

use async_trait::async_trait;

use crate::aws::Failed;
use crate::config::{OutputKind, OutputSettings};
use crate::finding::Level;
use crate::finding::accounts::AccountNames;
use crate::finding::sink::Message;

/// One destination's transport: renders a message as the destination expects and sends it.
#[async_trait]
pub trait Output: Send + Sync {
    /// Sends one message. The error is classified at the sink edge: an outage is retried with
    /// backoff, a setting holds this output's deliveries until it is fixed, a refusal of this
    /// message (it will never be accepted) drops it, logged and counted.
    async fn deliver(&self, message: &Message, names: &AccountNames) -> Result<(), Failed>;

    /// Checks at start-up that the destination exists and this role may use it.
    async fn check(&self) -> Result<(), Failed>;
}

/// An output with its name and what it takes.
pub struct Route {
    /// The output's name in settings, logs, metrics and /healthz.
    pub name: String,
    pub kind: OutputKind,
    /// Messages below this level are not sent here.
    pub min_level: Level,
    /// Rules (and checks) sent here: exact names, or a prefix ending in `*`; empty takes all.
    pub rules: Vec<String>,
    pub output: Arc<dyn Output>,
}

impl Route {
    /// A route as the settings describe it, over `output`.
    pub fn new(settings: &OutputSettings, default_level: Level, output: Arc<dyn Output>) -> Route {
        Route {
            name: settings.name.clone(),
            kind: settings.kind,
            min_level: settings.min_level.unwrap_or(default_level),
            rules: settings.rules.clone(),
            output,
        }
    }

    /// Whether this output takes `message`. A finding's resolution goes where the finding
    /// went: both carry the same check and level.
    pub fn accepts(&self, message: &Message) -> bool {
        message.level() >= self.min_level
            && (self.rules.is_empty()
                || self
                    .rules
                    .iter()
                    .any(|pattern| matches(pattern, message.rule())))
    }
}

/// `pattern` is a rule name, or a prefix ending in `*`.
fn matches(pattern: &str, rule: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => rule.starts_with(prefix),
        None => pattern == rule,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_filters_take_names_and_prefixes() {
        assert!(matches("root-*", "root-console-login"));
        assert!(matches("root-console-login", "root-console-login"));
        assert!(!matches("root-console", "root-console-login"));
        assert!(matches("*", "anything"));
    }
}
