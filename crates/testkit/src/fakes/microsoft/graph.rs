//! Graph v1.0 mail routes and the pre-authenticated Outlook upload URLs.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use super::identity::Resource;
use super::mailbox::{
    self, Att, DRAFTS, GraphError, Msg, ROOT, SENT_ITEMS, UploadSession, Write, gerr,
};
use super::{
    Emitted, MAX_REQUEST_BYTES, MAX_UPLOAD_SESSION_BYTES, MIN_UPLOAD_SESSION_BYTES, SentVia,
    Shared, exchange_id, iso, iso7, now, percent_decode, random_token, uuid,
};
use super::{delta, subscriptions};
use crate::fakes::Fault;

/// Bodies are read whole (so a refusal reaches the client instead of a reset connection).
const BODY_CAP: usize = 200 * 1024 * 1024;
const READ: &[&str] = &["Mail.ReadBasic", "Mail.Read", "Mail.ReadWrite"];
const WRITE: &[&str] = &["Mail.ReadWrite"];
const SEND: &[&str] = &["Mail.Send"];

enum Reply {
    Json {
        status: u16,
        entity: &'static str,
        body: Value,
    },
    Empty(u16),
    Created {
        location: String,
    },
    Raw {
        content_type: String,
        bytes: Vec<u8>,
    },
    Err(GraphError),
}

impl From<GraphError> for Reply {
    fn from(e: GraphError) -> Self {
        Reply::Err(e)
    }
}

fn json_reply(status: u16, entity: &'static str, body: Value) -> Reply {
    Reply::Json {
        status,
        entity,
        body,
    }
}

struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(st: &Arc<Shared>) -> Option<InFlight> {
        let limit = *st.concurrency_limit.lock().unwrap();
        let n = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(l) = limit
            && n > l
        {
            st.in_flight.fetch_sub(1, Ordering::SeqCst);
            st.throttled.fetch_add(1, Ordering::SeqCst);
            return None;
        }
        Some(InFlight(st.clone()))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn error_response(e: &GraphError, req_headers: &HeaderMap) -> Response {
    let rid = uuid();
    let cid = client_request_id(req_headers);
    let body = json!({"error": {
        "code": e.code,
        "message": e.message,
        "innerError": {"date": iso(now()), "request-id": rid, "client-request-id": cid},
    }});
    let mut r = (
        StatusCode::from_u16(e.status).expect("status"),
        axum::Json(body),
    )
        .into_response();
    let h = r.headers_mut();
    ids(h, &rid, &cid);
    if let Some(s) = e.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    if e.status == 401 {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(
                "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
            ),
        );
    }
    r
}

fn client_request_id(h: &HeaderMap) -> String {
    h.get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(uuid)
}

fn ids(h: &mut HeaderMap, rid: &str, cid: &str) {
    if let Ok(v) = HeaderValue::from_str(rid) {
        h.insert("request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(cid) {
        h.insert("client-request-id", v);
    }
}

fn render(st: &Shared, reply: Reply, req_headers: &HeaderMap) -> Response {
    let rid = uuid();
    let cid = client_request_id(req_headers);
    let mut r = match reply {
        Reply::Json {
            status,
            entity,
            body,
        } => {
            st.emitted.lock().unwrap().push(Emitted {
                entity: entity.to_owned(),
                body: body.clone(),
            });
            let mut r = (
                StatusCode::from_u16(status).expect("status"),
                axum::Json(body),
            )
                .into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8",
                ),
            );
            r
        }
        Reply::Empty(status) => {
            let mut r = StatusCode::from_u16(status)
                .expect("status")
                .into_response();
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            r
        }
        Reply::Created { location } => {
            let mut r = StatusCode::CREATED.into_response();
            let h = r.headers_mut();
            h.insert(
                header::LOCATION,
                HeaderValue::from_str(&location).expect("location"),
            );
            h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            r
        }
        Reply::Raw {
            content_type,
            bytes,
        } => {
            let mut r = (StatusCode::OK, bytes).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(&content_type)
                    .unwrap_or(HeaderValue::from_static("application/octet-stream")),
            );
            r
        }
        Reply::Err(e) => return error_response(&e, req_headers),
    };
    ids(r.headers_mut(), &rid, &cid);
    r
}

/// An injected fault for the next Graph request, if any (latency is waited here).
async fn injected(st: &Shared, req_headers: &HeaderMap) -> Option<Response> {
    let f = st.graph_faults.lock().unwrap().pop_front();
    match f {
        Some(Fault::Throttle { retry_after_secs }) => Some(error_response(
            &GraphError {
                retry_after: Some(retry_after_secs),
                ..gerr(
                    429,
                    "ApplicationThrottled",
                    "Application is over its MailboxConcurrency limit.",
                )
            },
            req_headers,
        )),
        Some(Fault::ServerError) => Some(error_response(
            &GraphError {
                retry_after: Some(st.cfg().retry_after_secs_on_503),
                ..gerr(503, "ServiceUnavailable", "Service Unavailable")
            },
            req_headers,
        )),
        Some(Fault::Latency(d)) => {
            tokio::time::sleep(d).await;
            None
        }
        Some(Fault::RateLimit403) | None => None,
    }
}

