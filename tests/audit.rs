//! The posture audit against real HTTP: moto server for IAM users, keys, groups, policies,
//! the password policy, trails and Organizations, and a small IAM server of the test's own
//! (on 127.0.0.1) for what moto cannot show: a credential report with a root row, root's
//! flags in GetAccountSummary, a refused GetCredentialReport, and IAM Access Analyzer.
//!
//! moto dates keys and passwords at the real time of creation, so ages are tested by running
//! the audit 100 days later.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use chrono::{DateTime, Utc};
use support::Moto;
use trailwarden::posture::aws::AwsAccount;
use trailwarden::posture::{self, Audit, Outcome, Settings};

const ACCOUNT: &str = "123456789012";

async fn sdk_at(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(trailwarden::aws::https_client())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_iam::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await
}

fn outcome<'a>(audit: &'a Audit, check: &str) -> &'a Outcome {
    &audit
        .results
        .iter()
        .find(|r| r.check.name == check)
        .unwrap_or_else(|| panic!("no result for {check}"))
        .outcome
}

/// The failing resources of a check, or a panic naming what it found instead.
fn failing(audit: &Audit, check: &str) -> Vec<String> {
    match outcome(audit, check) {
        Outcome::Fail(found) => found.iter().map(|f| f.resource.clone()).collect(),
        other => panic!("{check}: expected a failure, got {other:?}"),
    }
}

fn evidence(audit: &Audit, check: &str) -> String {
    match outcome(audit, check) {
        Outcome::Fail(found) => found
            .iter()
            .map(|f| f.evidence.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        other => panic!("{check}: expected a failure, got {other:?}"),
    }
}

fn passes(audit: &Audit, check: &str) -> bool {
    matches!(outcome(audit, check), Outcome::Pass { .. })
}

fn user_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:user/{name}")
}

const ADMIN_STAR: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
const READ_ONLY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:Get*","s3:List*"],"Resource":"*"}]}"#;

/// moto with AWS managed policies (AdministratorAccess among them) loaded into IAM, which
/// it leaves out unless asked.
fn moto_with_managed_policies() -> Moto {
    Moto::start_with(&[("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")])
}

