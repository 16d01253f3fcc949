//! Sigma YAML → the field names its rules read, each checked against the CloudTrail record
//! schema, so that a typo (`userIdentity.tpye`) is reported instead of a rule that loads and
//! never fires.
//!
//! The schema is AWS's documented record contents
//! (<https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html>)
//! and `userIdentity` element
//! (<https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-user-identity.html>).
//! `requestParameters`, `responseElements`, `additionalEventData`, `serviceEventDetails`,
//! `eventContext`, `insightDetails` and `edgeDeviceDetails` hold what each service and call
//! puts there, so names inside them are not checked. The derived fields (`trailwarden.*`) are
//! checked against [`super::derived::FIELDS`].

use super::derived;

/// A node of the record schema.
enum Node {
    /// A value with nothing below it.
    Leaf,
    /// An object whose inner names each service chooses.
    FreeForm,
    /// An object with documented fields.
    Object(&'static [(&'static str, Node)]),
}

use Node::{FreeForm, Leaf, Object};

const SESSION_ISSUER: &[(&str, Node)] = &[
    ("type", Leaf),
    ("principalId", Leaf),
    ("arn", Leaf),
    ("accountId", Leaf),
    ("userName", Leaf),
];

const SESSION_CONTEXT: &[(&str, Node)] = &[
    ("sessionIssuer", Object(SESSION_ISSUER)),
    (
        "webIdFederationData",
        Object(&[("federatedProvider", Leaf), ("attributes", FreeForm)]),
    ),
    (
        "attributes",
        Object(&[("creationDate", Leaf), ("mfaAuthenticated", Leaf)]),
    ),
    ("sourceIdentity", Leaf),
    ("ec2RoleDelivery", Leaf),
    ("assumedRoot", Leaf),
];

const USER_IDENTITY: &[(&str, Node)] = &[
    ("type", Leaf),
    ("principalId", Leaf),
    ("arn", Leaf),
    ("accountId", Leaf),
    ("accessKeyId", Leaf),
    ("userName", Leaf),
    ("invokedBy", Leaf),
    ("identityProvider", Leaf),
    ("credentialId", Leaf),
    ("sessionContext", Object(SESSION_CONTEXT)),
    (
        "onBehalfOf",
        Object(&[("userId", Leaf), ("identityStoreArn", Leaf)]),
    ),
    (
        "inScopeOf",
        Object(&[
            ("sourceArn", Leaf),
            ("sourceAccount", Leaf),
            ("issuerType", Leaf),
            ("credentialsIssuedTo", Leaf),
        ]),
    ),
];

/// The top level of a record.
const RECORD: &[(&str, Node)] = &[
    ("eventVersion", Leaf),
    ("userIdentity", Object(USER_IDENTITY)),
    ("eventTime", Leaf),
    ("eventSource", Leaf),
    ("eventName", Leaf),
    ("awsRegion", Leaf),
    ("sourceIPAddress", Leaf),
    ("userAgent", Leaf),
    ("errorCode", Leaf),
    ("errorMessage", Leaf),
    ("requestParameters", FreeForm),
    ("responseElements", FreeForm),
    ("additionalEventData", FreeForm),
    ("requestID", Leaf),
    ("eventID", Leaf),
    ("eventType", Leaf),
    ("apiVersion", Leaf),
    ("managementEvent", Leaf),
    ("readOnly", Leaf),
    (
        "resources",
        Object(&[("ARN", Leaf), ("accountId", Leaf), ("type", Leaf)]),
    ),
    ("recipientAccountId", Leaf),
    ("serviceEventDetails", FreeForm),
    ("sharedEventID", Leaf),
    ("vpcEndpointId", Leaf),
    ("vpcEndpointAccountId", Leaf),
    ("eventCategory", Leaf),
    (
        "addendum",
        Object(&[
            ("reason", Leaf),
            ("updatedFields", Leaf),
            ("originalRequestID", Leaf),
            ("originalEventID", Leaf),
        ]),
    ),
    ("sessionCredentialFromConsole", Leaf),
    ("edgeDeviceDetails", FreeForm),
    (
        "tlsDetails",
        Object(&[
            ("tlsVersion", Leaf),
            ("cipherSuite", Leaf),
            ("clientProvidedHostHeader", Leaf),
        ]),
    ),
    ("eventContext", FreeForm),
    ("insightDetails", FreeForm),
];

