//! The posture checks: plain data (credential report rows, the password policy, users'
//! grants, trails, analyzers, the organization) → [`Standing`] findings. Pure functions; no
//! call, no clock but the `now` they are given.
//!
//! Each check has a stable name, a level, and a title that states the recommendation and the
//! CIS AWS Foundations Benchmark v3.0 control it enforces where there is one.

use chrono::{DateTime, Duration, Utc};

use super::report::Row;
use super::{
    AccountSummary, Analyzer, Grants, OrgState, Outcome, PasswordPolicy, Selectors, Settings,
    TrailState, Unread, UserGrants,
};
use crate::detect::policy;
use crate::finding::{Level, Standing};

/// What a check is, whatever it finds.
#[derive(Debug, PartialEq, Eq)]
pub struct Check {
    /// The stable name findings carry.
    pub name: &'static str,
    pub level: Level,
    /// The recommendation, in one sentence.
    pub title: &'static str,
    /// What to do about a finding, one short line each.
    pub next_steps: &'static [&'static str],
}

/// What every check is given besides its data.
pub struct Context<'a> {
    pub account: &'a str,
    pub region: &'a str,
    /// Ages are counted from here.
    pub now: DateTime<Utc>,
    pub settings: &'a Settings,
}

impl Context<'_> {
    fn finding(&self, check: &Check, resource: String, evidence: String) -> Standing {
        Standing {
            check: check.name.to_owned(),
            account: self.account.to_owned(),
            resource,
            level: check.level,
            title: check.title.to_owned(),
            evidence,
            next_steps: check.next_steps.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// Whether `at` is more than `days` before now.
    fn older_than(&self, at: DateTime<Utc>, days: i64) -> bool {
        self.now - at > Duration::days(days)
    }

    /// `2026-11-20T10:02:11Z (3 days ago)`.
    fn when(&self, at: DateTime<Utc>) -> String {
        let ago = self.now - at;
        let ago = if ago < Duration::zero() {
            "after this audit's time".to_owned()
        } else if ago < Duration::hours(1) {
            format!("{} minutes ago", ago.num_minutes())
        } else if ago < Duration::days(2) {
            format!("{} hours ago", ago.num_hours())
        } else {
            format!("{} days ago", ago.num_days())
        };
        format!("{} ({ago})", at.format("%Y-%m-%dT%H:%M:%SZ"))
    }

    fn when_or_never(&self, at: Option<DateTime<Utc>>) -> String {
        at.map_or_else(|| "never".to_owned(), |at| self.when(at))
    }
}

/// The service principal whose trusted access centralized root access needs.
pub const IAM_SERVICE_PRINCIPAL: &str = "iam.amazonaws.com";
/// The IAM feature that lets the management account remove member accounts' root credentials.
pub const ROOT_CREDENTIALS_MANAGEMENT: &str = "RootCredentialsManagement";
/// AWS's own full-access policy.
const ADMINISTRATOR_ACCESS: &str = "arn:aws:iam::aws:policy/AdministratorAccess";

pub const ROOT_ACCESS_KEY_PRESENT: Check = Check {
    name: "root-access-key-present",
    level: Level::Critical,
    title: "The root user has no access keys (CIS 1.4)",
    next_steps: &[
        "Find what uses the key (its last use is in the evidence), move it to an IAM role",
        "Sign in as root and delete the key under Security credentials",
    ],
};

pub const ROOT_MFA_DISABLED: Check = Check {
    name: "root-mfa-disabled",
    level: Level::Critical,
    title: "The root user signs in with MFA (CIS 1.5)",
    next_steps: &[
        "Sign in as root and assign an MFA device under Security credentials",
        "Prefer a hardware key or passkey kept where more than one person can reach it",
    ],
};

pub const ROOT_USED_RECENTLY: Check = Check {
    name: "root-used-recently",
    level: Level::High,
    title: "The root user is not used for everyday tasks (CIS 1.7)",
    next_steps: &[
        "Confirm who used root and why (CloudTrail shows the calls)",
        "Do the task with an IAM role unless only root can do it",
    ],
};

pub const PASSWORD_POLICY_WEAK: Check = Check {
    name: "password-policy-weak",
    level: Level::Medium,
    title: "The account password policy requires long passwords (CIS 1.8), prevents reuse (CIS 1.9) and mixes character classes",
    next_steps: &[
        "Set the policy: aws iam update-account-password-policy --minimum-password-length 14 --password-reuse-prevention 24 --require-symbols --require-numbers --require-uppercase-characters --require-lowercase-characters",
        "Prefer federated sign-in (IAM Identity Center) over IAM user passwords",
    ],
};

pub const USER_WITHOUT_MFA: Check = Check {
    name: "user-without-mfa",
    level: Level::High,
    title: "Every IAM user with a console password has MFA (CIS 1.10)",
    next_steps: &[
        "Have the user assign an MFA device, or remove the console password if unused",
        "Deny actions without MFA (aws:MultiFactorAuthPresent) for console users",
    ],
};

pub const ACCESS_KEY_NOT_ROTATED: Check = Check {
    name: "access-key-not-rotated",
    level: Level::Medium,
    title: "Active access keys are rotated within 90 days (CIS 1.14)",
    next_steps: &[
        "Create a second key, move its users to it, then deactivate and delete the old one",
        "Replace long-lived keys with IAM roles where the caller can assume one",
    ],
};

pub const CREDENTIAL_UNUSED: Check = Check {
    name: "credential-unused",
    level: Level::Medium,
    title: "Credentials unused for 45 days are disabled (CIS 1.12)",
    next_steps: &[
        "Deactivate the unused key or delete the unused console password",
        "Delete the user if nobody needs it",
    ],
};

pub const USER_MULTIPLE_ACTIVE_KEYS: Check = Check {
    name: "user-multiple-active-keys",
    level: Level::Low,
    title: "An IAM user has at most one active access key (CIS 1.13)",
    next_steps: &[
        "Find which key is still used (last use is in the credential report) and deactivate the other",
    ],
};

pub const USER_HAS_DIRECT_POLICIES: Check = Check {
    name: "user-has-direct-policies",
    level: Level::Low,
    title: "IAM users receive permissions only through groups (CIS 1.15)",
    next_steps: &[
        "Put the user in a group that carries these permissions, then detach or delete the user's own policies",
    ],
};

pub const USER_ADMIN_DIRECT: Check = Check {
    name: "user-admin-direct",
    level: Level::High,
    title: "No IAM user is granted full administrative privileges (\"*\" on \"*\") directly (CIS 1.16)",
    next_steps: &[
        "Confirm the user needs administrator access; if not, detach or delete the policy",
        "Grant admin access through a role assumed with MFA rather than to a user",
    ],
};

pub const TRAIL_COVERAGE_MISSING: Check = Check {
    name: "trail-coverage-missing",
    level: Level::High,
    title: "A multi-region trail is logging read and write management events (CIS 3.1)",
    next_steps: &[
        "Create a multi-region trail recording all management events, or turn logging back on",
        "Check the trail's event selectors record both read and write management events",
    ],
};

pub const TRAIL_VALIDATION_OFF: Check = Check {
    name: "trail-validation-off",
    level: Level::Medium,
    title: "Every trail has log file validation on (CIS 3.2)",
    next_steps: &[
        "aws cloudtrail update-trail --name TRAIL --enable-log-file-validation (in the trail's home region)",
    ],
};

pub const TRAIL_NOT_ENCRYPTED: Check = Check {
    name: "trail-not-encrypted",
    level: Level::Low,
    title: "Every trail encrypts its log files with an SSE-KMS key (CIS 3.5)",
    next_steps: &[
        "Create a KMS key whose policy lets CloudTrail encrypt and your readers decrypt, then set it as the trail's KmsKeyId",
    ],
};

pub const ACCESS_ANALYZER_OFF: Check = Check {
    name: "access-analyzer-off",
    level: Level::Low,
    title: "IAM Access Analyzer is enabled in every region (CIS 1.20)",
    next_steps: &[
        "aws accessanalyzer create-analyzer --analyzer-name account --type ACCOUNT (or ORGANIZATION from the management account)",
    ],
};

pub const ROOT_CREDENTIALS_NOT_CENTRALIZED: Check = Check {
    name: "root-credentials-not-centralized",
    level: Level::Informational,
    title: "The organization's management account centrally manages member accounts' root credentials",
    next_steps: &[
        "Enable trusted access for IAM, then centralized root access (RootCredentialsManagement) in the IAM console",
        "Then delete member accounts' root credentials and use sts AssumeRoot for root-only tasks",
    ],
};

/// Not one of [`ALL`]: an organization audit's check that it could enter a member account
/// at all, by assuming the member role there. Reported for member accounts only.
pub const ACCOUNT_UNREACHABLE: Check = Check {
    name: "audit-account-unreachable",
    level: Level::Medium,
    title: "The posture audit can enter every member account of the organization",
    next_steps: &[
        "Deploy deploy/audit-member-role.yaml to the organization's accounts as a StackSet",
        "Check that its trusted principal is the auditing role and that no SCP denies sts:AssumeRole",
    ],
};

/// Every check, in the order the audit reports them.
pub const ALL: [&Check; 15] = [
    &ROOT_ACCESS_KEY_PRESENT,
    &ROOT_MFA_DISABLED,
    &ROOT_USED_RECENTLY,
    &USER_WITHOUT_MFA,
    &ACCESS_KEY_NOT_ROTATED,
    &CREDENTIAL_UNUSED,
    &USER_MULTIPLE_ACTIVE_KEYS,
    &PASSWORD_POLICY_WEAK,
    &USER_HAS_DIRECT_POLICIES,
    &USER_ADMIN_DIRECT,
    &TRAIL_COVERAGE_MISSING,
    &TRAIL_VALIDATION_OFF,
    &TRAIL_NOT_ENCRYPTED,
    &ACCESS_ANALYZER_OFF,
    &ROOT_CREDENTIALS_NOT_CENTRALIZED,
];

/// A check over root's report row and the account summary, either of which may be missing.
pub type RootCheck = fn(&Context, Option<&Row>, Option<&AccountSummary>) -> Vec<Standing>;
/// A check over the credential report.
pub type ReportCheck = fn(&Context, &[Row]) -> Vec<Standing>;
/// A check over users' grants.
pub type GrantCheck = fn(&Context, &Grants) -> Vec<Standing>;

pub const ROOT_CHECKS: [(&Check, RootCheck); 2] = [
    (&ROOT_ACCESS_KEY_PRESENT, root_access_key),
    (&ROOT_MFA_DISABLED, root_mfa),
];

pub const REPORT_CHECKS: [(&Check, ReportCheck); 5] = [
    (&ROOT_USED_RECENTLY, root_used_recently),
    (&USER_WITHOUT_MFA, user_without_mfa),
    (&ACCESS_KEY_NOT_ROTATED, access_key_not_rotated),
    (&CREDENTIAL_UNUSED, credential_unused),
    (&USER_MULTIPLE_ACTIVE_KEYS, multiple_active_keys),
];

pub const GRANT_CHECKS: [(&Check, GrantCheck); 2] = [
    (&USER_HAS_DIRECT_POLICIES, direct_policies),
    (&USER_ADMIN_DIRECT, admin_direct),
];

/// A member account the audit could not enter: the refusal is the evidence, the account
/// itself the resource.
pub fn account_unreachable(ctx: &Context, role_arn: &str, refusal: &Unread) -> Standing {
    ctx.finding(
        &ACCOUNT_UNREACHABLE,
        ctx.account.to_owned(),
        format!(
            "cannot enter {} as {role_arn}: {}",
            ctx.account, refusal.failed.sentence
        ),
    )
}

/// Root's ARN: from its report row, else built from the account.
fn root_arn(ctx: &Context, row: Option<&Row>) -> String {
    row.map(|r| r.arn.clone())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| format!("arn:aws:iam::{}:root", ctx.account))
}

