//! Sigma correlations decided on event time: the records that feed a correlation → the
//! windows that fire.
//!
//! Log files arrive late, out of order, twice, and at different tasks. A correlation that
//! follows arrival order can be faked by a late file (one failure at 10:00 read after four at
//! 10:20) or split across tasks. So correlation state is not a running counter: it is the set
//! of events per (correlation, group), keyed by eventID, and the decision is a replay of that
//! set in event-time order through rsigma's own window state ([`WindowState`]), so Sigma's
//! semantics (event_count, value_count, temporal, sliding/tumbling/session windows) are
//! rsigma's, not a reimplementation.
//!
//! A window fires once: when it fires, the state resets, and once a fire is committed (its
//! alert accepted downstream) the events in its time span count as consumed in later replays.
//! A rule's `rsigma.suppress` is honoured for that rule alone: no second fire for the group
//! within that long of the last.
//! Redelivered and duplicated events are one event because they share an eventID.

use std::collections::{HashMap, HashSet};

use rsigma_eval::correlation::{WindowDecision, apply_window_open};
use rsigma_eval::{CompiledCorrelation, WindowState};
use rsigma_parser::CorrelationType;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::detect::{CorrelationHit, RuleSet};
use crate::finding::IncidentKey;
use crate::finding::alert::Alert;
use crate::finding::correlation::{CorrEvent, Group};

/// A window that fired.
#[derive(Debug, Clone, PartialEq)]
pub struct Fire {
    /// Indices into the replayed events: the window's events, oldest first.
    pub members: Vec<usize>,
    /// Event time of the window's first and last (triggering) event.
    pub start: i64,
    pub end: i64,
    /// The aggregated value (events counted, distinct values, ...).
    pub value: f64,
}

/// A committed fire's time span: its events count as consumed in later replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub start: i64,
    pub end: i64,
}

impl Span {
    fn contains(&self, ts: i64) -> bool {
        self.start <= ts && ts <= self.end
    }
}

/// Sorts events by event time (eventID breaking ties) and keeps one per eventID.
pub fn normalise(events: &mut Vec<CorrEvent>) {
    events.sort_by(|a, b| (a.ts, &a.event_id).cmp(&(b.ts, &b.event_id)));
    let mut seen = HashSet::new();
    events.retain(|e| seen.insert(e.event_id.clone()));
}

/// Replays a group's events (already [`normalise`]d) through the correlation's window and
/// returns the windows that fire, skipping events consumed by `committed` fires.
pub fn replay(corr: &CompiledCorrelation, events: &[CorrEvent], committed: &[Span]) -> Vec<Fire> {
    let mut state = WindowState::new_for(corr.correlation_type);
    let mut fires = Vec::new();
    // Events since the window last reset: the candidates for a fire's members.
    let mut since = 0;
    for (i, e) in events.iter().enumerate() {
        if committed.iter().any(|s| s.contains(e.ts)) {
            continue;
        }
        match apply_window_open(
            &mut state,
            e.ts,
            corr.timespan_secs,
            corr.window_mode,
            corr.gap_secs,
        ) {
            // Input is in time order, so no event lands in an earlier tumbling bucket.
            WindowDecision::Discard => continue,
            WindowDecision::Reset => since = i,
            WindowDecision::Extend => {}
        }
        match corr.correlation_type {
            CorrelationType::EventCount => state.push_event_count(e.ts),
            CorrelationType::ValueCount => match &e.value {
                Some(v) => state.push_value_count(e.ts, v.clone()),
                None => continue,
            },
            CorrelationType::Temporal | CorrelationType::TemporalOrdered => {
                state.push_temporal(e.ts, &e.rule_ref)
            }
            _ => match e.value.as_deref().and_then(|v| v.parse().ok()) {
                Some(n) => state.push_numeric(e.ts, n),
                None => continue,
            },
        }
        let Some(value) = state.check_condition(
            &corr.condition,
            corr.correlation_type,
            &corr.rule_refs,
            corr.extended_expr.as_ref(),
        ) else {
            continue;
        };
        // The rule's own `rsigma.suppress`: no second alert for the group within that long
        // of the last one (committed earlier, or in this replay).
        if let Some(quiet) = corr.suppress_secs.map(|s| s as i64) {
            let recent = |end: i64| e.ts >= end && e.ts - end < quiet;
            if fires.last().is_some_and(|f: &Fire| recent(f.end))
                || committed.iter().any(|c| recent(c.end))
            {
                continue;
            }
        }
        let start = state.earliest_timestamp().unwrap_or(e.ts);
        let members = (since..=i)
            .filter(|&j| {
                events[j].ts >= start && !committed.iter().any(|s| s.contains(events[j].ts))
            })
            .collect();
        fires.push(Fire {
            members,
            start,
            end: e.ts,
            value,
        });
        // Fire once per window: the threshold must be met again from scratch.
        state.clear();
        since = i + 1;
    }
    fires
}

