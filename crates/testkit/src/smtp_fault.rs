//! A fault-injecting SMTP submission server: STARTTLS, AUTH PLAIN / LOGIN (any credentials,
//! remembered), MAIL / RCPT / DATA / RSET / NOOP / QUIT, `SIZE` in EHLO. At the end of DATA it
//! relays to the rig's real Postfix with the client's own credentials and envelope and
//! answers with Postfix's reply, or misbehaves as told: a chosen reply at a chosen stage, a
//! stall, or a silent accept. Tests use it for what Postfix will not do on demand.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use lettre::AsyncTransport as _;
use lettre::address::{Address, Envelope};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::MailRig;
use mailroom_core::account::TlsMode;
use mailroom_providers::NetPolicy;
use mailroom_providers::imap_smtp::smtp;

/// Where in the transaction a [`Mode::Reply`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Mail,
    Rcpt,
    Data,
    /// After the message's final dot.
    DataEnd,
}

/// How the server behaves; read afresh at every stage, so a test can change it mid-session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Relay the message to the rig's Postfix and answer with its reply.
    Forward,
    /// Answer `code text` at `stage` (e.g. `550`, `"5.1.1 <bob@x>: User unknown"`).
    Reply {
        stage: Stage,
        code: u16,
        text: String,
    },
    /// After the final dot, never answer; the message is dropped when the client leaves.
    Stall,
    /// Answer 250 after the final dot without delivering anything.
    Accept,
}

struct State {
    mode: Mutex<Mode>,
    size_limit: AtomicUsize,
    received: AtomicUsize,
    forwarded: AtomicUsize,
    stalled: watch::Sender<usize>,
    logins: Mutex<Vec<(String, String)>>,
    upstream: MailRig,
}

impl State {
    fn mode(&self) -> Mode {
        self.mode.lock().unwrap().clone()
    }

    /// The reply `Mode::Reply` wants at `stage`, if any.
    fn reply_at(&self, stage: Stage) -> Option<String> {
        match self.mode() {
            Mode::Reply {
                stage: s,
                code,
                text,
            } if s == stage => Some(format!("{code} {text}")),
            _ => None,
        }
    }
}

/// The running server; it stops, closing every connection, when dropped.
pub struct FaultSmtp {
    port: u16,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for FaultSmtp {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every session.
        self.task.abort();
    }
}

impl FaultSmtp {
    /// Listens on 127.0.0.1:0 in [`Mode::Forward`] with no SIZE limit.
    pub async fn start(upstream: MailRig) -> FaultSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new(State {
            mode: Mutex::new(Mode::Forward),
            size_limit: AtomicUsize::new(0),
            received: AtomicUsize::new(0),
            forwarded: AtomicUsize::new(0),
            stalled: watch::Sender::new(0),
            logins: Mutex::new(Vec::new()),
            upstream,
        });
        let acceptor = TlsAcceptor::from(tls_config());
        let st = state.clone();
        let task = tokio::spawn(async move {
            let mut sessions = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((tcp, _)) = accepted else { continue };
                        sessions.spawn(session(tcp, acceptor.clone(), st.clone()));
                    }
                    // Reap finished sessions so the set does not grow.
                    Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                }
            }
        });
        FaultSmtp { port, state, task }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// Advertises `SIZE n` in EHLO and refuses longer messages with 552 5.3.4; 0 = no limit.
    pub fn set_size_limit(&self, n: usize) {
        self.state.size_limit.store(n, Ordering::SeqCst);
    }

    /// Messages whose final dot arrived.
    pub fn received_count(&self) -> usize {
        self.state.received.load(Ordering::SeqCst)
    }

    /// Messages Postfix accepted from us.
    pub fn forwarded_count(&self) -> usize {
        self.state.forwarded.load(Ordering::SeqCst)
    }

    /// Messages held without an answer by [`Mode::Stall`].
    pub fn stalled_count(&self) -> usize {
        *self.state.stalled.borrow()
    }

    /// Every (user, password) a client authenticated with, oldest first.
    pub fn logins(&self) -> Vec<(String, String)> {
        self.state.logins.lock().unwrap().clone()
    }

    /// Waits until at least `n` messages are stalled; panics after `deadline`.
    pub async fn wait_for_stalled(&self, n: usize, deadline: Duration) {
        let mut rx = self.state.stalled.subscribe();
        if tokio::time::timeout(deadline, rx.wait_for(|v| *v >= n))
            .await
            .is_err()
        {
            panic!(
                "timed out after {deadline:?} waiting for {n} stalled messages (have {})",
                self.stalled_count()
            );
        }
    }
}

