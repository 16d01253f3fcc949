//! The `trailwarden` binary: parse the command line, then hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::Arc;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use trailwarden::audit;
use trailwarden::backfill;
use trailwarden::config::{ProcessEnv, Settings};
use trailwarden::daemon::{self, start};
use trailwarden::detect::{Derivation, RuleSet};
use trailwarden::finding::Level;
use trailwarden::finding::accounts::AccountNames;
use trailwarden::intake::listing::{self, Selection, TimeRange};
use trailwarden::intake::s3;
use trailwarden::pipeline::DEFAULT_MAX_DECOMPRESSED_BYTES;
use trailwarden::posture::organization::MemberRole;
use trailwarden::rule_test;
use trailwarden::scan;
use trailwarden::telemetry::{self, Metrics};

/// Exit code for usage, rule and configuration errors.
const EXIT_USAGE: u8 = 2;

/// The version and the commit it was built from (build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("TRAILWARDEN_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "trailwarden",
    version = VERSION,
    about = "CloudTrail security monitor: Sigma detections over CloudTrail logs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Scan CloudTrail log files, directories, stdin (-) or s3://bucket/prefix/ (or with
    /// --event-history, the regions' 90 days of event history) and print alerts.
    ///
    /// Each file's shape is told from its content: S3 log files ({"Records":[...]}), JSON
    /// lines, a JSON array, one record, EventBridge events, `aws cloudtrail lookup-events`
    /// output, and CloudTrail Lake get-query-results rows holding eventJson. Gzipped or not.
    /// Alerts are printed in input order whatever --threads: local inputs, then S3 objects
    /// in the order listed.
    ///
    /// Exit 0 when every file was read; 1 when any file or S3 listing failed (none of these
    /// shapes, truncated, corrupt) or had records that could not be read, each named on
    /// stderr with where; 2 for usage, rule or configuration errors.
    Scan(ScanArgs),
    /// Queue the CloudTrail log objects of a time range for the daemon: one S3 event
    /// notification per object on its SQS queue, sent with SendMessageBatch, so the daemon's
    /// tasks read history with the same rules, incidents and state as live traffic.
    ///
    /// Only CloudTrail's day prefixes in range are listed
    /// (`[prefix/]AWSLogs/[o-id/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/`). Exit 0 when every
    /// object in range was queued; 1 when any was not (each named in the summary) or a
    /// listing failed; 2 for usage errors.
    Backfill(BackfillArgs),
    /// List the loaded rules (name, level, title, origin) and any that failed to load; `rules
    /// test` runs rule unit tests.
    Rules(RulesArgs),
    /// Run the daemon: SQS notifications in, SNS alerts out.
    Run(RunArgs),
    /// Check the daemon's settings and rules offline (and with --online, its AWS resources)
    /// without starting it; every problem is named with its key or file and line. Exit 0
    /// when nothing is wrong, 2 otherwise.
    Validate(ValidateArgs),
    /// Exit 0 if the running daemon's /healthz answers OK, 1 otherwise (for container health checks).
    Healthcheck(HealthcheckArgs),
    /// Audit the account's IAM and CloudTrail posture (root, users, keys, password policy,
    /// trails, Access Analyzer); exit 1 when a check at or above --min-level fails.
    Audit(AuditArgs),
    /// Print a shell completion script, e.g. `trailwarden completions bash >
    /// /etc/bash_completion.d/trailwarden`.
    Completions(CompletionsArgs),
    /// Print the man page (roff), e.g. `trailwarden man > trailwarden.1`.
    Man,
}

#[derive(Args)]
struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Args)]
struct AuditArgs {
    /// Result format on stdout.
    #[arg(long, value_enum, default_value = "text")]
    format: audit::Format,
    /// Only print, and only fail on, checks at or above this level.
    #[arg(long, value_name = "LEVEL", default_value = "informational")]
    min_level: Level,
    /// Count credential ages from this time instead of the clock (for testing).
    #[arg(long, value_name = "RFC3339")]
    now: Option<chrono::DateTime<chrono::Utc>>,
    /// Region of the regional checks (trails listed, Access Analyzer); default: the SDK's chain.
    #[arg(long, env = "TRAILWARDEN_REGION")]
    region: Option<String>,
    /// Endpoint for every AWS client (an emulator); unset in production.
    #[arg(long, env = "TRAILWARDEN_ENDPOINT_URL", hide = true)]
    endpoint_url: Option<String>,
    /// Also audit every ACTIVE member account of the organization (run from the management
    /// account), entering each through --account-role.
    #[arg(long, requires = "account_role")]
    organization: bool,
    /// The read-only role assumed in each member account: a name, or an ARN whose account is
    /// replaced by each member's (deploy/audit-member-role.yaml creates it).
    #[arg(long, value_name = "ROLE_NAME_OR_ARN", requires = "organization")]
    account_role: Option<String>,
    /// The sts:ExternalId the member role's trust policy asks for.
    #[arg(long, value_name = "ID", requires = "account_role")]
    external_id: Option<String>,
}

