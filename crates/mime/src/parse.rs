//! Raw RFC 5322 bytes (a fetched message) to what the index keeps of it: ids for threading,
//! people, date, the text and HTML bodies, and the attachments' metadata. Attachment bytes are
//! not kept: [`attachment_bytes`] decodes one again from the raw message by its part id.
//!
//! **Part ids** are IMAP-style section paths of the MIME tree (`"2"`, `"1.2"`, RFC 3501
//! §6.4.5): the children of a multipart are numbered from 1, a message that is not multipart
//! has one part `"1"`, and a nested `message/rfc822` is one attachment (not entered). They
//! depend only on the message's bytes, so they stay valid for as long as the message exists.

use mail_parser::{Address, MessageParser, MessagePart, MimeHeaders, PartType};
use mailroom_core::MessageId;
use mailroom_core::email::Attendee;
use mailroom_core::mail::Header;

/// A parsed message. Bodies are `None` when the message has no part of that kind: an HTML-only
/// mail has no `text` ([`derive_text`](crate::derive_text) makes one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedMail {
    /// `<id@host>`; `None` when the message has none (or one that cannot be a Message-ID).
    pub message_id: Option<String>,
    /// The first id of In-Reply-To, bracketed.
    pub in_reply_to: Option<String>,
    /// References, oldest first, each bracketed.
    pub references: Vec<String>,
    /// RFC 2047 decoded.
    pub subject: Option<String>,
    pub from: Option<Attendee>,
    pub to: Vec<Attendee>,
    pub cc: Vec<Attendee>,
    pub bcc: Vec<Attendee>,
    pub reply_to: Vec<Attendee>,
    /// The Date header, unix milliseconds; `None` when missing or unreadable.
    pub date_ms: Option<i64>,
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<AttachmentMeta>,
    /// The top-level header lines in order, values unfolded as written (not decoded): what
    /// `include_headers=true` answers.
    pub headers: Vec<Header>,
}

impl ParsedMail {
    /// Whether the message carries attachments (inline parts referenced from the HTML count).
    pub fn has_attachments(&self) -> bool {
        !self.attachments.is_empty()
    }
}

/// What the index keeps of an attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentMeta {
    /// The part's section path (see the module docs): give it to [`attachment_bytes`].
    pub part_id: String,
    /// The file name (RFC 2047 / RFC 2231 decoded); a made-up one when the part names none.
    pub name: String,
    /// Decoded bytes (for text parts: of their UTF-8 text).
    pub size: usize,
    /// `type/subtype`, lowercase, without parameters.
    pub mime: String,
    /// The Content-ID without angle brackets.
    pub cid: Option<String>,
    /// Shown in the body (`Content-Disposition: inline`, or a Content-ID without disposition)
    /// rather than offered as a file.
    pub inline: bool,
}

/// Parses `raw`. `None` only when the bytes are not a message at all (empty, no header).
pub fn parse_mail(raw: &[u8]) -> Option<ParsedMail> {
    let message = MessageParser::default().parse(raw)?;
    let paths = section_paths(&message);
    let attachments = message
        .attachments
        .iter()
        .filter_map(|&i| {
            let part = message.parts.get(i as usize)?;
            let path = paths.get(i as usize)?.as_ref()?;
            Some(meta(part, path))
        })
        .collect();
    let join = |ids: &[u32], html: bool| -> Option<String> {
        let bodies: Vec<&str> = ids
            .iter()
            .filter_map(|&i| match &message.parts.get(i as usize)?.body {
                PartType::Text(t) if !html => Some(t.as_ref()),
                PartType::Html(t) if html => Some(t.as_ref()),
                _ => None,
            })
            .collect();
        (!bodies.is_empty()).then(|| bodies.join("\n"))
    };
    Some(ParsedMail {
        message_id: message.message_id().and_then(bracketed),
        in_reply_to: message
            .in_reply_to()
            .as_text_list()
            .and_then(|l| l.iter().find_map(|id| bracketed(id))),
        references: message
            .references()
            .as_text_list()
            .unwrap_or_default()
            .iter()
            .filter_map(|id| bracketed(id))
            .collect(),
        subject: message.subject().map(str::to_owned),
        from: attendees(message.from()).into_iter().next(),
        to: attendees(message.to()),
        cc: attendees(message.cc()),
        bcc: attendees(message.bcc()),
        reply_to: attendees(message.reply_to()),
        date_ms: message
            .date()
            .filter(|d| d.is_valid())
            .map(|d| d.to_timestamp().saturating_mul(1000)),
        text: join(&message.text_body, false),
        html: join(&message.html_body, true),
        attachments,
        headers: message
            .headers_raw()
            .map(|(name, value)| Header {
                name: name.to_owned(),
                value: unfold(value),
            })
            .collect(),
    })
}

