//! Posture audit benchmark against moto server: one account of AUDIT_USERS IAM users (2,000 by
//! default), mixed as real accounts are: a third with console passwords, half of those with
//! MFA, 0-2 access keys, half in a group, some with attached or inline policies.
//!
//! moto is a single Python process, so absolute times measure the emulator as much as us. The
//! comparison that means something is against a *floor* client in the same process and run: it
//! makes the same calls the audit makes (GenerateCredentialReport until COMPLETE,
//! GetCredentialReport, GetAccountSummary, GetAccountPasswordPolicy, GetAccountAuthorizationDetails
//! pages, DescribeTrails and each trail's status and selectors, ListAnalyzers,
//! DescribeOrganization, GetCallerIdentity), at the same concurrency, and does no work with the
//! answers. The audit is the library's `posture::audit` over the real SDK view. Both count their
//! calls per operation with the same SDK interceptor. The binary (`trailwarden audit --format
//! json`) runs too, under GNU time, for its peak RSS.
//!
//! Run: `cargo bench --bench audit` (needs moto_server, e.g. `.venv/bin` on PATH).
//! Knobs: AUDIT_USERS (default 2000), AUDIT_ROUNDS (default 3; each contender's best round).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aws_config::SdkConfig;
use aws_sdk_iam::types::{EntityType, ReportStateType};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use futures_util::StreamExt as _;
use support::{Moto, knob};
use trailwarden::posture::aws::AwsAccount;
use trailwarden::posture::{self, Settings};

/// Calls per operation, counted by every client of a contender.
#[derive(Debug, Clone, Default)]
struct Counter(Arc<Mutex<BTreeMap<String, u64>>>);

impl Intercept for Counter {
    fn name(&self) -> &'static str {
        "bench::Counter"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg.load::<Metadata>().map_or("unknown", |m| m.name());
        *self
            .0
            .lock()
            .expect("counter")
            .entry(operation.to_owned())
            .or_default() += 1;
        Ok(())
    }
}

impl Counter {
    fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.0.lock().expect("counter"))
    }
}

/// The audit's clients, each counting its calls.
fn counted(sdk: &SdkConfig, counter: &Counter) -> AwsAccount {
    let mut account = AwsAccount::new(sdk);
    account.iam = aws_sdk_iam::Client::from_conf(
        aws_sdk_iam::config::Builder::from(sdk)
            .interceptor(counter.clone())
            .build(),
    );
    account.cloudtrail = aws_sdk_cloudtrail::Client::from_conf(
        aws_sdk_cloudtrail::config::Builder::from(sdk)
            .interceptor(counter.clone())
            .build(),
    );
    // moto does not implement Access Analyzer and answers 500, which the SDK retries after a
    // random backoff of up to seconds: with retries, both sides would time that jitter rather
    // than their own work. One attempt each keeps the comparison about the audit.
    account.analyzer = aws_sdk_accessanalyzer::Client::from_conf(
        aws_sdk_accessanalyzer::config::Builder::from(sdk)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
            .interceptor(counter.clone())
            .build(),
    );
    account.organizations = aws_sdk_organizations::Client::from_conf(
        aws_sdk_organizations::config::Builder::from(sdk)
            .interceptor(counter.clone())
            .build(),
    );
    account.sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(sdk)
            .interceptor(counter.clone())
            .build(),
    );
    account
}

const READ_ONLY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:Get*","s3:List*"],"Resource":"*"}]}"#;

