//! The vocabulary every stage shares, below all of them: what a finding is, how severe, which
//! incident it belongs to, and the alert model. Nothing here imports a stage; every stage may
//! import this.
//!
//! A finding is either something that happened (an [`alert::Alert`] from a record, folded
//! into an incident for a window: [`fold`]) or something that stands ([`Standing`]: a check
//! failing for a resource, open until a later check no longer finds it). Correlation events
//! ([`correlation`]) are the records a correlation needs, in bounded memory. What a producer
//! hands the daemon for one source is [`Findings`]; [`sink`] is how findings leave.

pub mod accounts;
pub mod alert;
pub mod correlation;
pub mod fold;
pub mod sink;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use fold::Fold;

/// Alert severity, ordered from least to most severe. Sigma's levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Level {
    /// The lower-case Sigma spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Informational => "informational",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "informational" | "info" => Ok(Level::Informational),
            "low" => Ok(Level::Low),
            "medium" => Ok(Level::Medium),
            "high" => Ok(Level::High),
            "critical" => Ok(Level::Critical),
            other => Err(format!(
                "unknown level {other:?}; expected informational, low, medium, high or critical"
            )),
        }
    }
}

/// What an incident is keyed by: rule, account and normalised principal.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct IncidentKey {
    /// The rule's stable name.
    pub rule: String,
    /// The account the events were recorded in, or `unknown`.
    pub account: String,
    /// The normalised principal (see `pipeline::key::principal`), or a correlation's group-by
    /// values, or a standing finding's resource.
    pub principal: String,
}

impl IncidentKey {
    /// A short, stable digest of the key, used to address it in the state store.
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        for part in [&self.rule, &self.account, &self.principal] {
            hasher.update(part.as_bytes());
            // A separator that cannot occur in the parts keeps ("ab","c") apart from ("a","bc").
            hasher.update([0u8]);
        }
        hex(&hasher.finalize()[..16])
    }
}

impl fmt::Display for IncidentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {} by {}", self.rule, self.account, self.principal)
    }
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// What one source raised, for the daemon to commit: alerts folded per incident, the events
/// that feed correlations, and findings about standing state.
#[derive(Debug, Default)]
pub struct Findings {
    /// Names the source in alerts and in the state store: `s3://bucket/key`, a path, or
    /// `eventbridge:<region>:<id>`.
    pub source: String,
    pub folds: Vec<Fold>,
    pub correlation: correlation::Batch,
    /// Conditions that stand rather than happened (a root access key that exists, a user
    /// without MFA): open until a later check no longer finds them.
    pub standing: Vec<Standing>,
    /// What the posture checks evaluated: an open finding in scope that `standing` no longer
    /// holds was fixed. A check that could not be made has no scope, so it resolves nothing.
    pub scope: Vec<Scope>,
    /// Records that changed posture (a root key created, MFA removed): the checks to run again
    /// for their resource at once.
    pub rechecks: Vec<Recheck>,
}

impl Findings {
    /// Whether there is anything to commit (re-checks are run, not committed).
    pub fn is_empty(&self) -> bool {
        self.folds.is_empty()
            && self.correlation.is_empty()
            && self.standing.is_empty()
            && self.scope.is_empty()
    }
}

/// What one posture check evaluated: a whole account, or one resource of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// The check's stable name.
    pub check: String,
    /// The check's level, the level of each of its findings.
    pub level: Level,
    pub account: String,
    /// Only this resource (a user's ARN covers its keys and password, `<arn>#...`); `None`
    /// for every resource of the account.
    pub resource: Option<String>,
}

impl Scope {
    /// Whether an open finding of this check and account is about a resource evaluated here.
    pub fn covers(&self, resource: &str) -> bool {
        match &self.resource {
            None => true,
            Some(r) => {
                resource == r
                    || resource
                        .strip_prefix(r.as_str())
                        .is_some_and(|rest| rest.starts_with('#'))
            }
        }
    }
}

/// What a re-check reads again: one part of an account's posture.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// Root's access keys and MFA.
    Root,
    /// One IAM user, by name: password, MFA, keys, directly granted policies.
    User(String),
    /// The account password policy.
    PasswordPolicy,
    /// The trails.
    Trails,
}

/// A request to run the checks of `target` again in `account`, raised by `event` (an eventName
/// with its eventID, for the log line).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Recheck {
    pub account: String,
    pub target: Target,
    pub event: String,
}

/// A finding about standing state: one check failing for one resource of one account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standing {
    /// The check's stable name, like a rule's (`root-access-key-present`).
    pub check: String,
    pub account: String,
    /// What the finding is about: a user's, key's, trail's or policy's ARN or name.
    pub resource: String,
    pub level: Level,
    /// The recommendation it enforces, in one sentence.
    pub title: String,
    /// What was found, with dates: which key, created when, last used when.
    pub evidence: String,
    /// What to do now, one short line each.
    pub next_steps: Vec<String>,
}

impl Standing {
    /// The incident a standing finding is: its check, account and resource.
    pub fn key(&self) -> IncidentKey {
        IncidentKey {
            rule: self.check.clone(),
            account: self.account.clone(),
            principal: self.resource.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_stable_and_separate_parts() {
        let k = |r: &str, a: &str, p: &str| IncidentKey {
            rule: r.into(),
            account: a.into(),
            principal: p.into(),
        };
        // The digest addresses stored incidents: a change orphans them on a rolling deploy.
        assert_eq!(
            k("a", "b", "c").digest(),
            "13e228567e8249fce53337f25d7970de"
        );
        assert_ne!(k("ab", "", "c").digest(), k("a", "b", "c").digest());
        assert_eq!(k("a", "b", "c").digest().len(), 32);
    }
}