/// A raw header value on one line: folding (a line break before white space) removed, the
/// surrounding white space trimmed.
fn unfold(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for (i, line) in raw.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if i > 0 && !line.is_empty() {
            out.push(' ');
            out.push_str(line.trim_start());
        } else {
            out.push_str(line);
        }
    }
    out.trim().to_owned()
}

/// One attachment of `raw` by its part id: `(mime, name, decoded bytes)`; `None` when the
/// message has no attachment with that id.
///
/// A part labelled `text/*` comes back as its UTF-8 text (mail-parser keeps no raw accessor
/// for a decoded text part).
pub fn attachment_bytes(raw: &[u8], part_id: &str) -> Option<(String, String, Vec<u8>)> {
    let message = MessageParser::default().parse(raw)?;
    let paths = section_paths(&message);
    message.attachments.iter().find_map(|&i| {
        let path = paths.get(i as usize)?.as_deref()?;
        if path != part_id {
            return None;
        }
        let part = message.parts.get(i as usize)?;
        let m = meta(part, path);
        Some((m.mime, m.name, part.contents().to_vec()))
    })
}

/// The decoded bytes of one MIME part fetched on its own (IMAP `BODY[<part>.MIME]` and
/// `BODY[<part>]`): its header and its still transfer-encoded body, put back together as a
/// one-part message so the same decoder as [`attachment_bytes`] undoes base64 or
/// quoted-printable (a `text/*` part comes back as its UTF-8 text, as there).
pub fn decode_part(mime_header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut whole = Vec::with_capacity(mime_header.len() + body.len() + 2);
    whole.extend_from_slice(mime_header);
    if !mime_header.ends_with(b"\r\n\r\n") && !mime_header.ends_with(b"\n\n") {
        whole.extend_from_slice(b"\r\n");
    }
    whole.extend_from_slice(body);
    match MessageParser::default().parse(&whole) {
        Some(m) => match m.parts.first() {
            Some(p) => p.contents().to_vec(),
            None => body.to_vec(),
        },
        None => body.to_vec(),
    }
}

/// The section path of every part of `message` (indexed like `message.parts`; `None` for the
/// root multipart, which has no path of its own).
fn section_paths(message: &mail_parser::Message<'_>) -> Vec<Option<String>> {
    let mut paths = vec![None; message.parts.len()];
    let Some(root) = message.parts.first() else {
        return paths;
    };
    match &root.body {
        PartType::Multipart(children) => walk(message, children, "", &mut paths, 0),
        _ => paths[0] = Some("1".into()),
    }
    paths
}

fn walk(
    message: &mail_parser::Message<'_>,
    children: &[u32],
    prefix: &str,
    paths: &mut [Option<String>],
    depth: usize,
) {
    // mail-parser bounds nesting itself; this guards the recursion against a malformed tree.
    if depth > 64 {
        return;
    }
    for (n, &i) in children.iter().enumerate() {
        let path = if prefix.is_empty() {
            (n + 1).to_string()
        } else {
            format!("{prefix}.{}", n + 1)
        };
        let Some(part) = message.parts.get(i as usize) else {
            continue;
        };
        if let PartType::Multipart(sub) = &part.body {
            walk(message, sub, &path, paths, depth + 1);
        }
        if let Some(slot) = paths.get_mut(i as usize) {
            *slot = Some(path);
        }
    }
}

