//! The fake's mailbox: stored messages with Gmail ids, labels, threads and history ids, and
//! the Gmail views of a message (minimal, metadata, full, raw).

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use mail_parser::{Address, Message, MessageParser, MimeHeaders as _, PartType};
use serde_json::{Value, json};

/// Gmail's system labels, as `labels.list` returns them.
pub(super) const SYSTEM_LABELS: &[(&str, Option<(&str, &str)>)] = &[
    ("CHAT", Some(("hide", "labelHide"))),
    ("SENT", None),
    ("INBOX", None),
    ("IMPORTANT", None),
    ("TRASH", None),
    ("DRAFT", None),
    ("SPAM", None),
    ("CATEGORY_FORUMS", None),
    ("CATEGORY_UPDATES", None),
    ("CATEGORY_PERSONAL", None),
    ("CATEGORY_PROMOTIONS", None),
    ("CATEGORY_SOCIAL", None),
    ("STARRED", None),
    ("UNREAD", None),
];

pub(super) struct Stored {
    pub id: String,
    pub thread_id: String,
    pub labels: Vec<String>,
    pub raw: Vec<u8>,
    pub internal_date: i64,
    pub history_id: u64,
    /// Message-ID without angle brackets.
    pub message_id: Option<String>,
    pub subject: String,
    pub snippet: String,
}

/// One change to the mailbox, as `history.list` reports it.
#[derive(Clone)]
pub(super) struct HistoryRecord {
    pub id: u64,
    pub message_id: String,
    pub thread_id: String,
    pub change: Change,
}

#[derive(Clone, PartialEq, Eq)]
pub(super) enum Change {
    /// `messagesAdded`, with the labels the message had then.
    Added(Vec<String>),
    /// `messagesDeleted` (a permanent delete, not a move to TRASH).
    Deleted,
    /// `labelsAdded`.
    LabelsAdded(Vec<String>),
    /// `labelsRemoved`.
    LabelsRemoved(Vec<String>),
}

impl Change {
    /// The `historyTypes` value that selects it.
    pub fn history_type(&self) -> &'static str {
        match self {
            Change::Added(_) => "messageAdded",
            Change::Deleted => "messageDeleted",
            Change::LabelsAdded(_) => "labelAdded",
            Change::LabelsRemoved(_) => "labelRemoved",
        }
    }
}

pub(super) struct Mailbox {
    messages: Vec<Stored>,
    history_id: u64,
    seq: u64,
    id_base: u64,
    /// Every change since `history_floor`, oldest first.
    history: Vec<HistoryRecord>,
    /// History before this id is gone (Google keeps about a week): a `startHistoryId` below it
    /// answers 404.
    history_floor: u64,
    /// User labels: (id `Label_N`, name).
    user_labels: Vec<(String, String)>,
}

/// What the headers of a message say, for threading and recipients.
pub(super) struct HeaderFacts {
    pub message_id: Option<String>,
    pub subject: String,
    pub refs: Vec<String>,
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(super) fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("random");
    u64::from_le_bytes(b)
}

