//! Gmail API v1 client (reqwest): `users.getProfile`, `users.messages.send` (JSON `raw` up to
//! 5 MB, a resumable upload above, 35 MiB cap enforced locally) and finding a message by its
//! Message-ID (`messages.list q=rfc822msgid:` + `messages.get format=metadata`); the sync's
//! reads (labels, message ids, `messages.get`, `history.list`) are in [`feed`].
//!
//! Errors are classified per `reference/providers.md` A.7 into [`MailError`]s
//! (`Protocol::Gmail`), the same classes the outbox uses for every provider.

mod batch;
mod drafts;
mod feed;

use std::time::Duration;

pub use self::feed::{
    GmailLabel, GmailMessage, GmailWatch, HistoryPage, HistoryRecord, MAX_BATCH, MessagePage,
    Relabel,
};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mailroom_core::MessageId;
use mailroom_core::email::ReplyParent;
use mailroom_mime::insert_bcc;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, LOCATION};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use mailroom_core::ErrorKind;

use crate::failure::{FailureKind, MailError, Protocol};
use crate::http_api::{refused, retry_after};

/// `mediaUpload.maxSize` of `users.messages.send` in the discovery document (35 MiB).
pub const SEND_MAX_SIZE: usize = 36_700_160;

/// Above this many bytes the message goes through a resumable upload instead of JSON `raw`
/// (Google recommends upload endpoints above ~5 MB).
pub const JSON_SEND_MAX: usize = 5 * 1024 * 1024;

/// Deadline of a request without a body worth mentioning.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Upload deadline grows by one second per this many bytes (a floor of 256 KiB/s).
const UPLOAD_BYTES_PER_SEC: usize = 256 * 1024;

/// `users.getProfile`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GmailProfile {
    pub email_address: String,
    /// The mailbox's current history id (a uint64 sent as a string).
    pub history_id: u64,
    pub messages_total: Option<i64>,
    pub threads_total: Option<i64>,
}

/// What `messages.send` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GmailSent {
    pub id: String,
    pub thread_id: String,
    pub label_ids: Vec<String>,
}

/// A message found by its Message-ID, with what a reply needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GmailRef {
    pub id: String,
    pub thread_id: String,
    pub subject: Option<String>,
    /// With angle brackets.
    pub message_id: Option<String>,
    /// Oldest first, each with angle brackets.
    pub references: Vec<String>,
}

impl GmailRef {
    /// The threading facts of this message for `mailroom_mime` (`None` without a Message-ID).
    pub fn reply_parent(&self) -> Option<ReplyParent> {
        Some(ReplyParent {
            message_id: self.message_id.clone()?,
            references: self.references.clone(),
            subject: self.subject.clone(),
        })
    }
}

/// A Gmail API client for one API root (`https://gmail.googleapis.com/`, or the test fake).
#[derive(Debug, Clone)]
pub struct GmailClient {
    http: reqwest::Client,
    api_base: url::Url,
    timeout: Duration,
}

