//! Generated inputs → the three parsers of untrusted bytes (the log reader, the record, the
//! notification body) → properties that must hold for every input, on stable, in every
//! `cargo test`.
//!
//! The fuzz targets in fuzz/ run the same parsers under libFuzzer's coverage guidance, which
//! needs nightly. These properties add what a fuzzer cannot judge alone: a generated document
//! reads back exactly the records it was built from, valid JSON reads as serde_json reads it,
//! a cut document never invents a record, a record's fields read lazily as the engine reads
//! them whole, and a generated notification decodes to the keys it was built from. A failing
//! case is shrunk to a small input and printed; runs start from a fixed seed, so it reproduces.
//!
//! Every parser call runs under a watchdog ([`bounded`]), so a parser that loops fails its case
//! instead of hanging the suite.

mod support;

use std::collections::HashMap;
use std::io::{Cursor, Write};
use std::sync::LazyLock;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::RngSeed;
use rsigma_eval::event::{Event, JsonEvent};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value, json};
use support::{s3_event, sns_envelope};
use trailwarden::cloudtrail::{self, Finish, ReadError, Record, object};
use trailwarden::detect::RuleSet;
use trailwarden::intake::notice::{self, Notice, ObjectRef};
use trailwarden::pipeline::{self, Outcome};

/// Cases per property: enough to reach the odd corners of each strategy, few enough that the
/// whole file runs in seconds in a debug build. `PROPTEST_CASES` overrides it for a longer run.
const CASES: u32 = 256;

/// The seed every run starts from, so a failure in CI reproduces on a laptop and a change that
/// does not touch the parsers cannot fail here by chance. `PROPTEST_RNG_SEED` explores others.
const SEED: u64 = 0x7a11_3a2d_e4f0_0001;

/// How long one parser call may take before its case fails as a hang. Each call here takes
/// milliseconds; the margin is for a loaded CI machine running a debug build.
const HANG: Duration = Duration::from_secs(20);

/// The decompressed-size cap where a property is not about the cap.
const CAP: u64 = 16 << 20;

/// The builtin rules, compiled once for the file as the daemon does at start-up.
static RULES: LazyLock<RuleSet> =
    LazyLock::new(|| RuleSet::load(&[]).expect("the builtin rules are embedded and always load"));

fn config() -> ProptestConfig {
    // `default()` reads the PROPTEST_* variables; keep what they set.
    let from_env = ProptestConfig::default();
    let set = |name: &str| std::env::var_os(name).is_some();
    ProptestConfig {
        cases: if set("PROPTEST_CASES") {
            from_env.cases
        } else {
            CASES
        },
        rng_seed: if set("PROPTEST_RNG_SEED") {
            from_env.rng_seed
        } else {
            RngSeed::Fixed(SEED)
        },
        // The seed, and the minimal input printed with a failure, reproduce it; proptest's
        // regression files cannot be placed for an integration test (no lib.rs beside it).
        failure_persistence: None,
        ..from_env
    }
}

/// Runs `f` on its own thread and fails the case if it has not returned within [`HANG`]. A
/// panic in `f` is re-raised here with its own message, so proptest shrinks it like any other.
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        // The receiver is gone only after a timeout, when the case has already failed.
        let _ = tx.send(f());
    });
    match rx.recv_timeout(HANG) {
        Ok(value) => value,
        Err(RecvTimeoutError::Timeout) => panic!("no result after {HANG:?}: the parser hangs"),
        Err(RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the worker sends before it returns"),
        },
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("in-memory write");
    enc.finish().expect("in-memory gzip")
}

/// `bytes` as several gzip members, split at `cuts` (empty members included), as CloudTrail
/// and tools that append to a gzip file write them.
fn gzip_members(bytes: &[u8], cuts: &[Index]) -> Vec<u8> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    at.sort_unstable();
    at.push(bytes.len());
    let mut out = Vec::new();
    let mut from = 0;
    for to in at {
        out.extend(gzip(&bytes[from..to]));
        from = to;
    }
    out
}

/// One record as the reader handed it out.
#[derive(Debug)]
struct Raw {
    /// The record's JSON text.
    bytes: Vec<u8>,
    /// Its index in `Records`, as the reader gave it.
    index: u64,
    /// Its decompressed offset, as the reader gave it.
    offset: u64,
}