fn key_evidence(ctx: &Context, owner: &str, key: &super::report::Key) -> String {
    let mut s = format!(
        "{owner} access key {} created {}, last used {}",
        key.slot,
        ctx.when_or_never(key.last_rotated),
        ctx.when_or_never(key.last_used)
    );
    if let (Some(service), Some(_)) = (&key.last_used_service, key.last_used) {
        s.push_str(&format!(" with {service}"));
    }
    s
}

/// root-access-key-present: an active key in root's row, or any key by the account summary
/// (which also counts inactive keys: CIS asks for none at all).
pub fn root_access_key(
    ctx: &Context,
    row: Option<&Row>,
    summary: Option<&AccountSummary>,
) -> Vec<Standing> {
    let mut evidence: Vec<String> = row
        .into_iter()
        .flat_map(|r| r.active_keys())
        .map(|k| format!("{} (active)", key_evidence(ctx, "root", k)))
        .collect();
    if evidence.is_empty() && summary.is_some_and(|s| s.root_access_keys) {
        evidence.push(format!(
            "GetAccountSummary reports a root access key (AccountAccessKeysPresent = 1){}",
            if row.is_some() {
                ", none of them active"
            } else {
                ""
            }
        ));
    }
    if evidence.is_empty() {
        return Vec::new();
    }
    vec![ctx.finding(
        &ROOT_ACCESS_KEY_PRESENT,
        root_arn(ctx, row),
        evidence.join("; "),
    )]
}

