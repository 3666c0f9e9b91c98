//! The Gmail API client (`mailroom_providers::gmail`) and Google OAuth (`oauth.rs`) against
//! the in-process `FakeGoogle`, and the fake's answers against the Gmail discovery document.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use reqwest::StatusCode;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};

use mailroom_core::ErrorKind;
use mailroom_providers::FailureKind;
use mailroom_providers::gmail::{self, GmailClient, SEND_MAX_SIZE};
use mailroom_providers::oauth::{self, IdP, OAuthApp, OAuthErrorKind, Pkce};
use mailroom_testkit::fakes::Fault;
use mailroom_testkit::fakes::google::{
    AuthorizeDecision, FakeGoogle, GoogleConfig, UploadType, contract,
};
use mailroom_testkit::token;

/// A Message-ID the tests know to be valid.
fn mid(s: &str) -> mailroom_core::MessageId {
    mailroom_core::MessageId::parse(s).expect("a Message-ID")
}

const EMAIL: &str = "owner@gmail.test";
const CALLBACK: &str = "http://127.0.0.1:9/oauth/google/callback";
const MODIFY: &str = "https://www.googleapis.com/auth/gmail.modify";
const SEND: &str = "https://www.googleapis.com/auth/gmail.send";

async fn fake() -> FakeGoogle {
    FakeGoogle::start(GoogleConfig {
        email: EMAIL.into(),
        redirect_uris: vec![CALLBACK.into()],
        ..GoogleConfig::default()
    })
    .await
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The fake, a client for it and an access token with `gmail.modify` + `gmail.send`.
async fn setup() -> (FakeGoogle, GmailClient, SecretString) {
    let g = fake().await;
    let client = GmailClient::new(http(), g.base_url());
    let t = g.issue_tokens(&[MODIFY, SEND]);
    (g, client, SecretString::from(t.access_token))
}

/// A plain message; returns its Message-ID (with brackets) and bytes.
fn message(to: &str, subject: &str, extra: &str) -> (String, Vec<u8>) {
    let id = format!("<{}@mailroom.test>", token());
    let raw = format!(
        "From: Owner <{EMAIL}>\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {id}\r\n{extra}\
         Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nHello {to}, this is about {subject}.\r\n"
    );
    (id, raw.into_bytes())
}

/// A multipart/mixed message with a text part and a base64 attachment of `attachment` bytes.
fn with_attachment(to: &str, subject: &str, attachment: usize) -> (String, Vec<u8>) {
    let id = format!("<{}@mailroom.test>", token());
    let mut data = vec![0u8; attachment];
    let mut x: u32 = 0x1234_5678;
    for b in data.iter_mut() {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *b = (x >> 24) as u8;
    }
    let b64 = STANDARD.encode(&data);
    let mut body = String::with_capacity(b64.len() + b64.len() / 38 + 1024);
    for line in b64.as_bytes().chunks(76) {
        body.push_str(std::str::from_utf8(line).unwrap());
        body.push_str("\r\n");
    }
    let raw = format!(
        "From: Owner <{EMAIL}>\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {id}\r\n\
         Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the attachment.\r\n\
         --b1\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\n\
         Content-Disposition: attachment; filename=\"data.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{body}--b1--\r\n"
    );
    (id, raw.into_bytes())
}

async fn get_json(url: url::Url, token: &SecretString) -> (StatusCode, Value) {
    let r = http()
        .get(url)
        .bearer_auth(token.expose_secret())
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn api(g: &FakeGoogle, path: &str) -> url::Url {
    g.base_url()
        .join(&format!("gmail/v1/users/me/{path}"))
        .unwrap()
}

// ----- Gmail API -----

#[tokio::test]
async fn profile_needs_a_scope_that_allows_it() {
    let (g, client, t) = setup().await;
    let p = client.profile(&t).await.unwrap();
    assert_eq!(p.email_address, EMAIL);
    assert!(p.history_id > 0);
    // As at Google (discovery document scopes): `gmail.send` alone cannot read the profile.
    let send_only = SecretString::from(g.issue_tokens(&[SEND]).access_token);
    let e = client.profile(&send_only).await.unwrap_err();
    assert_eq!(e.status, Some(403));
    assert_eq!(e.kind, FailureKind::Rejected(ErrorKind::CantSendMessage));
    assert_eq!(e.code.as_deref(), Some("insufficientPermissions"));
}

#[tokio::test]
async fn small_messages_go_as_json_raw() {
    let (g, client, t) = setup().await;
    let send_only = SecretString::from(g.issue_tokens(&[SEND]).access_token);
    let (_, raw) = message(
        "Bob <bob@example.org>",
        "Small",
        "Cc: carol@example.net\r\n",
    );
    let sent = client.send(&send_only, &raw, &[], None).await.unwrap();
    assert_eq!(sent.label_ids, ["SENT"]);
    let all = g.sent_messages();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].upload_type, UploadType::Json);
    assert_eq!(all[0].raw, raw);
    assert_eq!(all[0].id, sent.id);
    assert_eq!(all[0].thread_id, sent.thread_id);
    assert_eq!(all[0].recipients, ["bob@example.org", "carol@example.net"]);
    assert!(all[0].bcc.is_empty());
    assert_eq!(g.labels_of(&sent.id).unwrap(), ["SENT"]);
    // The stored copy comes back byte for byte.
    let (s, v) = get_json(api(&g, &format!("messages/{}?format=raw", sent.id)), &t).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(URL_SAFE.decode(v["raw"].as_str().unwrap()).unwrap(), raw);
}

#[tokio::test]
async fn a_6_mb_message_goes_through_a_resumable_upload() {
    let (g, client, t) = setup().await;
    let (id, raw) = with_attachment("bob@example.org", "Big", 4_600_000);
    assert!(raw.len() > 6_000_000 && raw.len() < SEND_MAX_SIZE);
    let sent = client.send(&t, &raw, &[], None).await.unwrap();
    let all = g.sent_messages();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].upload_type, UploadType::Resumable);
    assert_eq!(all[0].raw.len(), raw.len());
    assert!(all[0].raw == raw, "the uploaded bytes differ");
    let found = client
        .find_by_message_id(&t, &mid(&id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, sent.id);
}

