//! Reading a mailbox over one IMAP session: folders with their roles, a folder's state, new
//! messages by UID, flag changes by modseq (CONDSTORE, RFC 7162) and the UID set (for the
//! expunge diff where there is no QRESYNC). Folders are opened with EXAMINE (read-only) and
//! bodies fetched with `BODY.PEEK[]`, so reading never changes `\Seen` or `\Recent`.
//!
//! CONDSTORE is asked once per session (CAPABILITY, then `ENABLE CONDSTORE`, RFC 5161): once
//! enabled, every EXAMINE answers `HIGHESTMODSEQ` (RFC 7162 §3.1), the same as
//! `EXAMINE box (CONDSTORE)` but without a command async-imap does not model.

use async_imap::types::{Fetch, Flag, NameAttribute};
use futures_util::TryStreamExt as _;

use mailroom_core::ErrorKind;

use super::imap::ImapSession;
use super::mailbox::{
    ARCHIVE_NAMES, DRAFTS_NAMES, Folder, JUNK_NAMES, SENT_NAMES, TRASH_NAMES, folders, imap_err,
    pick,
};
use crate::failure::{FailureKind, MailError, Protocol};
use crate::mailbox::reading::{
    FetchedMessage, FlagChange, FolderState, MessageFlags, RemoteFolder, RemoteRole,
};
use crate::mailbox::session_pool::SessionFacts;

/// Failures of a read: a folder the server does not have is `ResourceNotFound`; other
/// refusals are the provider's (`ProviderError`); network and throttling as everywhere.
pub(crate) fn read_err(doing: &str, e: async_imap::error::Error) -> MailError {
    use async_imap::error::Error;
    let missing = match &e {
        Error::No(text) => {
            let upper = text.to_ascii_uppercase();
            upper.contains("NONEXISTENT") || upper.contains("DOESN'T EXIST")
        }
        _ => false,
    };
    let refused = matches!(e, Error::No(_) | Error::Bad(_));
    let err = imap_err(doing, e);
    if missing {
        MailError::rejected(
            Protocol::Imap,
            ErrorKind::ResourceNotFound,
            format!("{doing}: no such folder"),
        )
    } else if refused && matches!(err.kind, FailureKind::Rejected(_)) {
        MailError::rejected(Protocol::Imap, ErrorKind::ProviderError, err.detail)
    } else {
        err
    }
}

/// Every folder, with its role: SPECIAL-USE attributes first, else the well-known names; at
/// most one folder per role, INBOX always `inbox`.
pub async fn list_folders(session: &mut ImapSession) -> Result<Vec<RemoteFolder>, MailError> {
    let all = folders(session).await?;
    // Every mailbox has an INBOX (RFC 3501 §5.1). A listing without one is a refused or broken
    // LIST (async-imap ends the stream quietly on a tagged `NO`), never "the folders are gone":
    // taken at its word it would empty the account's index.
    if !all.iter().any(|f| f.name.eq_ignore_ascii_case("INBOX")) {
        return Err(MailError::protocol_error(
            Protocol::Imap,
            format!(
                "LIST: the server listed {} folders and no INBOX (a refused or broken LIST)",
                all.len()
            ),
        ));
    }
    Ok(with_roles(&all))
}

fn with_roles(all: &[Folder]) -> Vec<RemoteFolder> {
    let by_role: Vec<(RemoteRole, Option<&str>)> = vec![
        (
            RemoteRole::Sent,
            pick(all, &NameAttribute::Sent, SENT_NAMES),
        ),
        (
            RemoteRole::Drafts,
            pick(all, &NameAttribute::Drafts, DRAFTS_NAMES),
        ),
        (
            RemoteRole::Trash,
            pick(all, &NameAttribute::Trash, TRASH_NAMES),
        ),
        (
            RemoteRole::Spam,
            pick(all, &NameAttribute::Junk, JUNK_NAMES),
        ),
        (RemoteRole::All, pick(all, &NameAttribute::All, &[])),
        (
            RemoteRole::Archive,
            pick(all, &NameAttribute::Archive, ARCHIVE_NAMES),
        ),
        (RemoteRole::Starred, pick(all, &NameAttribute::Flagged, &[])),
        (
            RemoteRole::Important,
            all.iter()
                .find(|f| f.selectable() && f.has_extension("\\Important"))
                .map(|f| f.name.as_str()),
        ),
    ];
    let mut taken: Vec<&str> = Vec::new();
    all.iter()
        .map(|f| {
            let role = if f.name.eq_ignore_ascii_case("INBOX") {
                RemoteRole::Inbox
            } else {
                by_role
                    .iter()
                    .find(|(_, name)| *name == Some(f.name.as_str()))
                    .map_or(RemoteRole::Unknown, |(role, _)| *role)
            };
            // A folder named for a role by its name only (Archive) keeps it once.
            let role = if role != RemoteRole::Unknown && taken.contains(&role.as_str()) {
                RemoteRole::Unknown
            } else {
                taken.push(role.as_str());
                role
            };
            RemoteFolder {
                name: f.name.clone(),
                delimiter: f.delimiter.clone(),
                role,
                selectable: f.selectable(),
            }
        })
        .collect()
}