pub(crate) fn tls_config() -> Arc<ServerConfig> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("self-signed certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server certificate");
    Arc::new(config)
}

/// What a session phase ended with.
enum End {
    Closed,
    StartTls,
}

/// One transaction's envelope and the login it runs under.
#[derive(Default)]
struct Txn {
    login: Option<(String, String)>,
    from: Option<String>,
    to: Vec<String>,
}

async fn session(tcp: TcpStream, acceptor: TlsAcceptor, state: Arc<State>) {
    let mut plain = BufReader::new(tcp);
    if plain
        .get_mut()
        .write_all(b"220 fault-smtp ESMTP ready\r\n")
        .await
        .is_err()
    {
        return;
    }
    let mut txn = Txn::default();
    match phase(&mut plain, false, &state, &mut txn).await {
        End::Closed => {}
        End::StartTls => {
            let Ok(tls) = acceptor.accept(plain.into_inner()).await else {
                return;
            };
            // RFC 3207: everything learnt before TLS is forgotten.
            let mut txn = Txn::default();
            let _ = phase(&mut BufReader::new(tls), true, &state, &mut txn).await;
        }
    }
}

async fn reply<S: AsyncRead + AsyncWrite + Unpin>(s: &mut BufReader<S>, line: &str) -> bool {
    let w = s.get_mut();
    w.write_all(format!("{line}\r\n").as_bytes()).await.is_ok() && w.flush().await.is_ok()
}

/// A line without its CRLF; `None` at EOF or on an error.
async fn read_line<S: AsyncRead + Unpin>(s: &mut BufReader<S>) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    match s.read_until(b'\n', &mut buf).await {
        Ok(0) | Err(_) => None,
        Ok(_) => {
            while matches!(buf.last(), Some(b'\n' | b'\r')) {
                buf.pop();
            }
            Some(buf)
        }
    }
}

fn b64(s: &[u8]) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim_ascii())
        .ok()
}

/// `<addr>` out of `FROM:<addr> PARAMS`, plus the parameters.
fn path(arg: &str) -> Option<(String, &str)> {
    let arg = arg.trim_start();
    let open = arg.find('<')?;
    let close = arg[open..].find('>')? + open;
    Some((arg[open + 1..close].to_owned(), &arg[close + 1..]))
}

