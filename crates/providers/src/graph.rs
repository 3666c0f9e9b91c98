//! Microsoft Graph v1.0 mail client (reqwest): the profile (`/me`) and sending a message that
//! mailroom already built as MIME.
//!
//! Sending routes (`reference/providers.md` B.1–B.2):
//!
//! - **Small, not a reply** → `POST /me/sendMail` with `Content-Type: text/plain` and the base64
//!   of the MIME, a `Bcc:` header inserted first by [`mailroom_mime::insert_bcc`] (the one Bcc
//!   insertion, shared with Gmail: mailroom's MIME builder never writes Bcc, SMTP carries it in
//!   the envelope; Graph reads recipients from the headers). Graph saves the Sent Items copy
//!   itself.
//! - **Too big for one 4 MB request, or a reply** → the MIME is parsed and rebuilt as a draft
//!   ([`mailroom_mime::graph_message`] gives the Graph message properties):
//!   a reply starts from `createReply` on the parent (found by `internetMessageId`) so it stays in
//!   the parent's `conversationId`; anything else is a `POST /me/messages` draft. Then the
//!   subject, body, recipients and Message-ID are set, attachments under 3 MB are POSTed and
//!   larger ones go through an upload session (`≤ 4 MB` ranged PUTs to the pre-authenticated
//!   URL, **without** an `Authorization` header), and `POST /send` sends it. A draft left behind
//!   by a failure before `/send` is deleted (best effort).
//!
//! Errors are classified into [`MailError`]s (`Protocol::Graph`, B.7): 401 → `Auth`; 429 and
//! `ApplicationThrottled` → `Quota`; 5xx and timeouts → `Transient` (both keep
//! `Retry-After`); `ErrorInvalidRecipients` → `Rejected(RecipientRejected)`; 413 /
//! `RequestBodyTooLarge` / `ErrorMessageSizeExceeded` → `TooLarge`; other refusals →
//! `Rejected(CantSendMessage)`.

mod feed;
pub mod subscriptions;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailroom_mime::{GraphAttachment, GraphMessage, graph_message, insert_bcc};
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, RequestBuilder, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use mailroom_core::{ErrorKind, MessageId};

use crate::failure::{FailureKind, MailError, Protocol};
use crate::http_api::{refused, retry_after};

pub use self::feed::{DeltaEntry, DeltaPage, GraphFolder, GraphMessageState, IdPage};

/// The MIME `sendMail` route is used while the base64 body stays under this (Graph's limit is
/// 4 MB per request; the margin keeps us clear of it whichever way "MB" is read).
pub const MIME_SEND_LIMIT: usize = 4_000_000;
/// Attachments smaller than this are POSTed whole; larger ones use an upload session
/// (the docs: "under 3 MB" / "3 MB to 150 MB"; a 3 MB file is ~4 MB in base64 JSON).
pub const DIRECT_ATTACHMENT_LIMIT: usize = 3_000_000;
/// Upload-session chunk: a multiple of 320 KiB and under 4 MB.
pub const UPLOAD_CHUNK: usize = 3_276_800;

/// The signed-in user (`GET /me`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphUser {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    /// Null for mailboxes without an SMTP address on the user object; fall back to the UPN.
    #[serde(default)]
    pub mail: Option<String>,
    #[serde(default)]
    pub user_principal_name: String,
}

/// How a message was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphRoute {
    /// `POST /me/sendMail` with the MIME.
    MimeSendMail,
    /// A draft (new, or from `createReply`), attachments, then `POST …/send`.
    Draft,
}

/// What Graph told us about a sent message. `sendMail` answers 202 with no body, so the ids
/// are known only on the draft route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphSent {
    pub route: GraphRoute,
    /// The draft's id before sending (it changes when Graph moves it to Sent Items).
    pub draft_id: Option<String>,
    pub conversation_id: Option<String>,
    /// The Graph id of the parent, when the reply went through `createReply`.
    pub parent_id: Option<String>,
}

/// A message found by `internetMessageId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphMessageRef {
    pub id: String,
    pub conversation_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    api_base: url::Url,
    timeout: Duration,
    upload_timeout: Duration,
}

impl GraphClient {
    /// `api_base` is the Graph root including the version, e.g. `https://graph.microsoft.com/v1.0`.
    pub fn new(http: reqwest::Client, api_base: url::Url) -> Self {
        Self {
            http,
            api_base,
            timeout: Duration::from_secs(60),
            upload_timeout: Duration::from_secs(180),
        }
    }

    /// Deadlines for ordinary requests and for each upload-session chunk.
    pub fn with_timeouts(mut self, request: Duration, upload_chunk: Duration) -> Self {
        self.timeout = request;
        self.upload_timeout = upload_chunk;
        self
    }

