//! Pages, follow-ups, standing findings and their resolutions → SNS `Publish` on a topic:
//! the `sns` output's rendering, and the transport the `chatbot` output shares.
//!
//! Each message:
//! - has a subject under 100 printable ASCII characters, e.g.
//!   `[CRITICAL] root-console-login in 111122223333`;
//! - uses `MessageStructure=json`: email gets readable text followed by the JSON, while SQS,
//!   HTTPS and Lambda subscribers get the JSON document alone;
//! - carries String attributes `level`, `rule`, `account_id`, `incident_id` and `kind` (`page`,
//!   `follow-up`, `finding` or `resolved`) for subscription filter policies (e.g. the pager
//!   gets only critical) and for grouping downstream; a standing finding's check is its `rule`;
//! - names its incident and a stable `message_id` (`<incident id>:<kind>`), so a subscriber can
//!   recognise a repeat of the same message;
//! - stays under SNS's 256 KB by listing fewer events, never by dropping the alert.
//!
//! One publish is one `Publish` request: retries of a single call are the SDK's (see
//! `aws::sdk_config`), and a delivery that still fails is retried by its output's loop.
//! <https://docs.aws.amazon.com/sns/latest/api/API_Publish.html>

use std::fmt::Write as _;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_sns::types::MessageAttributeValue;
use serde::Serialize;

use super::Output;
use crate::aws::{self, Edge, Failed};
use crate::finding::Level;
use crate::finding::Standing;
use crate::finding::accounts::AccountNames;
use crate::finding::alert::{Alert, clean};
use crate::finding::fold::Tally;
use crate::finding::sink::{FindingMessage, FollowUp, Message, PageMessage, Resolved};
use crate::telemetry::Metrics;

/// SNS's limit on a message, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Margin for attributes and the request envelope.
const MESSAGE_BUDGET: usize = MAX_MESSAGE_BYTES - 8 * 1024;
/// Subjects must be under 100 characters.
const MAX_SUBJECT: usize = 99;
/// Values listed per tally in a follow-up.
const TOP: usize = 5;

/// A rendered SNS message.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// For email subscribers; `None` publishes none.
    pub subject: Option<String>,
    /// The body: with `per_protocol`, the `MessageStructure=json` object of one message per
    /// protocol; otherwise the one message every subscriber gets.
    pub message: String,
    pub per_protocol: bool,
    pub attributes: Vec<(&'static str, String)>,
}

/// The JSON document subscribers receive for a page.
#[derive(Serialize)]
struct PageDocument<'a> {
    kind: &'static str,
    incident_id: &'a str,
    /// Stable per message: a repeat of this page carries the same id.
    message_id: String,
    rule: &'a str,
    title: &'a str,
    level: Level,
    account_id: &'a str,
    /// The account's name, from the settings or AWS Organizations.
    #[serde(skip_serializing_if = "Option::is_none")]
    account_name: Option<String>,
    /// Who the incident is about, normalised (a role, not its sessions).
    principal: &'a str,
    /// The first alert's principal as recorded (a role session's ARN names the session).
    principal_arn: Option<&'a str>,
    summary: &'a str,
    /// How many alerts the page covers.
    count: u64,
    first_time: Option<&'a str>,
    last_time: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    next_steps: &'a [String],
    /// The first alerts.
    alerts: &'a [Alert],
    /// Alerts left out of `alerts` (beyond the listed ones, or to stay within SNS's limit).
    alerts_omitted: u64,
}

/// `(value, count)` for JSON.
#[derive(Serialize)]
struct Counted<'a> {
    value: &'a str,
    count: u64,
}

fn top(t: &Tally) -> Vec<Counted<'_>> {
    t.top(TOP)
        .into_iter()
        .map(|(value, count)| Counted { value, count })
        .collect()
}

/// The JSON document subscribers receive for a follow-up.
#[derive(Serialize)]
struct FollowUpDocument<'a> {
    kind: &'static str,
    incident_id: &'a str,
    message_id: String,
    rule: &'a str,
    title: &'a str,
    level: Level,
    account_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_name: Option<String>,
    principal: &'a str,
    summary: String,
    paged_summary: &'a str,
    paged_at: String,
    /// Alerts folded into the incident after its page.
    count: u64,
    first_time: Option<&'a str>,
    last_time: Option<&'a str>,
    event_names: Vec<Counted<'a>>,
    regions: Vec<Counted<'a>>,
    source_ips: Vec<Counted<'a>>,
    sessions: Vec<Counted<'a>>,
    sources: usize,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    next_steps: &'a [String],
}

