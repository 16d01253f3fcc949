//! The IAM credential report (CSV bytes) → one [`Row`] per IAM user and one for root.
//!
//! Read leniently, as AWS writes it
//! (<https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_getting-report.html>):
//! columns are found by header name, so a column AWS adds or moves shifts nothing; the
//! placeholders `N/A` (no key, or a key never used), `no_information` (a password never used,
//! or not since tracking began) and `not_supported` (root's password columns) read as "no
//! value", never as an error. Only a report without the `user` and `arn` columns, or one the
//! CSV reader cannot split into records, is refused.

use chrono::{DateTime, Utc};

/// The `user` of the root user's row.
pub const ROOT_USER: &str = "<root_account>";

/// One row of the report: a user's (or root's) password, MFA and access keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The user name, or [`ROOT_USER`].
    pub user: String,
    /// The user's ARN; root's is `arn:aws:iam::<account>:root`.
    pub arn: String,
    /// When the user was created.
    pub created: Option<DateTime<Utc>>,
    /// Whether the user has a console password; `None` when AWS does not say (root's row
    /// reads `not_supported`).
    pub password_enabled: Option<bool>,
    /// When the password was last used to sign in; `None` when never, or not since AWS began
    /// tracking it.
    pub password_last_used: Option<DateTime<Utc>>,
    /// When the password was last set.
    pub password_last_changed: Option<DateTime<Utc>>,
    /// Whether an MFA device is assigned.
    pub mfa_active: bool,
    /// Access keys 1 and 2, in the report's order.
    pub keys: [Key; 2],
}

impl Row {
    /// Whether this is the root user's row.
    pub fn is_root(&self) -> bool {
        self.user == ROOT_USER
    }

    /// The access keys that are active.
    pub fn active_keys(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter().filter(|k| k.active)
    }
}

/// One access key slot of a row. The report names keys by slot, not by key id.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// 1 or 2.
    pub slot: u8,
    pub active: bool,
    /// When the key was created or last rotated.
    pub last_rotated: Option<DateTime<Utc>>,
    /// When the key was last used; `None` when never.
    pub last_used: Option<DateTime<Utc>>,
    /// The service the key last called, when AWS says.
    pub last_used_service: Option<String>,
}

/// A credential report that cannot be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReportError {
    #[error("the credential report has no `{0}` column")]
    MissingColumn(&'static str),
    #[error("the credential report is not CSV at line {line}: {message}")]
    Csv { line: u64, message: String },
}

/// Parses the report's CSV bytes.
pub fn parse(csv_bytes: &[u8]) -> Result<Vec<Row>, ReportError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(csv_bytes);
    let csv_error = |e: csv::Error| ReportError::Csv {
        line: e.position().map_or(0, |p| p.line()),
        message: e.to_string(),
    };
    let headers = reader.headers().map_err(csv_error)?.clone();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let user = column("user").ok_or(ReportError::MissingColumn("user"))?;
    let arn = column("arn").ok_or(ReportError::MissingColumn("arn"))?;
    let at = |name: &str| column(name);
    let cols = Columns {
        created: at("user_creation_time"),
        password_enabled: at("password_enabled"),
        password_last_used: at("password_last_used"),
        password_last_changed: at("password_last_changed"),
        mfa_active: at("mfa_active"),
        keys: [1u8, 2].map(|n| KeyColumns {
            active: at(&format!("access_key_{n}_active")),
            last_rotated: at(&format!("access_key_{n}_last_rotated")),
            last_used: at(&format!("access_key_{n}_last_used_date")),
            last_used_service: at(&format!("access_key_{n}_last_used_service")),
        }),
    };

    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        let field = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or("");
        let name = field(Some(user));
        if name.is_empty() {
            continue;
        }
        rows.push(Row {
            user: name.to_owned(),
            arn: field(Some(arn)).to_owned(),
            created: date(field(cols.created)),
            password_enabled: flag(field(cols.password_enabled)),
            password_last_used: date(field(cols.password_last_used)),
            password_last_changed: date(field(cols.password_last_changed)),
            mfa_active: flag(field(cols.mfa_active)).unwrap_or(false),
            keys: [0usize, 1].map(|i| {
                let c = &cols.keys[i];
                Key {
                    slot: i as u8 + 1,
                    active: flag(field(c.active)).unwrap_or(false),
                    last_rotated: date(field(c.last_rotated)),
                    last_used: date(field(c.last_used)),
                    last_used_service: text(field(c.last_used_service)),
                }
            }),
        });
    }
    Ok(rows)
}

/// Where each column is, when the report has it.
struct Columns {
    created: Option<usize>,
    password_enabled: Option<usize>,
    password_last_used: Option<usize>,
    password_last_changed: Option<usize>,
    mfa_active: Option<usize>,
    keys: [KeyColumns; 2],
}

