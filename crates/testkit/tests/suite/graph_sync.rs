//! Outlook (Microsoft Graph) accounts in the index, against the in-process Microsoft fake
//! (both backends): the first listing (mail folders with their well-known roles, child folders
//! by path, threads from `conversationId`, the window, nothing announced), per-folder delta
//! rounds (arrival, read, move, deletion, mail sent from Outlook's own apps: each announced
//! once; a move read from two folders' deltas is one `mail_moved` thanks to immutable ids), an
//! expired `deltaLink` (410 `syncStateNotFound`) → a resync without duplicate events, changes
//! and attachments through the API, throttling honoured (`Retry-After`), and through the
//! running sync loop: a nudge that lists new mail, a revoked grant that sets `CREDENTIALS`
//! with its event, and a reconnect that resumes from the stored delta links. Outlook push
//! (Graph change notifications) has its own suite, `graph_push`.

use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::{Value, json};

use mailroom_engine::sync::imap::SyncReport;
use mailroom_engine::sync::sync_once;
use mailroom_server::Settings;
use mailroom_server::config::AppConfig;
use mailroom_store::accounts::{self, Account};
use mailroom_testkit::app::{TestApp, spawn_on};
use mailroom_testkit::fakes::Fault;
use mailroom_testkit::fakes::microsoft::{FakeMicrosoft, MicrosoftConfig};
use mailroom_testkit::{Backend, TestDb, both_backends, wait};

use crate::feed_sync::{self, by_subject};

const DAY: Duration = Duration::from_secs(86_400);

const SCOPES: &[&str] = &[
    "offline_access",
    "https://graph.microsoft.com/User.Read",
    "https://graph.microsoft.com/Mail.ReadWrite",
    "https://graph.microsoft.com/Mail.Send",
];

pub(crate) fn microsoft_app_config(ms: &FakeMicrosoft) -> AppConfig {
    let cfg = ms.config();
    AppConfig {
        client_id: cfg.client_id.clone(),
        client_secret: SecretString::from(cfg.client_secret.clone()),
        auth_url: ms.auth_url(),
        token_url: ms.token_url(),
        api_url: ms.graph_url(),
    }
}

struct Linked {
    app: TestApp,
    ms: FakeMicrosoft,
    account: Account,
    acc: String,
}

/// A mailroom with a Microsoft app pointing at a fresh fake and an Outlook account linked;
/// `sync_loop` runs the supervisor (else the test drives the passes). `before` fills the
/// mailbox before the account is linked.
async fn linked(
    backend: Backend,
    sync_loop: bool,
    before: impl FnOnce(&FakeMicrosoft),
) -> Option<Linked> {
    let db = TestDb::new(backend).await?;
    let ms = FakeMicrosoft::start(MicrosoftConfig::default()).await;
    before(&ms);
    let app = spawn_on(db, |s: &mut Settings| {
        s.microsoft = Some(microsoft_app_config(&ms));
        if sync_loop {
            s.sync = Settings::sync_for_tests();
        }
    })
    .await;
    let (s, r) = app.post_json("/api/v1/accounts", &outlook_grant(&ms)).await;
    assert_eq!(s, 201, "{r}");
    let acc = r["account_id"].as_str().unwrap().to_owned();
    let account = accounts::get_any(&app.store, &acc).await.unwrap().unwrap();
    Some(Linked {
        app,
        ms,
        account,
        acc,
    })
}

/// A `POST /accounts` body linking (or reconnecting) the fake's mailbox with a fresh grant.
pub(crate) fn outlook_grant(ms: &FakeMicrosoft) -> Value {
    let t = ms.mint_tokens(SCOPES);
    json!({"provider": "OUTLOOK", "access_token": t.access_token, "refresh_token": t.refresh_token})
}

