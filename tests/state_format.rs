//! Stored state as a contract between versions: fixed incident keys, correlation groups and
//! store calls in → the digests, JSON and DynamoDB items they write out, compared with golden
//! values; and items as the previous version wrote them in → what the store reads from them.
//!
//! A rolling deploy runs the previous and the next version side by side on one state table,
//! each reading what the other wrote. So the golden values here are not snapshots to refresh:
//! a digest that changes orphans every stored incident and correlation window (the next
//! version pages again what the previous one already paged), and an item the other version
//! cannot parse is skipped silently (a part, a follow-up, a correlation event) or, for an open
//! incident, holds that incident's alerts as busy until its window ends. A format change adds
//! fields with defaults; it never renames or retypes one, and it stays readable by the version
//! before it.
//!
//! The DynamoDB tests run against a table in moto server (real HTTP), with every time passed
//! in fixed, so every stored number is known in advance.

mod support;

use aws_sdk_dynamodb::types::AttributeValue;
use rsigma_eval::GroupKey;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use support::{Moto, Stack};
use trailwarden::detect::RuleSet;
use trailwarden::finding::correlation::{CorrEvent, Group};
use trailwarden::finding::fold::{Stats, Tally};
use trailwarden::finding::{IncidentKey, Level, Standing};
use trailwarden::incidents::correlate::Span;
use trailwarden::incidents::store::dynamo::DynamoStore;
use trailwarden::incidents::store::{
    Claim, Claimed, Due, Meta, Open, OpenFinding, Part, STANDING_OPEN_SECS, Store,
};
use trailwarden::telemetry::Metrics;

/// 2026-11-20T09:00:00Z: "now" for every store call, so stored times are fixed.
const T0: i64 = 1_795_165_200;
/// 2100-01-01T00:00:00Z: the expiry of correlation items. `window` compares expiry with the
/// wall clock (DynamoDB's TTL deletes lazily), so these must outlive the test run.
const FAR: i64 = 4_102_444_800;

// Golden digests, computed once by the code and recomputed apart from it. Changing any of
// these orphans every stored incident and correlation window on a rolling deploy: the next
// version looks them up under new keys, finds nothing, and pages again what the previous
// version already paged. An incident key's digest is the first 16 bytes (hex) of SHA-256 over
// rule, account and principal, each followed by a NUL byte; a group's is the same over the
// correlation rule's name, then each group-by value as 0x01, its bytes and NUL (0x02 and NUL
// when absent); a part's source digest is the first 12 bytes of SHA-256 over the source.
/// `root_key().digest()`.
const ROOT_DIGEST: &str = "8f5cd1cdf2b645ffdfa2dc72c401b14d";
/// `alice_key().digest()`.
const ALICE_DIGEST: &str = "88a2405fc6784b3147961620380efb85";
/// `role_key().digest()`.
const ROLE_DIGEST: &str = "84ac20e775e47abb271fe7f2d405c45b";
/// The `console-login-brute-force` group of account 111122223333 and user name alice.
const ALICE_GROUP: &str = "8d2066d975d01f35ba021b93baa38ec9";
/// The same correlation's group of the account's root (no user name).
const ROOT_GROUP: &str = "f8a78d772d7af49510174a342eb83a6c";
/// The digest of a part's source in its sort key: a redelivered source must overwrite its own
/// part whichever version folds it, or it is counted twice.
const PART_SOURCE_DIGEST: &str = "c900613f58a1002cf44bdf44";

fn root_key() -> IncidentKey {
    IncidentKey {
        rule: "root-activity".into(),
        account: "111122223333".into(),
        principal: "arn:aws:iam::111122223333:root".into(),
    }
}

fn alice_key() -> IncidentKey {
    IncidentKey {
        rule: "console-login-without-mfa".into(),
        account: "111122223333".into(),
        principal: "arn:aws:iam::111122223333:user/alice".into(),
    }
}

