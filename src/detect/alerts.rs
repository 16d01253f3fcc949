//! A record plus the rule it fired → an [`Alert`] with a one-sentence summary; a correlation's
//! window → its alert.
//!
//! Record text in summaries goes through [`clean`]: it is attacker-influenced.

use std::borrow::Cow;
use std::fmt::Write as _;

use rsigma_eval::event::{Event, EventValue};
use serde_json::Value;

use crate::cloudtrail::Record;
use crate::detect::root_tasks::{self, Task};
use crate::detect::{CorrelationHit, Derived, RuleInfo};
use crate::finding::alert::{Alert, clean};

/// The fields alerts read from a record, and so the fields a correlation event keeps (plus its
/// group-by and value fields): a correlation's alert is built from the kept fields alone. The
/// one list of both; a test checks that [`Context::read`] reads nothing else.
pub const ALERT_FIELDS: &[&str] = &[
    "eventID",
    "eventTime",
    "eventName",
    "eventSource",
    "eventType",
    "awsRegion",
    "recipientAccountId",
    "sourceIPAddress",
    "userAgent",
    "errorCode",
    "errorMessage",
    "userIdentity.type",
    "userIdentity.arn",
    "userIdentity.accountId",
    "userIdentity.principalId",
    "userIdentity.userName",
    "userIdentity.invokedBy",
    "userIdentity.sessionContext.sessionIssuer.arn",
    "userIdentity.sessionContext.sessionIssuer.userName",
    "userIdentity.sessionContext.assumedRoot",
    "additionalEventData.MFAUsed",
    "responseElements.ConsoleLogin",
];

/// Values named in one correlation summary; the alert's `distinct_values` holds them all.
const VALUES_IN_SUMMARY: usize = 10;

/// The identity and context fields every alert carries, read from one record.
struct Context {
    event_id: Option<String>,
    event_time: Option<String>,
    event_name: Option<String>,
    event_source: Option<String>,
    aws_region: Option<String>,
    account_id: Option<String>,
    principal_type: Option<String>,
    principal_arn: Option<String>,
    user_name: Option<String>,
    source_ip: Option<String>,
    user_agent: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
    mfa_used: Option<bool>,
    /// A root session opened with sts AssumeRoot. Its actions show in the member account as
    /// type Root with `sessionContext.assumedRoot` "true".
    /// <https://docs.aws.amazon.com/IAM/latest/UserGuide/cloudtrail-track-privileged-tasks.html>
    assumed_root: bool,
}

/// Field access shared by lazily parsed records and stored `Value`s (correlation windows).
trait Fields {
    fn text(&self, path: &str) -> Option<String>;
}

impl Fields for Record<'_> {
    fn text(&self, path: &str) -> Option<String> {
        self.str_at(path).map(Cow::into_owned)
    }
}

impl Fields for Value {
    fn text(&self, path: &str) -> Option<String> {
        let mut v = self;
        for part in path.split('.') {
            v = v.get(part)?;
        }
        v.as_str().map(str::to_owned)
    }
}

impl Context {
    fn read(r: &impl Fields) -> Context {
        let event_source = r.text("eventSource");
        let event_name = r.text("eventName");
        let mfa_used = (event_name.as_deref() == Some("ConsoleLogin"))
            .then(|| r.text("additionalEventData.MFAUsed"))
            .flatten()
            // AWS's own examples spell it "Yes", "YES" and "No".
            .map(|v| v.eq_ignore_ascii_case("yes"));
        let principal_type = r.text("userIdentity.type");
        let assumed_root = principal_type.as_deref() == Some("Root")
            && r.text("userIdentity.sessionContext.assumedRoot")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        Context {
            event_id: r.text("eventID"),
            event_time: r.text("eventTime"),
            event_name,
            event_source,
            aws_region: r.text("awsRegion"),
            account_id: r
                .text("recipientAccountId")
                .or_else(|| r.text("userIdentity.accountId")),
            principal_type,
            principal_arn: r.text("userIdentity.arn"),
            user_name: r
                .text("userIdentity.userName")
                .or_else(|| r.text("userIdentity.sessionContext.sessionIssuer.userName")),
            source_ip: r.text("sourceIPAddress"),
            user_agent: r.text("userAgent"),
            error_code: r.text("errorCode"),
            error_message: r.text("errorMessage"),
            mfa_used,
            assumed_root,
        }
    }

