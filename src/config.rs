//! Daemon settings: a TOML file and/or `TRAILWARDEN_*` environment variables → validated
//! [`Settings`].
//!
//! Strict by design: an unknown key or a value out of range stops start-up with a message that
//! names the key, because a typo in a monitor's config silently turns monitoring off. ECS task
//! definitions pass environment variables, so every key can also be set as
//! `TRAILWARDEN_<KEY>` (upper case); lists are comma-separated there. The environment wins.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::finding::Level;

/// Prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "TRAILWARDEN_";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Text when stderr is a terminal, JSON otherwise.
    Auto,
    /// One JSON object per line, for CloudWatch Logs and log pipelines.
    Json,
    /// Human-readable lines, for a terminal.
    Text,
}

/// Which accounts the posture audit covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AuditAccounts {
    /// The account the task's credentials are in.
    #[serde(rename = "self")]
    Own,
    /// That account (the organization's management account) and every ACTIVE member account,
    /// entered through `audit_role_name`.
    #[serde(rename = "organization")]
    Organization,
}

/// What an output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// An SNS topic: email text with next steps, then JSON, with filter-policy attributes.
    Sns,
    /// An SNS topic mapped to an AWS Chatbot (Amazon Q Developer in chat applications)
    /// channel in Slack or Microsoft Teams: custom notifications.
    Chatbot,
    /// PagerDuty's Events API v2.
    Pagerduty,
    /// AWS Security Hub findings (BatchImportFindings) in the daemon's account and region.
    Securityhub,
}

impl OutputKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputKind::Sns => "sns",
            OutputKind::Chatbot => "chatbot",
            OutputKind::Pagerduty => "pagerduty",
            OutputKind::Securityhub => "securityhub",
        }
    }
}

/// One `[[outputs]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSettings {
    /// Names the output in logs, metrics and /healthz: letters, digits, `-` and `_`.
    pub name: String,
    pub kind: OutputKind,
    /// Messages below this level are not sent here; unset, `min_level` applies.
    #[serde(default)]
    pub min_level: Option<Level>,
    /// Rules and checks sent here: names, or prefixes ending in `*`; unset sends every one.
    #[serde(default)]
    pub rules: Vec<String>,
    /// `sns` and `chatbot`: the topic.
    #[serde(default)]
    pub topic_arn: Option<String>,
    /// `pagerduty`: where the integration's routing key is kept, never the key itself: a
    /// Secrets Manager secret ARN (`arn:aws:secretsmanager:...`; the secret string is the key,
    /// or JSON with a `routing_key`), or an SSM SecureString parameter's ARN
    /// (`arn:aws:ssm:...:parameter/...`).
    #[serde(default)]
    pub routing_key: Option<String>,
    /// `pagerduty`: the Events API v2 URL; EU service region accounts use
    /// `https://events.eu.pagerduty.com/v2/enqueue`.
    #[serde(default)]
    pub events_url: Option<String>,
}

