//! The posture audit as a producer: what an account's IAM, CloudTrail, IAM Access Analyzer
//! and Organizations settings say (read through [`AccountView`]) → per check, pass, fail with
//! [`Standing`] findings, or could-not-check with the call that was refused.
//!
//! - [`report`]: the credential report's CSV → rows.
//! - [`checks`]: the checks, pure functions over plain data.
//! - [`recheck`]: the CloudTrail records that change posture, and the checks each runs again.
//! - [`organization`]: every member account of an organization, entered through a role.
//! - [`aws`]: the view over the real SDK clients; the only file here that knows an SDK type.
//!
//! One refused call costs only the checks that need it: a role without
//! `iam:GetCredentialReport` still gets its trails, password policy and policies checked, and
//! the audit says which checks it could not make and why.

pub mod aws;
pub mod checks;
pub mod organization;
pub mod recheck;
pub mod report;

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::aws::{Answer, Failed};
use crate::finding::{Findings, Scope, Standing, Target};
use checks::Check;
use report::Row;

/// Trails whose status and selectors are read at once: CloudTrail allows 5 trails per region,
/// but shadow and organization trails add to what one region lists.
const TRAIL_READS_AT_ONCE: usize = 4;

/// A read the view could not make: the IAM action it needs, and why it failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{failed}")]
pub struct Unread {
    /// The action in IAM policy spelling, e.g. `iam:GetCredentialReport`: what to grant when
    /// it was denied.
    pub action: &'static str,
    /// The failed call, classified by the one failure table.
    pub failed: Failed,
}

impl Unread {
    /// Whether permissions refused the call (rather than an outage or a bad answer).
    pub fn is_denied(&self) -> bool {
        self.failed.answer == Answer::Denied
    }
}

/// What a read gives: the value, or the call that could not be made.
pub type Read<T> = Result<T, Unread>;

/// What the audit reads about one account, in plain data. The implementation over the SDK is
/// [`aws::AwsAccount`]; each method is one AWS call or one paginated family of calls.
#[async_trait]
pub trait AccountView: Send + Sync {
    /// The account id of the credentials in use (sts GetCallerIdentity).
    async fn account(&self) -> Read<String>;
    /// The region the regional checks (Access Analyzer, trails listed) look at.
    fn region(&self) -> String;
    /// The credential report's CSV bytes, generated first when needed.
    async fn credential_report(&self) -> Read<Vec<u8>>;
    /// GetAccountSummary's root flags.
    async fn account_summary(&self) -> Read<AccountSummary>;
    /// The account password policy; `None` when the account has none.
    async fn password_policy(&self) -> Read<Option<PasswordPolicy>>;
    /// Every user's groups and policies, and the documents of customer managed policies.
    async fn grants(&self) -> Read<Grants>;
    /// The trails this region lists, its own and shadows of multi-region and organization
    /// trails.
    async fn trails(&self) -> Read<Vec<Trail>>;
    /// Whether a trail is logging (GetTrailStatus IsLogging).
    async fn trail_logging(&self, trail_arn: &str) -> Read<bool>;
    /// A trail's event selectors, basic or advanced.
    async fn event_selectors(&self, trail_arn: &str) -> Read<Selectors>;
    /// IAM Access Analyzer's analyzers in the region.
    async fn analyzers(&self) -> Read<Vec<Analyzer>>;
    /// The organization the account belongs to; `None` when it belongs to none.
    async fn organization(&self) -> Read<Option<Organization>>;
    /// Service principals with trusted access to the organization (management account only).
    async fn trusted_services(&self) -> Read<Vec<String>>;
    /// IAM's centralized root access features enabled for the organization
    /// (`RootCredentialsManagement`, `RootSessions`).
    async fn organization_features(&self) -> Read<Vec<String>>;
    /// One user read live, as the credential report would show it once regenerated, with
    /// its grants; `None` when the user does not exist (any more).
    async fn user(&self, name: &str) -> Read<Option<LiveUser>>;
}

/// One user as live calls show it: its report row (password, MFA, keys with their last use)
/// and its grants (one user, and the documents of its customer managed policies).
#[derive(Debug, Clone)]
pub struct LiveUser {
    pub row: Row,
    pub grants: Grants,
}

