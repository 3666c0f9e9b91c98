//! Graph's delta query for messages (`GET /me/mailFolders/{id}/messages/delta`), per the
//! "message: delta" and "Use delta query to track changes" docs:
//!
//! - A round starts without a token (every message of the folder) or from a `deltaLink`
//!   (`$deltatoken`: what changed in the folder since that round ended). Its entries come in
//!   pages of `Prefer: odata.maxpagesize` (10 by default), chained by `@odata.nextLink`
//!   (`$skiptoken`); the last page carries the `@odata.deltaLink` for the next round.
//! - A message that is in the folder and new or changed since (its `changeKey` differs) is
//!   an entry with its properties (`$select` honoured); one that left the folder is
//!   `{"@odata.type": "#microsoft.graph.message", "id", "@removed": {"reason"}}`, reason
//!   `deleted` when it is gone from the mailbox, `changed` when it moved to another folder.
//!   Without `Prefer: IdType="ImmutableId"` that id is the one the message had in this folder
//!   (a move changes the default id); with it, the immutable id.
//! - A token the fake forgot ([`DeltaStore::expire`], as Exchange drops old sync states) is
//!   `410 Gone` with `syncStateNotFound`.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::mailbox::{GraphError, Mailbox, gerr};
use super::random_token;

/// Graph's default page of a messages delta.
const DEFAULT_PAGE: usize = 10;

/// What a round saw of one message: its ids then, and its change key.
#[derive(Debug, Clone)]
struct Seen {
    id: String,
    change_key: String,
}

/// The folder's state at the end of a round, by immutable id.
#[derive(Debug, Clone)]
struct State {
    folder: usize,
    seen: HashMap<String, Seen>,
}

/// The rest of a round, behind a `nextLink`.
#[derive(Debug, Clone)]
struct Pending {
    entries: Vec<Value>,
    end: State,
}

/// The delta tokens and skip tokens the fake issued.
#[derive(Debug, Default)]
pub(super) struct DeltaStore {
    rounds: HashMap<String, State>,
    pages: HashMap<String, Pending>,
}

impl DeltaStore {
    /// Forgets every token issued so far: their links answer 410 `syncStateNotFound`.
    pub(super) fn expire(&mut self) {
        self.rounds.clear();
        self.pages.clear();
    }
}

/// What a delta request asks for.
pub(super) struct DeltaRequest<'a> {
    pub folder: usize,
    pub delta_token: Option<&'a str>,
    pub skip_token: Option<&'a str>,
    pub select: Option<Vec<String>>,
    pub page_size: Option<usize>,
    pub immutable: bool,
}

fn sync_state_not_found() -> GraphError {
    gerr(
        410,
        "syncStateNotFound",
        "The sync state is not found. It may have expired or been deleted: restart the synchronization.",
    )
}

/// One page of a delta round (see the module docs): the body Graph answers.
pub(super) fn page(
    mb: &mut Mailbox,
    base: &str,
    req: DeltaRequest<'_>,
) -> Result<Value, GraphError> {
    let folder_id = mb.folders[req.folder].id.clone();
    let link =
        |k: &str, v: &str| format!("{base}/v1.0/me/mailFolders/{folder_id}/messages/delta?{k}={v}");
    let mut pending = match (req.skip_token, req.delta_token) {
        (Some(t), _) => mb
            .delta
            .pages
            .remove(t)
            .filter(|p| p.end.folder == req.folder)
            .ok_or_else(sync_state_not_found)?,
        (None, from) => {
            let from = match from {
                Some(t) => Some(
                    mb.delta
                        .rounds
                        .get(t)
                        .filter(|s| s.folder == req.folder)
                        .cloned()
                        .ok_or_else(sync_state_not_found)?,
                ),
                None => None,
            };
            round(mb, base, req.folder, from.as_ref(), &req)
        }
    };
    let size = req.page_size.unwrap_or(DEFAULT_PAGE).clamp(1, 1000);
    let rest = if pending.entries.len() > size {
        pending.entries.split_off(size)
    } else {
        vec![]
    };
    let mut body = json!({
        "@odata.context": format!("{base}/v1.0/$metadata#Collection(message)"),
        "value": std::mem::take(&mut pending.entries),
    });
    if rest.is_empty() {
        let token = random_token(24);
        mb.delta.rounds.insert(token.clone(), pending.end);
        body["@odata.deltaLink"] = json!(link("$deltatoken", &token));
    } else {
        let token = random_token(24);
        pending.entries = rest;
        mb.delta.pages.insert(token.clone(), pending);
        body["@odata.nextLink"] = json!(link("$skiptoken", &token));
    }
    Ok(body)
}

/// Every entry of a round from `from` (or from nothing), and the state it ends in.
fn round(
    mb: &Mailbox,
    base: &str,
    folder: usize,
    from: Option<&State>,
    req: &DeltaRequest<'_>,
) -> Pending {
    let mut entries = vec![];
    let mut end = State {
        folder,
        seen: HashMap::new(),
    };
    for m in mb.messages.iter().filter(|m| m.folder == folder) {
        let changed = from
            .and_then(|s| s.seen.get(&m.immutable_id))
            .is_none_or(|s| s.change_key != m.change_key);
        if changed {
            entries.push(mb.message_json(m, base, req.select.as_deref(), false));
        }
        end.seen.insert(
            m.immutable_id.clone(),
            Seen {
                id: m.id.clone(),
                change_key: m.change_key.clone(),
            },
        );
    }
    if let Some(from) = from {
        for (immutable, seen) in &from.seen {
            if end.seen.contains_key(immutable) {
                continue;
            }
            let still_there = mb.messages.iter().any(|m| m.immutable_id == *immutable);
            entries.push(json!({
                "@odata.type": "#microsoft.graph.message",
                "id": if req.immutable { immutable } else { &seen.id },
                "@removed": {"reason": if still_there { "changed" } else { "deleted" }},
            }));
        }
    }
    Pending { entries, end }
}