#[tokio::test]
async fn over_35_mib_is_refused_locally_and_by_the_fake() {
    let (g, client, t) = setup().await;
    let (_, raw) = with_attachment("bob@example.org", "Huge", 27_000_000);
    assert!(raw.len() > SEND_MAX_SIZE, "{}", raw.len());
    let before = g.gmail_request_count();
    let e = client.send(&t, &raw, &[], None).await.unwrap_err();
    assert_eq!(e.kind, FailureKind::TooLarge);
    assert_eq!(e.status, None);
    assert_eq!(g.gmail_request_count(), before, "nothing may be sent");
    // One byte under the limit after a Bcc header is added still counts the header.
    let exact = vec![b'x'; SEND_MAX_SIZE - 10];
    let e = client
        .send(&t, &exact, &["someone@example.org".into()], None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, FailureKind::TooLarge);

    // Sent anyway, the fake refuses it like Google: 413 on the media upload…
    let mut upload = g
        .base_url()
        .join("upload/gmail/v1/users/me/messages/send")
        .unwrap();
    upload.query_pairs_mut().append_pair("uploadType", "media");
    let r = http()
        .post(upload)
        .bearer_auth(t.expose_secret())
        .header("Content-Type", "message/rfc822")
        .body(raw.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    let body = r.bytes().await.unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["errors"][0]["reason"], "uploadTooLarge");
    assert_eq!(
        gmail::classify(status, &headers, &body).kind,
        FailureKind::TooLarge
    );
    // …413 when a resumable session announces it…
    let mut start = g
        .base_url()
        .join("upload/gmail/v1/users/me/messages/send")
        .unwrap();
    start
        .query_pairs_mut()
        .append_pair("uploadType", "resumable");
    let r = http()
        .post(start)
        .bearer_auth(t.expose_secret())
        .header("X-Upload-Content-Type", "message/rfc822")
        .header("X-Upload-Content-Length", raw.len().to_string())
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // …and 400 "Request payload size exceeds the limit" as JSON raw.
    let r = http()
        .post(api(&g, "messages/send"))
        .bearer_auth(t.expose_secret())
        .json(&json!({ "raw": URL_SAFE_NO_PAD.encode(&raw) }))
        .send()
        .await
        .unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    let body = r.bytes().await.unwrap();
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("Request payload size exceeds the limit"));
    assert_eq!(
        gmail::classify(status, &headers, &body).kind,
        FailureKind::TooLarge
    );
    assert!(g.sent_messages().is_empty());
}

#[tokio::test]
async fn bcc_recipients_reach_gmail_but_not_the_delivered_headers() {
    let (g, client, t) = setup().await;
    let (_, raw) = message("bob@example.org", "Secret copy", "");
    let bcc = vec![
        "hidden@example.net".to_owned(),
        "also@b\u{fc}cher.de".to_owned(),
    ];
    let sent = client.send(&t, &raw, &bcc, None).await.unwrap();
    let s = &g.sent_messages()[0];
    assert_eq!(s.bcc, ["hidden@example.net", "also@xn--bcher-kva.de"]);
    assert_eq!(
        s.recipients,
        [
            "bob@example.org",
            "hidden@example.net",
            "also@xn--bcher-kva.de"
        ]
    );
    assert!(
        s.raw
            .starts_with(b"Bcc: hidden@example.net, also@xn--bcher-kva.de\r\nFrom: ")
    );
    assert_eq!(
        &s.raw[s.raw.len() - raw.len()..],
        &raw[..],
        "the rest is untouched"
    );
    let delivered = String::from_utf8(s.delivered_raw()).unwrap();
    assert!(
        !delivered.to_ascii_lowercase().contains("bcc:"),
        "{delivered}"
    );
    assert!(delivered.contains("To: bob@example.org"));
    // The sender's own copy keeps the Bcc header, as in Gmail's Sent.
    let mut u = api(&g, &format!("messages/{}", sent.id));
    u.query_pairs_mut()
        .append_pair("format", "metadata")
        .append_pair("metadataHeaders", "bcc");
    let (_, v) = get_json(u, &t).await;
    assert_eq!(
        v["payload"]["headers"],
        json!([{"name": "Bcc", "value": "hidden@example.net, also@xn--bcher-kva.de"}])
    );
    // Bcc alone is enough of a recipient.
    let only_bcc = b"From: owner@gmail.test\r\nSubject: x\r\n\r\nhi\r\n";
    client
        .send(&t, only_bcc, &["solo@example.org".into()], None)
        .await
        .unwrap();
    assert_eq!(g.sent_messages()[1].recipients, ["solo@example.org"]);
}

