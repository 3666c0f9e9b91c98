//! Microsoft Graph: the provider client (`mailroom_providers::graph`) and the OAuth helpers
//! (`mailroom_providers::oauth`) against the in-process fake Microsoft; the fake's own
//! strictness (the limits and refusals of the real service); and a contract test of every JSON
//! body the fake emits against `@microsoft/microsoft-graph-types` (`contracts/graph-types.d.ts`).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use mailroom_core::ErrorKind;
use mailroom_core::email::{Attendee, OutgoingAttachment, OutgoingEmail, ReplyParent};
use mailroom_mime::{BuiltMessage, build_message};
use mailroom_providers::FailureKind;
use mailroom_providers::graph::{GraphClient, GraphRoute, UPLOAD_CHUNK};
use mailroom_providers::oauth::{self, IdP, OAuthApp, OAuthErrorKind, Pkce};
use mailroom_testkit::fakes::Fault;
use mailroom_testkit::fakes::microsoft::{
    AuthorizeDecision, FakeMicrosoft, MicrosoftConfig, SentContent, SentVia,
};
use mailroom_testkit::wait;

/// A Message-ID the tests know to be valid.
fn mid(s: &str) -> mailroom_core::MessageId {
    mailroom_core::MessageId::parse(s).expect("a Message-ID")
}

const FULL: &[&str] = &["Mail.ReadWrite", "Mail.Send"];
const MIB: usize = 1024 * 1024;

async fn fake() -> FakeMicrosoft {
    FakeMicrosoft::start(MicrosoftConfig::default()).await
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn client(fake: &FakeMicrosoft) -> GraphClient {
    GraphClient::new(http(), fake.graph_url())
}

fn token(fake: &FakeMicrosoft, scopes: &[&str]) -> SecretString {
    SecretString::from(fake.mint_tokens(scopes).access_token)
}

fn person(address: &str) -> Attendee {
    Attendee {
        identifier: address.to_owned(),
        display_name: None,
    }
}

fn email(fake: &FakeMicrosoft, subject: &str) -> OutgoingEmail {
    let cfg = fake.config();
    OutgoingEmail {
        from: Attendee {
            identifier: cfg.mail,
            display_name: Some(cfg.display_name),
        },
        to: vec![person("alice@example.net")],
        cc: vec![person("bob@example.net")],
        bcc: vec![person("carol@example.net")],
        subject: subject.to_owned(),
        html: Some("<p>Hello <b>there</b></p>".into()),
        text: "Hello there".into(),
        attachments: vec![],
        custom_headers: vec![("X-Campaign".into(), "spring-2026".into())],
        reply: None,
    }
}

fn build(e: &OutgoingEmail) -> BuiltMessage {
    let id = format!("<{}@mailroom.test>", mailroom_testkit::token());
    build_message(e, &id, 1_790_000_000_000).unwrap()
}

fn bcc_of(e: &OutgoingEmail) -> Vec<String> {
    e.bcc.iter().map(|a| a.identifier.clone()).collect()
}

/// Pseudo-random bytes (so a misplaced chunk cannot go unnoticed).
fn noise(n: usize, seed: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 32);
    let mut block = Sha256::digest([seed]).to_vec();
    while out.len() < n {
        out.extend_from_slice(&block);
        block = Sha256::digest(&block).to_vec();
    }
    out.truncate(n);
    out
}

fn header_names(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or_default().to_owned();
    head.lines()
        .filter(|l| !l.starts_with([' ', '\t']))
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_ascii_lowercase()))
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

// ---------------------------------------------------------------- profile and sending

#[tokio::test]
async fn me_reads_the_profile() {
    let fake = fake().await;
    let me = client(&fake)
        .me(&token(&fake, &["Mail.Send"]))
        .await
        .unwrap();
    let cfg = fake.config();
    assert_eq!(me.id, cfg.user_id);
    assert_eq!(me.mail.as_deref(), Some(cfg.mail.as_str()));
    assert_eq!(me.user_principal_name, cfg.user_principal_name);
    assert_eq!(me.display_name.as_deref(), Some(cfg.display_name.as_str()));
}

#[tokio::test]
async fn a_small_message_goes_through_mime_send_mail_and_bcc_stays_hidden() {
    let fake = fake().await;
    let e = email(&fake, "Small one");
    let built = build(&e);
    assert!(!header_names(&built.bytes).contains(&"bcc".to_owned()));
    let sent = client(&fake)
        .send_mime(
            &token(&fake, &["Mail.Send"]),
            &built.bytes,
            &bcc_of(&e),
            None,
        )
        .await
        .unwrap();
    assert_eq!(sent.route, GraphRoute::MimeSendMail);

    let items = fake.sent_items();
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item.via, SentVia::SendMail);
    assert_eq!(item.to, ["alice@example.net"]);
    assert_eq!(item.cc, ["bob@example.net"]);
    assert_eq!(
        item.bcc,
        ["carol@example.net"],
        "the Bcc recipient must get it"
    );
    assert_eq!(item.internet_message_id, built.message_id);
    let SentContent::Mime(delivered) = &item.content else {
        panic!("expected MIME, got {:?}", item.content);
    };
    let names = header_names(delivered);
    assert!(
        !names.contains(&"bcc".to_owned()),
        "Bcc leaked to recipients: {names:?}"
    );
    assert!(!String::from_utf8_lossy(delivered).contains("carol@example.net"));
    assert!(names.contains(&"x-campaign".to_owned()));

    // Graph filed the Sent Items copy itself; the sender's copy shows the Bcc.
    let sent_items = fake.messages("sentitems");
    assert_eq!(sent_items.len(), 1);
    assert_eq!(sent_items[0]["internetMessageId"], built.message_id);
    assert_eq!(
        sent_items[0]["bccRecipients"][0]["emailAddress"]["address"],
        "carol@example.net"
    );
    assert!(fake.messages("drafts").is_empty());
    let log = fake.request_log();
    assert!(
        log.iter()
            .any(|r| r.method == "POST" && r.path == "/v1.0/me/sendMail" && r.status == 202)
    );
    assert!(!log.iter().any(|r| r.path.ends_with("/me/messages")));
}

