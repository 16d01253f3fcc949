//! Signed JSON calls to the AWS APIs the outputs use a call or two of (Security Hub's
//! BatchImportFindings and DescribeHub, Secrets Manager's GetSecretValue, SSM's GetParameter),
//! without their SDK crates: the generated clients of Security Hub and SSM were the two largest
//! units of a cold release build, for three operations. The request is signed with the SDK's
//! own SigV4 signer and credentials chain, sent by [`super::https_client`]'s connector, and a
//! refusal is classified by the same table as an SDK error ([`super::answered`]).
//!
//! There is no retry here: an output's delivery that fails as an outage is retried by the
//! outbox, and a start-up read by the start-up check, each with its own backoff.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::http::{HttpConnectorSettings, SharedHttpConnector};
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use serde_json::Value;

use super::{Answer, Edge, Failed};
use crate::telemetry::Metrics;

/// Longest wait for a TCP and TLS connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a whole call, its answer read.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Cached credentials are renewed this long before they expire, as the SDK's cache does.
const RENEW_BEFORE: Duration = Duration::from_secs(300);
/// The longest answer read; these APIs answer in a few kilobytes.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// How an API takes its calls.
#[derive(Debug, Clone, Copy)]
pub enum Protocol {
    /// AWS JSON 1.1: `POST /` naming the operation in `X-Amz-Target` (`<prefix>.<operation>`),
    /// e.g. SSM (`AmazonSSM`) and Secrets Manager (`secretsmanager`).
    Json11 { target_prefix: &'static str },
    /// REST-JSON: the operation is the method and path, e.g. Security Hub.
    RestJson,
}

/// One AWS API in one region, called with the credentials of the SDK configuration.
pub struct Api {
    /// The signing name, which is also the endpoint's first label (`securityhub`, `ssm`).
    service: &'static str,
    protocol: Protocol,
    region: String,
    endpoint: String,
    credentials: Option<SharedCredentialsProvider>,
    /// The credentials of the last call, until shortly before they expire.
    cached: tokio::sync::Mutex<Option<Credentials>>,
    connector: SharedHttpConnector,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("service", &self.service)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl Api {
    /// The API at the configuration's endpoint override, else at its regional endpoint.
    pub fn new(
        sdk: &SdkConfig,
        service: &'static str,
        protocol: Protocol,
        metrics: &Arc<Metrics>,
    ) -> Api {
        let region = sdk.region().map(|r| r.to_string()).unwrap_or_default();
        let endpoint = match sdk.endpoint_url() {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => regional_endpoint(service, &region),
        };
        let settings = HttpConnectorSettings::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(CALL_TIMEOUT)
            .build();
        Api {
            service,
            protocol,
            region,
            endpoint,
            credentials: sdk.credentials_provider(),
            cached: tokio::sync::Mutex::new(None),
            connector: super::https_connector(&settings),
            metrics: metrics.clone(),
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Calls `operation` with `body`; `method` and `path` are REST-JSON's (ignored by AWS
    /// JSON 1.1). A refusal, or no answer, is classified at `edge` and described as `what`.
    pub async fn call(
        &self,
        edge: Edge,
        what: &str,
        operation: &'static str,
        (method, path): (&str, &str),
        body: Option<&Value>,
    ) -> Result<Value, Failed> {
        if self.region.is_empty() {
            return Err(Failed::new(
                edge,
                Answer::Missing,
                format!("{what} failed: no AWS region is set (AWS_REGION or the profile's region)"),
            ));
        }
        self.metrics.aws_request(operation);
        let (method, path, content_type, target) = match self.protocol {
            Protocol::Json11 { target_prefix } => (
                "POST",
                "/",
                "application/x-amz-json-1.1",
                Some(format!("{target_prefix}.{operation}")),
            ),
            Protocol::RestJson => (method, path, "application/json", None),
        };
        let body = match body {
            Some(v) => serde_json::to_vec(v).unwrap_or_default(),
            // AWS JSON 1.1 takes `{}` for no input; a REST GET takes no body.
            None if target.is_some() => b"{}".to_vec(),
            None => Vec::new(),
        };
        let uri = format!("{}{path}", self.endpoint);
        let mut headers = Vec::new();
        // A request without a body (a REST GET) declares no content type.
        if !body.is_empty() {
            headers.push(("content-type", content_type));
        }
        if let Some(t) = &target {
            headers.push(("x-amz-target", t.as_str()));
        }
        let request = self
            .signed(edge, what, method, &uri, &headers, body)
            .await?;
        let reply = super::exchange(
            &self.connector,
            request,
            edge,
            what,
            CALL_TIMEOUT,
            MAX_ANSWER_BYTES,
        )
        .await?;
        // The answer decides what happened: one not read whole may have been anything.
        if let Some(cut) = reply.cut {
            return Err(Failed::new(
                edge,
                Answer::Unavailable,
                format!("{what} failed: the answer could not be read whole: {cut}"),
            )
            .maybe_done(true));
        }
        let (status, text) = (reply.status, reply.body);
        let error_type = reply.headers.get("x-amzn-errortype");
        let value: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let (code, message) = match value {
            Value::Null => xml_error_of(&String::from_utf8_lossy(&text)),
            _ => error_of(error_type, &value),
        };
        Err(super::answered(
            edge,
            what,
            status,
            code.as_deref(),
            message.as_deref(),
            false,
        ))
    }

    /// The request, signed with SigV4 for this API and region.
    async fn signed(
        &self,
        edge: Edge,
        what: &str,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<HttpRequest, Failed> {
        let denied =
            |why: String| Failed::new(edge, Answer::Denied, format!("{what} failed: {why}"));
        let identity: Identity = self.credentials().await.map_err(denied)?.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| denied(format!("the request could not be signed: {e}")))?
            .into();
        let signable = SignableRequest::new(
            method,
            uri,
            headers.iter().copied(),
            SignableBody::Bytes(&body),
        )
        .map_err(|e| denied(format!("the request could not be signed: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| denied(format!("the request could not be signed: {e}")))?
            .into_parts();
        let invalid = |e: String| Failed::new(edge, Answer::Invalid, format!("{what} failed: {e}"));
        let mut request = HttpRequest::new(SdkBody::from(body));
        request
            .set_method(method)
            .map_err(|e| invalid(e.to_string()))?;
        request.set_uri(uri).map_err(|e| invalid(e.to_string()))?;
        for (name, value) in headers.iter().copied().chain(instructions.headers()) {
            request
                .headers_mut()
                .try_insert(name.to_owned(), value.to_owned())
                .map_err(|e| invalid(e.to_string()))?;
        }
        Ok(request)
    }

    /// The chain's credentials, from the cache while they are good for [`RENEW_BEFORE`].
    async fn credentials(&self) -> Result<Credentials, String> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && c.expiry()
                .is_none_or(|at| at > SystemTime::now() + RENEW_BEFORE)
        {
            return Ok(c.clone());
        }
        let provider = self
            .credentials
            .as_ref()
            .ok_or_else(|| "no credentials provider is configured".to_owned())?;
        let fresh = provider
            .provide_credentials()
            .await
            .map_err(|e| format!("no AWS credentials: {e}{}", super::causes(&e)))?;
        *cached = Some(fresh.clone());
        Ok(fresh)
    }
}

/// `https://<service>.<region>.amazonaws.com`, or `.amazonaws.com.cn` in the China regions.
fn regional_endpoint(service: &str, region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://{service}.{region}.{suffix}")
}

/// The error code and message of a refusal. AWS JSON 1.1 puts the code in the body's
/// `__type` (possibly `namespace#Code`), REST-JSON in the `x-amzn-ErrorType` header
/// (possibly `Code:url`) or the body's `code`; the message is `message` or `Message`.
fn error_of(header: Option<&str>, body: &Value) -> (Option<String>, Option<String>) {
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| body.get(*n).and_then(Value::as_str))
            .map(str::to_owned)
    };
    let code = header
        .map(str::to_owned)
        .or_else(|| field(&["__type", "code", "Code"]))
        .map(|c| {
            let c = c.split(':').next().unwrap_or(&c);
            c.rsplit('#').next().unwrap_or(c).trim().to_owned()
        })
        .filter(|c| !c.is_empty());
    let message = field(&["message", "Message", "errorMessage"]).filter(|m| !m.is_empty());
    (code, message)
}

/// The code and message of an XML error answer (`<Code>` and `<Message>`), which a JSON API
/// should not send but a proxy or an emulator's authentication layer may.
fn xml_error_of(text: &str) -> (Option<String>, Option<String>) {
    let element = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(text[start..end].trim().to_owned()).filter(|t| !t.is_empty())
    };
    (element("Code"), element("Message"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_codes_are_read_from_either_protocol() {
        let json11 = json!({"__type": "com.amazonaws.ssm#ParameterNotFound", "message": "gone"});
        assert_eq!(
            error_of(None, &json11),
            (Some("ParameterNotFound".into()), Some("gone".into()))
        );
        let rest = json!({"Message": "not subscribed"});
        assert_eq!(
            error_of(
                Some("InvalidAccessException:http://internal.amazon.com/coral/"),
                &rest
            ),
            (
                Some("InvalidAccessException".into()),
                Some("not subscribed".into())
            )
        );
        assert_eq!(error_of(None, &Value::Null), (None, None));
        let xml = "<ErrorResponse><Errors><Error><Code>SignatureDoesNotMatch</Code>\
                   <Message>The request signature we calculated does not match</Message>\
                   </Error></Errors></ErrorResponse>";
        assert_eq!(
            xml_error_of(xml),
            (
                Some("SignatureDoesNotMatch".into()),
                Some("The request signature we calculated does not match".into())
            )
        );
        assert_eq!(xml_error_of("<html>502 Bad Gateway</html>"), (None, None));
    }

    #[test]
    fn endpoints_follow_the_partition() {
        assert_eq!(
            regional_endpoint("ssm", "eu-west-1"),
            "https://ssm.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            regional_endpoint("securityhub", "cn-north-1"),
            "https://securityhub.cn-north-1.amazonaws.com.cn"
        );
    }
}
