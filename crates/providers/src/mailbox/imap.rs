//! IMAP/SMTP accounts: send by SMTP submission through the shared connection pool; find
//! parents, file Sent copies and read folders and messages over the account's pooled IMAP
//! sessions.

use secrecy::SecretString;

use mailroom_core::MessageId;
use mailroom_core::account::MailSettings;
use mailroom_core::email::ReplyParent;

use super::reading::{FetchedMessage, FlagChange, FolderChanges, FolderState, RemoteFolder};
use super::session_pool::PooledSession;
use super::watching::WatchOptions;
use super::{Delivered, Outgoing, Providers};
use crate::failure::MailError;
use crate::imap_smtp::watch::ImapWatch;
use crate::imap_smtp::{imap, mailbox, qresync, read, smtp};

pub struct ImapMailbox {
    providers: Providers,
    /// `account:version`: a reconnect changes the version and so replaces pooled connections.
    pool_key: String,
    settings: MailSettings,
    imap_password: SecretString,
    smtp_password: SecretString,
}

impl ImapMailbox {
    pub(super) fn new(
        providers: Providers,
        account_id: &str,
        version: i64,
        settings: MailSettings,
        imap_password: SecretString,
        smtp_password: SecretString,
    ) -> Self {
        Self {
            providers,
            pool_key: format!("{account_id}:{version}"),
            settings,
            imap_password,
            smtp_password,
        }
    }

    fn imap_login(&self) -> imap::ImapLogin<'_> {
        imap_login(&self.settings, &self.imap_password)
    }

    pub(super) async fn send(&self, msg: &Outgoing<'_>) -> Result<Delivered, MailError> {
        let login = smtp_login(&self.settings, &self.smtp_password);
        self.providers
            .inner
            .smtp
            .send(
                &self.pool_key,
                &login,
                &self.providers.inner.net,
                msg.envelope_from,
                msg.recipients,
                msg.raw,
            )
            .await?;
        Ok(Delivered {
            provider_id: msg.message_id.bracketed(),
            needs_sent_copy: true,
        })
    }

    pub(super) async fn find_parent(
        &self,
        id: &MessageId,
    ) -> Result<Option<ReplyParent>, MailError> {
        let mut session = self.checkout().await?;
        let found = mailbox::find_by_message_id(session.session(), id).await?;
        session.release();
        Ok(found)
    }

    pub(super) async fn sent_copier(&self) -> Result<ImapSentCopier<'_>, MailError> {
        let session = self.checkout().await?;
        Ok(ImapSentCopier {
            mailbox: self,
            session: Some(session),
        })
    }

    pub(super) async fn list_folders(&self) -> Result<Vec<RemoteFolder>, MailError> {
        let mut pooled = self.checkout().await?;
        let (session, _) = pooled.parts();
        let r = read::list_folders(session).await;
        settle(pooled, r)
    }

    pub(super) async fn folder_state(&self, folder: &str) -> Result<FolderState, MailError> {
        let mut pooled = self.checkout().await?;
        let (session, facts) = pooled.parts();
        let r = read::examine(session, facts, folder).await;
        settle(pooled, r)
    }

    pub(super) async fn fetch_new(
        &self,
        folder: &str,
        uid_validity: u32,
        after_uid: u32,
        limit: usize,
    ) -> Result<Vec<FetchedMessage>, MailError> {
        let mut pooled = self.checkout().await?;
        let (session, facts) = pooled.parts();
        let r = read::fetch_new(session, facts, folder, uid_validity, after_uid, limit).await;
        settle(pooled, r)
    }

    pub(super) async fn fetch_flags_changed(
        &self,
        folder: &str,
        uid_validity: u32,
        since_modseq: u64,
    ) -> Result<Option<Vec<FlagChange>>, MailError> {
        let mut pooled = self.checkout().await?;
        let (session, facts) = pooled.parts();
        let r = read::fetch_flags_changed(session, facts, folder, uid_validity, since_modseq).await;
        settle(pooled, r)
    }

    pub(super) async fn uids(
        &self,
        folder: &str,
        uid_validity: u32,
    ) -> Result<Vec<u32>, MailError> {
        let mut pooled = self.checkout().await?;
        let (session, facts) = pooled.parts();
        let r = read::uids(session, facts, folder, uid_validity).await;
        settle(pooled, r)
    }

    pub(super) async fn uids_since(
        &self,
        folder: &str,
        uid_validity: u32,
        since_ms: i64,
    ) -> Result<Vec<u32>, MailError> {
        let mut pooled = self.checkout().await?;
        let (session, facts) = pooled.parts();
        let r = read::uids_since(session, facts, folder, uid_validity, since_ms).await;
        settle(pooled, r)
    }

    pub(super) async fn all_flags(
        &self,
        folder: &str,
        uid_validity: u32,
    ) -> Result<Vec<FlagChange>, MailError> {
        let mut pooled = self.checkout().await?;
        let (session, facts) = pooled.parts();
        let r = read::all_flags(session, facts, folder, uid_validity).await;
        settle(pooled, r)
    }

    pub(super) async fn changes_since(
        &self,
        folder: &str,
        uid_validity: u32,
        since_modseq: u64,
    ) -> Result<Option<FolderChanges>, MailError> {
        let mut pooled = self.checkout().await?;
        let (session, facts) = pooled.parts();
        let r = qresync::changes_since(session, facts, folder, uid_validity, since_modseq).await;
        settle(pooled, r)
    }

    /// A watch over a session of its own, taken from the account's budget for its lifetime.
    pub(super) async fn watch(&self, options: WatchOptions) -> Result<ImapWatch, MailError> {
        let dedicated = self
            .providers
            .inner
            .imap
            .checkout_dedicated(&self.pool_key, &self.imap_login())
            .await?;
        ImapWatch::start(dedicated, options.reissue_every).await
    }

    pub(super) async fn checkout(&self) -> Result<PooledSession, MailError> {
        self.providers
            .inner
            .imap
            .checkout(&self.pool_key, &self.imap_login())
            .await
    }
}