impl GmailClient {
    /// `api_base` is the root: the client appends `gmail/v1/…` and `upload/gmail/v1/…`.
    pub fn new(http: reqwest::Client, api_base: url::Url) -> Self {
        let mut api_base = api_base;
        if !api_base.path().ends_with('/') {
            let path = format!("{}/", api_base.path());
            api_base.set_path(&path);
        }
        Self {
            http,
            api_base,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Deadline of each request (uploads get more, in proportion to their size).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn url(&self, path: &str) -> url::Url {
        self.api_base
            .join(path)
            .expect("a relative path joins onto the API root")
    }

    fn upload_timeout(&self, len: usize) -> Duration {
        self.timeout + Duration::from_secs((len / UPLOAD_BYTES_PER_SEC) as u64)
    }

    /// An authorized GET of `url` under the client's timeout (the Gmail API's read calls).
    async fn authed_get(
        &self,
        token: &SecretString,
        url: impl reqwest::IntoUrl,
    ) -> Result<reqwest::Response, MailError> {
        self.http
            .get(url)
            .header(AUTHORIZATION, bearer(token))
            .timeout(self.timeout)
            .send()
            .await
            .map_err(network)
    }

    /// `GET gmail/v1/users/me/profile`.
    pub async fn profile(&self, token: &SecretString) -> Result<GmailProfile, MailError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Profile {
            email_address: String,
            history_id: String,
            messages_total: Option<i64>,
            threads_total: Option<i64>,
        }
        let resp = self
            .authed_get(token, self.url("gmail/v1/users/me/profile"))
            .await?;
        let p: Profile = read(resp).await?;
        let history_id = p
            .history_id
            .parse()
            .map_err(|_| unreadable("profile historyId is not a number"))?;
        Ok(GmailProfile {
            email_address: p.email_address,
            history_id,
            messages_total: p.messages_total,
            threads_total: p.threads_total,
        })
    }

    /// `users.messages.send`. `bcc` recipients go into a `Bcc:` header that is added to the
    /// top of `raw` ([`insert_bcc`]: Gmail takes recipients from the headers and removes Bcc
    /// before delivery; an invalid address is `RecipientRejected`, a Bcc header already in
    /// `raw` `Rejected`).
    /// `thread_id` keeps a reply in its thread (Gmail also needs In-Reply-To/References and
    /// the same subject). Up to [`JSON_SEND_MAX`] bytes go as JSON `raw`, larger messages as a
    /// resumable upload; over [`SEND_MAX_SIZE`] nothing is sent ([`FailureKind::TooLarge`]).
    pub async fn send(
        &self,
        token: &SecretString,
        raw: &[u8],
        bcc: &[String],
        thread_id: Option<&str>,
    ) -> Result<GmailSent, MailError> {
        let raw = insert_bcc(raw, bcc).map_err(|e| refused(Protocol::Gmail, e))?;
        if raw.len() > SEND_MAX_SIZE {
            return Err(MailError::new(
                Protocol::Gmail,
                FailureKind::TooLarge,
                format!(
                    "The message is {} bytes; Gmail accepts at most {SEND_MAX_SIZE} bytes.",
                    raw.len()
                ),
            )
            .with_code("uploadTooLarge"));
        }
        let thread_id = thread_id.filter(|t| !t.is_empty());
        if raw.len() <= JSON_SEND_MAX {
            self.send_json(token, &raw, thread_id).await
        } else {
            self.send_resumable(token, &raw, thread_id).await
        }
    }

    async fn send_json(
        &self,
        token: &SecretString,
        raw: &[u8],
        thread_id: Option<&str>,
    ) -> Result<GmailSent, MailError> {
        let mut body = json!({ "raw": URL_SAFE_NO_PAD.encode(raw) });
        if let Some(t) = thread_id {
            body["threadId"] = json!(t);
        }
        let resp = self
            .http
            .post(self.url("gmail/v1/users/me/messages/send"))
            .header(AUTHORIZATION, bearer(token))
            .json(&body)
            .timeout(self.upload_timeout(raw.len() * 4 / 3))
            .send()
            .await
            .map_err(network)?;
        sent(read(resp).await?)
    }

    /// Resumable upload: a session (`POST …?uploadType=resumable` with the metadata), then
    /// one `PUT` of the bytes to the session URI.
    async fn send_resumable(
        &self,
        token: &SecretString,
        raw: &[u8],
        thread_id: Option<&str>,
    ) -> Result<GmailSent, MailError> {
        let mut start = self.url("upload/gmail/v1/users/me/messages/send");
        start
            .query_pairs_mut()
            .append_pair("uploadType", "resumable");
        let meta = match thread_id {
            Some(t) => json!({ "threadId": t }),
            None => json!({}),
        };
        let resp = self
            .http
            .post(start)
            .header(AUTHORIZATION, bearer(token))
            .header("X-Upload-Content-Type", "message/rfc822")
            .header("X-Upload-Content-Length", raw.len().to_string())
            .json(&meta)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(network)?;
        if !resp.status().is_success() {
            return Err(error_from(resp).await);
        }
        let session = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| self.api_base.join(l).ok())
            .ok_or_else(|| unreadable("resumable upload answer without a Location"))?;
        let resp = self
            .http
            .put(session)
            .header(AUTHORIZATION, bearer(token))
            .header(CONTENT_TYPE, "message/rfc822")
            .body(raw.to_vec())
            .timeout(self.upload_timeout(raw.len()))
            .send()
            .await
            .map_err(network)?;
        let status = resp.status().as_u16();
        if status == 404 || status == 410 {
            // The session is gone: starting over is the remedy.
            let retry_after = retry_after(resp.headers());
            let mut e = error_from(resp).await;
            e.kind = FailureKind::Transient { retry_after };
            return Err(e);
        }
        sent(read(resp).await?)
    }