#[derive(Args)]
struct RunArgs {
    /// TOML settings file; TRAILWARDEN_* environment variables override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct ValidateArgs {
    /// TOML settings file; TRAILWARDEN_* environment variables override it, as for run.
    /// Without either, only rules are checked.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    rules: RuleDirs,
    /// A field name no CloudTrail record has is an error, not a warning.
    #[arg(long)]
    strict: bool,
    /// Also run the daemon's start-up checks: credentials, region, and that the queue, the
    /// topic and the state table exist and answer with these credentials.
    #[arg(long)]
    online: bool,
}

#[derive(Args)]
struct HealthcheckArgs {
    /// Address of the daemon's health listener.
    #[arg(
        long,
        env = "TRAILWARDEN_HEALTH_LISTEN",
        default_value = "127.0.0.1:9090"
    )]
    addr: std::net::SocketAddr,
}

#[derive(Args)]
struct RuleDirs {
    /// Extra directory of Sigma rules and filters (repeatable); builtin rules always load.
    #[arg(long = "rules", value_name = "DIR")]
    dirs: Vec<PathBuf>,
}

/// What derived fields are computed from, besides each record.
#[derive(Args)]
struct ContextArgs {
    /// An account that is ours besides each record's own (repeatable): policies granting it
    /// are not reported as opened to a foreign account.
    #[arg(long = "trusted-account", value_name = "ID", value_parser = account_id)]
    trusted_accounts: Vec<String>,
    /// A bucket that holds CloudTrail logs (repeatable), for trail-bucket-tampered; for scan,
    /// the buckets of s3:// paths count as trail buckets too.
    #[arg(long = "trail-bucket", value_name = "NAME")]
    trail_buckets: Vec<String>,
    /// AWS's published ip-ranges.json, so that instance credentials used from AWS addresses
    /// are not reported as used outside AWS.
    #[arg(long = "aws-ip-ranges", value_name = "FILE")]
    aws_ip_ranges: Option<PathBuf>,
}