pub(super) async fn entry(
    State(st): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Ok(bytes) = axum::body::to_bytes(body, BODY_CAP).await else {
        return error_response(&too_large(), &headers);
    };
    let perms = st
        .identity
        .lock()
        .unwrap()
        .check_bearer(&headers, Resource::Graph);
    let perms = match perms {
        Ok(p) => p,
        Err(msg) => return error_response(&gerr(401, "InvalidAuthenticationToken", msg), &headers),
    };
    let Some(_guard) = InFlight::enter(&st) else {
        return error_response(
            &GraphError {
                retry_after: Some(1),
                ..gerr(
                    429,
                    "ApplicationThrottled",
                    "Application is over its MailboxConcurrency limit.",
                )
            },
            &headers,
        );
    };
    // A slow (injected latency) request counts as in flight, as a slow answer does.
    if let Some(r) = injected(&st, &headers).await {
        return r;
    }
    let mut gate = st.gate.subscribe();
    let _ = gate.wait_for(|open| *open).await;
    if let Some(reply) = subscription_route(&st, &method, &uri, &headers, &bytes, &perms).await {
        return render(&st, reply, &headers);
    }
    let mut reply =
        dispatch(&st, &method, &uri, &headers, &bytes, &perms).unwrap_or_else(Reply::Err);
    if immutable_ids(&headers)
        && let Reply::Json { body, .. } = &mut reply
    {
        let mb = st.mailbox.lock().unwrap();
        let ids: HashMap<&str, &str> = mb
            .messages
            .iter()
            .map(|m| (m.id.as_str(), m.immutable_id.as_str()))
            .collect();
        to_immutable_ids(body, &ids);
    }
    render(&st, reply, &headers)
}

/// `/subscriptions` and `/subscriptions/{id}` (see `subscriptions`); `None` for other paths.
/// Async: creating one validates the notification URL first.
async fn subscription_route(
    st: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    perms: &[String],
) -> Option<Reply> {
    let path = uri.path().strip_prefix("/v1.0/subscriptions")?;
    let id = path.strip_prefix('/').filter(|s| !s.is_empty());
    if !(path.is_empty() || id.is_some_and(|i| !i.contains('/'))) {
        return None;
    }
    let base = st.base.as_str();
    let answer = async {
        need(perms, READ)?;
        let subs = &st.subscriptions;
        match (method.as_str(), id) {
            ("POST", None) => {
                let obj = json_object(body)?;
                let s = subscriptions::create(&obj, immutable_ids(headers)).await?;
                let v = subscriptions::json(&s);
                subs.lock().unwrap().live.insert(s.id.clone(), s);
                Ok(json_reply(
                    201,
                    "Subscription",
                    with_context(v, base, "subscriptions/$entity"),
                ))
            }
            ("PATCH", Some(id)) => {
                let obj = json_object(body)?;
                let v = subscriptions::renew(&mut subs.lock().unwrap(), id, &obj)?;
                Ok(json_reply(
                    200,
                    "Subscription",
                    with_context(v, base, "subscriptions/$entity"),
                ))
            }
            ("GET", Some(id)) => {
                let g = subs.lock().unwrap();
                let s = g.live.get(id).ok_or_else(|| subscriptions::not_found(id))?;
                Ok(json_reply(
                    200,
                    "Subscription",
                    with_context(subscriptions::json(s), base, "subscriptions/$entity"),
                ))
            }
            ("DELETE", Some(id)) => match subs.lock().unwrap().live.remove(id) {
                Some(_) => Ok(Reply::Empty(204)),
                None => Err(subscriptions::not_found(id)),
            },
            _ => Err(gerr(
                405,
                "BadRequest",
                format!("The HTTP method '{method}' is not allowed for the requested resource."),
            )),
        }
    };
    Some(answer.await.unwrap_or_else(Reply::Err))
}

/// The values of one preference of the request's `Prefer` headers (`odata.maxpagesize=50`,
/// `IdType="ImmutableId"`), unquoted.
fn preference(h: &HeaderMap, name: &str) -> Option<String> {
    h.get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
}

/// Whether the request asks for immutable ids (`Prefer: IdType="ImmutableId"`).
fn immutable_ids(h: &HeaderMap) -> bool {
    preference(h, "IdType").is_some_and(|v| v.eq_ignore_ascii_case("ImmutableId"))
}

/// Replaces every message's default id in an answer (its `id` properties) by its immutable id.
fn to_immutable_ids(v: &mut Value, ids: &HashMap<&str, &str>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                match x {
                    Value::String(s) if k == "id" => {
                        if let Some(i) = ids.get(s.as_str()) {
                            *s = (*i).to_owned();
                        }
                    }
                    _ => to_immutable_ids(x, ids),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| to_immutable_ids(x, ids)),
        _ => {}
    }
}

fn too_large() -> GraphError {
    gerr(
        413,
        "RequestBodyTooLarge",
        "The maximum request length supported is 4MB.",
    )
}

fn need(perms: &[String], any_of: &[&str]) -> Result<(), GraphError> {
    if perms
        .iter()
        .any(|p| p == ".default" || any_of.iter().any(|a| a.eq_ignore_ascii_case(p)))
    {
        Ok(())
    } else {
        Err(gerr(
            403,
            "ErrorAccessDenied",
            "Access is denied. Check credentials and try again.",
        ))
    }
}

fn query(uri: &Uri) -> Vec<(String, String)> {
    url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn q<'a>(qs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    qs.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str())
}