fn meta(part: &MessagePart<'_>, path: &str) -> AttachmentMeta {
    let mime = match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_owned(),
        },
        None if matches!(part.body, PartType::Message(_)) => "message/rfc822".into(),
        None if part.is_text() => "text/plain".into(),
        None => "application/octet-stream".into(),
    }
    .to_ascii_lowercase();
    let cid = part
        .content_id()
        .map(|c| {
            c.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        })
        .filter(|c| !c.is_empty());
    let inline = match part.content_disposition() {
        Some(d) => d.is_inline(),
        None => cid.is_some(),
    };
    let name = part
        .attachment_name()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| made_up_name(part, &mime, path));
    AttachmentMeta {
        part_id: path.to_owned(),
        name,
        size: part.contents().len(),
        mime,
        cid,
        inline,
    }
}

/// A name for a part that has none: a forwarded message by its subject, else
/// `attachment-<path>` with the type's usual extension.
fn made_up_name(part: &MessagePart<'_>, mime: &str, path: &str) -> String {
    if let PartType::Message(m) = &part.body {
        let subject = m.subject().map(str::trim).filter(|s| !s.is_empty());
        return format!("{}.eml", subject.unwrap_or("message"));
    }
    let ext = mime_guess::get_mime_extensions_str(mime)
        .and_then(|e| e.first())
        .map(|e| format!(".{e}"))
        .unwrap_or_default();
    format!("attachment-{path}{ext}")
}

fn attendees(address: Option<&Address<'_>>) -> Vec<Attendee> {
    let Some(address) = address else {
        return vec![];
    };
    address
        .iter()
        .filter_map(|a| {
            let identifier = a.address()?.trim();
            if identifier.is_empty() {
                return None;
            }
            Some(Attendee {
                identifier: identifier.to_owned(),
                display_name: a
                    .name()
                    .map(str::trim)
                    .filter(|n| !n.is_empty() && *n != identifier)
                    .map(str::to_owned),
            })
        })
        .collect()
}