#[derive(Args)]
struct ScanArgs {
    #[command(flatten)]
    rules: RuleDirs,
    /// Alert output format on stdout.
    #[arg(long, value_enum, default_value = "json")]
    format: scan::Format,
    /// Only print alerts at or above this level.
    #[arg(long, value_name = "LEVEL", default_value = "informational")]
    min_level: Level,
    /// Stop reading a file after this many decompressed bytes (gzip bomb guard).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_DECOMPRESSED_BYTES)]
    max_decompressed_bytes: u64,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    context: ContextArgs,
    /// A name shown beside an account's id (repeatable), as the daemon's `account_names`:
    /// `111122223333=prod-payments`.
    #[arg(long = "account-name", value_name = "ID=NAME", value_parser = account_name)]
    account_names: Vec<(String, String)>,
    /// Report only events at or after this time: a date (2026-11-01, its midnight UTC) or an
    /// RFC 3339 time. For s3:// paths, only CloudTrail's day prefixes in range are listed.
    #[arg(long, value_name = "DATE|TIME", value_parser = listing::parse_from)]
    from: Option<chrono::DateTime<chrono::Utc>>,
    /// Report only events before this time: a date means through the end of that day (UTC),
    /// an RFC 3339 time is the first instant left out.
    #[arg(long, value_name = "DATE|TIME", value_parser = listing::parse_to)]
    to: Option<chrono::DateTime<chrono::Utc>>,
    /// For s3:// paths, read only this account's logs (repeatable; default: every account).
    #[arg(long = "account", value_name = "ID", value_parser = account_id)]
    accounts: Vec<String>,
    /// For s3:// paths, read only this region's logs (repeatable; default: every region). With
    /// --event-history, the regions whose history is read (default: the SDK's region, as
    /// AWS_REGION or the profile sets it).
    #[arg(long = "region", value_name = "REGION")]
    regions: Vec<String>,
    /// Read CloudTrail's event history (the last 90 days of management events, through
    /// LookupEvents; needs cloudtrail:LookupEvents) of each --region instead of PATHs, at
    /// CloudTrail's limit of 2 calls (100 events) per second per region, the regions at once.
    #[arg(long, conflicts_with_all = ["paths", "accounts"])]
    event_history: bool,
    /// S3 objects fetched at once.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    s3_concurrency: u16,
    /// No progress on stderr (the summary is still written).
    #[arg(long, short)]
    quiet: bool,
    /// Print alerts in input order (path, record position; the same for the same input), or
    /// by event time, ties in input order. Sorting holds at most 64 MiB of alerts in memory
    /// and spills sorted runs to temporary files beyond that.
    #[arg(long, value_enum, default_value = "input")]
    sort: scan::Sort,
    /// Bytes of alerts held before a sorted run is spilled (for tests).
    #[arg(long, value_name = "BYTES", default_value_t = scan::SORT_RUN_BYTES, hide = true)]
    sort_run_bytes: usize,
    /// Files, directories (recursive), - for stdin, or s3://bucket/prefix/.
    #[arg(required_unless_present = "event_history", value_name = "PATH")]
    paths: Vec<String>,
}