/// root-mfa-disabled: root's row when the report has it, else the account summary.
pub fn root_mfa(
    ctx: &Context,
    row: Option<&Row>,
    summary: Option<&AccountSummary>,
) -> Vec<Standing> {
    let evidence = match (row, summary) {
        (Some(row), _) if !row.mfa_active => format!(
            "the credential report shows no MFA device for root; root's password last used {}",
            ctx.when_or_never(row.password_last_used)
        ),
        (None, Some(s)) if !s.root_mfa => {
            "GetAccountSummary reports no MFA device for root (AccountMFAEnabled = 0)".to_owned()
        }
        _ => return Vec::new(),
    };
    vec![ctx.finding(&ROOT_MFA_DISABLED, root_arn(ctx, row), evidence)]
}

/// root-used-recently: root's password or any of its keys used within the setting's days.
pub fn root_used_recently(ctx: &Context, rows: &[Row]) -> Vec<Standing> {
    let Some(root) = rows.iter().find(|r| r.is_root()) else {
        return Vec::new();
    };
    let days = ctx.settings.root_recent_days;
    let recent = |at: Option<DateTime<Utc>>| at.filter(|at| !ctx.older_than(*at, days));
    let mut uses = Vec::new();
    if let Some(at) = recent(root.password_last_used) {
        uses.push(format!("root's password was used {}", ctx.when(at)));
    }
    for key in &root.keys {
        if let Some(at) = recent(key.last_used) {
            let mut s = format!("root's access key {} was used {}", key.slot, ctx.when(at));
            if let Some(service) = &key.last_used_service {
                s.push_str(&format!(" with {service}"));
            }
            uses.push(s);
        }
    }
    if uses.is_empty() {
        return Vec::new();
    }
    vec![ctx.finding(
        &ROOT_USED_RECENTLY,
        root.arn.clone(),
        format!("{} (within the last {days} days)", uses.join("; ")),
    )]
}

fn users(rows: &[Row]) -> impl Iterator<Item = &Row> {
    rows.iter().filter(|r| !r.is_root())
}

/// user-without-mfa: a console password and no MFA device.
pub fn user_without_mfa(ctx: &Context, rows: &[Row]) -> Vec<Standing> {
    users(rows)
        .filter(|r| r.password_enabled == Some(true) && !r.mfa_active)
        .map(|r| {
            ctx.finding(
                &USER_WITHOUT_MFA,
                r.arn.clone(),
                format!(
                    "{} has a console password (set {}, last used {}) and no MFA device",
                    r.user,
                    ctx.when_or_never(r.password_last_changed.or(r.created)),
                    ctx.when_or_never(r.password_last_used)
                ),
            )
        })
        .collect()
}

/// access-key-not-rotated: an active key created or rotated longer ago than the setting.
pub fn access_key_not_rotated(ctx: &Context, rows: &[Row]) -> Vec<Standing> {
    let days = ctx.settings.key_max_age_days;
    users(rows)
        .flat_map(|r| r.active_keys().map(move |k| (r, k)))
        .filter(|(_, k)| k.last_rotated.is_some_and(|at| ctx.older_than(at, days)))
        .map(|(r, k)| {
            ctx.finding(
                &ACCESS_KEY_NOT_ROTATED,
                format!("{}#access-key-{}", r.arn, k.slot),
                format!("{} (older than {days} days)", key_evidence(ctx, &r.user, k)),
            )
        })
        .collect()
}

/// credential-unused: a console password or active key not used for the setting's days, or
/// never used although it was set that long ago.
pub fn credential_unused(ctx: &Context, rows: &[Row]) -> Vec<Standing> {
    let days = ctx.settings.unused_days;
    let mut found = Vec::new();
    for r in users(rows) {
        if r.password_enabled == Some(true) {
            let set = r.password_last_changed.or(r.created);
            let evidence = match (r.password_last_used, set) {
                (Some(used), _) if ctx.older_than(used, days) => Some(format!(
                    "{}'s console password was last used {}",
                    r.user,
                    ctx.when(used)
                )),
                (None, Some(set)) if ctx.older_than(set, days) => Some(format!(
                    "{}'s console password was never used since it was set {}",
                    r.user,
                    ctx.when(set)
                )),
                _ => None,
            };
            if let Some(evidence) = evidence {
                found.push(ctx.finding(
                    &CREDENTIAL_UNUSED,
                    format!("{}#password", r.arn),
                    format!("{evidence} (unused for more than {days} days)"),
                ));
            }
        }
        for k in r.active_keys() {
            let unused = match k.last_used {
                Some(used) => ctx.older_than(used, days),
                None => k.last_rotated.is_some_and(|at| ctx.older_than(at, days)),
            };
            if unused {
                found.push(ctx.finding(
                    &CREDENTIAL_UNUSED,
                    format!("{}#access-key-{}", r.arn, k.slot),
                    format!(
                        "{} (active, unused for more than {days} days)",
                        key_evidence(ctx, &r.user, k)
                    ),
                ));
            }
        }
    }
    found
}

/// user-multiple-active-keys: both key slots active.
pub fn multiple_active_keys(ctx: &Context, rows: &[Row]) -> Vec<Standing> {
    users(rows)
        .filter(|r| r.active_keys().count() > 1)
        .map(|r| {
            let keys: Vec<String> = r
                .active_keys()
                .map(|k| key_evidence(ctx, &r.user, k))
                .collect();
            ctx.finding(&USER_MULTIPLE_ACTIVE_KEYS, r.arn.clone(), keys.join("; "))
        })
        .collect()
}

