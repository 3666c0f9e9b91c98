//! Sending end to end: through the API, Postfix and Dovecot, read back over IMAP and parsed.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mail_parser::{MessageParser, MimeHeaders};
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use mailroom_store::events;
use mailroom_testkit::app::{TestApp, assert_error, spawn_on};
use mailroom_testkit::smtp_fault::{FaultSmtp, Mode, Stage};
use mailroom_testkit::{Backend, MailRig, MailUser, TestDb, both_backends, spawn_app, wait};

async fn setup(backend: Backend) -> Option<(TestApp, MailRig)> {
    let rig = MailRig::from_env()?;
    let app = spawn_app(backend).await?;
    Some((app, rig))
}

async fn link(app: &TestApp, body: &Value) -> String {
    let (s, created) = app.post_json("/api/v1/accounts", body).await;
    assert_eq!(s, 201, "{created}");
    created["account_id"].as_str().unwrap().to_owned()
}

/// Waits until `user`'s `mailbox` holds a message with `message_id`; returns its bytes.
async fn delivered(rig: &MailRig, user: &MailUser, mailbox: &str, message_id: &str) -> Vec<u8> {
    let needle = format!("Message-ID: {message_id}").to_ascii_lowercase();
    wait::until(
        &format!("{message_id} in {mailbox} of {}", user.address),
        Duration::from_secs(20),
        || async {
            rig.fetch_all(user, mailbox).await.into_iter().find(|m| {
                String::from_utf8_lossy(m)
                    .to_ascii_lowercase()
                    .contains(&needle)
            })
        },
    )
    .await
}

/// How many messages with `message_id` the mailbox holds.
async fn count(rig: &MailRig, user: &MailUser, mailbox: &str, message_id: &str) -> usize {
    let needle = format!("message-id: {}", message_id.to_ascii_lowercase());
    rig.fetch_all(user, mailbox)
        .await
        .iter()
        .filter(|m| {
            String::from_utf8_lossy(m)
                .to_ascii_lowercase()
                .contains(&needle)
        })
        .count()
}

fn sha(b: &[u8]) -> Vec<u8> {
    Sha256::digest(b).to_vec()
}

/// A few KB of bytes that are not text.
fn binary(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ 0xA5)
        .collect()
}

const PNG: &[u8] = &[
    0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, b'I', b'H', b'D', b'R', 1, 2, 3, 4,
];