/// Printable ASCII under 100 characters, as SNS requires of subjects.
fn subject(text: String) -> String {
    let mut ascii: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    ascii.truncate(MAX_SUBJECT);
    ascii
}

/// The message attributes every topic message carries, for subscription filter policies.
pub fn attributes(
    level: Level,
    rule: &str,
    account: &str,
    incident_id: &str,
    kind: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("level", level.as_str().to_owned()),
        ("rule", rule.to_owned()),
        ("account_id", account.to_owned()),
        ("incident_id", incident_id.to_owned()),
        ("kind", kind.to_owned()),
    ]
}

/// The `MessageStructure=json` body: email reads `default` (an `email` key would only repeat
/// it and halve the room for events), the others the document.
fn body(email: &str, json: &str) -> String {
    serde_json::json!({
        "default": email,
        "sqs": json,
        "https": json,
        "lambda": json,
    })
    .to_string()
}

/// Renders any message for an SNS topic.
pub fn render(message: &Message, names: &AccountNames) -> Rendered {
    match message {
        Message::Page(p) => render_page(p, names),
        Message::FollowUp(f) => render_follow_up(f, names),
        Message::Finding(f) => render_finding(f, names),
        Message::Resolved(r) => render_resolved(r, names),
    }
}

/// Renders a page within SNS's limits (its alerts' long fields were shortened when it was
/// recorded, [`Message::page`]).
pub fn render_page(page: &PageMessage, names: &AccountNames) -> Rendered {
    let fold = &page.fold;
    let account = names.label(&fold.key.account);
    let alerts = &fold.alerts;
    let first = &alerts[0];
    let count = fold.stats.count.max(1);
    let summary = if count > 1 {
        format!("{} (and {} more like it)", first.summary, count - 1)
    } else {
        first.summary.clone()
    };
    let mut subject_text = format!(
        "[{}] {} in {account}",
        first.level.as_str().to_uppercase(),
        fold.key.rule,
    );
    if count > 1 {
        let _ = write!(subject_text, " (x{count})");
    }
    let mut listed = alerts.len();
    loop {
        let doc = PageDocument {
            kind: "page",
            incident_id: &page.incident_id,
            message_id: format!("{}:page", page.incident_id),
            rule: &fold.key.rule,
            title: &first.title,
            level: first.level,
            account_id: &fold.key.account,
            account_name: names.name(&fold.key.account),
            principal: &fold.key.principal,
            principal_arn: first.principal_arn.as_deref(),
            summary: &summary,
            count,
            first_time: fold.stats.first_time.as_deref(),
            last_time: fold.stats.last_time.as_deref(),
            next_steps: &page.next_steps,
            alerts: &alerts[..listed],
            alerts_omitted: count.saturating_sub(listed as u64),
        };
        let json = serde_json::to_string_pretty(&doc).unwrap_or_default();
        let email = format!(
            "{}\n\n---- alerts as JSON ----\n{json}\n",
            page_text(&doc, &account, &alerts[..listed])
        );
        let message = body(&email, &json);
        // The event list shrinks until the message fits; one listed alert always fits.
        if message.len() <= MESSAGE_BUDGET || listed <= 1 {
            return Rendered {
                subject: Some(subject(subject_text)),
                message,
                per_protocol: true,
                attributes: attributes(
                    first.level,
                    &fold.key.rule,
                    &fold.key.account,
                    &page.incident_id,
                    "page",
                ),
            };
        }
        listed = (listed / 2).max(1);
    }
}

