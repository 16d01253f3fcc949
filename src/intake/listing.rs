//! An S3 prefix and a selection (time range, accounts, regions) → the keys of the log objects
//! to read, streamed into a bounded channel as ListObjectsV2 pages arrive.
//!
//! Without a selection the whole prefix is listed, as `aws s3 ls --recursive` would. With one,
//! CloudTrail's key layout is walked with delimiter listings,
//! `[prefix/]AWSLogs/[o-xxxxxxxxxx/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/file.json.gz`
//! (<https://docs.aws.amazon.com/awscloudtrail/latest/userguide/get-and-view-cloudtrail-log-files.html>),
//! accounts and regions are discovered (or taken as given), and only the day prefixes inside
//! the range are listed, several at a time. Keys found beside the layout are counted, not read:
//! their dates are unknown, and reading them would mean reading everything.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::SourceError;
use crate::aws::{self, Edge};

/// ListObjectsV2 calls in flight at once while walking the layout.
pub const LIST_CONCURRENCY: usize = 16;

/// Event times `[from, to)`, UTC; either end may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl TimeRange {
    /// Whether a range was given at all.
    pub fn is_bounded(&self) -> bool {
        self.from.is_some() || self.to.is_some()
    }

    /// Whether an eventTime lies in the range. A missing or unparseable time is kept: an
    /// alert about a damaged file has none, and must not be hidden by a range.
    pub fn contains(&self, event_time: Option<&str>) -> bool {
        let Some(t) = event_time.and_then(|t| DateTime::parse_from_rfc3339(t).ok()) else {
            return true;
        };
        let t = t.with_timezone(&Utc);
        self.from.is_none_or(|from| t >= from) && self.to.is_none_or(|to| t < to)
    }

    /// Whether any instant of `day` (UTC) lies in the range.
    pub fn touches(&self, day: NaiveDate) -> bool {
        let start = day.and_time(NaiveTime::MIN).and_utc();
        let end = start + chrono::Duration::days(1);
        self.from.is_none_or(|from| from < end) && self.to.is_none_or(|to| to > start)
    }

    /// The first and last day (inclusive) that hold instants of the range; an open end is
    /// closed at `today`. `None` when `from` is open or the range is empty.
    fn days(&self, today: NaiveDate) -> Option<(NaiveDate, NaiveDate)> {
        let first = self.from?.date_naive();
        // `to` is exclusive: a range ending at midnight ends on the day before.
        let last = self.to.map_or(today, |to| {
            (to - chrono::Duration::nanoseconds(1)).date_naive()
        });
        (first <= last).then_some((first, last))
    }
}

/// `--from`: a date (`2026-11-01`, that day's first instant, UTC) or an RFC 3339 time.
pub fn parse_from(s: &str) -> Result<DateTime<Utc>, String> {
    parse_time(s, false)
}

/// `--to`, exclusive: a date means through the end of that day (the next day's midnight, UTC);
/// an RFC 3339 time is the first instant not included.
pub fn parse_to(s: &str) -> Result<DateTime<Utc>, String> {
    parse_time(s, true)
}

fn parse_time(s: &str, end_of_day: bool) -> Result<DateTime<Utc>, String> {
    if let Ok(day) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let day = if end_of_day {
            day.checked_add_days(Days::new(1))
                .ok_or_else(|| format!("{s:?} is out of range"))?
        } else {
            day
        };
        return Ok(day.and_time(NaiveTime::MIN).and_utc());
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            format!(
                "{s:?} is neither a date (2026-11-01) nor an RFC 3339 time (2026-11-01T09:30:00Z)"
            )
        })
}

/// Which objects under a prefix to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub range: TimeRange,
    /// Account ids; empty means every account found.
    pub accounts: Vec<String>,
    /// Region names; empty means every region found.
    pub regions: Vec<String>,
}

impl Selection {
    /// Whether the whole prefix is to be read.
    pub fn is_all(&self) -> bool {
        !self.range.is_bounded() && self.accounts.is_empty() && self.regions.is_empty()
    }
}

/// A key to read, with what the listing said of its object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    /// Bytes, for progress and totals.
    pub size: u64,
    /// The ETag without its quotes, as S3's event notifications spell it; empty if absent.
    pub etag: String,
    /// When the object was written (LastModified).
    pub modified: Option<DateTime<Utc>>,
}

