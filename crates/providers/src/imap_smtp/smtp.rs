//! SMTP submission: STARTTLS (587) or implicit TLS (465), AUTH PLAIN or LOGIN.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncTokioStream, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use rustls::pki_types::ServerName;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::failure::{MailError, Protocol};
use crate::{NetPolicy, egress, tls};
use mailroom_core::account::TlsMode;

pub struct SmtpLogin<'a> {
    pub host: &'a str,
    pub port: u16,
    pub tls: TlsMode,
    pub user: &'a str,
    pub password: &'a SecretString,
    /// Mechanisms to offer, in order of preference.
    pub mechanisms: &'a [Mechanism],
}

/// The mechanisms mailroom uses for password accounts.
pub const PASSWORD_MECHANISMS: &[Mechanism] = &[Mechanism::Plain, Mechanism::Login];

/// Builds a transport to a vetted address of the server; TLS still verifies the host name.
pub async fn transport(
    login: &SmtpLogin<'_>,
    policy: &NetPolicy,
    pool_size: u32,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
    let addrs = vetted_addrs(login, policy).await?;
    let params = tls_parameters(login.host, policy)?;
    let tls = match login.tls {
        TlsMode::Implicit => Tls::Wrapper(params),
        TlsMode::Starttls => Tls::Required(params),
    };
    Ok(
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addrs[0].ip().to_string())
            .port(login.port)
            .tls(tls)
            .credentials(Credentials::new(
                login.user.to_owned(),
                login.password.expose_secret().to_owned(),
            ))
            .authentication(login.mechanisms.to_vec())
            .timeout(Some(policy.connect_timeout))
            .pool_config(PoolConfig::new().max_size(pool_size))
            .build(),
    )
}

/// The server's addresses, each checked by the egress guard.
async fn vetted_addrs(
    login: &SmtpLogin<'_>,
    policy: &NetPolicy,
) -> Result<Vec<std::net::SocketAddr>, MailError> {
    egress::resolve(
        Protocol::Smtp,
        login.host,
        login.port,
        policy.allow_private,
        policy.connect_timeout,
    )
    .await
}

/// lettre's TLS settings for `host` (STARTTLS upgrades go through lettre).
pub(crate) fn tls_parameters(host: &str, policy: &NetPolicy) -> Result<TlsParameters, MailError> {
    TlsParameters::builder(host.to_owned())
        .dangerous_accept_invalid_certs(policy.tls_insecure_skip_verify)
        .build_rustls()
        .map_err(|e| connect_err(format!("TLS setup for {host}: {e}")))
}

/// Opens the TCP stream of an SMTP connection to a vetted address of the server, within
/// `policy.connect_timeout`, with TCP_NODELAY set: lettre writes the DATA terminator in a
/// write of its own, which Nagle's algorithm would hold back until the server's delayed ACK
/// of the message (about 40 ms a message).
pub(crate) async fn open_stream(
    login: &SmtpLogin<'_>,
    policy: &NetPolicy,
) -> Result<TcpStream, MailError> {
    let addrs = vetted_addrs(login, policy).await?;
    super::connect_tcp(Protocol::Smtp, login.host, &addrs, policy.connect_timeout).await
}

/// Wraps `tcp` in TLS for implicit-TLS submission (465), with the project's rustls config
/// (which honours `tls_insecure_skip_verify`); the host name is still the TLS server name.
pub(crate) async fn implicit_tls(
    tcp: TcpStream,
    host: &str,
    policy: &NetPolicy,
) -> Result<TlsTcpStream, MailError> {
    let server_name = ServerName::try_from(host.to_owned())
        .map_err(|_| connect_err(format!("{host} is not a valid TLS server name")))?;
    let connector = TlsConnector::from(tls::client_config(policy.tls_insecure_skip_verify));
    let stream = connector
        .connect(server_name, tcp)
        .await
        .map_err(|e| connect_err(format!("TLS handshake with {host} failed: {e}")))?;
    Ok(TlsTcpStream(stream))
}

/// A TLS stream over our own TCP stream, in the shape lettre's
/// `AsyncSmtpConnection::connect_with_transport` takes.
#[derive(Debug)]
pub(crate) struct TlsTcpStream(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncRead for TlsTcpStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsTcpStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for TlsTcpStream {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

/// Connects, authenticates and quits: proves the settings and credentials work.
pub async fn verify(login: &SmtpLogin<'_>, policy: &NetPolicy) -> Result<(), MailError> {
    let deadline = policy.connect_timeout;
    let work = async {
        let transport = transport(login, policy, 1).await?;
        match transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(connect_err(format!("{} did not answer NOOP", login.host))),
            Err(e) => Err(classify(&e, login.host)),
        }
    };
    match tokio::time::timeout(deadline, work).await {
        Ok(r) => r,
        Err(_) => Err(connect_err(format!(
            "{}:{} did not complete the SMTP login within {}s",
            login.host,
            login.port,
            deadline.as_secs()
        ))),
    }
}

fn connect_err(detail: String) -> MailError {
    MailError::unreachable(Protocol::Smtp, detail)
}

/// Classifies a lettre error during verification with the one SMTP classification
/// ([`super::send::classify`]: reply codes, enhanced codes and texts), naming the host.
pub fn classify(e: &lettre::transport::smtp::Error, host: &str) -> MailError {
    let mut m = super::send::classify(e);
    m.detail = format!("{host}: {}", m.detail);
    m
}