/// Thresholds of the checks. The defaults are the CIS AWS Foundations Benchmark's.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Root used within this many days is reported (root-used-recently).
    pub root_recent_days: i64,
    /// Active access keys older than this many days are reported (CIS 1.14: 90).
    pub key_max_age_days: i64,
    /// Credentials unused for this many days are reported (CIS 1.12: 45).
    pub unused_days: i64,
    /// What the password policy must require at least.
    pub password: PasswordRequirements,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            root_recent_days: 1,
            key_max_age_days: 90,
            unused_days: 45,
            password: PasswordRequirements::default(),
        }
    }
}

/// The weakest password policy that passes.
#[derive(Debug, Clone)]
pub struct PasswordRequirements {
    /// Minimum length (CIS 1.8: 14).
    pub min_length: u32,
    /// Previous passwords that may not be reused (CIS 1.9: 24).
    pub reuse_prevention: u32,
    /// Require symbols, numbers, upper-case and lower-case letters.
    pub character_classes: bool,
}

impl Default for PasswordRequirements {
    fn default() -> PasswordRequirements {
        PasswordRequirements {
            min_length: 14,
            reuse_prevention: 24,
            character_classes: true,
        }
    }
}

/// GetAccountSummary's flags about root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountSummary {
    /// `AccountMFAEnabled`: root has an MFA device.
    pub root_mfa: bool,
    /// `AccountAccessKeysPresent`: root has an access key (active or not).
    pub root_access_keys: bool,
}

/// The account password policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PasswordPolicy {
    pub min_length: Option<u32>,
    pub require_symbols: bool,
    pub require_numbers: bool,
    pub require_uppercase: bool,
    pub require_lowercase: bool,
    /// How many previous passwords may not be reused; `None` when reuse is allowed.
    pub reuse_prevention: Option<u32>,
}

/// Who is granted what directly, from GetAccountAuthorizationDetails.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    pub users: Vec<UserGrants>,
    /// Default-version documents of customer managed policies, by policy ARN, as IAM returns
    /// them (URL-encoded).
    pub policy_documents: HashMap<String, String>,
}

/// One user's group memberships and directly granted policies.
#[derive(Debug, Clone, Default)]
pub struct UserGrants {
    pub user: String,
    pub arn: String,
    pub groups: Vec<String>,
    /// Managed policies attached to the user: (name, ARN).
    pub attached: Vec<(String, String)>,
    /// Inline policies: (name, document as IAM returns it, URL-encoded).
    pub inline: Vec<(String, String)>,
}

/// A trail as DescribeTrails lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trail {
    pub name: String,
    pub arn: String,
    pub home_region: String,
    pub multi_region: bool,
    pub organization: bool,
    pub log_file_validation: bool,
    /// The SSE-KMS key, when the trail has one.
    pub kms_key_id: Option<String>,
}

/// A trail's event selectors: basic or advanced, never both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selectors {
    Basic(Vec<BasicSelector>),
    /// Each advanced selector is a list of field conditions, all of which must hold.
    Advanced(Vec<Vec<FieldSelector>>),
}

/// A basic event selector's management part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicSelector {
    /// `All`, `ReadOnly` or `WriteOnly` (All when absent).
    pub read_write: String,
    pub include_management_events: bool,
}

/// One field condition of an advanced event selector.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    pub field: String,
    pub equals: Vec<String>,
    pub not_equals: Vec<String>,
    /// Whether the condition also uses StartsWith or EndsWith (and so keeps only some events).
    pub other_includes: bool,
    /// Whether the condition also uses NotStartsWith or NotEndsWith.
    pub other_excludes: bool,
}

/// An IAM Access Analyzer analyzer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analyzer {
    pub name: String,
    pub arn: String,
    /// `ACCOUNT`, `ORGANIZATION`, or an unused-access type.
    pub kind: String,
    /// `ACTIVE`, `CREATING`, `DISABLED` or `FAILED`.
    pub status: String,
}

/// The organization an account belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: String,
    pub management_account: String,
}

