//! The Graph calls a sync reads and changes an Outlook mailbox with (`reference/providers.md`
//! B, Graph's "delta query for messages"): the folders (`mailFolders`, child folders
//! included), one page of a folder's `messages/delta` (from the start, or from a stored
//! `@odata.nextLink` / `@odata.deltaLink`), the ids of the messages received since a time
//! (`/me/messages`, newest first), a message's properties and its MIME (`$value`), and the
//! changes (`isRead`, `move`). Plain calls: the mailbox seam adds the request slots, the token
//! retry and the wait on throttling.
//!
//! Every request asks for **immutable ids** (`Prefer: IdType="ImmutableId"`, set on every
//! request by [`GraphClient`]): a message keeps its id when it moves between folders, so a
//! move read from two folders' deltas is one message, and the index's provider id stays valid.

use reqwest::Method;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{GraphClient, execute, read_json, unexpected};
use crate::failure::{FailureKind, MailError, Protocol};

/// Messages per delta or listing page we ask for (`Prefer: odata.maxpagesize`; Graph's default
/// page is 10).
pub const PAGE_SIZE: u32 = 200;

/// A mail folder (`mailFolders`, with its child folders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphFolder {
    pub id: String,
    pub display_name: String,
    pub parent_id: Option<String>,
    pub child_folder_count: u32,
}

/// A message's properties, as a sync keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphMessageState {
    pub id: String,
    #[serde(default)]
    pub conversation_id: Option<String>,
    #[serde(default)]
    pub parent_folder_id: Option<String>,
    #[serde(default)]
    pub is_read: bool,
    /// ISO 8601.
    #[serde(default)]
    pub received_date_time: Option<String>,
    /// Changes with every change to the message: what keys the events of a change.
    #[serde(default)]
    pub change_key: Option<String>,
}

/// One entry of a delta page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaEntry {
    /// The message is in the folder now, new or changed.
    Present {
        id: String,
        change_key: Option<String>,
    },
    /// The message left the folder: moved out, or deleted (`reason: "deleted"`: for good).
    Removed { id: String, for_good: bool },
}

/// One page of a folder's delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaPage {
    pub entries: Vec<DeltaEntry>,
    /// `@odata.nextLink`: more pages of this round.
    pub next: Option<String>,
    /// `@odata.deltaLink`: the round is complete; what to ask next time.
    pub delta: Option<String>,
}

/// One page of message ids, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPage {
    pub ids: Vec<String>,
    pub next: Option<String>,
}

const STATE_SELECT: &str =
    "id,conversationId,parentFolderId,isRead,receivedDateTime,changeKey,lastModifiedDateTime";

impl GraphClient {
    /// A link Graph gave us (`nextLink`, `deltaLink`), checked to point at the Graph root we
    /// were configured with before a token is sent to it.
    fn own_link(&self, link: &str) -> Result<url::Url, MailError> {
        let u = url::Url::parse(link)
            .map_err(|_| unexpected(format!("unreadable paging link {link:?}")))?;
        let base = &self.api_base;
        if u.origin() != base.origin() || !u.path().starts_with(base.path().trim_end_matches('/')) {
            return Err(MailError::new(
                Protocol::Graph,
                FailureKind::CursorExpired,
                "a stored Graph link points outside the configured Graph root",
            ));
        }
        Ok(u)
    }

