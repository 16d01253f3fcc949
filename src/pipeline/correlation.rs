//! A record that feeds correlations → its correlation events, slimmed to the fields alerts and
//! group-by read, added to the source's [`Batch`].

use std::borrow::Cow;
use std::cell::OnceCell;

use rsigma_eval::GroupKey;
use rsigma_eval::event::{Event, EventValue};
use rsigma_parser::CorrelationType;
use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::cloudtrail::{Found, Record};
use crate::detect::{Feed, RuleSet};
use crate::finding::correlation::{Batch, CorrEvent, Group};
use crate::finding::hex;

impl Batch {
    /// Adds the record's events for every correlation `feeds` lists.
    pub fn add(&mut self, rules: &RuleSet, feeds: &[Feed], record: &Record<'_>, source: &str) {
        for feed in feeds {
            let correlation = &rules.correlations()[feed.correlation];
            let counts_values =
                correlation.compiled.correlation_type == CorrelationType::ValueCount;
            // The slim record is built only for events that are kept.
            let slim = OnceCell::new();
            let make = |c: Candidate| {
                let field = correlation
                    .compiled
                    .condition
                    .field
                    .as_ref()
                    .and_then(|f| f.first());
                let text = match (c.spread, field, &c.value) {
                    // The value is written where the correlation (and its alert) reads it.
                    (true, Some(field), Some(value)) => {
                        let value = Value::String(value.clone()).to_string();
                        slim_record(record, &feed.kept, Some((field, &value)))
                    }
                    _ => slim
                        .get_or_init(|| slim_record(record, &feed.kept, None))
                        .clone(),
                };
                (
                    c.group,
                    CorrEvent {
                        ts: c.ts,
                        event_id: c.event_id,
                        rule_ref: feed.rule_ref.clone(),
                        value: c.value,
                        // Raw JSON values of a scanned or parsed record, under keys written
                        // as JSON strings: valid JSON.
                        record: RawValue::from_string(text).expect("slim record is JSON"),
                        source: source.to_owned(),
                    },
                )
            };
            for candidate in candidates(rules, feed, record) {
                match candidate.value.clone().filter(|_| counts_values) {
                    Some(value) => {
                        let (group, ts) = (candidate.group.clone(), candidate.ts);
                        self.add_value(&group, value, ts, || make(candidate).1);
                    }
                    None => {
                        let (group, event) = make(candidate);
                        self.push(group, event);
                    }
                }
            }
        }
    }
}

/// One event a record contributes to a correlation group, before its slim record is built.
struct Candidate {
    group: Group,
    ts: i64,
    event_id: String,
    value: Option<String>,
    /// One of several values of a spread record (see `detect::Correlation::value_sources`).
    spread: bool,
}

/// The group and events a record contributes to the correlation of `feed`: one event, or one
/// per value for a correlation that spreads its values over several fields and lists.
fn candidates(rules: &RuleSet, feed: &Feed, record: &Record<'_>) -> Vec<Candidate> {
    let correlation = &rules.correlations()[feed.correlation];
    let corr = &correlation.compiled;
    let identities: Vec<&str> = feed.identities.iter().map(String::as_str).collect();
    let (Some(ts), Some(event_id)) = (event_time(record), record.str_at("eventID")) else {
        return Vec::new();
    };
    let group = Group {
        correlation: feed.correlation,
        key: GroupKey::extract(record, &corr.group_by, &identities),
    };
    if !correlation.value_sources.is_empty() {
        let values = spread_values(record, &correlation.value_sources);
        if !values.is_empty() {
            // One event per value, each with its own stable identity.
            return values
                .into_iter()
                .map(|value| Candidate {
                    group: group.clone(),
                    ts,
                    event_id: format!("{event_id}#{}", hex(&Sha256::digest(value.as_bytes())[..6])),
                    value: Some(value),
                    spread: true,
                })
                .collect();
        }
    }
    let value = match (corr.correlation_type, &corr.condition.field) {
        (CorrelationType::EventCount | CorrelationType::Temporal, _)
        | (CorrelationType::TemporalOrdered, _)
        | (_, None) => None,
        (CorrelationType::ValueCount, Some(fields)) => distinct_key(record, fields),
        (_, Some(fields)) => fields
            .first()
            .and_then(|f| record.get_field(f))
            .and_then(|v| v.as_f64())
            .map(|n| n.to_string()),
    };
    vec![Candidate {
        group,
        ts,
        event_id: event_id.into_owned(),
        value,
        spread: false,
    }]
}

