//! AWS's published ip-ranges.json → a sorted list of address ranges, to tell whether an
//! address belongs to AWS.
//!
//! The file has `syncToken`, `createDate`, `prefixes` (`ip_prefix`, `region`, `service`,
//! `network_border_group`) and `ipv6_prefixes` (`ipv6_prefix`, ...). Prefixes overlap (the
//! `AMAZON` service repeats every other service's), so they are merged into disjoint ranges
//! and a lookup is one binary search.
//! <https://docs.aws.amazon.com/vpc/latest/userguide/aws-ip-ranges.html>

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use ipnet::{Ipv4Net, Ipv6Net};
use serde::Deserialize;

/// The file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IpRangesError {
    #[error("cannot read AWS IP ranges {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("AWS IP ranges {path} is not AWS's ip-ranges.json format: {reason}")]
    Format { path: PathBuf, reason: String },
}

#[derive(Deserialize)]
struct File {
    #[serde(rename = "syncToken", default)]
    sync_token: Option<String>,
    #[serde(rename = "createDate", default)]
    create_date: Option<String>,
    prefixes: Vec<V4>,
    #[serde(default)]
    ipv6_prefixes: Vec<V6>,
}

#[derive(Deserialize)]
struct V4 {
    ip_prefix: String,
}

#[derive(Deserialize)]
struct V6 {
    ipv6_prefix: String,
}

/// AWS's address ranges, merged and sorted.
#[derive(Debug, Clone)]
pub struct AwsIpRanges {
    /// Disjoint, sorted, inclusive IPv4 ranges.
    v4: Vec<(u32, u32)>,
    /// Disjoint, sorted, inclusive IPv6 ranges.
    v6: Vec<(u128, u128)>,
    /// Which list this is, for alerts: where it came from, its `createDate` and `syncToken`.
    pub label: String,
    /// The list's `syncToken` (Unix seconds of its publication), which orders lists.
    pub sync_token: Option<u64>,
}

impl AwsIpRanges {
    /// Reads and parses an ip-ranges.json file.
    pub fn load(path: &Path) -> Result<AwsIpRanges, IpRangesError> {
        let text = std::fs::read(path).map_err(|source| IpRangesError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string()).map_err(|reason| IpRangesError::Format {
            path: path.to_owned(),
            reason,
        })
    }

    /// Parses the file's bytes; `name` says where they came from.
    pub fn parse(bytes: &[u8], name: &str) -> Result<AwsIpRanges, String> {
        let file: File = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let v4 =
            file.prefixes
                .iter()
                .map(|p| {
                    let net: Ipv4Net = p.ip_prefix.trim().parse().map_err(|_| {
                        format!("ip_prefix {:?} is not an IPv4 network", p.ip_prefix)
                    })?;
                    Ok((u32::from(net.network()), u32::from(net.broadcast())))
                })
                .collect::<Result<Vec<_>, String>>()?;
        let v6 = file
            .ipv6_prefixes
            .iter()
            .map(|p| {
                let net: Ipv6Net = p.ipv6_prefix.trim().parse().map_err(|_| {
                    format!("ipv6_prefix {:?} is not an IPv6 network", p.ipv6_prefix)
                })?;
                Ok((u128::from(net.network()), u128::from(net.broadcast())))
            })
            .collect::<Result<Vec<_>, String>>()?;
        if v4.is_empty() && v6.is_empty() {
            return Err("it lists no prefixes".to_owned());
        }
        let label = match (&file.create_date, &file.sync_token) {
            (Some(date), Some(token)) => format!("{name} (created {date}, syncToken {token})"),
            (Some(date), None) => format!("{name} (created {date})"),
            (None, Some(token)) => format!("{name} (syncToken {token})"),
            (None, None) => name.to_owned(),
        };
        Ok(AwsIpRanges {
            v4: merge(v4),
            v6: merge(v6),
            label,
            sync_token: file.sync_token.and_then(|t| t.trim().parse().ok()),
        })
    }

    /// Whether this list was published after `current`: its `syncToken` is greater. A list
    /// without a token cannot be ordered and is never newer; any list with one is newer than
    /// a start-up file without one.
    pub fn newer_than(&self, current: Option<&AwsIpRanges>) -> bool {
        match (self.sync_token, current.and_then(|c| c.sync_token)) {
            (Some(new), Some(old)) => new > old,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Whether AWS lists `ip` in one of its ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => within(&self.v4, u32::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => within(&self.v4, u32::from(v4)),
                None => within(&self.v6, u128::from(a)),
            },
        }
    }
}

/// The list the rules read, shared by the rule set and the daemon's refresher: one list at a
/// time, replaced whole, so a record is checked against one list from start to end. Reads
/// take no lock, and the refresher's swap never waits for them.
#[derive(Debug, Clone, Default)]
pub struct SharedIpRanges(Arc<ArcSwapOption<AwsIpRanges>>);

impl SharedIpRanges {
    pub fn new(ranges: Option<AwsIpRanges>) -> SharedIpRanges {
        SharedIpRanges(Arc::new(ArcSwapOption::from(ranges.map(Arc::new))))
    }

    /// The list in use now, if any.
    pub fn current(&self) -> Option<Arc<AwsIpRanges>> {
        self.0.load_full()
    }

