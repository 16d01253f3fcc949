//! Sigma YAML (builtin + user directories) → a compiled rule set; a record → the rules it fires.
//!
//! Detection is stateless and runs on many threads at once against the shared [`RuleSet`].
//! Correlation rules (e.g. `console-login-brute-force`) are compiled here and decided on event
//! time by `incidents::correlate`, which sees only the records whose detections a correlation
//! references: a handful out of millions.
//!
//! A rule that fails to parse or compile is reported with its file and reason, and the rest of
//! the set still runs. Sigma v1 aggregations are translated to correlations ([`legacy`]).

mod legacy;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use include_dir::{Dir, include_dir};
use rsigma_eval::event::Event;
use rsigma_eval::result::EvaluationResult;
use rsigma_eval::{CompiledCorrelation, CorrelationConfig, CorrelationEngine, Engine};
use rsigma_parser::{
    CorrelationRule, FilterRule, FilterRuleTarget, SigmaCollection, SigmaRule, parse_sigma_yaml,
};
use serde::{Deserialize, Serialize};

/// The builtin detections, one Sigma file each, compiled into the binary.
static BUILTIN: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/rules");

/// Alert severity, ordered from least to most severe. Sigma's levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Level {
    /// The lower-case Sigma spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Informational => "informational",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "informational" | "info" => Ok(Level::Informational),
            "low" => Ok(Level::Low),
            "medium" => Ok(Level::Medium),
            "high" => Ok(Level::High),
            "critical" => Ok(Level::Critical),
            other => Err(format!(
                "unknown level {other:?}; expected informational, low, medium, high or critical"
            )),
        }
    }
}

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
    /// False for a detection that only feeds a translated v1 aggregation: its matches count
    /// towards the correlation but do not alert on their own.
    pub alerts: bool,
    /// What to do about an alert: the rule's `next_steps`, one short imperative line each.
    pub next_steps: Vec<String>,
    /// The rule's own incident window (`incident_window`), overriding the daemon's default.
    pub incident_window: Option<std::time::Duration>,
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
                origin: format!("builtin:rules/{}", file.path().display()),
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

    /// Evaluates the stateless detections against one record.
    pub fn evaluate(&self, event: &impl Event) -> Vec<EvaluationResult> {
        self.detector.evaluate(event)
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

fn read_dir_sources(dir: &Path) -> Result<Vec<Source>, RuleDirError> {
    let err = |source| RuleDirError {
        path: dir.to_owned(),
        source,
    };
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(|e| err(e.into()))?;
        if !entry.file_type().is_file() || !is_yaml(entry.path()) {
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
        // take the others down.
        let mut scratch = Engine::new();
        for rule in &kept_rules {
            // Compiled once already in `add_source`.
            let _ = scratch.add_rule(rule);
        }
        let mut kept_filters = Vec::new();
        for (mut filter, origin) in std::mem::take(&mut self.filters) {
            if let FilterRuleTarget::Specific(refs) = &mut filter.rules {
                for r in refs.iter_mut() {
                    if let Some(id) = catalog.name_to_id.get(r.as_str()) {
                        *r = id.clone();
                    }
                }
            }
            let checked = scratch
                .apply_filter(&filter)
                .map_err(|e| e.to_string())
                .and_then(|()| catalog.add(&filter, origin.clone(), RuleKind::Filter, false));
            match checked {
                Ok(_) => kept_filters.push(filter),
                Err(reason) => self.error(&origin, Some(&filter.title), reason),
            }
        }

        // Correlations likewise, each against a scratch engine holding every detection rule.
        let mut kept_correlations = Vec::new();
        let mut correlations = Vec::new();
        let mut feeds: HashMap<usize, Vec<Feed>> = HashMap::new();
        for (corr, origin) in std::mem::take(&mut self.correlations) {
            let mut trial = SigmaCollection::new();
            trial.rules = kept_rules.clone();
            trial.correlations = vec![corr.clone()];
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
            let checked = new_engine()
                .add_collection(&trial)
                .map_err(|e| e.to_string())
                .and(targets)
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
            for (rule_ref, detection) in targets {
                let info = &catalog.infos[detection];
                feeds.entry(detection).or_default().push(Feed {
                    correlation: correlations.len(),
                    rule_ref: rule_ref.clone(),
                    identities: info.id.iter().chain([&info.name]).cloned().collect(),
                });
            }
            correlations.push(Correlation {
                rule: index,
                compiled,
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
        }
    }
}

/// The metadata every kind of Sigma document carries.
trait Meta {
    fn name(&self) -> Option<&str>;
    fn id(&self) -> Option<&str>;
    fn title(&self) -> &str;
    fn level(&self) -> Option<rsigma_parser::Level>;
    fn tags(&self) -> &[String];
}

macro_rules! impl_meta {
    ($($t:ty),*) => {$(
        impl Meta for $t {
            fn name(&self) -> Option<&str> { self.name.as_deref() }
            fn id(&self) -> Option<&str> { self.id.as_deref() }
            fn title(&self) -> &str { &self.title }
            fn level(&self) -> Option<rsigma_parser::Level> { self.level }
            fn tags(&self) -> &[String] { &self.tags }
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
    /// Sigma `name` → `id`, so filters and correlations may refer to rules by name.
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
        let index = self.infos.len();
        self.names.insert(name.clone());
        // Filters are not alert sources, so only detections and correlations are looked up.
        if kind != RuleKind::Filter {
            self.by_key.insert(key, index);
        }
        if let (Some(n), Some(id)) = (doc.name(), doc.id()) {
            self.name_to_id.insert(n.to_owned(), id.to_owned());
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
            next_steps: Vec::new(),
            incident_window: None,
        });
        Ok(index)
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
    use rsigma_eval::event::JsonEvent;
    use serde_json::json;

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
    fn level_order_and_parse() {
        assert!(Level::Critical > Level::High);
        assert_eq!("HIGH".parse::<Level>(), Ok(Level::High));
        assert!("severe".parse::<Level>().is_err());
    }
}
