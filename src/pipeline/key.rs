//! A record → the incident its alerts belong to: the one keying function, used by every
//! producer. The principal is normalised so a caller cannot split an incident (and page many
//! times) by choosing new session names.

use crate::cloudtrail::Record;
use crate::finding::IncidentKey;

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
}