    /// Every mail folder: the top-level ones and, below those that have any, their children.
    pub async fn folders(&self, token: &SecretString) -> Result<Vec<GraphFolder>, MailError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct F {
            id: String,
            #[serde(default)]
            display_name: String,
            #[serde(default)]
            parent_folder_id: Option<String>,
            #[serde(default)]
            child_folder_count: u32,
        }
        let mut out: Vec<GraphFolder> = vec![];
        let mut pending: Vec<url::Url> = vec![{
            let mut u = self.url(&["me", "mailFolders"]);
            u.query_pairs_mut().append_pair("$top", "250");
            u
        }];
        // Bounded: a tree deeper or wider than this is not a mailbox a person keeps.
        let mut pages = 0;
        while let Some(u) = pending.pop() {
            pages += 1;
            if pages > 500 {
                return Err(unexpected("too many mail folder pages"));
            }
            let v: Value = read_json(execute(self.request(Method::GET, u, token)).await?).await?;
            let fs: Vec<F> = serde_json::from_value(v["value"].clone())
                .map_err(|e| unexpected(format!("unreadable mailFolders: {e}")))?;
            if let Some(n) = v["@odata.nextLink"].as_str() {
                pending.push(self.own_link(n)?);
            }
            for f in fs {
                if f.child_folder_count > 0 {
                    let mut u = self.url(&["me", "mailFolders", &f.id, "childFolders"]);
                    u.query_pairs_mut().append_pair("$top", "250");
                    pending.push(u);
                }
                out.push(GraphFolder {
                    id: f.id,
                    display_name: f.display_name,
                    parent_id: f.parent_folder_id,
                    child_folder_count: f.child_folder_count,
                });
            }
        }
        Ok(out)
    }

    /// The id of a well-known folder (`inbox`, `sentitems`, …); `None` when the mailbox has
    /// none (404).
    pub async fn well_known_folder(
        &self,
        token: &SecretString,
        name: &str,
    ) -> Result<Option<String>, MailError> {
        let mut u = self.url(&["me", "mailFolders", name]);
        u.query_pairs_mut().append_pair("$select", "id");
        match execute(self.request(Method::GET, u, token)).await {
            Ok(resp) => {
                let v: Value = read_json(resp).await?;
                Ok(v["id"].as_str().map(str::to_owned))
            }
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One page of folder `folder`'s delta: from the start (`link: None`), or from a stored
    /// `nextLink` / `deltaLink`. A link Graph no longer knows (410 Gone, `syncStateNotFound`)
    /// is [`MailError::is_cursor_expired`].
    pub async fn delta_page(
        &self,
        token: &SecretString,
        folder: &str,
        link: Option<&str>,
    ) -> Result<DeltaPage, MailError> {
        let u = match link {
            Some(l) => self.own_link(l)?,
            None => {
                let mut u = self.url(&["me", "mailFolders", folder, "messages", "delta"]);
                u.query_pairs_mut().append_pair("$select", "id,changeKey");
                u
            }
        };
        let resp = execute(
            self.request(Method::GET, u, token)
                .header("Prefer", format!("odata.maxpagesize={PAGE_SIZE}")),
        )
        .await?;
        let v: Value = read_json(resp).await?;
        let items = v["value"]
            .as_array()
            .ok_or_else(|| unexpected("a delta page without value"))?;
        let mut entries = Vec::with_capacity(items.len());
        for it in items {
            let Some(id) = it["id"].as_str().map(str::to_owned) else {
                continue;
            };
            if let Some(r) = it.get("@removed") {
                entries.push(DeltaEntry::Removed {
                    id,
                    for_good: r["reason"] == "deleted",
                });
            } else {
                entries.push(DeltaEntry::Present {
                    id,
                    change_key: it["changeKey"].as_str().map(str::to_owned),
                });
            }
        }
        let link = |k: &str| v[k].as_str().map(str::to_owned);
        let page = DeltaPage {
            entries,
            next: link("@odata.nextLink"),
            delta: link("@odata.deltaLink"),
        };
        if page.next.is_none() && page.delta.is_none() {
            return Err(unexpected(
                "a delta page with neither nextLink nor deltaLink",
            ));
        }
        Ok(page)
    }

    /// One page of the ids of the messages of every folder received at or after `since`
    /// (ISO 8601), newest first; `page` is the previous page's `nextLink`.
    pub async fn message_ids(
        &self,
        token: &SecretString,
        since: Option<&str>,
        top: u32,
        page: Option<&str>,
    ) -> Result<IdPage, MailError> {
        let u = match page {
            Some(p) => self.own_link(p)?,
            None => {
                let mut u = self.url(&["me", "messages"]);
                {
                    let mut q = u.query_pairs_mut();
                    q.append_pair("$select", "id")
                        .append_pair("$orderby", "receivedDateTime desc")
                        .append_pair("$top", &top.clamp(1, 1000).to_string());
                    if let Some(s) = since {
                        q.append_pair("$filter", &format!("receivedDateTime ge {s}"));
                    }
                }
                u
            }
        };
        let v: Value = read_json(execute(self.request(Method::GET, u, token)).await?).await?;
        let ids = v["value"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| m["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(IdPage {
            ids,
            next: v["@odata.nextLink"].as_str().map(str::to_owned),
        })
    }

    /// A message's properties; `None` when it is gone (404).
    pub async fn message_state(
        &self,
        token: &SecretString,
        id: &str,
    ) -> Result<Option<GraphMessageState>, MailError> {
        let mut u = self.url(&["me", "messages", id]);
        u.query_pairs_mut().append_pair("$select", STATE_SELECT);
        match execute(self.request(Method::GET, u, token)).await {
            Ok(resp) => Ok(Some(read_json(resp).await?)),
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A message's MIME (`$value`); `None` when it is gone (404).
    pub async fn message_mime(
        &self,
        token: &SecretString,
        id: &str,
    ) -> Result<Option<Vec<u8>>, MailError> {
        let u = self.url(&["me", "messages", id, "$value"]);
        match execute(self.request(Method::GET, u, token)).await {
            Ok(resp) => Ok(Some(
                resp.bytes()
                    .await
                    .map_err(|e| {
                        MailError::transient(
                            Protocol::Graph,
                            format!("Microsoft Graph answer lost: {}", e.without_url()),
                        )
                    })?
                    .to_vec(),
            )),
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `PATCH /me/messages/{id}` with `isRead`; `None` when the message is gone.
    pub async fn set_read(
        &self,
        token: &SecretString,
        id: &str,
        read: bool,
    ) -> Result<Option<GraphMessageState>, MailError> {
        let u = self.url(&["me", "messages", id]);
        let rb = self
            .request(Method::PATCH, u, token)
            .json(&json!({ "isRead": read }));
        match execute(rb).await {
            Ok(resp) => Ok(Some(read_json(resp).await?)),
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /me/messages/{id}/move` to folder `to` (an id or a well-known name); the message
    /// as it is after the move, `None` when it is gone.
    pub async fn move_message(
        &self,
        token: &SecretString,
        id: &str,
        to: &str,
    ) -> Result<Option<GraphMessageState>, MailError> {
        let u = self.url(&["me", "messages", id, "move"]);
        let rb = self
            .request(Method::POST, u, token)
            .json(&json!({ "destinationId": to }));
        match execute(rb).await {
            Ok(resp) => Ok(Some(read_json(resp).await?)),
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /me/messages` with the MIME (base64, `text/plain`): a draft in Drafts, as
    /// written. Answers its id.
    pub async fn create_mime_draft(
        &self,
        token: &SecretString,
        raw: &[u8],
    ) -> Result<String, MailError> {
        let u = self.url(&["me", "messages"]);
        let rb = self
            .request(Method::POST, u, token)
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .body(base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                raw,
            ));
        let created: GraphMessageState = read_json(execute(rb).await?).await?;
        Ok(created.id)
    }

    /// `POST /me/messages/{id}/permanentDelete`: gone for good, not to Deleted Items (a sent
    /// draft). One already gone (404) is no error.
    pub async fn delete_for_good(&self, token: &SecretString, id: &str) -> Result<(), MailError> {
        let u = self.url(&["me", "messages", id, "permanentDelete"]);
        match execute(self.empty_post(u, token)).await {
            Ok(resp) => {
                let _ = resp.bytes().await;
                Ok(())
            }
            Err(e) if e.status == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
