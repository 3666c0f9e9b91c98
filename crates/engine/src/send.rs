//! Accepting a send: the request (already parsed and validated field by field by the API)
//! becomes a stored outbox job with its exact MIME bytes before the first attempt, which then
//! runs at once in its own tracked task. Idempotent replays answer the first answer.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Engine;
use crate::outbox::{Outcome, limits};
use crate::replies;
use mailroom_core::email::{Attendee, OutgoingAttachment, OutgoingEmail, ReplyParent};
use mailroom_core::id::looks_like_id;
use mailroom_core::time_fmt::format_ms;
use mailroom_core::{ApiError, ErrorKind, TrackingId};
use mailroom_mime::{
    BuiltMessage, MimeError, build_message, derive_text, looks_like_html, reply_subject,
};
use mailroom_store::audit::{self, Action, NewEntry, Origin};
use mailroom_store::outbox::{self, Job, JobStatus, NewJob};
use mailroom_store::tenant::Tenant;
use mailroom_store::{Db, accounts};

/// A send request, validated.
#[derive(Debug, Clone)]
pub struct SendInput {
    pub account_id: String,
    pub to: Vec<Attendee>,
    pub cc: Vec<Attendee>,
    pub bcc: Vec<Attendee>,
    pub from_identifier: Option<String>,
    pub from_name: Option<String>,
    pub subject: String,
    pub body: String,
    pub attachments: Vec<OutgoingAttachment>,
    /// A tracking id of ours or a Message-ID.
    pub reply_to: Option<String>,
    pub custom_headers: Vec<(String, String)>,
    /// Unix ms; a future time schedules the send.
    pub send_at: Option<i64>,
    /// Our id of a draft (`POST /drafts`) whose content the send takes where the request gives
    /// none; the draft is removed from Drafts once the send is accepted.
    pub draft_id: Option<String>,
    /// Open and click tracking of an HTML body (`tracking_options`).
    pub tracking: Option<crate::tracking::TrackingOptions>,
}

/// The HTTP answer to a send: its status and body (an `EmailSent`, or an error body for a
/// permanent failure). Stored with the job so an idempotent replay answers the same.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

/// A MIME builder refusal as the API answers it.
pub fn mime_error(e: MimeError) -> ApiError {
    match e {
        MimeError::ForbiddenHeader { .. } => {
            ApiError::new(ErrorKind::InvalidHeaders, e.to_string())
        }
        other => ApiError::new(ErrorKind::InvalidParameters, other.to_string()),
    }
}