async fn html_with_attachments_inline_image_and_bcc(backend: Backend) {
    let Some((app, rig)) = setup(backend).await else {
        return;
    };
    let sender = rig.create_user();
    let (to, cc, bcc) = (rig.create_user(), rig.create_user(), rig.create_user());
    let account = link(&app, &rig.account_body(&sender)).await;
    let pdf = binary(40_000, 7);
    let body = json!({
        "account_id": account,
        "to": [{"identifier": to.address, "display_name": "Zoë Ünicode"}],
        "cc": [{"identifier": cc.address}],
        "bcc": [{"identifier": bcc.address}],
        "from": {"display_name": "Jörg Sender"},
        "subject": "Rapport trimestriel — résumé ✓",
        "body": "<p>Bonjour <b>Zoë</b>,</p><p>Le graphique : <img src=\"cid:chart.png\"></p>",
        "attachments": [
            {"filename": "chart.png", "content": STANDARD.encode(PNG)},
            {"filename": "rapport détaillé.pdf", "content": STANDARD.encode(&pdf)},
        ],
        "custom_headers": [{"name": "X-Campaign", "value": "q3-2026"}],
    });
    let (s, sent) = app.post_json("/api/v1/emails", &body).await;
    assert_eq!(s, 201, "{sent}");
    assert_eq!(sent["object"], "EmailSent");
    assert_eq!(sent["status"], "sent");
    let tracking_id = sent["tracking_id"].as_str().unwrap().to_owned();
    let message_id = sent["message_id"].as_str().unwrap().to_owned();
    assert_eq!(sent["provider_id"], message_id.as_str());
    assert!(
        message_id.starts_with(&format!("<{tracking_id}@"))
            && message_id.ends_with("@example.test>"),
        "{message_id}"
    );

    let raw = delivered(&rig, &to, "INBOX", &message_id).await;
    let m = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(m.subject(), Some("Rapport trimestriel — résumé ✓"));
    let from = m.from().unwrap().first().unwrap();
    assert_eq!(from.name(), Some("Jörg Sender"));
    assert_eq!(from.address(), Some(sender.address.as_str()));
    let to_addr = m.to().unwrap().first().unwrap();
    assert_eq!(
        (to_addr.name(), to_addr.address()),
        (Some("Zoë Ünicode"), Some(to.address.as_str()))
    );
    assert_eq!(
        m.cc().unwrap().first().unwrap().address(),
        Some(cc.address.as_str())
    );
    assert!(m.bcc().is_none(), "no Bcc header is delivered");
    assert!(
        !String::from_utf8_lossy(&raw)
            .to_ascii_lowercase()
            .contains(&bcc.address.to_ascii_lowercase())
    );
    assert_eq!(m.header_raw("X-Campaign").map(str::trim), Some("q3-2026"));
    assert!(m.date().is_some());
    assert!(m.body_html(0).unwrap().contains("<b>Zoë</b>"));
    let text = m.body_text(0).unwrap();
    assert!(
        text.contains("Bonjour") && text.contains("Zoë") && !text.contains("<b>"),
        "{text}"
    );
    // Both alternatives were sent, not derived by the parser.
    let lower = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(
        lower.contains("multipart/alternative")
            && lower.contains("multipart/related")
            && lower.contains("multipart/mixed")
    );

    let attachments: Vec<_> = m.attachments().collect();
    let pdf_part = attachments
        .iter()
        .find(|a| a.attachment_name() == Some("rapport détaillé.pdf"))
        .expect("pdf attached");
    assert_eq!(sha(pdf_part.contents()), sha(&pdf), "pdf byte-exact");
    assert_eq!(
        pdf_part
            .content_type()
            .map(|c| format!("{}/{}", c.c_type, c.subtype().unwrap_or(""))),
        Some("application/pdf".into())
    );
    let png = attachments
        .iter()
        .find(|a| a.content_type().is_some_and(|c| c.subtype() == Some("png")))
        .expect("inline png");
    assert_eq!(sha(png.contents()), sha(PNG));
    assert_eq!(
        png.content_id(),
        Some("chart.png"),
        "resolved by the cid: reference"
    );

    // The Bcc recipient got it too.
    delivered(&rig, &bcc, "INBOX", &message_id).await;
    delivered(&rig, &cc, "INBOX", &message_id).await;

    // The sender's Sent folder holds the exact bytes, seen.
    let copy = delivered(&rig, &sender, "Sent", &message_id).await;
    let sent_body = MessageParser::default().parse(&copy).unwrap();
    assert_eq!(sent_body.message_id(), m.message_id());
    let flags = wait::until(
        "the Sent copy is recorded",
        Duration::from_secs(20),
        || async {
            let (_, o) = app.get(&format!("/api/v1/outbox/{tracking_id}")).await;
            (o["sent_copy"] == "done").then_some(o)
        },
    )
    .await;
    assert_eq!(flags["status"], "sent");
    assert_eq!(flags["attempts"], 1);
    assert!(
        seen_in_sent(&rig, &sender).await,
        "the Sent copy is flagged \\Seen"
    );
}
both_backends!(html_with_attachments_inline_image_and_bcc);

async fn seen_in_sent(rig: &MailRig, user: &MailUser) -> bool {
    use futures_util::TryStreamExt as _;
    let mut s = rig.imap(user).await;
    s.select("Sent").await.unwrap();
    let fetches: Vec<_> = s
        .fetch("1:*", "FLAGS")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let _ = s.logout().await;
    !fetches.is_empty()
        && fetches.iter().all(|f| {
            f.flags()
                .any(|fl| matches!(fl, async_imap::types::Flag::Seen))
        })
}

