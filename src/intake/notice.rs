//! An SQS message body → the S3 objects it announces, or the CloudTrail event it carries.
//!
//! Every shape AWS produces is accepted (see `AWS_FACTS`):
//! - S3 event notifications, sent directly or through SNS (raw delivery on or off);
//! - EventBridge "Object Created" events;
//! - CloudTrail events delivered by EventBridge (the fast path): the record is in the message;
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

/// A CloudTrail event delivered by EventBridge: the record itself, no log file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The EventBridge event id.
    pub id: String,
    /// The region EventBridge received it in.
    pub region: String,
    /// The CloudTrail record (the envelope's `detail`), as JSON.
    pub record: String,
}

impl Event {
    /// Names the event as an alert's source: `eventbridge:<region>:<event id>`.
    pub fn source(&self) -> String {
        format!("eventbridge:{}:{}", self.region, self.id)
    }
}

/// The detail-types CloudTrail puts on EventBridge whose `detail` is a CloudTrail record. The
/// EventBridge guide spells the sign-in one `Signin`, CloudTrail's own guide `Sign In`.
/// <https://docs.aws.amazon.com/eventbridge/latest/ref/events-structure.html>
pub const CLOUDTRAIL_DETAIL_TYPES: &[&str] = &[
    "AWS API Call via CloudTrail",
    "AWS Console Sign In via CloudTrail",
    "AWS Console Signin via CloudTrail",
    "AWS Console Action via CloudTrail",
    "AWS Service Event via CloudTrail",
];

/// What a message asks of us.
#[derive(Debug, PartialEq, Eq)]
pub enum Notice {
    /// Read these objects.
    Objects(Vec<ObjectRef>),
    /// Evaluate this event.
    Event(Event),
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
    #[error("EventBridge {0} event {1:?} carries no CloudTrail record in its detail")]
    NoRecord(String, String),
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

    if let Some(detail_type) = obj.get("detail-type").and_then(Value::as_str) {
        return eventbridge(obj, detail_type).ok_or_else(unrecognised)?;
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

/// An EventBridge envelope: a CloudTrail event, an S3 "Object Created" event, or anything else
/// (acknowledged and logged: it was routed here by mistake and there is nothing to read).
/// `None` when it does not have an envelope's shape.
fn eventbridge(
    obj: &serde_json::Map<String, Value>,
    detail_type: &str,
) -> Option<Result<Notice, NoticeError>> {
    let source = obj.get("source").and_then(Value::as_str)?;
    let id = obj.get("id").and_then(Value::as_str).unwrap_or("");
    let detail = obj.get("detail");
    if CLOUDTRAIL_DETAIL_TYPES.contains(&detail_type) {
        // A record always has an eventID and an eventTime; without them there is nothing to
        // evaluate, and the message is kept for the dead-letter queue.
        let record = detail.filter(|d| {
            d.get("eventID").is_some_and(Value::is_string)
                && d.get("eventTime").is_some_and(Value::is_string)
        });
        return Some(match record {
            Some(record) => Ok(Notice::Event(Event {
                id: id.to_owned(),
                region: obj
                    .get("region")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_owned(),
                record: record.to_string(),
            })),
            None => Err(NoticeError::NoRecord(detail_type.to_owned(), id.to_owned())),
        });
    }
    if source == "aws.s3" && detail_type == "Object Created" {
        let entity: S3Entity = serde_json::from_value(detail?.clone()).ok()?;
        return Some(Ok(Notice::Objects(vec![ObjectRef {
            bucket: entity.bucket.name,
            key: entity.object.key,
        }])));
    }
    Some(Ok(Notice::Ignored(format!(
        "EventBridge {detail_type:?} event from {source:?} (not a CloudTrail event or log file)"
    ))))
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

    fn envelope(detail_type: &str, source: &str, detail: serde_json::Value) -> String {
        serde_json::json!({"version": "0", "id": "eb-1", "detail-type": detail_type,
            "source": source, "account": "111122223333", "time": "2026-11-20T09:03:12Z",
            "region": "us-east-1", "resources": [], "detail": detail,
            "ingestion-time": "2026-11-20T09:03:12Z"})
        .to_string()
    }

    #[test]
    fn cloudtrail_events_from_eventbridge_carry_their_record() {
        let record = serde_json::json!({"eventVersion": "1.08", "eventID": "e1",
            "eventTime": "2026-11-20T09:03:11Z", "eventSource": "signin.amazonaws.com",
            "eventName": "ConsoleLogin", "userIdentity": {"type": "Root"}});
        for detail_type in CLOUDTRAIL_DETAIL_TYPES {
            let source = if detail_type.contains("Sign") {
                "aws.signin"
            } else {
                "aws.s3"
            };
            match parse(&envelope(detail_type, source, record.clone())) {
                Ok(Notice::Event(e)) => {
                    assert_eq!(e.source(), "eventbridge:us-east-1:eb-1");
                    let back: serde_json::Value = serde_json::from_str(&e.record).expect("json");
                    assert_eq!(back, record);
                }
                other => panic!("{detail_type}: {other:?}"),
            }
        }
        // Through SNS as well.
        let wrapped = serde_json::json!({"Type": "Notification",
            "Message": envelope("AWS API Call via CloudTrail", "aws.iam", record.clone())})
        .to_string();
        assert!(matches!(parse(&wrapped), Ok(Notice::Event(_))));
    }

    #[test]
    fn foreign_and_empty_eventbridge_events() {
        let foreign = envelope(
            "EC2 Instance State-change Notification",
            "aws.ec2",
            serde_json::json!({"instance-id": "i-1", "state": "running"}),
        );
        assert!(matches!(parse(&foreign), Ok(Notice::Ignored(_))));
        for detail in [
            serde_json::json!(null),
            serde_json::json!({"eventName": "x"}),
            serde_json::json!("text"),
        ] {
            let empty = envelope("AWS API Call via CloudTrail", "aws.iam", detail);
            assert!(
                matches!(parse(&empty), Err(NoticeError::NoRecord(..))),
                "{empty}"
            );
        }
        let mut no_detail: serde_json::Value = serde_json::from_str(&envelope(
            "AWS API Call via CloudTrail",
            "aws.iam",
            serde_json::json!({}),
        ))
        .expect("json");
        no_detail.as_object_mut().expect("object").remove("detail");
        assert!(parse(&no_detail.to_string()).is_err());
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
