//! Sigma YAML (builtin + user directories) → a compiled rule set; a record → the rules it fires.
//!
//! Detection is stateless and runs on many threads at once against the shared [`RuleSet`].
//! Correlation rules (e.g. `console-login-brute-force`) are compiled here and decided on event
//! time by `incidents::correlate`, which sees only the records whose detections a correlation
//! references: a handful out of millions.
//!
//! A rule that fails to parse or compile is reported with its file and reason, and the rest of
//! the set still runs. Sigma v1 aggregations are translated to correlations ([`legacy`]).
//!
//! Besides Sigma's own keys, a rule may carry trailwarden's top-level keys, which rsigma keeps
//! in `custom_attributes`: `next_steps` (what an operator should do, shown in alerts) and
//! `incident_window` (a Sigma timespan). A `value_count` correlation may name
//! `trailwarden.value_fields` (see [`Correlation::value_sources`]).
//!
//! Records are evaluated with the derived fields of [`derived`] (`trailwarden.*`), computed on
//! demand from the [`Derivation`] the rule set was given: our accounts, trail buckets and
//! AWS's IP ranges.

pub mod alerts;
pub mod derived;
pub mod fields;
pub mod ip_ranges;
mod legacy;
pub mod policy;
pub mod root_tasks;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::finding::Level;
pub use derived::{Derivation, Derived};
use include_dir::{Dir, include_dir};
use rsigma_eval::event::Event;
use rsigma_eval::result::EvaluationResult;
use rsigma_eval::{CompiledCorrelation, CorrelationConfig, CorrelationEngine, Engine};
use rsigma_parser::{
    CorrelationCondition, CorrelationRule, CorrelationType, FilterRule, FilterRuleTarget,
    LogSource, SigmaCollection, SigmaRule, Timespan, parse_sigma_yaml,
};
use serde::{Serialize, Serializer};

/// The builtin detections, one Sigma file each, compiled into the binary.
static BUILTIN: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/rules");

/// How a builtin rule's origin starts (`builtin:rules/<file>`).
const BUILTIN_ORIGIN: &str = "builtin:";

/// Most `next_steps` lines a rule may carry: an alert is read on a phone, and three short
/// steps are as many as a pager message holds.
const MAX_NEXT_STEPS: usize = 3;

/// The custom attribute that lists, for a `value_count` correlation, where each record keeps
/// the value to count (see [`Correlation::value_sources`]).
const VALUE_FIELDS_ATTRIBUTE: &str = "trailwarden.value_fields";

impl From<rsigma_parser::Level> for Level {
    fn from(level: rsigma_parser::Level) -> Self {
        match level {
            rsigma_parser::Level::Informational => Level::Informational,
            rsigma_parser::Level::Low => Level::Low,
            rsigma_parser::Level::Medium => Level::Medium,
            rsigma_parser::Level::High => Level::High,
            rsigma_parser::Level::Critical => Level::Critical,
        }
    }
}

/// What kind of Sigma document a loaded rule is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    Detection,
    Correlation,
    Filter,
}

/// Metadata of one loaded rule, for alerts and `trailwarden rules`.
#[derive(Debug, Clone, Serialize)]
pub struct RuleInfo {
    /// Stable identifier shown in alerts: the Sigma `name`, else its `id`, else its title.
    pub name: String,
    /// The Sigma `id`, when the rule has one.
    pub id: Option<String>,
    /// Human title.
    pub title: String,
    /// Severity; rules without a level count as medium.
    pub level: Level,
    /// Sigma tags (ATT&CK, CIS).
    pub tags: Vec<String>,
    /// Where the rule came from: `builtin:<file>` or a path.
    pub origin: String,
    /// Detection, correlation or filter.
    pub kind: RuleKind,
    /// False for a detection that only feeds a correlation: a translated v1 aggregation's
    /// detection, or a correlation's own base rule (same file) when the correlation does not
    /// set `generate: true`. Its matches count towards the correlation but do not alert alone.
    pub alerts: bool,
    /// What to do when the rule fires: its `next_steps:` lines, one short imperative each
    /// (empty when the rule has none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub next_steps: Vec<String>,
    /// The rule's `incident_window:` (a Sigma timespan such as `30m`), for grouping its alerts
    /// into incidents.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_seconds"
    )]
    pub incident_window: Option<Duration>,
    /// For a `value_count` correlation: the field whose distinct values it counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_field: Option<String>,
}

/// Durations as whole seconds, the unit a Sigma timespan resolves to.
fn serialize_seconds<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_u64(d.as_secs()),
        None => s.serialize_none(),
    }
}

/// A rule that could not be loaded, and why.
#[derive(Debug, Clone, Serialize)]
pub struct LoadError {
    /// The file the rule came from.
    pub origin: String,
    /// The rule's title, when the file parsed far enough to have one.
    pub title: Option<String>,
    /// What was wrong.
    pub reason: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.title {
            Some(title) => write!(f, "{}: rule {title:?}: {}", self.origin, self.reason),
            None => write!(f, "{}: {}", self.origin, self.reason),
        }
    }
}

/// Rule directories could not be read at all (as opposed to single bad rules).
#[derive(Debug, thiserror::Error)]
#[error("cannot read rule directory {path}: {source}")]
pub struct RuleDirError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// A correlation rule that fired.
#[derive(Debug)]
pub struct CorrelationHit {
    /// Index into [`RuleSet::rules`].
    pub rule: usize,
    /// Aggregated value: for `event_count`, the number of events in the window.
    pub count: u64,
    /// The group-by fields and their values, e.g. the account and user name.
    pub group: Vec<(String, String)>,
    /// The window's records (the fields alerts read), oldest first.
    pub events: Vec<serde_json::Value>,
}

