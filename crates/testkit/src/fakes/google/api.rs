//! The Gmail API v1 handlers: bearer-token and scope checks (scopes from the discovery
//! document), `getProfile`, `messages.send` in its JSON and upload forms, `messages.list` /
//! `get` / `attachments.get`, `threads.list` / `get`, `labels.list`, `history.list` (404
//! `notFound` below the retained history), `watch` / `stop` (changes then pushed as a Pub/Sub
//! push subscription would, see `publish`).

// Validation helpers bail out with the finished answer (`Err(Response)`), the usual axum
// shape; a test fake is not a hot path worth boxing for.
#![allow(clippy::result_large_err)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{
    STANDARD_PAD_INDIFFERENT, URL_SAFE_NO_PAD, URL_SAFE_PAD_INDIFFERENT,
};
use serde_json::{Value, json};

use super::errors;
use super::mailbox::{self, Stored, list_entry, message_view, random_token};
use super::{SEND_MAX_SIZE, SentMessage, Shared, State as FakeState, UploadSession, UploadType};

const METADATA_SCOPE: &str = "https://www.googleapis.com/auth/gmail.metadata";

/// What the access token allows for the method at hand.
struct Access {
    /// Only `gmail.metadata` grants it: no `q`, no `format=full|raw`.
    metadata_only: bool,
}

fn query_pairs(q: &Option<String>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.as_deref().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn first<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn all<'a>(pairs: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn ok_json(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

/// Counts the request and applies a queued fault.
async fn front_door(shared: &Shared) -> Option<Response> {
    let fault = {
        let mut s = shared.lock();
        s.gmail_requests += 1;
        super::next_fault(&mut s.gmail_faults)
    };
    super::apply_fault(fault, true).await
}

/// Bearer token, scope and `userId` checks for `method` (a discovery method id).
fn authorize(
    s: &FakeState,
    headers: &HeaderMap,
    method: &str,
    user: &str,
) -> Result<Access, Response> {
    let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(errors::login_required());
    };
    let Some(token) = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))
    else {
        return Err(errors::auth_error());
    };
    let Some(t) = s.access.get(token.trim()) else {
        return Err(errors::auth_error());
    };
    if t.expires <= Instant::now() {
        return Err(errors::auth_error());
    }
    let accepted = super::contract::method_scopes(method);
    let granting: Vec<&String> = t
        .scopes
        .iter()
        .filter(|sc| accepted.iter().any(|a| a == *sc))
        .collect();
    if granting.is_empty() {
        return Err(errors::insufficient_permissions(method));
    }
    if user != "me" && !user.eq_ignore_ascii_case(&s.config.email) {
        return Err(errors::forbidden(&format!("Delegation denied for {user}")));
    }
    Ok(Access {
        metadata_only: granting.iter().all(|g| *g == METADATA_SCOPE),
    })
}

macro_rules! guard {
    ($shared:expr, $headers:expr, $method:expr, $user:expr) => {{
        if let Some(r) = front_door(&$shared).await {
            return r;
        }
        let s = $shared.lock();
        match authorize(&s, &$headers, $method, &$user) {
            Ok(a) => (s, a),
            Err(r) => return r,
        }
    }};
}

/// Reads the whole body, up to `cap`. Google's front end reads what it is sent before
/// answering, so clients see the answer (413, 400), not a reset connection.
async fn read_body(body: Body, cap: usize) -> Result<Vec<u8>, Response> {
    axum::body::to_bytes(body, cap)
        .await
        .map(|b| b.to_vec())
        .map_err(|_| errors::upload_too_large(SEND_MAX_SIZE))
}

/// Whatever any client could send: 4 × the send limit.
const READ_CAP: usize = 4 * SEND_MAX_SIZE;

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 24 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

// ----- profile, labels -----

pub(super) async fn profile(
    State(shared): State<Arc<Shared>>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (s, _) = guard!(shared, headers, "gmail.users.getProfile", user);
    ok_json(json!({
        "emailAddress": s.config.email,
        "messagesTotal": s.mailbox.messages().len(),
        "threadsTotal": s.mailbox.thread_count(),
        "historyId": s.mailbox.history_id().to_string(),
    }))
}

pub(super) async fn list_labels(
    State(shared): State<Arc<Shared>>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (s, _) = guard!(shared, headers, "gmail.users.labels.list", user);
    let mut labels: Vec<Value> = mailbox::SYSTEM_LABELS
        .iter()
        .map(|(id, vis)| {
            let mut l = json!({"id": id, "name": id, "type": "system"});
            if let Some((message, label)) = vis {
                l["messageListVisibility"] = json!(message);
                l["labelListVisibility"] = json!(label);
            }
            l
        })
        .collect();
    labels.extend(s.mailbox.user_labels().iter().map(|(id, name)| {
        json!({"id": id, "name": name, "type": "user",
               "messageListVisibility": "show", "labelListVisibility": "labelShow"})
    }));
    ok_json(json!({ "labels": labels }))
}

// ----- messages.modify, messages.trash -----

