//! The alert model every stage shares: the JSON object operators read, and the cleaning of
//! record text before it is shown.
//!
//! Every value copied from a record is attacker-influenced (a user agent, a user name typed at
//! the sign-in page), so anything rendered as text goes through [`clean`], which drops control
//! characters and line breaks. JSON output escapes them on its own. Alerts are built from
//! records and rules in `detect::alerts`; only the alerts about a log file itself are built
//! here.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::Serialize;

use super::Level;

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
    /// Correlations counting distinct values (`value_count`): the values seen, first seen
    /// first, e.g. the user names of a password spray (from the events the window kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distinct_values: Option<Vec<String>>,
    /// root-activity alerts: whether the call is one of the tasks only the root user can do
    /// (`false`: an IAM role could have made it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_only_task: Option<bool>,
    /// `true` when the root session was opened with sts AssumeRoot (centralized root access,
    /// `userIdentity.sessionContext.assumedRoot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assumed_root: Option<bool>,
    /// What to do now: the rule's `next_steps`, one short imperative line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_steps: Vec<String>,
}

impl Alert {
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
            distinct_values: None,
            root_only_task: None,
            assumed_root: None,
            // CloudTrail signs every log file in its hourly digest, so tampering shows there.
            // <https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-log-file-validation-intro.html>
            next_steps: vec![
                "Validate the file against its digest: aws cloudtrail validate-logs".to_owned(),
                "Check who else can write to the log bucket and whether they did".to_owned(),
            ],
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

    /// [`Self::text_line`], with the account's name when one is known, followed by one
    /// indented line per next step.
    pub fn text_block(&self, account_name: Option<&str>) -> String {
        let mut block = self.text_line();
        if let (Some(name), Some(id)) = (account_name, &self.account_id) {
            let _ = write!(block, " (account {}, {})", clean(name), clean(id));
        }
        for step in &self.next_steps {
            let _ = write!(block, "\n    next: {}", clean(step));
        }
        block
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

/// Removes control characters (newlines included) and Unicode direction overrides from text
/// that came from a record, so it cannot forge lines or reorder what an operator reads.
pub fn clean(s: &str) -> Cow<'_, str> {
    // Printable ASCII, most of what records hold, is clean: told a byte at a time.
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Cow::Borrowed(s);
    }
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