/// A correlation rule, compiled for evaluation on event time.
pub struct Correlation {
    /// Index into [`RuleSet::rules`].
    pub rule: usize,
    /// rsigma's compiled form: group-by fields, timespan, window mode and condition.
    pub compiled: CompiledCorrelation,
    /// For a `value_count` correlation with `trailwarden.value_fields`: where a record may
    /// hold the value to count, its own `field` first; empty otherwise.
    ///
    /// rsigma's `value_count` counts one scalar per record, read from one field whatever rule
    /// matched, and skips records where that field holds a list. "How many distinct secrets
    /// did one principal read" finds the secret in `secretId` (secretsmanager
    /// GetSecretValue), `name` (ssm GetParameter) or `names`, a list of up to ten (ssm
    /// GetParameters). Such a record counts once per value: the first of these fields present
    /// is read, each element of it when it is a list.
    pub value_sources: Vec<String>,
}

/// One correlation that a detection rule's matches count towards.
#[derive(Debug, Clone)]
pub struct Feed {
    /// Index into [`RuleSet::correlations`].
    pub correlation: usize,
    /// The reference as the correlation wrote it (temporal correlations count by it).
    pub rule_ref: String,
    /// The detection's id and name, which group-by aliases are keyed by.
    pub identities: Vec<String>,
    /// The fields its events keep: what alerts read ([`alerts::ALERT_FIELDS`]), the group-by
    /// fields and the counted field. Sorted step by step as a JSON object of them is written,
    /// without repeats, and without the paths inside another one it keeps whole.
    pub kept: Vec<String>,
}

/// [`Feed::kept`] for a correlation fed by the detection of `identities`.
fn kept_fields(correlation: &CompiledCorrelation, identities: &[&str]) -> Vec<String> {
    let group_by = correlation.group_by.iter().map(|f| f.resolve(identities));
    let counted = correlation
        .condition
        .field
        .iter()
        .flatten()
        .map(String::as_str);
    let mut kept: Vec<&str> = alerts::ALERT_FIELDS
        .iter()
        .copied()
        .chain(group_by)
        .chain(counted)
        .collect();
    kept.sort_unstable_by(|a, b| a.split('.').cmp(b.split('.')));
    kept.dedup();
    let inside = |path: &str, outer: &str| {
        path.strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('.'))
    };
    kept.iter()
        .filter(|path| !kept.iter().any(|outer| inside(path, outer)))
        .map(|path| (*path).to_owned())
        .collect()
}

/// The compiled rule set, shared read-only by every worker.
pub struct RuleSet {
    detector: CorrelationEngine,
    rules: Vec<RuleInfo>,
    /// Sigma id (or title, for rules without an id) → index into `rules`.
    by_key: HashMap<String, usize>,
    correlations: Vec<Correlation>,
    /// Detection rule index → the correlations its matches count towards.
    feeds: HashMap<usize, Vec<Feed>>,
    errors: Vec<LoadError>,
    /// Fields rules read that no CloudTrail record has: the rule loads, but cannot match there.
    unknown_fields: Vec<fields::UnknownField>,
    /// What derived fields are computed from, besides the record.
    derivation: Derivation,
}

/// One Sigma source file, read but not yet parsed.
struct Source {
    origin: String,
    text: String,
}

impl RuleSet {
    /// Loads the builtin rules and every `*.yml`/`*.yaml` file under each directory.
    ///
    /// Bad rules are collected in [`Self::errors`]; only an unreadable directory is an error.
    pub fn load(dirs: &[PathBuf]) -> Result<Self, RuleDirError> {
        let mut sources: Vec<Source> = Vec::new();
        let mut builtin: Vec<_> = BUILTIN.files().filter(|f| is_yaml(f.path())).collect();
        builtin.sort_by_key(|f| f.path());
        for file in builtin {
            sources.push(Source {
                origin: format!("{BUILTIN_ORIGIN}rules/{}", file.path().display()),
                text: String::from_utf8_lossy(file.contents()).into_owned(),
            });
        }
        for dir in dirs {
            sources.extend(read_dir_sources(dir)?);
        }
        Ok(Self::from_sources(sources))
    }