fn labels_field(v: &Value, key: &str) -> Result<Vec<String>, Response> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str().map(str::to_owned).ok_or_else(|| {
                    errors::invalid_argument(&format!("Invalid value at '{key}' (TYPE_STRING)"))
                })
            })
            .collect(),
        Some(other) => Err(errors::invalid_argument(&format!(
            "Invalid value at '{key}', {other}"
        ))),
    }
}

/// The answer of `modify` and `trash`: the message's id, thread and labels.
fn labels_answer(m: &Stored) -> Value {
    json!({"id": m.id, "threadId": m.thread_id, "labelIds": m.labels})
}

/// `POST …/messages/{id}/modify` with a `ModifyMessageRequest`; each effective change is a
/// history record (and a push).
pub(super) async fn modify_message(
    State(shared): State<Arc<Shared>>,
    Path((user, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_body(body, 64 * 1024).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (mut s, _) = guard!(shared, headers, "gmail.users.messages.modify", user);
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return errors::invalid_argument(&format!("Invalid JSON payload received. {e}")),
    };
    if let Err(r) = known_fields(&v, "ModifyMessageRequest") {
        return r;
    }
    let (add, remove) = match (
        labels_field(&v, "addLabelIds"),
        labels_field(&v, "removeLabelIds"),
    ) {
        (Ok(a), Ok(r)) => (a, r),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    if !valid_id(&id) {
        return errors::invalid_argument("Invalid id value");
    }
    if let Some(bad) = add
        .iter()
        .chain(&remove)
        .find(|l| !s.mailbox.label_exists(l))
    {
        return errors::invalid_argument(&format!("Invalid label: {bad}"));
    }
    let add: Vec<&str> = add.iter().map(String::as_str).collect();
    let remove: Vec<&str> = remove.iter().map(String::as_str).collect();
    if !s.mailbox.modify(&id, &add, &remove) {
        return errors::not_found();
    }
    let answer = labels_answer(s.mailbox.get(&id).expect("just modified"));
    drop(s);
    super::publish(&shared);
    ok_json(answer)
}

/// `POST …/messages/{id}/trash`: into the bin (`TRASH` added, `INBOX` removed).
pub(super) async fn trash_message(
    State(shared): State<Arc<Shared>>,
    Path((user, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (mut s, _) = guard!(shared, headers, "gmail.users.messages.trash", user);
    if !valid_id(&id) {
        return errors::invalid_argument("Invalid id value");
    }
    if !s.mailbox.modify(&id, &["TRASH"], &["INBOX"]) {
        return errors::not_found();
    }
    let answer = labels_answer(s.mailbox.get(&id).expect("just trashed"));
    drop(s);
    super::publish(&shared);
    ok_json(answer)
}

// ----- drafts -----

/// `POST …/drafts` with a `Draft` (`{message: {raw, threadId?}}`): the message is stored with
/// the `DRAFT` label only (a `messagesAdded` history record, as Gmail writes one); answers
/// the `Draft` with its message's id, thread and labels.
pub(super) async fn create_draft(
    State(shared): State<Arc<Shared>>,
    Path(user): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_body(body, READ_CAP).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (mut s, _) = guard!(shared, headers, "gmail.users.drafts.create", user);
    let v = match json_request(&body, s.config.json_body_limit) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(r) = known_fields(&v, "Draft") {
        return r;
    }
    let Some(message) = v.get("message") else {
        return errors::invalid_argument("Missing draft message");
    };
    let thread_id = match message_fields(message) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Some(raw) = message
        .get("raw")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    else {
        return errors::invalid_argument("Missing draft message");
    };
    let Some(raw) = decode_raw(raw) else {
        return errors::invalid_argument(
            "Invalid value at 'draft.message.raw' (TYPE_BYTES), Base64 decoding failed",
        );
    };
    if raw.len() > SEND_MAX_SIZE {
        return errors::upload_too_large(SEND_MAX_SIZE);
    }
    let thread = thread_id.filter(|t| valid_id(t) && !s.mailbox.thread(t).is_empty());
    let stored = s.mailbox.insert(raw, thread, &["DRAFT"]);
    let message = json!({
        "id": stored.id,
        "threadId": stored.thread_id,
        "labelIds": stored.labels,
    });
    let draft_id = format!("r{}", mailbox::random_u64() >> 1);
    let message_id = stored.id.clone();
    s.drafts.push((draft_id.clone(), message_id));
    drop(s);
    super::publish(&shared);
    ok_json(json!({ "id": draft_id, "message": message }))
}

/// `GET …/drafts`: the drafts whose message is still there, newest first, each as `{id,
/// message: {id, threadId}}`; `maxResults` (1–500, default 100) and `pageToken` as
/// `messages.list` takes them.
pub(super) async fn list_drafts(
    State(shared): State<Arc<Shared>>,
    Path(user): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (s, access) = guard!(shared, headers, "gmail.users.drafts.list", user);
    let pairs = query_pairs(&q);
    let p = match list_params(&pairs, &access) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let drafts: Vec<Value> = s
        .drafts
        .iter()
        .rev()
        .filter_map(|(id, mid)| {
            let m = s.mailbox.get(mid)?;
            Some(json!({ "id": id, "message": { "id": m.id, "threadId": m.thread_id } }))
        })
        .collect();
    let (items, next, total) = page(drafts, &p);
    let mut v = json!({ "resultSizeEstimate": total });
    if !items.is_empty() {
        v["drafts"] = Value::Array(items);
    }
    if let Some(n) = next {
        v["nextPageToken"] = json!(n);
    }
    ok_json(v)
}

/// `DELETE …/drafts/{id}`: the draft and its message are gone for good (a `messagesDeleted`
/// history record); 204 with no body. An unknown draft is 404.
pub(super) async fn delete_draft(
    State(shared): State<Arc<Shared>>,
    Path((user, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (mut s, _) = guard!(shared, headers, "gmail.users.drafts.delete", user);
    let Some(at) = s.drafts.iter().position(|(d, _)| *d == id) else {
        return errors::not_found();
    };
    let (_, message_id) = s.drafts.remove(at);
    let existed = s.mailbox.delete(&message_id);
    drop(s);
    if !existed {
        return errors::not_found();
    }
    super::publish(&shared);
    StatusCode::NO_CONTENT.into_response()
}

// ----- watch, stop -----

/// How long a watch lasts (Gmail: 7 days).
const WATCH_DAYS: i64 = 7;

/// `POST …/watch` with a `WatchRequest`: every change is published to `topicName` (as
/// `projects/<p>/topics/<t>`) until the answer's `expiration`; a second call renews it.
pub(super) async fn watch(
    State(shared): State<Arc<Shared>>,
    Path(user): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_body(body, 64 * 1024).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (mut s, _) = guard!(shared, headers, "gmail.users.watch", user);
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return errors::invalid_argument(&format!("Invalid JSON payload received. {e}")),
    };
    if let Err(r) = known_fields(&v, "WatchRequest") {
        return r;
    }
    let topic = v["topicName"].as_str().unwrap_or("");
    let parts: Vec<&str> = topic.split('/').collect();
    if !(parts.len() == 4 && parts[0] == "projects" && parts[2] == "topics")
        || parts.iter().any(|p| p.is_empty())
    {
        return errors::invalid_argument(
            "Invalid topicName does not match projects/SOME-ANDROID-PROJECT/topics/*",
        );
    }
    let expiration = mailbox::now_ms() + WATCH_DAYS * 86_400_000;
    s.watch = Some((topic.to_owned(), expiration));
    ok_json(json!({
        "historyId": s.mailbox.history_id().to_string(),
        "expiration": expiration.to_string(),
    }))
}

/// `POST …/stop`: no more publishing.
pub(super) async fn stop(
    State(shared): State<Arc<Shared>>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (mut s, _) = guard!(shared, headers, "gmail.users.stop", user);
    s.watch = None;
    StatusCode::NO_CONTENT.into_response()
}

// ----- history.list -----

/// `GET …/history`: the records after `startHistoryId` (required), filtered by
/// `historyTypes` and `labelId`, in pages of `maxResults` (default 100, at most 500); 404
/// `notFound` for a `startHistoryId` older than the retained history. The top-level
/// `historyId` is the mailbox's current one.
pub(super) async fn list_history(
    State(shared): State<Arc<Shared>>,
    Path(user): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (s, _) = guard!(shared, headers, "gmail.users.history.list", user);
    let pairs = query_pairs(&q);
    let Some(start) = first(&pairs, "startHistoryId") else {
        return errors::invalid_argument("Missing required field: startHistoryId");
    };
    let Ok(start) = start.parse::<u64>() else {
        return errors::invalid_argument(&format!(
            "Invalid value at 'start_history_id' (TYPE_UINT64), \"{start}\""
        ));
    };
    let types = all(&pairs, "historyTypes");
    for t in &types {
        if ![
            "messageAdded",
            "messageDeleted",
            "labelAdded",
            "labelRemoved",
        ]
        .contains(t)
        {
            return errors::invalid_argument(&format!(
                "Invalid value at 'history_types' (type.googleapis.com/caribou.api.proto.HistoryType), \"{t}\""
            ));
        }
    }
    let label = first(&pairs, "labelId");
    let p = match list_params(
        &pairs,
        &Access {
            metadata_only: false,
        },
    ) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(records) = s.mailbox.history_since(start) else {
        return errors::not_found();
    };
    let records: Vec<Value> = records
        .into_iter()
        .filter(|r| types.is_empty() || types.contains(&r.change.history_type()))
        .filter(|r| {
            label.is_none_or(|l| {
                let in_change = match &r.change {
                    mailbox::Change::Added(ls)
                    | mailbox::Change::LabelsAdded(ls)
                    | mailbox::Change::LabelsRemoved(ls) => ls.iter().any(|x| x == l),
                    mailbox::Change::Deleted => false,
                };
                in_change
                    || s.mailbox
                        .get(&r.message_id)
                        .is_some_and(|m| has_label(m, l))
            })
        })
        .map(history_record)
        .collect();
    let (items, next, _) = page(records, &p);
    let mut v = json!({ "historyId": s.mailbox.history_id().to_string() });
    if !items.is_empty() {
        v["history"] = Value::Array(items);
    }
    if let Some(n) = next {
        v["nextPageToken"] = json!(n);
    }
    ok_json(v)
}

/// One `History` as Google writes it: `messages` (id and threadId) and the typed array.
fn history_record(r: &mailbox::HistoryRecord) -> Value {
    let short = json!({"id": r.message_id, "threadId": r.thread_id});
    let mut v = json!({"id": r.id.to_string(), "messages": [short]});
    match &r.change {
        mailbox::Change::Added(labels) => {
            v["messagesAdded"] = json!([{"message": {
                "id": r.message_id, "threadId": r.thread_id, "labelIds": labels}}]);
        }
        mailbox::Change::Deleted => {
            v["messagesDeleted"] = json!([{"message": short}]);
        }
        mailbox::Change::LabelsAdded(labels) => {
            v["labelsAdded"] = json!([{"message": short, "labelIds": labels}]);
        }
        mailbox::Change::LabelsRemoved(labels) => {
            v["labelsRemoved"] = json!([{"message": short, "labelIds": labels}]);
        }
    }
    v
}

// ----- messages.list, threads.list -----

/// A minimal Gmail search: `rfc822msgid:`, `in:`, `is:`, `label:`, `subject:`, `after:`,
/// `before:`, and bare words (matched case-insensitively anywhere in the message).
fn matches_query(m: &Stored, q: &str) -> bool {
    terms(q).iter().all(|t| matches_term(m, t))
}

fn terms(q: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur = String::new();
    let mut quoted = false;
    for c in q.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn has_label(m: &Stored, l: &str) -> bool {
    m.labels.iter().any(|x| x.eq_ignore_ascii_case(l))
}

fn date_ms(v: &str) -> Option<i64> {
    if let Ok(secs) = v.parse::<i64>() {
        return Some(secs * 1000);
    }
    let mut it = v.split(['/', '-']);
    let (y, mo, d): (i64, i64, i64) = (
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    );
    // Days from the civil date (proleptic Gregorian), UTC.
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400_000)
}

fn matches_term(m: &Stored, t: &str) -> bool {
    let (op, arg) = match t.split_once(':') {
        Some((op, arg)) => (op.to_ascii_lowercase(), arg),
        None => (String::new(), t),
    };
    match op.as_str() {
        "rfc822msgid" => {
            let want = arg.trim_start_matches('<').trim_end_matches('>');
            m.message_id.as_deref() == Some(want)
        }
        "in" => match arg.to_ascii_lowercase().as_str() {
            "anywhere" => true,
            "inbox" => has_label(m, "INBOX"),
            "sent" => has_label(m, "SENT"),
            "trash" => has_label(m, "TRASH"),
            "spam" => has_label(m, "SPAM"),
            "drafts" | "draft" => has_label(m, "DRAFT"),
            other => has_label(m, other),
        },
        "is" => match arg.to_ascii_lowercase().as_str() {
            "unread" => has_label(m, "UNREAD"),
            "read" => !has_label(m, "UNREAD"),
            "starred" => has_label(m, "STARRED"),
            "important" => has_label(m, "IMPORTANT"),
            _ => false,
        },
        "label" => has_label(m, arg),
        "subject" => m.subject.to_lowercase().contains(&arg.to_lowercase()),
        "after" => date_ms(arg).is_some_and(|d| m.internal_date > d),
        "before" => date_ms(arg).is_some_and(|d| m.internal_date < d),
        _ => String::from_utf8_lossy(&m.raw)
            .to_lowercase()
            .contains(&t.to_lowercase()),
    }
}

struct ListParams {
    max: usize,
    offset: usize,
    q: Option<String>,
    label_ids: Vec<String>,
    include_spam_trash: bool,
}

fn list_params(pairs: &[(String, String)], access: &Access) -> Result<ListParams, Response> {
    let max = match first(pairs, "maxResults") {
        None => 100,
        Some(v) => match v.parse::<u64>() {
            Ok(n) => n.clamp(1, 500) as usize,
            Err(_) => {
                return Err(errors::invalid_argument(&format!(
                    "Invalid value at 'max_results' (TYPE_UINT32), \"{v}\""
                )));
            }
        },
    };
    let offset = match first(pairs, "pageToken").filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => URL_SAFE_NO_PAD
            .decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("offset:").and_then(|n| n.parse().ok()))
            .ok_or_else(|| errors::invalid_argument("Invalid pageToken"))?,
    };
    let q = first(pairs, "q")
        .filter(|q| !q.trim().is_empty())
        .map(str::to_owned);
    if q.is_some() && access.metadata_only {
        return Err(errors::forbidden(
            "Metadata scope does not support 'q' parameter",
        ));
    }
    Ok(ListParams {
        max,
        offset,
        q,
        label_ids: all(pairs, "labelIds")
            .into_iter()
            .map(str::to_owned)
            .collect(),
        include_spam_trash: first(pairs, "includeSpamTrash") == Some("true"),
    })
}

fn selected<'a>(s: &'a FakeState, p: &ListParams) -> Vec<&'a Stored> {
    let mut out: Vec<&Stored> = s
        .mailbox
        .messages()
        .iter()
        .filter(|m| p.label_ids.iter().all(|l| has_label(m, l)))
        .filter(|m| {
            p.include_spam_trash
                || p.label_ids.iter().any(|l| l == "SPAM" || l == "TRASH")
                || !(has_label(m, "SPAM") || has_label(m, "TRASH"))
        })
        .filter(|m| p.q.as_deref().is_none_or(|q| matches_query(m, q)))
        .collect();
    out.sort_by(|a, b| {
        b.internal_date
            .cmp(&a.internal_date)
            .then(b.history_id.cmp(&a.history_id))
    });
    out
}

fn page<T>(items: Vec<T>, p: &ListParams) -> (Vec<T>, Option<String>, usize) {
    let total = items.len();
    let next = (p.offset + p.max < total)
        .then(|| URL_SAFE_NO_PAD.encode(format!("offset:{}", p.offset + p.max)));
    let page = items.into_iter().skip(p.offset).take(p.max).collect();
    (page, next, total)
}

pub(super) async fn list_messages(
    State(shared): State<Arc<Shared>>,
    Path(user): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (s, access) = guard!(shared, headers, "gmail.users.messages.list", user);
    let pairs = query_pairs(&q);
    let p = match list_params(&pairs, &access) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (items, next, total) = page(selected(&s, &p), &p);
    let mut v = json!({ "resultSizeEstimate": total });
    if !items.is_empty() {
        v["messages"] = Value::Array(items.into_iter().map(list_entry).collect());
    }
    if let Some(n) = next {
        v["nextPageToken"] = json!(n);
    }
    ok_json(v)
}

pub(super) async fn list_threads(
    State(shared): State<Arc<Shared>>,
    Path(user): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (s, access) = guard!(shared, headers, "gmail.users.threads.list", user);
    let pairs = query_pairs(&q);
    let p = match list_params(&pairs, &access) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let mut seen = BTreeSet::new();
    let threads: Vec<Value> = selected(&s, &p)
        .into_iter()
        .filter(|m| seen.insert(m.thread_id.clone()))
        .map(|m| {
            let msgs = s.mailbox.thread(&m.thread_id);
            let history = msgs.iter().map(|x| x.history_id).max().unwrap_or(0);
            json!({"id": m.thread_id, "snippet": m.snippet, "historyId": history.to_string()})
        })
        .collect();
    let (items, next, total) = page(threads, &p);
    let mut v = json!({ "resultSizeEstimate": total });
    if !items.is_empty() {
        v["threads"] = Value::Array(items);
    }
    if let Some(n) = next {
        v["nextPageToken"] = json!(n);
    }
    ok_json(v)
}

// ----- messages.get, attachments.get, threads.get -----

fn format_param(
    pairs: &[(String, String)],
    allowed: &[&str],
    access: &Access,
) -> Result<String, Response> {
    let f = first(pairs, "format")
        .unwrap_or("full")
        .to_ascii_lowercase();
    if !allowed.contains(&f.as_str()) {
        return Err(errors::invalid_argument(&format!(
            "Invalid value at 'format' (type.googleapis.com/caribou.api.proto.MessageFormat), \
             \"{f}\""
        )));
    }
    if access.metadata_only && (f == "full" || f == "raw") {
        return Err(errors::forbidden(&format!(
            "Metadata scope doesn't allow format {}",
            f.to_ascii_uppercase()
        )));
    }
    Ok(f)
}

pub(super) async fn get_message(
    State(shared): State<Arc<Shared>>,
    Path((user, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (s, access) = guard!(shared, headers, "gmail.users.messages.get", user);
    let pairs = query_pairs(&q);
    let format = match format_param(&pairs, &["minimal", "full", "raw", "metadata"], &access) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !valid_id(&id) {
        return errors::invalid_argument("Invalid id value");
    }
    let Some(m) = s.mailbox.get(&id) else {
        return errors::not_found();
    };
    let wanted: Vec<String> = all(&pairs, "metadataHeaders")
        .into_iter()
        .map(str::to_owned)
        .collect();
    ok_json(message_view(m, &format, &wanted))
}

pub(super) async fn get_attachment(
    State(shared): State<Arc<Shared>>,
    Path((user, id, attachment)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let (s, _) = guard!(
        shared,
        headers,
        "gmail.users.messages.attachments.get",
        user
    );
    if !valid_id(&id) {
        return errors::invalid_argument("Invalid id value");
    }
    let Some(m) = s.mailbox.get(&id) else {
        return errors::not_found();
    };
    match mailbox::attachment(m, &attachment) {
        Some(v) => ok_json(v),
        None => errors::invalid_argument("Invalid attachment token"),
    }
}

pub(super) async fn get_thread(
    State(shared): State<Arc<Shared>>,
    Path((user, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (s, access) = guard!(shared, headers, "gmail.users.threads.get", user);
    let pairs = query_pairs(&q);
    let format = match format_param(&pairs, &["minimal", "full", "metadata"], &access) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !valid_id(&id) {
        return errors::invalid_argument("Invalid id value");
    }
    let msgs = s.mailbox.thread(&id);
    if msgs.is_empty() {
        return errors::not_found();
    }
    let wanted: Vec<String> = all(&pairs, "metadataHeaders")
        .into_iter()
        .map(str::to_owned)
        .collect();
    let history = msgs.iter().map(|m| m.history_id).max().unwrap_or(0);
    ok_json(json!({
        "id": id,
        "historyId": history.to_string(),
        "messages": msgs.iter().map(|m| message_view(m, &format, &wanted)).collect::<Vec<_>>(),
    }))
}

// ----- messages.send -----

/// The answer to a send, published to the watched topic when it was accepted.
fn published(shared: &Arc<Shared>, done: Result<Value, Response>) -> Response {
    match done {
        Ok(v) => {
            super::publish(shared);
            ok_json(v)
        }
        Err(r) => r,
    }
}

/// Stores an accepted message and answers with its `Message`.
fn accept(
    s: &mut FakeState,
    raw: Vec<u8>,
    thread_id: Option<String>,
    upload_type: UploadType,
) -> Result<Value, Response> {
    if raw.len() > SEND_MAX_SIZE {
        return Err(errors::upload_too_large(SEND_MAX_SIZE));
    }
    if let Some((messages, window)) = s.send_quota {
        let now = mailbox::now_ms();
        let window = window.as_millis() as i64;
        while s.send_times.front().is_some_and(|t| *t <= now - window) {
            s.send_times.pop_front();
        }
        if s.send_times.len() >= messages {
            let reopens = s.send_times.front().copied().unwrap_or(now) + window;
            return Err(errors::mail_sending_quota(reopens));
        }
    }
    let (recipients, bcc) = mailbox::recipients(&raw).map_err(|m| errors::invalid_argument(&m))?;
    let facts = mailbox::header_facts(&raw);
    let thread = match thread_id.as_deref().filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => {
            if !valid_id(t) || s.mailbox.thread(t).is_empty() {
                return Err(errors::invalid_argument("Invalid thread_id value"));
            }
            // Gmail joins the thread only when the message refers to one of its messages and
            // the subject matches; otherwise it starts a new one.
            s.mailbox.matches_thread(t, &facts).then(|| t.to_owned())
        }
    };
    let own = s.config.email.to_ascii_lowercase();
    let to_self = recipients.iter().any(|r| r.to_ascii_lowercase() == own);
    let labels: &[&str] = if to_self {
        &["UNREAD", "SENT", "INBOX"]
    } else {
        &["SENT"]
    };
    let stored = s.mailbox.insert(raw.clone(), thread, labels);
    if s.send_quota.is_some() {
        s.send_times.push_back(mailbox::now_ms());
    }
    let answer = json!({
        "id": stored.id,
        "threadId": stored.thread_id,
        "labelIds": stored.labels,
    });
    let sent = SentMessage {
        id: stored.id.clone(),
        thread_id: stored.thread_id.clone(),
        requested_thread_id: thread_id,
        raw,
        upload_type,
        recipients,
        bcc,
    };
    s.sent.push(sent);
    Ok(answer)
}

/// Refuses a request body with a field `schema` (in Google's discovery document) does not
/// declare, as Google's JSON parser does.
fn known_fields(v: &Value, schema: &str) -> Result<(), Response> {
    let declared = &super::contract::document()["schemas"][schema]["properties"];
    for k in v.as_object().into_iter().flat_map(|o| o.keys()) {
        if declared.get(k).is_none() {
            return Err(errors::invalid_argument(&format!(
                "Invalid JSON payload received. Unknown name \"{k}\": Cannot find field."
            )));
        }
    }
    Ok(())
}

/// Fields a request `Message` may carry (unknown names are refused, as Google's JSON
/// parser does).
fn message_fields(v: &Value) -> Result<Option<String>, Response> {
    let Some(obj) = v.as_object() else {
        return Err(errors::invalid_argument(
            "Invalid JSON payload received. Expected an object.",
        ));
    };
    known_fields(v, "Message")?;
    match obj.get("threadId") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) => Ok(Some(t.clone())),
        Some(other) => Err(errors::invalid_argument(&format!(
            "Invalid value at 'message.thread_id' (TYPE_STRING), {other}"
        ))),
    }
}

fn decode_raw(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    URL_SAFE_PAD_INDIFFERENT
        .decode(s)
        .ok()
        .or_else(|| STANDARD_PAD_INDIFFERENT.decode(s).ok())
}

/// A JSON request body as Google's front end takes it: refused past `limit` bytes, then parsed.
fn json_request(body: &[u8], limit: usize) -> Result<Value, Response> {
    if body.len() > limit {
        return Err(errors::bad_request(&format!(
            "Request payload size exceeds the limit: {limit} bytes."
        )));
    }
    serde_json::from_slice(body)
        .map_err(|e| errors::invalid_argument(&format!("Invalid JSON payload received. {e}")))
}

/// `POST /gmail/v1/users/{userId}/messages/send` with a JSON `Message`.
pub(super) async fn send_json(
    State(shared): State<Arc<Shared>>,
    Path(user): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_body(body, READ_CAP).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (mut s, _) = guard!(shared, headers, "gmail.users.messages.send", user);
    let v = match json_request(&body, s.config.json_body_limit) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let thread_id = match message_fields(&v) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let raw = match v.get("raw") {
        Some(Value::String(r)) if !r.is_empty() => r,
        _ => {
            return errors::bad_request(
                "'raw' RFC822 payload message string or uploading message via /upload/* URL \
                 required",
            );
        }
    };
    let Some(raw) = decode_raw(raw) else {
        return errors::invalid_argument(
            "Invalid value at 'message.raw' (TYPE_BYTES), Base64 decoding failed",
        );
    };
    let done = accept(&mut s, raw, thread_id, UploadType::Json);
    drop(s);
    published(&shared, done)
}

fn is_message_type(ct: &str) -> bool {
    ct.trim().to_ascii_lowercase().starts_with("message/")
}

fn unsupported_media(ct: &str) -> Response {
    errors::bad_request(&format!(
        "Media type '{ct}' is not supported. Valid media types: [message/*]"
    ))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Splits a `multipart/related` body into (content-type, bytes) parts.
fn multipart_related(content_type: &str, body: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let boundary = content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
    })?;
    let delim = format!("--{boundary}").into_bytes();
    let mut positions = vec![];
    let mut i = 0;
    while i + delim.len() <= body.len() {
        if body[i..].starts_with(&delim) && (i == 0 || body[i - 1] == b'\n') {
            positions.push(i);
            i += delim.len();
        } else {
            i += 1;
        }
    }
    let mut parts = vec![];
    for w in positions.windows(2) {
        let mut start = w[0] + delim.len();
        if body[start..].starts_with(b"--") {
            break;
        }
        // skip the rest of the delimiter line
        while start < body.len() && body[start] != b'\n' {
            start += 1;
        }
        start += 1;
        let mut end = w[1];
        // the CRLF before the next delimiter belongs to it
        if end > start && body[end - 1] == b'\n' {
            end -= 1;
            if end > start && body[end - 1] == b'\r' {
                end -= 1;
            }
        }
        let part = body.get(start..end)?;
        let split = part
            .windows(4)
            .position(|x| x == b"\r\n\r\n")
            .map(|p| (p, p + 4))
            .or_else(|| {
                part.windows(2)
                    .position(|x| x == b"\n\n")
                    .map(|p| (p, p + 2))
            })?;
        let head = String::from_utf8_lossy(&part[..split.0]);
        let ct = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-type")
                    .then(|| v.trim().to_owned())
            })
            .unwrap_or_default();
        parts.push((ct, part[split.1..].to_vec()));
    }
    Some(parts)
}