#[tokio::test]
async fn multipart_exactly_as_the_sdk_sends_it() {
    let Some((app, rig)) = setup(Backend::Sqlite).await else {
        return;
    };
    let sender = rig.create_user();
    let to = rig.create_user();
    let account = link(&app, &rig.account_body(&sender)).await;
    let notes = b"line one\r\nline two\r\n".to_vec();
    let form = Form::new()
        .text("body", "<p>Hello from the SDK</p>")
        .text("account_id", account.clone())
        .text("subject", "SDK multipart")
        .part(
            "attachments",
            Part::bytes(notes.clone())
                .file_name("notes.txt")
                .mime_str("application/octet-stream")
                .unwrap(),
        )
        .part(
            "attachments",
            Part::bytes(binary(3000, 1))
                .file_name("blob.bin")
                .mime_str("application/octet-stream")
                .unwrap(),
        )
        .text(
            "to",
            json!([{"identifier": to.address, "display_name": "To"}]).to_string(),
        )
        .text("cc", "[]")
        .text(
            "custom_headers",
            json!([{"name": "X-Custom", "value": "v"}]).to_string(),
        )
        .text(
            "tracking_options",
            json!({"opens": true, "links": true, "label": "lbl"}).to_string(),
        );
    let (s, sent) = app
        .call(app.request(Method::POST, "/api/v1/emails").multipart(form))
        .await;
    assert_eq!(s, 201, "{sent}");
    let raw = delivered(&rig, &to, "INBOX", sent["message_id"].as_str().unwrap()).await;
    let m = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(m.subject(), Some("SDK multipart"));
    let txt = m
        .attachments()
        .find(|a| a.attachment_name() == Some("notes.txt"))
        .unwrap();
    assert_eq!(
        txt.content_type().unwrap().subtype(),
        Some("plain"),
        "type from the file name"
    );
    assert_eq!(sha(txt.contents()), sha(&notes));
    let bin = m
        .attachments()
        .find(|a| a.attachment_name() == Some("blob.bin"))
        .unwrap();
    assert_eq!(sha(bin.contents()), sha(&binary(3000, 1)));
    assert_eq!(m.header_raw("X-Custom").map(str::trim), Some("v"));
}

#[tokio::test]
async fn a_plain_body_is_sent_as_text_only() {
    let Some((app, rig)) = setup(Backend::Sqlite).await else {
        return;
    };
    let (sender, to) = (rig.create_user(), rig.create_user());
    let account = link(&app, &rig.account_body(&sender)).await;
    let body = json!({"account_id": account, "to": [{"identifier": to.address}], "subject": "plain", "body": "Just text, 5 < 6."});
    let (s, sent) = app.post_json("/api/v1/emails", &body).await;
    assert_eq!(s, 201, "{sent}");
    let raw = delivered(&rig, &to, "INBOX", sent["message_id"].as_str().unwrap()).await;
    let m = MessageParser::default().parse(&raw).unwrap();
    assert!(m.body_text(0).unwrap().contains("Just text, 5 < 6."));
    assert!(
        !String::from_utf8_lossy(&raw)
            .to_ascii_lowercase()
            .contains("text/html")
    );
}