pub(super) fn random_token(len: usize) -> String {
    let mut b = vec![0u8; len];
    getrandom::fill(&mut b).expect("random");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Subjects compared the way Gmail threads them: without `Re:`/`Fwd:` prefixes, case and
/// runs of whitespace.
pub(super) fn normalize_subject(s: &str) -> String {
    let mut s = s.trim();
    loop {
        let lower = s.to_ascii_lowercase();
        let mut stripped = None;
        for p in ["re:", "fwd:", "fw:", "aw:", "sv:", "wg:"] {
            if lower.starts_with(p) {
                stripped = Some(s[p.len()..].trim_start());
                break;
            }
        }
        match stripped {
            Some(rest) => s = rest,
            None => break,
        }
    }
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn strip_brackets(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned()
}

pub(super) fn header_facts(raw: &[u8]) -> HeaderFacts {
    let Some(m) = MessageParser::default().parse_headers(raw) else {
        return HeaderFacts {
            message_id: None,
            subject: String::new(),
            refs: vec![],
        };
    };
    let mut refs: Vec<String> = vec![];
    for v in [m.in_reply_to(), m.references()] {
        for id in v.as_text_list().unwrap_or_default() {
            let id = strip_brackets(id);
            if !id.is_empty() && !refs.contains(&id) {
                refs.push(id);
            }
        }
    }
    HeaderFacts {
        message_id: m.message_id().map(strip_brackets).filter(|s| !s.is_empty()),
        subject: m.subject().unwrap_or("").to_owned(),
        refs,
    }
}

/// The recipients Gmail would take from the To, Cc and Bcc headers: `(all, bcc)`, or the
/// error message Gmail answers (`Invalid To header`).
pub(super) fn recipients(raw: &[u8]) -> Result<(Vec<String>, Vec<String>), String> {
    let m = MessageParser::default()
        .parse_headers(raw)
        .ok_or_else(|| "Recipient address required".to_owned())?;
    let mut all = vec![];
    let mut bcc = vec![];
    for (name, value) in [("To", m.to()), ("Cc", m.cc()), ("Bcc", m.bcc())] {
        let Some(addr) = value else { continue };
        let mut found = vec![];
        let mut check = |a: &mail_parser::Addr<'_>| match a.address.as_deref() {
            Some(x) if valid_address(x.trim()) => {
                found.push(x.trim().to_owned());
                true
            }
            _ => false,
        };
        let ok = match addr {
            Address::List(list) => list.iter().all(&mut check),
            Address::Group(groups) => groups.iter().all(|g| g.addresses.iter().all(&mut check)),
        };
        if !ok {
            return Err(format!("Invalid {name} header"));
        }
        if name == "Bcc" {
            bcc.extend(found.iter().cloned());
        }
        all.extend(found);
    }
    if all.is_empty() {
        return Err("Recipient address required".to_owned());
    }
    Ok((all, bcc))
}

/// An RFC 5322 addr-spec with a dotted domain (or an address literal); UTF-8 allowed.
pub(super) fn valid_address(a: &str) -> bool {
    let Some((local, domain)) = a.rsplit_once('@') else {
        return false;
    };
    if local.is_empty() || local.len() > 64 || domain.is_empty() || domain.len() > 255 {
        return false;
    }
    let local_ok = if local.len() >= 2 && local.starts_with('"') && local.ends_with('"') {
        !local[1..local.len() - 1]
            .chars()
            .any(|c| c.is_control() || c == '"')
    } else {
        !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local.chars().all(|c| {
                c.is_ascii_alphanumeric() || !c.is_ascii() || "!#$%&'*+-/=?^_`{|}~.".contains(c)
            })
    };
    let domain_ok = if domain.starts_with('[') && domain.ends_with(']') {
        domain.len() > 2
    } else {
        let labels: Vec<&str> = domain.split('.').collect();
        labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_alphanumeric() || c == '-')
            })
    };
    local_ok && domain_ok
}

fn snippet_of(raw: &[u8]) -> String {
    let Some(m) = MessageParser::default().parse(raw) else {
        return String::new();
    };
    let text = m.body_text(0).map(|t| t.into_owned()).unwrap_or_default();
    let collapsed: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(200)
        .collect();
    super::errors::html_escape(&collapsed)
}

impl Mailbox {
    pub fn new() -> Self {
        let history_id = 100_000 + random_u64() % 100_000;
        Self {
            messages: vec![],
            history_id,
            seq: 0,
            id_base: (now_ms() as u64) << 16,
            history: vec![],
            history_floor: history_id,
            user_labels: vec![],
        }
    }

    /// The history records after `start`, or `None` when `start` is older than the retained
    /// history (Google's 404).
    pub fn history_since(&self, start: u64) -> Option<Vec<&HistoryRecord>> {
        if start < self.history_floor {
            return None;
        }
        Some(self.history.iter().filter(|r| r.id > start).collect())
    }

    /// Forgets every history record so far, as Google does after about a week: a
    /// `startHistoryId` older than now answers 404.
    pub fn expire_history(&mut self) {
        self.history.clear();
        self.history_floor = self.history_id;
    }

    /// The user labels, (id, name).
    pub fn user_labels(&self) -> &[(String, String)] {
        &self.user_labels
    }

    /// Creates a user label (or finds one with that name); answers its id.
    pub fn create_label(&mut self, name: &str) -> String {
        if let Some((id, _)) = self.user_labels.iter().find(|(_, n)| n == name) {
            return id.clone();
        }
        let id = format!("Label_{}", self.user_labels.len() + 1);
        self.user_labels.push((id.clone(), name.to_owned()));
        id
    }

    /// Whether `label` is a system label or one of the user labels.
    pub fn label_exists(&self, label: &str) -> bool {
        SYSTEM_LABELS.iter().any(|(id, _)| *id == label)
            || self.user_labels.iter().any(|(id, _)| id == label)
    }

