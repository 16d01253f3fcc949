//! A trust or resource policy from a record's request → whom it lets in: anyone, and which
//! accounts.
//!
//! CloudTrail writes the policy a call set in many ways. IAM, KMS, Secrets Manager, SNS, SQS
//! and ECR log it as a JSON string (any layout; URL-encoded in older IAM records), S3 logs
//! `bucketPolicy` as an object, and Lambda's AddPermission has no policy at all, only a
//! `principal` and its source conditions. Principals are `"*"`, `{"AWS": ...}` with a string
//! or a list, and AWS principals are 12-digit account ids or ARNs.
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html>
//!
//! Only Allow statements grant. A `"*"` principal is narrowed, and so not "anyone", by a
//! condition on who the caller is or where the request comes from (the keys in
//! [`NARROWING_KEYS`]); accounts named in such conditions count as granted accounts.

use std::borrow::Cow;

use serde_json::Value;

/// Condition keys that limit a `"*"` principal to known callers: an organization, an account,
/// a principal or source ARN, an external id, a VPC or network, a KMS caller account.
/// Condition keys are case-insensitive; these are lower case.
/// <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html>
const NARROWING_KEYS: &[&str] = &[
    "aws:principalorgid",
    "aws:principalorgpaths",
    "aws:principalaccount",
    "aws:principalarn",
    "aws:sourceaccount",
    "aws:sourcearn",
    "aws:sourceowner",
    "aws:sourceorgid",
    "aws:sourceorgpaths",
    "aws:sourcevpce",
    "aws:sourcevpc",
    "aws:sourceip",
    "sts:externalid",
    "kms:calleraccount",
];

/// Condition keys whose values name accounts (as ids or inside ARNs).
const ACCOUNT_KEYS: &[&str] = &[
    "aws:principalaccount",
    "aws:principalarn",
    "aws:sourceaccount",
    "aws:sourcearn",
    "aws:sourceowner",
    "kms:calleraccount",
];

/// Whom a policy lets in.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Grants {
    /// An Allow statement names `"*"` (or `{"AWS": "*"}`) with no narrowing condition.
    pub anyone: bool,
    /// An Allow statement names `"*"` (or `{"AWS": "*"}`), narrowed by a condition or not.
    pub names_anyone: bool,
    /// Every account an Allow statement names, in a principal or a narrowing condition, in
    /// first-seen order without repeats.
    pub accounts: Vec<String>,
}

impl Grants {
    fn add_account(&mut self, account: &str) {
        if !self.accounts.iter().any(|a| a == account) {
            self.accounts.push(account.to_owned());
        }
    }
}

/// Where a call puts the policy it sets, by event source and name; `None` for calls that set
/// none.
pub enum PolicySource {
    /// A policy document at this path under `requestParameters`.
    Document(&'static str),
    /// SNS SetTopicAttributes: `attributeValue` when `attributeName` is `Policy`.
    TopicAttribute,
    /// Lambda AddPermission: `principal` and its source conditions.
    LambdaPermission,
}

/// The policy a call sets, if it is one of the trust or resource policy calls.
pub fn source(event_source: &str, event_name: &str) -> Option<PolicySource> {
    use PolicySource::*;
    Some(match (event_source, event_name) {
        ("iam.amazonaws.com", "UpdateAssumeRolePolicy") => Document("policyDocument"),
        ("iam.amazonaws.com", "CreateRole") => Document("assumeRolePolicyDocument"),
        ("s3.amazonaws.com", "PutBucketPolicy") => Document("bucketPolicy"),
        ("kms.amazonaws.com", "PutKeyPolicy" | "CreateKey") => Document("policy"),
        ("secretsmanager.amazonaws.com", "PutResourcePolicy") => Document("resourcePolicy"),
        ("sns.amazonaws.com", "SetTopicAttributes") => TopicAttribute,
        ("sns.amazonaws.com", "CreateTopic") => Document("attributes.Policy"),
        ("sqs.amazonaws.com", "SetQueueAttributes" | "CreateQueue") => {
            Document("attributes.Policy")
        }
        ("ecr.amazonaws.com", "SetRepositoryPolicy") => Document("policyText"),
        // Lambda's event names carry the API version, e.g. AddPermission20150331v2.
        ("lambda.amazonaws.com", name) if name.starts_with("AddPermission") => LambdaPermission,
        _ => return None,
    })
}

/// A policy as CloudTrail logged it: an object, or a JSON string (URL-encoded in older IAM
/// records). `None` when it is neither.
pub fn document(logged: &Value) -> Option<Cow<'_, Value>> {
    match logged {
        Value::Object(_) => Some(Cow::Borrowed(logged)),
        Value::String(text) => document_text(text).map(Cow::Owned),
        _ => None,
    }
}

