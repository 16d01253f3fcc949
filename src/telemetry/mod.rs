//! What operators tail, scrape and probe.
//!
//! - Logs: JSON lines (or text on a terminal), one per message, per object and per incident,
//!   never one per record.
//! - [`metrics`]: Prometheus text on `/metrics`, named `trailwarden_<name>_<unit>_total`, and
//!   the one INFO line when a failing dependency works again.
//! - [`health`]: `/healthz` (the receive loop is alive and its last receive succeeded) and the
//!   `healthcheck` probe.
//! - [`progress`]: the offline commands' progress on stderr (`scan`, `backfill`).

pub mod emf;
pub mod health;
pub mod metrics;
pub mod progress;

pub use metrics::{Dependency, Metrics};

/// Something left out on purpose: unparseable records skipped, correlation events past a
/// source's share, state reads past their bound. The one way to report a drop: it logs one
/// line and counts, so the log and `/metrics` cannot drift apart.
#[derive(Debug)]
pub struct Dropped<'a> {
    /// What was left out, a stable snake_case label (`records_unparseable`).
    pub what: &'static str,
    pub count: u64,
    /// The log file, event or state item it was left out of.
    pub source: &'a str,
    /// One sentence: which group or record, and why.
    pub detail: String,
}

impl Dropped<'_> {
    /// Logs once and counts; nothing when nothing was dropped.
    pub fn report(&self, metrics: &Metrics) {
        if self.count == 0 {
            return;
        }
        tracing::warn!(
            dropped = self.what,
            count = self.count,
            source = %crate::finding::alert::clean(self.source),
            detail = %crate::finding::alert::clean(&self.detail),
            "left out on purpose"
        );
        metrics
            .dropped
            .get_or_create(&metrics::DropLabels { what: self.what })
            .inc_by(self.count);
    }
}

use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::debug_fn;

use crate::config::LogFormat;

/// Sets up the tracing subscriber. `RUST_LOG` overrides the default `info` filter.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,aws_config=warn,aws_smithy_runtime=warn")
    });
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let format = match format {
        LogFormat::Auto if terminal => LogFormat::Text,
        LogFormat::Auto => LogFormat::Json,
        other => other,
    };
    // A second initialisation (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        // Colour only on a terminal: escape codes in a file or pipe are noise to grep.
        LogFormat::Text | LogFormat::Auto => builder
            .with_ansi(terminal)
            .fmt_fields(
                debug_fn(|w, field, value| {
                    let raw = format!("{value:?}");
                    let text = escape(&raw);
                    if field.name() == "message" {
                        write!(w, "{text}")
                    } else {
                        write!(w, "{field}={text}")
                    }
                })
                .delimited(" "),
            )
            .try_init(),
    };
}

/// Escapes control characters, so a value from outside (an object key with `%0A` decoded, a
/// user agent) cannot end a text log line and forge the next one. JSON logs escape on their own.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    use std::fmt::Write as _;
    // Control characters, and the Unicode direction overrides that reorder what is read.
    let unsafe_char =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_forge_lines() {
        assert_eq!(escape("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(escape("x\u{202e}y"), "x\\u{202e}y");
        assert!(matches!(escape("plain"), std::borrow::Cow::Borrowed(_)));
    }
}
