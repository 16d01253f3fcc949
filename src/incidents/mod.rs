//! Alerts → incidents: what pages, when, and what is only counted.
//!
//! An incident is one rule firing for one account and one principal. The first alert of an
//! incident pages at once; further alerts within the incident's window are folded into it and
//! summarised in one follow-up when the window ends. The principal is normalised so a caller
//! cannot split an incident (and page many times) by choosing new session names.
//!
//! - [`fold`]: alerts of one source (a log file or an event) folded per incident, in bounded
//!   memory whatever the number of alerts.
//! - [`correlate`]: Sigma correlations decided on event time, whatever order files arrive in.
//! - [`store`]: the shared state (incidents, follow-ups, correlation windows), in memory or in
//!   DynamoDB.
//! - [`commit`]: the protocol that turns one source's findings into pages, folds and
//!   correlation state, recording nothing before the outputs accepted it.

pub mod commit;
pub mod correlate;
pub mod fold;
pub mod store;

use std::fmt;

use sha2::{Digest, Sha256};

use crate::cloudtrail::Record;

/// What an incident is keyed by: rule, account and normalised principal.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct IncidentKey {
    /// The rule's stable name.
    pub rule: String,
    /// The account the events were recorded in, or `unknown`.
    pub account: String,
    /// The normalised principal (see [`principal`]), or a correlation's group-by values.
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

/// The incident a record's alert of `rule` belongs to: the one keying function.
pub fn key(rule: &str, record: &Record<'_>) -> IncidentKey {
    IncidentKey {
        rule: rule.to_owned(),
        account: account(record),
        principal: principal(record),
    }
}

/// The account a record belongs to: `recipientAccountId`, else the caller's account.
pub fn account(record: &Record<'_>) -> String {
    record
        .str_at("recipientAccountId")
        .or_else(|| record.str_at("userIdentity.accountId"))
        .map(|a| a.into_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The principal an incident is keyed by, normalised so that callers cannot split it:
///
/// - an assumed-role session counts as its role (`sessionContext.sessionIssuer.arn`, which
///   keeps the role's path; else derived from the session ARN). The session name stays in the
///   alert's `principal_arn`, not in the key;
/// - root, in any session (console, access key, sts AssumeRoot), as the account's root;
/// - an IAM user as its ARN; a federated user as the IAM user that federated it;
/// - anything else by the most stable identifier the record has.
///
/// <https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-user-identity.html>
pub fn principal(record: &Record<'_>) -> String {
    let text = |path: &str| record.str_at(path).map(|s| s.into_owned());
    let account = text("userIdentity.accountId").or_else(|| text("recipientAccountId"));
    let kind = text("userIdentity.type").unwrap_or_default();
    let arn = text("userIdentity.arn");
    match kind.as_str() {
        "Root" => match account {
            Some(account) => format!("arn:aws:iam::{account}:root"),
            None => arn.unwrap_or_else(|| "root".to_owned()),
        },
        "AssumedRole" | "FederatedUser" => text("userIdentity.sessionContext.sessionIssuer.arn")
            .or_else(|| arn.as_deref().and_then(role_of_session))
            .or(arn)
            .unwrap_or_else(|| fallback(record, &kind)),
        _ => arn.unwrap_or_else(|| fallback(record, &kind)),
    }
}

/// A principal for identities without an ARN: failed sign-ins of unknown users, services,
/// Identity Center users.
fn fallback(record: &Record<'_>, kind: &str) -> String {
    let text = |path: &str| record.str_at(path).map(|s| s.into_owned());
    let name = text("userIdentity.userName")
        .or_else(|| text("userIdentity.invokedBy"))
        .or_else(|| text("userIdentity.principalId"))
        .or_else(|| text("userIdentity.onBehalfOf.userId"));
    match (kind, name) {
        ("", Some(name)) => name,
        ("", None) => "unknown".to_owned(),
        (kind, Some(name)) => format!("{kind}:{name}"),
        (kind, None) => kind.to_owned(),
    }
}

/// `arn:aws:sts::111122223333:assumed-role/Role/session` → `arn:aws:iam::111122223333:role/Role`.
fn role_of_session(arn: &str) -> Option<String> {
    let (head, resource) = arn.split_once(":assumed-role/")?;
    let role = resource.split('/').next().filter(|r| !r.is_empty())?;
    let mut parts = head.split(':');
    let (Some("arn"), Some(partition), Some(_sts), Some(_region), Some(account)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    Some(format!("arn:{partition}:iam::{account}:role/{role}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal_of(json: &str) -> String {
        principal(&Record::parse(json.as_bytes()).expect("record"))
    }

    #[test]
    fn sessions_of_one_role_are_one_principal() {
        let with_issuer = r#"{"userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::111122223333:assumed-role/deploy/attacker-chosen-1","accountId":"111122223333","sessionContext":{"sessionIssuer":{"type":"Role","arn":"arn:aws:iam::111122223333:role/ci/deploy","userName":"deploy"}}}}"#;
        let without = r#"{"userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::111122223333:assumed-role/deploy/attacker-chosen-2","accountId":"111122223333"}}"#;
        assert_eq!(
            principal_of(with_issuer),
            "arn:aws:iam::111122223333:role/ci/deploy"
        );
        assert_eq!(
            principal_of(without),
            "arn:aws:iam::111122223333:role/deploy"
        );
    }

    #[test]
    fn root_in_any_session_is_the_account_root() {
        let console = r#"{"userIdentity":{"type":"Root","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333"}}"#;
        let assumed = r#"{"userIdentity":{"type":"Root","accountId":"111122223333","sessionContext":{"assumedRoot":"true"}}}"#;
        assert_eq!(principal_of(console), "arn:aws:iam::111122223333:root");
        assert_eq!(principal_of(assumed), "arn:aws:iam::111122223333:root");
    }

    #[test]
    fn users_and_identities_without_arn() {
        let user = r#"{"userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/bob","userName":"bob"}}"#;
        let unknown = r#"{"userIdentity":{"type":"IAMUser","accountId":"111122223333","userName":"HIDDEN_DUE_TO_SECURITY_REASONS"}}"#;
        let nothing = r#"{"eventName":"x"}"#;
        assert_eq!(principal_of(user), "arn:aws:iam::111122223333:user/bob");
        assert_eq!(
            principal_of(unknown),
            "IAMUser:HIDDEN_DUE_TO_SECURITY_REASONS"
        );
        assert_eq!(principal_of(nothing), "unknown");
    }

    #[test]
    fn digests_are_stable_and_separate_parts() {
        let k = |r: &str, a: &str, p: &str| IncidentKey {
            rule: r.into(),
            account: a.into(),
            principal: p.into(),
        };
        assert_eq!(k("a", "b", "c").digest(), k("a", "b", "c").digest());
        assert_ne!(k("ab", "", "c").digest(), k("a", "b", "c").digest());
        assert_eq!(k("a", "b", "c").digest().len(), 32);
    }
}
