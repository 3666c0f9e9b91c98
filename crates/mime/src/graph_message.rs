//! A built message as Microsoft Graph `message` properties, for the Graph client's draft route
//! (a reply through `createReply`, or a message too big for one `sendMail` request).
//!
//! Plain data: [`graph_message`] reads the MIME with mail-parser, [`GraphMessage::properties`]
//! and [`GraphMessage::internet_message_headers`] give the JSON Graph takes. The Graph fake in
//! `mailroom-testkit` parses MIME on its own, so that a mistake here is not mirrored there.

use mail_parser::{Address, MessageParser, MimeHeaders, PartType};
use serde_json::{Value, json};

use crate::MimeError;

/// A recipient: (display name, address).
pub type GraphRecipient = (Option<String>, String);

/// The kind of a Graph `itemBody`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Html,
    Text,
}

impl BodyKind {
    /// Graph's `contentType`: `html` or `text`.
    pub fn as_str(self) -> &'static str {
        match self {
            BodyKind::Html => "html",
            BodyKind::Text => "text",
        }
    }
}

/// An attachment as a Graph `fileAttachment`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphAttachment {
    /// The file name (`attachment` when the part has none).
    pub name: String,
    /// `type/subtype`, lowercase (`application/octet-stream` when the part has none).
    pub content_type: String,
    /// The decoded content.
    pub bytes: Vec<u8>,
    /// `Content-Disposition: inline`, or (without a disposition) a part with a Content-ID.
    pub inline: bool,
    /// Without angle brackets; only for an inline part.
    pub content_id: Option<String>,
}

/// The MIME, as Graph message properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphMessage {
    pub subject: String,
    /// The HTML body if there is one, else the plain text (empty if neither).
    pub body_kind: BodyKind,
    pub body: String,
    pub to: Vec<GraphRecipient>,
    pub cc: Vec<GraphRecipient>,
    /// The `bcc` given to [`graph_message`], as given, without names.
    pub bcc: Vec<GraphRecipient>,
    pub reply_to: Vec<GraphRecipient>,
    /// With angle brackets.
    pub message_id: Option<String>,
    /// `X-*` headers (Graph accepts only those as `internetMessageHeaders`), unfolded.
    pub headers: Vec<(String, String)>,
    pub attachments: Vec<GraphAttachment>,
}

impl GraphMessage {
    /// What a new draft (or a PATCH of a reply draft) sets: `subject`, `body`, `toRecipients`,
    /// `ccRecipients`, `bccRecipients`, `replyTo` and, when there is one, `internetMessageId`.
    pub fn properties(&self) -> Value {
        let mut v = json!({
            "subject": self.subject,
            "body": {"contentType": self.body_kind.as_str(), "content": self.body},
            "toRecipients": recipients(&self.to),
            "ccRecipients": recipients(&self.cc),
            "bccRecipients": recipients(&self.bcc),
            "replyTo": recipients(&self.reply_to),
        });
        if let Some(id) = &self.message_id {
            v["internetMessageId"] = json!(id);
        }
        v
    }

    /// The `X-*` headers as Graph `internetMessageHeaders`: `[{"name", "value"}, …]`.
    pub fn internet_message_headers(&self) -> Value {
        Value::Array(
            self.headers
                .iter()
                .map(|(n, v)| json!({"name": n, "value": v}))
                .collect(),
        )
    }
}

fn recipients(list: &[GraphRecipient]) -> Value {
    Value::Array(
        list.iter()
            .map(|(name, address)| match name {
                Some(n) => json!({"emailAddress": {"address": address, "name": n}}),
                None => json!({"emailAddress": {"address": address}}),
            })
            .collect(),
    )
}