/// What a listing did, counted as it goes.
#[derive(Debug, Default)]
pub struct ListStats {
    /// ListObjectsV2 requests (one per page).
    pub calls: AtomicU64,
    /// Prefixes listed (a prefix of several pages counts once).
    pub prefixes: AtomicU64,
    /// Of those, CloudTrail day prefixes (`.../REGION/YYYY/MM/DD/`).
    pub day_prefixes: AtomicU64,
    /// Keys sent to be read.
    pub objects: AtomicU64,
    /// Their sizes, in bytes.
    pub bytes: AtomicU64,
    /// Keys under the prefix outside CloudTrail's layout, not read (only with a selection).
    pub outside_layout: AtomicU64,
}

impl ListStats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Where a directory prefix sits in CloudTrail's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    /// Above `AWSLogs/`: a custom prefix may still lead to it.
    Above,
    /// `AWSLogs/`.
    Logs,
    /// `AWSLogs/o-xxxxxxxxxx/`.
    Org,
    /// `AWSLogs/[org/]ACCOUNT/`.
    Account(String),
    /// `.../ACCOUNT/CloudTrail/` or `CloudTrail-Insight/`.
    Product,
    /// `.../CloudTrail/REGION/`.
    Region(String),
    /// Inside a region's date folders (`.../REGION/2026/` and deeper).
    Dated,
    /// Digest files: hourly signatures that hold no records.
    Digest,
    /// Anything else.
    Outside,
}

/// Classifies a directory prefix (ending in `/`) by its segments.
fn level_of(dir: &str) -> Level {
    let segs: Vec<&str> = dir.trim_end_matches('/').split('/').collect();
    let Some(i) = segs.iter().rposition(|s| *s == "AWSLogs") else {
        return Level::Above;
    };
    let mut rest = &segs[i + 1..];
    if rest.is_empty() {
        return Level::Logs;
    }
    if rest[0].starts_with("o-") {
        rest = &rest[1..];
        if rest.is_empty() {
            return Level::Org;
        }
    }
    if !is_account(rest[0]) {
        return Level::Outside;
    }
    match rest {
        [account] => Level::Account((*account).to_owned()),
        [_, "CloudTrail-Digest", ..] => Level::Digest,
        [_, "CloudTrail" | "CloudTrail-Insight"] => Level::Product,
        [_, "CloudTrail" | "CloudTrail-Insight", region] => Level::Region((*region).to_owned()),
        [_, "CloudTrail" | "CloudTrail-Insight", _, dates @ ..]
            if dates.len() <= 3 && dates.iter().all(|d| d.bytes().all(|b| b.is_ascii_digit())) =>
        {
            Level::Dated
        }
        _ => Level::Outside,
    }
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// A log object key in the layout: its account, region and day.
pub fn place(key: &str) -> Option<(String, String, NaiveDate)> {
    let (dir, _) = key.rsplit_once('/')?;
    let segs: Vec<&str> = dir.split('/').collect();
    let i = segs.iter().rposition(|s| *s == "AWSLogs")?;
    let rest = &segs[i + 1..];
    let rest = match rest.first() {
        Some(org) if org.starts_with("o-") => &rest[1..],
        _ => rest,
    };
    match rest {
        [
            account,
            "CloudTrail" | "CloudTrail-Insight",
            region,
            y,
            m,
            d,
        ] if is_account(account) => {
            let day = NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)?;
            Some(((*account).to_owned(), (*region).to_owned(), day))
        }
        _ => None,
    }
}

/// One prefix to list.
#[derive(Debug)]
enum Job {
    /// List with delimiter `/` and go down the layout.
    Walk(String),
    /// List every key (no delimiter) and send those the selection wants.
    Keys { prefix: String, day: bool },
    /// List every key only to count them: they are outside the layout.
    Count(String),
}