/// PagerDuty's Events API v2 endpoint (US service region).
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// Every daemon setting. See `config/trailwarden.toml` for the documented example.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// URL of the SQS queue that receives the bucket's notifications.
    pub queue_url: String,
    /// Long-poll wait per ReceiveMessage, in seconds (0–20). Longer means fewer empty receives.
    #[serde(default = "defaults::wait_time_secs")]
    pub wait_time_secs: u64,
    /// Messages per ReceiveMessage (1–10).
    #[serde(default = "defaults::max_messages")]
    pub max_messages: u32,
    /// Objects processed at once. More helps when objects are large or S3 is slow.
    #[serde(default = "defaults::workers")]
    pub workers: usize,
    /// Visibility timeout given to received messages, in seconds. The daemon extends it every
    /// third of this while a message is in work, so it bounds how soon a crashed task's
    /// messages are retried, not how long an object may take.
    #[serde(default = "defaults::visibility_timeout_secs")]
    pub visibility_timeout_secs: u64,
    /// Buckets whose objects may be read. A notification for any other bucket is refused.
    pub allowed_buckets: Vec<String>,
    /// SNS topic alerts are published to: one output of kind `sns` named `sns`, besides any
    /// in `outputs`. Optional when `outputs` names at least one.
    #[serde(default)]
    pub topic_arn: Option<String>,
    /// Where messages go, each delivered on its own (`[[outputs]]` tables; in the environment,
    /// a JSON array of the same tables).
    #[serde(default)]
    pub outputs: Vec<OutputSettings>,
    /// Pending deliveries per output at which intake pauses until the output catches up, so
    /// the state store and memory stay bounded through an output's outage.
    #[serde(default = "defaults::outputs_max_pending")]
    pub outputs_max_pending: usize,
    /// Alerts below this level are logged but not published.
    #[serde(default = "defaults::min_level")]
    pub min_level: Level,
    /// Extra directories of Sigma rules and filters, loaded after the builtin rules.
    #[serde(default)]
    pub rule_dirs: Vec<PathBuf>,
    /// Whether the daemon starts when a rule or filter fails to load. Off by default: a
    /// broken rule silently switches a detection off, and a broken filter leaves the
    /// automation it was meant to silence paging, so start-up fails (exit code 2) naming each.
    #[serde(default)]
    pub allow_rule_errors: bool,
    /// Log line format.
    #[serde(default = "defaults::log_format")]
    pub log_format: LogFormat,
    /// Seconds between two CloudWatch Embedded Metric Format lines on stdout (the metrics the
    /// stack's alarms read, with no agent or sidecar); 0 writes none.
    #[serde(default)]
    pub metrics_emf_interval_secs: u64,
    /// CloudWatch namespace of those metrics; the stack sets `Trailwarden/<stack name>` so
    /// two stacks in one account do not mix.
    #[serde(default = "defaults::metrics_namespace")]
    pub metrics_namespace: String,
    /// Address of the /healthz and /metrics listener.
    #[serde(default = "defaults::health_listen")]
    pub health_listen: SocketAddr,
    /// Seconds to finish in-flight messages after SIGTERM. Keep it under ECS's stop timeout
    /// (30 s by default) so the task exits before it is killed.
    #[serde(default = "defaults::shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
    /// ECS's stop timeout for the container, in seconds (`stopTimeout`, 30 by default): the
    /// grace period must end before it, or the task is killed mid-shutdown.
    #[serde(default = "defaults::stop_timeout_secs")]
    pub stop_timeout_secs: u64,
    /// Endpoint for every AWS client (an emulator, or a VPC endpoint URL). Unset in production.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// AWS region; unset means aws-config's default chain (the task's region on ECS).
    #[serde(default)]
    pub region: Option<String>,
    /// Cap on decompressed bytes per log object (gzip bomb guard).
    #[serde(default = "defaults::max_decompressed_bytes")]
    pub max_decompressed_bytes: u64,
    /// DynamoDB table holding incidents, follow-ups and correlation windows, shared by every
    /// task of the service. Unset keeps that state in this task's memory: enough for one
    /// task, but lost on restart.
    #[serde(default)]
    pub state_table: Option<String>,
    /// How long after its page an incident takes further alerts without paging again, in
    /// seconds; a rule's `incident_window` overrides it.
    #[serde(default = "defaults::incident_window_secs")]
    pub incident_window_secs: u64,
    /// Longest one attempt at a message may take, in seconds; a longer one is abandoned and
    /// retried. It bounds a stuck call, not an outage: work held for an outage waits as long
    /// as the outage lasts.
    #[serde(default = "defaults::message_timeout_secs")]
    pub message_timeout_secs: u64,
    /// Whether the daemon audits the posture of the account its credentials are in (root,
    /// users, keys, password policy, trails) and re-checks it when a record changes it. The
    /// task role needs the read-only actions listed in deploy/template.yaml.
    #[serde(default = "defaults::posture")]
    pub posture: bool,
    /// Seconds between two posture audits (at least 900). With a shared state table one task
    /// audits per interval, whatever the number of tasks and restarts; records that change
    /// posture are re-checked within seconds in between.
    #[serde(default = "defaults::posture_interval_secs")]
    pub posture_interval_secs: u64,
    /// Active access keys older than this many days are findings (CIS 1.14: 90).
    #[serde(default = "defaults::key_max_age_days")]
    pub key_max_age_days: u32,
    /// Console passwords and active keys unused for this many days are findings (CIS 1.12:
    /// 45).
    #[serde(default = "defaults::unused_credential_days")]
    pub unused_credential_days: u32,
    /// `self` audits the task's own account; `organization` (from the management account)
    /// also audits every ACTIVE member account through `audit_role_name`, and re-checks
    /// members' records through it.
    #[serde(default = "defaults::audit_accounts")]
    pub audit_accounts: AuditAccounts,
    /// The read-only role assumed in each member account (deploy/audit-member-role.yaml): a
    /// name, or an ARN whose account each member's replaces. Only with `organization`.
    #[serde(default)]
    pub audit_role_name: Option<String>,
    /// The `sts:ExternalId` the member role's trust policy asks for, if it asks.
    #[serde(default)]
    pub audit_external_id: Option<String>,
    /// Accounts that are ours besides each record's own (12-digit ids): a trust or resource
    /// policy granting one of them is not reported as opened to a foreign account.
    #[serde(default)]
    pub trusted_accounts: Vec<String>,
    /// Names shown beside account ids in every message (`[CRITICAL] root-console-login in
    /// prod-payments (111122223333)`): a table of 12-digit id = name. In the environment,
    /// `id=name` pairs separated by commas.
    #[serde(default)]
    pub account_names: BTreeMap<String, String>,
    /// Also list the names from AWS Organizations (ListAccounts: the management account or a
    /// delegated administrator), at start-up and hourly; `account_names` wins where both name
    /// an account, and a failed listing keeps the names in use.
    #[serde(default)]
    pub account_names_from_organizations: bool,
    /// AWS's published ip-ranges.json, read at start-up, so that instance credentials used
    /// from an AWS address are not reported as used outside AWS. Unset, every public address
    /// counts as outside AWS, and the alert says the check was not made.
    #[serde(default)]
    pub aws_ip_ranges_file: Option<PathBuf>,
    /// Where the daemon fetches AWS's ip-ranges.json from, at start-up and then daily; a
    /// newer list (greater `syncToken`) replaces the one in use, a failed fetch keeps it.
    /// An empty string or `false` turns fetching off (no internet route, or a pinned file).
    #[serde(
        default = "defaults::aws_ip_ranges_url",
        deserialize_with = "url_or_off"
    )]
    pub aws_ip_ranges_url: Option<String>,
}

/// AWS's published ranges.
/// <https://docs.aws.amazon.com/vpc/latest/userguide/aws-ip-ranges.html>
pub const AWS_IP_RANGES_URL: &str = "https://ip-ranges.amazonaws.com/ip-ranges.json";

/// A URL, or `""`/`"false"`/`false` for none (an environment variable is always a string).
fn url_or_off<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum UrlOrOff {
        Off(bool),
        Url(String),
    }
    match UrlOrOff::deserialize(d)? {
        UrlOrOff::Off(false) => Ok(None),
        UrlOrOff::Off(true) => Err(serde::de::Error::custom(
            "aws_ip_ranges_url is a URL, or false to turn fetching off",
        )),
        UrlOrOff::Url(url) if url.trim().is_empty() || url.trim() == "false" => Ok(None),
        UrlOrOff::Url(url) => Ok(Some(url)),
    }
}

mod defaults {
    use super::*;

