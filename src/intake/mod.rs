//! Where work comes from: SQS messages that announce S3 log objects (or carry CloudTrail
//! events), the objects themselves, and local files for `scan`.
//!
//! - [`sqs`]: the queue seam: receive, change visibility, delete.
//! - [`notice`]: a message body → the objects it announces.
//! - [`s3`]: S3 objects as blocking readers, and prefix listings for backfills.
//! - [`listing`]: a prefix, a time range, accounts and regions → the CloudTrail keys to read.
//! - [`local`]: files, directories and stdin.
//! - [`event_history`]: CloudTrail's 90 days of event history (LookupEvents), page by page.

pub mod event_history;
pub mod listing;
pub mod local;
pub mod notice;
pub mod s3;
pub mod sqs;

use std::fmt;
use std::path::PathBuf;

use crate::aws;

/// One log file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSource {
    File(PathBuf),
    Stdin,
    S3 {
        bucket: String,
        key: String,
    },
    /// One page (one LookupEvents call) of a region's event history, numbered from 1.
    EventHistory {
        region: String,
        page: u64,
    },
}

impl fmt::Display for LogSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogSource::File(p) => write!(f, "{}", p.display()),
            LogSource::Stdin => f.write_str("-"),
            LogSource::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
            LogSource::EventHistory { region, page } => {
                write!(f, "event-history:{region}:page-{page}")
            }
        }
    }
}

/// Why a log source could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// S3 answered (or did not); [`aws::Failed::fault`] says what it means for the work.
    #[error(transparent)]
    S3(#[from] aws::Failed),
    /// CloudTrail's event history could not be read (LookupEvents failed).
    #[error(transparent)]
    EventHistory(aws::Failed),
    /// A local file could not be opened.
    #[error("cannot open {path}: {source}")]
    Local {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SourceError {
    /// What the failure means for the work that names the source.
    pub fn fault(&self) -> aws::Fault {
        match self {
            SourceError::S3(f) | SourceError::EventHistory(f) => f.fault,
            // A file named on the command line that cannot be opened stays unopenable.
            SourceError::Local { .. } => aws::Fault::Rejected,
        }
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
