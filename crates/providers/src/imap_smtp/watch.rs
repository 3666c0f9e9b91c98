//! Push for IMAP accounts: one dedicated session that waits for the server to say something
//! changed, and says which folders.
//!
//! - **NOTIFY** (RFC 5465), where the server offers it (Dovecot does): INBOX is examined and
//!   `NOTIFY SET (selected (MessageNew MessageExpunge FlagChange)) (personal (MessageNew
//!   MessageExpunge FlagChange MailboxName))` asks for every folder of the user's namespace.
//!   Changes in INBOX then arrive as `EXISTS` / `EXPUNGE` / `FETCH` (or `VANISHED`), in any
//!   other folder as an untagged `STATUS folder (…)` (with `HIGHESTMODSEQ` once CONDSTORE is
//!   enabled, which is how a flag change elsewhere shows), a created or deleted folder as
//!   `LIST`, and a lost backlog as `* OK [NOTIFICATIONOVERFLOW]` (every folder, unknown).
//!   A server that advertises NOTIFY but refuses this filter is watched with IDLE instead.
//! - **IDLE** (RFC 2177) on INBOX otherwise: `EXISTS`, `EXPUNGE`, `FETCH` or `VANISHED` wake
//!   the watch for INBOX only; the other folders are the caller's to sweep.
//!
//! Both wait inside `IDLE`, which is ended (`DONE`) and issued again every
//! [`IDLE_REISSUE`] (the period is a parameter so tests can shorten it): RFC 2177 lets a
//! server log off a client idle for 30 minutes, and the round trip also proves the connection
//! still works (no answer within [`COMMAND_TIMEOUT`] ends the watch).
//!
//! The session is read by a task of its own that merges what it learns into one pending set
//! (so a burst of changes is one wake-up and memory stays bounded); [`ImapWatch::next`] only
//! waits for that set, which makes it cancel-safe. Dropping the watch ends the task, which
//! leaves politely (`DONE`, `LOGOUT`, bounded) and then gives the session's place in the
//! account's budget back.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_imap::error::Error;
use async_imap::imap_proto::{MailboxDatum, RequestId, Response, Status};
use tokio::sync::Notify;
use tokio::time::Instant;

use mailroom_core::ErrorKind;

use super::mailbox::imap_err;
use super::read;
use crate::failure::{MailError, Protocol};
use crate::mailbox::Changes;
use crate::mailbox::session_pool::DedicatedSession;

/// How often IDLE is ended and issued again: before the 29 minutes RFC 2177 allows, with room.
pub const IDLE_REISSUE: Duration = Duration::from_secs(25 * 60);
/// The longest re-issue period accepted (RFC 2177: "at least every 29 minutes").
const MAX_REISSUE: Duration = Duration::from_secs(29 * 60);
/// How long the server may take to answer the watch's own commands (setup, `DONE`, `IDLE`).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

const NOTIFY_SET: &str = "NOTIFY SET (selected (MessageNew MessageExpunge FlagChange)) \
                          (personal (MessageNew MessageExpunge FlagChange MailboxName))";

/// The folder whose changes arrive as `EXISTS` / `EXPUNGE` / `FETCH`: the examined one.
const SELECTED: &str = "INBOX";

/// A running watch (see the module docs).
pub struct ImapWatch {
    all_folders: bool,
    shared: Arc<Shared>,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Something was added to `pending`.
    wake: Notify,
    /// The watch was dropped: the task leaves.
    stop: Notify,
}

#[derive(Default)]
struct Pending {
    folders: BTreeSet<String>,
    /// A change in a folder the server did not name (a notification overflow).
    unknown: bool,
    /// The watch is over; answered once everything before it was.
    failed: Option<MailError>,
}

/// What one untagged response means for the watch.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Folder(String),
    Unknown,
    Nothing,
}

