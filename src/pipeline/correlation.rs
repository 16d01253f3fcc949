//! A record that feeds correlations → its correlation events, slimmed to the fields alerts and
//! group-by read, added to the source's [`Batch`].

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::BTreeMap;

use rsigma_eval::GroupKey;
use rsigma_eval::event::{Event, EventValue};
use rsigma_parser::CorrelationType;
use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::cloudtrail::Record;
use crate::detect::alerts::ALERT_FIELDS;
use crate::detect::{Correlation, Feed, RuleSet};
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
                let slim = slim.get_or_init(|| Slim::project(record, &paths(correlation, feed)));
                let field = correlation
                    .compiled
                    .condition
                    .field
                    .as_ref()
                    .and_then(|f| f.first());
                let text = match (c.spread, field, &c.value) {
                    (true, Some(field), Some(value)) => {
                        // The value is written where the correlation (and its alert) reads it.
                        let mut slim = slim.clone();
                        slim.set(field, Cow::Owned(Value::String(value.clone()).to_string()));
                        slim.to_json()
                    }
                    _ => slim.to_json(),
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

/// The paths a correlation's events keep: what alerts read, the group-by fields and the
/// counted field.
fn paths<'c>(correlation: &'c Correlation, feed: &'c Feed) -> Vec<&'c str> {
    let corr = &correlation.compiled;
    let identities: Vec<&str> = feed.identities.iter().map(String::as_str).collect();
    let mut paths: Vec<&str> = ALERT_FIELDS.to_vec();
    for field in &corr.group_by {
        paths.push(field.resolve(&identities));
    }
    paths.extend(corr.condition.field.iter().flatten().map(String::as_str));
    paths
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

/// A smaller record: the raw JSON of some of a record's fields, at their dot paths. Values are
/// copied as the record holds them, never parsed; keys are in order, as in a `Value`.
#[derive(Debug, Clone, Default)]
struct Slim<'a>(BTreeMap<Cow<'a, str>, Node<'a>>);

#[derive(Debug, Clone)]
enum Node<'a> {
    Raw(Cow<'a, str>),
    Object(Slim<'a>),
}

impl<'a> Slim<'a> {
    /// The record's values at `paths`, absent and `null` ones left out.
    fn project<'r: 'a>(record: &Record<'r>, paths: &[&'a str]) -> Self {
        let mut slim = Slim::default();
        for path in paths {
            if let Some(raw) = record.raw_at(path).filter(|raw| *raw != "null") {
                slim.set(path, Cow::Borrowed(raw));
            }
        }
        slim
    }

    /// Writes `raw` at a dot path, replacing what is there and making the steps on the way
    /// objects (keeping the members of one that already is).
    fn set(&mut self, path: &'a str, raw: Cow<'a, str>) {
        let mut current = self;
        let mut parts = path.split('.').peekable();
        while let Some(key) = parts.next() {
            if parts.peek().is_none() {
                current.0.insert(Cow::Borrowed(key), Node::Raw(raw));
                return;
            }
            let node = current
                .0
                .entry(Cow::Borrowed(key))
                .or_insert_with(|| Node::Object(Slim::default()));
            if let Node::Raw(text) = node {
                *node = Node::Object(Slim::parse(text));
            }
            let Node::Object(next) = node else {
                unreachable!("made an object above")
            };
            current = next;
        }
    }

    /// The members of a raw JSON object; nothing for any other value, which a path through it
    /// replaces.
    fn parse(text: &str) -> Slim<'a> {
        let members: BTreeMap<String, Box<RawValue>> =
            serde_json::from_str(text).unwrap_or_default();
        Slim(
            members
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k), Node::Raw(Cow::Owned(v.get().to_owned()))))
                .collect(),
        )
    }

    fn to_json(&self) -> String {
        let mut out = String::with_capacity(512);
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        out.push('{');
        for (i, (key, node)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if key.contains(|c: char| c == '"' || c == '\\' || c.is_control()) {
                out.push_str(&Value::String(key.to_string()).to_string());
            } else {
                out.push('"');
                out.push_str(key);
                out.push('"');
            }
            out.push(':');
            match node {
                Node::Raw(raw) => out.push_str(raw),
                Node::Object(slim) => slim.write(out),
            }
        }
        out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slim_record_copies_raw_values_at_their_paths() {
        let raw = br#"{"eventID":"e","userIdentity":{"arn":"a","sessionContext":{"x":1.50}},"requestParameters":null,"odd\"key":"v"}"#;
        let record = Record::parse(raw).expect("a record");
        let slim = Slim::project(
            &record,
            &[
                "eventID",
                "userIdentity.arn",
                "requestParameters",
                "missing.path",
                "odd\"key",
            ],
        );
        assert_eq!(
            slim.to_json(),
            r#"{"eventID":"e","odd\"key":"v","userIdentity":{"arn":"a"}}"#,
            "values as written, null and absent ones left out, keys in order and escaped"
        );

        // A path through an object kept whole writes into it; through a scalar, replaces it.
        let mut slim = Slim::project(&record, &["userIdentity", "eventID"]);
        slim.set("userIdentity.arn", Cow::Borrowed(r#""b""#));
        slim.set("eventID.deep", Cow::Borrowed("2"));
        let text = slim.to_json();
        assert_eq!(
            text,
            r#"{"eventID":{"deep":2},"userIdentity":{"arn":"b","sessionContext":{"x":1.50}}}"#
        );
        serde_json::from_str::<Value>(&text).expect("JSON");
    }
}
