//! Where work comes from: SQS messages that announce S3 log objects (or carry CloudTrail
//! events), the objects themselves, and local files for `scan`.
//!
//! - [`sqs`]: the queue seam: receive, change visibility, delete.
//! - [`notice`]: a message body → the objects it announces.
//! - [`s3`]: S3 objects as blocking readers, and prefix listings for backfills.
//! - [`local`]: files, directories and stdin.

pub mod local;
pub mod notice;
pub mod s3;
pub mod sqs;

use std::fmt;
use std::path::PathBuf;

/// One log file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSource {
    File(PathBuf),
    Stdin,
    S3 { bucket: String, key: String },
}

impl fmt::Display for LogSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogSource::File(p) => write!(f, "{}", p.display()),
            LogSource::Stdin => f.write_str("-"),
            LogSource::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// Why a log source could not be opened. The variants are the operator's next step.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Gone before we read it: deleted, expired by a lifecycle rule, or a stale notification.
    #[error(
        "s3://{bucket}/{key} does not exist (NoSuchKey); it was deleted or expired before it was read"
    )]
    NotFound { bucket: String, key: String },
    /// The role may not read it.
    #[error(
        "access denied reading s3://{bucket}/{key}: the role needs s3:GetObject on the object, and kms:Decrypt on the trail's key when the bucket uses SSE-KMS ({reason})"
    )]
    AccessDenied {
        bucket: String,
        key: String,
        reason: String,
    },
    /// Anything else; `transient` says whether a retry may succeed.
    #[error("{sentence}")]
    Failed { sentence: String, transient: bool },
    /// A local file could not be opened.
    #[error("cannot open {path}: {source}")]
    Local {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SourceError {
    /// Whether trying again later may succeed (throttling, timeouts, 5xx, network).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SourceError::Failed {
                transient: true,
                ..
            }
        )
    }
}

/// Where the daemon reads log objects from: the seam over S3 GetObject.
#[async_trait::async_trait]
pub trait Objects: Send + Sync {
    /// Opens an object's body as a blocking reader, for a worker thread.
    async fn open(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Box<dyn std::io::Read + Send>, SourceError>;
}
