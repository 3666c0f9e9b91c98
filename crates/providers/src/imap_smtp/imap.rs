//! IMAP: connect (implicit TLS or STARTTLS; never plaintext login) and log in.

use std::time::Duration;

use async_imap::{Client, Session};
use rustls::pki_types::ServerName;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::connect_tcp;
use crate::failure::{MailError, Protocol};
use crate::{NetPolicy, egress, tls};
use mailroom_core::account::TlsMode;

pub type ImapSession = Session<TlsStream<TcpStream>>;

/// Where and how to log in.
pub struct ImapLogin<'a> {
    pub host: &'a str,
    pub port: u16,
    pub tls: TlsMode,
    pub user: &'a str,
    pub password: &'a SecretString,
}

fn connect_err(detail: String) -> MailError {
    MailError::unreachable(Protocol::Imap, detail)
}

/// Connects and logs in; the whole exchange is bounded by `policy.connect_timeout`.
pub async fn login(login: &ImapLogin<'_>, policy: &NetPolicy) -> Result<ImapSession, MailError> {
    let deadline = policy.connect_timeout;
    match tokio::time::timeout(deadline, login_inner(login, policy)).await {
        Ok(r) => r,
        Err(_) => Err(connect_err(format!(
            "{}:{} did not complete the IMAP login within {}s",
            login.host,
            login.port,
            deadline.as_secs()
        ))),
    }
}

/// Logs in and out: proves the settings and credentials work.
pub async fn verify(login: &ImapLogin<'_>, policy: &NetPolicy) -> Result<(), MailError> {
    let mut session = self::login(login, policy).await?;
    // A failed LOGOUT does not make the credentials wrong.
    let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
    Ok(())
}

async fn login_inner(login: &ImapLogin<'_>, policy: &NetPolicy) -> Result<ImapSession, MailError> {
    let addrs = egress::resolve(
        Protocol::Imap,
        login.host,
        login.port,
        policy.allow_private,
        policy.connect_timeout,
    )
    .await?;
    let tcp = connect_tcp(Protocol::Imap, login.host, &addrs, policy.connect_timeout).await?;
    let server_name = ServerName::try_from(login.host.to_owned())
        .map_err(|_| connect_err(format!("{} is not a valid TLS server name", login.host)))?;
    let connector = TlsConnector::from(tls::client_config(policy.tls_insecure_skip_verify));

    let tls_stream = match login.tls {
        TlsMode::Implicit => {
            let stream = connector.connect(server_name, tcp).await.map_err(|e| {
                connect_err(format!("TLS handshake with {} failed: {e}", login.host))
            })?;
            let mut client = Client::new(stream);
            read_greeting(&mut client).await?;
            client.into_inner()
        }
        TlsMode::Starttls => {
            let mut client = Client::new(tcp);
            read_greeting(&mut client).await?;
            client
                .run_command_and_check_ok("STARTTLS", None)
                .await
                .map_err(|e| connect_err(format!("{} refused STARTTLS: {e}", login.host)))?;
            let tcp = client.into_inner();
            connector.connect(server_name, tcp).await.map_err(|e| {
                connect_err(format!("TLS handshake with {} failed: {e}", login.host))
            })?
        }
    };
    let client = Client::new(tls_stream);
    client
        .login(login.user, login.password.expose_secret())
        .await
        .map_err(|(e, _)| classify_login_error(e))
}

async fn read_greeting<T>(client: &mut Client<T>) -> Result<(), MailError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    match client.read_response().await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(connect_err(
            "the server closed the connection before greeting".into(),
        )),
        Err(e) => Err(connect_err(format!("no IMAP greeting: {e}"))),
    }
}

fn classify_login_error(e: async_imap::error::Error) -> MailError {
    use async_imap::error::Error;
    match e {
        Error::No(text) => {
            let upper = text.to_ascii_uppercase();
            // RFC 5530 response codes say why a login failed.
            if upper.contains("[UNAVAILABLE]")
                || upper.contains("[LIMIT]")
                || upper.contains("TOO MANY")
            {
                MailError::throttling(Protocol::Imap, text)
            } else {
                MailError::auth_failed(Protocol::Imap, text)
            }
        }
        Error::Bad(text) => MailError::auth_failed(Protocol::Imap, text),
        Error::Io(e) => connect_err(format!("connection lost during login: {e}")),
        Error::ConnectionLost => connect_err("connection lost during login".into()),
        other => MailError::protocol_error(Protocol::Imap, other),
    }
}
