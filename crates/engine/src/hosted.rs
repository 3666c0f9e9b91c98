//! The hosted linking flow's state machine: an OAuth round trip bound to a hosted link
//! (`state` + PKCE S256 verifier sealed with the link, single-use consume, release on failure,
//! code exchange, linking) and the IMAP form's linking. The API renders pages and redirects
//! from what these answer.

use std::collections::HashMap;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::Engine;
use crate::apps::{self, IdP, Pkce};
use crate::link::{Linked, Saving, link_mail, link_oauth, window_of};
use mailroom_core::account::{AccountMode, MailSettings};
use mailroom_core::id::random_bytes;
use mailroom_core::mail::SyncLimit;
use mailroom_core::send_limits::SendLimitSettings;
use mailroom_core::{ApiError, ErrorKind};
use mailroom_store::accounts::{self, Account};
use mailroom_store::audit::Origin;
use mailroom_store::events::{self, NewEvent};
use mailroom_store::hosted_links::{self, HostedLink};
use mailroom_store::sync_window::SyncWindow;
use mailroom_store::tenant::Tenant;
use mailroom_store::{Db, webhook_deliveries};

/// Why a step of the flow did not go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not a valid or current sign-in (unknown or forged `state`, replay, wrong provider).
    Invalid,
    /// The link can no longer be used (expired or consumed meanwhile).
    Gone,
    /// The provider is not offered for this link or not configured.
    NotOffered,
    /// Something on our side failed; logged.
    Internal,
    /// The link's integrator hears why: `reason` for its failure URL (`error=`), `text` for
    /// the person.
    Failed { reason: String, text: String },
}

/// 256 random bits, URL-safe.
pub fn random_token() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

fn verifier_aad(link_id: &str) -> String {
    format!("hosted_links.oauth_verifier:{link_id}")
}

fn internal(what: &str, e: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %e, "{what}");
    Refusal::Internal
}

/// The longest a link may live.
pub const MAX_LINK_LIFETIME_MS: i64 = 30 * 24 * 3600 * 1000;

/// A hosted link to make, as the API parsed it.
pub struct NewLinkRequest {
    /// `Some(account id)` for a reconnect link.
    pub reconnect_account: Option<String>,
    /// The providers offered (`GOOGLE`, `OUTLOOK`, `MAIL`); a reconnect offers the account's.
    pub providers: Option<Vec<String>>,
    /// Unix ms; clamped to [`MAX_LINK_LIFETIME_MS`] ahead.
    pub expires_at: i64,
    /// The access asked for; a reconnect keeps the account's when none is given.
    pub mode: Option<AccountMode>,
    pub name: Option<String>,
    pub success_redirect_url: Option<String>,
    pub failure_redirect_url: Option<String>,
    pub notify_url: Option<String>,
    /// How much existing mail the linked mailbox's first sync indexes (create links only: a
    /// reconnected account keeps its window).
    pub sync_limit: SyncLimit,
    /// The linked mailbox's own send limits (create links only: a reconnected account keeps
    /// its own).
    pub send_limits: SendLimitSettings,
}

