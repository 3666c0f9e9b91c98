//! The fake mailbox: folders, messages with conversations, attachments, upload sessions, the
//! outgoing queue; Graph JSON in and out; RFC 822 in.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders, PartType};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::{
    InboundMessage, MicrosoftConfig, SentAttachment, SentContent, SentItem, SentVia, exchange_id,
    iso, now, random_bytes, random_token,
};

/// A Graph error: `{"error":{"code","message","innerError"}}`.
#[derive(Debug, Clone)]
pub(super) struct GraphError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub retry_after: Option<u64>,
}

pub(super) fn gerr(status: u16, code: &str, message: impl Into<String>) -> GraphError {
    GraphError {
        status,
        code: code.to_owned(),
        message: message.into(),
        retry_after: None,
    }
}

fn body_read(message: impl Into<String>) -> GraphError {
    gerr(400, "RequestBodyRead", message)
}

/// Every property of `microsoft.graph.message` (with those of outlookItem and entity).
pub(super) const MESSAGE_PROPS: &[&str] = &[
    "id",
    "categories",
    "changeKey",
    "createdDateTime",
    "lastModifiedDateTime",
    "bccRecipients",
    "body",
    "bodyPreview",
    "ccRecipients",
    "conversationId",
    "conversationIndex",
    "flag",
    "from",
    "hasAttachments",
    "importance",
    "inferenceClassification",
    "internetMessageHeaders",
    "internetMessageId",
    "isDeliveryReceiptRequested",
    "isDraft",
    "isRead",
    "isReadReceiptRequested",
    "parentFolderId",
    "receivedDateTime",
    "replyTo",
    "sender",
    "sentDateTime",
    "subject",
    "toRecipients",
    "uniqueBody",
    "webLink",
    "attachments",
    "extensions",
    "multiValueExtendedProperties",
    "singleValueExtendedProperties",
];

/// Writable when creating a message (draft, sendMail, createReply's `message`).
const CREATE_WRITABLE: &[&str] = &[
    "bccRecipients",
    "body",
    "categories",
    "ccRecipients",
    "flag",
    "from",
    "importance",
    "inferenceClassification",
    "internetMessageHeaders",
    "internetMessageId",
    "isDeliveryReceiptRequested",
    "isRead",
    "isReadReceiptRequested",
    "replyTo",
    "sender",
    "subject",
    "toRecipients",
    "attachments",
];

/// Updatable by PATCH (the "Update message" docs).
const PATCH_WRITABLE: &[&str] = &[
    "bccRecipients",
    "body",
    "categories",
    "ccRecipients",
    "flag",
    "from",
    "importance",
    "inferenceClassification",
    "internetMessageId",
    "isDeliveryReceiptRequested",
    "isRead",
    "isReadReceiptRequested",
    "multiValueExtendedProperties",
    "replyTo",
    "sender",
    "singleValueExtendedProperties",
    "subject",
    "toRecipients",
];

