//! Mailbox work done around a send: the Sent copy (generic IMAP servers keep none by
//! themselves, `providers.md` §C.4) and finding the mail a reply answers by its Message-ID.

use async_imap::types::NameAttribute;
use futures_util::TryStreamExt as _;

use super::imap::ImapSession;
use crate::failure::{MailError, Protocol};
use mailroom_core::MessageId;
use mailroom_core::email::ReplyParent;

/// Names tried, in order, when no mailbox carries the SPECIAL-USE `\Sent` attribute.
pub(crate) const SENT_NAMES: &[&str] = &[
    "Sent",
    "Sent Items",
    "Sent Messages",
    "INBOX.Sent",
    "[Gmail]/Sent Mail",
];
pub(crate) const ARCHIVE_NAMES: &[&str] = &["Archive", "INBOX.Archive", "[Gmail]/All Mail"];
/// The same for `\Drafts`, `\Trash` and `\Junk` (names of Dovecot, Courier, Exchange,
/// Gmail and the usual clients' defaults).
pub(crate) const DRAFTS_NAMES: &[&str] = &["Drafts", "INBOX.Drafts", "[Gmail]/Drafts"];
pub(crate) const TRASH_NAMES: &[&str] = &[
    "Trash",
    "Deleted Items",
    "Deleted Messages",
    "INBOX.Trash",
    "[Gmail]/Trash",
    "[Gmail]/Bin",
];
pub(crate) const JUNK_NAMES: &[&str] = &[
    "Junk",
    "Spam",
    "Junk E-mail",
    "Junk Email",
    "INBOX.Junk",
    "INBOX.Spam",
    "[Gmail]/Spam",
];

/// Hits examined per folder: a Message-ID is unique in practice, but a substring search can
/// also match a longer id, so the exact id is checked on the fetched headers.
const MAX_HITS: usize = 5;

pub(crate) fn imap_err(doing: &str, e: async_imap::error::Error) -> MailError {
    use async_imap::error::Error;
    let detail = format!("{doing}: {e}");
    match e {
        Error::Io(_) | Error::ConnectionLost => MailError::unreachable(Protocol::Imap, detail),
        // RFC 5530 codes that say "later" rather than "never".
        Error::No(ref text)
            if ["[OVERQUOTA]", "[LIMIT]", "[INUSE]", "[UNAVAILABLE]"]
                .iter()
                .any(|c| text.to_ascii_uppercase().contains(c)) =>
        {
            MailError::throttling(Protocol::Imap, detail)
        }
        _ => MailError::protocol_error(Protocol::Imap, detail),
    }
}

pub(crate) struct Folder {
    pub(crate) name: String,
    pub(crate) delimiter: Option<String>,
    pub(crate) attributes: Vec<NameAttribute<'static>>,
}

impl Folder {
    pub(crate) fn has(&self, a: &NameAttribute<'_>) -> bool {
        self.attributes.iter().any(|x| x == a)
    }

    /// An attribute the parser does not model (`\\NonExistent`, `\\Important`), by name.
    pub(crate) fn has_extension(&self, name: &str) -> bool {
        self.attributes
            .iter()
            .any(|a| matches!(a, NameAttribute::Extension(x) if x.eq_ignore_ascii_case(name)))
    }

    pub(crate) fn selectable(&self) -> bool {
        !self.has(&NameAttribute::NoSelect) && !self.has_extension("\\NonExistent")
    }
}

pub(crate) async fn folders(session: &mut ImapSession) -> Result<Vec<Folder>, MailError> {
    let names: Vec<_> = session
        .list(Some(""), Some("*"))
        .await
        .map_err(|e| imap_err("LIST", e))?
        .try_collect()
        .await
        .map_err(|e| imap_err("LIST", e))?;
    Ok(names
        .iter()
        .map(|n| Folder {
            // Kept as the server spells it (modified UTF-7 included): that is what SELECT and
            // APPEND expect back.
            name: n.name().to_owned(),
            delimiter: n.delimiter().map(str::to_owned),
            attributes: n
                .attributes()
                .iter()
                .cloned()
                .map(NameAttribute::into_owned)
                .collect(),
        })
        .collect())
}

/// The folder with `attribute`, else the first existing of `names` (case-insensitive).
pub(crate) fn pick<'a>(
    folders: &'a [Folder],
    attribute: &NameAttribute<'_>,
    names: &[&str],
) -> Option<&'a str> {
    if let Some(f) = folders.iter().find(|f| f.selectable() && f.has(attribute)) {
        return Some(&f.name);
    }
    names.iter().find_map(|want| {
        folders
            .iter()
            .find(|f| f.selectable() && f.name.eq_ignore_ascii_case(want))
            .map(|f| f.name.as_str())
    })
}

