//! A command's counters → its progress on stderr: a bar when stderr is a terminal
//! (indicatif), else one line every few seconds, so a long run over a bucket is never silent.
//! `scan` and `backfill` each say what they count through [`Counts`].

use std::io::{self, IsTerminal};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a progress line is written when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(5);
/// How often the bar is redrawn.
const BAR_EVERY: Duration = Duration::from_millis(200);

/// What a progress display reads while the work goes on.
pub trait Counts: Sync {
    /// What is counted: objects unless a command says otherwise.
    fn unit(&self) -> &'static str {
        "objects"
    }
    /// Objects done.
    fn done(&self) -> u64;
    /// Objects known so far (the total grows while a listing runs).
    fn total(&self) -> u64;
    /// The rest of the line: rates and counts, given the seconds since the start.
    fn detail(&self, secs: f64) -> String;
}

/// Shows progress until `finished` is set; then clears the bar (the summary follows).
pub fn show(counts: &dyn Counts, finished: &AtomicBool) {
    let started = Instant::now();
    if io::stderr().is_terminal() {
        bar(counts, finished, started);
    } else {
        lines(counts, finished, started);
    }
}

fn bar(counts: &dyn Counts, finished: &AtomicBool, started: Instant) {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {{elapsed_precise}} [{{wide_bar}}] {{pos}}/{{len}} {}  {{msg}}  ETA {{eta}}",
            counts.unit()
        ))
        .expect("the template is valid")
        .progress_chars("=> "),
    );
    while !finished.load(Ordering::Relaxed) {
        bar.set_length(counts.total());
        bar.set_position(counts.done());
        bar.set_message(counts.detail(secs_since(started)));
        std::thread::park_timeout(BAR_EVERY);
    }
    bar.finish_and_clear();
}

fn lines(counts: &dyn Counts, finished: &AtomicBool, started: Instant) {
    let mut next = started + LINE_EVERY;
    while !finished.load(Ordering::Relaxed) {
        if Instant::now() >= next {
            eprintln!(
                "progress: {}/{} {}, {}, {:.0} s",
                counts.done(),
                counts.total(),
                counts.unit(),
                counts.detail(secs_since(started)),
                started.elapsed().as_secs_f64()
            );
            next += LINE_EVERY;
        }
        std::thread::park_timeout(BAR_EVERY);
    }
}

fn secs_since(started: Instant) -> f64 {
    started.elapsed().as_secs_f64().max(1e-3)
}