async fn phase<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    tls: bool,
    state: &State,
    txn: &mut Txn,
) -> End {
    loop {
        let Some(line) = read_line(s).await else {
            return End::Closed;
        };
        let line = String::from_utf8_lossy(&line).into_owned();
        let (verb, arg) = line.split_once(' ').unwrap_or((&line, ""));
        let ok = match verb.to_ascii_uppercase().as_str() {
            "EHLO" | "HELO" => {
                let mut lines = vec!["fault-smtp".to_owned(), "8BITMIME".into()];
                let size = state.size_limit.load(Ordering::SeqCst);
                if size > 0 {
                    lines.push(format!("SIZE {size}"));
                }
                lines.push("ENHANCEDSTATUSCODES".into());
                lines.push(if tls { "AUTH PLAIN LOGIN" } else { "STARTTLS" }.into());
                let last = lines.len() - 1;
                let mut ok = true;
                for (i, l) in lines.iter().enumerate() {
                    let sep = if i == last { ' ' } else { '-' };
                    ok &= reply(s, &format!("250{sep}{l}")).await;
                }
                ok
            }
            "STARTTLS" if !tls => {
                if !reply(s, "220 2.0.0 Ready to start TLS").await {
                    return End::Closed;
                }
                return End::StartTls;
            }
            "AUTH" if !tls => reply(s, "530 5.7.0 Must issue a STARTTLS command first").await,
            "AUTH" => match auth(s, arg).await {
                Some(login) => {
                    state.logins.lock().unwrap().push(login.clone());
                    txn.login = Some(login);
                    reply(s, "235 2.7.0 Authentication successful").await
                }
                None => reply(s, "535 5.7.8 Error: authentication failed").await,
            },
            "MAIL" if txn.login.is_none() => reply(s, "530 5.7.0 Authentication required").await,
            "MAIL" => {
                let Some((from, params)) = arg.get(5..).and_then(path) else {
                    reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>").await;
                    continue;
                };
                let limit = state.size_limit.load(Ordering::SeqCst);
                let declared = params.split_whitespace().find_map(|p| {
                    p.to_ascii_uppercase()
                        .strip_prefix("SIZE=")?
                        .parse::<usize>()
                        .ok()
                });
                if let Some(r) = state.reply_at(Stage::Mail) {
                    reply(s, &r).await
                } else if limit > 0 && declared.is_some_and(|d| d > limit) {
                    reply(s, "552 5.3.4 Message size exceeds fixed limit").await
                } else {
                    txn.from = Some(from);
                    txn.to.clear();
                    reply(s, "250 2.1.0 Ok").await
                }
            }
            "RCPT" if txn.from.is_none() => reply(s, "503 5.5.1 Error: need MAIL command").await,
            "RCPT" => match arg.get(3..).and_then(path) {
                None => reply(s, "501 5.5.4 Syntax: RCPT TO:<address>").await,
                Some((to, _)) => match state.reply_at(Stage::Rcpt) {
                    Some(r) => reply(s, &r).await,
                    None => {
                        txn.to.push(to);
                        reply(s, "250 2.1.5 Ok").await
                    }
                },
            },
            "DATA" if txn.to.is_empty() => reply(s, "503 5.5.1 Error: need RCPT command").await,
            "DATA" => {
                if let Some(r) = state.reply_at(Stage::Data) {
                    reply(s, &r).await
                } else {
                    if !reply(s, "354 End data with <CR><LF>.<CR><LF>").await {
                        return End::Closed;
                    }
                    let Some(data) = read_data(s).await else {
                        return End::Closed;
                    };
                    let answer = data_end(s, state, txn, data).await;
                    txn.from = None;
                    txn.to.clear();
                    match answer {
                        Some(a) => reply(s, &a).await,
                        None => return End::Closed,
                    }
                }
            }
            "RSET" => {
                txn.from = None;
                txn.to.clear();
                reply(s, "250 2.0.0 Ok").await
            }
            "NOOP" => reply(s, "250 2.0.0 Ok").await,
            "QUIT" => {
                reply(s, "221 2.0.0 Bye").await;
                return End::Closed;
            }
            _ => reply(s, "502 5.5.2 Error: command not recognized").await,
        };
        if !ok {
            return End::Closed;
        }
    }
}

/// AUTH PLAIN (with or without an initial response) or LOGIN; any credentials pass.
async fn auth<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    arg: &str,
) -> Option<(String, String)> {
    let mut words = arg.split_whitespace();
    let mechanism = words.next()?.to_ascii_uppercase();
    let initial = words.next().map(str::to_owned);
    let text = |b: Vec<u8>| String::from_utf8(b).ok();
    match mechanism.as_str() {
        "PLAIN" => {
            let response = match initial {
                Some(i) => i.into_bytes(),
                None => {
                    reply(s, "334 ").await.then_some(())?;
                    read_line(s).await?
                }
            };
            let decoded = b64(&response)?;
            let mut parts = decoded.split(|b| *b == 0);
            let _authzid = parts.next()?;
            let user = text(parts.next()?.to_vec())?;
            let pass = text(parts.next()?.to_vec())?;
            Some((user, pass))
        }
        "LOGIN" => {
            let user = match initial {
                Some(i) => b64(i.as_bytes())?,
                None => {
                    reply(s, "334 VXNlcm5hbWU6").await.then_some(())?;
                    b64(&read_line(s).await?)?
                }
            };
            reply(s, "334 UGFzc3dvcmQ6").await.then_some(())?;
            let pass = b64(&read_line(s).await?)?;
            Some((text(user)?, text(pass)?))
        }
        _ => None,
    }
}