/// Why a field name cannot be in a CloudTrail record; `None` when it can.
pub fn unknown(field: &str) -> Option<String> {
    if let Some(name) = field.strip_prefix(derived::PREFIX) {
        return (!derived::FIELDS.contains(&name)).then(|| {
            format!(
                "`{field}` is not a derived field (they are trailwarden.{})",
                derived::FIELDS.join(", trailwarden.")
            )
        });
    }
    let mut node = &Object(RECORD);
    let mut path = String::new();
    for part in field.split('.') {
        match node {
            FreeForm => return None,
            Leaf => {
                return Some(format!("`{field}`: `{path}` holds a value, not fields"));
            }
            Object(children) => {
                let Some((_, child)) = children.iter().find(|(name, _)| *name == part) else {
                    let within = if path.is_empty() {
                        "a CloudTrail record".to_owned()
                    } else {
                        format!("`{path}`")
                    };
                    let near = children
                        .iter()
                        .find(|(name, _)| name.eq_ignore_ascii_case(part) || similar(name, part))
                        .map(|(name, _)| format!("; did you mean `{name}`?"))
                        .unwrap_or_default();
                    return Some(format!("`{field}`: {within} has no field `{part}`{near}"));
                };
                node = child;
            }
        }
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(part);
    }
    None
}

/// Two names of one length that differ by a swap of neighbours or one letter.
fn similar(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len() != b.len() {
        return false;
    }
    let diff: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
    match diff.as_slice() {
        [_] => true,
        [i, j] => *j == i + 1 && a[*i] == b[*j] && a[*j] == b[*i],
        _ => false,
    }
}

/// A field a rule reads that no CloudTrail record has.
#[derive(Debug, Clone)]
pub struct UnknownField {
    /// The file the rule came from (set by the loader; empty from [`unknown_fields`]).
    pub origin: String,
    /// The rule's name (or id, or title).
    pub rule: String,
    /// The field as the rule wrote it, without modifiers.
    pub field: String,
    /// The 1-based line of the source text where it appears first.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

impl std::fmt::Display for UnknownField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: rule {}: {}",
            self.origin, self.line, self.rule, self.reason
        )
    }
}

/// Every field the Sigma documents in `text` read that no CloudTrail record has. Documents
/// that do not parse are left to the loader, which reports them.
pub fn unknown_fields(text: &str) -> Vec<UnknownField> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for doc in yaml_serde::Deserializer::from_str(text) {
        let Ok(doc) = yaml_serde::Value::deserialize(doc) else {
            return out;
        };
        let name = ["name", "id", "title"]
            .iter()
            .find_map(|k| doc.get(k).and_then(|v| v.as_str()))
            .unwrap_or("(untitled)")
            .to_owned();
        let mut seen = Vec::new();
        for field in fields_read(&doc) {
            if seen.contains(&field) {
                continue;
            }
            if let Some(reason) = unknown(&field) {
                out.push(UnknownField {
                    origin: String::new(),
                    rule: name.clone(),
                    line: line_of(text, &field),
                    field: field.clone(),
                    reason,
                });
            }
            seen.push(field);
        }
    }
    out
}

/// The field names one Sigma document reads: detection and filter selections (modifiers
/// removed), a correlation's `group-by` and condition `field`, and `trailwarden.value_fields`.
pub fn fields_read(doc: &yaml_serde::Value) -> Vec<String> {
    let mut out = Vec::new();
    for section in ["detection", "filter"] {
        let Some(selections) = doc.get(section).and_then(|d| d.as_mapping()) else {
            continue;
        };
        for (key, selection) in selections {
            if matches!(key.as_str(), Some("condition" | "timeframe" | "rules")) {
                continue;
            }
            let maps: Vec<&yaml_serde::Mapping> = match selection {
                yaml_serde::Value::Mapping(m) => vec![m],
                yaml_serde::Value::Sequence(items) => {
                    items.iter().filter_map(|i| i.as_mapping()).collect()
                }
                _ => Vec::new(),
            };
            for map in maps {
                for key in map.keys().filter_map(|k| k.as_str()) {
                    let field = key.split('|').next().unwrap_or("");
                    if !field.is_empty() {
                        out.push(field.to_owned());
                    }
                }
            }
        }
    }
    if let Some(corr) = doc.get("correlation") {
        let strings = |v: Option<&yaml_serde::Value>| -> Vec<String> {
            match v {
                Some(yaml_serde::Value::String(s)) => vec![s.clone()],
                Some(yaml_serde::Value::Sequence(items)) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            }
        };
        out.extend(strings(corr.get("group-by")));
        out.extend(strings(corr.get("condition").and_then(|c| c.get("field"))));
    }
    if let Some(items) = doc
        .get(super::VALUE_FIELDS_ATTRIBUTE)
        .and_then(|v| v.as_sequence())
    {
        out.extend(items.iter().filter_map(|i| i.as_str().map(str::to_owned)));
    }
    out
}