    /// Makes `ranges` the list in use for every record read after this.
    pub fn replace(&self, ranges: AwsIpRanges) {
        self.0.store(Some(Arc::new(ranges)));
    }
}

/// Sorts inclusive ranges and joins the overlapping and adjacent ones.
fn merge<T: Ord + Copy + num::Step>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if last.1 >= start || last.1.next() == Some(start) => {
                last.1 = last.1.max(end);
            }
            _ => out.push((start, end)),
        }
    }
    out
}

fn within<T: Ord + Copy>(ranges: &[(T, T)], at: T) -> bool {
    // The first range starting after `at`; only the one before it can hold `at`.
    let after = ranges.partition_point(|&(start, _)| start <= at);
    after > 0 && ranges[after - 1].1 >= at
}

/// Integers that have a successor, for joining adjacent ranges.
mod num {
    pub trait Step: Sized {
        fn next(self) -> Option<Self>;
    }
    impl Step for u32 {
        fn next(self) -> Option<Self> {
            self.checked_add(1)
        }
    }
    impl Step for u128 {
        fn next(self) -> Option<Self> {
            self.checked_add(1)
        }
    }
}

/// Whether an address is public: not private, loopback, link-local, shared (CGNAT),
/// unspecified, broadcast, multicast or unique-local. Requests from such addresses reached
/// AWS through a VPC, not from the internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let [first, second, ..] = a.octets();
            let shared = first == 100 && (64..128).contains(&second);
            !(a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || shared)
        }
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                !(a.is_loopback()
                    || a.is_unspecified()
                    || a.is_multicast()
                    || a.is_unique_local()
                    || a.is_unicast_link_local())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RANGES: &str = r#"{"syncToken":"1","createDate":"2026-11-20-10-00-00","prefixes":[
        {"ip_prefix":"3.5.140.0/22","region":"ap-northeast-2","service":"AMAZON","network_border_group":"ap-northeast-2"},
        {"ip_prefix":"3.5.142.0/23","region":"ap-northeast-2","service":"S3","network_border_group":"ap-northeast-2"},
        {"ip_prefix":"3.5.144.0/24","region":"us-east-1","service":"EC2","network_border_group":"us-east-1"},
        {"ip_prefix":"52.94.0.0/22","region":"us-east-1","service":"AMAZON","network_border_group":"us-east-1"}],
        "ipv6_prefixes":[{"ipv6_prefix":"2600:1f18::/33","region":"us-east-1","service":"EC2","network_border_group":"us-east-1"}]}"#;

    #[test]
    fn finds_addresses_in_merged_ranges() {
        let ranges = AwsIpRanges::parse(RANGES.as_bytes(), "ranges.json").expect("ranges");
        assert_eq!(ranges.v4.len(), 2, "{:?}", ranges.v4);
        assert_eq!(
            ranges.label,
            "ranges.json (created 2026-11-20-10-00-00, syncToken 1)"
        );
        for inside in [
            "3.5.140.0",
            "3.5.143.255",
            "3.5.144.9",
            "52.94.3.255",
            "2600:1f18::1",
        ] {
            assert!(ranges.contains(inside.parse().expect("ip")), "{inside}");
        }
        for outside in [
            "3.5.139.255",
            "3.5.145.0",
            "52.94.4.0",
            "198.51.100.7",
            "2600:1f19::1",
        ] {
            assert!(!ranges.contains(outside.parse().expect("ip")), "{outside}");
        }
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let err = AwsIpRanges::parse(br#"{"prefixes":[{"ip_prefix":"3.5.140.0/33"}]}"#, "f")
            .expect_err("bad prefix");
        assert!(err.contains("3.5.140.0/33"), "{err}");
        assert!(AwsIpRanges::parse(br#"{"prefixes":[]}"#, "f").is_err());
        assert!(AwsIpRanges::parse(b"[]", "f").is_err());
    }

    #[test]
    fn lists_are_ordered_by_sync_token() {
        let list = |token: &str| {
            let text = format!(r#"{{{token}"prefixes":[{{"ip_prefix":"3.5.140.0/22"}}]}}"#);
            AwsIpRanges::parse(text.as_bytes(), "f").expect("ranges")
        };
        let (old, new, untokened) = (
            list(r#""syncToken":"1700000000","#),
            list(r#""syncToken":"1700086400","#),
            list(""),
        );
        assert!(new.newer_than(Some(&old)));
        assert!(!old.newer_than(Some(&new)));
        assert!(!old.newer_than(Some(&old)), "the same list is not newer");
        assert!(old.newer_than(Some(&untokened)) && old.newer_than(None));
        assert!(
            !untokened.newer_than(None),
            "a list without a token cannot be ordered"
        );
    }

    #[test]
    fn public_and_private_addresses() {
        for public in [
            "198.51.100.7",
            "8.8.8.8",
            "2001:db8::1",
            "::ffff:198.51.100.7",
        ] {
            assert!(is_public(public.parse().expect("ip")), "{public}");
        }
        for private in [
            "10.0.0.1",
            "172.16.3.4",
            "192.168.1.1",
            "100.64.0.1",
            "127.0.0.1",
            "169.254.169.254",
            "fd00::1",
            "fe80::1",
            "::1",
        ] {
            assert!(!is_public(private.parse().expect("ip")), "{private}");
        }
    }
}
