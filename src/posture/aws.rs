//! The account as the SDK reads it: IAM, CloudTrail, IAM Access Analyzer, Organizations and
//! STS clients → the plain data of [`AccountView`]. Every failed call is described and
//! classified by [`crate::aws::failed`] at [`Edge::Posture`] and named by the IAM action it
//! needs, so a refused permission reads as the permission to grant. [`AwsMembers`] lists an
//! organization's accounts and enters each through sts AssumeRole.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_iam::types::{EntityType, ReportStateType, SummaryKeyType};
use aws_sdk_s3::error::SdkError;
use aws_smithy_runtime_api::http::Response;

use super::organization::{MemberRole, Members, SESSION_NAME};
use super::report::{Key, Row};
use super::{
    AccountSummary, AccountView, Analyzer, BasicSelector, FieldSelector, Grants, LiveUser,
    Organization, PasswordPolicy, Read, Selectors, Trail, Unread, UserGrants,
};
use crate::aws::{self, Answer, Edge, Failed, OperationError};

/// Longest wait for IAM to generate a credential report. AWS documents no bound; a report for
/// thousands of users takes seconds, and a report younger than 4 hours is reused at once.
const REPORT_WAIT: Duration = Duration::from_secs(60);
/// First wait between GenerateCredentialReport polls; waits double from here.
const REPORT_FIRST_POLL: Duration = Duration::from_millis(500);
/// Longest wait between polls.
const REPORT_MAX_POLL: Duration = Duration::from_secs(5);
/// Items per GetAccountAuthorizationDetails page, IAM's maximum: 5,000 users and their
/// customer managed policies take a handful of calls.
const AUTHORIZATION_PAGE: i32 = 1000;

/// The real account, through SDK clients built from one configuration. The fields are public
/// so a test can point one service at a server of its own.
#[derive(Debug, Clone)]
pub struct AwsAccount {
    pub iam: aws_sdk_iam::Client,
    pub cloudtrail: aws_sdk_cloudtrail::Client,
    pub analyzer: aws_sdk_accessanalyzer::Client,
    pub organizations: aws_sdk_organizations::Client,
    pub sts: aws_sdk_sts::Client,
    /// The configured region, for the regional checks.
    pub region: String,
}

impl AwsAccount {
    /// Clients for every service the audit reads, from `config` (see [`aws::sdk_config`]).
    pub fn new(config: &SdkConfig) -> AwsAccount {
        AwsAccount {
            iam: aws_sdk_iam::Client::new(config),
            cloudtrail: aws_sdk_cloudtrail::Client::new(config),
            analyzer: aws_sdk_accessanalyzer::Client::new(config),
            organizations: aws_sdk_organizations::Client::new(config),
            sts: aws_sdk_sts::Client::new(config),
            region: config
                .region()
                .map_or_else(|| "unknown".to_owned(), |r| r.to_string()),
        }
    }
}

/// An organization's accounts through Organizations ListAccounts, each entered with
/// credentials from sts AssumeRole of the member role.
#[derive(Debug, Clone)]
pub struct AwsMembers {
    pub organizations: aws_sdk_organizations::Client,
    pub sts: aws_sdk_sts::Client,
    /// What member accounts' clients are built from: region, endpoint, timeouts and retries,
    /// with the assumed role's credentials in place of the caller's.
    pub config: SdkConfig,
    pub role: MemberRole,
    /// The `sts:ExternalId` the member role's trust policy asks for, when it asks.
    pub external_id: Option<String>,
}

impl AwsMembers {
    /// Lists with the caller's credentials and assumes `role` in each member account.
    pub fn new(config: &SdkConfig, role: MemberRole, external_id: Option<String>) -> AwsMembers {
        AwsMembers {
            organizations: aws_sdk_organizations::Client::new(config),
            sts: aws_sdk_sts::Client::new(config),
            config: config.clone(),
            role,
            external_id,
        }
    }
}

