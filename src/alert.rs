//! A record plus the rule it fired → an [`Alert`]: the JSON object operators read, with a
//! one-sentence summary.
//!
//! Every value copied from a record is attacker-influenced (a user agent, a user name typed at
//! the sign-in page), so anything rendered as text goes through [`clean`], which drops control
//! characters and line breaks. JSON output escapes them on its own.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::cloudtrail::Record;
use crate::detect::{CorrelationHit, Level, RuleInfo};

/// The rule name of the alert raised when a log file cannot be read to its end.
pub const UNREADABLE_RULE: &str = "log-file-unreadable";

/// One alert. Field names are stable: they are the output format.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Alert {
    /// The rule's stable name (Sigma `name`, else `id`).
    pub rule: String,
    pub title: String,
    pub level: Level,
    pub tags: Vec<String>,
    pub event_id: Option<String>,
    pub event_time: Option<String>,
    pub event_name: Option<String>,
    pub event_source: Option<String>,
    pub aws_region: Option<String>,
    /// `recipientAccountId`, else `userIdentity.accountId`.
    pub account_id: Option<String>,
    pub principal_type: Option<String>,
    pub principal_arn: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// For console sign-ins: whether `additionalEventData.MFAUsed` said yes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_used: Option<bool>,
    /// One readable sentence.
    pub summary: String,
    /// The file path, or `s3://bucket/key`.
    pub source: String,
    /// Correlation alerts: how many events the window held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Correlation alerts: the eventIDs involved (the most recent ones, if there were many).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_ids: Option<Vec<String>>,
}

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
        Context {
            event_id: r.text("eventID"),
            event_time: r.text("eventTime"),
            event_name,
            event_source,
            aws_region: r.text("awsRegion"),
            account_id: r
                .text("recipientAccountId")
                .or_else(|| r.text("userIdentity.accountId")),
            principal_type: r.text("userIdentity.type"),
            principal_arn: r.text("userIdentity.arn"),
            user_name: r
                .text("userIdentity.userName")
                .or_else(|| r.text("userIdentity.sessionContext.sessionIssuer.userName")),
            source_ip: r.text("sourceIPAddress"),
            user_agent: r.text("userAgent"),
            error_code: r.text("errorCode"),
            error_message: r.text("errorMessage"),
            mfa_used,
        }
    }

    /// Who acted, for sentences: the root user, a user name, or the ARN.
    fn who(&self) -> String {
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
        }
    }
}

impl Alert {
    /// The alert for a detection rule that fired on `record`, read from `source`.
    pub fn from_detection(rule: &RuleInfo, record: &Record<'_>, source: &str) -> Alert {
        let ctx = Context::read(record);
        let summary = summarize(rule, &ctx, record);
        ctx.into_alert(rule, summary, source)
    }