    /// Who acted, for sentences: the root user, a user name, or the ARN.
    fn who(&self) -> String {
        if self.assumed_root {
            return "Root user (a centralized root access session opened with sts AssumeRoot)"
                .to_owned();
        }
        if self.principal_type.as_deref() == Some("Root") {
            return "Root user".to_owned();
        }
        let name = self
            .user_name
            .as_deref()
            .or(self.principal_arn.as_deref())
            .unwrap_or("an unknown principal");
        match self.principal_type.as_deref() {
            Some("IAMUser") => format!("IAM user {}", clean(name)),
            Some(t) => format!("{} {}", clean(t), clean(name)),
            None => clean(name).into_owned(),
        }
    }

    fn account(&self) -> Cow<'_, str> {
        clean(self.account_id.as_deref().unwrap_or("an unknown account"))
    }

    fn ip_suffix(&self) -> String {
        match &self.source_ip {
            Some(ip) => format!(" from {}", clean(ip)),
            None => String::new(),
        }
    }

    fn into_alert(self, rule: &RuleInfo, summary: String, source: &str) -> Alert {
        Alert {
            rule: rule.name.clone(),
            title: rule.title.clone(),
            level: rule.level,
            tags: rule.tags.clone(),
            event_id: self.event_id,
            event_time: self.event_time,
            event_name: self.event_name,
            event_source: self.event_source,
            aws_region: self.aws_region,
            account_id: self.account_id,
            principal_type: self.principal_type,
            principal_arn: self.principal_arn,
            source_ip: self.source_ip,
            user_agent: self.user_agent,
            error_code: self.error_code,
            mfa_used: self.mfa_used,
            summary,
            source: source.to_owned(),
            count: None,
            event_ids: None,
            distinct_values: None,
            root_only_task: None,
            assumed_root: self.assumed_root.then_some(true),
            next_steps: rule.next_steps.clone(),
        }
    }
}

impl Alert {
    /// The alert for a detection rule that fired on `derived`'s record, read from `source`;
    /// `derived` is the view the rule was evaluated on, so the sentences that name what a
    /// derived field found (the AWS IP ranges list) name what the rule saw.
    pub fn from_detection(
        rule: &RuleInfo,
        derived: &Derived<'_, Record<'_>>,
        source: &str,
    ) -> Alert {
        let record = derived.event();
        let ctx = Context::read(record);
        let task = (rule.name == "root-activity").then(|| root_tasks::root_only_task(record));
        let summary = match task {
            Some(task) => root_activity_summary(&ctx, task),
            None => summarize(rule, &ctx, derived, record),
        };
        let mut alert = ctx.into_alert(rule, summary, source);
        alert.root_only_task = task.map(|t| t.is_some());
        alert
    }

    /// The alert for a correlation rule; its context is the most recent event of the window.
    pub fn from_correlation(rule: &RuleInfo, hit: &CorrelationHit, source: &str) -> Alert {
        let last = hit.events.last().cloned().unwrap_or(Value::Null);
        let ctx = Context::read(&last);
        let values = rule.value_field.as_deref().map(|field| {
            let mut seen = Vec::new();
            for value in hit.events.iter().filter_map(|e| e.text(field)) {
                if !seen.contains(&value) {
                    seen.push(value);
                }
            }
            seen
        });
        let group: Vec<String> = hit
            .group
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{}={}", clean(k), clean(v)))
            .collect();
        let listed = values
            .as_deref()
            .map(|v| listing(v, hit.count))
            .unwrap_or_default();
        let summary = match rule.name.as_str() {
            "console-login-brute-force" => format!(
                "{} failed console sign-ins as {} to {} within 10 minutes{}",
                hit.count,
                clean(ctx.user_name.as_deref().unwrap_or("an unknown user")),
                ctx.account(),
                ctx.ip_suffix()
            ),
            "password-spraying" => format!(
                "Failed console sign-ins for {} different user names{} within 10 minutes, in {}: {listed}",
                hit.count,
                ctx.ip_suffix(),
                ctx.account(),
            ),
            "secrets-mass-read" => format!(
                "{} read {} different secrets within 10 minutes in {}{}: {listed}",
                ctx.who(),
                hit.count,
                ctx.account(),
                ctx.ip_suffix(),
            ),
            _ => format!(
                "{}: {} matching events for {}",
                clean(&rule.title),
                hit.count,
                if group.is_empty() {
                    "all events".to_owned()
                } else {
                    group.join(", ")
                }
            ),
        };
        // A record fed once per value (see `detect::Correlation::value_sources`) appears once
        // per value.
        let mut event_ids: Vec<String> = Vec::new();
        for id in hit.events.iter().filter_map(|e| e.text("eventID")) {
            if !event_ids.contains(&id) {
                event_ids.push(id);
            }
        }
        let mut alert = ctx.into_alert(rule, summary, source);
        alert.count = Some(hit.count);
        alert.event_ids = Some(event_ids);
        alert.distinct_values = values;
        alert
    }
}