/// Makes a hosted link for `tenant`'s workspace; answers its token (the page is
/// `hosted/{token}`). A key bound to accounts may make reconnect links for them only.
pub async fn create_link(
    engine: &Engine,
    tenant: &Tenant,
    req: NewLinkRequest,
) -> Result<String, ApiError> {
    let workspace = tenant.workspace_id();
    let now = engine.clock.now_ms();
    let reconnect = match &req.reconnect_account {
        None => {
            crate::link::refuse_bound(tenant)?;
            None
        }
        Some(id) => {
            let not_found = || {
                ApiError::new(
                    ErrorKind::ResourceNotFound,
                    format!("account {id} not found"),
                )
            };
            if !mailroom_core::id::looks_like_id(id) {
                return Err(not_found());
            }
            Some(
                tenant
                    .account(&engine.store, id)
                    .await
                    .map_err(|e| store_failure("reconnect lookup", e))?
                    .ok_or_else(not_found)?,
            )
        }
    };
    let providers = match (&reconnect, req.providers) {
        (Some(a), _) => vec![a.account_type.source_name().to_owned()],
        (None, Some(p)) => p,
        (None, None) => {
            return Err(ApiError::new(
                ErrorKind::MissingParameters,
                "providers is required",
            ));
        }
    };
    if req.expires_at <= now {
        return Err(ApiError::new(
            ErrorKind::InvalidParameters,
            "expiresOn is in the past",
        ));
    }
    let expires_at = req.expires_at.min(now + MAX_LINK_LIFETIME_MS);
    let mode = req.mode.unwrap_or_else(|| match &reconnect {
        // A reconnect keeps the account's mode.
        Some(a) => a.settings.mode(),
        None => AccountMode::Full,
    });
    let token = random_token();
    let sync_limit = match (&reconnect, req.sync_limit) {
        (None, l) if l != SyncLimit::Default => Some(l.as_stored()),
        _ => None,
    };
    // A reconnect keeps the account's limits; they are changed by `PATCH /accounts/{id}`.
    // Said, not silently dropped.
    if reconnect.is_some() && !req.send_limits.is_default() {
        return Err(ApiError::new(
            ErrorKind::InvalidParameters,
            "send_limits cannot be set on a reconnect link: change them with PATCH /accounts/{id}",
        ));
    }
    let send_limits = (!req.send_limits.is_default()).then(|| req.send_limits.to_stored_json());
    hosted_links::insert(
        &engine.store,
        hosted_links::NewLink {
            id: &mailroom_core::new_id(),
            token: &token,
            workspace_id: workspace,
            kind: if reconnect.is_some() {
                "reconnect"
            } else {
                "create"
            },
            mode: mode.as_str(),
            providers: &providers,
            reconnect_account: reconnect.as_ref().map(|a| a.id.as_str()),
            name: req.name.as_deref(),
            success_redirect_url: req.success_redirect_url.as_deref(),
            failure_redirect_url: req.failure_redirect_url.as_deref(),
            notify_url: req.notify_url.as_deref(),
            expires_at,
            now_ms: now,
            sync_limit: sync_limit.as_deref(),
            send_limits: send_limits.as_deref(),
        },
    )
    .await
    .map_err(|e| store_failure("cannot store the hosted link", e))?;
    Ok(token)
}

fn store_failure(what: &str, e: mailroom_store::StoreError) -> ApiError {
    tracing::error!(error = %e, "{what}");
    ApiError::unexpected("an internal error occurred; it has been logged")
}

/// What access the link asks for.
pub fn link_mode(link: &HostedLink) -> AccountMode {
    AccountMode::parse(&link.mode).unwrap_or_default()
}

/// Starts the OAuth round trip for `link` with `idp`: a fresh `state` and PKCE verifier bound
/// to the link; answers the provider's authorize URL.
pub async fn begin_oauth(
    engine: &Engine,
    link: &HostedLink,
    idp: IdP,
) -> Result<url::Url, Refusal> {
    let app = engine.apps.get(idp).ok_or(Refusal::NotOffered)?;
    let pkce = Pkce::new();
    let state = random_token();
    let sealed = engine
        .vault
        .seal(
            &verifier_aad(&link.id),
            pkce.verifier.expose_secret().as_bytes(),
        )
        .await
        .map_err(|e| internal("cannot seal the PKCE verifier", e))?;
    let begun = hosted_links::begin_oauth(
        &engine.store,
        &link.id,
        idp.name(),
        &state,
        &sealed,
        engine.clock.now_ms(),
    )
    .await
    .map_err(|e| internal("cannot start the OAuth round trip", e))?;
    if !begun {
        return Err(Refusal::Gone);
    }
    Ok(apps::authorize_url(
        app,
        idp,
        link_mode(link),
        &state,
        &pkce.challenge,
    ))
}

