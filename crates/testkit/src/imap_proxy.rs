//! A TLS-terminating proxy in front of the rig's Dovecot (implicit TLS on both sides) that
//! counts connections and `LOGIN` commands, and can misbehave: drop every connection right
//! after the server accepted the login (a server that fails after login), or pass everything.
//! Tests point an account at it (`imap_port` = [`ImapProxy::port`], `imap_encryption: tls`)
//! to count how often mailroom logs in.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::MailRig;

#[derive(Default)]
struct State {
    /// Bumped to end every open session.
    close: tokio::sync::watch::Sender<u64>,
    drop_after_login: AtomicBool,
    connections: AtomicU64,
    logins: std::sync::Mutex<Vec<Instant>>,
}

pub struct ImapProxy {
    port: u16,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl ImapProxy {
    /// Starts the proxy on 127.0.0.1, forwarding to the rig's IMAPS port.
    pub async fn start(rig: &MailRig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(State::default());
        let acceptor = TlsAcceptor::from(crate::smtp_fault::tls_config());
        let upstream = (rig.host.clone(), rig.imaps_port);
        let st = state.clone();
        let task = tokio::spawn(async move {
            let mut sessions = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((tcp, _)) = accepted else { continue };
                        st.connections.fetch_add(1, Ordering::SeqCst);
                        sessions.spawn(session(tcp, acceptor.clone(), upstream.clone(), st.clone()));
                    }
                    Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                }
            }
        });
        Self { port, state, task }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// From now on, close each connection as soon as the server accepted its login.
    pub fn set_drop_after_login(&self, on: bool) {
        self.state.drop_after_login.store(on, Ordering::SeqCst);
    }

    /// Ends every open connection (as a server restart would); new ones are accepted.
    pub fn close_all(&self) {
        self.state.close.send_modify(|n| *n += 1);
    }

    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// When each `LOGIN` was sent, oldest first.
    pub fn logins(&self) -> Vec<Instant> {
        self.state
            .logins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The `POST /accounts` body for `user` with IMAP through this proxy (SMTP direct).
    pub fn account_body(&self, rig: &MailRig, user: &crate::MailUser) -> serde_json::Value {
        let mut body = rig.account_body(user);
        body["imap_port"] = self.port.into();
        body["imap_encryption"] = "tls".into();
        body
    }
}

impl Drop for ImapProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn session(tcp: TcpStream, acceptor: TlsAcceptor, upstream: (String, u16), st: Arc<State>) {
    let mut close = st.close.subscribe();
    let Ok(client) = acceptor.accept(tcp).await else {
        return;
    };
    let Ok(up_tcp) = TcpStream::connect((upstream.0.as_str(), upstream.1)).await else {
        return;
    };
    let connector = TlsConnector::from(mailroom_providers::tls::client_config(true));
    let name = ServerName::try_from("localhost").expect("server name");
    let Ok(server) = connector.connect(name, up_tcp).await else {
        return;
    };
    let (client_r, client_w) = tokio::io::split(client);
    let (server_r, server_w) = tokio::io::split(server);
    // The tag of the LOGIN in flight, for the server's answer to it.
    let (tag_tx, tag_rx) = tokio::sync::watch::channel(String::new());
    let up = pump_client(client_r, server_w, st.clone(), tag_tx);
    let down = pump_server(server_r, client_w, st, tag_rx);
    // Either side ending (or a drop after login) ends the session: both halves are dropped.
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = close.changed() => {}
    }
}

/// Client → server, line by line (literals pass through as lines too), noting LOGINs.
async fn pump_client(
    r: impl AsyncRead + Unpin,
    mut w: impl AsyncWrite + Unpin,
    st: Arc<State>,
    tag: tokio::sync::watch::Sender<String>,
) {
    let mut r = BufReader::new(r);
    let mut line = Vec::new();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let mut words = text.split_ascii_whitespace();
        if let (Some(t), Some(cmd)) = (words.next(), words.next())
            && cmd.eq_ignore_ascii_case("LOGIN")
        {
            st.logins
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Instant::now());
            let _ = tag.send(t.to_owned());
        }
        if w.write_all(&line).await.is_err() || w.flush().await.is_err() {
            return;
        }
    }
}

/// Server → client, line by line; in drop mode, ends after passing on the LOGIN's OK.
async fn pump_server(
    r: impl AsyncRead + Unpin,
    mut w: impl AsyncWrite + Unpin,
    st: Arc<State>,
    tag: tokio::sync::watch::Receiver<String>,
) {
    let mut r = BufReader::new(r);
    let mut line = Vec::new();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if w.write_all(&line).await.is_err() || w.flush().await.is_err() {
            return;
        }
        let login_tag = tag.borrow().clone();
        if !login_tag.is_empty()
            && st.drop_after_login.load(Ordering::SeqCst)
            && line.starts_with(format!("{login_tag} OK").as_bytes())
        {
            return;
        }
    }
}