/// Users, groups, policies, a weak password policy and two trails in moto.
async fn populate(moto: &Moto) {
    let sdk = &moto.sdk().await;
    let iam = aws_sdk_iam::Client::new(sdk);
    for name in ["alice", "bob", "carol", "dave", "erin", "frank"] {
        iam.create_user()
            .user_name(name)
            .send()
            .await
            .expect("user");
    }
    // alice and bob sign in to the console; only bob has MFA.
    for name in ["alice", "bob"] {
        iam.create_login_profile()
            .user_name(name)
            .password("Correct-Horse-1")
            .send()
            .await
            .expect("login profile");
    }
    let serial = iam
        .create_virtual_mfa_device()
        .virtual_mfa_device_name("bob")
        .send()
        .await
        .expect("mfa device")
        .virtual_mfa_device
        .expect("device")
        .serial_number;
    iam.enable_mfa_device()
        .user_name("bob")
        .serial_number(serial)
        .authentication_code1("123456")
        .authentication_code2("654321")
        .send()
        .await
        .expect("enable mfa");
    // carol has two active keys, erin one.
    for name in ["carol", "carol", "erin"] {
        iam.create_access_key()
            .user_name(name)
            .send()
            .await
            .expect("key");
    }
    // dave gets his permissions through a group only.
    iam.create_group()
        .group_name("readers")
        .send()
        .await
        .expect("group");
    iam.put_group_policy()
        .group_name("readers")
        .policy_name("read")
        .policy_document(READ_ONLY)
        .send()
        .await
        .expect("group policy");
    iam.add_user_to_group()
        .group_name("readers")
        .user_name("dave")
        .send()
        .await
        .expect("membership");
    // erin has AdministratorAccess attached; frank an inline "*" on "*" and a harmless
    // customer managed policy.
    iam.attach_user_policy()
        .user_name("erin")
        .policy_arn("arn:aws:iam::aws:policy/AdministratorAccess")
        .send()
        .await
        .expect("attach admin");
    iam.put_user_policy()
        .user_name("frank")
        .policy_name("everything")
        .policy_document(ADMIN_STAR)
        .send()
        .await
        .expect("inline");
    let read_arn = iam
        .create_policy()
        .policy_name("s3-read")
        .policy_document(READ_ONLY)
        .send()
        .await
        .expect("policy")
        .policy
        .and_then(|p| p.arn)
        .expect("policy arn");
    iam.attach_user_policy()
        .user_name("frank")
        .policy_arn(&read_arn)
        .send()
        .await
        .expect("attach");
    iam.update_account_password_policy()
        .minimum_password_length(8)
        .password_reuse_prevention(5)
        .require_numbers(true)
        .require_lowercase_characters(true)
        .send()
        .await
        .expect("password policy");

    support::bucket(sdk, "trail-logs").await;
    let ct = aws_sdk_cloudtrail::Client::new(sdk);
    ct.create_trail()
        .name("regional")
        .s3_bucket_name("trail-logs")
        .send()
        .await
        .expect("regional trail");
    ct.create_trail()
        .name("everywhere")
        .s3_bucket_name("trail-logs")
        .is_multi_region_trail(true)
        .enable_log_file_validation(true)
        .send()
        .await
        .expect("multi-region trail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_of_a_populated_account_in_moto() {
    let moto = moto_with_managed_policies();
    populate(&moto).await;
    let sdk = moto.sdk().await;
    let account = AwsAccount::new(&sdk);
    let later = Utc::now() + chrono::Duration::days(100);

    let audit = posture::audit(&account, &Settings::default(), later)
        .await
        .expect("audit");
    assert_eq!(audit.account, ACCOUNT);
    assert_eq!(audit.region, "us-east-1");
    for s in audit.standing() {
        assert_eq!(s.account, ACCOUNT);
        assert!((1..=3).contains(&s.next_steps.len()), "{s:?}");
    }

    assert_eq!(failing(&audit, "user-without-mfa"), [user_arn("alice")]);
    let mut multi = failing(&audit, "user-multiple-active-keys");
    multi.sort();
    assert_eq!(multi, [user_arn("carol")]);
    let mut old_keys = failing(&audit, "access-key-not-rotated");
    old_keys.sort();
    assert_eq!(
        old_keys,
        [
            format!("{}#access-key-1", user_arn("carol")),
            format!("{}#access-key-2", user_arn("carol")),
            format!("{}#access-key-1", user_arn("erin")),
        ]
    );
    assert!(
        evidence(&audit, "access-key-not-rotated").contains("(100 days ago), last used never"),
        "{}",
        evidence(&audit, "access-key-not-rotated")
    );
    // Passwords never used since they were set, and keys never used since created.
    let unused = failing(&audit, "credential-unused");
    for resource in [
        format!("{}#password", user_arn("alice")),
        format!("{}#password", user_arn("bob")),
        format!("{}#access-key-2", user_arn("carol")),
    ] {
        assert!(unused.contains(&resource), "{resource} in {unused:?}");
    }
    assert_eq!(unused.len(), 5, "{unused:?}");

    let mut direct = failing(&audit, "user-has-direct-policies");
    direct.sort();
    assert_eq!(direct, [user_arn("erin"), user_arn("frank")]);
    let mut admins = failing(&audit, "user-admin-direct");
    admins.sort();
    assert_eq!(admins, [user_arn("erin"), user_arn("frank")]);
    let admin = evidence(&audit, "user-admin-direct");
    assert!(
        admin.contains("attached AWS managed policy AdministratorAccess"),
        "{admin}"
    );
    assert!(admin.contains("inline policy everything allows"), "{admin}");
    assert!(!admin.contains("s3-read"), "{admin}");

    assert_eq!(
        evidence(&audit, "password-policy-weak"),
        "the password policy falls short: minimum length 8 (want at least 14); reuse prevention remembers 5 passwords (want 24); symbols not required; upper-case letters not required"
    );

    // Neither trail logs yet; the regional one lacks validation; neither has a KMS key.
    let coverage = evidence(&audit, "trail-coverage-missing");
    assert!(
        coverage.contains("trail regional (home us-east-1) is single-region"),
        "{coverage}"
    );
    assert!(
        coverage.contains("trail everywhere (home us-east-1) is not logging"),
        "{coverage}"
    );
    assert_eq!(
        failing(&audit, "trail-validation-off"),
        [format!(
            "arn:aws:cloudtrail:us-east-1:{ACCOUNT}:trail/regional"
        )]
    );
    assert_eq!(failing(&audit, "trail-not-encrypted").len(), 2);
    // moto's account summary always reports root without MFA, and its report has no root row.
    assert!(passes(&audit, "root-access-key-present"));
    assert!(evidence(&audit, "root-mfa-disabled").contains("AccountMFAEnabled = 0"));
    assert!(passes(&audit, "root-used-recently"));
    assert!(matches!(
        outcome(&audit, "root-credentials-not-centralized"),
        Outcome::Pass { note: Some(n) } if n.contains("no organization")
    ));

    // Logging on: the multi-region trail records every management event by default.
    let ct = aws_sdk_cloudtrail::Client::new(&sdk);
    ct.start_logging()
        .name("everywhere")
        .send()
        .await
        .expect("start logging");
    let audit = posture::audit(&account, &Settings::default(), later)
        .await
        .expect("audit");
    assert!(
        passes(&audit, "trail-coverage-missing"),
        "{:?}",
        outcome(&audit, "trail-coverage-missing")
    );
    // Write-only management events do not cover reads.
    ct.put_event_selectors()
        .trail_name("everywhere")
        .event_selectors(
            aws_sdk_cloudtrail::types::EventSelector::builder()
                .read_write_type(aws_sdk_cloudtrail::types::ReadWriteType::WriteOnly)
                .include_management_events(true)
                .build(),
        )
        .send()
        .await
        .expect("selectors");
    let audit = posture::audit(&account, &Settings::default(), later)
        .await
        .expect("audit");
    assert!(
        evidence(&audit, "trail-coverage-missing").contains("records only write management events")
    );

    // Today, nothing is old or unused yet.
    let today = posture::audit(&account, &Settings::default(), Utc::now())
        .await
        .expect("audit");
    assert!(passes(&today, "access-key-not-rotated"));
    assert!(passes(&today, "credential-unused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_management_account_without_centralized_root_access() {
    let moto = Moto::start();
    let sdk = moto.sdk().await;
    aws_sdk_organizations::Client::new(&sdk)
        .create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await
        .expect("organization");
    let audit = posture::audit(&AwsAccount::new(&sdk), &Settings::default(), Utc::now())
        .await
        .expect("audit");
    let found = failing(&audit, "root-credentials-not-centralized");
    assert!(found[0].starts_with("organization/o-"), "{found:?}");
    assert!(
        evidence(&audit, "root-credentials-not-centralized").contains("lacks iam.amazonaws.com"),
    );
}

/// What the test's own IAM server answers.
#[derive(Default)]
struct FakeIam {
    /// The credential report's CSV.
    report: String,
    /// GetAccountSummary's AccountMFAEnabled and AccountAccessKeysPresent.
    root_mfa: bool,
    root_keys: bool,
    /// Answer GetCredentialReport with AccessDenied.
    deny_report: bool,
    /// IAM Access Analyzer has an active account analyzer.
    analyzer: bool,
    /// GenerateCredentialReport calls so far: the first says STARTED.
    generated: AtomicUsize,
    /// Actions asked for, in order.
    asked: Mutex<Vec<String>>,
}

const IAM_NS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";

impl FakeIam {
    /// IAM's query API: form-encoded `Action=...` in, XML out, as AWS documents it.
    fn answer(&self, method: &str, path: &str, body: &str) -> (u16, &'static str, String) {
        if method == "GET" && path.starts_with("/analyzer") {
            let list = if self.analyzer {
                format!(
                    r#"[{{"arn":"arn:aws:access-analyzer:us-east-1:{ACCOUNT}:analyzer/account","name":"account","type":"ACCOUNT","createdAt":"2026-01-01T00:00:00Z","status":"ACTIVE"}}]"#
                )
            } else {
                "[]".to_owned()
            };
            self.asked
                .lock()
                .expect("lock")
                .push("ListAnalyzers".into());
            return (
                200,
                "application/json",
                format!(r#"{{"analyzers":{list}}}"#),
            );
        }
        let action = body
            .split('&')
            .find_map(|kv| kv.strip_prefix("Action="))
            .unwrap_or("")
            .to_owned();
        self.asked.lock().expect("lock").push(action.clone());
        let ok = |result: String| {
            (
                200,
                "text/xml",
                format!(
                    r#"<{action}Response xmlns="{IAM_NS}"><{action}Result>{result}</{action}Result><ResponseMetadata><RequestId>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</RequestId></ResponseMetadata></{action}Response>"#
                ),
            )
        };
        let error = |status: u16, code: &str, message: &str| {
            (
                status,
                "text/xml",
                format!(
                    r#"<ErrorResponse xmlns="{IAM_NS}"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</RequestId></ErrorResponse>"#
                ),
            )
        };
        match action.as_str() {
            "GenerateCredentialReport" => {
                let state = if self.generated.fetch_add(1, Ordering::SeqCst) == 0 {
                    "STARTED"
                } else {
                    "COMPLETE"
                };
                ok(format!("<State>{state}</State><Description>No report exists. Starting a new report generation task</Description>"))
            }
            "GetCredentialReport" if self.deny_report => error(
                403,
                "AccessDenied",
                &format!("User: arn:aws:iam::{ACCOUNT}:user/auditor is not authorized to perform: iam:GetCredentialReport on resource: *"),
            ),
            "GetCredentialReport" => ok(format!(
                "<Content>{}</Content><ReportFormat>text/csv</ReportFormat><GeneratedTime>2026-11-20T11:59:00Z</GeneratedTime>",
                aws_smithy_types::base64::encode(self.report.as_bytes())
            )),
            "GetAccountSummary" => ok(format!(
                "<SummaryMap><entry><key>Users</key><value>1</value></entry><entry><key>AccountMFAEnabled</key><value>{}</value></entry><entry><key>AccountAccessKeysPresent</key><value>{}</value></entry><entry><key>AccountSigningCertificatesPresent</key><value>0</value></entry></SummaryMap>",
                u8::from(self.root_mfa),
                u8::from(self.root_keys)
            )),
            "GetAccountPasswordPolicy" => error(
                404,
                "NoSuchEntity",
                &format!("The Password Policy with domain name {ACCOUNT} cannot be found."),
            ),
            "GetAccountAuthorizationDetails" => ok(
                "<IsTruncated>false</IsTruncated><UserDetailList/><GroupDetailList/><RoleDetailList/><Policies/>".to_owned(),
            ),
            _ => error(400, "InvalidAction", "not served by this test"),
        }
    }
}

/// A loopback HTTP/1.1 server, one request per connection, until dropped (or a minute
/// passes: it never outlives a stuck test for long).
struct Server {
    endpoint: String,
    stop: Arc<AtomicBool>,
    fake: Arc<FakeIam>,
}

impl Server {
    fn start(fake: FakeIam) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let stop = Arc::new(AtomicBool::new(false));
        let fake = Arc::new(fake);
        let (flag, served) = (stop.clone(), fake.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !flag.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => handle(conn, &served),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server {
            endpoint,
            stop,
            fake,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn handle(conn: TcpStream, fake: &FakeIam) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(&conn);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let (status, content_type, payload) =
        fake.answer(&method, &path, &String::from_utf8_lossy(&body));
    let mut out = &conn;
    let _ = write!(
        out,
        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nx-amzn-RequestId: 7a62c49f\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
}

const REPORT_HEADER: &str = "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-20T12:00:00Z")
        .expect("date")
        .with_timezone(&Utc)
}

/// A report whose root row has an active key used an hour ago, no MFA, and a password used
/// this morning.
fn risky_root_report() -> String {
    format!(
        "{REPORT_HEADER}\n\
         <root_account>,arn:aws:iam::{ACCOUNT}:root,2019-01-01T00:00:00+00:00,not_supported,2026-11-20T08:30:00+00:00,not_supported,not_supported,false,true,2021-05-06T07:08:09+00:00,2026-11-20T11:00:00+00:00,us-east-1,iam,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n\
         ops,arn:aws:iam::{ACCOUNT}:user/ops,2026-11-01T00:00:00+00:00,true,no_information,2026-11-01T00:00:00+00:00,N/A,true,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n"
    )
}

/// The account with IAM and Access Analyzer answered by `server`, the rest by moto.
async fn account_with(moto: &Moto, server: &Server) -> AwsAccount {
    let fake = sdk_at(&server.endpoint).await;
    let mut account = AwsAccount::new(&moto.sdk().await);
    account.iam = aws_sdk_iam::Client::new(&fake);
    account.analyzer = aws_sdk_accessanalyzer::Client::new(&fake);
    account
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_findings_from_the_real_sdk_parsing_iam_answers() {
    let moto = Moto::start();
    let server = Server::start(FakeIam {
        report: risky_root_report(),
        root_mfa: false,
        root_keys: true,
        ..FakeIam::default()
    });
    let account = account_with(&moto, &server).await;
    let audit = posture::audit(&account, &Settings::default(), now())
        .await
        .expect("audit");

    // The report was polled until COMPLETE, then read.
    let asked = server.fake.asked.lock().expect("lock").clone();
    let generated = asked
        .iter()
        .filter(|a| *a == "GenerateCredentialReport")
        .count();
    assert_eq!(generated, 2, "{asked:?}");
    assert!(asked.contains(&"GetCredentialReport".to_owned()));

    let root = format!("arn:aws:iam::{ACCOUNT}:root");
    assert_eq!(failing(&audit, "root-access-key-present"), [root.as_str()]);
    assert_eq!(
        evidence(&audit, "root-access-key-present"),
        "root access key 1 created 2021-05-06T07:08:09Z (2024 days ago), last used 2026-11-20T11:00:00Z (1 hours ago) with iam (active)"
    );
    assert_eq!(failing(&audit, "root-mfa-disabled"), [root.as_str()]);
    assert_eq!(failing(&audit, "root-used-recently"), [root]);
    let used = evidence(&audit, "root-used-recently");
    assert!(
        used.contains("root's password was used 2026-11-20T08:30:00Z (3 hours ago)"),
        "{used}"
    );
    assert!(
        used.contains("root's access key 1 was used 2026-11-20T11:00:00Z"),
        "{used}"
    );
    for s in audit.standing().filter(|s| s.check.starts_with("root-")) {
        assert!(s.level >= trailwarden::finding::Level::High, "{s:?}");
    }
    // The IAM user in the report is read too; the password policy's NoSuchEntity is a finding.
    assert!(passes(&audit, "user-without-mfa"));
    assert!(evidence(&audit, "password-policy-weak").contains("no password policy"));
    assert!(
        evidence(&audit, "access-analyzer-off")
            .contains("no IAM Access Analyzer analyzer exists in us-east-1")
    );

    // With an active analyzer the check passes.
    let on = Server::start(FakeIam {
        report: risky_root_report(),
        analyzer: true,
        ..FakeIam::default()
    });
    let audit = posture::audit(&account_with(&moto, &on).await, &Settings::default(), now())
        .await
        .expect("audit");
    assert!(passes(&audit, "access-analyzer-off"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_credential_report_is_could_not_check_and_the_rest_runs() {
    let moto = Moto::start();
    let server = Server::start(FakeIam {
        report: risky_root_report(),
        deny_report: true,
        root_mfa: true,
        root_keys: true,
        analyzer: true,
        ..FakeIam::default()
    });
    let audit = posture::audit(
        &account_with(&moto, &server).await,
        &Settings::default(),
        now(),
    )
    .await
    .expect("audit");
    for check in [
        "root-used-recently",
        "user-without-mfa",
        "access-key-not-rotated",
        "credential-unused",
        "user-multiple-active-keys",
    ] {
        match outcome(&audit, check) {
            Outcome::Unchecked(u) => {
                assert_eq!(u.action, "iam:GetCredentialReport", "{check}");
                assert!(u.is_denied(), "{check}");
                assert!(
                    u.failed.sentence.starts_with(
                        "iam:GetCredentialReport failed: AccessDenied: User: arn:aws:iam::123456789012:user/auditor is not authorized"
                    ),
                    "{}",
                    u.failed.sentence
                );
            }
            other => panic!("{check}: {other:?}"),
        }
    }
    // Root's key still shows through GetAccountSummary; everything else ran.
    assert!(evidence(&audit, "root-access-key-present").contains("AccountAccessKeysPresent = 1"));
    assert!(passes(&audit, "root-mfa-disabled"));
    assert!(evidence(&audit, "password-policy-weak").contains("no password policy"));
    assert!(evidence(&audit, "trail-coverage-missing").contains("no trail is listed"));
    assert!(passes(&audit, "access-analyzer-off"));
    assert!(passes(&audit, "user-admin-direct"));
}

fn audit_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trailwarden"));
    cmd.arg("audit")
        .args(args)
        .env_clear()
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        // Never ask the EC2 instance metadata service for a region or credentials.
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

#[test]
fn the_audit_command_prints_one_line_per_check_and_exits_by_level() {
    let moto = moto_with_managed_policies();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(populate(&moto));
    let later = (Utc::now() + chrono::Duration::days(100)).to_rfc3339();

    let out = audit_command(&["--now", &later])
        .env("TRAILWARDEN_ENDPOINT_URL", &moto.endpoint)
        .output()
        .expect("run audit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let status_lines: Vec<&str> = stdout.lines().filter(|l| !l.starts_with("    ")).collect();
    assert_eq!(status_lines.len(), 15, "{stdout}");
    for (line, prefix) in [
        (0, "pass            critical      root-access-key-present"),
        (
            1,
            "FAIL            critical      root-mfa-disabled                 1 finding: The root user signs in with MFA (CIS 1.5)",
        ),
        (
            3,
            "FAIL            high          user-without-mfa                  1 finding:",
        ),
        (
            4,
            "FAIL            medium        access-key-not-rotated            3 findings:",
        ),
        (
            9,
            "FAIL            high          user-admin-direct                 2 findings:",
        ),
    ] {
        assert!(
            status_lines[line].starts_with(prefix),
            "{}\n{stdout}",
            status_lines[line]
        );
    }
    // moto does not implement IAM Access Analyzer: the check says it could not be made.
    assert!(
        status_lines[13].starts_with("could-not-check low           access-analyzer-off               access-analyzer:ListAnalyzers failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "    {}: alice has a console password",
            user_arn("alice")
        )),
        "{stdout}"
    );
    assert!(stdout.contains("    next: "), "{stdout}");
    assert!(
        stderr.contains(&format!("audit of {ACCOUNT} (us-east-1)")) && stderr.contains("15 checks"),
        "{stderr}"
    );

    // JSON: one object per check; only high and critical checks at --min-level high.
    let out = audit_command(&["--format", "json", "--min-level", "high", "--now", &later])
        .env("TRAILWARDEN_ENDPOINT_URL", &moto.endpoint)
        .output()
        .expect("run audit");
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let names: Vec<&str> = lines.iter().filter_map(|l| l["check"].as_str()).collect();
    assert_eq!(
        names,
        [
            "root-access-key-present",
            "root-mfa-disabled",
            "root-used-recently",
            "user-without-mfa",
            "user-admin-direct",
            "trail-coverage-missing"
        ]
    );
    let admin = &lines[4];
    assert_eq!(admin["status"], "fail");
    assert_eq!(admin["findings"][0]["check"], "user-admin-direct");
    assert_eq!(admin["findings"][0]["account"], ACCOUNT);
    assert_eq!(admin["findings"][0]["level"], "high");

    // Nothing reachable: the account cannot be identified, a credential or usage error.
    let closed = format!("http://127.0.0.1:{}", support::free_port());
    let out = audit_command(&[])
        .env("TRAILWARDEN_ENDPOINT_URL", &closed)
        .output()
        .expect("run audit");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot audit: sts:GetCallerIdentity failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = audit_command(&["--format", "xml"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_audit_command_exits_0_when_nothing_at_the_level_fails() {
    // Each service's endpoint from its own AWS_ENDPOINT_URL_<SERVICE>, as the SDK reads them:
    // IAM and Access Analyzer from the test's server (root with MFA and no key), the rest
    // from moto.
    let moto = Moto::start();
    let server = Server::start(FakeIam {
        report: format!("{REPORT_HEADER}\n"),
        root_mfa: true,
        root_keys: false,
        analyzer: true,
        ..FakeIam::default()
    });
    let out = audit_command(&["--min-level", "critical", "--now", "2026-11-20T12:00:00Z"])
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ENDPOINT_URL_IAM", &server.endpoint)
        .env("AWS_ENDPOINT_URL_ACCESSANALYZER", &server.endpoint)
        .output()
        .expect("run audit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "pass            critical      root-access-key-present           The root user has no access keys (CIS 1.4)",
            "pass            critical      root-mfa-disabled                 The root user signs in with MFA (CIS 1.5)",
        ]
    );
    // Without --min-level the same account fails lower checks: exit 1.
    let out = audit_command(&["--now", "2026-11-20T12:00:00Z"])
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ENDPOINT_URL_IAM", &server.endpoint)
        .env("AWS_ENDPOINT_URL_ACCESSANALYZER", &server.endpoint)
        .output()
        .expect("run audit");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("pass            low           access-analyzer-off")
    );
}

/// STS on loopback: AssumeRole into `denied`'s role answers AccessDenied as STS's query API
/// does (403, an ErrorResponse document); every other request is passed to moto unchanged.
struct StsProxy {
    endpoint: String,
    stop: Arc<AtomicBool>,
}

impl StsProxy {
    fn start(moto: &Moto, denied: &str) -> StsProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let upstream = moto.endpoint.trim_start_matches("http://").to_owned();
        let denied = denied.to_owned();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !flag.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (upstream, denied) = (upstream.clone(), denied.clone());
                        std::thread::spawn(move || proxy(conn, &upstream, &denied));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        StsProxy { endpoint, stop }
    }
}

impl Drop for StsProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn proxy(conn: TcpStream, upstream: &str, denied: &str) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(&conn);
    let mut head = String::new();
    if reader.read_line(&mut head).is_err() {
        return;
    }
    let mut length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
        let name = header.split(':').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = header
                .split_once(':')
                .map_or(0, |(_, v)| v.trim().parse().unwrap_or(0));
        }
        // One request per connection, both ways.
        if !name.eq_ignore_ascii_case("connection") {
            head.push_str(&header);
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let text = String::from_utf8_lossy(&body);
    let mut out = &conn;
    if text.contains("Action=AssumeRole") && text.contains(denied) {
        let payload = format!(
            r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: arn:aws:iam::{ACCOUNT}:user/auditor is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::{denied}:role/trailwarden-audit</Message></Error><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ErrorResponse>"#
        );
        let _ = write!(
            out,
            "HTTP/1.1 403 Forbidden\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
            payload.len()
        );
        return;
    }
    let Ok(mut moto) = TcpStream::connect(upstream) else {
        return;
    };
    head.push_str("Connection: close\r\n\r\n");
    let mut answer = Vec::new();
    if moto.write_all(head.as_bytes()).is_ok()
        && moto.write_all(&body).is_ok()
        && moto.read_to_end(&mut answer).is_ok()
    {
        let _ = out.write_all(&answer);
    }
}

/// An organization of the moto account and two members created in it; returns their ids.
async fn organization_of_two(moto: &Moto) -> (String, String) {
    let sdk = moto.sdk().await;
    let org = aws_sdk_organizations::Client::new(&sdk);
    org.create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await
        .expect("organization");
    let mut ids = Vec::new();
    for name in ["workloads", "sandbox"] {
        let status = org
            .create_account()
            .account_name(name)
            .email(format!("{name}@example.com"))
            .send()
            .await
            .expect("create account")
            .create_account_status
            .expect("status");
        ids.push(status.account_id.expect("account id"));
    }
    (ids.remove(0), ids.remove(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_audit_enters_each_member_and_reports_the_one_it_cannot_enter() {
    use trailwarden::posture::aws::AwsMembers;
    use trailwarden::posture::organization::{MemberRole, audit_organization};

    let moto = Moto::start();
    let (workloads, sandbox) = organization_of_two(&moto).await;
    // In the workloads account only: a console user without MFA.
    let iam = aws_sdk_iam::Client::new(&moto.sdk_in(&workloads).await);
    iam.create_user()
        .user_name("mallory")
        .send()
        .await
        .expect("user");
    iam.create_login_profile()
        .user_name("mallory")
        .password("Correct-Horse-1")
        .send()
        .await
        .expect("login profile");

    let proxy = StsProxy::start(&moto, &sandbox);
    let sdk = moto.sdk().await;
    let mut members = AwsMembers::new(
        &sdk,
        MemberRole::parse("trailwarden-audit").expect("role"),
        None,
    );
    members.sts = aws_sdk_sts::Client::new(&sdk_at(&proxy.endpoint).await);
    let audits = audit_organization(
        &AwsAccount::new(&sdk),
        &members,
        &Settings::default(),
        Utc::now(),
    )
    .await
    .expect("organization audit");
    let mut order = vec![workloads.clone(), sandbox.clone()];
    order.sort();
    order.insert(0, ACCOUNT.to_owned());
    assert_eq!(
        audits.iter().map(|a| a.account.clone()).collect::<Vec<_>>(),
        order,
        "the management account first, then the members by id"
    );

    let management = &audits[0];
    assert!(
        passes(management, "user-without-mfa"),
        "mallory lives elsewhere"
    );
    assert!(
        management
            .results
            .iter()
            .all(|r| r.check.name != "audit-account-unreachable"),
        "the management account is read with the caller's own credentials"
    );

    let entered = audits
        .iter()
        .find(|a| a.account == workloads)
        .expect("workloads");
    assert_eq!(entered.results.len(), 16);
    assert_eq!(
        failing(entered, "user-without-mfa"),
        [format!("arn:aws:iam::{workloads}:user/mallory")]
    );
    assert!(entered.standing().all(|s| s.account == workloads));
    assert!(matches!(
        outcome(entered, "audit-account-unreachable"),
        Outcome::Pass { note: Some(n) } if *n == format!("entered as arn:aws:iam::{workloads}:role/trailwarden-audit")
    ));
    // The pass is in scope, so it resolves an earlier unreachable finding.
    let scope = entered.findings("posture:audit".into()).scope;
    assert!(
        scope
            .iter()
            .any(|s| s.check == "audit-account-unreachable" && s.account == workloads)
    );

    let refused = audits
        .iter()
        .find(|a| a.account == sandbox)
        .expect("sandbox");
    assert_eq!(refused.results.len(), 1, "nothing else could be read");
    assert_eq!(
        failing(refused, "audit-account-unreachable"),
        std::slice::from_ref(&sandbox)
    );
    let why = evidence(refused, "audit-account-unreachable");
    assert_eq!(
        why,
        format!(
            "cannot enter {sandbox} as arn:aws:iam::{sandbox}:role/trailwarden-audit: sts:AssumeRole failed: AccessDenied: User: arn:aws:iam::{ACCOUNT}:user/auditor is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::{sandbox}:role/trailwarden-audit"
        )
    );
    let found = refused.findings("posture:audit".into());
    assert_eq!(found.standing[0].level, trailwarden::finding::Level::Medium);
    assert!(found.standing[0].next_steps[0].contains("audit-member-role.yaml"));
    // Only the unreachable check is in scope: the account's other findings stay as they were.
    assert_eq!(found.scope.len(), 1);

    // The command: grouped by account, a summary per account and one for the organization.
    let out = audit_command(&["--organization", "--account-role", "trailwarden-audit"])
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ENDPOINT_URL_STS", &proxy.endpoint)
        .output()
        .expect("run audit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let headings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("== account "))
        .collect();
    assert_eq!(
        headings,
        order
            .iter()
            .map(|a| format!("== account {a} =="))
            .collect::<Vec<_>>()
    );
    assert!(
        stdout.contains(&format!(
            "FAIL            medium        audit-account-unreachable         1 finding: The posture audit can enter every member account of the organization\n    {sandbox}: cannot enter {sandbox}"
        )),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!("audit of {sandbox} (us-east-1)"))
            && stderr.contains(
                ": 1 checks: 0 pass, 1 fail (1 finding: 1 medium), 0 could not be checked"
            )
            && stderr.contains("3 accounts audited, 3 with failing checks"),
        "{stderr}"
    );
    // A role that is neither a name nor an ARN is a usage error; so is a role without
    // --organization.
    let out = audit_command(&["--organization", "--account-role", "not a role"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--account-role"));
    let out = audit_command(&["--account-role", "trailwarden-audit"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}
