//! The `securityhub` output against moto server: DescribeHub before and after Security Hub is
//! enabled, and a page, its follow-up, a posture finding and its resolution imported with
//! BatchImportFindings (and read back here with GetFindings).
//!
//! moto 5.2 models EnableSecurityHub, DescribeHub (InvalidAccessException, HTTP 401, until
//! enabled), BatchImportFindings (an import with the same Id updates the stored finding; its
//! only check is a non-empty Resources list, refused as `InvalidInput` in FailedFindings) and
//! GetFindings (filters are not applied: every finding comes back). It does not refuse imports
//! while Security Hub is disabled, nor check ProductArn, AwsAccountId or field lengths.

mod support;

use aws_sdk_securityhub::types::{AwsSecurityFinding, ComplianceStatus, RecordState};
use support::Moto;
use trailwarden::aws::{self, Edge, Fault};
use trailwarden::finding::accounts::AccountNames;
use trailwarden::finding::alert::Alert;
use trailwarden::finding::fold::{Folder, Stats};
use trailwarden::finding::sink::{FollowUp, Message, Opened, Page, Resolved};
use trailwarden::finding::{IncidentKey, Level, Standing};
use trailwarden::output::Output;
use trailwarden::output::securityhub::{self, Home, Hub};
use trailwarden::telemetry::Metrics;

fn alert(i: usize) -> Alert {
    Alert {
        rule: "root-activity".into(),
        title: "Root user activity".into(),
        level: Level::High,
        tags: vec![
            "attack.privilege-escalation".into(),
            "attack.t1078.004".into(),
        ],
        event_id: Some(format!("evt-{i}")),
        event_time: Some(format!("2026-11-20T09:00:{:02}Z", i % 60)),
        event_name: Some("ListBuckets".into()),
        event_source: Some("s3.amazonaws.com".into()),
        aws_region: Some("us-east-1".into()),
        account_id: Some(support::ACCOUNT.into()),
        principal_type: Some("Root".into()),
        principal_arn: Some(format!("arn:aws:iam::{}:root", support::ACCOUNT)),
        source_ip: Some("198.51.100.7".into()),
        user_agent: None,
        error_code: None,
        mfa_used: None,
        summary: "Root user called ListBuckets".into(),
        source: "s3://trail/k".into(),
        count: None,
        event_ids: None,
        distinct_values: None,
        root_only_task: None,
        assumed_root: None,
        next_steps: vec![],
    }
}

fn key() -> IncidentKey {
    IncidentKey {
        rule: "root-activity".into(),
        account: support::ACCOUNT.into(),
        principal: format!("arn:aws:iam::{}:root", support::ACCOUNT),
    }
}

/// The stored finding `id`, read back with GetFindings (moto ignores filters; the id is
/// matched here). The SDK's generated reader of an ASFF resource takes stack frames of over a
/// megabyte in debug builds, more than a test thread's stack, so it runs on a thread of its own.
async fn stored(client: &aws_sdk_securityhub::Client, id: &str) -> AwsSecurityFinding {
    let (client, wanted) = (client.clone(), id.to_owned());
    let handle = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .stack_size(64 * 1024 * 1024)
        .spawn(move || {
            let out = handle.block_on(client.get_findings().send());
            let _ = tx.send(out.expect("GetFindings").findings.unwrap_or_default());
        })
        .expect("reader thread");
    rx.await
        .expect("reader answered")
        .into_iter()
        .find(|f| f.id() == Some(id))
        .unwrap_or_else(|| panic!("finding {wanted} is stored"))
}

fn field<'a>(f: &'a AwsSecurityFinding, key: &str) -> &'a str {
    f.product_fields()
        .and_then(|m| m.get(key))
        .map(String::as_str)
        .unwrap_or_default()
}