fn mail(n: &str, from: &str, to: &str, subject: &str, extra: &str) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMessage-ID: <{n}@example.test>\r\n\
         {extra}Date: Tue, 1 Dec 2026 12:00:00 +0000\r\n\r\nbody {n}\r\n"
    )
    .into_bytes()
}

pub(crate) fn inbound(n: &str) -> Vec<u8> {
    mail(
        n,
        "ann@example.test",
        "user@contoso.test",
        &format!("about {n}"),
        "",
    )
}

async fn pass(l: &Linked) -> SyncReport {
    sync_once(&l.app.engine, &l.account)
        .await
        .expect("sync pass")
}

async fn events_of(l: &Linked, kind: &str) -> Vec<Value> {
    feed_sync::events_of(&l.app, kind).await
}

async fn mail_events(l: &Linked) -> Vec<(String, Value)> {
    feed_sync::mail_events(&l.app).await
}

async fn emails(l: &Linked, extra: &str) -> Vec<Value> {
    feed_sync::emails(&l.app, &l.acc, extra).await
}

async fn status(l: &Linked) -> String {
    feed_sync::status(&l.app, &l.acc).await
}

async fn initial_sync_lists_folders_with_roles_and_announces_nothing(backend: Backend) {
    let mut ids = vec![];
    let Some(l) = linked(backend, false, |ms| {
        let projects = ms.create_folder("Projects", "inbox");
        for (n, folder, age, extra) in [
            ("in", "inbox", DAY, ""),
            (
                "reply",
                "inbox",
                DAY / 2,
                "In-Reply-To: <in@example.test>\r\nReferences: <in@example.test>\r\n",
            ),
            ("archived", "archive", 2 * DAY, ""),
            ("junk", "junkemail", DAY, ""),
            ("binned", "deleteditems", DAY, ""),
            ("project", projects.as_str(), DAY, ""),
            ("old", "inbox", 60 * DAY, ""),
            ("waiting", "outbox", DAY, ""),
        ] {
            let raw = mail(
                n,
                "ann@example.test",
                "user@contoso.test",
                &format!("about {n}"),
                extra,
            );
            ids.push(ms.insert_message(&raw, folder, age));
        }
        ids.push(ms.insert_message(
            &mail(
                "sent",
                "user@contoso.test",
                "bob@example.test",
                "to bob",
                "",
            ),
            "sentitems",
            DAY,
        ));
        ms.set_read(&ids[0].id, true);
    })
    .await
    else {
        return;
    };
    let r = pass(&l).await;
    assert_eq!(r.indexed, 7, "{r:?}");
    let items = emails(&l, "").await;
    let subjects: Vec<&str> = items
        .iter()
        .map(|i| i["subject"].as_str().unwrap())
        .collect();
    assert_eq!(items.len(), 7, "{subjects:?}");
    assert!(
        by_subject(&items, "about old").is_none(),
        "outside the window"
    );
    assert!(
        by_subject(&items, "about waiting").is_none(),
        "the Outbox is not synced"
    );
    for (subject, role, folder) in [
        ("about in", "inbox", "Inbox"),
        ("about archived", "archive", "Archive"),
        ("about junk", "spam", "Junk Email"),
        ("about binned", "trash", "Deleted Items"),
        ("about project", "unknown", "Inbox/Projects"),
        ("to bob", "sent", "Sent Items"),
    ] {
        let item = by_subject(&items, subject).unwrap();
        assert_eq!(item["role"], role, "{item}");
        assert_eq!(item["folders"], json!([folder]), "{item}");
    }
    let first = by_subject(&items, "about in").unwrap();
    let reply = by_subject(&items, "about reply").unwrap();
    assert!(!first["read_date"].is_null(), "{first}");
    assert!(reply["read_date"].is_null(), "{reply}");
    assert_eq!(
        first["thread_id"], reply["thread_id"],
        "one conversation, one thread"
    );
    assert_ne!(
        first["thread_id"],
        by_subject(&items, "about junk").unwrap()["thread_id"]
    );
    // Provider ids are the immutable ids.
    assert_eq!(first["provider_id"], ids[0].immutable_id.as_str());

    let (s, folders) = l
        .app
        .get(&format!("/api/v1/folders?account_id={}", l.acc))
        .await;
    assert_eq!(s, 200, "{folders}");
    let names: Vec<&str> = folders["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"Inbox/Projects"), "{names:?}");
    assert!(!names.contains(&"Outbox"), "{names:?}");

    assert!(
        mail_events(&l).await.is_empty(),
        "a first listing announces nothing"
    );
    let r = pass(&l).await;
    assert_eq!(r.indexed, 0, "{r:?}");
    assert!(r.rebuilt.is_empty(), "the delta links were stored: {r:?}");
    assert!(mail_events(&l).await.is_empty());
}
both_backends!(initial_sync_lists_folders_with_roles_and_announces_nothing);

async fn each_change_in_the_deltas_is_announced_once(backend: Backend) {
    let mut projects = String::new();
    let Some(l) = linked(backend, false, |ms| {
        projects = ms.create_folder("Projects", "msgfolderroot");
    })
    .await
    else {
        return;
    };
    pass(&l).await;
    let d = l.ms.deliver_inbound(&inbound("new"));
    let r = pass(&l).await;
    assert_eq!(r.indexed, 1, "{r:?}");
    let items = emails(&l, "").await;
    let new = by_subject(&items, "about new").expect("listed");
    assert_eq!(new["role"], "inbox");
    let received = events_of(&l, "mail_received").await;
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0]["email_id"], new["id"]);
    assert_eq!(received[0]["provider_id"], d.immutable_id.as_str());
    assert_eq!(received[0]["message_id"], "<new@example.test>");
    pass(&l).await;
    assert_eq!(
        mail_events(&l).await.len(),
        1,
        "a second pass announces nothing"
    );

    l.ms.set_read(&d.id, true);
    pass(&l).await;
    let read = events_of(&l, "mail_read").await;
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(read[0]["email_id"], new["id"]);

    // A move: out of Inbox's delta, into Projects' (a new default id, the same immutable id).
    let moved_id = l.ms.move_message(&d.id, &projects);
    assert_ne!(moved_id, d.id);
    let r = pass(&l).await;
    assert_eq!(r.indexed, 0, "{r:?}");
    assert_eq!(r.deleted, 0, "a move is not a deletion: {r:?}");
    let moved = events_of(&l, "mail_moved").await;
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(moved[0]["email_id"], new["id"], "the same message");
    assert_eq!(moved[0]["from_folder"], "Inbox");
    assert_eq!(moved[0]["folder"], "Projects");
    assert!(events_of(&l, "mail_received").await.len() == 1);
    let now = by_subject(&emails(&l, "").await, "about new")
        .unwrap()
        .clone();
    assert_eq!(now["folders"], json!(["Projects"]));
    assert_eq!(now["id"], new["id"]);
    assert!(emails(&l, "&role=inbox").await.is_empty());

    // Outlook's Delete: to Deleted Items (a move); then emptied (gone for good).
    l.ms.move_message(&d.immutable_id, "deleteditems");
    pass(&l).await;
    let moved = events_of(&l, "mail_moved").await;
    assert_eq!(moved.len(), 2, "{moved:?}");
    assert_eq!(moved[1]["role"], "trash");
    l.ms.delete_message(&d.immutable_id);
    pass(&l).await;
    let deleted = events_of(&l, "mail_deleted").await;
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(deleted[0]["email_id"], new["id"]);
    assert!(emails(&l, "").await.is_empty());

    // Mail sent from Outlook's own apps is `mail_sent`; a draft is not announced.
    l.ms.insert_message(
        &mail("out", "user@contoso.test", "bob@example.test", "hi bob", ""),
        "sentitems",
        Duration::ZERO,
    );
    l.ms.insert_message(
        &mail(
            "draft",
            "user@contoso.test",
            "bob@example.test",
            "draft",
            "",
        ),
        "drafts",
        Duration::ZERO,
    );
    pass(&l).await;
    let sent = events_of(&l, "mail_sent").await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["role"], "sent");
    assert_eq!(
        emails(&l, "").await.len(),
        2,
        "the draft is indexed, not announced"
    );

    pass(&l).await;
    assert_eq!(
        mail_events(&l).await.len(),
        6,
        "each change once: {:?}",
        mail_events(&l).await
    );
    for (kind, e) in mail_events(&l).await {
        mailroom_testkit::openapi_check::assert_stored(&kind, &e);
    }
}
both_backends!(each_change_in_the_deltas_is_announced_once);

