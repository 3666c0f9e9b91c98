//! The changing side of the seam: read flag, moves, deletion, one attachment's bytes, the
//! whole message, drafts. IMAP accounts do it over their pooled sessions (the same connection
//! budget as reads and Sent copies). Gmail and Outlook mail is changed through the feed calls
//! instead (`feed_set_read`, `feed_move`, `feed_trash`, `feed_open_part`, see `feed`): these
//! IMAP-shaped calls (and drafts) answer a plain refusal for them.

use mailroom_core::ErrorKind;

use super::Mailbox;
use super::imap::{ImapMailbox, settle};
use super::part_stream::PartStream;
use crate::failure::{MailError, Protocol};
use crate::imap_smtp::change;

pub use crate::imap_smtp::change::{Appended, Trashed};

/// Changing Gmail and Outlook mail through the seam is not built yet: said plainly.
pub(super) fn changing_not_built(protocol: Protocol) -> MailError {
    let which = if protocol == Protocol::Gmail {
        "Gmail"
    } else {
        "Outlook"
    };
    MailError::rejected(
        protocol,
        ErrorKind::UnprocessableEntity,
        format!(
            "changing {which} mail (read state, folders, deletion, attachments, drafts) is not \
             supported for this provider yet"
        ),
    )
}

macro_rules! imap_only {
    ($self:expr, $m:ident => $call:expr) => {
        match $self {
            Mailbox::Imap($m) => $call,
            Mailbox::Gmail(_) => Err(changing_not_built(Protocol::Gmail)),
            Mailbox::Graph(_) => Err(changing_not_built(Protocol::Graph)),
        }
    };
}

impl Mailbox {
    /// Marks message `uid` of `folder` read or unread (`\Seen` on IMAP). A message no longer
    /// there is `ResourceNotFound`.
    pub async fn set_read(&self, folder: &str, uid: u32, read: bool) -> Result<(), MailError> {
        imap_only!(self, m => m.set_read(folder, uid, read).await)
    }

    /// Moves message `uid` from `from` to `to`; answers `(UIDVALIDITY, UID)` of the message in
    /// `to` when the server said (IMAP COPYUID).
    pub async fn move_message(
        &self,
        from: &str,
        uid: u32,
        to: &str,
    ) -> Result<Option<(u32, u32)>, MailError> {
        imap_only!(self, m => m.move_message(from, uid, to).await)
    }

    /// Moves message `uid` of `folder` to the Trash; expunges it where there is no Trash or
    /// it is in the Trash already.
    pub async fn trash(&self, folder: &str, uid: u32) -> Result<Trashed, MailError> {
        imap_only!(self, m => m.trash(folder, uid).await)
    }

    /// Removes message `uid` of `folder` for good.
    pub async fn expunge(&self, folder: &str, uid: u32) -> Result<(), MailError> {
        imap_only!(self, m => m.expunge(folder, uid).await)
    }

    /// The bytes of one MIME part (`part` as the index keeps it: `"2"`, `"1.2"`), decoded
    /// from its transfer encoding as they are fetched, in pieces, without the rest of the
    /// message. A missing message or part is an error before the stream starts.
    pub async fn open_part(
        &self,
        folder: &str,
        uid: u32,
        part: &str,
    ) -> Result<PartStream, MailError> {
        imap_only!(self, m => m.open_part(folder, uid, part).await)
    }

    /// The whole message as stored (nothing marked seen).
    pub async fn fetch_raw(&self, folder: &str, uid: u32) -> Result<Vec<u8>, MailError> {
        imap_only!(self, m => m.fetch_raw(folder, uid).await)
    }

    /// Files `raw` in the Drafts folder (IMAP: APPEND with `\Draft \Seen`).
    pub async fn append_draft(&self, raw: &[u8]) -> Result<Appended, MailError> {
        imap_only!(self, m => m.append_draft(raw).await)
    }
}

impl ImapMailbox {
    async fn set_read(&self, folder: &str, uid: u32, read: bool) -> Result<(), MailError> {
        let mut pooled = self.checkout().await?;
        let r = change::set_seen(pooled.session(), folder, uid, read).await;
        settle(pooled, r)
    }

    async fn move_message(
        &self,
        from: &str,
        uid: u32,
        to: &str,
    ) -> Result<Option<(u32, u32)>, MailError> {
        let mut pooled = self.checkout().await?;
        let r = change::move_message(pooled.session(), from, uid, to).await;
        settle(pooled, r)
    }

    async fn trash(&self, folder: &str, uid: u32) -> Result<Trashed, MailError> {
        let mut pooled = self.checkout().await?;
        let r = change::trash(pooled.session(), folder, uid).await;
        settle(pooled, r)
    }

    async fn expunge(&self, folder: &str, uid: u32) -> Result<(), MailError> {
        let mut pooled = self.checkout().await?;
        let r = change::expunge(pooled.session(), folder, uid).await;
        settle(pooled, r)
    }

    async fn fetch_raw(&self, folder: &str, uid: u32) -> Result<Vec<u8>, MailError> {
        let mut pooled = self.checkout().await?;
        let r = change::fetch_raw(pooled.session(), folder, uid).await;
        settle(pooled, r)
    }

    async fn append_draft(&self, raw: &[u8]) -> Result<Appended, MailError> {
        let mut pooled = self.checkout().await?;
        let r = change::append_draft(pooled.session(), raw).await;
        settle(pooled, r)
    }
}
