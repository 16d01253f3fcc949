//! The SQS queue work arrives on: receive, change visibility (extend a lease, hand a message
//! back), delete (in batches, when several workers finish at once).
//!
//! A message in hand is a [`Lease`]: heartbeat, ack, release.
//!
//! [`Queue`] is the seam between the daemon and aws-sdk-sqs: the daemon sees plain
//! [`Received`] messages and [`QueueError`]s that say whether a retry may succeed, so its
//! delivery rules can be tested in process with faults moto cannot make.
//! <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ReceiveMessage.html>

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};

use tracing::Instrument;

use crate::aws::{self, Answer, Edge};
use crate::coalesce::Coalescer;
use crate::telemetry::Metrics;

/// One received message, detached from SDK types.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub receipt: String,
    pub body: String,
    /// `ApproximateReceiveCount`: 1 on first delivery.
    pub receive_count: u32,
}

/// A failed queue call, classified at the [`Edge::Queue`](aws::Edge::Queue) edge.
pub type QueueError = aws::Failed;

/// Where messages come from.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Long-polls for up to `max` messages, hiding them for `visibility_secs`.
    async fn receive(&self, max: u32, visibility_secs: u64) -> Result<Vec<Received>, QueueError>;
    /// Sets how long until the message becomes visible again: a longer lease while it is in
    /// work, a delay before a retry, or 0 to hand it back at once.
    async fn set_visibility(&self, receipt: &str, secs: u64) -> Result<(), QueueError>;
    /// Deletes a message whose work is complete.
    async fn delete(&self, receipt: &str) -> Result<(), QueueError>;
}

/// One message in hand, at the queue's edge: while its work goes on its visibility is extended
/// (a heartbeat every third of the timeout), and it ends in exactly one way: acknowledged
/// (deleted) when its work is done, or released back to the queue, at once or after a delay.
/// Dropping it only stops the heartbeat: the message returns after its visibility timeout.
pub struct Lease {
    queue: Arc<dyn Queue>,
    receipt: String,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Starts extending `receipt`'s visibility to `visibility_secs`, in the caller's span.
    pub fn start(queue: Arc<dyn Queue>, receipt: String, visibility_secs: u64) -> Lease {
        let every = std::time::Duration::from_secs((visibility_secs / 3).max(1));
        let heartbeat = {
            let (queue, receipt) = (queue.clone(), receipt.clone());
            tokio::spawn(
                async move {
                    loop {
                        tokio::time::sleep(every).await;
                        if let Err(e) = queue.set_visibility(&receipt, visibility_secs).await {
                            tracing::warn!(error = %e, "cannot extend the message's visibility; another task may take it");
                        }
                    }
                }
                .in_current_span(),
            )
        };
        Lease {
            queue,
            receipt,
            heartbeat,
        }
    }

    /// Deletes the message: call only when its work is done and recorded.
    pub async fn ack(self) -> Result<(), QueueError> {
        self.heartbeat.abort();
        self.queue.delete(&self.receipt).await
    }

    /// Makes the message visible again after `secs` (0: at once, for another task).
    pub async fn release(self, secs: u64) -> Result<(), QueueError> {
        self.heartbeat.abort();
        self.queue.set_visibility(&self.receipt, secs).await
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// How long a delete waits for others to share its DeleteMessageBatch call.
const DELETE_LINGER: std::time::Duration = std::time::Duration::from_millis(100);

/// The SQS queue, with the settings every receive uses.
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
    wait_secs: u64,
    metrics: Arc<Metrics>,
    /// Deletes from concurrent workers go out together (DeleteMessageBatch, up to 10).
    deletes: Coalescer<String, Result<(), QueueError>>,
}

impl SqsQueue {
    pub fn new(
        client: aws_sdk_sqs::Client,
        url: String,
        wait_secs: u64,
        metrics: Arc<Metrics>,
    ) -> SqsQueue {
        let deletes = {
            let (client, url, metrics) = (client.clone(), url.clone(), metrics.clone());
            // A finished message can wait a moment for others to be deleted with it: its alerts
            // are out and nothing waits on the delete.
            Coalescer::new(10, DELETE_LINGER, move |receipts: Vec<String>| {
                delete_batch(client.clone(), url.clone(), metrics.clone(), receipts)
            })
        };
        SqsQueue {
            client,
            url,
            wait_secs,
            metrics,
            deletes,
        }
    }

    fn error<E, R>(&self, operation: &str, e: &aws_sdk_sqs::error::SdkError<E, R>) -> QueueError
    where
        E: aws::OperationError,
        R: aws::HttpStatus + std::fmt::Debug + 'static,
    {
        aws::failed(Edge::Queue, &format!("SQS {operation} on {}", self.url), e)
    }

    /// Checks that the queue exists and this role may read its attributes, for start-up.
    pub async fn check(&self) -> Result<(), aws::Failed> {
        self.metrics.aws_request("GetQueueAttributes");
        self.client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                aws::failed(
                    Edge::Queue,
                    &format!("SQS GetQueueAttributes {}", self.url),
                    &e,
                )
            })
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn receive(&self, max: u32, visibility_secs: u64) -> Result<Vec<Received>, QueueError> {
        self.metrics.aws_request("ReceiveMessage");
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max as i32)
            .wait_time_seconds(self.wait_secs as i32)
            .visibility_timeout(visibility_secs as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| self.error("ReceiveMessage", &e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                Some(Received {
                    id: m.message_id?,
                    receipt: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                    receive_count,
                })
            })
            .collect())
    }

    async fn set_visibility(&self, receipt: &str, secs: u64) -> Result<(), QueueError> {
        self.metrics.aws_request("ChangeMessageVisibility");
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(secs.min(43_200) as i32)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("ChangeMessageVisibility", &e))
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.deletes
            .submit(receipt.to_owned())
            .await
            .unwrap_or_else(|| {
                Err(QueueError::new(
                    Edge::Queue,
                    Answer::Unavailable,
                    format!(
                        "SQS DeleteMessageBatch on {} was not sent: shutting down",
                        self.url
                    ),
                ))
            })
    }
}

/// One DeleteMessageBatch call; one answer per receipt, in order.
async fn delete_batch(
    client: aws_sdk_sqs::Client,
    url: String,
    metrics: Arc<Metrics>,
    receipts: Vec<String>,
) -> Vec<Result<(), QueueError>> {
    let entries = receipts
        .iter()
        .enumerate()
        .map(|(i, receipt)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(receipt)
                .build()
                .expect("id and receipt are set")
        })
        .collect();
    metrics.aws_request("DeleteMessageBatch");
    match client
        .delete_message_batch()
        .queue_url(&url)
        .set_entries(Some(entries))
        .send()
        .await
    {
        Ok(out) => (0..receipts.len())
            .map(|i| {
                let id = i.to_string();
                match out.failed().iter().find(|f| f.id() == id) {
                    None => Ok(()),
                    // A batch entry's failure carries no status: the sender's fault is a wrong
                    // receipt, anything else SQS's own.
                    Some(f) => Err(QueueError::new(
                        Edge::Queue,
                        if f.sender_fault() {
                            Answer::Invalid
                        } else {
                            Answer::Unavailable
                        },
                        format!(
                            "SQS DeleteMessageBatch on {url} failed for a message: {}: {}",
                            f.code(),
                            f.message().unwrap_or("no message")
                        ),
                    )),
                }
            })
            .collect(),
        Err(e) => {
            let f = aws::failed(Edge::Queue, &format!("SQS DeleteMessageBatch on {url}"), &e);
            receipts.iter().map(|_| Err(f.clone())).collect()
        }
    }
}
