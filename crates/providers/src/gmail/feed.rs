//! The Gmail API calls a sync reads the mailbox with: `labels.list`, `messages.list` (ids
//! only), `messages.get` (`raw` or `minimal`) and `history.list`. Plain calls: the mailbox
//! seam adds the request slots, the token retry and the backoff on throttling.

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE_NO_PAD, URL_SAFE_PAD_INDIFFERENT};
use reqwest::header::AUTHORIZATION;
use secrecy::SecretString;
use serde::Deserialize;

use super::{GmailClient, bearer, error_from, network, read, unreadable};
use crate::failure::{FailureKind, MailError};

/// A label (`labels.list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GmailLabel {
    pub id: String,
    pub name: String,
    /// `system` or `user`.
    pub kind: String,
}

/// One page of `messages.list`: ids, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessagePage {
    pub ids: Vec<String>,
    pub next: Option<String>,
}

/// A message as `messages.get` answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GmailMessage {
    pub id: String,
    pub thread_id: String,
    pub label_ids: Vec<String>,
    /// The last history record that changed it.
    pub history_id: u64,
    /// When Gmail received it, unix ms.
    pub internal_date_ms: Option<i64>,
    pub size_estimate: i64,
    /// The RFC 822 bytes (`format=raw` only).
    pub raw: Option<Vec<u8>>,
}

/// One `History` record, reduced to what a sync needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryRecord {
    pub id: u64,
    /// `messagesAdded`: message ids.
    pub added: Vec<String>,
    /// `messagesDeleted`.
    pub deleted: Vec<String>,
    /// `labelsAdded` and `labelsRemoved`: message ids.
    pub relabelled: Vec<String>,
}

/// One page of `history.list`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryPage {
    pub records: Vec<HistoryRecord>,
    /// The mailbox's current history id.
    pub history_id: u64,
    pub next: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Short {
    id: String,
}

#[derive(Deserialize)]
struct Wrapped {
    message: Short,
}

fn number(s: &str, what: &str) -> Result<u64, MailError> {
    s.parse()
        .map_err(|_| unreadable(&format!("{what} is not a number")))
}

impl GmailClient {
    /// `GET …/labels`.
    pub async fn labels(&self, token: &SecretString) -> Result<Vec<GmailLabel>, MailError> {
        #[derive(Deserialize)]
        struct Label {
            id: String,
            #[serde(default)]
            name: String,
            #[serde(default, rename = "type")]
            kind: String,
        }
        #[derive(Deserialize)]
        struct Labels {
            #[serde(default)]
            labels: Vec<Label>,
        }
        let resp = self
            .authed_get(token, self.url("gmail/v1/users/me/labels"))
            .await?;
        let l: Labels = read(resp).await?;
        Ok(l.labels
            .into_iter()
            .map(|l| GmailLabel {
                id: l.id,
                name: l.name,
                kind: l.kind,
            })
            .collect())
    }

