//! An SQS message body → the S3 objects it announces.
//!
//! Every shape AWS produces is accepted (see `AWS_FACTS`):
//! - S3 event notifications, sent directly or through SNS (raw delivery on or off);
//! - EventBridge "Object Created" events;
//! - CloudTrail's own SNS notice (`s3Bucket` + `s3ObjectKey`);
//! - the `s3:TestEvent` S3 sends when notifications are configured.
//!
//! Parsing is lenient about fields we do not need and strict about the ones we do: a body
//! that matches no shape is an error, so the message is left for the dead-letter queue.
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html>

use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::Value;

/// An S3 object named by a notification.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    pub bucket: String,
    /// The key, decoded.
    pub key: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// What a message asks of us.
#[derive(Debug, PartialEq, Eq)]
pub enum Notice {
    /// Read these objects.
    Objects(Vec<ObjectRef>),
    /// S3's test event: nothing to read; acknowledge it.
    TestEvent,
    /// A recognised notification that needs no work (e.g. ObjectRemoved); acknowledge it.
    Ignored(String),
}

/// Why a body could not be understood.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum NoticeError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error(
        "body is not a known S3, SNS, EventBridge or CloudTrail notification (top-level keys: {0})"
    )]
    Unrecognised(String),
    #[error("notification names an object key that is not valid URL-encoded UTF-8: {0:?}")]
    BadKey(String),
}

/// Parses a message body.
pub fn parse(body: &str) -> Result<Notice, NoticeError> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| NoticeError::NotJson(e.to_string()))?;
    parse_value(&value, 0)
}

fn parse_value(value: &Value, depth: u8) -> Result<Notice, NoticeError> {
    let unrecognised = || {
        let keys = match value.as_object() {
            Some(o) => o.keys().take(8).cloned().collect::<Vec<_>>().join(", "),
            None => "none: not an object".to_owned(),
        };
        NoticeError::Unrecognised(keys)
    };
    let obj = value.as_object().ok_or_else(unrecognised)?;

    // SNS envelope: the payload is a JSON string in `Message`. One level only.
    if depth == 0
        && obj.get("Type").and_then(Value::as_str) == Some("Notification")
        && let Some(inner) = obj.get("Message").and_then(Value::as_str)
    {
        let inner: Value = serde_json::from_str(inner)
            .map_err(|e| NoticeError::NotJson(format!("SNS Message: {e}")))?;
        return parse_value(&inner, depth + 1);
    }

    if obj.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Notice::TestEvent);
    }

    if obj.contains_key("Records") {
        let event: S3Event = serde_json::from_value(value.clone()).map_err(|_| unrecognised())?;
        return s3_event(event);
    }

    if obj.get("source").and_then(Value::as_str) == Some("aws.s3") && obj.contains_key("detail") {
        let event: EventBridge =
            serde_json::from_value(value.clone()).map_err(|_| unrecognised())?;
        if event.detail_type != "Object Created" {
            return Ok(Notice::Ignored(format!(
                "EventBridge {}",
                event.detail_type
            )));
        }
        return Ok(Notice::Objects(vec![ObjectRef {
            bucket: event.detail.bucket.name,
            key: event.detail.object.key,
        }]));
    }

    if obj.contains_key("s3Bucket") && obj.contains_key("s3ObjectKey") {
        let notice: CloudTrailNotice =
            serde_json::from_value(value.clone()).map_err(|_| unrecognised())?;
        return Ok(Notice::Objects(
            notice
                .s3_object_key
                .into_iter()
                .map(|key| ObjectRef {
                    bucket: notice.s3_bucket.clone(),
                    key,
                })
                .collect(),
        ));
    }

    Err(unrecognised())
}

fn s3_event(event: S3Event) -> Result<Notice, NoticeError> {
    let mut objects = Vec::new();
    let mut ignored = Vec::new();
    for record in event.records {
        if !record.event_name.starts_with("ObjectCreated:") {
            ignored.push(record.event_name);
            continue;
        }
        objects.push(ObjectRef {
            bucket: record.s3.bucket.name,
            key: decode_key(&record.s3.object.key)?,
        });
    }
    if objects.is_empty() {
        return Ok(Notice::Ignored(format!("S3 events {}", ignored.join(", "))));
    }
    Ok(Notice::Objects(objects))
}

/// S3 event keys are URL-encoded with `+` for a space (form encoding).
fn decode_key(key: &str) -> Result<String, NoticeError> {
    let spaced = key.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| NoticeError::BadKey(key.to_owned()))
}