/// The sentence for a detection. Builtin rules get tailored wording; others a generic one.
/// A BatchGetSecretValue call's `filters` as `key=value|value` pairs, such as
/// `tag-key=StratusRedTeam`. AWS names the filter keys `description`, `name`, `tag-key`,
/// `tag-value`, `primary-region`, `owning-service` and `all`; anything else is shown as found.
/// <https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_Filter.html>
fn secret_filters(record: &Record<'_>) -> String {
    let filters = record
        .value_at("requestParameters.filters")
        .and_then(|f| f.as_array().cloned())
        .unwrap_or_default();
    let shown: Vec<String> = filters
        .iter()
        .map(|f| {
            let key = f["key"].as_str().unwrap_or("?");
            let values: Vec<&str> = f["values"]
                .as_array()
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            clean(&format!("{key}={}", values.join("|"))).into_owned()
        })
        .collect();
    if shown.is_empty() {
        "a filter".to_owned()
    } else {
        format!("filter {}", shown.join(", "))
    }
}

fn summarize(
    rule: &RuleInfo,
    ctx: &Context,
    derived: &Derived<'_, Record<'_>>,
    record: &Record<'_>,
) -> String {
    let acct = ctx.account();
    let from = ctx.ip_suffix();
    let mfa = match ctx.mfa_used {
        Some(true) => " with MFA",
        Some(false) => " without MFA",
        None => "",
    };
    let req = |path: &str| record.str_at(path).map(|s| clean(&s).into_owned());
    match rule.name.as_str() {
        "root-console-login" => {
            format!("Root user signed in to the console of {acct}{from}{mfa}")
        }
        "root-console-login-failed" => format!("Failed root console sign-in to {acct}{from}"),
        "console-login-without-mfa" => {
            format!(
                "{} signed in to the console of {acct}{from} without MFA",
                ctx.who()
            )
        }
        "console-login-failed" => {
            let reason = ctx
                .error_message
                .as_deref()
                .map(|m| format!(": {}", clean(m)))
                .unwrap_or_default();
            format!(
                "Failed console sign-in as {} to {acct}{from}{reason}",
                ctx.who()
            )
        }
        "root-access-key-created" => format!(
            "Root user created access key {} for itself in {acct}{from}",
            req("responseElements.accessKey.accessKeyId")
                .unwrap_or_else(|| "(id not logged)".into())
        ),
        "access-key-created" => {
            let owner = req("responseElements.accessKey.userName")
                .or_else(|| req("requestParameters.userName"))
                .unwrap_or_else(|| "an unknown user".into());
            format!(
                "{} created access key {} for IAM user {owner} in {acct}{from}",
                ctx.who(),
                req("responseElements.accessKey.accessKeyId")
                    .unwrap_or_else(|| "(id not logged)".into())
            )
        }
        "assume-root" => format!(
            "{} assumed root in account {} with task policy {}{from}",
            ctx.who(),
            req("requestParameters.targetPrincipal").unwrap_or_else(|| "(unknown)".into()),
            req("requestParameters.taskPolicyArn.arn").unwrap_or_else(|| "(unknown)".into())
        ),
        "root-password-changed" => format!("Root user changed the root password of {acct}{from}"),
        "access-key-exposed" => {
            let policy = req("requestParameters.policyArn")
                .map(|arn| arn.rsplit('/').next().unwrap_or(&arn).to_owned())
                .or_else(|| req("requestParameters.policyName"))
                .unwrap_or_else(|| "a quarantine policy".into());
            let target = target_principal(record).unwrap_or_else(|| "an IAM principal".into());
            match &ctx.error_code {
                Some(code) => format!(
                    "{} tried to quarantine an access key of {target} with {policy} in \
                     {acct}{from} and got {}: the key is reported exposed and still works",
                    ctx.who(),
                    clean(code)
                ),
                None => format!(
                    "AWS found an access key of {target} exposed and quarantined it with \
                     {policy} in {acct}"
                ),
            }
        }
        "console-password-set-for-other-user" => {
            let verb = if ctx.event_name.as_deref() == Some("CreateLoginProfile") {
                "set a console password for"
            } else {
                "changed the console password of"
            };
            let reset = match bool_at(record, "requestParameters.passwordResetRequired") {
                Some(true) => "a password reset is required at the next sign-in",
                _ => "no password reset is required, so whoever set it can sign in with it",
            };
            format!(
                "{} {verb} IAM user {} in {acct}{from}; {reset}",
                ctx.who(),
                req("requestParameters.userName").unwrap_or_else(|| "(unknown)".into())
            )
        }
        "admin-policy-attached" => admin_policy_summary(ctx, record, &acct, &from),
        "role-trust-opened" => {
            let foreign = derived.foreign_accounts();
            // The rule fires on a "*" principal whatever its conditions (namesAnyone); name the
            // foreign accounts when they, not an unconditioned "*", are what opened it.
            let whom = if foreign.is_empty() || derived.grants().is_some_and(|g| g.anyone) {
                "any AWS principal".to_owned()
            } else {
                accounts(&foreign)
            };
            format!(
                "{} let {whom} assume role {} ({}) in {acct}{from}",
                ctx.who(),
                req("requestParameters.roleName").unwrap_or_else(|| "(unknown)".into()),
                clean(ctx.event_name.as_deref().unwrap_or("-"))
            )
        }
        "resource-policy-opened" => {
            let foreign = derived.foreign_accounts();
            let mut whom = Vec::new();
            if derived.grants().is_some_and(|g| g.anyone) {
                whom.push("anyone".to_owned());
            }
            if !foreign.is_empty() {
                whom.push(accounts(&foreign));
            }
            format!(
                "{} opened {} to {} with {} in {acct}{from}",
                ctx.who(),
                policy_resource(record),
                whom.join(" and "),
                clean(ctx.event_name.as_deref().unwrap_or("-"))
            )
        }
        "access-key-created-for-other-user" => format!(
            "{} created access key {} for another IAM user, {}, in {acct}{from}; whoever \
             created it holds its secret",
            ctx.who(),
            req("responseElements.accessKey.accessKeyId")
                .unwrap_or_else(|| "(id not logged)".into()),
            req("requestParameters.userName").unwrap_or_else(|| "(unknown)".into())
        ),
        "cloudtrail-tamper-attempt" => format!(
            "{} tried {} on trail {} in {acct}{from} and got {}",
            ctx.who(),
            clean(ctx.event_name.as_deref().unwrap_or("-")),
            req("requestParameters.name")
                .or_else(|| req("requestParameters.trailName"))
                .unwrap_or_else(|| "(unknown)".into()),
            clean(ctx.error_code.as_deref().unwrap_or("an error"))
        ),
        "trail-bucket-tampered" => {
            let what = match ctx.event_name.as_deref() {
                Some("PutBucketVersioning") => "suspended versioning on".to_owned(),
                Some("DeleteObject") => format!(
                    "deleted {} from",
                    req("requestParameters.key").unwrap_or_else(|| "an object".into())
                ),
                Some(name) => format!("called {} on", clean(name)),
                None => "changed".to_owned(),
            };
            format!(
                "{} {what} CloudTrail log bucket {} in {acct}{from}",
                ctx.who(),
                req("requestParameters.bucketName").unwrap_or_else(|| "(unknown)".into())
            )
        }
        "instance-credentials-outside-aws" => {
            let checked = match derived.ip_ranges() {
                Some(ranges) => format!("not in AWS's IP ranges ({})", clean(&ranges.label)),
                None => "not checked against AWS's IP ranges, as none were loaded".to_owned(),
            };
            format!(
                "Credentials of EC2 instance {} (role {}) called {} in {acct} from {}, {checked}, \
                 with user agent {}",
                derived
                    .instance_session()
                    .map(|i| clean(&i).into_owned())
                    .unwrap_or_else(|| "(unknown)".into()),
                req("userIdentity.sessionContext.sessionIssuer.userName")
                    .unwrap_or_else(|| "(unknown)".into()),
                clean(ctx.event_name.as_deref().unwrap_or("an API")),
                clean(ctx.source_ip.as_deref().unwrap_or("(unknown)")),
                clean(ctx.user_agent.as_deref().unwrap_or("(none)"))
            )
        }
        "iam-user-created" => format!(
            "{} created IAM user {} in {acct}{from}; AWS advises roles and an identity provider \
             instead of long-term IAM users",
            ctx.who(),
            req("requestParameters.userName").unwrap_or_else(|| "(unknown)".into())
        ),
        "console-login-mfa-failed" => format!(
            "{} entered the right password but failed MFA signing in to the console of {acct}{from}",
            ctx.who()
        ),
        "console-session-from-api-keys" => format!(
            "{} turned API credentials into a console session (signin GetSigninToken) in \
             {acct}{from}",
            ctx.who()
        ),
        "leave-organization-attempt" => format!(
            "{} tried to take {acct} out of its organization (LeaveOrganization){from} and got {}",
            ctx.who(),
            clean(ctx.error_code.as_deref().unwrap_or("an error"))
        ),
        "federation-token-created" => format!(
            "{} created federated credentials {} (sts GetFederationToken) in {acct}{from}; they \
             stay valid until they expire, even after the user's access key is deleted",
            ctx.who(),
            req("requestParameters.name").unwrap_or_else(|| "(unnamed)".into())
        ),
        "roles-anywhere-trust-changed" => format!(
            "{} called {} (IAM Roles Anywhere) in {acct}{from}: holders of certificates from \
             the trusted authority can get AWS credentials",
            ctx.who(),
            clean(ctx.event_name.as_deref().unwrap_or("-"))
        ),
        "snapshot-shared-externally" => {
            let (what, with) = shared_resource(record);
            format!("{} shared {what} with {with} in {acct}{from}", ctx.who())
        }
        "secrets-mass-read-by-filter" => format!(
            "{} read the values of the secrets matching {} in one BatchGetSecretValue call in \
             {acct}{from}",
            ctx.who(),
            secret_filters(record)
        ),
        "root-password-recovery" => format!(
            "Root password recovery ({}) for {acct}{from}",
            clean(ctx.event_name.as_deref().unwrap_or("-"))
        ),
        _ => {
            let mut s = format!(
                "{}: {} called {}",
                clean(&rule.title),
                ctx.who(),
                clean(ctx.event_name.as_deref().unwrap_or("an API")),
            );
            if let Some(src) = &ctx.event_source {
                let _ = write!(s, " ({})", clean(src));
            }
            let _ = write!(s, " in {acct}{from}");
            if let Some(code) = &ctx.error_code {
                let _ = write!(s, " and got {}", clean(code));
            }
            s
        }
    }
}