    pub fn wait_time_secs() -> u64 {
        20
    }
    pub fn max_messages() -> u32 {
        10
    }
    pub fn workers() -> usize {
        4
    }
    pub fn visibility_timeout_secs() -> u64 {
        300
    }
    /// Medium: on a realistic corpus half of the low-level pages were denied calls
    /// (unauthorized-api-call); low and informational alerts are still logged.
    pub fn min_level() -> Level {
        Level::Medium
    }
    pub fn metrics_namespace() -> String {
        "Trailwarden".to_owned()
    }
    pub fn log_format() -> LogFormat {
        LogFormat::Auto
    }
    pub fn health_listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9090))
    }
    pub fn shutdown_grace_secs() -> u64 {
        25
    }
    pub fn max_decompressed_bytes() -> u64 {
        crate::pipeline::DEFAULT_MAX_DECOMPRESSED_BYTES
    }
    pub fn stop_timeout_secs() -> u64 {
        30
    }
    pub fn incident_window_secs() -> u64 {
        3600
    }
    pub fn message_timeout_secs() -> u64 {
        600
    }
    pub fn posture() -> bool {
        true
    }
    pub fn posture_interval_secs() -> u64 {
        86_400
    }
    pub fn key_max_age_days() -> u32 {
        90
    }
    pub fn unused_credential_days() -> u32 {
        45
    }
    pub fn audit_accounts() -> AuditAccounts {
        AuditAccounts::Own
    }
    pub fn outputs_max_pending() -> usize {
        1000
    }
    pub fn aws_ip_ranges_url() -> Option<String> {
        Some(AWS_IP_RANGES_URL.to_owned())
    }
}

impl Settings {
    /// Every output: the `outputs` tables, and `topic_arn` as one `sns` output named `sns`.
    pub fn all_outputs(&self) -> Vec<OutputSettings> {
        let legacy = self.topic_arn.as_ref().map(|arn| OutputSettings {
            name: "sns".to_owned(),
            kind: OutputKind::Sns,
            min_level: None,
            rules: Vec::new(),
            topic_arn: Some(arn.clone()),
            routing_key: None,
            events_url: None,
        });
        legacy
            .into_iter()
            .chain(self.outputs.iter().cloned())
            .collect()
    }

    /// What is wrong with the outputs, each problem naming the output.
    fn output_problems(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        let all = self.all_outputs();
        if all.is_empty() {
            out.push(ConfigError::Value {
                key: "outputs",
                message: "name at least one output: topic_arn, or an [[outputs]] table".into(),
            });
        }
        // `topic_arn` is checked under its own name; only its name can clash.
        let mut seen: std::collections::HashSet<&str> = all
            .iter()
            .take(all.len() - self.outputs.len())
            .map(|o| o.name.as_str())
            .collect();
        for o in &self.outputs {
            let mut bad = |message: String| {
                out.push(ConfigError::Value {
                    key: "outputs",
                    message: format!("output {:?} ({}): {message}", o.name, o.kind.as_str()),
                });
            };
            if o.name.is_empty()
                || o.name.len() > 64
                || !o
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                bad("name must be 1-64 of A-Z a-z 0-9 - _".into());
            }
            if !seen.insert(&o.name) {
                bad("another output has this name (topic_arn is the output named sns)".into());
            }
            let topic = matches!(o.kind, OutputKind::Sns | OutputKind::Chatbot);
            match &o.topic_arn {
                Some(arn) if topic && !is_arn(arn, "sns") => {
                    bad(format!("topic_arn {arn:?} is not an SNS topic ARN"))
                }
                None if topic => bad("needs topic_arn".into()),
                Some(_) if !topic => bad("topic_arn is for sns and chatbot outputs".into()),
                _ => {}
            }
            let pagerduty = o.kind == OutputKind::Pagerduty;
            match &o.routing_key {
                Some(at) if pagerduty && !is_arn(at, "secretsmanager") && !is_arn(at, "ssm") => {
                    bad(format!(
                        "routing_key {at:?} must be a Secrets Manager secret ARN or an SSM parameter ARN (the key itself never goes in the settings)"
                    ))
                }
                None if pagerduty => bad(
                    "needs routing_key: the ARN of the Secrets Manager secret or SSM SecureString parameter holding the integration's routing key".into(),
                ),
                Some(_) if !pagerduty => bad("routing_key is for pagerduty outputs".into()),
                _ => {}
            }
            match &o.events_url {
                Some(url) if !pagerduty => {
                    bad(format!("events_url {url:?} is for pagerduty outputs"))
                }
                Some(url) if !is_http_url(url) => {
                    bad(format!("events_url {url:?} is not an http(s) URL"))
                }
                _ => {}
            }
        }
        out
    }
}

/// The shortest interval between posture audits: an audit generates the credential report and
/// reads every user's grants, and IAM reuses a report for 4 hours anyway.
pub const MIN_POSTURE_INTERVAL_SECS: u64 = 900;

/// The type of each key, used to turn environment strings into TOML values.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
    List,
    /// `key=value` pairs separated by commas.
    Map,
    /// A JSON array of tables.
    Tables,
}

const KEYS: &[(&str, Kind)] = &[
    ("queue_url", Kind::Str),
    ("wait_time_secs", Kind::Int),
    ("max_messages", Kind::Int),
    ("workers", Kind::Int),
    ("visibility_timeout_secs", Kind::Int),
    ("allowed_buckets", Kind::List),
    ("topic_arn", Kind::Str),
    ("outputs", Kind::Tables),
    ("outputs_max_pending", Kind::Int),
    ("min_level", Kind::Str),
    ("rule_dirs", Kind::List),
    ("allow_rule_errors", Kind::Bool),
    ("log_format", Kind::Str),
    ("health_listen", Kind::Str),
    ("metrics_emf_interval_secs", Kind::Int),
    ("metrics_namespace", Kind::Str),
    ("shutdown_grace_secs", Kind::Int),
    ("stop_timeout_secs", Kind::Int),
    ("endpoint_url", Kind::Str),
    ("region", Kind::Str),
    ("max_decompressed_bytes", Kind::Int),
    ("state_table", Kind::Str),
    ("incident_window_secs", Kind::Int),
    ("message_timeout_secs", Kind::Int),
    ("posture", Kind::Bool),
    ("posture_interval_secs", Kind::Int),
    ("key_max_age_days", Kind::Int),
    ("unused_credential_days", Kind::Int),
    ("audit_accounts", Kind::Str),
    ("audit_role_name", Kind::Str),
    ("audit_external_id", Kind::Str),
    ("trusted_accounts", Kind::List),
    ("account_names", Kind::Map),
    ("account_names_from_organizations", Kind::Bool),
    ("aws_ip_ranges_file", Kind::Str),
    ("aws_ip_ranges_url", Kind::Str),
];

