//! Where log bytes come from: a local file, stdin, or an S3 object, as a blocking `Read`.
//!
//! The engine is synchronous and CPU-bound, so S3 bodies are bridged from the async SDK into a
//! blocking reader that runs on a worker thread; the body streams, it is never buffered whole.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Error;
use tokio::runtime::Handle;
use tokio_util::io::SyncIoBridge;

use crate::aws;

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

/// Why an object could not be fetched. The variants are the operator's next step.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// Gone before we read it: deleted, expired by a lifecycle rule, or a stale notification.
    #[error(
        "s3://{bucket}/{key} does not exist (NoSuchKey); it was deleted or expired before it was read"
    )]
    NotFound { bucket: String, key: String },
    /// The role may not read it.
    #[error(
        "access denied reading s3://{bucket}/{key}: the role needs s3:GetObject on the object, and kms:Decrypt on the trail's key when the bucket uses SSE-KMS"
    )]
    AccessDenied { bucket: String, key: String },
    /// Anything else; `transient` says whether a retry may succeed.
    #[error("cannot read s3://{bucket}/{key}: {message}")]
    Failed {
        bucket: String,
        key: String,
        message: String,
        transient: bool,
    },
    /// A local file could not be opened.
    #[error("cannot open {path}: {source}")]
    Local {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Listing a prefix failed.
    #[error("cannot list s3://{bucket}/{prefix}: {message}")]
    List {
        bucket: String,
        prefix: String,
        message: String,
    },
}

impl ObjectError {
    /// Whether trying again later may succeed (throttling, timeouts, 5xx).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ObjectError::Failed {
                transient: true,
                ..
            }
        )
    }
}

/// Splits `s3://bucket/prefix` into bucket and prefix.
pub fn parse_s3_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then(|| (bucket.to_owned(), prefix.to_owned()))
}

/// Whether a file found while walking a directory looks like a CloudTrail log file.
fn is_log_name(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".json.gz") || name.ends_with(".json") || name.ends_with(".gz")
}

/// Expands a local path: a file as itself, a directory into its log files (recursively, in
/// name order), `-` into stdin.
pub fn expand_local(path: &str) -> Result<Vec<LogSource>, ObjectError> {
    if path == "-" {
        return Ok(vec![LogSource::Stdin]);
    }
    let root = PathBuf::from(path);
    let meta = std::fs::metadata(&root).map_err(|source| ObjectError::Local {
        path: root.clone(),
        source,
    })?;
    if !meta.is_dir() {
        return Ok(vec![LogSource::File(root)]);
    }
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(&root).sort_by_file_name() {
        let entry = entry.map_err(|e| ObjectError::Local {
            path: e.path().map(Path::to_owned).unwrap_or_else(|| root.clone()),
            source: e.into(),
        })?;
        if entry.file_type().is_file() && is_log_name(entry.path()) {
            out.push(LogSource::File(entry.into_path()));
        }
    }
    Ok(out)
}

/// Opens a local source for reading.
pub fn open_local(source: &LogSource) -> Result<Box<dyn Read + Send>, ObjectError> {
    match source {
        LogSource::File(path) => std::fs::File::open(path)
            .map(|f| Box::new(f) as Box<dyn Read + Send>)
            .map_err(|source| ObjectError::Local {
                path: path.clone(),
                source,
            }),
        LogSource::Stdin => Ok(Box::new(std::io::stdin())),
        LogSource::S3 { bucket, key } => Err(ObjectError::Failed {
            bucket: bucket.clone(),
            key: key.clone(),
            message: "S3 objects are opened with get_object".to_owned(),
            transient: false,
        }),
    }
}

/// Lists every object key under `prefix` (ListObjectsV2, all pages).
pub async fn list_objects(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<String>, ObjectError> {
    let mut keys = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e: SdkError<ListObjectsV2Error, _>| ObjectError::List {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            message: DisplayErrorContext(&e).to_string(),
        })?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
    }
    Ok(keys)
}

/// Starts GetObject and returns the body as an async stream.
pub async fn get_object(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<aws_sdk_s3::primitives::ByteStream, ObjectError> {
    match client.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => Ok(out.body),
        Err(e) => Err(classify_get(e, bucket, key)),
    }
}

fn classify_get(
    e: SdkError<GetObjectError, aws_smithy_runtime_api::http::Response>,
    bucket: &str,
    key: &str,
) -> ObjectError {
    let (bucket, key) = (bucket.to_owned(), key.to_owned());
    if let SdkError::ServiceError(ctx) = &e
        && ctx.err().is_no_such_key()
    {
        return ObjectError::NotFound { bucket, key };
    }
    match aws::error_code(&e) {
        Some("NoSuchKey") => ObjectError::NotFound { bucket, key },
        Some("AccessDenied" | "KMS.AccessDeniedException" | "AccessDeniedException") => {
            ObjectError::AccessDenied { bucket, key }
        }
        _ => ObjectError::Failed {
            transient: aws::is_transient(&e),
            message: DisplayErrorContext(&e).to_string(),
            bucket,
            key,
        },
    }
}

/// Bridges an S3 body into a blocking reader for a worker thread.
pub fn blocking_body(body: aws_sdk_s3::primitives::ByteStream, handle: Handle) -> impl Read + Send {
    SyncIoBridge::new_with_handle(body.into_async_read(), handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    use aws_sdk_s3::error::ErrorMetadata;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;

    fn service_error(status: u16, code: &str) -> SdkError<GetObjectError, Response> {
        let err = GetObjectError::generic(ErrorMetadata::builder().code(code).message("m").build());
        let raw = Response::new(
            StatusCode::try_from(status).expect("status"),
            SdkBody::empty(),
        );
        SdkError::service_error(err, raw)
    }

    #[test]
    fn get_object_errors_are_classified_once() {
        let classify = |status, code| classify_get(service_error(status, code), "trail", "k");
        assert!(matches!(
            classify(404, "NoSuchKey"),
            ObjectError::NotFound { .. }
        ));
        let denied = classify(403, "AccessDenied");
        assert!(matches!(denied, ObjectError::AccessDenied { .. }));
        assert!(
            denied.to_string().contains("kms:Decrypt"),
            "the hint names the usual cause"
        );
        assert!(classify(503, "SlowDown").is_transient());
        assert!(classify(500, "InternalError").is_transient());
        assert!(classify(400, "ThrottlingException").is_transient());
        assert!(!classify(400, "InvalidObjectState").is_transient());
    }

    #[test]
    fn s3_urls() {
        assert_eq!(
            parse_s3_url("s3://trail/AWSLogs/1/"),
            Some(("trail".into(), "AWSLogs/1/".into()))
        );
        assert_eq!(
            parse_s3_url("s3://trail"),
            Some(("trail".into(), "".into()))
        );
        assert_eq!(parse_s3_url("s3:///x"), None);
        assert_eq!(parse_s3_url("/tmp/x"), None);
    }
}
