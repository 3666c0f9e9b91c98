//! Reading the visible recipients back out of a built message.

use mail_parser::{Address, MessageParser};

/// The addresses in the To and Cc headers of `raw`, lowercased.
pub fn visible_recipients(raw: &[u8]) -> Vec<String> {
    let Some(m) = MessageParser::default().parse_headers(raw) else {
        return vec![];
    };
    let mut out = Vec::new();
    for list in [m.to(), m.cc()].into_iter().flatten() {
        collect(list, &mut out);
    }
    out
}

fn collect(a: &Address<'_>, out: &mut Vec<String>) {
    for addr in a.iter() {
        if let Some(email) = addr.address() {
            out.push(email.to_ascii_lowercase());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_and_cc_but_not_bcc_or_from() {
        let raw = b"From: a@x.test\r\nTo: B <B@x.test>, c@x.test\r\nCc: d@x.test\r\nSubject: s\r\n\r\nbody\r\n";
        assert_eq!(
            visible_recipients(raw),
            vec!["b@x.test", "c@x.test", "d@x.test"]
        );
    }
}
