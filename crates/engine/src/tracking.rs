//! Open and click tracking (`tracking_options` on a send).
//!
//! **At send time** ([`instrument`]): the HTML body gets a 1×1 image at
//! `<base>t/o/<token>` (opens) and each absolute `http(s)` link becomes `<base>t/c/<token>`
//! (clicks), one unguessable token (128 random bits) per link; the tokens are stored with the
//! URL each stands for. Only those stored URLs can be reached through `/t/c/…`: no open
//! redirect. `<base>` is `https://<custom_domain>/` when the send names one (the operator points
//! that name at mailroom), else `MAILROOM_PUBLIC_URL`. Plain-text bodies are not tracked.
//!
//! **When the recipient opens or clicks** ([`opened`], [`clicked`]): an event, `mail_opened`
//! for the first open of the message (one id per message: later opens are the same event) and
//! `mail_link_clicked` for every click (a fresh id each). Fetches that look like mail
//! scanners (security gateways following every link, `HEAD` requests, robots) are marked
//! `prefetch: true`; a prefetch open has an event id of its own, so the person's first open is
//! still announced after a scanner's.

use serde_json::{Value, json};
use url::Url;

use mailroom_core::time_fmt::format_ms;
use mailroom_core::{ApiError, new_id};
use mailroom_mime::tracking::Instrument;
use mailroom_store::events::{self, NewEvent};
use mailroom_store::tracking::{self, TokenKind, TrackingLink};

use crate::Engine;

/// `tracking_options` of a send, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingOptions {
    pub opens: bool,
    pub links: bool,
    pub label: Option<String>,
    pub custom_domain: Option<String>,
    /// Where `t/o/…` and `t/c/…` are served (ends with `/`).
    pub base: Url,
}

/// What an instrumented body needs stored.
pub struct Instrumented {
    pub html: String,
    pub links: Vec<TrackingLink>,
}

/// `html` with an open pixel and tracked links as `opts` asks, and the tokens to store; `None`
/// when nothing is tracked (neither asked, or HTML that cannot be rewritten).
pub fn instrument(
    html: &str,
    opts: &TrackingOptions,
    workspace_id: &str,
    account_id: &str,
    tracking_id: &str,
) -> Option<Instrumented> {
    if !opts.opens && !opts.links {
        return None;
    }
    let ours = opts.base.as_str().to_owned() + "t/";
    let mut links = vec![];
    let mut token_for = |kind: TokenKind, url: Option<String>| {
        let token = new_id();
        links.push(TrackingLink {
            token: token.clone(),
            workspace_id: workspace_id.to_owned(),
            account_id: account_id.to_owned(),
            tracking_id: tracking_id.to_owned(),
            kind,
            url,
            label: opts.label.clone(),
            custom_domain: opts.custom_domain.clone(),
        });
        token
    };
    let pixel = opts
        .opens
        .then(|| format!("{ours}o/{}", token_for(TokenKind::Open, None)));
    let mut clicks: Vec<(String, String)> = vec![];
    let mut rewrite = |url: &str| {
        // A body sent again (a draft) keeps the links it already has.
        if url.starts_with(&ours) {
            return url.to_owned();
        }
        let token = new_id();
        clicks.push((token.clone(), url.to_owned()));
        format!("{ours}c/{token}")
    };
    let html = mailroom_mime::tracking::instrument(
        html,
        Instrument {
            pixel: pixel.as_deref(),
            link: if opts.links { Some(&mut rewrite) } else { None },
        },
    )?;
    for (token, url) in clicks {
        links.push(TrackingLink {
            token,
            workspace_id: workspace_id.to_owned(),
            account_id: account_id.to_owned(),
            tracking_id: tracking_id.to_owned(),
            kind: TokenKind::Click,
            url: Some(url),
            label: opts.label.clone(),
            custom_domain: opts.custom_domain.clone(),
        });
    }
    Some(Instrumented { html, links })
}

/// Who fetched a tracking URL.
#[derive(Debug, Clone, Default)]
pub struct Hit {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// A `HEAD` request: a client checking the link, not a person opening it.
    pub head: bool,
}

/// Signs of a mail scanner or a robot in a user agent (security gateways fetch every link and
/// image of a message before, or instead of, the person).
const SCANNERS: &[&str] = &[
    "proofpoint",
    "mimecast",
    "barracuda",
    "urldefense",
    "safelinks",
    "symantec",
    "messagelabs",
    "fireeye",
    "trendmicro",
    "zscaler",
    "forcepoint",
    "sophos",
    "ironport",
    "bot",
    "crawler",
    "spider",
    "headlesschrome",
    "python-requests",
    "python-urllib",
    "curl/",
    "wget",
    "go-http-client",
    "okhttp",
    "java/",
    "libwww",
];

fn is_prefetch(hit: &Hit) -> bool {
    hit.head
        || hit.user_agent.as_deref().is_none_or(|ua| {
            let ua = ua.to_ascii_lowercase();
            ua.trim().is_empty() || SCANNERS.iter().any(|s| ua.contains(s))
        })
}

fn store_error(e: mailroom_store::StoreError) -> ApiError {
    tracing::error!(error = %e, "store error while recording a tracking event");
    ApiError::unexpected("an internal error occurred; it has been logged")
}