    fn record(&mut self, message_id: String, thread_id: String, change: Change) -> u64 {
        let id = self.bump_history();
        self.history.push(HistoryRecord {
            id,
            message_id,
            thread_id,
            change,
        });
        id
    }

    /// Adds and removes labels of a message (`messages.modify`); each effective change is one
    /// history record. `false` when there is no such message.
    pub fn modify(&mut self, id: &str, add: &[&str], remove: &[&str]) -> bool {
        let Some(i) = self.messages.iter().position(|m| m.id == id) else {
            return false;
        };
        let have = self.messages[i].labels.clone();
        let added: Vec<String> = add
            .iter()
            .filter(|l| !have.iter().any(|h| h == *l))
            .map(|l| (*l).to_owned())
            .collect();
        let removed: Vec<String> = remove
            .iter()
            .filter(|l| have.iter().any(|h| h == *l))
            .map(|l| (*l).to_owned())
            .collect();
        let (mid, tid) = (
            self.messages[i].id.clone(),
            self.messages[i].thread_id.clone(),
        );
        if !added.is_empty() {
            self.messages[i].labels.extend(added.iter().cloned());
            let h = self.record(mid.clone(), tid.clone(), Change::LabelsAdded(added));
            self.messages[i].history_id = h;
        }
        if !removed.is_empty() {
            self.messages[i].labels.retain(|l| !removed.contains(l));
            let h = self.record(mid, tid, Change::LabelsRemoved(removed));
            self.messages[i].history_id = h;
        }
        true
    }

    /// Deletes a message for good (`messages.delete`); `false` when there is none.
    pub fn delete(&mut self, id: &str) -> bool {
        let Some(i) = self.messages.iter().position(|m| m.id == id) else {
            return false;
        };
        let m = self.messages.remove(i);
        self.record(m.id, m.thread_id, Change::Deleted);
        true
    }

    /// The current history id; every change moves it on by a gappy step.
    pub fn history_id(&self) -> u64 {
        self.history_id
    }

    fn bump_history(&mut self) -> u64 {
        self.history_id += 1 + random_u64() % 7;
        self.history_id
    }

    fn new_id(&mut self) -> String {
        self.seq += 1;
        format!("{:x}", self.id_base + self.seq * 17 + random_u64() % 16)
    }

    pub fn messages(&self) -> &[Stored] {
        &self.messages
    }

    pub fn get(&self, id: &str) -> Option<&Stored> {
        self.messages.iter().find(|m| m.id == id)
    }

    pub fn thread(&self, thread_id: &str) -> Vec<&Stored> {
        self.messages
            .iter()
            .filter(|m| m.thread_id == thread_id)
            .collect()
    }