/// The account: `users` users of mixed kinds, a group, a customer managed policy, two trails.
async fn populate(sdk: &SdkConfig, users: usize) {
    let iam = aws_sdk_iam::Client::new(sdk);
    iam.create_group()
        .group_name("readers")
        .send()
        .await
        .expect("group");
    let policy = iam
        .create_policy()
        .policy_name("s3-read")
        .policy_document(READ_ONLY)
        .send()
        .await
        .expect("policy")
        .policy
        .and_then(|p| p.arn)
        .expect("policy arn");
    futures_util::stream::iter(0..users)
        .map(|i| {
            let (iam, policy) = (iam.clone(), policy.clone());
            async move {
                let name = format!("user-{i:05}");
                iam.create_user()
                    .user_name(&name)
                    .send()
                    .await
                    .expect("user");
                if i % 3 == 0 {
                    iam.create_login_profile()
                        .user_name(&name)
                        .password("Correct-Horse-1")
                        .send()
                        .await
                        .expect("login profile");
                }
                if i % 6 == 0 {
                    let serial = iam
                        .create_virtual_mfa_device()
                        .virtual_mfa_device_name(&name)
                        .send()
                        .await
                        .expect("mfa")
                        .virtual_mfa_device
                        .expect("device")
                        .serial_number;
                    iam.enable_mfa_device()
                        .user_name(&name)
                        .serial_number(serial)
                        .authentication_code1("123456")
                        .authentication_code2("654321")
                        .send()
                        .await
                        .expect("enable mfa");
                }
                for _ in 0..i % 3 {
                    iam.create_access_key()
                        .user_name(&name)
                        .send()
                        .await
                        .expect("key");
                }
                if i % 2 == 0 {
                    iam.add_user_to_group()
                        .group_name("readers")
                        .user_name(&name)
                        .send()
                        .await
                        .expect("membership");
                }
                if i % 5 == 0 {
                    iam.attach_user_policy()
                        .user_name(&name)
                        .policy_arn(&policy)
                        .send()
                        .await
                        .expect("attach");
                }
                if i % 7 == 0 {
                    iam.put_user_policy()
                        .user_name(&name)
                        .policy_name("inline")
                        .policy_document(READ_ONLY)
                        .send()
                        .await
                        .expect("inline");
                }
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    support::bucket(sdk, "trail-logs").await;
    let ct = aws_sdk_cloudtrail::Client::new(sdk);
    for (name, multi) in [("regional", false), ("everywhere", true)] {
        ct.create_trail()
            .name(name)
            .s3_bucket_name("trail-logs")
            .is_multi_region_trail(multi)
            .send()
            .await
            .expect("trail");
    }
}

/// The floor: the audit's calls at the audit's concurrency, answers dropped.
async fn floor(sdk: &SdkConfig, counter: &Counter) {
    let a = counted(sdk, counter);
    let report = async {
        loop {
            let out = a
                .iam
                .generate_credential_report()
                .send()
                .await
                .expect("generate");
            if out.state() == Some(&ReportStateType::Complete) {
                break;
            }
        }
        let _ = a.iam.get_credential_report().send().await.expect("report");
    };
    let grants = async {
        let mut pages = a
            .iam
            .get_account_authorization_details()
            .filter(EntityType::User)
            .filter(EntityType::LocalManagedPolicy)
            .max_items(1000)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let _ = page.expect("page");
        }
    };
    let trails = async {
        let ct = &a.cloudtrail;
        let out = a
            .cloudtrail
            .describe_trails()
            .include_shadow_trails(true)
            .send()
            .await
            .expect("trails");
        futures_util::stream::iter(out.trail_list().to_vec())
            .map(|t| async move {
                let arn = t.trail_arn().unwrap_or_default();
                let _ = tokio::join!(
                    ct.get_trail_status().name(arn).send(),
                    ct.get_event_selectors().trail_name(arn).send()
                );
            })
            .buffered(4)
            .collect::<Vec<()>>()
            .await;
    };
    let _ = a.sts.get_caller_identity().send().await.expect("identity");
    // Refusals and NoSuchEntity are answers too: moto implements neither Access Analyzer nor
    // an organization here, and the account has no password policy.
    let _ = tokio::join!(
        report,
        a.iam.get_account_summary().send(),
        a.iam.get_account_password_policy().send(),
        grants,
        trails,
        a.analyzer.list_analyzers().send(),
        a.organizations.describe_organization().send(),
    );
}

/// The binary's wall time and peak RSS (KiB) under GNU time.
fn binary(endpoint: &str) -> (f64, u64) {
    let started = Instant::now();
    let out = std::process::Command::new("/usr/bin/time")
        .args(["-f", "maxrss_kib=%M", env!("CARGO_BIN_EXE_trailwarden")])
        .args(["audit", "--format", "json"])
        .env_clear()
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("TRAILWARDEN_ENDPOINT_URL", endpoint)
        .output()
        .expect("run /usr/bin/time trailwarden audit");
    let elapsed = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "audit failed: {stderr}"
    );
    let rss = stderr
        .lines()
        .find_map(|l| l.strip_prefix("maxrss_kib="))
        .and_then(|v| v.trim().parse().ok())
        .expect("GNU time's maxrss");
    (elapsed, rss)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; anything else (e.g. `cargo test --benches`) only checks it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let users = knob("AUDIT_USERS", 2000);
    let rounds = knob("AUDIT_ROUNDS", 3);
    let moto = Moto::start();
    let sdk = moto.sdk().await;
    let started = Instant::now();
    populate(&sdk, users).await;
    eprintln!(
        "audit benchmark: {users} users created in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let (floor_calls, audit_calls) = (Counter::default(), Counter::default());
    let audited = counted(&sdk, &audit_calls);
    let mut best = [f64::MAX; 3];
    let mut calls = [BTreeMap::new(), BTreeMap::new()];
    let mut peak_rss = 0;
    let mut findings = 0;
    for round in 1..=rounds {
        let t = Instant::now();
        floor(&sdk, &floor_calls).await;
        let floor_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let audit = posture::audit(&audited, &Settings::default(), chrono::Utc::now())
            .await
            .expect("audit");
        let audit_s = t.elapsed().as_secs_f64();
        findings = audit.standing().count();
        let (binary_s, rss) = binary(&moto.endpoint);
        eprintln!(
            "round {round}: floor {floor_s:.2} s, audit {audit_s:.2} s, binary {binary_s:.2} s ({} MiB)",
            rss / 1024
        );
        calls = [floor_calls.take(), audit_calls.take()];
        for (b, s) in best.iter_mut().zip([floor_s, audit_s, binary_s]) {
            *b = b.min(s);
        }
        peak_rss = peak_rss.max(rss);
    }

    println!();
    println!("| contender | best of {rounds} | x the floor | calls | peak RSS |");
    println!("|---|---:|---:|---:|---:|");
    let total = |c: &BTreeMap<String, u64>| c.values().sum::<u64>();
    println!(
        "| floor (the audit's calls, no work) | {:.2} s | 1.00 | {} | |",
        best[0],
        total(&calls[0])
    );
    println!(
        "| posture::audit, {users} users ({findings} findings) | {:.2} s | **{:.2}** | {} | |",
        best[1],
        best[0] / best[1],
        total(&calls[1])
    );
    println!(
        "| trailwarden audit (the binary, process start included) | {:.2} s | {:.2} | | {:.1} MiB |",
        best[2],
        best[0] / best[2],
        peak_rss as f64 / 1024.0
    );
    println!();
    println!("| operation | floor calls | audit calls |");
    println!("|---|---:|---:|");
    let ops: std::collections::BTreeSet<&String> = calls[0].keys().chain(calls[1].keys()).collect();
    for op in ops {
        println!(
            "| {op} | {} | {} |",
            calls[0].get(op).copied().unwrap_or(0),
            calls[1].get(op).copied().unwrap_or(0)
        );
    }
    println!();
    println!(
        "audit / floor: {:.2}x (target >= 0.8x, i.e. the audit within the floor's time / 0.8)",
        best[0] / best[1]
    );
    println!(
        "reproduce: PATH=$PWD/.venv/bin:$PATH AUDIT_USERS={users} AUDIT_ROUNDS={rounds} cargo bench --bench audit"
    );
}
