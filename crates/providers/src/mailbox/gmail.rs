//! Gmail accounts through the Gmail API.

use std::sync::Arc;

use tokio::sync::Semaphore;

use mailroom_core::MessageId;
use mailroom_core::account::AccountMode;
use mailroom_core::email::ReplyParent;

use super::{Delivered, Outgoing, TokenSource, bcc_of, with_token};
use crate::failure::MailError;
use crate::gmail::GmailClient;

pub struct GmailMailbox {
    client: GmailClient,
    tokens: Arc<dyn TokenSource>,
    mode: AccountMode,
    slots: Arc<Semaphore>,
}

impl GmailMailbox {
    pub(super) fn new(
        client: GmailClient,
        tokens: Arc<dyn TokenSource>,
        mode: AccountMode,
        slots: Arc<Semaphore>,
    ) -> Self {
        Self {
            client,
            tokens,
            mode,
            slots,
        }
    }

    pub(super) fn mode(&self) -> AccountMode {
        self.mode
    }

    /// `messages.send`. A reply stays in its Gmail thread only with the thread's id, which a
    /// send-only account cannot look up: its reply threads for the recipients by headers.
    pub(super) async fn send(&self, msg: &Outgoing<'_>) -> Result<Delivered, MailError> {
        let _slot = self.slots.acquire().await.expect("never closed");
        let bcc = bcc_of(msg.raw, msg.recipients);
        let parent = msg.parent.filter(|_| self.mode == AccountMode::Full);
        let sent = with_token(self.tokens.as_ref(), |token| {
            let bcc = &bcc;
            async move {
                let thread = match parent {
                    Some(p) => self
                        .client
                        .find_by_message_id(&token, p)
                        .await?
                        .map(|r| r.thread_id),
                    None => None,
                };
                self.client
                    .send(&token, msg.raw, bcc, thread.as_deref())
                    .await
            }
        })
        .await?;
        Ok(Delivered {
            provider_id: sent.id,
            needs_sent_copy: false,
        })
    }

    pub(super) async fn find_parent(
        &self,
        id: &MessageId,
    ) -> Result<Option<ReplyParent>, MailError> {
        if self.mode == AccountMode::Send {
            return Ok(Some(ReplyParent {
                message_id: id.bracketed(),
                references: vec![],
                subject: None,
            }));
        }
        let _slot = self.slots.acquire().await.expect("never closed");
        let found = with_token(self.tokens.as_ref(), |token| async move {
            self.client.find_by_message_id(&token, id).await
        })
        .await?;
        Ok(found.and_then(|r| r.reply_parent()))
    }
}
