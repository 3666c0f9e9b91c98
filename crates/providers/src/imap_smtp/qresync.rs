//! What changed in a folder since a modseq, in one round trip (QRESYNC, RFC 7162 §3.2.5):
//! `EXAMINE folder (QRESYNC (uidvalidity modseq))` answers the folder's state, then
//! `* VANISHED (EARLIER) uid-set` for the messages expunged since and an untagged `FETCH
//! (UID FLAGS MODSEQ)` for every message whose flags changed (or that arrived) since.
//!
//! QRESYNC is enabled once per session (`ENABLE QRESYNC`, which also enables CONDSTORE). From
//! then on the session reports expunges as `VANISHED` instead of `EXPUNGE` (RFC 7162 §3.2.10):
//! code that counts `EXPUNGE` responses on a pooled session must look at
//! [`SessionFacts::qresync`] first. A server without QRESYNC, or a folder that keeps no
//! modseqs (`NOMODSEQ`), answers `None`: the caller diffs UIDs instead.

use std::ops::RangeInclusive;

use async_imap::imap_proto::{AttributeValue, MailboxDatum, Response, ResponseCode, Status};

use mailroom_core::ErrorKind;

use super::imap::ImapSession;
use super::raw;
use super::read::{flags_from_names, read_err};
use crate::failure::{FailureKind, MailError, Protocol};
use crate::mailbox::reading::{FlagChange, FolderChanges};
use crate::mailbox::session_pool::SessionFacts;

/// More vanished UIDs than this in one answer are not listed (see [`changes_since`]).
const MAX_VANISHED: u64 = 1_000_000;

/// Whether QRESYNC is enabled on this session, enabling it the first time where the server
/// advertises it.
pub async fn qresync(
    session: &mut ImapSession,
    facts: &mut SessionFacts,
) -> Result<bool, MailError> {
    if let Some(on) = facts.qresync {
        return Ok(on);
    }
    let caps = session
        .capabilities()
        .await
        .map_err(|e| read_err("CAPABILITY", e))?;
    let on = caps.has_str("QRESYNC") && caps.has_str("ENABLE");
    if on {
        session
            .run_command_and_check_ok("ENABLE QRESYNC")
            .await
            .map_err(|e| read_err("ENABLE QRESYNC", e))?;
        // RFC 7162 §3.2.3: enabling QRESYNC enables CONDSTORE too.
        facts.condstore = Some(true);
    }
    facts.qresync = Some(on);
    Ok(on)
}

/// What an `EXAMINE … (QRESYNC …)` answered.
#[derive(Debug, Default)]
struct Answer {
    uid_validity: Option<u32>,
    uid_next: Option<u32>,
    exists: u32,
    highest_modseq: Option<u64>,
    no_modseq: bool,
    vanished: Vec<RangeInclusive<u32>>,
    flags: Vec<FlagChange>,
}

impl Answer {
    fn take(&mut self, resp: &Response<'_>) {
        match resp {
            Response::MailboxData(MailboxDatum::Exists(n)) => self.exists = *n,
            Response::Data {
                status: Status::Ok,
                outcome,
            } => match &outcome.code {
                Some(ResponseCode::UidValidity(v)) => self.uid_validity = Some(*v),
                Some(ResponseCode::UidNext(n)) => self.uid_next = Some(*n),
                Some(ResponseCode::HighestModSeq(m)) => self.highest_modseq = Some(*m),
                // imap-proto does not model NOMODSEQ: it is left in the text.
                None if outcome
                    .information
                    .as_deref()
                    .is_some_and(|t| t.to_ascii_uppercase().starts_with("[NOMODSEQ]")) =>
                {
                    self.no_modseq = true
                }
                _ => {}
            },
            Response::Vanished { uids, .. } => self.vanished.extend(uids.iter().cloned()),
            Response::Fetch(_, attrs) => {
                let mut uid = None;
                let mut modseq = None;
                let mut flags = None;
                for a in attrs {
                    match a {
                        AttributeValue::Uid(u) => uid = Some(*u),
                        AttributeValue::ModSeq(m) => modseq = Some(*m),
                        AttributeValue::Flags(f) => {
                            flags = Some(flags_from_names(f.iter().map(|s| s.as_ref())))
                        }
                        _ => {}
                    }
                }
                if let (Some(uid), Some(flags)) = (uid, flags) {
                    self.flags.push(FlagChange { uid, flags, modseq });
                }
            }
            _ => {}
        }
    }
}

