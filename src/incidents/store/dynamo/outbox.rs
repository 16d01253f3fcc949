//! Deliveries in the state table, so that a task's restart, or another task, finishes what one
//! task left.
//!
//! A pending delivery is `out#<output>` / `<message id>`, so an output's backlog is one Query
//! and a message is pending for an output at most once. When it settles, the pending item is
//! deleted and a small marker `sent#<output>#<message id>` is written in the same transaction;
//! enqueueing checks that marker in its own transaction, so a message delivered already is
//! not queued for that output again.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{ConditionCheck, Delete, Put, TransactWriteItem};

use super::{DynamoStore, Item, condition_cancelled, condition_failed, get_n, get_s, n, s};
use crate::finding::sink::Message;
use crate::output::outbox::{Delivery, Outbox, OutboxError, Settle, oldest_first};
use crate::telemetry::Dropped;

/// How long a pending delivery is kept at most: far beyond any outage worth waiting out, and
/// it bounds what an output removed from the settings leaves behind.
const PENDING_KEEP_SECS: i64 = 14 * 24 * 3600;
/// How long a delivered message's marker stops a repeat: longer than any claim or lease.
const DELIVERED_KEEP_SECS: i64 = 7 * 24 * 3600;
/// How long a message refused for good is kept, with why, for inspection.
const DEAD_KEEP_SECS: i64 = 14 * 24 * 3600;

fn pending_pk(output: &str) -> String {
    format!("out#{output}")
}

fn settled_pk(output: &str, id: &str) -> String {
    format!("sent#{output}#{id}")
}

impl DynamoStore {
    fn delivery_item(&self, d: &Delivery) -> Item {
        let mut item = Item::new();
        item.insert("pk".into(), s(pending_pk(&d.output)));
        item.insert("sk".into(), s(d.message.id()));
        item.insert(
            "message".into(),
            s(serde_json::to_string(&d.message).unwrap_or_default()),
        );
        item.insert("created_at".into(), n(d.created_at));
        item.insert("attempts".into(), n(i64::from(d.attempts)));
        item.insert("next_at".into(), n(d.next_at));
        item.insert("expires_at".into(), n(d.created_at + PENDING_KEEP_SECS));
        item
    }

    /// A pending item read back; `None` when this version cannot read its message.
    fn read_delivery(output: &str, item: &Item) -> Option<Delivery> {
        let message: Message = serde_json::from_str(get_s(item, "message")?).ok()?;
        let lease = match (get_s(item, "lease_owner"), get_n(item, "lease_until")) {
            (Some(owner), Some(until)) => Some((owner.to_owned(), until)),
            _ => None,
        };
        Some(Delivery {
            output: output.to_owned(),
            message,
            created_at: get_n(item, "created_at").unwrap_or(0),
            attempts: get_n(item, "attempts").unwrap_or(0).max(0) as u32,
            next_at: get_n(item, "next_at").unwrap_or(0),
            lease,
            last_error: get_s(item, "last_error").map(str::to_owned),
        })
    }
}