fn role_key() -> IncidentKey {
    IncidentKey {
        rule: "unauthorized-api-call".into(),
        account: "444455556666".into(),
        principal: "arn:aws:iam::444455556666:role/ci/deploy".into(),
    }
}

/// A group of the builtin `console-login-brute-force` correlation, grouped by
/// `recipientAccountId` and `userIdentity.userName`.
fn brute_force(rules: &RuleSet, user: Option<&str>) -> Group {
    let correlation = rules
        .correlations()
        .iter()
        .position(|c| rules.rules()[c.rule].name == "console-login-brute-force")
        .expect("the builtin console-login-brute-force correlation");
    Group {
        correlation,
        key: GroupKey(vec![Some("111122223333".into()), user.map(str::to_owned)]),
    }
}

#[test]
fn incident_key_digests_are_pinned() {
    assert_eq!(root_key().digest(), ROOT_DIGEST);
    assert_eq!(alice_key().digest(), ALICE_DIGEST);
    assert_eq!(role_key().digest(), ROLE_DIGEST);
}

#[test]
fn correlation_group_digests_are_pinned() {
    let rules = RuleSet::load(&[]).expect("builtin rules");
    assert_eq!(
        brute_force(&rules, Some("alice")).digest("console-login-brute-force"),
        ALICE_GROUP
    );
    assert_eq!(
        brute_force(&rules, None).digest("console-login-brute-force"),
        ROOT_GROUP
    );
}

// The items of one incident's life, and their golden JSON.

const INCIDENT_ID: &str = "root-incident";
const PAGED_BY: &str = "s3://trail/AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/20/a.json.gz";
const FOLDED: &str = "s3://trail/AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/20/b.json.gz";

fn open() -> Open {
    Open {
        incident_id: INCIDENT_ID.into(),
        paged_by: PAGED_BY.into(),
        paged_at: T0,
        window_end: T0 + 3600,
        summary: "Root user called ListBuckets".into(),
        event_ids: vec!["ev-1".into(), "ev-2".into()],
        meta: Some(Meta {
            title: "Root user activity".into(),
            level: Level::High,
            next_steps: vec!["Confirm who used root and why".into()],
            tags: vec!["attack.initial-access".into()],
            count: 2,
            first_time: Some("2026-11-20T09:00:00Z".into()),
        }),
    }
}

fn golden_open() -> Value {
    json!({
        "incident_id": INCIDENT_ID,
        "paged_by": PAGED_BY,
        "paged_at": 1_795_165_200,
        "window_end": 1_795_168_800,
        "summary": "Root user called ListBuckets",
        "event_ids": ["ev-1", "ev-2"],
        "meta": {
            "title": "Root user activity",
            "level": "high",
            "next_steps": ["Confirm who used root and why"],
            "tags": ["attack.initial-access"],
            "count": 2,
            "first_time": "2026-11-20T09:00:00Z",
        },
    })
}

fn tally(values: &[(&str, u64)], others: u64) -> Tally {
    Tally {
        values: values.iter().map(|(v, n)| ((*v).to_owned(), *n)).collect(),
        others,
    }
}

fn part() -> Part {
    Part {
        source: FOLDED.into(),
        stats: Stats {
            count: 7,
            first_time: Some("2026-11-20T09:05:00Z".into()),
            last_time: Some("2026-11-20T09:40:00Z".into()),
            event_names: tally(&[("ListBuckets", 5), ("GetObject", 2)], 0),
            regions: tally(&[("us-east-1", 7)], 0),
            source_ips: tally(&[("198.51.100.7", 4)], 3),
            sessions: tally(&[("arn:aws:iam::111122223333:root", 7)], 0),
        },
        event_ids: vec!["ev-3".into(), "ev-4".into()],
    }
}