fn is_text_plain(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("text/plain"))
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, GraphError> {
    if body.is_empty() {
        return Err(gerr(
            400,
            "BadRequest",
            "Empty Payload. JSON content expected.",
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(gerr(
            400,
            "BadRequest",
            "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
        )),
    }
}

fn decode_mime(body: &[u8]) -> Result<Vec<u8>, GraphError> {
    let compact: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let invalid = || {
        gerr(
            400,
            "ErrorMimeContentInvalidBase64String",
            "Invalid base64 string for MIME content.",
        )
    };
    if compact.is_empty() {
        return Err(invalid());
    }
    STANDARD.decode(&compact).map_err(|_| invalid())
}

fn not_found() -> GraphError {
    gerr(
        404,
        "ErrorItemNotFound",
        "The specified object was not found in the store.",
    )
}

fn dispatch(
    st: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    perms: &[String],
) -> Result<Reply, GraphError> {
    let path = uri.path().strip_prefix("/v1.0").unwrap_or_default();
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let qs = query(uri);
    let writes = matches!(*method, Method::POST | Method::PATCH | Method::PUT);
    if writes && body.len() > MAX_REQUEST_BYTES {
        return Err(too_large());
    }
    if writes
        && body.is_empty()
        && !headers.contains_key(header::CONTENT_LENGTH)
        && !headers.contains_key(header::TRANSFER_ENCODING)
    {
        return Err(gerr(
            411,
            "LengthRequired",
            "Length Required: a POST without a body must send Content-Length: 0.",
        ));
    }
    let cfg = st.cfg();
    let rest: &[String] = match segs.first().map(String::as_str) {
        Some("me") => &segs[1..],
        Some("users") if segs.len() >= 2 => {
            let who = &segs[1];
            if who.eq_ignore_ascii_case(&cfg.user_id)
                || who.eq_ignore_ascii_case(&cfg.user_principal_name)
                || who.eq_ignore_ascii_case(&cfg.mail)
            {
                &segs[2..]
            } else {
                return Err(gerr(
                    404,
                    "ErrorInvalidUser",
                    format!("The requested user '{who}' is invalid."),
                ));
            }
        }
        Some(s) => {
            return Err(gerr(
                400,
                "BadRequest",
                format!("Resource not found for the segment '{s}'."),
            ));
        }
        None => return Err(gerr(400, "BadRequest", "Invalid request.")),
    };
    let r: Vec<&str> = rest.iter().map(String::as_str).collect();
    let base = st.base.as_str();
    let m = method.as_str();
    match (m, r.as_slice()) {
        ("GET", []) => Ok(json_reply(
            200,
            "User",
            json!({
                "@odata.context": format!("{base}/v1.0/$metadata#users/$entity"),
                "businessPhones": [],
                "displayName": cfg.display_name,
                "givenName": cfg.display_name.split(' ').next(),
                "jobTitle": null,
                "mail": cfg.mail,
                "mobilePhone": null,
                "officeLocation": null,
                "preferredLanguage": "en-US",
                "surname": cfg.display_name.split(' ').nth(1),
                "userPrincipalName": cfg.user_principal_name,
                "id": cfg.user_id,
            }),
        )),
        ("POST", ["sendMail"]) => {
            need(perms, SEND)?;
            spend_send_allowance(st)?;
            send_mail(st, headers, body, cfg.max_message_size)
        }
        ("GET", ["messages"]) => {
            need(perms, READ)?;
            list_messages(st, &qs, None, uri.path())
        }
        ("POST", ["messages"]) => {
            need(perms, WRITE)?;
            create_draft(st, headers, body)
        }
        ("GET", ["mailFolders", fid, "messages", "delta"]) => {
            need(perms, READ)?;
            let select = parse_select(&qs)?;
            let mut mb = st.mailbox.lock().unwrap();
            let folder = mb.folder(fid).ok_or_else(not_found)?;
            let body = delta::page(
                &mut mb,
                base,
                delta::DeltaRequest {
                    folder,
                    delta_token: q(&qs, "$deltatoken"),
                    skip_token: q(&qs, "$skiptoken"),
                    select,
                    page_size: preference(headers, "odata.maxpagesize")
                        .and_then(|v| v.parse().ok()),
                    immutable: immutable_ids(headers),
                },
            )?;
            Ok(json_reply(200, "Collection(Message)", body))
        }
        ("POST", ["messages", id, "move"]) => {
            need(perms, WRITE)?;
            let obj = json_object(body)?;
            let dest = obj
                .get("destinationId")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    gerr(
                        400,
                        "ErrorInvalidParameter",
                        "The value of the parameter 'DestinationId' is empty.",
                    )
                })?;
            let mut mb = st.mailbox.lock().unwrap();
            let i = mb.find(id).ok_or_else(not_found)?;
            let to = mb
                .folder(dest)
                .ok_or_else(|| gerr(400, "ErrorInvalidIdMalformed", "Id is malformed."))?;
            mb.move_to(i, to);
            st.changed("updated", &mb.messages[i]);
            let v = mb.message_json(&mb.messages[i], base, None, false);
            Ok(json_reply(
                201,
                "Message",
                with_context(v, base, "messages/$entity"),
            ))
        }
        ("GET", ["messages", id]) | ("GET", ["mailFolders", _, "messages", id]) => {
            need(perms, READ)?;
            get_message(st, &qs, id)
        }
        ("PATCH", ["messages", id]) => {
            need(perms, WRITE)?;
            let obj = json_object(body)?;
            let mut mb = st.mailbox.lock().unwrap();
            let i = mb.find(id).ok_or_else(not_found)?;
            let mut msg = mb.messages[i].clone();
            mailbox::apply_json(&mut msg, &obj, Write::Patch)?;
            st.changed("updated", &msg);
            mb.messages[i] = msg;
            let v = mb.message_json(&mb.messages[i], base, None, false);
            Ok(json_reply(
                200,
                "Message",
                with_context(v, base, "messages/$entity"),
            ))
        }
        ("DELETE", ["messages", id]) => {
            need(perms, WRITE)?;
            let mut mb = st.mailbox.lock().unwrap();
            let i = mb.find(id).ok_or_else(not_found)?;
            let deleted = mb.folder("deleteditems").expect("deleteditems");
            if mb.messages[i].folder == deleted {
                let m = mb.messages.remove(i);
                st.changed("deleted", &m);
            } else {
                mb.move_to(i, deleted);
                st.changed("updated", &mb.messages[i]);
            }
            Ok(Reply::Empty(204))
        }
        // Graph's `permanentDelete`: gone for good (to the dumpster's Purges), not to Deleted
        // Items; 204.
        ("POST", ["messages", id, "permanentDelete"]) => {
            need(perms, WRITE)?;
            let mut mb = st.mailbox.lock().unwrap();
            let i = mb.find(id).ok_or_else(not_found)?;
            let m = mb.messages.remove(i);
            st.changed("deleted", &m);
            Ok(Reply::Empty(204))
        }
        ("GET", ["messages", id, "$value"]) => {
            need(perms, READ)?;
            let mb = st.mailbox.lock().unwrap();
            let i = mb.find(id).ok_or_else(not_found)?;
            Ok(Reply::Raw {
                content_type: "text/plain".into(),
                bytes: raw_mime(&mb.messages[i]),
            })
        }
        ("POST", ["messages", id, "send"]) => {
            need(perms, SEND)?;
            spend_send_allowance(st)?;
            let mut mb = st.mailbox.lock().unwrap();
            let i = mb.find(id).ok_or_else(not_found)?;
            if !mb.messages[i].is_draft {
                return Err(gerr(
                    400,
                    "ErrorInvalidOperation",
                    "Only a draft can be sent.",
                ));
            }
            let msg = mb.messages[i].clone();
            mb.submit(msg, SentVia::Draft, None, true, cfg.max_message_size, base)?;
            mb.messages.remove(i);
            mb.sessions.retain(|_, s| s.message_id != *id);
            Ok(Reply::Empty(202))
        }
        ("POST", ["messages", id, action @ ("createReply" | "reply")]) => {
            need(perms, if *action == "reply" { SEND } else { WRITE })?;
            let (message, comment) = if body.is_empty() {
                (None, String::new())
            } else {
                let obj = json_object(body)?;
                for k in obj.keys() {
                    if k != "message" && k != "comment" {
                        return Err(gerr(
                            400,
                            "RequestBodyRead",
                            format!(
                                "The parameter '{k}' in the request payload is not a valid parameter for the operation '{action}'."
                            ),
                        ));
                    }
                }
                (
                    obj.get("message").and_then(Value::as_object).cloned(),
                    obj.get("comment")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                )
            };
            let mut mb = st.mailbox.lock().unwrap();
            let i = mb.find(id).ok_or_else(not_found)?;
            let mut draft = mb.reply_draft(&mb.messages[i], &comment);
            if let Some(msg) = &message {
                mailbox::apply_json(&mut draft, msg, Write::Create)?;
            }
            if *action == "reply" {
                mb.submit(
                    draft,
                    SentVia::Draft,
                    None,
                    true,
                    cfg.max_message_size,
                    base,
                )?;
                return Ok(Reply::Empty(202));
            }
            let v = mb.message_json(&draft, base, None, false);
            mb.messages.push(draft);
            Ok(json_reply(
                201,
                "Message",
                with_context(v, base, "messages/$entity"),
            ))
        }
        ("GET", ["messages", id, "attachments"]) => {
            need(perms, READ)?;
            let mb = st.mailbox.lock().unwrap();
            let i = mb.find(id).ok_or_else(not_found)?;
            let value: Vec<Value> = mb.messages[i]
                .attachments
                .iter()
                .map(|a| a.json(true))
                .collect();
            Ok(json_reply(
                200,
                "Collection(Attachment)",
                json!({"@odata.context": format!("{base}/v1.0/$metadata#users('{}')/messages('{id}')/attachments", cfg.user_id), "value": value}),
            ))
        }
        ("POST", ["messages", id, "attachments"]) => {
            need(perms, WRITE)?;
            let obj = json_object(body)?;
            let att = mailbox::file_attachment(&Value::Object(obj))?;
            let mut mb = st.mailbox.lock().unwrap();
            let i = mb.find(id).ok_or_else(not_found)?;
            if message_size(&mb.messages[i]) + att.bytes.len() > cfg.max_message_size {
                return Err(size_exceeded());
            }
            let v = att.json(true);
            mb.messages[i].attachments.push(att);
            Ok(json_reply(
                201,
                "FileAttachment",
                with_context(v, base, "attachments/$entity"),
            ))
        }
        ("POST", ["messages", id, "attachments", "createUploadSession"]) => {
            need(perms, WRITE)?;
            create_upload_session(st, id, body, cfg.max_message_size)
        }
        ("GET", ["messages", id, "attachments", aid]) => {
            need(perms, READ)?;
            let mb = st.mailbox.lock().unwrap();
            let i = mb.find(id).ok_or_else(not_found)?;
            let a = mb.messages[i]
                .attachments
                .iter()
                .find(|a| a.id == *aid)
                .ok_or_else(not_found)?;
            Ok(json_reply(
                200,
                "FileAttachment",
                with_context(a.json(true), base, "attachments/$entity"),
            ))
        }
        ("GET", ["mailFolders"]) => {
            need(perms, READ)?;
            let mb = st.mailbox.lock().unwrap();
            let value: Vec<Value> = (0..mb.folders.len())
                .filter(|&i| mb.folders[i].parent == Some(ROOT))
                .map(|i| mb.folder_json(i))
                .collect();
            Ok(json_reply(
                200,
                "Collection(MailFolder)",
                json!({"@odata.context": format!("{base}/v1.0/$metadata#users('{}')/mailFolders", cfg.user_id), "value": value}),
            ))
        }
        ("GET", ["mailFolders", fid]) => {
            need(perms, READ)?;
            let mb = st.mailbox.lock().unwrap();
            let i = mb.folder(fid).ok_or_else(not_found)?;
            Ok(json_reply(
                200,
                "MailFolder",
                with_context(mb.folder_json(i), base, "mailFolders/$entity"),
            ))
        }
        ("GET", ["mailFolders", fid, "childFolders"]) => {
            need(perms, READ)?;
            let mb = st.mailbox.lock().unwrap();
            let i = mb.folder(fid).ok_or_else(not_found)?;
            let value: Vec<Value> = (0..mb.folders.len())
                .filter(|&j| mb.folders[j].parent == Some(i))
                .map(|j| mb.folder_json(j))
                .collect();
            Ok(json_reply(
                200,
                "Collection(MailFolder)",
                json!({"value": value}),
            ))
        }
        ("GET", ["mailFolders", fid, "messages"]) => {
            need(perms, READ)?;
            list_messages(st, &qs, Some(fid), uri.path())
        }
        (_, ["sendMail"]) | (_, ["messages", ..]) | (_, ["mailFolders", ..]) | (_, []) => {
            Err(gerr(
                405,
                "BadRequest",
                format!("The HTTP method '{m}' is not allowed for the requested resource."),
            ))
        }
        (_, [s, ..]) => Err(gerr(
            400,
            "BadRequest",
            format!("Resource not found for the segment '{s}'."),
        )),
    }
}

