//! CloudTrail records that change posture → which checks to run again, for which resource: the
//! one table from eventName to re-check. A root key created, MFA removed, a console password
//! given: the daemon re-checks within seconds instead of at the next audit.
//!
//! Re-checks read live (the credential report is regenerated at most every 4 hours, so it
//! would still show the state before the change):
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_getting-report.html>.

use super::checks::{self, Check};
use crate::cloudtrail::Record;
use crate::finding::{Recheck, Target};

/// Whose change a record is, by the parameters its eventName carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum About {
    /// `requestParameters.userName`, or the caller itself when absent (root's own keys).
    KeyOwner,
    /// `requestParameters.userName`; `AWS ROOT USER`, a root MFA serial, or a root caller
    /// without a user name is root.
    MfaOwner,
    /// `requestParameters.userName`.
    User,
    PasswordPolicy,
    Trails,
}

/// Every eventName that changes what a check would find, fixes included.
const CHANGES: &[(&str, &str, About)] = &[
    ("iam.amazonaws.com", "CreateAccessKey", About::KeyOwner),
    ("iam.amazonaws.com", "DeleteAccessKey", About::KeyOwner),
    ("iam.amazonaws.com", "UpdateAccessKey", About::KeyOwner),
    ("iam.amazonaws.com", "EnableMFADevice", About::MfaOwner),
    ("iam.amazonaws.com", "DeactivateMFADevice", About::MfaOwner),
    (
        "iam.amazonaws.com",
        "DeleteVirtualMFADevice",
        About::MfaOwner,
    ),
    (
        "iam.amazonaws.com",
        "UpdateAccountPasswordPolicy",
        About::PasswordPolicy,
    ),
    (
        "iam.amazonaws.com",
        "DeleteAccountPasswordPolicy",
        About::PasswordPolicy,
    ),
    ("iam.amazonaws.com", "CreateUser", About::User),
    ("iam.amazonaws.com", "DeleteUser", About::User),
    ("iam.amazonaws.com", "CreateLoginProfile", About::User),
    ("iam.amazonaws.com", "UpdateLoginProfile", About::User),
    ("iam.amazonaws.com", "DeleteLoginProfile", About::User),
    ("iam.amazonaws.com", "AttachUserPolicy", About::User),
    ("iam.amazonaws.com", "DetachUserPolicy", About::User),
    ("iam.amazonaws.com", "PutUserPolicy", About::User),
    ("iam.amazonaws.com", "DeleteUserPolicy", About::User),
    ("cloudtrail.amazonaws.com", "CreateTrail", About::Trails),
    ("cloudtrail.amazonaws.com", "UpdateTrail", About::Trails),
    ("cloudtrail.amazonaws.com", "DeleteTrail", About::Trails),
    ("cloudtrail.amazonaws.com", "StartLogging", About::Trails),
    ("cloudtrail.amazonaws.com", "StopLogging", About::Trails),
    (
        "cloudtrail.amazonaws.com",
        "PutEventSelectors",
        About::Trails,
    ),
];

/// How IAM names root in MFA calls' `userName`.
const ROOT_USER_NAME: &str = "AWS ROOT USER";

/// The checks a re-check of `target` runs.
pub fn checks_of(target: &Target) -> &'static [&'static Check] {
    match target {
        Target::Root => &[&checks::ROOT_ACCESS_KEY_PRESENT, &checks::ROOT_MFA_DISABLED],
        Target::User(_) => &[
            &checks::USER_WITHOUT_MFA,
            &checks::ACCESS_KEY_NOT_ROTATED,
            &checks::CREDENTIAL_UNUSED,
            &checks::USER_MULTIPLE_ACTIVE_KEYS,
            &checks::USER_HAS_DIRECT_POLICIES,
            &checks::USER_ADMIN_DIRECT,
        ],
        Target::PasswordPolicy => &[&checks::PASSWORD_POLICY_WEAK],
        Target::Trails => &[
            &checks::TRAIL_COVERAGE_MISSING,
            &checks::TRAIL_VALIDATION_OFF,
            &checks::TRAIL_NOT_ENCRYPTED,
        ],
    }
}

