//! What the read side of the seam answers: folders, a folder's sync state, fetched messages
//! and flag changes. Plain data; the sync loops and the index keep what they need of it.

pub use mailroom_mime::ParsedMail;

/// A folder's role: the index's and the API's one enum (`role` of `GET /folders`), under the
/// name the read side has used.
pub use mailroom_core::mail::FolderRole as RemoteRole;

/// A folder of the mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFolder {
    /// As the server spells it (IMAP: modified UTF-7 included); what the other calls take.
    pub name: String,
    /// The hierarchy delimiter (`/`, `.`), when the server has one.
    pub delimiter: Option<String>,
    /// From the SPECIAL-USE attributes (RFC 6154), else from a well-known name; one folder per
    /// role at most (INBOX is always `inbox`).
    pub role: RemoteRole,
    /// Whether it can be opened (`\Noselect` / `\NonExistent` folders only hold others).
    pub selectable: bool,
}

/// Where a folder stands: what a sync compares with what it stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderState {
    /// UIDs are valid only with this value; when it changes, every stored UID of the folder is
    /// void (the calls taking it answer [`MailError::is_cursor_expired`](crate::MailError)).
    pub uid_validity: u32,
    /// The UID the next message will get (at least; `None` when the server did not say).
    pub uid_next: Option<u32>,
    /// Messages in the folder.
    pub exists: u32,
    /// CONDSTORE (RFC 7162): grows with every change in the folder. `None` when the server
    /// has no CONDSTORE or keeps no modseqs for this folder (`NOMODSEQ`).
    pub highest_modseq: Option<u64>,
}

/// The system flags of a message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageFlags {
    pub seen: bool,
    pub flagged: bool,
    pub answered: bool,
    pub draft: bool,
    pub deleted: bool,
}

/// A message fetched whole (without marking it seen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedMessage {
    pub uid: u32,
    pub flags: MessageFlags,
    /// When the server received it (IMAP INTERNALDATE), unix milliseconds.
    pub internal_date_ms: Option<i64>,
    /// Its size in bytes on the server (RFC822.SIZE).
    pub size: u32,
    /// `None` only when the bytes are no message at all.
    pub parsed: Option<ParsedMail>,
}

/// A message whose flags changed since a modseq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagChange {
    pub uid: u32,
    pub flags: MessageFlags,
    /// The message's modseq now.
    pub modseq: Option<u64>,
}

/// What changed in a folder since a modseq (QRESYNC, RFC 7162): what the sync applies instead of
/// a CONDSTORE flag read plus a UID diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderChanges {
    /// Messages whose flags changed (or that arrived) since the modseq, by UID, with their
    /// flags now.
    pub flags: Vec<FlagChange>,
    /// UIDs expunged since the modseq, ascending. May name UIDs the caller never saw (a server
    /// may answer a wider set than exact, RFC 7162 §3.2.5.1): ignore those.
    pub vanished: Vec<u32>,
    /// The folder's highest modseq now: the next call's `since`.
    pub highest_modseq: u64,
    /// Messages in the folder now.
    pub exists: u32,
    /// The UID the next message will get, when the server said.
    pub uid_next: Option<u32>,
}
