//! Pages, follow-ups, standing findings and their resolutions → PagerDuty's Events API v2: the
//! `pagerduty` output's rendering, its transport, and where its routing key is read from.
//!
//! Each message is one alert event (`POST /v2/enqueue`):
//! - `dedup_key` is the incident id, so everything about one incident lands on one PagerDuty
//!   alert: a page triggers it, a follow-up triggers it again (PagerDuty adds it to the open
//!   alert instead of opening another), and a standing finding's resolution resolves it;
//! - `payload.summary` is one line under PagerDuty's 1024 characters, e.g.
//!   `[CRITICAL] root-console-login in prod-payments (111122223333): <summary>`, and
//!   `payload.severity` maps the level (critical → critical, high → error, medium → warning,
//!   low and informational → info);
//! - `payload.custom_details` carries what the SNS document carries (rule, level, account,
//!   principal, counts, times, next steps, the listed alerts, the message id), and the event
//!   stays under PagerDuty's 512 KB by listing fewer alerts, never by dropping the event.
//!
//! Answers (<https://developer.pagerduty.com/docs/events-api-v2/overview>): 202 is accepted;
//! 429 and 5xx are retried by the output's loop with backoff, as PagerDuty asks; a 400 holds
//! the output as misconfigured (a bad routing key must not drop pages). A trigger sent twice
//! under one `dedup_key` updates the same alert, so a retry after a lost answer pages nobody
//! twice.
//!
//! The routing key is read once at start-up from Secrets Manager or SSM Parameter Store
//! ([`routing_key`]); the settings hold only where it is kept, and it is never logged.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_smithy_runtime_api::client::http::{HttpConnectorSettings, SharedHttpConnector};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use serde_json::{Value, json};

use super::Output;
use crate::aws::signed::{Api, Protocol};
use crate::aws::{self, Answer, Edge, Failed};
use crate::finding::Level;
use crate::finding::accounts::AccountNames;
use crate::finding::alert::{Alert, clean};
use crate::finding::fold::Tally;
use crate::finding::sink::{FindingMessage, FollowUp, Message, PageMessage, Resolved};
use crate::telemetry::Metrics;

/// PagerDuty's limit on an event, in bytes.
pub const MAX_EVENT_BYTES: usize = 512 * 1024;
/// Room left for what PagerDuty counts beyond our JSON (it does not say exactly what).
const EVENT_BUDGET: usize = MAX_EVENT_BYTES - 16 * 1024;
/// PagerDuty's limit on `payload.summary`, in characters.
pub const MAX_SUMMARY_CHARS: usize = 1024;
/// PagerDuty's limit on `dedup_key`, in characters.
const MAX_DEDUP_CHARS: usize = 255;
/// Values listed per tally in a follow-up.
const TOP: usize = 5;
/// Longest wait for one event, connection to answer: PagerDuty answers in well under a
/// second, and a stuck request should give way to the loop's backoff.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a TCP and TLS connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of an answer's body is read: PagerDuty's answers are a few hundred bytes.
const MAX_ANSWER_BYTES: usize = 16 * 1024;
/// How much of PagerDuty's explanation goes into a failure's sentence.
const MAX_REASON_CHARS: usize = 600;

/// PagerDuty's severity for a level: it has four, and orders incidents by them.
pub fn severity(level: Level) -> &'static str {
    match level {
        Level::Critical => "critical",
        Level::High => "error",
        Level::Medium => "warning",
        Level::Low | Level::Informational => "info",
    }
}

/// `text` cleaned of control characters and cut to `max` characters, marked where cut.
fn cut(text: &str, max: usize) -> String {
    let text = clean(text);
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((at, _)) if text.chars().count() > max => format!("{}…", &text[..at]),
        _ => text.into_owned(),
    }
}

