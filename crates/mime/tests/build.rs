//! `build_message` output parsed back with mail-parser.

use mail_parser::{HeaderForm, Message, MessageParser, MessagePart, MimeHeaders, PartType};
use mailroom_core::email::{Attendee, OutgoingAttachment, OutgoingEmail, ReplyParent};
use mailroom_mime::{BuiltMessage, MimeError, build_message, derive_text};
use sha2::{Digest, Sha256};

const MID: &str = "<k3Jd9aZx@mail.example.com>";
/// 2026-03-04T05:06:07.890Z
const DATE_MS: i64 = 1_772_600_767_890;

fn who(id: &str, name: Option<&str>) -> Attendee {
    Attendee {
        identifier: id.into(),
        display_name: name.map(Into::into),
    }
}

fn email() -> OutgoingEmail {
    OutgoingEmail {
        from: who("alice@example.com", Some("Alice Example")),
        to: vec![who("bob@example.net", None)],
        cc: vec![],
        bcc: vec![],
        subject: "Hello".into(),
        html: None,
        text: "Hi Bob,\nsee you.\n".into(),
        attachments: vec![],
        custom_headers: vec![],
        reply: None,
    }
}

fn file(name: &str, ct: Option<&str>, content: &[u8], cid: Option<&str>) -> OutgoingAttachment {
    OutgoingAttachment {
        filename: name.into(),
        content_type: ct.map(Into::into),
        content: content.to_vec(),
        cid: cid.map(Into::into),
    }
}

fn build(e: &OutgoingEmail) -> BuiltMessage {
    build_message(e, MID, DATE_MS).unwrap()
}

fn parse(built: &BuiltMessage) -> Message<'_> {
    MessageParser::default()
        .parse(&built.bytes)
        .expect("mail-parser reads the message")
}

fn raw(built: &BuiltMessage) -> &str {
    std::str::from_utf8(&built.bytes).expect("the message is ASCII")
}

/// The top-level header block, unfolded lines kept as they are.
fn head(built: &BuiltMessage) -> &str {
    let r = raw(built);
    &r[..r.find("\r\n\r\n").expect("a header block") + 2]
}

fn sha(b: &[u8]) -> Vec<u8> {
    Sha256::digest(b).to_vec()
}

fn mime_type(p: &MessagePart<'_>) -> String {
    let ct = p.content_type().expect("a Content-Type");
    format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default()).to_ascii_lowercase()
}

fn children<'a>(m: &'a Message<'a>, p: &'a MessagePart<'a>) -> Vec<&'a MessagePart<'a>> {
    match &p.body {
        PartType::Multipart(ids) => ids
            .iter()
            .map(|id| m.part(*id).expect("child part"))
            .collect(),
        other => panic!("not a multipart: {other:?}"),
    }
}