#[async_trait]
impl Outbox for DynamoStore {
    async fn enqueue(&self, deliveries: &[Delivery]) -> Result<(), OutboxError> {
        // One transaction per output: a message settled for one output must not stop it being
        // queued for another.
        for d in deliveries {
            let id = d.message.id();
            let unsettled = ConditionCheck::builder()
                .table_name(&self.table)
                .key("pk", s(settled_pk(&d.output, &id)))
                .key("sk", s("sent"))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .expect("table, key and condition are set");
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(self.delivery_item(d)))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .expect("table and item are set");
            self.count("TransactWriteItems");
            let written = self
                .client
                .transact_write_items()
                .transact_items(
                    TransactWriteItem::builder()
                        .condition_check(unsettled)
                        .build(),
                )
                .transact_items(TransactWriteItem::builder().put(put).build())
                .send()
                .await;
            match written {
                // Pending or settled already: this is a repeat of the same message.
                Ok(_) => {}
                Err(e) if condition_cancelled(&e) => {}
                Err(e) => return Err(OutboxError(self.fail("TransactWriteItems", &e).0)),
            }
        }
        Ok(())
    }

    async fn pending(&self, output: &str, limit: usize) -> Result<Vec<Delivery>, OutboxError> {
        let pk = pending_pk(output);
        let now = self.clock.now();
        let items = self
            .query(
                "pk = :pk",
                vec![(":pk", s(&pk))],
                limit,
                "outbox_unread_deliveries",
                &pk,
            )
            .await
            .map_err(|e| OutboxError(e.0))?;
        let mut unreadable = 0;
        let mut out = Vec::with_capacity(items.len());
        for item in &items {
            // TTL deletes lazily: an expired delivery is gone as far as anyone reads.
            if get_n(item, "expires_at").is_some_and(|x| x < now) {
                continue;
            }
            match DynamoStore::read_delivery(output, item) {
                Some(d) => out.push(d),
                None => unreadable += 1,
            }
        }
        Dropped {
            what: "outbox_unreadable_deliveries",
            count: unreadable,
            source: &pk,
            detail: format!(
                "pending deliveries of {output} in table {} whose message this version cannot read",
                self.table
            ),
        }
        .report(&self.metrics);
        oldest_first(&mut out);
        out.truncate(limit);
        Ok(out)
    }

    async fn take(
        &self,
        d: &Delivery,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, OutboxError> {
        self.count("UpdateItem");
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pending_pk(&d.output)))
            .key("sk", s(d.message.id()))
            .update_expression("SET lease_owner = :owner, lease_until = :until")
            .condition_expression(
                "attribute_exists(pk) AND next_at <= :now \
                 AND (attribute_not_exists(lease_until) OR lease_until < :now)",
            )
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match update {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(OutboxError(self.fail("UpdateItem", &e).0)),
        }
    }

    async fn settle(
        &self,
        d: &Delivery,
        owner: &str,
        now: i64,
        how: &Settle,
    ) -> Result<(), OutboxError> {
        let id = d.message.id();
        let (outcome, error, keep) = match how {
            Settle::Retry { at, error } => {
                self.count("UpdateItem");
                let update = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", s(pending_pk(&d.output)))
                    .key("sk", s(&id))
                    .update_expression(
                        "SET attempts = attempts + :one, next_at = :at, last_error = :error \
                         REMOVE lease_owner, lease_until",
                    )
                    .condition_expression("lease_owner = :owner")
                    .expression_attribute_values(":one", n(1))
                    .expression_attribute_values(":at", n(*at))
                    .expression_attribute_values(":error", s(error))
                    .expression_attribute_values(":owner", s(owner))
                    .send()
                    .await;
                return match update {
                    // Settled or taken over meanwhile: nothing of ours to give back.
                    Ok(_) => Ok(()),
                    Err(e) if condition_failed(&e) => Ok(()),
                    Err(e) => Err(OutboxError(self.fail("UpdateItem", &e).0)),
                };
            }
            Settle::Delivered => ("delivered", None, DELIVERED_KEEP_SECS),
            Settle::Dead { error } => ("dead", Some(error), DEAD_KEEP_SECS),
        };
        let mut marker = Item::new();
        marker.insert("pk".into(), s(settled_pk(&d.output, &id)));
        marker.insert("sk".into(), s("sent"));
        marker.insert("outcome".into(), s(outcome));
        marker.insert("settled_at".into(), n(now));
        marker.insert("expires_at".into(), n(now + keep));
        if let Some(error) = error {
            marker.insert("error".into(), s(error));
            marker.insert(
                "message".into(),
                s(serde_json::to_string(&d.message).unwrap_or_default()),
            );
        }
        let delete = Delete::builder()
            .table_name(&self.table)
            .key("pk", s(pending_pk(&d.output)))
            .key("sk", s(&id))
            .build()
            .expect("table and key are set");
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(marker))
            .build()
            .expect("table and item are set");
        self.count("TransactWriteItems");
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete).build())
            .transact_items(TransactWriteItem::builder().put(put).build())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| OutboxError(self.fail("TransactWriteItems", &e).0))
    }
}
