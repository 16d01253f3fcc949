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
use crate::aws::{self, Answer, Edge};
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
            aws::failed(
                Edge::Object,
                &format!("S3 ListObjectsV2 s3://{bucket}/{prefix}"),
                &e,
            )
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

/// Bodies up to this size are read whole by [`fetch`], so that many can be in flight while
/// workers inflate others; larger ones stream to the worker as [`open`] does.
pub const FETCH_WHOLE_BYTES: i64 = 16 * 1024 * 1024;

/// GetObject with the body read whole when it is small, so the network wait happens here,
/// on the runtime, and not on a worker thread; a larger body streams (see [`open`]). A body
/// that breaks while being read becomes a reader that fails, as a broken stream would.
pub async fn fetch(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    handle: Handle,
) -> Result<Box<dyn Read + Send>, SourceError> {
    let out = match client.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => out,
        Err(e) => return Err(classify(&e, bucket, key)),
    };
    if out.content_length().is_none_or(|n| n > FETCH_WHOLE_BYTES) {
        return Ok(Box::new(SyncIoBridge::new_with_handle(
            out.body.into_async_read(),
            handle,
        )));
    }
    match out.body.collect().await {
        Ok(bytes) => Ok(Box::new(std::io::Cursor::new(bytes.into_bytes()))),
        Err(e) => Ok(Box::new(Failing(Some(std::io::Error::other(e))))),
    }
}

/// A reader whose first read fails with the error it holds.
struct Failing(Option<std::io::Error>);

impl Read for Failing {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(self
            .0
            .take()
            .unwrap_or_else(|| std::io::Error::other("the body already failed")))
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

/// Describes a failed GetObject, with the operator's next step for the answers that have one.
fn classify(
    e: &SdkError<GetObjectError, aws_smithy_runtime_api::http::Response>,
    bucket: &str,
    key: &str,
) -> SourceError {
    let mut f = aws::failed(
        Edge::Object,
        &format!("S3 GetObject s3://{bucket}/{key}"),
        e,
    );
    match f.answer {
        Answer::Missing => {
            f.sentence
                .push_str("; it was deleted or expired before it was read");
        }
        Answer::Denied => f.sentence.push_str(
            "; the role needs s3:GetObject on the object, and kms:Decrypt on the trail's key when the bucket uses SSE-KMS",
        ),
        Answer::Unavailable | Answer::Invalid => {}
    }
    SourceError::S3(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::aws::Fault;
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
        let fault = |status, code| classify(status, code).fault();
        assert_eq!(fault(404, "NoSuchKey"), Fault::Gone);
        let denied = classify(403, "AccessDenied");
        assert_eq!(denied.fault(), Fault::Rejected);
        assert!(
            denied.to_string().contains("kms:Decrypt"),
            "the hint names the usual cause"
        );
        assert_eq!(fault(503, "SlowDown"), Fault::Outage);
        assert_eq!(fault(500, "InternalError"), Fault::Outage);
        assert_eq!(fault(400, "ThrottlingException"), Fault::Outage);
        assert_eq!(fault(403, "InvalidObjectState"), Fault::Rejected);
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
