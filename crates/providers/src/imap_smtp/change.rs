//! Changing a mailbox over one IMAP session: the read flag (UID STORE), moves (UID MOVE,
//! RFC 6851, else UID COPY + `\Deleted` + UID EXPUNGE, RFC 4315), deletion (to the Trash
//! folder, else expunged), one MIME part fetched on its own in pieces
//! (`BODY.PEEK[<part>]<offset.size>`), and drafts
//! (APPEND `\Draft`).
//!
//! The new UIDs a move or an APPEND gives a message come from the UIDPLUS response codes
//! (`COPYUID`, `APPENDUID`), which async-imap's own commands drop: the commands that need them
//! are run by [`run_coded`], which reads the responses itself and keeps those codes.

use async_imap::imap_proto::rfc4315::UidSetMember;
use async_imap::imap_proto::{MessageSection, Response, ResponseCode, SectionPath, Status};
use async_imap::types::{Fetch, Flag, NameAttribute};
use futures_util::TryStreamExt as _;
use tokio::io::AsyncWriteExt as _;

use mailroom_core::ErrorKind;

use super::imap::ImapSession;
use super::mailbox::{DRAFTS_NAMES, Folder, TRASH_NAMES, folders, pick};
use super::read::read_err;
use crate::failure::{MailError, Protocol};

/// Where a deleted message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trashed {
    /// Moved to the Trash folder `folder`; `uid` there when the server said (COPYUID).
    Moved {
        folder: String,
        uid: Option<(u32, u32)>,
    },
    /// Expunged: the account has no Trash folder, or the message was in it already.
    Expunged,
}

/// A message APPENDed: its folder, and `(UIDVALIDITY, UID)` there when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub folder: String,
    pub uid: Option<(u32, u32)>,
}

fn not_found(detail: String) -> MailError {
    MailError::rejected(Protocol::Imap, ErrorKind::ResourceNotFound, detail)
}

