//! An email to send, as the API accepted it (validated, not yet MIME).

use serde::{Deserialize, Serialize};

/// A person on an email: the address and an optional display name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attendee {
    pub identifier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// A file to attach. With `cid`, it is an inline part referenced from the HTML as `cid:<cid>`.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingAttachment {
    pub filename: String,
    /// The MIME type; when the client gave none (or `application/octet-stream`), the builder
    /// derives it from the file name.
    pub content_type: Option<String>,
    pub content: Vec<u8>,
    pub cid: Option<String>,
}

impl std::fmt::Debug for OutgoingAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingAttachment")
            .field("filename", &self.filename)
            .field("content_type", &self.content_type)
            .field("len", &self.content.len())
            .field("cid", &self.cid)
            .finish()
    }
}

/// What a reply needs from the mail it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyParent {
    /// The parent's Message-ID, with angle brackets: `<abc@example.com>`.
    pub message_id: String,
    /// The parent's References, oldest first, each with angle brackets.
    pub references: Vec<String>,
    pub subject: Option<String>,
}

/// A validated email, ready to be turned into RFC 5322 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEmail {
    /// The sender; the identifier defaults to the account's address.
    pub from: Attendee,
    pub to: Vec<Attendee>,
    pub cc: Vec<Attendee>,
    pub bcc: Vec<Attendee>,
    pub subject: String,
    /// The HTML body, when the client sent HTML.
    pub html: Option<String>,
    /// The plain-text body (derived from the HTML when the client sent HTML).
    pub text: String,
    pub attachments: Vec<OutgoingAttachment>,
    /// Extra headers (`X-*` and the allowed list), already validated.
    pub custom_headers: Vec<(String, String)>,
    pub reply: Option<ReplyParent>,
}
