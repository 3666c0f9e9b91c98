//! `OutgoingEmail` → RFC 5322 bytes, with lettre's builder.

use std::time::{Duration, UNIX_EPOCH};

use lettre::Address;
use lettre::Message;
use lettre::address::Envelope;
use lettre::message::header::{
    self, ContentDisposition, ContentTransferEncoding, ContentType, HeaderName, HeaderValue,
    Headers,
};
use lettre::message::{Body, Mailboxes, MultiPart, SinglePart};
use mailroom_core::email::{OutgoingAttachment, OutgoingEmail, ReplyParent};

use crate::error::MimeError;
use crate::guard;

/// An email ready to send: the exact bytes and the SMTP envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltMessage {
    /// RFC 5322 bytes, CRLF line endings, 7-bit clean, without any Bcc header.
    pub bytes: Vec<u8>,
    /// The Message-ID header, as given: `<id@domain>`.
    pub message_id: String,
    /// MAIL FROM: the sender's address, domain in ASCII.
    pub envelope_from: String,
    /// RCPT TO: To, then Cc, then Bcc, deduplicated case-insensitively (first spelling kept),
    /// domains in ASCII.
    pub envelope_to: Vec<String>,
}

/// Dates lettre (httpdate) can format: from 1970 up to the end of year 9999.
const MAX_DATE_MS: i64 = 253_402_300_800_000;

/// The subject of a reply: `Re: <subject>`, or the subject unchanged when it already starts
/// with `Re:` (any case). An empty (or blank) subject takes the parent's. Surrounding
/// whitespace is trimmed.
pub fn reply_subject(subject: &str, parent: Option<&str>) -> String {
    let own = subject.trim();
    let base = if own.is_empty() {
        parent.map(str::trim).unwrap_or_default()
    } else {
        own
    };
    let has_re = base.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("re:"));
    if has_re {
        base.to_owned()
    } else {
        format!("Re: {base}").trim_end().to_owned()
    }
}

/// Builds the RFC 5322 message for `email`.
///
/// - `message_id` (`<id@domain>`, checked) becomes the Message-ID header; `date_ms` (Unix
///   milliseconds, 1970–9999) the Date header, in UTC.
/// - Body: text only → one `text/plain; charset=utf-8` part. With HTML →
///   `multipart/alternative` (text, then HTML); inline attachments wrap the HTML in
///   `multipart/related`; other attachments wrap everything in `multipart/mixed`.
/// - An attachment is inline when it has a `cid`, or (with HTML) when the HTML references
///   `cid:<its filename>`, which then is its Content-ID. Without HTML every attachment is a
///   plain attachment.
/// - Attachments are always base64 so their bytes come back exactly.
/// - Addresses get punycode domains; non-ASCII names and subjects RFC 2047, non-ASCII file
///   names RFC 2231. Bcc recipients are in `envelope_to` only, never in a header.
/// - Replies get `In-Reply-To`, `References` (parent's references + parent id) and a
///   [`reply_subject`].
/// - Custom headers are appended to the top-level header block as given (a repeated name is
///   repeated); `Reply-To` is parsed and re-encoded as an address list.
pub fn build_message(
    email: &OutgoingEmail,
    message_id: &str,
    date_ms: i64,
) -> Result<BuiltMessage, MimeError> {
    guard::check_message_id("message_id", message_id)?;
    if !(0..MAX_DATE_MS).contains(&date_ms) {
        return Err(MimeError::build(format!(
            "the date {date_ms} ms is outside 1970–9999"
        )));
    }
    let date = UNIX_EPOCH + Duration::from_millis(date_ms.unsigned_abs());

    let from = guard::mailbox("from", &email.from)?;
    let envelope_from = from.email.clone();
    let mut builder = Message::builder().from(from);
    let mut recipients: Vec<Address> = vec![];
    for (i, a) in email.to.iter().enumerate() {
        let m = guard::mailbox(&format!("to[{i}]"), a)?;
        recipients.push(m.email.clone());
        builder = builder.to(m);
    }
    for (i, a) in email.cc.iter().enumerate() {
        let m = guard::mailbox(&format!("cc[{i}]"), a)?;
        recipients.push(m.email.clone());
        builder = builder.cc(m);
    }
    // Bcc addresses go to the envelope only: lettre would drop a Bcc header after deriving the
    // envelope, but we never give it one and set the envelope ourselves.
    for (i, a) in email.bcc.iter().enumerate() {
        recipients.push(guard::mailbox(&format!("bcc[{i}]"), a)?.email);
    }
    let recipients = dedup_case_insensitive(recipients);
    if recipients.is_empty() {
        return Err(MimeError::build("the email has no recipient"));
    }

    let mut extra_lines = String::new();
    let mut reply_to = Mailboxes::new();
    for (i, (name, value)) in email.custom_headers.iter().enumerate() {
        guard::check_custom_header(i, name, value)?;
        if name.eq_ignore_ascii_case("reply-to") {
            for m in guard::reply_to_mailboxes(&format!("custom_headers[{i}].value"), value)? {
                reply_to.push(m);
            }
        } else {
            extra_lines.push_str(&raw_header_line(name, value)?);
        }
    }
    if reply_to.iter().next().is_some() {
        builder = builder.mailbox(header::ReplyTo::from(reply_to));
    }

    let subject = match &email.reply {
        Some(parent) => reply_subject(&email.subject, parent.subject.as_deref()),
        None => email.subject.clone(),
    };
    guard::check_header_value("subject", &subject)?;
    builder = builder
        .subject(subject)
        .date(date)
        .message_id(Some(message_id.to_owned()));
    if let Some(parent) = &email.reply {
        let (in_reply_to, references) = threading(parent)?;
        builder = builder.in_reply_to(in_reply_to).references(references);
    }

    let envelope = Envelope::new(Some(envelope_from.clone()), recipients.clone())
        .map_err(|e| MimeError::build(format!("envelope: {e}")))?;
    builder = builder.envelope(envelope);

    let message = match body(email)? {
        Some(part) => builder.multipart(part),
        // Not `singlepart`: a top-level single part ends with an extra CRLF that readers take
        // as part of the text. A raw body with the same headers keeps the text exact.
        None => builder
            .header(header::MIME_VERSION_1_0)
            .header(ContentType::TEXT_PLAIN)
            .body(normalize_newlines(&email.text)),
    }
    .map_err(|e| MimeError::build(e.to_string()))?;

    let mut bytes = message.formatted();
    if !extra_lines.is_empty() {
        // `formatted()` is the top-level headers' Display followed by the body part; splice the
        // custom lines in at the end of that header block.
        let head = message.headers().to_string();
        let at = if bytes.starts_with(head.as_bytes()) {
            head.len()
        } else {
            0
        };
        bytes.splice(at..at, extra_lines.into_bytes());
    }

    Ok(BuiltMessage {
        bytes,
        message_id: message_id.to_owned(),
        envelope_from: envelope_from.to_string(),
        envelope_to: recipients.iter().map(ToString::to_string).collect(),
    })
}