    fn url(&self, segments: &[&str]) -> url::Url {
        let mut u = self.api_base.clone();
        if let Ok(mut p) = u.path_segments_mut() {
            p.pop_if_empty().extend(segments);
        }
        u
    }

    fn request(&self, method: Method, url: url::Url, token: &SecretString) -> RequestBuilder {
        self.http
            .request(method, url)
            .bearer_auth(token.expose_secret())
            .header(header::ACCEPT, "application/json")
            // Ids that survive a move between folders (see `feed`).
            .header("Prefer", "IdType=\"ImmutableId\"")
            .timeout(self.timeout)
    }

    /// A POST without a body still carries `Content-Length: 0` (Graph answers 411 otherwise).
    fn empty_post(&self, url: url::Url, token: &SecretString) -> RequestBuilder {
        self.request(Method::POST, url, token)
            .header(header::CONTENT_LENGTH, "0")
            .body(Vec::new())
    }

    /// `GET /me`.
    pub async fn me(&self, token: &SecretString) -> Result<GraphUser, MailError> {
        let mut url = self.url(&["me"]);
        url.query_pairs_mut()
            .append_pair("$select", "id,displayName,mail,userPrincipalName");
        let resp = execute(self.request(Method::GET, url, token)).await?;
        read_json(resp).await
    }

    /// The message whose RFC Message-ID is `internet_message_id`, if the
    /// mailbox has it. Needs `Mail.Read` or `Mail.ReadWrite` (403 `ErrorAccessDenied` with
    /// `Mail.Send` alone).
    pub async fn find_by_internet_message_id(
        &self,
        token: &SecretString,
        internet_message_id: &MessageId,
    ) -> Result<Option<GraphMessageRef>, MailError> {
        let internet_message_id = internet_message_id.bracketed();
        let mut url = self.url(&["me", "messages"]);
        url.query_pairs_mut()
            .append_pair(
                "$filter",
                &format!(
                    "internetMessageId eq '{}'",
                    internet_message_id.replace('\'', "''")
                ),
            )
            .append_pair("$select", "id,conversationId")
            .append_pair("$top", "1");
        let resp = execute(self.request(Method::GET, url, token)).await?;
        let v: Value = read_json(resp).await?;
        Ok(v["value"].as_array().and_then(|a| a.first()).and_then(|m| {
            Some(GraphMessageRef {
                id: m["id"].as_str()?.to_owned(),
                conversation_id: m["conversationId"].as_str().map(str::to_owned),
            })
        }))
    }

