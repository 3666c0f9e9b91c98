//! SMTP submission: STARTTLS (587) or implicit TLS (465), AUTH PLAIN or LOGIN.

use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

use crate::error::{Protocol, ProviderError};
use crate::{NetPolicy, egress};
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
) -> Result<AsyncSmtpTransport<Tokio1Executor>, ProviderError> {
    let addrs = egress::resolve(
        Protocol::Smtp,
        login.host,
        login.port,
        policy.allow_private,
        policy.connect_timeout,
    )
    .await?;
    let params = TlsParameters::builder(login.host.to_owned())
        .dangerous_accept_invalid_certs(policy.tls_insecure_skip_verify)
        .build_rustls()
        .map_err(|e| connect_err(format!("TLS setup for {}: {e}", login.host)))?;
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

/// Connects, authenticates and quits: proves the settings and credentials work.
pub async fn verify(login: &SmtpLogin<'_>, policy: &NetPolicy) -> Result<(), ProviderError> {
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

fn connect_err(detail: String) -> ProviderError {
    ProviderError::Connect {
        protocol: Protocol::Smtp,
        detail,
    }
}

/// Classifies a lettre error by the server's reply code (RFC 5321 / 4954).
pub fn classify(e: &lettre::transport::smtp::Error, host: &str) -> ProviderError {
    let code = e.status().map(|c| c.to_string());
    let detail = format!("{host}: {e}");
    match code.as_deref() {
        // 535 bad credentials, 534 mechanism too weak, 530 auth required, 454 temp auth failure
        Some("535") | Some("534") | Some("530") => ProviderError::Auth {
            protocol: Protocol::Smtp,
            detail,
        },
        Some("421") | Some("450") | Some("451") | Some("452") | Some("454") => {
            ProviderError::Quota {
                protocol: Protocol::Smtp,
                detail,
            }
        }
        Some(_) if e.is_permanent() => ProviderError::Protocol {
            protocol: Protocol::Smtp,
            detail,
        },
        _ if e.is_tls() || e.is_timeout() || e.is_transport_shutdown() || e.status().is_none() => {
            connect_err(detail)
        }
        _ => ProviderError::Protocol {
            protocol: Protocol::Smtp,
            detail,
        },
    }
}