/// What one check found.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Nothing found; the note says why when the check did not apply.
    Pass { note: Option<String> },
    /// One finding per failing resource.
    Fail(Vec<Standing>),
    /// A read the check needs could not be made.
    Unchecked(Unread),
    /// What was read could not be understood (an unreadable credential report).
    Unreadable(String),
}

/// One check's result.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub check: &'static Check,
    pub outcome: Outcome,
}

/// The audit of one account.
#[derive(Debug, Clone)]
pub struct Audit {
    pub account: String,
    pub region: String,
    /// When the audit counts ages from.
    pub now: DateTime<Utc>,
    /// Every check, in [`checks::ALL`]'s order.
    pub results: Vec<CheckResult>,
}

impl Audit {
    /// Every finding of every failing check.
    pub fn standing(&self) -> impl Iterator<Item = &Standing> {
        self.results.iter().flat_map(|r| match &r.outcome {
            Outcome::Fail(found) => found.as_slice(),
            _ => &[],
        })
    }

    /// The audit as findings to commit: each failing check's findings, and every check that
    /// was evaluated (passed or failed) in scope for the whole account.
    pub fn findings(&self, source: String) -> Findings {
        findings(source, &self.account, &self.results, None)
    }
}

/// Check results → findings whose scope is every evaluated check, for `resource` (or the
/// whole account). Could-not-check results have no scope: they resolve nothing.
pub fn findings(
    source: String,
    account: &str,
    results: &[CheckResult],
    resource: Option<&str>,
) -> Findings {
    let mut out = Findings {
        source,
        ..Findings::default()
    };
    for r in results {
        let found = match &r.outcome {
            Outcome::Pass { .. } => &[][..],
            Outcome::Fail(found) => found.as_slice(),
            Outcome::Unchecked(_) | Outcome::Unreadable(_) => continue,
        };
        out.standing.extend(found.iter().cloned());
        out.scope.push(Scope {
            check: r.check.name.to_owned(),
            level: r.check.level,
            account: account.to_owned(),
            resource: resource.map(str::to_owned),
        });
    }
    out
}

/// Runs the checks of `target` again in `account` with live reads, for the resource the
/// target names: what a record that changed posture asks for. Returns the results and the
/// resource they cover (`None`: the account's whole password policy or trails).
pub async fn recheck(
    view: &dyn AccountView,
    settings: &Settings,
    now: DateTime<Utc>,
    account: &str,
    target: &Target,
) -> (Vec<CheckResult>, Option<String>) {
    let region = view.region();
    let ctx = checks::Context {
        account,
        region: &region,
        now,
        settings,
    };
    let wanted = recheck::checks_of(target);
    let mut results = Vec::new();
    let mut push = |check: &'static Check, outcome: Outcome| {
        if wanted.contains(&check) {
            results.push(CheckResult { check, outcome });
        }
    };
    let resource = match target {
        Target::Root => {
            let summary = view.account_summary().await;
            for (check, run) in checks::ROOT_CHECKS {
                push(
                    check,
                    match &summary {
                        Ok(summary) => outcome(run(&ctx, None, Some(summary))),
                        Err(e) => Outcome::Unchecked(e.clone()),
                    },
                );
            }
            Some(format!("arn:aws:iam::{account}:root"))
        }
        Target::User(name) => match view.user(name).await {
            Ok(Some(user)) => {
                for (check, run) in checks::REPORT_CHECKS {
                    push(check, outcome(run(&ctx, std::slice::from_ref(&user.row))));
                }
                for (check, run) in checks::GRANT_CHECKS {
                    push(check, outcome(run(&ctx, &user.grants)));
                }
                Some(user.row.arn)
            }
            // A deleted user has nothing left to find. Its findings are addressed by the ARN
            // a user without a path has; a user created under a path is resolved by the
            // next audit instead.
            Ok(None) => {
                for check in wanted {
                    push(check, Outcome::Pass { note: None });
                }
                Some(format!("arn:aws:iam::{account}:user/{name}"))
            }
            Err(e) => {
                for check in wanted {
                    push(check, Outcome::Unchecked(e.clone()));
                }
                None
            }
        },
        Target::PasswordPolicy => {
            push(
                &checks::PASSWORD_POLICY_WEAK,
                match view.password_policy().await {
                    Ok(policy) => outcome(checks::password_policy(&ctx, policy.as_ref())),
                    Err(e) => Outcome::Unchecked(e),
                },
            );
            None
        }
        Target::Trails => {
            for (check, result) in trail_results(&ctx, &read_trails(view).await) {
                push(check, result);
            }
            None
        }
    };
    (results, resource)
}