/// The incident id as PagerDuty's `dedup_key`: the same cut every time, so a follow-up and a
/// resolution name the alert their page opened.
fn dedup_key(incident_id: &str) -> String {
    incident_id.chars().take(MAX_DEDUP_CHARS).collect()
}

/// Epoch seconds as RFC 3339.
fn rfc3339(at: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(at, 0).map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

fn top(t: &Tally) -> Vec<Value> {
    t.top(TOP)
        .into_iter()
        .map(|(value, count)| json!({ "value": value, "count": count }))
        .collect()
}

/// A trigger event around `payload`.
fn trigger(incident_id: &str, routing_key: &str, payload: Value) -> Value {
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(incident_id),
        // Shown in PagerDuty as what sent the alert.
        "client": "trailwarden",
        "payload": payload,
    })
}

/// Renders any message as an Events API v2 event.
pub fn event(message: &Message, names: &AccountNames, routing_key: &str) -> Value {
    match message {
        Message::Page(p) => page_event(p, names, routing_key),
        Message::FollowUp(f) => follow_up_event(f, names, routing_key),
        Message::Finding(f) => finding_event(f, names, routing_key),
        Message::Resolved(r) => resolve_event(r, routing_key),
    }
}

/// A page: the trigger that opens the incident's PagerDuty alert.
fn page_event(page: &PageMessage, names: &AccountNames, routing_key: &str) -> Value {
    let fold = &page.fold;
    let account = names.label(&fold.key.account);
    let count = fold.stats.count.max(1);
    let first: Option<&Alert> = fold.alerts.first();
    let level = fold.level();
    let mut summary = format!(
        "[{}] {} in {account}",
        level.as_str().to_uppercase(),
        fold.key.rule
    );
    if count > 1 {
        summary.push_str(&format!(" (x{count})"));
    }
    if let Some(a) = first {
        summary.push_str(": ");
        summary.push_str(&a.summary);
    }
    let mut listed = fold.alerts.len();
    loop {
        let details = json!({
            "kind": "page",
            "message_id": format!("{}:page", page.incident_id),
            "incident_id": page.incident_id,
            "rule": fold.key.rule,
            "title": first.map(|a| a.title.as_str()),
            "level": level,
            "account_id": fold.key.account,
            "account_name": names.name(&fold.key.account),
            "principal": fold.key.principal,
            "principal_arn": first.and_then(|a| a.principal_arn.as_deref()),
            "count": count,
            "first_time": fold.stats.first_time,
            "last_time": fold.stats.last_time,
            "next_steps": page.next_steps,
            "alerts": &fold.alerts[..listed],
            "alerts_omitted": count.saturating_sub(listed as u64),
        });
        let event = trigger(
            &page.incident_id,
            routing_key,
            json!({
                "summary": cut(&summary, MAX_SUMMARY_CHARS),
                "source": account,
                "severity": severity(level),
                "component": first.and_then(|a| a.event_source.as_deref()),
                "group": fold.key.account,
                "class": fold.key.rule,
                "timestamp": fold.stats.first_time,
                "custom_details": details,
            }),
        );
        // The alert list shrinks until the event fits; one listed alert always fits, its long
        // fields having been shortened when the page was recorded.
        if listed <= 1 || event.to_string().len() <= EVENT_BUDGET {
            return without_nulls(event);
        }
        listed = (listed / 2).max(1);
    }
}