/// password-policy-weak: no policy, or each requirement it falls short of.
pub fn password_policy(ctx: &Context, policy: Option<&PasswordPolicy>) -> Vec<Standing> {
    let want = &ctx.settings.password;
    let Some(policy) = policy else {
        return vec![ctx.finding(
            &PASSWORD_POLICY_WEAK,
            "password-policy".to_owned(),
            "the account has no password policy, so IAM's default applies (no reuse prevention)"
                .to_owned(),
        )];
    };
    let mut short = Vec::new();
    match policy.min_length {
        Some(n) if n >= want.min_length => {}
        n => short.push(format!(
            "minimum length {} (want at least {})",
            n.map_or_else(|| "unset".to_owned(), |n| n.to_string()),
            want.min_length
        )),
    }
    if want.reuse_prevention > 0 {
        match policy.reuse_prevention {
            Some(n) if n >= want.reuse_prevention => {}
            Some(n) => short.push(format!(
                "reuse prevention remembers {n} passwords (want {})",
                want.reuse_prevention
            )),
            None => short.push(format!(
                "password reuse is allowed (want the last {} prevented)",
                want.reuse_prevention
            )),
        }
    }
    if want.character_classes {
        for (required, class) in [
            (policy.require_symbols, "symbols"),
            (policy.require_numbers, "numbers"),
            (policy.require_uppercase, "upper-case letters"),
            (policy.require_lowercase, "lower-case letters"),
        ] {
            if !required {
                short.push(format!("{class} not required"));
            }
        }
    }
    if short.is_empty() {
        return Vec::new();
    }
    vec![ctx.finding(
        &PASSWORD_POLICY_WEAK,
        "password-policy".to_owned(),
        format!("the password policy falls short: {}", short.join("; ")),
    )]
}

/// user-has-direct-policies: managed or inline policies on the user instead of its groups.
pub fn direct_policies(ctx: &Context, grants: &Grants) -> Vec<Standing> {
    grants
        .users
        .iter()
        .filter(|u| !u.attached.is_empty() || !u.inline.is_empty())
        .map(|u| {
            let mut parts = Vec::new();
            if !u.attached.is_empty() {
                let names: Vec<&str> = u.attached.iter().map(|(n, _)| n.as_str()).collect();
                parts.push(format!("attached {}", names.join(", ")));
            }
            if !u.inline.is_empty() {
                let names: Vec<&str> = u.inline.iter().map(|(n, _)| n.as_str()).collect();
                parts.push(format!("inline {}", names.join(", ")));
            }
            parts.push(if u.groups.is_empty() {
                "in no group".to_owned()
            } else {
                format!("groups {}", u.groups.join(", "))
            });
            ctx.finding(
                &USER_HAS_DIRECT_POLICIES,
                u.arn.clone(),
                format!("{}: {}", u.user, parts.join("; ")),
            )
        })
        .collect()
}

/// user-admin-direct: AdministratorAccess, or a policy allowing `*` on `*`, on the user itself.
pub fn admin_direct(ctx: &Context, grants: &Grants) -> Vec<Standing> {
    grants
        .users
        .iter()
        .filter_map(|u| {
            let admin = admin_grants(u, grants);
            (!admin.is_empty()).then(|| {
                ctx.finding(
                    &USER_ADMIN_DIRECT,
                    u.arn.clone(),
                    format!("{} is granted directly: {}", u.user, admin.join("; ")),
                )
            })
        })
        .collect()
}

/// Which of a user's own policies grant everything, named for the evidence.
fn admin_grants(user: &UserGrants, grants: &Grants) -> Vec<String> {
    let mut found = Vec::new();
    for (name, arn) in &user.attached {
        if arn == ADMINISTRATOR_ACCESS {
            found.push(format!("attached AWS managed policy {name}"));
        } else if grants
            .policy_documents
            .get(arn)
            .is_some_and(|doc| allows_everything(doc))
        {
            found.push(format!(
                "attached customer managed policy {name} ({arn}) allows \"*\" on \"*\""
            ));
        }
    }
    for (name, doc) in &user.inline {
        if allows_everything(doc) {
            found.push(format!("inline policy {name} allows \"*\" on \"*\""));
        }
    }
    found
}

/// Whether a policy document as IAM returns it (URL-encoded, RFC 3986,
/// <https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetAccountAuthorizationDetails.html>,
/// or already JSON) allows every action on every resource.
pub fn allows_everything(document: &str) -> bool {
    policy::document_text(document).is_some_and(|doc| policy::allows_everything(&doc))
}

/// Which management events a trail's selectors record: (read, write).
pub fn management_events(selectors: &Selectors) -> (bool, bool) {
    let mut read = false;
    let mut write = false;
    match selectors {
        // A trail created without selectors logs all management events, read and write
        // (https://docs.aws.amazon.com/awscloudtrail/latest/userguide/logging-management-events-with-cloudtrail.html);
        // AWS then shows that default selector, moto shows none.
        Selectors::Basic(list) if list.is_empty() => (read, write) = (true, true),
        Selectors::Basic(list) => {
            for s in list.iter().filter(|s| s.include_management_events) {
                match s.read_write.as_str() {
                    "ReadOnly" => read = true,
                    "WriteOnly" => write = true,
                    _ => (read, write) = (true, true),
                }
            }
        }
        Selectors::Advanced(list) => {
            for fields in list {
                let category = fields.iter().find(|f| f.field == "eventCategory");
                if !category.is_some_and(|f| f.equals.iter().any(|v| v == "Management")) {
                    continue;
                }
                // A selector that keeps only some event sources (Equals or StartsWith on any
                // other field) covers only those; exclusions (the console's "exclude AWS KMS
                // events") leave the rest covered.
                let narrowed = fields.iter().any(|f| {
                    f.field != "eventCategory"
                        && f.field != "readOnly"
                        && (!f.equals.is_empty() || f.other_includes)
                });
                if narrowed {
                    continue;
                }
                match fields.iter().find(|f| f.field == "readOnly") {
                    None => (read, write) = (true, true),
                    Some(f) => {
                        let only = |v: &str| f.equals.iter().any(|e| e == v);
                        let not = |v: &str| f.not_equals.iter().any(|e| e == v);
                        if only("true") || not("false") {
                            read = true;
                        }
                        if only("false") || not("true") {
                            write = true;
                        }
                    }
                }
            }
        }
    }
    (read, write)
}

/// trail-coverage-missing: no trail that is multi-region, logging, and recording read and
/// write management events. Could not be checked when no trail is known to cover and a
/// multi-region trail's status or selectors could not be read: that trail may cover.
pub fn trail_coverage(ctx: &Context, trails: &[TrailState]) -> Outcome {
    let mut why = Vec::new();
    let mut unknown = None;
    for t in trails {
        let name = format!("trail {} (home {})", t.trail.name, t.trail.home_region);
        if !t.trail.multi_region {
            why.push(format!("{name} is single-region"));
            continue;
        }
        let logging = match &t.logging {
            Ok(logging) => *logging,
            Err(e) => {
                unknown.get_or_insert_with(|| e.clone());
                continue;
            }
        };
        let events = match &t.selectors {
            Ok(s) => management_events(s),
            Err(e) => {
                unknown.get_or_insert_with(|| e.clone());
                continue;
            }
        };
        match (logging, events) {
            (true, (true, true)) => return Outcome::Pass { note: None },
            (false, _) => why.push(format!("{name} is not logging")),
            (true, (false, false)) => why.push(format!("{name} records no management events")),
            (true, (read, _)) => why.push(format!(
                "{name} records only {} management events",
                if read { "read" } else { "write" }
            )),
        }
    }
    if let Some(e) = unknown {
        return Outcome::Unchecked(e);
    }
    let evidence = if trails.is_empty() {
        format!("no trail is listed in {}", ctx.region)
    } else {
        why.join("; ")
    };
    Outcome::Fail(vec![ctx.finding(
        &TRAIL_COVERAGE_MISSING,
        format!("cloudtrail/{}", ctx.account),
        evidence,
    )])
}