fn message_size(m: &Msg) -> usize {
    m.body.len() + m.attachments.iter().map(|a| a.bytes.len()).sum::<usize>()
}

fn size_exceeded() -> GraphError {
    gerr(
        400,
        "ErrorMessageSizeExceeded",
        "The message exceeds the maximum supported size.",
    )
}

fn with_context(mut v: Value, base: &str, what: &str) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "@odata.context".into(),
            json!(format!("{base}/v1.0/$metadata#{what}")),
        );
    }
    v
}

fn raw_mime(m: &Msg) -> Vec<u8> {
    if let Some(raw) = &m.mime {
        return raw.clone();
    }
    let list = |a: &[mailbox::Addr]| {
        a.iter()
            .map(|x| format!("<{}>", x.address))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut s = String::new();
    if let Some(f) = &m.from {
        s.push_str(&format!("From: <{}>\r\n", f.address));
    }
    if !m.to.is_empty() {
        s.push_str(&format!("To: {}\r\n", list(&m.to)));
    }
    if !m.cc.is_empty() {
        s.push_str(&format!("Cc: {}\r\n", list(&m.cc)));
    }
    s.push_str(&format!(
        "Subject: {}\r\nMessage-ID: {}\r\nMIME-Version: 1.0\r\nContent-Type: text/{}; charset=utf-8\r\n\r\n{}",
        m.subject,
        m.internet_message_id,
        if m.body_type == "html" { "html" } else { "plain" },
        m.body
    ));
    s.into_bytes()
}

/// One submission out of the mailbox's sending quota, if one is set
/// ([`super::FakeMicrosoft::set_send_allowance`]).
fn spend_send_allowance(st: &Shared) -> Result<(), GraphError> {
    let mut allowance = st.send_allowance.lock().unwrap();
    match allowance.as_mut() {
        Some(0) => Err(gerr(
            403,
            "ErrorExceededMessageLimit",
            "Cannot send mail. The message exceeds the sending limit. Try again later.",
        )),
        Some(n) => {
            *n -= 1;
            Ok(())
        }
        None => Ok(()),
    }
}

fn send_mail(
    st: &Shared,
    headers: &HeaderMap,
    body: &[u8],
    max: usize,
) -> Result<Reply, GraphError> {
    let base = st.base.as_str();
    if is_text_plain(headers) {
        let raw = decode_mime(body)?;
        let mut mb = st.mailbox.lock().unwrap();
        let (mut m, p) = mb.msg_from_mime(&raw, SENT_ITEMS).ok_or_else(|| {
            gerr(
                400,
                "ErrorMimeContentInvalid",
                "The MIME content is not a valid message.",
            )
        })?;
        if let Some(f) = p.from {
            m.from = Some(f);
        }
        mb.submit(m, SentVia::SendMail, Some(raw), true, max, base)?;
        return Ok(Reply::Empty(202));
    }
    let obj = json_object(body)?;
    for k in obj.keys() {
        if k != "message" && k != "saveToSentItems" {
            return Err(gerr(
                400,
                "RequestBodyRead",
                format!(
                    "The parameter '{k}' in the request payload is not a valid parameter for the operation 'sendMail'."
                ),
            ));
        }
    }
    let msg = obj
        .get("message")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            gerr(
                400,
                "ErrorInvalidParameter",
                "The value of the parameter 'Message' is empty.",
            )
        })?;
    let save = obj
        .get("saveToSentItems")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let mut mb = st.mailbox.lock().unwrap();
    let mut m = mb.new_msg(SENT_ITEMS);
    mailbox::apply_json(&mut m, msg, Write::Create)?;
    mb.submit(m, SentVia::SendMail, None, save, max, base)?;
    Ok(Reply::Empty(202))
}

