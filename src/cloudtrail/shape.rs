//! One item of an export (see [`super::reader::Shapes::Any`]) → the JSON of the CloudTrail
//! record inside it, or why there is none.
//!
//! - An element of `Records` is the record.
//! - A lookup-events entry carries the record as a JSON string in `CloudTrailEvent`.
//!   <https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_Event.html>
//! - A CloudTrail Lake `get-query-results` row is a list of one-column maps, every value a
//!   string; the whole record is the `eventJson` column (`SELECT eventJson FROM <store>`).
//!   Rows of other columns (`SELECT eventName, ...`, `SELECT *`) hold no record to rebuild.
//!   <https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_GetQueryResults.html>
//! - An EventBridge event from CloudTrail carries the record in `detail`.
//!   <https://docs.aws.amazon.com/eventbridge/latest/ref/events-structure.html>
//! - Any other object is a record when it has a record's keys.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::reader::Item;

/// A record's JSON taken out of an item.
#[derive(Debug)]
pub struct Unwrapped<'a> {
    /// The record's JSON text.
    pub json: Cow<'a, [u8]>,
    /// What held it, for messages about a record that does not parse ("" for a bare record);
    /// a lookup-events entry is named by its EventId.
    pub within: Cow<'static, str>,
}

/// The keys of an item that tell its shape; everything else is ignored.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(rename = "detail-type", borrow)]
    detail_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    detail: Option<&'a RawValue>,
    #[serde(rename = "CloudTrailEvent", borrow)]
    cloudtrail_event: Option<Cow<'a, str>>,
    #[serde(rename = "EventId", borrow)]
    lookup_event_id: Option<Cow<'a, str>>,
    #[serde(rename = "eventVersion")]
    event_version: Option<IgnoredAny>,
    #[serde(rename = "eventName")]
    event_name: Option<IgnoredAny>,
    #[serde(rename = "eventID")]
    event_id: Option<IgnoredAny>,
    #[serde(rename = "digestStartTime")]
    digest_start_time: Option<IgnoredAny>,
}

/// The record inside `bytes`, an item of kind `item`, or why it holds none.
pub fn record_json(item: Item, bytes: &[u8]) -> Result<Unwrapped<'_>, String> {
    match item {
        Item::Record => Ok(Unwrapped {
            json: Cow::Borrowed(bytes),
            within: Cow::Borrowed(""),
        }),
        Item::LakeRow => lake_row(bytes),
        Item::LookupEvent | Item::Unknown => {
            match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'{') => {}
                Some(b'[') if item == Item::Unknown => return lake_row(bytes),
                _ => return Err(format!("{}, not a CloudTrail record", json_kind(bytes))),
            }
            let probe: Probe<'_> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
            if let Some(event) = probe.cloudtrail_event {
                let within = match probe.lookup_event_id {
                    Some(id) => Cow::Owned(format!(
                        "the CloudTrailEvent string of lookup-events entry {id}"
                    )),
                    None => Cow::Borrowed("the CloudTrailEvent string of a lookup-events entry"),
                };
                return Ok(Unwrapped {
                    json: Cow::Owned(event.into_owned().into_bytes()),
                    within,
                });
            }
            if item == Item::LookupEvent {
                return Err("a lookup-events entry without CloudTrailEvent".to_owned());
            }
            if let (Some(kind), Some(detail)) = (&probe.detail_type, probe.detail) {
                // CloudTrail's detail-types all end "via CloudTrail"; other services' events
                // carry their own detail, not a record.
                if !kind.ends_with("via CloudTrail") {
                    return Err(format!(
                        "an EventBridge event of detail-type {kind:?}, not one from CloudTrail"
                    ));
                }
                return Ok(Unwrapped {
                    json: Cow::Borrowed(detail.get().as_bytes()),
                    within: Cow::Borrowed("the detail of an EventBridge event"),
                });
            }
            if probe.event_version.is_some()
                || probe.event_name.is_some()
                || probe.event_id.is_some()
            {
                return Ok(Unwrapped {
                    json: Cow::Borrowed(bytes),
                    within: Cow::Borrowed(""),
                });
            }
            if probe.digest_start_time.is_some() {
                return Err(
                    "a CloudTrail digest file (it holds log file hashes, not events)".to_owned(),
                );
            }
            Err(format!(
                "not a CloudTrail record, EventBridge event or lookup-events entry: an object with keys {}",
                keys(bytes)
            ))
        }
    }
}

