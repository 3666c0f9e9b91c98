//! The threading facts of a mail being answered, read from its header block.

use mail_parser::MessageParser;
use mailroom_core::email::ReplyParent;

/// Reads Message-ID, References and Subject (RFC 2047 decoded) from `raw_headers`, a header
/// block or a whole message. `None` without a Message-ID: a reply needs one to point at.
/// Ids come back with angle brackets, References oldest first.
pub fn parse_reply_parent(raw_headers: &[u8]) -> Option<ReplyParent> {
    let message = MessageParser::default().parse_headers(raw_headers)?;
    let message_id = bracket(message.message_id()?)?;
    let references = message
        .references()
        .as_text_list()
        .unwrap_or_default()
        .iter()
        .filter_map(|id| bracket(id))
        .collect();
    Some(ReplyParent {
        message_id,
        references,
        subject: message.subject().map(str::to_owned),
    })
}

/// mail-parser strips the brackets; ids are stored and sent with them.
fn bracket(id: &str) -> Option<String> {
    let id = id.trim().trim_start_matches('<').trim_end_matches('>');
    (!id.is_empty()).then(|| format!("<{id}>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ids_and_decodes_the_subject() {
        let raw = b"Message-ID: <c@example.test>\r\n\
                    References: <a@example.test>\r\n <b@example.test>\r\n\
                    Subject: =?UTF-8?Q?Caf=C3=A9_au_lait?=\r\n\r\n";
        let p = parse_reply_parent(raw).unwrap();
        assert_eq!(p.message_id, "<c@example.test>");
        assert_eq!(p.references, ["<a@example.test>", "<b@example.test>"]);
        assert_eq!(p.subject.as_deref(), Some("Café au lait"));
        let bare = parse_reply_parent(b"Message-ID: <x@y>\r\n\r\n").unwrap();
        assert!(bare.references.is_empty() && bare.subject.is_none());
        assert!(parse_reply_parent(b"Subject: no id\r\n\r\n").is_none());
    }
}