/// Reads `raw` (RFC 5322) into Graph message properties; `bcc` becomes its Bcc recipients.
/// [`MimeError::Unparseable`] when mail-parser cannot read it.
pub fn graph_message(raw: &[u8], bcc: &[String]) -> Result<GraphMessage, MimeError> {
    let m = MessageParser::default()
        .parse(raw)
        .ok_or(MimeError::Unparseable)?;
    fn list(a: Option<&Address<'_>>) -> Vec<GraphRecipient> {
        a.map(|a| {
            a.iter()
                .filter_map(|x| {
                    Some((
                        x.name().map(str::to_owned).filter(|n| !n.is_empty()),
                        x.address()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
    }
    let html = m.html_bodies().find_map(|p| match &p.body {
        PartType::Html(h) => Some(h.to_string()),
        _ => None,
    });
    let (body_kind, body) = match html {
        Some(h) => (BodyKind::Html, h),
        None => (
            BodyKind::Text,
            m.text_bodies()
                .find_map(|p| match &p.body {
                    PartType::Text(t) => Some(t.to_string()),
                    _ => None,
                })
                .unwrap_or_default(),
        ),
    };
    let headers = m
        .headers_raw()
        .filter(|(n, _)| n.len() > 2 && n[..2].eq_ignore_ascii_case("x-"))
        .map(|(n, v)| {
            (
                n.to_owned(),
                v.replace("\r\n", "").replace('\n', "").trim().to_owned(),
            )
        })
        .collect();
    let attachments = m
        .attachments()
        .map(|p| {
            let content_id = p.content_id().map(|c| {
                c.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            });
            let inline = p
                .content_disposition()
                .map(|d| d.c_type.eq_ignore_ascii_case("inline"))
                .unwrap_or(content_id.is_some());
            GraphAttachment {
                name: p.attachment_name().unwrap_or("attachment").to_owned(),
                content_type: p
                    .content_type()
                    .map(|c| {
                        format!("{}/{}", c.c_type, c.subtype().unwrap_or("octet-stream"))
                            .to_ascii_lowercase()
                    })
                    .unwrap_or_else(|| "application/octet-stream".into()),
                bytes: p.contents().to_vec(),
                inline,
                content_id: content_id.filter(|_| inline),
            }
        })
        .collect();
    Ok(GraphMessage {
        subject: m.subject().unwrap_or_default().to_owned(),
        body_kind,
        body,
        to: list(m.to()),
        cc: list(m.cc()),
        bcc: bcc.iter().map(|a| (None, a.clone())).collect(),
        reply_to: list(m.reply_to()),
        message_id: m.message_id().map(|id| format!("<{id}>")),
        headers,
        attachments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIXED: &[u8] = b"From: Ann <ann@x.test>\r\n\
To: Bob <bob@y.test>, carl@y.test\r\n\
Cc: \"\" <dee@y.test>\r\n\
Reply-To: Help <help@x.test>\r\n\
Subject: Hello there\r\n\
Message-ID: <abc@x.test>\r\n\
X-Campaign: spring\r\n\x20sale\r\n\
List-Unsubscribe: <mailto:u@x.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: multipart/related; boundary=\"b2\"\r\n\
\r\n\
--b2\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>Hi <img src=\"cid:logo@x\"></p>\r\n\
--b2\r\n\
Content-Type: image/PNG\r\n\
Content-ID: <logo@x>\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
iVBORw==\r\n\
--b2--\r\n\
--b1\r\n\
Content-Type: application/pdf; name=\"r.pdf\"\r\n\
Content-Disposition: attachment; filename=\"r.pdf\"\r\n\
Content-ID: <not-inline@x>\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERg==\r\n\
--b1--\r\n";

    #[test]
    fn a_built_message_maps_to_graph_properties() {
        let g = graph_message(MIXED, &["eve@z.test".into()]).unwrap();
        assert_eq!(g.subject, "Hello there");
        assert_eq!(g.body_kind, BodyKind::Html);
        assert!(g.body.contains("<img src=\"cid:logo@x\">"), "{}", g.body);
        assert_eq!(
            g.to,
            [
                (Some("Bob".into()), "bob@y.test".into()),
                (None, "carl@y.test".into())
            ]
        );
        assert_eq!(g.cc, [(None, "dee@y.test".into())]);
        assert_eq!(g.bcc, [(None, "eve@z.test".into())]);
        assert_eq!(g.reply_to, [(Some("Help".into()), "help@x.test".into())]);
        assert_eq!(g.message_id.as_deref(), Some("<abc@x.test>"));
        assert_eq!(g.headers, [("X-Campaign".into(), "spring sale".into())]);
        assert_eq!(
            g.attachments,
            [
                GraphAttachment {
                    name: "attachment".into(),
                    content_type: "image/png".into(),
                    bytes: vec![0x89, b'P', b'N', b'G'],
                    inline: true,
                    content_id: Some("logo@x".into()),
                },
                GraphAttachment {
                    name: "r.pdf".into(),
                    content_type: "application/pdf".into(),
                    bytes: b"%PDF".to_vec(),
                    inline: false,
                    content_id: None,
                },
            ]
        );
        assert_eq!(
            g.properties(),
            json!({
                "subject": "Hello there",
                "body": {"contentType": "html", "content": g.body},
                "toRecipients": [
                    {"emailAddress": {"address": "bob@y.test", "name": "Bob"}},
                    {"emailAddress": {"address": "carl@y.test"}},
                ],
                "ccRecipients": [{"emailAddress": {"address": "dee@y.test"}}],
                "bccRecipients": [{"emailAddress": {"address": "eve@z.test"}}],
                "replyTo": [{"emailAddress": {"address": "help@x.test", "name": "Help"}}],
                "internetMessageId": "<abc@x.test>",
            })
        );
        assert_eq!(
            g.internet_message_headers(),
            json!([{"name": "X-Campaign", "value": "spring sale"}])
        );
    }

    #[test]
    fn plain_text_without_message_id_or_recipients() {
        let g = graph_message(b"Subject: s\nContent-Type: text/plain\n\nhello\n", &[]).unwrap();
        assert_eq!((g.body_kind, g.body.as_str()), (BodyKind::Text, "hello\n"));
        assert_eq!(g.message_id, None);
        assert!(g.headers.is_empty() && g.attachments.is_empty());
        let p = g.properties();
        assert_eq!(
            p["body"],
            json!({"contentType": "text", "content": "hello\n"})
        );
        assert_eq!(p["toRecipients"], json!([]));
        assert_eq!(p["bccRecipients"], json!([]));
        assert!(p.get("internetMessageId").is_none());
        assert_eq!(g.internet_message_headers(), json!([]));
    }

    #[test]
    fn unparseable_bytes_are_refused() {
        assert_eq!(graph_message(b"", &[]).unwrap_err(), MimeError::Unparseable);
    }
}