/// Whether CONDSTORE is enabled on this session, enabling it the first time where the server
/// advertises it (with ENABLE).
pub async fn condstore(
    session: &mut ImapSession,
    facts: &mut SessionFacts,
) -> Result<bool, MailError> {
    if let Some(on) = facts.condstore {
        return Ok(on);
    }
    let caps = session
        .capabilities()
        .await
        .map_err(|e| read_err("CAPABILITY", e))?;
    let on = caps.has_str("CONDSTORE") && caps.has_str("ENABLE");
    if on {
        session
            .run_command_and_check_ok("ENABLE CONDSTORE")
            .await
            .map_err(|e| read_err("ENABLE CONDSTORE", e))?;
    }
    facts.condstore = Some(on);
    Ok(on)
}

/// EXAMINEs `folder` (read-only) and answers its state.
pub async fn examine(
    session: &mut ImapSession,
    facts: &mut SessionFacts,
    folder: &str,
) -> Result<FolderState, MailError> {
    let condstore = condstore(session, facts).await?;
    let mb = session
        .examine(folder)
        .await
        .map_err(|e| read_err(&format!("EXAMINE {folder}"), e))?;
    let uid_validity = mb.uid_validity.ok_or_else(|| {
        MailError::rejected(
            Protocol::Imap,
            ErrorKind::ProviderError,
            format!("EXAMINE {folder} answered no UIDVALIDITY"),
        )
    })?;
    Ok(FolderState {
        uid_validity,
        uid_next: mb.uid_next,
        exists: mb.exists,
        highest_modseq: mb.highest_modseq.filter(|_| condstore),
    })
}

/// EXAMINEs `folder` and checks its UIDVALIDITY is still `uid_validity`.
async fn examine_valid(
    session: &mut ImapSession,
    facts: &mut SessionFacts,
    folder: &str,
    uid_validity: u32,
) -> Result<FolderState, MailError> {
    let state = examine(session, facts, folder).await?;
    if state.uid_validity != uid_validity {
        return Err(MailError::new(
            Protocol::Imap,
            FailureKind::CursorExpired,
            format!(
                "the UIDVALIDITY of {folder} changed from {uid_validity} to {}: its UIDs are void",
                state.uid_validity
            ),
        ));
    }
    Ok(state)
}

/// The messages of `folder` with a UID above `after_uid`, oldest first, at most `limit`,
/// fetched whole with `BODY.PEEK[]` and parsed.
pub async fn fetch_new(
    session: &mut ImapSession,
    facts: &mut SessionFacts,
    folder: &str,
    uid_validity: u32,
    after_uid: u32,
    limit: usize,
) -> Result<Vec<FetchedMessage>, MailError> {
    let state = examine_valid(session, facts, folder, uid_validity).await?;
    let Some(first) = after_uid.checked_add(1) else {
        return Ok(vec![]);
    };
    if limit == 0 || state.exists == 0 || state.uid_next.is_some_and(|next| next <= first) {
        return Ok(vec![]);
    }
    // `first:*` also matches the last message when every UID is below `first` (RFC 3501
    // §6.4.8), hence the filter.
    let mut uids: Vec<u32> = session
        .uid_search(format!("UID {first}:*"))
        .await
        .map_err(|e| read_err(&format!("UID SEARCH in {folder}"), e))?
        .into_iter()
        .filter(|&u| u > after_uid)
        .collect();
    uids.sort_unstable();
    uids.truncate(limit);
    if uids.is_empty() {
        return Ok(vec![]);
    }
    let fetches: Vec<Fetch> = session
        .uid_fetch(
            uid_set(&uids),
            "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])",
        )
        .await
        .map_err(|e| read_err(&format!("UID FETCH in {folder}"), e))?
        .try_collect()
        .await
        .map_err(|e| read_err(&format!("UID FETCH in {folder}"), e))?;
    let mut messages: Vec<FetchedMessage> = fetches
        .iter()
        .filter_map(|f| {
            let uid = f.uid.filter(|u| uids.binary_search(u).is_ok())?;
            // An unsolicited FETCH (a flag change) carries no body.
            let body = f.body()?;
            Some(FetchedMessage {
                uid,
                flags: flags_of(f),
                internal_date_ms: f.internal_date().map(|d| d.timestamp_millis()),
                size: f.size.unwrap_or(body.len() as u32),
                parsed: mailroom_mime::parse_mail(body),
            })
        })
        .collect();
    messages.sort_by_key(|m| m.uid);
    messages.dedup_by_key(|m| m.uid);
    Ok(messages)
}