/// A mailbox name as an IMAP quoted string (names come from LIST, so CR/LF never occur; they
/// are refused rather than sent).
fn quoted(name: &str) -> Result<String, MailError> {
    if name.contains(['\r', '\n']) {
        return Err(not_found(format!("no folder named {name:?}")));
    }
    Ok(format!(
        "\"{}\"",
        name.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

async fn has_capability(session: &mut ImapSession, name: &str) -> Result<bool, MailError> {
    let caps = session
        .capabilities()
        .await
        .map_err(|e| read_err("CAPABILITY", e))?;
    Ok(caps.has_str(name))
}

/// SELECTs `folder` (read-write) and answers the flags of `uid` there; a message that is not
/// (or no longer) there is `ResourceNotFound`.
async fn select_message(
    session: &mut ImapSession,
    folder: &str,
    uid: u32,
) -> Result<Vec<Flag<'static>>, MailError> {
    session
        .select(folder)
        .await
        .map_err(|e| read_err(&format!("SELECT {folder}"), e))?;
    let fetches: Vec<Fetch> = session
        .uid_fetch(uid.to_string(), "(UID FLAGS)")
        .await
        .map_err(|e| read_err(&format!("UID FETCH in {folder}"), e))?
        .try_collect()
        .await
        .map_err(|e| read_err(&format!("UID FETCH in {folder}"), e))?;
    let found = fetches
        .iter()
        .find(|f| f.uid == Some(uid))
        .ok_or_else(|| not_found(format!("no message with UID {uid} in {folder} any more")))?;
    Ok(found.flags().map(owned_flag).collect())
}

fn owned_flag(f: Flag<'_>) -> Flag<'static> {
    match f {
        Flag::Seen => Flag::Seen,
        Flag::Answered => Flag::Answered,
        Flag::Flagged => Flag::Flagged,
        Flag::Deleted => Flag::Deleted,
        Flag::Draft => Flag::Draft,
        Flag::Recent => Flag::Recent,
        Flag::MayCreate => Flag::MayCreate,
        Flag::Custom(c) => Flag::Custom(c.into_owned().into()),
    }
}

async fn store_flags(
    session: &mut ImapSession,
    folder: &str,
    uid: u32,
    change: &str,
) -> Result<(), MailError> {
    let _: Vec<Fetch> = session
        .uid_store(uid.to_string(), change)
        .await
        .map_err(|e| read_err(&format!("UID STORE in {folder}"), e))?
        .try_collect()
        .await
        .map_err(|e| read_err(&format!("UID STORE in {folder}"), e))?;
    Ok(())
}

/// Sets or clears `\Seen` on `uid` in `folder` (nothing is sent when it already is so).
pub async fn set_seen(
    session: &mut ImapSession,
    folder: &str,
    uid: u32,
    seen: bool,
) -> Result<(), MailError> {
    let flags = select_message(session, folder, uid).await?;
    if flags.contains(&Flag::Seen) == seen {
        return Ok(());
    }
    let change = if seen {
        "+FLAGS.SILENT (\\Seen)"
    } else {
        "-FLAGS.SILENT (\\Seen)"
    };
    store_flags(session, folder, uid, change).await
}

/// Moves `uid` from `from` to `to`; answers `(UIDVALIDITY, UID)` of the copy in `to` when the
/// server gave a COPYUID.
pub async fn move_message(
    session: &mut ImapSession,
    from: &str,
    uid: u32,
    to: &str,
) -> Result<Option<(u32, u32)>, MailError> {
    let target = quoted(to)?;
    let _ = select_message(session, from, uid).await?;
    if has_capability(session, "MOVE").await? {
        let codes = run_coded(session, &format!("UID MOVE {uid} {target}"), None)
            .await
            .map_err(|e| read_err(&format!("UID MOVE to {to}"), e))?;
        return Ok(copied_uid(&codes, uid));
    }
    let codes = run_coded(session, &format!("UID COPY {uid} {target}"), None)
        .await
        .map_err(|e| read_err(&format!("UID COPY to {to}"), e))?;
    expunge_selected(session, from, uid).await?;
    Ok(copied_uid(&codes, uid))
}

/// Flags `uid` (in the selected `folder`) `\Deleted` and expunges it: by UID EXPUNGE where
/// the server has UIDPLUS; else by EXPUNGE, which RFC 3501 offers no narrower form of (it also
/// removes what another client flagged `\Deleted` and left).
async fn expunge_selected(
    session: &mut ImapSession,
    folder: &str,
    uid: u32,
) -> Result<(), MailError> {
    store_flags(session, folder, uid, "+FLAGS.SILENT (\\Deleted)").await?;
    if has_capability(session, "UIDPLUS").await? {
        let _: Vec<u32> = session
            .uid_expunge(uid.to_string())
            .await
            .map_err(|e| read_err(&format!("UID EXPUNGE in {folder}"), e))?
            .try_collect()
            .await
            .map_err(|e| read_err(&format!("UID EXPUNGE in {folder}"), e))?;
    } else {
        let _: Vec<u32> = session
            .expunge()
            .await
            .map_err(|e| read_err(&format!("EXPUNGE in {folder}"), e))?
            .try_collect()
            .await
            .map_err(|e| read_err(&format!("EXPUNGE in {folder}"), e))?;
    }
    Ok(())
}

/// Removes `uid` from `folder` for good.
pub async fn expunge(session: &mut ImapSession, folder: &str, uid: u32) -> Result<(), MailError> {
    let _ = select_message(session, folder, uid).await?;
    expunge_selected(session, folder, uid).await
}

/// Moves `uid` to the Trash folder (SPECIAL-USE `\Trash`, else a well-known name); expunges
/// it when there is none, or when it is in the Trash already.
pub async fn trash(
    session: &mut ImapSession,
    folder: &str,
    uid: u32,
) -> Result<Trashed, MailError> {
    let all = folders(session).await?;
    match trash_for(&all, folder) {
        Some(trash) => {
            let uid = move_message(session, folder, uid, &trash).await?;
            Ok(Trashed::Moved { folder: trash, uid })
        }
        None => {
            expunge(session, folder, uid).await?;
            Ok(Trashed::Expunged)
        }
    }
}

/// Where a message of `folder` goes when deleted: the Trash, unless there is none or it is
/// the Trash (`None`: expunge).
fn trash_for(all: &[Folder], folder: &str) -> Option<String> {
    pick(all, &NameAttribute::Trash, TRASH_NAMES)
        .filter(|trash| *trash != folder)
        .map(str::to_owned)
}

/// The first piece of a MIME part fetched alone: its MIME header (which tells its transfer
/// encoding and charset) and up to [`PART_PIECE`] of its still encoded body.
pub struct PartStart {
    pub mime: Vec<u8>,
    pub first: Vec<u8>,
    /// The section path (`[1, 2]` for `"1.2"`), for [`fetch_piece`].
    pub path: Vec<u32>,
}

/// The size of one partial fetch (`BODY.PEEK[<part>]<offset.size>`): what a download holds in
/// memory at once, against one round trip per piece.
pub const PART_PIECE: u32 = 256 * 1024;

/// Opens MIME part `part` (`"2"`, `"1.2"`) of `uid` in `folder`: EXAMINE, then its MIME header
/// (`BODY.PEEK[<part>.MIME]`) and the first piece of its body. The folder stays selected for
/// the [`fetch_piece`]s that follow on the same session.
pub async fn open_part(
    session: &mut ImapSession,
    folder: &str,
    uid: u32,
    part: &str,
) -> Result<PartStart, MailError> {
    let path: Vec<u32> = part
        .split('.')
        .map(|n| n.parse::<u32>().ok().filter(|n| *n > 0))
        .collect::<Option<Vec<u32>>>()
        .ok_or_else(|| not_found(format!("no part {part:?}")))?;
    session
        .examine(folder)
        .await
        .map_err(|e| read_err(&format!("EXAMINE {folder}"), e))?;
    // A message that is not multipart has a part 1 whose MIME header is the message's header;
    // servers differ on answering `1.MIME` for it, so the header is fetched as well.
    let header = if path == [1] {
        "BODY.PEEK[HEADER] "
    } else {
        ""
    };
    let items = format!("(UID {header}BODY.PEEK[{part}.MIME] BODY.PEEK[{part}]<0.{PART_PIECE}>)");
    let fetches = uid_fetch(session, folder, uid, &items).await?;
    let f = fetches
        .iter()
        .find(|f| f.uid == Some(uid))
        .ok_or_else(|| not_found(format!("no message with UID {uid} in {folder} any more")))?;
    let first = f
        .section(&SectionPath::Part(path.clone(), None))
        .ok_or_else(|| not_found(format!("the message has no part {part}")))?
        .to_vec();
    let mime = f
        .section(&SectionPath::Part(path.clone(), Some(MessageSection::Mime)))
        .filter(|h| !h.iter().all(u8::is_ascii_whitespace))
        .or_else(|| (path == [1]).then(|| f.header()).flatten())
        .unwrap_or_default()
        .to_vec();
    Ok(PartStart { mime, first, path })
}

/// The encoded bytes of the part at `path` of `uid` from `offset`, at most [`PART_PIECE`]
/// (fewer: the part ends there), in the folder [`open_part`] selected.
pub async fn fetch_piece(
    session: &mut ImapSession,
    folder: &str,
    uid: u32,
    path: &[u32],
    offset: u64,
) -> Result<Vec<u8>, MailError> {
    let part: Vec<String> = path.iter().map(u32::to_string).collect();
    let part = part.join(".");
    let items = format!("(UID BODY.PEEK[{part}]<{offset}.{PART_PIECE}>)");
    let fetches = uid_fetch(session, folder, uid, &items).await?;
    fetches
        .iter()
        .find(|f| f.uid == Some(uid))
        .ok_or_else(|| not_found(format!("message UID {uid} left {folder} while being read")))
        .map(|f| {
            // Past the end a server answers an empty string (or NIL).
            f.section(&SectionPath::Part(path.to_vec(), None))
                .unwrap_or_default()
                .to_vec()
        })
}

async fn uid_fetch(
    session: &mut ImapSession,
    folder: &str,
    uid: u32,
    items: &str,
) -> Result<Vec<Fetch>, MailError> {
    session
        .uid_fetch(uid.to_string(), items)
        .await
        .map_err(|e| read_err(&format!("UID FETCH in {folder}"), e))?
        .try_collect()
        .await
        .map_err(|e| read_err(&format!("UID FETCH in {folder}"), e))
}

/// The whole message `uid` of `folder`, as stored (`BODY.PEEK[]`: nothing is marked seen).
pub async fn fetch_raw(
    session: &mut ImapSession,
    folder: &str,
    uid: u32,
) -> Result<Vec<u8>, MailError> {
    session
        .examine(folder)
        .await
        .map_err(|e| read_err(&format!("EXAMINE {folder}"), e))?;
    uid_fetch(session, folder, uid, "(UID BODY.PEEK[])")
        .await?
        .iter()
        .find(|f| f.uid == Some(uid))
        .and_then(|f| f.body())
        .map(<[u8]>::to_vec)
        .ok_or_else(|| not_found(format!("no message with UID {uid} in {folder} any more")))
}

/// APPENDs `raw` to the Drafts folder (SPECIAL-USE `\Drafts`, else a well-known name), flagged
/// `\Draft \Seen`.
pub async fn append_draft(session: &mut ImapSession, raw: &[u8]) -> Result<Appended, MailError> {
    let all = folders(session).await?;
    let folder = pick(&all, &NameAttribute::Drafts, DRAFTS_NAMES)
        .map(str::to_owned)
        .ok_or_else(|| {
            MailError::rejected(
                Protocol::Imap,
                ErrorKind::UnprocessableEntity,
                "the account has no Drafts folder (no \\Drafts mailbox and none named Drafts)",
            )
        })?;
    let command = format!(
        "APPEND {} (\\Draft \\Seen) {{{}}}",
        quoted(&folder)?,
        raw.len()
    );
    let codes = run_coded(session, &command, Some(raw))
        .await
        .map_err(|e| read_err(&format!("APPEND to {folder}"), e))?;
    let uid = codes.iter().find_map(|c| match c {
        Code::AppendUid(validity, uids) => uids.first().map(|u| (*validity, *u)),
        Code::CopyUid(..) => None,
    });
    let uid = match uid {
        Some(u) => Some(u),
        None => find_appended(session, &folder, raw).await?,
    };
    Ok(Appended { folder, uid })
}

/// Without UIDPLUS: the newest message of `folder` with the Message-ID of `raw`.
async fn find_appended(
    session: &mut ImapSession,
    folder: &str,
    raw: &[u8],
) -> Result<Option<(u32, u32)>, MailError> {
    let Some(id) = mailroom_mime::parse_mail(raw)
        .and_then(|p| p.message_id)
        .filter(|id| id.is_ascii() && !id.contains(['"', '\\']))
    else {
        return Ok(None);
    };
    let mb = session
        .examine(folder)
        .await
        .map_err(|e| read_err(&format!("EXAMINE {folder}"), e))?;
    let uids = session
        .uid_search(format!("HEADER Message-ID \"{id}\""))
        .await
        .map_err(|e| read_err(&format!("UID SEARCH in {folder}"), e))?;
    Ok(mb
        .uid_validity
        .and_then(|v| uids.into_iter().max().map(|u| (v, u))))
}

/// The UIDPLUS codes a command was answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Code {
    /// UIDVALIDITY of the target, UIDs of the source, UIDs in the target.
    CopyUid(u32, Vec<u32>, Vec<u32>),
    AppendUid(u32, Vec<u32>),
}

fn expand(set: &[UidSetMember]) -> Vec<u32> {
    set.iter()
        .flat_map(|m| match m {
            UidSetMember::Uid(u) => *u..=*u,
            UidSetMember::UidRange(r) => r.clone(),
        })
        .collect()
}

fn code_of(code: Option<&ResponseCode<'_>>) -> Option<Code> {
    match code? {
        ResponseCode::CopyUid(v, src, dst) => Some(Code::CopyUid(*v, expand(src), expand(dst))),
        ResponseCode::AppendUid(v, uids) => Some(Code::AppendUid(*v, expand(uids))),
        _ => None,
    }
}

/// The target UID of `uid` in the COPYUID of a MOVE (sent untagged before the expunges,
/// RFC 6851 §4.3) or of a COPY (tagged).
fn copied_uid(codes: &[Code], uid: u32) -> Option<(u32, u32)> {
    codes.iter().find_map(|c| match c {
        Code::CopyUid(v, src, dst) if src.len() == dst.len() => {
            src.iter().position(|s| *s == uid).map(|i| (*v, dst[i]))
        }
        _ => None,
    })
}

/// Runs one command (with `literal` sent after the server's continuation, for APPEND) and
/// reads every response up to its tagged completion, keeping the UIDPLUS codes of the untagged
/// and tagged OKs. Other untagged responses (EXPUNGE, EXISTS, FETCH) are dropped: the session
/// is pooled and nothing waits for them.
async fn run_coded(
    session: &mut ImapSession,
    command: &str,
    literal: Option<&[u8]>,
) -> Result<Vec<Code>, async_imap::error::Error> {
    use async_imap::error::Error;
    let id = session.run_command(command).await?;
    let mut literal = literal;
    let mut codes = Vec::new();
    loop {
        let Some(response) = session.read_response().await? else {
            return Err(Error::ConnectionLost);
        };
        match response.parsed() {
            Response::Continue(_) => {
                let Some(bytes) = literal.take() else {
                    return Err(Error::Bad("unexpected continuation request".into()));
                };
                let stream = session.get_mut();
                stream.write_all(bytes).await?;
                stream.write_all(b"\r\n").await?;
                stream.flush().await?;
            }
            Response::Done {
                tag,
                status,
                outcome,
            } if *tag == id => {
                let info = outcome.information.as_deref().unwrap_or("").to_owned();
                return match status {
                    Status::Ok => {
                        codes.extend(code_of(outcome.code.as_ref()));
                        Ok(codes)
                    }
                    Status::No => Err(Error::No(info)),
                    _ => Err(Error::Bad(info)),
                };
            }
            Response::Data {
                status: Status::Ok,
                outcome,
            } => codes.extend(code_of(outcome.code.as_ref())),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted() {
        assert_eq!(quoted("Trash").unwrap(), "\"Trash\"");
        assert_eq!(quoted("a\"b\\c").unwrap(), "\"a\\\"b\\\\c\"");
        assert!(quoted("a\r\nb").is_err());
    }

    fn folder(name: &str, attributes: Vec<NameAttribute<'static>>) -> Folder {
        Folder {
            name: name.into(),
            delimiter: Some("/".into()),
            attributes,
        }
    }

    #[test]
    fn deleted_mail_goes_to_the_trash_else_is_expunged() {
        let with_trash = vec![
            folder("INBOX", vec![]),
            folder("Corbeille", vec![NameAttribute::Trash]),
        ];
        assert_eq!(
            trash_for(&with_trash, "INBOX").as_deref(),
            Some("Corbeille")
        );
        // Deleting what is in the Trash already: expunged.
        assert_eq!(trash_for(&with_trash, "Corbeille"), None);
        // No \Trash and no well-known name: expunged.
        let without = vec![folder("INBOX", vec![]), folder("Archive", vec![])];
        assert_eq!(trash_for(&without, "INBOX"), None);
        // A well-known name without SPECIAL-USE is the Trash.
        let named = vec![folder("INBOX", vec![]), folder("Deleted Items", vec![])];
        assert_eq!(trash_for(&named, "INBOX").as_deref(), Some("Deleted Items"));
    }

    #[test]
    fn copied_uids_follow_the_source_order() {
        let codes = vec![Code::CopyUid(7, vec![3, 4, 5], vec![10, 11, 12])];
        assert_eq!(copied_uid(&codes, 4), Some((7, 11)));
        assert_eq!(copied_uid(&codes, 9), None);
        assert_eq!(
            expand(&[UidSetMember::UidRange(2..=4), UidSetMember::Uid(9)]),
            vec![2, 3, 4, 9]
        );
    }
}
