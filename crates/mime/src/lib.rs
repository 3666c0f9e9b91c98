//! Email formats for mailroom.
//!
//! - [`build_message`]: an [`OutgoingEmail`](mailroom_core::email::OutgoingEmail) to RFC 5322
//!   bytes and its SMTP envelope, with lettre's builder.
//! - [`guard`]: header-injection and address checks the API runs before storing anything.
//! - [`derive_text`] and [`looks_like_html`]: the plain alternative of an HTML body.
//! - [`parent`]: the threading facts of a mail being answered.
//! - [`parse`]: a fetched message's ids, people, bodies and attachment metadata
//!   ([`parse_mail`]), and one attachment's bytes ([`attachment_bytes`]).
//! - [`tracking`]: open pixel and tracked links in an HTML body.
//! - [`PartDecoder`]: one part decoded piece by piece as partial fetches bring it.
//! - [`recipients`]: the visible (To/Cc) recipients of a built message.
//! - [`insert_bcc`]: the `Bcc:` header the HTTP APIs (Gmail, Microsoft Graph `sendMail`) need,
//!   added on top of a built message.
//! - [`graph_message`]: a built message as Microsoft Graph `message` properties (the Graph
//!   client's draft route).

mod bcc;
mod error;
mod graph_message;
pub mod guard;
mod message;
pub mod parent;
pub mod parse;
mod part_stream;
pub mod recipients;
mod text;
pub mod tracking;

pub use bcc::insert_bcc;
pub use error::MimeError;
pub use graph_message::{BodyKind, GraphAttachment, GraphMessage, GraphRecipient, graph_message};
pub use message::{BuiltMessage, build_message, reply_subject};
pub use parse::{AttachmentMeta, ParsedMail, attachment_bytes, decode_part, parse_mail};
pub use part_stream::PartDecoder;
pub use text::{TEXT_WIDTH, derive_text, looks_like_html};
