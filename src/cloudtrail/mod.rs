//! CloudTrail log files: bytes in, one lazily parsed record at a time out.
//!
//! - [`reader`]: gunzip (size-capped) and split the `Records` array without holding it whole.
//! - [`shape`]: an item of an export (lookup-events, Lake rows, EventBridge events) → the
//!   record inside it.
//! - [`object`]: one pass over a record's bytes → where its members and its nested objects' lie,
//!   validated.
//! - [`record`]: the lenient, lazily parsed view of one record that rules read.

pub mod object;
pub mod reader;
pub mod record;
pub mod shape;

pub use reader::{Finish, Item, LogReader, RawRecord, ReadError, Shapes, open, open_any};
pub use record::{Found, Record};

/// Why a log source is skipped without being read, judged from its name alone: the one skip
/// rule, for the daemon and `scan` alike. `name` is a path or `s3://bucket/key`.
///
/// - Digest files (`CloudTrail-Digest`) hold hashes of log files, not events.
///   <https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-log-file-validation-digest-file-structure.html>
/// - CloudTrail writes only `.json.gz` objects; buckets shared with other services also hold
///   files such as AWS Config's `ConfigWritabilityCheckFile`, which must not read as damaged
///   logs. Local files are read whatever their name: people export and rename them.
pub fn skip(name: &str) -> Option<&'static str> {
    if name.contains("CloudTrail-Digest") {
        return Some("digest file (holds log file hashes, not events)");
    }
    let in_s3 = name.starts_with("s3://");
    if in_s3 && !(name.ends_with(".json.gz") || name.ends_with(".json")) {
        return Some("not a CloudTrail log file name (CloudTrail writes .json.gz objects)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_keys_are_skipped_and_insights_read() {
        let digest = "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/11/20/111122223333_CloudTrail-Digest_us-east-1_trail_us-east-1_20261120T100000Z.json.gz";
        assert!(skip(digest).is_some());
        let insight = "AWSLogs/111122223333/CloudTrail-Insight/us-east-1/2026/11/20/x.json.gz";
        assert!(skip(insight).is_none());
        assert!(skip("s3://b/AWSLogs/111122223333/Config/ConfigWritabilityCheckFile").is_some());
        assert!(skip("s3://b/AWSLogs/111122223333/CloudTrail/us-east-1/x.json.gz").is_none());
        assert!(
            skip("/tmp/exported-events").is_none(),
            "local files are read whatever their name"
        );
    }
}
