//! Pages, follow-ups, standing findings and their resolutions → AWS Security Hub
//! `BatchImportFindings`, one AWS Security Finding Format (ASFF) finding per incident: the
//! `securityhub` output.
//!
//! - Every message of an incident carries the same finding `Id` (`trailwarden/<incident id>`),
//!   so a follow-up, a repeat or a resolution updates the finding the page or the posture check
//!   created instead of adding another. Security Hub applies an update only when its
//!   `UpdatedAt` is later than the stored one, so `UpdatedAt` is the delivery time.
//! - The finding is imported under the custom-integration product of the daemon's own account
//!   (`product/<account>/default`) with `AwsAccountId` = that account: Security Hub accepts a
//!   default-product finding only from the account it names. An incident in another account
//!   of the organization names that account in the title, in `ProductFields` and as an
//!   `AwsAccount` resource.
//! - An import replaces the finding, so a follow-up carries what its page said (creation
//!   time, types from the rule's tags, the page's alert count) and adds its own alerts: the
//!   count is the same on a repeat, and nothing is read back.
//! - A resolution archives the finding (`RecordState` ARCHIVED, `Compliance.Status` PASSED);
//!   the workflow status belongs to the people triaging it and is set only on creation.
//!
//! The task role needs `securityhub:BatchImportFindings` and `securityhub:DescribeHub`.
//! <https://docs.aws.amazon.com/securityhub/latest/userguide/finding-update-batchimportfindings.html>
//! <https://docs.aws.amazon.com/securityhub/latest/userguide/asff-required-attributes.html>

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_config::SdkConfig;
use serde_json::{Value, json};

use super::Output;
use crate::aws::signed::{Api, Protocol};
use crate::aws::{Answer, Edge, Failed};
use crate::finding::accounts::AccountNames;
use crate::finding::alert::clean;
use crate::finding::fold::Tally;
use crate::finding::sink::{FindingMessage, FollowUp, Message, PageMessage, Resolved};
use crate::finding::{Level, Standing};
use crate::telemetry::Metrics;

/// The ASFF version every finding declares.
pub const SCHEMA_VERSION: &str = "2018-10-08";
/// ASFF length limits, in characters (the `AwsSecurityFinding` API reference).
pub const MAX_ID: usize = 512;
pub const MAX_TITLE: usize = 256;
pub const MAX_DESCRIPTION: usize = 1024;
pub const MAX_RECOMMENDATION: usize = 512;
pub const MAX_PRODUCT_FIELD_VALUE: usize = 2048;
/// `Types` holds at most 50 entries.
const MAX_TYPES: usize = 50;
/// Values listed per tally in a follow-up's product fields.
const TOP: usize = 5;

/// The type of every detection: something a user (or role) did, beside any ATT&CK tactic.
pub const DETECTION_TYPE: &str = "Unusual Behaviors/User";
/// The type of every posture finding.
pub const POSTURE_TYPE: &str = "Software and Configuration Checks/AWS Security Best Practices";
/// Rules tagged with a CIS AWS Foundations control (`cis.4.3`) also carry this type.
const CIS_TYPE: &str = "Software and Configuration Checks/Industry and Regulatory Standards/CIS AWS Foundations Benchmark";

/// Where findings are imported: the daemon's own account, region and partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    /// The account the task's credentials belong to (sts GetCallerIdentity).
    pub account: String,
    pub region: String,
    /// `aws`, `aws-cn` or `aws-us-gov`, from the caller's ARN.
    pub partition: String,
}

impl Home {
    /// The custom-integration product every account has once Security Hub is enabled.
    pub fn product_arn(&self) -> String {
        format!(
            "arn:{}:securityhub:{}:{}:product/{}/default",
            self.partition, self.region, self.account, self.account
        )
    }
}

/// Whether the finding is still live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Active,
    Archived,
}

/// One resource the finding is about; partition and region are the home's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// An ASFF resource type: `AwsIamUser`, `AwsIamRole`, `AwsAccount`, `Other`, ...
    pub kind: &'static str,
    pub id: String,
}

/// A rendered ASFF finding, in plain data; [`Finding::asff`] writes it as the API's JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub id: String,
    pub product_arn: String,
    pub generator_id: String,
    pub aws_account_id: String,
    pub types: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    pub first_observed_at: Option<String>,
    pub last_observed_at: Option<String>,
    pub level: Level,
    pub title: String,
    pub description: String,
    pub recommendation: Option<String>,
    pub resources: Vec<Subject>,
    pub product_fields: BTreeMap<&'static str, String>,
    pub state: State,
    /// `Workflow.Status` NEW on creation; `None` on updates, which may not change it.
    pub workflow_new: bool,
    /// Posture findings: FAILED while open, PASSED once fixed.
    pub compliance: Option<bool>,
}

