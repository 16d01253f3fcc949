//! A record plus what we know about our own accounts, buckets and AWS's addresses → fields
//! under `trailwarden.` that Sigma cannot compute: comparisons of a policy's principals with
//! our accounts, of a request's user with the caller, of an address with AWS's ranges.
//!
//! [`Derived`] wraps any [`Event`] and answers every other field from it. A derived field is
//! computed only when a rule reads it, once per record, so records no candidate rule reads
//! them for pay nothing. Each flag is present (as `true`) only when it holds, so `: true` and
//! `|exists: true` match the same records. The builtin rules use `|exists: true`: rsigma's
//! candidate index then gates them on their event names, not on a derived field, and never
//! derives anything for records of other calls.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rsigma_eval::event::{Event, EventValue};
use serde_json::Value;

use super::ip_ranges::{AwsIpRanges, IpRangesError, SharedIpRanges, is_public};
use super::policy::{self, Grants, PolicySource};

/// The reserved prefix of derived fields.
pub const PREFIX: &str = "trailwarden.";

/// The derived fields' names, after [`PREFIX`]: what `Derived::derive` answers.
pub const FIELDS: &[&str] = &[
    "foreignAccounts",
    "grantsAnyone",
    "namesAnyone",
    "allowsEverything",
    "actsOnOtherUser",
    "trailBucket",
    "instanceSession",
    "sourceOutsideAws",
];

/// What derivation knows beyond the record: given once to the rule set, shared by every
/// record.
#[derive(Debug, Clone, Default)]
pub struct Derivation {
    /// Accounts that are ours besides the record's own (sorted, for binary search).
    trusted_accounts: Vec<String>,
    /// Buckets that hold our CloudTrail logs.
    trail_buckets: Vec<String>,
    /// AWS's published ranges, when a list was loaded; the daemon replaces it when AWS
    /// publishes a newer one.
    ip_ranges: SharedIpRanges,
}

impl Derivation {
    /// `trusted_accounts` must be 12-digit account ids (the settings and flags check them).
    pub fn new(
        trusted_accounts: impl IntoIterator<Item = String>,
        trail_buckets: impl IntoIterator<Item = String>,
        ip_ranges: Option<AwsIpRanges>,
    ) -> Derivation {
        let mut trusted_accounts: Vec<String> = trusted_accounts.into_iter().collect();
        trusted_accounts.sort_unstable();
        trusted_accounts.dedup();
        Derivation {
            trusted_accounts,
            trail_buckets: trail_buckets.into_iter().collect(),
            ip_ranges: SharedIpRanges::new(ip_ranges),
        }
    }

    /// Loads the AWS IP ranges file, when one is named.
    pub fn load_ip_ranges(path: Option<&Path>) -> Result<Option<AwsIpRanges>, IpRangesError> {
        path.map(AwsIpRanges::load).transpose()
    }

    /// The AWS IP ranges the rules read, for the refresher that replaces them.
    pub fn shared_ip_ranges(&self) -> &SharedIpRanges {
        &self.ip_ranges
    }

    fn trusts(&self, account: &str) -> bool {
        self.trusted_accounts
            .binary_search_by(|a| a.as_str().cmp(account))
            .is_ok()
    }
}

/// An event with the derived fields of [`Derivation`] added under [`PREFIX`].
pub struct Derived<'e, E: ?Sized> {
    event: &'e E,
    ctx: &'e Derivation,
    /// The grants of the policy the call set, parsed once for every field that reads it.
    grants: OnceCell<Option<Grants>>,
    /// The AWS IP ranges list, taken once per record when a field or summary first reads it,
    /// so the alert names the list the rule was evaluated with.
    ranges: OnceCell<Option<Arc<AwsIpRanges>>>,
}

impl<'e, E: Event + ?Sized> Derived<'e, E> {
    pub fn new(event: &'e E, ctx: &'e Derivation) -> Self {
        Derived {
            event,
            ctx,
            grants: OnceCell::new(),
            ranges: OnceCell::new(),
        }
    }