/// Sent copies over one pooled session; a session that failed a command is dropped, not
/// reused.
pub struct ImapSentCopier<'a> {
    mailbox: &'a ImapMailbox,
    session: Option<PooledSession>,
}

impl ImapSentCopier<'_> {
    pub(super) async fn append(&mut self, raw: &[u8]) -> Result<(), MailError> {
        let session = match self.session.as_mut() {
            Some(s) => s,
            None => self.session.insert(self.mailbox.checkout().await?),
        };
        match mailbox::append_sent(session.session(), raw).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.session = None;
                Err(e)
            }
        }
    }

    pub(super) fn finish(self) {
        if let Some(s) = self.session {
            s.release();
        }
    }
}

/// Gives the session back after a read that completed, or that failed on our own check
/// (a changed UIDVALIDITY: every command succeeded); a session that failed a command is
/// dropped.
pub(super) fn settle<T>(pooled: PooledSession, r: Result<T, MailError>) -> Result<T, MailError> {
    match &r {
        Ok(_) => pooled.release(),
        Err(e) if e.is_cursor_expired() => pooled.release(),
        Err(_) => drop(pooled),
    }
    r
}

pub(super) fn imap_login<'a>(
    settings: &'a MailSettings,
    password: &'a SecretString,
) -> imap::ImapLogin<'a> {
    imap::ImapLogin {
        host: &settings.imap_host,
        port: settings.imap_port,
        tls: settings.imap_tls(),
        user: &settings.imap_user,
        password,
    }
}

pub(super) fn smtp_login<'a>(
    settings: &'a MailSettings,
    password: &'a SecretString,
) -> smtp::SmtpLogin<'a> {
    smtp::SmtpLogin {
        host: &settings.smtp_host,
        port: settings.smtp_port,
        tls: settings.smtp_tls(),
        user: &settings.smtp_user,
        password,
        mechanisms: smtp::PASSWORD_MECHANISMS,
    }
}