fn bracketed(id: &str) -> Option<String> {
    MessageId::parse(id).map(|m| m.bracketed())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RICH: &[u8] = include_bytes!("../tests/fixtures/rich.eml");
    const PLAIN: &[u8] = include_bytes!("../tests/fixtures/no_message_id.eml");
    const FORWARD: &[u8] = include_bytes!("../tests/fixtures/forward.eml");

    #[test]
    fn reads_ids_people_date_and_bodies() {
        let m = parse_mail(RICH).unwrap();
        assert_eq!(m.message_id.as_deref(), Some("<rich.1@example.test>"));
        assert_eq!(m.in_reply_to.as_deref(), Some("<parent.0@example.test>"));
        assert_eq!(
            m.references,
            ["<root@example.test>", "<parent.0@example.test>"]
        );
        assert_eq!(m.subject.as_deref(), Some("Café menu ✓"));
        let from = m.from.clone().unwrap();
        assert_eq!(from.identifier, "ana@example.test");
        assert_eq!(from.display_name.as_deref(), Some("Ana Müller"));
        let to: Vec<_> = m.to.iter().map(|a| a.identifier.as_str()).collect();
        assert_eq!(to, ["bob@example.test", "carol@example.test"]);
        assert_eq!(m.to[1].display_name, None);
        assert_eq!(m.cc[0].identifier, "dan@example.test");
        assert_eq!(m.bcc[0].identifier, "eve@example.test");
        assert_eq!(m.reply_to[0].identifier, "replies@example.test");
        // Tue, 03 Mar 2026 10:15:30 +0100
        assert_eq!(m.date_ms, Some(1_772_529_330_000));
        assert_eq!(m.text.as_deref().map(str::trim), Some("Plain café menu."));
        assert!(m.html.as_deref().unwrap().contains("<b>café</b>"));
        assert!(m.has_attachments());
    }

    #[test]
    fn keeps_the_top_level_headers_unfolded() {
        let raw = b"Subject: a\r\n long one\r\nX-Tag:  v \r\nFrom: a@x.test\r\n\r\nbody\r\n";
        let m = parse_mail(raw).unwrap();
        let got: Vec<(&str, &str)> = m
            .headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("Subject", "a long one"),
                ("X-Tag", "v"),
                ("From", "a@x.test")
            ]
        );
        assert!(
            parse_mail(RICH)
                .unwrap()
                .headers
                .iter()
                .any(|h| h.name == "Message-ID")
        );
    }

    #[test]
    fn attachments_have_paths_names_sizes_and_cids() {
        let m = parse_mail(RICH).unwrap();
        let got: Vec<_> = m
            .attachments
            .iter()
            .map(|a| {
                (
                    a.part_id.as_str(),
                    a.name.as_str(),
                    a.mime.as_str(),
                    a.cid.as_deref(),
                    a.inline,
                    a.size,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                // No name in the part: one is made up from its path and type.
                (
                    "1.2",
                    "attachment-1.2.png",
                    "image/png",
                    Some("logo@example.test"),
                    true,
                    8
                ),
                ("2", "Résumé café.pdf", "application/pdf", None, false, 11),
                ("3", "notes.txt", "text/plain", None, false, 6),
            ]
        );
        let (mime, name, bytes) = attachment_bytes(RICH, "2").unwrap();
        assert_eq!(
            (mime.as_str(), name.as_str()),
            ("application/pdf", "Résumé café.pdf")
        );
        assert_eq!(bytes, b"%PDF-1.4 hi");
        let (_, _, logo) = attachment_bytes(RICH, "1.2").unwrap();
        assert_eq!(logo, b"\x89PNG\r\n\x1a\n");
        assert_eq!(attachment_bytes(RICH, "3").unwrap().2, b"notes\n");
        // Bodies are not attachments; unknown paths find nothing.
        assert!(attachment_bytes(RICH, "1.1.1").is_none());
        assert!(attachment_bytes(RICH, "9").is_none());
    }

    #[test]
    fn parts_fetched_alone_are_decoded_from_their_transfer_encoding() {
        let header = b"Content-Type: application/octet-stream\r\n\
                       Content-Transfer-Encoding: base64\r\n\r\n";
        assert_eq!(decode_part(header, b"AAH/\r\n"), b"\x00\x01\xff");
        let qp =
            b"Content-Type: application/x-test\r\nContent-Transfer-Encoding: quoted-printable\r\n";
        assert_eq!(decode_part(qp, b"a=3Db"), b"a=b");
        assert_eq!(decode_part(b"", b"plain"), b"plain");
    }

    #[test]
    fn a_message_without_message_id_or_date_still_parses() {
        let m = parse_mail(PLAIN).unwrap();
        assert_eq!(m.message_id, None);
        assert_eq!(m.in_reply_to, None);
        assert!(m.references.is_empty());
        assert_eq!(m.date_ms, None);
        assert_eq!(m.subject.as_deref(), Some("no id"));
        assert_eq!(m.text.as_deref().map(str::trim), Some("Just text."));
        assert_eq!(m.html, None);
        assert!(!m.has_attachments());
        assert_eq!(m.from.unwrap().identifier, "x@example.test");
    }

    #[test]
    fn a_forwarded_message_is_one_attachment() {
        let m = parse_mail(FORWARD).unwrap();
        assert_eq!(m.html, None);
        assert_eq!(m.attachments.len(), 1, "{:?}", m.attachments);
        let a = &m.attachments[0];
        assert_eq!(
            (
                a.part_id.as_str(),
                a.name.as_str(),
                a.mime.as_str(),
                a.inline
            ),
            ("2", "Original news.eml", "message/rfc822", false)
        );
        let (_, _, bytes) = attachment_bytes(FORWARD, "2").unwrap();
        assert!(bytes.starts_with(b"Subject: Original news"));
    }

    #[test]
    fn not_a_message_is_none() {
        assert!(parse_mail(b"").is_none());
    }
}
