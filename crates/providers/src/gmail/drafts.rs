//! Gmail drafts: `drafts.create` files a message under the `DRAFT` label, `drafts.list` and
//! `drafts.delete` take a draft away for good once it was sent (a sent draft leaves no trace
//! in Drafts, as in Gmail's own client; `messages.delete` would need the full `mail.google.com`
//! scope, which mailroom does not ask for, `gmail.modify` covers the drafts calls).
//!
//! Gmail names a draft by a draft id of its own; the index keeps the draft's *message* id (what
//! `messages.get` and the history name), so deleting first finds the draft of that message.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::header::AUTHORIZATION;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;

use super::{GmailClient, bearer, network, read, unreadable};
use crate::failure::MailError;

#[derive(Deserialize)]
struct MessageRef {
    id: String,
}

#[derive(Deserialize)]
struct Draft {
    id: String,
    message: Option<MessageRef>,
}

impl GmailClient {
    /// `POST …/drafts` with `{message: {raw}}`: the id of the draft's message.
    pub async fn create_draft(
        &self,
        token: &SecretString,
        raw: &[u8],
    ) -> Result<String, MailError> {
        let resp = self
            .http
            .post(self.url("gmail/v1/users/me/drafts"))
            .header(AUTHORIZATION, bearer(token))
            .json(&json!({ "message": { "raw": URL_SAFE_NO_PAD.encode(raw) } }))
            .timeout(self.upload_timeout(raw.len() * 4 / 3))
            .send()
            .await
            .map_err(network)?;
        let d: Draft = read(resp).await?;
        d.message
            .map(|m| m.id)
            .ok_or_else(|| unreadable("the created draft names no message"))
    }

    /// `GET …/drafts`, page after page, until the draft whose message is `message_id`: its
    /// draft id, `None` when there is no such draft (any more).
    pub async fn draft_of(
        &self,
        token: &SecretString,
        message_id: &str,
    ) -> Result<Option<String>, MailError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct List {
            #[serde(default)]
            drafts: Vec<Draft>,
            next_page_token: Option<String>,
        }
        let mut page: Option<String> = None;
        loop {
            let mut u = self.url("gmail/v1/users/me/drafts");
            u.query_pairs_mut().append_pair("maxResults", "500");
            if let Some(p) = &page {
                u.query_pairs_mut().append_pair("pageToken", p);
            }
            let l: List = read(self.authed_get(token, u).await?).await?;
            if let Some(d) = l
                .drafts
                .into_iter()
                .find(|d| d.message.as_ref().is_some_and(|m| m.id == message_id))
            {
                return Ok(Some(d.id));
            }
            match l.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) => page = Some(next),
                None => return Ok(None),
            }
        }
    }

    /// `DELETE …/drafts/{id}`: `false` when the draft was already gone (404).
    pub async fn delete_draft(
        &self,
        token: &SecretString,
        draft_id: &str,
    ) -> Result<bool, MailError> {
        let mut u = self.url("gmail/v1/users/me/drafts/");
        u.path_segments_mut()
            .map_err(|_| unreadable("API root cannot be a base"))?
            .pop_if_empty()
            .push(draft_id);
        let resp = self
            .http
            .delete(u)
            .header(AUTHORIZATION, bearer(token))
            .timeout(self.timeout)
            .send()
            .await
            .map_err(network)?;
        match resp.status().as_u16() {
            404 => Ok(false),
            s if (200..300).contains(&s) => Ok(true),
            _ => Err(super::error_from(resp).await),
        }
    }
}
