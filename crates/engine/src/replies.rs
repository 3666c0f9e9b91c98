//! Finding the mail a reply answers: one of ours (by tracking id or Message-ID), else in the
//! account's mailbox by its Message-ID, through the seam.

use crate::Engine;
use crate::mailboxes::OpenError;
use mailroom_core::MessageId;
use mailroom_core::email::ReplyParent;
use mailroom_core::id::looks_like_id;
use mailroom_core::{ApiError, ErrorKind};
use mailroom_providers::{FailureKind, MailError};
use mailroom_store::accounts::Account;
use mailroom_store::outbox::{self, Job};
use mailroom_store::tenant::Tenant;

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

/// The parent of a reply, or 422 `errors/parent_mail_not_found`.
pub async fn resolve_parent(
    engine: &Engine,
    tenant: &Tenant,
    account: &Account,
    reply_to: &str,
) -> Result<ReplyParent, ApiError> {
    let store = &engine.store;
    let workspace = tenant.workspace_id();
    if looks_like_id(reply_to)
        && let Some(job) = outbox::get(store, tenant, reply_to)
            .await
            .map_err(store_error)?
    {
        return Ok(from_job(job));
    }
    let Some(message_id) = MessageId::parse(reply_to) else {
        return Err(ApiError::new(
            ErrorKind::ParentMailNotFound,
            format!(
                "reply_to {reply_to} is neither a tracking_id of this workspace nor a Message-ID"
            ),
        ));
    };
    // Another account's send is not a parent a bound key may see (its subject would show).
    if let Some(job) = outbox::get_by_message_id(store, workspace, &message_id.bracketed())
        .await
        .map_err(store_error)?
        .filter(|job| tenant.sees(&job.account_id))
    {
        return Ok(from_job(job));
    }
    // The lookup talks to the mailbox while the client waits: bounded like a send attempt.
    let deadline = engine.outbox.config().send_timeout;
    let lookup = async {
        let mailbox = engine
            .mailboxes()
            .open(account)
            .await
            .map_err(|e| match e {
                OpenError::Store(e) => store_error(e),
                OpenError::Mail(e) => unreachable(e),
            })?;
        mailbox.find_parent(&message_id).await.map_err(unreachable)
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

/// An outage is temporary (503: try again); refused credentials mean the account needs a
/// reconnect; a refusal for good keeps its slug (an unconfigured app: 422 `invalid_account`).
fn unreachable(e: MailError) -> ApiError {
    let kind = match e.kind {
        FailureKind::Auth => ErrorKind::DisconnectedAccount,
        FailureKind::Rejected(kind) => kind,
        _ => ErrorKind::ServiceUnavailable,
    };
    ApiError::new(
        kind,
        format!(
            "cannot look up the parent mail on the {} server: {e}",
            e.protocol
        ),
    )
}

fn store_error(e: mailroom_store::StoreError) -> ApiError {
    tracing::error!(error = %e, "store error while looking up a reply's parent");
    ApiError::unexpected("an internal error occurred; it has been logged")
}