/// The re-check a record asks for: `None` for a record that changes no posture, a call that
/// failed (it changed nothing), or a change whose resource the record does not name.
pub fn of(record: &Record<'_>) -> Option<Recheck> {
    // Every record of every log file passes here: one field decides for all but IAM's and
    // CloudTrail's own.
    let source = record.str_at("eventSource")?;
    if source != "iam.amazonaws.com" && source != "cloudtrail.amazonaws.com" {
        return None;
    }
    let name = record.str_at("eventName")?;
    let (_, _, about) = CHANGES
        .iter()
        .find(|(s, n, _)| *s == source && *n == name)?;
    if record.str_at("errorCode").is_some() {
        return None;
    }
    let account = record
        .str_at("recipientAccountId")
        .or_else(|| record.str_at("userIdentity.accountId"))?;
    let user = record
        .str_at("requestParameters.userName")
        .filter(|u| !u.is_empty());
    let caller = record.str_at("userIdentity.type");
    let by_root = caller.as_deref() == Some("Root");
    let target = match about {
        About::PasswordPolicy => Target::PasswordPolicy,
        About::Trails => Target::Trails,
        About::User => Target::User(user?.into_owned()),
        About::KeyOwner => match user {
            Some(u) => Target::User(u.into_owned()),
            None if by_root => Target::Root,
            // A user acting on its own keys names no userName.
            None => Target::User(
                record
                    .str_at("userIdentity.userName")
                    .filter(|_| caller.as_deref() == Some("IAMUser"))?
                    .into_owned(),
            ),
        },
        About::MfaOwner => {
            let root_serial = record
                .str_at("requestParameters.serialNumber")
                .is_some_and(|s| s.ends_with(":mfa/root-account-mfa-device"));
            match user {
                Some(u) if u == ROOT_USER_NAME => Target::Root,
                Some(u) => Target::User(u.into_owned()),
                None if by_root || root_serial => Target::Root,
                None => Target::User(
                    record
                        .str_at("userIdentity.userName")
                        .filter(|_| caller.as_deref() == Some("IAMUser"))?
                        .into_owned(),
                ),
            }
        }
    };
    Some(Recheck {
        account: account.into_owned(),
        target,
        event: format!(
            "{name} ({})",
            record.str_at("eventID").as_deref().unwrap_or("-")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn recheck(record: serde_json::Value) -> Option<Recheck> {
        let bytes = serde_json::to_vec(&record).expect("json");
        of(&Record::parse(&bytes).expect("record"))
    }

    fn call(
        name: &str,
        identity: serde_json::Value,
        params: serde_json::Value,
    ) -> serde_json::Value {
        json!({
            "eventSource": "iam.amazonaws.com", "eventName": name, "eventID": "e1",
            "recipientAccountId": "111122223333", "userIdentity": identity,
            "requestParameters": params,
        })
    }

    fn target(r: Option<Recheck>) -> Option<Target> {
        r.map(|r| r.target)
    }

    #[test]
    fn every_change_names_its_resource() {
        let root = json!({"type": "Root", "accountId": "111122223333"});
        let alice = json!({"type": "IAMUser", "userName": "alice", "accountId": "111122223333"});
        let admin = json!({"type": "AssumedRole", "accountId": "111122223333"});
        // Root creating a key for itself: no userName.
        let r = recheck(call("CreateAccessKey", root.clone(), json!(null))).expect("root key");
        assert_eq!(r.target, Target::Root);
        assert_eq!(r.account, "111122223333");
        assert_eq!(r.event, "CreateAccessKey (e1)");
        // A user's own key, and another's.
        assert_eq!(
            target(recheck(call("DeleteAccessKey", alice.clone(), json!({})))),
            Some(Target::User("alice".into()))
        );
        assert_eq!(
            target(recheck(call(
                "UpdateAccessKey",
                admin.clone(),
                json!({"userName": "bob"})
            ))),
            Some(Target::User("bob".into()))
        );
        // A role acting on a key without a userName names no one.
        assert_eq!(
            target(recheck(call("CreateAccessKey", admin.clone(), json!({})))),
            None
        );
        // Root's MFA, by IAM's spelling or by serial.
        assert_eq!(
            target(recheck(call(
                "DeactivateMFADevice",
                admin.clone(),
                json!({"userName": "AWS ROOT USER"})
            ))),
            Some(Target::Root)
        );
        assert_eq!(
            target(recheck(call(
                "DeleteVirtualMFADevice",
                admin.clone(),
                json!({"serialNumber": "arn:aws:iam::111122223333:mfa/root-account-mfa-device"})
            ))),
            Some(Target::Root)
        );
        assert_eq!(
            target(recheck(call(
                "EnableMFADevice",
                admin.clone(),
                json!({"userName": "carol"})
            ))),
            Some(Target::User("carol".into()))
        );
        assert_eq!(
            target(recheck(call(
                "CreateLoginProfile",
                admin.clone(),
                json!({"userName": "dave"})
            ))),
            Some(Target::User("dave".into()))
        );
        assert_eq!(
            target(recheck(call("DeleteUser", admin.clone(), json!({})))),
            None
        );
        assert_eq!(
            target(recheck(call(
                "DeleteAccountPasswordPolicy",
                admin.clone(),
                json!(null)
            ))),
            Some(Target::PasswordPolicy)
        );
        let mut trail = call("StopLogging", admin.clone(), json!({"name": "t"}));
        trail["eventSource"] = json!("cloudtrail.amazonaws.com");
        assert_eq!(target(recheck(trail)), Some(Target::Trails));
    }

    #[test]
    fn failed_and_unrelated_calls_ask_for_nothing() {
        let admin = json!({"type": "AssumedRole", "accountId": "111122223333"});
        let mut failed = call(
            "CreateLoginProfile",
            admin.clone(),
            json!({"userName": "dave"}),
        );
        failed["errorCode"] = json!("AccessDenied");
        assert_eq!(recheck(failed), None);
        assert_eq!(recheck(call("ListUsers", admin.clone(), json!({}))), None);
        // The same name from another service is not IAM's.
        let mut other = call("CreateUser", admin, json!({"userName": "x"}));
        other["eventSource"] = json!("transfer.amazonaws.com");
        assert_eq!(recheck(other), None);
    }
}
