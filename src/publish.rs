//! Alerts from one object → grouped SNS messages → `Publish`.
//!
//! Alerts that share rule, account and principal become one message with a count and the first
//! events, so a root session making 200 calls pages once. Each message:
//! - has a subject under 100 printable ASCII characters, e.g. `[CRITICAL] root-console-login in 111122223333`;
//! - uses `MessageStructure=json`: email gets readable text followed by the JSON, while SQS,
//!   HTTPS and Lambda subscribers get the JSON document alone;
//! - carries String attributes `level`, `rule` and `account_id` for subscription filter
//!   policies (e.g. pager gets only critical);
//! - stays under SNS's 256 KB by listing fewer events, never by dropping the alert.
//!
//! <https://docs.aws.amazon.com/sns/latest/api/API_Publish.html>

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use aws_sdk_sns::error::DisplayErrorContext;
use aws_sdk_sns::types::MessageAttributeValue;
use serde::Serialize;

use crate::alert::{Alert, clean};
use crate::aws;
use crate::detect::Level;

/// SNS's limit on a message, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Margin for attributes and the request envelope.
const MESSAGE_BUDGET: usize = MAX_MESSAGE_BYTES - 8 * 1024;
/// Events listed in full in one message before the list is cut.
const MAX_LISTED: usize = 50;
/// Subjects must be under 100 characters.
const MAX_SUBJECT: usize = 99;

/// Alerts sharing rule, account and principal.
#[derive(Debug, Clone)]
pub struct Group {
    pub rule: String,
    pub level: Level,
    pub title: String,
    pub account_id: Option<String>,
    pub principal_arn: Option<String>,
    pub alerts: Vec<Alert>,
}

/// Groups alerts by (rule, account, principal), keeping first-seen order inside each group.
pub fn group(alerts: Vec<Alert>) -> Vec<Group> {
    let mut groups: BTreeMap<(String, Option<String>, Option<String>), Group> = BTreeMap::new();
    for alert in alerts {
        let key = (
            alert.rule.clone(),
            alert.account_id.clone(),
            alert.principal_arn.clone(),
        );
        groups
            .entry(key)
            .or_insert_with(|| Group {
                rule: alert.rule.clone(),
                level: alert.level,
                title: alert.title.clone(),
                account_id: alert.account_id.clone(),
                principal_arn: alert.principal_arn.clone(),
                alerts: Vec::new(),
            })
            .alerts
            .push(alert);
    }
    let mut out: Vec<Group> = groups.into_values().collect();
    // Most severe first, so a pager hears about the worst thing first.
    out.sort_by_key(|g| std::cmp::Reverse(g.level));
    out
}

/// The JSON document subscribers receive.
#[derive(Serialize)]
struct Document<'a> {
    rule: &'a str,
    title: &'a str,
    level: Level,
    account_id: Option<&'a str>,
    principal_arn: Option<&'a str>,
    /// How many alerts the group holds.
    count: usize,
    summary: &'a str,
    /// The first alerts of the group.
    alerts: &'a [Alert],
    /// Alerts left out of `alerts` to stay within SNS's size limit.
    alerts_omitted: usize,
}

/// A rendered SNS message.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    /// The `MessageStructure=json` body.
    pub message: String,
    pub attributes: Vec<(&'static str, String)>,
}

/// Longest text field kept in a published alert: record fields such as a user agent are set by
/// the caller and could otherwise fill the whole message.
const MAX_FIELD_CHARS: usize = 1024;

fn shorten(field: &mut Option<String>) {
    if let Some(s) = field
        && s.chars().count() > MAX_FIELD_CHARS
    {
        *s = s.chars().take(MAX_FIELD_CHARS).chain("…".chars()).collect();
    }
}

