//! An IMAP proxy in front of the rig's Dovecot, for what Dovecot will not do on demand: be a
//! server without some capabilities, count what clients ask, log in slowly, drop the
//! connection right after a successful login, or lose every connection at once.
//!
//! Clients connect with **implicit TLS** (a self-signed certificate: the tests' providers
//! accept any); the proxy talks plain IMAP to Dovecot's plain port (the rig allows plaintext
//! logins), so it sees every line. It understands just enough IMAP for that: lines, literals
//! (`{n}` / `{n+}`, whose bytes are passed on untouched), command tags and verbs.
//!
//! ```ignore
//! let proxy = ImapProxy::start(&rig).await;
//! proxy.strip_capabilities(&["NOTIFY", "QRESYNC", "CONDSTORE"]);
//! let mailbox = proxy.open_mailbox(&providers, &user, "acc", 1);
//! // ... then proxy.counts().idles, proxy.set_drop_after_login(true), proxy.disconnect_all()
//! ```

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::{MailRig, MailUser};
use mailroom_core::account::{AccountSettings, ImapEncryption, MailSettings};
use mailroom_providers::{Mailbox, Providers};

/// What clients of the proxy did, counted since it started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProxyCounts {
    /// TCP connections accepted.
    pub connections: usize,
    /// `LOGIN` and `AUTHENTICATE` commands.
    pub logins: usize,
    /// Logins in progress (sent, not answered yet) right now.
    pub logins_in_progress: usize,
    /// The most logins ever in progress at once.
    pub max_concurrent_logins: usize,
    /// `IDLE` commands.
    pub idles: usize,
    /// `NOTIFY` commands (refused ones included).
    pub notifies: usize,
}

struct State {
    upstream: (String, u16),
    /// Capability names hidden from clients, uppercase.
    stripped: Mutex<Vec<String>>,
    /// Commands answered `NO`, uppercase (after `UID`).
    refused: Mutex<Vec<String>>,
    drop_after_login: AtomicBool,
    login_delay: Mutex<Duration>,
    connections: AtomicUsize,
    logins: AtomicUsize,
    /// When each login was sent (for rates: "at most one login per 2 s").
    login_times: Mutex<Vec<std::time::Instant>>,
    logins_in_progress: AtomicUsize,
    max_logins: AtomicUsize,
    idles: AtomicUsize,
    notifies: AtomicUsize,
    /// The arguments of every `FETCH` / `UID FETCH`, in order.
    fetches: Mutex<Vec<String>>,
    /// Bumped by [`ImapProxy::disconnect_all`].
    kill: watch::Sender<u64>,
}

impl State {
    fn stripped(&self) -> Vec<String> {
        self.stripped.lock().unwrap().clone()
    }

    fn refuses(&self, verb: &str) -> bool {
        self.refused.lock().unwrap().iter().any(|v| v == verb)
    }

    fn login_started(&self) {
        self.logins.fetch_add(1, Ordering::SeqCst);
        self.login_times
            .lock()
            .unwrap()
            .push(std::time::Instant::now());
        let now = self.logins_in_progress.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_logins.fetch_max(now, Ordering::SeqCst);
    }