/// Audits the account `view` reads, counting ages from `now`. Fails only when the account
/// cannot be identified at all (no credentials, no region, an unreachable endpoint); any
/// other refused read makes the checks that need it could-not-check.
pub async fn audit(view: &dyn AccountView, settings: &Settings, now: DateTime<Utc>) -> Read<Audit> {
    let account = view.account().await?;
    let region = view.region();
    // Each read is one call or one paginated family: seven at once, and trails a few at a
    // time, so a large account costs a bounded number of concurrent calls.
    let (report, summary, policy, grants, trails, analyzers, organization) = tokio::join!(
        view.credential_report(),
        view.account_summary(),
        view.password_policy(),
        view.grants(),
        read_trails(view),
        view.analyzers(),
        read_organization(view, &account),
    );
    let rows = report.map(|csv| report::parse(&csv));

    let ctx = checks::Context {
        account: &account,
        region: &region,
        now,
        settings,
    };
    let mut results = Vec::with_capacity(checks::ALL.len());
    let mut push =
        |check: &'static Check, outcome: Outcome| results.push(CheckResult { check, outcome });

    // Root's keys and MFA show in the report with dates, and in the summary as flags: either
    // answers the question, so one refused call does not leave it open.
    let root_row = match &rows {
        Ok(Ok(rows)) => rows.iter().find(|r| r.is_root()),
        _ => None,
    };
    for (check, run) in checks::ROOT_CHECKS {
        let outcome = match &summary {
            Ok(summary) => outcome(run(&ctx, root_row, Some(summary))),
            Err(_) if root_row.is_some() => outcome(run(&ctx, root_row, None)),
            Err(unread_summary) => match &rows {
                Err(e) => Outcome::Unchecked(e.clone()),
                Ok(Err(e)) => Outcome::Unreadable(e.to_string()),
                Ok(Ok(_)) => Outcome::Unchecked(unread_summary.clone()),
            },
        };
        push(check, outcome);
    }

    for (check, run) in checks::REPORT_CHECKS {
        push(
            check,
            match &rows {
                Ok(Ok(rows)) => outcome(run(&ctx, rows)),
                Ok(Err(e)) => Outcome::Unreadable(e.to_string()),
                Err(e) => Outcome::Unchecked(e.clone()),
            },
        );
    }

    push(
        &checks::PASSWORD_POLICY_WEAK,
        match &policy {
            Ok(policy) => outcome(checks::password_policy(&ctx, policy.as_ref())),
            Err(e) => Outcome::Unchecked(e.clone()),
        },
    );

    for (check, run) in checks::GRANT_CHECKS {
        push(
            check,
            match &grants {
                Ok(grants) => outcome(run(&ctx, grants)),
                Err(e) => Outcome::Unchecked(e.clone()),
            },
        );
    }

    for (check, result) in trail_results(&ctx, &trails) {
        push(check, result);
    }

    push(
        &checks::ACCESS_ANALYZER_OFF,
        match &analyzers {
            Ok(analyzers) => outcome(checks::access_analyzer(&ctx, analyzers)),
            Err(e) => Outcome::Unchecked(e.clone()),
        },
    );

    push(
        &checks::ROOT_CREDENTIALS_NOT_CENTRALIZED,
        match &organization {
            Ok(org) => checks::root_centralization(&ctx, org),
            Err(e) => Outcome::Unchecked(e.clone()),
        },
    );

    Ok(Audit {
        account,
        region,
        now,
        results,
    })
}

