//! Composing outgoing mail: the API validates and builds through here (DESIGN §2: api uses
//! engine, engine uses mime), so the HTTP layer never reaches into the MIME crate directly.

pub use mailroom_mime::{
    BuiltMessage, MimeError, build_message, derive_text, guard, looks_like_html, reply_subject,
};