/// The message up to the final dot, dot-unstuffed; each line keeps its CRLF, as a real
/// server stores it (RFC 5321 §4.1.1.4).
async fn read_data<S: AsyncRead + Unpin>(s: &mut BufReader<S>) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    loop {
        let mut line = Vec::new();
        if s.read_until(b'\n', &mut line).await.ok()? == 0 {
            return None;
        }
        if line == b".\r\n" || line == b".\n" {
            return Some(data);
        }
        let line = line.strip_prefix(b".").unwrap_or(&line);
        data.extend_from_slice(line);
    }
}

/// The answer to the final dot; `None` when the session must end without one (a stall).
async fn data_end<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    state: &State,
    txn: &Txn,
    data: Vec<u8>,
) -> Option<String> {
    state.received.fetch_add(1, Ordering::SeqCst);
    let limit = state.size_limit.load(Ordering::SeqCst);
    if limit > 0 && data.len() > limit {
        return Some("552 5.3.4 Message size exceeds fixed maximum message size".into());
    }
    if let Some(r) = state.reply_at(Stage::DataEnd) {
        return Some(r);
    }
    match state.mode() {
        Mode::Stall => {
            state.stalled.send_modify(|n| *n += 1);
            // Hold the answer until the client gives up; whatever it sends is ignored.
            let mut sink = Vec::new();
            while matches!(s.read_until(b'\n', &mut sink).await, Ok(n) if n > 0) {
                sink.clear();
            }
            None
        }
        Mode::Accept => Some(format!(
            "250 2.0.0 Ok: queued as FAULT{}",
            state.received.load(Ordering::SeqCst)
        )),
        Mode::Forward | Mode::Reply { .. } => Some(forward(state, txn, &data).await),
    }
}

/// Relays to Postfix with the client's own login and envelope; answers with Postfix's reply.
async fn forward(state: &State, txn: &Txn, data: &[u8]) -> String {
    let rig = &state.upstream;
    let Some((user, pass)) = &txn.login else {
        return "530 5.7.0 Authentication required".into();
    };
    let password = SecretString::from(pass.clone());
    let login = smtp::SmtpLogin {
        host: &rig.host,
        port: rig.smtp_port,
        tls: TlsMode::Starttls,
        user,
        password: &password,
        mechanisms: smtp::PASSWORD_MECHANISMS,
    };
    let policy = NetPolicy {
        allow_private: true,
        tls_insecure_skip_verify: true,
        connect_timeout: Duration::from_secs(10),
    };
    let transport = match smtp::transport(&login, &policy, 1).await {
        Ok(t) => t,
        Err(e) => return format!("451 4.4.0 upstream unreachable: {e}"),
    };
    let from = match txn.from.as_deref() {
        None | Some("") => None,
        Some(f) => match f.parse::<Address>() {
            Ok(a) => Some(a),
            Err(e) => return format!("553 5.1.7 bad sender {f}: {e}"),
        },
    };
    let mut to = Vec::new();
    for t in &txn.to {
        match t.parse::<Address>() {
            Ok(a) => to.push(a),
            Err(e) => return format!("553 5.1.3 bad recipient {t}: {e}"),
        }
    }
    let envelope = match Envelope::new(from, to) {
        Ok(e) => e,
        Err(e) => return format!("554 5.5.1 {e}"),
    };
    // lettre ends DATA with `CRLF . CRLF` itself: hand it the message without its last CRLF.
    let payload = data.strip_suffix(b"\r\n").unwrap_or(data);
    match transport.send_raw(&envelope, payload).await {
        Ok(r) => {
            state.forwarded.fetch_add(1, Ordering::SeqCst);
            format!("250 {}", r.message().collect::<Vec<_>>().join(" "))
        }
        Err(e) => {
            let text = std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_else(|| e.to_string());
            match e.status() {
                Some(code) => format!("{code} {text}"),
                None => format!("451 4.4.0 upstream: {e}"),
            }
        }
    }
}
