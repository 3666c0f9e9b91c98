//! Header-injection and address guards.
//!
//! Pure functions the API layer calls before it stores anything; [`crate::build_message`]
//! calls them again. Each error names the request field at fault (`to[2].identifier`).

use lettre::Address;
use lettre::message::{Mailbox, Mailboxes};
use mailroom_core::email::Attendee;

use crate::error::{MimeError, shown};

/// Custom headers clients may set besides `X-*` (compared case-insensitively).
pub const ALLOWED_CUSTOM_HEADERS: [&str; 3] =
    ["Reply-To", "List-Unsubscribe", "List-Unsubscribe-Post"];

/// Headers the builder owns; a custom header never replaces them.
pub const STRUCTURAL_HEADERS: [&str; 15] = [
    "Content-Type",
    "MIME-Version",
    "From",
    "To",
    "Cc",
    "Bcc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Content-Transfer-Encoding",
    "Received",
    "Return-Path",
    "Sender",
];

/// The longest header name lettre accepts.
const MAX_HEADER_NAME: usize = 76;
/// The longest Content-ID or Message-ID we accept.
const MAX_ID: usize = 250;
/// The longest custom header value.
const MAX_CUSTOM_VALUE: usize = 8192;
/// The longest space-free ASCII run in a custom header value (998 minus name and margin).
const MAX_UNFOLDABLE_RUN: usize = 900;

/// `attendee` is a valid address (after IDN conversion of its domain) with a display name
/// free of control characters. `field` is the attendee's path (`to[2]`); errors name
/// `to[2].identifier` or `to[2].display_name`.
pub fn check_address(field: &str, attendee: &Attendee) -> Result<(), MimeError> {
    mailbox(field, attendee).map(|_| ())
}

/// No CR, LF, NUL or other control character (tab is allowed).
pub fn check_header_value(field: &str, value: &str) -> Result<(), MimeError> {
    match value.chars().find(|c| c.is_control() && *c != '\t') {
        Some(c) => Err(MimeError::header(
            field,
            format!("it contains {}", describe_control(c)),
        )),
        None => Ok(()),
    }
}

/// A custom header (`custom_headers[index]`): a well-formed name that is `X-*` or one of
/// [`ALLOWED_CUSTOM_HEADERS`], never one of [`STRUCTURAL_HEADERS`], and a single-line value.
/// `Reply-To` must be an address list.
///
/// A malformed name or value is [`MimeError::InvalidHeader`]; a well-formed but disallowed
/// name is [`MimeError::ForbiddenHeader`].
pub fn check_custom_header(index: usize, name: &str, value: &str) -> Result<(), MimeError> {
    let name_field = format!("custom_headers[{index}].name");
    let value_field = format!("custom_headers[{index}].value");
    check_header_name(&name_field, name)?;
    let lower = name.to_ascii_lowercase();
    let structural = STRUCTURAL_HEADERS
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name));
    let allowed = (lower.starts_with("x-") && name.len() > 2)
        || ALLOWED_CUSTOM_HEADERS
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name));
    if structural || !allowed {
        return Err(MimeError::ForbiddenHeader {
            field: name_field,
            name: name.to_owned(),
        });
    }
    check_header_value(&value_field, value)?;
    if value.len() > MAX_CUSTOM_VALUE {
        return Err(MimeError::header(
            &value_field,
            format!(
                "the value is {} bytes long; at most {MAX_CUSTOM_VALUE} are allowed",
                value.len()
            ),
        ));
    }
    // Lines are folded at spaces only: a longer ASCII run would exceed SMTP's 998-byte line limit.
    if let Some(run) = value
        .split(' ')
        .find(|w| w.is_ascii() && w.len() > MAX_UNFOLDABLE_RUN)
    {
        return Err(MimeError::header(
            &value_field,
            format!(
                "it has a {}-character run without spaces; at most {MAX_UNFOLDABLE_RUN} fit on a header line",
                run.len()
            ),
        ));
    }
    if lower == "reply-to" {
        reply_to_mailboxes(&value_field, value)?;
    }
    Ok(())
}

