//! The state store in a DynamoDB table that every task of a service shares.
//!
//! These item formats are a contract between versions: during a rolling deploy the previous
//! and the next version read each other's items. So a change must stay readable by the
//! previous version and still read the previous version's items: add fields with defaults,
//! never rename or retype one. tests/state_format.rs pins them.
//!
//! One table, string keys `pk` and `sk`, a TTL attribute `expires_at` (TTL deletes lazily, up
//! to days late, so every read compares `expires_at` with now itself):
//!
//! | item | pk | sk | written with |
//! |---|---|---|---|
//! | incident | `inc#<key digest>` | `meta` | conditional PutItem (claim), UpdateItem (paged), DeleteItem (release) |
//! | folded part | `inc#<key digest>` | `part#<incident id>#<source digest>` | TransactWriteItems with its follow-up, overwriting its own source |
//! | follow-up | `due#<YYYYMMDDHH>` | `<due time>#<incident id>` | TransactWriteItems (scheduled and the part's source listed, unless taken), UpdateItem (leased to send, given back, marked sent) |
//! | correlation event | `cor#<group digest>` | `e#<event time>#<eventID>` | BatchWriteItem (idempotent by key) |
//! | committed fire | `cor#<group digest>` | `f#<end>#<start>` | PutItem |
//! | open finding | `fnd#<digest of account and check>` | `<resource digest>` | TransactWriteItems with its incident's open record; conditional UpdateItem (resolution taken); deleted with it, on the incident id, when resolved |
//! | audit lease | `audit#<account>` | `lease` | conditional UpdateItem (`next_due` passed: taken), UpdateItem by its owner (next due) |
//! | pending delivery | `out#<output>` | `<message id>` | TransactWriteItems with a check that it was not settled (enqueued once), conditional UpdateItem (taken, given back) |
//! | settled delivery | `sent#<output>#<message id>` | `sent` | TransactWriteItems deleting its pending item ([`outbox`]) |
//!
//! Claims are `PutItem` with `attribute_not_exists(pk)` or an expired window, so of two tasks
//! claiming one incident exactly one wins; an expired claim (its task stopped between publish
//! and record) is taken over with a conditional UpdateItem that keeps its incident id. Reads that decide something are strongly
//! consistent.
//! <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.ConditionExpressions.html>

mod outbox;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, PutRequest, TransactWriteItem, Update, WriteRequest,
};
use sha2::{Digest, Sha256};
use tracing::warn;

use super::{Claim, Claimed, Due, Open, OpenFinding, Part, Store, StoreError};
use crate::aws::{self, Answer, Edge};
use crate::clock::Clock;
use crate::coalesce::Coalescer;
use crate::finding::correlation::CorrEvent;
use crate::finding::{IncidentKey, hex};
use crate::incidents::correlate::Span;
use crate::telemetry::{Dropped, Metrics};

/// How long follow-up and part items outlive their due time, so a follow-up that could not
/// be sent (all tasks down) can still go out when a task returns.
const KEEP_SECS: i64 = 7 * 24 * 3600;
/// BatchWriteItem takes at most 25 requests.
const BATCH: usize = 25;
/// Items read from one correlation group at most: a burst needs a handful, and a source adds
/// at most `Batch::MAX_PER_GROUP`.
const MAX_WINDOW_ITEMS: usize = 10_000;
/// Follow-ups read from one hour's schedule at most per sweep; the rest are read next sweep.
const MAX_DUE_ITEMS: usize = 1_000;
/// Parts read for one follow-up at most (one per source).
const MAX_PARTS: usize = 10_000;

/// The DynamoDB table.
pub struct DynamoStore {
    client: Client,
    table: String,
    metrics: Arc<Metrics>,
    /// Pages recorded by concurrent workers go out together (BatchWriteItem).
    opened: Coalescer<Item, Result<(), StoreError>>,
    /// What expiry checks compare with.
    clock: Clock,
}

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn digest(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes())[..12])
}

fn incident_pk(key: &IncidentKey) -> String {
    format!("inc#{}", key.digest())
}

fn findings_pk(account: &str, check: &str) -> String {
    format!("fnd#{}", digest(&format!("{account}\0{check}")))
}