/// Lists what `selection` wants under `s3://bucket/prefix` and sends each key on `tx`, until
/// the listing ends or the receiver is dropped. A failed listing is sent as an error and the
/// rest goes on; `today` closes a range without an end.
pub async fn stream(
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    selection: Arc<Selection>,
    today: NaiveDate,
    stats: Arc<ListStats>,
    tx: mpsc::Sender<Result<Listed, SourceError>>,
) {
    let lister = Arc::new(Lister {
        client,
        bucket,
        selection,
        today,
        stats,
        tx,
    });
    let mut pending: VecDeque<Job> = if lister.selection.is_all() {
        VecDeque::from([Job::Keys { prefix, day: false }])
    } else if prefix.is_empty() || prefix.ends_with('/') {
        // A prefix already inside the layout (an account, a region) starts at its level.
        match level_of(&prefix) {
            Level::Digest | Level::Outside => VecDeque::from([Job::Walk(prefix)]),
            _ => lister.next_job(&prefix).into(),
        }
    } else {
        VecDeque::from([Job::Walk(prefix)])
    };
    let mut running = JoinSet::new();
    loop {
        while running.len() < LIST_CONCURRENCY
            && let Some(job) = pending.pop_front()
        {
            running.spawn(lister.clone().run(job));
        }
        match running.join_next().await {
            None => break,
            Some(Ok(children)) => pending.extend(children),
            // A panicked listing task has already reported nothing more useful than this.
            Some(Err(e)) => tracing::error!(error = %e, "an S3 listing task failed"),
        }
    }
}

/// What every listing task shares.
struct Lister {
    client: aws_sdk_s3::Client,
    bucket: String,
    selection: Arc<Selection>,
    today: NaiveDate,
    stats: Arc<ListStats>,
    tx: mpsc::Sender<Result<Listed, SourceError>>,
}