fn page_text(doc: &PageDocument<'_>, account: &str, alerts: &[Alert]) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "{}", clean(doc.summary));
    let _ = writeln!(t);
    let _ = writeln!(t, "Rule:      {} ({})", clean(doc.rule), clean(doc.title));
    let _ = writeln!(t, "Level:     {}", doc.level);
    let _ = writeln!(t, "Account:   {account}");
    let _ = writeln!(t, "Principal: {}", clean(doc.principal));
    let _ = writeln!(t, "Alerts:    {}", doc.count);
    let _ = writeln!(t, "Incident:  {}", clean(doc.incident_id));
    if !doc.next_steps.is_empty() {
        let _ = writeln!(t);
        let _ = writeln!(t, "Next steps:");
        for step in doc.next_steps {
            let _ = writeln!(t, "- {}", clean(step));
        }
    }
    let _ = writeln!(t);
    for a in alerts {
        let _ = writeln!(
            t,
            "- {} {} {} from {} ua={} [{}] {}",
            clean(a.event_time.as_deref().unwrap_or("-")),
            clean(a.event_source.as_deref().unwrap_or("-")),
            clean(a.event_name.as_deref().unwrap_or("-")),
            clean(a.source_ip.as_deref().unwrap_or("-")),
            clean(a.user_agent.as_deref().unwrap_or("-")),
            clean(a.event_id.as_deref().unwrap_or("-")),
            clean(&a.source),
        );
    }
    if doc.alerts_omitted > 0 {
        let _ = writeln!(t, "... and {} more not listed", doc.alerts_omitted);
    }
    t
}

/// `a (3), b (1)` for a sentence.
fn listing(t: &Tally) -> String {
    let mut parts: Vec<String> = t
        .top(TOP)
        .into_iter()
        .map(|(v, n)| format!("{} ({n})", clean(v)))
        .collect();
    let shown: u64 = t.top(TOP).iter().map(|(_, n)| n).sum();
    let total: u64 = t.values.iter().map(|(_, n)| n).sum::<u64>() + t.others;
    if total > shown {
        parts.push(format!("{} more", total - shown));
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(", ")
    }
}

/// Renders a follow-up.
pub fn render_follow_up(f: &FollowUp, names: &AccountNames) -> Rendered {
    let account = names.label(&f.key.account);
    let paged_at = chrono::DateTime::from_timestamp(f.paged_at, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let summary = format!(
        "{} more {} alerts in {account} by {} after the page at {paged_at}, from {} to {}",
        f.stats.count,
        clean(&f.key.rule),
        clean(&f.key.principal),
        f.stats.first_time.as_deref().unwrap_or("-"),
        f.stats.last_time.as_deref().unwrap_or("-"),
    );
    let doc = FollowUpDocument {
        kind: "follow-up",
        incident_id: &f.incident_id,
        message_id: format!("{}:follow-up", f.incident_id),
        rule: &f.key.rule,
        title: &f.title,
        level: f.level,
        account_id: &f.key.account,
        account_name: names.name(&f.key.account),
        principal: &f.key.principal,
        summary: summary.clone(),
        paged_summary: &f.paged_summary,
        paged_at: paged_at.clone(),
        count: f.stats.count,
        first_time: f.stats.first_time.as_deref(),
        last_time: f.stats.last_time.as_deref(),
        event_names: top(&f.stats.event_names),
        regions: top(&f.stats.regions),
        source_ips: top(&f.stats.source_ips),
        sessions: top(&f.stats.sessions),
        sources: f.sources,
        next_steps: &f.next_steps,
    };
    let json = serde_json::to_string_pretty(&doc).unwrap_or_default();
    let mut t = String::new();
    let _ = writeln!(t, "{summary}");
    let _ = writeln!(t);
    let _ = writeln!(t, "Paged:       {}", clean(&f.paged_summary));
    let _ = writeln!(
        t,
        "Rule:        {} ({})",
        clean(&f.key.rule),
        clean(&f.title)
    );
    let _ = writeln!(t, "Incident:    {}", clean(&f.incident_id));
    let _ = writeln!(t, "Event names: {}", listing(&f.stats.event_names));
    let _ = writeln!(t, "Regions:     {}", listing(&f.stats.regions));
    let _ = writeln!(t, "Source IPs:  {}", listing(&f.stats.source_ips));
    let _ = writeln!(t, "Sessions:    {}", listing(&f.stats.sessions));
    for step in &f.next_steps {
        let _ = writeln!(t, "Next:        {}", clean(step));
    }
    let email = format!("{t}\n---- follow-up as JSON ----\n{json}\n");
    Rendered {
        subject: Some(subject(format!(
            "[{}] follow-up: {} in {account} (+{})",
            f.level.as_str().to_uppercase(),
            f.key.rule,
            f.stats.count
        ))),
        message: body(&email, &json),
        per_protocol: true,
        attributes: attributes(
            f.level,
            &f.key.rule,
            &f.key.account,
            &f.incident_id,
            "follow-up",
        ),
    }
}

/// The JSON document subscribers receive for a standing finding and for its resolution.
#[derive(Serialize)]
struct FindingDocument<'a> {
    /// `finding` or `resolved`.
    kind: &'static str,
    incident_id: &'a str,
    message_id: String,
    check: &'a str,
    title: &'a str,
    level: Level,
    account_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_name: Option<String>,
    resource: &'a str,
    summary: String,
    evidence: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    next_steps: &'a [String],
    /// When the finding was opened and fixed (resolutions only), RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    opened_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resolved_at: Option<String>,
    /// What saw it fixed (resolutions only).
    #[serde(skip_serializing_if = "Option::is_none")]
    resolved_by: Option<&'a str>,
}