#[tokio::test]
async fn a_5_mb_attachment_goes_through_a_draft_and_an_upload_session() {
    let fake = fake().await;
    let mut e = email(&fake, "Big one");
    e.html = Some("<p>See attached <img src=\"cid:logo\"></p>".into());
    let big = noise(5 * MIB, 1);
    let small = noise(10_000, 2);
    let logo = noise(2_000, 3);
    e.attachments = vec![
        OutgoingAttachment {
            filename: "big.bin".into(),
            content_type: Some("application/octet-stream".into()),
            content: big.clone(),
            cid: None,
        },
        OutgoingAttachment {
            filename: "notes.txt".into(),
            content_type: Some("application/pdf".into()),
            content: small.clone(),
            cid: None,
        },
        OutgoingAttachment {
            filename: "logo.png".into(),
            content_type: Some("image/png".into()),
            content: logo.clone(),
            cid: Some("logo".into()),
        },
    ];
    let built = build(&e);
    let sent = client(&fake)
        .send_mime(&token(&fake, FULL), &built.bytes, &bcc_of(&e), None)
        .await
        .unwrap();
    assert_eq!(sent.route, GraphRoute::Draft);
    assert!(sent.draft_id.is_some());

    let items = fake.sent_items();
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item.via, SentVia::Draft);
    assert_eq!(
        item.internet_message_id, built.message_id,
        "the MIME's Message-ID is kept"
    );
    assert_eq!(item.subject, "Big one");
    assert_eq!(
        (&item.to[..], &item.cc[..], &item.bcc[..]),
        (
            &["alice@example.net".to_owned()][..],
            &["bob@example.net".to_owned()][..],
            &["carol@example.net".to_owned()][..]
        )
    );
    assert_eq!(
        item.headers,
        [("X-Campaign".to_owned(), "spring-2026".to_owned())]
    );
    let by_name: HashMap<&str, _> = item
        .attachments
        .iter()
        .map(|a| (a.name.as_str(), a))
        .collect();
    assert_eq!(by_name.len(), 3);
    assert_eq!(
        Sha256::digest(&by_name["big.bin"].bytes),
        Sha256::digest(&big)
    );
    assert_eq!(by_name["big.bin"].size, 5 * MIB);
    assert_eq!(by_name["notes.txt"].bytes, small);
    assert!(!by_name["notes.txt"].is_inline);
    assert_eq!(by_name["logo.png"].bytes, logo);
    assert!(by_name["logo.png"].is_inline);
    assert_eq!(by_name["logo.png"].content_id.as_deref(), Some("logo"));
    let SentContent::Json(json) = &item.content else {
        panic!("expected the Graph message");
    };
    assert!(
        json.get("bccRecipients").is_none(),
        "Bcc leaked to recipients"
    );
    assert_eq!(json["body"]["contentType"], "html");
    assert!(
        json["body"]["content"]
            .as_str()
            .unwrap()
            .contains("cid:logo")
    );

    // The big file went up in ≤ 4 MB chunks, in order, without Authorization.
    let puts: Vec<_> = fake
        .request_log()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert_eq!(puts.len(), (5 * MIB).div_ceil(UPLOAD_CHUNK), "{puts:?}");
    let mut next = 0usize;
    for p in &puts {
        assert!(!p.authorization, "a PUT carried Authorization: {p:?}");
        assert!(p.path.starts_with("/api/v2.0/Users("), "{p:?}");
        assert!(p.content_length.unwrap() as usize <= 4 * MIB);
        let range = p.content_range.as_deref().unwrap();
        assert!(range.starts_with(&format!("bytes {next}-")), "{range}");
        next += p.content_length.unwrap() as usize;
        assert!(range.ends_with(&format!("/{}", 5 * MIB)));
    }
    assert_eq!(next, 5 * MIB);
    assert_eq!(puts.last().unwrap().status, 201);
    assert!(
        fake.request_log()
            .iter()
            .all(|r| r.path != "/v1.0/me/sendMail")
    );
    assert!(
        fake.messages("drafts").is_empty(),
        "the draft moved to Sent Items"
    );
    assert_eq!(fake.messages("sentitems").len(), 1);
}

#[tokio::test]
async fn a_reply_lands_in_the_parents_conversation() {
    let fake = fake().await;
    let cfg = fake.config();
    let parent_raw = format!(
        "From: Dan <dan@example.org>\r\nTo: {}\r\nSubject: Quarterly numbers\r\nMessage-ID: <q3-numbers@example.org>\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\nContent-Type: text/plain\r\n\r\nAre they in?\r\n",
        cfg.mail
    );
    let parent = fake.deliver_inbound(parent_raw.as_bytes());
    // Another conversation, to be sure the reply does not just join "the" conversation.
    fake.deliver_inbound(b"From: eve@example.org\r\nTo: x@y.z\r\nSubject: other\r\nMessage-ID: <other@example.org>\r\n\r\nhi\r\n");

    let mut e = email(&fake, "");
    e.to = vec![person("dan@example.org")];
    e.cc.clear();
    e.reply = Some(ReplyParent {
        message_id: parent.internet_message_id.clone(),
        references: vec![],
        subject: Some("Quarterly numbers".into()),
    });
    let built = build(&e);
    let sent = client(&fake)
        .send_mime(
            &token(&fake, FULL),
            &built.bytes,
            &bcc_of(&e),
            Some(&mid(&parent.internet_message_id)),
        )
        .await
        .unwrap();
    assert_eq!(sent.route, GraphRoute::Draft);
    // The client asks for immutable ids (`Prefer: IdType="ImmutableId"`).
    assert_eq!(
        sent.parent_id.as_deref(),
        Some(parent.immutable_id.as_str())
    );
    assert_eq!(
        sent.conversation_id.as_deref(),
        Some(parent.conversation_id.as_str())
    );

    let items = fake.sent_items();
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item.conversation_id, parent.conversation_id);
    assert_eq!(item.subject, "Re: Quarterly numbers");
    assert_eq!(item.to, ["dan@example.org"]);
    assert_eq!(item.bcc, ["carol@example.net"]);
    assert_eq!(item.internet_message_id, built.message_id);
    assert!(
        fake.request_log()
            .iter()
            .any(|r| r.path == format!("/v1.0/me/messages/{}/createReply", parent.immutable_id))
    );
    let in_conversation: Vec<Value> = fake
        .messages("sentitems")
        .into_iter()
        .filter(|m| m["conversationId"] == parent.conversation_id)
        .collect();
    assert_eq!(in_conversation.len(), 1);
}

#[tokio::test]
async fn a_reply_to_a_parent_the_mailbox_lacks_keeps_its_threading_headers_via_mime() {
    let fake = fake().await;
    let mut e = email(&fake, "x");
    e.reply = Some(ReplyParent {
        message_id: "<gone@example.org>".into(),
        references: vec!["<older@example.org>".into()],
        subject: Some("Old".into()),
    });
    let built = build(&e);
    let sent = client(&fake)
        .send_mime(
            &token(&fake, FULL),
            &built.bytes,
            &[],
            Some(&mid("<gone@example.org>")),
        )
        .await
        .unwrap();
    assert_eq!(sent.route, GraphRoute::MimeSendMail);
    let SentContent::Mime(raw) = &fake.sent_items()[0].content else {
        panic!("expected MIME");
    };
    assert!(header_names(raw).contains(&"in-reply-to".to_owned()));
}