/// One account as Organizations ListAccounts lists it.
#[derive(Debug, Clone)]
pub struct OrgAccount {
    pub id: String,
    pub name: Option<String>,
    /// `State` (or the retired `Status`) says ACTIVE: suspended, closing and closed accounts
    /// cannot be entered.
    pub active: bool,
}

pub const LIST_ACCOUNTS: &str = "organizations:ListAccounts";

/// Every account of the organization, all pages: the accounts the organization audit enters,
/// and the names alerts show.
pub async fn list_accounts(
    client: &aws_sdk_organizations::Client,
) -> Result<Vec<OrgAccount>, aws::Failed> {
    let mut pages = client.list_accounts().into_paginator().send();
    let mut accounts = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| aws::failed(Edge::Posture, LIST_ACCOUNTS, &e))?;
        accounts.extend(page.accounts().iter().filter_map(|a| {
            // `State` replaces `Status` (retired in September 2026); either says ACTIVE.
            let state = a.state().map(|s| s.as_str());
            Some(OrgAccount {
                id: a.id()?.to_owned(),
                name: a.name().map(str::to_owned),
                active: state.or(a.status().map(|s| s.as_str())) == Some("ACTIVE"),
            })
        }));
    }
    Ok(accounts)
}

#[async_trait]
impl Members for AwsMembers {
    async fn accounts(&self) -> Read<Vec<String>> {
        let accounts = list_accounts(&self.organizations)
            .await
            .map_err(|failed| Unread {
                action: LIST_ACCOUNTS,
                failed,
            })?;
        Ok(accounts
            .into_iter()
            .filter(|a| a.active)
            .map(|a| a.id)
            .collect())
    }

    fn role_arn(&self, account: &str) -> String {
        self.role.arn(account)
    }

    async fn enter(&self, account: &str) -> Read<Arc<dyn AccountView>> {
        const ACTION: &str = "sts:AssumeRole";
        let role = self.role.arn(account);
        let out = self
            .sts
            .assume_role()
            .role_arn(&role)
            .role_session_name(SESSION_NAME)
            .set_external_id(self.external_id.clone())
            .send()
            .await
            .map_err(|e| Unread {
                action: ACTION,
                failed: aws::failed(Edge::Posture, ACTION, &e),
            })?;
        let c = out
            .credentials()
            .ok_or_else(|| malformed(ACTION, "credentials"))?;
        // Fixed credentials, not a refreshing provider: an audit takes minutes, AssumeRole's
        // default session lasts an hour, and each audit enters anew.
        let credentials = aws_sdk_sts::config::Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            std::time::SystemTime::try_from(*c.expiration()).ok(),
            SESSION_NAME,
        );
        let config = self
            .config
            .to_builder()
            .credentials_provider(aws_sdk_sts::config::SharedCredentialsProvider::new(
                credentials,
            ))
            .build();
        Ok(Arc::new(AwsAccount::new(&config)))
    }
}

/// A failed call, named by the action it needs.
fn unread<E: OperationError>(action: &'static str, err: &SdkError<E, Response>) -> Unread {
    Unread {
        action,
        failed: aws::failed(Edge::Posture, action, err),
    }
}