/// Accepts a send from `origin` for an account `tenant` sees: the first answer of an earlier
/// request with the same `key` (409 if it asked for something else), or a new job stored
/// (with its `send.accepted` audit entry) and attempted at once. `fingerprint` identifies the
/// request's content; `message_max` caps the encoded message.
#[allow(clippy::too_many_arguments)]
pub async fn accept(
    engine: &Engine,
    tenant: &Tenant,
    origin: &Origin,
    input: SendInput,
    key: Option<String>,
    fingerprint: Vec<u8>,
    message_max: usize,
) -> Result<Answer, ApiError> {
    let store = &engine.store;
    let workspace = tenant.workspace_id();
    if let Some(key) = &key
        && let Some(job) = outbox::get_by_key(store, workspace, key)
            .await
            .map_err(store_error)?
    {
        return replay(engine, tenant, key, job, &fingerprint).await;
    }
    let Composed {
        account,
        id,
        message_id,
        subject,
        parent,
        built,
        send_at,
        draft,
    } = compose(engine, tenant, input, message_max).await?;
    let thread_refs: Vec<String> = match &parent {
        Some(p) => p
            .references
            .iter()
            .cloned()
            .chain([p.message_id.clone()])
            .collect(),
        None => vec![],
    };
    let now = engine.clock.now_ms();
    let scheduled = send_at.filter(|at| *at > now);
    let outbox = &engine.outbox;
    let claim = outbox.claim_token(&id, 1);
    let config = outbox.config();
    let inserted = store_job(
        engine,
        &account,
        NewJob {
            id: &id,
            workspace_id: workspace,
            account_id: &account.id,
            idempotency_key: key.as_deref(),
            request_hash: &fingerprint,
            message_id: &message_id,
            thread_refs: &thread_refs,
            subject: &subject,
            recipients: &built.envelope_to,
            envelope_from: &built.envelope_from,
            raw: &built.bytes,
            max_attempts: config.max_attempts,
            give_up_at: scheduled.unwrap_or(now) + config.retry_horizon.as_millis() as i64,
            now_ms: now,
            send_at: scheduled,
            lease: (&claim, outbox.lease_until(now)),
            send_gate: None,
        },
        origin,
    )
    .await;
    let job = match inserted {
        Ok(job) => job,
        // The same key raced in from another request: answer as its duplicate.
        Err(e) if e.is_unique_violation() && key.is_some() => {
            let key = key.as_deref().unwrap_or_default();
            if let Some(job) = outbox::get_by_key(store, workspace, key)
                .await
                .map_err(store_error)?
            {
                return replay(engine, tenant, key, job, &fingerprint).await;
            }
            return Err(store_error(e));
        }
        Err(e) => return Err(store_error(e)),
    };
    tracing::info!(tracking_id = %id, account_id = %account.id, scheduled = scheduled.is_some(), "email accepted");

    let answer = match scheduled {
        Some(at) => Answer {
            status: 202,
            body: sent_body(&id, &message_id, "scheduled", None, Some(at), None),
        },
        // Held for the account's send window: it goes at its time, oldest first.
        None if job.is_held() => answer_of(
            &id,
            &message_id,
            &Outcome::Waiting {
                until: job.run_after,
            },
        ),
        // A tracked task of its own: a client that disconnects does not cancel it.
        None => match outbox
            .spawn_first_attempt(job, account.clone(), built.bytes)
            .await
        {
            Ok(Ok(outcome)) => answer_of(&id, &message_id, &outcome),
            // The message is stored: whatever went wrong here, the worker sends it. Never
            // answer 500 for an accepted send (a client would send it again).
            other => {
                tracing::warn!(tracking_id = %id, outcome = ?other.map(|r| r.map(|_| ())), "the first attempt did not report; the worker will send");
                answer_of(&id, &message_id, &Outcome::NotOurs)
            }
        },
    };
    // A sent message's answer was recorded with the outcome; the others are recorded here.
    if answer.status != 201
        && let Err(e) = outbox::set_response(store, &id, answer.status, &answer.body).await
    {
        tracing::warn!(tracking_id = %id, error = %e, "cannot record the answer for idempotent replays");
    }
    // The draft's content now lives in the outbox (sent, or stored to be sent): the draft
    // goes. A failure to remove it does not undo the send; it is logged and stays a draft.
    if let Some(place) = draft
        && (200..300).contains(&answer.status)
        && let Err(e) = crate::mutate::remove_draft(engine, &account, &place).await
    {
        tracing::warn!(tracking_id = %id, error = %e.detail, "the sent draft could not be removed from Drafts");
    }
    Ok(answer)
}

/// A message composed from a send (or draft) request: its account, ids and exact bytes.
pub struct Composed {
    pub account: accounts::Account,
    pub id: TrackingId,
    pub message_id: String,
    pub subject: String,
    pub parent: Option<ReplyParent>,
    pub built: BuiltMessage,
    pub send_at: Option<i64>,
    /// The draft the content came from (`draft_id`), removed once the send is accepted.
    pub draft: Option<crate::mutate::DraftPlace>,
}