async fn replies_thread_by_tracking_id_and_by_message_id(backend: Backend) {
    let Some((app, rig)) = setup(backend).await else {
        return;
    };
    let (alice, bob) = (rig.create_user(), rig.create_user());
    let alice_acc = link(&app, &rig.account_body(&alice)).await;
    let bob_acc = link(&app, &rig.account_body(&bob)).await;
    let first = json!({"account_id": alice_acc, "to": [{"identifier": bob.address}], "subject": "Lunch?", "body": "<p>Thursday?</p>"});
    let (_, a) = app.post_json("/api/v1/emails", &first).await;
    let a_mid = a["message_id"].as_str().unwrap().to_owned();
    delivered(&rig, &bob, "INBOX", &a_mid).await;

    // Bob answers Alice's mail by its Message-ID (the provider id): found on Bob's IMAP server.
    let reply = json!({"account_id": bob_acc, "to": [{"identifier": alice.address}], "body": "<p>Sure</p>",
                       "reply_to": a_mid.trim_start_matches('<').trim_end_matches('>')});
    let (s, b) = app.post_json("/api/v1/emails", &reply).await;
    assert_eq!(s, 201, "{b}");
    let b_mid = b["message_id"].as_str().unwrap().to_owned();
    let raw = delivered(&rig, &alice, "INBOX", &b_mid).await;
    let m = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(
        m.subject(),
        Some("Re: Lunch?"),
        "the parent's subject with Re:"
    );
    assert_eq!(
        m.in_reply_to().as_text(),
        Some(a_mid.trim_matches(|c| c == '<' || c == '>'))
    );
    assert!(String::from_utf8_lossy(&raw).contains(&format!("References: {a_mid}")));

    // Alice answers Bob's reply by our tracking id: References carry the whole thread.
    let again = json!({"account_id": alice_acc, "to": [{"identifier": bob.address}], "subject": "Re: Lunch?",
                       "body": "<p>Great</p>", "reply_to": b["tracking_id"]});
    let (s, c) = app.post_json("/api/v1/emails", &again).await;
    assert_eq!(s, 201, "{c}");
    let raw = delivered(&rig, &bob, "INBOX", c["message_id"].as_str().unwrap()).await;
    let m = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(m.subject(), Some("Re: Lunch?"), "no second Re:");
    let refs: Vec<String> = m
        .references()
        .as_text_list()
        .unwrap()
        .iter()
        .map(|r| format!("<{r}>"))
        .collect();
    assert_eq!(refs, vec![a_mid.clone(), b_mid.clone()]);

    // Unknown parents are refused before anything is stored.
    let unknown = json!({"account_id": alice_acc, "to": [{"identifier": bob.address}], "body": "x", "reply_to": "<nope@example.test>"});
    assert_error(
        &app.post_json("/api/v1/emails", &unknown).await,
        422,
        "parent_mail_not_found",
    );
    let (_, list) = app.get("/api/v1/outbox").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
}
both_backends!(replies_thread_by_tracking_id_and_by_message_id);

async fn idempotency_keys(backend: Backend) {
    let Some((app, rig)) = setup(backend).await else {
        return;
    };
    let (sender, to) = (rig.create_user(), rig.create_user());
    let account = link(&app, &rig.account_body(&sender)).await;
    let body = json!({"account_id": account, "to": [{"identifier": to.address}], "subject": "once", "body": "only once"});
    let send = |b: &Value, key: &str| {
        app.call(
            app.request(Method::POST, "/api/v1/emails")
                .header("Idempotency-Key", key)
                .json(b),
        )
    };
    let first = send(&body, "key-1").await;
    assert_eq!(first.0, 201);
    let second = send(&body, "key-1").await;
    assert_eq!(second, first, "the first answer, again");
    let mid = first.1["message_id"].as_str().unwrap();
    delivered(&rig, &to, "INBOX", mid).await;
    assert_eq!(count(&rig, &to, "INBOX", mid).await, 1);

    let mut other = body.clone();
    other["subject"] = json!("something else");
    assert_error(&send(&other, "key-1").await, 409, "idempotency_key_reused");
    // Keys are per workspace.
    let other_key = app.other_workspace_key().await;
    let r = app
        .call(
            app.client
                .post(app.url("/api/v1/emails"))
                .header("X-API-KEY", other_key)
                .header("Idempotency-Key", "key-1")
                .json(&body),
        )
        .await;
    assert_error(&r, 404, "resource_not_found");
    assert_error(
        &send(&body, &"k".repeat(256)).await,
        400,
        "invalid_parameters",
    );
    let (_, list) = app.get("/api/v1/outbox").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["idempotency_key"], "key-1");
}
both_backends!(idempotency_keys);

