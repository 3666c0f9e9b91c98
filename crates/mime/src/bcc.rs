//! Putting the Bcc recipients into a built message, for the HTTP APIs (Gmail, Microsoft Graph
//! `sendMail`) that read recipients from the headers. [`build_message`](crate::build_message)
//! never writes Bcc: SMTP carries it in the envelope.

use std::borrow::Cow;

use crate::error::{MimeError, shown};

/// Longest header line we write.
const LINE_MAX: usize = 78;

/// Adds `Bcc: …` at the top of the header block of `raw` (same line ending as the message,
/// folded under 78 columns). Addresses must be plain addr-specs (surrounding blanks are
/// trimmed); an IDN domain is written in its ASCII form. Nothing is copied when `bcc` is empty.
///
/// Refuses an address that is anything else ([`MimeError::InvalidAddress`], field `bcc[i]`)
/// and a message that already has a Bcc header ([`MimeError::HeaderPresent`]).
pub fn insert_bcc<'a>(raw: &'a [u8], bcc: &[String]) -> Result<Cow<'a, [u8]>, MimeError> {
    if bcc.is_empty() {
        return Ok(Cow::Borrowed(raw));
    }
    let mut addrs = Vec::with_capacity(bcc.len());
    for (i, a) in bcc.iter().enumerate() {
        let a = a.trim();
        addrs.push(bcc_address(a).ok_or_else(|| {
            MimeError::address(
                format!("bcc[{i}]"),
                format!("{} is not a plain address with a domain", shown(a)),
            )
        })?);
    }
    let eol: &[u8] = match raw.iter().position(|&b| b == b'\n') {
        Some(p) if p > 0 && raw[p - 1] == b'\r' => b"\r\n",
        Some(_) => b"\n",
        None => b"\r\n",
    };
    // Refuse a message that already carries a Bcc header: two would be malformed.
    let mut start = 0;
    while start < raw.len() {
        let end = raw[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| start + p + 1)
            .unwrap_or(raw.len());
        let line = &raw[start..end];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"bcc:") {
            return Err(MimeError::HeaderPresent { name: "Bcc".into() });
        }
        start = end;
    }
    let mut header = b"Bcc: ".to_vec();
    let mut col = header.len();
    for (i, a) in addrs.iter().enumerate() {
        if i > 0 {
            if col + 2 + a.len() > LINE_MAX {
                header.push(b',');
                header.extend_from_slice(eol);
                header.push(b' ');
                col = 1;
            } else {
                header.extend_from_slice(b", ");
                col += 2;
            }
        }
        header.extend_from_slice(a.as_bytes());
        col += a.len();
    }
    header.extend_from_slice(eol);
    header.extend_from_slice(raw);
    Ok(Cow::Owned(header))
}

/// A plain addr-spec, its domain in ASCII; `None` if it is anything else.
fn bcc_address(a: &str) -> Option<String> {
    if a.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return None;
    }
    let (local, domain) = a.rsplit_once('@')?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
                || "!#$%&'*+-/=?^_`{|}~.".contains(c)
        });
    if !local_ok || domain.is_empty() || domain.starts_with('[') {
        return None;
    }
    let domain = match url::Host::parse(domain).ok()? {
        url::Host::Domain(d) if d.contains('.') && !d.starts_with('.') && !d.ends_with('.') => d,
        _ => return None,
    };
    Some(format!("{local}@{domain}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcc_goes_on_top_with_the_message_line_ending() {
        let raw = b"From: a@x.io\r\nTo: b@y.io\r\n\r\nbody\r\n";
        let out = insert_bcc(raw, &["c@z.io".into(), "d@b\u{fc}cher.de".into()]).unwrap();
        assert_eq!(
            &out[..],
            &b"Bcc: c@z.io, d@xn--bcher-kva.de\r\nFrom: a@x.io\r\nTo: b@y.io\r\n\r\nbody\r\n"[..]
        );
        let lf = insert_bcc(b"To: b@y.io\n\nhi\n", &["c@z.io".into()]).unwrap();
        assert_eq!(&lf[..], &b"Bcc: c@z.io\nTo: b@y.io\n\nhi\n"[..]);
        let trimmed = insert_bcc(b"To: b@y.io\r\n\r\n", &[" c@z.io ".into()]).unwrap();
        assert_eq!(&trimmed[..], &b"Bcc: c@z.io\r\nTo: b@y.io\r\n\r\n"[..]);
        assert!(matches!(insert_bcc(raw, &[]).unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn long_bcc_lists_are_folded_and_injection_is_refused() {
        let many: Vec<String> = (0..12)
            .map(|i| format!("recipient{i}@example.com"))
            .collect();
        let out = insert_bcc(b"To: b@y.io\r\n\r\n", &many).unwrap();
        let text = String::from_utf8(out.into_owned()).unwrap();
        let header: Vec<&str> = text
            .split("\r\n")
            .take_while(|l| !l.starts_with("To:"))
            .collect();
        assert!(header.len() > 1, "{text}");
        assert!(header.iter().all(|l| l.len() <= LINE_MAX), "{header:?}");
        assert!(header[1..].iter().all(|l| l.starts_with(' ')));
        let joined: String = header.join("");
        for a in &many {
            assert!(joined.contains(a.as_str()));
        }
        for bad in [
            "x@y.io\r\nSubject: pwned",
            "b@y.io\r\nX-Evil: 1",
            "a@x.io, c@d.io",
            "a b@c.io",
            "<a@b.io>",
            "a@b",
            "no-at",
            "",
            "@b.io",
            "a@[1.2.3.4]",
        ] {
            let e =
                insert_bcc(b"To: b@y.io\r\n\r\n", &["ok@y.io".into(), bad.to_owned()]).unwrap_err();
            assert!(
                matches!(&e, MimeError::InvalidAddress { field, .. } if field == "bcc[1]"),
                "{bad:?}: {e:?}"
            );
        }
        let dup =
            insert_bcc(b"To: b@y.io\r\nBCC: old@y.io\r\n\r\n", &["c@z.io".into()]).unwrap_err();
        assert_eq!(dup, MimeError::HeaderPresent { name: "Bcc".into() });
        // A `bcc:` in the body is not a header.
        assert!(insert_bcc(b"To: b@y.io\r\n\r\nbcc: x\r\n", &["c@z.io".into()]).is_ok());
    }
}
