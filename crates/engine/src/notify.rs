//! The SSRF guard for calls to integrators' URLs (webhooks and the hosted-auth `notify_url`,
//! both delivered by [`crate::webhooks`]): resolve, check every address, then connect only to
//! the checked ones.

use std::net::SocketAddr;
use std::time::Duration;

use mailroom_providers::egress::is_public;

/// Whether `url` may be called: http(s), and every address it resolves to is public unless
/// `allow_private` (`MAILROOM_WEBHOOK_ALLOW_PRIVATE`).
pub async fn check_target(url: &url::Url, allow_private: bool) -> Result<Vec<SocketAddr>, String> {
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("{url} is not an http(s) URL"));
    }
    let host = url.host_str().ok_or_else(|| format!("{url} has no host"))?;
    let port = url.port_or_known_default().unwrap_or(443);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::lookup_host((host, port)),
    )
    .await
    .map_err(|_| format!("resolving {host} timed out"))?
    .map_err(|e| format!("cannot resolve {host}: {e}"))?
    .collect();
    if addrs.is_empty() {
        return Err(format!("{host} has no address"));
    }
    if !allow_private && let Some(a) = addrs.iter().find(|a| !is_public(a.ip())) {
        return Err(format!(
            "{host} resolves to the non-public address {}; the operator can allow it with MAILROOM_WEBHOOK_ALLOW_PRIVATE=true",
            a.ip()
        ));
    }
    Ok(addrs)
}

/// A client that connects only to `addrs` for the URL's host (the addresses the egress guard
/// checked: no second resolution can swap in a private one), follows no redirect, and gives
/// up after `timeout`.
pub fn pinned_client(
    url: &url::Url,
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<reqwest::Client, String> {
    let host = url.host_str().unwrap_or_default();
    reqwest::Client::builder()
        .resolve_to_addrs(host, addrs)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The pinned client reaches the vetted address whatever the host name resolves to (here:
    /// a name that resolves nowhere), so no second resolution can swap in another address.
    #[tokio::test]
    async fn the_pinned_client_goes_only_to_the_vetted_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let url = url::Url::parse(&format!(
            "http://integrator.invalid:{}/notify?secret=x",
            addr.port()
        ))
        .unwrap();
        let client = pinned_client(&url, &[addr], Duration::from_secs(30)).unwrap();
        let r = client
            .post(url.clone())
            .json(&serde_json::json!({"a": 1}))
            .send()
            .await;
        assert_eq!(r.unwrap().status(), 204);
        let request = server.await.unwrap();
        assert!(request.starts_with("POST /notify?secret=x"), "{request}");
        assert!(request.contains("host: integrator.invalid"), "{request}");
    }
}