#[tokio::test]
async fn a_send_only_token_cannot_take_the_draft_route() {
    // Drafts, upload sessions and the parent lookup need Mail.ReadWrite: Graph answers 403.
    let fake = fake().await;
    let mut e = email(&fake, "Big");
    e.attachments = vec![OutgoingAttachment {
        filename: "big.bin".into(),
        content_type: None,
        content: noise(4 * MIB, 9),
        cid: None,
    }];
    let built = build(&e);
    let err = client(&fake)
        .send_mime(&token(&fake, &["Mail.Send"]), &built.bytes, &[], None)
        .await
        .unwrap_err();
    assert_eq!(
        err.kind,
        FailureKind::Rejected(ErrorKind::CantSendMessage),
        "{err:?}"
    );
    assert_eq!(
        (err.status, err.code.as_deref()),
        (Some(403), Some("ErrorAccessDenied"))
    );
    assert!(fake.sent_items().is_empty());

    // A small reply still goes, as MIME: the parent lookup is refused (403), not fatal.
    let parent = fake.deliver_inbound(
        b"From: dan@example.org\r\nTo: adele@contoso.example\r\nSubject: q\r\nMessage-ID: <q@example.org>\r\n\r\nhi\r\n",
    );
    let mut e = email(&fake, "");
    e.reply = Some(ReplyParent {
        message_id: parent.internet_message_id.clone(),
        references: vec![],
        subject: Some("q".into()),
    });
    let sent = client(&fake)
        .send_mime(
            &token(&fake, &["Mail.Send"]),
            &build(&e).bytes,
            &[],
            Some(&mid(&parent.internet_message_id)),
        )
        .await
        .unwrap();
    assert_eq!(sent.route, GraphRoute::MimeSendMail);
    // The fake joins a MIME message to the conversation its In-Reply-To names.
    assert_eq!(fake.sent_items()[0].conversation_id, parent.conversation_id);
}

// ---------------------------------------------------------------- error classes

#[tokio::test]
async fn a_refused_or_expired_token_is_auth() {
    let fake = fake().await;
    let c = client(&fake);
    let err = c
        .me(&SecretString::from("not-a-token".to_owned()))
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Auth);
    assert_eq!(
        (err.status, err.code.as_deref()),
        (Some(401), Some("InvalidAuthenticationToken"))
    );
    assert!(err.is_auth() && !err.is_transient());

    let t = token(&fake, FULL);
    c.me(&t).await.unwrap();
    fake.expire_access_tokens();
    let err = c.me(&t).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Auth);
    assert!(err.detail.contains("expired"), "{}", err.detail);
}

#[tokio::test]
async fn application_throttled_is_throttled_with_retry_after() {
    let fake = fake().await;
    let c = client(&fake);
    let t = token(&fake, FULL);
    fake.inject(
        Fault::Throttle {
            retry_after_secs: 7,
        },
        1,
    );
    let e = email(&fake, "t");
    let built = build(&e);
    let err = c.send_mime(&t, &built.bytes, &[], None).await.unwrap_err();
    assert!(matches!(err.kind, FailureKind::Quota { .. }));
    assert_eq!(err.status, Some(429));
    assert_eq!(err.code.as_deref(), Some("ApplicationThrottled"));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert!(err.is_quota() && err.is_transient());
    assert!(fake.sent_items().is_empty());
    // The fault is spent: the retry goes through.
    c.send_mime(&t, &built.bytes, &[], None).await.unwrap();
    assert_eq!(fake.sent_items().len(), 1);
}

#[tokio::test]
async fn more_than_four_concurrent_requests_per_mailbox_are_throttled() {
    let fake = fake().await;
    fake.set_concurrency_limit(Some(
        mailroom_testkit::fakes::microsoft::MAILBOX_CONCURRENCY,
    ));
    fake.hold_requests();
    let t = token(&fake, FULL);
    let mut calls = vec![];
    for _ in 0..6 {
        let c = client(&fake);
        let t = t.clone();
        calls.push(tokio::spawn(async move { c.me(&t).await }));
    }
    wait::until(
        "4 requests held and 2 throttled",
        Duration::from_secs(10),
        || {
            let done = fake.in_flight() == 4 && fake.throttled_count() == 2;
            async move { done.then_some(()) }
        },
    )
    .await;
    fake.release_requests();
    let mut ok = 0;
    let mut throttled = vec![];
    for c in calls {
        match c.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => throttled.push(e),
        }
    }
    assert_eq!(ok, 4);
    assert_eq!(throttled.len(), 2);
    for e in throttled {
        assert!(matches!(e.kind, FailureKind::Quota { .. }));
        assert_eq!(e.code.as_deref(), Some("ApplicationThrottled"));
        assert!(e.detail.contains("MailboxConcurrency"), "{}", e.detail);
        assert!(e.retry_after().is_some());
    }
}

#[tokio::test]
async fn service_unavailable_is_transient_and_slow_answers_time_out() {
    let fake = fake().await;
    let t = token(&fake, FULL);
    fake.inject(Fault::ServerError, 1);
    let err = client(&fake).me(&t).await.unwrap_err();
    assert!(matches!(err.kind, FailureKind::Transient { .. }));
    assert_eq!(
        (err.status, err.code.as_deref()),
        (Some(503), Some("ServiceUnavailable"))
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));

    fake.inject(Fault::Latency(Duration::from_secs(5)), 1);
    let impatient =
        client(&fake).with_timeouts(Duration::from_millis(200), Duration::from_millis(200));
    let err = impatient.me(&t).await.unwrap_err();
    assert!(matches!(err.kind, FailureKind::Transient { .. }));
    assert_eq!(err.status, None);
    client(&fake).me(&t).await.unwrap();
}

#[tokio::test]
async fn an_unresolvable_recipient_is_recipient_rejected_on_both_routes() {
    let fake = fake().await;
    let t = token(&fake, FULL);
    let cfg = fake.config();
    let raw = format!(
        "From: {}\r\nTo: broken@@example..com\r\nSubject: x\r\nMessage-ID: <bad-rcpt@mailroom.test>\r\n\r\nhi\r\n",
        cfg.mail
    );
    let err = client(&fake)
        .send_mime(&t, raw.as_bytes(), &[], None)
        .await
        .unwrap_err();
    assert_eq!(
        err.kind,
        FailureKind::Rejected(ErrorKind::RecipientRejected),
        "{err:?}"
    );
    assert_eq!(err.code.as_deref(), Some("ErrorInvalidRecipients"));

    // The draft route learns it at /send; the draft is not left behind.
    let big = STANDARD.encode(noise(3_100_000, 4));
    let raw = format!(
        "From: {}\r\nTo: broken@@example..com\r\nSubject: x\r\nMessage-ID: <bad-rcpt-2@mailroom.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=a.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n{big}\r\n--b--\r\n",
        cfg.mail
    );
    let err = client(&fake)
        .send_mime(&t, raw.as_bytes(), &[], None)
        .await
        .unwrap_err();
    assert_eq!(
        err.kind,
        FailureKind::Rejected(ErrorKind::RecipientRejected),
        "{err:?}"
    );
    assert!(fake.messages("drafts").is_empty());
    assert!(fake.sent_items().is_empty());
}

