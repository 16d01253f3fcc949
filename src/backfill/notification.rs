//! A listed log object → the message body S3 itself sends to SQS when an object is created,
//! so the daemon reads a backfilled object exactly as it reads one announced live.
//!
//! The shape is S3's event notification, version 2.1, one record per message as S3 sends it:
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html>.
//! The key is URL-encoded as S3 encodes it (a space as `+`), which
//! [`notice`](crate::intake::notice) decodes. `userIdentity.principalId` names
//! [`PRINCIPAL`] where S3 names the uploader: the daemon does not read it, and an operator
//! looking at a message in the queue or its dead-letter queue sees where it came from.

use chrono::{DateTime, SecondsFormat, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::json;

use crate::intake::listing::Listed;

/// The principal a backfilled notification names in place of the object's uploader.
pub const PRINCIPAL: &str = "trailwarden-backfill";

/// What S3 leaves as it is in an event's key: letters, digits, `-`, `_`, `.` and the `/`
/// between a key's segments. Everything else is percent-encoded, UTF-8 byte by byte.
const KEY_ENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'/');

/// Where the notifications are about: the bucket, and the region S3 would name in them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub name: String,
    /// `awsRegion`: the bucket's region, which is the region its objects are listed in.
    pub region: String,
}

/// `key` as S3 writes it into an event: percent-encoded, with `+` for a space.
pub fn encode_key(key: &str) -> String {
    // A `%` in the key is itself encoded (`%25`), so every `%20` in the output stands for a
    // space and nothing else.
    utf8_percent_encode(key, KEY_ENCODED)
        .to_string()
        .replace("%20", "+")
}

/// The ObjectCreated:Put notification for `object`. Its `eventTime` is the object's
/// LastModified, when S3 would have sent it, or `now` when the listing gave none.
pub fn body(bucket: &Bucket, object: &Listed, now: DateTime<Utc>) -> String {
    let time = object
        .modified
        .unwrap_or(now)
        .to_rfc3339_opts(SecondsFormat::Millis, true);
    json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": bucket.region,
        "eventTime": time,
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": PRINCIPAL},
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {
                "name": bucket.name,
                "arn": format!("arn:aws:s3:::{}", bucket.name),
            },
            "object": {
                "key": encode_key(&object.key),
                "size": object.size,
                "eTag": object.etag,
            },
        },
    }]})
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::notice::{self, Notice, ObjectRef};
    use proptest::prelude::*;

    fn bucket() -> Bucket {
        Bucket {
            name: "org-trail".into(),
            region: "eu-west-1".into(),
        }
    }

    fn listed(key: &str) -> Listed {
        Listed {
            key: key.into(),
            size: 2048,
            etag: "9b2cf535f27731c974343645a3985328".into(),
            modified: DateTime::from_timestamp(1_795_000_000, 0),
        }
    }

    fn parsed(key: &str) -> Result<Notice, notice::NoticeError> {
        notice::parse(&body(&bucket(), &listed(key), Utc::now()))
    }

    fn objects(key: &str) -> Notice {
        Notice::Objects(vec![ObjectRef {
            bucket: "org-trail".into(),
            key: key.into(),
        }])
    }

    #[test]
    fn every_body_reads_back_as_its_bucket_and_key() {
        for key in [
            "AWSLogs/o-abc123defg/111122223333/CloudTrail/eu-west-1/2026/11/02/111122223333_CloudTrail_eu-west-1_20261102T0905Z_a1b2.json.gz",
            "logs with space/AWSLogs/x y.json.gz",
            "a+b/c++d.json.gz",
            "a%20b/%2B%25.json.gz",
            "ünïcödé/日本語/🙂.json.gz",
            "k=v&x=y:z;@$,?#[]!'()*~ .json.gz",
            "tab\there/new\nline",
        ] {
            assert_eq!(parsed(key), Ok(objects(key)), "{key:?}");
        }
    }

    #[test]
    fn the_body_has_s3s_shape_and_the_backfill_marker() {
        let text = body(&bucket(), &listed("a b+c/d.json.gz"), Utc::now());
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        let record = &v["Records"][0];
        assert_eq!(v["Records"].as_array().map(Vec::len), Some(1));
        assert_eq!(record["eventVersion"], "2.1");
        assert_eq!(record["eventSource"], "aws:s3");
        assert_eq!(record["eventName"], "ObjectCreated:Put");
        assert_eq!(record["awsRegion"], "eu-west-1");
        assert_eq!(record["eventTime"], "2026-11-18T11:06:40.000Z");
        assert_eq!(record["userIdentity"]["principalId"], PRINCIPAL);
        assert_eq!(record["s3"]["s3SchemaVersion"], "1.0");
        assert_eq!(record["s3"]["bucket"]["arn"], "arn:aws:s3:::org-trail");
        let object = &record["s3"]["object"];
        assert_eq!(object["key"], "a+b%2Bc/d.json.gz");
        assert_eq!(object["size"], 2048);
        assert_eq!(object["eTag"], "9b2cf535f27731c974343645a3985328");
    }

    proptest! {
        #[test]
        fn any_key_reads_back(key in "\\PC{1,300}") {
            prop_assert_eq!(parsed(&key), Ok(objects(&key)));
        }
    }
}
