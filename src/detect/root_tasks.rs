//! A record made by the root user → the root-only task it performs, if any.
//!
//! AWS asks that the root user be used only for the few tasks that require it; anything else
//! root does could have been done by an IAM role. The list of tasks and the CloudTrail events
//! that record them is data next to the builtin rules (`rules/root-only-tasks.toml`, embedded
//! with them), each entry citing the AWS page it comes from.
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/root-user-tasks.html>

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::cloudtrail::Record;

/// The file in `rules/` that holds the list.
const FILE: &str = "root-only-tasks.toml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskFile {
    task: Vec<Task>,
}

/// One task that only the root user can perform.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// What the task is, in AWS's words, lower case to fit in a sentence.
    pub name: String,
    /// The AWS pages that list the task and the events recording it.
    pub references: Vec<String>,
    /// The CloudTrail events that record the task.
    #[serde(rename = "event")]
    events: Vec<EventMatch>,
}

/// The records of one task: an event source and name, plus conditions on other fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventMatch {
    sources: Vec<String>,
    names: Vec<String>,
    /// Fields that must be absent or null.
    #[serde(default)]
    absent: Vec<String>,
    /// Fields that must be set.
    #[serde(default)]
    present: Vec<String>,
    /// Fields that must hold these values (case-insensitively).
    #[serde(default)]
    equals: BTreeMap<String, String>,
}

impl EventMatch {
    fn matches(&self, source: &str, name: &str, record: &Record<'_>) -> bool {
        self.sources.iter().any(|s| s.eq_ignore_ascii_case(source))
            && self.names.iter().any(|n| n == name)
            && self.absent.iter().all(|f| !record.has(f))
            && self.present.iter().all(|f| record.has(f))
            && self.equals.iter().all(|(f, want)| {
                record
                    .str_at(f)
                    .is_some_and(|v| v.eq_ignore_ascii_case(want))
            })
    }
}

/// Every task on the list, parsed once from the embedded file.
pub fn tasks() -> &'static [Task] {
    static TASKS: OnceLock<Vec<Task>> = OnceLock::new();
    TASKS.get_or_init(|| {
        let text = super::BUILTIN
            .get_file(FILE)
            .and_then(|f| f.contents_utf8())
            .expect("rules/root-only-tasks.toml is embedded with the builtin rules");
        toml::from_str::<TaskFile>(text)
            .expect("rules/root-only-tasks.toml parses; a unit test checks it")
            .task
    })
}

/// The root-only task that `record` performs, or `None` when an IAM role could have made the
/// same call.
pub fn root_only_task(record: &Record<'_>) -> Option<&'static Task> {
    let source = record.str_at("eventSource")?;
    let name = record.str_at("eventName")?;
    tasks().iter().find(|task| {
        task.events
            .iter()
            .any(|e| e.matches(&source, &name, record))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_of(json: &str) -> Option<&'static str> {
        let record = Record::parse(json.as_bytes()).expect("record");
        root_only_task(&record).map(|t| t.name.as_str())
    }

    #[test]
    fn the_list_parses_and_cites_aws() {
        assert!(tasks().len() >= 8);
        for task in tasks() {
            assert!(!task.events.is_empty(), "{}", task.name);
            assert!(
                task.references
                    .iter()
                    .all(|r| r.starts_with("https://docs.aws.amazon.com/")),
                "{}",
                task.name
            );
        }
    }

    #[test]
    fn root_only_calls_are_recognised() {
        assert_eq!(
            task_of(
                r#"{"eventSource":"billingconsole.amazonaws.com","eventName":"SetIAMAccessPreference"}"#
            ),
            Some("activate IAM access to the Billing and Cost Management console")
        );
        // Root's own key: no user name in the request.
        assert!(
            task_of(
                r#"{"eventSource":"iam.amazonaws.com","eventName":"DeleteAccessKey","requestParameters":{"accessKeyId":"AKIAEXAMPLE"}}"#
            )
            .is_some()
        );
        assert!(
            task_of(
                r#"{"eventSource":"iam.amazonaws.com","eventName":"DeactivateMFADevice","requestParameters":{"userName":"AWS ROOT USER","serialNumber":"arn:aws:iam::111122223333:mfa/root-account-mfa-device"}}"#
            )
            .is_some()
        );
        assert!(
            task_of(
                r#"{"eventSource":"s3.amazonaws.com","eventName":"PutBucketVersioning","requestParameters":{"bucketName":"b","VersioningConfiguration":{"Status":"Enabled","MfaDelete":"Enabled"}}}"#
            )
            .is_some()
        );
    }

    #[test]
    fn everyday_calls_are_not_root_only() {
        for json in [
            r#"{"eventSource":"ec2.amazonaws.com","eventName":"DescribeInstances"}"#,
            // A key for an IAM user: any administrator can do that.
            r#"{"eventSource":"iam.amazonaws.com","eventName":"DeleteAccessKey","requestParameters":{"userName":"alice","accessKeyId":"AKIAEXAMPLE"}}"#,
            r#"{"eventSource":"iam.amazonaws.com","eventName":"DeactivateMFADevice","requestParameters":{"userName":"alice"}}"#,
            r#"{"eventSource":"s3.amazonaws.com","eventName":"PutBucketVersioning","requestParameters":{"VersioningConfiguration":{"Status":"Enabled"}}}"#,
        ] {
            assert_eq!(task_of(json), None, "{json}");
        }
    }
}