/// A policy written as text: JSON, or URL-encoded JSON (IAM wrote policies form-encoded in
/// CloudTrail until about 2019, and returns them RFC 3986-encoded from its API).
pub fn document_text(text: &str) -> Option<Value> {
    let text = text.trim();
    if let Ok(v @ Value::Object(_)) = serde_json::from_str(text) {
        return Some(v);
    }
    // Form encoding: `+` for space, `%XX` escapes. A `+` RFC 3986 leaves as it is can only be
    // in a value, never in the JSON around it.
    let plus = text.replace('+', " ");
    let decoded = percent_encoding::percent_decode_str(&plus)
        .decode_utf8()
        .ok()?;
    match serde_json::from_str(&decoded) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
    }
}

/// Whether a policy document has a statement with Effect Allow, Action `*` and Resource `*`
/// (each a string or a list): every action on every resource. `*:*` is the same action
/// wildcard spelt with a service part.
pub fn allows_everything(policy: &Value) -> bool {
    let statements: &[Value] = match policy.get("Statement") {
        Some(Value::Array(list)) => list,
        Some(one @ Value::Object(_)) => std::slice::from_ref(one),
        _ => &[],
    };
    let has = |v: &Value, wildcards: &[&str]| match v {
        Value::String(s) => wildcards.contains(&s.as_str()),
        Value::Array(list) => list
            .iter()
            .any(|s| s.as_str().is_some_and(|s| wildcards.contains(&s))),
        _ => false,
    };
    statements.iter().any(|s| {
        s["Effect"].as_str() == Some("Allow")
            && has(&s["Action"], &["*", "*:*"])
            && has(&s["Resource"], &["*"])
    })
}

/// Whom a policy document's Allow statements let in.
pub fn grants(policy: &Value) -> Grants {
    let mut grants = Grants::default();
    let statements: &[Value] = match policy.get("Statement") {
        Some(Value::Array(list)) => list,
        Some(one @ Value::Object(_)) => std::slice::from_ref(one),
        _ => &[],
    };
    for statement in statements {
        let allows = statement
            .get("Effect")
            .and_then(Value::as_str)
            .is_some_and(|e| e.eq_ignore_ascii_case("allow"));
        if !allows {
            continue;
        }
        let narrowed = condition_accounts(statement.get("Condition"), &mut grants);
        // An Allow with NotPrincipal lets in everyone but the principals it names.
        let everyone_but = statement.get("NotPrincipal").is_some();
        let principal = statement.get("Principal");
        let mut names_anyone = everyone_but;
        for aws in principal.into_iter().flat_map(aws_principals) {
            match account_of(aws) {
                Some(account) => grants.add_account(account),
                None => names_anyone |= aws.trim() == "*",
            }
        }
        grants.names_anyone |= names_anyone;
        grants.anyone |= names_anyone && !narrowed;
    }
    grants
}

/// A Lambda AddPermission request: `principal` ("*", an account id or ARN, or a service) and
/// the `sourceArn`, `sourceAccount` and `principalOrgID` that narrow it.
/// <https://docs.aws.amazon.com/lambda/latest/api/API_AddPermission.html>
pub fn lambda_grants(request: &Value) -> Grants {
    let mut grants = Grants::default();
    let text = |key: &str| request.get(key).and_then(Value::as_str).map(str::trim);
    let narrowed = ["sourceArn", "sourceAccount", "principalOrgID"]
        .iter()
        .any(|k| text(k).is_some_and(|v| !v.is_empty()));
    if let Some(account) = text("sourceAccount").and_then(account_of) {
        grants.add_account(account);
    }
    match text("principal") {
        Some("*") => {
            grants.names_anyone = true;
            grants.anyone = !narrowed;
        }
        Some(principal) if !narrowed => {
            if let Some(account) = account_of(principal) {
                grants.add_account(account);
            }
        }
        _ => {}
    }
    grants
}