    pub fn thread_count(&self) -> usize {
        self.messages
            .iter()
            .map(|m| m.thread_id.as_str())
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// The thread a message joins: `candidate` if one of its messages is referenced by
    /// In-Reply-To/References and has the same (normalised) subject.
    pub fn matches_thread(&self, candidate: &str, facts: &HeaderFacts) -> bool {
        let subject = normalize_subject(&facts.subject);
        self.messages.iter().any(|m| {
            m.thread_id == candidate
                && m.message_id
                    .as_ref()
                    .is_some_and(|id| facts.refs.contains(id))
                && normalize_subject(&m.subject) == subject
        })
    }

    /// The thread Gmail files an incoming message into (references + subject), if any.
    pub fn thread_for_inbound(&self, facts: &HeaderFacts) -> Option<String> {
        let subject = normalize_subject(&facts.subject);
        self.messages
            .iter()
            .rev()
            .find(|m| {
                m.message_id
                    .as_ref()
                    .is_some_and(|id| facts.refs.contains(id))
                    && normalize_subject(&m.subject) == subject
            })
            .map(|m| m.thread_id.clone())
    }

    /// Stores `raw` (adding a Message-ID when it has none, as Gmail does) in `thread_id`
    /// (`None`: a new thread) with `labels`.
    pub fn insert(&mut self, raw: Vec<u8>, thread_id: Option<String>, labels: &[&str]) -> &Stored {
        self.insert_at(raw, thread_id, labels, now_ms())
    }

    /// [`Mailbox::insert`] with the time Gmail received it (`internalDate`, ms).
    pub fn insert_at(
        &mut self,
        raw: Vec<u8>,
        thread_id: Option<String>,
        labels: &[&str],
        internal_date: i64,
    ) -> &Stored {
        let mut raw = raw;
        let mut facts = header_facts(&raw);
        if facts.message_id.is_none() {
            let id = format!("CAfake{}@mail.gmail.com", random_token(18));
            let eol = if raw.windows(2).any(|w| w == b"\r\n") {
                "\r\n"
            } else {
                "\n"
            };
            let mut with = format!("Message-ID: <{id}>{eol}").into_bytes();
            with.extend_from_slice(&raw);
            raw = with;
            facts.message_id = Some(id);
        }
        let id = self.new_id();
        let thread_id = thread_id.unwrap_or_else(|| id.clone());
        let labels: Vec<String> = labels.iter().map(|s| (*s).to_owned()).collect();
        let history_id = self.record(id.clone(), thread_id.clone(), Change::Added(labels.clone()));
        let snippet = snippet_of(&raw);
        self.messages.push(Stored {
            thread_id,
            id,
            labels,
            raw,
            internal_date,
            history_id,
            message_id: facts.message_id,
            subject: facts.subject,
            snippet,
        });
        self.messages.last().expect("just pushed")
    }
}

/// A stored message as `messages.list` shows it.
pub(super) fn list_entry(m: &Stored) -> Value {
    json!({"id": m.id, "threadId": m.thread_id})
}

/// `format`: minimal | full | raw | metadata (already validated, lowercase).
pub(super) fn message_view(m: &Stored, format: &str, metadata_headers: &[String]) -> Value {
    let mut v = json!({
        "id": m.id,
        "threadId": m.thread_id,
        "labelIds": m.labels,
        "snippet": m.snippet,
        "sizeEstimate": m.raw.len(),
        "historyId": m.history_id.to_string(),
        "internalDate": m.internal_date.to_string(),
    });
    match format {
        "raw" => v["raw"] = json!(URL_SAFE.encode(&m.raw)),
        "metadata" => {
            if let Some(msg) = MessageParser::default().parse_headers(&m.raw[..]) {
                let mut headers = part_headers(&m.raw, &msg, 0);
                if !metadata_headers.is_empty() {
                    headers.retain(|(name, _)| {
                        metadata_headers
                            .iter()
                            .any(|h| h.eq_ignore_ascii_case(name))
                    });
                }
                v["payload"] = json!({
                    "mimeType": mime_type(&msg, 0),
                    "headers": headers_json(&headers),
                });
            }
        }
        "full" => {
            if let Some(msg) = MessageParser::default().parse(&m.raw[..]) {
                v["payload"] = part_json(&m.raw, &msg, 0, String::new(), &m.id);
            }
        }
        _ => {}
    }
    v
}

/// The body of an attachment (`messages.attachments.get`), found by its id.
pub(super) fn attachment(m: &Stored, attachment_id: &str) -> Option<Value> {
    let msg = MessageParser::default().parse(&m.raw[..])?;
    let mut found = None;
    walk(&msg, 0, String::new(), &mut |idx, part_id| {
        if attachment_id_for(&m.id, part_id) == attachment_id {
            let data = msg.parts[idx].contents();
            found = Some(json!({"size": data.len(), "data": URL_SAFE.encode(data)}));
        }
    });
    found
}

fn walk(msg: &Message<'_>, idx: usize, part_id: String, f: &mut dyn FnMut(usize, &str)) {
    f(idx, &part_id);
    if let PartType::Multipart(children) = &msg.parts[idx].body {
        for (i, c) in children.iter().enumerate() {
            let child_id = if part_id.is_empty() {
                i.to_string()
            } else {
                format!("{part_id}.{i}")
            };
            walk(msg, *c as usize, child_id, f);
        }
    }
}

fn attachment_id_for(message_id: &str, part_id: &str) -> String {
    format!(
        "ANGjdJ{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{message_id}/{part_id}/attachment"))
    )
}

fn unfold(s: &str) -> String {
    s.replace("\r\n", "").replace('\n', "").trim().to_owned()
}

fn decode_words(v: &str) -> String {
    if !v.contains("=?") {
        return v.to_owned();
    }
    let probe = format!("Subject: {v}\r\n\r\n");
    MessageParser::default()
        .parse_headers(probe.as_bytes())
        .and_then(|m| m.subject().map(str::to_owned))
        .unwrap_or_else(|| v.to_owned())
}

