//! Outlook and Microsoft 365 accounts through Microsoft Graph.

use std::sync::Arc;

use tokio::sync::Semaphore;

use mailroom_core::MessageId;
use mailroom_core::account::AccountMode;
use mailroom_core::email::ReplyParent;

use super::{Delivered, Outgoing, TokenSource, bcc_of, with_token};
use crate::failure::MailError;
use crate::graph::GraphClient;

pub struct GraphMailbox {
    client: GraphClient,
    tokens: Arc<dyn TokenSource>,
    mode: AccountMode,
    slots: Arc<Semaphore>,
}

impl GraphMailbox {
    pub(super) fn new(
        client: GraphClient,
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

    /// `sendMail` with the MIME, or a draft (`createReply` for replies) for large messages.
    pub(super) async fn send(&self, msg: &Outgoing<'_>) -> Result<Delivered, MailError> {
        let _slot = self.slots.acquire().await.expect("never closed");
        let bcc = bcc_of(msg.raw, msg.recipients);
        let parent = msg.parent;
        with_token(self.tokens.as_ref(), |token| {
            let bcc = &bcc;
            async move { self.client.send_mime(&token, msg.raw, bcc, parent).await }
        })
        .await
        .map_err(crate::graph::as_send_failure)?;
        // Graph's sendMail answers no id; the Message-ID names the message.
        Ok(Delivered {
            provider_id: msg.message_id.bracketed(),
            needs_sent_copy: false,
        })
    }

    /// Graph's search answers the message's id; a reply goes through `createReply`, which
    /// keeps it in the conversation, so only the Message-ID is needed here.
    pub(super) async fn find_parent(
        &self,
        id: &MessageId,
    ) -> Result<Option<ReplyParent>, MailError> {
        let bare = ReplyParent {
            message_id: id.bracketed(),
            references: vec![],
            subject: None,
        };
        if self.mode == AccountMode::Send {
            return Ok(Some(bare));
        }
        let _slot = self.slots.acquire().await.expect("never closed");
        let found = with_token(self.tokens.as_ref(), |token| async move {
            self.client.find_by_internet_message_id(&token, id).await
        })
        .await?;
        Ok(found.map(|_| bare))
    }
}