    fn login_ended(&self) {
        self.logins_in_progress.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The running proxy; it stops, closing every connection, when dropped.
pub struct ImapProxy {
    port: u16,
    rig: MailRig,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for ImapProxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}

impl ImapProxy {
    /// Listens on 127.0.0.1:0, passing everything through to `rig`'s Dovecot unchanged.
    pub async fn start(rig: &MailRig) -> ImapProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new(State {
            upstream: (rig.host.clone(), rig.imap_port),
            stripped: Mutex::new(Vec::new()),
            refused: Mutex::new(Vec::new()),
            drop_after_login: AtomicBool::new(false),
            login_delay: Mutex::new(Duration::ZERO),
            connections: AtomicUsize::new(0),
            logins: AtomicUsize::new(0),
            login_times: Mutex::new(Vec::new()),
            logins_in_progress: AtomicUsize::new(0),
            max_logins: AtomicUsize::new(0),
            idles: AtomicUsize::new(0),
            notifies: AtomicUsize::new(0),
            fetches: Mutex::new(Vec::new()),
            kill: watch::Sender::new(0),
        });
        let acceptor = TlsAcceptor::from(crate::smtp_fault::tls_config());
        let st = state.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((tcp, _)) = accepted else { continue };
                        st.connections.fetch_add(1, Ordering::SeqCst);
                        conns.spawn(connection(tcp, acceptor.clone(), st.clone()));
                    }
                    // Reap finished connections so the set does not grow.
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        ImapProxy {
            port,
            rig: rig.clone(),
            state,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Hides these capabilities (e.g. `NOTIFY`, `QRESYNC`, `CONDSTORE`, `IDLE`) from
    /// `CAPABILITY` answers and `[CAPABILITY …]` codes, and refuses their use as a server
    /// without them would: `NOTIFY` / `IDLE` → `BAD`; `ENABLE` of a hidden one enables nothing;
    /// `CHANGEDSINCE`, `(CONDSTORE)`, `MODSEQ` (CONDSTORE) and `(QRESYNC …)`, `VANISHED`
    /// (QRESYNC) → `BAD`. Applies to commands and answers from then on.
    pub fn strip_capabilities(&self, caps: &[&str]) {
        *self.state.stripped.lock().unwrap() =
            caps.iter().map(|c| c.to_ascii_uppercase()).collect();
    }

    /// Answers these commands (e.g. `LIST`) with a plain `NO`, as a server that will not let
    /// this user do it: a refusal that is neither "later" nor about the login. An empty list
    /// passes everything again.
    pub fn refuse_commands(&self, verbs: &[&str]) {
        *self.state.refused.lock().unwrap() =
            verbs.iter().map(|v| v.to_ascii_uppercase()).collect();
    }

    /// When on, a connection is closed right after the proxy passed on a successful login's
    /// `OK` (a server that drops sessions at once).
    pub fn set_drop_after_login(&self, on: bool) {
        self.state.drop_after_login.store(on, Ordering::SeqCst);
    }

    /// Holds every `LOGIN` / `AUTHENTICATE` this long before passing it on (a slow server, so
    /// concurrent logins overlap and can be counted).
    pub fn set_login_delay(&self, delay: Duration) {
        *self.state.login_delay.lock().unwrap() = delay;
    }

    /// Closes every open connection now (a network failure); new ones are accepted.
    pub fn disconnect_all(&self) {
        self.state.kill.send_modify(|n| *n += 1);
    }

    /// When each login (`LOGIN` / `AUTHENTICATE`) was sent, oldest first.
    pub fn login_times(&self) -> Vec<std::time::Instant> {
        self.state.login_times.lock().unwrap().clone()
    }

    /// The arguments of every `FETCH` and `UID FETCH` sent so far (`"7 (UID FLAGS)"`), oldest
    /// first.
    pub fn fetches(&self) -> Vec<String> {
        self.state.fetches.lock().unwrap().clone()
    }

    pub fn counts(&self) -> ProxyCounts {
        let s = &self.state;
        ProxyCounts {
            connections: s.connections.load(Ordering::SeqCst),
            logins: s.logins.load(Ordering::SeqCst),
            logins_in_progress: s.logins_in_progress.load(Ordering::SeqCst),
            max_concurrent_logins: s.max_logins.load(Ordering::SeqCst),
            idles: s.idles.load(Ordering::SeqCst),
            notifies: s.notifies.load(Ordering::SeqCst),
        }
    }

    /// The settings of an IMAP/SMTP account of `user` whose IMAP goes through the proxy
    /// (implicit TLS) and whose SMTP goes to the rig's Postfix.
    pub fn account_settings(&self, user: &MailUser) -> AccountSettings {
        let AccountSettings::Mail(rig) = self.rig.account_settings(user) else {
            unreachable!("the rig's accounts are IMAP/SMTP accounts")
        };
        AccountSettings::Mail(MailSettings {
            imap_host: "127.0.0.1".into(),
            imap_port: self.port,
            imap_encryption: ImapEncryption::Ssl,
            ..rig
        })
    }

    /// The `POST /accounts` body of that account.
    pub fn account_body(&self, user: &MailUser) -> Value {
        let mut body = self.rig.account_body(user);
        body["imap_host"] = json!("127.0.0.1");
        body["imap_port"] = json!(self.port);
        body["imap_encryption"] = json!("ssl");
        body
    }

    /// `user`'s mailbox, through the proxy, opened as account `account_id` at `version`.
    pub fn open_mailbox(
        &self,
        providers: &Providers,
        user: &MailUser,
        account_id: &str,
        version: i64,
    ) -> Mailbox {
        crate::mail::open_mail_account(
            providers,
            &self.account_settings(user),
            user,
            account_id,
            version,
        )
    }
}

/// What one connection shares between its two directions.
#[derive(Default)]
struct Conn {
    /// The tag of a login waiting for its answer.
    pending_login: Mutex<Option<String>>,
}

type ClientWriter = Arc<tokio::sync::Mutex<Box<dyn AsyncWrite + Send + Unpin>>>;

async fn connection(tcp: TcpStream, acceptor: TlsAcceptor, state: Arc<State>) {
    let mut kill = state.kill.subscribe();
    let Ok(tls) = acceptor.accept(tcp).await else {
        return;
    };
    let Ok(up) = TcpStream::connect((state.upstream.0.as_str(), state.upstream.1)).await else {
        return;
    };
    let _ = up.set_nodelay(true);
    let (client_r, client_w) = tokio::io::split(tls);
    let (up_r, up_w) = up.into_split();
    let client_w: ClientWriter = Arc::new(tokio::sync::Mutex::new(Box::new(client_w)));
    let conn = Conn::default();
    tokio::select! {
        _ = server_to_client(BufReader::new(up_r), client_w.clone(), &state, &conn) => {}
        _ = client_to_server(BufReader::new(client_r), up_w, client_w, &state, &conn) => {}
        _ = kill.changed() => {}
    }
    if conn.pending_login.lock().unwrap().take().is_some() {
        state.login_ended();
    }
}

/// One line with its CRLF; `None` at EOF or on an error.
async fn read_line<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    match r.read_until(b'\n', &mut buf).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(buf),
    }
}

