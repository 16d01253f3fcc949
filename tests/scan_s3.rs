//! `trailwarden scan s3://...` against moto server: an organization trail's key tree of two
//! accounts, two regions and five days; the time range, account and region pick exactly the
//! objects they should, only the day prefixes in range are listed, and the alerts match a
//! local scan of the same files.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use aws_sdk_s3::primitives::ByteStream;
use futures_util::StreamExt;
use serde_json::{Value, json};
use support::{Moto, log_file, record, role, root_login_in};

const BUCKET: &str = "org-trail-logs";
const PREFIX: &str = "org-trail/AWSLogs/o-abc123defg";
const ACCOUNTS: [&str; 2] = ["111122223333", "444455556666"];
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
const DAYS: [u32; 5] = [1, 2, 3, 4, 5];
const FILES_PER_DAY: u32 = 10;
/// Objects in the layout: 2 accounts × 2 regions × 5 days × 10 files.
const IN_LAYOUT: usize = 200;

/// Every object of the tree, key → body. Each day prefix holds ten files, one record each at
/// 09:00, 10:00, ... of that day; the first is a root sign-in (one alert), the others are
/// benign. Account 1's us-east-1 also signs in as root at 23:58 on 3 November, delivered in
/// that day's last file. Beside the layout: a digest, an ELB log and a stray file, whose root
/// sign-ins are dated October so that no range below includes them.
fn tree() -> Vec<(String, Vec<u8>)> {
    let mut objects = Vec::new();
    for account in ACCOUNTS {
        for region in REGIONS {
            for day in DAYS {
                for file in 0..FILES_PER_DAY {
                    let hour = 9 + file;
                    let time = format!("2026-11-{day:02}T{hour:02}:00:00Z");
                    let id = format!("{account}-{region}-{day}-{file}");
                    let mut records = vec![if file == 0 {
                        root_login_in(&format!("root-{id}"), account)
                    } else {
                        record(&id, "ec2.amazonaws.com", "DescribeInstances", role())
                    }];
                    if account == ACCOUNTS[0]
                        && region == REGIONS[0]
                        && day == 3
                        && file == FILES_PER_DAY - 1
                    {
                        records.push(root_login_in("late-root-login", account));
                        records[1]["eventTime"] = json!("2026-11-03T23:58:00Z");
                    }
                    for r in &mut records {
                        r["awsRegion"] = json!(region);
                        if r["eventTime"] == "2026-11-20T09:03:11Z" {
                            r["eventTime"] = json!(time);
                        }
                    }
                    let key = format!(
                        "{PREFIX}/{account}/CloudTrail/{region}/2026/11/{day:02}/{account}_CloudTrail_{region}_202611{day:02}T{hour:02}00Z_f{file}.json.gz"
                    );
                    objects.push((key, log_file(&records)));
                }
            }
        }
    }
    let october = |id: &str| {
        let mut r = root_login_in(id, ACCOUNTS[1]);
        r["eventTime"] = json!("2026-10-15T08:00:00Z");
        log_file(&[r])
    };
    objects.push((
        format!("{PREFIX}/{a}/CloudTrail-Digest/us-east-1/2026/11/02/{a}_CloudTrail-Digest_us-east-1_t_us-east-1_20261102T100000Z.json.gz", a = ACCOUNTS[0]),
        log_file(&[]),
    ));
    objects.push((format!("{PREFIX}/elb/x.json.gz"), october("elb-root")));
    objects.push((
        "org-trail/notes/stray.json.gz".into(),
        october("stray-root"),
    ));
    objects
}

/// Objects outside the layout that a selection counts: the ELB log and the stray file.
const OUTSIDE: u64 = 2;

