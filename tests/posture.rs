//! The daemon's posture audit against moto server: IAM, STS and the state table are real HTTP,
//! findings arrive on the alert topic's SQS subscription, and CloudTrail records that change
//! posture arrive through the queue (an EventBridge event, or a log object) to trigger the
//! re-check, as they would in an account.
//!
//! The audit interval is left at its minimum (900 s): each test sees the start-up audit only,
//! and every later evaluation comes through the re-check path.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{ACCOUNT, Daemon, DaemonOptions, Moto, Stack};

const ALICE_ARN: &str = "arn:aws:iam::123456789012:user/alice";

/// alice: a console password and no MFA device, created before the daemon starts.
async fn user_without_mfa(moto: &Moto) -> aws_sdk_iam::Client {
    let iam = aws_sdk_iam::Client::new(&moto.sdk().await);
    iam.create_user()
        .user_name("alice")
        .send()
        .await
        .expect("create user");
    iam.create_login_profile()
        .user_name("alice")
        .password("correct-horse-battery-staple-1A!")
        .send()
        .await
        .expect("console password");
    iam
}

/// A CloudTrail record of an IAM call on alice by an administrator's role.
fn iam_call(event_id: &str, name: &str, params: Value) -> Value {
    let mut r = support::record(event_id, "iam.amazonaws.com", name, support::role());
    r["readOnly"] = json!(false);
    r["requestParameters"] = params;
    r
}

/// The posture messages about alice's missing MFA received so far, of `kind`.
fn about_alice<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|d| {
            d["doc"]["kind"] == kind
                && d["doc"]["check"] == "user-without-mfa"
                && d["doc"]["resource"] == ALICE_ARN
        })
        .collect()
}