fn golden_part() -> Value {
    json!({
        "source": FOLDED,
        "stats": {
            "count": 7,
            "first_time": "2026-11-20T09:05:00Z",
            "last_time": "2026-11-20T09:40:00Z",
            "event_names": {"values": [["ListBuckets", 5], ["GetObject", 2]], "others": 0},
            "regions": {"values": [["us-east-1", 7]], "others": 0},
            "source_ips": {"values": [["198.51.100.7", 4]], "others": 3},
            "sessions": {"values": [["arn:aws:iam::111122223333:root", 7]], "others": 0},
        },
        "event_ids": ["ev-3", "ev-4"],
    })
}

fn due() -> Due {
    Due {
        key: root_key(),
        incident: open(),
        due_at: T0 + 3660,
    }
}

fn golden_due() -> Value {
    json!({
        "key": {
            "rule": "root-activity",
            "account": "111122223333",
            "principal": "arn:aws:iam::111122223333:root",
        },
        "incident": golden_open(),
        "due_at": 1_795_168_860,
    })
}

/// A failed console sign-in of alice, as a correlation event; `value` only for the first.
fn failed_login(id: &str, ts: i64, value: Option<&str>) -> CorrEvent {
    let record = format!(
        r#"{{"eventID":"{id}","eventName":"ConsoleLogin","recipientAccountId":"111122223333","userIdentity":{{"type":"IAMUser","userName":"alice"}}}}"#
    );
    CorrEvent {
        ts,
        event_id: id.into(),
        rule_ref: "console-login-failed".into(),
        value: value.map(str::to_owned),
        record: RawValue::from_string(record).expect("record JSON"),
        source: PAGED_BY.into(),
    }
}

fn events() -> Vec<CorrEvent> {
    vec![
        failed_login("ev-5", T0 + 30, Some("alice")),
        failed_login("ev-6", T0 + 90, None),
    ]
}

fn golden_event(id: &str, ts: i64, value: Option<&str>) -> Value {
    let mut event = json!({
        "ts": ts,
        "event_id": id,
        "rule_ref": "console-login-failed",
        "record": {
            "eventID": id,
            "eventName": "ConsoleLogin",
            "recipientAccountId": "111122223333",
            "userIdentity": {"type": "IAMUser", "userName": "alice"},
        },
        "source": PAGED_BY,
    });
    // An absent value is left out, not written as null.
    if let Some(v) = value {
        event["value"] = json!(v);
    }
    event
}

fn golden_events() -> Vec<Value> {
    vec![
        golden_event("ev-5", 1_795_165_230, Some("alice")),
        golden_event("ev-6", 1_795_165_290, None),
    ]
}

fn to_json(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).expect("serializable")
}

#[test]
fn item_json_is_pinned() {
    assert_eq!(to_json(&open()), golden_open());
    assert_eq!(to_json(&part()), golden_part());
    assert_eq!(to_json(&due()), golden_due());
    let events: Vec<Value> = events().iter().map(to_json).collect();
    assert_eq!(events, golden_events());
}

// The DynamoDB items.

/// Attributes holding JSON text: shown parsed, since that is how both versions read them
/// (field order and spacing are free; names, types and values are not).
const JSON_ATTRIBUTES: &[&str] = &["incident", "part", "due", "ev", "finding"];

/// An item in DynamoDB's JSON notation (`{"S": ..}`, `{"N": ..}`, sets sorted).
fn dynamo_json(item: &std::collections::HashMap<String, AttributeValue>) -> Value {
    let attribute = |name: &str, value: &AttributeValue| match value {
        AttributeValue::S(text) if JSON_ATTRIBUTES.contains(&name) => {
            json!({"S": serde_json::from_str::<Value>(text).expect("a JSON attribute")})
        }
        AttributeValue::S(text) => json!({"S": text}),
        AttributeValue::N(number) => json!({"N": number}),
        AttributeValue::Bool(b) => json!({"BOOL": b}),
        AttributeValue::Ss(set) => {
            let mut set = set.clone();
            set.sort();
            json!({"SS": set})
        }
        other => json!({"unexpected": format!("{other:?}")}),
    };
    Value::Object(
        item.iter()
            .map(|(name, value)| (name.clone(), attribute(name, value)))
            .collect(),
    )
}