    /// Loads only the given YAML texts (no builtin rules). For tests and tools.
    pub fn from_yaml<'a>(docs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self::from_sources(
            docs.into_iter()
                .map(|(origin, text)| Source {
                    origin: origin.to_owned(),
                    text: text.to_owned(),
                })
                .collect(),
        )
    }

    fn from_sources(sources: Vec<Source>) -> Self {
        let mut loader = Loader::default();
        for source in sources {
            loader.add_source(source);
        }
        loader.finish()
    }

    /// Every loaded rule.
    pub fn rules(&self) -> &[RuleInfo] {
        &self.rules
    }

    /// Rules that failed to load.
    pub fn errors(&self) -> &[LoadError] {
        &self.errors
    }

    /// Fields the loaded files' rules read that no CloudTrail record has (most likely typos:
    /// such a rule loads and never fires).
    pub fn unknown_fields(&self) -> &[fields::UnknownField] {
        &self.unknown_fields
    }

    /// Gives the rule set what derived fields are computed from (the default knows no
    /// trusted accounts, no trail buckets and no AWS IP ranges).
    pub fn with_derivation(mut self, derivation: Derivation) -> Self {
        self.derivation = derivation;
        self
    }

    /// What derived fields are computed from.
    pub fn derivation(&self) -> &Derivation {
        &self.derivation
    }

    /// Evaluates the stateless detections against one record, with its derived fields.
    pub fn evaluate<E: Event + ?Sized>(&self, event: &E) -> Vec<EvaluationResult> {
        self.evaluate_derived(&Derived::new(event, &self.derivation))
    }

    /// Evaluates the stateless detections against a record's derived view, which the caller
    /// keeps to build the alerts from what the rules saw.
    pub fn evaluate_derived<E: Event + ?Sized>(
        &self,
        derived: &Derived<'_, E>,
    ) -> Vec<EvaluationResult> {
        self.detector.evaluate(derived)
    }

    /// The loaded rule a detection or correlation result belongs to.
    pub fn rule_of(&self, result: &EvaluationResult) -> Option<usize> {
        let header = &result.header;
        header
            .rule_id
            .as_ref()
            .and_then(|id| self.by_key.get(id))
            .or_else(|| self.by_key.get(&header.rule_title))
            .copied()
    }

    /// The correlations the matches of detection rule `index` (an index into [`Self::rules`])
    /// count towards; empty for most rules.
    pub fn feeds(&self, index: usize) -> &[Feed] {
        self.feeds.get(&index).map_or(&[], Vec::as_slice)
    }

    /// The loaded rule with this stable name.
    pub fn by_name(&self, name: &str) -> Option<&RuleInfo> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// Every loaded correlation rule.
    pub fn correlations(&self) -> &[Correlation] {
        &self.correlations
    }

    /// The rule behind correlation `index`.
    pub fn correlation_rule(&self, index: usize) -> &RuleInfo {
        &self.rules[self.correlations[index].rule]
    }
}

fn new_engine() -> CorrelationEngine {
    CorrelationEngine::new(CorrelationConfig {
        timestamp_fields: vec!["eventTime".to_owned()],
        ..CorrelationConfig::default()
    })
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yml" | "yaml")
    )
}

/// Whether a path names a rule test file (`*.test.json`, `*.test.yml`, `*.test.yaml`), which
/// sits beside rules but is not one (see `rule_test`).
pub fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    [".test.json", ".test.yml", ".test.yaml"]
        .iter()
        .any(|suffix| name.ends_with(suffix))
}

fn read_dir_sources(dir: &Path) -> Result<Vec<Source>, RuleDirError> {
    let err = |source| RuleDirError {
        path: dir.to_owned(),
        source,
    };
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(|e| err(e.into()))?;
        if !entry.file_type().is_file() || !is_yaml(entry.path()) || is_test_file(entry.path()) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).map_err(|source| RuleDirError {
            path: entry.path().to_owned(),
            source,
        })?;
        out.push(Source {
            origin: entry.path().display().to_string(),
            text,
        });
    }
    Ok(out)
}

/// Accumulates documents from many files, rejecting bad ones individually.
#[derive(Default)]
struct Loader {
    rules: Vec<(SigmaRule, String)>,
    correlations: Vec<(CorrelationRule, String)>,
    filters: Vec<(FilterRule, String)>,
    errors: Vec<LoadError>,
    unknown_fields: Vec<fields::UnknownField>,
    /// Ids of detections generated from v1 aggregations; they do not alert on their own.
    feeders: HashSet<String>,
}

impl Loader {
    fn error(&mut self, origin: &str, title: Option<&str>, reason: impl Into<String>) {
        self.errors.push(LoadError {
            origin: origin.to_owned(),
            title: title.map(str::to_owned),
            reason: reason.into(),
        });
    }

    fn add_source(&mut self, source: Source) {
        // The builtin rules are held to reading only CloudTrail's fields by a test; checking
        // them again would parse their YAML twice on every start, a third of loading them.
        if !source.origin.starts_with(BUILTIN_ORIGIN) {
            self.unknown_fields
                .extend(fields::unknown_fields(&source.text).into_iter().map(|u| {
                    fields::UnknownField {
                        origin: source.origin.clone(),
                        ..u
                    }
                }));
        }
        let text = match legacy::rewrite(&source.text) {
            Some(rewritten) => {
                self.feeders.extend(rewritten.feeders);
                rewritten.text
            }
            None => source.text,
        };
        let collection = match parse_sigma_yaml(&text) {
            Ok(c) => c,
            Err(e) => return self.error(&source.origin, None, e.to_string()),
        };
        for e in &collection.errors {
            self.error(&source.origin, None, e.clone());
        }
        for rule in collection.rules {
            if let Some(reason) = logsource_mismatch(&rule.logsource) {
                self.error(&source.origin, Some(&rule.title), reason);
            } else if let Err(e) = rsigma_eval::compile_rule(&rule) {
                self.error(&source.origin, Some(&rule.title), e.to_string());
            } else {
                self.rules.push((rule, source.origin.clone()));
            }
        }
        for corr in collection.correlations {
            self.correlations.push((corr, source.origin.clone()));
        }
        for filter in collection.filters {
            self.filters.push((filter, source.origin.clone()));
        }
    }