async fn an_expired_delta_link_resyncs_without_duplicates(backend: Backend) {
    let Some(l) = linked(backend, false, |ms| {
        ms.insert_message(&inbound("before"), "inbox", DAY);
    })
    .await
    else {
        return;
    };
    pass(&l).await;
    let a = l.ms.deliver_inbound(&inbound("a"));
    pass(&l).await;
    assert_eq!(events_of(&l, "mail_received").await.len(), 1);

    // While the sync state is lost: a new message, a read, a deletion.
    let gone = l.ms.deliver_inbound(&inbound("gone"));
    pass(&l).await;
    let b = l.ms.deliver_inbound(&inbound("b"));
    l.ms.set_read(&a.id, true);
    l.ms.delete_message(&gone.id);
    l.ms.expire_delta_links();
    let r = pass(&l).await;
    assert_eq!(r.rebuilt, ["*"], "a resync: {r:?}");

    let items = emails(&l, "").await;
    let subjects: Vec<&str> = items
        .iter()
        .map(|i| i["subject"].as_str().unwrap())
        .collect();
    assert_eq!(items.len(), 3, "{subjects:?}");
    assert!(by_subject(&items, "about gone").is_none());
    assert!(!by_subject(&items, "about a").unwrap()["read_date"].is_null());
    let received: Vec<String> = events_of(&l, "mail_received")
        .await
        .iter()
        .map(|e| e["message_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        received,
        [
            "<a@example.test>",
            "<gone@example.test>",
            "<b@example.test>"
        ],
        "new mail found by the resync is announced once; known mail is not again"
    );
    assert!(
        events_of(&l, "mail_read").await.is_empty(),
        "known mail: quiet"
    );
    assert_eq!(b.internet_message_id, "<b@example.test>");

    // The resync stored fresh delta links: the next pass reads deltas again.
    let r = pass(&l).await;
    assert!(r.rebuilt.is_empty(), "{r:?}");
    let count = mail_events(&l).await.len();
    l.ms.deliver_inbound(&inbound("c"));
    pass(&l).await;
    assert_eq!(mail_events(&l).await.len(), count + 1);
}
both_backends!(an_expired_delta_link_resyncs_without_duplicates);

/// An attachment of an indexed Outlook message is fetched live from Graph.
async fn attachments_are_fetched_from_graph(backend: Backend) {
    let raw = "From: <ann@example.test>\r\nTo: <user@contoso.test>\r\nSubject: with a file\r\n\
               Message-ID: <att@example.test>\r\nMIME-Version: 1.0\r\n\
               Content-Type: multipart/mixed; boundary=\"o\"\r\n\r\n\
               --o\r\nContent-Type: text/plain\r\n\r\nsee the file\r\n\
               --o\r\nContent-Type: application/pdf; name=\"cv.pdf\"\r\n\
               Content-Disposition: attachment; filename=\"cv.pdf\"\r\n\
               Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--o--\r\n";
    let Some(l) = linked(backend, false, |ms| {
        ms.insert_message(raw.as_bytes(), "inbox", DAY);
    })
    .await
    else {
        return;
    };
    pass(&l).await;
    let items = emails(&l, "").await;
    let item = by_subject(&items, "with a file").expect("indexed");
    let att = &item["attachments"][0];
    assert_eq!(att["name"], "cv.pdf", "{item}");
    let path = format!(
        "/api/v1/emails/{}/attachments/{}",
        item["id"].as_str().unwrap(),
        att["id"].as_str().unwrap()
    );
    let before = l.ms.graph_request_count();
    let r = l
        .app
        .request(reqwest::Method::GET, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"%PDF-1.4\n");
    assert!(l.ms.graph_request_count() > before, "fetched from Graph");
    let (s, e) = l.app.get(&format!("{path}x")).await;
    assert_eq!(s, 404, "{e}");
}
both_backends!(attachments_are_fetched_from_graph);

/// `PUT` (read → `isRead`, a move → Graph `move`) and `DELETE` (to Deleted Items) on an
/// Outlook message change it in Graph, then the index; each is announced once, and the next
/// pass (which reads the same changes in the deltas) announces nothing more.
async fn api_changes_reach_graph_and_are_announced_once(backend: Backend) {
    let mut id = String::new();
    let mut projects = String::new();
    let Some(l) = linked(backend, false, |ms| {
        projects = ms.create_folder("Projects", "msgfolderroot");
        id = ms.insert_message(&inbound("m"), "inbox", DAY).immutable_id;
    })
    .await
    else {
        return;
    };
    pass(&l).await;
    let ours = by_subject(&emails(&l, "").await, "about m").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let put = |body: Value| {
        let req = l
            .app
            .request(reqwest::Method::PUT, &format!("/api/v1/emails/{ours}"))
            .json(&body);
        l.app.call(req)
    };
    let (s, r) = put(json!({"unread": false})).await;
    assert_eq!(s, 200, "{r}");
    assert!(l.ms.message_state(&id).unwrap().1, "read in Outlook");
    let (s, r) = put(json!({"folders": ["Projects"]})).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(l.ms.message_state(&id).unwrap().0, projects);
    let now = by_subject(&emails(&l, "").await, "about m")
        .unwrap()
        .clone();
    assert_eq!(now["folders"], json!(["Projects"]));
    assert!(!now["read_date"].is_null());
    let (s, r) = l.app.delete(&format!("/api/v1/emails/{ours}")).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        l.ms.message_state(&id).unwrap().0,
        l.ms.folder_id("deleteditems").unwrap(),
        "in Deleted Items, not gone"
    );
    assert_eq!(
        by_subject(&emails(&l, "").await, "about m").unwrap()["role"],
        "trash"
    );
    let kinds = |e: Vec<(String, Value)>| e.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        kinds(mail_events(&l).await),
        ["mail_read", "mail_moved", "mail_deleted"]
    );
    pass(&l).await;
    assert_eq!(
        kinds(mail_events(&l).await),
        ["mail_read", "mail_moved", "mail_deleted"],
        "the deltas of our own changes announce nothing more"
    );
    // A message Outlook no longer has: 404, not a 500.
    l.ms.delete_message(&id);
    let (s, r) = put(json!({"unread": true})).await;
    assert_eq!(s, 404, "{r}");
}
both_backends!(api_changes_reach_graph_and_are_announced_once);