/// A Content-ID as given by a client (without `<>` and without `cid:`): printable ASCII,
/// no spaces, no angle brackets, at most 250 characters.
pub fn check_cid(field: &str, cid: &str) -> Result<(), MimeError> {
    if cid.is_empty() {
        return Err(MimeError::header(field, "the content id is empty"));
    }
    if cid.len() > MAX_ID {
        return Err(MimeError::header(
            field,
            format!("the content id is longer than {MAX_ID} characters"),
        ));
    }
    if let Some(c) = cid
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '<' | '>'))
    {
        return Err(MimeError::header(
            field,
            format!(
                "the content id {} contains {}; use printable ASCII without spaces or angle brackets",
                shown(cid),
                describe_char(c)
            ),
        ));
    }
    Ok(())
}

/// A Message-ID with its angle brackets: `<left@right>`, both sides dot-atoms of printable
/// ASCII (RFC 5322 `msg-id`, without the obsolete forms).
pub fn check_message_id(field: &str, id: &str) -> Result<(), MimeError> {
    let bad = |why: &str| {
        MimeError::header(
            field,
            format!("{} is not a message id `<id@domain>`: {why}", shown(id)),
        )
    };
    if id.len() > MAX_ID + 2 {
        return Err(bad("it is too long"));
    }
    let inner = id
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .ok_or_else(|| bad("it must be enclosed in angle brackets"))?;
    let (left, right) = inner.rsplit_once('@').ok_or_else(|| bad("it has no @"))?;
    if !is_dot_atom(left) {
        return Err(bad("the part before @ is not a dot-atom"));
    }
    if !is_dot_atom(right) {
        return Err(bad("the part after @ is not a dot-atom"));
    }
    Ok(())
}

/// The lettre mailbox for an attendee: ASCII address (punycode domain), checked name.
pub(crate) fn mailbox(field: &str, attendee: &Attendee) -> Result<Mailbox, MimeError> {
    let address = ascii_address(&format!("{field}.identifier"), &attendee.identifier)?;
    let name = match &attendee.display_name {
        Some(name) => {
            display_name(&format!("{field}.display_name"), name)?;
            Some(name.trim().to_owned()).filter(|n| !n.is_empty())
        }
        None => None,
    };
    Ok(Mailbox::new(name, address))
}

/// Parses a Reply-To value into mailboxes with ASCII addresses.
pub(crate) fn reply_to_mailboxes(field: &str, value: &str) -> Result<Mailboxes, MimeError> {
    let parsed: Mailboxes = value.trim().parse().map_err(|_| {
        MimeError::address(
            field,
            format!(
                "{} is not a list of addresses like `Name <user@example.com>`",
                shown(value)
            ),
        )
    })?;
    let mut out = Mailboxes::new();
    for (i, m) in parsed.into_iter().enumerate() {
        let attendee = Attendee {
            identifier: m.email.to_string(),
            display_name: m.name,
        };
        out.push(mailbox(&format!("{field}[{i}]"), &attendee)?);
    }
    if out.iter().next().is_none() {
        return Err(MimeError::address(field, "the address list is empty"));
    }
    Ok(out)
}

/// `user@domain` with the domain in ASCII (IDNA/punycode). A non-ASCII local part is refused:
/// it would need SMTPUTF8, which mailroom does not require of servers.
pub(crate) fn ascii_address(field: &str, identifier: &str) -> Result<Address, MimeError> {
    let bad = |why: String| MimeError::address(field, why);
    if identifier.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if let Some(c) = identifier
        .chars()
        .find(|c| c.is_control() || c.is_whitespace())
    {
        return Err(bad(format!(
            "{} contains {}",
            shown(identifier),
            describe_char(c)
        )));
    }
    let (local, domain) = identifier
        .rsplit_once('@')
        .ok_or_else(|| bad(format!("{} has no @", shown(identifier))))?;
    if local.is_empty() {
        return Err(bad(format!(
            "{} has nothing before the @",
            shown(identifier)
        )));
    }
    if domain.is_empty() {
        return Err(bad(format!(
            "{} has no domain after the @",
            shown(identifier)
        )));
    }
    if !local.is_ascii() {
        return Err(bad(format!(
            "the local part {} is not ASCII; addresses with non-ASCII local parts need SMTPUTF8, \
             which mailroom does not use",
            shown(local)
        )));
    }
    let domain = if domain.is_ascii() {
        domain.to_owned()
    } else {
        idna::domain_to_ascii(domain).map_err(|_| {
            bad(format!(
                "the domain {} is not a valid internationalized domain name",
                shown(domain)
            ))
        })?
    };
    Address::new(local, &domain).map_err(|e| {
        let why = match e {
            lettre::address::AddressError::InvalidUser => {
                format!("the local part {} is not valid", shown(local))
            }
            lettre::address::AddressError::InvalidDomain => {
                format!("the domain {} is not valid", shown(&domain))
            }
            other => format!("{} is not valid ({other})", shown(identifier)),
        };
        bad(why)
    })
}