    fn finish(mut self) -> RuleSet {
        let mut catalog = Catalog::default();

        let mut kept_rules = Vec::new();
        for (rule, origin) in std::mem::take(&mut self.rules) {
            let alerts = !self.feeders.contains(rule.id.as_deref().unwrap_or(""));
            match catalog.add(&rule, origin.clone(), RuleKind::Detection, alerts) {
                Ok(_) => kept_rules.push(rule),
                Err(reason) => self.error(&origin, Some(&rule.title), reason),
            }
        }

        // Filters are checked one by one against a scratch engine so one bad filter does not
        // take the others down. It compiles every rule again, so it is built only for filters.
        let mut scratch = None;
        // Correlations and filters are not filter targets; name them when a filter points there.
        let mut not_detections: HashMap<&str, &'static str> = HashMap::new();
        for (corr, _) in &self.correlations {
            for key in [
                corr.name.as_deref(),
                corr.id.as_deref(),
                Some(corr.title.as_str()),
            ] {
                not_detections.extend(key.map(|k| (k, "a correlation")));
            }
        }
        for (filter, _) in &self.filters {
            for key in [filter.name.as_deref(), filter.id.as_deref()] {
                not_detections.extend(key.map(|k| (k, "a filter")));
            }
        }
        let mut kept_filters = Vec::new();
        let mut checked_filters = Vec::new();
        for (filter, origin) in &self.filters {
            // rsigma applies a filter that names nothing it knows to nothing, silently: a typo
            // in a rule name would leave the automation it meant to silence paging forever.
            let target = check_filter_targets(filter, &kept_rules, &catalog, &not_detections);
            checked_filters.push((filter.clone(), origin.clone(), target));
        }
        self.filters.clear();
        for (mut filter, origin, target) in checked_filters {
            if let Err(reason) = target {
                self.error(&origin, Some(&filter.title), reason);
                continue;
            }
            if let FilterRuleTarget::Specific(refs) = &mut filter.rules {
                for r in refs.iter_mut() {
                    if let Some(id) = catalog.name_to_id.get(r.as_str()) {
                        *r = id.clone();
                    }
                }
            }
            let scratch = scratch.get_or_insert_with(|| {
                let mut engine = Engine::new();
                for rule in &kept_rules {
                    // Each compiled without error in `add_source`.
                    let _ = engine.add_rule(rule);
                }
                engine
            });
            let checked = scratch
                .apply_filter(&filter)
                .map_err(|e| e.to_string())
                .and_then(|()| catalog.add(&filter, origin.clone(), RuleKind::Filter, false));
            match checked {
                Ok(_) => kept_filters.push(filter),
                Err(reason) => self.error(&origin, Some(&filter.title), reason),
            }
        }

        // Correlations, each checked on its own so one bad correlation does not take the
        // others down.
        let mut kept_correlations = Vec::new();
        let mut correlations = Vec::new();
        let mut feeds: HashMap<usize, Vec<Feed>> = HashMap::new();
        for (corr, origin) in std::mem::take(&mut self.correlations) {
            let value_field = value_count_field(&corr);
            let sources = match value_fields(&corr, value_field.as_deref()) {
                Ok(sources) => sources,
                Err(reason) => {
                    self.error(&origin, Some(&corr.title), reason);
                    continue;
                }
            };
            let targets = corr
                .rules
                .iter()
                .map(|r| {
                    let target = catalog.name_to_id.get(r).unwrap_or(r);
                    match catalog.by_key.get(target) {
                        Some(&i) if catalog.infos[i].kind == RuleKind::Detection => Ok((r, i)),
                        // rsigma can chain correlations; events are correlated on event time
                        // here, one level deep.
                        Some(_) => Err(format!(
                            "refers to correlation {r:?}; a correlation may only refer to detection rules"
                        )),
                        None => Err(format!("refers to unknown rule {r:?}")),
                    }
                })
                .collect::<Result<Vec<_>, String>>();
            // The references are resolved above (which also rules out chains and cycles), and
            // compiling checks the rest; building a whole engine per correlation is not needed.
            let checked = targets
                .and_then(|targets| {
                    let compiled = rsigma_eval::correlation::compile_correlation(&corr)
                        .map_err(|e| e.to_string())?;
                    Ok((targets, compiled))
                })
                .and_then(|(targets, compiled)| {
                    let index = catalog.add(&corr, origin.clone(), RuleKind::Correlation, true)?;
                    Ok((targets, compiled, index))
                });
            let (targets, compiled, index) = match checked {
                Ok(ok) => ok,
                Err(reason) => {
                    self.error(&origin, Some(&corr.title), reason);
                    continue;
                }
            };
            catalog.infos[index].value_field = value_field;
            // Sigma's `generate` (false by default) keeps a correlation's base rules quiet.
            // Only the rules defined next to it are silenced, so a user's correlation over a
            // builtin rule never mutes the builtin alert.
            if !corr.generate {
                for (_, detection) in &targets {
                    if catalog.infos[*detection].origin == origin {
                        catalog.infos[*detection].alerts = false;
                    }
                }
            }
            for (rule_ref, detection) in targets {
                let info = &catalog.infos[detection];
                let identities: Vec<String> = info.id.iter().chain([&info.name]).cloned().collect();
                let refs: Vec<&str> = identities.iter().map(String::as_str).collect();
                feeds.entry(detection).or_default().push(Feed {
                    correlation: correlations.len(),
                    rule_ref: rule_ref.clone(),
                    kept: kept_fields(&compiled, &refs),
                    identities,
                });
            }
            correlations.push(Correlation {
                rule: index,
                compiled,
                value_sources: sources.unwrap_or_default(),
            });
            kept_correlations.push(corr);
        }

        let mut collection = SigmaCollection::new();
        collection.rules = kept_rules;
        collection.filters = kept_filters;
        collection.correlations = kept_correlations;
        let mut detector = new_engine();
        if let Err(e) = detector.add_collection(&collection) {
            // Every part was checked above; report rather than panic if the whole disagrees.
            self.error("rule set", None, e.to_string());
            detector = new_engine();
        }

        RuleSet {
            detector,
            rules: catalog.infos,
            by_key: catalog.by_key,
            correlations,
            feeds,
            errors: self.errors,
            unknown_fields: self.unknown_fields,
            derivation: Derivation::default(),
        }
    }
}

