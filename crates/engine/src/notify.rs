//! Calls to integrators' URLs (the hosted-auth `notify_url`): JSON POSTs that pass the
//! egress guard and are retried with backoff when the receiver fails.

use std::net::SocketAddr;
use std::time::Duration;

use mailroom_providers::egress::is_public;

/// Attempts, and the delay before the first retry (doubling).
const ATTEMPTS: u32 = 6;
const FIRST_RETRY: Duration = Duration::from_millis(500);

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

/// POSTs `body` to `url` in the background, retrying failures (network errors and non-2xx)
/// with exponential backoff. The request goes to a vetted address of the host.
pub fn post_json_later(url: url::Url, body: serde_json::Value, allow_private: bool) {
    tokio::spawn(async move {
        let mut delay = FIRST_RETRY;
        for attempt in 1..=ATTEMPTS {
            let outcome = match check_target(&url, allow_private).await {
                Err(e) => {
                    tracing::warn!(url = %origin(&url), error = %e, "notify_url refused by the egress guard");
                    return;
                }
                // Only a client pinned to the vetted addresses may call a user-given URL: if it
                // cannot be built, the call fails (and is retried) rather than resolving anew.
                Ok(addrs) => match pinned_client(&url, &addrs) {
                    Ok(client) => client.post(url.clone()).json(&body).send().await,
                    Err(e) => {
                        tracing::warn!(url = %origin(&url), attempt, error = %e, "cannot build the pinned HTTP client");
                        if attempt < ATTEMPTS {
                            tokio::time::sleep(delay).await;
                            delay *= 2;
                        }
                        continue;
                    }
                },
            };
            match outcome {
                Ok(r) if r.status().is_success() => {
                    tracing::info!(url = %origin(&url), attempt, "notify_url called");
                    return;
                }
                Ok(r) => {
                    tracing::warn!(url = %origin(&url), attempt, status = %r.status(), "notify_url answered an error")
                }
                Err(e) => {
                    tracing::warn!(url = %origin(&url), attempt, error = %e, "notify_url unreachable")
                }
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        tracing::error!(url = %origin(&url), "notify_url failed {ATTEMPTS} times; giving up");
    });
}

/// A client that connects only to `addrs` for the URL's host (the addresses the egress guard
/// checked: no second resolution can swap in a private one), follows no redirect, and gives
/// up after 30 s.
pub fn pinned_client(url: &url::Url, addrs: &[SocketAddr]) -> Result<reqwest::Client, String> {
    let host = url.host_str().unwrap_or_default();
    reqwest::Client::builder()
        .resolve_to_addrs(host, addrs)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())
}

/// Only the scheme, host and port of a URL: its path or query may carry the integrator's
/// secrets (hosted-auth docs suggest a token in the query), which stay out of the logs.
fn origin(url: &url::Url) -> String {
    url.origin().ascii_serialization()
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
        let client = pinned_client(&url, &[addr]).unwrap();
        let r = client
            .post(url.clone())
            .json(&serde_json::json!({"a": 1}))
            .send()
            .await;
        assert_eq!(r.unwrap().status(), 204);
        let request = server.await.unwrap();
        assert!(request.starts_with("POST /notify?secret=x"), "{request}");
        assert!(request.contains("host: integrator.invalid"), "{request}");
        assert_eq!(
            origin(&url),
            format!("http://integrator.invalid:{}", addr.port())
        );
    }
}