#[derive(Deserialize)]
struct S3Event {
    #[serde(rename = "Records")]
    records: Vec<S3Record>,
}

#[derive(Deserialize)]
struct S3Record {
    #[serde(rename = "eventName", default)]
    event_name: String,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: BucketRef,
    object: ObjectKey,
}

#[derive(Deserialize)]
struct BucketRef {
    name: String,
}

#[derive(Deserialize)]
struct ObjectKey {
    key: String,
}

#[derive(Deserialize)]
struct EventBridge {
    #[serde(rename = "detail-type", default)]
    detail_type: String,
    detail: S3Entity,
}

#[derive(Deserialize)]
struct CloudTrailNotice {
    #[serde(rename = "s3Bucket")]
    s3_bucket: String,
    #[serde(rename = "s3ObjectKey")]
    s3_object_key: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(bucket: &str, key: &str) -> ObjectRef {
        ObjectRef {
            bucket: bucket.into(),
            key: key.into(),
        }
    }

    const DIRECT: &str = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventName":"ObjectCreated:Put","s3":{"s3SchemaVersion":"1.0","bucket":{"name":"trail","arn":"arn:aws:s3:::trail"},"object":{"key":"AWSLogs%2F111122223333%2FCloudTrail%2Fa+b.json.gz","size":1024}}},{"eventName":"ObjectCreated:CompleteMultipartUpload","s3":{"bucket":{"name":"trail"},"object":{"key":"k%3D2.json.gz"}}}]}"#;

    #[test]
    fn direct_s3_event_with_encoded_keys() {
        assert_eq!(
            parse(DIRECT),
            Ok(Notice::Objects(vec![
                obj("trail", "AWSLogs/111122223333/CloudTrail/a b.json.gz"),
                obj("trail", "k=2.json.gz"),
            ]))
        );
    }

    #[test]
    fn sns_wrapped_s3_event() {
        let body = serde_json::json!({
            "Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:1:t",
            "Message": DIRECT,
        })
        .to_string();
        assert!(matches!(parse(&body), Ok(Notice::Objects(v)) if v.len() == 2));
    }

    #[test]
    fn test_event_direct_and_wrapped() {
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-20T09:00:00.000Z","Bucket":"trail","RequestId":"r","HostId":"h"}"#;
        assert_eq!(parse(test), Ok(Notice::TestEvent));
        let wrapped = serde_json::json!({"Type": "Notification", "Message": test}).to_string();
        assert_eq!(parse(&wrapped), Ok(Notice::TestEvent));
    }

    #[test]
    fn eventbridge_keys_are_not_decoded() {
        let body = r#"{"version":"0","id":"x","detail-type":"Object Created","source":"aws.s3","account":"111122223333","region":"us-east-1","detail":{"version":"0","bucket":{"name":"trail"},"object":{"key":"AWSLogs/a+b%2.json.gz","size":5}}}"#;
        assert_eq!(
            parse(body),
            Ok(Notice::Objects(vec![obj("trail", "AWSLogs/a+b%2.json.gz")]))
        );
    }

    #[test]
    fn cloudtrail_sns_notice() {
        let inner =
            r#"{"s3Bucket":"trail","s3ObjectKey":["AWSLogs/1/a.json.gz","AWSLogs/1/b.json.gz"]}"#;
        let body = serde_json::json!({"Type": "Notification", "Message": inner}).to_string();
        assert_eq!(
            parse(&body),
            Ok(Notice::Objects(vec![
                obj("trail", "AWSLogs/1/a.json.gz"),
                obj("trail", "AWSLogs/1/b.json.gz")
            ]))
        );
    }

    #[test]
    fn removals_are_ignored() {
        let body = r#"{"Records":[{"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"t"},"object":{"key":"k"}}}]}"#;
        assert!(matches!(parse(body), Ok(Notice::Ignored(_))));
    }

    #[test]
    fn garbage_is_an_error() {
        for body in [
            "",
            "null",
            "[1]",
            "{\"hello\":1}",
            "{\"Records\":5}",
            "\u{0}\u{1}",
            "{\"Type\":\"Notification\",\"Message\":\"{\"}",
        ] {
            assert!(parse(body).is_err(), "{body:?}");
        }
        assert!(matches!(
            parse(
                r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"t"},"object":{"key":"%FF"}}}]}"#
            ),
            Err(NoticeError::BadKey(_))
        ));
    }
}