/// Why a filter's `rules:` list cannot take effect: it names a rule that is not loaded, that
/// is not a detection (filters change detection conditions only), or whose logsource the
/// filter's own `logsource` excludes.
fn check_filter_targets(
    filter: &FilterRule,
    rules: &[SigmaRule],
    catalog: &Catalog,
    not_detections: &HashMap<&str, &'static str>,
) -> Result<(), String> {
    let FilterRuleTarget::Specific(refs) = &filter.rules else {
        return Ok(());
    };
    if refs.is_empty() {
        return Err("filter names no rules in `rules:`".to_owned());
    }
    for r in refs {
        // What rsigma will look for: the id (or title) a name maps to, else the reference.
        let key = catalog.name_to_id.get(r.as_str()).unwrap_or(r);
        let target = rules
            .iter()
            .find(|rule| rule.id.as_deref() == Some(key.as_str()) || &rule.title == key);
        let Some(target) = target else {
            return Err(match not_detections.get(r.as_str()) {
                Some(kind) => {
                    format!("filter names {r:?}, {kind}; filters change detection rules only")
                }
                None => format!("filter names rule {r:?}, which is not loaded"),
            });
        };
        if let Some(ls) = &filter.logsource
            && !logsource_contains(ls, &target.logsource)
        {
            return Err(format!(
                "filter's logsource cannot match rule {r:?} (its logsource is product={} service={})",
                target.logsource.product.as_deref().unwrap_or("-"),
                target.logsource.service.as_deref().unwrap_or("-")
            ));
        }
    }
    Ok(())
}

/// Whether a filter with logsource `filter` applies to a rule with logsource `rule`: every
/// dimension the filter names must be present and equal in the rule, as rsigma decides.
fn logsource_contains(filter: &LogSource, rule: &LogSource) -> bool {
    let same = |f: &Option<String>, r: &Option<String>| match f {
        None => true,
        Some(f) => r.as_deref().is_some_and(|r| r.eq_ignore_ascii_case(f)),
    };
    same(&filter.category, &rule.category)
        && same(&filter.product, &rule.product)
        && same(&filter.service, &rule.service)
}

/// The field a `value_count` correlation counts distinct values of.
fn value_count_field(corr: &CorrelationRule) -> Option<String> {
    if corr.correlation_type != CorrelationType::ValueCount {
        return None;
    }
    match &corr.condition {
        CorrelationCondition::Threshold {
            field: Some(fields),
            ..
        } => fields.first().cloned(),
        _ => None,
    }
}

/// The correlation's `trailwarden.value_fields`, with its own `field` first; `None` when it
/// has none.
fn value_fields(
    corr: &CorrelationRule,
    field: Option<&str>,
) -> Result<Option<Vec<String>>, String> {
    let Some(raw) = corr.custom_attributes.get(VALUE_FIELDS_ATTRIBUTE) else {
        return Ok(None);
    };
    let Some(field) = field else {
        return Err(format!(
            "{VALUE_FIELDS_ATTRIBUTE} needs a value_count correlation with a condition field"
        ));
    };
    let listed = string_list(raw)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| format!("{VALUE_FIELDS_ATTRIBUTE} must be a list of field names"))?;
    let mut sources = vec![field.to_owned()];
    sources.extend(listed.into_iter().filter(|f| f != field));
    Ok(Some(sources))
}