#[derive(Args)]
struct BackfillArgs {
    /// The trail's logs: s3://bucket/prefix/ (the prefix may be empty or end above
    /// `AWSLogs/`).
    #[arg(value_name = "S3_URL", value_parser = s3_url)]
    url: (String, String),
    /// Queue objects holding events at or after this time: a date (2026-11-01, its midnight
    /// UTC) or an RFC 3339 time.
    #[arg(long, value_name = "DATE|TIME", value_parser = listing::parse_from, required = true)]
    from: chrono::DateTime<chrono::Utc>,
    /// Queue objects holding events before this time: a date means through the end of that
    /// day (UTC), an RFC 3339 time is the first instant left out.
    #[arg(long, value_name = "DATE|TIME", value_parser = listing::parse_to, required = true)]
    to: chrono::DateTime<chrono::Utc>,
    /// Only this account's logs (repeatable; default: every account).
    #[arg(long = "account", value_name = "ID", value_parser = account_id)]
    accounts: Vec<String>,
    /// Only this region's logs (repeatable; default: every region).
    #[arg(long = "region", value_name = "REGION")]
    regions: Vec<String>,
    /// The daemon's SQS queue URL (its `queue_url` setting).
    #[arg(long, value_name = "URL", required_unless_present = "dry_run")]
    queue: Option<String>,
    /// SendMessageBatch calls in flight at once.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// List and count what would be queued; send nothing.
    #[arg(long)]
    dry_run: bool,
    /// No progress on stderr (the summary is still written).
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct RulesArgs {
    #[command(subcommand)]
    action: Option<RulesAction>,
    #[command(flatten)]
    rules: RuleDirs,
}

#[derive(Subcommand)]
enum RulesAction {
    /// Run the rule unit tests (*.test.json, *.test.yml, *.test.yaml) found under each
    /// directory against the builtin rules and the directories' own; one PASS or FAIL line
    /// per case, exit 1 when a case fails.
    Test(RulesTestArgs),
}

#[derive(Args)]
struct RulesTestArgs {
    #[command(flatten)]
    context: ContextArgs,
    /// Directories holding rules and their test files (recursive).
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Scan(args) => run_scan(args),
        Command::Backfill(args) => run_backfill(args),
        Command::Rules(args) => run_rules(args),
        Command::Run(args) => run_daemon(args),
        Command::Validate(args) => run_validate(args),
        Command::Completions(args) => {
            clap_complete::generate(
                args.shell,
                &mut Cli::command(),
                "trailwarden",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Man => {
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cannot write the man page: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Audit(args) => run_audit(args),
        Command::Healthcheck(args) => match telemetry::health::probe(args.addr) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
    }
}

fn run_daemon(args: RunArgs) -> ExitCode {
    // The runtime and the signal handlers come first: a SIGTERM during start-up (ECS stopping
    // a task that is still checking its settings) must stop it, not kill it.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let shutdown = CancellationToken::new();
    runtime.spawn(cancel_on_signal(shutdown.clone()));

    let settings = match Settings::load(args.config.as_deref(), &ProcessEnv) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    telemetry::init_logging(settings.log_format);
    let rules = match RuleSet::load(&settings.rule_dirs) {
        Ok(rules) => rules,
        Err(e) => {
            tracing::error!(error = %e, "cannot load rules");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let ip_ranges = match Derivation::load_ip_ranges(settings.aws_ip_ranges_file.as_deref()) {
        Ok(ranges) => ranges,
        Err(e) => {
            tracing::error!(setting = "aws_ip_ranges_file", error = %e, "cannot start: fix this setting");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // The trail buckets are the ones the daemon reads logs from.
    let rules = rules.with_derivation(Derivation::new(
        settings.trusted_accounts.iter().cloned(),
        settings.allowed_buckets.iter().cloned(),
        ip_ranges,
    ));
    for e in rules.errors() {
        tracing::error!(origin = %e.origin, title = e.title.as_deref().unwrap_or(""), reason = %e.reason, "rule failed to load");
    }
    for u in rules.unknown_fields() {
        tracing::warn!(origin = %u.origin, line = u.line, rule = %u.rule, field = %u.field, reason = %u.reason, "rule reads a field CloudTrail records do not have; it cannot match there");
    }
    // Fail closed: a broken rule is a detection switched off, a broken filter automation left
    // paging. A deployment with either must not turn healthy (and so is rolled back).
    if !rules.errors().is_empty() && !settings.allow_rule_errors {
        tracing::error!(
            failed = rules.errors().len(),
            "cannot start: rules or filters failed to load (each named above); fix them, or set allow_rule_errors = true to run without them"
        );
        return ExitCode::from(EXIT_USAGE);
    }
    runtime.block_on(async move {
        let metrics = Metrics::new();
        let listener = match tokio::net::TcpListener::bind(settings.health_listen).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(setting = "health_listen", addr = %settings.health_listen, error = %e, "cannot listen for health checks");
                return ExitCode::from(EXIT_USAGE);
            }
        };
        // The loop shows it is alive at least every few seconds, even while it waits; allow
        // one long poll plus a margin.
        let max_silence = Duration::from_secs(settings.wait_time_secs + 60);
        tokio::spawn(telemetry::health::serve(listener, metrics.clone(), max_silence));
        let edges = match start::connect(&settings, &metrics, &shutdown).await {
            Ok(edges) => edges,
            Err(e @ start::StartError::Setting { .. }) => {
                tracing::error!(error = %e, "cannot start: fix this setting");
                return ExitCode::from(EXIT_USAGE);
            }
            Err(e @ start::StartError::NoCredentials { .. }) => {
                tracing::error!(error = %e, "cannot start: no AWS credentials");
                return ExitCode::from(EXIT_USAGE);
            }
            Err(start::StartError::Shutdown) => return ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "cannot start: a dependency is unreachable");
                return ExitCode::from(1);
            }
        };
        // The list from aws_ip_ranges_file (or none) serves until a newer one is fetched;
        // the fetch runs beside the loop and never holds it up.
        if let Some(url) = settings.aws_ip_ranges_url.clone() {
            let refresher = daemon::ip_ranges::Refresher {
                source: daemon::ip_ranges::Http::new(url),
                ranges: rules.derivation().shared_ip_ranges().clone(),
                metrics: metrics.clone(),
            };
            tokio::spawn(refresher.run(shutdown.clone()));
        }
        if let Some(directory) = edges.directory.clone() {
            let refresher = daemon::account_names::Refresher {
                directory,
                configured: settings.account_names(),
                names: edges.names.clone(),
                metrics: metrics.clone(),
            };
            tokio::spawn(refresher.run(shutdown.clone()));
        }
        // Stopped after the daemon, so the last line covers the drain.
        let emf_stop = CancellationToken::new();
        let emf = (settings.metrics_emf_interval_secs > 0).then(|| {
            let emitter = telemetry::emf::Emitter::new(
                metrics.clone(),
                settings.metrics_namespace.clone(),
            );
            tokio::spawn(emitter.run(
                Duration::from_secs(settings.metrics_emf_interval_secs),
                emf_stop.clone(),
            ))
        });
        let daemon = daemon::Daemon::new(settings, Arc::new(rules), edges, metrics);
        daemon::run(daemon, shutdown).await;
        emf_stop.cancel();
        if let Some(emf) = emf {
            let _ = emf.await;
        }
        ExitCode::SUCCESS
    })
}

/// Cancels `token` on SIGTERM (ECS stopping the task) or SIGINT (Ctrl-C).
async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown signal received");
    token.cancel();
}

/// Loads the rule set and prints load errors and unknown fields; `None` when a directory
/// cannot be read.
fn load_rules(dirs: &RuleDirs) -> Option<RuleSet> {
    match RuleSet::load(&dirs.dirs) {
        Ok(rules) => {
            for e in rules.errors() {
                eprintln!("rule error: {e}");
            }
            for u in rules.unknown_fields() {
                eprintln!("rule warning: {u}");
            }
            Some(rules)
        }
        Err(e) => {
            eprintln!("error: {e}");
            None
        }
    }
}

/// A 12-digit AWS account id, for `--trusted-account`.
fn account_id(s: &str) -> Result<String, String> {
    if trailwarden::detect::policy::is_account_id(s) {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?} is not a 12-digit AWS account id"))
    }
}

/// `s3://bucket/prefix`, for `backfill`.
fn s3_url(s: &str) -> Result<(String, String), String> {
    s3::parse_url(s).ok_or_else(|| format!("{s:?} is not s3://bucket/prefix"))
}

/// The objects `--from`, `--to`, `--account` and `--region` select, for `scan` and
/// `backfill`; an error when the range is empty.
fn selection(
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: Option<chrono::DateTime<chrono::Utc>>,
    accounts: Vec<String>,
    regions: Vec<String>,
) -> Result<Selection, String> {
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        return Err(format!("--from {from} is not before --to {to}"));
    }
    Ok(Selection {
        range: TimeRange { from, to },
        accounts,
        regions,
    })
}

