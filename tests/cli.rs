//! The binary's start-up refusals and its offline checks: a daemon that cannot work exits 2
//! at once, naming what to fix; `validate` names every problem; `rules test` runs users' cases.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// `trailwarden run` with valid settings, no credentials anywhere the SDK's chain looks
/// (environment, empty config and credentials files, IMDS off), and `extra` on top.
fn run_daemon(home: &Path, extra: &[(&str, &str)]) -> Output {
    let empty = home.join("empty");
    std::fs::write(&empty, "").expect("empty file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trailwarden"));
    cmd.arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", &empty)
        .env("AWS_SHARED_CREDENTIALS_FILE", &empty)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .env("TRAILWARDEN_QUEUE_URL", "http://127.0.0.1:9/q")
        .env(
            "TRAILWARDEN_TOPIC_ARN",
            "arn:aws:sns:us-east-1:111122223333:alerts",
        )
        .env("TRAILWARDEN_ALLOWED_BUCKETS", "trail")
        .env("TRAILWARDEN_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("TRAILWARDEN_AWS_IP_RANGES_URL", "false")
        .env("TRAILWARDEN_HEALTH_LISTEN", "127.0.0.1:0")
        .env("TRAILWARDEN_LOG_FORMAT", "json");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.output().expect("run trailwarden")
}

#[test]
fn no_credentials_exits_2_at_once_naming_where_it_looked() {
    let home = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let out = run_daemon(home.path(), &[]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}: {stderr}");
    for source in [
        "no AWS credentials found",
        "environment variables",
        "shared config and credentials files",
        "web identity token",
        "ECS container credentials endpoint",
        "EC2 instance metadata",
    ] {
        assert!(stderr.contains(source), "{source}: {stderr}");
    }
    assert!(!stderr.contains("retrying"), "{stderr}");
}

#[test]
fn a_rule_that_fails_to_load_stops_the_daemon_unless_allowed() {
    let home = tempfile::tempdir().expect("tempdir");
    let rules = home.path().join("rules");
    std::fs::create_dir(&rules).expect("rules dir");
    std::fs::write(
        rules.join("quiet-terraform.yml"),
        "title: Quiet Terraform\nlogsource: {product: aws, service: cloudtrail}\nfilter:\n  rules: [acess-key-created]\n  selection:\n    userIdentity.arn|startswith: 'arn:aws:sts::111122223333:assumed-role/terraform/'\n  condition: not selection\n",
    )
    .expect("write filter");
    let dir = rules.to_str().expect("utf-8 path");
    let out = run_daemon(home.path(), &[("TRAILWARDEN_RULE_DIRS", dir)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("quiet-terraform.yml") && stderr.contains("acess-key-created"),
        "{stderr}"
    );
    assert!(stderr.contains("allow_rule_errors"), "{stderr}");

    // Allowed, it goes on to its next check (here: the credentials it does not have).
    let out = run_daemon(
        home.path(),
        &[
            ("TRAILWARDEN_RULE_DIRS", dir),
            ("TRAILWARDEN_ALLOW_RULE_ERRORS", "true"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rule failed to load"), "{stderr}");
    assert!(stderr.contains("no AWS credentials found"), "{stderr}");
}

/// A user's rule and its YAML test file side by side: the rule loads (the test file is not
/// taken for a rule), each case prints one line, and a failing case is exit code 1.
#[test]
fn rules_test_runs_a_users_yaml_cases_beside_their_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("deny-all-bucket.yml"),
        "title: Bucket policy denies everyone\nname: deny-all-bucket\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n  selection:\n    eventName: PutBucketPolicy\n    requestParameters.bucketName: prod-data\n  condition: selection\nlevel: high\n",
    )
    .expect("write rule");
    let case = |name: &str, bucket: &str, fires: &str| {
        format!(
            "  - name: {name}\n    fires: {fires}\n    record:\n      eventVersion: '1.08'\n      eventID: {name}\n      eventTime: '2026-11-20T10:00:00Z'\n      eventSource: s3.amazonaws.com\n      eventName: PutBucketPolicy\n      awsRegion: us-east-1\n      requestParameters: {{bucketName: {bucket}}}\n"
        )
    };
    let mut text = "rule: deny-all-bucket\ncases:\n".to_owned();
    text += &case("prod-changed", "prod-data", "true");
    text += &case("other-bucket", "scratch", "false");
    std::fs::write(dir.path().join("deny-all-bucket.test.yml"), &text).expect("write test");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_trailwarden"))
            .args(["rules", "test"])
            .arg(dir.path())
            .output()
            .expect("run trailwarden")
    };
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("PASS prod-changed"), "{stdout}");

    text += &case("wrong-expectation", "scratch", "true");
    std::fs::write(dir.path().join("deny-all-bucket.test.yml"), &text).expect("write test");
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL wrong-expectation: deny-all-bucket did not fire"),
        "{stdout}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("3 cases in 1 files: 2 passed, 1 failed")
    );
}