/// The alert and incident key for a fire of the correlation `group` belongs to. The alert's
/// source is the file (or event) of the window's last event.
pub fn alert_for(
    rules: &RuleSet,
    group: &Group,
    events: &[CorrEvent],
    fire: &Fire,
) -> (IncidentKey, Alert) {
    let correlation = &rules.correlations()[group.correlation];
    let rule = &rules.rules()[correlation.rule];
    let pairs = group.key.to_pairs(&correlation.compiled.group_by);
    let hit = CorrelationHit {
        rule: correlation.rule,
        count: fire.value.max(0.0) as u64,
        group: pairs.clone(),
        events: fire
            .members
            .iter()
            .map(|&i| serde_json::from_str(events[i].record.get()).unwrap_or(Value::Null))
            .collect(),
    };
    let source = fire
        .members
        .last()
        .map_or("", |&i| events[i].source.as_str());
    let mut alert = Alert::from_correlation(rule, &hit, source);
    // A record that counted several values (a batch read of secrets) is one event.
    if let Some(ids) = &mut alert.event_ids {
        let mut seen = HashSet::new();
        ids.retain(|id| seen.insert(id.clone()));
    }
    let principal = if pairs.is_empty() {
        "(all events)".to_owned()
    } else {
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let key = IncidentKey {
        rule: rule.name.clone(),
        account: alert
            .account_id
            .clone()
            .unwrap_or_else(|| "unknown".to_owned()),
        principal,
    };
    (key, alert)
}

/// Decides every group of `events` at once, with nothing committed before: what `scan`
/// reports after reading all its files, and what the tests check rules with.
pub fn decide_all(rules: &RuleSet, events: Vec<(Group, CorrEvent)>) -> Vec<Alert> {
    let mut groups: Vec<(Group, Vec<CorrEvent>)> = Vec::new();
    let mut index: HashMap<Group, usize> = HashMap::new();
    for (group, event) in events {
        let i = *index.entry(group.clone()).or_insert_with(|| {
            groups.push((group, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(event);
    }
    let mut alerts = Vec::new();
    for (group, mut events) in groups {
        normalise(&mut events);
        let corr = &rules.correlations()[group.correlation].compiled;
        for fire in replay(corr, &events, &[]) {
            alerts.push(alert_for(rules, &group, &events, &fire).1);
        }
    }
    alerts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudtrail::Record;
    use crate::finding::correlation::Batch;

    const BRUTE: &str = r#"
title: failed
id: 00000000-0000-4000-8000-000000000001
name: failed
logsource: {product: aws, service: cloudtrail}
detection:
  sel:
    eventName: ConsoleLogin
    errorMessage: Failed authentication
  condition: sel
level: low
---
title: brute
id: 00000000-0000-4000-8000-000000000002
name: brute
correlation:
  type: event_count
  rules: [failed]
  group-by: [userIdentity.userName]
  timespan: 10m
  condition: {gte: 5}
level: high
---
title: spray
id: 00000000-0000-4000-8000-000000000003
name: spray
correlation:
  type: value_count
  rules: [failed]
  group-by: [sourceIPAddress]
  timespan: 10m
  condition: {field: userIdentity.userName, gte: 3}
level: high
"#;

    fn rules() -> RuleSet {
        let rules = RuleSet::from_yaml([("t.yml", BRUTE)]);
        assert!(rules.errors().is_empty(), "{:?}", rules.errors());
        rules
    }

    /// A failed sign-in by `user` from `ip` at minute `min` (seconds `sec`) past 10:00.
    fn failure(id: &str, user: &str, ip: &str, min: u32, sec: u32) -> String {
        format!(
            r#"{{"eventID":"{id}","eventTime":"2026-11-20T10:{min:02}:{sec:02}Z","eventName":"ConsoleLogin","errorMessage":"Failed authentication","sourceIPAddress":"{ip}","recipientAccountId":"111122223333","userIdentity":{{"type":"IAMUser","userName":"{user}"}},"requestParameters":{{"x":1}}}}"#
        )
    }

    fn batch(rules: &RuleSet, records: &[String]) -> Vec<(Group, Vec<CorrEvent>)> {
        let mut batch = Batch::default();
        let failed = rules
            .rules()
            .iter()
            .position(|r| r.name == "failed")
            .expect("failed rule");
        for raw in records {
            let record = Record::parse(raw.as_bytes()).expect("record");
            batch.add(rules, rules.feeds(failed), &record, "s3://b/k");
        }
        batch.groups()
    }

    fn fires_of(rules: &RuleSet, records: &[String], name: &str) -> Vec<(Vec<String>, f64)> {
        let mut out = Vec::new();
        for (group, mut events) in batch(rules, records) {
            let corr = &rules.correlations()[group.correlation];
            if rules.rules()[corr.rule].name != name {
                continue;
            }
            normalise(&mut events);
            for fire in replay(&corr.compiled, &events, &[]) {
                let ids = fire
                    .members
                    .iter()
                    .map(|&i| events[i].event_id.clone())
                    .collect();
                out.push((ids, fire.value));
            }
        }
        out
    }

    #[test]
    fn fires_once_per_window_in_event_time_order() {
        let rules = rules();
        // Seven failures in four minutes, listed out of order and one twice.
        let mut records: Vec<String> = (0..7)
            .rev()
            .map(|i| failure(&format!("f{i}"), "bob", "198.51.100.1", i, 0))
            .collect();
        records.push(failure("f3", "bob", "198.51.100.1", 3, 0));
        let fires = fires_of(&rules, &records, "brute");
        assert_eq!(fires.len(), 1, "{fires:?}");
        assert_eq!(fires[0].0, vec!["f0", "f1", "f2", "f3", "f4"]);
        assert_eq!(fires[0].1, 5.0);
    }

    #[test]
    fn a_late_event_cannot_fake_a_burst_but_can_complete_one() {
        let rules = rules();
        let mut records: Vec<String> = (20..24)
            .map(|m| failure(&format!("f{m}"), "bob", "198.51.100.1", m, 0))
            .collect();
        records.push(failure("late", "bob", "198.51.100.1", 0, 0));
        assert!(fires_of(&rules, &records, "brute").is_empty());
        records.push(failure("late2", "bob", "198.51.100.1", 19, 30));
        let fires = fires_of(&rules, &records, "brute");
        assert_eq!(fires.len(), 1);
        assert_eq!(fires[0].0[0], "late2");
    }

    #[test]
    fn committed_fires_consume_their_events() {
        let rules = rules();
        let records: Vec<String> = (0..10)
            .map(|m| failure(&format!("f{m}"), "bob", "198.51.100.1", m, 0))
            .collect();
        let (group, mut events) = batch(&rules, &records)
            .into_iter()
            .find(|(g, _)| rules.rules()[rules.correlations()[g.correlation].rule].name == "brute")
            .expect("group");
        normalise(&mut events);
        let corr = &rules.correlations()[group.correlation].compiled;
        let all = replay(corr, &events, &[]);
        assert_eq!(all.len(), 2);
        let first = Span {
            start: all[0].start,
            end: all[0].end,
        };
        // Replaying from the middle with the first fire committed finds only the second.
        let later = replay(corr, &events[3..], &[first]);
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].end, all[1].end);
    }

    #[test]
    fn a_value_read_many_times_in_one_file_is_kept_twice() {
        let rules = rules();
        let mut records: Vec<String> = (0..50)
            .map(|i| failure(&format!("a{i}"), "alice", "203.0.113.9", i / 10, i % 60))
            .collect();
        records.push(failure("b", "bob", "203.0.113.9", 9, 0));
        let mut batch = Batch::default();
        let failed = rules.rules().iter().position(|r| r.name == "failed");
        for raw in &records {
            let record = Record::parse(raw.as_bytes()).expect("record");
            batch.add(&rules, rules.feeds(failed.expect("rule")), &record, "f");
        }
        let spray: Vec<CorrEvent> = batch
            .into_events()
            .filter(|(g, _)| {
                rules.rules()[rules.correlations()[g.correlation].rule].name == "spray"
            })
            .map(|(_, e)| e)
            .collect();
        let ids: Vec<&str> = spray.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(
            ids,
            vec!["a0", "a49", "b"],
            "alice's first and last, and bob"
        );
    }

    #[test]
    fn value_count_counts_distinct_names_once() {
        let rules = rules();
        let mut records: Vec<String> = (0..6)
            .map(|i| failure(&format!("a{i}"), "alice", "203.0.113.9", i, 0))
            .collect();
        records.push(failure("b", "bob", "203.0.113.9", 6, 0));
        assert!(fires_of(&rules, &records, "spray").is_empty(), "two names");
        records.push(failure("c", "carol", "203.0.113.9", 7, 0));
        let fires = fires_of(&rules, &records, "spray");
        assert_eq!(fires.len(), 1, "{fires:?}");
        assert_eq!(fires[0].1, 3.0);
    }

    #[test]
    fn spread_values_count_every_element_of_a_list_once() {
        let rules = RuleSet::from_yaml([(
            "s.yml",
            r#"
title: Secret reads
id: 00000000-0000-4000-8000-000000000021
name: secret-reads
correlation:
  type: value_count
  rules: [secret-read]
  group-by: [userIdentity.arn]
  timespan: 10m
  condition:
    field: requestParameters.secretId
    gte: 4
trailwarden.value_fields: [requestParameters.names]
---
title: Secret read
id: 00000000-0000-4000-8000-000000000020
name: secret-read
logsource: {product: aws, service: cloudtrail}
detection:
  selection:
    eventName: [GetSecretValue, GetParameters]
  condition: selection
"#,
        )]);
        assert!(rules.errors().is_empty(), "{:?}", rules.errors());
        let read = |id: &str, min: u32, params: &str| {
            format!(
                r#"{{"eventID":"{id}","eventTime":"2026-11-20T10:{min:02}:00Z","eventName":"{}","userIdentity":{{"arn":"u"}},"requestParameters":{params}}}"#,
                if params.contains("names") {
                    "GetParameters"
                } else {
                    "GetSecretValue"
                }
            )
        };
        let records = |extra: &[String]| {
            let mut all = vec![
                read("a1", 0, r#"{"secretId":"a"}"#),
                // The same secret again does not count twice.
                read("a2", 1, r#"{"secretId":"a"}"#),
                read("b", 2, r#"{"names":["b","c","a"]}"#),
            ];
            all.extend_from_slice(extra);
            let mut batch = Batch::default();
            let feeding = rules.rules().iter().position(|r| r.name == "secret-read");
            for raw in &all {
                let record = Record::parse(raw.as_bytes()).expect("record");
                batch.add(&rules, rules.feeds(feeding.expect("rule")), &record, "f");
            }
            decide_all(&rules, batch.into_events().collect())
        };
        assert!(
            records(&[]).is_empty(),
            "three distinct secrets are below four"
        );
        let alerts = records(&[read("d", 3, r#"{"names":["d"]}"#)]);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].count, Some(4));
        // Of secret a's reads in one file only the first and the last are kept (a1, and b's).
        assert_eq!(
            alerts[0].event_ids.as_deref(),
            Some(&["a1".to_owned(), "b".to_owned(), "d".to_owned()][..])
        );
    }

    #[test]
    fn slim_records_keep_what_alerts_and_groups_read() {
        let rules = rules();
        let groups = batch(&rules, &[failure("x", "bob", "198.51.100.1", 0, 0)]);
        let event = &groups[0].1[0];
        let slim: Value = serde_json::from_str(event.record.get()).expect("json");
        assert_eq!(slim["userIdentity"]["userName"], "bob");
        assert_eq!(slim["eventID"], "x");
        assert!(slim.get("requestParameters").is_none());
        let (group, events) = &groups[0];
        let fire = Fire {
            members: vec![0],
            start: events[0].ts,
            end: events[0].ts,
            value: 1.0,
        };
        let (key, alert) = alert_for(&rules, group, events, &fire);
        assert_eq!(alert.source, "s3://b/k");
        assert_eq!(key.account, "111122223333");
        assert!(key.principal.contains("=bob") || key.principal.contains("198.51.100.1"));
        assert_eq!(alert.event_ids.as_deref(), Some(&["x".to_owned()][..]));
    }
}