/// A setting that stops start-up.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("invalid settings: {0}")]
    Invalid(String),
    #[error("setting {key}: {message}")]
    Value { key: &'static str, message: String },
    #[error("setting {key}{message}")]
    Type { key: &'static str, message: String },
}

/// Where environment variables come from: the process, or a map in tests.
pub trait Env {
    /// Every `(name, value)` pair.
    fn vars(&self) -> Vec<(String, String)>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn vars(&self) -> Vec<(String, String)> {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect()
    }
}

impl Env for [(&str, &str)] {
    fn vars(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }
}

impl Settings {
    /// Reads the optional file, applies `TRAILWARDEN_*` overrides, and validates; the first
    /// problem stops it.
    pub fn load(file: Option<&Path>, env: &(impl Env + ?Sized)) -> Result<Settings, ConfigError> {
        Self::check(file, env).map_err(|mut problems| problems.swap_remove(0))
    }

    /// As [`Self::load`], but every problem found is returned, each naming its key (and, in
    /// the file, its line): what `trailwarden validate` prints. Never an empty list.
    pub fn check(
        file: Option<&Path>,
        env: &(impl Env + ?Sized),
    ) -> Result<Settings, Vec<ConfigError>> {
        let mut problems = Vec::new();
        let mut text = String::new();
        let mut table = match file {
            Some(path) => {
                text = std::fs::read_to_string(path).map_err(|source| {
                    vec![ConfigError::Read {
                        path: path.to_owned(),
                        source,
                    }]
                })?;
                text.parse::<toml::Table>().map_err(|e| {
                    vec![ConfigError::File {
                        path: path.to_owned(),
                        message: e.to_string().trim().to_owned(),
                    }]
                })?
            }
            None => toml::Table::new(),
        };
        // Where a key was set, for messages: the file and line, or the variable.
        let mut place: Vec<(String, String)> = Vec::new();
        if let Some(path) = file {
            for key in table.keys() {
                let at = format!("{} line {}", path.display(), line_of(&text, key));
                if !KEYS.iter().any(|(k, _)| k == key) {
                    problems.push(ConfigError::File {
                        path: path.to_owned(),
                        message: format!("line {}: unknown key `{key}`", line_of(&text, key)),
                    });
                }
                place.push((key.clone(), at));
            }
            table.retain(|key, _| KEYS.iter().any(|&(k, _)| k == key));
        }
        let mut vars = env.vars();
        vars.sort();
        for (var, raw) in vars {
            let Some(name) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let key = name.to_ascii_lowercase();
            let Some((key, kind)) = KEYS.iter().find(|(k, _)| *k == key) else {
                problems.push(ConfigError::Env {
                    var,
                    message: "not a trailwarden setting".to_owned(),
                });
                continue;
            };
            let value = match kind {
                Kind::Str => toml::Value::String(raw),
                Kind::Int => match raw.trim().parse() {
                    Ok(n) => toml::Value::Integer(n),
                    Err(_) => {
                        problems.push(ConfigError::Env {
                            var,
                            message: format!("expected a whole number, got {raw:?}"),
                        });
                        continue;
                    }
                },
                Kind::Bool => match raw.trim() {
                    "true" => toml::Value::Boolean(true),
                    "false" => toml::Value::Boolean(false),
                    _ => {
                        problems.push(ConfigError::Env {
                            var,
                            message: format!("expected true or false, got {raw:?}"),
                        });
                        continue;
                    }
                },
                Kind::List => toml::Value::Array(
                    raw.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.to_owned()))
                        .collect(),
                ),
                Kind::Tables => match serde_json::from_str::<toml::Value>(&raw) {
                    Ok(value) => value,
                    Err(e) => {
                        problems.push(ConfigError::Env {
                            var,
                            message: format!("expected a JSON array of tables: {e}"),
                        });
                        continue;
                    }
                },
                Kind::Map => {
                    let pairs: Option<toml::Table> = raw
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once('=')?;
                            Some((
                                k.trim().to_owned(),
                                toml::Value::String(v.trim().to_owned()),
                            ))
                        })
                        .collect();
                    match pairs {
                        Some(map) => toml::Value::Table(map),
                        None => {
                            problems.push(ConfigError::Env {
                                var,
                                message: format!("expected id=name pairs, got {raw:?}"),
                            });
                            continue;
                        }
                    }
                }
            };
            place.retain(|(k, _)| k != key);
            place.push(((*key).to_owned(), var));
            table.insert((*key).to_owned(), value);
        }
        // Each value's type, so that a wrong one is named by its key and the type expected
        // (serde's own message names neither for a value inside the table).
        for (key, kind) in KEYS {
            let Some(value) = table.get(*key) else {
                continue;
            };
            if let Some(expected) = type_mismatch(key, *kind, value) {
                let at = place
                    .iter()
                    .find(|(k, _)| k == key)
                    .map_or(String::new(), |(_, at)| format!(" ({at})"));
                problems.push(ConfigError::Type {
                    key,
                    message: format!("{at}: expected {expected}, got {}", shown(value)),
                });
                table.remove(*key);
            }
        }
        let settings: Settings = match table.try_into() {
            Ok(settings) => settings,
            Err(e) => {
                let e: toml::de::Error = e;
                // A missing required key, when nothing above explains it.
                if problems.is_empty() {
                    problems.push(ConfigError::Invalid(e.to_string().trim().to_owned()));
                }
                return Err(problems);
            }
        };
        problems.extend(settings.problems());
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(problems)
        }
    }

    /// Every value that cannot work, each naming its key.
    fn problems(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        let bad = |key, message: &str| ConfigError::Value {
            key,
            message: message.to_owned(),
        };
        if !is_http_url(&self.queue_url) {
            out.push(bad(
                "queue_url",
                "must be the queue's URL, e.g. https://sqs.us-east-1.amazonaws.com/111122223333/trailwarden-events",
            ));
        }
        if let Some(arn) = &self.topic_arn
            && !is_arn(arn, "sns")
        {
            out.push(bad(
                "topic_arn",
                "must be an SNS topic ARN, e.g. arn:aws:sns:us-east-1:111122223333:trailwarden-alerts",
            ));
        }
        out.extend(self.output_problems());
        if !(1..=100_000).contains(&self.outputs_max_pending) {
            out.push(bad("outputs_max_pending", "must be 1-100000"));
        }
        if let Some(url) = &self.endpoint_url
            && !is_http_url(url)
        {
            out.push(bad(
                "endpoint_url",
                "must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:5000",
            ));
        }
        if let Some(region) = &self.region
            && !is_region(region)
        {
            out.push(bad(
                "region",
                "must be an AWS region name such as us-east-1",
            ));
        }
        if let Some(table) = &self.state_table
            && !is_table(table)
        {
            out.push(bad(
                "state_table",
                "must be a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -) or a table ARN",
            ));
        }
        if let Some(url) = &self.aws_ip_ranges_url
            && !is_http_url(url)
        {
            out.push(bad(
                "aws_ip_ranges_url",
                "must be an http:// or https:// URL, e.g. https://ip-ranges.amazonaws.com/ip-ranges.json, or false",
            ));
        }
        if self.allowed_buckets.is_empty() {
            out.push(bad("allowed_buckets", "name at least one bucket"));
        }
        if let Some(id) = self
            .account_names
            .keys()
            .find(|id| !crate::detect::policy::is_account_id(id))
        {
            out.push(ConfigError::Value {
                key: "account_names",
                message: format!("{id:?} is not a 12-digit AWS account id"),
            });
        }
        if let Some(id) = self
            .trusted_accounts
            .iter()
            .find(|id| !crate::detect::policy::is_account_id(id))
        {
            out.push(ConfigError::Value {
                key: "trusted_accounts",
                message: format!("{id:?} is not a 12-digit AWS account id"),
            });
        }
        // https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ReceiveMessage.html
        if self.wait_time_secs > 20 {
            out.push(bad("wait_time_secs", "must be 0-20 (SQS long-poll limit)"));
        }
        if !(1..=10).contains(&self.max_messages) {
            out.push(bad(
                "max_messages",
                "must be 1-10 (SQS ReceiveMessage limit)",
            ));
        }
        if self.workers == 0 || self.workers > 256 {
            out.push(bad("workers", "must be 1-256"));
        }
        if !(3..=43_200).contains(&self.visibility_timeout_secs) {
            out.push(bad(
                "visibility_timeout_secs",
                "must be 3-43200 (SQS allows up to 12 h; the heartbeat needs at least 3 s)",
            ));
        }
        if !(2..=120).contains(&self.stop_timeout_secs) {
            out.push(bad(
                "stop_timeout_secs",
                "must be 2-120 (the range ECS allows for a container's stopTimeout)",
            ));
        }
        if self.shutdown_grace_secs + 2 > self.stop_timeout_secs {
            out.push(ConfigError::Value {
                key: "shutdown_grace_secs",
                message: format!(
                    "must end at least 2 s before ECS stops the container (stop_timeout_secs = {}), so the task hands its messages back instead of being killed; at most {}",
                    self.stop_timeout_secs,
                    self.stop_timeout_secs.saturating_sub(2)
                ),
            });
        }
        if !(1..=7 * 24 * 3600).contains(&self.incident_window_secs) {
            out.push(bad(
                "incident_window_secs",
                "must be 1-604800 (up to a week)",
            ));
        }
        if self.metrics_emf_interval_secs != 0
            && !(10..=3600).contains(&self.metrics_emf_interval_secs)
        {
            out.push(bad(
                "metrics_emf_interval_secs",
                "must be 0 (off) or 10-3600; 60 matches CloudWatch's one-minute resolution",
            ));
        }
        // https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_MetricDatum.html
        if self.metrics_namespace.is_empty()
            || self.metrics_namespace.len() > 255
            || self.metrics_namespace.starts_with("AWS/")
            || !self
                .metrics_namespace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_/#: ".contains(&b))
        {
            out.push(bad(
                "metrics_namespace",
                "must be 1-255 of A-Z a-z 0-9 . - _ / # : and space, not starting with AWS/",
            ));
        }
        if self.message_timeout_secs < 10 {
            out.push(bad("message_timeout_secs", "must be at least 10"));
        }
        if self.max_decompressed_bytes == 0 {
            out.push(bad("max_decompressed_bytes", "must be positive"));
        }
        if self.posture_interval_secs < MIN_POSTURE_INTERVAL_SECS {
            out.push(bad(
                "posture_interval_secs",
                "must be at least 900 (15 minutes); records that change posture are re-checked at once in between",
            ));
        }
        if !(1..=3650).contains(&self.key_max_age_days) {
            out.push(bad("key_max_age_days", "must be 1-3650"));
        }
        if !(1..=3650).contains(&self.unused_credential_days) {
            out.push(bad("unused_credential_days", "must be 1-3650"));
        }
        match (self.audit_accounts, &self.audit_role_name) {
            (AuditAccounts::Organization, None) => {
                out.push(bad(
                    "audit_role_name",
                    "name the member accounts' role (e.g. trailwarden-audit) when audit_accounts = \"organization\"",
                ));
            }
            (AuditAccounts::Organization, Some(role)) => {
                if let Err(e) = crate::posture::organization::MemberRole::parse(role) {
                    out.push(ConfigError::Value {
                        key: "audit_role_name",
                        message: e,
                    });
                }
            }
            (AuditAccounts::Own, Some(_)) => {
                out.push(bad(
                    "audit_role_name",
                    "is used only with audit_accounts = \"organization\"",
                ));
            }
            (AuditAccounts::Own, None) => {}
        }
        // https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html: 2-1224
        // characters of [\w+=,.@:\/-].
        if let Some(id) = &self.audit_external_id {
            if self.audit_role_name.is_none() {
                out.push(bad(
                    "audit_external_id",
                    "is used only with audit_role_name",
                ));
            }
            if !(2..=1224).contains(&id.len())
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@:/-".contains(&b))
            {
                out.push(bad(
                    "audit_external_id",
                    "must be 2-1224 of A-Z a-z 0-9 _ + = , . @ : / -",
                ));
            }
        }
        out
    }

    /// The names of `account_names`.
    pub fn account_names(&self) -> crate::finding::accounts::AccountNames {
        crate::finding::accounts::AccountNames::new(
            self.account_names
                .iter()
                .map(|(id, name)| (id.clone(), name.clone())),
        )
    }

    /// The role assumed in member accounts, when the audit covers the organization.
    pub fn member_role(&self) -> Option<crate::posture::organization::MemberRole> {
        match (self.audit_accounts, &self.audit_role_name) {
            (AuditAccounts::Organization, Some(role)) => {
                crate::posture::organization::MemberRole::parse(role).ok()
            }
            _ => None,
        }
    }

    /// The thresholds of the posture checks.
    pub fn posture_settings(&self) -> crate::posture::Settings {
        crate::posture::Settings {
            key_max_age_days: i64::from(self.key_max_age_days),
            unused_days: i64::from(self.unused_credential_days),
            ..crate::posture::Settings::default()
        }
    }
}