/// The root-activity sentence: what root called and whether only root could have.
fn root_activity_summary(ctx: &Context, task: Option<&Task>) -> String {
    let mut s = format!(
        "{} called {}",
        ctx.who(),
        clean(ctx.event_name.as_deref().unwrap_or("an API"))
    );
    if let Some(src) = &ctx.event_source {
        let _ = write!(s, " ({})", clean(src));
    }
    let _ = write!(s, " in {}{}", ctx.account(), ctx.ip_suffix());
    if let Some(code) = &ctx.error_code {
        let _ = write!(s, " and got {}", clean(code));
    }
    match task {
        Some(task) => {
            let _ = write!(s, ": a task only root can do ({})", task.name);
        }
        None => s.push_str(": not a root-only task, an IAM role could have done it"),
    }
    s
}

/// The admin-policy-attached sentence: which policy, to whom, and AWS's advice when it went
/// straight to a user.
fn admin_policy_summary(ctx: &Context, record: &Record<'_>, acct: &str, from: &str) -> String {
    let req = |path: &str| record.str_at(path).map(|s| clean(&s).into_owned());
    let event = ctx.event_name.as_deref().unwrap_or("-");
    let target = target_principal(record).unwrap_or_else(|| "(unknown)".into());
    let mut s = match event {
        "AttachUserPolicy" | "AttachGroupPolicy" | "AttachRolePolicy" => {
            let arn = req("requestParameters.policyArn").unwrap_or_default();
            // AWS managed policies live under the account "aws" in their ARN.
            let policy = if arn.contains(":iam::aws:policy/") {
                "the AWS managed policy AdministratorAccess".to_owned()
            } else {
                format!("customer managed policy {arn}, named like AdministratorAccess")
            };
            format!(
                "{} attached {policy} to {target} in {acct}{from}",
                ctx.who()
            )
        }
        "CreatePolicyVersion" => format!(
            "{} made a version of {} that allows every action on every resource{} in {acct}{from}",
            ctx.who(),
            req("requestParameters.policyArn").unwrap_or_else(|| "a policy".into()),
            if bool_at(record, "requestParameters.setAsDefault") == Some(true) {
                ", set as the default"
            } else {
                ""
            }
        ),
        _ => format!(
            "{} gave {target} inline policy {} allowing every action on every resource in \
             {acct}{from}",
            ctx.who(),
            req("requestParameters.policyName").unwrap_or_else(|| "(unnamed)".into())
        ),
    };
    if matches!(event, "AttachUserPolicy" | "PutUserPolicy") {
        s.push_str("; granted straight to a user, where AWS advises groups or roles");
    }
    s
}