fn display_name(field: &str, name: &str) -> Result<(), MimeError> {
    match name.chars().find(|c| c.is_control()) {
        Some(c) => Err(MimeError::header(
            field,
            format!("it contains {}", describe_control(c)),
        )),
        None => Ok(()),
    }
}

/// RFC 5322 field-name: 1*ftext (printable ASCII except `:`), at most 76 characters.
fn check_header_name(field: &str, name: &str) -> Result<(), MimeError> {
    if name.is_empty() {
        return Err(MimeError::header(field, "the header name is empty"));
    }
    if name.len() > MAX_HEADER_NAME {
        return Err(MimeError::header(
            field,
            format!("the header name is longer than {MAX_HEADER_NAME} characters"),
        ));
    }
    if let Some(c) = name.chars().find(|c| !c.is_ascii_graphic() || *c == ':') {
        return Err(MimeError::header(
            field,
            format!(
                "the header name {} contains {}; use letters, digits and dashes",
                shown(name),
                describe_char(c)
            ),
        ));
    }
    Ok(())
}

fn is_dot_atom(s: &str) -> bool {
    const SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";
    !s.is_empty()
        && s.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || SPECIALS.contains(c))
        })
}

fn describe_control(c: char) -> String {
    match c {
        '\r' => "a carriage return (CR), which could inject headers".into(),
        '\n' => "a line feed (LF), which could inject headers".into(),
        '\0' => "a NUL character".into(),
        c => format!("the control character U+{:04X}", c as u32),
    }
}

fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".into(),
        '\t' => "a tab".into(),
        c if c.is_control() => describe_control(c),
        c if !c.is_ascii() => format!("the non-ASCII character {c:?}"),
        c => format!("the character {c:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(id: &str, name: Option<&str>) -> Attendee {
        Attendee {
            identifier: id.into(),
            display_name: name.map(Into::into),
        }
    }

    #[test]
    fn idn_domains_become_punycode_and_ascii_domains_stay() {
        let a = ascii_address("to[0].identifier", "jorg@bücher.example").unwrap();
        assert_eq!(a.to_string(), "jorg@xn--bcher-kva.example");
        let a = ascii_address("to[0].identifier", "Bob@Example.COM").unwrap();
        assert_eq!(a.to_string(), "Bob@Example.COM");
        assert_eq!(
            ascii_address("f", "a@[127.0.0.1]").unwrap().to_string(),
            "a@[127.0.0.1]"
        );
    }

    #[test]
    fn addresses_are_refused_with_the_field_named() {
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a b@example.com",
            "a@exa mple.com",
            "a\r\n@x.com",
            "<a@b.com>",
        ] {
            let e = check_address("cc[1]", &person(bad, None)).unwrap_err();
            assert!(
                matches!(e, MimeError::InvalidAddress { .. }),
                "{bad:?}: {e:?}"
            );
            assert_eq!(e.field(), Some("cc[1].identifier"), "{bad:?}");
        }
        let e = check_address("to[0]", &person("jörg@bücher.example", None)).unwrap_err();
        assert!(matches!(e, MimeError::InvalidAddress { .. }));
        assert!(e.to_string().contains("SMTPUTF8"), "{e}");
        assert!(
            check_address("to[0]", &person("jorg@bücher.example", Some("Jörg Müller"))).is_ok()
        );
    }

    #[test]
    fn display_names_with_control_characters_are_refused() {
        for name in [
            "Eve\r\nBcc: x@evil.test",
            "Eve\n",
            "Eve\r",
            "E\0ve",
            "E\u{7}ve",
            "E\tve",
        ] {
            let e = check_address("from", &person("eve@example.com", Some(name))).unwrap_err();
            assert!(
                matches!(e, MimeError::InvalidHeader { .. }),
                "{name:?}: {e:?}"
            );
            assert_eq!(e.field(), Some("from.display_name"));
        }
        assert!(
            check_address(
                "from",
                &person("eve@example.com", Some("Ève \"the\" <Great>, Jr."))
            )
            .is_ok()
        );
    }

    #[test]
    fn header_values_refuse_line_breaks_but_allow_tabs() {
        assert!(check_header_value("subject", "Hello\tthere — ünïcödé").is_ok());
        for v in [
            "a\r\nBcc: x@y.z",
            "a\nb",
            "a\rb",
            "a\0b",
            "a\u{1b}b",
            "a\u{7f}b",
            "a\u{85}b",
        ] {
            let e = check_header_value("subject", v).unwrap_err();
            assert!(matches!(e, MimeError::InvalidHeader { .. }), "{v:?}");
            assert_eq!(e.field(), Some("subject"));
        }
        let e = check_header_value("subject", "x\r\ny").unwrap_err();
        assert_eq!(
            e.to_string(),
            "subject is not a valid header value: it contains a carriage return (CR), which could inject headers"
        );
    }

    #[test]
    fn custom_headers_allow_x_and_the_short_list() {
        assert!(check_custom_header(0, "X-Campaign", "spring-2026").is_ok());
        assert!(check_custom_header(0, "x-lower", "v").is_ok());
        assert!(
            check_custom_header(
                0,
                "list-unsubscribe",
                "<mailto:u@example.com>, <https://e.test/u>"
            )
            .is_ok()
        );
        assert!(
            check_custom_header(0, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click").is_ok()
        );
        assert!(
            check_custom_header(
                0,
                "Reply-To",
                "Support <help@example.com>, b@bücher.example"
            )
            .is_ok()
        );
    }

    #[test]
    fn structural_and_unknown_custom_headers_are_forbidden() {
        for name in STRUCTURAL_HEADERS.iter().copied().chain([
            "bcc",
            "content-type",
            "X-",
            "Foo",
            "DKIM-Signature",
        ]) {
            let e = check_custom_header(3, name, "v").unwrap_err();
            assert_eq!(
                e,
                MimeError::ForbiddenHeader {
                    field: "custom_headers[3].name".into(),
                    name: name.into()
                }
            );
        }
    }

    #[test]
    fn malformed_custom_headers_are_invalid_not_forbidden() {
        for name in [
            "",
            "X-Has Space",
            "X-Colon:",
            "X-Ünï",
            "X-New\r\nBcc",
            &format!("X-{}", "a".repeat(80)),
        ] {
            let e = check_custom_header(1, name, "v").unwrap_err();
            assert!(
                matches!(e, MimeError::InvalidHeader { .. }),
                "{name:?}: {e:?}"
            );
            assert_eq!(e.field(), Some("custom_headers[1].name"));
        }
        let e = check_custom_header(2, "X-Ok", "v\r\nBcc: a@b.c").unwrap_err();
        assert!(matches!(e, MimeError::InvalidHeader { .. }));
        assert_eq!(e.field(), Some("custom_headers[2].value"));
        let e = check_custom_header(2, "X-Long", &"a".repeat(901)).unwrap_err();
        assert_eq!(e.field(), Some("custom_headers[2].value"));
        assert!(check_custom_header(2, "X-Long", &"a ".repeat(2000)).is_ok());
        assert!(check_custom_header(2, "X-Long", &"a ".repeat(5000)).is_err());
        let e = check_custom_header(2, "Reply-To", "not an address").unwrap_err();
        assert!(matches!(e, MimeError::InvalidAddress { .. }), "{e:?}");
        let e = check_custom_header(2, "Reply-To", "jörg@bücher.example").unwrap_err();
        assert!(matches!(e, MimeError::InvalidAddress { .. }), "{e:?}");
    }

    #[test]
    fn content_ids() {
        assert!(check_cid("attachments[0].cid", "logo.png@mailroom").is_ok());
        for bad in [
            "",
            "a b",
            "<logo>",
            "logo>",
            "lögo",
            "a\r\nb",
            &"a".repeat(251),
        ] {
            let e = check_cid("attachments[0].cid", bad).unwrap_err();
            assert_eq!(e.field(), Some("attachments[0].cid"), "{bad:?}");
        }
    }

    #[test]
    fn message_ids() {
        assert!(check_message_id("message_id", "<abc.def@mail.example.com>").is_ok());
        assert!(check_message_id("message_id", "<a+b=c_d@x>").is_ok());
        for bad in [
            "abc@example.com",
            "<abc>",
            "<@x>",
            "<a@>",
            "<a b@x>",
            "<a@x\r\n>",
            "<a..b@x>",
            "<a@x.>",
            "<é@x>",
        ] {
            assert!(check_message_id("message_id", bad).is_err(), "{bad:?}");
        }
    }
}