#[tokio::test]
async fn a_message_over_the_tenant_limit_is_too_large() {
    let fake = FakeMicrosoft::start(MicrosoftConfig {
        max_message_size: 6 * MIB,
        ..MicrosoftConfig::default()
    })
    .await;
    let mut e = email(&fake, "huge");
    e.attachments = vec![OutgoingAttachment {
        filename: "huge.bin".into(),
        content_type: None,
        content: noise(7 * MIB, 5),
        cid: None,
    }];
    let built = build(&e);
    let err = client(&fake)
        .send_mime(&token(&fake, FULL), &built.bytes, &[], None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::TooLarge, "{err:?}");
    assert_eq!(err.code.as_deref(), Some("ErrorMessageSizeExceeded"));
    assert!(
        fake.messages("drafts").is_empty(),
        "the failed draft is deleted"
    );
}

// ---------------------------------------------------------------- the fake is as strict as Graph

struct Raw {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Raw {
    fn new(fake: &FakeMicrosoft, scopes: &[&str]) -> Raw {
        Raw {
            http: http(),
            base: fake.graph_url().to_string(),
            token: fake.mint_tokens(scopes).access_token,
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.unwrap();
        let s = resp.status();
        let v = resp.json().await.unwrap_or(Value::Null);
        (s, v)
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn draft(&self) -> String {
        let (s, v) = self
            .post("/me/messages", json!({"subject": "d", "toRecipients": [{"emailAddress": {"address": "a@example.net"}}]}))
            .await;
        assert_eq!(s, 201, "{v}");
        v["id"].as_str().unwrap().to_owned()
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn the_fake_enforces_graph_limits_and_shapes() {
    let fake = fake().await;
    let raw = Raw::new(&fake, FULL);
    let id = raw.draft().await;

    // Upload sessions: not for small files; PUTs without Authorization, ≤ 4 MB, in order.
    let (s, v) = raw
        .post(
            &format!("/me/messages/{id}/attachments/createUploadSession"),
            json!({"AttachmentItem": {"attachmentType": "file", "name": "s.bin", "size": 1_000_000}}),
        )
        .await;
    assert_eq!(
        (s.as_u16(), code(&v)),
        (400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize")
    );
    let size = 9 * MIB;
    let (s, v) = raw
        .post(
            &format!("/me/messages/{id}/attachments/createUploadSession"),
            json!({"AttachmentItem": {"attachmentType": "file", "name": "b.bin", "size": size}}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["nextExpectedRanges"], json!(["0-"]));
    let url = v["uploadUrl"].as_str().unwrap().to_owned();
    assert!(url.contains("authtoken="));
    let put = |from: usize, len: usize, auth: bool| {
        let mut rb = raw
            .http
            .put(&url)
            .header("Content-Type", "application/octet-stream")
            .header(
                "Content-Range",
                format!("bytes {from}-{}/{size}", from + len - 1),
            )
            .body(vec![7u8; len]);
        if auth {
            rb = rb.bearer_auth(&raw.token);
        }
        rb.send()
    };
    let r = put(0, MIB, true).await.unwrap();
    assert_eq!(r.status(), 401, "a PUT with Authorization must be refused");
    let r = put(0, 4 * MIB + 1, false).await.unwrap();
    assert_eq!(r.status(), 413);
    let r = put(MIB, MIB, false).await.unwrap();
    assert_eq!(r.status(), 416, "out of order");
    let r = put(0, MIB, false).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["nextExpectedRanges"], json!([MIB.to_string()]));
    let bad_token = url.replace("authtoken=", "authtoken=x");
    let r = raw
        .http
        .put(&bad_token)
        .header(
            "Content-Range",
            format!("bytes {MIB}-{}/{size}", 2 * MIB - 1),
        )
        .body(vec![7u8; MIB])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Direct attachment POSTs are bounded by the 4 MB request limit.
    let (s, v) = raw
        .post(
            &format!("/me/messages/{id}/attachments"),
            json!({"@odata.type": "#microsoft.graph.fileAttachment", "name": "x.bin", "contentBytes": STANDARD.encode(vec![1u8; 3_200_000])}),
        )
        .await;
    assert_eq!((s.as_u16(), code(&v)), (413, "RequestBodyTooLarge"));
    let (s, v) = raw
        .post(
            &format!("/me/messages/{id}/attachments"),
            json!({"name": "x.bin", "contentBytes": "AAAA"}),
        )
        .await;
    assert_eq!(
        (s.as_u16(), code(&v)),
        (400, "RequestBodyRead"),
        "@odata.type is required"
    );

    // JSON is checked against the Message type; custom headers must be x-.
    let (s, v) = raw.post("/me/messages", json!({"subjet": "typo"})).await;
    assert_eq!((s.as_u16(), code(&v)), (400, "RequestBodyRead"));
    let (s, v) = raw
        .post(
            "/me/messages",
            json!({"internetMessageHeaders": [{"name": "Keywords", "value": "v"}]}),
        )
        .await;
    assert_eq!(
        (s.as_u16(), code(&v)),
        (400, "InvalidInternetMessageHeader")
    );
    let (s, v) = raw
        .call(
            reqwest::Method::PATCH,
            &format!("/me/messages/{id}"),
            Some(json!({"internetMessageHeaders": [{"name": "x-a", "value": "v"}]})),
        )
        .await;
    assert_eq!(
        (s.as_u16(), code(&v)),
        (400, "ErrorInvalidPropertyRequest"),
        "not updatable"
    );

    // sendMail: bad base64 MIME, no recipients, 4 MB.
    let mime = |body: Vec<u8>| {
        raw.http
            .post(format!("{}/me/sendMail", raw.base))
            .bearer_auth(&raw.token)
            .header("Content-Type", "text/plain")
            .body(body)
            .send()
    };
    let r = mime(b"%%% not base64 %%%".to_vec()).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        code(&r.json::<Value>().await.unwrap()),
        "ErrorMimeContentInvalidBase64String"
    );
    let r = mime(STANDARD.encode(b"Subject: nobody\r\n\r\nhi").into_bytes())
        .await
        .unwrap();
    assert_eq!(
        code(&r.json::<Value>().await.unwrap()),
        "ErrorInvalidRecipients"
    );
    let r = mime(vec![b'A'; 4 * MIB + 4]).await.unwrap();
    assert_eq!(r.status(), 413);

    // JSON sendMail with an inline attachment, and saveToSentItems=false.
    let (s, _) = raw
        .post(
            "/me/sendMail",
            json!({"message": {
                "subject": "json",
                "body": {"contentType": "HTML", "content": "<img src=\"cid:i1\">"},
                "toRecipients": [{"emailAddress": {"address": "a@example.net", "name": "A"}}],
                "attachments": [{"@odata.type": "#microsoft.graph.fileAttachment", "name": "i.png",
                                  "contentType": "image/png", "contentBytes": "iVBORw0KGgo=", "isInline": true, "contentId": "i1"}],
            }, "saveToSentItems": false}),
        )
        .await;
    assert_eq!(s, 202);
    let item = fake.sent_items().pop().unwrap();
    assert_eq!(item.attachments[0].content_id.as_deref(), Some("i1"));
    assert!(item.attachments[0].is_inline);
    assert!(item.sent_items_id.is_none());
    assert!(fake.messages("sentitems").is_empty());

    // A POST without a body must still say Content-Length: 0 (HTTP/1.1, written by hand).
    let addr = fake.base_url();
    let mut conn = tokio::net::TcpStream::connect((addr.host_str().unwrap(), addr.port().unwrap()))
        .await
        .unwrap();
    let req = format!(
        "POST /v1.0/me/messages/{id}/send HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        addr.authority(),
        raw.token
    );
    tokio::io::AsyncWriteExt::write_all(&mut conn, req.as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut conn, &mut answer)
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 411"), "{answer}");

    // Permissions: Mail.Send alone cannot create drafts or read.
    let send_only = Raw::new(&fake, &["Mail.Send"]);
    let (s, v) = send_only
        .post("/me/messages", json!({"subject": "x"}))
        .await;
    assert_eq!((s.as_u16(), code(&v)), (403, "ErrorAccessDenied"));
    let (s, _) = send_only.get("/me/mailFolders").await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn lists_page_with_opaque_next_links_and_filter_by_internet_message_id() {
    let fake = fake().await;
    for i in 0..3 {
        fake.deliver_inbound(
            format!("From: a@example.org\r\nTo: x@y.z\r\nSubject: n{i}\r\nMessage-ID: <n{i}@example.org>\r\n\r\nhi\r\n").as_bytes(),
        );
    }
    let raw = Raw::new(&fake, &["Mail.Read"]);
    let (s, v) = raw
        .get("/me/messages?$top=2&$select=subject,conversationId")
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["value"].as_array().unwrap().len(), 2);
    assert!(
        v["value"][0].get("body").is_none(),
        "$select limits the properties"
    );
    let next = v["@odata.nextLink"].as_str().unwrap();
    let r: Value = raw
        .http
        .get(next)
        .bearer_auth(&raw.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["value"].as_array().unwrap().len(), 1);
    assert!(r.get("@odata.nextLink").is_none());

    let (_, v) = raw
        .get("/me/messages?$filter=internetMessageId%20eq%20'%3Cn1%40example.org%3E'")
        .await;
    assert_eq!(v["value"].as_array().unwrap().len(), 1);
    assert_eq!(v["value"][0]["subject"], "n1");
    let (s, v) = raw.get("/me/messages?$select=nope").await;
    assert_eq!((s.as_u16(), code(&v)), (400, "RequestBroker--ParseUri"));

    let (_, v) = raw.get("/me/mailFolders").await;
    let names: Vec<&str> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["displayName"].as_str().unwrap())
        .collect();
    for n in [
        "Inbox",
        "Drafts",
        "Sent Items",
        "Deleted Items",
        "Junk Email",
        "Archive",
    ] {
        assert!(names.contains(&n), "{names:?}");
    }
    let (s, v) = raw.get("/me/mailFolders/inbox").await;
    assert_eq!(s, 200);
    assert_eq!(v["totalItemCount"], 3);
    let (_, v) = raw.get("/me/mailFolders/sentitems/messages").await;
    assert_eq!(v["value"].as_array().unwrap().len(), 0);
}

// ---------------------------------------------------------------- identity platform

fn app(fake: &FakeMicrosoft) -> OAuthApp {
    let cfg = fake.config();
    OAuthApp {
        idp: IdP::Microsoft,
        client_id: cfg.client_id,
        client_secret: SecretString::from(cfg.client_secret),
        auth_url: fake.auth_url(),
        token_url: fake.token_url(),
        redirect_uri: url::Url::parse("http://127.0.0.1:9/oauth/microsoft/callback").unwrap(),
    }
}

const SCOPES: &[&str] = &["offline_access", "openid", "Mail.ReadWrite", "Mail.Send"];

/// Follows the authorize URL once; returns the redirect's query.
async fn authorize(url: url::Url) -> HashMap<String, String> {
    let resp = http().get(url).send().await.unwrap();
    assert_eq!(
        resp.status(),
        302,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let loc = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    assert!(
        loc.as_str()
            .starts_with("http://127.0.0.1:9/oauth/microsoft/callback?")
    );
    loc.query_pairs().into_owned().collect()
}

#[tokio::test]
async fn code_exchange_checks_pkce_and_codes_are_single_use() {
    let fake = fake().await;
    let app = app(&fake);
    let pkce = Pkce::new();
    let q = authorize(oauth::authorize_url(
        &app,
        SCOPES,
        "st-1",
        &pkce.challenge,
        None,
    ))
    .await;
    assert_eq!(q["state"], "st-1");
    let code = &q["code"];

    let wrong = Pkce::new();
    let err = oauth::exchange_code(&http(), &app, code, &wrong.verifier, SCOPES, now_ms())
        .await
        .unwrap_err();
    assert_eq!(err.error, "invalid_grant");
    assert_eq!(err.error_codes, [501481]);
    assert!(
        err.description
            .as_deref()
            .unwrap()
            .starts_with("AADSTS501481:")
    );

    let tokens = oauth::exchange_code(&http(), &app, code, &pkce.verifier, SCOPES, now_ms())
        .await
        .unwrap();
    assert!(tokens.refresh_token.is_some());
    assert!(
        tokens
            .scope
            .as_deref()
            .unwrap()
            .contains("https://graph.microsoft.com/Mail.Send")
    );
    assert!(tokens.expires_at_ms > now_ms() + 3_000_000);
    client(&fake).me(&tokens.access_token).await.unwrap();

    let err = oauth::exchange_code(&http(), &app, code, &pkce.verifier, SCOPES, now_ms())
        .await
        .unwrap_err();
    assert_eq!(err.error_codes, [54005], "a code is single-use");

    // Without offline_access there is no refresh token.
    let pkce = Pkce::new();
    let q = authorize(oauth::authorize_url(
        &app,
        &["Mail.Send"],
        "st-2",
        &pkce.challenge,
        None,
    ))
    .await;
    let t = oauth::exchange_code(
        &http(),
        &app,
        &q["code"],
        &pkce.verifier,
        &["Mail.Send"],
        now_ms(),
    )
    .await
    .unwrap();
    assert!(t.refresh_token.is_none());
}

#[tokio::test]
async fn refresh_rotates_the_refresh_token_and_revocation_is_50173() {
    let fake = fake().await;
    let app = app(&fake);
    let pkce = Pkce::new();
    let q = authorize(oauth::authorize_url(
        &app,
        SCOPES,
        "s",
        &pkce.challenge,
        None,
    ))
    .await;
    let t0 = oauth::exchange_code(&http(), &app, &q["code"], &pkce.verifier, SCOPES, now_ms())
        .await
        .unwrap();
    let rt0 = t0.refresh_token.unwrap();

    let t1 = oauth::refresh(&http(), &app, &rt0, SCOPES, now_ms())
        .await
        .unwrap();
    let rt1 = t1
        .refresh_token
        .expect("Microsoft rotates: a new refresh token every time");
    assert_ne!(rt1.expose_secret(), rt0.expose_secret());
    let t2 = oauth::refresh(&http(), &app, &rt1, SCOPES, now_ms())
        .await
        .unwrap();
    let rt2 = t2.refresh_token.unwrap();
    assert_ne!(rt2.expose_secret(), rt1.expose_secret());
    assert_ne!(
        t2.access_token.expose_secret(),
        t1.access_token.expose_secret()
    );
    // The old one is not revoked by rotation.
    oauth::refresh(&http(), &app, &rt0, SCOPES, now_ms())
        .await
        .unwrap();
    assert_eq!(fake.refresh_count(), 3);
    client(&fake).me(&t2.access_token).await.unwrap();

    // A scope outside the consent is refused.
    let err = oauth::refresh(&http(), &app, &rt2, &["Calendars.Read"], now_ms())
        .await
        .unwrap_err();
    assert_eq!(err.error_codes, [65001]);

    fake.revoke();
    let err = oauth::refresh(&http(), &app, &rt2, SCOPES, now_ms())
        .await
        .unwrap_err();
    assert_eq!(err.kind, OAuthErrorKind::Revoked);
    assert_eq!(err.error, "invalid_grant");
    assert_eq!(err.error_codes, [50173]);
    assert!(
        err.description
            .as_deref()
            .unwrap()
            .starts_with("AADSTS50173:")
    );
    assert_eq!(fake.refresh_count(), 5);
    let e = client(&fake).me(&t2.access_token).await.unwrap_err();
    assert_eq!(e.kind, FailureKind::Auth);

    // A new consent works again.
    let pkce = Pkce::new();
    let q = authorize(oauth::authorize_url(
        &app,
        SCOPES,
        "s",
        &pkce.challenge,
        None,
    ))
    .await;
    let t = oauth::exchange_code(&http(), &app, &q["code"], &pkce.verifier, SCOPES, now_ms())
        .await
        .unwrap();
    client(&fake).me(&t.access_token).await.unwrap();
    fake.expire_refresh_tokens();
    let err = oauth::refresh(&http(), &app, &t.refresh_token.unwrap(), SCOPES, now_ms())
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind, err.error_codes),
        (OAuthErrorKind::Revoked, vec![70008])
    );
}

#[tokio::test]
async fn token_endpoint_errors_have_aad_shape_and_classes() {
    let fake = fake().await;
    let mut bad = app(&fake);
    bad.client_secret = SecretString::from("wrong".to_owned());
    let minted = fake.mint_tokens(FULL);
    let err = oauth::refresh(
        &http(),
        &bad,
        &SecretString::from(minted.refresh_token.clone()),
        SCOPES,
        now_ms(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (err.kind, err.status, err.error.as_str()),
        (OAuthErrorKind::Client, Some(401), "invalid_client")
    );
    assert_eq!(err.error_codes, [7000215]);

    let r = http()
        .post(fake.token_url())
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "garbage"),
            ("client_id", &fake.config().client_id),
            ("client_secret", &fake.config().client_secret),
            ("scope", "Mail.Send"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    for k in [
        "error",
        "error_description",
        "error_codes",
        "timestamp",
        "trace_id",
        "correlation_id",
    ] {
        assert!(v.get(k).is_some(), "{k} missing in {v}");
    }
    let d = v["error_description"].as_str().unwrap();
    assert!(
        d.starts_with("AADSTS9002313:") && d.contains("Trace ID:") && d.contains("Correlation ID:"),
        "{d}"
    );

    fake.inject_token(
        Fault::Throttle {
            retry_after_secs: 2,
        },
        1,
    );
    let err = oauth::refresh(
        &http(),
        &app(&fake),
        &SecretString::from(minted.refresh_token),
        SCOPES,
        now_ms(),
    )
    .await
    .unwrap_err();
    assert!(err.is_transient() && err.is_quota(), "{err:?}");
}

#[tokio::test]
async fn authorize_validates_the_request_and_reports_denial() {
    let fake = fake().await;
    let app = app(&fake);
    let pkce = Pkce::new();

    fake.set_decision(AuthorizeDecision::Deny);
    let q = authorize(oauth::authorize_url(
        &app,
        SCOPES,
        "st-deny",
        &pkce.challenge,
        None,
    ))
    .await;
    assert_eq!(q["error"], "access_denied");
    assert!(q["error_description"].starts_with("AADSTS65004"));
    assert_eq!(q["state"], "st-deny");
    assert!(!q.contains_key("code"));
    fake.set_decision(AuthorizeDecision::Approve);

    // An unknown client or redirect URI gets an error page, never a redirect.
    let mut other = app.clone();
    other.client_id = "00000000-0000-0000-0000-000000000000".into();
    let r = http()
        .get(oauth::authorize_url(
            &other,
            SCOPES,
            "s",
            &pkce.challenge,
            None,
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("AADSTS700016"));
    let strict = FakeMicrosoft::start(MicrosoftConfig {
        redirect_uris: vec!["https://mailroom.example/oauth/microsoft/callback".into()],
        ..MicrosoftConfig::default()
    })
    .await;
    let mut a = app.clone();
    a.auth_url = strict.auth_url();
    let r = http()
        .get(oauth::authorize_url(&a, SCOPES, "s", &pkce.challenge, None))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("AADSTS50011"));

    // PKCE is required, and only S256.
    let mut u = oauth::authorize_url(&app, SCOPES, "s", &pkce.challenge, None);
    let kept: Vec<(String, String)> = u
        .query_pairs()
        .into_owned()
        .filter(|(k, _)| k != "code_challenge_method")
        .chain([("code_challenge_method".to_owned(), "plain".to_owned())])
        .collect();
    u.query_pairs_mut().clear().extend_pairs(kept);
    let q = authorize(u).await;
    assert_eq!(q["error"], "invalid_request");
    assert!(q["error_description"].starts_with("AADSTS50149"));
}

#[tokio::test]
async fn the_consent_page_works_without_javascript() {
    let fake = fake().await;
    let mut app = app(&fake);
    app.auth_url.query_pairs_mut().append_pair("ui", "1");
    let pkce = Pkce::new();
    let url = oauth::authorize_url(&app, SCOPES, "st-ui", &pkce.challenge, None);
    let page = http().get(url.clone()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(!html.contains("<script"));
    assert!(html.contains("<html lang=\"en\">") && html.contains("Send mail as you"));
    let request = html
        .split("name=\"request\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let consent = fake.base_url().join("common/oauth2/v2.0/consent").unwrap();
    let r = http()
        .post(consent.clone())
        .form(&[("request", request.as_str()), ("decision", "accept")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let q: HashMap<String, String> = loc.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "st-ui");
    oauth::exchange_code(&http(), &app, &q["code"], &pkce.verifier, SCOPES, now_ms())
        .await
        .unwrap();
    // The same form cannot be answered twice; Cancel denies.
    let r = http()
        .post(consent.clone())
        .form(&[("request", request.as_str()), ("decision", "accept")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let html = http().get(url).send().await.unwrap().text().await.unwrap();
    let request = html
        .split("name=\"request\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap();
    let r = http()
        .post(consent)
        .form(&[("request", request), ("decision", "cancel")])
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(loc.contains("error=access_denied"), "{loc}");
}

// ---------------------------------------------------------------- contract

/// `interface X extends Y { name?: type; }` and string-literal `type` aliases.
struct TypeDefs {
    interfaces: HashMap<String, (Option<String>, HashMap<String, String>)>,
    aliases: HashMap<String, Vec<String>>,
}

impl TypeDefs {
    fn parse(src: &str) -> TypeDefs {
        let mut interfaces = HashMap::new();
        let mut aliases = HashMap::new();
        let mut current: Option<(String, Option<String>, HashMap<String, String>)> = None;
        let mut alias: Option<(String, String)> = None;
        for line in src.lines() {
            let t = line.trim();
            if let Some((name, mut acc)) = alias.take() {
                acc.push_str(t);
                if t.ends_with(';') {
                    aliases.insert(name, literals(&acc));
                } else {
                    alias = Some((name, acc));
                }
                continue;
            }
            if let Some(rest) = t.strip_prefix("export interface ") {
                let head = rest.trim_end_matches('{').trim();
                let (name, ext) = match head.split_once(" extends ") {
                    Some((n, e)) => (n.trim().to_owned(), Some(e.trim().to_owned())),
                    None => (head.to_owned(), None),
                };
                current = Some((name, ext, HashMap::new()));
            } else if let Some(rest) = t.strip_prefix("export type ") {
                let (name, def) = rest.split_once('=').unwrap();
                let name = name.trim().to_owned();
                if t.ends_with(';') {
                    aliases.insert(name, literals(def));
                } else {
                    alias = Some((name, def.to_owned()));
                }
            } else if t == "}" {
                if let Some((n, e, p)) = current.take() {
                    interfaces.insert(n, (e, p));
                }
            } else if let Some((_, _, props)) = current.as_mut()
                && !t.starts_with("//")
                && !t.starts_with('*')
                && !t.starts_with("/*")
                && let Some((name, ty)) = t.split_once(':')
            {
                props.insert(
                    name.trim_end_matches('?').to_owned(),
                    ty.trim().trim_end_matches(';').trim().to_owned(),
                );
            }
        }
        fn literals(def: &str) -> Vec<String> {
            def.split('|')
                .map(|s| {
                    s.trim()
                        .trim_end_matches(';')
                        .trim()
                        .trim_matches('"')
                        .to_owned()
                })
                .filter(|s| !s.is_empty())
                .collect()
        }
        TypeDefs {
            interfaces,
            aliases,
        }
    }

    /// The declared type of `prop` on `iface` or its ancestors.
    fn prop(&self, iface: &str, prop: &str, ci: bool) -> Option<&str> {
        let mut cur = Some(iface);
        while let Some(name) = cur {
            let (ext, props) = self.interfaces.get(name)?;
            let hit = props.iter().find(|(k, _)| {
                if ci {
                    k.eq_ignore_ascii_case(prop)
                } else {
                    *k == prop
                }
            });
            if let Some((_, ty)) = hit {
                return Some(ty);
            }
            cur = ext.as_deref();
        }
        None
    }

    fn is_subtype(&self, sub: &str, sup: &str) -> bool {
        let mut cur = Some(sub);
        while let Some(n) = cur {
            if n == sup {
                return true;
            }
            cur = self.interfaces.get(n).and_then(|(e, _)| e.as_deref());
        }
        false
    }

    fn check_value(&self, ty: &str, v: &Value, path: &str, ci: bool, errs: &mut Vec<String>) {
        let ty = ty.trim();
        if let Some(inner) = ty
            .strip_prefix("NullableOption<")
            .and_then(|t| t.strip_suffix('>'))
        {
            if !v.is_null() {
                self.check_value(inner, v, path, ci, errs);
            }
            return;
        }
        if v.is_null() {
            errs.push(format!("{path}: null, but {ty} is not nullable"));
            return;
        }
        if let Some(elem) = ty.strip_suffix("[]") {
            match v.as_array() {
                Some(a) => {
                    for (i, x) in a.iter().enumerate() {
                        self.check_value(elem, x, &format!("{path}[{i}]"), ci, errs);
                    }
                }
                None => errs.push(format!("{path}: {v} is not an array of {elem}")),
            }
            return;
        }
        let ok = match ty {
            "string" => v.is_string(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "any" => true,
            _ => {
                if let Some(lits) = self.aliases.get(ty) {
                    v.as_str().is_some_and(|s| lits.iter().any(|l| l == s))
                } else if self.interfaces.contains_key(ty) {
                    self.check_object(ty, v, path, ci, errs);
                    true
                } else {
                    errs.push(format!("{path}: type {ty} is not in graph-types.d.ts"));
                    true
                }
            }
        };
        if !ok {
            errs.push(format!("{path}: {v} is not a {ty}"));
        }
    }

    fn check_object(&self, iface: &str, v: &Value, path: &str, ci: bool, errs: &mut Vec<String>) {
        let Some(obj) = v.as_object() else {
            errs.push(format!("{path}: {v} is not an object ({iface})"));
            return;
        };
        let mut actual = iface.to_owned();
        if let Some(t) = obj.get("@odata.type").and_then(Value::as_str) {
            let short = t.trim_start_matches("#microsoft.graph.");
            let mut c = short.chars();
            let name: String = c
                .next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default();
            if self.is_subtype(&name, iface) {
                actual = name;
            } else {
                errs.push(format!("{path}: @odata.type {t} is not a {iface}"));
            }
        }
        const ANNOTATIONS: &[&str] = &[
            "@odata.context",
            "@odata.etag",
            "@odata.type",
            "@odata.nextLink",
            "@odata.deltaLink",
            "@odata.id",
            "@odata.mediaContentType",
        ];
        for (k, val) in obj {
            if k.starts_with('@') {
                if !ANNOTATIONS.contains(&k.as_str()) {
                    errs.push(format!("{path}: unknown annotation {k}"));
                }
                continue;
            }
            match self.prop(&actual, k, ci) {
                Some(ty) => self.check_value(ty, val, &format!("{path}.{k}"), ci, errs),
                None => errs.push(format!("{path}.{k}: not declared on {actual}")),
            }
        }
    }

    fn check_emitted(&self, entity: &str, body: &Value, errs: &mut Vec<String>) {
        if let Some(inner) = entity
            .strip_prefix("Collection(")
            .and_then(|e| e.strip_suffix(')'))
        {
            let Some(obj) = body.as_object() else {
                errs.push(format!("{entity}: not an object"));
                return;
            };
            for (k, v) in obj {
                match k.as_str() {
                    "value" => self.check_value(
                        &format!("{inner}[]"),
                        v,
                        &format!("{entity}.value"),
                        false,
                        errs,
                    ),
                    "@odata.context" | "@odata.nextLink" | "@odata.deltaLink" => {}
                    other => errs.push(format!("{entity}: unexpected collection member {other}")),
                }
            }
        } else if let Some(inner) = entity.strip_prefix("Outlook:") {
            self.check_object(inner, body, entity, true, errs);
        } else {
            self.check_object(entity, body, entity, false, errs);
        }
    }
}

fn graph_types() -> TypeDefs {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/contracts/graph-types.d.ts");
    TypeDefs::parse(&std::fs::read_to_string(path).unwrap())
}

#[test]
fn the_contract_checker_can_fail() {
    let ts = graph_types();
    assert!(ts.interfaces.len() >= 16);
    assert_eq!(ts.aliases["BodyType"], ["text", "html"]);
    assert_eq!(ts.prop("FileAttachment", "id", false), Some("string"));
    let mut errs = vec![];
    ts.check_emitted(
        "Message",
        &json!({"subject": "s", "isRead": true, "body": {"contentType": "html", "content": "x"}}),
        &mut errs,
    );
    assert!(errs.is_empty(), "{errs:?}");
    for (entity, bad) in [
        ("Message", json!({"subjet": "typo"})),
        ("Message", json!({"subject": 1})),
        ("Message", json!({"body": {"contentType": "HTML"}})),
        (
            "Message",
            json!({"toRecipients": [{"emailAddress": {"adress": "a@b"}}]}),
        ),
        ("Message", json!({"@odata.bogus": 1})),
        ("FileAttachment", json!({"isInline": null})),
        (
            "Message",
            json!({"attachments": [{"@odata.type": "#microsoft.graph.fileAttachment", "contentBytez": "x"}]}),
        ),
        (
            "Collection(MailFolder)",
            json!({"value": [{"displayName": "x", "wellKnownName": "inbox"}]}),
        ),
    ] {
        let mut errs = vec![];
        ts.check_emitted(entity, &bad, &mut errs);
        assert!(!errs.is_empty(), "{entity} {bad} passed");
    }
    let mut errs = vec![];
    ts.check_emitted(
        "Outlook:UploadSession",
        &json!({"ExpirationDateTime": "x", "nextExpectedRanges": ["1"]}),
        &mut errs,
    );
    assert!(errs.is_empty(), "{errs:?}");
}

#[tokio::test]
async fn contract_every_emitted_property_is_declared_in_the_graph_types() {
    let fake = fake().await;
    let c = client(&fake);
    let t = token(&fake, FULL);
    let raw = Raw::new(&fake, FULL);

    // Exercise every route that answers JSON.
    c.me(&t).await.unwrap();
    let parent = fake.deliver_inbound(
        b"From: Dan <dan@example.org>\r\nTo: adele@contoso.example\r\nReply-To: team@example.org\r\nSubject: p\r\nMessage-ID: <p@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\nattached\r\n--b--\r\n",
    );
    let mut e = email(&fake, "");
    e.reply = Some(ReplyParent {
        message_id: parent.internet_message_id.clone(),
        references: vec![],
        subject: Some("p".into()),
    });
    e.attachments = vec![
        OutgoingAttachment {
            filename: "big.bin".into(),
            content_type: None,
            content: noise(4 * MIB, 6),
            cid: None,
        },
        OutgoingAttachment {
            filename: "s.txt".into(),
            content_type: None,
            content: b"small".to_vec(),
            cid: None,
        },
    ];
    c.send_mime(
        &t,
        &build(&e).bytes,
        &bcc_of(&e),
        Some(&mid(&parent.internet_message_id)),
    )
    .await
    .unwrap();
    let id = raw.draft().await;
    raw.post(&format!("/me/messages/{id}/attachments"), json!({"@odata.type": "#microsoft.graph.fileAttachment", "name": "a.txt", "contentBytes": "aGk="})).await;
    raw.call(
        reqwest::Method::PATCH,
        &format!("/me/messages/{id}"),
        Some(json!({"isRead": false, "importance": "high"})),
    )
    .await;
    raw.get("/me/messages?$top=1").await;
    raw.get("/me/messages?$select=internetMessageHeaders,subject,from,flag,uniqueBody&$expand=attachments").await;
    raw.get(&format!("/me/messages/{}?$expand=attachments", parent.id))
        .await;
    raw.get(&format!("/me/messages/{}/attachments", parent.id))
        .await;
    raw.get("/me/mailFolders").await;
    raw.get("/me/mailFolders/inbox").await;
    raw.get("/me/mailFolders/sentitems/messages?$select=internetMessageHeaders")
        .await;
    raw.post(
        &format!("/me/messages/{}/createReply", parent.id),
        json!({"comment": "ok"}),
    )
    .await;

    let ts = graph_types();
    let emitted = fake.emitted();
    let mut seen: Vec<&str> = emitted.iter().map(|e| e.entity.as_str()).collect();
    seen.sort();
    seen.dedup();
    for want in [
        "User",
        "Message",
        "Collection(Message)",
        "FileAttachment",
        "Collection(Attachment)",
        "UploadSession",
        "Outlook:UploadSession",
        "MailFolder",
        "Collection(MailFolder)",
    ] {
        assert!(seen.contains(&want), "{want} was never emitted: {seen:?}");
    }
    let mut errs = vec![];
    for e in &emitted {
        ts.check_emitted(&e.entity, &e.body, &mut errs);
    }
    assert!(
        errs.is_empty(),
        "{} problems:\n{}",
        errs.len(),
        errs.join("\n")
    );
}