/// The size of the literal a line announces at its end (`{n}`, `{n+}`, `~{n}`).
fn literal_len(line: &[u8]) -> Option<u64> {
    let line = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))?;
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Copies exactly `n` bytes.
async fn copy_exact<R, W>(r: &mut BufReader<R>, w: &mut W, n: u64) -> Option<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + ?Sized,
{
    let copied = tokio::io::copy(&mut r.take(n), w).await.ok()?;
    (copied == n).then_some(())
}

/// `(tag, VERB, rest)` of a command line (`UID FETCH` → `FETCH`).
fn command_parts(line: &str) -> (String, String, String) {
    let mut words = line.trim_end().splitn(3, ' ');
    let tag = words.next().unwrap_or("").to_owned();
    let mut verb = words.next().unwrap_or("").to_ascii_uppercase();
    let mut rest = words.next().unwrap_or("").to_owned();
    if verb == "UID" {
        let mut more = rest.splitn(2, ' ');
        verb = more.next().unwrap_or("").to_ascii_uppercase();
        rest = more.next().unwrap_or("").to_owned();
    }
    (tag, verb, rest)
}

/// What the proxy does with a client's command.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Forward,
    /// Forward this line instead.
    Rewrite(String),
    /// Answer the client with this, forward nothing.
    Answer(String),
}

