//! What an API caller may see: one workspace and, for a key bound to accounts, only those
//! accounts. Every account-scoped use case takes a [`Tenant`] (not a bare workspace id), so
//! the binding is applied where the rows are looked up, never left to a handler to remember.

use std::sync::Arc;

use crate::Store;
use crate::accounts::{self, Account};
use crate::error::Result;

/// A workspace, seen whole or through a key bound to some of its accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    workspace_id: String,
    /// `None`: every account of the workspace; `Some`: only these (possibly none).
    accounts: Option<Arc<[String]>>,
}

impl Tenant {
    /// The whole workspace (an unbound key, the command line, the hosted page's link).
    pub fn workspace(workspace_id: impl Into<String>) -> Self {
        Self {
            workspace_id: workspace_id.into(),
            accounts: None,
        }
    }

    /// Only `accounts` of the workspace.
    pub fn bound(workspace_id: impl Into<String>, accounts: Vec<String>) -> Self {
        Self {
            workspace_id: workspace_id.into(),
            accounts: Some(accounts.into()),
        }
    }

    pub fn workspace_id(&self) -> &str {
        &self.workspace_id
    }

    /// The accounts this tenant is limited to; `None` when it sees the whole workspace.
    pub fn bound_accounts(&self) -> Option<&[String]> {
        self.accounts.as_deref()
    }

    /// Whether rows of account `account_id` (of this workspace) are visible.
    pub fn sees(&self, account_id: &str) -> bool {
        self.accounts
            .as_deref()
            .is_none_or(|ids| ids.iter().any(|a| a == account_id))
    }

    /// The account `id` if it is in the workspace and visible; `None` otherwise (the caller
    /// answers 404 either way: a bound key cannot tell another account from a missing one).
    pub async fn account(&self, store: &Store, id: &str) -> Result<Option<Account>> {
        if !self.sees(id) {
            return Ok(None);
        }
        accounts::get(store, &self.workspace_id, id).await
    }

    /// `AND <column> IN (...)` limiting a query to the visible accounts (empty when the whole
    /// workspace is visible), its placeholders numbered from `next`; the ids to bind follow.
    /// A bound tenant with no account gets a condition no row meets.
    pub(crate) fn sql_filter(&self, column: &str, next: usize) -> (String, Vec<String>) {
        match self.accounts.as_deref() {
            None => (String::new(), vec![]),
            Some([]) => (" AND 1 = 0".to_owned(), vec![]),
            Some(ids) => {
                let marks: Vec<String> = (0..ids.len()).map(|i| format!("${}", next + i)).collect();
                (
                    format!(" AND {column} IN ({})", marks.join(", ")),
                    ids.to_vec(),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_tenant_sees_its_accounts_only_and_an_empty_binding_sees_nothing() {
        let all = Tenant::workspace("w");
        assert!(all.sees("a") && all.sql_filter("account_id", 3).0.is_empty());
        let some = Tenant::bound("w", vec!["a".into(), "b".into()]);
        assert!(some.sees("a") && some.sees("b") && !some.sees("c"));
        assert_eq!(
            some.sql_filter("m.account_id", 3),
            (
                " AND m.account_id IN ($3, $4)".to_owned(),
                vec!["a".to_owned(), "b".to_owned()]
            )
        );
        let none = Tenant::bound("w", vec![]);
        assert!(!none.sees("a"));
        assert_eq!(none.sql_filter("account_id", 1).0, " AND 1 = 0");
    }
}