/// The messages of `folder` whose flags changed after `since_modseq`
/// (`UID FETCH 1:* (FLAGS) (CHANGEDSINCE m)`); `None` when the session has no CONDSTORE.
pub async fn fetch_flags_changed(
    session: &mut ImapSession,
    facts: &mut SessionFacts,
    folder: &str,
    uid_validity: u32,
    since_modseq: u64,
) -> Result<Option<Vec<FlagChange>>, MailError> {
    if !condstore(session, facts).await? {
        return Ok(None);
    }
    let state = examine_valid(session, facts, folder, uid_validity).await?;
    if state.highest_modseq.is_none() {
        // NOMODSEQ: this folder keeps none.
        return Ok(None);
    }
    if state.exists == 0 {
        return Ok(Some(vec![]));
    }
    let fetches: Vec<Fetch> = session
        .uid_fetch("1:*", format!("(UID FLAGS) (CHANGEDSINCE {since_modseq})"))
        .await
        .map_err(|e| read_err(&format!("UID FETCH CHANGEDSINCE in {folder}"), e))?
        .try_collect()
        .await
        .map_err(|e| read_err(&format!("UID FETCH CHANGEDSINCE in {folder}"), e))?;
    let mut changes: Vec<FlagChange> = fetches
        .iter()
        .filter_map(|f| {
            Some(FlagChange {
                uid: f.uid?,
                flags: flags_of(f),
                modseq: f.modseq,
            })
        })
        .collect();
    changes.sort_by_key(|c| c.uid);
    changes.dedup_by_key(|c| c.uid);
    Ok(Some(changes))
}

/// Every UID of `folder`, ascending (`UID SEARCH ALL`).
pub async fn uids(
    session: &mut ImapSession,
    facts: &mut SessionFacts,
    folder: &str,
    uid_validity: u32,
) -> Result<Vec<u32>, MailError> {
    let state = examine_valid(session, facts, folder, uid_validity).await?;
    if state.exists == 0 {
        return Ok(vec![]);
    }
    let mut all: Vec<u32> = session
        .uid_search("ALL")
        .await
        .map_err(|e| read_err(&format!("UID SEARCH ALL in {folder}"), e))?
        .into_iter()
        .collect();
    all.sort_unstable();
    Ok(all)
}

/// The UIDs of `folder` whose INTERNALDATE falls on or after the day of `since_ms` (UTC),
/// ascending (`UID SEARCH SINCE d-Mon-yyyy`: IMAP compares whole days, so the caller filters
/// the fetched messages by their exact INTERNALDATE).
pub async fn uids_since(
    session: &mut ImapSession,
    facts: &mut SessionFacts,
    folder: &str,
    uid_validity: u32,
    since_ms: i64,
) -> Result<Vec<u32>, MailError> {
    let state = examine_valid(session, facts, folder, uid_validity).await?;
    if state.exists == 0 {
        return Ok(vec![]);
    }
    let day = imap_date(since_ms);
    let mut found: Vec<u32> = session
        .uid_search(format!("SINCE {day}"))
        .await
        .map_err(|e| read_err(&format!("UID SEARCH SINCE in {folder}"), e))?
        .into_iter()
        .collect();
    found.sort_unstable();
    Ok(found)
}