/// Stores an accepted send with its `send.accepted` audit entry, in one transaction. An
/// account with send limits (or paused by its provider) is decided under its lock in that
/// transaction ([`limits`]): the job is admitted, or held for the window (`send_at`), so two
/// processes never both take the last slot.
async fn store_job(
    engine: &Engine,
    account: &accounts::Account,
    mut job: NewJob<'_>,
    origin: &Origin,
) -> Result<Job, mailroom_store::StoreError> {
    let store = &engine.store;
    let now = job.now_ms;
    // A first look without the lock: an account without limits or pause takes no lock.
    let gated = job.send_at.is_none()
        && engine
            .outbox
            .limits_of(Db::Pool(store), account)
            .await?
            .gated(now);
    let mut tx = store.begin_write().await?;
    if gated {
        let (limits, usage) = engine.outbox.locked_limits(&mut tx, account, now).await?;
        // Held sends go in acceptance order, which is the order of this lock: the new job is
        // stamped after every job of the account still waiting or under way, even when it
        // came in the same millisecond or from a process whose clock is a little behind.
        let after = usage
            .held
            .iter()
            .map(|h| h.created_at)
            .chain(usage.in_flight.iter().map(|f| f.created_at))
            .max()
            .map_or(now, |last| last + 1);
        job.now_ms = now.max(after);
        let me = limits::Candidate {
            id: None,
            created_at: job.now_ms,
            recipients: job.recipients.len() as i64,
            held: false,
        };
        match limits::decide(&limits, &usage, &me, now) {
            limits::Verdict::Go => job.send_gate = Some(outbox::GATE_ADMITTED),
            limits::Verdict::WaitUntil(at) => {
                job.send_at = Some(at);
                job.send_gate = Some(outbox::GATE_HELD);
                // Waiting for the window is no failure: the retry horizon starts when it goes.
                job.give_up_at = at + engine.outbox.config().retry_horizon.as_millis() as i64;
            }
        }
    }
    let (workspace_id, account_id, id) = (job.workspace_id, job.account_id, job.id);
    let mut details = json!({ "recipients": job.recipients.len() });
    if let Some(at) = job.send_at {
        details["send_at"] = json!(format_ms(at));
    }
    let stored = outbox::insert_in(Db::Tx(&mut tx), job).await?;
    audit::record_in(
        Db::Tx(&mut tx),
        NewEntry {
            workspace_id,
            action: Action::SendAccepted,
            origin,
            account_id: Some(account_id),
            target: Some(id),
            details,
            now_ms: now,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(stored)
}

/// Finds the account (one `tenant` sees; it must be connected), completes the request from
/// its draft when it names one (`draft_id`), and builds the message, within the size limits.
pub async fn compose(
    engine: &Engine,
    tenant: &Tenant,
    mut input: SendInput,
    message_max: usize,
) -> Result<Composed, ApiError> {
    let store = &engine.store;
    let not_found = || {
        ApiError::new(
            ErrorKind::ResourceNotFound,
            format!("account {} not found", input.account_id),
        )
    };
    if !looks_like_id(&input.account_id) {
        return Err(not_found());
    }
    let workspace = tenant.workspace_id();
    let account = tenant
        .account(store, &input.account_id)
        .await
        .map_err(store_error)?
        .ok_or_else(not_found)?;
    // A sync status (CONNECTING, ERROR) says nothing about sending; a refused login does.
    if account.status.needs_reconnect() {
        return Err(ApiError::new(
            ErrorKind::DisconnectedAccount,
            format!(
                "account {} is {}: reconnect it before sending",
                account.id,
                account.status.as_str()
            ),
        ));
    }
    let draft = match input.draft_id.clone() {
        Some(draft_id) => {
            Some(crate::mutate::complete_from_draft(engine, &account, &draft_id, &mut input).await?)
        }
        None => None,
    };
    if input.to.is_empty() {
        return Err(ApiError::missing("to must name at least one recipient"));
    }
    let from_address = input
        .from_identifier
        .clone()
        .unwrap_or_else(|| account.settings.address().to_owned());
    let parent = match &input.reply_to {
        Some(r) => Some(replies::resolve_parent(engine, tenant, &account, r).await?),
        None => None,
    };
    let id = TrackingId::generate();
    let domain = from_address
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or("mailroom.invalid");
    let domain = idna::domain_to_ascii(domain).unwrap_or_else(|_| "mailroom.invalid".to_owned());
    let message_id = format!("<{id}@{domain}>");
    let subject = match &parent {
        Some(p) => reply_subject(&input.subject, p.subject.as_deref()),
        None => input.subject.clone(),
    };
    let (html, text) = if looks_like_html(&input.body) {
        (Some(input.body.clone()), derive_text(&input.body))
    } else {
        (None, input.body.clone())
    };
    // The text alternative stays as written; the HTML gets the pixel and tracked links.
    let (html, tracked) = match (html, &input.tracking) {
        (Some(h), Some(opts)) => {
            match crate::tracking::instrument(&h, opts, workspace, &account.id, id.as_ref()) {
                Some(i) => (Some(i.html), i.links),
                None => (Some(h), vec![]),
            }
        }
        (h, _) => (h, vec![]),
    };
    let email = OutgoingEmail {
        from: Attendee {
            identifier: from_address,
            display_name: input.from_name.clone(),
        },
        to: input.to,
        cc: input.cc,
        bcc: input.bcc,
        subject: subject.clone(),
        html,
        text,
        attachments: input.attachments,
        custom_headers: input.custom_headers,
        reply: parent.clone(),
    };
    let now = engine.clock.now_ms();
    let built = build_message(&email, &message_id, now).map_err(mime_error)?;
    if let Some(max) = engine.providers.max_message_bytes(account.account_type)
        && built.bytes.len() > max
    {
        return Err(ApiError::new(
            ErrorKind::ContentTooLarge,
            format!(
                "the encoded message is {} bytes; {} accepts at most {max}",
                built.bytes.len(),
                account.account_type.as_str()
            ),
        ));
    }
    if built.bytes.len() > message_max {
        return Err(ApiError::new(
            ErrorKind::ContentTooLarge,
            format!(
                "the encoded message is {} bytes; at most {message_max} are allowed",
                built.bytes.len(),
            ),
        ));
    }
    mailroom_store::tracking::insert_all(store, &tracked, now)
        .await
        .map_err(store_error)?;
    Ok(Composed {
        account,
        id,
        message_id,
        subject,
        parent,
        built,
        send_at: input.send_at,
        draft,
    })
}

/// A duplicate of an earlier request with the same key: 409 if it asks for something else,
/// else the first request's answer. While the first attempt is under way the replay waits for
/// it, but never longer than the send timeout: if the process that made the attempt died, its
/// answer never comes, and the replay says where the job stands (202 `queued`, or the final
/// outcome when the job has one by then).
async fn replay(
    engine: &Engine,
    tenant: &Tenant,
    key: &str,
    mut job: Job,
    fingerprint: &[u8],
) -> Result<Answer, ApiError> {
    // Another key's send to an account this one does not see: the key is taken, and nothing
    // about that send is told.
    if !tenant.sees(&job.account_id) {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            format!("Idempotency-Key {key} was already used for a different request"),
        ));
    }
    let workspace = tenant.workspace_id();
    if job.request_hash != fingerprint {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            format!(
                "Idempotency-Key {key} was already used for a different request (tracking_id {})",
                job.id
            ),
        ));
    }
    let wait = replay_wait(
        engine.outbox.config().send_timeout,
        job.created_at,
        engine.clock.now_ms(),
    );
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(20);
    while job.response.is_none() && !is_final(job.status) && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(Duration::from_millis(250));
        match outbox::get_by_key(&engine.store, workspace, key)
            .await
            .map_err(store_error)?
        {
            Some(j) => job = j,
            None => break,
        }
    }
    Ok(match job.response.take() {
        Some((status, body)) => Answer { status, body },
        None => current_answer(&job),
    })
}

