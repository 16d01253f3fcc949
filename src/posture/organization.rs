//! An organization's audit: the management account read with the caller's own credentials,
//! and every ACTIVE member account (Organizations ListAccounts) entered by assuming the member
//! role there → one [`Audit`] per account, the management account first.
//!
//! A member account the audit cannot enter (AssumeRole refused, the role not deployed there,
//! the account suspended) is a finding of its own, [`checks::ACCOUNT_UNREACHABLE`], never a
//! failed audit: the other accounts are still audited. An account entered again passes that
//! check, which resolves the finding.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;

use super::{AccountView, Audit, CheckResult, Outcome, Read, Settings, audit, checks};

/// Member accounts audited at once. Each audit makes up to seven calls at once, so four
/// accounts keep a large organization's audit to a few dozen concurrent calls, well inside
/// IAM's and STS's request rates.
pub const MEMBERS_AT_ONCE: usize = 4;

/// The session name every AssumeRole of the audit uses: what CloudTrail shows in the member
/// account as the session of the role, so its own records are recognisable.
pub const SESSION_NAME: &str = "trailwarden-audit";

/// The role assumed in each member account: a role name (`arn:aws:iam::<id>:role/<name>`),
/// or a role ARN whose account is replaced by each member's, for a path or another partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRole {
    partition: String,
    /// `path/name` after `role/`.
    path_and_name: String,
}

impl MemberRole {
    /// A role name (IAM allows 1-64 of `A-Za-z0-9+=,.@_-`) or a role ARN.
    pub fn parse(s: &str) -> Result<MemberRole, String> {
        let name_ok = |n: &str| {
            (1..=64).contains(&n.len())
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
        };
        if let Some(rest) = s.strip_prefix("arn:") {
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            if let [partition, "iam", "", account, resource] = parts.as_slice()
                && partition.starts_with("aws")
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && let Some(path_and_name) = resource.strip_prefix("role/")
                && path_and_name.rsplit('/').next().is_some_and(name_ok)
            {
                return Ok(MemberRole {
                    partition: (*partition).to_owned(),
                    path_and_name: path_and_name.to_owned(),
                });
            }
            return Err(format!(
                "{s:?} is not a role ARN such as arn:aws:iam::111122223333:role/trailwarden-audit"
            ));
        }
        if name_ok(s) {
            return Ok(MemberRole {
                partition: "aws".to_owned(),
                path_and_name: s.to_owned(),
            });
        }
        Err(format!(
            "{s:?} is not a role name (1-64 of A-Z a-z 0-9 + = , . @ _ -) or a role ARN"
        ))
    }

    /// The role's ARN in `account`.
    pub fn arn(&self, account: &str) -> String {
        format!(
            "arn:{}:iam::{account}:role/{}",
            self.partition, self.path_and_name
        )
    }
}

/// An organization's member accounts and the way into each. The implementation over the SDK
/// is [`super::aws::AwsMembers`].
#[async_trait]
pub trait Members: Send + Sync {
    /// The ids of the organization's ACTIVE accounts, the management account among them.
    async fn accounts(&self) -> Read<Vec<String>>;
    /// The role assumed in `account`.
    fn role_arn(&self, account: &str) -> String;
    /// The account as the member role reads it (sts AssumeRole).
    async fn enter(&self, account: &str) -> Read<Arc<dyn AccountView>>;
}

/// Audits the account `own` reads and every other ACTIVE account of its organization. Fails
/// only when the own account cannot be identified or the accounts cannot be listed: that is
/// the caller's permission to fix, and no member could be named in a finding without it.
pub async fn audit_organization(
    own: &dyn AccountView,
    members: &dyn Members,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Read<Vec<Audit>> {
    let (first, accounts) = tokio::join!(audit(own, settings, now), members.accounts());
    let first = first?;
    let accounts = accounts?;
    // By account id, so a report reads the same from one run to the next.
    let mut accounts: Vec<String> = accounts
        .into_iter()
        .filter(|id| *id != first.account)
        .collect();
    accounts.sort();
    let others: Vec<Audit> = futures_util::stream::iter(accounts)
        .map(|id| {
            let region = first.region.clone();
            async move { audit_member(members, &id, region, settings, now).await }
        })
        .buffered(MEMBERS_AT_ONCE)
        .collect()
        .await;
    Ok(std::iter::once(first).chain(others).collect())
}

/// Audits one member account through its role. Whatever goes wrong entering it (or
/// identifying it once entered) is the account's [`checks::ACCOUNT_UNREACHABLE`] finding.
pub async fn audit_member(
    members: &dyn Members,
    account: &str,
    region: String,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Audit {
    let role = members.role_arn(account);
    let entered = match members.enter(account).await {
        Ok(view) => audit(view.as_ref(), settings, now).await,
        Err(refused) => Err(refused),
    };
    match entered {
        Ok(mut audit) => {
            audit.results.push(CheckResult {
                check: &checks::ACCOUNT_UNREACHABLE,
                outcome: Outcome::Pass {
                    note: Some(format!("entered as {role}")),
                },
            });
            audit
        }
        Err(refused) => {
            let ctx = checks::Context {
                account,
                region: &region,
                now,
                settings,
            };
            let found = checks::account_unreachable(&ctx, &role, &refused);
            Audit {
                account: account.to_owned(),
                region,
                now,
                results: vec![CheckResult {
                    check: &checks::ACCOUNT_UNREACHABLE,
                    outcome: Outcome::Fail(vec![found]),
                }],
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_is_a_name_or_an_arn_whose_account_each_member_replaces() {
        let by_name = MemberRole::parse("trailwarden-audit").expect("name");
        assert_eq!(
            by_name.arn("111122223333"),
            "arn:aws:iam::111122223333:role/trailwarden-audit"
        );
        let by_arn =
            MemberRole::parse("arn:aws-us-gov:iam::999988887777:role/security/trailwarden-audit")
                .expect("arn");
        assert_eq!(
            by_arn.arn("111122223333"),
            "arn:aws-us-gov:iam::111122223333:role/security/trailwarden-audit"
        );
        for bad in [
            "",
            "has space",
            &"x".repeat(65),
            "arn:aws:iam::1:role/x",
            "arn:aws:iam::111122223333:user/x",
            "arn:aws:s3:::bucket",
        ] {
            assert!(MemberRole::parse(bad).is_err(), "{bad:?}");
        }
    }
}
