//! `aws::signed`'s requests against moto server with its request authentication on
//! (`INITIAL_NO_AUTH_ACTION_COUNT`): after the set-up calls, moto recomputes every request's
//! SigV4 signature from the IAM user's secret key, as AWS does, and refuses one that does not
//! match. So the Security Hub output and the PagerDuty routing key read are checked end to end
//! with real signatures, not only against an emulator that ignores them.
//!
//! moto 5.2's check cannot pass a REST GET without a query: it signs the request's headers in
//! place of its empty body, so boto3's own DescribeHub fails it too. DescribeHub is therefore
//! made while authentication is still off; its signing is the same code as the POSTs'.

mod support;

use aws_config::SdkConfig;
use aws_sdk_ssm::types::ParameterType;
use support::Moto;
use trailwarden::aws::Fault;
use trailwarden::finding::accounts::AccountNames;
use trailwarden::finding::sink::{Message, Opened};
use trailwarden::finding::{Level, Standing};
use trailwarden::output::Output;
use trailwarden::output::pagerduty::routing_key;
use trailwarden::output::securityhub::{Home, Hub};
use trailwarden::telemetry::Metrics;

/// The unauthenticated calls: CreateUser, PutUserPolicy, CreateAccessKey, EnableSecurityHub
/// and DescribeHub.
const SET_UP_CALLS: &str = "5";

/// An SDK configuration with the given access key, at moto.
async fn as_user(moto: &Moto, id: &str, secret: &str) -> SdkConfig {
    moto.sdk()
        .await
        .to_builder()
        .credentials_provider(aws_sdk_sts::config::SharedCredentialsProvider::new(
            aws_sdk_sts::config::Credentials::new(id, secret, None, None, "user"),
        ))
        .build()
}

#[tokio::test]
async fn signed_calls_pass_moto_s_signature_check_and_a_bad_key_is_a_setting() {
    let moto = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", SET_UP_CALLS)]);
    let iam = aws_sdk_iam::Client::new(&moto.sdk().await);
    iam.create_user()
        .user_name("trailwarden")
        .send()
        .await
        .expect("CreateUser");
    iam.put_user_policy()
        .user_name("trailwarden")
        .policy_name("all")
        .policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
        )
        .send()
        .await
        .expect("PutUserPolicy");
    let key = iam
        .create_access_key()
        .user_name("trailwarden")
        .send()
        .await
        .expect("CreateAccessKey")
        .access_key
        .expect("access key");
    let sdk = as_user(&moto, &key.access_key_id, &key.secret_access_key).await;
    let metrics = Metrics::new();

    aws_sdk_securityhub::Client::new(&sdk)
        .enable_security_hub()
        .send()
        .await
        .expect("EnableSecurityHub");
    let home = Home {
        account: support::ACCOUNT.into(),
        region: "us-east-1".into(),
        partition: "aws".into(),
    };
    let hub = Hub::new(&sdk, home.clone(), &metrics);
    hub.check().await.expect("DescribeHub");

    // From here on every call is authenticated, the test's own SDK calls included.
    let standing = Standing {
        check: "user-without-mfa".into(),
        account: support::ACCOUNT.into(),
        resource: format!("arn:aws:iam::{}:user/alice", support::ACCOUNT),
        level: Level::Medium,
        title: "Every IAM user with a console password has MFA".into(),
        evidence: "alice has a console password and no MFA device".into(),
        next_steps: vec!["Have the user assign an MFA device".into()],
    };
    let opened = Message::finding(Opened {
        incident_id: "inc-signed",
        finding: &standing,
    });
    hub.deliver(&opened, &AccountNames::default())
        .await
        .expect("BatchImportFindings, signed by aws::signed");

    let secret = aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name("trailwarden/pagerduty")
        .secret_string("0123456789abcdef0123456789abcdef")
        .send()
        .await
        .expect("CreateSecret")
        .arn
        .expect("arn");
    assert_eq!(
        routing_key(&sdk, &secret, &metrics)
            .await
            .expect("GetSecretValue, signed by aws::signed"),
        "0123456789abcdef0123456789abcdef"
    );
    aws_sdk_ssm::Client::new(&sdk)
        .put_parameter()
        .name("/trailwarden/pagerduty")
        .value("fedcba9876543210fedcba9876543210")
        .r#type(ParameterType::SecureString)
        .send()
        .await
        .expect("PutParameter");
    let parameter = format!(
        "arn:aws:ssm:us-east-1:{}:parameter/trailwarden/pagerduty",
        support::ACCOUNT
    );
    assert_eq!(
        routing_key(&sdk, &parameter, &metrics)
            .await
            .expect("GetParameter, signed by aws::signed"),
        "fedcba9876543210fedcba9876543210"
    );

    // The right key id with a wrong secret: the signature does not match, which is a setting
    // (the task's credentials), never a refused message.
    let wrong = as_user(&moto, &key.access_key_id, "not-the-secret").await;
    let f = routing_key(&wrong, &parameter, &metrics)
        .await
        .expect_err("a bad signature is refused");
    assert_eq!(f.fault, Fault::Setting, "{}", f.sentence);
    assert!(
        f.sentence.contains("SignatureDoesNotMatch"),
        "{}",
        f.sentence
    );
    let f = Hub::new(&wrong, home, &metrics)
        .deliver(&opened, &AccountNames::default())
        .await
        .expect_err("a bad signature is refused");
    assert_eq!(f.fault, Fault::Setting, "{}", f.sentence);
    assert!(
        f.sentence.contains("SignatureDoesNotMatch"),
        "{}",
        f.sentence
    );
}