async fn bad_input_is_refused_and_nothing_stored(backend: Backend) {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = spawn_on(db, |s| {
        s.attachment_max_bytes = 1000;
        s.message_max_bytes = 3000;
    })
    .await;
    let sender = rig.create_user();
    let account = link(&app, &rig.account_body(&sender)).await;
    let good = json!({"account_id": account, "to": [{"identifier": "ann@example.test"}], "subject": "s", "body": "b"});
    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        if v.is_null() {
            b.as_object_mut().unwrap().remove(k);
        } else {
            b[k] = v;
        }
        b
    };
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (with("to", json!([])), 400, "missing_parameters", "to"),
        (with("to", Value::Null), 400, "missing_parameters", "to"),
        (
            with("to", json!([{"identifier": "not an address"}])),
            400,
            "invalid_parameters",
            "to[0]",
        ),
        (
            with(
                "cc",
                json!([{"identifier": "a@b.test"}, {"identifier": "x@"}]),
            ),
            400,
            "invalid_parameters",
            "cc[1]",
        ),
        (
            with(
                "to",
                json!([{"identifier": "a@b.test", "display_name": "Eve\r\nBcc: victim@x.test"}]),
            ),
            400,
            "invalid_parameters",
            "to[0]",
        ),
        (
            with("subject", json!("hi\r\nBcc: victim@example.test")),
            400,
            "invalid_parameters",
            "subject",
        ),
        (
            with("custom_headers", json!([{"name": "X-Ok", "value": "a\nb"}])),
            400,
            "invalid_parameters",
            "custom_headers[0]",
        ),
        (
            with(
                "custom_headers",
                json!([{"name": "Content-Type", "value": "text/plain"}]),
            ),
            422,
            "invalid_headers",
            "Content-Type",
        ),
        (
            with("custom_headers", json!([{"name": "X Bad", "value": "v"}])),
            400,
            "invalid_parameters",
            "custom_headers[0]",
        ),
        (
            with("from", json!({"display_name": "x\ry"})),
            400,
            "invalid_parameters",
            "from",
        ),
        (
            with("account_id", Value::Null),
            400,
            "missing_parameters",
            "account_id",
        ),
        (with("body", Value::Null), 400, "missing_parameters", "body"),
        (
            with("send_at", json!("tomorrow")),
            400,
            "invalid_parameters",
            "send_at",
        ),
        (
            with(
                "attachments",
                json!([{"filename": "big.bin", "content": STANDARD.encode(vec![0u8; 1001])}]),
            ),
            400,
            "content_too_large",
            "big.bin",
        ),
        (
            with(
                "attachments",
                json!([{"filename": "a.bin", "content": STANDARD.encode(vec![0u8; 900])},
                                     {"filename": "b.bin", "content": STANDARD.encode(vec![0u8; 900])},
                                     {"filename": "c.bin", "content": STANDARD.encode(vec![0u8; 900])},
                                     {"filename": "d.bin", "content": STANDARD.encode(vec![0u8; 900])}]),
            ),
            400,
            "content_too_large",
            "message",
        ),
        (
            with(
                "attachments",
                json!([{"filename": "a.bin", "content": "!!not base64!!"}]),
            ),
            400,
            "invalid_parameters",
            "attachments[0]",
        ),
        (
            with("account_id", json!("AAAAAAAAAAAAAAAAAAAAAA")),
            404,
            "resource_not_found",
            "account",
        ),
    ];
    for (body, status, slug, needle) in cases {
        let r = app.post_json("/api/v1/emails", &body).await;
        assert_error(&r, status, slug);
        assert!(
            r.1["detail"].as_str().unwrap().contains(needle),
            "{needle}: {}",
            r.1
        );
    }
    // Malformed JSON in a multipart field.
    let form = Form::new()
        .text("account_id", account.clone())
        .text("body", "b")
        .text("to", "[{\"identifier\": ");
    let r = app
        .call(app.request(Method::POST, "/api/v1/emails").multipart(form))
        .await;
    assert_error(&r, 400, "invalid_parameters");
    assert!(
        r.1["detail"]
            .as_str()
            .unwrap()
            .contains("to is not valid JSON"),
        "{}",
        r.1
    );
    // An oversized multipart attachment.
    let form = Form::new()
        .text("account_id", account.clone())
        .text("body", "b")
        .text("to", json!([{"identifier": "a@b.test"}]).to_string())
        .part(
            "attachments",
            Part::bytes(vec![1u8; 1500]).file_name("big.bin"),
        );
    assert_error(
        &app.call(app.request(Method::POST, "/api/v1/emails").multipart(form))
            .await,
        400,
        "content_too_large",
    );
    assert_error(
        &app.call(app.request(Method::POST, "/api/v1/emails").body("x"))
            .await,
        400,
        "invalid_request",
    );

    // A disconnected account.
    mailroom_store::accounts::set_status(
        &app.store,
        &account,
        mailroom_core::account::SourceStatus::Credentials,
        1,
    )
    .await
    .unwrap();
    assert_error(
        &app.post_json("/api/v1/emails", &good).await,
        401,
        "disconnected_account",
    );

    let (_, list) = app.get("/api/v1/outbox").await;
    assert_eq!(list["items"], json!([]), "nothing was stored");
}
both_backends!(bad_input_is_refused_and_nothing_stored);