fn classify(resp: &Response<'_>) -> Seen {
    match resp {
        Response::MailboxData(MailboxDatum::Status { mailbox, .. }) => {
            Seen::Folder(mailbox.to_string())
        }
        Response::MailboxData(MailboxDatum::List(l)) => Seen::Folder(l.name.to_string()),
        Response::MailboxData(MailboxDatum::Exists(_))
        | Response::Expunge(_)
        | Response::Vanished { .. }
        | Response::Fetch(..) => Seen::Folder(SELECTED.into()),
        // imap-proto leaves the NOTIFICATIONOVERFLOW code in the text.
        Response::Data {
            status: Status::Ok,
            outcome,
        } if outcome
            .information
            .as_deref()
            .is_some_and(|t| t.to_ascii_uppercase().contains("[NOTIFICATIONOVERFLOW]")) =>
        {
            Seen::Unknown
        }
        _ => Seen::Nothing,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn note(&self, resp: &Response<'_>) {
        let seen = classify(resp);
        {
            let mut p = lock(&self.pending);
            match seen {
                Seen::Folder(f) => {
                    p.folders.insert(f);
                }
                Seen::Unknown => p.unknown = true,
                Seen::Nothing => return,
            }
        }
        self.wake.notify_one();
    }

    fn fail(&self, e: MailError) {
        lock(&self.pending).failed = Some(e);
        self.wake.notify_one();
    }

    /// What is pending, changes before the failure that ended the watch.
    fn take(&self) -> Option<Result<Changes, MailError>> {
        let mut p = lock(&self.pending);
        if p.unknown || !p.folders.is_empty() {
            let folders = std::mem::take(&mut p.folders);
            let unknown = std::mem::replace(&mut p.unknown, false);
            return Some(Ok(Changes::Folders(if unknown {
                vec![]
            } else {
                folders.into_iter().collect()
            })));
        }
        p.failed.clone().map(Err)
    }
}

impl ImapWatch {
    /// Sets the watch up on `dedicated` (errors come from here: a refused command, a lost
    /// connection) and starts reading it.
    pub(crate) async fn start(
        mut dedicated: DedicatedSession,
        reissue_every: Duration,
    ) -> Result<ImapWatch, MailError> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
            stop: Notify::new(),
        });
        let (all_folders, tag) =
            match tokio::time::timeout(COMMAND_TIMEOUT, setup(&mut dedicated, &shared)).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(MailError::unreachable(
                        Protocol::Imap,
                        format!(
                            "the server did not set up the watch within {}s",
                            COMMAND_TIMEOUT.as_secs()
                        ),
                    ));
                }
            };
        // A zero period would spin; a longer one than RFC 2177 allows gets the watch logged off.
        let period = reissue_every.clamp(Duration::from_millis(10), MAX_REISSUE);
        tokio::spawn(run(dedicated, tag, shared.clone(), period));
        Ok(ImapWatch {
            all_folders,
            shared,
        })
    }

    /// Whether every folder is watched (NOTIFY), not only INBOX (IDLE).
    pub(crate) fn covers_all_folders(&self) -> bool {
        self.all_folders
    }

    /// The folders that changed since the last call, waiting at most `max_wait` for one.
    /// Cancel-safe: nothing is taken until it is returned.
    pub(crate) async fn next(&mut self, max_wait: Duration) -> Result<Changes, MailError> {
        // A wait too long to add (`Duration::MAX`) is a wait of a year.
        let deadline = Instant::now()
            .checked_add(max_wait)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600));
        loop {
            if let Some(r) = self.shared.take() {
                return r;
            }
            if tokio::time::timeout_at(deadline, self.shared.wake.notified())
                .await
                .is_err()
            {
                return self.shared.take().unwrap_or(Ok(Changes::Timeout));
            }
        }
    }
}

impl Drop for ImapWatch {
    fn drop(&mut self) {
        // A stored permit: the task sees it even when it is not waiting right now.
        self.shared.stop.notify_one();
    }
}