/// A Lake row `[{"eventJson":"..."}, {"col":"..."}]` → its `eventJson` column.
fn lake_row(bytes: &[u8]) -> Result<Unwrapped<'_>, String> {
    let row: Vec<BTreeMap<String, serde_json::Value>> = serde_json::from_slice(bytes)
        .map_err(|e| format!("a CloudTrail Lake result row must be a list of columns: {e}"))?;
    let mut columns = Vec::new();
    for (name, value) in row.into_iter().flatten() {
        if name.eq_ignore_ascii_case("eventjson") {
            return match value {
                serde_json::Value::String(json) => Ok(Unwrapped {
                    json: Cow::Owned(json.into_bytes()),
                    within: Cow::Borrowed("the eventJson column of a CloudTrail Lake row"),
                }),
                other => Err(format!(
                    "the eventJson column of a CloudTrail Lake row is {}, not a string",
                    json_kind(other.to_string().as_bytes())
                )),
            };
        }
        columns.push(name);
    }
    Err(format!(
        "a CloudTrail Lake result row without an eventJson column (columns: {}): the export \
         holds no whole records; query SELECT eventJson FROM <event data store>",
        columns.join(", ")
    ))
}

/// The first keys of a JSON object, for a message.
fn keys(bytes: &[u8]) -> String {
    let Ok(map) = serde_json::from_slice::<BTreeMap<String, IgnoredAny>>(bytes) else {
        return "that cannot be listed".to_owned();
    };
    if map.is_empty() {
        return "(none)".to_owned();
    }
    let mut names: Vec<&str> = map.keys().map(String::as_str).take(8).collect();
    if map.len() > names.len() {
        names.push("...");
    }
    names.join(", ")
}

/// "a JSON number", "a JSON string", ... from a value's first byte.
fn json_kind(bytes: &[u8]) -> &'static str {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => "a JSON object",
        Some(b'[') => "a JSON array",
        Some(b'"') => "a JSON string",
        Some(b't' | b'f') => "a JSON boolean",
        Some(b'n') => "JSON null",
        Some(b'-' | b'0'..=b'9') => "a JSON number",
        _ => "not JSON",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(item: Item, bytes: &str) -> Result<String, String> {
        record_json(item, bytes.as_bytes())
            .map(|u| String::from_utf8(u.json.into_owned()).expect("utf8"))
    }

    #[test]
    fn each_wrapper_gives_its_record() {
        let rec = r#"{"eventVersion":"1.08","eventName":"ConsoleLogin"}"#;
        assert_eq!(json(Item::Record, rec).as_deref(), Ok(rec));
        assert_eq!(json(Item::Unknown, rec).as_deref(), Ok(rec));
        let lookup = serde_json::json!({"EventId": "x", "CloudTrailEvent": rec}).to_string();
        assert_eq!(json(Item::LookupEvent, &lookup).as_deref(), Ok(rec));
        assert_eq!(json(Item::Unknown, &lookup).as_deref(), Ok(rec));
        let within = record_json(Item::LookupEvent, lookup.as_bytes())
            .expect("a record")
            .within;
        assert_eq!(
            within,
            "the CloudTrailEvent string of lookup-events entry x"
        );
        let bridge = format!(
            r#"{{"version":"0","detail-type":"AWS Console Sign In via CloudTrail","source":"aws.signin","detail":{rec}}}"#
        );
        assert_eq!(json(Item::Unknown, &bridge).as_deref(), Ok(rec));
        let row = serde_json::json!([{"eventJson": rec}]).to_string();
        assert_eq!(json(Item::LakeRow, &row).as_deref(), Ok(rec));
        assert_eq!(json(Item::Unknown, &row).as_deref(), Ok(rec));
    }

    #[test]
    fn what_holds_no_record_says_why() {
        let cols = r#"[{"eventName":"ConsoleLogin"},{"eventTime":"2026-11-20 09:00:00"}]"#;
        let e = json(Item::LakeRow, cols).expect_err("no eventJson");
        assert!(
            e.contains("eventName, eventTime") && e.contains("SELECT eventJson"),
            "{e}"
        );
        let e = json(Item::Unknown, r#"{"a":1,"b":2}"#).expect_err("not a record");
        assert!(e.contains("keys a, b"), "{e}");
        let e = json(Item::Unknown, "5").expect_err("a number");
        assert!(e.contains("a JSON number"), "{e}");
        let e = json(Item::LookupEvent, r#"{"EventId":"x"}"#).expect_err("no event");
        assert!(e.contains("without CloudTrailEvent"), "{e}");
        let e = json(
            Item::Unknown,
            r#"{"detail-type":"EC2 Instance State-change Notification","detail":{}}"#,
        )
        .expect_err("not from CloudTrail");
        assert!(e.contains("not one from CloudTrail"), "{e}");
        let e =
            json(Item::Unknown, r#"{"digestStartTime":"x","logFiles":[]}"#).expect_err("digest");
        assert!(e.contains("digest"), "{e}");
    }
}