/// The trail checks over what the trails read gave.
fn trail_results(
    ctx: &checks::Context,
    trails: &Read<Vec<TrailState>>,
) -> [(&'static Check, Outcome); 3] {
    match trails {
        Ok(trails) => [
            (
                &checks::TRAIL_COVERAGE_MISSING,
                checks::trail_coverage(ctx, trails),
            ),
            (
                &checks::TRAIL_VALIDATION_OFF,
                outcome(checks::trail_validation(ctx, trails)),
            ),
            (
                &checks::TRAIL_NOT_ENCRYPTED,
                outcome(checks::trail_encryption(ctx, trails)),
            ),
        ],
        Err(e) => [
            &checks::TRAIL_COVERAGE_MISSING,
            &checks::TRAIL_VALIDATION_OFF,
            &checks::TRAIL_NOT_ENCRYPTED,
        ]
        .map(|check| (check, Outcome::Unchecked(e.clone()))),
    }
}

/// Findings → fail, none → pass.
fn outcome(found: Vec<Standing>) -> Outcome {
    if found.is_empty() {
        Outcome::Pass { note: None }
    } else {
        Outcome::Fail(found)
    }
}

/// A trail with what its status and selectors say, each read on its own: a trail whose status
/// is refused still counts for the checks that need only its description.
#[derive(Debug, Clone)]
pub struct TrailState {
    pub trail: Trail,
    pub logging: Read<bool>,
    pub selectors: Read<Selectors>,
}

/// Lists the trails, then reads each one's status and selectors, a few trails at a time.
async fn read_trails(view: &dyn AccountView) -> Read<Vec<TrailState>> {
    use futures_util::StreamExt as _;
    let trails = view.trails().await?;
    let states = futures_util::stream::iter(trails)
        .map(|trail| async move {
            let (logging, selectors) = tokio::join!(
                view.trail_logging(&trail.arn),
                view.event_selectors(&trail.arn)
            );
            TrailState {
                trail,
                logging,
                selectors,
            }
        })
        .buffered(TRAIL_READS_AT_ONCE)
        .collect()
        .await;
    Ok(states)
}

/// Where the account stands in AWS Organizations, read as far as the check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgState {
    NotInOrganization,
    Member(Organization),
    /// The management account; `features` is `None` when IAM has no trusted access to the
    /// organization, so no centralized root access feature can be on.
    Management {
        org: Organization,
        features: Option<Vec<String>>,
    },
}