/// `POST /upload/gmail/v1/users/{userId}/messages/send?uploadType=media|multipart|resumable`
/// (and `/resumable/upload/…`).
pub(super) async fn upload_start(
    State(shared): State<Arc<Shared>>,
    Path(user): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_body(body, READ_CAP).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (mut s, _) = guard!(shared, headers, "gmail.users.messages.send", user);
    let pairs = query_pairs(&q);
    let content_type = header_str(&headers, "content-type")
        .unwrap_or("")
        .to_owned();
    match first(&pairs, "uploadType") {
        Some("media") => {
            if !is_message_type(&content_type) {
                return unsupported_media(&content_type);
            }
            let done = accept(&mut s, body, None, UploadType::Media);
            drop(s);
            published(&shared, done)
        }
        Some("multipart") => {
            if !content_type
                .to_ascii_lowercase()
                .starts_with("multipart/related")
            {
                return errors::bad_request(
                    "Invalid multipart request: Content-Type must be multipart/related",
                );
            }
            let Some(parts) = multipart_related(&content_type, &body) else {
                return errors::bad_request("Invalid multipart request with 0 mime parts.");
            };
            let [(meta_ct, meta), (media_ct, media)] = parts.as_slice() else {
                return errors::bad_request(&format!(
                    "Invalid multipart request with {} mime parts.",
                    parts.len()
                ));
            };
            if !meta_ct.to_ascii_lowercase().starts_with("application/json") {
                return errors::bad_request(
                    "Invalid multipart request: the first part must be application/json",
                );
            }
            if !is_message_type(media_ct) {
                return unsupported_media(media_ct);
            }
            let meta: Value = if meta.iter().all(u8::is_ascii_whitespace) {
                json!({})
            } else {
                match serde_json::from_slice(meta) {
                    Ok(v) => v,
                    Err(e) => {
                        return errors::invalid_argument(&format!(
                            "Invalid JSON payload received. {e}"
                        ));
                    }
                }
            };
            let thread_id = match message_fields(&meta) {
                Ok(t) => t,
                Err(r) => return r,
            };
            let done = accept(&mut s, media.clone(), thread_id, UploadType::Multipart);
            drop(s);
            published(&shared, done)
        }
        Some("resumable") => {
            if let Some(ct) = header_str(&headers, "x-upload-content-type")
                && !is_message_type(ct)
            {
                return unsupported_media(ct);
            }
            let declared_len = match header_str(&headers, "x-upload-content-length") {
                None => None,
                Some(v) => match v.trim().parse::<usize>() {
                    Ok(n) => Some(n),
                    Err(_) => return errors::bad_request("Invalid X-Upload-Content-Length"),
                },
            };
            if declared_len.is_some_and(|n| n > SEND_MAX_SIZE) {
                return errors::upload_too_large(SEND_MAX_SIZE);
            }
            let meta: Value = if body.iter().all(u8::is_ascii_whitespace) {
                json!({})
            } else {
                match serde_json::from_slice(&body) {
                    Ok(v) => v,
                    Err(e) => {
                        return errors::invalid_argument(&format!(
                            "Invalid JSON payload received. {e}"
                        ));
                    }
                }
            };
            let thread_id = match message_fields(&meta) {
                Ok(t) => t,
                Err(r) => return r,
            };
            let upload_id = format!("ABgVH{}", random_token(40));
            s.uploads.insert(
                upload_id.clone(),
                UploadSession {
                    thread_id,
                    declared_len,
                    received: vec![],
                    result: None,
                },
            );
            let mut location = shared
                .base
                .join(&format!("upload/gmail/v1/users/{user}/messages/send"))
                .expect("url");
            location
                .query_pairs_mut()
                .append_pair("uploadType", "resumable")
                .append_pair("upload_id", &upload_id);
            (
                StatusCode::OK,
                [
                    (header::LOCATION.as_str(), location.to_string()),
                    ("x-guploader-uploadid", upload_id),
                ],
                String::new(),
            )
                .into_response()
        }
        None => errors::bad_request(
            "Upload requests must include an uploadType URL parameter and a URL path beginning \
             with /upload/",
        ),
        Some(other) => errors::bad_request(&format!("Invalid upload type: {other}")),
    }
}

