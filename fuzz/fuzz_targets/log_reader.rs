//! Fuzz target: arbitrary bytes as one log file (gzip or plain) → the record reader, then the
//! daemon's own read-and-detect path (every record parsed and evaluated by the builtin rules).
//!
//! Beyond "no panic, no hang", it checks what the daemon relies on: records come out in order
//! at increasing offsets, and a file that stops early says where (record index and byte).

#![no_main]

use std::io::Cursor;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use trailwarden::cloudtrail::{self, ReadError};
use trailwarden::detect::RuleSet;
use trailwarden::pipeline::{self, Outcome};

/// A small decompressed-size cap, so a gzip bomb costs the fuzzer milliseconds, not gigabytes,
/// while still leaving room for records larger than the reader's window.
const CAP: u64 = 16 << 20;

/// The builtin rules, compiled once for the whole run as the daemon does at start-up.
static RULES: LazyLock<RuleSet> =
    LazyLock::new(|| RuleSet::load(&[]).expect("the builtin rules are embedded and always load"));

fuzz_target!(|data: &[u8]| {
    let handed_out = read_raw(data);

    // The same bytes through the path the daemon, `scan` and the fast path's batches use.
    // Only a failing connection is `Broken`; bytes in memory, however bad, are damage.
    let report = pipeline::object(
        &RULES,
        "fuzz.json.gz",
        Cursor::new(data.to_vec()),
        CAP,
        &mut |_, _| {},
    )
    .expect("an in-memory read is never a broken connection");
    assert_eq!(
        report.records, handed_out,
        "the pipeline reads what the reader hands out"
    );
    if let Outcome::Failed(e) = &report.outcome {
        assert_names_where(e);
    }
});

/// Walks the reader alone, checking the order and offsets of what it hands out; returns how
/// many records it handed out.
fn read_raw(data: &[u8]) -> u64 {
    let mut reader = cloudtrail::open(Cursor::new(data.to_vec()), CAP)
        .expect("only a failing source fails `open`, and an in-memory cursor never fails");
    let mut next_offset = 0u64;
    loop {
        match reader.next_record() {
            Ok(Some(raw)) => {
                // The record borrows the reader's window: take what is checked, then release it.
                let (index, offset, len) = (raw.index, raw.offset, raw.bytes.len() as u64);
                assert!(offset >= next_offset, "records come out in document order");
                assert!(len > 0, "a record is at least one byte");
                next_offset = offset + len;
                assert_eq!(index + 1, reader.records_read(), "indexes count up from 0");
                assert!(next_offset <= reader.bytes_read() && reader.bytes_read() <= CAP);
            }
            Ok(None) => break,
            Err(e) => {
                assert_eq!(e.record_index(), reader.records_read(), "{e}");
                assert_names_where(&e);
                break;
            }
        }
    }
    reader.records_read()
}

/// An operator finds the damage from the message alone: it names the record, and the byte
/// unless the whole file was refused for its size.
fn assert_names_where(e: &ReadError) {
    let message = e.to_string();
    assert!(message.contains("record "), "{message}");
    if !matches!(e, ReadError::TooLarge { .. }) {
        assert!(message.contains("byte "), "{message}");
    }
}