/// Where the provider sends the person back: checks `state` against the link, takes the
/// code, exchanges it with the sealed verifier, consumes the link (exactly one completion)
/// and links the mailbox, checking that everything asked for was granted. On failure after
/// consuming, the link is released for another try. The link is answered with the outcome so
/// the caller can redirect.
pub async fn finish_oauth(
    engine: &Engine,
    idp: IdP,
    query: &HashMap<String, String>,
    origin: &Origin,
) -> Result<(HostedLink, Linked), (Option<HostedLink>, Refusal)> {
    let state = query.get("state").ok_or((None, Refusal::Invalid))?;
    let (link, sealed) = hosted_links::by_oauth_state(&engine.store, state)
        .await
        .map_err(|e| (None, internal("OAuth state lookup failed", e)))?
        .ok_or((None, Refusal::Invalid))?;
    if link.oauth_provider.as_deref() != Some(idp.name()) {
        return Err((None, Refusal::Invalid));
    }
    let failed = |link: HostedLink, reason: &str, text: &str| {
        (
            Some(link),
            Refusal::Failed {
                reason: reason.to_owned(),
                text: text.to_owned(),
            },
        )
    };
    if link.used_at.is_some() {
        return Err(failed(
            link,
            "link_already_used",
            "This link was already used to connect a mailbox.",
        ));
    }
    if link.expires_at <= engine.clock.now_ms() {
        return Err(failed(
            link,
            "expired_link",
            "This link expired before the sign-in finished.",
        ));
    }
    if let Some(error) = query.get("error") {
        tracing::info!(link = %link.id, error = %error, "the user did not grant access");
        return Err(failed(
            link,
            error,
            "You did not grant access, so no mailbox was connected.",
        ));
    }
    let code = query.get("code").ok_or((None, Refusal::Invalid))?;
    let verifier = match engine
        .vault
        .open_blob(&verifier_aad(&link.id), &sealed)
        .await
    {
        Ok(v) => SecretString::from(String::from_utf8_lossy(&v).into_owned()),
        Err(_) => return Err((None, Refusal::Invalid)),
    };
    let now = engine.clock.now_ms();
    let tokens = match engine
        .providers
        .exchange_code(idp, link_mode(&link), code, &verifier, now)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(link = %link.id, error = %e, "code exchange failed");
            return Err(failed(
                link,
                "token_exchange_failed",
                "The provider did not confirm the sign-in. Please try again.",
            ));
        }
    };
    let reconnect = match reconnect_target(engine, &link).await {
        Ok(r) => r,
        Err(refusal) => return Err((Some(link), refusal)),
    };
    match hosted_links::consume(&engine.store, &link.id, now).await {
        Ok(true) => {}
        Ok(false) => return Err((None, Refusal::Invalid)),
        Err(e) => return Err((None, internal("cannot consume the link", e))),
    }
    let asked = Some(link_mode(&link));
    match link_oauth(
        engine,
        &link.workspace_id,
        idp,
        tokens,
        asked,
        Saving {
            reconnect: reconnect.as_ref(),
            window: window_for(engine, &link, reconnect.as_ref()),
            hosted: Some(&link),
            origin: Some(origin),
            send_limits: send_limits_for(&link),
        },
    )
    .await
    {
        Ok(linked) => Ok((link, linked)),
        Err(e) => {
            let _ = hosted_links::release(&engine.store, &link.id).await;
            tracing::warn!(link = %link.id, error = %e, "linking the mailbox failed");
            let reason = if e.kind == ErrorKind::InsufficientPermissions {
                "missing_access"
            } else {
                "account_link_failed"
            };
            Err(failed(link, reason, &e.detail))
        }
    }
}

/// The sync window a create link's new account gets: the link's `sync_limit` from now (a
/// reconnect keeps the account's window: `None`).
fn window_for(
    engine: &Engine,
    link: &HostedLink,
    reconnect: Option<&Account>,
) -> Option<SyncWindow> {
    if reconnect.is_some() {
        return None;
    }
    let limit = link
        .sync_limit
        .as_deref()
        .and_then(SyncLimit::from_stored)
        .unwrap_or_default();
    Some(window_of(limit, engine.clock.now_ms()))
}

