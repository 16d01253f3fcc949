//! The names people know their accounts by, shown beside the id wherever a person reads an
//! account: `prod-payments (111122223333)` says at once what `111122223333` makes the reader
//! look up.
//!
//! Names come from the settings' `account_names` table and, when the daemon may read them,
//! from AWS Organizations; the settings win, so an operator can rename what Organizations
//! calls an account. The daemon refreshes the Organizations part while it runs, replacing the
//! whole table at once: a message is rendered with one table from start to end, and a reader
//! never waits for the refresh.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::alert::clean;

/// Account id → name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountNames {
    names: HashMap<String, String>,
}

impl AccountNames {
    pub fn new(names: impl IntoIterator<Item = (String, String)>) -> AccountNames {
        AccountNames {
            names: names
                .into_iter()
                .filter(|(_, name)| !name.trim().is_empty())
                .collect(),
        }
    }

    /// `names` with these ones taking precedence.
    pub fn overridden_by(mut self, preferred: &AccountNames) -> AccountNames {
        self.names.extend(
            preferred
                .names
                .iter()
                .map(|(id, name)| (id.clone(), name.clone())),
        );
        self
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The account's name, cleaned for display (Organizations names are set by whoever
    /// administers the account, so they are treated like record text).
    pub fn name(&self, account: &str) -> Option<String> {
        self.names
            .get(account)
            .map(|name| clean(name).trim().to_owned())
    }

    /// `name (id)` when the account has a name, else the id alone.
    pub fn label(&self, account: &str) -> String {
        match self.name(account) {
            Some(name) => format!("{name} ({})", clean(account)),
            None => clean(account).into_owned(),
        }
    }
}

/// The table every output reads, replaced whole by the daemon's refresh.
#[derive(Debug, Clone, Default)]
pub struct SharedAccountNames(Arc<ArcSwap<AccountNames>>);

impl SharedAccountNames {
    pub fn new(names: AccountNames) -> SharedAccountNames {
        SharedAccountNames(Arc::new(ArcSwap::from_pointee(names)))
    }

    /// The table in use now.
    pub fn current(&self) -> Arc<AccountNames> {
        self.0.load_full()
    }

    pub fn replace(&self, names: AccountNames) {
        self.0.store(Arc::new(names));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> AccountNames {
        AccountNames::new([
            ("111122223333".to_owned(), "prod-payments".to_owned()),
            ("444455556666".to_owned(), "  ".to_owned()),
        ])
    }

    #[test]
    fn labels_put_the_name_beside_the_id() {
        let names = names();
        assert_eq!(names.label("111122223333"), "prod-payments (111122223333)");
        // No name, or a blank one: the id alone.
        assert_eq!(names.label("444455556666"), "444455556666");
        assert_eq!(names.label("777788889999"), "777788889999");
    }

    #[test]
    fn names_cannot_forge_lines_or_reorder_text() {
        let names = AccountNames::new([(
            "111122223333".to_owned(),
            "prod\n[CRITICAL] fake\u{202e}".to_owned(),
        )]);
        let label = names.label("111122223333");
        assert!(
            !label.contains('\n') && !label.contains('\u{202e}'),
            "{label:?}"
        );
    }

    #[test]
    fn the_settings_win_over_organizations() {
        let organizations = AccountNames::new([
            ("111122223333".to_owned(), "Payments Production".to_owned()),
            ("222233334444".to_owned(), "sandbox".to_owned()),
        ]);
        let merged = organizations.overridden_by(&names());
        assert_eq!(
            merged.name("111122223333").as_deref(),
            Some("prod-payments")
        );
        assert_eq!(merged.name("222233334444").as_deref(), Some("sandbox"));
        assert_eq!(merged.len(), 2);
    }

    #[test]
    fn a_replaced_table_is_seen_whole() {
        let shared = SharedAccountNames::default();
        let before = shared.current();
        shared.replace(names());
        assert!(before.is_empty());
        assert_eq!(
            shared.current().label("111122223333"),
            "prod-payments (111122223333)"
        );
    }
}