/// An account whose SMTP goes through the fault-injecting server.
async fn faulty(app: &TestApp, rig: &MailRig, user: &MailUser) -> (FaultSmtp, String) {
    let fault = FaultSmtp::start(rig.clone()).await;
    let mut body = rig.account_body(user);
    body["smtp_port"] = json!(fault.port());
    body["smtp_encryption"] = json!("starttls");
    (fault, link(app, &body).await)
}

async fn transient_failures_are_retried_until_sent(backend: Backend) {
    let Some((app, rig)) = setup(backend).await else {
        return;
    };
    let (sender, to) = (rig.create_user(), rig.create_user());
    let (fault, account) = faulty(&app, &rig, &sender).await;
    fault.set_mode(Mode::Reply {
        stage: Stage::DataEnd,
        code: 451,
        text: "4.3.0 Try again later".into(),
    });
    let body = json!({"account_id": account, "to": [{"identifier": to.address}], "subject": "retry me", "body": "b"});
    let (s, sent) = app.post_json("/api/v1/emails", &body).await;
    assert_eq!(s, 202, "{sent}");
    assert_eq!(sent["object"], "EmailSent");
    assert_eq!(sent["status"], "queued");
    assert_eq!(sent["last_error"]["type"], "errors/provider_unreachable");
    assert!(
        sent["last_error"]["detail"]
            .as_str()
            .unwrap()
            .contains("Try again later")
    );
    assert!(sent["next_attempt_at"].is_string());
    let id = sent["tracking_id"].as_str().unwrap().to_owned();

    fault.set_mode(Mode::Forward);
    let done = wait::until("the retry succeeds", Duration::from_secs(30), || async {
        let (_, o) = app.get(&format!("/api/v1/outbox/{id}")).await;
        (o["status"] == "sent").then_some(o)
    })
    .await;
    assert!(done["attempts"].as_i64().unwrap() >= 2);
    let mid = sent["message_id"].as_str().unwrap();
    delivered(&rig, &to, "INBOX", mid).await;
    assert_eq!(count(&rig, &to, "INBOX", mid).await, 1);
}
both_backends!(transient_failures_are_retried_until_sent);

