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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_keys_are_skipped_and_insights_read() {
        let digest = "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/11/20/111122223333_CloudTrail-Digest_us-east-1_trail_us-east-1_20261120T100000Z.json.gz";
        assert!(skip_reason(digest).is_some());
        let insight = "AWSLogs/111122223333/CloudTrail-Insight/us-east-1/2026/11/20/x.json.gz";
        assert!(skip_reason(insight).is_none());
    }
}
