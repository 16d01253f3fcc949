//! AWS Organizations' account names, at start-up and then hourly → the table every output
//! reads, with the settings' `account_names` taking precedence.
//!
//! A listing that fails keeps the table in use (at first, the settings' names alone, so an
//! alert shows the bare id of an account nobody named) and is tried again with backoff; the
//! daemon never stops over it. Each listing is logged and counted
//! (`trailwarden_account_names_refreshes_total{result}`).
//! <https://docs.aws.amazon.com/organizations/latest/APIReference/API_ListAccounts.html>

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::aws::{self, Failed};
use crate::finding::accounts::{AccountNames, SharedAccountNames};
use crate::posture::aws::list_accounts;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::RefreshLabels;

/// How often the names are listed again: accounts are named and renamed rarely.
pub const REFRESH_EVERY: Duration = Duration::from_secs(3600);
const RETRY_FIRST: Duration = Duration::from_secs(60);
const RETRY_MAX: Duration = Duration::from_secs(3600);

/// Where the names come from; the seam keeps the SDK at the edge.
#[async_trait]
pub trait Directory: Send + Sync {
    /// Every account of the organization, id and name.
    async fn accounts(&self) -> Result<Vec<(String, String)>, Failed>;
}

/// Organizations ListAccounts, all pages. Suspended and closed accounts keep their names: an
/// alert about one still needs it.
pub struct Organizations(pub aws_sdk_organizations::Client);

#[async_trait]
impl Directory for Organizations {
    async fn accounts(&self) -> Result<Vec<(String, String)>, Failed> {
        Ok(list_accounts(&self.0)
            .await?
            .into_iter()
            .filter_map(|a| Some((a.id, a.name?)))
            .collect())
    }
}

/// Lists the names and replaces the table the outputs read.
pub struct Refresher {
    pub directory: Arc<dyn Directory>,
    /// The settings' names, which win over Organizations'.
    pub configured: AccountNames,
    pub names: SharedAccountNames,
    pub metrics: Arc<Metrics>,
}

impl Refresher {
    /// One listing, swapped in, logged and counted. True when it succeeded.
    pub async fn refresh_once(&self) -> bool {
        let result = match self.directory.accounts().await {
            Ok(accounts) => {
                let listed = AccountNames::new(accounts).overridden_by(&self.configured);
                let changed = *self.names.current() != listed;
                if changed {
                    info!(
                        accounts = listed.len(),
                        "account names updated from AWS Organizations"
                    );
                    self.names.replace(listed);
                    "updated"
                } else {
                    "unchanged"
                }
            }
            Err(e) => {
                warn!(error = %e, kept = self.names.current().len(), "cannot list account names from AWS Organizations; keeping the names in use");
                "failed"
            }
        };
        self.metrics
            .account_names_refreshes
            .get_or_create(&RefreshLabels { result })
            .inc();
        result != "failed"
    }

    /// Lists at once, then every [`REFRESH_EVERY`]; after a failure, sooner, with backoff.
    /// Returns when `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = aws::backoff(RETRY_FIRST, RETRY_MAX);
        loop {
            let wait = if self.refresh_once().await {
                backoff = aws::backoff(RETRY_FIRST, RETRY_MAX);
                REFRESH_EVERY
            } else {
                aws::next_wait(&mut backoff)
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::aws::{Answer, Edge};

    type Listing = Result<Vec<(String, String)>, Failed>;

    /// Answers from a script, one per listing.
    struct Script(Mutex<Vec<Listing>>);

    #[async_trait]
    impl Directory for Script {
        async fn accounts(&self) -> Listing {
            self.0.lock().expect("script").remove(0)
        }
    }

    fn account(id: &str, name: &str) -> (String, String) {
        (id.to_owned(), name.to_owned())
    }

    #[tokio::test]
    async fn names_are_listed_kept_through_failures_and_overridden_by_settings() {
        let outage = Failed::new(
            Edge::Posture,
            Answer::Unavailable,
            "organizations:ListAccounts: the service is unavailable".to_owned(),
        );
        let refresher = Refresher {
            directory: Arc::new(Script(Mutex::new(vec![
                Ok(vec![
                    account("111122223333", "Payments Production"),
                    account("222233334444", "sandbox"),
                ]),
                Err(outage),
                Ok(vec![account("222233334444", "sandbox-2")]),
            ]))),
            configured: AccountNames::new([account("111122223333", "prod-payments")]),
            names: SharedAccountNames::new(AccountNames::new([account(
                "111122223333",
                "prod-payments",
            )])),
            metrics: Metrics::new(),
        };
        assert!(refresher.refresh_once().await);
        let names = refresher.names.current();
        assert_eq!(names.label("111122223333"), "prod-payments (111122223333)");
        assert_eq!(names.label("222233334444"), "sandbox (222233334444)");
        // A failed listing keeps the table.
        assert!(!refresher.refresh_once().await);
        assert_eq!(refresher.names.current().len(), 2);
        // An account gone from the organization loses its listed name, not its configured one.
        assert!(refresher.refresh_once().await);
        let names = refresher.names.current();
        assert_eq!(names.label("111122223333"), "prod-payments (111122223333)");
        assert_eq!(names.label("222233334444"), "sandbox-2 (222233334444)");
        let count = |result| {
            refresher
                .metrics
                .account_names_refreshes
                .get_or_create(&RefreshLabels { result })
                .get()
        };
        assert_eq!((count("updated"), count("failed")), (2, 1));
    }
}