/// Renders a group into an SNS message within the size limits.
pub fn render(group: &Group) -> Rendered {
    let subject = subject(group);
    let mut group = group.clone();
    for a in &mut group.alerts {
        for field in [
            &mut a.user_agent,
            &mut a.principal_arn,
            &mut a.source_ip,
            &mut a.event_name,
            &mut a.error_code,
        ] {
            shorten(field);
        }
        let mut summary = Some(std::mem::take(&mut a.summary));
        shorten(&mut summary);
        a.summary = summary.unwrap_or_default();
    }
    let group = &group;
    let first = &group.alerts[0];
    let summary = if group.alerts.len() > 1 {
        format!(
            "{} (and {} more like it)",
            first.summary,
            group.alerts.len() - 1
        )
    } else {
        first.summary.clone()
    };
    let mut listed = group.alerts.len().min(MAX_LISTED);
    loop {
        let doc = Document {
            rule: &group.rule,
            title: &group.title,
            level: group.level,
            account_id: group.account_id.as_deref(),
            principal_arn: group.principal_arn.as_deref(),
            count: group.alerts.len(),
            summary: &summary,
            alerts: &group.alerts[..listed],
            alerts_omitted: group.alerts.len() - listed,
        };
        let json = serde_json::to_string_pretty(&doc).unwrap_or_default();
        let text = email_text(group, &summary, listed);
        let email = format!("{text}\n\n---- alerts as JSON ----\n{json}\n");
        // Email subscribers read `default` (an `email` key would only repeat it and halve the
        // room for events).
        let message = serde_json::json!({
            "default": email,
            "sqs": json,
            "https": json,
            "lambda": json,
        })
        .to_string();
        // The event list shrinks until the message fits; one listed alert always fits.
        if message.len() <= MESSAGE_BUDGET || listed <= 1 {
            let attributes = vec![
                ("level", group.level.as_str().to_owned()),
                ("rule", group.rule.clone()),
                (
                    "account_id",
                    group
                        .account_id
                        .clone()
                        .unwrap_or_else(|| "unknown".to_owned()),
                ),
            ];
            return Rendered {
                subject,
                message,
                attributes,
            };
        }
        listed = (listed / 2).max(1);
    }
}