/// The MIME tree, or `None` for a text-only email (one text/plain body).
fn body(email: &OutgoingEmail) -> Result<Option<MultiPart>, MimeError> {
    let html = email.html.as_deref().map(normalize_newlines);
    let text = match &html {
        Some(h) if email.text.trim().is_empty() => crate::derive_text(h),
        _ => email.text.clone(),
    };

    let mut inline = vec![];
    let mut attached = vec![];
    for (i, a) in email.attachments.iter().enumerate() {
        let content_id = match (&a.cid, &html) {
            (Some(cid), Some(_)) => {
                guard::check_cid(&format!("attachments[{i}].cid"), cid)?;
                Some(cid.as_str())
            }
            (None, Some(h))
                if guard::check_cid("", &a.filename).is_ok() && references_cid(h, &a.filename) =>
            {
                Some(a.filename.as_str())
            }
            _ => None,
        };
        match content_id {
            Some(cid) => inline.push(attachment_part(i, a, Some(cid))?),
            None => attached.push(attachment_part(i, a, None)?),
        }
    }

    let Some(html) = html else {
        if attached.is_empty() {
            return Ok(None);
        }
        let mixed = MultiPart::mixed().singlepart(SinglePart::plain(normalize_newlines(&text)));
        return Ok(Some(
            attached.into_iter().fold(mixed, MultiPart::singlepart),
        ));
    };
    let html_part = SinglePart::html(html);
    let alternative =
        MultiPart::alternative().singlepart(SinglePart::plain(normalize_newlines(&text)));
    let alternative = if inline.is_empty() {
        alternative.singlepart(html_part)
    } else {
        alternative.multipart(inline.into_iter().fold(
            MultiPart::related().singlepart(html_part),
            MultiPart::singlepart,
        ))
    };
    if attached.is_empty() {
        return Ok(Some(alternative));
    }
    Ok(Some(attached.into_iter().fold(
        MultiPart::mixed().multipart(alternative),
        MultiPart::singlepart,
    )))
}

fn attachment_part(
    i: usize,
    a: &OutgoingAttachment,
    cid: Option<&str>,
) -> Result<SinglePart, MimeError> {
    let content_type = content_type(i, a)?;
    let disposition = match cid {
        Some(_) => ContentDisposition::inline_with_name(&a.filename),
        None => ContentDisposition::attachment(&a.filename),
    };
    // Always base64: lettre picks 7bit for ASCII-only binary bodies and then leaves their bare
    // LFs alone, which SMTP servers rewrite; base64 keeps every byte.
    let body = Body::new_with_encoding(a.content.clone(), ContentTransferEncoding::Base64)
        .map_err(|_| MimeError::build(format!("attachments[{i}] could not be encoded")))?;
    let mut part = SinglePart::builder();
    if let Some(cid) = cid {
        part = part.header(header::ContentId::from(format!("<{cid}>")));
    }
    Ok(part.header(disposition).header(content_type).body(body))
}