fn finding_sk(resource: &str) -> String {
    digest(resource)
}

fn audit_pk(account: &str) -> String {
    format!("audit#{account}")
}

/// The partition of a log object's "read and committed" record (`s3://bucket/key`: at most
/// about 1.1 KB, within DynamoDB's 2 KB partition key).
fn object_pk(source: &str) -> String {
    format!("obj#{source}")
}

fn due_pk(at: i64) -> String {
    let hour = chrono::DateTime::from_timestamp(at, 0).unwrap_or_default();
    format!("due#{}", hour.format("%Y%m%d%H"))
}

fn due_sk(due: &Due) -> String {
    format!("{:011}#{}", due.due_at, due.incident.incident_id)
}

/// Describes a failed DynamoDB call; [`aws::failed`] classifies it.
fn store_error<E, R>(operation: &str, table: &str, e: &SdkError<E, R>) -> StoreError
where
    E: aws::OperationError,
    R: aws::HttpStatus + std::fmt::Debug + 'static,
{
    StoreError(aws::failed(
        Edge::Store,
        &format!("DynamoDB {operation} on table {table}"),
        e,
    ))
}

/// Whether a transaction was cancelled because a condition failed (a fold's follow-up was
/// taken; a resolved finding was opened again), so nothing was written.
fn condition_cancelled<R>(e: &SdkError<TransactWriteItemsError, R>) -> bool {
    let SdkError::ServiceError(ctx) = e else {
        return false;
    };
    let TransactWriteItemsError::TransactionCanceledException(cancelled) = ctx.err() else {
        return false;
    };
    cancelled
        .cancellation_reasons()
        .iter()
        .any(|r| r.code() == Some("ConditionalCheckFailed"))
}

/// Whether a conditional write failed its condition, read from any operation's error.
fn condition_failed<E: aws_sdk_dynamodb::error::ProvideErrorMetadata, R>(
    e: &SdkError<E, R>,
) -> bool {
    matches!(e, SdkError::ServiceError(ctx) if ctx.err().code() == Some("ConditionalCheckFailedException"))
}

impl DynamoStore {
    pub fn new(client: Client, table: String, metrics: Arc<Metrics>) -> DynamoStore {
        let opened = {
            let (client, table, metrics) = (client.clone(), table.clone(), metrics.clone());
            // No linger: the message waits for this record before it may be deleted.
            Coalescer::new(BATCH, std::time::Duration::ZERO, move |items: Vec<Item>| {
                put_batch(client.clone(), table.clone(), metrics.clone(), items)
            })
        };
        DynamoStore {
            client,
            table,
            metrics,
            opened,
            clock: Clock::system(),
        }
    }

    /// The same store, comparing expiry times with `clock`.
    pub fn with_clock(self, clock: Clock) -> DynamoStore {
        DynamoStore { clock, ..self }
    }