    /// The AWS IP ranges this record is checked against, if a list is loaded.
    pub fn ip_ranges(&self) -> Option<&AwsIpRanges> {
        self.ranges
            .get_or_init(|| self.ctx.ip_ranges.current())
            .as_deref()
    }

    /// The record the fields are derived from.
    pub fn event(&self) -> &'e E {
        self.event
    }

    fn text(&self, path: &str) -> Option<Cow<'_, str>> {
        match self.event.get_field(path)? {
            EventValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The record's own account: `recipientAccountId`, else the caller's.
    fn own_account(&self) -> Option<Cow<'_, str>> {
        self.text("recipientAccountId")
            .or_else(|| self.text("userIdentity.accountId"))
    }

    /// The grants of the trust or resource policy the call set, if it set one.
    pub fn grants(&self) -> Option<&Grants> {
        self.grants
            .get_or_init(|| {
                let source = policy::source(&self.text("eventSource")?, &self.text("eventName")?)?;
                let field = |path: &str| self.event.get_field(path).map(json);
                let request = |key: &str| field(&format!("requestParameters.{key}"));
                match source {
                    PolicySource::Document(key) => {
                        Some(policy::grants(&*policy::document(&request(key)?)?))
                    }
                    PolicySource::TopicAttribute => {
                        let name = request("attributeName")?;
                        if name.as_str() != Some("Policy") {
                            return None;
                        }
                        Some(policy::grants(&*policy::document(&request(
                            "attributeValue",
                        )?)?))
                    }
                    PolicySource::LambdaPermission => {
                        Some(policy::lambda_grants(&field("requestParameters")?))
                    }
                }
            })
            .as_ref()
    }

    /// `trailwarden.foreignAccounts`: the accounts the policy grants that are neither the
    /// record's own nor trusted.
    pub fn foreign_accounts(&self) -> Vec<String> {
        let Some(grants) = self.grants() else {
            return Vec::new();
        };
        let own = self.own_account();
        grants
            .accounts
            .iter()
            .filter(|a| own.as_deref() != Some(a.as_str()) && !self.ctx.trusts(a))
            .cloned()
            .collect()
    }

    /// `trailwarden.actsOnOtherUser`: the request names an IAM user (`userName`) that is not
    /// the caller. Without one, IAM acts on the caller itself; a role or root naming a user
    /// always acts on another.
    fn acts_on_other_user(&self) -> bool {
        let Some(target) = self.text("requestParameters.userName") else {
            return false;
        };
        let caller_is_user = self.text("userIdentity.type").as_deref() == Some("IAMUser");
        // IAM user names are unique case-insensitively.
        let own = caller_is_user
            .then(|| self.text("userIdentity.userName"))
            .flatten();
        own.is_none_or(|own| !own.eq_ignore_ascii_case(&target))
    }

    /// `trailwarden.allowsEverything`: the identity policy the call sets
    /// (`requestParameters.policyDocument` of IAM's PutUserPolicy, PutGroupPolicy,
    /// PutRolePolicy, CreatePolicy and CreatePolicyVersion) allows every action on every
    /// resource. Read as JSON, so layout, key order and nested conditions do not matter.
    fn allows_everything(&self) -> bool {
        self.event
            .get_field("requestParameters.policyDocument")
            .map(json)
            .is_some_and(|logged| {
                policy::document(&logged).is_some_and(|doc| policy::allows_everything(&doc))
            })
    }

    /// `trailwarden.trailBucket`: the request's bucket holds our CloudTrail logs.
    fn trail_bucket(&self) -> bool {
        self.text("requestParameters.bucketName")
            .is_some_and(|b| self.ctx.trail_buckets.iter().any(|t| *t == b))
    }

    /// `trailwarden.instanceSession`: the instance id a role session is named after. EC2 names
    /// the sessions of an instance profile's role after the instance, `i-` and 8 or 17 hex
    /// digits.
    /// <https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_switch-role-ec2.html>
    pub fn instance_session(&self) -> Option<String> {
        if self.text("userIdentity.type").as_deref() != Some("AssumedRole") {
            return None;
        }
        let arn = self.text("userIdentity.arn")?;
        let session = arn.rsplit('/').next()?;
        let hex = session.strip_prefix("i-")?;
        let is_id = matches!(hex.len(), 8 | 17)
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        is_id.then(|| session.to_owned())
    }

    /// `trailwarden.sourceOutsideAws`: `sourceIPAddress` is a public address, and not in AWS's
    /// ranges when a list is loaded. Service names (`ec2.amazonaws.com`) are not addresses.
    pub fn source_outside_aws(&self) -> bool {
        let Some(ip) = self
            .text("sourceIPAddress")
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
        else {
            return false;
        };
        is_public(ip) && !self.ip_ranges().is_some_and(|r| r.contains(ip))
    }

    fn derive(&self, name: &str) -> Option<EventValue<'_>> {
        let flag = |holds: bool| holds.then_some(EventValue::Bool(true));
        match name {
            "foreignAccounts" => {
                let accounts = self.foreign_accounts();
                (!accounts.is_empty()).then(|| {
                    EventValue::Array(
                        accounts
                            .into_iter()
                            .map(|a| EventValue::Str(Cow::Owned(a)))
                            .collect(),
                    )
                })
            }
            "grantsAnyone" => flag(self.grants().is_some_and(|g| g.anyone)),
            "namesAnyone" => flag(self.grants().is_some_and(|g| g.names_anyone)),
            "allowsEverything" => flag(self.allows_everything()),
            "actsOnOtherUser" => flag(self.acts_on_other_user()),
            "trailBucket" => flag(self.trail_bucket()),
            "instanceSession" => self
                .instance_session()
                .map(|id| EventValue::Str(Cow::Owned(id))),
            "sourceOutsideAws" => flag(self.source_outside_aws()),
            _ => None,
        }
    }
}