fn create_draft(st: &Shared, headers: &HeaderMap, body: &[u8]) -> Result<Reply, GraphError> {
    let base = st.base.as_str();
    let mut mb = st.mailbox.lock().unwrap();
    let m = if is_text_plain(headers) {
        let raw = decode_mime(body)?;
        let (mut m, p) = mb.msg_from_mime(&raw, DRAFTS).ok_or_else(|| {
            gerr(
                400,
                "ErrorMimeContentInvalid",
                "The MIME content is not a valid message.",
            )
        })?;
        if let Some(f) = p.from {
            m.from = Some(f);
        }
        m
    } else {
        let obj = json_object(body)?;
        let mut m = mb.new_msg(DRAFTS);
        mailbox::apply_json(&mut m, &obj, Write::Create)?;
        m
    };
    let v = mb.message_json(&m, base, None, false);
    st.changed("created", &m);
    mb.messages.push(m);
    Ok(json_reply(
        201,
        "Message",
        with_context(v, base, "messages/$entity"),
    ))
}

fn parse_select(qs: &[(String, String)]) -> Result<Option<Vec<String>>, GraphError> {
    let Some(s) = q(qs, "$select") else {
        return Ok(None);
    };
    let mut out = vec![];
    for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !mailbox::MESSAGE_PROPS.contains(&name) {
            return Err(gerr(
                400,
                "RequestBroker--ParseUri",
                format!(
                    "Could not find a property named '{name}' on type 'microsoft.graph.message'."
                ),
            ));
        }
        out.push(name.to_owned());
    }
    Ok(Some(out))
}