#[tokio::test]
async fn permanent_refusals_are_422_with_the_closest_slug() {
    let Some((app, rig)) = setup(Backend::Sqlite).await else {
        return;
    };
    let sender = rig.create_user();
    let (fault, account) = faulty(&app, &rig, &sender).await;
    let body = json!({"account_id": account, "to": [{"identifier": "ghost@example.test"}], "subject": "s", "body": "b"});
    let cases = [
        (
            Stage::Rcpt,
            550,
            "5.1.1 <ghost@example.test>: Recipient address rejected: User unknown",
            "recipient_rejected",
        ),
        (
            Stage::Rcpt,
            553,
            "5.7.1 <x@y>: Sender address rejected: not owned by user",
            "send_as_denied",
        ),
        (
            Stage::DataEnd,
            552,
            "5.3.4 Message size exceeds fixed limit",
            "content_too_large",
        ),
        (
            Stage::DataEnd,
            554,
            "5.7.0 Rejected by policy",
            "cant_send_message",
        ),
    ];
    for (stage, code, text, slug) in cases {
        fault.set_mode(Mode::Reply {
            stage,
            code,
            text: text.into(),
        });
        let r = app.post_json("/api/v1/emails", &body).await;
        assert_error(&r, 422, slug);
        assert!(
            r.1["detail"]
                .as_str()
                .unwrap()
                .contains(text.split_once(' ').unwrap().1),
            "{slug}: {}",
            r.1
        );
    }
    let (_, list) = app.get("/api/v1/outbox").await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert!(
        items
            .iter()
            .all(|i| i["status"] == "failed" && i["attempts"] == 1)
    );
    let failed = events::of_type(&app.store, &app.workspace, "send_failed")
        .await
        .unwrap();
    assert_eq!(failed.len(), 4, "one send_failed event per failed send");

    // The server's advertised SIZE is respected before the message is transmitted.
    let other = rig.create_user();
    let (small, account) = faulty(&app, &rig, &other).await;
    small.set_size_limit(200);
    let body = json!({"account_id": account, "to": [{"identifier": "ann@example.test"}], "subject": "s", "body": "b"});
    let r = app.post_json("/api/v1/emails", &body).await;
    assert_error(&r, 422, "content_too_large");
    assert!(r.1["detail"].as_str().unwrap().contains("200"), "{}", r.1);
    assert_eq!(small.received_count(), 0, "no DATA was sent");
}

#[tokio::test]
async fn refused_credentials_mark_the_account_and_wait_for_a_reconnect() {
    let Some((app, rig)) = setup(Backend::Sqlite).await else {
        return;
    };
    let (mut sender, to) = (rig.create_user(), rig.create_user());
    let account = link(&app, &rig.account_body(&sender)).await;
    let new_pw = format!("rotated-{}", mailroom_testkit::token());
    rig.set_password(&mut sender, &new_pw);
    let body = json!({"account_id": account, "to": [{"identifier": to.address}], "subject": "after rotation", "body": "b"});
    let (s, sent) = app.post_json("/api/v1/emails", &body).await;
    assert_eq!(s, 202, "{sent}");
    assert_eq!(sent["last_error"]["type"], "errors/disconnected_account");
    let (_, acc) = app.get(&format!("/api/v1/accounts/{account}")).await;
    assert_eq!(acc["sources"][0]["status"], "CREDENTIALS");
    assert_eq!(
        events::of_type(&app.store, &app.workspace, "account_status")
            .await
            .unwrap()
            .iter()
            .filter(|(_, p)| p["AccountStatus"]["message"] == "CREDENTIALS")
            .count(),
        1
    );
    // New sends are refused while disconnected; the queued one waits without spending attempts.
    assert_error(
        &app.post_json("/api/v1/emails", &body).await,
        401,
        "disconnected_account",
    );
    let id = sent["tracking_id"].as_str().unwrap();
    let (_, o) = app.get(&format!("/api/v1/outbox/{id}")).await;
    assert_eq!(
        (o["status"].clone(), o["attempts"].clone()),
        (json!("queued"), json!(0))
    );

    let r = app
        .post_json(
            &format!("/api/v1/accounts/{account}"),
            &json!({"imap_password": new_pw, "smtp_password": new_pw}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    wait::until(
        "the queued send goes out after the reconnect",
        Duration::from_secs(30),
        || async {
            let (_, o) = app.get(&format!("/api/v1/outbox/{id}")).await;
            (o["status"] == "sent").then_some(())
        },
    )
    .await;
    delivered(&rig, &to, "INBOX", sent["message_id"].as_str().unwrap()).await;
}

#[tokio::test]
async fn a_duplicate_during_the_first_attempt_gets_the_same_answer() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let app = spawn_on(db, |s| s.outbox.send_timeout = Duration::from_secs(2)).await;
    let (sender, to) = (rig.create_user(), rig.create_user());
    let (fault, account) = faulty(&app, &rig, &sender).await;
    fault.set_mode(Mode::Stall);
    let body = json!({"account_id": account, "to": [{"identifier": to.address}], "subject": "stalled", "body": "b"});
    let send = || {
        app.call(
            app.request(Method::POST, "/api/v1/emails")
                .header("Idempotency-Key", "dup")
                .json(&body),
        )
    };
    let first = send();
    let second = async {
        fault.wait_for_stalled(1, Duration::from_secs(10)).await;
        send().await
    };
    let (first, second) = tokio::join!(first, second);
    assert_eq!(first.0, 202, "{}", first.1);
    assert_eq!(second, first, "the duplicate waited for the first answer");
    fault.set_mode(Mode::Forward);
    let mid = first.1["message_id"].as_str().unwrap();
    delivered(&rig, &to, "INBOX", mid).await;
    assert_eq!(fault.forwarded_count(), 1);
    assert_eq!(count(&rig, &to, "INBOX", mid).await, 1);
}

#[tokio::test]
async fn send_at_schedules_the_send() {
    let Some((app, rig)) = setup(Backend::Sqlite).await else {
        return;
    };
    let (sender, to) = (rig.create_user(), rig.create_user());
    let account = link(&app, &rig.account_body(&sender)).await;
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let at = mailroom_core::time_fmt::format_datetime(at);
    let body = json!({"account_id": account, "to": [{"identifier": to.address}], "subject": "later", "body": "b", "send_at": at});
    let (s, sent) = app.post_json("/api/v1/emails", &body).await;
    assert_eq!(s, 202, "{sent}");
    assert_eq!(sent["status"], "scheduled");
    assert_eq!(sent["next_attempt_at"], at.as_str());
    let id = sent["tracking_id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/api/v1/outbox/{id}")).await.1["status"],
        "scheduled"
    );
    delivered(&rig, &to, "INBOX", sent["message_id"].as_str().unwrap()).await;
    let (_, o) = app.get(&format!("/api/v1/outbox/{id}")).await;
    assert_eq!(o["status"], "sent");
    assert!(o["sent_at"].as_str().unwrap() >= at.as_str());
}