enum ContentRange {
    /// `bytes */total`: a status query.
    Query,
    /// `bytes a-b/total` (`total` `*` while unknown).
    Chunk {
        first: usize,
        last: usize,
        total: Option<usize>,
    },
}

fn content_range(v: &str) -> Option<ContentRange> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    if range.trim() == "*" {
        return Some(ContentRange::Query);
    }
    let (a, b) = range.split_once('-')?;
    Some(ContentRange::Chunk {
        first: a.trim().parse().ok()?,
        last: b.trim().parse().ok()?,
        total,
    })
}

fn resume_incomplete(received: usize) -> Response {
    let mut r = (StatusCode::PERMANENT_REDIRECT, String::new()).into_response();
    if received > 0 {
        r.headers_mut().insert(
            header::RANGE,
            format!("bytes=0-{}", received - 1).parse().expect("header"),
        );
    }
    r
}

/// `PUT` to a resumable session URI: the bytes (whole, or chunks with `Content-Range`), or
/// a status query (`Content-Range: bytes */N`). The session URI is the credential; no
/// Authorization header is needed.
pub(super) async fn upload_put(
    State(shared): State<Arc<Shared>>,
    Path(_user): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_body(body, READ_CAP).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Some(r) = front_door(&shared).await {
        return r;
    }
    let pairs = query_pairs(&q);
    let Some(upload_id) = first(&pairs, "upload_id").map(str::to_owned) else {
        return errors::bad_request("Missing upload_id");
    };
    let mut s = shared.lock();
    let Some(session) = s.uploads.get_mut(&upload_id) else {
        return errors::not_found();
    };
    if let Some(done) = &session.result {
        return ok_json(done.clone());
    }
    let range = header_str(&headers, "content-range").map(content_range);
    let complete_len = match range {
        None => {
            session.received = body;
            Some(session.received.len())
        }
        Some(None) => return errors::bad_request("Failed to parse Content-Range header."),
        Some(Some(ContentRange::Query)) => return resume_incomplete(session.received.len()),
        Some(Some(ContentRange::Chunk { first, last, total })) => {
            if last < first || first != session.received.len() || last + 1 - first != body.len() {
                return errors::bad_request("Failed to parse Content-Range header.");
            }
            session.received.extend_from_slice(&body);
            if session.received.len() > SEND_MAX_SIZE {
                return errors::upload_too_large(SEND_MAX_SIZE);
            }
            match total {
                Some(t) if t == session.received.len() => Some(t),
                Some(t) if t < session.received.len() => {
                    return errors::bad_request("Failed to parse Content-Range header.");
                }
                _ => return resume_incomplete(session.received.len()),
            }
        }
    };
    let len = complete_len.unwrap_or(0);
    if session.declared_len.is_some_and(|d| d != len) {
        return errors::bad_request(&format!(
            "Upload size ({len}) does not match X-Upload-Content-Length ({})",
            session.declared_len.unwrap_or(0)
        ));
    }
    let raw = std::mem::take(&mut session.received);
    let thread_id = session.thread_id.clone();
    match accept(&mut s, raw, thread_id, UploadType::Resumable) {
        Ok(v) => {
            if let Some(session) = s.uploads.get_mut(&upload_id) {
                session.result = Some(v.clone());
            }
            drop(s);
            super::publish(&shared);
            ok_json(v)
        }
        Err(r) => {
            s.uploads.remove(&upload_id);
            r
        }
    }
}

/// Google's front end answers unknown paths with an HTML 404.
pub(super) async fn not_found_page(uri: axum::http::Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
        format!(
            "<!DOCTYPE html><html lang=en><title>Error 404 (Not Found)!!1</title>\
             <p><b>404.</b> <ins>That's an error.</ins><p>The requested URL <code>{}</code> \
             was not found on this server. <ins>That's all we know.</ins>",
            errors::html_escape(uri.path())
        ),
    )
        .into_response()
}