/// Epoch seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub(super) fn rfc3339(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// Renders a finding or resolution document with its email text and attributes.
fn render_standing(
    doc: &FindingDocument<'_>,
    f: &Standing,
    account: &str,
    subject_text: String,
) -> Rendered {
    let mut evidence = f.evidence.clone();
    crate::finding::sink::shorten(&mut evidence);
    let json = serde_json::to_string_pretty(doc).unwrap_or_default();
    let mut t = String::new();
    let _ = writeln!(t, "{}", clean(&doc.summary));
    let _ = writeln!(t);
    let _ = writeln!(t, "Check:     {} ({})", clean(&f.check), clean(&f.title));
    let _ = writeln!(t, "Level:     {}", f.level);
    let _ = writeln!(t, "Account:   {account}");
    let _ = writeln!(t, "Resource:  {}", clean(&f.resource));
    let _ = writeln!(t, "Evidence:  {}", clean(&evidence));
    let _ = writeln!(t, "Incident:  {}", clean(doc.incident_id));
    if let Some(at) = &doc.resolved_at {
        let _ = writeln!(t, "Opened:    {}", doc.opened_at.as_deref().unwrap_or("-"));
        let _ = writeln!(
            t,
            "Fixed:     {at} (seen by {})",
            doc.resolved_by.unwrap_or("-")
        );
    }
    if !doc.next_steps.is_empty() {
        let _ = writeln!(t);
        let _ = writeln!(t, "Next steps:");
        for step in doc.next_steps {
            let _ = writeln!(t, "- {}", clean(step));
        }
    }
    let email = format!("{t}\n---- {} as JSON ----\n{json}\n", doc.kind);
    Rendered {
        subject: Some(subject(subject_text)),
        message: body(&email, &json),
        per_protocol: true,
        attributes: attributes(f.level, &f.check, &f.account, doc.incident_id, doc.kind),
    }
}

/// Renders the message that opens a standing finding.
pub fn render_finding(opened: &FindingMessage, names: &AccountNames) -> Rendered {
    let f = &opened.finding;
    let account = names.label(&f.account);
    let doc = FindingDocument {
        kind: "finding",
        incident_id: &opened.incident_id,
        message_id: format!("{}:finding", opened.incident_id),
        check: &f.check,
        title: &f.title,
        level: f.level,
        account_id: &f.account,
        account_name: names.name(&f.account),
        resource: &f.resource,
        summary: format!("{}: {}", f.check, f.evidence),
        evidence: &f.evidence,
        next_steps: &f.next_steps,
        opened_at: None,
        resolved_at: None,
        resolved_by: None,
    };
    let subject_text = format!(
        "[{}] finding: {} in {account}",
        f.level.as_str().to_uppercase(),
        f.check,
    );
    render_standing(&doc, f, &account, subject_text)
}