/// The flags of every message of `folder` (`UID FETCH 1:* (UID FLAGS)`): how a server without
/// CONDSTORE tells what changed (the caller compares with what it stored).
pub async fn all_flags(
    session: &mut ImapSession,
    facts: &mut SessionFacts,
    folder: &str,
    uid_validity: u32,
) -> Result<Vec<FlagChange>, MailError> {
    let state = examine_valid(session, facts, folder, uid_validity).await?;
    if state.exists == 0 {
        return Ok(vec![]);
    }
    let fetches: Vec<Fetch> = session
        .uid_fetch("1:*", "(UID FLAGS)")
        .await
        .map_err(|e| read_err(&format!("UID FETCH FLAGS in {folder}"), e))?
        .try_collect()
        .await
        .map_err(|e| read_err(&format!("UID FETCH FLAGS in {folder}"), e))?;
    let mut all: Vec<FlagChange> = fetches
        .iter()
        .filter_map(|f| {
            Some(FlagChange {
                uid: f.uid?,
                flags: flags_of(f),
                modseq: None,
            })
        })
        .collect();
    all.sort_by_key(|c| c.uid);
    all.dedup_by_key(|c| c.uid);
    Ok(all)
}

/// The system flags among flag names as the server wrote them (`\Seen`, …).
pub(crate) fn flags_from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> MessageFlags {
    let mut flags = MessageFlags::default();
    for name in names {
        let on = if name.eq_ignore_ascii_case("\\Seen") {
            &mut flags.seen
        } else if name.eq_ignore_ascii_case("\\Flagged") {
            &mut flags.flagged
        } else if name.eq_ignore_ascii_case("\\Answered") {
            &mut flags.answered
        } else if name.eq_ignore_ascii_case("\\Draft") {
            &mut flags.draft
        } else if name.eq_ignore_ascii_case("\\Deleted") {
            &mut flags.deleted
        } else {
            continue;
        };
        *on = true;
    }
    flags
}

fn flags_of(f: &Fetch) -> MessageFlags {
    let mut flags = MessageFlags::default();
    for flag in f.flags() {
        match flag {
            Flag::Seen => flags.seen = true,
            Flag::Flagged => flags.flagged = true,
            Flag::Answered => flags.answered = true,
            Flag::Draft => flags.draft = true,
            Flag::Deleted => flags.deleted = true,
            _ => {}
        }
    }
    flags
}

/// An IMAP `date` (RFC 3501 §9: `1-Dec-2026`) of the UTC day of `ms`.
fn imap_date(ms: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = mailroom_core::time_fmt::from_ms(ms);
    format!(
        "{}-{}-{}",
        t.day(),
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.year()
    )
}

/// `1:3,7,9:10` for sorted `uids`.
fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            end += 1;
            i += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imap_dates_name_the_utc_day() {
        // 2026-12-01T23:59:59.999Z and the next millisecond.
        assert_eq!(imap_date(1_796_169_599_999), "1-Dec-2026");
        assert_eq!(imap_date(1_796_169_600_000), "2-Dec-2026");
        assert_eq!(imap_date(0), "1-Jan-1970");
    }

    fn folder(name: &str, attributes: Vec<NameAttribute<'static>>) -> Folder {
        Folder {
            name: name.into(),
            delimiter: Some(".".into()),
            attributes,
        }
    }

    #[test]
    fn uid_sets_are_ranges() {
        assert_eq!(uid_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_set(&[5]), "5");
    }

    #[test]
    fn roles_from_special_use_then_names() {
        let all = vec![
            folder("INBOX", vec![]),
            folder("Sent", vec![]),
            folder("Gesendet", vec![NameAttribute::Sent]),
            folder("Trash", vec![]),
            folder("Junk", vec![NameAttribute::Junk]),
            folder("Spam", vec![]),
            folder("Archive", vec![]),
            folder("Starred", vec![NameAttribute::Flagged]),
            folder(
                "Wichtig",
                vec![NameAttribute::Extension("\\Important".into())],
            ),
            folder("[Gmail]", vec![NameAttribute::NoSelect]),
            folder("Drafts", vec![NameAttribute::Drafts]),
            folder("Projects", vec![]),
        ];
        let listed = with_roles(&all);
        let roles: Vec<(&str, &str, bool)> = listed
            .iter()
            .map(|f| (f.name.as_str(), f.role.as_str(), f.selectable))
            .collect();
        assert_eq!(
            roles,
            [
                ("INBOX", "inbox", true),
                ("Sent", "unknown", true),
                ("Gesendet", "sent", true),
                ("Trash", "trash", true),
                ("Junk", "spam", true),
                ("Spam", "unknown", true),
                ("Archive", "archive", true),
                ("Starred", "starred", true),
                ("Wichtig", "important", true),
                ("[Gmail]", "unknown", false),
                ("Drafts", "drafts", true),
                ("Projects", "unknown", true),
            ]
        );
    }
}