fn parse_expand(qs: &[(String, String)]) -> Result<bool, GraphError> {
    match q(qs, "$expand") {
        None => Ok(false),
        Some(e) if e.trim() == "attachments" => Ok(true),
        Some(e) => Err(gerr(
            400,
            "RequestBroker--ParseUri",
            format!("Could not find a property named '{e}' on type 'microsoft.graph.message'."),
        )),
    }
}

fn get_message(st: &Shared, qs: &[(String, String)], id: &str) -> Result<Reply, GraphError> {
    let select = parse_select(qs)?;
    let expand = parse_expand(qs)?;
    let mb = st.mailbox.lock().unwrap();
    let i = mb.find(id).ok_or_else(not_found)?;
    let v = mb.message_json(&mb.messages[i], &st.base, select.as_deref(), expand);
    Ok(json_reply(
        200,
        "Message",
        with_context(v, &st.base, "messages/$entity"),
    ))
}

/// `receivedDateTime ge|gt <DateTimeOffset>` (an unquoted OData literal, compared at Graph's
/// precision, whole seconds): the time and whether it is included. `None` for other filters.
fn received_since(f: &str) -> Result<Option<(time::OffsetDateTime, bool)>, GraphError> {
    let mut it = f.split_whitespace();
    if it.next() != Some("receivedDateTime") {
        return Ok(None);
    }
    let bad = || {
        gerr(
            400,
            "ErrorInvalidUrlQueryFilter",
            "The query filter contains one or more invalid nodes.",
        )
    };
    let inclusive = match it.next() {
        Some("ge") => true,
        Some("gt") => false,
        _ => return Err(bad()),
    };
    let at = it
        .next()
        .and_then(|v| {
            time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).ok()
        })
        .ok_or_else(bad)?;
    if it.next().is_some() {
        return Err(bad());
    }
    Ok(Some((at.replace_nanosecond(0).unwrap_or(at), inclusive)))
}

#[derive(Debug, PartialEq)]
enum FilterValue {
    Str(String),
    Bool(bool),
}

/// `prop eq 'value'` (with `''` for a quote) or `prop eq true|false`.
fn parse_filter(f: &str) -> Result<(String, FilterValue), GraphError> {
    let bad = || gerr(400, "BadRequest", format!("Invalid filter clause: {f}"));
    let f = f.trim();
    let (prop, rest) = f.split_once(char::is_whitespace).ok_or_else(bad)?;
    let rest = rest.trim_start();
    let rest = rest
        .strip_prefix("eq")
        .filter(|r| r.starts_with(char::is_whitespace))
        .ok_or_else(|| {
            gerr(
                400,
                "ErrorInvalidUrlQueryFilter",
                "The query filter contains one or more invalid nodes.",
            )
        })?
        .trim();
    if !mailbox::MESSAGE_PROPS.contains(&prop) {
        return Err(gerr(
            400,
            "RequestBroker--ParseUri",
            format!("Could not find a property named '{prop}' on type 'microsoft.graph.message'."),
        ));
    }
    let value = if let Some(inner) = rest.strip_prefix('\'') {
        let mut out = String::new();
        let mut chars = inner.chars().peekable();
        let mut closed = false;
        while let Some(c) = chars.next() {
            if c == '\'' {
                if chars.peek() == Some(&'\'') {
                    chars.next();
                    out.push('\'');
                } else {
                    closed = true;
                    break;
                }
            } else {
                out.push(c);
            }
        }
        if !closed || chars.next().is_some() {
            return Err(bad());
        }
        FilterValue::Str(out)
    } else if rest == "true" || rest == "false" {
        FilterValue::Bool(rest == "true")
    } else {
        return Err(bad());
    };
    Ok((prop.to_owned(), value))
}

fn matches_filter(
    mb: &mailbox::Mailbox,
    m: &Msg,
    prop: &str,
    v: &FilterValue,
) -> Result<bool, GraphError> {
    Ok(match (prop, v) {
        ("internetMessageId", FilterValue::Str(s)) => m.internet_message_id == *s,
        ("conversationId", FilterValue::Str(s)) => m.conversation_id == *s,
        ("subject", FilterValue::Str(s)) => m.subject == *s,
        ("id", FilterValue::Str(s)) => m.id == *s,
        ("parentFolderId", FilterValue::Str(s)) => mb.folders[m.folder].id == *s,
        ("isRead", FilterValue::Bool(b)) => m.is_read == *b,
        ("isDraft", FilterValue::Bool(b)) => m.is_draft == *b,
        _ => {
            return Err(gerr(
                400,
                "ErrorInvalidUrlQueryFilter",
                "The query filter contains one or more invalid nodes.",
            ));
        }
    })
}