    /// `GET …/messages?q=…&includeSpamTrash=true&maxResults=…&pageToken=…`.
    pub async fn list_ids(
        &self,
        token: &SecretString,
        q: Option<&str>,
        max_results: u32,
        page: Option<&str>,
    ) -> Result<MessagePage, MailError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct List {
            #[serde(default)]
            messages: Vec<Short>,
            next_page_token: Option<String>,
        }
        let mut u = self.url("gmail/v1/users/me/messages");
        {
            let mut qp = u.query_pairs_mut();
            if let Some(q) = q {
                qp.append_pair("q", q);
            }
            qp.append_pair("includeSpamTrash", "true")
                .append_pair("maxResults", &max_results.clamp(1, 500).to_string());
            if let Some(p) = page {
                qp.append_pair("pageToken", p);
            }
        }
        let resp = self.authed_get(token, u).await?;
        let l: List = read(resp).await?;
        Ok(MessagePage {
            ids: l.messages.into_iter().map(|m| m.id).collect(),
            next: l.next_page_token.filter(|t| !t.is_empty()),
        })
    }

    /// `GET …/messages/{id}?format=raw` (`whole`) or `format=minimal`. `Ok(None)` when the
    /// message is gone (404).
    pub async fn message(
        &self,
        token: &SecretString,
        id: &str,
        whole: bool,
    ) -> Result<Option<GmailMessage>, MailError> {
        let mut u = self.url("gmail/v1/users/me/messages/");
        u.path_segments_mut()
            .map_err(|_| unreadable("API root cannot be a base"))?
            .pop_if_empty()
            .push(id);
        u.query_pairs_mut()
            .append_pair("format", if whole { "raw" } else { "minimal" });
        let resp = self.authed_get(token, u).await?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        let bytes = read_bytes(resp).await?;
        decode_message(&bytes).map(Some)
    }

    /// Several `messages.get` in one request, through the batch endpoint
    /// (`POST batch/gmail/v1`, `multipart/mixed`; at most [`MAX_BATCH`] calls): each id
    /// `raw` or `minimal` as its flag says, answered in the same order, each call its own
    /// outcome (`Ok(None)`: that message is gone). Each call still costs its quota units.
    pub async fn messages_batch(
        &self,
        token: &SecretString,
        ids: &[(String, bool)],
    ) -> Result<Vec<Result<Option<GmailMessage>, MailError>>, MailError> {
        let boundary = format!("batch_mailroom_{}", ids.len());
        let mut body = String::new();
        for (i, (id, whole)) in ids.iter().enumerate() {
            let mut u = url::Url::parse("http://batch.invalid/gmail/v1/users/me/messages/")
                .expect("a fixed URL");
            u.path_segments_mut()
                .expect("an http URL")
                .pop_if_empty()
                .push(id);
            u.query_pairs_mut()
                .append_pair("format", if *whole { "raw" } else { "minimal" });
            body.push_str(&format!(
                "--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <item{i}>\r\n\r\nGET {}?{}\r\n\r\n",
                u.path(),
                u.query().unwrap_or_default()
            ));
        }
        body.push_str(&format!("--{boundary}--\r\n"));
        let resp = self
            .http
            .post(self.url("batch/gmail/v1"))
            .header(AUTHORIZATION, bearer(token))
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/mixed; boundary={boundary}"),
            )
            .timeout(self.timeout)
            .body(body)
            .send()
            .await
            .map_err(network)?;
        if !resp.status().is_success() {
            return Err(error_from(resp).await);
        }
        let answer_boundary = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(super::batch::boundary_of)
            .ok_or_else(|| unreadable("batch answer without a multipart boundary"))?;
        let bytes = resp.bytes().await.map_err(network)?;
        let answers = super::batch::parse_answers(&bytes, &answer_boundary)
            .ok_or_else(|| unreadable("unreadable batch answer"))?;
        let mut out: Vec<Option<Result<Option<GmailMessage>, MailError>>> =
            (0..ids.len()).map(|_| None).collect();
        for (n, a) in answers.into_iter().enumerate() {
            // Answers name their call (`response-item<i>`); without it, their place says.
            let i = a
                .content_id
                .as_deref()
                .and_then(|c| c.strip_prefix("response-item"))
                .and_then(|i| i.parse::<usize>().ok())
                .unwrap_or(n);
            let Some(slot) = out.get_mut(i) else {
                return Err(unreadable("a batch answer for a call that was not made"));
            };
            *slot = Some(match a.status {
                200..=299 => decode_message(&a.body).map(Some),
                404 => Ok(None),
                status => Err(super::classify(status, &a.headers, &a.body)),
            });
        }
        out.into_iter()
            .map(|o| o.ok_or_else(|| unreadable("a batch call without an answer")))
            .collect()
    }

    /// `GET …/history?startHistoryId=…&historyTypes=…` (one page). A `startHistoryId` older
    /// than Gmail keeps (404) is [`FailureKind::CursorExpired`]: the caller syncs in full.
    pub async fn history(
        &self,
        token: &SecretString,
        start: u64,
        page: Option<&str>,
    ) -> Result<HistoryPage, MailError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct LabelChange {
            message: Short,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct History {
            id: String,
            #[serde(default)]
            messages_added: Vec<Wrapped>,
            #[serde(default)]
            messages_deleted: Vec<Wrapped>,
            #[serde(default)]
            labels_added: Vec<LabelChange>,
            #[serde(default)]
            labels_removed: Vec<LabelChange>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct List {
            #[serde(default)]
            history: Vec<History>,
            history_id: String,
            next_page_token: Option<String>,
        }
        let mut u = self.url("gmail/v1/users/me/history");
        {
            let mut qp = u.query_pairs_mut();
            qp.append_pair("startHistoryId", &start.to_string());
            for t in [
                "messageAdded",
                "messageDeleted",
                "labelAdded",
                "labelRemoved",
            ] {
                qp.append_pair("historyTypes", t);
            }
            qp.append_pair("maxResults", "500");
            if let Some(p) = page {
                qp.append_pair("pageToken", p);
            }
        }
        let resp = self.authed_get(token, u).await?;
        if resp.status().as_u16() == 404 {
            let mut e = error_from(resp).await;
            e.kind = FailureKind::CursorExpired;
            e.detail = format!(
                "Gmail no longer has the history after {start} ({}): a full sync is needed",
                e.detail
            );
            return Err(e);
        }
        let l: List = read(resp).await?;
        let mut records = Vec::with_capacity(l.history.len());
        for h in l.history {
            records.push(HistoryRecord {
                id: number(&h.id, "history id")?,
                added: h.messages_added.into_iter().map(|w| w.message.id).collect(),
                deleted: h
                    .messages_deleted
                    .into_iter()
                    .map(|w| w.message.id)
                    .collect(),
                relabelled: h
                    .labels_added
                    .into_iter()
                    .chain(h.labels_removed)
                    .map(|c| c.message.id)
                    .collect(),
            });
        }
        Ok(HistoryPage {
            records,
            history_id: number(&l.history_id, "historyId")?,
            next: l.next_page_token.filter(|t| !t.is_empty()),
        })
    }
}