/// Reads the organization, and for its management account IAM's trusted access and features.
async fn read_organization(view: &dyn AccountView, account: &str) -> Read<OrgState> {
    let Some(org) = view.organization().await? else {
        return Ok(OrgState::NotInOrganization);
    };
    if org.management_account != account {
        return Ok(OrgState::Member(org));
    }
    let trusted = view.trusted_services().await?;
    // Centralized root access needs IAM's trusted access first; without it asking IAM for
    // the features would only fail.
    let features = if trusted.iter().any(|s| s == checks::IAM_SERVICE_PRINCIPAL) {
        Some(view.organization_features().await?)
    } else {
        None
    };
    Ok(OrgState::Management { org, features })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::Edge;

    /// An account in plain data: each read answers what its field holds.
    struct Fixed {
        report: Read<Vec<u8>>,
        summary: Read<AccountSummary>,
        trails: Read<Vec<Trail>>,
        organization: Read<Option<Organization>>,
        trusted: Read<Vec<String>>,
    }

    fn denied(action: &'static str) -> Unread {
        Unread {
            action,
            failed: Failed::new(
                Edge::Posture,
                Answer::Denied,
                format!("{action} failed: AccessDenied: not authorized"),
            ),
        }
    }

    #[async_trait]
    impl AccountView for Fixed {
        async fn account(&self) -> Read<String> {
            Ok("111122223333".to_owned())
        }
        fn region(&self) -> String {
            "eu-west-1".to_owned()
        }
        async fn credential_report(&self) -> Read<Vec<u8>> {
            self.report.clone()
        }
        async fn account_summary(&self) -> Read<AccountSummary> {
            self.summary.clone()
        }
        async fn password_policy(&self) -> Read<Option<PasswordPolicy>> {
            Ok(None)
        }
        async fn grants(&self) -> Read<Grants> {
            Ok(Grants::default())
        }
        async fn trails(&self) -> Read<Vec<Trail>> {
            self.trails.clone()
        }
        async fn trail_logging(&self, _: &str) -> Read<bool> {
            Ok(true)
        }
        async fn event_selectors(&self, _: &str) -> Read<Selectors> {
            Ok(Selectors::Basic(Vec::new()))
        }
        async fn analyzers(&self) -> Read<Vec<Analyzer>> {
            Err(denied("access-analyzer:ListAnalyzers"))
        }
        async fn organization(&self) -> Read<Option<Organization>> {
            self.organization.clone()
        }
        async fn trusted_services(&self) -> Read<Vec<String>> {
            self.trusted.clone()
        }
        async fn organization_features(&self) -> Read<Vec<String>> {
            Err(denied("iam:ListOrganizationsFeatures"))
        }
        async fn user(&self, name: &str) -> Read<Option<LiveUser>> {
            if name == "gone" {
                return Ok(None);
            }
            let mut row = report::parse(&self.report.clone()?)
                .expect("the fixture's report parses")
                .into_iter()
                .find(|r| r.user == name)
                .expect("the user is in the fixture's report");
            row.mfa_active = false;
            Ok(Some(LiveUser {
                grants: Grants::default(),
                row,
            }))
        }
    }

    fn outcome_of<'a>(audit: &'a Audit, name: &str) -> &'a Outcome {
        &audit
            .results
            .iter()
            .find(|r| r.check.name == name)
            .unwrap_or_else(|| panic!("no result for {name}"))
            .outcome
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-20T12:00:00Z")
            .expect("date")
            .with_timezone(&Utc)
    }

    #[tokio::test]
    async fn a_refused_report_leaves_the_other_checks_running() {
        let view = Fixed {
            report: Err(denied("iam:GetCredentialReport")),
            summary: Ok(AccountSummary {
                root_mfa: false,
                root_access_keys: false,
            }),
            trails: Ok(Vec::new()),
            organization: Ok(None),
            trusted: Ok(Vec::new()),
        };
        let audit = super::audit(&view, &Settings::default(), now())
            .await
            .expect("audit");
        assert_eq!(audit.results.len(), checks::ALL.len());
        let order: Vec<&str> = audit.results.iter().map(|r| r.check.name).collect();
        let all: Vec<&str> = checks::ALL.iter().map(|c| c.name).collect();
        assert_eq!(order, all, "results follow checks::ALL");
        for name in [
            "root-used-recently",
            "user-without-mfa",
            "access-key-not-rotated",
            "credential-unused",
            "user-multiple-active-keys",
        ] {
            match outcome_of(&audit, name) {
                Outcome::Unchecked(u) => {
                    assert_eq!(u.action, "iam:GetCredentialReport");
                    assert!(u.is_denied());
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        // The summary still answers root's keys and MFA.
        assert!(matches!(
            outcome_of(&audit, "root-access-key-present"),
            Outcome::Pass { .. }
        ));
        assert!(matches!(
            outcome_of(&audit, "root-mfa-disabled"),
            Outcome::Fail(_)
        ));
        assert!(matches!(
            outcome_of(&audit, "password-policy-weak"),
            Outcome::Fail(_)
        ));
        assert!(matches!(
            outcome_of(&audit, "trail-coverage-missing"),
            Outcome::Fail(_)
        ));
        assert!(matches!(
            outcome_of(&audit, "access-analyzer-off"),
            Outcome::Unchecked(u) if u.action == "access-analyzer:ListAnalyzers"
        ));
        assert!(matches!(
            outcome_of(&audit, "root-credentials-not-centralized"),
            Outcome::Pass { note: Some(_) }
        ));
        assert!(audit.standing().all(|s| s.account == "111122223333"));
    }

    #[tokio::test]
    async fn a_recheck_reads_one_resource_and_scopes_only_what_it_evaluated() {
        const ACCOUNT: &str = "111122223333";
        let report = b"user,arn,password_enabled,mfa_active\nalice,arn:aws:iam::111122223333:user/alice,true,true\n".to_vec();
        let view = Fixed {
            report: Ok(report),
            summary: Err(denied("iam:GetAccountSummary")),
            trails: Ok(Vec::new()),
            organization: Ok(None),
            trusted: Ok(Vec::new()),
        };
        let settings = Settings::default();
        let alice = Target::User("alice".into());
        let (results, resource) = recheck(&view, &settings, now(), ACCOUNT, &alice).await;
        let names: Vec<&str> = results.iter().map(|r| r.check.name).collect();
        let wanted: Vec<&str> = recheck::checks_of(&alice).iter().map(|c| c.name).collect();
        assert_eq!(
            names, wanted,
            "only the user's checks, root-used-recently left out"
        );
        // The fixture's live read has lost alice's MFA device since the report.
        let found = findings("r".into(), ACCOUNT, &results, resource.as_deref());
        assert_eq!(found.standing.len(), 1);
        assert_eq!(found.standing[0].check, "user-without-mfa");
        assert_eq!(found.scope.len(), wanted.len());
        assert!(found.scope.iter().all(|s| {
            s.covers("arn:aws:iam::111122223333:user/alice#access-key-1")
                && !s.covers("arn:aws:iam::111122223333:user/alice2")
        }));

        // A deleted user: every check passes for the ARN it had, so its findings resolve.
        let (results, resource) = recheck(
            &view,
            &settings,
            now(),
            ACCOUNT,
            &Target::User("gone".into()),
        )
        .await;
        let found = findings("r".into(), ACCOUNT, &results, resource.as_deref());
        assert!(found.standing.is_empty());
        assert_eq!(
            found.scope[0].resource.as_deref(),
            Some("arn:aws:iam::111122223333:user/gone")
        );

        // A refused read evaluates nothing, so it resolves nothing.
        let (results, _) = recheck(&view, &settings, now(), ACCOUNT, &Target::Root).await;
        assert_eq!(results.len(), 2);
        assert!(
            findings("r".into(), ACCOUNT, &results, None)
                .scope
                .is_empty()
        );

        // Account-wide targets cover every resource of their checks.
        let (results, resource) =
            recheck(&view, &settings, now(), ACCOUNT, &Target::PasswordPolicy).await;
        let found = findings("r".into(), ACCOUNT, &results, resource.as_deref());
        assert_eq!(found.standing[0].check, "password-policy-weak");
        assert_eq!(found.scope[0].resource, None);
        let (results, _) = recheck(&view, &settings, now(), ACCOUNT, &Target::Trails).await;
        assert_eq!(results.len(), 3);
    }

    #[tokio::test]
    async fn root_checks_fall_back_on_whichever_read_answered() {
        let report = b"user,arn,mfa_active,access_key_1_active\n<root_account>,arn:aws:iam::111122223333:root,true,false\n".to_vec();
        let view = Fixed {
            report: Ok(report),
            summary: Err(denied("iam:GetAccountSummary")),
            trails: Err(denied("cloudtrail:DescribeTrails")),
            organization: Ok(Some(Organization {
                id: "o-1".into(),
                management_account: "111122223333".into(),
            })),
            trusted: Ok(vec!["iam.amazonaws.com".into()]),
        };
        let audit = super::audit(&view, &Settings::default(), now())
            .await
            .expect("audit");
        assert!(matches!(
            outcome_of(&audit, "root-access-key-present"),
            Outcome::Pass { .. }
        ));
        assert!(matches!(
            outcome_of(&audit, "root-mfa-disabled"),
            Outcome::Pass { .. }
        ));
        for name in [
            "trail-coverage-missing",
            "trail-validation-off",
            "trail-not-encrypted",
        ] {
            assert!(
                matches!(outcome_of(&audit, name), Outcome::Unchecked(u) if u.action == "cloudtrail:DescribeTrails"),
                "{name}"
            );
        }
        // The management account with IAM's trusted access: the features are asked for.
        assert!(matches!(
            outcome_of(&audit, "root-credentials-not-centralized"),
            Outcome::Unchecked(u) if u.action == "iam:ListOrganizationsFeatures"
        ));

        // Neither read answered: could-not-check names the report's refusal; an unreadable
        // report says so.
        let view = Fixed {
            report: Ok(b"name\nx\n".to_vec()),
            ..view
        };
        let audit = super::audit(&view, &Settings::default(), now())
            .await
            .expect("audit");
        assert!(matches!(
            outcome_of(&audit, "root-mfa-disabled"),
            Outcome::Unreadable(why) if why.contains("no `user` column")
        ));
    }
}