fn list_messages(
    st: &Shared,
    qs: &[(String, String)],
    folder: Option<&str>,
    path: &str,
) -> Result<Reply, GraphError> {
    let base = st.base.as_str();
    let select = parse_select(qs)?;
    let expand = parse_expand(qs)?;
    let top = match q(qs, "$top") {
        None => 10,
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| gerr(400, "BadRequest", format!("Invalid value '{t}' for $top.")))?
            .min(1000),
    };
    let skip = match q(qs, "$skip") {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| gerr(400, "BadRequest", format!("Invalid value '{t}' for $skip.")))?,
    };
    let since = q(qs, "$filter").map(received_since).transpose()?.flatten();
    let filter = match q(qs, "$filter") {
        Some(f) if since.is_none() => Some(parse_filter(f)?),
        _ => None,
    };
    let (order_prop, desc) = match q(qs, "$orderby").map(str::trim) {
        None => ("receivedDateTime", true),
        Some(o) => {
            let mut it = o.split_whitespace();
            let p = it.next().unwrap_or_default();
            let d = match it.next() {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(_) => return Err(gerr(400, "BadRequest", format!("Invalid $orderby: {o}"))),
            };
            if ![
                "receivedDateTime",
                "sentDateTime",
                "createdDateTime",
                "lastModifiedDateTime",
            ]
            .contains(&p)
            {
                return Err(gerr(
                    400,
                    "ErrorInvalidProperty",
                    format!("The property '{p}' does not support ordering."),
                ));
            }
            (p, d)
        }
    };
    let mb = st.mailbox.lock().unwrap();
    let folder_idx = match folder {
        Some(f) => Some(mb.folder(f).ok_or_else(not_found)?),
        None => None,
    };
    let mut ms: Vec<&Msg> = vec![];
    for m in &mb.messages {
        if folder_idx.is_some_and(|f| m.folder != f) {
            continue;
        }
        if let Some((p, v)) = &filter
            && !matches_filter(&mb, m, p, v)?
        {
            continue;
        }
        let received = m.received.replace_nanosecond(0).unwrap_or(m.received);
        if let Some((t, inclusive)) = since
            && !(received > t || (inclusive && received == t))
        {
            continue;
        }
        ms.push(m);
    }
    let key = |m: &Msg| match order_prop {
        "sentDateTime" => m.sent.unwrap_or(m.created),
        "createdDateTime" => m.created,
        "lastModifiedDateTime" => m.modified,
        _ => m.received,
    };
    ms.sort_by(|a, b| {
        let o = key(a).cmp(&key(b));
        if desc { o.reverse() } else { o }
    });
    let total = ms.len();
    let value: Vec<Value> = ms
        .into_iter()
        .skip(skip)
        .take(top)
        .map(|m| mb.message_json(m, base, select.as_deref(), expand))
        .collect();
    let mut body = json!({
        "@odata.context": format!("{base}/v1.0/$metadata#users('{}')/messages", mb.user_id),
        "value": value,
    });
    if skip + top < total {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in qs.iter().filter(|(k, _)| k != "$skip") {
            ser.append_pair(k, v);
        }
        ser.append_pair("$skip", &(skip + top).to_string());
        body["@odata.nextLink"] = json!(format!("{base}{path}?{}", ser.finish()));
    }
    Ok(json_reply(200, "Collection(Message)", body))
}

fn create_upload_session(
    st: &Shared,
    id: &str,
    body: &[u8],
    max: usize,
) -> Result<Reply, GraphError> {
    let base = st.base.as_str();
    let obj = json_object(body)?;
    let mut item = None;
    for (k, v) in &obj {
        if k.eq_ignore_ascii_case("AttachmentItem") {
            item = v.as_object();
        } else {
            return Err(gerr(
                400,
                "RequestBodyRead",
                format!(
                    "The parameter '{k}' in the request payload is not a valid parameter for the operation 'createUploadSession'."
                ),
            ));
        }
    }
    let item = item.ok_or_else(|| {
        gerr(
            400,
            "ErrorInvalidParameter",
            "The value of the parameter 'AttachmentItem' is empty.",
        )
    })?;
    for k in item.keys() {
        if ![
            "attachmentType",
            "name",
            "size",
            "isInline",
            "contentId",
            "contentType",
        ]
        .contains(&k.as_str())
        {
            return Err(gerr(
                400,
                "RequestBodyRead",
                format!(
                    "The property '{k}' does not exist on type 'microsoft.graph.attachmentItem'."
                ),
            ));
        }
    }
    match item.get("attachmentType").and_then(Value::as_str) {
        Some(t) if t.eq_ignore_ascii_case("file") => {}
        other => {
            return Err(gerr(
                400,
                "ErrorInvalidParameter",
                format!(
                    "Only 'file' attachments can be uploaded in a session (attachmentType {other:?})."
                ),
            ));
        }
    }
    let name = item
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            gerr(
                400,
                "ErrorRequiredPropertyMissing",
                "Required property is missing: name.",
            )
        })?;
    let size = item.get("size").and_then(Value::as_u64).ok_or_else(|| {
        gerr(
            400,
            "ErrorRequiredPropertyMissing",
            "Required property is missing: size.",
        )
    })?;
    if size < MIN_UPLOAD_SESSION_BYTES {
        return Err(gerr(
            400,
            "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
            "Attachment size must be greater than the minimum size.",
        ));
    }
    if size > MAX_UPLOAD_SESSION_BYTES {
        return Err(gerr(
            400,
            "ErrorAttachmentSizeShouldNotBeMoreThanMaximumSize",
            "Attachment size must be less than the maximum size.",
        ));
    }
    let mut mb = st.mailbox.lock().unwrap();
    let i = mb.find(id).ok_or_else(not_found)?;
    if message_size(&mb.messages[i]) + size as usize > max {
        return Err(size_exceeded());
    }
    let sid = exchange_id("AAMkAGSess");
    let authtoken = format!("eyJ{}", random_token(48));
    let expires = now() + time::Duration::minutes(30);
    let url = format!(
        "{base}/api/v2.0/Users('{}@{}')/Messages('{id}')/AttachmentSessions('{sid}')?authtoken={authtoken}",
        mb.user_id, mb.tenant_id
    );
    mb.sessions.insert(
        sid,
        UploadSession {
            message_id: id.to_owned(),
            authtoken,
            name: name.to_owned(),
            content_type: item
                .get("contentType")
                .and_then(Value::as_str)
                .unwrap_or("application/octet-stream")
                .to_owned(),
            size,
            is_inline: item
                .get("isInline")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            content_id: item
                .get("contentId")
                .and_then(Value::as_str)
                .map(str::to_owned),
            received: vec![],
            expires,
        },
    );
    Ok(json_reply(
        201,
        "UploadSession",
        json!({
            "@odata.context": format!("{base}/v1.0/$metadata#microsoft.graph.uploadSession"),
            "uploadUrl": url,
            "expirationDateTime": iso7(expires),
            "nextExpectedRanges": ["0-"],
        }),
    ))
}

