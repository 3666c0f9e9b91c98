//! Generic IMAP/SMTP accounts.

pub mod change;
pub mod imap;
pub mod mailbox;
pub mod qresync;
mod raw;
pub mod read;
pub mod send;
pub mod smtp;
pub mod watch;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::failure::{MailError, Protocol};

/// Connects to the first reachable of `addrs` within `timeout`.
pub(crate) async fn connect_tcp(
    protocol: Protocol,
    host: &str,
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<TcpStream, MailError> {
    let attempt = async {
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Err(e) => last = Some(format!("{addr}: {e}")),
            }
        }
        Err(last.unwrap_or_default())
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(MailError::unreachable(
            protocol,
            format!("cannot connect to {host} ({e})"),
        )),
        Err(_) => Err(MailError::unreachable(
            protocol,
            format!(
                "connecting to {host} timed out after {}s",
                timeout.as_secs()
            ),
        )),
    }
}