fn trail_owner_note(t: &TrailState) -> &'static str {
    if t.trail.organization {
        ", an organization trail (change it from the management account)"
    } else {
        ""
    }
}

/// trail-validation-off: each trail without log file validation.
pub fn trail_validation(ctx: &Context, trails: &[TrailState]) -> Vec<Standing> {
    trails
        .iter()
        .filter(|t| !t.trail.log_file_validation)
        .map(|t| {
            ctx.finding(
                &TRAIL_VALIDATION_OFF,
                t.trail.arn.clone(),
                format!(
                    "trail {} (home {}{}) has log file validation off",
                    t.trail.name,
                    t.trail.home_region,
                    trail_owner_note(t)
                ),
            )
        })
        .collect()
}

/// trail-not-encrypted: each trail without an SSE-KMS key.
pub fn trail_encryption(ctx: &Context, trails: &[TrailState]) -> Vec<Standing> {
    trails
        .iter()
        .filter(|t| t.trail.kms_key_id.is_none())
        .map(|t| {
            ctx.finding(
                &TRAIL_NOT_ENCRYPTED,
                t.trail.arn.clone(),
                format!(
                    "trail {} (home {}{}) has no KMS key; its log files are encrypted with S3-managed keys only",
                    t.trail.name,
                    t.trail.home_region,
                    trail_owner_note(t)
                ),
            )
        })
        .collect()
}

/// access-analyzer-off: no active external-access analyzer (account or organization zone of
/// trust) in the region. Unused-access analyzers do not look for external access.
pub fn access_analyzer(ctx: &Context, analyzers: &[Analyzer]) -> Vec<Standing> {
    let external = |a: &&Analyzer| a.kind == "ACCOUNT" || a.kind == "ORGANIZATION";
    if analyzers
        .iter()
        .filter(external)
        .any(|a| a.status == "ACTIVE")
    {
        return Vec::new();
    }
    let evidence = if analyzers.is_empty() {
        format!("no IAM Access Analyzer analyzer exists in {}", ctx.region)
    } else {
        let seen: Vec<String> = analyzers
            .iter()
            .map(|a| format!("{} ({}, {})", a.name, a.kind, a.status))
            .collect();
        format!(
            "no active account or organization analyzer in {}; found {}",
            ctx.region,
            seen.join(", ")
        )
    };
    vec![ctx.finding(
        &ACCESS_ANALYZER_OFF,
        format!("access-analyzer/{}", ctx.region),
        evidence,
    )]
}