/// A follow-up: the same `dedup_key` triggered again, which PagerDuty records on the open
/// alert (or, if someone already resolved it, opens a new one: more activity after that is
/// worth a page).
fn follow_up_event(f: &FollowUp, names: &AccountNames, routing_key: &str) -> Value {
    let account = names.label(&f.key.account);
    let summary = format!(
        "[{}] follow-up: {} in {account}: {} more alerts by {} after the page",
        f.level.as_str().to_uppercase(),
        f.key.rule,
        f.stats.count,
        f.key.principal,
    );
    let details = json!({
        "kind": "follow-up",
        "message_id": format!("{}:follow-up", f.incident_id),
        "incident_id": f.incident_id,
        "rule": f.key.rule,
        "title": f.title,
        "level": f.level,
        "account_id": f.key.account,
        "account_name": names.name(&f.key.account),
        "principal": f.key.principal,
        "paged_summary": f.paged_summary,
        "paged_at": rfc3339(f.paged_at),
        "count": f.stats.count,
        "first_time": f.stats.first_time,
        "last_time": f.stats.last_time,
        "event_names": top(&f.stats.event_names),
        "regions": top(&f.stats.regions),
        "source_ips": top(&f.stats.source_ips),
        "sessions": top(&f.stats.sessions),
        "sources": f.sources,
        "next_steps": f.next_steps,
    });
    without_nulls(trigger(
        &f.incident_id,
        routing_key,
        json!({
            "summary": cut(&summary, MAX_SUMMARY_CHARS),
            "source": account,
            "severity": severity(f.level),
            "group": f.key.account,
            "class": f.key.rule,
            "timestamp": f.stats.first_time,
            "custom_details": details,
        }),
    ))
}

/// A standing finding: a trigger whose component is the resource found wrong, resolved by
/// [`resolve_event`] when a later check no longer finds it.
fn finding_event(opened: &FindingMessage, names: &AccountNames, routing_key: &str) -> Value {
    let f = &opened.finding;
    let account = names.label(&f.account);
    let summary = format!(
        "[{}] finding: {} in {account}: {} ({})",
        f.level.as_str().to_uppercase(),
        f.check,
        f.title,
        f.resource,
    );
    let details = json!({
        "kind": "finding",
        "message_id": format!("{}:finding", opened.incident_id),
        "incident_id": opened.incident_id,
        "check": f.check,
        "title": f.title,
        "level": f.level,
        "account_id": f.account,
        "account_name": names.name(&f.account),
        "resource": f.resource,
        "evidence": f.evidence,
        "next_steps": f.next_steps,
    });
    without_nulls(trigger(
        &opened.incident_id,
        routing_key,
        json!({
            "summary": cut(&summary, MAX_SUMMARY_CHARS),
            "source": account,
            "severity": severity(f.level),
            // PD-CEF's component is the part of the system that is broken: here the resource.
            "component": cut(&f.resource, MAX_SUMMARY_CHARS),
            "group": f.account,
            "class": f.check,
            "custom_details": details,
        }),
    ))
}

/// A resolution: `resolve` on the finding's `dedup_key`. PagerDuty reads only the key and
/// the action of a resolve, so nothing else is sent.
fn resolve_event(r: &Resolved, routing_key: &str) -> Value {
    json!({
        "routing_key": routing_key,
        "event_action": "resolve",
        "dedup_key": dedup_key(&r.incident_id),
    })
}

/// The event without its unknown (null) fields: PagerDuty validates the types of the fields
/// it knows, and a null timestamp or component is not a string.
fn without_nulls(mut event: Value) -> Value {
    if let Some(payload) = event.get_mut("payload").and_then(Value::as_object_mut) {
        payload.retain(|_, v| !v.is_null());
        if let Some(details) = payload
            .get_mut("custom_details")
            .and_then(Value::as_object_mut)
        {
            details.retain(|_, v| !v.is_null());
        }
    }
    event
}

/// What an answer from the Events API means for the delivery.
///
/// - 2xx: accepted (PagerDuty documents 202).
/// - 429 and 5xx: PagerDuty asks for a retry after a while; a 5xx may come after the event was
///   taken, so it is ambiguous (a repeat only updates the same alert).
/// - 400: the Events API answers it for an invalid routing key as well as for an invalid event,
///   and says which only in its English `errors`. Our events are built to its schema and
///   limits, so the likely cause is the key; and a page must not be dropped while an operator
///   fixes it, so the output is held as misconfigured rather than this message dropped.
/// - 401, 403: the same, refused for the key.
/// - 404 and any other status: `events_url` does not name the Events API.
/// - 413: this event is too large (it should not be: [`event`] keeps it under the limit), and
///   others may pass: only this one is refused.
fn classify(status: u16) -> Option<Answer> {
    match status {
        200..=299 => None,
        408 | 429 | 500..=599 => Some(Answer::Unavailable),
        413 => Some(Answer::Invalid),
        400..=403 => Some(Answer::Denied),
        _ => Some(Answer::Missing),
    }
}