/// The 1-based line where `field` first appears in `text` (1 when it does not).
fn line_of(text: &str, field: &str) -> usize {
    // A selection key (`field:` or `field|modifier:`, maybe a list item) first, then any
    // mention (a group-by list).
    let as_key = |line: &str| {
        let line = line.trim_start().trim_start_matches("- ").trim_start();
        line.strip_prefix(field)
            .is_some_and(|rest| rest.starts_with(':') || rest.starts_with('|'))
    };
    text.lines()
        .position(|line| as_key(line) && !line.starts_with(field))
        .or_else(|| text.lines().position(|line| line.contains(field)))
        .map_or(1, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_fields_pass_and_typos_are_named() {
        for ok in [
            "eventName",
            "userIdentity.type",
            "userIdentity.sessionContext.sessionIssuer.arn",
            "userIdentity.sessionContext.assumedRoot",
            "requestParameters.bucketName",
            "responseElements.ConsoleLogin",
            "additionalEventData.MFAUsed",
            "tlsDetails.clientProvidedHostHeader",
            "resources.ARN",
            "trailwarden.foreignAccounts",
        ] {
            assert_eq!(unknown(ok), None, "{ok}");
        }
        let typo = unknown("userIdentity.tpye").expect("typo");
        assert_eq!(
            typo,
            "`userIdentity.tpye`: `userIdentity` has no field `tpye`; did you mean `type`?"
        );
        assert!(unknown("eventname").expect("case").contains("`eventName`"));
        assert!(
            unknown("eventName.value")
                .expect("leaf")
                .contains("holds a value")
        );
        assert!(
            unknown("trailwarden.foreignAccount")
                .expect("derived")
                .contains("not a derived field")
        );
    }

    #[test]
    fn fields_of_detections_filters_and_correlations() {
        let text = "title: T\nname: t\ndetection:\n  selection:\n    eventName: X\n    userIdentity.tpye|contains: Root\n  other:\n    - errorCode: A\n  keywords:\n    - plain\n  condition: selection\n---\ntitle: C\ncorrelation:\n  type: value_count\n  rules: [t]\n  group-by: [userIdentity.arn, recipientAcountId]\n  timespan: 5m\n  condition: {gte: 3, field: requestParameters.userName}\n";
        let unknown = unknown_fields(text);
        let found: Vec<(&str, &str, usize)> = unknown
            .iter()
            .map(|u| (u.rule.as_str(), u.field.as_str(), u.line))
            .collect();
        assert_eq!(
            found,
            [
                ("t", "userIdentity.tpye", 6),
                ("C", "recipientAcountId", 17)
            ]
        );
    }

    /// SigmaHQ's published CloudTrail rules, as the tests keep them: the schema knows what
    /// they read.
    #[test]
    fn sigmahq_rules_read_only_schema_fields() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sigmahq");
        let mut all = Vec::new();
        for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
            let entry = entry.expect("entry");
            if entry.path().extension().is_some_and(|e| e == "yml") {
                let text = std::fs::read_to_string(entry.path()).expect("rule");
                all.extend(unknown_fields(&text).into_iter().map(|u| {
                    format!(
                        "{}:{}: {}",
                        entry.file_name().to_string_lossy(),
                        u.line,
                        u.reason
                    )
                }));
            }
        }
        // Three published rules match on fields CloudTrail does not write (they come from
        // another log pipeline's normalisation), so as written they never fire.
        assert_eq!(
            all,
            [
                "aws_cloudtrail_console_login_without_mfa.yml:19: `status`: a CloudTrail record has no field `status`",
                "aws_cloudtrail_console_susp_login.yml:18: `status`: a CloudTrail record has no field `status`",
                "aws_cloudtrail_console_susp_login.yml:20: `src_country`: a CloudTrail record has no field `src_country`",
                "aws_cloudtrail_console_susp_login.yml:22: `src_ip`: a CloudTrail record has no field `src_ip`",
                "aws_delete_saml_provider.yml:22: `status`: a CloudTrail record has no field `status`",
            ]
        );
    }

    #[test]
    fn every_builtin_rule_reads_only_schema_fields() {
        for file in super::super::BUILTIN.files() {
            let text = String::from_utf8_lossy(file.contents());
            let unknown = unknown_fields(&text);
            assert!(
                unknown.is_empty(),
                "{}: {unknown:#?}",
                file.path().display()
            );
        }
    }
}