/// An SDK timestamp as chrono's.
fn time(t: &aws_smithy_types::DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// AWS managed policies' ARNs: their documents are AWS's, known by ARN.
const AWS_MANAGED: &str = "arn:aws:iam::aws:policy/";

/// A call that answered without what it must carry.
fn malformed(action: &'static str, what: &str) -> Unread {
    Unread {
        action,
        failed: Failed::new(
            Edge::Posture,
            Answer::Invalid,
            format!("{action} answered without {what}"),
        ),
    }
}

#[async_trait]
impl AccountView for AwsAccount {
    async fn account(&self) -> Read<String> {
        aws::caller(&self.sts, Edge::Posture)
            .await
            .map(|c| c.account)
            .map_err(|failed| Unread {
                action: "sts:GetCallerIdentity",
                failed,
            })
    }

    fn region(&self) -> String {
        self.region.clone()
    }

    async fn credential_report(&self) -> Read<Vec<u8>> {
        const GENERATE: &str = "iam:GenerateCredentialReport";
        const GET: &str = "iam:GetCredentialReport";
        // Poll until IAM says COMPLETE; a refused GenerateCredentialReport still leaves a
        // recent report readable, so Get is tried before the refusal is reported.
        let deadline = tokio::time::Instant::now() + REPORT_WAIT;
        let mut backoff = aws::backoff(REPORT_FIRST_POLL, REPORT_MAX_POLL);
        let mut generate_refused = None;
        loop {
            match self.iam.generate_credential_report().send().await {
                Ok(out) if out.state() == Some(&ReportStateType::Complete) => break,
                Ok(_) => {}
                Err(e) => {
                    let u = unread(GENERATE, &e);
                    if !u.is_denied() {
                        return Err(u);
                    }
                    generate_refused = Some(u);
                    break;
                }
            }
            let wait = aws::next_wait(&mut backoff);
            if tokio::time::Instant::now() + wait > deadline {
                return Err(Unread {
                    action: GENERATE,
                    failed: Failed::new(
                        Edge::Posture,
                        Answer::Unavailable,
                        format!(
                            "{GENERATE} did not report COMPLETE within {} s",
                            REPORT_WAIT.as_secs()
                        ),
                    ),
                });
            }
            tokio::time::sleep(wait).await;
        }
        match self.iam.get_credential_report().send().await {
            Ok(out) => out
                .content()
                .map(|blob| blob.as_ref().to_vec())
                .ok_or_else(|| malformed(GET, "report content")),
            Err(e) => {
                let nothing_to_read = e.as_service_error().is_some_and(|s| {
                    s.is_credential_report_not_present_exception()
                        || s.is_credential_report_expired_exception()
                });
                match generate_refused {
                    // No report to read because none could be generated: the refusal is
                    // the cause, and the permission to grant.
                    Some(refused) if nothing_to_read => Err(refused),
                    _ => Err(unread(GET, &e)),
                }
            }
        }
    }

    async fn account_summary(&self) -> Read<AccountSummary> {
        const ACTION: &str = "iam:GetAccountSummary";
        let out = self
            .iam
            .get_account_summary()
            .send()
            .await
            .map_err(|e| unread(ACTION, &e))?;
        let map = out
            .summary_map()
            .ok_or_else(|| malformed(ACTION, "a SummaryMap"))?;
        let flag = |key: &SummaryKeyType| map.get(key).is_some_and(|v| *v > 0);
        Ok(AccountSummary {
            root_mfa: flag(&SummaryKeyType::AccountMfaEnabled),
            root_access_keys: flag(&SummaryKeyType::AccountAccessKeysPresent),
        })
    }

    async fn password_policy(&self) -> Read<Option<PasswordPolicy>> {
        const ACTION: &str = "iam:GetAccountPasswordPolicy";
        let out = match self.iam.get_account_password_policy().send().await {
            Ok(out) => out,
            // NoSuchEntity is IAM's way of saying the account has no policy: a finding, not
            // a failure.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_entity_exception()) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(unread(ACTION, &e)),
        };
        let p = out
            .password_policy()
            .ok_or_else(|| malformed(ACTION, "a PasswordPolicy"))?;
        let count = |n: Option<i32>| n.and_then(|n| u32::try_from(n).ok());
        Ok(Some(PasswordPolicy {
            min_length: count(p.minimum_password_length()),
            require_symbols: p.require_symbols(),
            require_numbers: p.require_numbers(),
            require_uppercase: p.require_uppercase_characters(),
            require_lowercase: p.require_lowercase_characters(),
            reuse_prevention: count(p.password_reuse_prevention()).filter(|n| *n > 0),
        }))
    }

    async fn grants(&self) -> Read<Grants> {
        const ACTION: &str = "iam:GetAccountAuthorizationDetails";
        // Users with their groups and policies, and customer managed policies with their
        // versions, in the fewest calls IAM allows. AWS managed policies are known by ARN.
        let mut pages = self
            .iam
            .get_account_authorization_details()
            .filter(EntityType::User)
            .filter(EntityType::LocalManagedPolicy)
            .max_items(AUTHORIZATION_PAGE)
            .into_paginator()
            .send();
        let mut grants = Grants::default();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| unread(ACTION, &e))?;
            for u in page.user_detail_list() {
                grants.users.push(UserGrants {
                    user: u.user_name().unwrap_or_default().to_owned(),
                    arn: u.arn().unwrap_or_default().to_owned(),
                    groups: u.group_list().to_vec(),
                    attached: u
                        .attached_managed_policies()
                        .iter()
                        .map(|p| {
                            (
                                p.policy_name().unwrap_or_default().to_owned(),
                                p.policy_arn().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect(),
                    inline: u
                        .user_policy_list()
                        .iter()
                        .map(|p| {
                            (
                                p.policy_name().unwrap_or_default().to_owned(),
                                p.policy_document().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect(),
                });
            }
            for p in page.policies() {
                let default = p
                    .policy_version_list()
                    .iter()
                    .find(|v| v.is_default_version() || v.version_id() == p.default_version_id());
                if let (Some(arn), Some(doc)) = (p.arn(), default.and_then(|v| v.document())) {
                    grants
                        .policy_documents
                        .insert(arn.to_owned(), doc.to_owned());
                }
            }
        }
        Ok(grants)
    }

    async fn trails(&self) -> Read<Vec<Trail>> {
        const ACTION: &str = "cloudtrail:DescribeTrails";
        let out = self
            .cloudtrail
            .describe_trails()
            .include_shadow_trails(true)
            .send()
            .await
            .map_err(|e| unread(ACTION, &e))?;
        Ok(out
            .trail_list()
            .iter()
            .map(|t| Trail {
                name: t.name().unwrap_or_default().to_owned(),
                arn: t.trail_arn().unwrap_or_default().to_owned(),
                home_region: t.home_region().unwrap_or_default().to_owned(),
                multi_region: t.is_multi_region_trail().unwrap_or(false),
                organization: t.is_organization_trail().unwrap_or(false),
                log_file_validation: t.log_file_validation_enabled().unwrap_or(false),
                kms_key_id: t.kms_key_id().filter(|k| !k.is_empty()).map(str::to_owned),
            })
            .collect())
    }

    async fn trail_logging(&self, trail_arn: &str) -> Read<bool> {
        const ACTION: &str = "cloudtrail:GetTrailStatus";
        let out = self
            .cloudtrail
            .get_trail_status()
            .name(trail_arn)
            .send()
            .await
            .map_err(|e| unread(ACTION, &e))?;
        Ok(out.is_logging().unwrap_or(false))
    }

    async fn event_selectors(&self, trail_arn: &str) -> Read<Selectors> {
        const ACTION: &str = "cloudtrail:GetEventSelectors";
        let out = self
            .cloudtrail
            .get_event_selectors()
            .trail_name(trail_arn)
            .send()
            .await
            .map_err(|e| unread(ACTION, &e))?;
        if !out.advanced_event_selectors().is_empty() {
            return Ok(Selectors::Advanced(
                out.advanced_event_selectors()
                    .iter()
                    .map(|s| {
                        s.field_selectors()
                            .iter()
                            .map(|f| FieldSelector {
                                field: f.field().to_owned(),
                                equals: f.equals().to_vec(),
                                not_equals: f.not_equals().to_vec(),
                                other_includes: !f.starts_with().is_empty()
                                    || !f.ends_with().is_empty(),
                                other_excludes: !f.not_starts_with().is_empty()
                                    || !f.not_ends_with().is_empty(),
                            })
                            .collect()
                    })
                    .collect(),
            ));
        }
        Ok(Selectors::Basic(
            out.event_selectors()
                .iter()
                .map(|s| BasicSelector {
                    read_write: s.read_write_type().map_or("All", |t| t.as_str()).to_owned(),
                    // CloudTrail's documented default for IncludeManagementEvents is true.
                    include_management_events: s.include_management_events().unwrap_or(true),
                })
                .collect(),
        ))
    }

    async fn analyzers(&self) -> Read<Vec<Analyzer>> {
        const ACTION: &str = "access-analyzer:ListAnalyzers";
        let mut pages = self.analyzer.list_analyzers().into_paginator().send();
        let mut analyzers = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| unread(ACTION, &e))?;
            analyzers.extend(page.analyzers().iter().map(|a| Analyzer {
                name: a.name().to_owned(),
                arn: a.arn().to_owned(),
                kind: a.r#type().as_str().to_owned(),
                status: a.status().as_str().to_owned(),
            }));
        }
        Ok(analyzers)
    }

    async fn organization(&self) -> Read<Option<Organization>> {
        const ACTION: &str = "organizations:DescribeOrganization";
        let out = match self.organizations.describe_organization().send().await {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_aws_organizations_not_in_use_exception()) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(unread(ACTION, &e)),
        };
        let org = out
            .organization()
            .ok_or_else(|| malformed(ACTION, "an Organization"))?;
        Ok(Some(Organization {
            id: org.id().unwrap_or_default().to_owned(),
            management_account: org.master_account_id().unwrap_or_default().to_owned(),
        }))
    }

    async fn trusted_services(&self) -> Read<Vec<String>> {
        const ACTION: &str = "organizations:ListAWSServiceAccessForOrganization";
        let mut pages = self
            .organizations
            .list_aws_service_access_for_organization()
            .into_paginator()
            .send();
        let mut services = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| unread(ACTION, &e))?;
            services.extend(
                page.enabled_service_principals()
                    .iter()
                    .filter_map(|s| s.service_principal().map(str::to_owned)),
            );
        }
        Ok(services)
    }

    async fn user(&self, name: &str) -> Read<Option<LiveUser>> {
        const GET_USER: &str = "iam:GetUser";
        let user = match self.iam.get_user().user_name(name).send().await {
            Ok(out) => out.user.ok_or_else(|| malformed(GET_USER, "a User"))?,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_entity_exception()) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(unread(GET_USER, &e)),
        };
        let (password, mfa, keys, grants) = tokio::join!(
            self.login_profile(name),
            self.has_mfa(name),
            self.keys(name),
            self.user_grants(name, user.arn()),
        );
        let password = password?;
        let row = Row {
            user: name.to_owned(),
            arn: user.arn().to_owned(),
            created: time(user.create_date()),
            password_enabled: Some(password.is_some()),
            password_last_used: user.password_last_used().and_then(time),
            password_last_changed: password.flatten(),
            mfa_active: mfa?,
            keys: keys?,
        };
        Ok(Some(LiveUser {
            row,
            grants: grants?,
        }))
    }

    async fn organization_features(&self) -> Read<Vec<String>> {
        const ACTION: &str = "iam:ListOrganizationsFeatures";
        let out = self
            .iam
            .list_organizations_features()
            .send()
            .await
            .map_err(|e| unread(ACTION, &e))?;
        Ok(out
            .enabled_features()
            .iter()
            .map(|f| f.as_str().to_owned())
            .collect())
    }
}

