//! A record that feeds correlations → its correlation events, slimmed to the fields alerts and
//! group-by read, added to the source's [`Batch`].

use std::cell::OnceCell;

use rsigma_eval::GroupKey;
use rsigma_eval::event::{Event, EventValue};
use rsigma_parser::CorrelationType;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
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
                let slim = slim.get_or_init(|| project(record, &paths(correlation, feed)));
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
                        set_path(&mut slim, field, Value::String(value.clone()));
                        slim.to_string()
                    }
                    _ => slim.to_string(),
                };
                (
                    c.group,
                    CorrEvent {
                        ts: c.ts,
                        event_id: c.event_id,
                        rule_ref: feed.rule_ref.clone(),
                        value: c.value,
                        // Serialising a `Value` yields valid JSON.
                        record: RawValue::from_string(text).expect("serialised JSON"),
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

/// Writes `new` at a dot path, creating objects on the way.
fn set_path(value: &mut Value, path: &str, new: Value) {
    let mut current = value;
    let mut parts = path.split('.').peekable();
    while let Some(key) = parts.next() {
        if !current.is_object() {
            *current = Value::Object(Map::new());
        }
        let Value::Object(map) = current else { return };
        if parts.peek().is_none() {
            map.insert(key.to_owned(), new);
            return;
        }
        current = map.entry(key.to_owned()).or_insert(Value::Null);
    }
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

/// Copies the given dot paths of a record into a new, smaller record, parsing only those
/// fields.
fn project(record: &Record<'_>, paths: &[&str]) -> Value {
    let mut out = Value::Object(Map::new());
    for path in paths {
        if let Some(value) = record.value_at(path).filter(|v| !v.is_null()) {
            set_path(&mut out, path, value);
        }
    }
    out
}
