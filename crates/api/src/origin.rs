//! Where a request comes from, for the audit log: its id (`x-request-id`, ours or the
//! client's, echoed on the answer) and the client's address.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap};

use mailroom_store::audit::{Actor, Origin};

/// The longest request id kept: a client's own id is accepted, but not a novel.
const MAX_REQUEST_ID: usize = 128;

/// The client's address: the peer, or, when the peer is a proxy on this machine or a private
/// network (a reverse proxy in front of mailroom), the rightmost `X-Forwarded-For` address that
/// is not one too. Proxies append what they saw, so the entries left of the first public one
/// are the client's own claims and are not believed.
pub(crate) fn client_ip(headers: &HeaderMap, ext: &Extensions) -> Option<String> {
    let peer = ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let proxied = |ip: &IpAddr| match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unique_local(),
    };
    let forwarded = || {
        let chain: Vec<IpAddr> = headers
            .get("x-forwarded-for")?
            .to_str()
            .ok()?
            .split(',')
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .collect();
        chain
            .iter()
            .rev()
            .find(|ip| !proxied(ip))
            .or(chain.first())
            .copied()
    };
    match peer {
        Some(p) if proxied(&p) => Some(forwarded().unwrap_or(p).to_string()),
        Some(p) => Some(p.to_string()),
        None => forwarded().map(|ip| ip.to_string()),
    }
}

/// The request's id as the request-id layer set it (visible ASCII, at most 128 characters).
fn request_id(headers: &HeaderMap) -> Option<String> {
    let id = headers.get(crate::routes::REQUEST_ID)?.to_str().ok()?;
    let id: String = id
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(MAX_REQUEST_ID)
        .collect();
    (!id.is_empty()).then_some(id)
}

/// The origin of a request made by `actor`.
pub(crate) fn of_request(actor: Actor, headers: &HeaderMap, ext: &Extensions) -> Origin {
    Origin {
        actor,
        request_id: request_id(headers),
        source_ip: client_ip(headers, ext),
    }
}

/// The origin of a request on a hosted link's page (the end user linking a mailbox).
pub struct HostedOrigin(pub Origin);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for HostedOrigin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(HostedOrigin(of_request(
            Actor::HostedLink,
            &parts.headers,
            &parts.extensions,
        )))
    }
}
