//! The SQS queue the daemon consumes: receive, extend visibility, delete.
//!
//! This is the seam between the daemon and aws-sdk-sqs: it hands out plain [`Received`]
//! messages and classifies errors once, as transient or not. Every request is counted in
//! `trailwarden_aws_requests_total`.
//! <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ReceiveMessage.html>

use std::sync::Arc;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::MessageSystemAttributeName;

use crate::aws;
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

/// A failed SQS call.
#[derive(Debug, thiserror::Error)]
#[error("SQS {operation} on {queue} failed: {message}")]
pub struct QueueError {
    pub operation: &'static str,
    pub queue: String,
    pub message: String,
    pub transient: bool,
}

/// The queue, with the settings every receive uses.
pub struct Queue {
    client: aws_sdk_sqs::Client,
    url: String,
    metrics: Arc<Metrics>,
}

impl Queue {
    pub fn new(client: aws_sdk_sqs::Client, url: String, metrics: Arc<Metrics>) -> Queue {
        Queue {
            client,
            url,
            metrics,
        }
    }

    fn error<E, R>(
        &self,
        operation: &'static str,
        e: aws_sdk_sqs::error::SdkError<E, R>,
    ) -> QueueError
    where
        E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: aws::HttpStatus + std::fmt::Debug,
    {
        QueueError {
            operation,
            queue: self.url.clone(),
            transient: aws::is_transient(&e),
            message: DisplayErrorContext(&e).to_string(),
        }
    }

    /// Long-polls for up to `max` messages, hiding them for `visibility_secs`.
    pub async fn receive(
        &self,
        max: u32,
        wait_secs: u64,
        visibility_secs: u64,
    ) -> Result<Vec<Received>, QueueError> {
        self.metrics.aws_request("ReceiveMessage");
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max as i32)
            .wait_time_seconds(wait_secs as i32)
            .visibility_timeout(visibility_secs as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| self.error("ReceiveMessage", e))?;
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

    /// Deletes a message whose work is complete.
    pub async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.metrics.aws_request("DeleteMessage");
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("DeleteMessage", e))
    }

    /// Sets how long until the message becomes visible again.
    pub async fn set_visibility(&self, receipt: &str, secs: u64) -> Result<(), QueueError> {
        self.metrics.aws_request("ChangeMessageVisibility");
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(secs as i32)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("ChangeMessageVisibility", e))
    }
}