async fn record(
    engine: &Engine,
    link: &TrackingLink,
    kind: &str,
    id: String,
    hit: &Hit,
    prefetch: bool,
) -> Result<(), ApiError> {
    let now = engine.clock.now_ms();
    let email_id = tracking::email_id(&engine.store, &link.account_id, &link.tracking_id)
        .await
        .map_err(store_error)?;
    let payload: Value = json!({
        "event": kind,
        "event_id": id,
        "type": kind,
        "tracking_id": link.tracking_id,
        "date": format_ms(now),
        "email_id": email_id.as_deref().unwrap_or(&link.tracking_id),
        "account_id": link.account_id,
        "ip": hit.ip,
        "user_agent": hit.user_agent,
        "url": link.url,
        "label": link.label,
        "custom_domain": link.custom_domain,
        "prefetch": prefetch,
    });
    events::record(
        &engine.store,
        NewEvent {
            id,
            workspace_id: &link.workspace_id,
            account_id: Some(&link.account_id),
            kind,
            payload,
            now_ms: now,
        },
    )
    .await
    .map_err(store_error)
}

/// `GET /t/o/{token}`: records the message's first open (and a scanner's first fetch apart).
/// An unknown token records nothing. A failure is logged: the image is served whatever
/// happens.
pub async fn opened(engine: &Engine, token: &str, hit: &Hit) {
    let Ok(Some(link)) = lookup(engine, token, TokenKind::Open).await else {
        return;
    };
    let prefetch = is_prefetch(hit);
    let which = if prefetch { "prefetch" } else { "open" };
    let id = events::event_id(&["mail_opened", &link.tracking_id, which]);
    let _ = record(engine, &link, "mail_opened", id, hit, prefetch).await;
}

/// `GET /t/c/{token}`: where the link leads (`None` for an unknown token: there is nowhere to
/// send the person), with the click recorded. A click that cannot be recorded is logged and
/// the person still goes on.
pub async fn clicked(engine: &Engine, token: &str, hit: &Hit) -> Result<Option<String>, ApiError> {
    let Some(link) = lookup(engine, token, TokenKind::Click).await? else {
        return Ok(None);
    };
    let id = events::event_id(&["mail_link_clicked", &link.token, &new_id()]);
    let _ = record(
        engine,
        &link,
        "mail_link_clicked",
        id,
        hit,
        is_prefetch(hit),
    )
    .await;
    Ok(link.url)
}

async fn lookup(
    engine: &Engine,
    token: &str,
    kind: TokenKind,
) -> Result<Option<TrackingLink>, ApiError> {
    if !mailroom_core::id::looks_like_id(token) {
        return Ok(None);
    }
    Ok(tracking::get(&engine.store, token)
        .await
        .map_err(store_error)?
        .filter(|l| l.kind == kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(opens: bool, links: bool) -> TrackingOptions {
        TrackingOptions {
            opens,
            links,
            label: Some("lbl".into()),
            custom_domain: None,
            base: Url::parse("https://mail.example.com/").unwrap(),
        }
    }

    #[test]
    fn every_link_gets_its_own_token_and_the_pixel_one() {
        let html = "<p><a href=\"https://a.example/1\">1</a> <a href=\"https://a.example/1\">again</a>\
                    <a href=\"https://mail.example.com/t/c/keep\">sent before</a></p>";
        let out = instrument(html, &opts(true, true), "w", "acc", "trk").unwrap();
        let clicks: Vec<&TrackingLink> = out
            .links
            .iter()
            .filter(|l| l.kind == TokenKind::Click)
            .collect();
        assert_eq!(clicks.len(), 2);
        assert_ne!(clicks[0].token, clicks[1].token);
        assert!(
            clicks
                .iter()
                .all(|l| l.url.as_deref() == Some("https://a.example/1"))
        );
        for l in &out.links {
            let path = if l.kind == TokenKind::Open { "o" } else { "c" };
            assert!(
                out.html
                    .contains(&format!("https://mail.example.com/t/{path}/{}", l.token)),
                "{}",
                out.html
            );
            assert_eq!(l.label.as_deref(), Some("lbl"));
        }
        assert!(out.html.contains("https://mail.example.com/t/c/keep"));
        assert!(!out.html.contains("https://a.example/1"));
        assert!(instrument(html, &opts(false, false), "w", "acc", "trk").is_none());
    }

    #[test]
    fn scanners_and_head_requests_are_prefetches() {
        let hit = |ua: Option<&str>, head: bool| Hit {
            ip: None,
            user_agent: ua.map(str::to_owned),
            head,
        };
        let person = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15";
        assert!(!is_prefetch(&hit(Some(person), false)));
        assert!(is_prefetch(&hit(Some(person), true)));
        assert!(is_prefetch(&hit(
            Some("Mozilla/5.0 (compatible; Proofpoint)"),
            false
        )));
        assert!(is_prefetch(&hit(None, false)));
        // Gmail fetches images through its proxy when the person opens the message.
        assert!(!is_prefetch(&hit(
            Some(
                "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
            ),
            false
        )));
    }
}