/// The 1-based line of `key = ...` in a TOML text (1 when it cannot be found).
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|line| {
            let line = line.trim_start();
            line.strip_prefix(key)
                .or_else(|| line.strip_prefix(&format!("\"{key}\"")))
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(1, |i| i + 1)
}

/// What a key's value should have been, when it is not: the type, or the allowed words.
fn type_mismatch(key: &str, kind: Kind, value: &toml::Value) -> Option<String> {
    let words: &[&str] = match key {
        "min_level" => &["informational", "low", "medium", "high", "critical"],
        "log_format" => &["auto", "json", "text"],
        "audit_accounts" => &["self", "organization"],
        _ => &[],
    };
    let ok = match (kind, value) {
        (Kind::Str, toml::Value::String(s)) => words.is_empty() || words.contains(&s.as_str()),
        // `aws_ip_ranges_url = false` turns fetching off.
        (Kind::Str, toml::Value::Boolean(false)) => key == "aws_ip_ranges_url",
        (Kind::Int, toml::Value::Integer(n)) => *n >= 0,
        (Kind::Bool, toml::Value::Boolean(_)) => true,
        (Kind::List, toml::Value::Array(items)) => items.iter().all(toml::Value::is_str),
        (Kind::Map, toml::Value::Table(entries)) => entries.values().all(toml::Value::is_str),
        (Kind::Tables, toml::Value::Array(items)) => items.iter().all(toml::Value::is_table),
        _ => false,
    };
    if ok {
        return None;
    }
    Some(match kind {
        Kind::Str if !words.is_empty() => format!("one of {}", words.join(", ")),
        Kind::Str => "a string".to_owned(),
        Kind::Int => "a whole number, 0 or more".to_owned(),
        Kind::Bool => "true or false".to_owned(),
        Kind::List => "a list of strings".to_owned(),
        Kind::Map => "a table of account id = name".to_owned(),
        Kind::Tables => "a list of tables ([[outputs]])".to_owned(),
    })
}