/// Everything the reader handed out for one input, and how it ended.
#[derive(Debug)]
struct Read {
    /// Every record handed out, in order.
    records: Vec<Raw>,
    /// The clean end, or the error reading stopped at.
    end: Result<Finish, ReadError>,
    /// `bytes_read()` once reading stopped.
    bytes_read: u64,
}

/// Reads `input` to its end (or its first error) under the watchdog, checking on the way what
/// holds for any input: indexes count up from 0, and records come out in document order.
fn read(input: Vec<u8>, cap: u64) -> Read {
    bounded(move || {
        let mut reader = cloudtrail::open(Cursor::new(input), cap)
            .expect("only a failing source fails `open`, and an in-memory cursor never fails");
        let mut records: Vec<Raw> = Vec::new();
        let end = loop {
            match reader.next_record() {
                Ok(Some(raw)) => records.push(Raw {
                    bytes: raw.bytes.to_vec(),
                    index: raw.index,
                    offset: raw.offset,
                }),
                Ok(None) => break Ok(reader.finish()),
                Err(e) => break Err(e),
            }
            let last = &records[records.len() - 1];
            assert_eq!(last.index as usize, records.len() - 1, "indexes count up");
            assert!(!last.bytes.is_empty(), "a record is at least one byte");
            if let [.., before, last] = records.as_slice() {
                assert!(
                    last.offset >= before.offset + before.bytes.len() as u64,
                    "records come out in document order: {before:?} then {last:?}"
                );
            }
        };
        assert_eq!(reader.records_read(), records.len() as u64);
        if let Err(e) = &end {
            assert_eq!(e.record_index(), records.len() as u64, "{e}");
        }
        Read {
            records,
            end,
            bytes_read: reader.bytes_read(),
        }
    })
}

/// Where a read error says the damage is, in decompressed bytes (`None`: the whole file).
fn error_offset(e: &ReadError) -> Option<u64> {
    match e {
        ReadError::Io { offset, .. }
        | ReadError::Syntax { offset, .. }
        | ReadError::Truncated { offset, .. }
        | ReadError::Shape { offset, .. }
        | ReadError::RecordTooLarge { offset, .. } => Some(*offset),
        ReadError::TooLarge { .. } => None,
    }
}

/// An operator finds the damage from the message alone: it names the record, and the byte
/// unless the whole file was refused for its size.
fn assert_names_where(e: &ReadError) {
    let message = e.to_string();
    assert!(message.contains("record "), "{message}");
    if error_offset(e).is_some() {
        assert!(message.contains("byte "), "{message}");
    }
}

/// Reads `input` through the daemon's own read-and-detect path with the builtin rules.
fn read_object(input: Vec<u8>) -> pipeline::LogReport {
    bounded(move || {
        // Only a failing connection is `Broken`; bytes in memory, however bad, are damage.
        pipeline::object(
            &RULES,
            "generated.json.gz",
            Cursor::new(input),
            CAP,
            &mut |_, _| {},
        )
        .expect("an in-memory read is never a broken connection")
    })
}

// ---------------------------------------------------------------------------------------------
// Strategies.

/// Text with what breaks naive JSON handling: quotes, backslashes, NUL and other control
/// characters, brackets, characters outside the BMP, and the characters URL encoding treats
/// specially.
fn text() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        '"',
        '\\',
        '{',
        '}',
        '[',
        ']',
        ',',
        ':',
        '/',
        '.',
        ' ',
        '+',
        '%',
        'u',
        '\u{7f}',
        '\u{2028}',
        '\u{feff}',
        '\u{1f600}',
    ]);
    let ch = prop_oneof![
        3 => any::<char>(),
        2 => prop::char::range('\0', '\u{1f}'),
        3 => special,
        3 => prop::char::range('a', 'z'),
    ];
    prop::collection::vec(ch, 0..12).prop_map(String::from_iter)
}

/// A key that a dot path can name: no dots, as CloudTrail's keys.
fn path_key() -> impl Strategy<Value = String> {
    text().prop_map(|k| k.replace('.', "_"))
}

