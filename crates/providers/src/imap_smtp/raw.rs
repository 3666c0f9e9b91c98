//! Commands async-imap does not model (`NOTIFY`, `EXAMINE … (QRESYNC …)`), run on a session
//! with every untagged response handed to the caller as imap-proto parsed it (`VANISHED`,
//! unsolicited `FETCH`, `STATUS`), and a mailbox name quoted for them.

use async_imap::error::Error;
use async_imap::imap_proto::{Response, Status};

use super::imap::ImapSession;

/// Runs `command` and gives each untagged response to `untagged` until the command's tagged
/// answer; a `NO` or `BAD` is an error worded as async-imap words them (so the same
/// classifiers apply), the end of the connection is [`Error::ConnectionLost`].
pub(crate) async fn run(
    session: &mut ImapSession,
    command: &str,
    mut untagged: impl FnMut(&Response<'_>),
) -> Result<(), Error> {
    let tag = session.run_command(command).await?;
    loop {
        let Some(resp) = session.read_response().await? else {
            return Err(Error::ConnectionLost);
        };
        match resp.parsed() {
            Response::Done {
                tag: t,
                status,
                outcome,
            } if *t == tag => {
                let what = format!("code: {:?}, info: {:?}", outcome.code, outcome.information);
                return match status {
                    Status::Ok => Ok(()),
                    Status::No => Err(Error::No(what)),
                    _ => Err(Error::Bad(what)),
                };
            }
            Response::Data {
                status: Status::Bye,
                ..
            } => return Err(Error::ConnectionLost),
            other => untagged(other),
        }
    }
}

/// `name` as an IMAP quoted string; `None` when it cannot be one (CR, LF or NUL).
pub(crate) fn quoted(name: &str) -> Option<String> {
    if name.contains(['\r', '\n', '\0']) {
        return None;
    }
    Some(format!(
        "\"{}\"",
        name.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_and_escaped() {
        assert_eq!(quoted("INBOX").as_deref(), Some("\"INBOX\""));
        assert_eq!(quoted("a\"b\\c").as_deref(), Some("\"a\\\"b\\\\c\""));
        assert_eq!(quoted("bad\r\nname"), None);
    }
}