/// Updatable only while `isDraft`.
const DRAFT_ONLY: &[&str] = &["body", "internetMessageId", "replyTo", "subject"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Addr {
    pub name: Option<String>,
    pub address: String,
}

impl Addr {
    fn json(&self) -> Value {
        json!({"emailAddress": {
            "name": self.name.clone().unwrap_or_else(|| self.address.clone()),
            "address": self.address,
        }})
    }
}

#[derive(Debug, Clone)]
pub(super) struct Att {
    pub id: String,
    pub name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
    pub is_inline: bool,
    pub content_id: Option<String>,
    pub modified: OffsetDateTime,
}

impl Att {
    pub(super) fn new(
        name: String,
        content_type: String,
        bytes: Vec<u8>,
        is_inline: bool,
        content_id: Option<String>,
    ) -> Att {
        Att {
            id: exchange_id("AAMkAGAtt"),
            name,
            content_type,
            bytes,
            is_inline,
            content_id,
            modified: now(),
        }
    }

    pub(super) fn json(&self, with_bytes: bool) -> Value {
        let mut v = json!({
            "@odata.type": "#microsoft.graph.fileAttachment",
            "@odata.mediaContentType": self.content_type,
            "id": self.id,
            "lastModifiedDateTime": iso(self.modified),
            "name": self.name,
            "contentType": self.content_type,
            "size": self.bytes.len(),
            "isInline": self.is_inline,
            "contentId": self.content_id,
            "contentLocation": null,
        });
        if with_bytes {
            v["contentBytes"] = json!(STANDARD.encode(&self.bytes));
        }
        v
    }

    fn sent(&self) -> SentAttachment {
        SentAttachment {
            name: self.name.clone(),
            content_type: self.content_type.clone(),
            size: self.bytes.len(),
            bytes: self.bytes.clone(),
            is_inline: self.is_inline,
            content_id: self.content_id.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Msg {
    /// The id Graph gives by default: it changes when the message moves to another folder.
    pub id: String,
    /// The id with `Prefer: IdType="ImmutableId"`: the message's for life.
    pub immutable_id: String,
    pub folder: usize,
    pub created: OffsetDateTime,
    pub modified: OffsetDateTime,
    pub received: OffsetDateTime,
    pub sent: Option<OffsetDateTime>,
    pub change_key: String,
    pub subject: String,
    pub body_type: &'static str,
    pub body: String,
    pub from: Option<Addr>,
    pub sender: Option<Addr>,
    pub to: Vec<Addr>,
    pub cc: Vec<Addr>,
    pub bcc: Vec<Addr>,
    pub reply_to: Vec<Addr>,
    pub internet_message_id: String,
    pub conversation_id: String,
    pub conversation_index: String,
    pub is_draft: bool,
    pub is_read: bool,
    pub importance: String,
    pub inference: String,
    pub categories: Vec<String>,
    pub flag_status: String,
    pub delivery_receipt: bool,
    pub read_receipt: bool,
    /// `internetMessageHeaders`.
    pub headers: Vec<(String, String)>,
    pub attachments: Vec<Att>,
    pub in_reply_to: Option<String>,
    /// The MIME it was created from, if any (for `$value`).
    pub mime: Option<Vec<u8>>,
}

impl Msg {
    pub(super) fn touch(&mut self) {
        self.modified = now();
        self.change_key = random_token(12);
    }

    fn size(&self) -> usize {
        self.body.len()
            + self.subject.len()
            + self
                .attachments
                .iter()
                .map(|a| a.bytes.len())
                .sum::<usize>()
    }
}

#[derive(Debug, Clone)]
pub(super) struct Folder {
    pub id: String,
    /// Empty for a folder the user made.
    pub well_known: &'static str,
    pub display: String,
    pub parent: Option<usize>,
}

#[derive(Debug, Clone)]
pub(super) struct UploadSession {
    pub message_id: String,
    pub authtoken: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub is_inline: bool,
    pub content_id: Option<String>,
    pub received: Vec<u8>,
    pub expires: OffsetDateTime,
}

pub(super) struct Mailbox {
    pub user_id: String,
    pub tenant_id: String,
    pub mail: String,
    pub display_name: String,
    pub folders: Vec<Folder>,
    pub messages: Vec<Msg>,
    pub sessions: HashMap<String, UploadSession>,
    pub sent: Vec<SentItem>,
    /// Delta rounds: states behind the `deltaLink`s issued, pages behind the `nextLink`s.
    pub delta: super::delta::DeltaStore,
}

const FOLDERS: &[(&str, &str)] = &[
    ("msgfolderroot", "Top of Information Store"),
    ("inbox", "Inbox"),
    ("drafts", "Drafts"),
    ("sentitems", "Sent Items"),
    ("deleteditems", "Deleted Items"),
    ("junkemail", "Junk Email"),
    ("archive", "Archive"),
    ("outbox", "Outbox"),
    ("conversationhistory", "Conversation History"),
];

pub(super) const ROOT: usize = 0;
pub(super) const DRAFTS: usize = 2;
pub(super) const SENT_ITEMS: usize = 3;

/// Loose SMTP address syntax, as Exchange resolves one-off recipients.
pub(super) fn valid_address(a: &str) -> bool {
    let Some((local, domain)) = a.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !local.contains('@')
        && a.chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !"<>()[],;:\"\\".contains(c))
        && domain
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_alphanumeric() || c == '-'))
}

fn html_to_text(s: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Removes every occurrence of header `name` (with its folded lines) from the header block.
pub(super) fn strip_header(raw: &[u8], name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    let mut skipping = false;
    while i < raw.len() {
        let end = raw[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| i + p + 1)
            .unwrap_or(raw.len());
        let line = &raw[i..end];
        if line == b"\r\n" || line == b"\n" {
            out.extend_from_slice(&raw[i..]);
            return out;
        }
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            if !skipping {
                out.extend_from_slice(line);
            }
        } else {
            let field = line.split(|&b| b == b':').next().unwrap_or_default();
            skipping = field.eq_ignore_ascii_case(name.as_bytes());
            if !skipping {
                out.extend_from_slice(line);
            }
        }
        i = end;
    }
    out
}

fn bracket(id: &str) -> String {
    let id = id.trim();
    if id.starts_with('<') {
        id.to_owned()
    } else {
        format!("<{id}>")
    }
}

/// What the fake reads from an RFC 822 message.
pub(super) struct Parsed {
    pub subject: String,
    pub from: Option<Addr>,
    pub to: Vec<Addr>,
    pub cc: Vec<Addr>,
    pub bcc: Vec<Addr>,
    pub reply_to: Vec<Addr>,
    pub message_id: Option<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub body_type: &'static str,
    pub body: String,
    pub attachments: Vec<Att>,
    pub headers: Vec<(String, String)>,
}

pub(super) fn parse_mime(raw: &[u8]) -> Option<Parsed> {
    let m = MessageParser::default().parse(raw)?;
    if m.headers().is_empty() {
        return None;
    }
    fn addrs(a: Option<&Address<'_>>) -> Vec<Addr> {
        a.map(|a| {
            a.iter()
                .map(|x| Addr {
                    name: x.name().map(str::to_owned).filter(|n| !n.is_empty()),
                    address: x.address().unwrap_or_default().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
    }
    fn ids(v: &HeaderValue<'_>) -> Vec<String> {
        v.as_text_list()
            .map(|l| l.iter().map(|s| bracket(s)).collect())
            .unwrap_or_default()
    }
    let (body_type, body) = if let Some(PartType::Html(h)) = m
        .html_bodies()
        .map(|p| &p.body)
        .find(|b| matches!(b, PartType::Html(_)))
    {
        ("html", h.to_string())
    } else if let Some(PartType::Text(t)) = m
        .text_bodies()
        .map(|p| &p.body)
        .find(|b| matches!(b, PartType::Text(_)))
    {
        ("text", t.to_string())
    } else {
        ("text", String::new())
    };
    let attachments = m
        .attachments()
        .map(|p| {
            let cid = p.content_id().map(|c| {
                c.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            });
            let inline = p
                .content_disposition()
                .map(|d| d.c_type.eq_ignore_ascii_case("inline"))
                .unwrap_or(cid.is_some());
            let ctype = p
                .content_type()
                .map(|c| format!("{}/{}", c.c_type, c.subtype().unwrap_or("octet-stream")))
                .unwrap_or_else(|| "application/octet-stream".into());
            Att::new(
                p.attachment_name().unwrap_or("attachment").to_owned(),
                ctype.to_ascii_lowercase(),
                p.contents().to_vec(),
                inline,
                cid,
            )
        })
        .collect();
    let headers = m
        .headers_raw()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("bcc"))
        .map(|(n, v)| {
            (
                n.to_owned(),
                v.replace("\r\n", "").replace('\n', "").trim().to_owned(),
            )
        })
        .collect();
    Some(Parsed {
        subject: m.subject().unwrap_or_default().to_owned(),
        from: addrs(m.from()).into_iter().next(),
        to: addrs(m.to()),
        cc: addrs(m.cc()),
        bcc: addrs(m.bcc()),
        reply_to: addrs(m.reply_to()),
        message_id: m.message_id().map(bracket),
        in_reply_to: ids(m.in_reply_to()),
        references: ids(m.references()),
        body_type,
        body,
        attachments,
        headers,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Write {
    Create,
    Patch,
}

fn recipients(v: &Value, prop: &str) -> Result<Vec<Addr>, GraphError> {
    if v.is_null() {
        return Ok(vec![]);
    }
    let arr = v.as_array().ok_or_else(|| {
        body_read(format!(
            "Cannot read '{prop}': a collection of microsoft.graph.recipient was expected."
        ))
    })?;
    arr.iter().map(|r| recipient(r, prop)).collect()
}

fn recipient(r: &Value, prop: &str) -> Result<Addr, GraphError> {
    let obj = r.as_object().ok_or_else(|| {
        body_read(format!(
            "Cannot read '{prop}': a microsoft.graph.recipient was expected."
        ))
    })?;
    for k in obj.keys() {
        if k != "emailAddress" && k != "@odata.type" {
            return Err(body_read(format!(
                "The property '{k}' does not exist on type 'microsoft.graph.recipient'. Make sure to only use property names that are defined by the type or mark the type as open type."
            )));
        }
    }
    let ea = obj
        .get("emailAddress")
        .and_then(Value::as_object)
        .ok_or_else(|| body_read(format!("Cannot read '{prop}': emailAddress was expected.")))?;
    for k in ea.keys() {
        if k != "address" && k != "name" {
            return Err(body_read(format!(
                "The property '{k}' does not exist on type 'microsoft.graph.emailAddress'. Make sure to only use property names that are defined by the type or mark the type as open type."
            )));
        }
    }
    Ok(Addr {
        address: ea
            .get("address")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        name: ea
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .filter(|n| !n.is_empty()),
    })
}

/// A `#microsoft.graph.fileAttachment` from JSON (a message's `attachments`, or `POST …/attachments`).
pub(super) fn file_attachment(v: &Value) -> Result<Att, GraphError> {
    let obj = v
        .as_object()
        .ok_or_else(|| body_read("An attachment object was expected."))?;
    match obj.get("@odata.type").and_then(Value::as_str) {
        Some(t) if t.eq_ignore_ascii_case("#microsoft.graph.fileAttachment") => {}
        Some(t) => {
            return Err(gerr(
                400,
                "ErrorInvalidAttachmentType",
                format!("The fake supports only #microsoft.graph.fileAttachment (got '{t}')."),
            ));
        }
        None => {
            return Err(body_read(
                "The '@odata.type' annotation is required for an attachment: microsoft.graph.attachment is abstract.",
            ));
        }
    }
    const KEYS: &[&str] = &[
        "@odata.type",
        "id",
        "name",
        "contentType",
        "contentBytes",
        "contentId",
        "contentLocation",
        "isInline",
        "lastModifiedDateTime",
        "size",
    ];
    for k in obj.keys() {
        if !KEYS.contains(&k.as_str()) {
            return Err(body_read(format!(
                "The property '{k}' does not exist on type 'microsoft.graph.fileAttachment'. Make sure to only use property names that are defined by the type or mark the type as open type."
            )));
        }
    }
    let name = obj
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
    let b64 = obj
        .get("contentBytes")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            gerr(
                400,
                "ErrorRequiredPropertyMissing",
                "Required property is missing: contentBytes.",
            )
        })?;
    let bytes = STANDARD
        .decode(b64)
        .map_err(|_| body_read("Cannot convert the literal to the expected type 'Edm.Binary'."))?;
    let ctype = obj
        .get("contentType")
        .and_then(Value::as_str)
        .unwrap_or("application/octet-stream");
    Ok(Att::new(
        name.to_owned(),
        ctype.to_owned(),
        bytes,
        obj.get("isInline")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        obj.get("contentId")
            .and_then(Value::as_str)
            .map(str::to_owned),
    ))
}

/// Applies a message JSON object (create or PATCH) onto `m`.
pub(super) fn apply_json(
    m: &mut Msg,
    obj: &Map<String, Value>,
    mode: Write,
) -> Result<(), GraphError> {
    for (k, v) in obj {
        if k == "@odata.type" {
            match v.as_str() {
                Some(t) if t.eq_ignore_ascii_case("#microsoft.graph.message") => continue,
                _ => {
                    return Err(body_read(format!(
                        "'{v}' is not a valid type for a message."
                    )));
                }
            }
        }
        if !MESSAGE_PROPS.contains(&k.as_str()) {
            return Err(body_read(format!(
                "The property '{k}' does not exist on type 'microsoft.graph.message'. Make sure to only use property names that are defined by the type or mark the type as open type."
            )));
        }
        let writable = match mode {
            Write::Create => CREATE_WRITABLE,
            Write::Patch => PATCH_WRITABLE,
        };
        if !writable.contains(&k.as_str()) {
            if mode == Write::Patch {
                return Err(gerr(
                    400,
                    "ErrorInvalidPropertyRequest",
                    format!("The property '{k}' can't be updated."),
                ));
            }
            continue; // read-only properties are ignored on create
        }
        if mode == Write::Patch && !m.is_draft && DRAFT_ONLY.contains(&k.as_str()) {
            return Err(gerr(
                400,
                "ErrorInvalidPropertyUpdateSentMessage",
                "Update operation is invalid for property of a sent message.",
            ));
        }
        match k.as_str() {
            "subject" => m.subject = v.as_str().unwrap_or_default().to_owned(),
            "body" => {
                let b = v
                    .as_object()
                    .ok_or_else(|| body_read("'body' must be a microsoft.graph.itemBody."))?;
                for bk in b.keys() {
                    if bk != "contentType" && bk != "content" {
                        return Err(body_read(format!(
                            "The property '{bk}' does not exist on type 'microsoft.graph.itemBody'."
                        )));
                    }
                }
                let ct = match b.get("contentType").and_then(Value::as_str) {
                    None => "text",
                    Some(t) if t.eq_ignore_ascii_case("html") => "html",
                    Some(t) if t.eq_ignore_ascii_case("text") => "text",
                    Some(t) => {
                        return Err(body_read(format!(
                            "Cannot convert the literal '{t}' to the expected type 'microsoft.graph.bodyType'."
                        )));
                    }
                };
                m.body_type = ct;
                m.body = b
                    .get("content")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
            }
            "toRecipients" => m.to = recipients(v, k)?,
            "ccRecipients" => m.cc = recipients(v, k)?,
            "bccRecipients" => m.bcc = recipients(v, k)?,
            "replyTo" => m.reply_to = recipients(v, k)?,
            "from" => {
                m.from = if v.is_null() {
                    None
                } else {
                    Some(recipient(v, k)?)
                }
            }
            "sender" => {
                m.sender = if v.is_null() {
                    None
                } else {
                    Some(recipient(v, k)?)
                }
            }
            "importance" => {
                let s = v.as_str().unwrap_or_default().to_ascii_lowercase();
                if !["low", "normal", "high"].contains(&s.as_str()) {
                    return Err(body_read(format!(
                        "Cannot convert the literal '{v}' to the expected type 'microsoft.graph.importance'."
                    )));
                }
                m.importance = s;
            }
            "inferenceClassification" => {
                let s = v.as_str().unwrap_or_default().to_ascii_lowercase();
                if !["focused", "other"].contains(&s.as_str()) {
                    return Err(body_read(format!(
                        "Cannot convert the literal '{v}' to the expected type 'microsoft.graph.inferenceClassificationType'."
                    )));
                }
                m.inference = s;
            }
            "categories" => {
                m.categories = v
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|c| c.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
            }
            "isRead" => m.is_read = v.as_bool().unwrap_or(m.is_read),
            "isDeliveryReceiptRequested" => m.delivery_receipt = v.as_bool().unwrap_or(false),
            "isReadReceiptRequested" => m.read_receipt = v.as_bool().unwrap_or(false),
            "flag" => {
                if let Some(s) = v.get("flagStatus").and_then(Value::as_str) {
                    m.flag_status = s.to_owned();
                }
            }
            "internetMessageId" => {
                let s = v.as_str().unwrap_or_default();
                if !(s.starts_with('<') && s.ends_with('>') && s.contains('@')) {
                    return Err(gerr(
                        400,
                        "ErrorInvalidInternetMessageId",
                        format!("The internet message id '{s}' is not valid."),
                    ));
                }
                m.internet_message_id = s.to_owned();
            }
            "internetMessageHeaders" => {
                let arr = v
                    .as_array()
                    .ok_or_else(|| body_read("'internetMessageHeaders' must be a collection."))?;
                let mut hs = vec![];
                for h in arr {
                    let name = h.get("name").and_then(Value::as_str).unwrap_or_default();
                    let value = h.get("value").and_then(Value::as_str).unwrap_or_default();
                    if !(name.len() > 2 && name[..2].eq_ignore_ascii_case("x-")) {
                        return Err(gerr(
                            400,
                            "InvalidInternetMessageHeader",
                            format!(
                                "The internet message header name '{name}' should start with 'x-' or 'X-'."
                            ),
                        ));
                    }
                    hs.push((name.to_owned(), value.to_owned()));
                }
                m.headers = hs;
            }
            "attachments" => {
                let arr = v
                    .as_array()
                    .ok_or_else(|| body_read("'attachments' must be a collection."))?;
                for a in arr {
                    m.attachments.push(file_attachment(a)?);
                }
            }
            _ => {}
        }
    }
    m.touch();
    Ok(())
}

impl Mailbox {
    pub(super) fn new(cfg: &MicrosoftConfig) -> Mailbox {
        let folders = FOLDERS
            .iter()
            .enumerate()
            .map(|(i, (wk, name))| Folder {
                id: exchange_id("AAMkAGFolder"),
                well_known: wk,
                display: (*name).to_owned(),
                parent: (i != ROOT).then_some(ROOT),
            })
            .collect();
        Mailbox {
            user_id: cfg.user_id.clone(),
            tenant_id: cfg.tenant_id.clone(),
            mail: cfg.mail.clone(),
            display_name: cfg.display_name.clone(),
            folders,
            messages: vec![],
            sessions: HashMap::new(),
            sent: vec![],
            delta: Default::default(),
        }
    }

    pub(super) fn user(&self) -> Addr {
        Addr {
            name: Some(self.display_name.clone()),
            address: self.mail.clone(),
        }
    }

    pub(super) fn folder(&self, key: &str) -> Option<usize> {
        self.folders.iter().position(|f| {
            f.id == key || (!f.well_known.is_empty() && f.well_known.eq_ignore_ascii_case(key))
        })
    }

    /// A message by either of its ids (Graph takes both whatever the `Prefer` header says).
    pub(super) fn find(&self, id: &str) -> Option<usize> {
        self.messages
            .iter()
            .position(|m| m.id == id || m.immutable_id == id)
    }

    /// Moves message `i` to folder `to`, as Exchange does: a new (default) id, a new change key;
    /// the immutable id stays.
    pub(super) fn move_to(&mut self, i: usize, to: usize) {
        let m = &mut self.messages[i];
        if m.folder == to {
            return;
        }
        m.folder = to;
        m.id = exchange_id("AAMkAGMsg");
        m.is_draft = to == DRAFTS && m.is_draft;
        m.touch();
    }

    /// A folder the user made, under `parent`.
    pub(super) fn create_folder(&mut self, name: &str, parent: usize) -> String {
        let id = exchange_id("AAMkAGFolder");
        self.folders.push(Folder {
            id: id.clone(),
            well_known: "",
            display: name.to_owned(),
            parent: Some(parent),
        });
        id
    }

    fn domain(&self) -> &str {
        self.mail
            .rsplit_once('@')
            .map(|(_, d)| d)
            .unwrap_or("fake.example")
    }

    pub(super) fn new_msg(&self, folder: usize) -> Msg {
        let t = now();
        Msg {
            id: exchange_id("AAMkAGMsg"),
            immutable_id: exchange_id("AAkALgImm"),
            folder,
            created: t,
            modified: t,
            received: t,
            sent: None,
            change_key: random_token(12),
            subject: String::new(),
            body_type: "text",
            body: String::new(),
            from: Some(self.user()),
            sender: Some(self.user()),
            to: vec![],
            cc: vec![],
            bcc: vec![],
            reply_to: vec![],
            internet_message_id: format!("<{}@{}>", random_token(18), self.domain()),
            conversation_id: exchange_id("AAQkAGConv"),
            conversation_index: STANDARD.encode(random_bytes(22)),
            is_draft: folder == DRAFTS,
            is_read: true,
            importance: "normal".into(),
            inference: "focused".into(),
            categories: vec![],
            flag_status: "notFlagged".into(),
            delivery_receipt: false,
            read_receipt: false,
            headers: vec![],
            attachments: vec![],
            in_reply_to: None,
            mime: None,
        }
    }

    /// The conversation of the message one of these ids names (In-Reply-To first).
    fn conversation_of(
        &self,
        in_reply_to: &[String],
        references: &[String],
    ) -> Option<(String, String)> {
        in_reply_to
            .iter()
            .chain(references.iter().rev())
            .find_map(|id| {
                self.messages
                    .iter()
                    .find(|m| m.internet_message_id == *id)
                    .map(|m| (m.conversation_id.clone(), id.clone()))
            })
    }

    /// A message from MIME (draft, sendMail or inbound), joined to its conversation.
    pub(super) fn msg_from_mime(&self, raw: &[u8], folder: usize) -> Option<(Msg, Parsed)> {
        let p = parse_mime(raw)?;
        let mut m = self.new_msg(folder);
        m.subject = p.subject.clone();
        m.body_type = p.body_type;
        m.body = p.body.clone();
        // Mail filed anywhere but Drafts and Sent Items came from someone else, unread.
        if folder != DRAFTS && folder != SENT_ITEMS {
            m.from = p.from.clone();
            m.sender = p.from.clone();
            m.is_read = false;
        }
        m.to = p.to.clone();
        m.cc = p.cc.clone();
        m.bcc = p.bcc.clone();
        m.reply_to = p.reply_to.clone();
        if let Some(id) = &p.message_id {
            m.internet_message_id = id.clone();
        }
        if let Some((conv, parent)) = self.conversation_of(&p.in_reply_to, &p.references) {
            m.conversation_id = conv;
            m.in_reply_to = Some(parent);
        } else {
            m.in_reply_to = p.in_reply_to.first().cloned();
        }
        m.headers = p.headers.clone();
        m.attachments = p.attachments.clone();
        m.mime = Some(strip_header(raw, "bcc"));
        Some((m, p))
    }

    /// A message from MIME filed in `folder`, received `age` ago (mail sent from Outlook's own
    /// apps lands in Sent Items, read, from the user).
    pub(super) fn file_mime(
        &mut self,
        raw: &[u8],
        folder: usize,
        age: Duration,
    ) -> Option<InboundMessage> {
        let (mut m, _) = self.msg_from_mime(raw, folder)?;
        m.received -= age;
        m.created -= age;
        if folder == SENT_ITEMS {
            m.sent = Some(m.received);
            m.from = Some(self.user());
            m.sender = Some(self.user());
        }
        let out = InboundMessage {
            id: m.id.clone(),
            immutable_id: m.immutable_id.clone(),
            internet_message_id: m.internet_message_id.clone(),
            conversation_id: m.conversation_id.clone(),
        };
        self.messages.push(m);
        Some(out)
    }

    /// Submits `m` for delivery: checks recipients, sender and size, records the sent item
    /// and (when `save`) files the copy in Sent Items under a new id.
    pub(super) fn submit(
        &mut self,
        mut m: Msg,
        via: SentVia,
        mime: Option<Vec<u8>>,
        save: bool,
        max_size: usize,
        base: &str,
    ) -> Result<(), GraphError> {
        let all: Vec<&Addr> = m.to.iter().chain(&m.cc).chain(&m.bcc).collect();
        if all.is_empty() {
            return Err(gerr(
                400,
                "ErrorInvalidRecipients",
                "At least one recipient isn't valid., A message can't be sent because it contains no recipients.",
            ));
        }
        if let Some(bad) = all.iter().find(|a| !valid_address(&a.address)) {
            return Err(gerr(
                400,
                "ErrorInvalidRecipients",
                format!(
                    "At least one recipient isn't valid., Recipient '{}' isn't resolved. All recipients must be resolved before a message can be submitted.",
                    bad.address
                ),
            ));
        }
        for who in [&m.from, &m.sender].into_iter().flatten() {
            if !who.address.eq_ignore_ascii_case(&self.mail) {
                return Err(gerr(
                    403,
                    "ErrorSendAsDenied",
                    "The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account., Cannot submit message.",
                ));
            }
        }
        if m.size() > max_size {
            return Err(gerr(
                400,
                "ErrorMessageSizeExceeded",
                "The message exceeds the maximum supported size.",
            ));
        }
        let t = now();
        // A new item in Sent Items, not the draft moved.
        m.id = exchange_id("AAMkAGMsg");
        m.immutable_id = exchange_id("AAkALgImm");
        m.folder = SENT_ITEMS;
        m.is_draft = false;
        m.is_read = true;
        m.sent = Some(t);
        m.received = t;
        m.from = Some(self.user());
        m.sender = Some(self.user());
        m.touch();
        let content = match mime {
            Some(raw) => SentContent::Mime(strip_header(&raw, "bcc")),
            None => {
                let mut v = self.message_json(&m, base, Some(&all_props_with_headers()), false);
                if let Some(o) = v.as_object_mut() {
                    o.remove("bccRecipients");
                    o.remove("@odata.etag");
                }
                SentContent::Json(v)
            }
        };
        self.sent.push(SentItem {
            via,
            content,
            subject: m.subject.clone(),
            internet_message_id: m.internet_message_id.clone(),
            to: m.to.iter().map(|a| a.address.clone()).collect(),
            cc: m.cc.iter().map(|a| a.address.clone()).collect(),
            bcc: m.bcc.iter().map(|a| a.address.clone()).collect(),
            attachments: m.attachments.iter().map(Att::sent).collect(),
            conversation_id: m.conversation_id.clone(),
            headers: m.headers.clone(),
            sent_items_id: save.then(|| m.id.clone()),
        });
        if save {
            self.messages.push(m);
        }
        Ok(())
    }

    /// A draft replying to `parent` (createReply): `RE:` subject, the parent's sender (or
    /// Reply-To) as recipient, quoted body, same conversation.
    pub(super) fn reply_draft(&self, parent: &Msg, comment: &str) -> Msg {
        let mut m = self.new_msg(DRAFTS);
        m.subject = format!("RE: {}", parent.subject);
        m.to = if parent.reply_to.is_empty() {
            parent.from.iter().cloned().collect()
        } else {
            parent.reply_to.clone()
        };
        m.conversation_id = parent.conversation_id.clone();
        m.in_reply_to = Some(parent.internet_message_id.clone());
        let quoted = if parent.body_type == "html" {
            parent.body.clone()
        } else {
            format!("<pre>{}</pre>", super::html_escape(&parent.body))
        };
        let from = parent
            .from
            .as_ref()
            .map(|a| a.address.as_str())
            .unwrap_or_default();
        m.body_type = "html";
        m.body = format!(
            "<html><body><div>{}</div><hr><div><b>From:</b> {}<br><b>Subject:</b> {}</div>{quoted}</body></html>",
            super::html_escape(comment),
            super::html_escape(from),
            super::html_escape(&parent.subject)
        );
        m
    }

    pub(super) fn message_json(
        &self,
        m: &Msg,
        base: &str,
        select: Option<&[String]>,
        expand_attachments: bool,
    ) -> Value {
        let folder_id = &self.folders[m.folder].id;
        let etag = format!("W/\"{}\"", m.change_key);
        let preview: String = if m.body_type == "html" {
            html_to_text(&m.body)
        } else {
            m.body.clone()
        }
        .chars()
        .take(255)
        .collect();
        let mut full = json!({
            "@odata.etag": etag,
            "id": m.id,
            "createdDateTime": iso(m.created),
            "lastModifiedDateTime": iso(m.modified),
            "changeKey": m.change_key,
            "categories": m.categories,
            "receivedDateTime": iso(m.received),
            "sentDateTime": m.sent.map(iso),
            "hasAttachments": m.attachments.iter().any(|a| !a.is_inline),
            "internetMessageId": m.internet_message_id,
            "subject": m.subject,
            "bodyPreview": preview,
            "importance": m.importance,
            "parentFolderId": folder_id,
            "conversationId": m.conversation_id,
            "conversationIndex": m.conversation_index,
            "isDeliveryReceiptRequested": m.delivery_receipt,
            "isReadReceiptRequested": m.read_receipt,
            "isRead": m.is_read,
            "isDraft": m.is_draft,
            "webLink": format!("{base}/owa/?ItemID={}&exvsurl=1&viewmodel=ReadMessageItem", m.id),
            "inferenceClassification": m.inference,
            "body": {"contentType": m.body_type, "content": m.body},
            "sender": m.sender.as_ref().map(Addr::json),
            "from": m.from.as_ref().map(Addr::json),
            "toRecipients": m.to.iter().map(Addr::json).collect::<Vec<_>>(),
            "ccRecipients": m.cc.iter().map(Addr::json).collect::<Vec<_>>(),
            "bccRecipients": m.bcc.iter().map(Addr::json).collect::<Vec<_>>(),
            "replyTo": m.reply_to.iter().map(Addr::json).collect::<Vec<_>>(),
            "flag": {"flagStatus": m.flag_status},
        });
        if let Some(names) = select {
            let obj = full.as_object().expect("object");
            let mut out = Map::new();
            out.insert("@odata.etag".into(), obj["@odata.etag"].clone());
            out.insert("id".into(), obj["id"].clone());
            for n in names {
                if n == "internetMessageHeaders" {
                    out.insert(n.clone(), headers_json(&m.headers));
                } else if n == "uniqueBody" {
                    out.insert(n.clone(), obj["body"].clone());
                } else if let Some(v) = obj.get(n) {
                    out.insert(n.clone(), v.clone());
                }
            }
            full = Value::Object(out);
        }
        if expand_attachments {
            full["attachments"] =
                Value::Array(m.attachments.iter().map(|a| a.json(true)).collect());
        }
        full
    }

    pub(super) fn folder_json(&self, i: usize) -> Value {
        let f = &self.folders[i];
        let in_folder = self.messages.iter().filter(|m| m.folder == i);
        json!({
            "id": f.id,
            "displayName": f.display,
            "parentFolderId": f.parent.map(|p| self.folders[p].id.clone()).unwrap_or_else(|| self.folders[ROOT].id.clone()),
            "childFolderCount": self.folders.iter().filter(|c| c.parent == Some(i)).count(),
            "unreadItemCount": in_folder.clone().filter(|m| !m.is_read).count(),
            "totalItemCount": in_folder.count(),
            "isHidden": false,
        })
    }

    pub(super) fn folder_messages_json(&self, base: &str, folder: &str) -> Vec<Value> {
        let Some(f) = self.folder(folder) else {
            return vec![];
        };
        let sel = all_props_with_headers();
        let mut ms: Vec<&Msg> = self.messages.iter().filter(|m| m.folder == f).collect();
        ms.sort_by_key(|m| std::cmp::Reverse(m.received));
        ms.into_iter()
            .map(|m| self.message_json(m, base, Some(&sel), false))
            .collect()
    }
}

fn headers_json(h: &[(String, String)]) -> Value {
    Value::Array(
        h.iter()
            .map(|(n, v)| json!({"name": n, "value": v}))
            .collect(),
    )
}

/// A `$select` naming every default property plus `internetMessageHeaders`.
pub(super) fn all_props_with_headers() -> Vec<String> {
    MESSAGE_PROPS
        .iter()
        .filter(|p| {
            !matches!(
                **p,
                "attachments"
                    | "extensions"
                    | "multiValueExtendedProperties"
                    | "singleValueExtendedProperties"
                    | "uniqueBody"
            )
        })
        .map(|p| (*p).to_owned())
        .collect()
}