/// How long a replay may wait for the first answer: until the first request's attempt must
/// have ended (acceptance + the send timeout + a second to record its answer), and never longer
/// than the send timeout. A replay of a job whose first request is long gone answers at once.
fn replay_wait(send_timeout: Duration, created_at_ms: i64, now_ms: i64) -> Duration {
    let first_answer_by = created_at_ms + send_timeout.as_millis() as i64 + RECORD_GRACE_MS;
    let left = Duration::from_millis((first_answer_by - now_ms).max(0) as u64);
    left.min(send_timeout)
}

/// Time allowed after an attempt's deadline for its answer to be stored.
const RECORD_GRACE_MS: i64 = 1_000;

fn is_final(status: JobStatus) -> bool {
    matches!(status, JobStatus::Sent | JobStatus::Failed)
}

fn current_answer(job: &Job) -> Answer {
    let outcome = match job.status {
        JobStatus::Sent => Outcome::Sent {
            provider_id: job.provider_id.clone().unwrap_or_default(),
        },
        JobStatus::Failed => Outcome::Failed {
            kind: error_kind(job.last_error_type.as_deref()),
            detail: job.last_error.clone().unwrap_or_default(),
        },
        _ => Outcome::NotOurs,
    };
    answer_of(&job.id, &job.message_id, &outcome)
}

