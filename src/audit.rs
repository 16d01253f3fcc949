//! `trailwarden audit`: the account the default credential chain reaches (and with
//! `--organization`, every member account entered through a role) → one line per posture
//! check on stdout (pass, FAIL with its findings, or could-not-check with the call that was
//! refused), grouped by account, a summary per account on stderr, and an exit code that says
//! whether anything at or above the chosen level failed.

use std::io::{self, Write};

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::finding::Level;
use crate::posture::aws::{AwsAccount, AwsMembers};
use crate::posture::organization::{self, MemberRole};
use crate::posture::{self, Audit, CheckResult, Outcome, Read};

/// How check results are written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One readable line per check, its findings indented below it.
    Text,
    /// One JSON object per check and line, its findings included.
    Json,
}

/// Options of one audit.
#[derive(Debug, Clone)]
pub struct Options {
    pub format: Format,
    /// Checks below this level are neither printed nor counted for the exit code.
    pub min_level: Level,
    /// Ages are counted from here (the clock, unless a test sets it).
    pub now: DateTime<Utc>,
    pub settings: posture::Settings,
    /// Region of the regional checks; unset means the SDK's default chain.
    pub region: Option<String>,
    /// An endpoint for every client (an emulator); unset in production.
    pub endpoint_url: Option<String>,
    /// Audit every member account of the organization too, through this role.
    pub organization: Option<MemberRole>,
    /// The `sts:ExternalId` the member role asks for, if any.
    pub external_id: Option<String>,
}

/// Reads the account with the default credential chain and audits it, and with
/// [`Options::organization`] every member account after it. Fails only when the account
/// cannot be identified (no credentials, no region, no endpoint) or the organization's
/// accounts cannot be listed.
pub async fn run(options: &Options) -> Read<Vec<Audit>> {
    let sdk =
        crate::aws::sdk_config(options.region.as_deref(), options.endpoint_url.as_deref()).await;
    let account = AwsAccount::new(&sdk);
    match &options.organization {
        None => Ok(vec![
            posture::audit(&account, &options.settings, options.now).await?,
        ]),
        Some(role) => {
            let members = AwsMembers::new(&sdk, role.clone(), options.external_id.clone());
            organization::audit_organization(&account, &members, &options.settings, options.now)
                .await
        }
    }
}

/// What was printed, for the summary and the exit code.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub unchecked: usize,
    /// Findings by level, most severe first.
    pub findings: Vec<(Level, usize)>,
}

impl Summary {
    /// Whether any printed check failed: exit 1.
    pub fn any_failed(&self) -> bool {
        self.failed > 0
    }

    /// One line, e.g. `15 checks: 8 pass, 5 fail (9 findings: 1 critical, 3 high, 5 medium),
    /// 2 could not be checked`.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} checks: {} pass, {} fail",
            self.passed + self.failed + self.unchecked,
            self.passed,
            self.failed
        );
        let total: usize = self.findings.iter().map(|(_, n)| n).sum();
        if total > 0 {
            let by_level: Vec<String> = self
                .findings
                .iter()
                .map(|(level, n)| format!("{n} {level}"))
                .collect();
            let plural = if total == 1 { "" } else { "s" };
            s.push_str(&format!(
                " ({total} finding{plural}: {})",
                by_level.join(", ")
            ));
        }
        s.push_str(&format!(", {} could not be checked", self.unchecked));
        s
    }
}

/// Writes each account's results at or above `min_level` to `out`, as [`write`] does; in
/// text, each account's lines under a `== account <id> ==` heading when there are several.
/// Returns what was written for each account.
pub fn write_all(
    audits: &[Audit],
    format: Format,
    min_level: Level,
    out: &mut impl Write,
) -> io::Result<Vec<Summary>> {
    let grouped = format == Format::Text && audits.len() > 1;
    let mut summaries = Vec::with_capacity(audits.len());
    for audit in audits {
        if grouped {
            writeln!(out, "== account {} ==", audit.account)?;
        }
        summaries.push(write(audit, format, min_level, out)?);
    }
    Ok(summaries)
}

/// Writes the results at or above `min_level` to `out`; returns what was written.
pub fn write(
    audit: &Audit,
    format: Format,
    min_level: Level,
    out: &mut impl Write,
) -> io::Result<Summary> {
    let mut summary = Summary::default();
    let mut by_level = std::collections::BTreeMap::new();
    for result in audit.results.iter().filter(|r| r.check.level >= min_level) {
        match &result.outcome {
            Outcome::Pass { .. } => summary.passed += 1,
            Outcome::Fail(found) => {
                summary.failed += 1;
                *by_level.entry(result.check.level).or_insert(0) += found.len();
            }
            Outcome::Unchecked(_) | Outcome::Unreadable(_) => summary.unchecked += 1,
        }
        match format {
            Format::Text => write_text(result, out)?,
            Format::Json => {
                serde_json::to_writer(&mut *out, &json_line(audit, result))?;
                writeln!(out)?;
            }
        }
    }
    summary.findings = by_level.into_iter().rev().collect();
    Ok(summary)
}

fn write_text(result: &CheckResult, out: &mut impl Write) -> io::Result<()> {
    let check = result.check;
    let (status, detail) = match &result.outcome {
        Outcome::Pass { note } => ("pass", note.as_deref().unwrap_or(check.title).to_owned()),
        Outcome::Fail(found) => (
            "FAIL",
            format!(
                "{} finding{}: {}",
                found.len(),
                if found.len() == 1 { "" } else { "s" },
                check.title
            ),
        ),
        Outcome::Unchecked(unread) => ("could-not-check", unread.failed.sentence.clone()),
        Outcome::Unreadable(why) => ("could-not-check", why.clone()),
    };
    writeln!(
        out,
        "{status:<15} {:<13} {:<33} {detail}",
        check.level.as_str(),
        check.name
    )?;
    if let Outcome::Fail(found) = &result.outcome {
        for f in found {
            writeln!(out, "    {}: {}", f.resource, f.evidence)?;
        }
        for step in check.next_steps {
            writeln!(out, "    next: {step}")?;
        }
    }
    Ok(())
}

fn json_line(audit: &Audit, result: &CheckResult) -> serde_json::Value {
    let check = result.check;
    let mut line = json!({
        "check": check.name,
        "level": check.level,
        "title": check.title,
        "account": audit.account,
        "region": audit.region,
        "audited_at": audit.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    let fields = match &result.outcome {
        Outcome::Pass { note: None } => json!({"status": "pass"}),
        Outcome::Pass { note: Some(note) } => json!({"status": "pass", "note": note}),
        Outcome::Fail(found) => json!({"status": "fail", "findings": found}),
        Outcome::Unchecked(unread) => json!({
            "status": "could-not-check",
            "action": unread.action,
            "denied": unread.is_denied(),
            "reason": unread.failed.sentence,
        }),
        Outcome::Unreadable(why) => json!({"status": "could-not-check", "reason": why}),
    };
    if let (Some(line), serde_json::Value::Object(fields)) = (line.as_object_mut(), fields) {
        line.extend(fields);
    }
    line
}
