//! CloudTrail log files: bytes in, one lazily parsed record at a time out.
//!
//! - [`reader`]: gunzip (size-capped) and split the `Records` array without holding it whole.
//! - [`record`]: the lenient, lazily parsed view of one record that rules read.

pub mod reader;
pub mod record;

pub use reader::{Finish, LogReader, RawRecord, ReadError, open};
pub use record::Record;

/// Why a log object is skipped without being read, judged from its key or path alone.
///
/// Digest files (`CloudTrail-Digest`) hold hashes of log files, not events.
/// <https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-log-file-validation-digest-file-structure.html>
pub fn skip_reason(key: &str) -> Option<&'static str> {
    if key.contains("CloudTrail-Digest") {
        return Some("digest file (holds log file hashes, not events)");
    }
    None
}

/// Why an S3 object announced to the daemon is not a CloudTrail log file, judged from its key.
///
/// CloudTrail writes only `.json.gz` objects; buckets shared with other services also hold
/// files such as AWS Config's `ConfigWritabilityCheckFile`, which must not read as damaged logs.
/// (Local files given to `scan` are read whatever their name.)
pub fn skip_object_key(key: &str) -> Option<&'static str> {
    if key.ends_with(".json.gz") || key.ends_with(".json") {
        return None;
    }
    Some("not a CloudTrail log file name (CloudTrail writes .json.gz objects)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_keys_are_skipped_and_insights_read() {
        let digest = "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/11/20/111122223333_CloudTrail-Digest_us-east-1_trail_us-east-1_20261120T100000Z.json.gz";
        assert!(skip_reason(digest).is_some());
        let insight = "AWSLogs/111122223333/CloudTrail-Insight/us-east-1/2026/11/20/x.json.gz";
        assert!(skip_reason(insight).is_none());
        assert!(
            skip_object_key("AWSLogs/111122223333/Config/ConfigWritabilityCheckFile").is_some()
        );
        assert!(skip_object_key("AWSLogs/111122223333/CloudTrail/us-east-1/x.json.gz").is_none());
    }
}