/// Every item of the table, in key order.
async fn scan(ddb: &aws_sdk_dynamodb::Client, table: &str) -> Vec<Value> {
    let out = ddb
        .scan()
        .table_name(table)
        .consistent_read(true)
        .send()
        .await
        .expect("scan");
    assert!(out.last_evaluated_key.is_none(), "one page holds the table");
    let mut items: Vec<Value> = out.items().iter().map(dynamo_json).collect();
    let key = |i: &Value, k: &str| i[k]["S"].as_str().unwrap_or_default().to_owned();
    items.sort_by_key(|i| (key(i, "pk"), key(i, "sk")));
    items
}

fn assert_items(actual: &[Value], golden: &[Value]) {
    let pretty = |items: &[Value]| serde_json::to_string_pretty(items).expect("JSON");
    assert!(
        actual == golden,
        "stored items differ from the golden layout.\nstored: {}\ngolden: {}",
        pretty(actual),
        pretty(golden)
    );
}

fn claim(incident_id: &str, owner: &str, now: i64) -> Claim {
    Claim {
        incident_id: incident_id.into(),
        owner: owner.into(),
        source: PAGED_BY.into(),
        now,
        lease_secs: 60,
    }
}

async fn table() -> (Moto, Stack, DynamoStore, String) {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    let table = stack.state_table("trailwarden-state").await;
    let store = DynamoStore::new(stack.ddb.clone(), table.clone(), Metrics::new());
    (moto, stack, store, table)
}

#[tokio::test]
async fn dynamodb_items_are_pinned() {
    let (_moto, stack, store, table) = table().await;

    // alice's incident stays claimed; root's pages, folds a part and sends its follow-up.
    let won = store
        .claim(&alice_key(), &claim("alice-incident", "task-a", T0))
        .await
        .expect("claim");
    assert!(matches!(won, Claimed::Won { .. }));
    let root = claim(INCIDENT_ID, "task-b", T0);
    assert!(matches!(
        store.claim(&root_key(), &root).await.expect("claim"),
        Claimed::Won { .. }
    ));
    store
        .paged(&root_key(), &root, &open())
        .await
        .expect("paged");
    assert!(store.fold(&due(), &part()).await.expect("fold"));
    assert!(
        store
            .take_follow_up(&due(), "task-b", due().due_at, 120)
            .await
            .expect("take")
    );
    store.followed_up(&due()).await.expect("followed up");
    store
        .add_events(ALICE_GROUP, &events(), FAR)
        .await
        .expect("add events");
    store
        .fired(
            ALICE_GROUP,
            Span {
                start: T0 + 30,
                end: T0 + 90,
            },
            FAR,
        )
        .await
        .expect("fired");

    let cor = format!("cor#{ALICE_GROUP}");
    let root_pk = format!("inc#{ROOT_DIGEST}");
    let golden = [
        json!({
            "pk": {"S": cor},
            "sk": {"S": "e#01795165230#ev-5"},
            "ev": {"S": golden_events()[0]},
            "expires_at": {"N": "4102444800"},
        }),
        json!({
            "pk": {"S": cor},
            "sk": {"S": "e#01795165290#ev-6"},
            "ev": {"S": golden_events()[1]},
            "expires_at": {"N": "4102444800"},
        }),
        json!({
            "pk": {"S": cor},
            "sk": {"S": "f#01795165290#01795165230"},
            "expires_at": {"N": "4102444800"},
        }),
        json!({
            "pk": {"S": "due#2026112010"},
            "sk": {"S": format!("01795168860#{INCIDENT_ID}")},
            "due": {"S": golden_due()},
            "parts": {"SS": [PART_SOURCE_DIGEST]},
            "owner": {"S": "task-b"},
            "lease_until": {"N": "1795168980"},
            "sent": {"BOOL": true},
            // due_at + 7 days
            "expires_at": {"N": "1795773660"},
        }),
        json!({
            "pk": {"S": format!("inc#{ALICE_DIGEST}")},
            "sk": {"S": "meta"},
            "state": {"S": "claimed"},
            "incident_id": {"S": "alice-incident"},
            "owner": {"S": "task-a"},
            "lease_until": {"N": "1795165260"},
            "rule": {"S": "console-login-without-mfa"},
            "account": {"S": "111122223333"},
            "principal": {"S": "arn:aws:iam::111122223333:user/alice"},
            // lease_until + 7 days
            "expires_at": {"N": "1795770060"},
        }),
        json!({
            "pk": {"S": root_pk},
            "sk": {"S": "meta"},
            "state": {"S": "open"},
            "incident_id": {"S": INCIDENT_ID},
            "owner": {"S": "task-b"},
            "incident": {"S": golden_open()},
            "window_end": {"N": "1795168800"},
            "rule": {"S": "root-activity"},
            "account": {"S": "111122223333"},
            "principal": {"S": "arn:aws:iam::111122223333:root"},
            // window_end + 7 days
            "expires_at": {"N": "1795773600"},
        }),
        json!({
            "pk": {"S": root_pk},
            "sk": {"S": format!("part#{INCIDENT_ID}#{PART_SOURCE_DIGEST}")},
            "part": {"S": golden_part()},
            "expires_at": {"N": "1795773660"},
        }),
    ];
    assert_items(&scan(&stack.ddb, &table).await, &golden);
}