impl Lister {
    /// Lists one prefix; returns the prefixes to list next.
    async fn run(self: Arc<Self>, job: Job) -> Vec<Job> {
        let (prefix, delimiter) = match &job {
            Job::Walk(p) => (p.as_str(), true),
            Job::Keys { prefix, .. } => (prefix.as_str(), false),
            Job::Count(p) => (p.as_str(), false),
        };
        ListStats::add(&self.stats.prefixes, 1);
        if matches!(job, Job::Keys { day: true, .. }) {
            ListStats::add(&self.stats.day_prefixes, 1);
        }
        let mut request = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix);
        if delimiter {
            request = request.delimiter("/");
        }
        let mut pages = request.into_paginator().send();
        let mut children = Vec::new();
        while let Some(page) = pages.next().await {
            ListStats::add(&self.stats.calls, 1);
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    let what = format!("S3 ListObjectsV2 s3://{}/{prefix}", self.bucket);
                    let failed = SourceError::S3(aws::failed(Edge::Object, &what, &e));
                    let _ = self.tx.send(Err(failed)).await;
                    break;
                }
            };
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                let listed = Listed {
                    key: key.to_owned(),
                    size: object.size().map_or(0, |s| u64::try_from(s).unwrap_or(0)),
                    etag: object.e_tag().unwrap_or("").trim_matches('"').to_owned(),
                    modified: object
                        .last_modified()
                        .and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
                };
                if !self.send_if_wanted(&job, listed).await {
                    return Vec::new();
                }
            }
            for dir in page.common_prefixes().iter().filter_map(|p| p.prefix()) {
                children.extend(self.next_job(dir));
            }
        }
        children
    }

    /// Sends or counts one listed key; false once nobody is receiving.
    async fn send_if_wanted(&self, job: &Job, listed: Listed) -> bool {
        let wanted = match job {
            Job::Count(_) => {
                ListStats::add(&self.stats.outside_layout, 1);
                return true;
            }
            Job::Keys { .. } if self.selection.is_all() => true,
            Job::Keys { .. } | Job::Walk(_) => match place(&listed.key) {
                Some((account, region, day)) => {
                    self.wants_account(&account)
                        && self.wants_region(&region)
                        && self.selection.range.touches(day)
                }
                None => {
                    ListStats::add(&self.stats.outside_layout, 1);
                    false
                }
            },
        };
        if !wanted {
            return true;
        }
        ListStats::add(&self.stats.objects, 1);
        ListStats::add(&self.stats.bytes, listed.size);
        self.tx.send(Ok(listed)).await.is_ok()
    }

    fn wants_account(&self, account: &str) -> bool {
        self.selection.accounts.is_empty() || self.selection.accounts.iter().any(|a| a == account)
    }

    fn wants_region(&self, region: &str) -> bool {
        self.selection.regions.is_empty() || self.selection.regions.iter().any(|r| r == region)
    }

    /// What to do with a directory a delimiter listing found.
    fn next_job(&self, dir: &str) -> Vec<Job> {
        match level_of(dir) {
            Level::Above | Level::Logs | Level::Org | Level::Product => {
                vec![Job::Walk(dir.to_owned())]
            }
            Level::Account(account) if self.wants_account(&account) => {
                vec![Job::Walk(dir.to_owned())]
            }
            Level::Region(region) if self.wants_region(&region) => self.region_jobs(dir),
            Level::Dated => vec![Job::Keys {
                prefix: dir.to_owned(),
                day: false,
            }],
            Level::Outside => vec![Job::Count(dir.to_owned())],
            Level::Account(_) | Level::Region(_) | Level::Digest => Vec::new(),
        }
    }

    /// A region's day prefixes in range, or the whole region when the range has no start.
    fn region_jobs(&self, dir: &str) -> Vec<Job> {
        let Some((first, last)) = self.selection.range.days(self.today) else {
            if self.selection.range.from.is_some() {
                return Vec::new(); // An empty range.
            }
            return vec![Job::Keys {
                prefix: dir.to_owned(),
                day: false,
            }];
        };
        first
            .iter_days()
            .take_while(|d| *d <= last)
            .map(|d| Job::Keys {
                prefix: format!("{dir}{}/", d.format("%Y/%m/%d")),
                day: true,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("day")
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(parse_from("2026-11-01"), Ok(t("2026-11-01T00:00:00Z")));
        assert_eq!(parse_to("2026-11-01"), Ok(t("2026-11-02T00:00:00Z")));
        assert_eq!(
            parse_to("2026-11-01T10:00:00+02:00"),
            Ok(t("2026-11-01T08:00:00Z"))
        );
        assert!(parse_from("yesterday").is_err());
    }

    #[test]
    fn a_range_ending_at_midnight_ends_the_day_before() {
        let range = TimeRange {
            from: Some(t("2026-11-01T12:00:00Z")),
            to: Some(t("2026-11-03T00:00:00Z")),
        };
        assert_eq!(
            range.days(day("2030-01-01")),
            Some((day("2026-11-01"), day("2026-11-02")))
        );
        assert!(!range.touches(day("2026-11-03")));
        assert!(range.touches(day("2026-11-01")));
        assert!(!range.contains(Some("2026-11-03T00:00:00Z")));
        assert!(range.contains(Some("2026-11-02T23:59:59Z")));
        assert!(!range.contains(Some("2026-11-01T11:59:59Z")));
        assert!(range.contains(None), "alerts without a time are kept");
        let open = TimeRange {
            from: Some(t("2026-11-01T00:00:00Z")),
            to: None,
        };
        assert_eq!(
            open.days(day("2026-11-04")),
            Some((day("2026-11-01"), day("2026-11-04")))
        );
    }

    #[test]
    fn layout_levels() {
        assert_eq!(level_of("logs/"), Level::Above);
        assert_eq!(level_of("logs/AWSLogs/"), Level::Logs);
        assert_eq!(level_of("AWSLogs/o-abc123defg/"), Level::Org);
        assert_eq!(
            level_of("AWSLogs/o-abc123defg/111122223333/"),
            Level::Account("111122223333".into())
        );
        assert_eq!(level_of("AWSLogs/111122223333/CloudTrail/"), Level::Product);
        assert_eq!(
            level_of("x/AWSLogs/111122223333/CloudTrail/eu-west-1/"),
            Level::Region("eu-west-1".into())
        );
        assert_eq!(
            level_of("AWSLogs/111122223333/CloudTrail/eu-west-1/2026/11/"),
            Level::Dated
        );
        assert_eq!(
            level_of("AWSLogs/111122223333/CloudTrail-Digest/"),
            Level::Digest
        );
        assert_eq!(level_of("AWSLogs/elb/"), Level::Outside);
        assert_eq!(
            place("AWSLogs/o-abc123defg/111122223333/CloudTrail/eu-west-1/2026/11/02/f.json.gz"),
            Some(("111122223333".into(), "eu-west-1".into(), day("2026-11-02")))
        );
        assert_eq!(
            place("AWSLogs/111122223333/CloudTrail/eu-west-1/f.json.gz"),
            None
        );
    }
}