fn decide(stripped: &[String], tag: &str, verb: &str, rest: &str) -> Action {
    let hidden = |cap: &str| stripped.iter().any(|s| s == cap);
    let bad = |what: &str| {
        Action::Answer(format!(
            "{tag} BAD {what} is not supported by this server (test proxy)\r\n"
        ))
    };
    let upper = rest.to_ascii_uppercase();
    match verb {
        "NOTIFY" | "IDLE" if hidden(verb) => bad(verb),
        "ENABLE" => {
            let asked: Vec<&str> = rest.split_whitespace().collect();
            let kept: Vec<&str> = asked
                .iter()
                .copied()
                .filter(|c| !hidden(&c.to_ascii_uppercase()))
                .collect();
            if kept.len() == asked.len() {
                Action::Forward
            } else if kept.is_empty() {
                // RFC 5161: unknown extensions are not enabled, and that is no error.
                Action::Answer(format!("* ENABLED\r\n{tag} OK Enabled (test proxy)\r\n"))
            } else {
                Action::Rewrite(format!("{tag} ENABLE {}\r\n", kept.join(" ")))
            }
        }
        _ if hidden("CONDSTORE")
            && ["CHANGEDSINCE", "(CONDSTORE)", "MODSEQ"]
                .iter()
                .any(|w| upper.contains(w)) =>
        {
            bad("CONDSTORE")
        }
        _ if hidden("QRESYNC") && ["QRESYNC", "VANISHED"].iter().any(|w| upper.contains(w)) => {
            bad("QRESYNC")
        }
        _ => Action::Forward,
    }
}

async fn client_to_server<R, W>(
    mut client: BufReader<R>,
    mut up: W,
    client_w: ClientWriter,
    state: &State,
    conn: &Conn,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // After a literal, the next line continues the same command.
    let mut continuation = false;
    while let Some(line) = read_line(&mut client).await {
        let literal = literal_len(&line);
        let mut out = line;
        if !continuation {
            let text = String::from_utf8_lossy(&out).into_owned();
            let (tag, verb, rest) = command_parts(&text);
            match verb.as_str() {
                "LOGIN" | "AUTHENTICATE" => {
                    *conn.pending_login.lock().unwrap() = Some(tag.clone());
                    state.login_started();
                    let delay = *state.login_delay.lock().unwrap();
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                }
                "IDLE" => {
                    state.idles.fetch_add(1, Ordering::SeqCst);
                }
                "NOTIFY" => {
                    state.notifies.fetch_add(1, Ordering::SeqCst);
                }
                "FETCH" => {
                    state
                        .fetches
                        .lock()
                        .unwrap()
                        .push(rest.trim_end().to_owned());
                }
                _ => {}
            }
            if literal.is_none() {
                let action = if state.refuses(&verb) {
                    Action::Answer(format!(
                        "{tag} NO {verb} refused for this user (test proxy)\r\n"
                    ))
                } else {
                    decide(&state.stripped(), &tag, &verb, &rest)
                };
                match action {
                    Action::Forward => {}
                    Action::Rewrite(l) => out = l.into_bytes(),
                    Action::Answer(a) => {
                        let mut w = client_w.lock().await;
                        if w.write_all(a.as_bytes()).await.is_err() || w.flush().await.is_err() {
                            return;
                        }
                        continue;
                    }
                }
            }
        }
        if up.write_all(&out).await.is_err() {
            return;
        }
        if let Some(n) = literal
            && copy_exact(&mut client, &mut up, n).await.is_none()
        {
            return;
        }
        if up.flush().await.is_err() {
            return;
        }
        continuation = literal.is_some();
    }
}