// A standing finding's items, and the audit lease.

/// `without_mfa().key().digest()`: a standing finding is claimed as an incident under it.
const WITHOUT_MFA_DIGEST: &str = "f20e786adb666dae1e01f57df90a5451";
/// The listing's partition: the first 12 bytes of SHA-256 over account, NUL, check. A change
/// hides every open finding from the next version's resolutions.
const WITHOUT_MFA_LISTING: &str = "aac6c05bbcb22f9af00591af";
/// The listing's sort key: the first 12 bytes of SHA-256 over the resource.
const ALICE_RESOURCE_DIGEST: &str = "5778c30d3fe8c123cb2ab0d5";

fn without_mfa() -> Standing {
    Standing {
        check: "user-without-mfa".into(),
        account: "111122223333".into(),
        resource: "arn:aws:iam::111122223333:user/alice".into(),
        level: Level::High,
        title: "Every IAM user with a console password has MFA (CIS 1.10)".into(),
        evidence: "alice has a console password and no MFA device".into(),
        next_steps: vec!["Have the user assign an MFA device".into()],
    }
}

fn open_finding() -> OpenFinding {
    OpenFinding {
        incident_id: "alice-finding".into(),
        finding: without_mfa(),
        opened_at: T0,
    }
}

fn golden_open_finding() -> Value {
    json!({
        "incident_id": "alice-finding",
        "finding": {
            "check": "user-without-mfa",
            "account": "111122223333",
            "resource": "arn:aws:iam::111122223333:user/alice",
            "level": "high",
            "title": "Every IAM user with a console password has MFA (CIS 1.10)",
            "evidence": "alice has a console password and no MFA device",
            "next_steps": ["Have the user assign an MFA device"],
        },
        "opened_at": T0,
    })
}

#[test]
fn standing_finding_json_is_pinned() {
    assert_eq!(without_mfa().key().digest(), WITHOUT_MFA_DIGEST);
    assert_eq!(to_json(&open_finding()), golden_open_finding());
}