/// Accounts for a sentence: "account 999988887777" or "accounts 1, 2".
fn accounts(ids: &[String]) -> String {
    let ids: Vec<_> = ids.iter().map(|a| clean(a).into_owned()).collect();
    match ids.as_slice() {
        [one] => format!("account {one}"),
        many => format!("accounts {}", many.join(", ")),
    }
}

/// The resource whose policy a call set, e.g. "S3 bucket reports" or "Lambda function f".
fn policy_resource(record: &Record<'_>) -> String {
    [
        ("requestParameters.bucketName", "S3 bucket"),
        ("requestParameters.keyId", "KMS key"),
        ("requestParameters.secretId", "secret"),
        ("requestParameters.topicArn", "SNS topic"),
        ("requestParameters.queueUrl", "SQS queue"),
        ("requestParameters.repositoryName", "ECR repository"),
        ("requestParameters.functionName", "Lambda function"),
        ("requestParameters.name", "SNS topic or SQS queue"),
    ]
    .into_iter()
    .find_map(|(path, kind)| {
        record
            .str_at(path)
            .map(|name| format!("{kind} {}", clean(&name)))
    })
    .unwrap_or_else(|| "a new resource".to_owned())
}

/// The IAM user, group or role a request acts on, e.g. "IAM user alice".
fn target_principal(record: &Record<'_>) -> Option<String> {
    [
        ("requestParameters.userName", "IAM user"),
        ("requestParameters.groupName", "IAM group"),
        ("requestParameters.roleName", "IAM role"),
    ]
    .into_iter()
    .find_map(|(path, kind)| {
        record
            .str_at(path)
            .map(|name| format!("{kind} {}", clean(&name)))
    })
}

