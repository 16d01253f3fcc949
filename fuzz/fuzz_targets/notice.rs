//! Fuzz target: arbitrary bytes as an SQS message body → the notification parser (S3 direct,
//! SNS-wrapped or EventBridge; CloudTrail's SNS notice; EventBridge CloudTrail events).
//!
//! SQS bodies are UTF-8 text, so bytes that are not valid UTF-8 never reach the parser and are
//! not fed to it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use trailwarden::intake::notice::{self, Notice};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Notice::Event(event)) = notice::parse(body) {
        // The fast path evaluates the carried record as JSON: it must be one.
        assert!(
            trailwarden::cloudtrail::Record::parse(event.record.as_bytes()).is_ok(),
            "{}",
            event.record
        );
    }
});
