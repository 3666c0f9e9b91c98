//! Transmitting a stored job through the account's mailbox.

use mailroom_core::{ErrorKind, MessageId};
use mailroom_providers::{Delivered, MailError, Outgoing, Protocol};
use mailroom_store::accounts::Account;
use mailroom_store::outbox::Job;

use super::Outbox;
use crate::mailboxes::OpenError;

impl Outbox {
    /// Sends the job's exact stored bytes. The parent (last of the thread's references) lets a
    /// provider keep a reply in its thread or conversation.
    pub(super) async fn transmit(
        &self,
        job: &Job,
        account: &Account,
        raw: &[u8],
    ) -> Result<Delivered, OpenError> {
        let mailbox = self.inner.mailboxes.open(account).await?;
        let message_id = MessageId::parse(&job.message_id).ok_or_else(|| {
            MailError::rejected(
                Protocol::Smtp,
                ErrorKind::UnexpectedError,
                format!("the job's Message-ID {} is not one", job.message_id),
            )
        })?;
        let parent = job.thread_refs.last().and_then(|r| MessageId::parse(r));
        let delivered = mailbox
            .send(&Outgoing {
                raw,
                envelope_from: &job.envelope_from,
                recipients: &job.recipients,
                message_id: &message_id,
                parent: parent.as_ref(),
            })
            .await?;
        Ok(delivered)
    }
}