struct KeyColumns {
    active: Option<usize>,
    last_rotated: Option<usize>,
    last_used: Option<usize>,
    last_used_service: Option<usize>,
}

/// A timestamp (ISO 8601, `+00:00`); any placeholder or unreadable value is no value.
fn date(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// `true` or `false`; anything else (`not_supported`, empty) is unknown.
fn flag(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Free text, with the placeholders read as no value.
fn text(s: &str) -> Option<String> {
    match s {
        "" | "N/A" | "no_information" | "not_supported" => None,
        s => Some(s.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated";

    fn at(s: &str) -> Option<DateTime<Utc>> {
        Some(
            DateTime::parse_from_rfc3339(s)
                .expect("date")
                .with_timezone(&Utc),
        )
    }

    #[test]
    fn reads_root_and_users_with_every_placeholder() {
        let csv = format!(
            "{HEADER}\n\
             <root_account>,arn:aws:iam::111122223333:root,2019-01-01T00:00:00+00:00,not_supported,2026-11-20T10:02:11+00:00,not_supported,not_supported,false,true,2020-03-04T05:06:07+00:00,2026-11-19T08:00:00+00:00,us-east-1,s3,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n\
             alice,arn:aws:iam::111122223333:user/alice,2024-01-02T03:04:05+00:00,true,no_information,2024-01-02T03:05:00+00:00,N/A,false,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n\
             svc,arn:aws:iam::111122223333:user/svc,2024-01-02T03:04:05+00:00,false,N/A,N/A,N/A,false,true,2024-01-02T03:04:06+00:00,N/A,N/A,N/A,true,2025-06-01T00:00:00+00:00,2026-11-01T00:00:00+00:00,eu-west-1,sqs,false,N/A,false,N/A\n"
        );
        let rows = parse(csv.as_bytes()).expect("parses");
        assert_eq!(rows.len(), 3);

        let root = &rows[0];
        assert!(root.is_root());
        assert_eq!(root.arn, "arn:aws:iam::111122223333:root");
        assert_eq!(root.password_enabled, None, "not_supported is unknown");
        assert_eq!(root.password_last_used, at("2026-11-20T10:02:11Z"));
        assert_eq!(root.password_last_changed, None);
        assert!(!root.mfa_active);
        assert!(root.keys[0].active);
        assert_eq!(root.keys[0].last_used, at("2026-11-19T08:00:00Z"));
        assert_eq!(root.keys[0].last_used_service.as_deref(), Some("s3"));
        assert!(!root.keys[1].active);
        assert_eq!(root.keys[1].last_rotated, None, "N/A is no value");

        let alice = &rows[1];
        assert!(!alice.is_root());
        assert_eq!(alice.password_enabled, Some(true));
        assert_eq!(alice.password_last_used, None, "no_information is never");
        assert_eq!(alice.created, at("2024-01-02T03:04:05Z"));
        assert_eq!(alice.active_keys().count(), 0);

        let svc = &rows[2];
        assert_eq!(svc.password_enabled, Some(false));
        assert_eq!(svc.active_keys().count(), 2);
        assert_eq!(svc.keys[0].last_used, None);
        assert_eq!(svc.keys[1].slot, 2);
        assert_eq!(svc.keys[1].last_used_service.as_deref(), Some("sqs"));
    }

    #[test]
    fn columns_are_found_by_name_and_missing_ones_read_as_absent() {
        // Columns moved, some missing, a new one added, and a short row.
        let csv = "arn,extra,user,mfa_active,access_key_1_active\n\
                   arn:aws:iam::1:user/bob,x,bob,true,true\n\
                   arn:aws:iam::1:user/eve,x,eve\n";
        let rows = parse(csv.as_bytes()).expect("parses");
        assert_eq!(rows[0].user, "bob");
        assert!(rows[0].mfa_active && rows[0].keys[0].active);
        assert_eq!(rows[0].password_enabled, None);
        assert_eq!(rows[1].user, "eve");
        assert!(!rows[1].mfa_active);
    }

    #[test]
    fn a_report_without_user_or_arn_is_refused() {
        let e = parse(b"name,arn\nbob,arn:aws:iam::1:user/bob\n").expect_err("no user");
        assert!(e.to_string().contains("`user`"), "{e}");
        let e = parse(b"user\nbob\n").expect_err("no arn");
        assert!(e.to_string().contains("`arn`"), "{e}");
        assert_eq!(
            parse(b"").map_err(|e| e.to_string()).err().as_deref(),
            Some("the credential report has no `user` column")
        );
    }

    #[test]
    fn bytes_that_are_not_text_are_an_error_naming_the_line() {
        let e =
            parse(b"user,arn\nbob,arn:aws:iam::1:user/bob\n\xff\xfe,x\n").expect_err("not UTF-8");
        assert!(matches!(e, ReportError::Csv { line: 3, .. }), "{e}");
    }
}