/// `bytes {start}-{end}/{total}`.
fn content_range(h: &HeaderMap) -> Option<(u64, u64, u64)> {
    let v = h.get(header::CONTENT_RANGE)?.to_str().ok()?.trim();
    let r = v.strip_prefix("bytes ")?;
    let (range, total) = r.split_once('/')?;
    let (s, e) = range.split_once('-')?;
    let (s, e, t) = (s.parse().ok()?, e.parse().ok()?, total.parse().ok()?);
    (s <= e && e < t).then_some((s, e, t))
}

/// `PUT`/`DELETE` on an upload URL (Outlook REST, pre-authenticated by `authtoken`).
pub(super) async fn upload_entry(
    State(st): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Ok(bytes) = axum::body::to_bytes(body, BODY_CAP).await else {
        return error_response(&too_large(), &headers);
    };
    let reply = upload(&st, &method, &uri, &headers, &bytes).unwrap_or_else(Reply::Err);
    render(&st, reply, &headers)
}

fn upload(
    st: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Reply, GraphError> {
    let base = st.base.as_str();
    let path = percent_decode(uri.path());
    let sid = path
        .split_once("AttachmentSessions('")
        .and_then(|(_, r)| r.split_once("')"))
        .map(|(s, _)| s.to_owned())
        .ok_or_else(not_found)?;
    if headers.contains_key(header::AUTHORIZATION) {
        return Err(gerr(
            401,
            "InvalidAuthenticationToken",
            format!(
                "The audience claim value is invalid for current resource. Audience claim is 'https://graph.microsoft.com', request url is '{base}{}'. The upload URL is pre-authenticated: send no Authorization header.",
                uri.path()
            ),
        ));
    }
    let qs = query(uri);
    let mut mb = st.mailbox.lock().unwrap();
    let Some(sess) = mb.sessions.get(&sid) else {
        return Err(not_found());
    };
    if q(&qs, "authtoken") != Some(sess.authtoken.as_str()) || now() > sess.expires {
        return Err(gerr(
            401,
            "InvalidAuthenticationToken",
            "The authtoken is missing, invalid or expired.",
        ));
    }
    if *method == Method::DELETE {
        mb.sessions.remove(&sid);
        return Ok(Reply::Empty(204));
    }
    if *method != Method::PUT {
        return Err(gerr(
            405,
            "BadRequest",
            "Only PUT and DELETE are allowed on an upload URL.",
        ));
    }
    if body.len() > MAX_REQUEST_BYTES {
        return Err(too_large());
    }
    let Some((start, end, total)) = content_range(headers) else {
        return Err(gerr(
            400,
            "ErrorInvalidRequest",
            "The Content-Range header is missing or malformed; expected 'bytes {start}-{end}/{total}'.",
        ));
    };
    let sess = mb.sessions.get_mut(&sid).expect("session");
    if total != sess.size {
        return Err(gerr(
            400,
            "ErrorInvalidRequest",
            format!(
                "The Content-Range total {total} differs from the session's size {}.",
                sess.size
            ),
        ));
    }
    if (end - start + 1) as usize != body.len() {
        return Err(gerr(
            400,
            "ErrorInvalidRequest",
            "The Content-Range length does not match the number of bytes sent.",
        ));
    }
    if start != sess.received.len() as u64 {
        return Err(gerr(
            416,
            "ErrorInvalidRange",
            format!(
                "Bytes must be uploaded in order: the next expected byte is {}.",
                sess.received.len()
            ),
        ));
    }
    sess.received.extend_from_slice(body);
    let (mid, uid, tid) = (
        sess.message_id.clone(),
        mb.user_id.clone(),
        mb.tenant_id.clone(),
    );
    let prefix = format!("{base}/api/v2.0/Users('{uid}@{tid}')/Messages('{mid}')");
    let sess = mb.sessions.get(&sid).expect("session");
    if (sess.received.len() as u64) < sess.size {
        return Ok(json_reply(
            200,
            "Outlook:UploadSession",
            json!({
                "@odata.context": format!("{prefix}/AttachmentSessions/$entity"),
                "ExpirationDateTime": iso7(sess.expires),
                "nextExpectedRanges": [sess.received.len().to_string()],
            }),
        ));
    }
    let sess = mb.sessions.remove(&sid).expect("session");
    let i = mb.find(&mid).ok_or_else(not_found)?;
    let att = Att::new(
        sess.name,
        sess.content_type,
        sess.received,
        sess.is_inline,
        sess.content_id,
    );
    let location = format!("{prefix}/Attachments('{}')", att.id);
    mb.messages[i].attachments.push(att);
    Ok(Reply::Created { location })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_quotes_and_booleans() {
        assert_eq!(
            parse_filter("internetMessageId eq '<a''b@x>'").unwrap(),
            (
                "internetMessageId".into(),
                FilterValue::Str("<a'b@x>".into())
            )
        );
        assert_eq!(
            parse_filter("isRead eq false").unwrap().1,
            FilterValue::Bool(false)
        );
        assert_eq!(
            parse_filter("subject eq 'x' and 1").unwrap_err().code,
            "BadRequest"
        );
        assert_eq!(
            parse_filter("nope eq 'x'").unwrap_err().code,
            "RequestBroker--ParseUri"
        );
        assert_eq!(
            parse_filter("subject ne 'x'").unwrap_err().code,
            "ErrorInvalidUrlQueryFilter"
        );
    }

    #[test]
    fn content_range_is_strict() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 0-9/20"),
        );
        assert_eq!(content_range(&h), Some((0, 9, 20)));
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 0-20/20"),
        );
        assert_eq!(content_range(&h), None);
        h.insert(header::CONTENT_RANGE, HeaderValue::from_static("0-9/20"));
        assert_eq!(content_range(&h), None);
    }
}