#[tokio::test]
async fn dynamodb_posture_items_are_pinned() {
    let (_moto, stack, store, table) = table().await;
    let mut mine = claim("alice-finding", "task-a/posture", T0);
    mine.source = "posture:audit:111122223333".into();
    assert!(matches!(
        store
            .claim(&without_mfa().key(), &mine)
            .await
            .expect("claim"),
        Claimed::Won { .. }
    ));
    store
        .finding_opened(&mine, &open_finding())
        .await
        .expect("opened");
    assert!(
        store
            .take_audit("111122223333", "task-a/posture", T0, 900)
            .await
            .expect("take")
    );
    store
        .audited("111122223333", "task-a/posture", T0 + 86_400)
        .await
        .expect("audited");

    let window_end = T0 + STANDING_OPEN_SECS;
    let expires = (window_end + 7 * 24 * 3600).to_string();
    let golden = [
        json!({
            "pk": {"S": "audit#111122223333"},
            "sk": {"S": "lease"},
            "owner": {"S": "task-a/posture"},
            "next_due": {"N": (T0 + 86_400).to_string()},
            // next_due + 7 days
            "expires_at": {"N": (T0 + 86_400 + 7 * 24 * 3600).to_string()},
        }),
        json!({
            "pk": {"S": format!("fnd#{WITHOUT_MFA_LISTING}")},
            "sk": {"S": ALICE_RESOURCE_DIGEST},
            "incident_id": {"S": "alice-finding"},
            "finding": {"S": golden_open_finding()},
            "expires_at": {"N": expires},
        }),
        json!({
            "pk": {"S": format!("inc#{WITHOUT_MFA_DIGEST}")},
            "sk": {"S": "meta"},
            "state": {"S": "open"},
            "incident_id": {"S": "alice-finding"},
            "owner": {"S": "task-a/posture"},
            // The incident a page records, open for good: the previous version reads it as
            // any open incident.
            "incident": {"S": {
                "incident_id": "alice-finding",
                "paged_by": "posture:audit:111122223333",
                "paged_at": T0,
                "window_end": window_end,
                "summary": "alice has a console password and no MFA device",
                "event_ids": [],
                "meta": {
                    "title": "Every IAM user with a console password has MFA (CIS 1.10)",
                    "level": "high",
                    "next_steps": ["Have the user assign an MFA device"],
                },
            }},
            "window_end": {"N": window_end.to_string()},
            "rule": {"S": "user-without-mfa"},
            "account": {"S": "111122223333"},
            "principal": {"S": "arn:aws:iam::111122223333:user/alice"},
            "expires_at": {"N": expires},
        }),
    ];
    assert_items(&scan(&stack.ddb, &table).await, &golden);

    // Taking the resolution marks the listing with its holder and lease.
    assert!(
        store
            .take_resolution(&open_finding(), "task-b/posture", T0 + 60, 120)
            .await
            .expect("take")
    );
    let mut taken = golden.clone();
    taken[1]["resolving"] = json!({"S": "task-b/posture"});
    taken[1]["resolving_until"] = json!({"N": (T0 + 180).to_string()});
    assert_items(&scan(&stack.ddb, &table).await, &taken);

    // Resolving removes both of the finding's items and leaves the lease.
    store
        .finding_resolved(&open_finding())
        .await
        .expect("resolved");
    assert_items(&scan(&stack.ddb, &table).await, &golden[..1]);
}

// The previous version's items.

/// Puts one item as it is stored, attribute by attribute.
async fn put_raw(ddb: &aws_sdk_dynamodb::Client, table: &str, item: &[(&str, AttributeValue)]) {
    let mut put = ddb.put_item().table_name(table);
    for (name, value) in item {
        put = put.item(*name, value.clone());
    }
    put.send().await.expect("put a raw item");
}

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

fn n(number: i64) -> AttributeValue {
    AttributeValue::N(number.to_string())
}

/// The previous version's page record: its `Open` has no `event_ids` (older items lack it).
const OLD_OPEN: &str = r#"{"incident_id":"old-incident","paged_by":"s3://trail/AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/20/a.json.gz","paged_at":1795165200,"window_end":1795168800,"summary":"Root user called ListBuckets"}"#;
/// A part as the previous version folded it.
const OLD_PART: &str = r#"{"source":"s3://trail/AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/20/b.json.gz","stats":{"count":3,"first_time":"2026-11-20T09:05:00Z","last_time":"2026-11-20T09:10:00Z","event_names":{"values":[["ListBuckets",3]],"others":0},"regions":{"values":[["us-east-1",3]],"others":0},"source_ips":{"values":[],"others":0},"sessions":{"values":[],"others":0}},"event_ids":["ev-3"]}"#;
/// A correlation event as the previous version stored it.
const OLD_EVENT: &str = r#"{"ts":1795165230,"event_id":"ev-5","rule_ref":"console-login-failed","value":"alice","record":{"eventID":"ev-5","eventName":"ConsoleLogin","recipientAccountId":"111122223333","userIdentity":{"type":"IAMUser","userName":"alice"}},"source":"s3://trail/AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/20/a.json.gz"}"#;

