//! The alerts of one source (a log file or one event) → one [`Fold`] per incident key, in
//! memory that does not grow with the number of alerts.
//!
//! An object of a million matching records must not hold a million alerts: each fold keeps
//! the first [`LISTED`] alerts in full (what a page shows), a count, and bounded tallies of
//! event names, regions, source IPs and sessions (what a follow-up shows). The number of
//! folds per source is capped too; past the cap, alerts of new principals are counted in one
//! fold per rule and account.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::IncidentKey;
use crate::finding::Level;
use crate::finding::alert::Alert;

/// Alerts kept in full per incident and source: the events a page lists.
pub const LISTED: usize = 20;
/// Distinct values counted per tally; further values are counted as `others`.
const TALLY_VALUES: usize = 16;
/// Incident keys per source before new principals are folded together.
const MAX_KEYS: usize = 1_000;
/// Alerts kept in full across all folds of one source.
const MAX_LISTED_TOTAL: usize = 2_000;
/// The principal of the fold that gathers principals past [`MAX_KEYS`].
pub const MANY_PRINCIPALS: &str = "(more principals than one log file may page for)";

/// Counts of distinct values, keeping the first [`TALLY_VALUES`] seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// `(value, count)`, in first-seen order.
    pub values: Vec<(String, u64)>,
    /// Occurrences of values beyond the first [`TALLY_VALUES`].
    #[serde(default)]
    pub others: u64,
}

impl Tally {
    fn add_n(&mut self, value: &str, n: u64) {
        if let Some(entry) = self.values.iter_mut().find(|(v, _)| v == value) {
            entry.1 += n;
        } else if self.values.len() < TALLY_VALUES {
            self.values.push((value.to_owned(), n));
        } else {
            self.others += n;
        }
    }

    /// Counts one occurrence of `value`.
    pub fn add(&mut self, value: &str) {
        self.add_n(value, 1);
    }

    /// Adds another tally's counts.
    pub fn merge(&mut self, other: &Tally) {
        for (v, n) in &other.values {
            self.add_n(v, *n);
        }
        self.others += other.others;
    }

    /// The `n` most frequent values, most frequent first.
    pub fn top(&self, n: usize) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = self.values.iter().map(|(s, c)| (s.as_str(), *c)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v.truncate(n);
        v
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.others == 0
    }
}

/// What a set of alerts amounted to: how many, when, and the most common details.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub count: u64,
    pub first_time: Option<String>,
    pub last_time: Option<String>,
    pub event_names: Tally,
    pub regions: Tally,
    pub source_ips: Tally,
    /// The callers' own ARNs: role session names live here, not in the incident key.
    pub sessions: Tally,
}

impl Stats {
    /// Counts one alert.
    pub fn add(&mut self, alert: &Alert) {
        self.count += 1;
        if let Some(t) = &alert.event_time {
            // eventTime is always `YYYY-MM-DDTHH:MM:SSZ`, so text order is time order.
            if self.first_time.as_ref().is_none_or(|f| t < f) {
                self.first_time = Some(t.clone());
            }
            if self.last_time.as_ref().is_none_or(|l| t > l) {
                self.last_time = Some(t.clone());
            }
        }
        let tally = |tally: &mut Tally, v: &Option<String>| {
            if let Some(v) = v {
                tally.add(v);
            }
        };
        tally(&mut self.event_names, &alert.event_name);
        tally(&mut self.regions, &alert.aws_region);
        tally(&mut self.source_ips, &alert.source_ip);
        tally(&mut self.sessions, &alert.principal_arn);
    }

    /// Adds another set's counts.
    pub fn merge(&mut self, other: &Stats) {
        self.count += other.count;
        for t in [&other.first_time, &other.last_time].into_iter().flatten() {
            if self.first_time.as_ref().is_none_or(|f| t < f) {
                self.first_time = Some(t.clone());
            }
            if self.last_time.as_ref().is_none_or(|l| t > l) {
                self.last_time = Some(t.clone());
            }
        }
        self.event_names.merge(&other.event_names);
        self.regions.merge(&other.regions);
        self.source_ips.merge(&other.source_ips);
        self.sessions.merge(&other.sessions);
    }
}

/// The alerts of one incident from one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fold {
    pub key: IncidentKey,
    /// The first alerts, in order (at most [`LISTED`]); the first one describes the incident.
    pub alerts: Vec<Alert>,
    pub stats: Stats,
}

impl Fold {
    /// The most severe level among the alerts (they share a rule, so one level).
    pub fn level(&self) -> Level {
        self.alerts
            .first()
            .map_or(Level::Informational, |a| a.level)
    }

    /// The eventIDs of the listed alerts, for recognising the same events from another path.
    pub fn event_ids(&self) -> Vec<String> {
        self.alerts
            .iter()
            .filter_map(|a| a.event_id.clone())
            .collect()
    }
}