/// `POST /drafts` on Outlook: a draft filed in Drafts from the MIME (`POST /me/messages`),
/// indexed under our id without an announcement; sent by its `draft_id` (`sendMail`), then
/// gone for good (`permanentDelete`), from the index too, and no deletion announced.
async fn drafts_are_filed_in_outlook_then_sent_by_draft_id(backend: Backend) {
    let Some(l) = linked(backend, false, |_| {}).await else {
        return;
    };
    pass(&l).await;
    let (s, body) = l
        .app
        .post_json(
            "/api/v1/drafts",
            &json!({
                "account_id": l.acc,
                "to": [{"identifier": "bob@example.test", "display_name": "Bob"}],
                "subject": "draft for Bob",
                "body": "<p>Written, not sent yet</p>",
            }),
        )
        .await;
    assert_eq!(
        (s, &body["object"]),
        (200, &json!("DraftCreated")),
        "{body}"
    );
    let draft_id = body["draft_id"].as_str().unwrap().to_owned();
    let drafts = l.ms.messages("drafts");
    assert_eq!(drafts.len(), 1, "{drafts:?}");
    let outlook_id = drafts[0]["id"].as_str().unwrap().to_owned();
    let (s, got) = l.app.get(&format!("/api/v1/emails/{draft_id}")).await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(
        (&got["subject"], &got["role"]),
        (&json!("draft for Bob"), &json!("drafts"))
    );
    // Its delta finds it indexed: nothing new, nothing announced.
    let r = pass(&l).await;
    assert_eq!((r.indexed, r.events), (0, 0), "{r:?}");

    // A draft id that is no draft: 404, nothing sent.
    let resp = l
        .app
        .post_json(
            "/api/v1/emails",
            &json!({"account_id": l.acc, "draft_id": "AAAAAAAAAAAAAAAAAAAAAA"}),
        )
        .await;
    mailroom_testkit::app::assert_error(&resp, 404, "resource_not_found");
    assert!(l.ms.sent_items().is_empty());

    let (s, sent) = l
        .app
        .post_json(
            "/api/v1/emails",
            &json!({"account_id": l.acc, "draft_id": draft_id}),
        )
        .await;
    assert_eq!(s, 201, "{sent}");
    let out = l.ms.sent_items();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].subject, "draft for Bob");
    assert_eq!(out[0].to, ["bob@example.test"]);
    assert!(l.ms.messages("drafts").is_empty(), "the draft is gone");
    assert!(
        l.ms.message_state(&outlook_id).is_none(),
        "gone for good, not in Deleted Items"
    );
    let (s, _) = l.app.get(&format!("/api/v1/emails/{draft_id}")).await;
    assert_eq!(s, 404);
    pass(&l).await;
    let kinds: Vec<String> = mail_events(&l).await.into_iter().map(|(k, _)| k).collect();
    assert!(
        !kinds.iter().any(|k| k == "mail_deleted"),
        "a sent draft is not announced as deleted: {kinds:?}"
    );
}
both_backends!(drafts_are_filed_in_outlook_then_sent_by_draft_id);