/// CAPABILITY, CONDSTORE (with NOTIFY), EXAMINE INBOX, NOTIFY SET where offered, IDLE.
/// Answers whether NOTIFY is in use, and the tag of the IDLE.
async fn setup(d: &mut DedicatedSession, shared: &Shared) -> Result<(bool, RequestId), MailError> {
    let session = &mut d.session;
    let caps = session
        .capabilities()
        .await
        .map_err(|e| imap_err("CAPABILITY", e))?;
    if !caps.has_str("IDLE") {
        return Err(MailError::rejected(
            Protocol::Imap,
            ErrorKind::ProviderError,
            "the IMAP server offers no IDLE: push is not possible, poll instead",
        ));
    }
    let offers_notify = caps.has_str("NOTIFY");
    if offers_notify {
        // With CONDSTORE on, a flag change in another folder comes as a STATUS with its new
        // HIGHESTMODSEQ; without it, only changes of the unseen count would.
        read::condstore(session, &mut d.facts).await?;
    }
    session
        .examine(SELECTED)
        .await
        .map_err(|e| imap_err("EXAMINE INBOX", e))?;
    let notify = offers_notify
        && match session.run_command_and_check_ok(NOTIFY_SET).await {
            Ok(()) => true,
            Err(Error::No(text) | Error::Bad(text)) => {
                tracing::info!(refusal = %text, "the IMAP server refused NOTIFY; watching INBOX with IDLE");
                false
            }
            Err(e) => return Err(imap_err("NOTIFY SET", e)),
        };
    // What arrived during the setup went to async-imap's side channel: looked at, so a change
    // between the EXAMINE and the IDLE is not lost.
    while let Ok(u) = session.unsolicited_responses.try_recv() {
        use async_imap::types::UnsolicitedResponse as U;
        match u {
            U::Status { mailbox, .. } => {
                lock(&shared.pending).folders.insert(mailbox);
            }
            U::Exists(_) | U::Expunge(_) => {
                lock(&shared.pending).folders.insert(SELECTED.into());
            }
            U::Other(resp) => shared.note(resp.parsed()),
            U::Recent(_) => {}
        }
    }
    let tag = start_idle(session, shared)
        .await
        .map_err(|e| imap_err("IDLE", e))?;
    Ok((notify, tag))
}

/// Sends IDLE and waits for the server's `+`, noting what arrives meanwhile.
async fn start_idle(
    session: &mut crate::imap_smtp::imap::ImapSession,
    shared: &Shared,
) -> Result<RequestId, Error> {
    let tag = session.run_command("IDLE").await?;
    loop {
        let Some(resp) = session.read_response().await? else {
            return Err(Error::ConnectionLost);
        };
        match resp.parsed() {
            Response::Continue { .. } => return Ok(tag),
            Response::Done {
                tag: t,
                status,
                outcome,
            } if *t == tag => {
                let what = format!("IDLE refused: {:?}", outcome.information);
                return Err(match status {
                    Status::No => Error::No(what),
                    _ => Error::Bad(what),
                });
            }
            Response::Data {
                status: Status::Bye,
                ..
            } => return Err(Error::ConnectionLost),
            other => shared.note(other),
        }
    }
}

/// Ends an IDLE (`DONE`) and waits for its tagged answer, noting what arrives meanwhile.
async fn end_idle(
    session: &mut crate::imap_smtp::imap::ImapSession,
    tag: &RequestId,
    shared: &Shared,
) -> Result<(), Error> {
    session.run_command_untagged("DONE").await?;
    loop {
        let Some(resp) = session.read_response().await? else {
            return Err(Error::ConnectionLost);
        };
        match resp.parsed() {
            Response::Done { tag: t, status, .. } if t == tag => {
                return match status {
                    Status::Ok => Ok(()),
                    _ => Err(Error::Bad("DONE was refused".into())),
                };
            }
            Response::Data {
                status: Status::Bye,
                ..
            } => return Err(Error::ConnectionLost),
            other => shared.note(other),
        }
    }
}

fn lost(detail: impl std::fmt::Display) -> MailError {
    MailError::unreachable(
        Protocol::Imap,
        format!("the watch connection was lost: {detail}"),
    )
}

/// How listening inside one IDLE ended.
enum Heard {
    /// The period is over: end the IDLE and issue it again.
    Period,
    /// The server ended the IDLE itself: issue it again.
    EndedByServer,
    Stop,
    Lost(MailError),
}