#[tokio::test]
async fn replies_stay_in_the_thread_only_when_gmail_would_keep_them() {
    let (g, client, t) = setup().await;
    let inbound = g.deliver_inbound(
        b"From: Bob <bob@example.org>\r\nTo: owner@gmail.test\r\nSubject: Plans\r\n\
          Message-ID: <orig-1@example.org>\r\nReferences: <older@example.org>\r\n\r\nLunch?\r\n",
    );
    assert_eq!(
        g.labels_of(&inbound.id).unwrap(),
        ["INBOX", "UNREAD", "CATEGORY_PERSONAL"]
    );
    let parent = client
        .find_by_message_id(&t, &mid("<orig-1@example.org>"))
        .await
        .unwrap()
        .expect("found by Message-ID");
    assert_eq!(parent.id, inbound.id);
    assert_eq!(parent.thread_id, inbound.thread_id);
    assert_eq!(parent.subject.as_deref(), Some("Plans"));
    assert_eq!(parent.message_id.as_deref(), Some("<orig-1@example.org>"));
    assert_eq!(parent.references, ["<older@example.org>"]);
    let rp = parent.reply_parent().unwrap();
    assert_eq!(rp.message_id, "<orig-1@example.org>");

    let threading = format!(
        "In-Reply-To: {}\r\nReferences: {} {}\r\n",
        rp.message_id,
        rp.references.join(" "),
        rp.message_id
    );
    let (_, reply) = message("bob@example.org", "Re: Plans", &threading);
    let sent = client
        .send(&t, &reply, &[], Some(&parent.thread_id))
        .await
        .unwrap();
    assert_eq!(sent.thread_id, inbound.thread_id);
    assert_ne!(sent.id, inbound.id);

    // Another subject, or no In-Reply-To/References, or no threadId: a new thread.
    let (_, other_subject) = message("bob@example.org", "Something else", &threading);
    let s2 = client
        .send(&t, &other_subject, &[], Some(&parent.thread_id))
        .await
        .unwrap();
    assert_ne!(s2.thread_id, inbound.thread_id);
    let (_, no_refs) = message("bob@example.org", "Re: Plans", "");
    let s3 = client
        .send(&t, &no_refs, &[], Some(&parent.thread_id))
        .await
        .unwrap();
    assert_ne!(s3.thread_id, inbound.thread_id);
    let (_, no_thread_id) = message("bob@example.org", "Re: Plans", &threading);
    let s4 = client.send(&t, &no_thread_id, &[], None).await.unwrap();
    assert_ne!(s4.thread_id, inbound.thread_id);
    // An unknown threadId is refused.
    let e = client
        .send(&t, &reply, &[], Some("123456789abcdef"))
        .await
        .unwrap_err();
    assert_eq!(e.status, Some(400));

    let (s, thread) = get_json(
        api(&g, &format!("threads/{}?format=minimal", inbound.thread_id)),
        &t,
    )
    .await;
    assert_eq!(s, 200, "{thread}");
    let ids: Vec<&str> = thread["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [inbound.id.as_str(), sent.id.as_str()]);
    let recorded = g.sent_messages();
    assert_eq!(
        recorded[0].requested_thread_id.as_deref(),
        Some(inbound.thread_id.as_str())
    );

    // A follow-up from Bob to our reply joins the thread too.
    let our_id = gmail_message_id(&recorded[0].raw);
    let followup = format!(
        "From: bob@example.org\r\nTo: owner@gmail.test\r\nSubject: RE: plans\r\n\
         Message-ID: <orig-2@example.org>\r\nIn-Reply-To: {our_id}\r\n\r\nYes.\r\n"
    );
    assert_eq!(
        g.deliver_inbound(followup.as_bytes()).thread_id,
        inbound.thread_id
    );
}

fn gmail_message_id(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    text.lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test]
async fn find_by_message_id_answers_none_for_unknown_ids() {
    let (g, client, t) = setup().await;
    g.deliver_inbound(b"From: a@example.org\r\nTo: owner@gmail.test\r\nSubject: s\r\nMessage-ID: <known@x.org>\r\n\r\nhi\r\n");
    assert!(
        client
            .find_by_message_id(&t, &mid("<unknown@x.org>"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(mailroom_core::MessageId::parse("<>").is_none());
    assert!(
        client
            .find_by_message_id(&t, &mid("known@x.org"))
            .await
            .unwrap()
            .is_some()
    );
    // With `gmail.send` only, Gmail refuses to search.
    let send_only = SecretString::from(g.issue_tokens(&[SEND]).access_token);
    let e = client
        .find_by_message_id(&send_only, &mid("<known@x.org>"))
        .await
        .unwrap_err();
    assert_eq!(e.code.as_deref(), Some("insufficientPermissions"));
}

#[tokio::test]
async fn refused_and_expired_tokens_are_auth_errors() {
    let (g, client, t) = setup().await;
    let (_, raw) = message("bob@example.org", "Auth", "");
    let bogus = SecretString::from("ya29.not-a-token".to_owned());
    let e = client.send(&bogus, &raw, &[], None).await.unwrap_err();
    assert_eq!(e.kind, FailureKind::Auth);
    assert_eq!(e.status, Some(401));
    assert_eq!(e.code.as_deref(), Some("authError"));
    client.profile(&t).await.unwrap();
    g.expire_access_tokens();
    assert_eq!(
        client.profile(&t).await.unwrap_err().kind,
        FailureKind::Auth
    );
    // A 6 MB upload is refused at the session start, before any bytes move.
    let (_, big) = with_attachment("bob@example.org", "Big", 4_600_000);
    assert_eq!(
        client.send(&t, &big, &[], None).await.unwrap_err().kind,
        FailureKind::Auth
    );
    assert!(g.sent_messages().is_empty());
}

#[tokio::test]
async fn throttling_and_server_errors_are_retryable() {
    let (g, client, t) = setup().await;
    let (_, raw) = message("bob@example.org", "Faults", "");
    g.inject(
        Fault::Throttle {
            retry_after_secs: 7,
        },
        1,
    );
    let e = client.send(&t, &raw, &[], None).await.unwrap_err();
    assert!(matches!(e.kind, FailureKind::Quota { .. }));
    assert_eq!(e.status, Some(429));
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    assert!(e.is_transient() && e.is_quota());

    g.inject(Fault::RateLimit403, 1);
    let e = client.send(&t, &raw, &[], None).await.unwrap_err();
    assert!(e.is_quota(), "{e}");
    assert_eq!(e.status, Some(403));
    assert_eq!(e.code.as_deref(), Some("rateLimitExceeded"));

    g.inject(Fault::ServerError, 2);
    for _ in 0..2 {
        let e = client.send(&t, &raw, &[], None).await.unwrap_err();
        assert!(matches!(e.kind, FailureKind::Transient { .. }), "{e}");
        assert_eq!(e.status, Some(500));
        assert_eq!(e.code.as_deref(), Some("backendError"));
    }
    assert!(g.sent_messages().is_empty());
    // Faults are used up: the next attempt goes through.
    client.send(&t, &raw, &[], None).await.unwrap();
    assert_eq!(g.sent_messages().len(), 1);

    // A slow answer runs into the client's deadline: transient.
    let impatient = GmailClient::new(http(), g.base_url()).with_timeout(Duration::from_millis(300));
    g.inject(Fault::Latency(Duration::from_secs(5)), 1);
    let e = impatient.profile(&t).await.unwrap_err();
    assert!(matches!(e.kind, FailureKind::Transient { .. }));
    assert_eq!(e.status, None);
    // Latency alone is not an error.
    g.inject(Fault::Latency(Duration::from_millis(50)), 1);
    client.profile(&t).await.unwrap();
}

#[tokio::test]
async fn invalid_or_missing_recipients_are_recipient_errors() {
    let (g, client, t) = setup().await;
    let (_, raw) = message("not-an-address", "Bad", "");
    let e = client.send(&t, &raw, &[], None).await.unwrap_err();
    assert_eq!(e.kind, FailureKind::Rejected(ErrorKind::RecipientRejected));
    assert_eq!(
        (e.status, e.detail.as_str()),
        (Some(400), "Invalid To header")
    );
    assert_eq!(e.code.as_deref(), Some("invalidArgument"));
    let (_, raw) = message("bob@example.org", "Bad cc", "Cc: carol@\r\n");
    let e = client.send(&t, &raw, &[], None).await.unwrap_err();
    assert_eq!(
        (e.kind, e.detail.as_str()),
        (
            FailureKind::Rejected(ErrorKind::RecipientRejected),
            "Invalid Cc header"
        )
    );
    let none = b"From: owner@gmail.test\r\nSubject: nobody\r\n\r\nhi\r\n";
    let e = client.send(&t, none, &[], None).await.unwrap_err();
    assert_eq!(
        (e.kind, e.detail.as_str()),
        (
            FailureKind::Rejected(ErrorKind::RecipientRejected),
            "Recipient address required"
        )
    );
    // A Bcc address that is not an address is refused before sending.
    let (_, raw) = message("bob@example.org", "Bad bcc", "");
    let e = client
        .send(&t, &raw, &["x@y.org\r\nSubject: injected".into()], None)
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.status),
        (FailureKind::Rejected(ErrorKind::RecipientRejected), None)
    );
    assert!(g.sent_messages().is_empty());
}

// ----- the fake's other send paths -----

#[tokio::test]
async fn the_fake_takes_multipart_chunked_resumable_and_padded_raw() {
    let (g, _client, t) = setup().await;
    let inbound = g.deliver_inbound(
        b"From: bob@example.org\r\nTo: owner@gmail.test\r\nSubject: Q\r\nMessage-ID: <q@example.org>\r\n\r\n?\r\n",
    );
    let (_, reply) = message(
        "bob@example.org",
        "Re: Q",
        "In-Reply-To: <q@example.org>\r\nReferences: <q@example.org>\r\n",
    );
    // multipart/related: JSON metadata + message/rfc822.
    let mut body = b"--xyz\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".to_vec();
    body.extend_from_slice(
        json!({"threadId": inbound.thread_id})
            .to_string()
            .as_bytes(),
    );
    body.extend_from_slice(b"\r\n--xyz\r\nContent-Type: message/rfc822\r\n\r\n");
    body.extend_from_slice(&reply);
    body.extend_from_slice(b"\r\n--xyz--\r\n");
    let mut u = g
        .base_url()
        .join("upload/gmail/v1/users/me/messages/send")
        .unwrap();
    u.query_pairs_mut().append_pair("uploadType", "multipart");
    let r = http()
        .post(u.clone())
        .bearer_auth(t.expose_secret())
        .header("Content-Type", "multipart/related; boundary=xyz")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["threadId"], inbound.thread_id.as_str());
    let s = g.sent_messages();
    assert_eq!(s[0].upload_type, UploadType::Multipart);
    assert_eq!(s[0].raw, reply);

    // Media upload: only message/* is accepted.
    let mut media = u.clone();
    media.set_query(Some("uploadType=media"));
    let r = http()
        .post(media.clone())
        .bearer_auth(t.expose_secret())
        .header("Content-Type", "application/octet-stream")
        .body(reply.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http()
        .post(media)
        .bearer_auth(t.expose_secret())
        .header("Content-Type", "message/rfc822")
        .body(reply.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(g.sent_messages()[1].upload_type, UploadType::Media);

    // Resumable in two chunks, with a status query in between.
    let (_, raw) = message("carol@example.net", "Chunks", "");
    let mut start = u.clone();
    start.set_query(Some("uploadType=resumable"));
    let r = http()
        .post(start)
        .bearer_auth(t.expose_secret())
        .header("X-Upload-Content-Type", "message/rfc822")
        .header("X-Upload-Content-Length", raw.len().to_string())
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let session = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(session.contains("upload_id="), "{session}");
    let half = raw.len() / 2;
    let r = http()
        .put(&session)
        .header(
            "Content-Range",
            format!("bytes 0-{}/{}", half - 1, raw.len()),
        )
        .body(raw[..half].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["range"],
        format!("bytes=0-{}", half - 1).as_str()
    );
    let r = http()
        .put(&session)
        .header("Content-Range", format!("bytes */{}", raw.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    let r = http()
        .put(&session)
        .header(
            "Content-Range",
            format!("bytes {half}-{}/{}", raw.len() - 1, raw.len()),
        )
        .body(raw[half..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let done: Value = r.json().await.unwrap();
    assert_eq!(done["labelIds"], json!(["SENT"]));
    assert_eq!(g.sent_messages()[2].raw, raw);
    // A lost answer can be recovered by asking the session again.
    let r = http()
        .put(&session)
        .header("Content-Range", format!("bytes */{}", raw.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["id"], done["id"]);
    assert_eq!(g.sent_messages().len(), 3, "no second send");

    // JSON raw in padded base64url, to userId = the address, to self.
    let (_, to_self) = message(EMAIL, "Note to self", "");
    let r = http()
        .post(
            g.base_url()
                .join(&format!("gmail/v1/users/{EMAIL}/messages/send"))
                .unwrap(),
        )
        .bearer_auth(t.expose_secret())
        .json(&json!({"raw": URL_SAFE.encode(&to_self)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["labelIds"], json!(["UNREAD", "SENT", "INBOX"]));
    // Someone else's mailbox, an unknown field, a missing raw.
    for (path, body, status) in [
        (
            "gmail/v1/users/other@gmail.test/messages/send",
            json!({"raw": "eA"}),
            403,
        ),
        (
            "gmail/v1/users/me/messages/send",
            json!({"raw": "eA", "bogus": 1}),
            400,
        ),
        (
            "gmail/v1/users/me/messages/send",
            json!({"threadId": "1"}),
            400,
        ),
    ] {
        let r = http()
            .post(g.base_url().join(path).unwrap())
            .bearer_auth(t.expose_secret())
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{path} {body}");
    }
}

// ----- Google OAuth -----

fn app(g: &FakeGoogle, secret: &str) -> OAuthApp {
    let c = g.config();
    OAuthApp {
        idp: IdP::Google,
        client_id: c.client_id,
        client_secret: SecretString::from(secret.to_owned()),
        auth_url: g.auth_url(),
        token_url: g.token_url(),
        redirect_uri: url::Url::parse(CALLBACK).unwrap(),
    }
}

/// Follows the authorize URL once; returns the query of the redirect to our callback.
async fn authorize(url: url::Url) -> std::collections::HashMap<String, String> {
    let r = http().get(url).send().await.unwrap();
    assert_eq!(r.status(), 302, "{}", r.text().await.unwrap_or_default());
    let to = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert!(to.as_str().starts_with(CALLBACK), "{to}");
    to.query_pairs().into_owned().collect()
}

const NOW_MS: i64 = 1_700_000_000_000;

#[tokio::test]
async fn code_exchange_with_pkce_refresh_without_rotation_and_revocation() {
    let g = fake().await;
    let app = app(&g, &g.config().client_secret);
    let scopes = [SEND, "email"];
    let pkce = Pkce::new();
    let q = authorize(oauth::authorize_url(
        &app,
        &scopes,
        "st-1",
        &pkce.challenge,
        None,
    ))
    .await;
    assert_eq!(q["state"], "st-1");
    assert!(q["scope"].contains(SEND));
    let code = q["code"].clone();

    // A wrong verifier fails (and burns the code).
    let wrong = Pkce::new();
    let e = oauth::exchange_code(&http(), &app, &code, &wrong.verifier, &scopes, NOW_MS)
        .await
        .unwrap_err();
    assert_eq!(e.status, Some(400));
    assert_eq!(e.error, "invalid_grant");
    assert_eq!(e.description.as_deref(), Some("Invalid code verifier."));

    let q = authorize(oauth::authorize_url(
        &app,
        &scopes,
        "st-2",
        &pkce.challenge,
        None,
    ))
    .await;
    let code = q["code"].clone();
    let tokens = oauth::exchange_code(&http(), &app, &code, &pkce.verifier, &scopes, NOW_MS)
        .await
        .unwrap();
    let refresh = tokens
        .refresh_token
        .clone()
        .expect("offline access gives a refresh token");
    assert_eq!(tokens.expires_at_ms, NOW_MS + 3_599_000);
    let granted = tokens.scope.clone().unwrap();
    assert!(
        granted.contains(SEND) && granted.contains("userinfo.email"),
        "{granted}"
    );
    // Codes are single-use.
    let e = oauth::exchange_code(&http(), &app, &code, &pkce.verifier, &scopes, NOW_MS)
        .await
        .unwrap_err();
    assert_eq!(
        (e.error.as_str(), e.description.as_deref()),
        ("invalid_grant", Some("Bad Request"))
    );
    assert_eq!(g.token_requests("authorization_code"), 3);

    // The access token works for sending.
    let client = GmailClient::new(http(), g.base_url());
    let (_, raw) = message("bob@example.org", "After consent", "");
    client
        .send(&tokens.access_token, &raw, &[], None)
        .await
        .unwrap();

    // Refresh: a new access token, no new refresh token; the old one keeps working.
    assert_eq!(g.refresh_count(), 0);
    let r1 = oauth::refresh(&http(), &app, &refresh, &scopes, NOW_MS)
        .await
        .unwrap();
    assert!(r1.refresh_token.is_none(), "Google does not rotate");
    assert_ne!(
        r1.access_token.expose_secret(),
        tokens.access_token.expose_secret()
    );
    assert_eq!(g.refresh_count(), 1);
    let r2 = oauth::refresh(&http(), &app, &refresh, &scopes, NOW_MS)
        .await
        .unwrap();
    assert!(r2.refresh_token.is_none());
    assert_eq!(g.refresh_count(), 2);
    client
        .send(&r2.access_token, &raw, &[], None)
        .await
        .unwrap();

    // Revocation: the refresh token is dead, and so are the access tokens.
    g.revoke();
    let e = oauth::refresh(&http(), &app, &refresh, &scopes, NOW_MS)
        .await
        .unwrap_err();
    assert_eq!(e.kind, OAuthErrorKind::Revoked);
    assert_eq!(
        e.description.as_deref(),
        Some("Token has been expired or revoked.")
    );
    assert_eq!(g.refresh_count(), 3);
    let e = client
        .send(&r2.access_token, &raw, &[], None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, FailureKind::Auth);

    // A new consent restores access with a new refresh token.
    let pkce = Pkce::new();
    let q = authorize(oauth::authorize_url(
        &app,
        &scopes,
        "st-3",
        &pkce.challenge,
        None,
    ))
    .await;
    let again = oauth::exchange_code(&http(), &app, &q["code"], &pkce.verifier, &scopes, NOW_MS)
        .await
        .unwrap();
    assert!(again.refresh_token.is_some());
    assert_ne!(
        again.refresh_token.unwrap().expose_secret(),
        refresh.expose_secret()
    );
}

#[tokio::test]
async fn the_token_endpoint_refuses_bad_clients_and_transient_faults_are_transient() {
    let g = fake().await;
    let good = app(&g, &g.config().client_secret);
    let refresh = SecretString::from(g.issue_tokens(&[SEND]).refresh_token);
    let e = oauth::refresh(&http(), &app(&g, "wrong"), &refresh, &[SEND], NOW_MS)
        .await
        .unwrap_err();
    assert_eq!((e.kind, e.status), (OAuthErrorKind::Client, Some(401)));
    let mut other = good.clone();
    other.client_id = "someone-else".into();
    let e = oauth::refresh(&http(), &other, &refresh, &[SEND], NOW_MS)
        .await
        .unwrap_err();
    assert_eq!(e.kind, OAuthErrorKind::Client);

    g.inject_token(Fault::ServerError, 1);
    let e = oauth::refresh(&http(), &good, &refresh, &[SEND], NOW_MS)
        .await
        .unwrap_err();
    assert_eq!(e.kind, OAuthErrorKind::Transient);
    g.inject_token(
        Fault::Throttle {
            retry_after_secs: 3,
        },
        1,
    );
    let e = oauth::refresh(&http(), &good, &refresh, &[SEND], NOW_MS)
        .await
        .unwrap_err();
    assert!(e.is_quota() && e.is_transient());
    oauth::refresh(&http(), &good, &refresh, &[SEND], NOW_MS)
        .await
        .unwrap();
    assert_eq!(g.refresh_count(), 5);

    // Short-lived tokens: `expires_in` follows the configuration.
    g.set_access_token_lifetime(120);
    let r = oauth::refresh(&http(), &good, &refresh, &[SEND], NOW_MS)
        .await
        .unwrap();
    assert_eq!(r.expires_at_ms, NOW_MS + 120_000);
}

#[tokio::test]
async fn the_authorize_step_denies_and_checks_its_request() {
    let g = fake().await;
    let app = app(&g, "unused");
    let pkce = Pkce::new();
    g.set_decision(AuthorizeDecision::Deny);
    let q = authorize(oauth::authorize_url(
        &app,
        &[SEND],
        "st-d",
        &pkce.challenge,
        None,
    ))
    .await;
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "st-d");
    assert!(!q.contains_key("code"));
    g.set_decision(AuthorizeDecision::Approve);

    // Requests Google would not redirect back for.
    let good = oauth::authorize_url(&app, &[SEND], "st", &pkce.challenge, None);
    type Change = Box<dyn Fn(&mut Vec<(String, String)>)>;
    let cases: Vec<(&str, Change, u16)> = vec![
        (
            "unknown client",
            Box::new(|p| set(p, "client_id", "nope")),
            401,
        ),
        (
            "unregistered redirect",
            Box::new(|p| set(p, "redirect_uri", "http://evil.test/cb")),
            400,
        ),
        (
            "token flow",
            Box::new(|p| set(p, "response_type", "token")),
            400,
        ),
        (
            "unknown scope",
            Box::new(|p| set(p, "scope", "https://example.com/x")),
            400,
        ),
        ("no scope", Box::new(|p| set(p, "scope", "")), 400),
        (
            "no PKCE",
            Box::new(|p| p.retain(|(k, _)| k != "code_challenge")),
            400,
        ),
        (
            "plain PKCE",
            Box::new(|p| set(p, "code_challenge_method", "plain")),
            400,
        ),
        (
            "no state",
            Box::new(|p| p.retain(|(k, _)| k != "state")),
            400,
        ),
    ];
    for (what, change, status) in cases {
        let mut pairs: Vec<(String, String)> = good.query_pairs().into_owned().collect();
        change(&mut pairs);
        let mut u = good.clone();
        u.query_pairs_mut().clear().extend_pairs(&pairs);
        let r = http().get(u).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{what}");
        assert!(
            r.headers().get("location").is_none(),
            "{what} must not redirect"
        );
    }
}

fn set(p: &mut [(String, String)], key: &str, value: &str) {
    for (k, v) in p.iter_mut() {
        if k == key {
            *v = value.to_owned();
        }
    }
}

/// `(name, value)` of every hidden input of an HTML form.
fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
        let end = start + tag[start..].find('"')?;
        Some(
            tag[start..end]
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&"),
        )
    };
    html.split("<input")
        .skip(1)
        .filter_map(|rest| {
            let tag = &rest[..rest.find('>')?];
            tag.contains("type=\"hidden\"")
                .then(|| Some((attr(tag, "name")?, attr(tag, "value")?)))?
        })
        .collect()
}

#[tokio::test]
async fn the_consent_form_posts_allow_or_deny() {
    let g = fake().await;
    let app = app(&g, &g.config().client_secret);
    let pkce = Pkce::new();
    let mut u = oauth::authorize_url(&app, &[MODIFY, SEND], "st-ui", &pkce.challenge, None);
    u.query_pairs_mut().append_pair("ui", "1");
    let r = http().get(u).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("<form method=\"post\" action=\"/o/oauth2/v2/auth\">"),
        "{html}"
    );
    assert!(html.contains(EMAIL) && html.contains(MODIFY));
    let fields = hidden_inputs(&html);
    assert!(fields.iter().any(|(k, v)| k == "state" && v == "st-ui"));
    assert!(!fields.iter().any(|(k, _)| k == "ui"));

    for (decision, expect_code) in [("deny", false), ("allow", true)] {
        let mut form = fields.clone();
        form.push(("decision".into(), decision.into()));
        let r = http().post(g.auth_url()).form(&form).send().await.unwrap();
        assert_eq!(r.status(), 302, "{decision}");
        let to = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        let q: std::collections::HashMap<String, String> = to.query_pairs().into_owned().collect();
        assert_eq!(q["state"], "st-ui");
        assert_eq!(q.contains_key("code"), expect_code, "{decision}: {to}");
        if expect_code {
            let t =
                oauth::exchange_code(&http(), &app, &q["code"], &pkce.verifier, &[SEND], NOW_MS)
                    .await
                    .unwrap();
            assert!(t.refresh_token.is_some());
        } else {
            assert_eq!(q["error"], "access_denied");
        }
    }
    // The same page for every request when configured.
    g.set_consent_ui(true);
    let r = http()
        .get(oauth::authorize_url(
            &app,
            &[SEND],
            "s",
            &pkce.challenge,
            None,
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

// ----- the contract: the fake's answers against the discovery document -----

fn assert_conforms(schema: &str, v: &Value) {
    let problems = contract::check(schema, v);
    assert!(problems.is_empty(), "{schema}: {problems:#?}\n{v:#}");
}

#[tokio::test]
async fn the_fakes_answers_match_the_discovery_document() {
    assert_eq!(contract::revision(), "20261005");
    let (g, client, t) = setup().await;
    let inbound = g.deliver_inbound(
        "From: =?UTF-8?Q?Zo=C3=A9?= <zoe@example.org>\r\nTo: owner@gmail.test\r\n\
         Subject: =?UTF-8?Q?R=C3=A9sum=C3=A9?=\r\nMessage-ID: <c1@example.org>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"o\"\r\n\r\n\
         --o\r\nContent-Type: multipart/alternative; boundary=\"i\"\r\n\r\n\
         --i\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlain \u{e9}t\u{e9}\r\n\
         --i\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Html</p>\r\n--i--\r\n\
         --o\r\nContent-Type: application/pdf; name=\"cv.pdf\"\r\n\
         Content-Disposition: attachment; filename=\"cv.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--o--\r\n"
            .as_bytes(),
    );
    let (_, raw) = message("bob@example.org", "Re: R\u{e9}sum\u{e9}", "");
    let sent = client.send(&t, &raw, &[], None).await.unwrap();

    let (s, profile) = get_json(api(&g, "profile"), &t).await;
    assert_eq!(s, 200);
    assert_conforms("Profile", &profile);
    for key in ["emailAddress", "messagesTotal", "threadsTotal", "historyId"] {
        assert!(profile.get(key).is_some(), "profile lacks {key}");
    }

    let mut full = Value::Null;
    for format in ["minimal", "full", "raw", "metadata"] {
        let (s, m) = get_json(
            api(&g, &format!("messages/{}?format={format}", inbound.id)),
            &t,
        )
        .await;
        assert_eq!(s, 200, "{m}");
        assert_conforms("Message", &m);
        for key in [
            "id",
            "threadId",
            "labelIds",
            "snippet",
            "sizeEstimate",
            "historyId",
            "internalDate",
        ] {
            assert!(m.get(key).is_some(), "{format} lacks {key}");
        }
        assert_eq!(m.get("raw").is_some(), format == "raw", "{format}");
        assert_eq!(
            m.get("payload").is_some(),
            format == "full" || format == "metadata",
            "{format}"
        );
        if format == "full" {
            full = m;
        }
    }
    // The full payload: the tree, decoded headers, inline data and an attachment id.
    let p = &full["payload"];
    assert_eq!(p["partId"], "");
    assert_eq!(p["mimeType"], "multipart/mixed");
    let subject = p["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "Subject")
        .unwrap();
    assert_eq!(subject["value"], "R\u{e9}sum\u{e9}");
    assert_eq!(p["parts"][0]["mimeType"], "multipart/alternative");
    assert_eq!(p["parts"][0]["parts"][1]["partId"], "0.1");
    let plain = URL_SAFE
        .decode(p["parts"][0]["parts"][0]["body"]["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        String::from_utf8(plain).unwrap().trim_end(),
        "Plain \u{e9}t\u{e9}"
    );
    let att = &p["parts"][1];
    assert_eq!(att["filename"], "cv.pdf");
    let att_id = att["body"]["attachmentId"].as_str().unwrap();
    assert!(att["body"].get("data").is_none());
    let (s, body) = get_json(
        api(&g, &format!("messages/{}/attachments/{att_id}", inbound.id)),
        &t,
    )
    .await;
    assert_eq!(s, 200);
    assert_conforms("MessagePartBody", &body);
    assert_eq!(
        URL_SAFE.decode(body["data"].as_str().unwrap()).unwrap(),
        b"%PDF-1.4\n"
    );

    let (s, list) = get_json(api(&g, "messages?maxResults=1"), &t).await;
    assert_eq!(s, 200);
    assert_conforms("ListMessagesResponse", &list);
    assert_eq!(list["messages"][0]["id"], sent.id.as_str(), "newest first");
    let next = list["nextPageToken"].as_str().expect("a second page");
    let (_, page2) = get_json(
        api(&g, &format!("messages?maxResults=1&pageToken={next}")),
        &t,
    )
    .await;
    assert_conforms("ListMessagesResponse", &page2);
    assert_eq!(page2["messages"][0]["id"], inbound.id.as_str());
    assert!(page2.get("nextPageToken").is_none());
    let (_, empty) = get_json(api(&g, "messages?q=rfc822msgid:none@x"), &t).await;
    assert_eq!(empty, json!({"resultSizeEstimate": 0}));
    let (_, by_label) = get_json(api(&g, "messages?labelIds=INBOX&labelIds=UNREAD"), &t).await;
    assert_conforms("ListMessagesResponse", &by_label);
    assert_eq!(by_label["resultSizeEstimate"], 1);

    for format in ["full", "metadata", "minimal"] {
        let (s, th) = get_json(
            api(
                &g,
                &format!("threads/{}?format={format}", inbound.thread_id),
            ),
            &t,
        )
        .await;
        assert_eq!(s, 200);
        assert_conforms("Thread", &th);
        assert!(th.get("historyId").is_some() && th["messages"].as_array().is_some());
    }
    let (s, _) = get_json(
        api(&g, &format!("threads/{}?format=raw", inbound.thread_id)),
        &t,
    )
    .await;
    assert_eq!(s, 400, "threads.get has no raw format");
    let (_, threads) = get_json(api(&g, "threads"), &t).await;
    assert_conforms("ListThreadsResponse", &threads);
    assert_eq!(threads["threads"].as_array().unwrap().len(), 2);

    let (s, labels) = get_json(api(&g, "labels"), &t).await;
    assert_eq!(s, 200);
    assert_conforms("ListLabelsResponse", &labels);
    assert!(
        labels["labels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["id"] == "SENT")
    );

    // The send answer is a Message too.
    let r = http()
        .post(api(&g, "messages/send"))
        .bearer_auth(t.expose_secret())
        .json(&json!({"raw": URL_SAFE_NO_PAD.encode(&raw)}))
        .send()
        .await
        .unwrap();
    assert_conforms("Message", &r.json().await.unwrap());

    // Errors keep Google's format.
    let (s, err) = get_json(api(&g, "messages/0123abcd"), &t).await;
    assert_eq!(s, 404);
    assert_eq!(err["error"]["errors"][0]["reason"], "notFound");
    assert_eq!(err["error"]["status"], "NOT_FOUND");
    let (s, err) = get_json(api(&g, "messages/not-hex"), &t).await;
    assert_eq!(
        (s.as_u16(), &err["error"]["message"]),
        (400, &json!("Invalid id value"))
    );

    // And the checker does catch a non-conforming answer.
    let mut bad = full.clone();
    bad["sizeEstimate"] = json!("12");
    bad["payload"]["parts"][0]["bogus"] = json!(1);
    let problems = contract::check("Message", &bad);
    assert_eq!(problems.len(), 2, "{problems:#?}");
}

#[tokio::test]
async fn metadata_scope_limits_formats_and_search() {
    let g = fake().await;
    let t = SecretString::from(
        g.issue_tokens(&["https://www.googleapis.com/auth/gmail.metadata"])
            .access_token,
    );
    let m = g.deliver_inbound(
        b"From: a@example.org\r\nTo: owner@gmail.test\r\nSubject: s\r\nMessage-ID: <m@x.org>\r\n\r\nhi\r\n",
    );
    let (s, _) = get_json(api(&g, &format!("messages/{}?format=metadata", m.id)), &t).await;
    assert_eq!(s, 200);
    let (s, e) = get_json(api(&g, &format!("messages/{}?format=raw", m.id)), &t).await;
    assert_eq!(s, 403, "{e}");
    let (s, _) = get_json(api(&g, "messages?q=rfc822msgid:m@x.org"), &t).await;
    assert_eq!(s, 403);
    let (s, _) = get_json(api(&g, "messages"), &t).await;
    assert_eq!(s, 200);
}

/// The Google fake's batch endpoint as Google's "Batching requests" guide gives it: calls in
/// a `multipart/mixed` body, answered in order with `Content-ID: <response-…>`, each call
/// served (and refused) as it would be alone; more than 100 calls is 400.
#[tokio::test]
async fn the_fakes_batch_endpoint_serves_each_call_as_alone() {
    let google = FakeGoogle::start(GoogleConfig::default()).await;
    let t = google.issue_tokens(&["https://www.googleapis.com/auth/gmail.readonly"]);
    let m = google.insert_message(
        b"From: a@example.test\r\nSubject: batched\r\nMessage-ID: <b@example.test>\r\n\r\nhi\r\n",
        &["INBOX"],
        std::time::Duration::ZERO,
    );
    let body = |n: usize| {
        let mut b = String::new();
        for i in 0..n {
            let id = if i == 1 {
                "1a2b3c4d5e6f7a8b"
            } else {
                m.id.as_str()
            };
            b.push_str(&format!(
                "--xx\r\nContent-Type: application/http\r\nContent-ID: <c{i}>\r\n\r\nGET /gmail/v1/users/me/messages/{id}?format=minimal\r\n\r\n"
            ));
        }
        b.push_str("--xx--\r\n");
        b
    };
    let client = reqwest::Client::new();
    let post = |b: String| {
        client
            .post(google.base_url().join("batch/gmail/v1").unwrap())
            .bearer_auth(&t.access_token)
            .header("Content-Type", "multipart/mixed; boundary=xx")
            .body(b)
            .send()
    };
    let r = post(body(2)).await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("multipart/mixed; boundary="), "{ct}");
    let text = r.text().await.unwrap();
    let first = text
        .find("Content-ID: <response-c0>")
        .expect("first answer");
    let second = text
        .find("Content-ID: <response-c1>")
        .expect("second answer");
    assert!(first < second, "{text}");
    assert!(text[first..second].contains("HTTP/1.1 200 OK"), "{text}");
    assert!(text[first..second].contains(&m.id), "{text}");
    assert!(text[second..].contains("HTTP/1.1 404"), "{text}");
    assert_eq!(google.batch_request_count(), 1);
    // Each call counts as a Gmail request.
    assert_eq!(google.gmail_request_count(), 2);
    // Too many calls, or no multipart: 400.
    assert_eq!(post(body(101)).await.unwrap().status(), 400);
    let r = client
        .post(google.base_url().join("batch/gmail/v1").unwrap())
        .bearer_auth(&t.access_token)
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
