//! Sigma v1 aggregations (`condition: selection | count() by field > N` with `timeframe`) →
//! the equivalent Sigma v2 correlation rule.
//!
//! The Sigma specification replaced aggregations with correlation rules, but rules still
//! published in SigmaHQ's CloudTrail folder use the old form, and users expect them to load
//! as written. Each such document becomes two:
//! - the detection, with the aggregation removed; it feeds the correlation and does not alert
//!   on its own (one discovery call is not the alert, seven in five minutes are);
//! - an `event_count` (`count()`) or `value_count` (`count(field)`) correlation that keeps the
//!   original title, id, name, level and tags, so alerts read as the author wrote them.
//!
//! <https://github.com/SigmaHQ/sigma-specification/blob/main/specification/sigma-correlation-rules-specification.md>

use yaml_serde::{Mapping, Value};

/// Window for aggregations that name no `timeframe`. In Sigma v1 such a count ran over the
/// backend's search period; a stream needs a window, and an hour matches "a short timeframe"
/// in those rules' descriptions without holding state for long.
const DEFAULT_TIMEFRAME: &str = "1h";

/// The result of rewriting one file.
pub struct Rewritten {
    /// The YAML text to parse instead of the original.
    pub text: String,
    /// Ids of the detections that only feed a translated aggregation.
    pub feeders: Vec<String>,
}

/// An aggregation parsed from the part of a condition after `|`.
#[derive(Debug, PartialEq)]
struct Aggregation {
    /// `count(field)`: distinct values of this field are counted.
    field: Option<String>,
    group_by: Vec<String>,
    op: &'static str,
    threshold: u64,
}

/// Rewrites every legacy aggregation in a (possibly multi-document) Sigma file.
/// `None` when the file has none, so it is parsed as written.
pub fn rewrite(text: &str) -> Option<Rewritten> {
    if !text.contains('|') || !text.contains("count(") {
        return None;
    }
    let mut docs = Vec::new();
    for doc in yaml_serde::Deserializer::from_str(text) {
        docs.push(serde::Deserialize::deserialize(doc).ok()?);
    }
    let mut out = Vec::new();
    let mut feeders = Vec::new();
    let mut changed = false;
    for doc in docs {
        match translate(&doc) {
            Some((detection, correlation, feeder)) => {
                changed = true;
                feeders.push(feeder);
                out.push(detection);
                out.push(correlation);
            }
            None => out.push(doc),
        }
    }
    if !changed {
        return None;
    }
    let mut text = String::new();
    for doc in out {
        text.push_str("---\n");
        text.push_str(&yaml_serde::to_string(&doc).ok()?);
    }
    Some(Rewritten { text, feeders })
}

fn translate(doc: &Value) -> Option<(Value, Value, String)> {
    let map = doc.as_mapping()?;
    let detection = map.get("detection")?.as_mapping()?;
    let condition = detection.get("condition")?.as_str()?;
    let (base_condition, aggregation) = condition.split_once('|')?;
    let agg = parse_aggregation(aggregation)?;
    let timeframe = detection
        .get("timeframe")
        .or_else(|| map.get("timeframe"))
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_TIMEFRAME)
        .to_owned();

    let title = map.get("title")?.as_str()?.to_owned();
    let id = map
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| title.clone());
    let feeder_id = format!("{id}-events");

    let mut base = map.clone();
    let mut base_detection = detection.clone();
    base_detection.insert("condition".into(), base_condition.trim().into());
    base_detection.remove("timeframe");
    base.remove("timeframe");
    base.insert("detection".into(), Value::Mapping(base_detection));
    base.insert("id".into(), feeder_id.clone().into());
    base.insert("title".into(), format!("{title} (events)").into());
    let feeder_name = map
        .get("name")
        .and_then(Value::as_str)
        .map(|n| format!("{n}-events"))
        .unwrap_or_else(|| feeder_id.clone());
    base.insert("name".into(), feeder_name.into());

    let mut condition = Mapping::new();
    if let Some(field) = &agg.field {
        condition.insert("field".into(), field.clone().into());
    }
    condition.insert(agg.op.into(), agg.threshold.into());
    let mut correlation = Mapping::new();
    correlation.insert(
        "type".into(),
        if agg.field.is_some() {
            "value_count"
        } else {
            "event_count"
        }
        .into(),
    );
    correlation.insert(
        "rules".into(),
        Value::Sequence(vec![feeder_id.clone().into()]),
    );
    if !agg.group_by.is_empty() {
        correlation.insert(
            "group-by".into(),
            Value::Sequence(agg.group_by.iter().map(|g| g.clone().into()).collect()),
        );
    }
    correlation.insert("timespan".into(), timeframe.into());
    correlation.insert("condition".into(), Value::Mapping(condition));

    let mut corr = Mapping::new();
    for key in [
        "title",
        "id",
        "name",
        "status",
        "description",
        "references",
        "author",
        "date",
        "modified",
        "tags",
        "falsepositives",
        "level",
    ] {
        if let Some(v) = map.get(key) {
            corr.insert(key.into(), v.clone());
        }
    }
    corr.insert("correlation".into(), Value::Mapping(correlation));
    Some((Value::Mapping(base), Value::Mapping(corr), feeder_id))
}

/// Parses ` count([field]) [by a, b] OP N`.
fn parse_aggregation(text: &str) -> Option<Aggregation> {
    let text = text.trim();
    let rest = text.strip_prefix("count(")?;
    let (field, rest) = rest.split_once(')')?;
    let field = Some(field.trim())
        .filter(|f| !f.is_empty())
        .map(str::to_owned);
    let rest = rest.trim();
    let (group_by, rest) = match rest.strip_prefix("by ") {
        Some(after) => {
            let at = after.find(['>', '<', '='])?;
            let groups = after[..at]
                .split(',')
                .map(|g| g.trim().to_owned())
                .filter(|g| !g.is_empty())
                .collect();
            (groups, &after[at..])
        }
        None => (Vec::new(), rest),
    };
    let (op, number) = [
        (">=", "gte"),
        ("<=", "lte"),
        ("==", "eq"),
        (">", "gt"),
        ("<", "lt"),
        ("=", "eq"),
    ]
    .iter()
    .find_map(|(sym, op)| rest.strip_prefix(sym).map(|n| (*op, n)))?;
    Some(Aggregation {
        field,
        group_by,
        op,
        threshold: number.trim().parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_aggregations() {
        assert_eq!(
            parse_aggregation(" count(eventName) by userIdentity.arn > 6"),
            Some(Aggregation {
                field: Some("eventName".into()),
                group_by: vec!["userIdentity.arn".into()],
                op: "gt",
                threshold: 6
            })
        );
        assert_eq!(
            parse_aggregation("count() >= 10").map(|a| (a.field, a.group_by, a.op, a.threshold)),
            Some((None, vec![], "gte", 10))
        );
        assert_eq!(parse_aggregation("near selection2"), None);
    }

    #[test]
    fn plain_rules_are_left_alone() {
        assert!(rewrite("title: x\ndetection:\n  sel: {a: b}\n  condition: sel\n").is_none());
    }
}