/// The live reads of one user behind [`AccountView::user`].
impl AwsAccount {
    /// The user's console password: `None` without one, else when it was set (if IAM says).
    async fn login_profile(
        &self,
        name: &str,
    ) -> Read<Option<Option<chrono::DateTime<chrono::Utc>>>> {
        const ACTION: &str = "iam:GetLoginProfile";
        match self.iam.get_login_profile().user_name(name).send().await {
            Ok(out) => Ok(Some(
                out.login_profile().and_then(|p| time(p.create_date())),
            )),
            // NoSuchEntity: the user has no console password.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_entity_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(unread(ACTION, &e)),
        }
    }

    async fn has_mfa(&self, name: &str) -> Read<bool> {
        const ACTION: &str = "iam:ListMFADevices";
        let out = self
            .iam
            .list_mfa_devices()
            .user_name(name)
            .send()
            .await
            .map_err(|e| unread(ACTION, &e))?;
        Ok(!out.mfa_devices().is_empty())
    }

    /// The user's keys as the report's two slots, oldest first, with their last use.
    async fn keys(&self, name: &str) -> Read<[Key; 2]> {
        const LIST: &str = "iam:ListAccessKeys";
        const LAST_USED: &str = "iam:GetAccessKeyLastUsed";
        let out = self
            .iam
            .list_access_keys()
            .user_name(name)
            .send()
            .await
            .map_err(|e| unread(LIST, &e))?;
        let mut listed: Vec<_> = out.access_key_metadata().to_vec();
        listed.sort_by_key(|k| k.create_date().map(|d| d.secs()));
        let mut keys = [1u8, 2].map(|slot| Key {
            slot,
            active: false,
            last_rotated: None,
            last_used: None,
            last_used_service: None,
        });
        // IAM allows two keys per user.
        for (key, meta) in keys.iter_mut().zip(&listed) {
            key.active = meta.status().is_some_and(|s| s.as_str() == "Active");
            key.last_rotated = meta.create_date().and_then(time);
            let Some(id) = meta.access_key_id() else {
                continue;
            };
            let used = self
                .iam
                .get_access_key_last_used()
                .access_key_id(id)
                .send()
                .await
                .map_err(|e| unread(LAST_USED, &e))?;
            if let Some(used) = used.access_key_last_used() {
                key.last_used = used.last_used_date().and_then(time);
                // "N/A" when the key was never used.
                key.last_used_service =
                    Some(used.service_name().to_owned()).filter(|s| !s.is_empty() && s != "N/A");
            }
        }
        Ok(keys)
    }