/// A TOML value as the user wrote it, with its type: `the string "four"`.
fn shown(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("the string {s:?}"),
        toml::Value::Integer(n) => format!("the number {n}"),
        toml::Value::Float(f) => format!("the number {f}"),
        toml::Value::Boolean(b) => format!("{b}"),
        toml::Value::Array(_) => format!("the list {value}"),
        other => format!("{} {other}", other.type_str()),
    }
}

/// `http://host[:port][/path]` or `https://...`, without spaces.
fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    let Some(rest) = rest else { return false };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) && !port.is_empty() {
            h
        } else {
            host
        }
    });
    !host.is_empty()
        && !s.chars().any(char::is_whitespace)
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'))
}

/// `arn:<partition>:<service>:<region>:<12-digit account>:<resource>`.
fn is_arn(s: &str, service: &str) -> bool {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, svc, region, account, resource]
        if partition.starts_with("aws")
            && *svc == service
            && is_region(region)
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && !resource.is_empty())
}

/// A region name: lower-case letters and digits in dash-separated parts, e.g. us-east-1.
fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// A DynamoDB table name, or a table ARN.
fn is_table(s: &str) -> bool {
    if s.starts_with("arn:") {
        return is_arn(s, "dynamodb") && s.contains(":table/");
    }
    (3..=255).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUIRED: &[(&str, &str)] = &[
        ("TRAILWARDEN_QUEUE_URL", "http://127.0.0.1:1/q"),
        (
            "TRAILWARDEN_TOPIC_ARN",
            "arn:aws:sns:us-east-1:111122223333:alerts",
        ),
        ("TRAILWARDEN_ALLOWED_BUCKETS", "trail-a, trail-b"),
        ("HOME", "/ignored"),
    ];

    #[test]
    fn env_only_with_defaults() {
        let s = Settings::load(None, REQUIRED).expect("valid");
        assert_eq!(s.allowed_buckets, vec!["trail-a", "trail-b"]);
        assert_eq!(s.wait_time_secs, 20);
        assert_eq!(s.max_messages, 10);
        assert_eq!(s.min_level, Level::Medium);
        assert!(!s.allow_rule_errors);
        assert_eq!(s.shutdown_grace_secs, 25);
        assert!(s.posture);
        assert_eq!(s.posture_interval_secs, 86_400);
        assert_eq!(s.posture_settings().key_max_age_days, 90);
        let mut env = REQUIRED.to_vec();
        env.extend([
            ("TRAILWARDEN_POSTURE", "false"),
            ("TRAILWARDEN_POSTURE_INTERVAL_SECS", "900"),
        ]);
        let s = Settings::load(None, &env[..]).expect("valid");
        assert!(!s.posture);
        assert_eq!(s.posture_interval_secs, 900);
    }

    #[test]
    fn ip_ranges_url_defaults_to_aws_and_turns_off() {
        let s = Settings::load(None, REQUIRED).expect("valid");
        assert_eq!(s.aws_ip_ranges_url.as_deref(), Some(AWS_IP_RANGES_URL));
        for off in ["", "false"] {
            let mut env = REQUIRED.to_vec();
            env.push(("TRAILWARDEN_AWS_IP_RANGES_URL", off));
            let s = Settings::load(None, &env[..]).expect("valid");
            assert_eq!(s.aws_ip_ranges_url, None, "{off:?}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "queue_url = \"https://sqs.eu-west-1.amazonaws.com/111122223333/q\"\n\
             topic_arn = \"arn:aws:sns:eu-west-1:111122223333:t\"\n\
             allowed_buckets = [\"b\"]\naws_ip_ranges_url = false\n",
        )
        .expect("write");
        let s = Settings::load(Some(&path), &[][..]).expect("valid");
        assert_eq!(s.aws_ip_ranges_url, None);
        let mut env = REQUIRED.to_vec();
        env.push(("TRAILWARDEN_AWS_IP_RANGES_URL", "ip-ranges.json"));
        let e = Settings::load(None, &env[..]).expect_err("not a URL");
        assert!(e.to_string().contains("aws_ip_ranges_url"), "{e}");
    }

    #[test]
    fn env_overrides_file_and_file_is_strict() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "queue_url = \"https://sqs.eu-west-1.amazonaws.com/111122223333/q\"\n\
             topic_arn = \"arn:aws:sns:eu-west-1:111122223333:t\"\n\
             allowed_buckets = [\"b\"]\nworkers = 2\n",
        )
        .expect("write");
        let s = Settings::load(Some(&path), &[("TRAILWARDEN_WORKERS", "8")][..]).expect("valid");
        assert_eq!(s.workers, 8);

        std::fs::write(&path, "queue_url = \"q\"\nqueue_ulr = \"typo\"\n").expect("write");
        let e = Settings::load(Some(&path), &[][..]).expect_err("unknown key");
        assert!(e.to_string().contains("queue_ulr"), "{e}");
    }

    #[test]
    fn account_names_from_the_file_or_the_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.toml");
        std::fs::write(
            &path,
            "queue_url = \"http://127.0.0.1:1/q\"\ntopic_arn = \"arn:aws:sns:us-east-1:111122223333:t\"\n\
             allowed_buckets = [\"b\"]\n[account_names]\n111122223333 = \"prod, payments\"\n",
        )
        .expect("write");
        let s = Settings::load(Some(&path), &[][..]).expect("table");
        assert_eq!(
            s.account_names().label("111122223333"),
            "prod, payments (111122223333)"
        );
        assert!(!s.account_names_from_organizations);

        let mut env = REQUIRED.to_vec();
        env.push((
            "TRAILWARDEN_ACCOUNT_NAMES",
            "111122223333=prod-payments, 444455556666 = sandbox",
        ));
        env.push(("TRAILWARDEN_ACCOUNT_NAMES_FROM_ORGANIZATIONS", "true"));
        let s = Settings::load(None, &env[..]).expect("pairs");
        assert_eq!(
            s.account_names().label("444455556666"),
            "sandbox (444455556666)"
        );
        assert!(s.account_names_from_organizations);

        for (bad, key) in [
            ("prod-payments", "TRAILWARDEN_ACCOUNT_NAMES"),
            ("1111=x", "account_names"),
        ] {
            let mut env = REQUIRED.to_vec();
            env.push(("TRAILWARDEN_ACCOUNT_NAMES", bad));
            let e = Settings::load(None, &env[..]).expect_err(bad);
            assert!(e.to_string().contains(key), "{e}");
        }
    }

    #[test]
    fn shipped_example_config_is_valid() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/trailwarden.toml"
        ));
        let s = Settings::load(Some(path), &[][..]).expect("config/trailwarden.toml loads");
        assert_eq!(s.max_messages, 10);
        assert_eq!(s.log_format, LogFormat::Auto);
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut env = REQUIRED.to_vec();
        env.push(("TRAILWARDEN_MAX_MESSAGES", "11"));
        let e = Settings::load(None, &env[..]).expect_err("out of range");
        assert!(e.to_string().contains("max_messages"), "{e}");

        let mut env = REQUIRED.to_vec();
        env.push(("TRAILWARDEN_WAIT_TIME", "5"));
        let e = Settings::load(None, &env[..]).expect_err("unknown var");
        assert!(e.to_string().contains("TRAILWARDEN_WAIT_TIME"), "{e}");

        let mut env = REQUIRED.to_vec();
        env.push(("TRAILWARDEN_MIN_LEVEL", "severe"));
        let e = Settings::load(None, &env[..]).expect_err("bad level");
        assert!(e.to_string().contains("severe"), "{e}");

        let e = Settings::load(None, &REQUIRED[1..]).expect_err("missing queue");
        assert!(e.to_string().contains("queue_url"), "{e}");

        let mut env = REQUIRED.to_vec();
        env.push(("TRAILWARDEN_TRUSTED_ACCOUNTS", "444455556666, 12345"));
        let e = Settings::load(None, &env[..]).expect_err("short account id");
        assert!(e.to_string().contains("trusted_accounts"), "{e}");
        assert!(e.to_string().contains("\"12345\""), "{e}");
    }

    #[test]
    fn type_errors_name_the_key_the_line_and_the_type_and_all_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "queue_url = \"https://sqs.eu-west-1.amazonaws.com/111122223333/q\"\n\
             topic_arn = \"arn:aws:sns:eu-west-1:111122223333:t\"\n\
             allowed_buckets = [\"b\"]\nworkers = \"four\"\nmin_level = \"hgih\"\n\
             max_messages = 11\nqueue_ulr = 1\n",
        )
        .expect("write");
        let problems: Vec<String> = Settings::check(Some(&path), &[][..])
            .expect_err("four problems")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems[3].starts_with("setting max_messages: must be 1-10"));
        assert!(
            problems[0].contains("line 7: unknown key `queue_ulr`"),
            "{problems:#?}"
        );
        assert!(
            problems[1].starts_with("setting workers (")
                && problems[1].ends_with(
                    "c.toml line 4): expected a whole number, 0 or more, got the string \"four\""
                ),
            "{problems:#?}"
        );
        assert!(
            problems[2].contains("setting min_level (")
                && problems[2].contains("line 5): expected one of informational, low, medium, high, critical, got the string \"hgih\""),
            "{problems:#?}"
        );
        // Once the types are right, every value out of range is named too.
        std::fs::write(
            &path,
            "queue_url = \"q\"\ntopic_arn = \"t\"\nallowed_buckets = [\"b\"]\nmax_messages = 11\n",
        )
        .expect("write");
        let problems = Settings::check(Some(&path), &[("TRAILWARDEN_WORKERS", "four")][..])
            .expect_err("problems");
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems[0].to_string().contains("TRAILWARDEN_WORKERS"));
        let problems = Settings::check(Some(&path), &[][..]).expect_err("problems");
        let keys: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(keys.len(), 3, "{keys:#?}");
        for (problem, key) in keys.iter().zip(["queue_url", "topic_arn", "max_messages"]) {
            assert!(problem.starts_with(&format!("setting {key}:")), "{problem}");
        }
    }

    #[test]
    fn trusted_accounts_and_ip_ranges_file() {
        let mut env = REQUIRED.to_vec();
        env.push(("TRAILWARDEN_TRUSTED_ACCOUNTS", "444455556666,999988887777"));
        env.push((
            "TRAILWARDEN_AWS_IP_RANGES_FILE",
            "/etc/trailwarden/ip-ranges.json",
        ));
        let s = Settings::load(None, &env[..]).expect("valid");
        assert_eq!(s.trusted_accounts, ["444455556666", "999988887777"]);
        assert_eq!(
            s.aws_ip_ranges_file.as_deref(),
            Some(Path::new("/etc/trailwarden/ip-ranges.json"))
        );
    }

    #[test]
    fn settings_that_cannot_work_are_refused_naming_the_key() {
        for (var, value, key) in [
            ("TRAILWARDEN_QUEUE_URL", "trailwarden-events", "queue_url"),
            ("TRAILWARDEN_TOPIC_ARN", "alerts", "topic_arn"),
            (
                "TRAILWARDEN_TOPIC_ARN",
                "arn:aws:sqs:us-east-1:111122223333:q",
                "topic_arn",
            ),
            ("TRAILWARDEN_ENDPOINT_URL", "not a url", "endpoint_url"),
            ("TRAILWARDEN_REGION", "Mars", "region"),
            (
                "TRAILWARDEN_SHUTDOWN_GRACE_SECS",
                "40",
                "shutdown_grace_secs",
            ),
            ("TRAILWARDEN_STATE_TABLE", "a b", "state_table"),
            (
                "TRAILWARDEN_INCIDENT_WINDOW_SECS",
                "0",
                "incident_window_secs",
            ),
            (
                "TRAILWARDEN_POSTURE_INTERVAL_SECS",
                "899",
                "posture_interval_secs",
            ),
            ("TRAILWARDEN_POSTURE", "yes", "TRAILWARDEN_POSTURE"),
            ("TRAILWARDEN_KEY_MAX_AGE_DAYS", "0", "key_max_age_days"),
            (
                "TRAILWARDEN_AUDIT_ACCOUNTS",
                "organization",
                "audit_role_name",
            ),
            ("TRAILWARDEN_AUDIT_ACCOUNTS", "everything", "audit_accounts"),
            (
                "TRAILWARDEN_AUDIT_ROLE_NAME",
                "trailwarden-audit",
                "audit_role_name",
            ),
            ("TRAILWARDEN_AUDIT_EXTERNAL_ID", "x", "audit_external_id"),
        ] {
            let mut env = REQUIRED.to_vec();
            env.retain(|(k, _)| *k != var);
            env.push((var, value));
            let e = Settings::load(None, &env[..]).expect_err(value);
            assert!(e.to_string().contains(key), "{value}: {e}");
        }
        let mut env = REQUIRED.to_vec();
        env.extend([
            ("TRAILWARDEN_STOP_TIMEOUT_SECS", "120"),
            ("TRAILWARDEN_SHUTDOWN_GRACE_SECS", "100"),
            (
                "TRAILWARDEN_STATE_TABLE",
                "arn:aws:dynamodb:us-east-1:111122223333:table/tw",
            ),
            ("TRAILWARDEN_ENDPOINT_URL", "http://127.0.0.1:5000"),
        ]);
        Settings::load(None, &env[..]).expect("a longer stop timeout allows a longer grace");

        let mut env = REQUIRED.to_vec();
        env.extend([
            ("TRAILWARDEN_AUDIT_ACCOUNTS", "organization"),
            ("TRAILWARDEN_AUDIT_ROLE_NAME", "not a role"),
        ]);
        let e = Settings::load(None, &env[..]).expect_err("bad role");
        assert!(e.to_string().contains("audit_role_name"), "{e}");
        env.pop();
        env.extend([
            ("TRAILWARDEN_AUDIT_ROLE_NAME", "trailwarden-audit"),
            ("TRAILWARDEN_AUDIT_EXTERNAL_ID", "o-abc123/trailwarden"),
        ]);
        let s = Settings::load(None, &env[..]).expect("organization mode");
        assert_eq!(
            s.member_role().map(|r| r.arn("111122223333")).as_deref(),
            Some("arn:aws:iam::111122223333:role/trailwarden-audit")
        );
        assert_eq!(
            Settings::load(None, REQUIRED)
                .expect("valid")
                .audit_accounts,
            AuditAccounts::Own
        );
    }
}