/// What a snapshot or image share exposed and to whom: "snapshot snap-1 (EBS)", "everyone".
fn shared_resource(record: &Record<'_>) -> (String, String) {
    let v = record.value();
    let at = |path: &str| path.split('.').try_fold(v, |v, k| v.get(k));
    let text = |path: &str| {
        at(path)
            .and_then(Value::as_str)
            .map(|s| clean(s).into_owned())
    };
    let (what, grantees): (String, Vec<String>) = if let Some(items) =
        at("requestParameters.createVolumePermission.add.items")
            .or_else(|| at("requestParameters.launchPermission.add.items"))
    {
        let what = match text("requestParameters.snapshotId") {
            Some(id) => format!("EBS snapshot {id}"),
            None => format!(
                "AMI {}",
                text("requestParameters.imageId").unwrap_or_else(|| "(unknown)".into())
            ),
        };
        let grantees = items
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| {
                item.get("userId")
                    .or_else(|| item.get("group"))
                    .or_else(|| item.get("organizationArn"))
                    .or_else(|| item.get("organizationalUnitArn"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect();
        (what, grantees)
    } else {
        let what = match text("requestParameters.dBClusterSnapshotIdentifier") {
            Some(id) => format!("RDS cluster snapshot {id}"),
            None => format!(
                "RDS snapshot {}",
                text("requestParameters.dBSnapshotIdentifier")
                    .unwrap_or_else(|| "(unknown)".into())
            ),
        };
        let grantees = at("requestParameters.valuesToAdd")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        (what, grantees)
    };
    let with = if grantees.iter().any(|g| g.eq_ignore_ascii_case("all")) {
        "everyone (public)".to_owned()
    } else if grantees.is_empty() {
        "another account".to_owned()
    } else {
        format!(
            "account {}",
            grantees
                .iter()
                .map(|g| clean(g).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    (what, with)
}

/// A boolean request field; CloudTrail writes JSON booleans, older records sometimes strings.
fn bool_at(record: &Record<'_>, path: &str) -> Option<bool> {
    match Event::get_field(record, path)? {
        EventValue::Bool(b) => Some(b),
        EventValue::Str(s) => s.parse().ok(),
        _ => None,
    }
}

/// Up to [`VALUES_IN_SUMMARY`] values for a sentence, and how many more there were.
fn listing(values: &[String], count: u64) -> String {
    let shown: Vec<String> = values
        .iter()
        .take(VALUES_IN_SUMMARY)
        .map(|v| clean(v).into_owned())
        .collect();
    let mut s = shown.join(", ");
    let more = count.saturating_sub(shown.len() as u64);
    if more > 0 {
        let _ = write!(s, " and {more} more");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{Derivation, RuleKind};
    use crate::finding::Level;

    fn rule(name: &str) -> RuleInfo {
        RuleInfo {
            name: name.to_owned(),
            id: None,
            title: "Title".to_owned(),
            level: Level::Critical,
            tags: vec![],
            origin: "test".to_owned(),
            kind: RuleKind::Detection,
            alerts: true,
            next_steps: vec!["Confirm who signed in as root and why".to_owned()],
            incident_window: None,
            value_field: None,
        }
    }

    #[test]
    fn root_login_summary_and_fields() {
        let raw = r#"{"eventVersion":"1.08","userIdentity":{"type":"Root","principalId":"111122223333","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333"},"eventTime":"2026-11-20T09:03:11Z","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","userAgent":"Mozilla/5.0\r\nX-Injected: 1","responseElements":{"ConsoleLogin":"Success"},"additionalEventData":{"MFAUsed":"No"},"eventID":"e1","recipientAccountId":"111122223333"}"#;
        let record = Record::parse(raw.as_bytes()).expect("parse");
        let alert = Alert::from_detection(
            &rule("root-console-login"),
            &Derived::new(&record, &Derivation::default()),
            "f.json.gz",
        );
        assert_eq!(
            alert.summary,
            "Root user signed in to the console of 111122223333 from 198.51.100.7 without MFA"
        );
        assert_eq!(alert.mfa_used, Some(false));
        assert_eq!(alert.account_id.as_deref(), Some("111122223333"));
        assert!(!alert.text_line().contains('\n'));
        let json = serde_json::to_value(&alert).expect("json");
        assert!(json.get("error_code").is_none());
        assert_eq!(json["principal_arn"], "arn:aws:iam::111122223333:root");
    }

    #[test]
    fn alerts_read_only_the_fields_correlation_events_keep() {
        // A correlation's alert is built from its events' kept fields alone: any field the
        // context reads that is not kept would be missing from it.
        struct Recorder(std::cell::RefCell<Vec<String>>);
        impl Fields for Recorder {
            fn text(&self, path: &str) -> Option<String> {
                self.0.borrow_mut().push(path.to_owned());
                // Answers that open every conditional read.
                Some(match path {
                    "eventName" => "ConsoleLogin".to_owned(),
                    "userIdentity.type" => "Root".to_owned(),
                    _ => "true".to_owned(),
                })
            }
        }
        let recorder = Recorder(Default::default());
        let ctx = Context::read(&recorder);
        let _ = (ctx.who(), ctx.account(), ctx.ip_suffix());
        let read = recorder.0.into_inner();
        assert!(read.len() > 10, "{read:?}");
        for path in &read {
            assert!(
                ALERT_FIELDS.contains(&path.as_str()),
                "{path} is read but not kept"
            );
        }
    }
}