fn error_kind(slug: Option<&str>) -> ErrorKind {
    ErrorKind::ALL
        .iter()
        .copied()
        .filter(|k| {
            k.status() == 422
                || *k == ErrorKind::RequestTimeout
                || *k == ErrorKind::DisconnectedAccount
        })
        .find(|k| Some(k.type_slug()) == slug)
        .unwrap_or(ErrorKind::CantSendMessage)
}

/// The `EmailSent` body (documented in the API's OpenAPI).
fn sent_body(
    id: &str,
    message_id: &str,
    status: &str,
    provider_id: Option<&str>,
    next_attempt_at: Option<i64>,
    last_error: Option<(ErrorKind, &str)>,
) -> Value {
    let mut body = json!({
        "object": "EmailSent",
        "tracking_id": id,
        "status": status,
        "message_id": message_id,
    });
    if let Some(p) = provider_id {
        body["provider_id"] = json!(p);
    }
    if let Some(at) = next_attempt_at {
        body["next_attempt_at"] = json!(format_ms(at));
        // When a scheduled send (`send_at`, or held for the account's send limits) goes.
        if status == "scheduled" {
            body["scheduled_for"] = json!(format_ms(at));
        }
    }
    if let Some((kind, detail)) = last_error {
        body["last_error"] = json!({"type": kind.type_slug(), "detail": detail});
    }
    body
}

/// The answer an outcome makes: 201 sent, 202 queued, or the failure's error body.
pub fn answer_of(id: &str, message_id: &str, outcome: &Outcome) -> Answer {
    match outcome {
        Outcome::Sent { provider_id } => Answer {
            status: 201,
            body: sent_body(id, message_id, "sent", Some(provider_id), None, None),
        },
        Outcome::Retrying {
            kind,
            detail,
            run_after,
        } => Answer {
            status: 202,
            body: sent_body(
                id,
                message_id,
                "queued",
                None,
                Some(*run_after),
                Some((*kind, detail)),
            ),
        },
        Outcome::Waiting { until } => Answer {
            status: 202,
            body: sent_body(id, message_id, "scheduled", None, Some(*until), None),
        },
        Outcome::NotOurs => Answer {
            status: 202,
            body: sent_body(id, message_id, "queued", None, None, None),
        },
        Outcome::Failed { kind, detail } => Answer {
            status: kind.status(),
            body: json!({
                "title": kind.title(), "detail": detail, "instance": "/api/v1/emails",
                "type": kind.type_slug(), "status": kind.status(),
            }),
        },
    }
}

fn store_error(e: mailroom_store::StoreError) -> ApiError {
    tracing::error!(error = %e, "store error while accepting a send");
    ApiError::unexpected("an internal error occurred; it has been logged")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_wait_for_the_first_attempt_at_most_the_send_timeout() {
        let t = Duration::from_secs(4);
        // Right after acceptance: the whole send timeout (the first answer comes within it).
        assert_eq!(replay_wait(t, 10_000, 10_000), t);
        assert_eq!(replay_wait(t, 10_000, 10_500), t);
        // Later: until the first attempt's deadline and its recording.
        assert_eq!(replay_wait(t, 10_000, 13_000), Duration::from_secs(2));
        // A first request long gone (its process died): at once.
        assert_eq!(replay_wait(t, 10_000, 60_000), Duration::ZERO);
    }

    #[test]
    fn outcomes_answer_like_the_api_documents() {
        let a = answer_of(
            "t",
            "<t@x>",
            &Outcome::Sent {
                provider_id: "p".into(),
            },
        );
        assert_eq!(a.status, 201);
        assert_eq!(a.body["provider_id"], "p");
        assert_eq!(a.body["status"], "sent");
        let q = answer_of("t", "<t@x>", &Outcome::NotOurs);
        assert_eq!((q.status, q.body["status"].as_str()), (202, Some("queued")));
        assert!(q.body.get("provider_id").is_none());
        let f = answer_of(
            "t",
            "<t@x>",
            &Outcome::Failed {
                kind: ErrorKind::RecipientRejected,
                detail: "550".into(),
            },
        );
        assert_eq!(f.status, 422);
        assert_eq!(f.body["type"], "errors/recipient_rejected");
    }
}
