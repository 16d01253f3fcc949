//! Fuzz target: arbitrary bytes as one record → the lazy record parser and its field reads,
//! then the fast path's evaluation of a lone record by the builtin rules.
//!
//! Rules read nested fields lazily, long after the top level was accepted, so the reads are
//! where a malformed nested value would surface.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use trailwarden::cloudtrail::Record;
use trailwarden::detect::RuleSet;
use trailwarden::pipeline;

/// The builtin rules, compiled once for the whole run as the daemon does at start-up.
static RULES: LazyLock<RuleSet> =
    LazyLock::new(|| RuleSet::load(&[]).expect("the builtin rules are embedded and always load"));

/// Paths alerts and rules read, flat and nested, plus ones that walk through arrays, scalars
/// and empty or odd segments.
const PATHS: &[&str] = &[
    "eventID",
    "eventName",
    "eventSource",
    "eventTime",
    "awsRegion",
    "recipientAccountId",
    "sourceIPAddress",
    "userIdentity",
    "userIdentity.type",
    "userIdentity.arn",
    "userIdentity.sessionContext.attributes.mfaAuthenticated",
    "userIdentity.sessionContext.sessionIssuer.arn",
    "requestParameters.userName",
    "requestParameters.policyDocument",
    "responseElements.ConsoleLogin",
    "additionalEventData.MFAUsed",
    "resources.ARN",
    "a.b.c.d.e.f.g.h",
    "",
    ".",
    "..",
    "a.",
];

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = Record::parse(data) {
        for path in PATHS {
            let text = record.str_at(path);
            let value = record.value_at(path);
            // A string read must agree with the same field parsed on its own.
            if let Some(text) = &text {
                assert_eq!(value.as_ref().and_then(|v| v.as_str()), Some(text.as_ref()));
            }
            // serde_json cannot hold a number beyond f64's range (`1e400`) in a Value, though
            // JSON allows it and the lazy parse accepts it: such a field is present but has no
            // parsed value. Presence is compared only where serde_json reads the record whole.
            if record.has(path) && !record.value().is_null() {
                assert!(value.is_some(), "{path} is present but reads as nothing");
            }
        }
    }
    let _ = pipeline::event(&RULES, "eventbridge:fuzz", data, &mut |_, _| {});
});
