//! Opening an account's mailbox: its secrets from the vault, its token source, the seam.

use std::sync::Arc;

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

/// What opening a mailbox needs; cheap to clone.
#[derive(Clone)]
pub struct Mailboxes {
    pub store: Store,
    pub vault: Vault,
    pub tokens: Arc<Tokens>,
    pub providers: Providers,
}

impl Mailboxes {
    pub async fn open(&self, account: &Account) -> Result<Mailbox, OpenError> {
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
