//! The `trailwarden` binary: parse the command line, then hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use trailwarden::detect::{Level, RuleSet};
use trailwarden::engine::DEFAULT_MAX_DECOMPRESSED_BYTES;
use trailwarden::scan;

/// Exit code for usage, rule and configuration errors.
const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(name = "trailwarden", version, about = "CloudTrail security monitor: Sigma detections over CloudTrail logs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Scan CloudTrail log files, directories, stdin (-) or s3://bucket/prefix/ and print alerts.
    Scan(ScanArgs),
    /// List the loaded rules (name, level, title, origin) and any that failed to load.
    Rules(RulesArgs),
}

#[derive(Args)]
struct RuleDirs {
    /// Extra directory of Sigma rules and filters (repeatable); builtin rules always load.
    #[arg(long = "rules", value_name = "DIR")]
    dirs: Vec<PathBuf>,
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
    /// Files, directories (recursive), - for stdin, or s3://bucket/prefix/.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<String>,
}

#[derive(Args)]
struct RulesArgs {
    #[command(flatten)]
    rules: RuleDirs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Scan(args) => run_scan(args),
        Command::Rules(args) => run_rules(args),
    }
}

/// Loads the rule set and prints load errors; `None` when a directory cannot be read.
fn load_rules(dirs: &RuleDirs) -> Option<RuleSet> {
    match RuleSet::load(&dirs.dirs) {
        Ok(rules) => {
            for e in rules.errors() {
                eprintln!("rule error: {e}");
            }
            Some(rules)
        }
        Err(e) => {
            eprintln!("error: {e}");
            None
        }
    }
}

fn run_scan(args: ScanArgs) -> ExitCode {
    let Some(rules) = load_rules(&args.rules) else {
        return ExitCode::from(EXIT_USAGE);
    };
    let options = scan::Options {
        format: args.format,
        min_level: args.min_level,
        max_decompressed: args.max_decompressed_bytes,
        threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
    };
    let summary = match scan::run(&rules, &args.paths, &options) {
        Ok(s) => s,
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
    if summary.files_failed > 0 {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn run_rules(args: RulesArgs) -> ExitCode {
    let Some(rules) = load_rules(&args.rules) else {
        return ExitCode::from(EXIT_USAGE);
    };
    println!("{:<36} {:<13} {:<12} {:<60} ORIGIN", "NAME", "LEVEL", "KIND", "TITLE");
    for r in rules.rules() {
        println!(
            "{:<36} {:<13} {:<12} {:<60} {}",
            r.name,
            r.level.as_str(),
            format!("{:?}", r.kind).to_lowercase(),
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