/// `line` with the hidden capabilities taken out of a `* CAPABILITY` answer or a
/// `[CAPABILITY …]` code.
fn without_capabilities(line: &str, stripped: &[String]) -> String {
    let keep = |words: &str| -> String {
        words
            .split(' ')
            .filter(|w| {
                let w = w.to_ascii_uppercase();
                !stripped
                    .iter()
                    .any(|s| w == *s || w.starts_with(&format!("{s}=")))
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let upper = line.to_ascii_uppercase();
    if upper.starts_with("* CAPABILITY ") {
        let body = line["* CAPABILITY ".len()..].trim_end_matches(['\r', '\n']);
        return format!("* CAPABILITY {}\r\n", keep(body));
    }
    if let Some(start) = upper.find("[CAPABILITY ") {
        let from = start + "[CAPABILITY ".len();
        if let Some(len) = line[from..].find(']') {
            return format!(
                "{}{}{}",
                &line[..from],
                keep(&line[from..from + len]),
                &line[from + len..]
            );
        }
    }
    line.to_owned()
}

async fn server_to_client<R: AsyncRead + Unpin>(
    mut up: BufReader<R>,
    client_w: ClientWriter,
    state: &State,
    conn: &Conn,
) {
    let mut continuation = false;
    while let Some(line) = read_line(&mut up).await {
        let literal = literal_len(&line);
        let mut out = line;
        let mut login_ok = false;
        if !continuation {
            let stripped = state.stripped();
            if !stripped.is_empty() && out.is_ascii() {
                out = without_capabilities(&String::from_utf8_lossy(&out), &stripped).into_bytes();
            }
            let text = String::from_utf8_lossy(&out).into_owned();
            let mut words = text.split(' ');
            let tag = words.next().unwrap_or("");
            let mut pending = conn.pending_login.lock().unwrap();
            if pending.as_deref() == Some(tag) {
                *pending = None;
                state.login_ended();
                login_ok = words.next().is_some_and(|w| w.eq_ignore_ascii_case("OK"));
            }
        }
        let mut w = client_w.lock().await;
        if w.write_all(&out).await.is_err() {
            return;
        }
        if let Some(n) = literal
            && copy_exact(&mut up, &mut *w, n).await.is_none()
        {
            return;
        }
        if w.flush().await.is_err() {
            return;
        }
        drop(w);
        continuation = literal.is_some();
        if login_ok && state.drop_after_login.load(Ordering::SeqCst) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_found_at_line_ends() {
        assert_eq!(literal_len(b"a APPEND INBOX {12}\r\n"), Some(12));
        assert_eq!(literal_len(b"a APPEND INBOX {12+}\r\n"), Some(12));
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {345}\r\n"), Some(345));
        assert_eq!(literal_len(b"* 1 FETCH (BINARY[] ~{7}\r\n"), Some(7));
        assert_eq!(literal_len(b"a LOGIN x y\r\n"), None);
        assert_eq!(literal_len(b"a SEARCH {x}\r\n"), None);
    }

    #[test]
    fn capabilities_are_hidden() {
        let s = vec!["NOTIFY".to_owned(), "QRESYNC".to_owned()];
        assert_eq!(
            without_capabilities("* CAPABILITY IMAP4rev1 IDLE NOTIFY QRESYNC MOVE\r\n", &s),
            "* CAPABILITY IMAP4rev1 IDLE MOVE\r\n"
        );
        assert_eq!(
            without_capabilities(
                "a1 OK [CAPABILITY IMAP4rev1 QRESYNC NOTIFY] Logged in\r\n",
                &s
            ),
            "a1 OK [CAPABILITY IMAP4rev1] Logged in\r\n"
        );
        assert_eq!(without_capabilities("* 3 EXISTS\r\n", &s), "* 3 EXISTS\r\n");
    }

    #[test]
    fn hidden_extensions_are_refused() {
        let s = vec![
            "CONDSTORE".to_owned(),
            "QRESYNC".to_owned(),
            "NOTIFY".to_owned(),
        ];
        assert!(matches!(
            decide(&s, "a", "NOTIFY", "SET (personal (MessageNew))"),
            Action::Answer(a) if a.starts_with("a BAD")
        ));
        assert_eq!(
            decide(&s, "b", "ENABLE", "CONDSTORE QRESYNC"),
            Action::Answer("* ENABLED\r\nb OK Enabled (test proxy)\r\n".into())
        );
        assert_eq!(
            decide(&s, "c", "ENABLE", "UTF8=ACCEPT QRESYNC"),
            Action::Rewrite("c ENABLE UTF8=ACCEPT\r\n".into())
        );
        assert!(matches!(
            decide(&s, "d", "FETCH", "1:* (FLAGS) (CHANGEDSINCE 4)"),
            Action::Answer(_)
        ));
        assert!(matches!(
            decide(&s, "e", "EXAMINE", "\"INBOX\" (QRESYNC (1 2))"),
            Action::Answer(_)
        ));
        assert_eq!(decide(&s, "f", "EXAMINE", "\"INBOX\""), Action::Forward);
        assert_eq!(decide(&[], "g", "NOTIFY", "SET"), Action::Forward);
        assert_eq!(
            command_parts("h UID FETCH 1:* (FLAGS)\r\n"),
            ("h".into(), "FETCH".into(), "1:* (FLAGS)".into())
        );
    }
}