/// Any JSON value, nested a few levels, with object keys from `key`. Floats are multiples of
/// 1/8 so they read back bit for bit whatever the float formatting.
fn json_with(key: BoxedStrategy<String>) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1_000_000i64..1_000_000).prop_map(|n| Value::from(n as f64 / 8.0)),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(key.clone(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json() -> impl Strategy<Value = Value> {
    json_with(text().boxed())
}

/// A CloudTrail-like record: the fields rules and alerts read, each present, null, of another
/// type or missing, among random other fields.
fn record() -> impl Strategy<Value = Value> {
    let string_or_any = || prop_oneof![3 => text().prop_map(Value::from), 1 => json()];
    let identity = (
        prop::option::of(string_or_any()),
        prop::option::of(string_or_any()),
        prop::option::of(string_or_any()),
    )
        .prop_map(|(kind, arn, mfa)| {
            let mut identity = Map::new();
            if let Some(kind) = kind {
                identity.insert("type".into(), kind);
            }
            if let Some(arn) = arn {
                identity.insert("arn".into(), arn);
            }
            if let Some(mfa) = mfa {
                identity.insert(
                    "sessionContext".into(),
                    json!({"attributes": {"mfaAuthenticated": mfa}}),
                );
            }
            Value::Object(identity)
        });
    (
        prop::collection::btree_map(text(), json(), 0..4),
        prop::option::of(string_or_any()),
        prop::option::of(string_or_any()),
        prop::option::of(string_or_any()),
        prop::option::of(prop_oneof![identity, json()]),
        prop::option::of(json()),
    )
        .prop_map(|(extra, id, source, name, identity, parameters)| {
            let mut record: Map<String, Value> = extra.into_iter().collect();
            for (key, value) in [
                ("eventID", id),
                ("eventSource", source),
                ("eventName", name),
                ("userIdentity", identity),
                ("requestParameters", parameters),
            ] {
                if let Some(value) = value {
                    record.insert(key.into(), value);
                }
            }
            Value::Object(record)
        })
}

/// A log file's document and the records it holds: `{"Records":[...]}`, compact or pretty,
/// with other top-level keys before or after the array, and whitespace after the document.
#[derive(Debug, Clone)]
struct Doc {
    /// The records in `Records`, in order.
    records: Vec<Value>,
    /// The document's text.
    bytes: Vec<u8>,
}

fn document() -> impl Strategy<Value = Doc> {
    let other_key = || {
        prop::option::of((
            text().prop_filter("not Records", |k| k != "Records"),
            json(),
        ))
    };
    (
        prop::collection::vec(record(), 0..8),
        other_key(),
        other_key(),
        any::<bool>(),
        prop::sample::select(vec!["", "\n", " \r\n\t "]),
    )
        .prop_map(|(records, before, after, pretty, tail)| {
            let encode = |v: &Value| {
                if pretty {
                    serde_json::to_string_pretty(v)
                } else {
                    serde_json::to_string(v)
                }
                .expect("a Value always serialises")
            };
            let mut text = String::from("{");
            if let Some((key, value)) = &before {
                text += &format!("{}:{},", encode(&json!(key)), encode(value));
            }
            text += &format!("\"Records\":{}", encode(&Value::from(records.clone())));
            if let Some((key, value)) = &after {
                text += &format!(",{}:{}", encode(&json!(key)), encode(value));
            }
            text += "}";
            text += tail;
            Doc {
                records,
                bytes: text.into_bytes(),
            }
        })
}

/// Valid JSON objects shaped like log files, on which the reader's own scanner must agree
/// with a JSON parser: any values as records, other keys around `Records`, `Records` twice or
/// not an array, keys spelled with escapes, and whitespace between any two tokens.
fn log_shaped() -> impl Strategy<Value = Vec<u8>> {
    const SPACE: &[&str] = &["", " ", "\n", "\r\n\t", "  "];
    let key = prop_oneof![
        3 => Just(r#""Records""#.to_owned()),
        1 => prop::sample::select(vec![
            r#""Re\u0063ords""#,
            r#""\u0052ecords""#,
            r#""records""#,
            r#""Records ""#,
        ])
        .prop_map(str::to_owned),
        2 => text().prop_map(|k| json!(k).to_string()),
    ];
    let value = prop_oneof![
        3 => prop::collection::vec(json(), 0..5).prop_map(Value::from),
        1 => json(),
    ];
    (
        prop::collection::vec((key, value), 0..4),
        prop::collection::vec(prop::sample::select(SPACE), 16),
        any::<bool>(),
    )
        .prop_map(|(entries, space, pretty)| {
            let encode = |v: &Value| {
                if pretty {
                    serde_json::to_string_pretty(v)
                } else {
                    serde_json::to_string(v)
                }
                .expect("a Value always serialises")
            };
            let mut space = space.into_iter().cycle();
            let mut ws = || space.next().unwrap_or_default();
            let mut out = format!("{}{{", ws());
            for (i, (key, value)) in entries.iter().enumerate() {
                if i > 0 {
                    out += ",";
                }
                out += &format!("{}{key}{}:{}", ws(), ws(), ws());
                match value {
                    Value::Array(items) => {
                        out += "[";
                        for (j, item) in items.iter().enumerate() {
                            let comma = if j > 0 { "," } else { "" };
                            out += &format!("{comma}{}{}{}", ws(), encode(item), ws());
                        }
                        out += "]";
                    }
                    other => out += &encode(other),
                }
                out += ws();
            }
            out += &format!("}}{}", ws());
            out.into_bytes()
        })
}

/// Bytes that are rarely a log file: random bytes, soups of JSON tokens that walk the
/// scanner through its states, and valid documents with a few bytes changed; and valid JSON
/// shaped like a log file, to compare the reader with a JSON parser.
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    const TOKENS: &[&[u8]] = &[
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b"\\",
        b",",
        b":",
        b" ",
        b"\n",
        b"\"Records\"",
        b"\"Records\":[",
        b"\"a\"",
        b"\"\\\"\"",
        b"1",
        b"-2.5e+3",
        b"true",
        b"null",
        b"\0",
        b"\xff",
        b"\x1f\x8b",
    ];
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        prop::collection::vec(prop::sample::select(TOKENS), 0..48).prop_map(|t| t.concat()),
        (
            document(),
            prop::collection::vec((any::<Index>(), any::<u8>()), 1..4)
        )
            .prop_map(|(doc, edits)| {
                let mut bytes = doc.bytes;
                for (at, byte) in edits {
                    let at = at.index(bytes.len());
                    bytes[at] = byte;
                }
                bytes
            }),
        log_shaped(),
    ]
}

/// How the bytes reach the reader.
#[derive(Debug, Clone, Copy)]
enum Wrap {
    Plain,
    Gzip,
    /// Two members, split in the middle.
    Members,
    /// The gzip magic in front of bytes that are not gzip: a corrupt stream.
    FakeGzip,
}

fn wrap() -> impl Strategy<Value = Wrap> {
    prop::sample::select(vec![Wrap::Plain, Wrap::Gzip, Wrap::Members, Wrap::FakeGzip])
}

/// The bytes as the reader sees them, and their decompressed length where it is known.
fn wrapped(bytes: &[u8], wrap: Wrap) -> (Vec<u8>, Option<usize>) {
    match wrap {
        Wrap::Plain => (bytes.to_vec(), Some(bytes.len())),
        Wrap::Gzip => (gzip(bytes), Some(bytes.len())),
        Wrap::Members => {
            let mut out = gzip(&bytes[..bytes.len() / 2]);
            out.extend(gzip(&bytes[bytes.len() / 2..]));
            (out, Some(bytes.len()))
        }
        Wrap::FakeGzip => ([&[0x1f, 0x8b][..], bytes].concat(), None),
    }
}

/// A log file's top-level object as serde_json reads it: every key in order, repeats kept
/// (a `Value` keeps only the last), so the reader can be compared with it.
struct TopLevel(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for TopLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;

        impl<'de> Visitor<'de> for Entries {
            type Value = TopLevel;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<TopLevel, M::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(TopLevel(entries))
            }
        }

        deserializer.deserialize_map(Entries)
    }
}