async fn throttling_is_waited_out(backend: Backend) {
    let Some(l) = linked(backend, false, |ms| {
        ms.insert_message(&inbound("one"), "inbox", DAY);
    })
    .await
    else {
        return;
    };
    // Two 429s asking for 3 s each: honoured, the pass takes at least 6 s (the fallback
    // backoff alone, 0.5 s doubling, would take 1.5 s).
    l.ms.inject(
        Fault::Throttle {
            retry_after_secs: 3,
        },
        2,
    );
    let start = Instant::now();
    let r = pass(&l).await;
    assert_eq!(r.indexed, 1, "{r:?}");
    assert!(
        start.elapsed() >= Duration::from_secs(6),
        "Retry-After honoured: {:?}",
        start.elapsed()
    );
    assert_eq!(emails(&l, "").await.len(), 1);
    // Never more than Outlook's 4 concurrent requests per mailbox.
    l.ms.set_concurrency_limit(Some(4));
    for i in 0..12 {
        l.ms.deliver_inbound(&inbound(&format!("burst{i}")));
    }
    pass(&l).await;
    assert_eq!(l.ms.throttled_count(), 0);
    assert_eq!(emails(&l, "").await.len(), 13);
}
both_backends!(throttling_is_waited_out);

/// The running loop: a nudge lists new mail; a revoked grant stops the sync with
/// `CREDENTIALS` and its `account_status` event; a reconnect resumes from the stored delta
/// links (no new initial round) and announces what arrived meanwhile once.
async fn the_sync_loop_stops_on_a_revoked_grant_and_a_reconnect_resumes(backend: Backend) {
    let Some(l) = linked(backend, true, |_| {}).await else {
        return;
    };
    wait::until("the first pass", Duration::from_secs(20), || async {
        (status(&l).await == "OK").then_some(())
    })
    .await;
    l.ms.deliver_inbound(&inbound("live"));
    let (s, _) = l.app.get(&format!("/api/v1/accounts/{}/sync", l.acc)).await;
    assert_eq!(s, 200);
    wait::until(
        "the delivered mail is listed",
        Duration::from_secs(20),
        || async {
            let items = emails(&l, "").await;
            by_subject(&items, "about live").map(|_| ())
        },
    )
    .await;
    assert_eq!(events_of(&l, "mail_received").await.len(), 1);

    l.ms.revoke();
    l.ms.expire_access_tokens();
    l.app.get(&format!("/api/v1/accounts/{}/sync", l.acc)).await;
    feed_sync::until_credentials(&l.app, &l.acc).await;

    // Mail arrives while the account waits for its user; then the user reconnects.
    l.ms.deliver_inbound(&inbound("meanwhile"));
    let requests_before = l.ms.request_log().len();
    let t = l.ms.mint_tokens(SCOPES);
    let (s, r) = l
        .app
        .post_json(
            &format!("/api/v1/accounts/{}", l.acc),
            &json!({"provider": "OUTLOOK", "access_token": t.access_token, "refresh_token": t.refresh_token}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    wait::until(
        "the mail of the meantime is listed",
        Duration::from_secs(20),
        || async {
            let items = emails(&l, "").await;
            by_subject(&items, "about meanwhile").map(|_| ())
        },
    )
    .await;
    assert_eq!(status(&l).await, "OK");
    assert_eq!(events_of(&l, "mail_received").await.len(), 2);
    let fresh_rounds: Vec<_> = l.ms.request_log()[requests_before..]
        .iter()
        .filter(|r| {
            r.path.ends_with("/messages/delta")
                && !r.query.as_deref().unwrap_or("").contains("token=")
        })
        .cloned()
        .collect();
    assert!(
        fresh_rounds.is_empty(),
        "resumed from the stored delta links: {fresh_rounds:?}"
    );
}
both_backends!(the_sync_loop_stops_on_a_revoked_grant_and_a_reconnect_resumes);

// ---------------------------------------------------------------- the fake's subscriptions

/// A notification endpoint on loopback: answers Graph's validation (echoing the token as
/// `text/plain` when `echo`), keeps every notification body.
async fn receiver(echo: bool) -> (url::Url, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use axum::extract::{Query, State};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    type Seen = Arc<Mutex<Vec<Value>>>;
    async fn hook(
        State((seen, echo)): State<(Seen, bool)>,
        Query(q): Query<HashMap<String, String>>,
        body: axum::body::Bytes,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        if let Some(t) = q.get("validationToken") {
            let t = if echo { t.clone() } else { "nope".into() };
            return ([("content-type", "text/plain")], t).into_response();
        }
        seen.lock()
            .unwrap()
            .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
        axum::http::StatusCode::ACCEPTED.into_response()
    }
    let seen: Seen = Arc::new(Mutex::new(vec![]));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state((seen.clone(), echo));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("http://{}/hook", l.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, seen)
}

fn in_minutes(m: i64) -> String {
    mailroom_core::time_fmt::format_datetime(
        time::OffsetDateTime::now_utc() + time::Duration::minutes(m),
    )
}

/// The fake's subscription resource behaves as Graph's: the validation handshake (refused when
/// the endpoint does not echo the token), the 10,080-minute limit, notifications with the
/// `clientState` and immutable ids, renewal, lifecycle events, deletion, throttling.
#[tokio::test]
async fn the_fakes_subscriptions_validate_notify_and_expire() {
    let ms = FakeMicrosoft::start(MicrosoftConfig::default()).await;
    let token = ms.mint_tokens(SCOPES).access_token;
    let http = reqwest::Client::new();
    let subs = ms.graph_url().join("v1.0/subscriptions").unwrap();
    let call = |m: reqwest::Method, u: url::Url, body: Option<Value>| {
        let mut rb = http
            .request(m, u)
            .bearer_auth(&token)
            .header("Prefer", "IdType=\"ImmutableId\"");
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        async move {
            let r = rb.send().await.unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (url, seen) = receiver(true).await;
    let (life_url, life_seen) = receiver(true).await;
    let body = |url: &url::Url, minutes: i64| {
        json!({
            "changeType": "created,updated,deleted",
            "notificationUrl": url.as_str(),
            "lifecycleNotificationUrl": life_url.as_str(),
            "resource": "me/messages",
            "expirationDateTime": in_minutes(minutes),
            "clientState": "s3cret",
        })
    };
    let (s, e) = call(
        reqwest::Method::POST,
        subs.clone(),
        Some(body(&url, 10_081)),
    )
    .await;
    assert_eq!(s, 400, "past 10,080 minutes: {e}");
    let (deaf, _) = receiver(false).await;
    let (s, e) = call(reqwest::Method::POST, subs.clone(), Some(body(&deaf, 60))).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("ValidationError"))
    );
    let mut remote = body(&url, 60);
    remote["notificationUrl"] = json!("http://example.com/hook");
    let (s, _) = call(reqwest::Method::POST, subs.clone(), Some(remote)).await;
    assert_eq!(s, 400, "plain HTTP off loopback");
    assert!(ms.subscriptions().is_empty());

    let (s, sub) = call(
        reqwest::Method::POST,
        subs.clone(),
        Some(body(&url, 10_000)),
    )
    .await;
    assert_eq!(s, 201, "{sub}");
    let id = sub["id"].as_str().unwrap().to_owned();
    assert_eq!(sub["clientState"], "s3cret");

    let d = ms.deliver_inbound(&inbound("pushed"));
    wait::until("the notification", Duration::from_secs(10), || async {
        (!seen.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    let n = seen.lock().unwrap()[0]["value"][0].clone();
    assert_eq!(n["subscriptionId"], id.as_str());
    assert_eq!(n["clientState"], "s3cret");
    assert_eq!(n["changeType"], "created");
    assert_eq!(n["resourceData"]["id"], d.immutable_id.as_str());
    assert_eq!(n["tenantId"], ms.config().tenant_id.as_str());

    let sub_url = subs.join(&format!("subscriptions/{id}")).unwrap();
    let (s, renewed) = call(
        reqwest::Method::PATCH,
        sub_url.clone(),
        Some(json!({"expirationDateTime": in_minutes(5_000)})),
    )
    .await;
    assert_eq!(s, 200, "{renewed}");

    ms.inject(
        Fault::Throttle {
            retry_after_secs: 2,
        },
        1,
    );
    let r = http
        .get(sub_url.clone())
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "2");

    assert_eq!(ms.lifecycle("subscriptionRemoved"), 1);
    wait::until("the lifecycle event", Duration::from_secs(10), || async {
        (!life_seen.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    assert_eq!(
        life_seen.lock().unwrap()[0]["value"][0]["lifecycleEvent"],
        "subscriptionRemoved"
    );
    let (s, _) = call(reqwest::Method::GET, sub_url.clone(), None).await;
    assert_eq!(s, 404, "removed");
    let (s, _) = call(reqwest::Method::DELETE, sub_url, None).await;
    assert_eq!(s, 404);
    let (ok, failed) = ms.notifications();
    assert!(ok >= 2 && failed == 0, "{ok} {failed}");
}