    /// Sends `raw` (RFC 5322, without a Bcc header) to its To/Cc recipients and `bcc`.
    /// `reply_to_internet_message_id` names the parent of a reply (a [`MessageId`]).
    pub async fn send_mime(
        &self,
        token: &SecretString,
        raw: &[u8],
        bcc: &[String],
        reply_to_internet_message_id: Option<&MessageId>,
    ) -> Result<GraphSent, MailError> {
        // Checks the Bcc addresses before anything goes over the network.
        let with_bcc = insert_bcc(raw, bcc).map_err(|e| refused(Protocol::Graph, e))?;
        let parent = match reply_to_internet_message_id {
            // A send-only grant (Mail.Send) cannot read the mailbox (403): the reply then goes as
            // MIME, its In-Reply-To / References still thread it for the recipients.
            Some(id) => match self.find_by_internet_message_id(token, id).await {
                Ok(p) => p,
                Err(e) if e.status == Some(403) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        if parent.is_none() && base64_len(with_bcc.len()) < MIME_SEND_LIMIT {
            let url = self.url(&["me", "sendMail"]);
            let resp = execute(
                self.request(Method::POST, url, token)
                    .header(header::CONTENT_TYPE, "text/plain")
                    .body(STANDARD.encode(&with_bcc)),
            )
            .await?;
            drain(resp).await;
            return Ok(GraphSent {
                route: GraphRoute::MimeSendMail,
                draft_id: None,
                conversation_id: None,
                parent_id: None,
            });
        }
        let draft = graph_message(raw, bcc).map_err(|e| refused(Protocol::Graph, e))?;
        self.send_as_draft(token, &draft, parent).await
    }

    async fn send_as_draft(
        &self,
        token: &SecretString,
        d: &GraphMessage,
        parent: Option<GraphMessageRef>,
    ) -> Result<GraphSent, MailError> {
        let created: Value = match &parent {
            Some(p) => {
                let url = self.url(&["me", "messages", &p.id, "createReply"]);
                let rb = if d.headers.is_empty() {
                    self.empty_post(url, token)
                } else {
                    self.request(Method::POST, url, token)
                        .json(&json!({"message": {"internetMessageHeaders": d.internet_message_headers()}}))
                };
                read_json(execute(rb).await?).await?
            }
            None => {
                let mut msg = d.properties();
                if !d.headers.is_empty() {
                    msg["internetMessageHeaders"] = d.internet_message_headers();
                }
                let url = self.url(&["me", "messages"]);
                read_json(execute(self.request(Method::POST, url, token).json(&msg)).await?).await?
            }
        };
        let Some(draft_id) = created["id"].as_str().map(str::to_owned) else {
            return Err(unexpected("the created draft has no id"));
        };
        let mut conversation_id = created["conversationId"].as_str().map(str::to_owned);
        if let Err(e) = self
            .fill_draft(token, &draft_id, d, parent.is_some(), &mut conversation_id)
            .await
        {
            self.discard(token, &draft_id).await;
            return Err(e);
        }
        let url = self.url(&["me", "messages", &draft_id, "send"]);
        match execute(self.empty_post(url, token)).await {
            Ok(resp) => drain(resp).await,
            Err(e) => {
                // A 4xx means Graph did not send it: don't leave the draft in the user's Drafts.
                // After a 5xx or a timeout it may have been sent, so the draft stays.
                if e.status.is_some_and(|s| s < 500) {
                    self.discard(token, &draft_id).await;
                }
                return Err(e);
            }
        }
        Ok(GraphSent {
            route: GraphRoute::Draft,
            draft_id: Some(draft_id),
            conversation_id,
            parent_id: parent.map(|p| p.id),
        })
    }

    /// Deletes a draft we created, best effort.
    async fn discard(&self, token: &SecretString, draft_id: &str) {
        let url = self.url(&["me", "messages", draft_id]);
        if let Ok(resp) = execute(self.request(Method::DELETE, url, token)).await {
            drain(resp).await;
        }
    }

    /// Everything between creating the draft and sending it.
    async fn fill_draft(
        &self,
        token: &SecretString,
        draft_id: &str,
        d: &GraphMessage,
        from_reply: bool,
        conversation_id: &mut Option<String>,
    ) -> Result<(), MailError> {
        if from_reply {
            let url = self.url(&["me", "messages", draft_id]);
            let v: Value = read_json(
                execute(
                    self.request(Method::PATCH, url, token)
                        .json(&d.properties()),
                )
                .await?,
            )
            .await?;
            if let Some(c) = v["conversationId"].as_str() {
                *conversation_id = Some(c.to_owned());
            }
        }
        for a in &d.attachments {
            if a.bytes.len() < DIRECT_ATTACHMENT_LIMIT {
                let mut att = json!({
                    "@odata.type": "#microsoft.graph.fileAttachment",
                    "name": a.name,
                    "contentType": a.content_type,
                    "contentBytes": STANDARD.encode(&a.bytes),
                    "isInline": a.inline,
                });
                if let Some(cid) = &a.content_id {
                    att["contentId"] = json!(cid);
                }
                let url = self.url(&["me", "messages", draft_id, "attachments"]);
                drain(execute(self.request(Method::POST, url, token).json(&att)).await?).await;
            } else {
                self.upload_attachment(token, draft_id, a).await?;
            }
        }
        Ok(())
    }

    async fn upload_attachment(
        &self,
        token: &SecretString,
        draft_id: &str,
        a: &GraphAttachment,
    ) -> Result<(), MailError> {
        let mut item = json!({
            "attachmentType": "file",
            "name": a.name,
            "size": a.bytes.len(),
            "contentType": a.content_type,
            "isInline": a.inline,
        });
        if let Some(cid) = &a.content_id {
            item["contentId"] = json!(cid);
        }
        let url = self.url(&[
            "me",
            "messages",
            draft_id,
            "attachments",
            "createUploadSession",
        ]);
        let session: Value = read_json(
            execute(
                self.request(Method::POST, url, token)
                    .json(&json!({ "AttachmentItem": item })),
            )
            .await?,
        )
        .await?;
        let upload_url = session["uploadUrl"]
            .as_str()
            .and_then(|u| url::Url::parse(u).ok())
            .ok_or_else(|| unexpected("the upload session has no uploadUrl"))?;
        let total = a.bytes.len();
        let mut offset = 0usize;
        // Each PUT either advances the offset or fails; the bound only guards a confused server.
        for _ in 0..(total / UPLOAD_CHUNK + 8) {
            let end = (offset + UPLOAD_CHUNK).min(total);
            // The URL is pre-authenticated: no Authorization header (Outlook answers 401 to one).
            let resp = execute(
                self.http
                    .put(upload_url.clone())
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(
                        header::CONTENT_RANGE,
                        format!("bytes {offset}-{}/{total}", end - 1),
                    )
                    .body(a.bytes[offset..end].to_vec())
                    .timeout(self.upload_timeout),
            )
            .await?;
            if resp.status().as_u16() == 201 {
                drain(resp).await;
                return Ok(());
            }
            let v: Value = read_json(resp).await?;
            let next = v["nextExpectedRanges"]
                .as_array()
                .and_then(|r| r.first())
                .and_then(Value::as_str)
                .and_then(|r| r.split('-').next())
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or_else(|| {
                    unexpected("the upload session did not say which bytes come next")
                })?;
            if next <= offset || next >= total {
                return Err(unexpected(format!(
                    "the upload session expects byte {next} after {offset}..{end} of {total}"
                )));
            }
            offset = next;
        }
        Err(unexpected("the upload session never completed"))
    }
}

fn unexpected(detail: impl Into<String>) -> MailError {
    MailError::transient(
        Protocol::Graph,
        format!("Microsoft Graph: {}", detail.into()),
    )
}

/// Sends; a failure to connect or a timeout is transient, an HTTP refusal is classified.
async fn execute(rb: RequestBuilder) -> Result<Response, MailError> {
    let resp = rb.send().await.map_err(|e| {
        MailError::transient(
            Protocol::Graph,
            format!("Microsoft Graph unreachable: {}", e.without_url()),
        )
    })?;
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap_or_default();
    Err(classify(status, &headers, &body))
}

async fn read_json<T: serde::de::DeserializeOwned>(resp: Response) -> Result<T, MailError> {
    let bytes = resp.bytes().await.map_err(|e| {
        MailError::transient(
            Protocol::Graph,
            format!("Microsoft Graph answer lost: {}", e.without_url()),
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|e| unexpected(format!("unreadable answer: {e}")))
}

async fn drain(resp: Response) {
    let _ = resp.bytes().await;
}

/// A failure of a send: Graph's `MailboxConcurrency` throttle there means the mailbox takes
/// no more mail for now, so its sends pause until the `Retry-After` (else a short default)
/// instead of each message retrying on its own. Elsewhere (reads, sync) it stays a throttle.
pub fn as_send_failure(mut e: MailError) -> MailError {
    if let FailureKind::Quota { retry_after } = e.kind
        && e.detail.contains("MailboxConcurrency")
    {
        e.kind = FailureKind::SendQuota {
            reopens_in: retry_after.unwrap_or(crate::send_quota::CONCURRENCY_PAUSE),
        };
    }
    e
}

/// Classifies a Graph (or Outlook upload) refusal: `{"error":{"code","message"}}`.
pub fn classify(status: u16, headers: &HeaderMap, body: &[u8]) -> MailError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = v["error"]["code"].as_str().map(str::to_owned);
    let message = v["error"]["message"].as_str().map(str::to_owned);
    let retry_after = retry_after(headers);
    let kind = match (status, code.as_deref()) {
        // The mailbox's sending quota (Exchange Online's message or recipient rate): its sends
        // wait until the stated time, else a default pause.
        (_, Some("ErrorExceededMessageLimit")) => FailureKind::SendQuota {
            reopens_in: retry_after.unwrap_or(crate::send_quota::DEFAULT_QUOTA_PAUSE),
        },
        (_, Some("ApplicationThrottled" | "TooManyRequests")) | (429, _) => {
            FailureKind::Quota { retry_after }
        }
        (401, _) | (_, Some("InvalidAuthenticationToken")) => FailureKind::Auth,
        // A delta link Graph no longer knows: sync again from the start.
        (410, _)
        | (
            _,
            Some("syncStateNotFound" | "SyncStateNotFound" | "syncStateInvalid" | "resyncRequired"),
        ) => FailureKind::CursorExpired,
        (s, _) if s >= 500 || s == 408 => FailureKind::Transient { retry_after },
        (_, Some("ErrorInvalidRecipients")) => FailureKind::Rejected(ErrorKind::RecipientRejected),
        (413, _)
        | (
            _,
            Some(
                "RequestBodyTooLarge"
                | "ErrorMessageSizeExceeded"
                | "ErrorAttachmentSizeShouldNotBeMoreThanMaximumSize",
            ),
        ) => FailureKind::TooLarge,
        _ => FailureKind::Rejected(ErrorKind::CantSendMessage),
    };
    let detail = match (&code, &message) {
        (Some(c), Some(m)) => format!("Microsoft Graph: {c}: {m}"),
        (Some(c), None) => format!("Microsoft Graph: {c} (HTTP {status})"),
        _ => format!("Microsoft Graph answered HTTP {status}"),
    };
    MailError {
        kind,
        protocol: Protocol::Graph,
        code,
        status: Some(status),
        detail,
    }
}

fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, body: &str, retry: Option<&str>) -> MailError {
        let mut h = HeaderMap::new();
        if let Some(r) = retry {
            h.insert(header::RETRY_AFTER, r.parse().unwrap());
        }
        classify(status, &h, body.as_bytes())
    }

    #[test]
    fn errors_are_classified_per_graph_conventions() {
        let e = err(
            429,
            r#"{"error":{"code":"ApplicationThrottled","message":"Application is over its MailboxConcurrency limit."}}"#,
            Some("7"),
        );
        assert!(matches!(e.kind, FailureKind::Quota { .. }));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert!(e.is_quota() && e.is_transient());
        // Answered to a send, the same throttle pauses the mailbox's sends.
        assert_eq!(
            as_send_failure(e).kind,
            FailureKind::SendQuota {
                reopens_in: Duration::from_secs(7)
            }
        );
        let limit = err(
            403,
            r#"{"error":{"code":"ErrorExceededMessageLimit","message":"Cannot send mail. The message exceeds the sending limit."}}"#,
            None,
        );
        assert_eq!(
            limit.send_quota_reopens_in(),
            Some(crate::send_quota::DEFAULT_QUOTA_PAUSE)
        );
        assert_eq!(
            err(
                401,
                r#"{"error":{"code":"InvalidAuthenticationToken","message":"x"}}"#,
                None
            )
            .kind,
            FailureKind::Auth
        );
        let e = err(
            503,
            r#"{"error":{"code":"ServiceUnavailable","message":"x"}}"#,
            Some("3"),
        );
        assert!(matches!(e.kind, FailureKind::Transient { .. }));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(
            err(504, "<html>", None).kind,
            FailureKind::Transient { retry_after: None }
        );
        assert_eq!(
            err(
                400,
                r#"{"error":{"code":"ErrorInvalidRecipients","message":"x"}}"#,
                None
            )
            .kind,
            FailureKind::Rejected(ErrorKind::RecipientRejected)
        );
        assert_eq!(err(413, "", None).kind, FailureKind::TooLarge);
        assert_eq!(
            err(
                400,
                r#"{"error":{"code":"ErrorMessageSizeExceeded","message":"x"}}"#,
                None
            )
            .kind,
            FailureKind::TooLarge
        );
        let e = err(
            403,
            r#"{"error":{"code":"ErrorAccessDenied","message":"Access is denied."}}"#,
            None,
        );
        assert_eq!(e.kind, FailureKind::Rejected(ErrorKind::CantSendMessage));
        assert_eq!(e.code.as_deref(), Some("ErrorAccessDenied"));
        assert!(e.detail.contains("Access is denied."));
        let e = err(
            410,
            r#"{"error":{"code":"syncStateNotFound","message":"The sync state is not found."}}"#,
            None,
        );
        assert!(e.is_cursor_expired(), "{e}");
    }

    #[test]
    fn base64_length_is_exact() {
        assert_eq!(base64_len(0), 0);
        assert_eq!(base64_len(1), 4);
        assert_eq!(base64_len(3), 4);
        assert_eq!(base64_len(4), 8);
        assert_eq!(
            STANDARD.encode(vec![0u8; 2_999_999]).len(),
            base64_len(2_999_999)
        );
    }

    #[test]
    fn chunk_size_is_a_multiple_of_320_kib_under_4_mb() {
        assert_eq!(UPLOAD_CHUNK % (320 * 1024), 0);
        const { assert!(UPLOAD_CHUNK < 4 * 1024 * 1024) };
    }

    #[test]
    fn urls_keep_the_version_and_encode_ids() {
        let c = GraphClient::new(
            reqwest::Client::new(),
            url::Url::parse("http://127.0.0.1:9/v1.0").unwrap(),
        );
        assert_eq!(c.url(&["me"]).as_str(), "http://127.0.0.1:9/v1.0/me");
        assert_eq!(
            c.url(&["me", "messages", "AA/b=", "send"]).as_str(),
            "http://127.0.0.1:9/v1.0/me/messages/AA%2Fb=/send"
        );
        let c = GraphClient::new(
            reqwest::Client::new(),
            url::Url::parse("http://127.0.0.1:9/v1.0/").unwrap(),
        );
        assert_eq!(c.url(&["me"]).as_str(), "http://127.0.0.1:9/v1.0/me");
    }
}