/// Folds the alerts of one source as they stream in.
#[derive(Debug, Default)]
pub struct Folder {
    folds: HashMap<IncidentKey, Fold>,
    listed: usize,
}

impl Folder {
    pub fn new() -> Folder {
        Folder::default()
    }

    /// Adds one alert of the incident `key`.
    pub fn add(&mut self, mut key: IncidentKey, alert: Alert) {
        if !self.folds.contains_key(&key) && self.folds.len() >= MAX_KEYS {
            key.principal = MANY_PRINCIPALS.to_owned();
        }
        let keep = self.listed < MAX_LISTED_TOTAL;
        let fold = self.folds.entry(key).or_insert_with_key(|key| Fold {
            key: key.clone(),
            alerts: Vec::new(),
            stats: Stats::default(),
        });
        fold.stats.add(&alert);
        if fold.alerts.is_empty() || (keep && fold.alerts.len() < LISTED) {
            fold.alerts.push(alert);
            self.listed += 1;
        }
    }

    /// Whether no alert was added.
    pub fn is_empty(&self) -> bool {
        self.folds.is_empty()
    }

    /// The folds, most severe first, then by key, so pages go out in a stable order.
    pub fn finish(self) -> Vec<Fold> {
        let mut folds: Vec<Fold> = self.folds.into_values().collect();
        folds.sort_by(|a, b| b.level().cmp(&a.level()).then_with(|| a.key.cmp(&b.key)));
        folds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn alert(rule: &str, id: usize, session: &str) -> Alert {
        Alert {
            rule: rule.into(),
            title: "t".into(),
            level: Level::High,
            tags: vec![],
            event_id: Some(format!("e{id}")),
            event_time: Some(format!("2026-11-20T09:{:02}:00Z", id % 60)),
            event_name: Some(
                if id.is_multiple_of(2) {
                    "ListBuckets"
                } else {
                    "GetObject"
                }
                .into(),
            ),
            event_source: Some("s3.amazonaws.com".into()),
            aws_region: Some("us-east-1".into()),
            account_id: Some("111122223333".into()),
            principal_type: Some("AssumedRole".into()),
            principal_arn: Some(session.into()),
            source_ip: Some(format!("198.51.100.{}", id % 3)),
            user_agent: None,
            error_code: Some("AccessDenied".into()),
            mfa_used: None,
            summary: "s".into(),
            source: "s3://b/k".into(),
            count: None,
            event_ids: None,
            distinct_values: None,
            root_only_task: None,
            assumed_root: None,
            next_steps: vec![],
        }
    }

    fn key(rule: &str, principal: &str) -> IncidentKey {
        IncidentKey {
            rule: rule.into(),
            account: "111122223333".into(),
            principal: principal.into(),
        }
    }

    #[test]
    fn a_storm_folds_into_one_bounded_incident() {
        let mut folder = Folder::new();
        for i in 0..100_000 {
            folder.add(
                key("unauthorized-api-call", "arn:aws:iam::111122223333:role/r"),
                alert("unauthorized-api-call", i, &format!("session-{}", i % 1000)),
            );
        }
        let folds = folder.finish();
        assert_eq!(folds.len(), 1);
        let f = &folds[0];
        assert_eq!(f.stats.count, 100_000);
        assert_eq!(f.alerts.len(), LISTED);
        assert_eq!(f.stats.first_time.as_deref(), Some("2026-11-20T09:00:00Z"));
        assert_eq!(f.stats.last_time.as_deref(), Some("2026-11-20T09:59:00Z"));
        assert_eq!(f.stats.sessions.values.len(), TALLY_VALUES);
        assert_eq!(
            f.stats.sessions.values.iter().map(|v| v.1).sum::<u64>() + f.stats.sessions.others,
            100_000
        );
        assert_eq!(f.stats.event_names.top(1)[0], ("GetObject", 50_000));
    }

    #[test]
    fn keys_past_the_cap_share_one_fold() {
        let mut folder = Folder::new();
        for i in 0..MAX_KEYS + 50 {
            folder.add(key("r", &format!("p{i}")), alert("r", i, "s"));
        }
        let folds = folder.finish();
        assert_eq!(folds.len(), MAX_KEYS + 1);
        let many = folds
            .iter()
            .find(|f| f.key.principal == MANY_PRINCIPALS)
            .expect("overflow fold");
        assert_eq!(many.stats.count, 50);
    }

    #[test]
    fn stats_merge() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        a.add(&alert("r", 5, "s1"));
        b.add(&alert("r", 1, "s2"));
        b.add(&alert("r", 9, "s2"));
        a.merge(&b);
        assert_eq!(a.count, 3);
        assert_eq!(a.first_time.as_deref(), Some("2026-11-20T09:01:00Z"));
        assert_eq!(a.last_time.as_deref(), Some("2026-11-20T09:09:00Z"));
        assert_eq!(a.sessions.top(1)[0], ("s2", 2));
    }
}