/// An engine value as JSON, for policies logged as objects.
fn json(value: EventValue<'_>) -> Value {
    match value {
        EventValue::Str(s) => Value::String(s.into_owned()),
        EventValue::Int(n) => Value::from(n),
        EventValue::Float(f) => Value::from(f),
        EventValue::Bool(b) => Value::Bool(b),
        EventValue::Null => Value::Null,
        EventValue::Array(items) => Value::Array(items.into_iter().map(json).collect()),
        EventValue::Map(entries) => Value::Object(
            entries
                .into_iter()
                .map(|(k, v)| (k.into_owned(), json(v)))
                .collect(),
        ),
    }
}

impl<E: Event + ?Sized> Event for Derived<'_, E> {
    fn get_field(&self, path: &str) -> Option<EventValue<'_>> {
        match path.strip_prefix(PREFIX) {
            Some(name) => self.derive(name),
            None => self.event.get_field(path),
        }
    }

    fn any_string_value(&self, pred: &dyn Fn(&str) -> bool) -> bool {
        self.event.any_string_value(pred)
    }

    fn all_string_values(&self) -> Vec<Cow<'_, str>> {
        self.event.all_string_values()
    }

    fn visit_string_values(&self, visit: &mut dyn FnMut(&str)) {
        self.event.visit_string_values(visit)
    }

    fn to_json(&self) -> Value {
        self.event.to_json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsigma_eval::event::JsonEvent;
    use serde_json::json;

    fn ctx() -> Derivation {
        let ranges = AwsIpRanges::parse(
            br#"{"createDate":"2026-11-20-10-00-00","prefixes":[{"ip_prefix":"3.5.140.0/22"}]}"#,
            "ranges.json",
        )
        .expect("ranges");
        Derivation::new(
            ["444455556666".to_owned()],
            ["trail-logs".to_owned()],
            Some(ranges),
        )
    }

    fn field(record: &Value, name: &str) -> Option<Value> {
        let ctx = ctx();
        let event = JsonEvent::borrow(record);
        Derived::new(&event, &ctx)
            .get_field(&format!("{PREFIX}{name}"))
            .map(json)
    }

    fn trust(policy: Value) -> Value {
        json!({"eventSource": "iam.amazonaws.com", "eventName": "UpdateAssumeRolePolicy",
            "recipientAccountId": "111122223333",
            "requestParameters": {"roleName": "r", "policyDocument": policy}})
    }

    #[test]
    fn allows_everything_reads_the_identity_policy_as_json() {
        let put = |policy: &str| {
            json!({"eventSource": "iam.amazonaws.com", "eventName": "PutUserPolicy",
                "requestParameters": {"userName": "u", "policyName": "p", "policyDocument": policy}})
        };
        for everything in [
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#,
            r#"{"Statement":[{"Sid":"a","Effect":"Allow","Action":["s3:GetObject","*:*"],"Resource":["*"],"Condition":{"Bool":{"aws:SecureTransport":"true"}}}]}"#,
            // Form-encoded, as IAM logged policies until about 2019.
            "%7B%22Statement%22%3A+%5B%7B%22Effect%22%3A+%22Allow%22%2C+%22Action%22%3A+%22*%22%2C+%22Resource%22%3A+%22*%22%7D%5D%7D",
        ] {
            assert_eq!(
                field(&put(everything), "allowsEverything"),
                Some(json!(true)),
                "{everything}"
            );
        }
        for not in [
            r#"{"Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"arn:aws:s3:::b/*"},{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#,
            "not a policy",
        ] {
            assert_eq!(field(&put(not), "allowsEverything"), None, "{not}");
        }
    }

    #[test]
    fn foreign_accounts_leave_out_our_own_and_trusted_ones() {
        let policy = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::111122223333:root","444455556666","arn:aws:iam::999988887777:root"]},"Action":"sts:AssumeRole"}]}"#;
        assert_eq!(
            field(&trust(json!(policy)), "foreignAccounts"),
            Some(json!(["999988887777"]))
        );
        let ours = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:root"}}]}"#;
        assert_eq!(field(&trust(json!(ours)), "foreignAccounts"), None);
        assert_eq!(field(&trust(json!(ours)), "grantsAnyone"), None);
        assert_eq!(field(&trust(json!(ours)), "namesAnyone"), None);
        let anyone = r#"{"Statement":[{"Effect":"Allow","Principal":"*"}]}"#;
        assert_eq!(
            field(&trust(json!(anyone)), "grantsAnyone"),
            Some(json!(true))
        );
        let org_only = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":["*"]},"Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-abc"}}}]}"#;
        assert_eq!(field(&trust(json!(org_only)), "grantsAnyone"), None);
        assert_eq!(
            field(&trust(json!(org_only)), "namesAnyone"),
            Some(json!(true))
        );
    }

    #[test]
    fn policies_of_every_service_are_found() {
        let open = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"*"}]}"#;
        for (source, name, params) in [
            (
                "s3.amazonaws.com",
                "PutBucketPolicy",
                json!({"bucketName": "b", "bucketPolicy": serde_json::from_str::<Value>(open).expect("json")}),
            ),
            (
                "kms.amazonaws.com",
                "PutKeyPolicy",
                json!({"keyId": "k", "policyName": "default", "policy": open}),
            ),
            ("kms.amazonaws.com", "CreateKey", json!({"policy": open})),
            (
                "secretsmanager.amazonaws.com",
                "PutResourcePolicy",
                json!({"secretId": "s", "resourcePolicy": open}),
            ),
            (
                "sns.amazonaws.com",
                "SetTopicAttributes",
                json!({"topicArn": "t", "attributeName": "Policy", "attributeValue": open}),
            ),
            (
                "sns.amazonaws.com",
                "CreateTopic",
                json!({"name": "t", "attributes": {"Policy": open}}),
            ),
            (
                "sqs.amazonaws.com",
                "SetQueueAttributes",
                json!({"queueUrl": "q", "attributes": {"Policy": open}}),
            ),
            (
                "ecr.amazonaws.com",
                "SetRepositoryPolicy",
                json!({"repositoryName": "r", "policyText": open}),
            ),
            (
                "lambda.amazonaws.com",
                "AddPermission20150331v2",
                json!({"functionName": "f", "principal": "*", "action": "lambda:InvokeFunction"}),
            ),
        ] {
            let record =
                json!({"eventSource": source, "eventName": name, "requestParameters": params});
            assert_eq!(field(&record, "grantsAnyone"), Some(json!(true)), "{name}");
        }
        let other_attribute = json!({"eventSource": "sns.amazonaws.com", "eventName": "SetTopicAttributes",
            "requestParameters": {"attributeName": "DisplayName", "attributeValue": open}});
        assert_eq!(field(&other_attribute, "grantsAnyone"), None);
        let not_a_policy_call = json!({"eventSource": "iam.amazonaws.com", "eventName": "PutRolePolicy",
            "requestParameters": {"policyDocument": open}});
        assert_eq!(field(&not_a_policy_call, "grantsAnyone"), None);
    }

    #[test]
    fn acts_on_other_user() {
        let key = |identity: Value, params: Value| {
            json!({"eventSource": "iam.amazonaws.com", "eventName": "CreateAccessKey",
                "userIdentity": identity, "requestParameters": params})
        };
        let alice = json!({"type": "IAMUser", "userName": "alice"});
        assert_eq!(
            field(&key(alice.clone(), Value::Null), "actsOnOtherUser"),
            None
        );
        assert_eq!(
            field(
                &key(alice.clone(), json!({"userName": "Alice"})),
                "actsOnOtherUser"
            ),
            None
        );
        assert_eq!(
            field(&key(alice, json!({"userName": "bob"})), "actsOnOtherUser"),
            Some(json!(true))
        );
        let role = json!({"type": "AssumedRole", "arn": "arn:aws:sts::111122223333:assumed-role/admin/alice"});
        assert_eq!(
            field(&key(role, json!({"userName": "alice"})), "actsOnOtherUser"),
            Some(json!(true))
        );
    }

    #[test]
    fn trail_buckets_instances_and_addresses() {
        let bucket = |name: &str| json!({"requestParameters": {"bucketName": name}});
        assert_eq!(
            field(&bucket("trail-logs"), "trailBucket"),
            Some(json!(true))
        );
        assert_eq!(field(&bucket("other"), "trailBucket"), None);

        let session = |name: &str, ip: &str| {
            json!({"userIdentity": {"type": "AssumedRole",
                "arn": format!("arn:aws:sts::111122223333:assumed-role/web/{name}")},
                "sourceIPAddress": ip})
        };
        for id in ["i-0abc1234", "i-0123456789abcdef0"] {
            assert_eq!(field(&session(id, "x"), "instanceSession"), Some(json!(id)));
        }
        for not_id in ["i-0abc123", "i-0ABC1234", "alice", "i-0123456789abcdef"] {
            assert_eq!(
                field(&session(not_id, "x"), "instanceSession"),
                None,
                "{not_id}"
            );
        }
        let outside = |ip: &str| field(&session("i-0abc1234", ip), "sourceOutsideAws");
        assert_eq!(outside("198.51.100.7"), Some(json!(true)));
        assert_eq!(outside("3.5.141.10"), None, "in AWS's ranges");
        assert_eq!(outside("10.1.2.3"), None, "private");
        assert_eq!(
            outside("ec2.amazonaws.com"),
            None,
            "a service, not an address"
        );
    }

    #[test]
    fn without_ranges_every_public_address_is_outside() {
        let ctx = Derivation::default();
        let record = json!({"sourceIPAddress": "3.5.141.10"});
        let event = JsonEvent::borrow(&record);
        assert!(Derived::new(&event, &ctx).source_outside_aws());
    }

    #[test]
    fn other_fields_pass_through() {
        let record = json!({"eventName": "CreateRole", "trailwarden": {"x": 1}});
        let ctx = ctx();
        let event = JsonEvent::borrow(&record);
        let derived = Derived::new(&event, &ctx);
        assert_eq!(
            derived.get_field("eventName").map(json),
            Some(json!("CreateRole"))
        );
        assert_eq!(derived.get_field("trailwarden.unknown").map(json), None);
    }
}