/// The send limits a create link's new account gets (a reconnect link stores none).
fn send_limits_for(link: &HostedLink) -> SendLimitSettings {
    link.send_limits
        .as_deref()
        .and_then(SendLimitSettings::from_stored_json)
        .unwrap_or_default()
}

/// The account a reconnect link is for (`None` for a create link).
pub async fn reconnect_target(
    engine: &Engine,
    link: &HostedLink,
) -> Result<Option<Account>, Refusal> {
    match &link.reconnect_account {
        None => Ok(None),
        Some(id) => match accounts::get(&engine.store, &link.workspace_id, id).await {
            Ok(Some(a)) => Ok(Some(a)),
            Ok(None) => Err(Refusal::Failed {
                reason: "account_not_found".into(),
                text: "The mailbox to reconnect no longer exists.".into(),
            }),
            Err(e) => Err(internal("reconnect lookup failed", e)),
        },
    }
}

/// Links the IMAP form's mailbox for `link`: consumes the link first (single use) and gives
/// it back when the mailbox refuses, so the person can correct the form.
pub async fn link_imap(
    engine: &Engine,
    link: &HostedLink,
    settings: MailSettings,
    password: SecretString,
    origin: &Origin,
) -> Result<Linked, Result<ApiError, Refusal>> {
    let reconnect = reconnect_target(engine, link).await.map_err(Err)?;
    match hosted_links::consume(&engine.store, &link.id, engine.clock.now_ms()).await {
        Ok(true) => {}
        Ok(false) => return Err(Err(Refusal::Gone)),
        Err(e) => return Err(Err(internal("cannot consume the link", e))),
    }
    let linked = link_mail(
        engine,
        &link.workspace_id,
        settings,
        password.clone(),
        password,
        Saving {
            reconnect: reconnect.as_ref(),
            window: window_for(engine, link, reconnect.as_ref()),
            hosted: Some(link),
            origin: Some(origin),
            send_limits: send_limits_for(link),
        },
    )
    .await;
    if linked.is_err() {
        let _ = hosted_links::release(&engine.store, &link.id).await;
    }
    linked.map_err(Ok)
}

/// A link's mailbox is linked: records it on the link. The integrator's `notify_url` call was
/// queued with the account itself ([`queue_notify`]). Answers the status word.
pub async fn linked(engine: &Engine, link: &HostedLink, linked: &Linked) -> &'static str {
    let account = &linked.account;
    // The mailbox is linked whatever happens here.
    if let Err(e) = hosted_links::set_account(&engine.store, &link.id, &account.id).await {
        tracing::warn!(link = %link.id, error = %e, "cannot record the linked account on its link");
    }
    if linked.reconnected {
        "RECONNECTED"
    } else {
        "CREATION_SUCCESS"
    }
}

/// Records the `notify_url` call of `link` (`{status, account_id, name}`, `unipile-api.md`
/// §5.4) and queues its delivery, in `tx`: the transaction that saves the account, so the call
/// is made if and only if the mailbox was linked (delivered like a webhook: durable, retried,
/// egress-guarded). A link without a usable `notify_url` queues nothing.
pub(crate) async fn queue_notify(
    tx: &mut mailroom_store::WriteTx,
    link: &HostedLink,
    account_id: &str,
    status: &str,
    now: i64,
) -> Result<(), mailroom_store::StoreError> {
    let Some(url) = link
        .notify_url
        .as_deref()
        .filter(|u| url::Url::parse(u).is_ok())
    else {
        return Ok(());
    };
    let id = events::event_id(&["hosted_notify", &link.id, account_id, status]);
    events::record_in(
        Db::Tx(tx),
        NewEvent {
            id: id.clone(),
            workspace_id: &link.workspace_id,
            account_id: Some(account_id),
            kind: "hosted_notify",
            payload: json!({"status": status, "account_id": account_id, "name": link.name.clone().unwrap_or_default()}),
            now_ms: now,
        },
    )
    .await?;
    webhook_deliveries::queue_call(tx, &link.workspace_id, &id, url, now)
        .await
        .map(|_| ())
}