    fn fail<E, R>(&self, operation: &'static str, e: &SdkError<E, R>) -> StoreError
    where
        E: aws::OperationError,
        R: aws::HttpStatus + std::fmt::Debug + 'static,
    {
        self.metrics.store_errors.inc();
        store_error(operation, &self.table, e)
    }

    fn count(&self, operation: &'static str) {
        self.metrics.aws_request(operation);
    }

    /// Checks that the table exists and has the expected keys, for start-up.
    pub async fn check(&self) -> Result<(), aws::Failed> {
        self.count("DescribeTable");
        let out = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| {
                aws::failed(
                    Edge::Store,
                    &format!("DynamoDB DescribeTable {}", self.table),
                    &e,
                )
            })?;
        let keys: Vec<(String, String)> = out
            .table()
            .map(|t| {
                t.key_schema()
                    .iter()
                    .map(|k| {
                        (
                            k.attribute_name().to_owned(),
                            k.key_type().as_str().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let want = [
            ("pk".to_owned(), "HASH".to_owned()),
            ("sk".to_owned(), "RANGE".to_owned()),
        ];
        if keys.len() != 2 || !want.iter().all(|k| keys.contains(k)) {
            return Err(aws::Failed::new(
                Edge::Store,
                Answer::Missing,
                format!(
                    "DynamoDB table {} has key schema {keys:?}; trailwarden needs partition key pk (S) and sort key sk (S)",
                    self.table
                ),
            ));
        }
        Ok(())
    }

    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        self.count("GetItem");
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.fail("GetItem", &e))?;
        Ok(out.item)
    }

    /// The JSON in attribute `attr` of each item, read leniently; an item that cannot be read
    /// (written by a version whose format this one does not know) is left out and reported.
    fn read_json<'i, T: serde::de::DeserializeOwned>(
        &self,
        items: impl IntoIterator<Item = &'i Item>,
        attr: &str,
        name: &str,
    ) -> Vec<T> {
        let mut out = Vec::new();
        let mut unreadable = 0;
        for item in items {
            match get_s(item, attr).map(serde_json::from_str::<T>) {
                Some(Ok(value)) => out.push(value),
                _ => unreadable += 1,
            }
        }
        Dropped {
            what: "state_unreadable_items",
            count: unreadable,
            source: name,
            detail: format!(
                "items of {name} in table {} whose {attr} this version cannot read",
                self.table
            ),
        }
        .report(&self.metrics);
        out
    }

    /// Every item of a key condition, following pages up to `limit` items; past that, what
    /// was left out is reported as a drop of `what` from `name`.
    async fn query(
        &self,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
        limit: usize,
        what: &'static str,
        name: &str,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            self.count("Query");
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(condition)
                .consistent_read(true)
                .set_exclusive_start_key(start.take());
            for (name, value) in &values {
                q = q.expression_attribute_values(*name, value.clone());
            }
            let out = q.send().await.map_err(|e| self.fail("Query", &e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if items.len() < limit => start = Some(key),
                Some(_) => {
                    Dropped {
                        what,
                        count: 1,
                        source: name,
                        detail: format!(
                            "read the first {} items of {name} in table {} and left the rest; a decision on them may be missed",
                            items.len(),
                            self.table
                        ),
                    }
                    .report(&self.metrics);
                    return Ok(items);
                }
                None => return Ok(items),
            }
        }
    }

    /// A conditional UpdateItem of a follow-up's item; false when the condition failed.
    async fn update_follow_up(
        &self,
        due: &Due,
        update: impl FnOnce(UpdateItemFluentBuilder) -> UpdateItemFluentBuilder,
    ) -> Result<bool, StoreError> {
        self.count("UpdateItem");
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(due_pk(due.due_at)))
            .key("sk", s(due_sk(due)));
        match update(request).send().await {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(self.fail("UpdateItem", &e)),
        }
    }

    /// A PutItem of `claim` as the incident's item, for a condition to be added.
    fn claim_item(&self, pk: &str, key: &IncidentKey, claim: &Claim) -> PutItemFluentBuilder {
        let until = claim.now + claim.lease_secs;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item("sk", s("meta"))
            .item("state", s("claimed"))
            .item("incident_id", s(&claim.incident_id))
            .item("owner", s(&claim.owner))
            .item("lease_until", n(until))
            .item("rule", s(&key.rule))
            .item("account", s(&key.account))
            .item("principal", s(&key.principal))
            .item("expires_at", n(until + KEEP_SECS))
    }

    /// Replaces an open incident whose record cannot be read with `claim`; false when it
    /// changed meanwhile.
    async fn replace_unreadable(
        &self,
        pk: &str,
        held: &str,
        key: &IncidentKey,
        claim: &Claim,
    ) -> Result<bool, StoreError> {
        self.count("PutItem");
        let put = self
            .claim_item(pk, key, claim)
            .condition_expression("#s = :open AND incident_id = :held")
            .expression_attribute_names("#s", "state")
            .expression_attribute_values(":open", s("open"))
            .expression_attribute_values(":held", s(held))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(self.fail("PutItem", &e)),
        }
    }