/// `validate`: every settings problem named with its key and line, a field typo named with its
/// rule, file and line (a warning, an error under --strict), and the exit codes.
#[test]
fn validate_names_every_problem_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("trailwarden.toml");
    std::fs::write(
        &config,
        "queue_url = \"https://sqs.us-east-1.amazonaws.com/111122223333/q\"\n\
         topic_arn = \"arn:aws:sns:us-east-1:111122223333:alerts\"\n\
         allowed_buckets = [\"trail\"]\nworkers = \"four\"\nmin_level = \"hgih\"\n",
    )
    .expect("write config");
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).expect("rules dir");
    std::fs::write(
        rules.join("root-typo.yml"),
        "title: Root calls\nname: root-typo\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n  selection:\n    userIdentity.tpye: Root\n  condition: selection\nlevel: high\n",
    )
    .expect("write rule");
    let validate = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_trailwarden"))
            .arg("validate")
            .args(args)
            .env_clear()
            .output()
            .expect("run trailwarden")
    };
    let config_arg = config.to_str().expect("utf-8");
    let rules_arg = rules.to_str().expect("utf-8");
    let out = validate(&["--config", config_arg, "--rules", rules_arg]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with("error: setting workers (")
            && lines[0]
                .ends_with("line 4): expected a whole number, 0 or more, got the string \"four\""),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("error: setting min_level (") && lines[1].contains("line 5)"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("warning: ")
            && lines[2].ends_with(
                "root-typo.yml:6: rule root-typo: `userIdentity.tpye`: `userIdentity` has no field `tpye`; did you mean `type`?"
            ),
        "{stdout}"
    );

    // A filter naming a rule that is not loaded: named by file and line.
    let bad = dir.path().join("bad-rules");
    std::fs::create_dir(&bad).expect("dir");
    std::fs::write(
        bad.join("quiet.yml"),
        "# Silences CI.\ntitle: Quiet CI\nlogsource: {product: aws, service: cloudtrail}\nfilter:\n  rules: [acess-key-created]\n  selection:\n    userIdentity.arn|startswith: 'arn:aws:sts::111122223333:assumed-role/ci/'\n  condition: not selection\n",
    )
    .expect("write filter");
    let out = validate(&["--rules", bad.to_str().expect("utf-8")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("quiet.yml:2: rule \"Quiet CI\": filter names rule \"acess-key-created\", which is not loaded"),
        "{stdout}"
    );

    // Rules alone: a warning passes, --strict fails on it.
    let out = validate(&["--rules", rules_arg]);
    assert_eq!(out.status.code(), Some(0));
    let out = validate(&["--rules", rules_arg, "--strict"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("error: "));

    // The shipped example passes.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/trailwarden.toml");
    let out = validate(&["--config", example, "--strict"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `validate --online` runs the daemon's start-up checks against the resources and stops:
/// it passes against a real (emulated) stack and names the setting whose resource is missing.
#[tokio::test(flavor = "multi_thread")]
async fn validate_online_checks_the_resources_without_starting() {
    let moto = support::Moto::start();
    let stack = support::Stack::create(&moto, 3).await;
    let validate = |topic: &str| {
        Command::new(env!("CARGO_BIN_EXE_trailwarden"))
            .args(["validate", "--online"])
            .env_clear()
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("TRAILWARDEN_ENDPOINT_URL", &moto.endpoint)
            .env("TRAILWARDEN_QUEUE_URL", &stack.queue_url)
            .env("TRAILWARDEN_TOPIC_ARN", topic)
            .env("TRAILWARDEN_ALLOWED_BUCKETS", &stack.bucket)
            .output()
            .expect("run trailwarden")
    };
    let out = validate(&stack.topic_arn);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("online: credentials, queue, every output and the state table answered")
    );
    let missing = format!("{}-missing", stack.topic_arn);
    let out = validate(&missing);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("error: setting topic_arn:"), "{stdout}");
}

/// `--version` names the commit; completions and the man page come from the same parser.
#[test]
fn version_completions_and_man_page() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_trailwarden"))
            .args(args)
            .output()
            .expect("run trailwarden");
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let version = run(&["--version"]);
    let commit = version
        .trim()
        .strip_prefix(concat!("trailwarden ", env!("CARGO_PKG_VERSION"), " ("))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{version}"));
    assert!(
        commit == "unknown commit"
            || commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
        "{version}"
    );
    let bash = run(&["completions", "bash"]);
    assert!(
        bash.contains("_trailwarden()") && bash.contains("validate"),
        "{bash}"
    );
    let man = run(&["man"]);
    assert!(
        man.contains(".TH trailwarden 1") && man.contains("rules"),
        "{man}"
    );
}
