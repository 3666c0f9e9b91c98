//! Finding the mail a reply answers: one of ours (by tracking id or Message-ID), else (IMAP)
//! on the account's server by its Message-ID.

use crate::Engine;
use mailroom_core::account::MailSettings;
use mailroom_core::email::ReplyParent;
use mailroom_core::id::looks_like_id;
use mailroom_core::{ApiError, ErrorKind};
use mailroom_providers::gmail::GmailClient;
use mailroom_providers::graph::GraphClient;
use mailroom_providers::http_api::HttpApiError;
use mailroom_providers::imap_smtp::{imap, mailbox};
use mailroom_providers::oauth::IdP;

use crate::tokens::TokenError;
use mailroom_store::accounts::{self, Account, Credentials};
use mailroom_store::outbox::{self, Job};

/// A parent's subject may carry anything its sender put there (even encoded CR/LF); a reply's
/// subject must not, and the client cannot fix the parent: control characters become spaces.
pub fn clean_subject(subject: Option<String>) -> Option<String> {
    subject.map(|s| {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    })
}

fn from_job(job: Job) -> ReplyParent {
    ReplyParent {
        message_id: job.message_id,
        references: job.thread_refs,
        subject: Some(job.subject),
    }
}

/// `<id>` for a Message-ID given with or without its angle brackets.
fn bracketed(id: &str) -> String {
    let bare = id.trim().trim_start_matches('<').trim_end_matches('>');
    format!("<{bare}>")
}

/// The parent of a reply, or 422 `errors/parent_mail_not_found`.
pub async fn resolve_parent(
    engine: &Engine,
    workspace: &str,
    account: &Account,
    reply_to: &str,
) -> Result<ReplyParent, ApiError> {
    let store = &engine.store;
    if looks_like_id(reply_to)
        && let Some(job) = outbox::get(store, workspace, reply_to)
            .await
            .map_err(store_error)?
    {
        return Ok(from_job(job));
    }
    let message_id = bracketed(reply_to);
    if !message_id.contains('@')
        || message_id
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\\')
    {
        return Err(ApiError::new(
            ErrorKind::ParentMailNotFound,
            format!(
                "reply_to {reply_to} is neither a tracking_id of this workspace nor a Message-ID"
            ),
        ));
    }
    if let Some(job) = outbox::get_by_message_id(store, workspace, &message_id)
        .await
        .map_err(store_error)?
    {
        return Ok(from_job(job));
    }
    // The lookup talks to the mailbox while the client waits: bounded like a send attempt.
    let deadline = engine.outbox.config().send_timeout;
    let lookup = async {
        match crate::tokens::idp_of(account.account_type) {
            None => find_on_imap(engine, account, &message_id).await,
            Some(idp) => find_by_api(engine, account, idp, &message_id).await,
        }
    };
    let found = tokio::time::timeout(deadline, lookup).await.map_err(|_| {
        ApiError::new(
            ErrorKind::ServiceUnavailable,
            format!(
                "the mailbox did not answer the lookup of the parent mail within {}s; try again",
                deadline.as_secs()
            ),
        )
    })??;
    found
        .map(|p| ReplyParent {
            subject: clean_subject(p.subject),
            ..p
        })
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::ParentMailNotFound,
                format!("no mail with Message-ID {message_id} in this mailbox"),
            )
        })
}

async fn find_on_imap(
    engine: &Engine,
    account: &Account,
    message_id: &str,
) -> Result<Option<ReplyParent>, ApiError> {
    let settings: MailSettings = serde_json::from_value(account.settings.clone())
        .map_err(|e| ApiError::unexpected(format!("account settings: {e}")))?;
    let Some(Credentials::Mail { imap_password, .. }) =
        accounts::credentials(&engine.store, &engine.vault, &account.id)
            .await
            .map_err(store_error)?
    else {
        return Err(ApiError::new(
            ErrorKind::InvalidAccount,
            "the account has no credentials",
        ));
    };
    let login = imap::ImapLogin {
        host: &settings.imap_host,
        port: settings.imap_port,
        tls: settings.imap_tls(),
        user: &settings.imap_user,
        password: &imap_password,
    };
    // An outage is temporary (503: try again); a refused login means the account needs a
    // reconnect.
    let unreachable = |e: mailroom_providers::ProviderError| {
        let kind = if e.is_auth() {
            ErrorKind::DisconnectedAccount
        } else {
            ErrorKind::ServiceUnavailable
        };
        ApiError::new(
            kind,
            format!("cannot look up the parent mail on the IMAP server: {e}"),
        )
    };
    let mut session = imap::login(&login, &engine.net)
        .await
        .map_err(unreachable)?;
    let found = mailbox::find_by_message_id(&mut session, message_id).await;
    let _ = session.logout().await;
    found.map_err(unreachable)
}

async fn find_by_api(
    engine: &Engine,
    account: &Account,
    idp: IdP,
    message_id: &str,
) -> Result<Option<ReplyParent>, ApiError> {
    // A send-only account cannot search its mailbox: answer with what the id itself says.
    let mode =
        serde_json::from_value::<mailroom_core::account::OAuthSettings>(account.settings.clone())
            .map(|s| s.mode)
            .unwrap_or_default();
    if mode == mailroom_core::account::AccountMode::Send {
        return Ok(Some(ReplyParent {
            message_id: message_id.to_owned(),
            references: vec![],
            subject: None,
        }));
    }
    let app = engine.apps.get(idp).ok_or_else(|| {
        ApiError::new(
            ErrorKind::InvalidAccount,
            format!("the {idp:?} app is not configured on this server"),
        )
    })?;
    let token = engine
        .tokens
        .access_token(account, None)
        .await
        .map_err(|e| match e {
            TokenError::Revoked(d) => ApiError::new(ErrorKind::DisconnectedAccount, d),
            other => ApiError::new(ErrorKind::ServiceUnavailable, other.to_string()),
        })?;
    let unreachable = |e: HttpApiError| {
        let kind = if e.is_auth() {
            ErrorKind::DisconnectedAccount
        } else {
            ErrorKind::ServiceUnavailable
        };
        ApiError::new(kind, format!("cannot look up the parent mail: {e}"))
    };
    match idp {
        IdP::Google => Ok(GmailClient::new(engine.http.clone(), app.api_base.clone())
            .find_by_message_id(&token, message_id)
            .await
            .map_err(unreachable)?
            .and_then(|r| r.reply_parent())),
        // Graph's search answers the message's id; the reply itself goes through
        // `createReply`, which keeps it in the conversation.
        IdP::Microsoft => Ok(GraphClient::new(engine.http.clone(), app.api_base.clone())
            .find_by_internet_message_id(&token, message_id)
            .await
            .map_err(unreachable)?
            .map(|_| ReplyParent {
                message_id: message_id.to_owned(),
                references: vec![],
                subject: None,
            })),
    }
}

fn store_error(e: mailroom_store::StoreError) -> ApiError {
    tracing::error!(error = %e, "store error while looking up a reply's parent");
    ApiError::unexpected("an internal error occurred; it has been logged")
}