/// The values a record holds at the first of `sources` present: the string, or each string
/// of a list.
fn spread_values(record: &Record<'_>, sources: &[String]) -> Vec<String> {
    for source in sources {
        match record.value_at(source) {
            Some(Value::String(s)) => return vec![s],
            Some(Value::Array(items)) => {
                return items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
            }
            _ => {}
        }
    }
    Vec::new()
}

/// `eventTime` as epoch seconds. CloudTrail always writes it; a record without a readable
/// one cannot be placed in a window and does not feed correlations.
pub fn event_time(record: &Record<'_>) -> Option<i64> {
    record
        .str_at("eventTime")
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.timestamp())
}

/// The distinct-value key `value_count` counts, built as rsigma builds it (fields joined by
/// the unit separator; an event lacking a field is not counted).
fn distinct_key(record: &Record<'_>, fields: &[String]) -> Option<String> {
    let mut parts = Vec::with_capacity(fields.len());
    for field in fields {
        parts.push(match record.get_field(field)? {
            EventValue::Str(s) => s.into_owned(),
            EventValue::Int(n) => n.to_string(),
            EventValue::Float(f) => f.to_string(),
            EventValue::Bool(b) => b.to_string(),
            EventValue::Null => "null".to_owned(),
            _ => return None,
        });
    }
    Some(parts.join("\u{1f}"))
}

/// A smaller record: the raw JSON of the record's values at `kept` (sorted as
/// [`crate::detect::Feed::kept`] is), at the same paths, with `replace`'s text written at its
/// path instead of the record's. Values are copied as the record holds them, never parsed;
/// absent and `null` ones are left out, and so are objects left empty. Paths that share their
/// first steps are looked up once for all of them.
fn slim_record(record: &Record<'_>, kept: &[String], replace: Option<(&str, &str)>) -> String {
    /// An object being written: its key, its value in the record (`None` when absent), where
    /// its text began in `out`, and whether a member was written in it. The record itself is
    /// the first, never closed in the loop.
    struct Open<'k, 'a> {
        key: &'k str,
        found: Option<Found<'a>>,
        mark: usize,
        written: bool,
    }
    // The member `key` of the innermost open object, in the record.
    fn lookup<'a>(record: &Record<'a>, open: &[Open<'_, 'a>], key: &str) -> Option<Found<'a>> {
        match open {
            [_record] => record.child(None, key),
            [.., parent] => parent.found.and_then(|p| record.child(Some(p), key)),
            [] => unreachable!("the record stays open"),
        }
    }
    // Writes `"key":` in the innermost open object, after a comma unless it is its first.
    fn member(open: &mut [Open<'_, '_>], out: &mut String, key: &str) {
        let parent = open.last_mut().expect("the record stays open");
        write_key(out, std::mem::replace(&mut parent.written, true), key);
    }
    // Closes the innermost object; one nothing was written in is taken back.
    fn close(open: &mut Vec<Open<'_, '_>>, out: &mut String) {
        let done = open.pop().expect("more than the record open");
        if done.written {
            out.push('}');
            open.last_mut().expect("the record stays open").written = true;
        } else {
            out.truncate(done.mark);
        }
    }
    let mut out = String::with_capacity(512);
    out.push('{');
    let mut open = vec![Open {
        key: "",
        found: None,
        mark: 0,
        written: false,
    }];
    for path in kept {
        let (parents, leaf) = path
            .rsplit_once('.')
            .map_or(("", path.as_str()), |(p, l)| (p, l));
        let parents = parents.split('.').filter(|_| !parents.is_empty());
        let shared = open[1..]
            .iter()
            .zip(parents.clone())
            .take_while(|(o, step)| o.key == *step)
            .count();
        while open.len() > shared + 1 {
            close(&mut open, &mut out);
        }
        for step in parents.skip(shared) {
            let found = lookup(record, &open, step);
            let mark = out.len();
            // The parent counts this object as a member only once it is closed with one.
            let after_another = open.last().expect("the record stays open").written;
            write_key(&mut out, after_another, step);
            out.push('{');
            open.push(Open {
                key: step,
                found,
                mark,
                written: false,
            });
        }
        let raw = lookup(record, &open, leaf)
            .map(|f| f.raw())
            .filter(|raw| *raw != "null");
        let value = match replace {
            Some((at, text)) if at == path => Some(Cow::Borrowed(text)),
            // A replaced value inside one kept whole (a counted field under a group-by
            // object) is written into a copy of it.
            Some((at, text)) => match at
                .strip_prefix(path.as_str())
                .and_then(|r| r.strip_prefix('.'))
            {
                Some(inner) => Some(Cow::Owned(replaced_inside(raw, inner, text))),
                None => raw.map(Cow::Borrowed),
            },
            None => raw.map(Cow::Borrowed),
        };
        if let Some(value) = value {
            member(&mut open, &mut out, leaf);
            out.push_str(&value);
        }
    }
    while open.len() > 1 {
        close(&mut open, &mut out);
    }
    out.push('}');
    out
}