/// A YAML sequence of strings, or `None` if it is anything else.
fn string_list(value: &yaml_serde::Value) -> Option<Vec<String>> {
    value
        .as_sequence()?
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// The metadata every kind of Sigma document carries.
trait Meta {
    fn name(&self) -> Option<&str>;
    fn id(&self) -> Option<&str>;
    fn title(&self) -> &str;
    fn level(&self) -> Option<rsigma_parser::Level>;
    fn tags(&self) -> &[String];
    fn custom_attributes(&self) -> &HashMap<String, yaml_serde::Value>;
}

macro_rules! impl_meta {
    ($($t:ty),*) => {$(
        impl Meta for $t {
            fn name(&self) -> Option<&str> { self.name.as_deref() }
            fn id(&self) -> Option<&str> { self.id.as_deref() }
            fn title(&self) -> &str { &self.title }
            fn level(&self) -> Option<rsigma_parser::Level> { self.level }
            fn tags(&self) -> &[String] { &self.tags }
            fn custom_attributes(&self) -> &HashMap<String, yaml_serde::Value> {
                &self.custom_attributes
            }
        }
    )*};
}

impl_meta!(SigmaRule, CorrelationRule, FilterRule);

/// The loaded rules' metadata and the indexes over it, with duplicates refused.
#[derive(Default)]
struct Catalog {
    infos: Vec<RuleInfo>,
    /// Sigma id (or title, for rules without an id) → index into `infos`.
    by_key: HashMap<String, usize>,
    /// Sigma `name` → `id` (or title, for rules without an id: rsigma finds a filter's
    /// target by either), so filters and correlations may refer to rules by name.
    name_to_id: HashMap<String, String>,
    names: HashSet<String>,
}

impl Catalog {
    fn add(
        &mut self,
        doc: &impl Meta,
        origin: String,
        kind: RuleKind,
        alerts: bool,
    ) -> Result<usize, String> {
        let name = stable_name(doc.name(), doc.id(), doc.title());
        let key = doc.id().unwrap_or(doc.title()).to_owned();
        if self.names.contains(&name) || self.by_key.contains_key(&key) {
            return Err(format!(
                "duplicate rule name or id {name:?}; the first one loaded is kept"
            ));
        }
        let next_steps = next_steps(doc.custom_attributes())?;
        let incident_window = incident_window(doc.custom_attributes())?;
        let index = self.infos.len();
        self.names.insert(name.clone());
        if let Some(n) = doc.name() {
            self.name_to_id.insert(n.to_owned(), key.clone());
        }
        // Filters are not alert sources, so only detections and correlations are looked up.
        if kind != RuleKind::Filter {
            self.by_key.insert(key, index);
        }
        let default_level = if kind == RuleKind::Filter {
            Level::Informational
        } else {
            Level::Medium
        };
        self.infos.push(RuleInfo {
            name,
            id: doc.id().map(str::to_owned),
            title: doc.title().to_owned(),
            level: doc.level().map(Level::from).unwrap_or(default_level),
            tags: doc.tags().to_vec(),
            origin,
            kind,
            alerts,
            next_steps,
            incident_window,
            value_field: None,
        });
        Ok(index)
    }
}

/// A rule's `next_steps:`: one to three non-empty lines of text.
fn next_steps(attributes: &HashMap<String, yaml_serde::Value>) -> Result<Vec<String>, String> {
    let Some(raw) = attributes.get("next_steps") else {
        return Ok(Vec::new());
    };
    let steps = string_list(raw)
        .ok_or_else(|| "next_steps must be a list of strings, one step each".to_owned())?;
    let steps: Vec<String> = steps
        .into_iter()
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    if steps.is_empty() || steps.len() > MAX_NEXT_STEPS || steps.iter().any(String::is_empty) {
        return Err(format!(
            "next_steps must hold 1 to {MAX_NEXT_STEPS} non-empty lines, not {}",
            steps.len()
        ));
    }
    Ok(steps)
}

/// A rule's `incident_window:`, a Sigma timespan such as `30m` or `2h`.
fn incident_window(
    attributes: &HashMap<String, yaml_serde::Value>,
) -> Result<Option<Duration>, String> {
    let Some(raw) = attributes.get("incident_window") else {
        return Ok(None);
    };
    let text = raw
        .as_str()
        .ok_or_else(|| "incident_window must be a timespan such as 30m or 2h".to_owned())?;
    match Timespan::parse(text) {
        Ok(span) if span.seconds > 0 => Ok(Some(Duration::from_secs(span.seconds))),
        _ => Err(format!(
            "incident_window {text:?} is not a timespan such as 30m or 2h (s, m, h, d, w)"
        )),
    }
}

/// The identifier alerts carry: Sigma `name`, else `id`, else the title.
fn stable_name(name: Option<&str>, id: Option<&str>, title: &str) -> String {
    name.or(id).unwrap_or(title).to_owned()
}

/// Rules written for other log sources would run against CloudTrail records and misfire.
fn logsource_mismatch(ls: &rsigma_parser::LogSource) -> Option<String> {
    let wrong = |field: &Option<String>, want: &str| {
        field
            .as_deref()
            .is_some_and(|v| !v.eq_ignore_ascii_case(want))
    };
    if wrong(&ls.product, "aws") || wrong(&ls.service, "cloudtrail") {
        return Some(format!(
            "logsource product={} service={} is not aws/cloudtrail",
            ls.product.as_deref().unwrap_or("-"),
            ls.service.as_deref().unwrap_or("-")
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudtrail::Record;
    use rsigma_eval::event::JsonEvent;
    use serde_json::json;

    #[test]
    fn builtin_rules_read_only_cloudtrail_fields() {
        // Loading skips this check for the builtin rules: it is made here instead.
        for file in BUILTIN.files().filter(|f| is_yaml(f.path())) {
            let text = std::str::from_utf8(file.contents()).expect("UTF-8 rule");
            let unknown = fields::unknown_fields(text);
            assert!(unknown.is_empty(), "{}: {unknown:?}", file.path().display());
        }
    }

    const RULE: &str = r#"
title: Root did something
id: 5b9d2a8e-0d0e-4a4e-9d47-000000000001
name: root-did-something
logsource: {product: aws, service: cloudtrail}
detection:
  selection:
    userIdentity.type: Root
  condition: selection
level: high
"#;

    #[test]
    fn loads_and_names_rules() {
        let set = RuleSet::from_yaml([("a.yml", RULE)]);
        assert!(set.errors().is_empty(), "{:?}", set.errors());
        assert_eq!(set.rules()[0].name, "root-did-something");
        let v = json!({"userIdentity": {"type": "root"}});
        let hits = set.evaluate(&JsonEvent::borrow(&v));
        assert_eq!(hits.len(), 1);
        assert_eq!(set.rule_of(&hits[0]), Some(0));
    }

    /// The engine's candidate index must still offer a rule whose only selection is a derived
    /// field, which no record holds under its own keys.
    #[test]
    fn a_rule_on_a_derived_field_alone_fires() {
        let rule = r#"
title: Acts on another user
name: acts-on-other-user
logsource: {product: aws, service: cloudtrail}
detection:
  selection:
    trailwarden.actsOnOtherUser: 'true'
  condition: selection
level: high
"#;
        let set = RuleSet::from_yaml([("a.yml", rule)]);
        assert!(set.errors().is_empty(), "{:?}", set.errors());
        let record = |user: &str| {
            json!({"eventName": "CreateAccessKey", "eventSource": "iam.amazonaws.com",
                "userIdentity": {"type": "IAMUser", "userName": "alice"},
                "requestParameters": {"userName": user}})
            .to_string()
        };
        let other = record("bob");
        let own = record("alice");
        let hits = |raw: &str| {
            set.evaluate(&Record::parse(raw.as_bytes()).expect("record"))
                .len()
        };
        assert_eq!(hits(&other), 1);
        assert_eq!(hits(&own), 0);
    }

    #[test]
    fn bad_rules_are_reported_and_the_rest_load() {
        let broken = "title: broken\ndetection: [not, a, map]\n";
        let windows = RULE
            .replace("product: aws, service: cloudtrail", "product: windows")
            .replace("root-did-something", "win")
            .replace("000000000001", "000000000002");
        let set =
            RuleSet::from_yaml([("bad.yml", broken), ("ok.yml", RULE), ("win.yml", &windows)]);
        assert_eq!(set.rules().len(), 1);
        let origins: Vec<_> = set.errors().iter().map(|e| e.origin.as_str()).collect();
        assert_eq!(origins, vec!["bad.yml", "win.yml"], "{:?}", set.errors());
    }

    #[test]
    fn filters_refer_to_rules_by_name() {
        let filter = r#"
title: Ignore break-glass automation
filter:
  rules: [root-did-something]
  selection:
    sourceIPAddress: 203.0.113.10
  condition: not selection
"#;
        let set = RuleSet::from_yaml([("a.yml", RULE), ("f.yml", filter)]);
        assert!(set.errors().is_empty(), "{:?}", set.errors());
        let quiet = json!({"userIdentity": {"type": "Root"}, "sourceIPAddress": "203.0.113.10"});
        let loud = json!({"userIdentity": {"type": "Root"}, "sourceIPAddress": "198.51.100.7"});
        assert!(set.evaluate(&JsonEvent::borrow(&quiet)).is_empty());
        assert_eq!(set.evaluate(&JsonEvent::borrow(&loud)).len(), 1);
    }

    #[test]
    fn filters_that_cannot_take_effect_are_load_errors() {
        let unknown = r#"
title: Silence a typo
filter:
  rules: [root-did-somthing]
  selection:
    sourceIPAddress: 203.0.113.10
  condition: not selection
"#;
        let wrong_logsource = r#"
title: Windows filter
logsource: {product: windows}
filter:
  rules: [root-did-something]
  selection:
    Image: x.exe
  condition: not selection
"#;
        let set = RuleSet::from_yaml([
            ("a.yml", RULE),
            ("typo.yml", unknown),
            ("win.yml", wrong_logsource),
        ]);
        let errors: Vec<_> = set
            .errors()
            .iter()
            .map(|e| (e.origin.as_str(), e.reason.as_str()))
            .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].0, "typo.yml");
        assert!(errors[0].1.contains("\"root-did-somthing\""), "{errors:?}");
        assert!(errors[0].1.contains("not loaded"), "{errors:?}");
        assert_eq!(errors[1].0, "win.yml");
        assert!(errors[1].1.contains("cannot match"), "{errors:?}");
        // The good rule still loads and, with no filter applied, still fires.
        assert_eq!(set.rules().len(), 1);
        let v = json!({"userIdentity": {"type": "Root"}, "sourceIPAddress": "203.0.113.10"});
        assert_eq!(set.evaluate(&JsonEvent::borrow(&v)).len(), 1);
    }

    #[test]
    fn filters_find_rules_without_an_id_by_name() {
        let no_id = RULE.replace("id: 5b9d2a8e-0d0e-4a4e-9d47-000000000001\n", "");
        let filter = r#"
title: Ignore break-glass automation
filter:
  rules: [root-did-something]
  selection:
    sourceIPAddress: 203.0.113.10
  condition: not selection
"#;
        let set = RuleSet::from_yaml([("a.yml", no_id.as_str()), ("f.yml", filter)]);
        assert!(set.errors().is_empty(), "{:?}", set.errors());
        let quiet = json!({"userIdentity": {"type": "Root"}, "sourceIPAddress": "203.0.113.10"});
        assert!(set.evaluate(&JsonEvent::borrow(&quiet)).is_empty());
    }

    #[test]
    fn filters_cannot_target_correlations() {
        let corr = r#"
title: Many root calls
id: 5b9d2a8e-0d0e-4a4e-9d47-000000000003
name: many-root-calls
correlation:
  type: event_count
  rules: [root-did-something]
  group-by: [recipientAccountId]
  timespan: 5m
  condition: {gte: 3}
generate: true
"#;
        let filter = r#"
title: Quiet correlation
filter:
  rules: [many-root-calls]
  selection:
    sourceIPAddress: 203.0.113.10
  condition: not selection
"#;
        let set = RuleSet::from_yaml([("a.yml", RULE), ("c.yml", corr), ("f.yml", filter)]);
        assert_eq!(set.errors().len(), 1, "{:?}", set.errors());
        assert_eq!(set.errors()[0].origin, "f.yml");
        assert!(set.errors()[0].reason.contains("correlation"));
    }

    #[test]
    fn next_steps_and_incident_window_load_and_are_checked() {
        let with = RULE.replace(
            "level: high",
            "level: high\nnext_steps:\n  - Delete the key\n  - Enable   MFA\nincident_window: 30m",
        );
        let set = RuleSet::from_yaml([("a.yml", with.as_str())]);
        assert!(set.errors().is_empty(), "{:?}", set.errors());
        let info = &set.rules()[0];
        assert_eq!(info.next_steps, ["Delete the key", "Enable MFA"]);
        assert_eq!(info.incident_window, Some(Duration::from_secs(1800)));

        for (bad, why) in [
            ("next_steps: Delete the key", "list"),
            ("next_steps: [a, b, c, d]", "1 to 3"),
            ("next_steps: []", "1 to 3"),
            ("incident_window: soon", "timespan"),
            ("incident_window: 0m", "timespan"),
            ("incident_window: 30", "timespan"),
        ] {
            let text = RULE.replace("level: high", &format!("level: high\n{bad}"));
            let set = RuleSet::from_yaml([("bad.yml", text.as_str())]);
            assert!(set.rules().is_empty(), "{bad}");
            assert_eq!(set.errors().len(), 1, "{bad}");
            assert_eq!(set.errors()[0].origin, "bad.yml");
            assert!(
                set.errors()[0].reason.contains(why),
                "{bad}: {:?}",
                set.errors()
            );
        }
    }

    /// A correlation's base rule in its own file, and a standalone rule it also uses.
    const SPRAY: &str = r#"
title: Failed sign-in
id: 5b9d2a8e-0d0e-4a4e-9d47-000000000010
name: failed-sign-in
logsource: {product: aws, service: cloudtrail}
detection:
  selection:
    eventName: ConsoleLogin
    responseElements.ConsoleLogin: Failure
  condition: selection
---
title: Many names
id: 5b9d2a8e-0d0e-4a4e-9d47-000000000011
name: many-names
correlation:
  type: value_count
  rules: [failed-sign-in, root-did-something]
  group-by: [sourceIPAddress]
  timespan: 10m
  condition:
    field: userIdentity.userName
    gte: 3
"#;

    #[test]
    fn generate_false_quiets_only_the_correlations_own_rules() {
        let set = RuleSet::from_yaml([("a.yml", RULE), ("spray.yml", SPRAY)]);
        assert!(set.errors().is_empty(), "{:?}", set.errors());
        let info = |name: &str| {
            set.rules()
                .iter()
                .find(|r| r.name == name)
                .expect("rule loaded")
        };
        assert!(
            !info("failed-sign-in").alerts,
            "defined next to the correlation"
        );
        assert!(info("root-did-something").alerts, "defined in another file");
        assert_eq!(
            info("many-names").value_field.as_deref(),
            Some("userIdentity.userName")
        );
    }

    #[test]
    fn value_fields_load_with_the_correlations_own_field_first() {
        let corr = r#"
title: Secret reads
id: 5b9d2a8e-0d0e-4a4e-9d47-000000000021
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
id: 5b9d2a8e-0d0e-4a4e-9d47-000000000020
name: secret-read
logsource: {product: aws, service: cloudtrail}
detection:
  selection:
    eventName: [GetSecretValue, GetParameters]
  condition: selection
"#;
        let set = RuleSet::from_yaml([("s.yml", corr)]);
        assert!(set.errors().is_empty(), "{:?}", set.errors());
        assert_eq!(
            set.correlations()[0].value_sources,
            ["requestParameters.secretId", "requestParameters.names"]
        );
        // The events keep what alerts read, the group-by field (read by alerts too: once) and
        // the counted one, sorted step by step as their JSON is written.
        let base = set.rules().iter().position(|r| r.name == "secret-read");
        let kept = &set.feeds(base.expect("loaded"))[0].kept;
        let mut expected: Vec<&str> = alerts::ALERT_FIELDS.to_vec();
        expected.push("requestParameters.secretId");
        expected.sort_by(|a, b| a.split('.').cmp(b.split('.')));
        assert_eq!(kept, &expected);
        let at = |path: &str| kept.iter().position(|k| k == path);
        assert_eq!(at("additionalEventData.MFAUsed"), Some(0));
        assert!(at("userIdentity.sessionContext.sessionIssuer.userName") < at("userIdentity.type"));
        let whole = corr.replace("group-by: [userIdentity.arn]", "group-by: [userIdentity]");
        let set = RuleSet::from_yaml([("s.yml", whole.as_str())]);
        let kept = &set.feeds(base.expect("loaded"))[0].kept;
        assert!(kept.contains(&"userIdentity".to_owned()));
        assert!(
            !kept.iter().any(|k| k.starts_with("userIdentity.")),
            "{kept:?}"
        );
        let bad = corr.replace(
            "trailwarden.value_fields: [requestParameters.names]",
            "trailwarden.value_fields: requestParameters.names",
        );
        let set = RuleSet::from_yaml([("s.yml", bad.as_str())]);
        assert_eq!(set.errors().len(), 1, "{:?}", set.errors());
        assert!(set.errors()[0].reason.contains("trailwarden.value_fields"));
    }

    #[test]
    fn level_order_and_parse() {
        assert!(Level::Critical > Level::High);
        assert_eq!("HIGH".parse::<Level>(), Ok(Level::High));
        assert!("severe".parse::<Level>().is_err());
    }
}