    /// Finds the message whose Message-ID is `message_id`: its Gmail id,
    /// thread and threading headers. `Ok(None)` when the mailbox has none. Needs a read scope
    /// (`gmail.readonly`, `gmail.modify`, …): with `gmail.send` alone Gmail answers 403.
    pub async fn find_by_message_id(
        &self,
        token: &SecretString,
        message_id: &MessageId,
    ) -> Result<Option<GmailRef>, MailError> {
        let id = message_id.bare();
        #[derive(Deserialize)]
        struct Listed {
            id: String,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct List {
            #[serde(default)]
            messages: Vec<Listed>,
        }
        let mut list_url = self.url("gmail/v1/users/me/messages");
        list_url
            .query_pairs_mut()
            .append_pair("q", &format!("rfc822msgid:{id}"))
            .append_pair("includeSpamTrash", "true")
            .append_pair("maxResults", "10");
        let resp = self.authed_get(token, list_url).await?;
        let list: List = read(resp).await?;
        for listed in list.messages {
            match self.metadata(token, &listed.id).await {
                Ok(r) => {
                    let same = r.message_id.as_deref().is_some_and(|m| {
                        m.trim_start_matches('<')
                            .trim_end_matches('>')
                            .eq_ignore_ascii_case(id)
                    });
                    if same {
                        return Ok(Some(r));
                    }
                }
                // Deleted between the list and the get.
                Err(e) if e.status == Some(404) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    async fn metadata(&self, token: &SecretString, id: &str) -> Result<GmailRef, MailError> {
        #[derive(Deserialize)]
        struct Header {
            name: String,
            value: String,
        }
        #[derive(Deserialize, Default)]
        struct Payload {
            #[serde(default)]
            headers: Vec<Header>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Message {
            id: String,
            thread_id: String,
            #[serde(default)]
            payload: Option<Payload>,
        }
        let mut u = self.url("gmail/v1/users/me/messages/");
        u.path_segments_mut()
            .map_err(|_| unreadable("API root cannot be a base"))?
            .pop_if_empty()
            .push(id);
        u.query_pairs_mut()
            .append_pair("format", "metadata")
            .append_pair("metadataHeaders", "Subject")
            .append_pair("metadataHeaders", "Message-ID")
            .append_pair("metadataHeaders", "References");
        let resp = self.authed_get(token, u).await?;
        let m: Message = read(resp).await?;
        let headers = m.payload.unwrap_or_default().headers;
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value.trim().to_owned())
        };
        Ok(GmailRef {
            id: m.id,
            thread_id: m.thread_id,
            subject: header("Subject"),
            message_id: header("Message-ID").and_then(|v| msg_ids(&v).into_iter().next()),
            references: header("References")
                .map(|v| msg_ids(&v))
                .unwrap_or_default(),
        })
    }
}

fn bearer(token: &SecretString) -> String {
    format!("Bearer {}", token.expose_secret())
}

/// Message ids in a header value, each with brackets (bare tokens get them added).
fn msg_ids(v: &str) -> Vec<String> {
    let mut out = vec![];
    let mut rest = v;
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start..].find('>') else {
            break;
        };
        let id = &rest[start + 1..start + len];
        if !id.trim().is_empty() {
            out.push(format!("<{}>", id.trim()));
        }
        rest = &rest[start + len + 1..];
    }
    if out.is_empty() {
        out = v.split_whitespace().map(|t| format!("<{t}>")).collect();
    }
    out
}

fn sent(v: Value) -> Result<GmailSent, MailError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Sent {
        id: String,
        thread_id: String,
        #[serde(default)]
        label_ids: Vec<String>,
    }
    let s: Sent = serde_json::from_value(v)
        .map_err(|e| unreadable(&format!("send answer without id/threadId: {e}")))?;
    Ok(GmailSent {
        id: s.id,
        thread_id: s.thread_id,
        label_ids: s.label_ids,
    })
}