    /// Takes over a claim that expired or is `claim.owner`'s own, keeping its incident id;
    /// false when it changed meanwhile.
    async fn take_over(&self, pk: &str, held: &str, claim: &Claim) -> Result<bool, StoreError> {
        let until = claim.now + claim.lease_secs;
        self.count("UpdateItem");
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s("meta"))
            .update_expression("SET #o = :owner, lease_until = :until, expires_at = :x")
            .condition_expression(
                "#s = :claimed AND incident_id = :held AND (lease_until < :now OR #o = :owner)",
            )
            .expression_attribute_names("#s", "state")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":owner", s(&claim.owner))
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":x", n(until + KEEP_SECS))
            .expression_attribute_values(":claimed", s("claimed"))
            .expression_attribute_values(":held", s(held))
            .expression_attribute_values(":now", n(claim.now))
            .send()
            .await;
        match update {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(self.fail("UpdateItem", &e)),
        }
    }

    async fn put(&self, item: Item) -> Result<(), StoreError> {
        self.count("PutItem");
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.fail("PutItem", &e))
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn claim(&self, key: &IncidentKey, claim: &Claim) -> Result<Claimed, StoreError> {
        let pk = incident_pk(key);
        // A claim that loses reads the winner; if that one expired meanwhile, claim again.
        for _ in 0..3 {
            // A new incident: none yet, or the last one's window has ended.
            self.count("PutItem");
            let put = self
                .claim_item(&pk, key, claim)
                .condition_expression(
                    "attribute_not_exists(pk) OR (#s = :open AND window_end < :now)",
                )
                .expression_attribute_names("#s", "state")
                .expression_attribute_values(":open", s("open"))
                .expression_attribute_values(":now", n(claim.now))
                .send()
                .await;
            match put {
                Ok(_) => {
                    return Ok(Claimed::Won {
                        incident_id: claim.incident_id.clone(),
                    });
                }
                Err(e) if condition_failed(&e) => {}
                Err(e) => return Err(self.fail("PutItem", &e)),
            }
            let Some(item) = self.get(&pk, "meta").await? else {
                continue;
            };
            match get_s(&item, "state") {
                Some("open") if get_n(&item, "window_end").unwrap_or(0) >= claim.now => {
                    let open =
                        get_s(&item, "incident").and_then(|j| serde_json::from_str::<Open>(j).ok());
                    match open {
                        Some(open) => return Ok(Claimed::Open(open)),
                        // An incident this version cannot read must not stop paging until its
                        // window ends: it is replaced by this claim, as if it were over.
                        None => {
                            let held = get_s(&item, "incident_id").unwrap_or_default();
                            warn!(table = %self.table, incident_id = %held, "an open incident this version cannot read is replaced by a new claim");
                            if self.replace_unreadable(&pk, held, key, claim).await? {
                                return Ok(Claimed::Won {
                                    incident_id: claim.incident_id.clone(),
                                });
                            }
                            continue;
                        }
                    }
                }
                Some("claimed")
                    if get_n(&item, "lease_until").unwrap_or(0) >= claim.now
                        && get_s(&item, "owner") != Some(claim.owner.as_str()) =>
                {
                    return Ok(Claimed::Busy {
                        owner: get_s(&item, "owner").unwrap_or("another task").to_owned(),
                        until: get_n(&item, "lease_until").unwrap_or(claim.now),
                    });
                }
                Some("claimed") => {
                    // Expired, or this owner's own: the page may have gone out under the id the
                    // claim holds, so it is taken over under that id.
                    let Some(held) = get_s(&item, "incident_id") else {
                        continue;
                    };
                    if self.take_over(&pk, held, claim).await? {
                        return Ok(Claimed::Won {
                            incident_id: held.to_owned(),
                        });
                    }
                }
                _ => continue,
            }
        }
        Ok(Claimed::Busy {
            owner: "another task".to_owned(),
            until: claim.now + 1,
        })
    }

    async fn paged(
        &self,
        key: &IncidentKey,
        claim: &Claim,
        incident: &Open,
    ) -> Result<(), StoreError> {
        // The claim holds the incident for its lease, which a publish fits well inside, so the
        // open incident replaces it without a condition: that lets the records of pages
        // published at the same moment go out in one BatchWriteItem. (Were the lease to run
        // out first, another task would page too, and one of the two records would stay.)
        self.opened
            .submit(open_item(key, claim, incident))
            .await
            .unwrap_or_else(|| {
                Err(StoreError(aws::Failed::new(
                    Edge::Store,
                    Answer::Unavailable,
                    format!(
                        "DynamoDB BatchWriteItem on table {} was not sent: shutting down",
                        self.table
                    ),
                )))
            })
    }

    async fn release(&self, key: &IncidentKey, claim: &Claim) -> Result<(), StoreError> {
        self.count("DeleteItem");
        match self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(incident_pk(key)))
            .key("sk", s("meta"))
            .condition_expression("#s = :claimed AND #o = :owner")
            .expression_attribute_names("#s", "state")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":claimed", s("claimed"))
            .expression_attribute_values(":owner", s(&claim.owner))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(self.fail("DeleteItem", &e)),
        }
    }

    async fn fold(&self, due: &Due, part: &Part) -> Result<bool, StoreError> {
        let expires = due.due_at + KEEP_SECS;
        let source = digest(&part.source);
        let mut item = Item::new();
        item.insert("pk".into(), s(incident_pk(&due.key)));
        item.insert(
            "sk".into(),
            s(format!("part#{}#{source}", due.incident.incident_id)),
        );
        item.insert(
            "part".into(),
            s(serde_json::to_string(part).unwrap_or_default()),
        );
        item.insert("expires_at".into(), n(expires));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .expect("table and item are set");
        // The schedule lists the part's source, in the same transaction as the part: a part is
        // stored exactly when the follow-up counts it. It takes parts until a sender takes it;
        // a part it already lists is taken again (the retry of a fold whose reply was lost).
        let schedule = Update::builder()
            .table_name(&self.table)
            .key("pk", s(due_pk(due.due_at)))
            .key("sk", s(due_sk(due)))
            .update_expression(
                "SET #d = if_not_exists(#d, :due), expires_at = if_not_exists(expires_at, :x) \
                 ADD parts :source",
            )
            .condition_expression("attribute_not_exists(#o) OR contains(parts, :one)")
            .expression_attribute_names("#d", "due")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":due", s(serde_json::to_string(due).unwrap_or_default()))
            .expression_attribute_values(":x", n(expires))
            .expression_attribute_values(":source", AttributeValue::Ss(vec![source.clone()]))
            .expression_attribute_values(":one", s(source))
            .build()
            .expect("table, key and expression are set");
        self.count("TransactWriteItems");
        let written = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(schedule).build())
            .send()
            .await;
        match written {
            Ok(_) => Ok(true),
            Err(e) if condition_cancelled(&e) => Ok(false),
            Err(e) => Err(self.fail("TransactWriteItems", &e)),
        }
    }

    async fn due(&self, now: i64, lookback_hours: i64) -> Result<Vec<Due>, StoreError> {
        let mut out = Vec::new();
        for hours_ago in (0..=lookback_hours.max(1)).rev() {
            let pk = due_pk(now - hours_ago * 3600);
            let items = self
                .query(
                    "pk = :pk AND sk <= :upper",
                    vec![
                        (":pk", s(&pk)),
                        (":upper", s(format!("{:011}#\u{7f}", now))),
                    ],
                    MAX_DUE_ITEMS,
                    "state_due_follow_ups",
                    &pk,
                )
                .await?;
            out.extend(self.read_json::<Due>(
                items.iter().filter(|i| !i.contains_key("sent")),
                "due",
                &pk,
            ));
        }
        Ok(out)
    }

    async fn take_follow_up(
        &self,
        due: &Due,
        owner: &str,
        now: i64,
        lease_secs: i64,
    ) -> Result<bool, StoreError> {
        self.update_follow_up(due, |u| {
            u.update_expression("SET #o = :owner, lease_until = :until")
                .condition_expression(
                    "attribute_exists(pk) AND attribute_not_exists(sent) \
                     AND (attribute_not_exists(#o) OR lease_until < :now)",
                )
                .expression_attribute_names("#o", "owner")
                .expression_attribute_values(":owner", s(owner))
                .expression_attribute_values(":until", n(now + lease_secs))
                .expression_attribute_values(":now", n(now))
        })
        .await
    }

    async fn give_back_follow_up(&self, due: &Due, owner: &str) -> Result<(), StoreError> {
        // Only this owner's lease; a follow-up already sent or taken over stays as it is.
        self.update_follow_up(due, |u| {
            u.update_expression("REMOVE #o, lease_until")
                .condition_expression("#o = :owner AND attribute_not_exists(sent)")
                .expression_attribute_names("#o", "owner")
                .expression_attribute_values(":owner", s(owner))
        })
        .await
        .map(|_| ())
    }

    async fn parts(&self, due: &Due) -> Result<Vec<Part>, StoreError> {
        let items = self
            .query(
                "pk = :pk AND begins_with(sk, :prefix)",
                vec![
                    (":pk", s(incident_pk(&due.key))),
                    (":prefix", s(format!("part#{}#", due.incident.incident_id))),
                ],
                MAX_PARTS,
                "state_incident_parts",
                &due.incident.incident_id,
            )
            .await?;
        Ok(self.read_json(&items, "part", &due.incident.incident_id))
    }

    async fn followed_up(&self, due: &Due) -> Result<(), StoreError> {
        // A follow-up item already gone (expired) has nothing left to mark.
        self.update_follow_up(due, |u| {
            u.update_expression("SET sent = :t")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_values(":t", AttributeValue::Bool(true))
        })
        .await
        .map(|_| ())
    }

    async fn add_events(
        &self,
        group: &str,
        events: &[CorrEvent],
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let pk = format!("cor#{group}");
        let mut requests: Vec<WriteRequest> = Vec::with_capacity(events.len());
        let mut keys = std::collections::HashSet::new();
        for e in events {
            let sk = format!("e#{:011}#{}", e.ts, e.event_id);
            // One batch may not name a key twice.
            if !keys.insert(sk.clone()) {
                continue;
            }
            let mut item = Item::new();
            item.insert("pk".into(), s(&pk));
            item.insert("sk".into(), s(sk));
            item.insert("ev".into(), s(serde_json::to_string(e).unwrap_or_default()));
            item.insert("expires_at".into(), n(expires_at));
            requests.push(put_request(item));
        }
        for chunk in requests.chunks(BATCH) {
            write_batch(&self.client, &self.table, &self.metrics, chunk.to_vec()).await?;
        }
        Ok(())
    }

    async fn window(
        &self,
        group: &str,
        from: i64,
        to: i64,
    ) -> Result<(Vec<CorrEvent>, Vec<Span>), StoreError> {
        let pk = format!("cor#{group}");
        let now = self.clock.now();
        let live = |i: &Item| get_n(i, "expires_at").is_none_or(|e| e >= now);
        let items: Vec<Item> = self
            .query(
                "pk = :pk AND sk BETWEEN :lo AND :hi",
                vec![
                    (":pk", s(&pk)),
                    (":lo", s(format!("e#{from:011}"))),
                    // Every event key at `to + 1` seconds is longer, so this bound excludes them.
                    (":hi", s(format!("e#{:011}", to.saturating_add(1)))),
                ],
                MAX_WINDOW_ITEMS,
                "state_correlation_events",
                &pk,
            )
            .await?
            .into_iter()
            .filter(live)
            .collect();
        let events = self.read_json(&items, "ev", &pk);
        let fires = self
            .query(
                "pk = :pk AND sk BETWEEN :lo AND :hi",
                vec![
                    (":pk", s(&pk)),
                    (":lo", s(format!("f#{from:011}"))),
                    (":hi", s("f#~")),
                ],
                MAX_WINDOW_ITEMS,
                "state_correlation_fires",
                &pk,
            )
            .await?
            .into_iter()
            .filter(live)
            .filter_map(|i| {
                let sk = get_s(&i, "sk")?;
                let (end, start) = sk.strip_prefix("f#")?.split_once('#')?;
                Some(Span {
                    start: start.parse().ok()?,
                    end: end.parse().ok()?,
                })
            })
            .collect();
        Ok((events, fires))
    }

    async fn fired(&self, group: &str, span: Span, expires_at: i64) -> Result<(), StoreError> {
        let mut item = Item::new();
        item.insert("pk".into(), s(format!("cor#{group}")));
        item.insert(
            "sk".into(),
            s(format!("f#{:011}#{:011}", span.end, span.start)),
        );
        item.insert("expires_at".into(), n(expires_at));
        self.put(item).await
    }

    async fn finding_opened(&self, claim: &Claim, finding: &OpenFinding) -> Result<(), StoreError> {
        let f = &finding.finding;
        let incident = finding.incident(&claim.source);
        let expires = incident.window_end + KEEP_SECS;
        let mut listed = Item::new();
        listed.insert("pk".into(), s(findings_pk(&f.account, &f.check)));
        listed.insert("sk".into(), s(finding_sk(&f.resource)));
        listed.insert("incident_id".into(), s(&finding.incident_id));
        listed.insert(
            "finding".into(),
            s(serde_json::to_string(finding).unwrap_or_default()),
        );
        listed.insert("expires_at".into(), n(expires));
        let put = |item: Item| {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .build()
                .expect("table and item are set");
            TransactWriteItem::builder().put(put).build()
        };
        // Like a page's record, without a condition: the claim holds the incident meanwhile.
        self.count("TransactWriteItems");
        self.client
            .transact_write_items()
            .transact_items(put(open_item(&f.key(), claim, &incident)))
            .transact_items(put(listed))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.fail("TransactWriteItems", &e))
    }

    async fn open_findings(
        &self,
        account: &str,
        check: &str,
    ) -> Result<Vec<OpenFinding>, StoreError> {
        let pk = findings_pk(account, check);
        let items = self
            .query(
                "pk = :pk",
                vec![(":pk", s(&pk))],
                MAX_PARTS,
                "state_open_findings",
                &pk,
            )
            .await?;
        Ok(self.read_json(&items, "finding", &pk))
    }

    async fn take_resolution(
        &self,
        finding: &OpenFinding,
        owner: &str,
        now: i64,
        lease_secs: i64,
    ) -> Result<bool, StoreError> {
        let f = &finding.finding;
        self.count("UpdateItem");
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(findings_pk(&f.account, &f.check)))
            .key("sk", s(finding_sk(&f.resource)))
            .update_expression("SET resolving = :owner, resolving_until = :until")
            .condition_expression(
                "incident_id = :id AND (attribute_not_exists(resolving) \
                 OR resolving_until < :now OR resolving = :owner)",
            )
            .expression_attribute_values(":id", s(&finding.incident_id))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":until", n(now + lease_secs))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match update {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(self.fail("UpdateItem", &e)),
        }
    }

    async fn finding_resolved(&self, finding: &OpenFinding) -> Result<(), StoreError> {
        let f = &finding.finding;
        // Each item goes only while it still names this incident (or is already gone): a
        // finding opened again under a new id meanwhile stays open.
        let delete = |pk: String, sk: String| {
            let delete = Delete::builder()
                .table_name(&self.table)
                .key("pk", s(pk))
                .key("sk", s(sk))
                .condition_expression("attribute_not_exists(pk) OR incident_id = :id")
                .expression_attribute_values(":id", s(&finding.incident_id))
                .build()
                .expect("table, key and condition are set");
            TransactWriteItem::builder().delete(delete).build()
        };
        self.count("TransactWriteItems");
        let written = self
            .client
            .transact_write_items()
            .transact_items(delete(incident_pk(&f.key()), "meta".to_owned()))
            .transact_items(delete(
                findings_pk(&f.account, &f.check),
                finding_sk(&f.resource),
            ))
            .send()
            .await;
        match written {
            Ok(_) => Ok(()),
            Err(e) if condition_cancelled(&e) => Ok(()),
            Err(e) => Err(self.fail("TransactWriteItems", &e)),
        }
    }

    async fn take_audit(
        &self,
        account: &str,
        owner: &str,
        now: i64,
        hold_secs: i64,
    ) -> Result<bool, StoreError> {
        self.count("UpdateItem");
        let until = now + hold_secs;
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(audit_pk(account)))
            .key("sk", s("lease"))
            .update_expression("SET #o = :owner, next_due = :until, expires_at = :x")
            .condition_expression("attribute_not_exists(pk) OR next_due <= :now")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":x", n(until + KEEP_SECS))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match update {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(self.fail("UpdateItem", &e)),
        }
    }

    async fn audited(&self, account: &str, owner: &str, next_due: i64) -> Result<(), StoreError> {
        self.count("UpdateItem");
        // Only the holder's lease: one taken over after it expired is the new holder's.
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(audit_pk(account)))
            .key("sk", s("lease"))
            .update_expression("SET next_due = :due, expires_at = :x")
            .condition_expression("#o = :owner")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":due", n(next_due))
            .expression_attribute_values(":x", n(next_due + KEEP_SECS))
            .send()
            .await;
        match update {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(self.fail("UpdateItem", &e)),
        }
    }

    async fn object_read(&self, source: &str) -> Result<bool, StoreError> {
        let now = self.clock.now();
        Ok(self
            .get(&object_pk(source), "read")
            .await?
            .is_some_and(|item| get_n(&item, "expires_at").is_none_or(|e| e >= now)))
    }

    async fn mark_object_read(&self, source: &str, expires_at: i64) -> Result<(), StoreError> {
        let mut item = Item::new();
        item.insert("pk".into(), s(object_pk(source)));
        item.insert("sk".into(), s("read"));
        item.insert("expires_at".into(), n(expires_at));
        self.put(item).await
    }
}

