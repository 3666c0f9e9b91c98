//! IMAP/SMTP accounts: send by SMTP submission through the shared connection pool; find
//! parents and file Sent copies over the account's pooled IMAP sessions.

use secrecy::SecretString;

use mailroom_core::MessageId;
use mailroom_core::account::MailSettings;
use mailroom_core::email::ReplyParent;

use super::session_pool::PooledSession;
use super::{Delivered, Outgoing, Providers};
use crate::failure::MailError;
use crate::imap_smtp::{imap, mailbox, smtp};

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

    async fn checkout(&self) -> Result<PooledSession, MailError> {
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