/// PagerDuty's own explanation from an error answer (`message` and `errors`), cut short, and
/// with the routing key masked should PagerDuty ever quote it.
fn reason(body: &[u8], routing_key: &str) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            let message = v.get("message").and_then(Value::as_str).unwrap_or("");
            let errors: Vec<&str> = v
                .get("errors")
                .and_then(Value::as_array)
                .map(|e| e.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match (message.is_empty(), errors.is_empty()) {
                (false, false) => format!("{message}: {}", errors.join("; ")),
                (false, true) => message.to_owned(),
                (true, false) => errors.join("; "),
                (true, true) => String::new(),
            }
        }
        Err(_) => String::from_utf8_lossy(body).trim().to_owned(),
    };
    let text = if routing_key.is_empty() {
        text
    } else {
        text.replace(routing_key, "<routing key>")
    };
    cut(&text, MAX_REASON_CHARS)
}

/// The `pagerduty` output: POSTs each message to the Events API with the routing key.
///
/// The HTTP client is the AWS SDK's own ([`aws::https_connector`]: hyper and rustls with ring,
/// the system's root certificates), which the daemon already carries for every AWS call and
/// for AWS's IP ranges: one HTTP and TLS stack for the whole process.
pub struct Events {
    /// The Events API's enqueue URL (US or EU service region, or a test server).
    url: String,
    /// The integration's routing key: a credential, never logged.
    routing_key: String,
    client: SharedHttpConnector,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("url", &self.url)
            .field("routing_key", &"<redacted>")
            .finish()
    }
}

impl Events {
    pub fn new(url: String, routing_key: String) -> Events {
        let settings = HttpConnectorSettings::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(REQUEST_TIMEOUT)
            .build();
        Events {
            url,
            routing_key,
            client: aws::https_connector(&settings),
        }
    }

    /// `what failed: why` at the sink edge.
    fn failed(&self, answer: Answer, ambiguous: bool, what: &str, why: String) -> Failed {
        Failed::new(Edge::Sink, answer, format!("{what} failed: {why}")).maybe_done(ambiguous)
    }