fn network(e: reqwest::Error) -> MailError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "unreachable"
    } else {
        "failed"
    };
    MailError::transient(Protocol::Gmail, format!("Gmail API request {what}: {e}"))
}

fn unreadable(what: &str) -> MailError {
    MailError::transient(
        Protocol::Gmail,
        format!("Gmail API answer unreadable: {what}"),
    )
}

async fn read<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, MailError> {
    if !resp.status().is_success() {
        return Err(error_from(resp).await);
    }
    let bytes = resp.bytes().await.map_err(network)?;
    serde_json::from_slice(&bytes).map_err(|e| unreadable(&e.to_string()))
}

async fn error_from(resp: reqwest::Response) -> MailError {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap_or_default();
    classify(status, &headers, &body)
}

/// Classifies a Gmail error answer (`reference/providers.md` A.7).
pub fn classify(status: u16, headers: &HeaderMap, body: &[u8]) -> MailError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let err = &v["error"];
    let reasons: Vec<String> = err["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["reason"].as_str().map(str::to_owned))
        .collect();
    let info_reasons: Vec<String> = err["details"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["reason"].as_str().map(str::to_owned))
        .collect();
    let message = err["message"]
        .as_str()
        .or_else(|| err["errors"][0]["message"].as_str())
        .or_else(|| v["error_description"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let reason = reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("");
            format!("Gmail answered HTTP {status} {reason}")
                .trim_end()
                .to_owned()
        });
    let has = |r: &str| reasons.iter().any(|x| x == r);
    let lower = message.to_ascii_lowercase();
    let recipient = lower.contains("recipient")
        || lower.contains("address")
        || [
            "invalid to header",
            "invalid cc header",
            "invalid bcc header",
        ]
        .iter()
        .any(|h| lower.contains(h));
    let retry_after = retry_after(headers);
    // The mailbox's sending quota ("User-rate limit exceeded.  Retry after <time> (Mail
    // sending)") or the project's daily quota (`dailyLimitExceeded`): closed until the stated
    // time, else for the default pause.
    let send_quota = matches!(status, 403 | 429)
        && (lower.contains("(mail sending)") || has("dailyLimitExceeded"));
    let kind = match status {
        401 => FailureKind::Auth,
        _ if send_quota => FailureKind::SendQuota {
            reopens_in: retry_after
                .or_else(|| crate::send_quota::retry_after_in_words(&message))
                .unwrap_or(crate::send_quota::DEFAULT_QUOTA_PAUSE),
        },
        429 => FailureKind::Quota { retry_after },
        403 if has("rateLimitExceeded")
            || has("userRateLimitExceeded")
            || has("quotaExceeded")
            || info_reasons.iter().any(|r| r == "RATE_LIMIT_EXCEEDED") =>
        {
            FailureKind::Quota { retry_after }
        }
        413 => FailureKind::TooLarge,
        _ if has("uploadTooLarge") || lower.contains("payload size exceeds") => {
            FailureKind::TooLarge
        }
        400 if (has("invalidArgument") || has("badRequest") || reasons.is_empty()) && recipient => {
            FailureKind::Rejected(ErrorKind::RecipientRejected)
        }
        408 => FailureKind::Transient { retry_after },
        s if s >= 500 => FailureKind::Transient { retry_after },
        _ => FailureKind::Rejected(ErrorKind::CantSendMessage),
    };
    MailError {
        kind,
        protocol: Protocol::Gmail,
        code: reasons
            .into_iter()
            .next()
            .or_else(|| err["status"].as_str().map(str::to_owned)),
        status: Some(status),
        detail: message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hm(retry: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(r) = retry {
            h.insert(reqwest::header::RETRY_AFTER, r.parse().unwrap());
        }
        h
    }

    fn body(code: u16, reason: &str, message: &str) -> Vec<u8> {
        json!({"error": {"code": code, "message": message,
                         "errors": [{"message": message, "domain": "global", "reason": reason}]}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn errors_are_classified_per_a7() {
        let c = |s, r, m, ra| classify(s, &hm(ra), &body(s, r, m));
        assert_eq!(
            c(401, "authError", "Invalid Credentials", None).kind,
            FailureKind::Auth
        );
        let t = c(429, "rateLimitExceeded", "Too many", Some("7"));
        assert!(matches!(t.kind, FailureKind::Quota { .. }));
        assert_eq!(t.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(t.code.as_deref(), Some("rateLimitExceeded"));
        assert_eq!(
            c(403, "userRateLimitExceeded", "User-rate limit", None).kind,
            FailureKind::Quota { retry_after: None }
        );
        // The sending quota: closed until the stated time, or the default pause.
        let at = mailroom_core::time_fmt::format_ms(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64
                + 3 * 3_600_000,
        );
        let words = format!("User-rate limit exceeded.  Retry after {at} (Mail sending)");
        let q = classify(429, &hm(None), &body(429, "rateLimitExceeded", &words));
        let reopens = q.send_quota_reopens_in().expect("a send quota");
        assert!(
            reopens > Duration::from_secs(3 * 3600 - 60)
                && reopens <= Duration::from_secs(3 * 3600)
        );
        let d = c(403, "dailyLimitExceeded", "Daily Limit Exceeded", None);
        assert_eq!(
            d.send_quota_reopens_in(),
            Some(crate::send_quota::DEFAULT_QUOTA_PAUSE)
        );
        assert_eq!(
            c(
                403,
                "dailyLimitExceeded",
                "Daily Limit Exceeded",
                Some("60")
            )
            .send_quota_reopens_in(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            c(403, "insufficientPermissions", "Insufficient", None).kind,
            FailureKind::Rejected(ErrorKind::CantSendMessage)
        );
        assert_eq!(
            c(500, "backendError", "Backend Error", None).kind,
            FailureKind::Transient { retry_after: None }
        );
        assert_eq!(
            c(503, "backendError", "x", None).kind,
            FailureKind::Transient { retry_after: None }
        );
        assert_eq!(
            c(400, "invalidArgument", "Invalid To header", None).kind,
            FailureKind::Rejected(ErrorKind::RecipientRejected)
        );
        assert_eq!(
            c(400, "invalidArgument", "Recipient address required", None).kind,
            FailureKind::Rejected(ErrorKind::RecipientRejected)
        );
        assert_eq!(
            c(400, "invalidArgument", "Invalid From header", None).kind,
            FailureKind::Rejected(ErrorKind::CantSendMessage)
        );
        assert_eq!(
            c(413, "uploadTooLarge", "Media is too large", None).kind,
            FailureKind::TooLarge
        );
        assert_eq!(
            c(
                400,
                "badRequest",
                "Request payload size exceeds the limit: 10485760 bytes.",
                None
            )
            .kind,
            FailureKind::TooLarge
        );
        assert_eq!(
            c(404, "notFound", "Requested entity was not found.", None).kind,
            FailureKind::Rejected(ErrorKind::CantSendMessage)
        );
        let html = classify(502, &hm(None), b"<html>Bad Gateway</html>");
        assert_eq!(html.kind, FailureKind::Transient { retry_after: None });
        assert_eq!(html.detail, "Gmail answered HTTP 502 Bad Gateway");
    }

    #[test]
    fn message_ids_are_read_with_brackets() {
        assert_eq!(msg_ids("<a@x> <b@y>"), ["<a@x>", "<b@y>"]);
        assert_eq!(msg_ids("  <a@x>\r\n <b@y>"), ["<a@x>", "<b@y>"]);
        assert_eq!(msg_ids("bare@id"), ["<bare@id>"]);
    }

    #[test]
    fn the_root_gets_a_trailing_slash() {
        let c = GmailClient::new(
            reqwest::Client::new(),
            url::Url::parse("http://127.0.0.1:9/prefix").unwrap(),
        );
        assert_eq!(
            c.url("gmail/v1/users/me/profile").as_str(),
            "http://127.0.0.1:9/prefix/gmail/v1/users/me/profile"
        );
    }
}