/// Renders the message that says a standing finding was fixed.
pub fn render_resolved(r: &Resolved, names: &AccountNames) -> Rendered {
    let f = &r.finding;
    let account = names.label(&f.account);
    let resolved_at = rfc3339(r.resolved_at);
    let doc = FindingDocument {
        kind: "resolved",
        incident_id: &r.incident_id,
        message_id: format!("{}:resolved", r.incident_id),
        check: &f.check,
        title: &f.title,
        level: f.level,
        account_id: &f.account,
        account_name: names.name(&f.account),
        resource: &f.resource,
        summary: format!(
            "fixed: {} for {} no longer fails (seen {resolved_at})",
            f.check, f.resource
        ),
        evidence: &f.evidence,
        next_steps: &[],
        opened_at: Some(rfc3339(r.opened_at)),
        resolved_at: Some(resolved_at),
        resolved_by: Some(&r.by),
    };
    let subject_text = format!("[RESOLVED] {} in {account}", f.check);
    render_standing(&doc, f, &account, subject_text)
}

/// How a topic's messages are rendered: [`render`] for `sns`, [`super::chatbot::render`] for
/// `chatbot`.
pub type Renderer = fn(&Message, &AccountNames) -> Rendered;

/// An SNS topic output.
pub struct Topic {
    client: aws_sdk_sns::Client,
    arn: String,
    metrics: Arc<Metrics>,
    render: Renderer,
}

impl Topic {
    pub fn new(
        client: aws_sdk_sns::Client,
        arn: String,
        metrics: Arc<Metrics>,
        render: Renderer,
    ) -> Topic {
        Topic {
            client,
            arn,
            metrics,
            render,
        }
    }

    /// Publishes one message: one `Publish` call, retried only by the SDK.
    async fn publish(&self, msg: &Rendered) -> Result<(), Failed> {
        let mut req = self
            .client
            .publish()
            .topic_arn(&self.arn)
            .set_subject(msg.subject.clone())
            .message(&msg.message);
        if msg.per_protocol {
            req = req.message_structure("json");
        }
        for (name, value) in &msg.attributes {
            req = req.message_attributes(
                *name,
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(value)
                    .build()
                    .expect("data_type is set"),
            );
        }
        self.metrics.aws_request("Publish");
        req.send()
            .await
            .map(|_| ())
            .map_err(|e| aws::failed(Edge::Sink, &format!("SNS Publish to {}", self.arn), &e))
    }
}

#[async_trait]
impl Output for Topic {
    async fn deliver(&self, message: &Message, names: &AccountNames) -> Result<(), Failed> {
        self.publish(&(self.render)(message, names)).await
    }

