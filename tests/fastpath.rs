//! The fast path end to end against moto server: CloudTrail events put on a real EventBridge
//! bus, a rule forwarding them to the daemon's queue, pages within seconds, and one incident
//! across the event and the log file that later holds the same record.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

const WAIT: Duration = Duration::from_secs(45);

fn with_table(table: &str) -> DaemonOptions {
    DaemonOptions {
        state_table: Some(table.to_owned()),
        ..Default::default()
    }
}

/// IAM user creation by a role: iam-user-created.
fn create_user(event_id: &str) -> Value {
    let mut r = record(event_id, "iam.amazonaws.com", "CreateUser", role());
    r["readOnly"] = json!(false);
    r["requestParameters"] = json!({"userName": "backdoor"});
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cloudtrail_detail_type_pages_through_a_real_rule() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    let events = stack.eventbridge(&moto).await;
    let daemon = Daemon::start(&moto, &stack, DaemonOptions::default());

    // One incident per event: each in its own account. The record decides the rule; the
    // detail-type is how EventBridge labels it, and both sign-in spellings must work.
    let mut console_action = root_login_in("eb-action", &account(3));
    console_action["eventType"] = json!("AwsConsoleAction");
    console_action["eventSource"] = json!("health.amazonaws.com");
    console_action["eventName"] = json!("DescribeEventAggregates");
    let mut service = create_user("eb-service");
    service["recipientAccountId"] = json!(account(4));
    let sent = [
        (create_user("eb-api"), "AWS API Call via CloudTrail"),
        (
            root_login_in("eb-signin", &account(1)),
            "AWS Console Sign In via CloudTrail",
        ),
        (
            root_login_in("eb-signin-2", &account(2)),
            "AWS Console Signin via CloudTrail",
        ),
        (console_action, "AWS Console Action via CloudTrail"),
        (service, "AWS Service Event via CloudTrail"),
    ];
    let mut ids = Vec::new();
    for (record, detail_type) in &sent {
        ids.push(put_event(&events, record, Some(detail_type)).await);
    }
    let docs = stack
        .alerts_until(WAIT, |d| event_ids(d).len() >= sent.len())
        .await;
    let mut got = event_ids(&docs);
    got.sort();
    assert_eq!(
        got,
        vec![
            "eb-action",
            "eb-api",
            "eb-service",
            "eb-signin",
            "eb-signin-2"
        ]
    );
    // Alerts say the fast path found them: eventbridge:<region>:<event id>.
    let sources: Vec<String> = docs
        .iter()
        .flat_map(|d| d["doc"]["alerts"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["source"].as_str().map(str::to_owned))
        .collect();
    for id in &ids {
        assert!(
            sources.contains(&format!("eventbridge:us-east-1:{id}")),
            "{sources:?}"
        );
    }
    stack.wait_depth(&stack.queue_url, 0, WAIT).await;
    let metrics = daemon.metrics();
    assert!(
        metrics.contains("trailwarden_eventbridge_events_total 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("trailwarden_alert_lag_seconds_count{path=\"eventbridge\"} 5"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("trailwarden_aws_requests_total{operation=\"GetObject\"}"),
        "no S3 read for an event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_later_in_a_log_file_pages_once() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    let events = stack.eventbridge(&moto).await;
    let table = stack.state_table("trailwarden-state").await;
    let daemon = Daemon::start(&moto, &stack, with_table(&table));

    let login = root_login("both-paths");
    put_event(&events, &login, None).await;
    let docs = stack.alerts_until(WAIT, |d| !d.is_empty()).await;
    assert_eq!(event_ids(&docs), vec!["both-paths"]);

    // Minutes later CloudTrail delivers the log file holding the same record, and a record
    // EventBridge never delivered (it is best effort).
    let mut only_in_file = create_user("file-only");
    only_in_file["recipientAccountId"] = json!(account(9));
    stack
        .put(&key("delivered"), log_file(&[login, only_in_file]))
        .await;
    stack.wait_depth(&stack.queue_url, 0, WAIT).await;
    daemon.wait_read("delivered", WAIT);
    let later = stack.alerts_until(WAIT, |d| !d.is_empty()).await;
    let more = stack.alerts_for(Duration::from_secs(3)).await;
    let all: Vec<Value> = later.into_iter().chain(more).collect();
    assert_eq!(event_ids(&all), vec!["file-only"], "{all:#?}");
    let metrics = daemon.metrics();
    assert!(
        metrics.contains("trailwarden_alert_lag_seconds_count{path=\"log_file\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_and_a_burst_split_across_both_paths_page_once_each() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    let events = stack.eventbridge(&moto).await;
    let table = stack.state_table("trailwarden-state").await;
    let _daemon = Daemon::start(&moto, &stack, with_table(&table));

    let login = root_login("split-login");
    let failures: Vec<Value> = (0..5)
        .map(|i| failed_login_at(&format!("split-{i}"), &format!("2026-11-20T10:0{i}:00Z")))
        .collect();
    // The sign-in and three failures come by EventBridge first.
    put_event(&events, &login, None).await;
    for f in &failures[..3] {
        put_event(&events, f, None).await;
    }
    stack.wait_depth(&stack.queue_url, 0, WAIT).await;
    // The log file repeats all of them and adds the last two failures.
    let mut file = vec![login];
    file.extend(failures.iter().cloned());
    stack.put(&key("split"), log_file(&file)).await;
    let docs = stack
        .alerts_until(WAIT, |d| {
            !for_rule(d, "console-login-brute-force").is_empty()
        })
        .await;
    let more = stack.alerts_for(Duration::from_secs(4)).await;
    let all: Vec<Value> = docs.into_iter().chain(more).collect();
    assert_eq!(for_rule(&all, "root-console-login").len(), 1, "{all:#?}");
    let brute = for_rule(&all, "console-login-brute-force");
    assert_eq!(brute.len(), 1, "{all:#?}");
    assert_eq!(
        brute[0]["doc"]["alerts"][0]["event_ids"],
        json!(["split-0", "split-1", "split-2", "split-3", "split-4"]),
        "each failure counted once, whichever path brought it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_foreign_eventbridge_events_are_logged_never_lost() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 1).await;
    let events = stack.eventbridge(&moto).await;
    let mut daemon = Daemon::start(
        &moto,
        &stack,
        DaemonOptions {
            visibility_timeout_secs: 5,
            ..Default::default()
        },
    );
    // Through the rule: a CloudTrail detail-type whose detail is no record.
    events
        .put_events()
        .entries(
            aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .source("aws.iam")
                .detail_type("AWS API Call via CloudTrail")
                .detail(json!({"note": "no record here"}).to_string())
                .build(),
        )
        .send()
        .await
        .expect("put events");
    // Straight onto the queue, as a misrouted rule would deliver them: another service's
    // event, an envelope without detail, and a record that is not an object.
    let foreign = json!({"version": "0", "id": "f1", "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2", "account": ACCOUNT, "time": "2026-11-20T09:00:00Z", "region": "us-east-1",
        "resources": [], "detail": {"instance-id": "i-1", "state": "running"}});
    let mut no_detail = foreign.clone();
    no_detail["detail-type"] = json!("AWS Console Sign In via CloudTrail");
    no_detail.as_object_mut().expect("object").remove("detail");
    let mut not_object = foreign.clone();
    not_object["detail-type"] = json!("AWS API Call via CloudTrail");
    not_object["detail"] = json!([1, 2, 3]);
    for body in [&foreign, &no_detail, &not_object] {
        stack.send(&body.to_string()).await;
    }
    // A good event afterwards still pages.
    put_event(&events, &root_login("after-garbage"), None).await;
    let docs = stack.alerts_until(WAIT, |d| !d.is_empty()).await;
    assert_eq!(event_ids(&docs), vec!["after-garbage"]);
    // The foreign event is acknowledged and logged; the broken ones are kept in the DLQ.
    stack
        .wait_depth(&stack.dlq_url, 3, Duration::from_secs(60))
        .await;
    stack.wait_depth(&stack.queue_url, 0, WAIT).await;
    assert!(daemon.is_running());
    let logs = daemon.logs();
    assert!(
        logs.contains("EC2 Instance State-change Notification"),
        "{logs}"
    );
    assert!(logs.contains("carries no CloudTrail record"), "{logs}");
}

/// Serves `body` at any path, over HTTP/1.1 on 127.0.0.1, until the test ends: AWS's
/// ip-ranges.json as the daemon's refresher fetches it.
async fn serve_ranges(body: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut request = vec![0u8; 4096];
            let _ = conn.read(&mut request).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(response.as_bytes()).await;
        }
    });
    format!("http://{addr}/ip-ranges.json")
}

/// A call by an EC2 instance profile's session from `ip`.
fn instance_call(event_id: &str, ip: &str) -> Value {
    let identity = json!({
        "type": "AssumedRole",
        "principalId": "AROAEXAMPLEROLEID:i-0a1b2c3d4e5f60718",
        "arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/web-server-role/i-0a1b2c3d4e5f60718"),
        "accountId": ACCOUNT,
        "accessKeyId": "ASIAEXAMPLEINSTANCE1",
        "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLEROLEID",
            "arn": format!("arn:aws:iam::{ACCOUNT}:role/web-server-role"), "accountId": ACCOUNT,
            "userName": "web-server-role"},
            "attributes": {"creationDate": "2026-11-20T08:00:00Z", "mfaAuthenticated": "false"},
            "ec2RoleDelivery": "2.0"}
    });
    let mut r = record(event_id, "s3.amazonaws.com", "ListBuckets", identity);
    r["sourceIPAddress"] = json!(ip);
    r["userAgent"] = json!("aws-cli/2.22.4 md/command#s3.ls");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_fetches_aws_ip_ranges_and_names_the_list_in_the_alert() {
    const RANGES: &str = r#"{"syncToken": "1764064805", "createDate": "2026-11-25-10-00-05",
        "prefixes": [{"ip_prefix": "3.5.144.0/23", "region": "us-east-1", "service": "EC2",
        "network_border_group": "us-east-1"}], "ipv6_prefixes": []}"#;
    let url = serve_ranges(RANGES).await;
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    let events = stack.eventbridge(&moto).await;
    let daemon = Daemon::start(
        &moto,
        &stack,
        DaemonOptions {
            extra_env: vec![("TRAILWARDEN_AWS_IP_RANGES_URL".to_owned(), url.clone())],
            ..Default::default()
        },
    );
    // The refresh at start-up is logged and counted before any event is sent.
    let deadline = std::time::Instant::now() + WAIT;
    while !daemon
        .metrics()
        .contains("trailwarden_ip_ranges_refreshes_total{result=\"updated\"} 1")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no refresh from {url}:\n{}",
            daemon.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // From the instance's own EC2 address (in the served list): quiet. From outside: pages.
    put_event(&events, &instance_call("inside", "3.5.144.20"), None).await;
    put_event(&events, &instance_call("outside", "198.51.100.23"), None).await;
    let docs = stack.alerts_until(WAIT, |d| !d.is_empty()).await;
    stack.wait_depth(&stack.queue_url, 0, WAIT).await;
    let docs = [docs, stack.alerts_for(Duration::from_secs(2)).await].concat();
    assert_eq!(event_ids(&docs), vec!["outside"]);
    let summary = docs[0]["doc"]["alerts"][0]["summary"]
        .as_str()
        .expect("summary")
        .to_owned();
    assert!(
        summary.contains("not in AWS's IP ranges") && summary.contains("2026-11-25-10-00-05"),
        "{summary}"
    );
    assert!(daemon.logs().contains(&url), "the refresh names its URL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_name_accounts_from_the_settings_and_from_organizations() {
    let moto = Moto::start();
    let stack = Stack::create(&moto, 5).await;
    let events = stack.eventbridge(&moto).await;
    // moto's account is the organization's management account; a member account joins it.
    let organizations = aws_sdk_organizations::Client::new(&moto.sdk().await);
    organizations
        .create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await
        .expect("create organization");
    let created = organizations
        .create_account()
        .account_name("prod-payments")
        .email("payments@example.com")
        .send()
        .await
        .expect("create account");
    let member = created
        .create_account_status()
        .and_then(|s| s.account_id())
        .expect("member account id")
        .to_owned();
    let daemon = Daemon::start(
        &moto,
        &stack,
        DaemonOptions {
            extra_env: vec![
                (
                    "TRAILWARDEN_ACCOUNT_NAMES".to_owned(),
                    format!("{ACCOUNT}=security-tooling"),
                ),
                (
                    "TRAILWARDEN_ACCOUNT_NAMES_FROM_ORGANIZATIONS".to_owned(),
                    "true".to_owned(),
                ),
            ],
            ..Default::default()
        },
    );
    let deadline = std::time::Instant::now() + WAIT;
    while !daemon
        .metrics()
        .contains("trailwarden_account_names_refreshes_total{result=\"updated\"} 1")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no listing:\n{}",
            daemon.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    put_event(&events, &root_login_in("named-member", &member), None).await;
    put_event(&events, &root_login("named-own"), None).await;
    let docs = stack.alerts_until(WAIT, |d| d.len() >= 2).await;
    let subject_of = |id: &str| {
        docs.iter()
            .find(|d| event_ids(std::slice::from_ref(*d)) == [id])
            .map(|d| d["subject"].as_str().expect("subject").to_owned())
            .expect(id)
    };
    // Organizations names the member; the settings name moto's own account, which
    // Organizations also lists (as its management account): the settings win.
    assert_eq!(
        subject_of("named-member"),
        format!("[CRITICAL] root-console-login in prod-payments ({member})")
    );
    assert_eq!(
        subject_of("named-own"),
        format!("[CRITICAL] root-console-login in security-tooling ({ACCOUNT})")
    );
}