struct Fixture {
    moto: Moto,
    dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let moto = Moto::start();
    let sdk = moto.sdk().await;
    let s3 = support::bucket(&sdk, BUCKET).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let objects = tree();
    for (key, body) in &objects {
        let path = dir.path().join(key);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, body).expect("write");
    }
    futures_util::stream::iter(objects)
        .map(|(key, body)| {
            let s3 = s3.clone();
            async move {
                s3.put_object()
                    .bucket(BUCKET)
                    .key(key)
                    .body(ByteStream::from(body))
                    .send()
                    .await
                    .expect("put object");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    Fixture { moto, dir }
}

impl Fixture {
    fn scan(&self, path: &str, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_trailwarden"))
            .arg("scan")
            .args(args)
            .arg(path)
            .env("AWS_ENDPOINT_URL", &self.moto.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("run scan");
        assert!(
            out.status.success(),
            "scan {path} {args:?}: {}",
            stderr(&out)
        );
        out
    }

    fn s3(&self, args: &[&str]) -> Output {
        self.scan(&format!("s3://{BUCKET}/org-trail/"), args)
    }

    fn local(&self, args: &[&str]) -> Output {
        self.scan(&self.dir.path().display().to_string(), args)
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// (rule, event_id) of every alert, whatever file it came from.
fn alerts(out: &Output) -> BTreeSet<(String, String)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .map(|a| {
            (
                a["rule"].as_str().unwrap_or("").to_owned(),
                a["event_id"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn root_logins(out: &Output) -> BTreeSet<String> {
    alerts(out)
        .into_iter()
        .filter(|(rule, _)| rule == "root-console-login")
        .map(|(_, id)| id)
        .collect()
}

/// The number before `label` in the summary, e.g. `files: 80 read` → 80 for "read".
fn count(out: &Output, label: &str) -> u64 {
    let err = stderr(out);
    let at = err
        .find(label)
        .unwrap_or_else(|| panic!("{label:?} not in the summary: {err}"));
    err[..at]
        .trim_end()
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number before {label:?}: {err}"))
}

/// The root sign-ins a selection should report: the 09:00 one of every day prefix chosen,
/// and the 23:58 one when its day is.
fn expected(accounts: &[&str], regions: &[&str], days: &[u32]) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for account in accounts {
        for region in regions {
            for day in days {
                ids.insert(format!("root-{account}-{region}-{day}-0"));
                if *account == ACCOUNTS[0] && *region == REGIONS[0] && *day == 3 {
                    ids.insert("late-root-login".into());
                }
            }
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_accounts_and_regions_list_only_their_day_prefixes() {
    let f = fixture().await;

    // Without a selection, every object under the prefix is read, as a local scan reads
    // every file: the same alerts.
    let all = f.s3(&["--quiet"]);
    assert_eq!(count(&all, "read,"), IN_LAYOUT as u64 + OUTSIDE);
    assert_eq!(count(&all, "skipped,"), 1, "the digest");
    assert_eq!(alerts(&all), alerts(&f.local(&[])));
    assert!(root_logins(&all).contains("stray-root"));

    // Two days given as dates: --to a date runs through the end of that day. Only the eight
    // day prefixes in range are listed (2 accounts × 2 regions × 2 days); the rest of the
    // walk is one delimiter listing each for org-trail/, notes/, AWSLogs/, the organization,
    // the two accounts and their two CloudTrail/ folders, and one count of elb/.
    let days = f.s3(&["--from", "2026-11-02", "--to", "2026-11-03"]);
    assert_eq!(count(&days, "read,"), 80, "{}", stderr(&days));
    assert_eq!(count(&days, "day prefixes"), 8);
    assert_eq!(count(&days, "prefixes ("), 8 + 9);
    assert_eq!(
        count(&days, "objects outside CloudTrail's key layout"),
        OUTSIDE
    );
    assert_eq!(root_logins(&days), expected(&ACCOUNTS, &REGIONS, &[2, 3]));
    let local_days = f.local(&["--from", "2026-11-02", "--to", "2026-11-03"]);
    assert_eq!(alerts(&days), alerts(&local_days));

    // The same range as times ending at midnight: the 4th's prefixes are not listed.
    let midnight = f.s3(&[
        "--from",
        "2026-11-02T00:00:00Z",
        "--to",
        "2026-11-04T00:00:00Z",
    ]);
    assert_eq!(count(&midnight, "read,"), 80);
    assert_eq!(count(&midnight, "day prefixes"), 8);
    assert_eq!(alerts(&midnight), alerts(&days));

    // A range starting mid-day lists that day but reports only the records from then on.
    let evening = f.s3(&[
        "--from",
        "2026-11-03T12:00:00Z",
        "--to",
        "2026-11-04T00:00:00Z",
    ]);
    assert_eq!(count(&evening, "read,"), 40);
    assert_eq!(count(&evening, "day prefixes"), 4);
    assert_eq!(
        root_logins(&evening),
        BTreeSet::from(["late-root-login".to_owned()])
    );
    assert_eq!(count(&evening, "alerts outside the time range"), 4);

    // One account and one region: the other account is never walked.
    let one = f.s3(&[
        "--account",
        ACCOUNTS[1],
        "--region",
        "eu-west-1",
        "--from",
        "2026-11-04",
        "--to",
        "2026-11-05",
        "--s3-concurrency",
        "3",
    ]);
    assert_eq!(count(&one, "read,"), 20);
    assert_eq!(count(&one, "day prefixes"), 2);
    assert_eq!(
        root_logins(&one),
        expected(&[ACCOUNTS[1]], &["eu-west-1"], &[4, 5])
    );

    // Accounts and regions alone, without a range: each chosen region is listed whole.
    let regions = f.s3(&[
        "--region",
        "us-east-1",
        "--region",
        "eu-west-1",
        "--account",
        ACCOUNTS[0],
    ]);
    assert_eq!(count(&regions, "read,"), 100);
    assert_eq!(count(&regions, "day prefixes"), 0);
    assert_eq!(
        root_logins(&regions),
        expected(&[ACCOUNTS[0]], &REGIONS, &DAYS)
    );
}

#[test]
fn a_range_applies_to_local_files_and_must_not_be_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut before = root_login_in("before", ACCOUNTS[0]);
    before["eventTime"] = json!("2026-11-01T23:59:59Z");
    let mut inside = root_login_in("inside", ACCOUNTS[0]);
    inside["eventTime"] = json!("2026-11-02T00:00:00Z");
    let file = dir.path().join("f.json.gz");
    std::fs::write(&file, log_file(&[before, inside])).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_trailwarden"))
        .args(["scan", "--from", "2026-11-02"])
        .arg(&file)
        .output()
        .expect("run scan");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(root_logins(&out), BTreeSet::from(["inside".to_owned()]));

    let backwards = Command::new(env!("CARGO_BIN_EXE_trailwarden"))
        .args([
            "scan",
            "--from",
            "2026-11-02",
            "--to",
            "2026-11-01T00:00:00Z",
        ])
        .arg(Path::new(&file))
        .output()
        .expect("run scan");
    assert_eq!(backwards.status.code(), Some(2), "{}", stderr(&backwards));
}

/// Alerts come out in the same order whatever the threads and GetObjects in flight: local
/// inputs first, then the objects of a prefix read whole in S3's key order. A listing that
/// fails takes its place in that order too, and never holds the output up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_objects_print_in_listing_order_whatever_the_threads() {
    let f = fixture().await;
    let local = tempfile::tempdir().expect("tempdir");
    let file = local.path().join("local.json");
    std::fs::write(
        &file,
        serde_json::to_vec(&root_login_in("local-first", ACCOUNTS[1])).expect("json"),
    )
    .expect("write");
    let run = |args: &[&str], paths: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_trailwarden"))
            .arg("scan")
            .arg("--quiet")
            .args(args)
            .args(paths)
            .env("AWS_ENDPOINT_URL", &f.moto.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("run scan")
    };
    let prefix = format!("s3://{BUCKET}/org-trail/");
    let file = file.display().to_string();
    let serial = run(
        &["--threads", "1", "--s3-concurrency", "1"],
        &[&prefix, &file],
    );
    assert!(serial.status.success(), "{}", stderr(&serial));
    let ids: Vec<String> = String::from_utf8_lossy(&serial.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("alert"))
        .filter(|a| a["rule"] == "root-console-login")
        .map(|a| a["event_id"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(ids.first().map(String::as_str), Some("local-first"));
    assert_eq!(ids.len(), 1 + root_logins(&f.s3(&["--quiet"])).len());
    for _ in 0..3 {
        let parallel = run(
            &["--threads", "8", "--s3-concurrency", "32"],
            &[&prefix, &file],
        );
        assert!(parallel.status.success(), "{}", stderr(&parallel));
        assert_eq!(
            String::from_utf8_lossy(&parallel.stdout),
            String::from_utf8_lossy(&serial.stdout)
        );
    }

    // A bucket that is not there, walked for one account: its listing fails in its turn,
    // after the local file's alerts, and the scan ends with 1. (Read whole, a prefix that
    // lists nothing is a usage error instead, as an empty directory is.)
    let missing = run(
        &["--threads", "4", "--account", ACCOUNTS[0]],
        &[&file, "s3://no-such-bucket/AWSLogs/"],
    );
    assert_eq!(missing.status.code(), Some(1), "{}", stderr(&missing));
    assert!(
        String::from_utf8_lossy(&missing.stdout).contains("local-first"),
        "{}",
        stderr(&missing)
    );
}
