//! Correlation events: the few fields of a record that a correlation needs, per group, kept in
//! memory that is bounded and shared fairly while a source is read.
//!
//! Producers fill a [`Batch`] (`pipeline::correlation` builds the events); the incidents stage
//! stores the events and decides windows on event time.

use std::collections::{BTreeMap, HashMap, VecDeque};

use rsigma_eval::GroupKey;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::hex;

/// One record's contribution to one correlation group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CorrEvent {
    /// `eventTime`, epoch seconds.
    pub ts: i64,
    pub event_id: String,
    /// The detection reference it counts as (temporal correlations count by rule).
    pub rule_ref: String,
    /// What `value_count` counts distinct, or the number numeric aggregations add up, rendered
    /// as rsigma renders it; `None` when the record lacks the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The record's fields that alerts and group-by read, as compact JSON text: a window's
    /// events are kept (and stored) far more often than they fire.
    pub record: Box<RawValue>,
    /// The log file (or event) it came from.
    #[serde(default)]
    pub source: String,
}

/// A correlation group: which correlation, and the group-by values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Group {
    /// Index into the rule set's correlations.
    pub correlation: usize,
    pub key: GroupKey,
}

impl Group {
    /// A stable digest naming the group in the state store: the correlation's rule name
    /// (`rule`) and the group-by values.
    pub fn digest(&self, rule: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(rule.as_bytes());
        for value in &self.key.0 {
            match value {
                Some(v) => {
                    hasher.update([1u8]);
                    hasher.update(v.as_bytes());
                }
                None => hasher.update([2u8]),
            }
            hasher.update([0u8]);
        }
        hex(&hasher.finalize()[..16])
    }
}

/// The events of one source that feed correlations, in bounded memory that is shared fairly:
/// a flood of cheap events (failed sign-ins for made-up user names, each its own group) must
/// not crowd out a later burst.
///
/// Each group keeps at most [`Batch::MAX_PER_GROUP`] events, and the batch at most
/// [`Batch::MAX_EVENTS`]. When the batch is full, room is made by evicting the oldest group
/// that holds a single event (one event cannot fire a window on its own in this source); only
/// when no such group is left is the new event itself dropped. Every drop is counted, per
/// correlation, with the first group it hit, for the source's log line and metrics.
#[derive(Debug, Default)]
pub struct Batch {
    /// Groups in first-seen order, each with its events.
    groups: Vec<(Group, Vec<CorrEvent>)>,
    index: HashMap<Group, usize>,
    /// Events held across all groups.
    total: usize,
    /// Groups that held one event when it was added, oldest first (some may have grown).
    singles: VecDeque<usize>,
    /// For counted values (`value_count`): (group, value) → indices in that group's events of
    /// its earliest and latest occurrence.
    values: HashMap<(usize, String), (usize, usize)>,
    /// Events left out, per correlation index: how many, and the first group they were of.
    dropped: BTreeMap<usize, (u64, GroupKey)>,
}

impl Batch {
    /// Correlation events kept per source. A burst needs a handful; a storm of millions of
    /// failed sign-ins in one file fires long before this and keeps memory flat.
    pub const MAX_EVENTS: usize = 20_000;
    /// Correlation events kept per group and source.
    pub const MAX_PER_GROUP: usize = 2_000;

    /// Adds an event to its group if there is room (see [`Batch`]); its index in the group.
    pub fn push(&mut self, group: Group, event: CorrEvent) -> Option<(usize, usize)> {
        let g = match self.index.get(&group) {
            Some(&g) => g,
            None => {
                self.groups.push((group.clone(), Vec::new()));
                self.index.insert(group, self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        if self.groups[g].1.len() >= Self::MAX_PER_GROUP
            || (self.total >= Self::MAX_EVENTS && !self.evict_single(g))
        {
            self.drop_event(g, 1);
            return None;
        }
        let events = &mut self.groups[g].1;
        events.push(event);
        if events.len() == 1 {
            self.singles.push_back(g);
        }
        self.total += 1;
        Some((g, events.len() - 1))
    }

    /// Evicts the oldest group still holding a single event, other than `keep`; false when
    /// there is none.
    fn evict_single(&mut self, keep: usize) -> bool {
        let mut skipped_keep = false;
        while let Some(g) = self.singles.pop_front() {
            if g == keep {
                skipped_keep = true;
                continue;
            }
            if self.groups[g].1.len() != 1 {
                continue;
            }
            let event = self.groups[g].1.remove(0);
            if let Some(value) = event.value {
                self.values.remove(&(g, value));
            }
            self.total -= 1;
            self.drop_event(g, 1);
            if skipped_keep {
                self.singles.push_front(keep);
            }
            return true;
        }
        if skipped_keep {
            self.singles.push_front(keep);
        }
        false
    }

    fn drop_event(&mut self, g: usize, n: u64) {
        let group = &self.groups[g].0;
        self.dropped
            .entry(group.correlation)
            .or_insert_with(|| (0, group.key.clone()))
            .0 += n;
    }

    /// Events left out of this batch, per correlation index: how many, and the first group.
    pub fn dropped(&self) -> impl Iterator<Item = (usize, u64, &GroupKey)> {
        self.dropped.iter().map(|(&c, (n, key))| (c, *n, key))
    }

    /// Adds an event of a `value_count` correlation, which counts distinct values: of a
    /// value's occurrences in one source only the earliest and the latest can change a decision
    /// (a log file spans less than a correlation's window), so an application reading its own
    /// secret a thousand times is two events, not a thousand. `make` builds the event, only
    /// when it is kept.
    pub fn add_value(
        &mut self,
        group: &Group,
        value: String,
        ts: i64,
        make: impl FnOnce() -> CorrEvent,
    ) {
        let known = self
            .index
            .get(group)
            .and_then(|&g| Some((g, *self.values.get(&(g, value.clone()))?)));
        let Some((g, (first, last))) = known else {
            if let Some((g, i)) = self.push(group.clone(), make()) {
                self.values.insert((g, value), (i, i));
            }
            return;
        };
        let key = (g, value);
        let events = &self.groups[g].1;
        if ts < events[first].ts {
            if first == last {
                if let Some((_, i)) = self.push(group.clone(), make()) {
                    self.values.insert(key, (i, last));
                }
            } else {
                self.groups[g].1[first] = make();
            }
        } else if ts > events[last].ts {
            if first == last {
                if let Some((_, i)) = self.push(group.clone(), make()) {
                    self.values.insert(key, (first, i));
                }
            } else {
                self.groups[g].1[last] = make();
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The groups that hold events, each with its events.
    pub fn groups(&self) -> Vec<(Group, Vec<CorrEvent>)> {
        self.groups
            .iter()
            .filter(|(_, events)| !events.is_empty())
            .cloned()
            .collect()
    }

    /// Every event with its group, for deciding many sources together (`scan`).
    pub fn into_events(self) -> impl Iterator<Item = (Group, CorrEvent)> {
        self.groups
            .into_iter()
            .flat_map(|(group, events)| events.into_iter().map(move |e| (group.clone(), e)))
    }
}
