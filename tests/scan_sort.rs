//! `scan --sort time`: alerts out of time order across files print by event time, ties in
//! input order, and a sort forced to spill many runs to temporary files prints the same.

mod support;

use std::process::{Command, Output};

use serde_json::{Value, json};
use support::root_login;

fn scan(args: &[&str], paths: &[&std::path::Path]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_trailwarden"))
        .args(["scan", "--quiet", "--threads", "4"])
        .args(args)
        .args(paths)
        .output()
        .expect("run scan");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// (event_id, event_time) of the root sign-in alerts, in printed order.
fn printed(out: &Output) -> Vec<(String, String)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|a| a["rule"] == "root-console-login")
        .map(|a| {
            (
                a["event_id"].as_str().unwrap_or("").to_owned(),
                a["event_time"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn alerts_print_by_event_time_ties_in_input_order_however_many_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Two files, each newest first (as lookup-events exports are); every fifth pair of
    // records shares its time, across files too.
    let mut paths = Vec::new();
    for file in ["a", "b"] {
        let lines: Vec<String> = (0..300)
            .map(|i| {
                let mut r = root_login(&format!("{file}-{i}"));
                let minute = (299 - i) / 5;
                r["eventTime"] = json!(format!(
                    "2026-11-20T{:02}:{:02}:00Z",
                    minute / 60,
                    minute % 60
                ));
                r.to_string()
            })
            .collect();
        let path = dir.path().join(format!("{file}.jsonl"));
        std::fs::write(&path, lines.join("\n")).expect("write");
        paths.push(path);
    }
    let paths: Vec<&std::path::Path> = paths.iter().map(|p| p.as_path()).collect();

    let input = printed(&scan(&[], &paths));
    assert_eq!(input.len(), 600);
    assert_eq!(input[0].0, "a-0", "input order by default");
    assert_eq!(input[300].0, "b-0");

    let sorted = scan(&["--sort", "time"], &paths);
    let by_time = printed(&sorted);
    assert_eq!(by_time.len(), 600);
    assert!(
        by_time.windows(2).all(|w| w[0].1 <= w[1].1),
        "by event time"
    );
    // The first minute holds a-295..a-299 and b-295..b-299: file a first (input order),
    // each file's records in their order.
    let first: Vec<&str> = by_time[..10].iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        first,
        [
            "a-295", "a-296", "a-297", "a-298", "a-299", "b-295", "b-296", "b-297", "b-298",
            "b-299"
        ]
    );
    let mut stable = input.clone();
    stable.sort_by(|x, y| x.1.cmp(&y.1));
    assert_eq!(by_time, stable, "a stable sort of the input order");

    // A bound of a few alerts: dozens of runs spilled and merged, the same bytes out.
    let spilled = scan(&["--sort", "time", "--sort-run-bytes", "4096"], &paths);
    assert_eq!(spilled.stdout, sorted.stdout);
    let err = String::from_utf8_lossy(&spilled.stderr);
    let runs: usize = err
        .split("alerts sorted by event time in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no runs in the summary: {err}"));
    assert!(runs >= 10, "{err}");
}