/// The changes of `folder` since `since_modseq` (see the module docs); `None` without
/// QRESYNC or modseqs. A changed UIDVALIDITY is [`MailError::is_cursor_expired`].
pub async fn changes_since(
    session: &mut ImapSession,
    facts: &mut SessionFacts,
    folder: &str,
    uid_validity: u32,
    since_modseq: u64,
) -> Result<Option<FolderChanges>, MailError> {
    if !qresync(session, facts).await? {
        return Ok(None);
    }
    let name = raw::quoted(folder).ok_or_else(|| {
        MailError::rejected(
            Protocol::Imap,
            ErrorKind::ResourceNotFound,
            format!("{folder:?} is no folder name"),
        )
    })?;
    let command = format!("EXAMINE {name} (QRESYNC ({uid_validity} {since_modseq}))");
    let mut answer = Answer::default();
    raw::run(session, &command, |r| answer.take(r))
        .await
        .map_err(|e| read_err(&format!("EXAMINE {folder} (QRESYNC)"), e))?;
    let now = answer.uid_validity.ok_or_else(|| {
        MailError::rejected(
            Protocol::Imap,
            ErrorKind::ProviderError,
            format!("EXAMINE {folder} answered no UIDVALIDITY"),
        )
    })?;
    if now != uid_validity {
        return Err(MailError::new(
            Protocol::Imap,
            FailureKind::CursorExpired,
            format!(
                "the UIDVALIDITY of {folder} changed from {uid_validity} to {now}: its UIDs are void"
            ),
        ));
    }
    let Some(highest_modseq) = answer.highest_modseq.filter(|_| !answer.no_modseq) else {
        return Ok(None);
    };
    // No UID reaches UIDNEXT; a server that cannot say exactly what vanished may name a
    // wide range (RFC 7162 §3.2.5.1), which is cut there.
    let ceiling = answer.uid_next.map_or(u32::MAX, |n| n.saturating_sub(1));
    let named: u64 = answer
        .vanished
        .iter()
        .map(|r| u64::from((*r.end()).min(ceiling).saturating_sub(*r.start())) + 1)
        .sum();
    if named > MAX_VANISHED {
        // Too wide to list: the UID diff is cheaper than this.
        return Ok(None);
    }
    let mut vanished: Vec<u32> = answer
        .vanished
        .iter()
        .flat_map(|r| *r.start()..=(*r.end()).min(ceiling))
        .collect();
    vanished.sort_unstable();
    vanished.dedup();
    let mut flags = answer.flags;
    flags.sort_by_key(|c| c.uid);
    flags.dedup_by_key(|c| c.uid);
    Ok(Some(FolderChanges {
        flags,
        vanished,
        highest_modseq,
        exists: answer.exists,
        uid_next: answer.uid_next,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(lines: &[&str]) -> Answer {
        let mut a = Answer::default();
        for l in lines {
            let (rest, r) = Response::parse(l.as_bytes()).expect(l);
            assert!(rest.is_empty(), "{l}");
            a.take(&r);
        }
        a
    }

    #[test]
    fn an_examine_with_qresync_is_read() {
        let a = feed(&[
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n",
            "* 3 EXISTS\r\n",
            "* OK [UIDVALIDITY 77] UIDs valid\r\n",
            "* OK [UIDNEXT 9] Predicted next UID\r\n",
            "* OK [HIGHESTMODSEQ 40] Highest\r\n",
            "* VANISHED (EARLIER) 2,4:5\r\n",
            "* 1 FETCH (UID 1 FLAGS (\\Seen \\Flagged) MODSEQ (38))\r\n",
            "* 3 FETCH (UID 8 MODSEQ (39) FLAGS ())\r\n",
        ]);
        assert_eq!(a.uid_validity, Some(77));
        assert_eq!(a.uid_next, Some(9));
        assert_eq!(a.exists, 3);
        assert_eq!(a.highest_modseq, Some(40));
        assert_eq!(a.vanished, vec![2..=2, 4..=5]);
        assert_eq!(a.flags.len(), 2);
        assert!(a.flags[0].flags.seen && a.flags[0].flags.flagged);
        assert_eq!((a.flags[1].uid, a.flags[1].modseq), (8, Some(39)));
        assert!(!a.flags[1].flags.seen);
        assert!(!a.no_modseq);
    }

    #[test]
    fn nomodseq_is_seen() {
        let a = feed(&["* OK [NOMODSEQ] Sorry, this mailbox format has no modseqs\r\n"]);
        assert!(a.no_modseq);
    }
}