/// Headers of part `idx` as written (names as in the message, values unfolded and
/// RFC 2047-decoded).
fn part_headers(raw: &[u8], msg: &Message<'_>, idx: usize) -> Vec<(String, String)> {
    msg.parts[idx]
        .headers
        .iter()
        .filter_map(|h| {
            let (field, start, end) = (
                h.offset_field as usize,
                h.offset_start as usize,
                h.offset_end as usize,
            );
            let name = std::str::from_utf8(raw.get(field..start.checked_sub(1)?)?).ok()?;
            let value = String::from_utf8_lossy(raw.get(start..end)?);
            Some((name.trim().to_owned(), decode_words(&unfold(&value))))
        })
        .collect()
}

fn headers_json(headers: &[(String, String)]) -> Value {
    Value::Array(
        headers
            .iter()
            .map(|(n, v)| json!({"name": n, "value": v}))
            .collect(),
    )
}

fn mime_type(msg: &Message<'_>, idx: usize) -> String {
    let part = &msg.parts[idx];
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None => match part.body {
            PartType::Multipart(_) => "multipart/mixed".into(),
            _ => "text/plain".into(),
        },
    }
}

fn part_json(raw: &[u8], msg: &Message<'_>, idx: usize, part_id: String, id: &str) -> Value {
    let part = &msg.parts[idx];
    let filename = part.attachment_name().unwrap_or("").to_owned();
    let mut v = json!({
        "partId": part_id,
        "mimeType": mime_type(msg, idx),
        "filename": filename,
        "headers": headers_json(&part_headers(raw, msg, idx)),
    });
    match &part.body {
        PartType::Multipart(children) => {
            v["body"] = json!({"size": 0});
            let parts: Vec<Value> = children
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let child = if part_id.is_empty() {
                        i.to_string()
                    } else {
                        format!("{part_id}.{i}")
                    };
                    part_json(raw, msg, *c as usize, child, id)
                })
                .collect();
            v["parts"] = Value::Array(parts);
        }
        _ => {
            let data = part.contents();
            v["body"] = if !filename.is_empty() {
                json!({"attachmentId": attachment_id_for(id, &part_id), "size": data.len()})
            } else if data.is_empty() {
                json!({"size": 0})
            } else {
                json!({"size": data.len(), "data": URL_SAFE.encode(data)})
            };
        }
    }
    v
}

/// `raw` without its top-level Bcc header (what recipients receive).
pub(super) fn without_bcc(raw: &[u8]) -> Vec<u8> {
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
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            skipping = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"bcc:");
        }
        if !skipping {
            out.extend_from_slice(line);
        }
        i = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_like_gmail() {
        for ok in [
            "a@b.co",
            "first.last+tag@sub.example.com",
            "ü@bücher.de",
            "\"a b\"@x.io",
        ] {
            assert!(valid_address(ok), "{ok}");
        }
        for bad in [
            "bob",
            "bob@",
            "@x.com",
            "a b@c.com",
            "bob@@x.com",
            "bob@x..com",
            "bob@localhost",
            ".a@b.c",
        ] {
            assert!(!valid_address(bad), "{bad}");
        }
    }

    #[test]
    fn recipients_come_from_to_cc_and_bcc() {
        let raw = b"To: A <a@x.io>, b@y.io\r\nCc: c@z.io\r\nBcc: d@w.io\r\nSubject: s\r\n\r\nhi";
        let (all, bcc) = recipients(raw).unwrap();
        assert_eq!(all, ["a@x.io", "b@y.io", "c@z.io", "d@w.io"]);
        assert_eq!(bcc, ["d@w.io"]);
        assert_eq!(
            recipients(b"Subject: s\r\n\r\nhi").unwrap_err(),
            "Recipient address required"
        );
        assert_eq!(
            recipients(b"To: bob\r\n\r\nhi").unwrap_err(),
            "Invalid To header"
        );
        assert_eq!(
            recipients(b"To: a@x.io\r\nCc: nope@\r\n\r\nhi").unwrap_err(),
            "Invalid Cc header"
        );
    }

    #[test]
    fn subjects_compare_without_reply_prefixes() {
        assert_eq!(
            normalize_subject("Re: RE:  Fwd: Hello   world"),
            "hello world"
        );
        assert_ne!(
            normalize_subject("Re: Hello"),
            normalize_subject("Hello there")
        );
    }

    #[test]
    fn bcc_is_removed_with_its_continuation_lines() {
        let raw =
            b"From: a@x.io\r\nBcc: b@y.io,\r\n c@z.io\r\nTo: d@w.io\r\n\r\nBcc: body stays\r\n";
        assert_eq!(
            without_bcc(raw),
            b"From: a@x.io\r\nTo: d@w.io\r\n\r\nBcc: body stays\r\n".to_vec()
        );
    }
}