fn addresses(a: Option<&mail_parser::Address<'_>>) -> Vec<(Option<String>, String)> {
    a.map(|a| {
        a.iter()
            .map(|x| {
                (
                    x.name().map(str::to_owned),
                    x.address().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    })
    .unwrap_or_default()
}

#[test]
fn text_only_is_one_plain_utf8_part() {
    let mut e = email();
    e.text = "Grüße aus Köln,\nund bis bald.\n".into();
    let b = build(&e);
    let m = parse(&b);
    let root = m.root_part();
    assert_eq!(mime_type(root), "text/plain", "{}", raw(&b));
    assert_eq!(
        root.content_type()
            .unwrap()
            .attribute("charset")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("utf-8")
    );
    assert!(matches!(root.body, PartType::Text(_)));
    assert_eq!(m.body_text(0).unwrap().replace("\r\n", "\n"), e.text);
    assert_eq!(
        m.html_body_count(),
        1,
        "mail-parser lists the text part as the html body too"
    );
    assert_eq!(m.attachment_count(), 0);
    assert_eq!(m.mime_version().as_text(), Some("1.0"));
}

#[test]
fn headers_are_all_there_and_decode_to_the_original() {
    let mut e = email();
    e.from = who("alice@example.com", Some("Zoë Ünïcödé-Ñame"));
    e.to = vec![
        who("bob@example.net", Some("Bob")),
        who("carol@example.org", None),
    ];
    e.cc = vec![who("dave@example.com", Some("Dave \"the boss\", Jr."))];
    e.subject = "Réunion 📅 à 15h — ordre du jour".into();
    let b = build(&e);
    let m = parse(&b);

    assert_eq!(
        addresses(m.from()),
        [(Some("Zoë Ünïcödé-Ñame".into()), "alice@example.com".into())]
    );
    assert_eq!(
        addresses(m.to()),
        [
            (Some("Bob".into()), "bob@example.net".into()),
            (None, "carol@example.org".into())
        ]
    );
    assert_eq!(
        addresses(m.cc()),
        [(
            Some("Dave \"the boss\", Jr.".into()),
            "dave@example.com".into()
        )]
    );
    assert_eq!(m.subject(), Some(e.subject.as_str()));
    assert_eq!(m.message_id(), Some("k3Jd9aZx@mail.example.com"));
    assert_eq!(m.date().unwrap().to_timestamp(), DATE_MS / 1000);
    assert_eq!(m.mime_version().as_text(), Some("1.0"));

    let h = head(&b);
    assert!(
        h.contains("Message-ID: <k3Jd9aZx@mail.example.com>\r\n"),
        "{h}"
    );
    assert!(
        h.contains("Date: Wed, 04 Mar 2026 05:06:07 +0000\r\n"),
        "{h}"
    );
    assert!(
        h.contains("Subject: =?utf-8?"),
        "the subject is RFC 2047 encoded: {h}"
    );
    assert!(
        h.contains("From: =?utf-8?"),
        "the name is RFC 2047 encoded: {h}"
    );
    assert!(
        !h.contains("In-Reply-To") && !h.contains("References"),
        "{h}"
    );
    assert_eq!(b.message_id, MID);
    assert_eq!(b.envelope_from, "alice@example.com");
    assert_eq!(
        b.envelope_to,
        ["bob@example.net", "carol@example.org", "dave@example.com"]
    );
}

#[test]
fn output_is_seven_bit_with_crlf_lines_under_the_limit() {
    let mut e = email();
    e.subject = "Ω".repeat(150);
    e.text = format!("{}\nbare cr\rline\r\nend", "long line ".repeat(60));
    e.html = Some(format!("<p>{}</p>", "ü".repeat(500)));
    e.attachments = vec![file(
        &format!("{}.txt", "long-name ".repeat(40)),
        None,
        b"one\ntwo\n",
        None,
    )];
    e.to = vec![who("bob@example.net", Some(&"Bob the builder ".repeat(80)))];
    e.custom_headers = vec![("X-Words".into(), "word ".repeat(1500))];
    let b = build(&e);
    assert!(b.bytes.is_ascii());
    for (i, w) in b.bytes.windows(2).enumerate() {
        assert!(w[1] != b'\n' || w[0] == b'\r', "bare LF at {i}");
        assert!(w[0] != b'\r' || w[1] == b'\n', "bare CR at {i}");
    }
    let longest = raw(&b).split("\r\n").map(str::len).max().unwrap();
    assert!(longest <= 998, "a {longest}-byte line");
    let m = parse(&b);
    assert_eq!(m.subject(), Some(e.subject.as_str()));
    assert_eq!(
        m.body_text(0).unwrap().replace("\r\n", "\n"),
        e.text.replace("\r\n", "\n").replace('\r', "\n")
    );
}

#[test]
fn html_gives_multipart_alternative_text_first() {
    let mut e = email();
    let html = "<html><body><p>Hello <b>Bob</b> &amp; <i>friends</i> — ça va?</p></body></html>";
    e.html = Some(html.into());
    e.text = derive_text(html);
    let b = build(&e);
    let m = parse(&b);
    let root = m.root_part();
    assert_eq!(mime_type(root), "multipart/alternative", "{}", raw(&b));
    let parts = children(&m, root);
    assert_eq!(parts.len(), 2);
    assert_eq!(mime_type(parts[0]), "text/plain");
    assert_eq!(mime_type(parts[1]), "text/html");
    assert_eq!(m.body_html(0).unwrap().replace("\r\n", "\n"), html);
    assert_eq!(m.body_text(0).unwrap().replace("\r\n", "\n"), e.text);
    assert!(
        e.text.contains("Hello Bob & friends — ça va?"),
        "{}",
        e.text
    );
    assert_eq!(m.attachment_count(), 0);
}

#[test]
fn html_with_empty_text_gets_a_derived_alternative() {
    let mut e = email();
    e.html = Some("<p>Only <b>HTML</b> here</p>".into());
    e.text = String::new();
    let m_b = build(&e);
    let m = parse(&m_b);
    assert_eq!(m.body_text(0).unwrap().trim(), "Only HTML here");
}

#[test]
fn attachments_are_byte_exact_with_types_and_unicode_names() {
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let ascii_lf = b"line one\nline two\n\nno CR anywhere\n".to_vec();
    let mut e = email();
    e.html = Some("<p>See the files.</p>".into());
    e.text = "See the files.".into();
    e.attachments = vec![
        file(
            "Überweisung für Jörg – März 2026.pdf",
            None,
            b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\nbinary\x00\x01",
            None,
        ),
        file("blob.bin", Some("application/octet-stream"), &binary, None),
        file("notes.txt", None, &ascii_lf, None),
        file(
            "photo.jpeg",
            Some("application/octet-stream"),
            b"\xff\xd8\xff\xe0fakejpeg",
            None,
        ),
        file("data.custom-ext", None, b"\x00\x01\x02", None),
        file("report", Some("application/vnd.ms-excel"), b"xls", None),
    ];
    let b = build(&e);
    let m = parse(&b);
    assert_eq!(mime_type(m.root_part()), "multipart/mixed", "{}", raw(&b));
    let top = children(&m, m.root_part());
    assert_eq!(top.len(), 7);
    assert_eq!(mime_type(top[0]), "multipart/alternative");

    let got: Vec<_> = m.attachments().collect();
    assert_eq!(got.len(), e.attachments.len());
    let expected_types = [
        "application/pdf",
        "application/octet-stream",
        "text/plain",
        "image/jpeg",
        "application/octet-stream",
        "application/vnd.ms-excel",
    ];
    for ((part, want), ct) in got.iter().zip(&e.attachments).zip(expected_types) {
        assert_eq!(part.attachment_name(), Some(want.filename.as_str()));
        assert_eq!(
            sha(part.contents()),
            sha(&want.content),
            "{}",
            want.filename
        );
        assert_eq!(mime_type(part), ct, "{}", want.filename);
        assert_eq!(
            part.content_transfer_encoding()
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("base64")
        );
        let disposition = part.content_disposition().unwrap();
        assert_eq!(disposition.ctype(), "attachment");
        assert!(part.content_id().is_none());
    }
    assert!(
        raw(&b).contains("filename*0*=utf-8''%C3%9Cberweisung"),
        "RFC 2231 file name"
    );
}

#[test]
fn inline_images_go_into_multipart_related_by_filename_and_by_cid() {
    let logo = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDRlogo".to_vec();
    let banner = b"GIF89a\x01\x00banner".to_vec();
    let mut e = email();
    e.html = Some(
        "<p><img src=\"cid:logo.png\" alt=\"logo\"> <img src=\"cid:banner@mailroom\"></p><p>Regards</p>".into(),
    );
    e.text = "Regards".into();
    e.attachments = vec![
        file("logo.png", None, &logo, None),
        file("contract.pdf", Some("application/pdf"), b"%PDF", None),
        file(
            "banner.gif",
            Some("image/gif"),
            &banner,
            Some("banner@mailroom"),
        ),
        file("logo.png2", None, b"not referenced", None),
    ];
    let b = build(&e);
    let m = parse(&b);

    let root = m.root_part();
    assert_eq!(mime_type(root), "multipart/mixed", "{}", raw(&b));
    let top = children(&m, root);
    assert_eq!(top.len(), 3, "body + 2 real attachments");
    assert_eq!(mime_type(top[0]), "multipart/alternative");
    assert_eq!(top[1].attachment_name(), Some("contract.pdf"));
    assert_eq!(top[2].attachment_name(), Some("logo.png2"));

    let alt = children(&m, top[0]);
    assert_eq!(alt.len(), 2);
    assert_eq!(mime_type(alt[0]), "text/plain");
    assert_eq!(mime_type(alt[1]), "multipart/related");
    let related = children(&m, alt[1]);
    assert_eq!(related.len(), 3);
    assert_eq!(mime_type(related[0]), "text/html");

    let (logo_part, banner_part) = (related[1], related[2]);
    assert_eq!(logo_part.content_id(), Some("logo.png"));
    assert_eq!(mime_type(logo_part), "image/png");
    assert_eq!(logo_part.content_disposition().unwrap().ctype(), "inline");
    assert_eq!(logo_part.attachment_name(), Some("logo.png"));
    assert_eq!(sha(logo_part.contents()), sha(&logo));
    assert_eq!(banner_part.content_id(), Some("banner@mailroom"));
    assert_eq!(mime_type(banner_part), "image/gif");
    assert_eq!(banner_part.content_disposition().unwrap().ctype(), "inline");
    assert_eq!(sha(banner_part.contents()), sha(&banner));
    assert!(
        raw(&b).contains("Content-ID: <logo.png>\r\n"),
        "{}",
        raw(&b)
    );
    assert!(raw(&b).contains("Content-ID: <banner@mailroom>\r\n"));

    // The HTML resolves every cid: it references.
    let html = m.body_html(0).unwrap();
    for cid in ["logo.png", "banner@mailroom"] {
        assert!(html.contains(&format!("cid:{cid}")));
        assert!(related.iter().any(|p| p.content_id() == Some(cid)));
    }
}

#[test]
fn inline_only_has_no_mixed_wrapper() {
    let mut e = email();
    e.html = Some("<img src=\"cid:x@y\">".into());
    e.attachments = vec![file("x.png", None, b"png", Some("x@y"))];
    let b = build(&e);
    let m = parse(&b);
    assert_eq!(
        mime_type(m.root_part()),
        "multipart/alternative",
        "{}",
        raw(&b)
    );
    let alt = children(&m, m.root_part());
    assert_eq!(mime_type(alt[1]), "multipart/related");
}

#[test]
fn a_cid_without_html_is_a_plain_attachment() {
    let mut e = email();
    e.attachments = vec![file("x.png", None, b"png", Some("x@y"))];
    let b = build(&e);
    let m = parse(&b);
    let top = children(&m, m.root_part());
    assert_eq!(mime_type(m.root_part()), "multipart/mixed");
    assert_eq!(mime_type(top[0]), "text/plain");
    assert_eq!(top[1].content_disposition().unwrap().ctype(), "attachment");
    assert!(top[1].content_id().is_none());
}

#[test]
fn bcc_reaches_the_envelope_but_no_header() {
    let mut e = email();
    e.to = vec![who("bob@example.net", None), who("Carol@Example.org", None)];
    e.cc = vec![who("BOB@EXAMPLE.NET", Some("Bob again"))];
    e.bcc = vec![
        who("secret@hidden.example", Some("Secret")),
        who("carol@example.org", None),
    ];
    let b = build(&e);
    assert_eq!(
        b.envelope_to,
        [
            "bob@example.net",
            "Carol@Example.org",
            "secret@hidden.example"
        ]
    );
    let m = parse(&b);
    assert!(m.bcc().is_none());
    assert!(m.header_raw("Bcc").is_none());
    assert!(!raw(&b).to_ascii_lowercase().contains("bcc"), "{}", raw(&b));
    assert!(!raw(&b).contains("secret@hidden.example"));
    assert!(!raw(&b).contains("Secret"));
}

#[test]
fn bcc_only_recipients_work() {
    let mut e = email();
    e.to = vec![];
    e.bcc = vec![who("secret@hidden.example", None)];
    let b = build(&e);
    assert_eq!(b.envelope_to, ["secret@hidden.example"]);
    assert!(!head(&b).contains("secret@hidden.example"));
    e.bcc = vec![];
    assert!(matches!(
        build_message(&e, MID, DATE_MS),
        Err(MimeError::Build { .. })
    ));
}

#[test]
fn idn_domains_are_punycoded_in_headers_and_envelope() {
    let mut e = email();
    e.from = who("info@münchen.example", Some("Jörg"));
    e.to = vec![who("jorg@bücher.example", Some("Jörg Bücher"))];
    e.bcc = vec![who("x@日本.example", None)];
    let b = build(&e);
    assert_eq!(b.envelope_from, "info@xn--mnchen-3ya.example");
    assert_eq!(
        b.envelope_to,
        ["jorg@xn--bcher-kva.example", "x@xn--wgv71a.example"]
    );
    let m = parse(&b);
    assert_eq!(
        addresses(m.from()),
        [(Some("Jörg".into()), "info@xn--mnchen-3ya.example".into())]
    );
    assert_eq!(
        addresses(m.to()),
        [(
            Some("Jörg Bücher".into()),
            "jorg@xn--bcher-kva.example".into()
        )]
    );
    assert!(b.bytes.is_ascii());
}

#[test]
fn unicode_local_parts_are_refused() {
    let mut e = email();
    e.cc = vec![
        who("ok@example.com", None),
        who("jörg@bücher.example", None),
    ];
    let err = build_message(&e, MID, DATE_MS).unwrap_err();
    assert!(matches!(err, MimeError::InvalidAddress { .. }), "{err:?}");
    assert_eq!(err.field(), Some("cc[1].identifier"));
    assert!(
        err.to_string()
            .starts_with("cc[1].identifier is not a valid email address"),
        "{err}"
    );

    let mut e = email();
    e.from = who("ålice@example.com", None);
    assert_eq!(
        build_message(&e, MID, DATE_MS).unwrap_err().field(),
        Some("from.identifier")
    );
}

fn parent() -> ReplyParent {
    ReplyParent {
        message_id: "<parent.3@example.net>".into(),
        references: vec!["<root.1@example.net>".into(), "<mid.2@example.org>".into()],
        subject: Some("Quarterly numbers".into()),
    }
}

#[test]
fn replies_carry_threading_headers() {
    let mut e = email();
    e.subject = "Quarterly numbers".into();
    e.reply = Some(parent());
    let b = build(&e);
    let m = parse(&b);
    assert_eq!(m.in_reply_to().as_text(), Some("parent.3@example.net"));
    assert_eq!(
        m.references().as_text_list().unwrap(),
        [
            "root.1@example.net",
            "mid.2@example.org",
            "parent.3@example.net"
        ]
    );
    assert_eq!(m.subject(), Some("Re: Quarterly numbers"));
    let h = head(&b);
    assert!(h.contains("In-Reply-To: <parent.3@example.net>\r\n"), "{h}");
    assert!(
        h.contains(
            "References: <root.1@example.net> <mid.2@example.org> <parent.3@example.net>\r\n"
        ),
        "{h}"
    );
}

#[test]
fn reply_subject_rules_apply_in_the_message() {
    let cases = [
        ("", Some("Quarterly numbers"), "Re: Quarterly numbers"),
        ("RE: already", Some("x"), "RE: already"),
        ("re:lower", None, "re:lower"),
        ("Nouveau sujet", Some("x"), "Re: Nouveau sujet"),
        ("", Some("Re: Ünïcödé"), "Re: Ünïcödé"),
    ];
    for (own, parent_subject, want) in cases {
        let mut e = email();
        e.subject = own.into();
        e.reply = Some(ReplyParent {
            subject: parent_subject.map(Into::into),
            ..parent()
        });
        let b = build(&e);
        assert_eq!(
            parse(&b).subject(),
            Some(want),
            "{own:?} / {parent_subject:?}"
        );
    }
}

#[test]
fn a_reply_to_a_first_mail_references_just_the_parent_and_skips_bad_refs() {
    let mut e = email();
    e.reply = Some(ReplyParent {
        message_id: "<only@example.net>".into(),
        references: vec!["broken ref".into(), "<only@example.net>".into()],
        subject: None,
    });
    let b = build(&e);
    assert!(
        head(&b).contains("References: <only@example.net>\r\n"),
        "{}",
        head(&b)
    );
    e.reply = Some(ReplyParent {
        message_id: "no-brackets@x".into(),
        references: vec![],
        subject: None,
    });
    let err = build_message(&e, MID, DATE_MS).unwrap_err();
    assert_eq!(err.field(), Some("reply_to"));
}

#[test]
fn custom_headers_are_emitted_as_given() {
    let mut e = email();
    e.custom_headers = vec![
        ("X-Campaign".into(), "spring-2026".into()),
        ("X-Tag".into(), "one".into()),
        ("x-tag".into(), "two".into()),
        (
            "List-Unsubscribe".into(),
            "<mailto:unsub@example.com>, <https://example.com/u/1>".into(),
        ),
        (
            "List-Unsubscribe-Post".into(),
            "List-Unsubscribe=One-Click".into(),
        ),
        (
            "Reply-To".into(),
            "Support Désk <help@bücher.example>".into(),
        ),
        ("X-Note".into(), "naïve café".into()),
    ];
    let b = build(&e);
    let h = head(&b);
    assert!(h.contains("X-Campaign: spring-2026\r\n"), "{h}");
    assert!(
        h.contains("X-Tag: one\r\n") && h.contains("x-tag: two\r\n"),
        "{h}"
    );
    assert!(
        h.contains("List-Unsubscribe: <mailto:unsub@example.com>, <https://example.com/u/1>\r\n"),
        "{h}"
    );
    assert!(
        h.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"),
        "{h}"
    );
    let m = parse(&b);
    assert_eq!(
        addresses(m.reply_to()),
        [(
            Some("Support Désk".into()),
            "help@xn--bcher-kva.example".into()
        )]
    );
    assert!(
        h.contains("X-Note: =?utf-8?b?"),
        "non-ASCII custom values are RFC 2047 encoded: {h}"
    );
    let note = m.header_as("X-Note", HeaderForm::Text);
    assert_eq!(note.first().and_then(|v| v.as_text()), Some("naïve café"));
    let tags: Vec<_> = m
        .header_values("X-Tag")
        .filter_map(|v| v.as_text())
        .collect();
    assert_eq!(tags, ["one", "two"]);
    // The custom lines belong to the top-level header block, not to a MIME part.
    assert_eq!(
        m.header("X-Campaign").and_then(|v| v.as_text()),
        Some("spring-2026")
    );
}

#[test]
fn build_refuses_injection_and_forbidden_headers() {
    let mut e = email();
    e.subject = "Hi\r\nBcc: victim@example.com".into();
    let err = build_message(&e, MID, DATE_MS).unwrap_err();
    assert!(matches!(err, MimeError::InvalidHeader { .. }));
    assert_eq!(err.field(), Some("subject"));

    let mut e = email();
    e.to = vec![who("bob@example.net", Some("Bob\nBcc: victim@example.com"))];
    assert_eq!(
        build_message(&e, MID, DATE_MS).unwrap_err().field(),
        Some("to[0].display_name")
    );

    let mut e = email();
    e.custom_headers = vec![
        ("X-Ok".into(), "fine".into()),
        ("X-Evil".into(), "a\r\nBcc: v@example.com".into()),
    ];
    let err = build_message(&e, MID, DATE_MS).unwrap_err();
    assert!(matches!(err, MimeError::InvalidHeader { .. }));
    assert_eq!(err.field(), Some("custom_headers[1].value"));

    let mut e = email();
    e.custom_headers = vec![("Content-Type".into(), "text/html".into())];
    let err = build_message(&e, MID, DATE_MS).unwrap_err();
    assert_eq!(
        err,
        MimeError::ForbiddenHeader {
            field: "custom_headers[0].name".into(),
            name: "Content-Type".into()
        }
    );

    let mut e = email();
    e.custom_headers = vec![("X Bad".into(), "v".into())];
    assert!(matches!(
        build_message(&e, MID, DATE_MS).unwrap_err(),
        MimeError::InvalidHeader { .. }
    ));

    let mut e = email();
    e.attachments = vec![file("a.png", Some("image/png"), b"x", Some("<bad cid>"))];
    e.html = Some("<p>x</p>".into());
    assert_eq!(
        build_message(&e, MID, DATE_MS).unwrap_err().field(),
        Some("attachments[0].cid")
    );

    let mut e = email();
    e.attachments = vec![file("a.png", Some("image/png\r\nX-Evil: 1"), b"x", None)];
    assert_eq!(
        build_message(&e, MID, DATE_MS).unwrap_err().field(),
        Some("attachments[0].content_type")
    );
}

#[test]
fn message_id_and_date_are_checked() {
    let e = email();
    for bad in [
        "k3Jd9aZx@mail.example.com",
        "<no-at>",
        "<a b@c>",
        "<a@b>\r\nX: y",
    ] {
        let err = build_message(&e, bad, DATE_MS).unwrap_err();
        assert_eq!(err.field(), Some("message_id"), "{bad:?}");
    }
    assert!(matches!(
        build_message(&e, MID, -1),
        Err(MimeError::Build { .. })
    ));
    assert!(matches!(
        build_message(&e, MID, 253_402_300_800_000),
        Err(MimeError::Build { .. })
    ));
    let b = build_message(&e, MID, 0).unwrap();
    assert!(head(&b).contains("Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n"));
}

#[test]
fn errors_read_as_sentences() {
    let mut e = email();
    e.custom_headers = vec![("Bcc".into(), "x@example.com".into())];
    let err = build_message(&e, MID, DATE_MS).unwrap_err();
    assert_eq!(
        err.to_string(),
        "custom_headers[0].name: the header `Bcc` may not be set; only X-* headers, Reply-To, \
         List-Unsubscribe and List-Unsubscribe-Post are allowed"
    );
    let mut e = email();
    e.to = vec![who("nobody", None)];
    assert_eq!(
        build_message(&e, MID, DATE_MS).unwrap_err().to_string(),
        "to[0].identifier is not a valid email address: `nobody` has no @"
    );
}