    /// The user's groups and own policies, with the documents of its customer managed ones.
    async fn user_grants(&self, name: &str, arn: &str) -> Read<Grants> {
        const GROUPS: &str = "iam:ListGroupsForUser";
        const ATTACHED: &str = "iam:ListAttachedUserPolicies";
        const INLINE: &str = "iam:ListUserPolicies";
        const INLINE_DOC: &str = "iam:GetUserPolicy";
        const POLICY: &str = "iam:GetPolicy";
        const VERSION: &str = "iam:GetPolicyVersion";
        let mut user = UserGrants {
            user: name.to_owned(),
            arn: arn.to_owned(),
            ..UserGrants::default()
        };
        let mut pages = self
            .iam
            .list_groups_for_user()
            .user_name(name)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| unread(GROUPS, &e))?;
            user.groups
                .extend(page.groups().iter().map(|g| g.group_name().to_owned()));
        }
        let mut pages = self
            .iam
            .list_attached_user_policies()
            .user_name(name)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| unread(ATTACHED, &e))?;
            user.attached
                .extend(page.attached_policies().iter().map(|p| {
                    (
                        p.policy_name().unwrap_or_default().to_owned(),
                        p.policy_arn().unwrap_or_default().to_owned(),
                    )
                }));
        }
        let mut pages = self
            .iam
            .list_user_policies()
            .user_name(name)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| unread(INLINE, &e))?;
            for policy in page.policy_names() {
                let out = self
                    .iam
                    .get_user_policy()
                    .user_name(name)
                    .policy_name(policy)
                    .send()
                    .await
                    .map_err(|e| unread(INLINE_DOC, &e))?;
                user.inline
                    .push((policy.clone(), out.policy_document().to_owned()));
            }
        }
        let mut grants = Grants::default();
        for (_, policy_arn) in &user.attached {
            if policy_arn.starts_with(AWS_MANAGED) {
                continue;
            }
            let policy = self
                .iam
                .get_policy()
                .policy_arn(policy_arn)
                .send()
                .await
                .map_err(|e| unread(POLICY, &e))?;
            let Some(version) = policy.policy().and_then(|p| p.default_version_id()) else {
                continue;
            };
            let out = self
                .iam
                .get_policy_version()
                .policy_arn(policy_arn)
                .version_id(version)
                .send()
                .await
                .map_err(|e| unread(VERSION, &e))?;
            if let Some(doc) = out.policy_version().and_then(|v| v.document()) {
                grants
                    .policy_documents
                    .insert(policy_arn.clone(), doc.to_owned());
            }
        }
        grants.users.push(user);
        Ok(grants)
    }
}
