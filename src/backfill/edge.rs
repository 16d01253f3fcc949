//! The backfill's AWS edge: the clients it lists and sends with, and SendMessageBatch behind
//! the [`BatchQueue`] seam. No other file of the backfill names an SDK type but the S3 client
//! it hands to the shared listing.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use super::send::{BatchQueue, Entry, Rejected};
use crate::aws::{self, Edge};
use crate::telemetry::Metrics;

/// The clients of one backfill.
pub struct Clients {
    pub s3: aws_sdk_s3::Client,
    /// The region S3 is called in, which the notifications name as the bucket's.
    pub region: String,
}

/// Loads the default credential chain and region (and `AWS_ENDPOINT_URL`, for an emulator).
pub async fn connect(metrics: &Arc<Metrics>) -> (aws_config::SdkConfig, Clients) {
    let sdk = aws::sdk_config(None, None).await;
    let clients = Clients {
        s3: aws::s3_client(&sdk, metrics),
        region: sdk
            .region()
            .map_or_else(|| "us-east-1".to_owned(), |r| r.to_string()),
    };
    (sdk, clients)
}

/// The region in an SQS queue URL (`https://sqs.eu-west-1.amazonaws.com/...`, or the legacy
/// `https://eu-west-1.queue.amazonaws.com/...`), so a queue in another region than the
/// bucket is called where it is. `None` for other hosts (an emulator, a VPC endpoint).
pub fn queue_region(url: &str) -> Option<&str> {
    let host = url.split("://").nth(1)?.split('/').next()?;
    let mut labels = host.split('.');
    match (labels.next()?, labels.next()?) {
        ("sqs", region) if host.contains(".amazonaws.com") => Some(region),
        (region, "queue") if host.contains(".amazonaws.com") => Some(region),
        _ => None,
    }
}

/// The daemon's queue, sent to with SendMessageBatch.
pub struct SqsBatches {
    client: aws_sdk_sqs::Client,
    url: String,
    metrics: Arc<Metrics>,
}

impl SqsBatches {
    pub fn new(sdk: &aws_config::SdkConfig, url: String, metrics: Arc<Metrics>) -> SqsBatches {
        let sdk = match queue_region(&url) {
            Some(region) => sdk
                .to_builder()
                .region(aws_config::Region::new(region.to_owned()))
                .build(),
            None => sdk.clone(),
        };
        SqsBatches {
            client: aws::sqs_client(&sdk, 0, &metrics),
            url,
            metrics,
        }
    }
}

#[async_trait]
impl BatchQueue for SqsBatches {
    async fn send(&self, entries: &[Entry]) -> Result<Vec<Rejected>, aws::Failed> {
        let request: Vec<SendMessageBatchRequestEntry> = entries
            .iter()
            .map(|e| {
                SendMessageBatchRequestEntry::builder()
                    .id(&e.id)
                    .message_body(&e.body)
                    .build()
                    .expect("id and body are set")
            })
            .collect();
        self.metrics.aws_request("SendMessageBatch");
        let what = || format!("SQS SendMessageBatch on {}", self.url);
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(request))
            .send()
            .await
            .map_err(|e| aws::failed(Edge::Queue, &what(), &e))?;
        let mut rejected: Vec<Rejected> = out
            .failed()
            .iter()
            .map(|f| Rejected {
                id: f.id().to_owned(),
                code: f.code().to_owned(),
                message: f.message().unwrap_or("no message").to_owned(),
                sender_fault: f.sender_fault(),
            })
            .collect();
        // An entry the answer names neither way was not confirmed: it is sent again rather
        // than counted as queued.
        for e in entries {
            let named = out.successful().iter().any(|s| s.id() == e.id)
                || rejected.iter().any(|r| r.id == e.id);
            if !named {
                rejected.push(Rejected {
                    id: e.id.clone(),
                    code: "NotAnswered".into(),
                    message: format!("{} answered nothing about this entry", what()),
                    sender_fault: false,
                });
            }
        }
        Ok(rejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_urls_name_their_region() {
        assert_eq!(
            queue_region("https://sqs.eu-west-1.amazonaws.com/111122223333/trail-events"),
            Some("eu-west-1")
        );
        assert_eq!(
            queue_region("https://ap-south-1.queue.amazonaws.com/111122223333/q"),
            Some("ap-south-1")
        );
        assert_eq!(
            queue_region("https://sqs.cn-north-1.amazonaws.com.cn/111122223333/q"),
            Some("cn-north-1")
        );
        assert_eq!(queue_region("http://127.0.0.1:5000/123456789012/q"), None);
        assert_eq!(
            queue_region("https://vpce-1a2b.sqs.us-east-1.vpce.amazonaws.com/1/q"),
            None
        );
    }
}