/// The finding id every message of `incident_id` carries.
pub fn finding_id(incident_id: &str) -> String {
    cut(&format!("trailwarden/{incident_id}"), MAX_ID)
}

/// `text` within `max` characters, marked where it was cut; never empty (ASFF's text fields
/// need at least one character).
pub fn cut(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.is_empty() {
        return "-".to_owned();
    }
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some(_) => {
            let end = text
                .char_indices()
                .nth(max - 1)
                .map_or(text.len(), |(i, _)| i);
            format!("{}…", &text[..end])
        }
    }
}

/// ASFF's severity label for a level.
pub fn label(level: Level) -> &'static str {
    match level {
        Level::Informational => "INFORMATIONAL",
        Level::Low => "LOW",
        Level::Medium => "MEDIUM",
        Level::High => "HIGH",
        Level::Critical => "CRITICAL",
    }
}

/// The ASFF types of a detection from its rule's Sigma tags: each ATT&CK tactic
/// (`attack.defense-evasion` or `attack.defense_evasion`) as `TTPs/Defense Evasion`
/// (exfiltration is an effect in ASFF's taxonomy), CIS controls as the CIS benchmark, and
/// always [`DETECTION_TYPE`]. Technique tags (`attack.t1078`) name no ASFF category.
/// <https://docs.aws.amazon.com/securityhub/latest/userguide/securityhub-findings-format-type-taxonomy.html>
pub fn types(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |t: &str| {
        if !out.iter().any(|o| o == t) && out.len() < MAX_TYPES {
            out.push(t.to_owned());
        }
    };
    for tag in tags {
        let tag = tag.to_ascii_lowercase();
        if let Some(tactic) = tag.strip_prefix("attack.") {
            let tactic = tactic.replace('_', "-");
            let name = match tactic.as_str() {
                "reconnaissance" => "TTPs/Reconnaissance",
                "resource-development" => "TTPs/Resource Development",
                "initial-access" => "TTPs/Initial Access",
                "execution" => "TTPs/Execution",
                "persistence" => "TTPs/Persistence",
                "privilege-escalation" => "TTPs/Privilege Escalation",
                "defense-evasion" => "TTPs/Defense Evasion",
                "credential-access" => "TTPs/Credential Access",
                "discovery" => "TTPs/Discovery",
                "lateral-movement" => "TTPs/Lateral Movement",
                "collection" => "TTPs/Collection",
                "command-and-control" => "TTPs/Command and Control",
                "exfiltration" => "Effects/Data Exfiltration",
                "impact" => "TTPs/Impact",
                _ => continue,
            };
            push(name);
        } else if tag.starts_with("cis.") {
            push(CIS_TYPE);
        }
    }
    push(DETECTION_TYPE);
    out
}

/// The resource type of an ARN the finding names.
fn subject(arn: &str) -> Subject {
    let resource = arn.splitn(6, ':').nth(5).unwrap_or("");
    let kind = if !arn.starts_with("arn:") {
        "Other"
    } else if resource.starts_with("user/") {
        "AwsIamUser"
    } else if resource.starts_with("role/") || resource.starts_with("assumed-role/") {
        "AwsIamRole"
    } else if arn.contains(":cloudtrail:") && resource.starts_with("trail/") {
        "AwsCloudTrailTrail"
    } else {
        "Other"
    };
    Subject {
        kind,
        id: arn.to_owned(),
    }
}

/// A timestamp ASFF accepts (RFC 3339, UTC), or `None` for text that is not one: event times
/// come from records, and one malformed time must not get the whole finding refused.
fn timestamp(text: &str) -> Option<String> {
    chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| {
        t.with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string()
    })
}

