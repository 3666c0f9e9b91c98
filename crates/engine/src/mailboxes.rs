//! Opening an account's mailbox: its secrets from the vault, its token source, the seam.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mailroom_core::ErrorKind;
use mailroom_providers::{MailError, Mailbox, Opening, Protocol, Providers, Secrets};
use mailroom_store::accounts::{self, Account, Credentials};
use mailroom_store::{Store, StoreError, Vault};

use crate::tokens::{AccountTokens, Tokens};

/// Why a mailbox could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Mail(#[from] MailError),
}

/// Open mailboxes by account id, with the account version they were opened at.
type OpenMailboxes = HashMap<String, (i64, Arc<Mailbox>)>;

/// Opens accounts' mailboxes and keeps them open: a mailbox is cheap to hold (its connections
/// live in the shared pools) and opening one reads and unseals the account's credentials, which
/// a burst of sends should not do per message. A reconnect changes the account's `updated_at`,
/// which opens it afresh. Cheap to clone; clones share what is open.
#[derive(Clone)]
pub struct Mailboxes {
    store: Store,
    vault: Vault,
    tokens: Arc<Tokens>,
    providers: Providers,
    open: Arc<Mutex<OpenMailboxes>>,
}

impl Mailboxes {
    pub fn new(store: Store, vault: Vault, tokens: Arc<Tokens>, providers: Providers) -> Self {
        Self {
            store,
            vault,
            tokens,
            providers,
            open: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The mailbox seam's shared state (what it says of providers, e.g. their send limits).
    pub fn providers(&self) -> &Providers {
        &self.providers
    }

    /// The account's mailbox, opened at its current version.
    pub async fn open(&self, account: &Account) -> Result<Arc<Mailbox>, OpenError> {
        if let Some((version, mailbox)) = self.lock().get(account.id.as_str())
            && *version == account.updated_at
        {
            return Ok(mailbox.clone());
        }
        let mailbox = Arc::new(self.open_new(account).await?);
        self.lock().insert(
            account.id.to_string(),
            (account.updated_at, mailbox.clone()),
        );
        Ok(mailbox)
    }

    /// Forgets an account's open mailbox and what the pools hold for it (deleted or
    /// reconnected).
    pub fn forget(&self, account_id: &str) {
        self.lock().remove(account_id);
        self.providers.forget(account_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OpenMailboxes> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn open_new(&self, account: &Account) -> Result<Mailbox, OpenError> {
        let credentials = accounts::credentials(&self.store, &self.vault, &account.id)
            .await?
            .ok_or_else(|| {
                MailError::rejected(
                    Protocol::Imap,
                    ErrorKind::InvalidAccount,
                    "the account has no credentials",
                )
            })?;
        // The kind of secret, not the provider: the seam decides how to use it.
        let secrets = match credentials {
            Credentials::Mail {
                imap_password,
                smtp_password,
            } => Secrets::Passwords {
                imap: imap_password,
                smtp: smtp_password,
            },
            Credentials::OAuth { .. } => Secrets::Tokens(Arc::new(AccountTokens::new(
                self.tokens.clone(),
                account.clone(),
            ))),
        };
        Ok(self.providers.open(Opening {
            account_id: &account.id,
            version: account.updated_at,
            account_type: account.account_type,
            settings: &account.settings,
            secrets,
        })?)
    }
}