/// Every path through objects in `value` to any value below it, with that value.
fn paths<'v>(prefix: Option<&str>, value: &'v Value, out: &mut Vec<(String, &'v Value)>) {
    if let Value::Object(fields) = value {
        for (key, child) in fields {
            let path = match prefix {
                Some(prefix) => format!("{prefix}.{key}"),
                None => key.clone(),
            };
            out.push((path.clone(), child));
            paths(Some(&path), child, out);
        }
    }
}

/// An S3 object key as S3 puts it in an event notification: form URL encoding, `+` for a
/// space, and `/` either kept or encoded.
/// <https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html>
fn s3_encode(key: &str, encode_slash: bool) -> String {
    let mut out = String::new();
    for byte in key.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' | b'~' => {
                out.push(byte as char)
            }
            b'/' if !encode_slash => out.push('/'),
            b' ' => out.push('+'),
            _ => out += &format!("%{byte:02X}"),
        }
    }
    out
}

fn bucket() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9.-]{1,20}[a-z0-9]"
}

// ---------------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(config())]

    /// Any bytes, plain or gzipped, under any cap: the reader ends in records and a clean end
    /// or an error that says where, and the pipeline reads the same records. Where serde_json
    /// reads the bytes as an object, the reader must read it too, and the same records.
    #[test]
    fn any_bytes_end_in_records_or_an_error_that_says_where(
        bytes in garbage(),
        wrap in wrap(),
        small_cap in prop::option::weighted(0.2, 0u64..512),
    ) {
        let (input, plain_len) = wrapped(&bytes, wrap);
        let cap = small_cap.unwrap_or(CAP);
        let read = read(input.clone(), cap);
        prop_assert!(read.records.len() <= bytes.len(), "each record is at least a byte");
        if let Err(e) = &read.end {
            assert_names_where(e);
            if let (Some(offset), Some(len)) = (error_offset(e), plain_len) {
                prop_assert!(offset <= len as u64, "{e} in {len} bytes");
            }
            if matches!(e, ReadError::TooLarge { .. }) {
                prop_assert!(plain_len.is_none_or(|len| cap < len as u64), "{e}");
            }
        }
        let expected = match (wrap, serde_json::from_slice::<TopLevel>(&bytes)) {
            (Wrap::FakeGzip, _) | (_, Err(_)) => None,
            _ if small_cap.is_some() => None,
            (_, Ok(TopLevel(entries))) => Some(entries),
        };
        if let Some(entries) = expected {
            // Every `Records` value must be an array, and the reader reads them all, in order.
            let arrays: Option<Vec<&Vec<Value>>> = entries
                .iter()
                .filter(|(key, _)| key == "Records")
                .map(|(_, value)| value.as_array())
                .collect();
            match arrays {
                Some(arrays) => {
                    prop_assert!(read.end.is_ok(), "valid JSON reads to its end: {:?}", read.end);
                    let want: Vec<&Value> = arrays.into_iter().flatten().collect();
                    let got: Vec<Value> = read
                        .records
                        .iter()
                        .map(|r| serde_json::from_slice(&r.bytes).expect("a record of valid JSON"))
                        .collect();
                    prop_assert_eq!(got.iter().collect::<Vec<_>>(), want);
                }
                None => prop_assert!(read.end.is_err(), "Records that is not an array"),
            }
        }

        if small_cap.is_none() {
            let report = read_object(input);
            prop_assert_eq!(report.records, read.records.len() as u64);
            match (&report.outcome, &read.end) {
                (Outcome::Failed(e), Err(_)) => assert_names_where(e),
                (Outcome::Failed(e), Ok(_)) => prop_assert!(false, "the pipeline alone failed: {e}"),
                (_, Err(e)) => prop_assert!(false, "the pipeline missed {e}"),
                _ => {}
            }
        }
    }

    /// A generated document reads back exactly: the same records, byte for byte at the offsets
    /// given, in order, plain, gzipped, or gzipped in members split anywhere.
    #[test]
    fn documents_read_back_exactly(
        doc in document(),
        cuts in prop::collection::vec(any::<Index>(), 0..4),
        how in 0..3u8,
    ) {
        let input = match how {
            0 => doc.bytes.clone(),
            1 => gzip(&doc.bytes),
            _ => gzip_members(&doc.bytes, &cuts),
        };
        let read = read(input.clone(), CAP);
        prop_assert!(matches!(read.end, Ok(Finish::Records)), "{:?}", read.end);
        prop_assert_eq!(read.bytes_read, doc.bytes.len() as u64);
        prop_assert_eq!(read.records.len(), doc.records.len());
        for (raw, want) in read.records.iter().zip(&doc.records) {
            let at = raw.offset as usize;
            prop_assert_eq!(&doc.bytes[at..at + raw.bytes.len()], &raw.bytes[..]);
            let got: Value = serde_json::from_slice(&raw.bytes).expect("a generated record");
            prop_assert_eq!(&got, want);
            let record = Record::parse(&raw.bytes).expect("a generated record is an object");
            let id = record.str_at("eventID");
            prop_assert_eq!(id.as_deref(), want["eventID"].as_str());
        }

        // The daemon's path reads every record and skips none.
        let report = read_object(input);
        prop_assert!(matches!(report.outcome, Outcome::Complete), "{:?}", report.outcome);
        prop_assert_eq!(report.records, doc.records.len() as u64);
        prop_assert_eq!(report.skipped.count, 0);
    }

    /// A document cut anywhere gives the records before the cut, exactly, then an error that
    /// says where (or a clean end when only trailing whitespace was cut): never a record that
    /// was not in the document.
    #[test]
    fn cut_documents_never_invent_records(
        doc in document(),
        cut in any::<Index>(),
        gzipped in any::<bool>(),
    ) {
        let (input, cut) = if gzipped {
            let gz = gzip(&doc.bytes);
            let cut = cut.index(gz.len());
            (gz[..cut].to_vec(), cut)
        } else {
            let cut = cut.index(doc.bytes.len());
            (doc.bytes[..cut].to_vec(), cut)
        };
        let read = read(input, CAP);
        prop_assert!(read.records.len() <= doc.records.len());
        for (raw, want) in read.records.iter().zip(&doc.records) {
            let got: Value = serde_json::from_slice(&raw.bytes).expect("a whole record");
            prop_assert_eq!(&got, want);
        }
        match &read.end {
            Ok(_) => {
                // Only a plain cut in the trailing whitespace leaves a whole document.
                prop_assert!(!gzipped, "a cut gzip stream read as complete");
                prop_assert!(doc.bytes[cut..].iter().all(u8::is_ascii_whitespace));
                prop_assert_eq!(read.records.len(), doc.records.len());
            }
            Err(e) => {
                assert_names_where(e);
                if !gzipped && cut > 0 {
                    prop_assert!(
                        matches!(e, ReadError::Truncated { offset, .. } if *offset == cut as u64),
                        "a plain cut at byte {} reads as truncated there: {}", cut, e
                    );
                }
            }
        }
    }

    /// Every field of a generated record reads back through the lazy walk: `str_at` gives the
    /// string, `value_at` the value, `has` its presence, and the rules' `get_field` agrees with
    /// the engine's own JSON walker on the fully parsed record. A key written twice reads as
    /// its last value, as serde_json reads it, on every path.
    #[test]
    fn record_fields_read_back(
        fields in prop::collection::btree_map(path_key(), json_with(path_key().boxed()), 0..6),
        pretty in any::<bool>(),
        shadowed in prop::option::of((any::<Index>(), json())),
    ) {
        let value = Value::Object(fields.into_iter().collect());
        let mut text = if pretty {
            serde_json::to_string_pretty(&value)
        } else {
            serde_json::to_string(&value)
        }
        .expect("a Value always serialises");
        if let (Some((which, earlier)), Value::Object(fields)) = (shadowed, &value)
            && !fields.is_empty()
        {
            // An earlier value of one of the keys, which the one already there overrides.
            let key = fields.keys().nth(which.index(fields.len())).expect("index in range");
            text = format!("{{{}:{},{}", json!(key), earlier, &text[1..]);
        }
        let record = Record::parse(text.as_bytes()).expect("a generated object");
        let engine = JsonEvent::borrow(&value);
        let mut all = Vec::new();
        paths(None, &value, &mut all);
        for (path, want) in all {
            let (text, value) = (record.str_at(&path), record.value_at(&path));
            prop_assert_eq!(text.as_deref(), want.as_str(), "str_at({:?})", path);
            prop_assert_eq!(value.as_ref(), Some(want), "value_at({:?})", path);
            prop_assert_eq!(record.has(&path), !want.is_null(), "has({:?})", path);
            prop_assert_eq!(record.get_field(&path), engine.get_field(&path), "get_field({:?})", path);
            let missing = format!("{path}.missing");
            prop_assert_eq!(record.str_at(&missing), None);
            prop_assert_eq!(record.get_field(&missing), engine.get_field(&missing), "get_field({:?})", missing);
        }
    }

    /// Any bytes, and any generated record: the reader's one-pass scanner vouches for an
    /// object only when serde_json reads it too (a record it passes is never one serde_json
    /// would have rejected), and it passes every generated record written without escapes.
    #[test]
    fn the_record_scanner_vouches_only_for_what_serde_json_reads(
        bytes in garbage(),
        record in record(),
    ) {
        for input in [bytes, serde_json::to_vec(&record).expect("a Value always serialises")] {
            let mut layout = object::Layout::default();
            let scanned = matches!(
                object::scan(&input, 0, &mut layout),
                object::Scan::Complete(end) if input[end..].iter().all(u8::is_ascii_whitespace)
            );
            let serde_reads = std::str::from_utf8(&input).is_ok()
                && serde_json::from_slice::<HashMap<String, IgnoredAny>>(&input).is_ok();
            if scanned && std::str::from_utf8(&input).is_ok() {
                prop_assert!(serde_reads, "{}", String::from_utf8_lossy(&input));
            }
            if serde_reads && input.first() == Some(&b'{') && !input.contains(&b'\\') {
                prop_assert!(scanned, "{}", String::from_utf8_lossy(&input));
            }
        }
    }

    /// Any text, and any JSON, as an SQS body: a notice or an error, never a panic.
    #[test]
    fn any_body_is_a_notice_or_an_error(
        body in prop_oneof![
            any::<String>(),
            json().prop_map(|v| v.to_string()),
            json().prop_map(|v| sns_envelope(&v.to_string())),
            garbage().prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ],
    ) {
        let notice = bounded(move || notice::parse(&body));
        if let Ok(Notice::Event(event)) = notice {
            prop_assert!(Record::parse(event.record.as_bytes()).is_ok(), "{}", event.record);
        }
    }

    /// S3 notifications name the keys they were built from: URL-decoded when S3 sends them
    /// (directly or through SNS), as given when EventBridge or CloudTrail's own notice does.
    #[test]
    fn notifications_name_the_keys_they_were_built_from(
        bucket in bucket(),
        keys in prop::collection::vec((text(), any::<bool>()), 1..5),
    ) {
        let want: Vec<ObjectRef> = keys
            .iter()
            .map(|(key, _)| ObjectRef { bucket: bucket.clone(), key: key.clone() })
            .collect();
        let encoded: Vec<String> = keys.iter().map(|(key, slash)| s3_encode(key, *slash)).collect();
        let encoded: Vec<&str> = encoded.iter().map(String::as_str).collect();
        let direct = s3_event(&bucket, &encoded);
        prop_assert_eq!(notice::parse(&direct), Ok(Notice::Objects(want.clone())));
        prop_assert_eq!(notice::parse(&sns_envelope(&direct)), Ok(Notice::Objects(want.clone())));

        let raw: Vec<&str> = keys.iter().map(|(key, _)| key.as_str()).collect();
        let trail = json!({"s3Bucket": bucket, "s3ObjectKey": raw}).to_string();
        prop_assert_eq!(notice::parse(&trail), Ok(Notice::Objects(want.clone())));
        prop_assert_eq!(notice::parse(&sns_envelope(&trail)), Ok(Notice::Objects(want.clone())));

        let created = json!({"version": "0", "id": "eb-1", "detail-type": "Object Created",
            "source": "aws.s3", "region": "us-east-1",
            "detail": {"bucket": {"name": bucket}, "object": {"key": raw[0]}}})
        .to_string();
        prop_assert_eq!(notice::parse(&created), Ok(Notice::Objects(want[..1].to_vec())));
        prop_assert_eq!(notice::parse(&sns_envelope(&created)), Ok(Notice::Objects(want[..1].to_vec())));
    }

    /// A CloudTrail event from EventBridge carries its record unchanged, and the fast path can
    /// evaluate it.
    #[test]
    fn eventbridge_events_carry_their_record(
        record in record(),
        id in text(),
        time in text(),
        wrapped in any::<bool>(),
    ) {
        let mut record = record;
        record["eventID"] = json!(id);
        record["eventTime"] = json!(time);
        let body = json!({"version": "0", "id": "eb-1", "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.iam", "region": "us-east-1", "detail": record})
        .to_string();
        let body = if wrapped { sns_envelope(&body) } else { body };
        match notice::parse(&body) {
            Ok(Notice::Event(event)) => {
                let back: Value = serde_json::from_str(&event.record).expect("JSON");
                prop_assert_eq!(&back, &record);
                let json = event.record.into_bytes();
                let report = bounded(move || {
                    pipeline::event(&RULES, "eventbridge:us-east-1:eb-1", &json, &mut |_, _| {})
                        .map(|r| r.records)
                });
                prop_assert_eq!(report.ok(), Some(1));
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }
}