/// Epoch seconds as an ASFF timestamp.
fn epoch(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Now, as the `UpdatedAt` of a delivery.
pub fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// `a (3), b (1)` for a product field.
fn listing(t: &Tally) -> String {
    t.top(TOP)
        .into_iter()
        .map(|(v, n)| format!("{} ({n})", clean(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The fields every message sets the same way.
struct Common<'a> {
    incident_id: &'a str,
    message: &'a Message,
    rule: &'a str,
    account: &'a str,
    level: Level,
    title: &'a str,
    next_steps: &'a [String],
}

fn base(c: Common<'_>, names: &AccountNames, home: &Home, now: &str) -> Finding {
    let mut product_fields = BTreeMap::new();
    product_fields.insert("trailwarden/rule", c.rule.to_owned());
    product_fields.insert("trailwarden/incident_id", c.incident_id.to_owned());
    product_fields.insert("trailwarden/message_id", c.message.id());
    product_fields.insert("trailwarden/kind", c.message.kind().to_owned());
    product_fields.insert("trailwarden/account_id", c.account.to_owned());
    if let Some(name) = names.name(c.account) {
        product_fields.insert("trailwarden/account_name", name);
    }
    let mut resources = Vec::new();
    if c.account != home.account {
        resources.push(Subject {
            kind: "AwsAccount",
            id: format!("AWS::::Account:{}", clean(c.account)),
        });
    }
    let steps: Vec<String> = c
        .next_steps
        .iter()
        .map(|s| clean(s).trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    Finding {
        id: finding_id(c.incident_id),
        product_arn: home.product_arn(),
        generator_id: cut(&format!("trailwarden/{}", clean(c.rule)), MAX_ID),
        aws_account_id: home.account.clone(),
        types: Vec::new(),
        created_at: now.to_owned(),
        updated_at: now.to_owned(),
        first_observed_at: None,
        last_observed_at: None,
        level: c.level,
        title: cut(
            &format!("{} in {}", clean(c.title), names.label(c.account)),
            MAX_TITLE,
        ),
        description: String::new(),
        recommendation: (!steps.is_empty()).then(|| cut(&steps.join(" "), MAX_RECOMMENDATION)),
        resources,
        product_fields,
        state: State::Active,
        workflow_new: true,
        compliance: None,
    }
}

/// Renders any message as the finding it creates or updates. `now` is the delivery time
/// ([`now`]): Security Hub applies an update only when it is later than the stored one.
pub fn render(message: &Message, names: &AccountNames, home: &Home, now: &str) -> Finding {
    let mut f = match message {
        Message::Page(p) => page(message, p, names, home, now),
        Message::FollowUp(f) => follow_up(message, f, names, home, now),
        Message::Finding(f) => opened(message, f, names, home, now),
        Message::Resolved(r) => resolved(message, r, names, home, now),
    };
    f.updated_at = now.to_owned();
    for value in f.product_fields.values_mut() {
        *value = cut(value, MAX_PRODUCT_FIELD_VALUE);
    }
    f
}

fn page(
    message: &Message,
    p: &PageMessage,
    names: &AccountNames,
    home: &Home,
    now: &str,
) -> Finding {
    let fold = &p.fold;
    let first = &fold.alerts[0];
    let count = fold.stats.count.max(1);
    let mut f = base(
        Common {
            incident_id: &p.incident_id,
            message,
            rule: &fold.key.rule,
            account: &fold.key.account,
            level: fold.level(),
            title: &first.title,
            next_steps: &p.next_steps,
        },
        names,
        home,
        now,
    );
    let first_seen = fold.stats.first_time.as_deref().and_then(timestamp);
    if let Some(t) = &first_seen {
        f.created_at = t.clone();
    }
    f.first_observed_at = first_seen;
    f.last_observed_at = fold.stats.last_time.as_deref().and_then(timestamp);
    f.types = types(&first.tags);
    let summary = clean(&first.summary);
    f.description = cut(
        &if count > 1 {
            format!("{summary} (and {} more like it)", count - 1)
        } else {
            summary.into_owned()
        },
        MAX_DESCRIPTION,
    );
    let principal = first
        .principal_arn
        .as_deref()
        .unwrap_or(&fold.key.principal);
    f.resources.insert(0, subject(&clean(principal)));
    let pf = &mut f.product_fields;
    pf.insert("trailwarden/count", count.to_string());
    pf.insert("trailwarden/principal", fold.key.principal.clone());
    if let Some(ip) = &first.source_ip {
        pf.insert("trailwarden/source_ip", ip.clone());
    }
    let event_names = listing(&fold.stats.event_names);
    if !event_names.is_empty() {
        pf.insert("trailwarden/event_names", event_names);
    }
    f
}

fn follow_up(
    message: &Message,
    u: &FollowUp,
    names: &AccountNames,
    home: &Home,
    now: &str,
) -> Finding {
    let mut f = base(
        Common {
            incident_id: &u.incident_id,
            message,
            rule: &u.key.rule,
            account: &u.key.account,
            level: u.level,
            title: &u.title,
            next_steps: &u.next_steps,
        },
        names,
        home,
        now,
    );
    // As the page's finding said; an incident recorded before its first event time was kept
    // falls back on the page time, at most the pipeline's lag after it.
    let first_seen = u
        .paged_first_time
        .as_deref()
        .and_then(timestamp)
        .unwrap_or_else(|| epoch(u.paged_at));
    f.created_at = first_seen.clone();
    f.first_observed_at = Some(first_seen);
    f.last_observed_at = u.stats.last_time.as_deref().and_then(timestamp);
    f.types = types(&u.tags);
    // The page created the finding; its workflow is the triagers' now.
    f.workflow_new = false;
    let count = u.paged_count + u.stats.count;
    f.description = cut(
        &format!(
            "{}; then {} more alerts by {} from {} to {}.",
            clean(&u.paged_summary),
            u.stats.count,
            clean(&u.key.principal),
            u.stats.first_time.as_deref().unwrap_or("-"),
            u.stats.last_time.as_deref().unwrap_or("-"),
        ),
        MAX_DESCRIPTION,
    );
    f.resources.insert(0, subject(&clean(&u.key.principal)));
    let pf = &mut f.product_fields;
    pf.insert("trailwarden/count", count.to_string());
    pf.insert("trailwarden/principal", u.key.principal.clone());
    for (key, tally) in [
        ("trailwarden/source_ip", &u.stats.source_ips),
        ("trailwarden/event_names", &u.stats.event_names),
        ("trailwarden/regions", &u.stats.regions),
    ] {
        let listed = listing(tally);
        if !listed.is_empty() {
            pf.insert(key, listed);
        }
    }
    f
}

/// What a standing finding's messages share: the check, its resource and the posture type.
fn standing(
    message: &Message,
    incident_id: &str,
    s: &Standing,
    names: &AccountNames,
    home: &Home,
    now: &str,
) -> Finding {
    let mut f = base(
        Common {
            incident_id,
            message,
            rule: &s.check,
            account: &s.account,
            level: s.level,
            title: &s.title,
            next_steps: &s.next_steps,
        },
        names,
        home,
        now,
    );
    f.types = vec![POSTURE_TYPE.to_owned()];
    f.resources.insert(0, subject(&clean(&s.resource)));
    f.product_fields
        .insert("trailwarden/resource", s.resource.clone());
    f
}

fn opened(
    message: &Message,
    o: &FindingMessage,
    names: &AccountNames,
    home: &Home,
    now: &str,
) -> Finding {
    let s = &o.finding;
    let mut f = standing(message, &o.incident_id, s, names, home, now);
    f.first_observed_at = Some(now.to_owned());
    f.last_observed_at = Some(now.to_owned());
    f.description = cut(&clean(&s.evidence), MAX_DESCRIPTION);
    f.compliance = Some(false);
    f
}

fn resolved(
    message: &Message,
    r: &Resolved,
    names: &AccountNames,
    home: &Home,
    now: &str,
) -> Finding {
    let s = &r.finding;
    let mut f = standing(message, &r.incident_id, s, names, home, now);
    let opened_at = epoch(r.opened_at);
    let resolved_at = epoch(r.resolved_at);
    f.created_at = opened_at.clone();
    f.first_observed_at = Some(opened_at);
    f.last_observed_at = Some(resolved_at.clone());
    f.description = cut(
        &format!(
            "Fixed: {} for {} no longer fails (seen {resolved_at} by {}). It was: {}",
            clean(&s.check),
            clean(&s.resource),
            clean(&r.by),
            clean(&s.evidence),
        ),
        MAX_DESCRIPTION,
    );
    f.state = State::Archived;
    f.workflow_new = false;
    f.compliance = Some(true);
    f.product_fields
        .insert("trailwarden/resolved_by", r.by.clone());
    f
}

impl Finding {
    /// The finding as ASFF JSON, with the provider's own severity and types also in
    /// `FindingProviderFields` (the fields providers update them through).
    pub fn asff(self, home: &Home) -> Value {
        let severity = json!({ "Label": label(self.level), "Original": self.level.as_str() });
        let resources: Vec<Value> = self
            .resources
            .into_iter()
            .map(|r| {
                json!({
                    "Type": r.kind,
                    "Id": r.id,
                    "Partition": home.partition,
                    "Region": home.region,
                })
            })
            .collect();
        let mut f = json!({
            "SchemaVersion": SCHEMA_VERSION,
            "Id": self.id,
            "ProductArn": self.product_arn,
            "ProductName": "trailwarden",
            "GeneratorId": self.generator_id,
            "AwsAccountId": self.aws_account_id,
            "Types": self.types,
            "CreatedAt": self.created_at,
            "UpdatedAt": self.updated_at,
            "Severity": severity,
            "FindingProviderFields": { "Severity": severity, "Types": self.types },
            "Title": self.title,
            "Description": self.description,
            "RecordState": match self.state {
                State::Active => "ACTIVE",
                State::Archived => "ARCHIVED",
            },
            "Resources": resources,
            "ProductFields": self.product_fields,
        });
        let mut set = |key: &str, value: Value| {
            f[key] = value;
        };
        if let Some(at) = self.first_observed_at {
            set("FirstObservedAt", json!(at));
        }
        if let Some(at) = self.last_observed_at {
            set("LastObservedAt", json!(at));
        }
        if let Some(text) = self.recommendation {
            set("Remediation", json!({ "Recommendation": { "Text": text } }));
        }
        if self.workflow_new {
            set("Workflow", json!({ "Status": "NEW" }));
        }
        if let Some(passed) = self.compliance {
            let status = if passed { "PASSED" } else { "FAILED" };
            set("Compliance", json!({ "Status": status }));
        }
        f
    }
}

/// A finding Security Hub refused in a `BatchImportFindings` answer, classified like an SDK
/// error: not enabled or not allowed holds the output, throttling and internal errors are an
/// outage, anything else (`InvalidInput`) refuses this message for good.
pub fn refused(id: &str, code: &str, message: &str) -> Failed {
    let answer = if code.starts_with("InvalidAccess") || code.contains("AccessDenied") {
        Answer::Denied
    } else if code.contains("Throttl")
        || code.starts_with("LimitExceeded")
        || code.starts_with("Internal")
        || code.contains("ServiceUnavailable")
    {
        Answer::Unavailable
    } else {
        Answer::Invalid
    };
    Failed::new(
        Edge::Sink,
        answer,
        format!(
            "Security Hub BatchImportFindings refused finding {}: {}: {}",
            clean(id),
            clean(code),
            clean(message)
        ),
    )
}

/// The Security Hub output.
pub struct Hub {
    api: Api,
    home: Home,
}

impl Hub {
    /// The output for the SDK configuration's region; findings are imported into `home`.
    pub fn new(sdk: &SdkConfig, home: Home, metrics: &Arc<Metrics>) -> Hub {
        Hub {
            api: Api::new(sdk, "securityhub", Protocol::RestJson, metrics),
            home,
        }
    }

    pub fn home(&self) -> &Home {
        &self.home
    }

    /// Imports one finding: one `BatchImportFindings` call.
    pub async fn import(&self, finding: Value) -> Result<(), Failed> {
        let id = finding["Id"].as_str().unwrap_or_default().to_owned();
        let out = self
            .api
            .call(
                Edge::Sink,
                &format!(
                    "Security Hub BatchImportFindings {id} in {}",
                    self.home.region
                ),
                "BatchImportFindings",
                ("POST", "/findings/import"),
                Some(&json!({ "Findings": [finding] })),
            )
            .await?;
        // A request Security Hub accepted can still refuse its findings, one by one.
        if let Some(e) = out["FailedFindings"].get(0) {
            return Err(refused(
                e["Id"].as_str().unwrap_or(&id),
                e["ErrorCode"].as_str().unwrap_or("unknown"),
                e["ErrorMessage"].as_str().unwrap_or("no message"),
            ));
        }
        if out["FailedCount"].as_u64().unwrap_or(0) > 0 {
            return Err(Failed::new(
                Edge::Sink,
                Answer::Unavailable,
                format!(
                    "Security Hub BatchImportFindings did not import finding {id} and did not say why"
                ),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Output for Hub {
    async fn deliver(&self, message: &Message, names: &AccountNames) -> Result<(), Failed> {
        let finding = render(message, names, &self.home, &now());
        self.import(finding.asff(&self.home)).await
    }

    /// Checks that Security Hub is enabled in this account and region.
    async fn check(&self) -> Result<(), Failed> {
        let what = format!("Security Hub DescribeHub in {}", self.home.region);
        match self
            .api
            .call(Edge::Sink, &what, "DescribeHub", ("GET", "/accounts"), None)
            .await
        {
            Ok(_) => Ok(()),
            // Security Hub's answer when it is not enabled: a setting, whatever the status.
            Err(e) if e.code.as_deref() == Some("InvalidAccessException") => Err(Failed::new(
                Edge::Sink,
                Answer::Denied,
                format!(
                    "Security Hub is not enabled in {} for account {}: enable it (aws securityhub enable-security-hub) or remove the output ({})",
                    self.home.region, self.home.account, e.sentence,
                ),
            )),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::Fault;
    use crate::finding::alert::Alert;
    use crate::finding::fold::{Folder, Stats};
    use crate::finding::sink::{Opened, Page};
    use crate::finding::{IncidentKey, Standing};

    const NOW: &str = "2026-11-20T10:00:00.000Z";

    fn home() -> Home {
        Home {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            partition: "aws".into(),
        }
    }

    fn alert(summary: &str, tags: &[&str]) -> Alert {
        Alert {
            rule: "root-activity".into(),
            title: "Root user activity".into(),
            level: Level::High,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            event_id: Some("evt-1".into()),
            event_time: Some("2026-11-20T09:00:00Z".into()),
            event_name: Some("ListBuckets".into()),
            event_source: Some("s3.amazonaws.com".into()),
            aws_region: Some("us-east-1".into()),
            account_id: Some("111122223333".into()),
            principal_type: Some("Root".into()),
            principal_arn: Some("arn:aws:iam::111122223333:root".into()),
            source_ip: Some("198.51.100.7".into()),
            user_agent: None,
            error_code: None,
            mfa_used: None,
            summary: summary.into(),
            source: "s3://trail/k".into(),
            count: None,
            event_ids: None,
            distinct_values: None,
            root_only_task: None,
            assumed_root: None,
            next_steps: vec![],
        }
    }

    fn key(account: &str) -> IncidentKey {
        IncidentKey {
            rule: "root-activity".into(),
            account: account.into(),
            principal: "arn:aws:iam::111122223333:root".into(),
        }
    }

    fn page(alerts: Vec<Alert>, account: &str, steps: &[String]) -> Message {
        let mut folder = Folder::new();
        for a in alerts {
            folder.add(key(account), a);
        }
        let fold = folder.finish().remove(0);
        Message::page(Page {
            incident_id: "inc-1",
            fold: &fold,
            next_steps: steps,
        })
    }

    fn standing() -> Standing {
        Standing {
            check: "user-without-mfa".into(),
            account: "111122223333".into(),
            resource: "arn:aws:iam::111122223333:user/alice".into(),
            level: Level::Medium,
            title: "Every IAM user with a console password has MFA (CIS 1.10)".into(),
            evidence: "alice has a console password and no MFA device".into(),
            next_steps: vec!["Have the user assign an MFA device".into()],
        }
    }

    #[test]
    fn limits_hold_for_a_ten_kilobyte_summary() {
        let huge = "é".repeat(10 * 1024);
        let mut a = alert(&huge, &["attack.persistence"]);
        a.title = "t".repeat(10 * 1024);
        a.source_ip = Some("1".repeat(10 * 1024));
        let steps = vec!["s".repeat(10 * 1024)];
        let names = AccountNames::new([("111122223333".to_owned(), "n".repeat(500))]);
        let f = render(&page(vec![a], "111122223333", &steps), &names, &home(), NOW);
        assert_eq!(f.title.chars().count(), MAX_TITLE);
        assert!(f.title.ends_with('…'));
        assert!(f.description.chars().count() <= MAX_DESCRIPTION);
        assert!(f.description.starts_with("éé"));
        assert_eq!(
            f.recommendation.as_deref().map(|r| r.chars().count()),
            Some(MAX_RECOMMENDATION)
        );
        assert!(f.product_fields.len() <= 50);
        for (k, v) in &f.product_fields {
            assert!(
                k.len() <= 128 && v.chars().count() <= MAX_PRODUCT_FIELD_VALUE,
                "{k}"
            );
        }
        assert!(f.id.len() <= MAX_ID && f.generator_id.len() <= MAX_ID);
        // Empty text still gives ASFF the one character it requires.
        assert_eq!(cut("  ", 10), "-");
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "ab…");
    }

    #[test]
    fn levels_map_to_severity_labels() {
        for (level, want) in [
            (Level::Informational, "INFORMATIONAL"),
            (Level::Low, "LOW"),
            (Level::Medium, "MEDIUM"),
            (Level::High, "HIGH"),
            (Level::Critical, "CRITICAL"),
        ] {
            let mut s = standing();
            s.level = level;
            let m = Message::finding(Opened {
                incident_id: "inc-2",
                finding: &s,
            });
            let asff = render(&m, &AccountNames::default(), &home(), NOW).asff(&home());
            assert_eq!(asff["Severity"]["Label"], want);
            assert_eq!(asff["Severity"]["Original"], level.as_str());
            assert_eq!(asff["FindingProviderFields"]["Severity"]["Label"], want);
        }
    }

    #[test]
    fn types_come_from_the_rules_tactics() {
        let tags: Vec<String> = [
            "attack.defense-evasion",
            "attack.t1562.008",
            "attack.privilege_escalation",
            "attack.exfiltration",
            "cis.4.6",
            "attack.defense-evasion",
            "console-login-failed",
        ]
        .iter()
        .map(|t| (*t).to_owned())
        .collect();
        assert_eq!(
            types(&tags),
            vec![
                "TTPs/Defense Evasion",
                "TTPs/Privilege Escalation",
                "Effects/Data Exfiltration",
                CIS_TYPE,
                DETECTION_TYPE,
            ]
        );
        assert_eq!(types(&[]), vec![DETECTION_TYPE]);
        let f = render(
            &page(
                vec![alert("x", &["attack.initial-access"])],
                "111122223333",
                &[],
            ),
            &AccountNames::default(),
            &home(),
            NOW,
        );
        assert_eq!(f.types, vec!["TTPs/Initial Access", DETECTION_TYPE]);
        let s = standing();
        let posture = render(
            &Message::finding(Opened {
                incident_id: "inc-2",
                finding: &s,
            }),
            &AccountNames::default(),
            &home(),
            NOW,
        );
        assert_eq!(posture.types, vec![POSTURE_TYPE]);
    }

    #[test]
    fn a_page_is_a_new_active_finding_of_the_home_product() {
        let m = page(
            vec![alert("Root user called ListBuckets", &[]); 3],
            "444455556666",
            &["Find out who used root".to_owned()],
        );
        let names = AccountNames::new([("444455556666".to_owned(), "prod".to_owned())]);
        let f = render(&m, &names, &home(), NOW);
        assert_eq!(f.id, "trailwarden/inc-1");
        assert_eq!(
            f.product_arn,
            "arn:aws:securityhub:eu-west-1:111122223333:product/111122223333/default"
        );
        assert_eq!(f.generator_id, "trailwarden/root-activity");
        // Imported in the home account; the incident's own account is named beside it.
        assert_eq!(f.aws_account_id, "111122223333");
        assert_eq!(f.title, "Root user activity in prod (444455556666)");
        assert_eq!(
            f.description,
            "Root user called ListBuckets (and 2 more like it)"
        );
        assert_eq!(f.created_at, "2026-11-20T09:00:00.000Z");
        assert_eq!(
            f.first_observed_at.as_deref(),
            Some("2026-11-20T09:00:00.000Z")
        );
        assert_eq!(f.updated_at, NOW);
        assert_eq!(f.state, State::Active);
        assert!(f.workflow_new);
        assert_eq!(
            f.resources,
            vec![
                Subject {
                    kind: "Other",
                    id: "arn:aws:iam::111122223333:root".into()
                },
                Subject {
                    kind: "AwsAccount",
                    id: "AWS::::Account:444455556666".into()
                },
            ]
        );
        assert_eq!(f.product_fields["trailwarden/count"], "3");
        assert_eq!(f.product_fields["trailwarden/message_id"], "inc-1:page");
        assert_eq!(f.product_fields["trailwarden/account_name"], "prod");
        assert_eq!(
            f.product_fields["trailwarden/event_names"],
            "ListBuckets (3)"
        );
        // A record's malformed time does not get the finding refused.
        let mut bad = alert("x", &[]);
        bad.event_time = Some("yesterday".into());
        let f = render(
            &page(vec![bad], "111122223333", &[]),
            &AccountNames::default(),
            &home(),
            NOW,
        );
        assert_eq!((f.created_at.as_str(), f.first_observed_at), (NOW, None));
        assert_eq!(f.resources.len(), 1, "no account resource at home");
    }

    fn follow_up() -> Message {
        let mut stats = Stats::default();
        for _ in 0..35 {
            stats.add(&alert("x", &[]));
        }
        Message::FollowUp(FollowUp {
            incident_id: "inc-1".into(),
            key: key("111122223333"),
            title: "Root user activity".into(),
            level: Level::High,
            next_steps: vec![],
            paged_summary: "Root user called ListBuckets".into(),
            paged_at: 1_795_165_200,
            paged_count: 3,
            paged_first_time: Some("2026-11-20T08:59:00Z".into()),
            tags: vec!["attack.initial-access".into()],
            stats,
            sources: 2,
        })
    }

    #[test]
    fn a_follow_up_updates_the_pages_finding_from_what_the_page_said() {
        let m = follow_up();
        let f = render(&m, &AccountNames::default(), &home(), NOW);
        assert_eq!(f.id, "trailwarden/inc-1");
        assert_eq!(
            f.product_fields["trailwarden/count"], "38",
            "the page's 3 and 35 more"
        );
        assert_eq!(
            f.product_fields["trailwarden/message_id"],
            "inc-1:follow-up"
        );
        assert_eq!(f.created_at, "2026-11-20T08:59:00.000Z");
        assert_eq!(
            f.first_observed_at.as_deref(),
            Some("2026-11-20T08:59:00.000Z")
        );
        assert_eq!(f.types, vec!["TTPs/Initial Access", DETECTION_TYPE]);
        assert!(!f.workflow_new, "the workflow is the triagers'");
        assert_eq!(f.updated_at, NOW);
        // A repeat (its answer was lost) says the same: nothing is counted twice.
        assert_eq!(render(&m, &AccountNames::default(), &home(), NOW), f);
        // An incident recorded before the page's first event time was kept: the page time.
        let Message::FollowUp(mut old) = m else {
            unreachable!()
        };
        old.paged_first_time = None;
        let f = render(
            &Message::FollowUp(old),
            &AccountNames::default(),
            &home(),
            NOW,
        );
        assert_eq!(f.created_at, "2026-11-20T09:00:00.000Z");
    }

    #[test]
    fn a_resolution_archives_the_finding_it_opened() {
        let s = standing();
        let opened = render(
            &Message::finding(Opened {
                incident_id: "inc-3",
                finding: &s,
            }),
            &AccountNames::default(),
            &home(),
            NOW,
        );
        assert_eq!(opened.compliance, Some(false));
        assert_eq!(opened.resources[0].kind, "AwsIamUser");
        assert_eq!(
            opened.recommendation.as_deref(),
            Some("Have the user assign an MFA device")
        );
        let r = render(
            &Message::Resolved(Resolved {
                incident_id: "inc-3".into(),
                finding: s,
                opened_at: 1_795_165_200,
                resolved_at: 1_795_168_800,
                by: "re-check after EnableMFADevice".into(),
            }),
            &AccountNames::default(),
            &home(),
            NOW,
        );
        assert_eq!(r.id, opened.id);
        assert_eq!(r.title, opened.title);
        assert_eq!(r.state, State::Archived);
        assert_eq!(r.compliance, Some(true));
        assert!(!r.workflow_new);
        assert!(r.description.starts_with("Fixed: user-without-mfa"));
        let asff = r.asff(&home());
        assert_eq!(asff["RecordState"], "ARCHIVED");
        assert!(asff.get("Workflow").is_none());
        assert_eq!(asff["Compliance"]["Status"], "PASSED");
        assert_eq!(asff["Resources"][0]["Type"], "AwsIamUser");
        assert_eq!(asff["Resources"][0]["Partition"], "aws");
        assert_eq!(asff["Resources"][0]["Region"], "eu-west-1");
    }

    #[test]
    fn refused_findings_are_classified_by_their_code() {
        let at = |code| refused("trailwarden/i", code, "m").fault;
        assert_eq!(at("InvalidAccess"), Fault::Setting);
        assert_eq!(at("AccessDeniedException"), Fault::Setting);
        assert_eq!(at("ThrottlingException"), Fault::Outage);
        assert_eq!(at("LimitExceeded"), Fault::Outage);
        assert_eq!(at("InternalException"), Fault::Outage);
        assert_eq!(at("InvalidInput"), Fault::Rejected);
        let f = refused("trailwarden/i", "InvalidInput", "Title too long");
        assert_eq!(
            f.sentence,
            "Security Hub BatchImportFindings refused finding trailwarden/i: InvalidInput: Title too long"
        );
    }

    #[test]
    fn principals_and_resources_get_their_asff_types() {
        assert_eq!(subject("arn:aws:iam::1:user/a").kind, "AwsIamUser");
        assert_eq!(subject("arn:aws:iam::1:role/r").kind, "AwsIamRole");
        assert_eq!(
            subject("arn:aws:sts::1:assumed-role/r/s").kind,
            "AwsIamRole"
        );
        assert_eq!(
            subject("arn:aws:cloudtrail:us-east-1:1:trail/t").kind,
            "AwsCloudTrailTrail"
        );
        assert_eq!(subject("arn:aws:iam::1:root").kind, "Other");
        assert_eq!(subject("password-policy").kind, "Other");
    }
}
