//! Bad input never crashes: thousands of deterministic random corruptions of valid log files and
//! notification bodies go through the reader, the engine and the notification parser. Each
//! must end in a result (alerts, a skip, or an error that names where it broke), never a panic.
//!
//! A stand-in for fuzzing that runs on the stable toolchain in every `cargo test`.

mod support;

use std::io::Cursor;

use serde_json::json;
use support::{log_file, record, role, root, root_login};
use trailwarden::detect::RuleSet;
use trailwarden::intake::notice;
use trailwarden::pipeline::{self, Outcome};

/// A small xorshift generator: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Flips, inserts, deletes or truncates a few bytes.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        if out.is_empty() {
            break;
        }
        let at = rng.below(out.len());
        match rng.below(4) {
            0 => out[at] ^= 1 << rng.below(8),
            1 => out.insert(at, rng.next() as u8),
            2 => {
                out.remove(at);
            }
            _ => out.truncate(at),
        }
    }
    out
}

#[test]
fn corrupted_log_files_end_in_a_result() {
    let rules = RuleSet::load(&[]).expect("rules");
    let records = vec![
        root_login("c1"),
        record("c2", "ec2.amazonaws.com", "DescribeInstances", role()),
        record("c3", "iam.amazonaws.com", "CreateAccessKey", root()),
    ];
    let gz = log_file(&records);
    let plain = serde_json::to_vec(&json!({ "Records": records })).expect("json");
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let (mut ok, mut failed) = (0, 0);
    for i in 0..3000 {
        let input = mutate(&mut rng, if i % 2 == 0 { &gz } else { &plain });
        let report = pipeline::object(
            &rules,
            "fuzz.json.gz",
            Cursor::new(input),
            1 << 20,
            &mut |_, _| {},
        )
        .expect("a local read never breaks");
        match report.outcome {
            Outcome::Failed(e) => {
                failed += 1;
                let msg = e.to_string();
                assert!(
                    msg.contains("record") || msg.contains("byte"),
                    "error says where: {msg}"
                );
            }
            _ => ok += 1,
        }
    }
    assert!(
        failed > 0 && ok > 0,
        "both outcomes exercised: {ok} ok, {failed} failed"
    );
}

#[test]
fn corrupted_notifications_never_panic() {
    let bodies = [
        r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"trail"},"object":{"key":"AWSLogs%2F1%2Fa+b.json.gz","size":5}}}]}"#.to_owned(),
        json!({"Type": "Notification", "Message": json!({"s3Bucket": "t", "s3ObjectKey": ["k"]}).to_string()}).to_string(),
        r#"{"version":"0","detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"t"},"object":{"key":"k"}}}"#.to_owned(),
    ];
    let mut rng = Rng(0xfeed_beef_0bad_cafe);
    for i in 0..5000 {
        let input = mutate(&mut rng, bodies[i % bodies.len()].as_bytes());
        let _ = notice::parse(&String::from_utf8_lossy(&input));
    }
}