/// What `users.watch` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GmailWatch {
    /// The mailbox's history id when the watch began.
    pub history_id: u64,
    /// When Gmail stops publishing unless `watch` is called again (unix ms; about 7 days).
    pub expiration_ms: i64,
}

impl GmailClient {
    /// `POST …/watch` with `{"topicName": topic}`: every change to the mailbox (all labels) is
    /// published to the Pub/Sub topic until the expiration.
    pub async fn watch(&self, token: &SecretString, topic: &str) -> Result<GmailWatch, MailError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Answer {
            history_id: String,
            expiration: String,
        }
        let resp = self
            .http
            .post(self.url("gmail/v1/users/me/watch"))
            .header(AUTHORIZATION, bearer(token))
            .json(&serde_json::json!({ "topicName": topic }))
            .timeout(self.timeout)
            .send()
            .await
            .map_err(network)?;
        let a: Answer = read(resp).await?;
        Ok(GmailWatch {
            history_id: number(&a.history_id, "watch historyId")?,
            expiration_ms: a
                .expiration
                .parse()
                .map_err(|_| unreadable("watch expiration is not a number"))?,
        })
    }
}

impl GmailClient {
    /// `POST …/messages/{id}/modify` (`trash`: `POST …/messages/{id}/trash`, no body): the
    /// message's label ids afterwards. `Ok(None)` when the message is gone.
    pub async fn relabel(
        &self,
        token: &SecretString,
        id: &str,
        change: Relabel<'_>,
    ) -> Result<Option<Vec<String>>, MailError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Answer {
            #[serde(default)]
            label_ids: Vec<String>,
        }
        let mut u = self.url("gmail/v1/users/me/messages/");
        u.path_segments_mut()
            .map_err(|_| unreadable("API root cannot be a base"))?
            .pop_if_empty()
            .push(id)
            .push(match change {
                Relabel::Modify { .. } => "modify",
                Relabel::Trash => "trash",
            });
        let mut req = self
            .http
            .post(u)
            .header(AUTHORIZATION, bearer(token))
            .timeout(self.timeout);
        req = match change {
            Relabel::Modify { add, remove } => req.json(&serde_json::json!({
                "addLabelIds": add,
                "removeLabelIds": remove,
            })),
            Relabel::Trash => req.header(reqwest::header::CONTENT_LENGTH, "0"),
        };
        let resp = req.send().await.map_err(network)?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        let a: Answer = read(resp).await?;
        Ok(Some(a.label_ids))
    }
}

/// A label change [`GmailClient::relabel`] makes.
#[derive(Debug, Clone, Copy)]
pub enum Relabel<'a> {
    /// `messages.modify`.
    Modify {
        add: &'a [&'a str],
        remove: &'a [&'a str],
    },
    /// `messages.trash`.
    Trash,
}

/// The most calls mailroom puts in one batch (Google takes 100; Gmail's guide advises 50,
/// since each call still costs its units).
pub const MAX_BATCH: usize = 50;

/// A `messages.get` answer (`raw` or `minimal`).
fn decode_message(bytes: &[u8]) -> Result<GmailMessage, MailError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Message {
        id: String,
        thread_id: String,
        #[serde(default)]
        label_ids: Vec<String>,
        history_id: String,
        internal_date: Option<String>,
        #[serde(default)]
        size_estimate: i64,
        raw: Option<String>,
    }
    let m: Message = serde_json::from_slice(bytes).map_err(|e| unreadable(&e.to_string()))?;
    let raw = match m.raw {
        Some(r) => Some(
            URL_SAFE_PAD_INDIFFERENT
                .decode(r.trim())
                .or_else(|_| URL_SAFE_NO_PAD.decode(r.trim()))
                .map_err(|_| unreadable("message raw is not base64url"))?,
        ),
        None => None,
    };
    Ok(GmailMessage {
        id: m.id,
        thread_id: m.thread_id,
        label_ids: m.label_ids,
        history_id: number(&m.history_id, "message historyId")?,
        internal_date_ms: m.internal_date.and_then(|d| d.parse().ok()),
        size_estimate: m.size_estimate,
        raw,
    })
}

/// A success's body, or the classified error.
async fn read_bytes(resp: reqwest::Response) -> Result<Vec<u8>, MailError> {
    if !resp.status().is_success() {
        return Err(error_from(resp).await);
    }
    Ok(resp.bytes().await.map_err(network)?.to_vec())
}