async fn a_send_that_keeps_failing_is_given_up_after_its_attempts(backend: Backend) {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = spawn_on(db, |s| s.outbox.max_attempts = 2).await;
    let (sender, to) = (rig.create_user(), rig.create_user());
    let (fault, account) = faulty(&app, &rig, &sender).await;
    fault.set_mode(Mode::Reply {
        stage: Stage::DataEnd,
        code: 451,
        text: "4.3.0 Try again later".into(),
    });
    let body = json!({"account_id": account, "to": [{"identifier": to.address}], "subject": "doomed", "body": "b"});
    let (s, sent) = app.post_json("/api/v1/emails", &body).await;
    assert_eq!(s, 202, "{sent}");
    let id = sent["tracking_id"].as_str().unwrap().to_owned();
    let done = wait::until("the send is given up", Duration::from_secs(30), || async {
        let (_, o) = app.get(&format!("/api/v1/outbox/{id}")).await;
        (o["status"] == "failed").then_some(o)
    })
    .await;
    assert_eq!(done["attempts"], 2);
    assert_eq!(done["last_error"]["type"], "errors/provider_unreachable");
    assert!(
        done["last_error"]["detail"]
            .as_str()
            .unwrap()
            .contains("gave up after 2 attempts"),
        "{done}"
    );
    let failed = events::of_type(&app.store, &app.workspace, "send_failed")
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].1["tracking_id"], id.as_str());
    mailroom_testkit::openapi_check::assert_stored("send_failed", &failed[0].1);
    assert_eq!(fault.forwarded_count(), 0);
    // The audit log says it was given up (not refused), credited to the accepting request.
    let (s, audit) = app.get("/api/v1/audit?action=send.given_up").await;
    assert_eq!(s, 200, "{audit}");
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{audit}");
    assert_eq!(items[0]["target"], id.as_str());
    assert_eq!(items[0]["details"]["attempts"], 2);
    assert_eq!(items[0]["details"]["type"], "errors/provider_unreachable");
    assert!(
        items[0]["actor"].as_str().unwrap().starts_with("key:"),
        "{audit}"
    );
    let (_, refused) = app.get("/api/v1/audit?action=send.refused").await;
    assert_eq!(refused["items"], json!([]));
}
both_backends!(a_send_that_keeps_failing_is_given_up_after_its_attempts);