/// `raw` (an object, or nothing to start from) with `text` written at the dot path `inner`
/// inside it, the steps on the way made objects.
fn replaced_inside(raw: Option<&str>, inner: &str, text: &str) -> String {
    let mut whole = raw
        .and_then(|raw| serde_json::from_str::<Value>(raw).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| Value::Object(Default::default()));
    let mut at = &mut whole;
    for step in inner.split('.') {
        if !at.is_object() {
            *at = Value::Object(Default::default());
        }
        at = at
            .as_object_mut()
            .expect("made an object above")
            .entry(step)
            .or_insert(Value::Null);
    }
    *at = serde_json::from_str(text).unwrap_or(Value::Null);
    whole.to_string()
}

/// `"key":`, after a comma unless it is the object's first member; escaped as JSON needs.
fn write_key(out: &mut String, after_another: bool, key: &str) {
    if after_another {
        out.push(',');
    }
    if key.contains(|c: char| c == '"' || c == '\\' || c.is_control()) {
        out.push_str(&Value::String(key.to_owned()).to_string());
    } else {
        out.push('"');
        out.push_str(key);
        out.push('"');
    }
    out.push(':');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slim_record_copies_raw_values_at_their_paths() {
        let raw = br#"{"eventID":"e","userIdentity":{"arn":"a","sessionContext":{"x":1.50}},"requestParameters":null,"odd\"key":"v","s":"x"}"#;
        let record = Record::parse(raw).expect("a record");
        let kept = |paths: &[&str]| paths.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
        let text = slim_record(
            &record,
            &kept(&[
                "eventID",
                "missing.path",
                "odd\"key",
                "requestParameters",
                "requestParameters.bucketName",
                "s.deeper",
                "userIdentity.arn",
                "userIdentity.sessionContext.missing",
                "userIdentity.type",
            ]),
            None,
        );
        assert_eq!(
            text, r#"{"eventID":"e","odd\"key":"v","userIdentity":{"arn":"a"}}"#,
            "values as written, null and absent ones and empty objects left out, keys escaped"
        );

        // A replaced value is written whether or not the record has one.
        let paths = kept(&["eventID", "requestParameters.secretId", "userIdentity.arn"]);
        let text = slim_record(
            &record,
            &paths,
            Some(("requestParameters.secretId", r#""s1""#)),
        );
        assert_eq!(
            text,
            r#"{"eventID":"e","requestParameters":{"secretId":"s1"},"userIdentity":{"arn":"a"}}"#
        );
        let text = slim_record(&record, &paths, Some(("userIdentity.arn", r#""b""#)));
        assert_eq!(text, r#"{"eventID":"e","userIdentity":{"arn":"b"}}"#);
        serde_json::from_str::<Value>(&text).expect("JSON");

        // Inside a value kept whole, the replaced one is written into a copy of it; an absent
        // or scalar one is made an object.
        let whole = kept(&["eventID", "userIdentity"]);
        let text = slim_record(&record, &whole, Some(("userIdentity.arn", r#""b""#)));
        assert_eq!(
            text,
            r#"{"eventID":"e","userIdentity":{"arn":"b","sessionContext":{"x":1.5}}}"#
        );
        let text = slim_record(&record, &kept(&["s"]), Some(("s.deeper.k", "2")));
        assert_eq!(text, r#"{"s":{"deeper":{"k":2}}}"#);
    }
}