/// The watch's task: listens, re-issues IDLE every `period`, ends on a drop or a failure.
async fn run(mut d: DedicatedSession, mut tag: RequestId, shared: Arc<Shared>, period: Duration) {
    let failure = loop {
        let until = Instant::now() + period;
        let heard = loop {
            tokio::select! {
                biased;
                _ = shared.stop.notified() => break Heard::Stop,
                r = d.session.read_response() => match r {
                    Ok(Some(resp)) => match resp.parsed() {
                        Response::Done { tag: t, .. } if *t == tag => break Heard::EndedByServer,
                        Response::Data { status: Status::Bye, outcome } => {
                            break Heard::Lost(lost(format!("the server said BYE ({:?})", outcome.information)))
                        }
                        other => shared.note(other),
                    },
                    Ok(None) => break Heard::Lost(lost("the server closed it")),
                    Err(e) => break Heard::Lost(lost(e)),
                },
                _ = tokio::time::sleep_until(until) => break Heard::Period,
            }
        };
        let ended = match heard {
            Heard::Stop => {
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    end_idle(&mut d.session, &tag, &shared).await?;
                    d.session.logout().await
                })
                .await;
                return;
            }
            Heard::Lost(e) => break e,
            Heard::Period => false,
            Heard::EndedByServer => true,
        };
        let again = tokio::time::timeout(COMMAND_TIMEOUT, async {
            if !ended {
                end_idle(&mut d.session, &tag, &shared).await?;
            }
            start_idle(&mut d.session, &shared).await
        })
        .await;
        match again {
            Ok(Ok(t)) => tag = t,
            Ok(Err(e)) => break lost(e),
            Err(_) => {
                break lost(format!(
                    "no answer to DONE / IDLE within {}s",
                    COMMAND_TIMEOUT.as_secs()
                ));
            }
        }
    };
    tracing::debug!(error = %failure, "IMAP watch ended");
    shared.fail(failure);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(line: &str) -> Seen {
        let (rest, r) = Response::parse(line.as_bytes()).expect(line);
        assert!(rest.is_empty(), "{line}");
        classify(&r)
    }

    #[test]
    fn notifications_name_their_folders() {
        let f = |s: &str| Seen::Folder(s.into());
        assert_eq!(
            seen("* STATUS Archive (MESSAGES 1 UIDNEXT 3 UNSEEN 1 HIGHESTMODSEQ 5)\r\n"),
            f("Archive")
        );
        assert_eq!(
            seen("* STATUS \"My Stuff\" (UNSEEN 0 HIGHESTMODSEQ 6)\r\n"),
            f("My Stuff")
        );
        assert_eq!(seen("* LIST () \"/\" Proj2\r\n"), f("Proj2"));
        assert_eq!(seen("* LIST (\\NonExistent) \"/\" Proj2\r\n"), f("Proj2"));
        assert_eq!(seen("* 4 EXISTS\r\n"), f("INBOX"));
        assert_eq!(seen("* 1 EXPUNGE\r\n"), f("INBOX"));
        assert_eq!(seen("* VANISHED 7:9\r\n"), f("INBOX"));
        assert_eq!(
            seen("* 1 FETCH (MODSEQ (12) FLAGS (\\Flagged \\Recent))\r\n"),
            f("INBOX")
        );
        assert_eq!(seen("* OK [NOTIFICATIONOVERFLOW] ...\r\n"), Seen::Unknown);
        assert_eq!(seen("* OK Still here\r\n"), Seen::Nothing);
        assert_eq!(seen("* 3 RECENT\r\n"), Seen::Nothing);
    }

    #[test]
    fn pending_changes_merge_and_come_before_the_failure() {
        let shared = Shared {
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
            stop: Notify::new(),
        };
        assert!(shared.take().is_none());
        for line in [
            "* STATUS Archive (MESSAGES 1)\r\n",
            "* 2 EXISTS\r\n",
            "* STATUS Archive (MESSAGES 2)\r\n",
        ] {
            shared.note(&Response::parse(line.as_bytes()).unwrap().1);
        }
        shared.fail(lost("test"));
        assert_eq!(
            shared.take().unwrap().unwrap(),
            Changes::Folders(vec!["Archive".into(), "INBOX".into()])
        );
        let e = shared.take().unwrap().unwrap_err();
        assert!(e.is_transient(), "{e:?}");
        // The failure stays: the watch is over.
        assert!(shared.take().unwrap().is_err());
        shared.note(
            &Response::parse(b"* OK [NOTIFICATIONOVERFLOW] too many\r\n")
                .unwrap()
                .1,
        );
        assert_eq!(shared.take().unwrap().unwrap(), Changes::Folders(vec![]));
    }
}