/// `[LEVEL] rule in account`, printable ASCII, under 100 characters.
fn subject(group: &Group) -> String {
    let mut s = format!(
        "[{}] {} in {}",
        group.level.as_str().to_uppercase(),
        group.rule,
        group.account_id.as_deref().unwrap_or("unknown account")
    );
    if group.alerts.len() > 1 {
        let _ = write!(s, " (x{})", group.alerts.len());
    }
    let mut ascii: String = s
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

fn email_text(group: &Group, summary: &str, listed: usize) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "{}", clean(summary));
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "Rule:      {} ({})",
        clean(&group.rule),
        clean(&group.title)
    );
    let _ = writeln!(t, "Level:     {}", group.level);
    let _ = writeln!(
        t,
        "Account:   {}",
        clean(group.account_id.as_deref().unwrap_or("-"))
    );
    let _ = writeln!(
        t,
        "Principal: {}",
        clean(group.principal_arn.as_deref().unwrap_or("-"))
    );
    let _ = writeln!(t, "Alerts:    {}", group.alerts.len());
    let _ = writeln!(t);
    // Every alert of a group comes from one rule, so they share its next steps.
    let steps = &group.alerts[0].next_steps;
    if !steps.is_empty() {
        let _ = writeln!(t, "Next steps:");
        for (i, step) in steps.iter().enumerate() {
            let _ = writeln!(t, "  {}. {}", i + 1, clean(step));
        }
        let _ = writeln!(t);
    }
    for a in &group.alerts[..listed] {
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
    if listed < group.alerts.len() {
        let _ = writeln!(
            t,
            "... and {} more (not listed to stay under SNS's size limit)",
            group.alerts.len() - listed
        );
    }
    t
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
#[error("SNS Publish to {topic} failed{}: {message}", if *.transient { " (transient)" } else { "" })]
pub struct PublishError {
    pub topic: String,
    pub message: String,
    pub transient: bool,
}

/// The SNS topic alerts go to.
pub struct Topic {
    client: aws_sdk_sns::Client,
    arn: String,
}

impl Topic {
    pub fn new(client: aws_sdk_sns::Client, arn: String) -> Topic {
        Topic { client, arn }
    }

    /// Publishes one message, retrying throttling and transient errors with backoff
    /// (4 attempts: 0.2, 0.4, 0.8 s apart). `on_attempt` counts every request made.
    pub async fn publish(
        &self,
        msg: &Rendered,
        on_attempt: &(dyn Fn() + Sync),
    ) -> Result<(), PublishError> {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            let mut req = self
                .client
                .publish()
                .topic_arn(&self.arn)
                .subject(&msg.subject)
                .message(&msg.message)
                .message_structure("json");
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
            on_attempt();
            match req.send().await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    // A deleted topic or a denied publish is not retried here: the SQS message
                    // stays undeleted and comes back after its visibility timeout.
                    let transient = aws::is_transient(&e);
                    if !transient || attempt >= 4 {
                        return Err(PublishError {
                            topic: self.arn.clone(),
                            message: DisplayErrorContext(&e).to_string(),
                            transient,
                        });
                    }
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(rule: &str, level: Level, principal: &str, id: usize) -> Alert {
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
            principal_arn: Some(principal.into()),
            source_ip: Some("198.51.100.7".into()),
            user_agent: Some("evil\r\nSubject: forged".repeat(100)),
            error_code: None,
            mfa_used: None,
            summary: "Root user called ListBuckets".into(),
            source: "s3://trail/k".into(),
            count: None,
            event_ids: None,
            distinct_values: None,
            root_only_task: Some(false),
            assumed_root: None,
            next_steps: vec!["Confirm who used root and why".into()],
        }
    }

    #[test]
    fn two_hundred_root_calls_page_once() {
        let alerts: Vec<_> = (0..200)
            .map(|i| {
                alert(
                    "root-activity",
                    Level::High,
                    "arn:aws:iam::111122223333:root",
                    i,
                )
            })
            .chain([alert(
                "root-console-login",
                Level::Critical,
                "arn:aws:iam::111122223333:root",
                999,
            )])
            .collect();
        let groups = group(alerts);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].rule, "root-console-login", "most severe first");
        assert_eq!(groups[1].alerts.len(), 200);
        let r = render(&groups[1]);
        assert_eq!(r.subject, "[HIGH] root-activity in 111122223333 (x200)");
        assert!(r.message.len() <= MAX_MESSAGE_BYTES);
        let body: serde_json::Value = serde_json::from_str(&r.message).expect("json");
        let doc: serde_json::Value =
            serde_json::from_str(body["sqs"].as_str().expect("sqs")).expect("doc");
        assert_eq!(doc["count"], 200);
        assert_eq!(
            doc["alerts"].as_array().expect("list").len()
                + doc["alerts_omitted"].as_u64().expect("n") as usize,
            200
        );
        let email = body["default"].as_str().expect("email text");
        assert!(
            !email.contains("\r\nSubject"),
            "control characters are stripped from text"
        );
        assert!(
            email.contains("Next steps:\n  1. Confirm who used root and why\n"),
            "{email}"
        );
        assert!(r.attributes.contains(&("level", "high".to_owned())));
    }

    #[test]
    fn huge_alerts_are_truncated_not_dropped() {
        let mut a = alert("x", Level::Low, "p", 0);
        a.user_agent = Some("u".repeat(200_000));
        let r = render(&group(vec![a.clone()])[0]);
        assert!(
            r.message.len() <= MAX_MESSAGE_BYTES,
            "one giant alert is shortened"
        );

        a.user_agent = Some("u".repeat(1000));
        let r = render(&group(vec![a; 300])[0]);
        assert!(r.message.len() <= MAX_MESSAGE_BYTES);
        let body: serde_json::Value = serde_json::from_str(&r.message).expect("json");
        let doc: serde_json::Value =
            serde_json::from_str(body["sqs"].as_str().expect("sqs")).expect("doc");
        assert_eq!(doc["count"], 300);
        let listed = doc["alerts"].as_array().expect("list").len();
        assert!((1..50).contains(&listed), "{listed}");
        assert_eq!(
            listed + doc["alerts_omitted"].as_u64().expect("n") as usize,
            300
        );
    }

    #[test]
    fn subjects_are_printable_ascii_under_100() {
        let mut a = alert(&"r\u{7}ü".repeat(60), Level::Critical, "p", 0);
        a.account_id = Some("1\n2".into());
        let s = subject(&group(vec![a])[0]);
        assert!(s.len() < 100);
        assert!(s.chars().all(|c| c.is_ascii_graphic() || c == ' '), "{s:?}");
    }
}