#[tokio::test]
async fn findings_are_imported_updated_and_archived() {
    let moto = Moto::start();
    let sdk = moto.sdk().await;
    let metrics = Metrics::new();
    // The home account as start-up finds it.
    let caller = aws::caller(&aws_sdk_sts::Client::new(&sdk), Edge::Sink)
        .await
        .expect("GetCallerIdentity");
    assert_eq!(caller.account, support::ACCOUNT);
    assert_eq!(caller.partition, "aws");
    let home = Home {
        account: caller.account,
        region: "us-east-1".into(),
        partition: caller.partition,
    };
    // The test's own client, to enable Security Hub and read the findings back.
    let client = aws_sdk_securityhub::Client::new(&sdk);
    let hub = Hub::new(&sdk, home.clone(), &metrics);

    // Not enabled: a setting that names the fix.
    let err = hub
        .check()
        .await
        .expect_err("Security Hub is not enabled yet");
    assert_eq!(err.fault, Fault::Setting);
    assert!(
        err.sentence.starts_with(
            "Security Hub is not enabled in us-east-1 for account 123456789012: enable it (aws securityhub enable-security-hub) or remove the output"
        ),
        "{}",
        err.sentence
    );
    client
        .enable_security_hub()
        .send()
        .await
        .expect("EnableSecurityHub");
    hub.check().await.expect("enabled");

    // The page creates the incident's finding.
    let names = AccountNames::new([(support::ACCOUNT.to_owned(), "sandbox".to_owned())]);
    let mut folder = Folder::new();
    for i in 0..3 {
        folder.add(key(), alert(i));
    }
    let fold = folder.finish().remove(0);
    let steps = vec!["Find out who used root".to_owned()];
    let page = Message::page(Page {
        incident_id: "inc-1",
        fold: &fold,
        next_steps: &steps,
    });
    hub.deliver(&page, &names).await.expect("page imported");
    let id = "trailwarden/inc-1";
    let f = stored(&client, id).await;
    assert_eq!(f.schema_version(), Some("2018-10-08"));
    assert_eq!(
        f.product_arn(),
        Some("arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default")
    );
    assert_eq!(f.generator_id(), Some("trailwarden/root-activity"));
    assert_eq!(f.aws_account_id(), Some(support::ACCOUNT));
    assert_eq!(
        f.types(),
        ["TTPs/Privilege Escalation", "Unusual Behaviors/User"]
    );
    assert_eq!(
        f.title(),
        Some("Root user activity in sandbox (123456789012)")
    );
    assert_eq!(
        f.description(),
        Some("Root user called ListBuckets (and 2 more like it)")
    );
    assert_eq!(f.created_at(), Some("2026-11-20T09:00:00.000Z"));
    assert_eq!(f.last_observed_at(), Some("2026-11-20T09:00:02.000Z"));
    let severity = f.severity().and_then(|s| s.label()).expect("label");
    assert_eq!(severity.as_str(), "HIGH");
    assert_eq!(f.record_state(), Some(&RecordState::Active));
    assert_eq!(
        f.workflow().and_then(|w| w.status()).map(|s| s.as_str()),
        Some("NEW")
    );
    assert_eq!(
        f.remediation()
            .and_then(|r| r.recommendation())
            .and_then(|r| r.text()),
        Some("Find out who used root")
    );
    let principal = &f.resources()[0];
    assert_eq!(principal.r#type(), Some("Other"));
    assert_eq!(principal.id(), Some("arn:aws:iam::123456789012:root"));
    assert_eq!(field(&f, "trailwarden/count"), "3");
    assert_eq!(field(&f, "trailwarden/message_id"), "inc-1:page");
    assert_eq!(field(&f, "trailwarden/source_ip"), "198.51.100.7");
    assert_eq!(field(&f, "trailwarden/event_names"), "ListBuckets (3)");
    let paged_updated_at = f.updated_at().expect("UpdatedAt").to_owned();

    // The follow-up updates the same finding: later, with the running count.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let mut stats = Stats::default();
    for i in 3..38 {
        stats.add(&alert(i));
    }
    let follow_up = Message::FollowUp(FollowUp {
        incident_id: "inc-1".into(),
        key: key(),
        title: "Root user activity".into(),
        level: Level::High,
        next_steps: steps.clone(),
        paged_summary: "Root user called ListBuckets".into(),
        paged_at: 1_795_165_300,
        paged_count: 3,
        paged_first_time: Some("2026-11-20T09:00:00Z".into()),
        tags: alert(0).tags,
        stats,
        sources: 4,
    });
    hub.deliver(&follow_up, &names)
        .await
        .expect("follow-up imported");
    let f = stored(&client, id).await;
    assert!(
        f.updated_at().expect("UpdatedAt") > paged_updated_at.as_str(),
        "{:?} after {paged_updated_at}",
        f.updated_at()
    );
    assert_eq!(field(&f, "trailwarden/count"), "38");
    assert_eq!(field(&f, "trailwarden/message_id"), "inc-1:follow-up");
    // What the page said is kept.
    assert_eq!(f.created_at(), Some("2026-11-20T09:00:00.000Z"));
    assert_eq!(
        f.types(),
        ["TTPs/Privilege Escalation", "Unusual Behaviors/User"]
    );
    // A repeat of the follow-up (its answer lost) says the same.
    hub.deliver(&follow_up, &names)
        .await
        .expect("repeat imported");
    assert_eq!(field(&stored(&client, id).await, "trailwarden/count"), "38");

    // A posture finding, then its resolution archives it.
    let standing = Standing {
        check: "user-without-mfa".into(),
        account: support::ACCOUNT.into(),
        resource: "arn:aws:iam::123456789012:user/alice".into(),
        level: Level::Medium,
        title: "Every IAM user with a console password has MFA (CIS 1.10)".into(),
        evidence: "alice has a console password and no MFA device".into(),
        next_steps: vec!["Have the user assign an MFA device".into()],
    };
    let opened = Message::finding(Opened {
        incident_id: "inc-2",
        finding: &standing,
    });
    hub.deliver(&opened, &names)
        .await
        .expect("finding imported");
    let f = stored(&client, "trailwarden/inc-2").await;
    assert_eq!(
        f.types(),
        ["Software and Configuration Checks/AWS Security Best Practices"]
    );
    assert_eq!(f.resources()[0].r#type(), Some("AwsIamUser"));
    assert_eq!(
        f.compliance().and_then(|c| c.status()),
        Some(&ComplianceStatus::Failed)
    );
    assert_eq!(f.record_state(), Some(&RecordState::Active));
    let resolved = Message::Resolved(Resolved {
        incident_id: "inc-2".into(),
        finding: standing,
        opened_at: 1_795_165_200,
        resolved_at: 1_795_168_800,
        by: "re-check after EnableMFADevice".into(),
    });
    hub.deliver(&resolved, &names)
        .await
        .expect("resolution imported");
    let f = stored(&client, "trailwarden/inc-2").await;
    assert_eq!(f.record_state(), Some(&RecordState::Archived));
    assert_eq!(
        f.compliance().and_then(|c| c.status()),
        Some(&ComplianceStatus::Passed)
    );
    assert_eq!(field(&f, "trailwarden/message_id"), "inc-2:resolved");
    // The detection's finding was not touched by the posture finding's messages.
    assert_eq!(
        stored(&client, id).await.record_state(),
        Some(&RecordState::Active)
    );

    // A finding Security Hub refuses is rejected, naming it and Security Hub's reason.
    let mut bad = securityhub::render(&opened, &names, &home, &securityhub::now()).asff(&home);
    bad["Id"] = "trailwarden/inc-bad".into();
    bad["Resources"] = serde_json::json!([]);
    let err = hub.import(bad).await.expect_err("no resources");
    assert_eq!(err.fault, Fault::Rejected);
    assert!(
        err.sentence
            .contains("refused finding trailwarden/inc-bad: InvalidInput")
            && err.sentence.contains("at least one resource"),
        "{}",
        err.sentence
    );
}