    /// Checks that the topic exists and is visible to this role.
    async fn check(&self) -> Result<(), Failed> {
        self.metrics.aws_request("GetTopicAttributes");
        self.client
            .get_topic_attributes()
            .topic_arn(&self.arn)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                aws::failed(
                    Edge::Sink,
                    &format!("SNS GetTopicAttributes {}", self.arn),
                    &e,
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::IncidentKey;
    use crate::finding::fold::{Folder, Stats};
    use crate::finding::sink::{Opened, Page};

    fn page_of(page: Page<'_>) -> PageMessage {
        match Message::page(page) {
            Message::Page(p) => p,
            _ => unreachable!(),
        }
    }

    fn alert(rule: &str, level: Level, id: usize) -> Alert {
        Alert {
            rule: rule.into(),
            title: "Root activity".into(),
            level,
            tags: vec![],
            event_id: Some(format!("evt-{id}")),
            event_time: Some("2026-11-20T09:00:00Z".into()),
            event_name: Some("ListBuckets".into()),
            event_source: Some("s3.amazonaws.com".into()),
            aws_region: Some("us-east-1".into()),
            account_id: Some("111122223333".into()),
            principal_type: Some("Root".into()),
            principal_arn: Some("arn:aws:iam::111122223333:root".into()),
            source_ip: Some("198.51.100.7".into()),
            user_agent: Some("evil\r\nSubject: forged".repeat(100)),
            error_code: None,
            mfa_used: None,
            summary: "Root user called ListBuckets".into(),
            source: "s3://trail/k".into(),
            count: None,
            event_ids: None,
            distinct_values: None,
            root_only_task: None,
            assumed_root: None,
            next_steps: vec![],
        }
    }

    fn key(rule: &str) -> IncidentKey {
        IncidentKey {
            rule: rule.into(),
            account: "111122223333".into(),
            principal: "arn:aws:iam::111122223333:root".into(),
        }
    }

    fn fold_of(alerts: Vec<Alert>) -> crate::finding::fold::Fold {
        let mut folder = Folder::new();
        for a in alerts {
            folder.add(key(&a.rule.clone()), a);
        }
        folder.finish().remove(0)
    }

    fn doc(r: &Rendered) -> serde_json::Value {
        let body: serde_json::Value = serde_json::from_str(&r.message).expect("json");
        serde_json::from_str(body["sqs"].as_str().expect("sqs")).expect("doc")
    }

    #[test]
    fn two_hundred_root_calls_are_one_page() {
        let fold = fold_of(
            (0..200)
                .map(|i| alert("root-activity", Level::High, i))
                .collect(),
        );
        let steps = vec!["Find out who used root".to_owned()];
        let page = page_of(Page {
            incident_id: "inc-1",
            fold: &fold,
            next_steps: &steps,
        });
        let r = render_page(&page, &AccountNames::default());
        assert_eq!(
            r.subject.as_deref().expect("subject"),
            "[HIGH] root-activity in 111122223333 (x200)"
        );
        assert!(doc(&r).get("account_name").is_none());
        // With a name, every place a person reads the account shows it beside the id.
        let names = AccountNames::new([("111122223333".to_owned(), "prod-payments".to_owned())]);
        let named = render_page(&page, &names);
        assert_eq!(
            named.subject.as_deref().expect("subject"),
            "[HIGH] root-activity in prod-payments (111122223333) (x200)"
        );
        assert_eq!(doc(&named)["account_name"], "prod-payments");
        assert_eq!(doc(&named)["account_id"], "111122223333");
        assert!(
            named
                .message
                .contains("Account:   prod-payments (111122223333)"),
            "{}",
            named.message
        );
        assert!(r.message.len() <= MAX_MESSAGE_BYTES);
        let d = doc(&r);
        assert_eq!(d["count"], 200);
        assert_eq!(d["incident_id"], "inc-1");
        assert_eq!(d["message_id"], "inc-1:page");
        assert_eq!(
            d["alerts"].as_array().expect("list").len() as u64
                + d["alerts_omitted"].as_u64().expect("n"),
            200
        );
        let body: serde_json::Value = serde_json::from_str(&r.message).expect("json");
        let email = body["default"].as_str().expect("email text");
        assert!(
            !email.contains("\r\nSubject"),
            "control characters are stripped from text"
        );
        assert!(
            email.contains("Next steps:\n- Find out who used root"),
            "{email}"
        );
        assert!(r.attributes.contains(&("level", "high".to_owned())));
        assert!(r.attributes.contains(&("incident_id", "inc-1".to_owned())));
        assert!(r.attributes.contains(&("kind", "page".to_owned())));
    }

    #[test]
    fn huge_alerts_are_shortened_not_dropped() {
        let mut a = alert("x", Level::Low, 0);
        a.user_agent = Some("u".repeat(200_000));
        let fold = fold_of(vec![a.clone()]);
        let r = render_page(
            &page_of(Page {
                incident_id: "i",
                fold: &fold,
                next_steps: &[],
            }),
            &AccountNames::default(),
        );
        assert!(r.message.len() <= MAX_MESSAGE_BYTES);
        a.summary = "s".repeat(50_000);
        let fold = fold_of((0..20).map(|_| a.clone()).collect());
        let r = render_page(
            &page_of(Page {
                incident_id: "i",
                fold: &fold,
                next_steps: &[],
            }),
            &AccountNames::default(),
        );
        assert!(r.message.len() <= MAX_MESSAGE_BYTES);
        assert_eq!(doc(&r)["count"], 20);
    }

    #[test]
    fn subjects_are_printable_ascii_under_100() {
        let s = subject(format!("[X] {} in 1\n2", "r\u{7}ü".repeat(60)));
        assert!(s.len() < 100);
        assert!(s.chars().all(|c| c.is_ascii_graphic() || c == ' '), "{s:?}");
    }

    fn standing() -> Standing {
        Standing {
            check: "user-without-mfa".into(),
            account: "111122223333".into(),
            resource: "arn:aws:iam::111122223333:user/alice".into(),
            level: Level::High,
            title: "Every IAM user with a console password has MFA (CIS 1.10)".into(),
            evidence: "alice has a console password and no MFA device\r\nSubject: x".into(),
            next_steps: vec!["Have the user assign an MFA device".into()],
        }
    }

    #[test]
    fn findings_and_resolutions_say_what_stands_and_when_it_was_fixed() {
        let f = standing();
        let Message::Finding(opened) = Message::finding(Opened {
            incident_id: "inc-3",
            finding: &f,
        }) else {
            unreachable!()
        };
        let r = render_finding(&opened, &AccountNames::default());
        assert_eq!(
            r.subject.as_deref().expect("subject"),
            "[HIGH] finding: user-without-mfa in 111122223333"
        );
        let d = doc(&r);
        assert_eq!(d["kind"], "finding");
        assert_eq!(d["message_id"], "inc-3:finding");
        assert_eq!(d["check"], "user-without-mfa");
        assert_eq!(d["resource"], "arn:aws:iam::111122223333:user/alice");
        assert_eq!(d["next_steps"][0], "Have the user assign an MFA device");
        assert!(d.get("resolved_at").is_none());
        assert!(r.attributes.contains(&("kind", "finding".to_owned())));
        assert!(
            r.attributes
                .contains(&("rule", "user-without-mfa".to_owned()))
        );
        let email = serde_json::from_str::<serde_json::Value>(&r.message).expect("body")["default"]
            .as_str()
            .expect("email")
            .to_owned();
        assert!(!email.contains("\r\nSubject"), "{email}");

        let r = render_resolved(
            &Resolved {
                incident_id: "inc-3".into(),
                finding: f,
                opened_at: 1_763_629_200,
                resolved_at: 1_763_632_800,
                by: "re-check after EnableMFADevice".into(),
            },
            &AccountNames::default(),
        );
        assert_eq!(
            r.subject.as_deref().expect("subject"),
            "[RESOLVED] user-without-mfa in 111122223333"
        );
        let d = doc(&r);
        assert_eq!(d["kind"], "resolved");
        assert_eq!(d["message_id"], "inc-3:resolved");
        assert_eq!(d["opened_at"], "2025-11-20T09:00:00Z");
        assert_eq!(d["resolved_at"], "2025-11-20T10:00:00Z");
        assert_eq!(d["resolved_by"], "re-check after EnableMFADevice");
        assert!(r.attributes.contains(&("kind", "resolved".to_owned())));
    }

    #[test]
    fn follow_ups_summarise_what_came_after_the_page() {
        let mut stats = Stats::default();
        for i in 0..35 {
            let mut a = alert("root-activity", Level::High, i);
            a.aws_region = Some(if i % 2 == 0 { "us-east-1" } else { "eu-west-1" }.into());
            stats.add(&a);
        }
        let f = FollowUp {
            incident_id: "inc-9".into(),
            key: key("root-activity"),
            title: "Root user activity".into(),
            level: Level::High,
            next_steps: vec!["Confirm who used root and why".into()],
            paged_summary: "Root user called ListBuckets".into(),
            paged_at: 1_763_629_200,
            paged_count: 1,
            paged_first_time: None,
            tags: vec![],
            stats,
            sources: 5,
        };
        let r = render_follow_up(&f, &AccountNames::default());
        assert_eq!(
            r.subject.as_deref().expect("subject"),
            "[HIGH] follow-up: root-activity in 111122223333 (+35)"
        );
        let d = doc(&r);
        assert_eq!(d["kind"], "follow-up");
        assert_eq!(d["count"], 35);
        assert_eq!(d["regions"][0]["value"], "us-east-1");
        assert_eq!(d["regions"][0]["count"], 18);
        assert_eq!(d["message_id"], "inc-9:follow-up");
        assert!(r.attributes.contains(&("kind", "follow-up".to_owned())));
        assert_eq!(d["next_steps"][0], "Confirm who used root and why");
        let email = serde_json::from_str::<serde_json::Value>(&r.message).expect("body")["default"]
            .as_str()
            .expect("email")
            .to_owned();
        assert!(email.contains("Next:        Confirm who used root and why"));
    }
}