/// The given type unless absent or `application/octet-stream`; then guessed from the file
/// name (falling back to `application/octet-stream`).
fn content_type(i: usize, a: &OutgoingAttachment) -> Result<ContentType, MimeError> {
    let given = a.content_type.as_deref().map(str::trim).filter(|ct| {
        let essence = ct.split(';').next().unwrap_or_default().trim();
        !ct.is_empty() && !essence.eq_ignore_ascii_case("application/octet-stream")
    });
    let field = format!("attachments[{i}].content_type");
    match given {
        Some(ct) => {
            guard::check_header_value(&field, ct)?;
            ContentType::parse(ct)
                .map_err(|e| MimeError::header(field, format!("`{ct}` is not a MIME type ({e})")))
        }
        None => {
            let guessed = mime_guess::from_path(&a.filename).first_or_octet_stream();
            ContentType::parse(guessed.as_ref())
                .map_err(|e| MimeError::build(format!("{field}: {e}")))
        }
    }
}

/// Whether `html` contains `cid:<name>` followed by a character that cannot be part of it.
fn references_cid(html: &str, name: &str) -> bool {
    let needle = format!("cid:{name}");
    let mut from = 0;
    while let Some(pos) = html[from..].find(&needle) {
        let end = from + pos + needle.len();
        match html[end..].chars().next() {
            None => return true,
            Some(c)
                if c.is_whitespace()
                    || matches!(c, '"' | '\'' | ')' | '>' | '<' | '?' | '#' | ';' | ',') =>
            {
                return true;
            }
            Some(_) => from = from + pos + 1,
        }
    }
    false
}

/// In-Reply-To and References for a reply to `parent`.
fn threading(parent: &ReplyParent) -> Result<(String, String), MimeError> {
    let id = parent.message_id.trim();
    guard::check_message_id("reply_to", id).map_err(|e| match e {
        MimeError::InvalidHeader { detail, .. } => MimeError::header(
            "reply_to",
            format!("the parent's Message-ID is unusable: {detail}"),
        ),
        other => other,
    })?;
    let mut refs: Vec<&str> = vec![];
    // Stored references come from other people's mail: keep the ones that are sound.
    for r in parent.references.iter().map(|r| r.trim()).chain([id]) {
        if guard::check_message_id("", r).is_ok() && !refs.contains(&r) {
            refs.push(r);
        }
    }
    Ok((id.to_owned(), refs.join(" ")))
}

/// One `Name: value\r\n` line, RFC 2047-encoded and folded by lettre.
fn raw_header_line(name: &str, value: &str) -> Result<String, MimeError> {
    let header_name = HeaderName::new_from_ascii(name.to_owned()).map_err(|_| {
        MimeError::header(
            "custom_headers",
            format!("`{name}` is not a valid header name"),
        )
    })?;
    let mut headers = Headers::new();
    headers.insert_raw(HeaderValue::new(header_name, value.trim().to_owned()));
    Ok(headers.to_string())
}

fn dedup_case_insensitive(addresses: Vec<Address>) -> Vec<Address> {
    let mut seen = std::collections::HashSet::new();
    addresses
        .into_iter()
        .filter(|a| seen.insert(a.to_string().to_ascii_lowercase()))
        .collect()
}

/// CRLF and lone CR become LF; lettre then writes every LF as CRLF.
fn normalize_newlines(s: &str) -> String {
    if s.contains('\r') {
        s.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_subject_rules() {
        assert_eq!(reply_subject("Hello", None), "Re: Hello");
        assert_eq!(reply_subject("Re: Hello", None), "Re: Hello");
        assert_eq!(reply_subject("RE:Hello", None), "RE:Hello");
        assert_eq!(reply_subject("re: hello", Some("Other")), "re: hello");
        assert_eq!(reply_subject("", Some("Parent topic")), "Re: Parent topic");
        assert_eq!(
            reply_subject("  ", Some("Re: Parent topic")),
            "Re: Parent topic"
        );
        assert_eq!(reply_subject("", None), "Re:");
        assert_eq!(reply_subject("Ré: café", None), "Re: Ré: café");
        assert_eq!(reply_subject("Fwd: x", Some("y")), "Re: Fwd: x");
    }

    #[test]
    fn cid_references_need_a_delimiter() {
        assert!(references_cid("<img src=\"cid:logo.png\">", "logo.png"));
        assert!(references_cid("<img src='cid:logo.png'>", "logo.png"));
        assert!(references_cid("background:url(cid:logo.png)", "logo.png"));
        assert!(!references_cid("<img src=\"cid:logo.png2\">", "logo.png"));
        assert!(!references_cid("<img src=\"logo.png\">", "logo.png"));
        assert!(references_cid("cid:logo.pngX cid:logo.png", "logo.png"));
    }

    #[test]
    fn dedup_keeps_the_first_spelling() {
        let a = |s: &str| s.parse::<Address>().unwrap();
        let out =
            dedup_case_insensitive(vec![a("Bob@Example.com"), a("x@y.z"), a("bob@example.COM")]);
        assert_eq!(out, vec![a("Bob@Example.com"), a("x@y.z")]);
    }

    #[test]
    fn newlines_are_normalized() {
        assert_eq!(normalize_newlines("a\r\nb\rc\nd"), "a\nb\nc\nd");
    }
}