/// The account's Sent folder: SPECIAL-USE `\Sent` (RFC 6154), else a well-known name.
pub async fn sent_folder(session: &mut ImapSession) -> Result<String, MailError> {
    let all = folders(session).await?;
    pick(&all, &NameAttribute::Sent, SENT_NAMES)
        .map(str::to_owned)
        .ok_or_else(|| {
            MailError::protocol_error(
                Protocol::Imap,
                "the account has no Sent folder (no \\Sent mailbox and none named Sent, \
                 Sent Items or Sent Messages)",
            )
        })
}

/// APPENDs `bytes`, unchanged, to the Sent folder, flagged `\Seen`.
pub async fn append_sent(session: &mut ImapSession, bytes: &[u8]) -> Result<(), MailError> {
    let folder = sent_folder(session).await?;
    session
        .append(&folder, Some("(\\Seen)"), None, bytes)
        .await
        .map_err(|e| imap_err(&format!("APPEND to {folder}"), e))
}

/// `id` as an IMAP quoted string may carry it: [`MessageId::parse`] already refused quotes,
/// backslashes, brackets, spaces and controls; a SEARCH without CHARSET also needs ASCII.
fn searchable_id(id: &MessageId) -> Option<String> {
    id.bare().is_ascii().then(|| id.bracketed())
}

/// The mail whose Message-ID is `message_id`, searched in INBOX, the Sent folder, then the
/// archive (`\All` or `\Archive`); `None` when no folder has it. A non-ASCII id is never sent
/// to the server and finds nothing.
pub async fn find_by_message_id(
    session: &mut ImapSession,
    message_id: &MessageId,
) -> Result<Option<ReplyParent>, MailError> {
    let Some(id) = searchable_id(message_id) else {
        return Ok(None);
    };
    let all = folders(session).await?;
    let mut order: Vec<&str> = vec!["INBOX"];
    order.extend(pick(&all, &NameAttribute::Sent, SENT_NAMES));
    order.extend(pick(&all, &NameAttribute::All, &[]));
    order.extend(pick(&all, &NameAttribute::Archive, ARCHIVE_NAMES));
    let mut seen = Vec::new();
    for folder in order {
        if seen.contains(&folder) {
            continue;
        }
        seen.push(folder);
        if let Some(parent) = search_folder(session, folder, &id).await? {
            return Ok(Some(parent));
        }
    }
    Ok(None)
}

async fn search_folder(
    session: &mut ImapSession,
    folder: &str,
    id: &str,
) -> Result<Option<ReplyParent>, MailError> {
    // EXAMINE: read-only, so looking never changes \Recent or flags.
    session
        .examine(folder)
        .await
        .map_err(|e| imap_err(&format!("EXAMINE {folder}"), e))?;
    let mut uids: Vec<u32> = session
        .uid_search(format!("HEADER Message-ID \"{id}\""))
        .await
        .map_err(|e| imap_err(&format!("UID SEARCH in {folder}"), e))?
        .into_iter()
        .collect();
    if uids.is_empty() {
        return Ok(None);
    }
    uids.sort_unstable();
    uids.truncate(MAX_HITS);
    let set = uids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let fetches: Vec<_> = session
        .uid_fetch(&set, "BODY.PEEK[HEADER]")
        .await
        .map_err(|e| imap_err(&format!("UID FETCH in {folder}"), e))?
        .try_collect()
        .await
        .map_err(|e| imap_err(&format!("UID FETCH in {folder}"), e))?;
    let mut hits: Vec<_> = fetches
        .iter()
        .filter_map(|f| Some((f.uid?, f.header()?)))
        .collect();
    hits.sort_by_key(|(uid, _)| *uid);
    Ok(hits.into_iter().find_map(|(_, header)| {
        mailroom_mime::parent::parse_reply_parent(header).filter(|p| p.message_id == id)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_searched_bracketed_and_ascii_only() {
        let id = MessageId::parse(" <abc@x.test> ").unwrap();
        assert_eq!(searchable_id(&id).as_deref(), Some("<abc@x.test>"));
        let accented = MessageId::parse("caf\u{e9}@x").unwrap();
        assert_eq!(searchable_id(&accented), None);
    }

    fn folder(name: &str, attributes: Vec<NameAttribute<'static>>) -> Folder {
        Folder {
            name: name.into(),
            delimiter: Some("/".into()),
            attributes,
        }
    }

    #[test]
    fn special_use_wins_over_names() {
        let all = vec![
            folder("INBOX", vec![]),
            folder("Sent", vec![]),
            folder("Gesendet", vec![NameAttribute::Sent]),
        ];
        assert_eq!(
            pick(&all, &NameAttribute::Sent, SENT_NAMES),
            Some("Gesendet")
        );
        let all = vec![
            folder("INBOX", vec![]),
            folder("[Gmail]", vec![NameAttribute::NoSelect]),
            folder("sent items", vec![]),
        ];
        assert_eq!(
            pick(&all, &NameAttribute::Sent, SENT_NAMES),
            Some("sent items")
        );
        assert_eq!(pick(&all, &NameAttribute::Archive, ARCHIVE_NAMES), None);
    }
}