fn old_open() -> Open {
    Open {
        incident_id: "old-incident".into(),
        event_ids: vec![],
        // Written before incidents kept their description.
        meta: None,
        ..open()
    }
}

fn old_due() -> Due {
    Due {
        incident: old_open(),
        ..due()
    }
}

#[tokio::test]
async fn items_of_the_previous_version_are_read() {
    let (_moto, stack, store, table) = table().await;
    let ddb = &stack.ddb;
    let root_pk = format!("inc#{ROOT_DIGEST}");
    let old_due_json = format!(
        r#"{{"key":{{"rule":"root-activity","account":"111122223333","principal":"arn:aws:iam::111122223333:root"}},"incident":{OLD_OPEN},"due_at":1795168860}}"#
    );
    // An open incident, a part folded into it, and its follow-up as written before folds
    // listed their sources: no `parts` set.
    put_raw(
        ddb,
        &table,
        &[
            ("pk", s(&root_pk)),
            ("sk", s("meta")),
            ("state", s("open")),
            ("incident_id", s("old-incident")),
            ("owner", s("task-old")),
            ("incident", s(OLD_OPEN)),
            ("window_end", n(T0 + 3600)),
            ("rule", s("root-activity")),
            ("account", s("111122223333")),
            ("principal", s("arn:aws:iam::111122223333:root")),
            ("expires_at", n(T0 + 3600 + 7 * 86_400)),
        ],
    )
    .await;
    put_raw(
        ddb,
        &table,
        &[
            ("pk", s(&root_pk)),
            ("sk", s(&format!("part#old-incident#{PART_SOURCE_DIGEST}"))),
            ("part", s(OLD_PART)),
            ("expires_at", n(T0 + 3660 + 7 * 86_400)),
        ],
    )
    .await;
    put_raw(
        ddb,
        &table,
        &[
            ("pk", s("due#2026112010")),
            ("sk", s("01795168860#old-incident")),
            ("due", s(&old_due_json)),
            ("expires_at", n(T0 + 3660 + 7 * 86_400)),
        ],
    )
    .await;
    // A claim held by a task of the previous version.
    put_raw(
        ddb,
        &table,
        &[
            ("pk", s(&format!("inc#{ALICE_DIGEST}"))),
            ("sk", s("meta")),
            ("state", s("claimed")),
            ("incident_id", s("old-claim")),
            ("owner", s("task-old")),
            ("lease_until", n(T0 + 60)),
            ("rule", s("console-login-without-mfa")),
            ("account", s("111122223333")),
            ("principal", s("arn:aws:iam::111122223333:user/alice")),
            ("expires_at", n(T0 + 60 + 7 * 86_400)),
        ],
    )
    .await;
    // A correlation window: one event, and a committed fire.
    let cor = format!("cor#{ALICE_GROUP}");
    put_raw(
        ddb,
        &table,
        &[
            ("pk", s(&cor)),
            ("sk", s("e#01795165230#ev-5")),
            ("ev", s(OLD_EVENT)),
            ("expires_at", n(FAR)),
        ],
    )
    .await;
    put_raw(
        ddb,
        &table,
        &[
            ("pk", s(&cor)),
            ("sk", s("f#01795165290#01795165230")),
            ("expires_at", n(FAR)),
        ],
    )
    .await;

    // The open incident: further alerts fold into it, with no listed eventIDs.
    assert_eq!(
        store
            .claim(&root_key(), &claim("new-incident", "task-new", T0 + 600))
            .await
            .expect("claim"),
        Claimed::Open(old_open())
    );
    // The claim: held until its lease ends, then taken over under its incident id.
    assert_eq!(
        store
            .claim(&alice_key(), &claim("new-claim", "task-new", T0 + 30))
            .await
            .expect("claim"),
        Claimed::Busy {
            owner: "task-old".into(),
            until: T0 + 60
        }
    );
    assert_eq!(
        store
            .claim(&alice_key(), &claim("new-claim", "task-new", T0 + 120))
            .await
            .expect("claim"),
        Claimed::Won {
            incident_id: "old-claim".into()
        }
    );

    // The follow-up and its part.
    let now = old_due().due_at + 60;
    assert_eq!(store.due(now, 48).await.expect("due"), vec![old_due()]);
    let old_part: Part = serde_json::from_str(OLD_PART).expect("old part");
    assert_eq!(old_part.source, FOLDED);
    assert_eq!(
        store.parts(&old_due()).await.expect("parts"),
        vec![old_part.clone()]
    );

    // The correlation window.
    let (events, fires) = store
        .window(ALICE_GROUP, T0, T0 + 600)
        .await
        .expect("window");
    let events: Vec<Value> = events.iter().map(to_json).collect();
    assert_eq!(events, vec![golden_events()[0].clone()]);
    assert_eq!(
        fires,
        vec![Span {
            start: T0 + 30,
            end: T0 + 90
        }]
    );

    // A new source folds into the old follow-up (which lists no sources), and is then counted
    // and guarded like any other: a retry after the follow-up was taken still belongs to it.
    let new_part = Part {
        source: "s3://trail/AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/20/c.json.gz".into(),
        ..part()
    };
    assert!(store.fold(&old_due(), &new_part).await.expect("fold"));
    let schedule = ddb
        .get_item()
        .table_name(&table)
        .key("pk", s("due#2026112010"))
        .key("sk", s("01795168860#old-incident"))
        .consistent_read(true)
        .send()
        .await
        .expect("the follow-up")
        .item
        .expect("the follow-up item");
    // Only the new source is listed: the old part was folded before folds listed theirs.
    assert_eq!(
        schedule
            .get("parts")
            .and_then(|p| p.as_ss().ok())
            .map(Vec::len),
        Some(1)
    );
    let mut parts = store.parts(&old_due()).await.expect("parts");
    parts.sort_by(|a, b| a.source.cmp(&b.source));
    assert_eq!(parts, vec![old_part, new_part.clone()]);
    assert_eq!(store.due(now, 48).await.expect("due"), vec![old_due()]);
    assert!(
        store
            .take_follow_up(&old_due(), "task-new", now, 120)
            .await
            .expect("take")
    );
    assert!(store.fold(&old_due(), &new_part).await.expect("retry"));
}

/// An open incident whose record this version cannot read (a future format, or damage) must not
/// stop paging until its window ends: the next claim replaces it, and the unreadable item is
/// reported rather than silently skipped.
#[tokio::test]
async fn an_unreadable_open_incident_is_replaced_by_the_next_claim() {
    let (_moto, stack, store, table) = table().await;
    let root_pk = format!("inc#{ROOT_DIGEST}");
    put_raw(
        &stack.ddb,
        &table,
        &[
            ("pk", s(&root_pk)),
            ("sk", s("meta")),
            ("state", s("open")),
            ("incident_id", s("future-incident")),
            ("incident", s(r#"{"incident_id":7}"#)),
            ("window_end", n(T0 + 3600)),
            ("expires_at", n(T0 + 3600 + 7 * 86_400)),
        ],
    )
    .await;
    let won = store
        .claim(&root_key(), &claim("inc-new", "task-a", T0 + 60))
        .await
        .expect("claim");
    assert_eq!(
        won,
        Claimed::Won {
            incident_id: "inc-new".into()
        }
    );
}