/// Waits until the daemon's log holds `n` lines with `message`.
fn wait_logged(daemon: &Daemon, message: &str, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = logged(daemon, message);
        if seen >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{message:?} logged {seen} times, expected {n}:\n{}",
            daemon.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn logged(daemon: &Daemon, message: &str) -> usize {
    let needle = format!("\"message\":\"{message}\"");
    daemon
        .logs()
        .lines()
        .filter(|l| l.contains(&needle))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finding_pages_once_survives_a_restart_and_resolves_once_when_fixed() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    let table = stack.state_table("trailwarden-state").await;
    let iam = user_without_mfa(&moto).await;
    let events = stack.eventbridge(&moto).await;
    let options = || DaemonOptions {
        state_table: Some(table.clone()),
        posture: true,
        ..DaemonOptions::default()
    };

    // The start-up audit pages alice's finding, once.
    let daemon = Daemon::start(&moto, &stack, options());
    let docs = stack
        .alerts_until(Duration::from_secs(60), |d| {
            !about_alice(d, "finding").is_empty()
        })
        .await;
    let found = about_alice(&docs, "finding");
    assert_eq!(found.len(), 1, "{docs:#?}");
    let finding = &found[0];
    let incident_id = finding["doc"]["incident_id"].as_str().expect("incident id");
    assert_eq!(
        finding["doc"]["message_id"],
        format!("{incident_id}:finding")
    );
    assert_eq!(finding["doc"]["level"], "high");
    assert_eq!(finding["doc"]["account_id"], ACCOUNT);
    assert!(
        finding["doc"]["evidence"]
            .as_str()
            .is_some_and(|e| e.contains("alice has a console password")),
        "{finding}"
    );
    assert!(
        finding["doc"]["next_steps"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    );
    assert_eq!(finding["attributes"]["kind"]["Value"], "finding");
    assert_eq!(
        finding["subject"],
        format!("[HIGH] finding: user-without-mfa in {ACCOUNT}")
    );
    wait_logged(&daemon, "posture audited", 1, Duration::from_secs(30));
    let metrics = daemon.metrics();
    assert!(
        metrics.contains("trailwarden_findings_open{check=\"user-without-mfa\",level=\"high\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("trailwarden_posture_audits_total 1"),
        "{metrics}"
    );

    // A change to alice that leaves her without MFA: the re-check finds her again and pages
    // nothing.
    support::put_event(
        &events,
        &iam_call(
            "ev-update-1",
            "UpdateLoginProfile",
            json!({"userName": "alice"}),
        ),
        None,
    )
    .await;
    wait_logged(&daemon, "posture re-checked", 1, Duration::from_secs(30));

    // A restart within the interval audits nothing, and the re-check still pages nothing:
    // the table remembers the open finding.
    assert!(daemon_stops(daemon));
    let daemon = Daemon::start(&moto, &stack, options());
    support::put_event(
        &events,
        &iam_call(
            "ev-update-2",
            "UpdateLoginProfile",
            json!({"userName": "alice"}),
        ),
        None,
    )
    .await;
    wait_logged(&daemon, "posture re-checked", 1, Duration::from_secs(30));
    assert_eq!(logged(&daemon, "posture audited"), 0, "{}", daemon.logs());
    let docs = stack.alerts_for(Duration::from_secs(2)).await;
    assert!(about_alice(&docs, "finding").is_empty(), "{docs:#?}");

    // bob is created without MFA, then given a console password: his re-check (live reads,
    // not the credential report) makes him a finding at once.
    iam.create_user()
        .user_name("bob")
        .send()
        .await
        .expect("create bob");
    iam.create_login_profile()
        .user_name("bob")
        .password("another-horse-battery-staple-2B!")
        .send()
        .await
        .expect("bob's console password");
    support::put_event(
        &events,
        &iam_call("ev-bob", "CreateLoginProfile", json!({"userName": "bob"})),
        None,
    )
    .await;
    let bob = |d: &Value| {
        d["doc"]["kind"] == "finding"
            && d["doc"]["check"] == "user-without-mfa"
            && d["doc"]["resource"] == "arn:aws:iam::123456789012:user/bob"
    };
    let docs = stack
        .alerts_until(Duration::from_secs(30), |d| d.iter().any(bob))
        .await;
    assert_eq!(docs.iter().filter(|d| bob(d)).count(), 1, "{docs:#?}");

    // She assigns an MFA device; the record arrives in a log file and its re-check sends
    // exactly one resolution.
    let serial = format!("arn:aws:iam::{ACCOUNT}:mfa/alice");
    iam.enable_mfa_device()
        .user_name("alice")
        .serial_number(&serial)
        .authentication_code1("123456")
        .authentication_code2("654321")
        .send()
        .await
        .expect("enable MFA");
    let record = iam_call(
        "ev-enable-mfa",
        "EnableMFADevice",
        json!({"userName": "alice", "serialNumber": serial}),
    );
    stack
        .put(&support::key("mfa"), support::log_file(&[record]))
        .await;
    let docs = stack
        .alerts_until(Duration::from_secs(60), |d| {
            !about_alice(d, "resolved").is_empty()
        })
        .await;
    let resolved = about_alice(&docs, "resolved");
    assert_eq!(resolved.len(), 1, "{docs:#?}");
    assert_eq!(resolved[0]["doc"]["incident_id"], incident_id);
    assert_eq!(
        resolved[0]["doc"]["message_id"],
        format!("{incident_id}:resolved")
    );
    assert!(
        resolved[0]["doc"]["resolved_by"]
            .as_str()
            .is_some_and(|b| b.contains("EnableMFADevice")),
        "{}",
        resolved[0]
    );
    assert_eq!(resolved[0]["attributes"]["kind"]["Value"], "resolved");
    // Nothing more: one resolution, no new finding.
    let docs = stack.alerts_for(Duration::from_secs(3)).await;
    assert!(about_alice(&docs, "resolved").is_empty(), "{docs:#?}");
    assert!(about_alice(&docs, "finding").is_empty(), "{docs:#?}");
    let logs = daemon.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("\"message\":\"finding resolved\"") && l.contains(ALICE_ARN)),
        "{logs}"
    );
    // bob's finding still stands.
    let metrics = daemon.metrics();
    assert!(
        metrics.contains("trailwarden_findings_open{check=\"user-without-mfa\",level=\"high\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("trailwarden_posture_rechecks_total 3"),
        "{metrics}"
    );
}

/// Stops a daemon; true when it exited cleanly.
fn daemon_stops(mut daemon: Daemon) -> bool {
    daemon.terminate().success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_sharing_the_table_audit_once() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    let table = stack.state_table("trailwarden-state").await;
    user_without_mfa(&moto).await;
    let options = || DaemonOptions {
        state_table: Some(table.clone()),
        posture: true,
        ..DaemonOptions::default()
    };
    let a = Daemon::start(&moto, &stack, options());
    let b = Daemon::start(&moto, &stack, options());
    let docs = stack
        .alerts_until(Duration::from_secs(60), |d| {
            !about_alice(d, "finding").is_empty()
        })
        .await;
    // Both have tried by now: each asks at start-up.
    let deadline = Instant::now() + Duration::from_secs(30);
    while logged(&a, "trailwarden started") + logged(&b, "trailwarden started") < 2 {
        assert!(Instant::now() < deadline, "both daemons start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let docs = [docs, stack.alerts_for(Duration::from_secs(3)).await].concat();
    assert_eq!(about_alice(&docs, "finding").len(), 1, "{docs:#?}");
    assert_eq!(
        logged(&a, "posture audited") + logged(&b, "posture audited"),
        1,
        "a:\n{}\nb:\n{}",
        a.logs(),
        b.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_organization_mode_the_audit_covers_each_member_account() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    let sdk = moto.sdk().await;
    let org = aws_sdk_organizations::Client::new(&sdk);
    org.create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await
        .expect("organization");
    let member = org
        .create_account()
        .account_name("workloads")
        .email("workloads@example.com")
        .send()
        .await
        .expect("create account")
        .create_account_status
        .and_then(|s| s.account_id)
        .expect("account id");
    // mallory lives in the member account: moto keeps what assumed-role credentials create
    // in the role's account.
    let iam = aws_sdk_iam::Client::new(&moto.sdk_in(&member).await);
    iam.create_user()
        .user_name("mallory")
        .send()
        .await
        .expect("user");
    iam.create_login_profile()
        .user_name("mallory")
        .password("correct-horse-battery-staple-1A!")
        .send()
        .await
        .expect("console password");

    let daemon = Daemon::start(
        &moto,
        &stack,
        DaemonOptions {
            posture: true,
            extra_env: vec![
                ("TRAILWARDEN_AUDIT_ACCOUNTS".into(), "organization".into()),
                (
                    "TRAILWARDEN_AUDIT_ROLE_NAME".into(),
                    "trailwarden-audit".into(),
                ),
            ],
            ..DaemonOptions::default()
        },
    );
    let mallory = format!("arn:aws:iam::{member}:user/mallory");
    let docs = stack
        .alerts_until(Duration::from_secs(60), |d| {
            d.iter().any(|d| d["doc"]["resource"] == mallory.as_str())
        })
        .await;
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| d["doc"]["resource"] == mallory.as_str())
        .collect();
    assert_eq!(found.len(), 1, "{docs:#?}");
    assert_eq!(found[0]["doc"]["check"], "user-without-mfa");
    assert_eq!(found[0]["doc"]["account_id"], member.as_str());
    // One audit covered both accounts: the management account's findings came too, and
    // each account's were committed under its own source.
    assert!(docs.iter().any(|d| d["doc"]["account_id"] == ACCOUNT));
    wait_logged(&daemon, "posture audited", 2, Duration::from_secs(30));
    let logs = daemon.logs();
    assert!(
        logs.contains(&format!("\"audited_account_id\":\"{member}\"")),
        "{logs}"
    );
    assert!(
        daemon
            .metrics()
            .contains("trailwarden_posture_audits_total 1")
    );
}