fn account_name(s: &str) -> Result<(String, String), String> {
    let (id, name) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not ID=NAME"))?;
    Ok((account_id(id.trim())?, name.trim().to_owned()))
}

fn run_scan(args: ScanArgs) -> ExitCode {
    let Some(rules) = load_rules(&args.rules) else {
        return ExitCode::from(EXIT_USAGE);
    };
    let ip_ranges = match Derivation::load_ip_ranges(args.context.aws_ip_ranges.as_deref()) {
        Ok(ranges) => ranges,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let s3_buckets = args.paths.iter().filter_map(|p| {
        let rest = p.strip_prefix("s3://")?;
        Some(rest.split('/').next().unwrap_or(rest).to_owned())
    });
    let trail_buckets: Vec<String> = args
        .context
        .trail_buckets
        .iter()
        .cloned()
        .chain(s3_buckets)
        .collect();
    let rules = rules.with_derivation(Derivation::new(
        args.context.trusted_accounts,
        trail_buckets,
        ip_ranges,
    ));
    let options = scan::Options {
        format: args.format,
        min_level: args.min_level,
        max_decompressed: args.max_decompressed_bytes,
        threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        account_names: AccountNames::new(args.account_names),
        selection: match selection(
            args.from,
            args.to,
            args.accounts,
            // With --event-history, --region names the regions to read, not keys to select.
            if args.event_history {
                Vec::new()
            } else {
                args.regions.clone()
            },
        ) {
            Ok(selection) => selection,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        s3_concurrency: usize::from(args.s3_concurrency),
        progress: !args.quiet,
        event_history: args.event_history.then_some(args.regions),
        sort: args.sort,
        sort_run_bytes: args.sort_run_bytes,
    };
    let summary = match scan::run(&rules, &args.paths, &options) {
        Ok(s) => s,
        // Not a usage error: the disk (or the temporary directory) failed.
        Err(e @ scan::ScanError::Sort { .. }) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let _ = summary.write_to(&mut std::io::stderr());
    if !rules.errors().is_empty() {
        eprintln!("{} rules failed to load (see above)", rules.errors().len());
        return ExitCode::from(EXIT_USAGE);
    }
    if summary.files_failed + summary.files_damaged > 0 {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn run_backfill(args: BackfillArgs) -> ExitCode {
    let selection = match selection(Some(args.from), Some(args.to), args.accounts, args.regions) {
        Ok(selection) => selection,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let (bucket, prefix) = args.url;
    let options = backfill::Options {
        bucket,
        prefix,
        selection,
        queue_url: if args.dry_run { None } else { args.queue },
        concurrency: usize::from(args.concurrency),
        progress: !args.quiet,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let summary = runtime.block_on(backfill::run(&options));
    let _ = summary.write_to(&mut std::io::stderr());
    if summary.failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn run_audit(args: AuditArgs) -> ExitCode {
    let organization = match args.account_role.as_deref().map(MemberRole::parse) {
        None => None,
        Some(Ok(role)) => Some(role),
        Some(Err(e)) => {
            eprintln!("error: --account-role: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let options = audit::Options {
        format: args.format,
        min_level: args.min_level,
        now: args.now.unwrap_or_else(chrono::Utc::now),
        settings: Default::default(),
        region: args.region,
        endpoint_url: args.endpoint_url,
        organization,
        external_id: args.external_id,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let audits = match runtime.block_on(audit::run(&options)) {
        Ok(audits) => audits,
        Err(e) => {
            // Without the account's identity (or the organization's accounts) nothing can be
            // read: credentials, region, endpoint or a permission are wrong, which is the
            // caller's to fix.
            eprintln!("cannot audit: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let summaries = match audit::write_all(
        &audits,
        options.format,
        options.min_level,
        &mut std::io::stdout().lock(),
    ) {
        Ok(summaries) => summaries,
        Err(e) => {
            eprintln!("cannot write the results: {e}");
            return ExitCode::from(1);
        }
    };
    for (result, summary) in audits.iter().zip(&summaries) {
        eprintln!(
            "audit of {} ({}) at {}: {}",
            result.account,
            result.region,
            result
                .now
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            summary.line()
        );
    }
    if summaries.len() > 1 {
        let failing = summaries.iter().filter(|s| s.any_failed()).count();
        eprintln!(
            "{} accounts audited, {failing} with failing checks",
            summaries.len()
        );
    }
    if summaries.iter().any(audit::Summary::any_failed) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn run_validate(args: ValidateArgs) -> ExitCode {
    let mut errors: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let has_env = std::env::vars_os().any(|(k, _)| {
        k.to_str()
            .is_some_and(|k| k.starts_with(trailwarden::config::ENV_PREFIX))
    });
    let settings = if args.config.is_some() || has_env {
        match Settings::check(args.config.as_deref(), &ProcessEnv) {
            Ok(settings) => Some(settings),
            Err(problems) => {
                for p in problems {
                    errors.push(p.to_string());
                }
                None
            }
        }
    } else {
        eprintln!("settings: not checked (no --config and no TRAILWARDEN_* variables)");
        None
    };
    if let Some(settings) = &settings
        && let Err(e) = Derivation::load_ip_ranges(settings.aws_ip_ranges_file.as_deref())
    {
        errors.push(format!("setting aws_ip_ranges_file: {e}"));
    }
    let mut dirs = args.rules.dirs.clone();
    if let Some(settings) = &settings {
        dirs.extend(settings.rule_dirs.iter().cloned());
    }
    let rules = match RuleSet::load(&dirs) {
        Ok(rules) => Some(rules),
        Err(e) => {
            errors.push(e.to_string());
            None
        }
    };
    if let Some(rules) = &rules {
        for e in rules.errors() {
            errors.push(with_line(e));
        }
        for u in rules.unknown_fields() {
            if args.strict {
                errors.push(u.to_string());
            } else {
                warnings.push(u.to_string());
            }
        }
    }
    if args.online {
        match &settings {
            None if errors.is_empty() => errors.push(
                "--online needs the settings: give --config or TRAILWARDEN_* variables".into(),
            ),
            None => {}
            Some(settings) => match online_checks(settings) {
                Ok(()) => eprintln!(
                    "online: credentials, queue, every output and the state table answered"
                ),
                Err(e) => errors.push(e),
            },
        }
    }
    for e in &errors {
        println!("error: {e}");
    }
    for w in &warnings {
        println!("warning: {w}");
    }
    eprintln!(
        "{} rules loaded; {} errors, {} warnings",
        rules.as_ref().map_or(0, |r| r.rules().len()),
        errors.len(),
        warnings.len()
    );
    if !errors.is_empty() {
        ExitCode::from(EXIT_USAGE)
    } else {
        ExitCode::SUCCESS
    }
}

/// A load error as `file:line: ...`, the line being the rule's `title:` when the file names
/// it (the loader reports per document, not per line).
fn with_line(e: &trailwarden::detect::LoadError) -> String {
    let line = e.title.as_deref().and_then(|title| {
        let text = std::fs::read_to_string(&e.origin).ok()?;
        text.lines()
            .position(|l| {
                l.trim_start()
                    .strip_prefix("title:")
                    .is_some_and(|rest| rest.trim().trim_matches(['\'', '"']) == title)
            })
            .map(|i| i + 1)
    });
    match line {
        Some(line) => format!(
            "{}:{line}: rule {:?}: {}",
            e.origin,
            e.title.as_deref().unwrap_or(""),
            e.reason
        ),
        None => e.to_string(),
    }
}

/// The daemon's start-up checks (credentials, region, queue, outputs, state table), without
/// starting it.
fn online_checks(settings: &Settings) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let shutdown = CancellationToken::new();
    runtime.spawn(cancel_on_signal(shutdown.clone()));
    runtime
        .block_on(start::connect(settings, &Metrics::new(), &shutdown))
        .map(drop)
        .map_err(|e| e.to_string())
}

fn run_rules_test(args: RulesTestArgs) -> ExitCode {
    let mut rules = match RuleSet::load(&args.dirs) {
        Ok(rules) => rules,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if !rules.errors().is_empty() {
        for e in rules.errors() {
            eprintln!("rule error: {e}");
        }
        eprintln!(
            "{} rules failed to load; fix them first",
            rules.errors().len()
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let mut files = Vec::new();
    for dir in &args.dirs {
        match rule_test::find(dir) {
            Ok(found) => files.extend(found),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    if files.is_empty() {
        eprintln!("error: no test files (*.test.json, *.test.yml, *.test.yaml) found");
        return ExitCode::from(EXIT_USAGE);
    }
    let base = rule_test::Context {
        trusted_accounts: args.context.trusted_accounts,
        trail_buckets: args.context.trail_buckets,
        aws_ip_ranges_file: args.context.aws_ip_ranges,
    };
    let (mut passed, mut failed, mut broken) = (0usize, 0usize, 0usize);
    for path in &files {
        let tests = match rule_test::TestFile::read(path)
            .and_then(|file| Ok((file.derivation(path, &base)?, file)))
        {
            Ok((derivation, file)) => {
                rules = rules.with_derivation(derivation);
                file
            }
            Err(e) => {
                println!("ERROR {e}");
                broken += 1;
                continue;
            }
        };
        for result in tests.run(&rules) {
            if result.passed() {
                passed += 1;
            } else {
                failed += 1;
            }
            println!("{result} [{}]", path.display());
        }
    }
    eprintln!(
        "{} cases in {} files: {passed} passed, {failed} failed{}",
        passed + failed,
        files.len(),
        if broken > 0 {
            format!(", {broken} files unreadable")
        } else {
            String::new()
        }
    );
    if broken > 0 {
        ExitCode::from(EXIT_USAGE)
    } else if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn run_rules(args: RulesArgs) -> ExitCode {
    if let Some(RulesAction::Test(test)) = args.action {
        return run_rules_test(test);
    }
    let Some(rules) = load_rules(&args.rules) else {
        return ExitCode::from(EXIT_USAGE);
    };
    println!(
        "{:<36} {:<13} {:<12} {:<60} ORIGIN",
        "NAME", "LEVEL", "KIND", "TITLE"
    );
    for r in rules.rules() {
        println!(
            "{:<36} {:<13} {:<12} {:<60} {}",
            r.name,
            r.level.as_str(),
            if r.alerts {
                format!("{:?}", r.kind).to_lowercase()
            } else {
                "feeds-only".to_owned()
            },
            r.title,
            r.origin
        );
    }
    eprintln!(
        "{} rules loaded, {} failed to load",
        rules.rules().len(),
        rules.errors().len()
    );
    if rules.errors().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_USAGE)
    }
}