    /// POSTs one event; returns the status and the start of the answer's body.
    async fn post(&self, body: Vec<u8>, what: &str) -> Result<(u16, Vec<u8>), Failed> {
        let mut request = HttpRequest::new(SdkBody::from(body));
        let built = request
            .set_method("POST")
            .map_err(|e| e.to_string())
            .and_then(|()| {
                request
                    .set_uri(self.url.as_str())
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = built {
            return Err(self.failed(
                Answer::Missing,
                false,
                what,
                format!("events_url {:?} is not a URL: {e}", self.url),
            ));
        }
        request
            .headers_mut()
            .insert("content-type", "application/json");
        // The status decides; the body only explains a refusal, so a broken one is ignored.
        let reply = aws::exchange(
            &self.client,
            request,
            Edge::Sink,
            what,
            REQUEST_TIMEOUT,
            MAX_ANSWER_BYTES,
        )
        .await?;
        Ok((reply.status, reply.body))
    }
}

#[async_trait]
impl Output for Events {
    async fn deliver(&self, message: &Message, names: &AccountNames) -> Result<(), Failed> {
        let event = event(message, names, &self.routing_key);
        let what = format!(
            "PagerDuty {} of {} to {}",
            event["event_action"].as_str().unwrap_or("event"),
            message.id(),
            self.url
        );
        let (status, body) = self
            .post(serde_json::to_vec(&event).unwrap_or_default(), &what)
            .await?;
        let Some(answer) = classify(status) else {
            return Ok(());
        };
        let mut why = format!("PagerDuty answered HTTP {status}");
        let explained = reason(&body, &self.routing_key);
        if !explained.is_empty() {
            why.push_str(": ");
            why.push_str(&explained);
        }
        match answer {
            Answer::Denied => why.push_str(
                " (check the routing key: the integration's 32-character Events API v2 key)",
            ),
            Answer::Missing => why.push_str(" (check events_url: it should end in /v2/enqueue)"),
            _ => {}
        }
        Err(self.failed(answer, status >= 500, &what, why))
    }

    /// The Events API has no call that checks a key without sending an event, so this checks
    /// what can be checked without paging anyone: the key's shape and the URL's scheme.
    async fn check(&self) -> Result<(), Failed> {
        let what = "PagerDuty settings";
        if !routing_key_shape(&self.routing_key) {
            return Err(self.failed(
                Answer::Denied,
                false,
                what,
                format!(
                    "the routing key read is {} characters, not the 32 letters and digits of an Events API v2 integration key",
                    self.routing_key.chars().count()
                ),
            ));
        }
        if !url_allowed(&self.url) {
            return Err(self.failed(
                Answer::Missing,
                false,
                what,
                format!(
                    "events_url {:?} must be https (the routing key travels in the body)",
                    self.url
                ),
            ));
        }
        Ok(())
    }
}

/// An Events API v2 integration key: 32 ASCII letters and digits (global ruleset keys start
/// with `R`, service keys are hex).
pub fn routing_key_shape(key: &str) -> bool {
    key.len() == 32 && key.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// https anywhere; plain http only to this host (a test server).
fn url_allowed(url: &str) -> bool {
    let host = |rest: &str| -> String {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        match authority.rsplit_once(':') {
            // A port, unless the colon is inside an IPv6 address.
            Some((host, port)) if !port.contains(']') => host.to_owned(),
            _ => authority.to_owned(),
        }
    };
    if let Some(rest) = url.strip_prefix("https://") {
        !host(rest).is_empty()
    } else if let Some(rest) = url.strip_prefix("http://") {
        matches!(host(rest).as_str(), "127.0.0.1" | "localhost" | "[::1]")
    } else {
        false
    }
}

/// Reads the routing key from where `at` says it is kept: a Secrets Manager secret (its
/// string is the key, or JSON with a `routing_key` field) or an SSM SecureString parameter
/// (decrypted). A secret that is missing or may not be read is a setting naming `at`.
pub async fn routing_key(
    sdk: &aws_config::SdkConfig,
    at: &str,
    metrics: &Arc<Metrics>,
) -> Result<String, Failed> {
    let service = at.split(':').nth(2).unwrap_or("");
    let value = match service {
        "secretsmanager" => {
            let api = Api::new(
                sdk,
                "secretsmanager",
                Protocol::Json11 {
                    target_prefix: "secretsmanager",
                },
                metrics,
            );
            let out = api
                .call(
                    Edge::Sink,
                    &format!("Secrets Manager GetSecretValue {at}"),
                    "GetSecretValue",
                    ("POST", "/"),
                    Some(&json!({ "SecretId": at })),
                )
                .await?;
            let Some(text) = out["SecretString"].as_str() else {
                return Err(Failed::new(
                    Edge::Sink,
                    Answer::Missing,
                    format!(
                        "Secrets Manager secret {at} holds binary data, not the routing key as a string"
                    ),
                ));
            };
            from_secret(text)
        }
        "ssm" => {
            let api = Api::new(
                sdk,
                "ssm",
                Protocol::Json11 {
                    target_prefix: "AmazonSSM",
                },
                metrics,
            );
            // GetParameter takes the parameter's ARN as its name (required for one shared
            // from another account), so the ARN from the settings is passed as it is.
            let out = api
                .call(
                    Edge::Sink,
                    &format!("SSM GetParameter {at}"),
                    "GetParameter",
                    ("POST", "/"),
                    Some(&json!({ "Name": at, "WithDecryption": true })),
                )
                .await?;
            out["Parameter"]["Value"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
        _ => {
            return Err(Failed::new(
                Edge::Sink,
                Answer::Missing,
                format!(
                    "routing_key {at:?} is neither a Secrets Manager secret ARN nor an SSM parameter ARN"
                ),
            ));
        }
    };
    let key = value.trim().to_owned();
    if key.is_empty() {
        return Err(Failed::new(
            Edge::Sink,
            Answer::Missing,
            format!("{at} holds no routing key (empty, or JSON without a routing_key string)"),
        ));
    }
    Ok(key)
}

/// The key from a secret's string: JSON with a `routing_key` (the console's key/value form),
/// else the string itself.
fn from_secret(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(fields)) => fields
            .get("routing_key")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::IncidentKey;
    use crate::finding::Standing;
    use crate::finding::fold::{Folder, Stats};
    use crate::finding::sink::{Opened, Page};

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn alert(level: Level, id: usize, user_agent: String) -> Alert {
        Alert {
            rule: "root-console-login".into(),
            title: "Root user console login".into(),
            level,
            tags: vec![],
            event_id: Some(format!("evt-{id}")),
            event_time: Some(format!("2026-11-20T09:{:02}:00Z", id % 60)),
            event_name: Some("ConsoleLogin".into()),
            event_source: Some("signin.amazonaws.com".into()),
            aws_region: Some("us-east-1".into()),
            account_id: Some("111122223333".into()),
            principal_type: Some("Root".into()),
            principal_arn: Some("arn:aws:iam::111122223333:root".into()),
            source_ip: Some("198.51.100.7".into()),
            user_agent: Some(user_agent),
            error_code: None,
            mfa_used: Some(false),
            summary: "Root user signed in to the console without MFA".into(),
            source: "s3://trail/k".into(),
            count: None,
            event_ids: None,
            distinct_values: None,
            root_only_task: None,
            assumed_root: None,
            next_steps: vec![],
        }
    }

    fn key() -> IncidentKey {
        IncidentKey {
            rule: "root-console-login".into(),
            account: "111122223333".into(),
            principal: "arn:aws:iam::111122223333:root".into(),
        }
    }

    fn page(alerts: Vec<Alert>) -> Message {
        let mut folder = Folder::new();
        for a in alerts {
            folder.add(key(), a);
        }
        let fold = folder.finish().remove(0);
        let steps = vec!["Find out who used root".to_owned()];
        Message::page(Page {
            incident_id: "inc-1",
            fold: &fold,
            next_steps: &steps,
        })
    }

    fn names() -> AccountNames {
        AccountNames::new([("111122223333".to_owned(), "prod-payments".to_owned())])
    }

    #[test]
    fn a_page_triggers_the_incident_alert() {
        let e = event(
            &page(vec![alert(Level::Critical, 1, "Mozilla".into())]),
            &names(),
            KEY,
        );
        assert_eq!(e["event_action"], "trigger");
        assert_eq!(e["dedup_key"], "inc-1");
        assert_eq!(e["routing_key"], KEY);
        let p = &e["payload"];
        assert_eq!(
            p["summary"],
            "[CRITICAL] root-console-login in prod-payments (111122223333): Root user signed in to the console without MFA"
        );
        assert_eq!(p["severity"], "critical");
        assert_eq!(p["source"], "prod-payments (111122223333)");
        assert_eq!(p["component"], "signin.amazonaws.com");
        assert_eq!(p["group"], "111122223333");
        assert_eq!(p["class"], "root-console-login");
        assert_eq!(p["timestamp"], "2026-11-20T09:01:00Z");
        let d = &p["custom_details"];
        assert_eq!(d["message_id"], "inc-1:page");
        assert_eq!(d["account_name"], "prod-payments");
        assert_eq!(d["next_steps"][0], "Find out who used root");
        assert_eq!(d["alerts"][0]["event_id"], "evt-1");
        assert_eq!(d["count"], 1);
    }

    #[test]
    fn levels_map_to_pagerdutys_four_severities() {
        let got: Vec<&str> = [
            Level::Informational,
            Level::Low,
            Level::Medium,
            Level::High,
            Level::Critical,
        ]
        .into_iter()
        .map(severity)
        .collect();
        assert_eq!(got, ["info", "info", "warning", "error", "critical"]);
    }

    #[test]
    fn events_stay_within_pagerdutys_limits() {
        // Twenty listed alerts whose free-text fields are at the stored maximum of control
        // characters (each six bytes in JSON), and a summary far past 1024 characters.
        let noise = "\u{7}".repeat(2_000);
        let mut alerts: Vec<Alert> = (0..200)
            .map(|i| {
                let mut a = alert(Level::High, i, noise.clone());
                a.principal_arn = Some(noise.clone());
                a.source_ip = Some(noise.clone());
                a.event_name = Some(noise.clone());
                a.error_code = Some(noise.clone());
                a
            })
            .collect();
        alerts[0].summary = "s".repeat(5_000);
        let e = event(&page(alerts), &names(), KEY);
        let bytes = e.to_string().len();
        assert!(bytes <= MAX_EVENT_BYTES, "{bytes} bytes");
        let summary = e["payload"]["summary"].as_str().expect("summary");
        assert_eq!(summary.chars().count(), MAX_SUMMARY_CHARS);
        assert!(summary.ends_with('…'));
        let d = &e["payload"]["custom_details"];
        assert_eq!(d["count"], 200);
        assert!(
            d["alerts"].as_array().expect("alerts").len() < 20,
            "fewer listed"
        );
        assert_eq!(
            d["alerts_omitted"].as_u64().expect("omitted")
                + d["alerts"].as_array().expect("alerts").len() as u64,
            200
        );
        let long = "i".repeat(400);
        assert_eq!(dedup_key(&long).len(), MAX_DEDUP_CHARS);
    }

    fn standing() -> Standing {
        Standing {
            check: "root-access-key-present".into(),
            account: "111122223333".into(),
            resource: "arn:aws:iam::111122223333:root".into(),
            level: Level::High,
            title: "The root user has no access keys".into(),
            evidence: "key AKIA... created 2020-01-01".into(),
            next_steps: vec!["Delete the root user's access keys".into()],
        }
    }

    #[test]
    fn a_follow_up_triggers_the_same_alert_and_a_resolution_resolves_it() {
        let f = FollowUp {
            incident_id: "inc-1".into(),
            key: key(),
            title: "Root user console login".into(),
            level: Level::Medium,
            next_steps: vec![],
            paged_summary: "Root user signed in".into(),
            paged_at: 1_795_000_000,
            paged_count: 1,
            paged_first_time: None,
            tags: vec![],
            stats: Stats {
                count: 4,
                first_time: Some("2026-11-20T10:00:00Z".into()),
                ..Stats::default()
            },
            sources: 2,
        };
        let e = event(&Message::FollowUp(f), &names(), KEY);
        assert_eq!(
            (&e["event_action"], &e["dedup_key"]),
            (&json!("trigger"), &json!("inc-1"))
        );
        assert_eq!(e["payload"]["severity"], "warning");
        assert!(e["payload"].get("component").is_none(), "no null fields");
        assert_eq!(e["payload"]["custom_details"]["kind"], "follow-up");

        let s = standing();
        let opened = event(
            &Message::finding(Opened {
                incident_id: "inc-2",
                finding: &s,
            }),
            &AccountNames::default(),
            KEY,
        );
        assert_eq!(opened["event_action"], "trigger");
        assert_eq!(
            opened["payload"]["summary"],
            "[HIGH] finding: root-access-key-present in 111122223333: The root user has no access keys (arn:aws:iam::111122223333:root)"
        );
        let resolved = event(
            &Message::Resolved(Resolved {
                incident_id: "inc-2".into(),
                finding: s,
                opened_at: 1,
                resolved_at: 2,
                by: "audit".into(),
            }),
            &names(),
            KEY,
        );
        assert_eq!(
            resolved,
            json!({"routing_key": KEY, "event_action": "resolve", "dedup_key": "inc-2"})
        );
    }

    #[test]
    fn answers_are_classified_once() {
        assert_eq!(classify(202), None);
        assert_eq!(classify(429), Some(Answer::Unavailable));
        assert_eq!(classify(503), Some(Answer::Unavailable));
        assert_eq!(
            Edge::Sink.fault(classify(400).expect("400")),
            crate::aws::Fault::Setting
        );
        assert_eq!(
            Edge::Sink.fault(classify(404).expect("404")),
            crate::aws::Fault::Setting
        );
        assert_eq!(
            Edge::Sink.fault(classify(413).expect("413")),
            crate::aws::Fault::Rejected
        );
    }

    #[test]
    fn pagerdutys_explanation_is_kept_and_the_key_masked() {
        let body = format!(
            r#"{{"status":"invalid event","message":"Event object is invalid","errors":["Length of 'routing_key' is incorrect (should be 32 characters)","bad {KEY}"]}}"#
        );
        assert_eq!(
            reason(body.as_bytes(), KEY),
            "Event object is invalid: Length of 'routing_key' is incorrect (should be 32 characters); bad <routing key>"
        );
        assert_eq!(reason(b"upstream\r\nbroke", KEY), "upstream  broke");
        assert_eq!(reason(&[b'e'; 5000], KEY).chars().count(), MAX_REASON_CHARS);
    }

    #[test]
    fn keys_and_urls_are_checked_by_shape() {
        assert!(routing_key_shape(KEY));
        assert!(routing_key_shape("R0123456789ABCDEF0123456789ABCDE"));
        assert!(!routing_key_shape("short"));
        assert!(!routing_key_shape(&format!("{}-", &KEY[..31])));
        assert!(url_allowed("https://events.pagerduty.com/v2/enqueue"));
        assert!(url_allowed("http://127.0.0.1:8080/v2/enqueue"));
        assert!(!url_allowed("http://events.pagerduty.com/v2/enqueue"));
        assert!(!url_allowed("events.pagerduty.com"));
    }

    #[test]
    fn a_secret_is_the_key_or_json_with_it() {
        assert_eq!(from_secret(KEY), KEY);
        assert_eq!(from_secret(&format!(r#"{{"routing_key":"{KEY}"}}"#)), KEY);
        assert_eq!(from_secret(r#"{"other":"x"}"#), "");
    }

    #[tokio::test]
    async fn the_key_is_never_in_debug_output() {
        let e = Events::new("https://events.pagerduty.com/v2/enqueue".into(), KEY.into());
        assert!(!format!("{e:?}").contains(KEY));
        assert!(e.check().await.is_ok());
        let short = Events::new("https://events.pagerduty.com/v2/enqueue".into(), "k".into());
        let f = short.check().await.expect_err("a short key");
        assert_eq!(f.fault, crate::aws::Fault::Setting);
        let plain = Events::new("http://example.com/v2/enqueue".into(), KEY.into());
        let f = plain.check().await.expect_err("plain http");
        assert_eq!(f.fault, crate::aws::Fault::Setting);
        assert!(!f.sentence.contains(KEY), "{}", f.sentence);
    }
}