/// An incident's record once its message was accepted.
fn open_item(key: &IncidentKey, claim: &Claim, incident: &Open) -> Item {
    let mut item = Item::new();
    item.insert("pk".into(), s(incident_pk(key)));
    item.insert("sk".into(), s("meta"));
    item.insert("state".into(), s("open"));
    item.insert("incident_id".into(), s(&incident.incident_id));
    item.insert("owner".into(), s(&claim.owner));
    item.insert(
        "incident".into(),
        s(serde_json::to_string(incident).unwrap_or_default()),
    );
    item.insert("window_end".into(), n(incident.window_end));
    item.insert("rule".into(), s(&key.rule));
    item.insert("account".into(), s(&key.account));
    item.insert("principal".into(), s(&key.principal));
    item.insert("expires_at".into(), n(incident.window_end + KEEP_SECS));
    item
}

fn put_request(item: Item) -> WriteRequest {
    let put = PutRequest::builder()
        .set_item(Some(item))
        .build()
        .expect("the item is set");
    WriteRequest::builder().put_request(put).build()
}

/// One BatchWriteItem of at most [`BATCH`] puts, retrying what DynamoDB leaves unprocessed.
async fn write_batch(
    client: &Client,
    table: &str,
    metrics: &Metrics,
    mut pending: Vec<WriteRequest>,
) -> Result<(), StoreError> {
    let mut retry = aws::backoff(
        std::time::Duration::from_millis(50),
        std::time::Duration::from_secs(1),
    );
    let mut attempt = 0;
    loop {
        metrics.aws_request("BatchWriteItem");
        let out = client
            .batch_write_item()
            .request_items(table, pending)
            .send()
            .await
            .map_err(|e| {
                metrics.store_errors.inc();
                store_error("BatchWriteItem", table, &e)
            })?;
        pending = out
            .unprocessed_items
            .and_then(|mut u| u.remove(table))
            .unwrap_or_default();
        if pending.is_empty() {
            return Ok(());
        }
        // Unprocessed items are DynamoDB shedding load: back off, then give up as an outage
        // so the work is held and retried.
        if attempt >= 5 {
            metrics.store_errors.inc();
            return Err(StoreError(aws::Failed::new(
                Edge::Store,
                Answer::Unavailable,
                format!(
                    "DynamoDB BatchWriteItem on table {table} left {} items unprocessed after {} attempts",
                    pending.len(),
                    attempt + 1
                ),
            )));
        }
        tokio::time::sleep(aws::next_wait(&mut retry)).await;
        attempt += 1;
    }
}

/// Writes incident records from concurrent workers in one call; one answer per item.
async fn put_batch(
    client: Client,
    table: String,
    metrics: Arc<Metrics>,
    items: Vec<Item>,
) -> Vec<Result<(), StoreError>> {
    // One batch may not name a key twice; the later record of a key wins.
    let mut requests: Vec<WriteRequest> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for item in items.iter().rev() {
        let key = (
            get_s(item, "pk").map(str::to_owned),
            get_s(item, "sk").map(str::to_owned),
        );
        if seen.insert(key) {
            requests.push(put_request(item.clone()));
        }
    }
    let result = write_batch(&client, &table, &metrics, requests).await;
    items.iter().map(|_| result.clone()).collect()
}
