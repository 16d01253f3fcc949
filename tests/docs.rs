//! The docs against the code: what they promise an operator must be what the code does.
//! (The log fields the READMEs name are checked against a running daemon in tests/daemon.rs.)

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every AWS service the daemon's code calls, through its SDK client crate or through
/// `aws::signed`, by the name of its VPC endpoint service (`com.amazonaws.<region>.<name>`).
fn services_called() -> Vec<&'static str> {
    let endpoints = [
        ("aws_sdk_s3", "s3"),
        ("aws_sdk_sqs", "sqs"),
        ("aws_sdk_sns", "sns"),
        ("aws_sdk_dynamodb", "dynamodb"),
        ("aws_sdk_sts", "sts"),
        ("aws_sdk_iam", "iam"),
        ("aws_sdk_cloudtrail", "cloudtrail"),
        ("aws_sdk_accessanalyzer", "access-analyzer"),
        ("aws_sdk_organizations", "organizations"),
        ("aws_sdk_secretsmanager", "secretsmanager"),
        ("aws_sdk_ssm", "ssm"),
        ("aws_sdk_securityhub", "securityhub"),
    ];
    let mut crates = std::collections::BTreeSet::new();
    for entry in walkdir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))) {
        let text = std::fs::read_to_string(&entry).expect("source");
        for (at, _) in text.match_indices("aws_sdk_") {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            crates.insert(name);
        }
        // The services called without an SDK client, through `aws::signed::Api::new(sdk,
        // "<signing name>", ...)`, count as that service's crate.
        for (at, _) in text.match_indices("Api::new(") {
            let args = &text[at..];
            let args = &args[..args.find(')').unwrap_or(args.len())];
            if let Some(name) = args.split('"').nth(1) {
                crates.insert(format!("aws_sdk_{}", name.replace('-', "")));
            }
        }
    }
    crates
        .iter()
        .map(|c| {
            endpoints
                .iter()
                .find(|(k, _)| k == c)
                .unwrap_or_else(|| {
                    panic!("{c}: add its VPC endpoint name to this test and the docs")
                })
                .1
        })
        .collect()
}

fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(walkdir(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

#[test]
fn every_aws_service_the_code_calls_has_its_vpc_endpoint_listed() {
    let guide = read("deploy/README.md");
    let start = guide
        .find("- A VPC with subnets for the task.")
        .expect("the VPC paragraph");
    let list = &guide[start..];
    let list = &list[..list.find("\n- ").expect("end of the paragraph")];
    let services = services_called();
    assert!(services.len() >= 9, "{services:?}");
    for service in services {
        assert!(
            list.contains(&format!("`{service}`")),
            "deploy/README.md's private-subnet endpoint list lacks `{service}`:\n{list}"
        );
    }
    let template = read("deploy/template.yaml");
    assert!(
        template.contains("S3, DynamoDB, SQS, SNS"),
        "SubnetIds description"
    );
}

/// examples/README.md's `rule` ×N counts are what `trailwarden scan examples/cloudtrail`
/// raises, every rule and no other.
#[test]
fn examples_readme_counts_match_the_scan() {
    let text = read("examples/README.md");
    let mut documented: BTreeMap<String, u64> = BTreeMap::new();
    for part in text.split('`').collect::<Vec<_>>().windows(2) {
        if let Some(count) = part[1].trim_start().strip_prefix('×') {
            let n: String = count.chars().take_while(char::is_ascii_digit).collect();
            documented.insert(part[0].to_owned(), n.parse().expect("a count"));
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_trailwarden"))
        .args(["scan", "--format", "json"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cloudtrail"))
        .output()
        .expect("run trailwarden");
    assert!(out.status.success());
    let mut raised: BTreeMap<String, u64> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let alert: serde_json::Value = serde_json::from_str(line).expect("json alert");
        *raised
            .entry(alert["rule"].as_str().expect("rule").to_owned())
            .or_default() += 1;
    }
    assert_eq!(documented, raised);
    let files = text.contains("12 gzipped log files") && text.contains("91 records");
    assert!(files, "file and record counts");
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(summary.starts_with("files: 12 read, 1 skipped, 0 failed; 91 records"));
}

#[test]
fn license_changelog_and_rust_log_are_there() {
    let license = read("LICENSE");
    assert!(
        license.contains("Apache License")
            && license.contains("Version 2.0, January 2004")
            && license.contains("END OF TERMS AND CONDITIONS"),
        "the Apache-2.0 text Cargo.toml declares"
    );
    assert!(read("Cargo.toml").contains("license = \"Apache-2.0\""));
    let changelog = read("CHANGELOG.md");
    assert!(changelog.contains(&format!("## {}", env!("CARGO_PKG_VERSION"))));
    assert!(read("README.md").contains("`RUST_LOG`"));
    let rust_version = read("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .map(|v| v.trim_end_matches('"').to_owned())
        .expect("rust-version in Cargo.toml");
    assert!(
        read("README.md").contains(&format!("Rust {rust_version} or newer")),
        "README states the minimum Rust version {rust_version}"
    );
}
