//! S3 log objects as blocking readers, and prefix listings for backfills.
//!
//! The reading pipeline is synchronous and CPU-bound, so an object's body is bridged from the
//! async SDK into a blocking reader that runs on a worker thread; the body streams, it is
//! never buffered whole. GetObject failures are classified here, once.

use std::io::Read;

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::GetObjectError;
use tokio::runtime::Handle;
use tokio_util::io::SyncIoBridge;

use std::sync::Arc;

use super::{Objects, SourceError};
use crate::aws;
use crate::telemetry::Metrics;

/// Splits `s3://bucket/prefix` into bucket and prefix.
pub fn parse_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then(|| (bucket.to_owned(), prefix.to_owned()))
}

/// Lists every object key under `prefix` (ListObjectsV2, all pages).
pub async fn list(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<String>, SourceError> {
    let mut keys = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            let f = aws::failed(&format!("S3 ListObjectsV2 s3://{bucket}/{prefix}"), &e);
            SourceError::Failed {
                sentence: f.sentence,
                transient: f.transient,
            }
        })?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
    }
    Ok(keys)
}

/// Starts GetObject and returns the body as a blocking reader bound to `handle`'s runtime.
pub async fn open(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    handle: Handle,
) -> Result<impl Read + Send + 'static, SourceError> {
    match client.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => Ok(SyncIoBridge::new_with_handle(
            out.body.into_async_read(),
            handle,
        )),
        Err(e) => Err(classify(&e, bucket, key)),
    }
}

/// Log objects in S3, counted in the AWS request metrics.
pub struct S3Objects {
    client: aws_sdk_s3::Client,
    metrics: Arc<Metrics>,
}

impl S3Objects {
    pub fn new(client: aws_sdk_s3::Client, metrics: Arc<Metrics>) -> S3Objects {
        S3Objects { client, metrics }
    }
}

#[async_trait::async_trait]
impl Objects for S3Objects {
    async fn open(&self, bucket: &str, key: &str) -> Result<Box<dyn Read + Send>, SourceError> {
        self.metrics.aws_request("GetObject");
        let body = open(&self.client, bucket, key, Handle::current()).await?;
        Ok(Box::new(body))
    }
}

fn classify(
    e: &SdkError<GetObjectError, aws_smithy_runtime_api::http::Response>,
    bucket: &str,
    key: &str,
) -> SourceError {
    let (bucket, key) = (bucket.to_owned(), key.to_owned());
    if let SdkError::ServiceError(ctx) = e
        && ctx.err().is_no_such_key()
    {
        return SourceError::NotFound { bucket, key };
    }
    let f = aws::failed(&format!("S3 GetObject s3://{bucket}/{key}"), e);
    match f.code.as_deref() {
        Some("NoSuchKey") => SourceError::NotFound { bucket, key },
        Some("AccessDenied" | "KMS.AccessDeniedException" | "AccessDeniedException") => {
            SourceError::AccessDenied {
                bucket,
                key,
                reason: f.sentence,
            }
        }
        _ => SourceError::Failed {
            transient: f.transient,
            sentence: f.sentence,
        },
    }
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
        let classify = |status, code| classify(&service_error(status, code), "trail", "k");
        assert!(matches!(
            classify(404, "NoSuchKey"),
            SourceError::NotFound { .. }
        ));
        let denied = classify(403, "AccessDenied");
        assert!(matches!(denied, SourceError::AccessDenied { .. }));
        assert!(
            denied.to_string().contains("kms:Decrypt"),
            "the hint names the usual cause"
        );
        assert!(classify(503, "SlowDown").is_transient());
        assert!(classify(500, "InternalError").is_transient());
        assert!(classify(400, "ThrottlingException").is_transient());
        assert!(!classify(400, "InvalidObjectState").is_transient());
        assert!(
            classify(503, "SlowDown")
                .to_string()
                .starts_with("S3 GetObject s3://trail/k failed: SlowDown"),
        );
    }

    #[test]
    fn s3_urls() {
        assert_eq!(
            parse_url("s3://trail/AWSLogs/1/"),
            Some(("trail".into(), "AWSLogs/1/".into()))
        );
        assert_eq!(parse_url("s3://trail"), Some(("trail".into(), "".into())));
        assert_eq!(parse_url("s3:///x"), None);
        assert_eq!(parse_url("/tmp/x"), None);
    }
}