/// The AWS principals of a `Principal` element: `"*"`, `{"AWS": "..."}` or `{"AWS": [...]}`.
/// Service, federated and canonical-user principals are not accounts and are skipped.
fn aws_principals(principal: &Value) -> Vec<&str> {
    match principal {
        Value::String(s) => vec![s.as_str()],
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("aws"))
            .flat_map(|(_, v)| strings(v))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether a statement's condition narrows who may call, adding the accounts it names.
fn condition_accounts(condition: Option<&Value>, grants: &mut Grants) -> bool {
    let Some(Value::Object(operators)) = condition else {
        return false;
    };
    let mut narrowed = false;
    for keys in operators.values().filter_map(Value::as_object) {
        for (key, values) in keys {
            let key = key.to_ascii_lowercase();
            if NARROWING_KEYS.contains(&key.as_str()) {
                narrowed = true;
            }
            if ACCOUNT_KEYS.contains(&key.as_str()) {
                for account in strings(values).into_iter().filter_map(account_of) {
                    grants.add_account(account);
                }
            }
        }
    }
    narrowed
}

/// A string or the strings of a list.
fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The account of a bare 12-digit id or of an ARN (`arn:<partition>:<service>:<region>:<account>:...`).
pub fn account_of(principal: &str) -> Option<&str> {
    let principal = principal.trim();
    if is_account_id(principal) {
        return Some(principal);
    }
    let mut parts = principal.splitn(6, ':');
    if parts.next() != Some("arn") {
        return None;
    }
    let account = parts.nth(3)?;
    is_account_id(account).then_some(account)
}

/// Whether `s` is a 12-digit AWS account id.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn of(text: &str) -> Grants {
        grants(&document(&Value::String(text.to_owned())).expect("a policy"))
    }

    #[test]
    fn principals_in_every_shape() {
        let star =
            of(r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole"}]}"#);
        assert!(star.anyone);
        let aws_star = of(r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"*"}}}"#);
        assert!(aws_star.anyone);
        let list = of(
            r#"{"Statement":[{"Principal":{"AWS":["arn:aws:iam::999988887777:root","444455556666",
            "arn:aws:iam::999988887777:role/x"]},"Effect":"Allow"}]}"#,
        );
        assert!(!list.anyone);
        assert_eq!(list.accounts, ["999988887777", "444455556666"]);
        let service =
            of(r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"}}]}"#);
        assert_eq!(service, Grants::default());
    }

    #[test]
    fn any_layout_and_url_encoded() {
        let spaced = "{\n  \"Version\" : \"2012-10-17\",\n  \"Statement\" : [ {\n    \"Effect\" : \"Allow\",\n    \"Principal\" : { \"AWS\" : \"arn:aws:iam::999988887777:root\" }\n  } ]\n}";
        assert_eq!(of(spaced).accounts, ["999988887777"]);
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Principal%22%3A%7B%22AWS%22%3A%22*%22%7D%2C%22Action%22%3A%22sts%3AAssumeRole%22%7D%5D%7D";
        assert!(of(encoded).anyone);
        let form = "%7B%22Statement%22%3A+%5B%7B%22Effect%22%3A+%22Allow%22%2C+%22Principal%22%3A+%7B%22AWS%22%3A+%22arn%3Aaws%3Aiam%3A%3A999988887777%3Aroot%22%7D%7D%5D%7D";
        assert_eq!(of(form).accounts, ["999988887777"]);
        let object = json!({"Statement": [{"Effect": "Allow", "Principal": "*"}]});
        assert!(grants(&document(&object).expect("object")).anyone);
        assert!(document(&Value::String("not a policy".into())).is_none());
    }

    #[test]
    fn deny_statements_grant_nothing_and_conditions_narrow() {
        let deny = of(r#"{"Statement":[{"Effect":"Deny","Principal":"*"}]}"#);
        assert_eq!(deny, Grants::default());
        for key in ["aws:PrincipalOrgID", "sts:ExternalId", "AWS:SourceVpce"] {
            let narrowed = of(&format!(
                r#"{{"Statement":[{{"Effect":"Allow","Principal":{{"AWS":"*"}},"Condition":{{"StringEquals":{{"{key}":"x"}}}}}}]}}"#
            ));
            assert!(!narrowed.anyone, "{key}");
            assert!(narrowed.names_anyone, "{key}: still named");
        }
        let other = of(
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Condition":{"Bool":{"aws:SecureTransport":"true"}}}]}"#,
        );
        assert!(other.anyone, "a transport condition does not narrow who");
        let by_account = of(
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Condition":{"StringEquals":{"aws:PrincipalAccount":["999988887777"]}}}]}"#,
        );
        assert!(!by_account.anyone);
        assert_eq!(by_account.accounts, ["999988887777"]);
    }

    #[test]
    fn lambda_permissions() {
        let public = lambda_grants(&json!({"principal": "*", "functionName": "f"}));
        assert!(public.anyone);
        let s3 = lambda_grants(&json!({"principal": "s3.amazonaws.com",
            "sourceArn": "arn:aws:s3:::bucket", "sourceAccount": "111122223333"}));
        assert!(!s3.anyone);
        assert_eq!(s3.accounts, ["111122223333"]);
        let narrowed = lambda_grants(&json!({"principal": "*", "principalOrgID": "o-abc"}));
        assert!(!narrowed.anyone && narrowed.names_anyone);
        assert!(narrowed.accounts.is_empty());
        let foreign = lambda_grants(&json!({"principal": "arn:aws:iam::999988887777:root"}));
        assert_eq!(foreign.accounts, ["999988887777"]);
    }

    #[test]
    fn accounts_of_ids_and_arns() {
        assert_eq!(account_of("999988887777"), Some("999988887777"));
        assert_eq!(
            account_of("arn:aws:iam::999988887777:root"),
            Some("999988887777")
        );
        assert_eq!(
            account_of("arn:aws-us-gov:sts::999988887777:assumed-role/r/s"),
            Some("999988887777")
        );
        assert_eq!(account_of("arn:aws:s3:::bucket"), None);
        assert_eq!(account_of("*"), None);
        assert_eq!(account_of("12345"), None);
    }
}