    /// The alert for a correlation rule; its context is the most recent event of the window.
    pub fn from_correlation(rule: &RuleInfo, hit: &CorrelationHit, source: &str) -> Alert {
        let last = hit.events.last().cloned().unwrap_or(Value::Null);
        let ctx = Context::read(&last);
        let group: Vec<String> = hit
            .group
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{}={}", clean(k), clean(v)))
            .collect();
        let summary = match rule.name.as_str() {
            "console-login-brute-force" => format!(
                "{} failed console sign-ins as {} to {} within 10 minutes{}",
                hit.count,
                clean(ctx.user_name.as_deref().unwrap_or("an unknown user")),
                ctx.account(),
                ctx.ip_suffix()
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
        let event_ids = hit
            .events
            .iter()
            .filter_map(|e| e.text("eventID"))
            .collect();
        let mut alert = ctx.into_alert(rule, summary, source);
        alert.count = Some(hit.count);
        alert.event_ids = Some(event_ids);
        alert
    }

    /// The alert raised when a log file breaks off: a damaged CloudTrail file can mean
    /// tampering, and the records after the damage were not checked.
    pub fn unreadable(source: &str, records_read: u64, error: &str) -> Alert {
        Alert {
            rule: UNREADABLE_RULE.to_owned(),
            title: "CloudTrail log file could not be read".to_owned(),
            level: Level::Medium,
            tags: vec!["attack.defense-evasion".to_owned()],
            event_id: None,
            event_time: None,
            event_name: None,
            event_source: None,
            aws_region: None,
            account_id: account_from_key(source),
            principal_type: None,
            principal_arn: None,
            source_ip: None,
            user_agent: None,
            error_code: None,
            mfa_used: None,
            summary: format!(
                "CloudTrail log file {} could not be read after {records_read} records: {}",
                clean(source),
                clean(error)
            ),
            source: source.to_owned(),
            count: None,
            event_ids: None,
        }
    }

    /// The alert raised when a log file was read to its end but some of its records could
    /// not be parsed and were skipped: `what` says how many and where.
    pub fn damaged(source: &str, what: &str) -> Alert {
        let mut alert = Alert::unreadable(source, 0, what);
        alert.summary = format!(
            "CloudTrail log file {} is damaged: {}",
            clean(source),
            clean(what)
        );
        alert
    }

    /// One readable line for terminals: level, rule, time, summary.
    pub fn text_line(&self) -> String {
        let mut line = format!(
            "{:<8} {} {} {}",
            self.level.as_str().to_uppercase(),
            self.event_time.as_deref().unwrap_or("-"),
            clean(&self.rule),
            clean(&self.summary)
        );
        if let Some(id) = &self.event_id {
            let _ = write!(line, " [{}]", clean(id));
        }
        line
    }
}

/// The account from a CloudTrail key (`.../AWSLogs/[o-org/]<account>/CloudTrail/...`).
fn account_from_key(key: &str) -> Option<String> {
    let mut parts = key.split('/').skip_while(|p| *p != "AWSLogs").skip(1);
    let first = parts.next()?;
    let account = if first.starts_with("o-") {
        parts.next()?
    } else {
        first
    };
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then(|| account.to_owned())
}

/// The sentence for a detection. Builtin rules get tailored wording; others a generic one.
fn summarize(rule: &RuleInfo, ctx: &Context, record: &Record<'_>) -> String {
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

/// Removes control characters (newlines included) and Unicode direction overrides from text
/// that came from a record, so it cannot forge lines or reorder what an operator reads.
pub fn clean(s: &str) -> Cow<'_, str> {
    let bad =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if s.chars().any(bad) {
        Cow::Owned(s.chars().map(|c| if bad(c) { ' ' } else { c }).collect())
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::RuleKind;

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
            next_steps: vec![],
            incident_window: None,
        }
    }

    #[test]
    fn root_login_summary_and_fields() {
        let raw = r#"{"eventVersion":"1.08","userIdentity":{"type":"Root","principalId":"111122223333","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333"},"eventTime":"2026-11-20T09:03:11Z","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","userAgent":"Mozilla/5.0\r\nX-Injected: 1","responseElements":{"ConsoleLogin":"Success"},"additionalEventData":{"MFAUsed":"No"},"eventID":"e1","recipientAccountId":"111122223333"}"#;
        let record = Record::parse(raw.as_bytes()).expect("parse");
        let alert = Alert::from_detection(&rule("root-console-login"), &record, "f.json.gz");
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
    fn clean_strips_controls() {
        assert_eq!(clean("a\nb\u{202e}c\t"), "a b c ");
        assert!(matches!(clean("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn account_from_keys() {
        let k = "prefix/AWSLogs/o-abc123/444455556666/CloudTrail/us-east-1/2026/x.json.gz";
        assert_eq!(account_from_key(k).as_deref(), Some("444455556666"));
        let k = "s3://b/AWSLogs/111122223333/CloudTrail/eu-west-1/x.json.gz";
        assert_eq!(account_from_key(k).as_deref(), Some("111122223333"));
        assert_eq!(account_from_key("local.json"), None);
    }
}