/// root-credentials-not-centralized: only an organization's management account can centralize
/// root access, so elsewhere the check does not apply.
pub fn root_centralization(ctx: &Context, org: &OrgState) -> Outcome {
    let (org, features) = match org {
        OrgState::NotInOrganization => {
            return Outcome::Pass {
                note: Some("not applicable: the account is in no organization".to_owned()),
            };
        }
        OrgState::Member(org) => {
            return Outcome::Pass {
                note: Some(format!(
                    "not applicable: a member of {}, whose management account {} decides",
                    org.id, org.management_account
                )),
            };
        }
        OrgState::Management { org, features } => (org, features),
    };
    let evidence = match features {
        None => format!(
            "IAM has no trusted access to organization {} (ListAWSServiceAccessForOrganization lacks {IAM_SERVICE_PRINCIPAL}), so member accounts keep their own root credentials",
            org.id
        ),
        Some(f) if !f.iter().any(|f| f == ROOT_CREDENTIALS_MANAGEMENT) => format!(
            "organization {} does not have {ROOT_CREDENTIALS_MANAGEMENT} enabled (enabled: {})",
            org.id,
            if f.is_empty() {
                "none".to_owned()
            } else {
                f.join(", ")
            }
        ),
        Some(_) => return Outcome::Pass { note: None },
    };
    Outcome::Fail(vec![ctx.finding(
        &ROOT_CREDENTIALS_NOT_CENTRALIZED,
        format!("organization/{}", org.id),
        evidence,
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::{Answer, Edge, Failed};
    use crate::posture::report::{self, Key};
    use crate::posture::{BasicSelector, FieldSelector, Organization, Read, Trail, Unread};

    const ACCOUNT: &str = "111122223333";

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("date")
            .with_timezone(&Utc)
    }

    fn ctx(settings: &Settings) -> Context<'_> {
        Context {
            account: ACCOUNT,
            region: "us-east-1",
            now: at("2026-11-20T12:00:00Z"),
            settings,
        }
    }

    fn key(slot: u8, active: bool, rotated: Option<&str>, used: Option<&str>) -> Key {
        Key {
            slot,
            active,
            last_rotated: rotated.map(at),
            last_used: used.map(at),
            last_used_service: used.map(|_| "s3".to_owned()),
        }
    }

    fn user(name: &str) -> Row {
        Row {
            user: name.to_owned(),
            arn: format!("arn:aws:iam::{ACCOUNT}:user/{name}"),
            created: Some(at("2026-01-01T00:00:00Z")),
            password_enabled: Some(false),
            password_last_used: None,
            password_last_changed: None,
            mfa_active: false,
            keys: [key(1, false, None, None), key(2, false, None, None)],
        }
    }

    fn root() -> Row {
        Row {
            user: report::ROOT_USER.to_owned(),
            arn: format!("arn:aws:iam::{ACCOUNT}:root"),
            password_enabled: None,
            ..user("root")
        }
    }

    fn names(found: &[Standing]) -> Vec<&str> {
        found.iter().map(|s| s.resource.as_str()).collect()
    }

    #[test]
    fn root_keys_and_mfa_from_the_row_or_the_summary() {
        let s = Settings::default();
        let c = ctx(&s);
        let mut r = root();
        r.keys[0] = key(
            1,
            true,
            Some("2020-03-04T05:06:07Z"),
            Some("2026-11-19T12:00:00Z"),
        );
        let found = root_access_key(&c, Some(&r), None);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].level, Level::Critical);
        assert_eq!(found[0].resource, "arn:aws:iam::111122223333:root");
        assert!(
            found[0]
                .evidence
                .contains("last used 2026-11-19T12:00:00Z (24 hours ago) with s3"),
            "{}",
            found[0].evidence
        );
        assert!(found[0].title.contains("CIS 1.4"));
        assert!((1..=3).contains(&found[0].next_steps.len()));

        // No active key in the row, but the summary counts an inactive one: CIS wants none.
        let found = root_access_key(
            &c,
            Some(&root()),
            Some(&AccountSummary {
                root_mfa: true,
                root_access_keys: true,
            }),
        );
        assert!(
            found[0].evidence.contains("none of them active"),
            "{found:?}"
        );
        // Summary alone (moto's report has no root row).
        let clean = AccountSummary {
            root_mfa: true,
            root_access_keys: false,
        };
        assert!(root_access_key(&c, None, Some(&clean)).is_empty());
        assert!(root_mfa(&c, None, Some(&clean)).is_empty());
        let found = root_mfa(
            &c,
            None,
            Some(&AccountSummary {
                root_mfa: false,
                root_access_keys: false,
            }),
        );
        assert!(found[0].evidence.contains("AccountMFAEnabled = 0"));
        // The row wins over the summary when both are there.
        let found = root_mfa(&c, Some(&root()), Some(&clean));
        assert_eq!(found.len(), 1);
        let mut with_mfa = root();
        with_mfa.mfa_active = true;
        assert!(root_mfa(&c, Some(&with_mfa), None).is_empty());
    }

    #[test]
    fn root_use_within_the_setting_is_reported_with_when() {
        let s = Settings::default();
        let c = ctx(&s);
        let mut r = root();
        r.password_last_used = Some(at("2026-11-20T09:00:00Z"));
        r.keys[1] = key(
            2,
            false,
            Some("2020-01-01T00:00:00Z"),
            Some("2026-11-01T00:00:00Z"),
        );
        let found = root_used_recently(&c, &[user("a"), r.clone()]);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].evidence,
            "root's password was used 2026-11-20T09:00:00Z (3 hours ago) (within the last 1 days)"
        );
        r.password_last_used = Some(at("2026-11-18T09:00:00Z"));
        assert!(root_used_recently(&c, &[r.clone()]).is_empty());
        let wider = Settings {
            root_recent_days: 30,
            ..Settings::default()
        };
        let found = root_used_recently(&ctx(&wider), &[r]);
        assert!(
            found[0].evidence.contains("root's access key 2 was used"),
            "{found:?}"
        );
        assert!(found[0].evidence.contains("with s3"));
        // No root row, no finding (moto's report).
        assert!(root_used_recently(&c, &[user("a")]).is_empty());
    }

    #[test]
    fn users_without_mfa_and_their_keys() {
        let s = Settings::default();
        let c = ctx(&s);
        let mut console = user("console");
        console.password_enabled = Some(true);
        console.password_last_changed = Some(at("2026-01-02T00:00:00Z"));
        let mut mfa = console.clone();
        mfa.user = "mfa".into();
        mfa.arn = format!("arn:aws:iam::{ACCOUNT}:user/mfa");
        mfa.mfa_active = true;
        let mut keys = user("keys");
        keys.keys = [
            key(
                1,
                true,
                Some("2026-01-01T00:00:00Z"),
                Some("2026-11-19T00:00:00Z"),
            ),
            key(2, true, Some("2026-11-01T00:00:00Z"), None),
        ];
        let mut r = root();
        r.password_enabled = Some(true);
        r.keys[0] = key(1, true, Some("2020-01-01T00:00:00Z"), None);
        let rows = vec![r, console, mfa, keys];

        let found = user_without_mfa(&c, &rows);
        assert_eq!(names(&found), ["arn:aws:iam::111122223333:user/console"]);
        assert!(
            found[0].evidence.contains("set 2026-01-02T00:00:00Z"),
            "{found:?}"
        );
        assert!(found[0].evidence.contains("last used never"));

        // Root's old key is root-access-key-present's business, not rotation's.
        let found = access_key_not_rotated(&c, &rows);
        assert_eq!(
            names(&found),
            ["arn:aws:iam::111122223333:user/keys#access-key-1"]
        );
        assert!(found[0].evidence.contains("(323 days ago)"), "{found:?}");

        let found = multiple_active_keys(&c, &rows);
        assert_eq!(names(&found), ["arn:aws:iam::111122223333:user/keys"]);
        assert!(found[0].evidence.contains("access key 2 created"));
    }

    #[test]
    fn unused_credentials_count_from_last_use_or_from_when_they_were_set() {
        let s = Settings::default();
        let c = ctx(&s);
        let mut old_password = user("old");
        old_password.password_enabled = Some(true);
        old_password.password_last_used = Some(at("2026-09-01T00:00:00Z"));
        let mut never = user("never");
        never.password_enabled = Some(true);
        never.password_last_changed = Some(at("2026-01-01T00:00:00Z"));
        let mut fresh = user("fresh");
        fresh.password_enabled = Some(true);
        fresh.password_last_changed = Some(at("2026-11-10T00:00:00Z"));
        fresh.keys[0] = key(1, true, Some("2026-11-10T00:00:00Z"), None);
        let mut keys = user("keys");
        keys.keys = [
            key(1, true, Some("2026-01-01T00:00:00Z"), None),
            key(
                2,
                true,
                Some("2026-01-01T00:00:00Z"),
                Some("2026-09-01T00:00:00Z"),
            ),
        ];
        let mut inactive = user("inactive");
        inactive.keys[0] = key(1, false, Some("2020-01-01T00:00:00Z"), None);
        let found = credential_unused(&c, &[root(), old_password, never, fresh, keys, inactive]);
        assert_eq!(
            names(&found),
            [
                "arn:aws:iam::111122223333:user/old#password",
                "arn:aws:iam::111122223333:user/never#password",
                "arn:aws:iam::111122223333:user/keys#access-key-1",
                "arn:aws:iam::111122223333:user/keys#access-key-2",
            ]
        );
        assert!(
            found[1]
                .evidence
                .contains("never used since it was set 2026-01-01")
        );
        assert!(found[0].evidence.contains("unused for more than 45 days"));
    }

    #[test]
    fn password_policy_names_each_shortfall() {
        let s = Settings::default();
        let c = ctx(&s);
        let found = password_policy(&c, None);
        assert!(found[0].evidence.contains("no password policy"));
        assert_eq!(found[0].resource, "password-policy");

        let weak = PasswordPolicy {
            min_length: Some(8),
            require_symbols: false,
            require_numbers: true,
            require_uppercase: false,
            require_lowercase: true,
            reuse_prevention: Some(5),
        };
        let found = password_policy(&c, Some(&weak));
        assert_eq!(
            found[0].evidence,
            "the password policy falls short: minimum length 8 (want at least 14); reuse prevention remembers 5 passwords (want 24); symbols not required; upper-case letters not required"
        );
        let no_reuse = PasswordPolicy {
            reuse_prevention: None,
            min_length: None,
            ..weak
        };
        let found = password_policy(&c, Some(&no_reuse));
        assert!(found[0].evidence.contains("minimum length unset"));
        assert!(found[0].evidence.contains("password reuse is allowed"));

        let strong = PasswordPolicy {
            min_length: Some(14),
            require_symbols: true,
            require_numbers: true,
            require_uppercase: true,
            require_lowercase: true,
            reuse_prevention: Some(24),
        };
        assert!(password_policy(&c, Some(&strong)).is_empty());
    }

    #[test]
    fn admin_documents_in_every_spelling() {
        // What IAM returns: URL-encoded JSON.
        assert!(allows_everything(
            "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22%2A%22%2C%22Resource%22%3A%22%2A%22%7D%7D"
        ));
        assert!(allows_everything(
            r#"{"Statement":[{"Effect":"Deny","Action":"s3:*","Resource":"*"},{"Effect":"Allow","Action":["ec2:*","*"],"Resource":["*"]}]}"#
        ));
        assert!(allows_everything(
            r#"{"Statement":{"Effect":"Allow","Action":"*:*","Resource":"*"}}"#
        ));
        // A deny, a narrower action or resource, or an unreadable document is not admin.
        assert!(!allows_everything(
            r#"{"Statement":{"Effect":"Deny","Action":"*","Resource":"*"}}"#
        ));
        assert!(!allows_everything(
            r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#
        ));
        assert!(!allows_everything(
            r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"arn:aws:s3:::b/*"}}"#
        ));
        assert!(!allows_everything("%7Bnot json"));
    }

    #[test]
    fn direct_grants_and_admin_grants() {
        let s = Settings::default();
        let c = ctx(&s);
        let admin_doc = r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#;
        let grants = Grants {
            users: vec![
                UserGrants {
                    user: "grouped".into(),
                    arn: "arn:aws:iam::111122223333:user/grouped".into(),
                    groups: vec!["admins".into()],
                    ..UserGrants::default()
                },
                UserGrants {
                    user: "aws-admin".into(),
                    arn: "arn:aws:iam::111122223333:user/aws-admin".into(),
                    attached: vec![("AdministratorAccess".into(), ADMINISTRATOR_ACCESS.into())],
                    ..UserGrants::default()
                },
                UserGrants {
                    user: "custom".into(),
                    arn: "arn:aws:iam::111122223333:user/custom".into(),
                    groups: vec!["devs".into()],
                    attached: vec![
                        (
                            "everything".into(),
                            "arn:aws:iam::111122223333:policy/everything".into(),
                        ),
                        (
                            "AdministratorAccess".into(),
                            "arn:aws:iam::111122223333:policy/AdministratorAccess".into(),
                        ),
                    ],
                    inline: vec![("star".into(), admin_doc.into())],
                },
            ],
            policy_documents: [
                (
                    "arn:aws:iam::111122223333:policy/everything".to_owned(),
                    admin_doc.to_owned(),
                ),
                (
                    "arn:aws:iam::111122223333:policy/AdministratorAccess".to_owned(),
                    r#"{"Statement":{"Effect":"Allow","Action":"s3:Get*","Resource":"*"}}"#
                        .to_owned(),
                ),
            ]
            .into(),
        };
        let found = direct_policies(&c, &grants);
        assert_eq!(
            names(&found),
            [
                "arn:aws:iam::111122223333:user/aws-admin",
                "arn:aws:iam::111122223333:user/custom"
            ]
        );
        assert_eq!(
            found[1].evidence,
            "custom: attached everything, AdministratorAccess; inline star; groups devs"
        );
        assert!(found[0].evidence.ends_with("in no group"));

        let found = admin_direct(&c, &grants);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].level, Level::High);
        assert_eq!(
            found[0].evidence,
            "aws-admin is granted directly: attached AWS managed policy AdministratorAccess"
        );
        // A customer managed policy is judged by its document, not its name.
        assert_eq!(
            found[1].evidence,
            "custom is granted directly: attached customer managed policy everything (arn:aws:iam::111122223333:policy/everything) allows \"*\" on \"*\"; inline policy star allows \"*\" on \"*\""
        );
    }

    fn trail(name: &str, multi: bool) -> Trail {
        Trail {
            name: name.into(),
            arn: format!("arn:aws:cloudtrail:us-east-1:{ACCOUNT}:trail/{name}"),
            home_region: "us-east-1".into(),
            multi_region: multi,
            organization: false,
            log_file_validation: true,
            kms_key_id: Some("arn:aws:kms:us-east-1:111122223333:key/k".into()),
        }
    }

    fn state(trail: Trail, logging: Read<bool>, selectors: Read<Selectors>) -> TrailState {
        TrailState {
            trail,
            logging,
            selectors,
        }
    }

    fn basic(read_write: &str) -> Selectors {
        Selectors::Basic(vec![BasicSelector {
            read_write: read_write.into(),
            include_management_events: true,
        }])
    }

    fn field(name: &str, equals: &[&str], not_equals: &[&str]) -> FieldSelector {
        FieldSelector {
            field: name.into(),
            equals: equals.iter().map(|s| (*s).to_owned()).collect(),
            not_equals: not_equals.iter().map(|s| (*s).to_owned()).collect(),
            ..FieldSelector::default()
        }
    }

    fn denied(action: &'static str) -> Unread {
        Unread {
            action,
            failed: Failed::new(
                Edge::Posture,
                Answer::Denied,
                format!("{action} failed: AccessDenied"),
            ),
        }
    }

    #[test]
    fn management_events_from_basic_and_advanced_selectors() {
        assert_eq!(management_events(&basic("All")), (true, true));
        assert_eq!(
            management_events(&Selectors::Basic(Vec::new())),
            (true, true)
        );
        assert_eq!(management_events(&basic("WriteOnly")), (false, true));
        assert_eq!(
            management_events(&Selectors::Basic(vec![
                BasicSelector {
                    read_write: "ReadOnly".into(),
                    include_management_events: true
                },
                BasicSelector {
                    read_write: "WriteOnly".into(),
                    include_management_events: true
                },
            ])),
            (true, true)
        );
        assert_eq!(
            management_events(&Selectors::Basic(vec![BasicSelector {
                read_write: "All".into(),
                include_management_events: false
            }])),
            (false, false)
        );
        let adv = |fields: Vec<FieldSelector>| Selectors::Advanced(vec![fields]);
        assert_eq!(
            management_events(&adv(vec![field("eventCategory", &["Management"], &[])])),
            (true, true)
        );
        assert_eq!(
            management_events(&adv(vec![
                field("eventCategory", &["Management"], &[]),
                field("readOnly", &["false"], &[])
            ])),
            (false, true)
        );
        // Excluding KMS events leaves the rest covered; keeping only one source does not.
        assert_eq!(
            management_events(&adv(vec![
                field("eventCategory", &["Management"], &[]),
                field("eventSource", &[], &["kms.amazonaws.com"])
            ])),
            (true, true)
        );
        assert_eq!(
            management_events(&adv(vec![
                field("eventCategory", &["Management"], &[]),
                field("eventSource", &["s3.amazonaws.com"], &[])
            ])),
            (false, false)
        );
        assert_eq!(
            management_events(&adv(vec![field("eventCategory", &["Data"], &[])])),
            (false, false)
        );
    }

    #[test]
    fn trail_coverage_needs_one_multi_region_logging_read_write_trail() {
        let s = Settings::default();
        let c = ctx(&s);
        let good = state(trail("org", true), Ok(true), Ok(basic("All")));
        let single = state(trail("local", false), Ok(true), Ok(basic("All")));
        let stopped = state(trail("stopped", true), Ok(false), Ok(basic("All")));
        let write_only = state(trail("writes", true), Ok(true), Ok(basic("WriteOnly")));
        assert!(matches!(
            trail_coverage(&c, &[single.clone(), good]),
            Outcome::Pass { .. }
        ));
        match trail_coverage(&c, &[single.clone(), stopped, write_only]) {
            Outcome::Fail(found) => {
                assert_eq!(found[0].resource, "cloudtrail/111122223333");
                assert_eq!(
                    found[0].evidence,
                    "trail local (home us-east-1) is single-region; trail stopped (home us-east-1) is not logging; trail writes (home us-east-1) records only write management events"
                );
            }
            other => panic!("{other:?}"),
        }
        match trail_coverage(&c, &[]) {
            Outcome::Fail(found) => {
                assert_eq!(found[0].evidence, "no trail is listed in us-east-1")
            }
            other => panic!("{other:?}"),
        }
        // A multi-region trail whose status is refused may be the one that covers.
        let unknown = state(
            trail("hidden", true),
            Err(denied("cloudtrail:GetTrailStatus")),
            Ok(basic("All")),
        );
        match trail_coverage(&c, &[single, unknown]) {
            Outcome::Unchecked(u) => assert_eq!(u.action, "cloudtrail:GetTrailStatus"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn trails_without_validation_or_kms_key() {
        let s = Settings::default();
        let c = ctx(&s);
        let mut plain = trail("plain", false);
        plain.log_file_validation = false;
        plain.kms_key_id = None;
        plain.organization = true;
        let trails = [
            state(trail("good", true), Ok(true), Ok(basic("All"))),
            state(
                plain,
                Err(denied("cloudtrail:GetTrailStatus")),
                Ok(basic("All")),
            ),
        ];
        let found = trail_validation(&c, &trails);
        assert_eq!(
            names(&found),
            ["arn:aws:cloudtrail:us-east-1:111122223333:trail/plain"]
        );
        assert!(
            found[0].evidence.contains("organization trail"),
            "{found:?}"
        );
        let found = trail_encryption(&c, &trails);
        assert_eq!(found.len(), 1);
        assert!(found[0].title.contains("CIS 3.5"));
    }

    #[test]
    fn access_analyzer_needs_an_active_external_access_analyzer() {
        let s = Settings::default();
        let c = ctx(&s);
        let a = |kind: &str, status: &str| Analyzer {
            name: format!("{kind}-{status}").to_lowercase(),
            arn: "arn".into(),
            kind: kind.into(),
            status: status.into(),
        };
        assert!(access_analyzer(&c, &[a("ACCOUNT", "ACTIVE")]).is_empty());
        assert!(access_analyzer(&c, &[a("ORGANIZATION", "ACTIVE")]).is_empty());
        let found = access_analyzer(&c, &[]);
        assert_eq!(found[0].resource, "access-analyzer/us-east-1");
        assert_eq!(
            found[0].evidence,
            "no IAM Access Analyzer analyzer exists in us-east-1"
        );
        let found = access_analyzer(
            &c,
            &[
                a("ACCOUNT", "DISABLED"),
                a("ACCOUNT_UNUSED_ACCESS", "ACTIVE"),
            ],
        );
        assert!(
            found[0]
                .evidence
                .ends_with("found account-disabled (ACCOUNT, DISABLED), account_unused_access-active (ACCOUNT_UNUSED_ACCESS, ACTIVE)"),
            "{found:?}"
        );
    }

    #[test]
    fn root_centralization_applies_to_the_management_account_only() {
        let s = Settings::default();
        let c = ctx(&s);
        let org = Organization {
            id: "o-abc".into(),
            management_account: ACCOUNT.into(),
        };
        assert!(matches!(
            root_centralization(&c, &OrgState::NotInOrganization),
            Outcome::Pass { note: Some(n) } if n.contains("no organization")
        ));
        assert!(matches!(
            root_centralization(&c, &OrgState::Member(org.clone())),
            Outcome::Pass { note: Some(n) } if n.contains("member of o-abc")
        ));
        let fail = |state| match root_centralization(&c, &state) {
            Outcome::Fail(found) => found[0].evidence.clone(),
            other => panic!("{other:?}"),
        };
        assert!(
            fail(OrgState::Management {
                org: org.clone(),
                features: None
            })
            .contains("lacks iam.amazonaws.com")
        );
        assert!(
            fail(OrgState::Management {
                org: org.clone(),
                features: Some(vec!["RootSessions".into()])
            })
            .contains("(enabled: RootSessions)")
        );
        assert!(matches!(
            root_centralization(
                &c,
                &OrgState::Management {
                    org,
                    features: Some(vec![ROOT_CREDENTIALS_MANAGEMENT.into()])
                }
            ),
            Outcome::Pass { note: None }
        ));
    }

    #[test]
    fn every_check_has_a_title_and_one_to_three_steps() {
        let mut seen = std::collections::HashSet::new();
        for check in ALL.into_iter().chain([&ACCOUNT_UNREACHABLE]) {
            assert!(seen.insert(check.name), "{} twice", check.name);
            assert!(!check.title.ends_with('.'), "{}", check.name);
            assert!((1..=3).contains(&check.next_steps.len()), "{}", check.name);
        }
    }
}
