//! Gmail accounts in the index, against the in-process Google fake (both backends): the first
//! listing (labels as folders with roles, one message in two labels, the window, nothing
//! announced), history deltas (arrival, read, label change, deletion, mail sent from Gmail's
//! own apps: each announced once), an expired history id (404) → a resync without duplicate
//! events, throttling honoured, and through the running sync loop a nudge that lists new mail
//! and a revoked grant that sets `CREDENTIALS`. The fake's `history.list` is checked against
//! the discovery document.

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use mailroom_engine::sync::imap::SyncReport;
use mailroom_engine::sync::sync_once;
use mailroom_server::Settings;
use mailroom_server::config::{AppConfig, GooglePush};
use mailroom_store::accounts::{self, Account};
use mailroom_store::{Db, events, feed};
use mailroom_testkit::app::{TestApp, spawn_on};
use mailroom_testkit::fakes::Fault;
use mailroom_testkit::fakes::google::{FakeGoogle, GoogleConfig, contract};
use mailroom_testkit::{Backend, TestDb, both_backends, wait};

use crate::feed_sync::{self, by_subject};

const DAY: Duration = Duration::from_secs(86_400);

fn google_app_config(google: &FakeGoogle) -> AppConfig {
    let cfg = google.config();
    AppConfig {
        client_id: cfg.client_id.clone(),
        client_secret: SecretString::from(cfg.client_secret.clone()),
        auth_url: google.auth_url(),
        token_url: google.token_url(),
        api_url: google.base_url(),
    }
}

struct Linked {
    app: TestApp,
    google: FakeGoogle,
    account: Account,
    acc: String,
}

/// A mailroom with a Google app pointing at a fresh fake; `sync_loop` runs the supervisor
/// (else the test drives the passes). `before` fills the mailbox before the account is linked.
async fn linked(
    backend: Backend,
    sync_loop: bool,
    before: impl FnOnce(&FakeGoogle),
) -> Option<Linked> {
    linked_with(backend, sync_loop, false, before).await
}

const PUSH_TOPIC: &str = "projects/mailroom-test/topics/gmail";
const PUSH_TOKEN: &str = "push-token-0123456789abcdefghij";

/// [`linked`], with Gmail push set up (`push`): the topic and token configured, the fake's
/// push subscription posting to mailroom's endpoint.
async fn linked_with(
    backend: Backend,
    sync_loop: bool,
    push: bool,
    before: impl FnOnce(&FakeGoogle),
) -> Option<Linked> {
    let db = TestDb::new(backend).await?;
    let google = FakeGoogle::start(GoogleConfig::default()).await;
    before(&google);
    let app = spawn_on(db, |s: &mut Settings| {
        s.google = Some(google_app_config(&google));
        if sync_loop {
            s.sync = Settings::sync_for_tests();
        }
        if push {
            s.google_push = Some(GooglePush {
                topic: PUSH_TOPIC.into(),
                token: SecretString::from(PUSH_TOKEN),
            });
        }
    })
    .await;
    if push {
        google.set_push_endpoint(
            url::Url::parse(&app.url(&format!("/push/google/{PUSH_TOKEN}"))).unwrap(),
        );
    }
    let t = google.issue_tokens(&["https://www.googleapis.com/auth/gmail.modify"]);
    let (s, r) = app
        .post_json(
            "/api/v1/accounts",
            &json!({"provider": "GOOGLE_OAUTH", "access_token": t.access_token, "refresh_token": t.refresh_token}),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let acc = r["account_id"].as_str().unwrap().to_owned();
    let account = accounts::get_any(&app.store, &acc).await.unwrap().unwrap();
    Some(Linked {
        app,
        google,
        account,
        acc,
    })
}

fn mail(n: &str, from: &str, to: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMessage-ID: <{n}@example.test>\r\n\
         Date: Tue, 1 Dec 2026 12:00:00 +0000\r\n\r\nbody {n}\r\n"
    )
    .into_bytes()
}

fn inbound(n: &str) -> Vec<u8> {
    mail(
        n,
        "ann@example.test",
        "user@gmail.test",
        &format!("about {n}"),
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

async fn initial_sync_lists_labels_as_folders_and_announces_nothing(backend: Backend) {
    let mut ids = vec![];
    let Some(l) = linked(backend, false, |g| {
        let projects = g.create_label("Projects");
        let p = projects.as_str();
        for (n, labels, age) in [
            ("in", vec!["INBOX", "UNREAD", "CATEGORY_PERSONAL"], DAY),
            ("read", vec!["INBOX", "IMPORTANT"], DAY),
            ("sent", vec!["SENT"], DAY),
            ("labelled", vec![p], 2 * DAY),
            ("both", vec!["INBOX", p], DAY),
            ("archived", vec![], DAY),
            ("old", vec!["INBOX"], 60 * DAY),
        ] {
            ids.push(g.insert_message(&inbound(n), &labels, age));
        }
    })
    .await
    else {
        return;
    };
    let r = pass(&l).await;
    assert_eq!(r.indexed, 6, "{r:?}");
    // The messages were fetched through Gmail's batch endpoint, not one request each.
    assert!(l.google.batch_request_count() >= 1, "messages.get batched");
    let items = emails(&l, "").await;
    assert_eq!(
        items.len(),
        6,
        "the 60-day-old message is outside the window"
    );
    assert!(by_subject(&items, "about old").is_none());
    let inbox = by_subject(&items, "about in").unwrap();
    assert_eq!(inbox["role"], "inbox");
    assert_eq!(inbox["folders"], json!(["INBOX"]));
    assert!(
        inbox["read_date"].is_null(),
        "UNREAD is the read flag: {inbox}"
    );
    assert_eq!(
        inbox["thread_id"],
        ids[0].thread_id.as_str(),
        "Gmail's thread id"
    );
    assert_eq!(inbox["provider_id"], ids[0].id.as_str());
    assert!(!by_subject(&items, "about read").unwrap()["read_date"].is_null());
    assert_eq!(by_subject(&items, "about sent").unwrap()["role"], "sent");
    let mut both: Vec<String> = by_subject(&items, "about both").unwrap()["folders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect();
    both.sort();
    assert_eq!(both, ["INBOX", "Projects"], "one message in two labels");
    assert_eq!(
        by_subject(&items, "about archived").unwrap()["folders"],
        json!([])
    );

    let (s, list) = l
        .app
        .get(&format!("/api/v1/folders?account_id={}", l.acc))
        .await;
    assert_eq!(s, 200, "{list}");
    let folders: Vec<(String, String, String, i64)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["provider_id"].as_str().unwrap().to_owned(),
                f["name"].as_str().unwrap().to_owned(),
                f["role"].as_str().unwrap().to_owned(),
                f["nb_mails"].as_i64().unwrap(),
            )
        })
        .collect();
    for want in [
        ("INBOX", "INBOX", "inbox", 3),
        ("SENT", "SENT", "sent", 1),
        ("DRAFT", "DRAFT", "drafts", 0),
        ("TRASH", "TRASH", "trash", 0),
        ("SPAM", "SPAM", "spam", 0),
        ("Label_1", "Projects", "unknown", 2),
    ] {
        let want = (want.0.into(), want.1.into(), want.2.into(), want.3);
        assert!(folders.contains(&want), "{want:?} in {folders:?}");
    }
    assert_eq!(
        folders.len(),
        6,
        "no UNREAD, STARRED, CATEGORY_* folders: {folders:?}"
    );
    let (_, by_label) = l
        .app
        .get(&format!("/api/v1/emails?account_id={}&role=inbox", l.acc))
        .await;
    assert_eq!(by_label["items"].as_array().unwrap().len(), 3);

    assert_eq!(
        mail_events(&l).await,
        vec![],
        "mail already there is not announced"
    );
    let again = pass(&l).await;
    assert_eq!((again.indexed, again.events), (0, 0), "{again:?}");
    assert_eq!(emails(&l, "").await.len(), 6);
}
both_backends!(initial_sync_lists_labels_as_folders_and_announces_nothing);

async fn each_change_in_the_history_is_announced_once(backend: Backend) {
    let Some(l) = linked(backend, false, |g| {
        g.create_label("Projects");
    })
    .await
    else {
        return;
    };
    pass(&l).await;
    let d = l.google.deliver_inbound(&inbound("new"));
    let r = pass(&l).await;
    assert_eq!(r.indexed, 1, "{r:?}");
    let items = emails(&l, "").await;
    let new = by_subject(&items, "about new").expect("listed");
    assert_eq!(new["role"], "inbox");
    let received = events_of(&l, "mail_received").await;
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0]["email_id"], new["id"]);
    assert_eq!(received[0]["provider_id"], d.id.as_str());
    assert_eq!(received[0]["message_id"], "<new@example.test>");
    pass(&l).await;
    assert_eq!(
        mail_events(&l).await.len(),
        1,
        "a second pass announces nothing"
    );

    l.google.modify_labels(&d.id, &[], &["UNREAD"]);
    pass(&l).await;
    let read = events_of(&l, "mail_read").await;
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(read[0]["email_id"], new["id"]);
    let now = by_subject(&emails(&l, "").await, "about new")
        .unwrap()
        .clone();
    assert!(!now["read_date"].is_null(), "{now}");

    l.google.modify_labels(&d.id, &["Label_1"], &["INBOX"]);
    pass(&l).await;
    let moved = events_of(&l, "mail_moved").await;
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(moved[0]["from_folder"], "INBOX");
    assert_eq!(moved[0]["folder"], "Projects");
    assert_eq!(moved[0]["role"], "unknown");
    let now = by_subject(&emails(&l, "").await, "about new")
        .unwrap()
        .clone();
    assert_eq!(now["folders"], json!(["Projects"]));
    assert!(emails(&l, "&role=inbox").await.is_empty());

    l.google.delete_message(&d.id);
    pass(&l).await;
    let deleted = events_of(&l, "mail_deleted").await;
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(deleted[0]["email_id"], new["id"]);
    assert!(emails(&l, "").await.is_empty());

    // Mail sent from Gmail's own apps is `mail_sent`; a draft is not announced.
    l.google.insert_message(
        &mail("out", "user@gmail.test", "bob@example.test", "hi bob"),
        &["SENT"],
        Duration::ZERO,
    );
    l.google.insert_message(
        &mail("draft", "user@gmail.test", "bob@example.test", "draft"),
        &["DRAFT"],
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
        5,
        "each change once: {:?}",
        mail_events(&l).await
    );
    for (kind, e) in mail_events(&l).await {
        mailroom_testkit::openapi_check::assert_stored(&kind, &e);
    }
}
both_backends!(each_change_in_the_history_is_announced_once);

async fn an_expired_history_id_resyncs_without_duplicates(backend: Backend) {
    let Some(l) = linked(backend, false, |g| {
        g.insert_message(&inbound("before"), &["INBOX", "UNREAD"], DAY);
    })
    .await
    else {
        return;
    };
    pass(&l).await;
    let a = l.google.deliver_inbound(&inbound("a"));
    pass(&l).await;
    assert_eq!(events_of(&l, "mail_received").await.len(), 1);

    // While the history is lost: a new message, a read, a deletion.
    let gone = l.google.deliver_inbound(&inbound("gone"));
    pass(&l).await;
    let b = l.google.deliver_inbound(&inbound("b"));
    l.google.modify_labels(&a.id, &[], &["UNREAD"]);
    l.google.delete_message(&gone.id);
    l.google.expire_history();
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
    assert_eq!(b.message_id, "<b@example.test>");

    // The resync stored a fresh cursor: the next pass reads the history again.
    let r = pass(&l).await;
    assert!(r.rebuilt.is_empty(), "{r:?}");
    let count = mail_events(&l).await.len();
    l.google.deliver_inbound(&inbound("c"));
    pass(&l).await;
    assert_eq!(mail_events(&l).await.len(), count + 1);
}
both_backends!(an_expired_history_id_resyncs_without_duplicates);

/// A pass interrupted after its writes but before its cursor (simulated by putting the old
/// cursor back), then a restart on the same database: the same history is read again and
/// nothing is announced twice.
async fn history_read_again_after_a_restart_announces_nothing_twice(backend: Backend) {
    let Some(l) = linked(backend, false, |g| {
        g.create_label("Projects");
    })
    .await
    else {
        return;
    };
    pass(&l).await;
    let (old, _) = feed::cursor(&l.app.store, &l.acc)
        .await
        .unwrap()
        .expect("a cursor");
    let d = l.google.deliver_inbound(&inbound("r"));
    let gone = l.google.deliver_inbound(&inbound("gone"));
    l.google.modify_labels(&d.id, &["Label_1"], &["UNREAD"]);
    l.google.delete_message(&gone.id);
    l.google.insert_message(
        &mail("s", "user@gmail.test", "bob@example.test", "sent"),
        &["SENT"],
        Duration::ZERO,
    );
    pass(&l).await;
    let announced = mail_events(&l).await;
    let kinds: Vec<&str> = announced.iter().map(|(k, _)| k.as_str()).collect();
    // `gone` arrived and left within one history read: never indexed, never announced.
    assert_eq!(kinds, ["mail_received", "mail_sent"], "{announced:?}");
    let before = emails(&l, "").await;

    feed::set_cursor_in(Db::Pool(&l.app.store), &l.acc, &old, 0)
        .await
        .unwrap();
    let Linked {
        app,
        google,
        account,
        acc,
    } = l;
    let db = app.stop().await;
    let app = spawn_on(db, |s: &mut Settings| {
        s.google = Some(google_app_config(&google));
    })
    .await;
    // The restarted app has another workspace key; the account stays in the first workspace.
    let l = Linked {
        app,
        google,
        account,
        acc,
    };
    let r = sync_once(&l.app.engine, &l.account).await.expect("pass");
    assert_eq!(r.indexed, 0, "{r:?}");
    let events = events::of_type(&l.app.store, &l.account.workspace_id, "mail_received")
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let sent = events::of_type(&l.app.store, &l.account.workspace_id, "mail_sent")
        .await
        .unwrap();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (_, now) = feed::cursor(&l.app.store, &l.acc).await.unwrap().unwrap();
    assert!(now > 0, "the cursor is stored again");
    assert_eq!(before.len(), 2);
}
both_backends!(history_read_again_after_a_restart_announces_nothing_twice);

/// More than one chunk of 100 in the listing and in one history read: every message indexed,
/// every arrival announced once, the cursor stored with the last chunk.
async fn listings_and_histories_longer_than_a_chunk(backend: Backend) {
    let Some(l) = linked(backend, false, |g| {
        for i in 0..130 {
            g.insert_message(&inbound(&format!("old{i}")), &["INBOX"], DAY);
        }
    })
    .await
    else {
        return;
    };
    let r = pass(&l).await;
    assert_eq!(r.indexed, 130, "{r:?}");
    for i in 0..105 {
        l.google.deliver_inbound(&inbound(&format!("new{i}")));
    }
    let r = pass(&l).await;
    assert_eq!(r.indexed, 105, "{r:?}");
    assert_eq!(events_of(&l, "mail_received").await.len(), 105);
    let r = pass(&l).await;
    assert_eq!((r.indexed, r.events), (0, 0), "{r:?}");
    let (_, folders) = l
        .app
        .get(&format!("/api/v1/folders?account_id={}", l.acc))
        .await;
    let inbox = folders["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["role"] == "inbox")
        .unwrap()
        .clone();
    assert_eq!(inbox["nb_mails"], 235, "{inbox}");
}
both_backends!(listings_and_histories_longer_than_a_chunk);

/// An attachment of an indexed Gmail message is fetched live from Gmail, as for IMAP.
async fn attachments_are_fetched_from_gmail(backend: Backend) {
    let raw = "From: <ann@example.test>\r\nTo: <user@gmail.test>\r\nSubject: with a file\r\n\
               Message-ID: <att@example.test>\r\nMIME-Version: 1.0\r\n\
               Content-Type: multipart/mixed; boundary=\"o\"\r\n\r\n\
               --o\r\nContent-Type: text/plain\r\n\r\nsee the file\r\n\
               --o\r\nContent-Type: application/pdf; name=\"cv.pdf\"\r\n\
               Content-Disposition: attachment; filename=\"cv.pdf\"\r\n\
               Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--o--\r\n";
    let Some(l) = linked(backend, false, |g| {
        g.insert_message(raw.as_bytes(), &["INBOX"], DAY);
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
    let r = l
        .app
        .request(reqwest::Method::GET, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"%PDF-1.4\n");
    let (s, e) = l.app.get(&format!("{path}x")).await;
    assert_eq!(s, 404, "{e}");
}
both_backends!(attachments_are_fetched_from_gmail);

/// `PUT` (read, a move to a label) and `DELETE` (to the bin) on a Gmail message change it in
/// Gmail, then the index; each is announced once, and the next pass (which reads the same
/// changes in the history) announces nothing more.
async fn api_changes_reach_gmail_and_are_announced_once(backend: Backend) {
    let mut id = String::new();
    let Some(l) = linked(backend, false, |g| {
        g.create_label("Projects");
        id = g
            .insert_message(&inbound("m"), &["INBOX", "UNREAD"], DAY)
            .id;
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
    assert!(
        !l.google
            .labels_of(&id)
            .unwrap()
            .contains(&"UNREAD".to_owned())
    );
    let (s, r) = put(json!({"folders": ["Projects"]})).await;
    assert_eq!(s, 200, "{r}");
    let labels = l.google.labels_of(&id).unwrap();
    assert!(
        labels.contains(&"Label_1".to_owned()) && !labels.contains(&"INBOX".to_owned()),
        "{labels:?}"
    );
    let now = by_subject(&emails(&l, "").await, "about m")
        .unwrap()
        .clone();
    assert_eq!(now["folders"], json!(["Projects"]));
    assert!(!now["read_date"].is_null());
    let (s, r) = l.app.delete(&format!("/api/v1/emails/{ours}")).await;
    assert_eq!(s, 200, "{r}");
    assert!(
        l.google
            .labels_of(&id)
            .unwrap()
            .contains(&"TRASH".to_owned())
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
        "the history of our own changes announces nothing more"
    );
}
both_backends!(api_changes_reach_gmail_and_are_announced_once);

async fn drafts_are_filed_in_gmail_then_sent_by_draft_id(backend: Backend) {
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

    // A Gmail draft (drafts.create, the DRAFT label only), indexed in Drafts under our id.
    let drafts = l.google.drafts();
    assert_eq!(drafts.len(), 1, "{drafts:?}");
    let gmail_id = drafts[0].1.clone();
    assert_eq!(l.google.labels_of(&gmail_id).unwrap(), ["DRAFT"]);
    let (s, got) = l.app.get(&format!("/api/v1/emails/{draft_id}")).await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(
        (&got["subject"], &got["role"], &got["provider_id"]),
        (&json!("draft for Bob"), &json!("drafts"), &json!(gmail_id))
    );
    // The history's messagesAdded for it finds it indexed: nothing new, nothing announced.
    let r = pass(&l).await;
    assert_eq!((r.indexed, r.events), (0, 0), "{r:?}");

    // A draft id that is no draft: 404, nothing sent.
    let (_, list) = l
        .app
        .get(&format!("/api/v1/emails?account_id={}", l.acc))
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    let resp = l
        .app
        .post_json(
            "/api/v1/emails",
            &json!({"account_id": l.acc, "draft_id": "AAAAAAAAAAAAAAAAAAAAAA"}),
        )
        .await;
    mailroom_testkit::app::assert_error(&resp, 404, "resource_not_found");
    assert!(l.google.sent_messages().is_empty());

    // Sent by its id: Gmail sends the draft's content, and the draft is gone (drafts.delete),
    // from the index too; the next pass announces no deletion of it.
    let (s, sent) = l
        .app
        .post_json(
            "/api/v1/emails",
            &json!({"account_id": l.acc, "draft_id": draft_id}),
        )
        .await;
    assert_eq!(s, 201, "{sent}");
    let out = l.google.sent_messages();
    assert_eq!(out.len(), 1);
    let parsed = mailroom_mime::parse_mail(&out[0].raw).unwrap();
    assert_eq!(parsed.subject.as_deref(), Some("draft for Bob"));
    assert_eq!(out[0].recipients, ["bob@example.test"]);
    assert!(String::from_utf8_lossy(&out[0].raw).contains("Written, not sent yet"));
    assert!(l.google.drafts().is_empty());
    assert!(
        l.google.labels_of(&gmail_id).is_none(),
        "the draft message is deleted"
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
both_backends!(drafts_are_filed_in_gmail_then_sent_by_draft_id);

async fn throttling_is_waited_out(backend: Backend) {
    let Some(l) = linked(backend, false, |g| {
        g.insert_message(&inbound("one"), &["INBOX"], DAY);
    })
    .await
    else {
        return;
    };
    // Two 429s asking for 3 s each: honoured, the pass takes at least 6 s (the fallback
    // backoff alone, 0.5 s doubling, would take 1.5 s); then a 403 rateLimitExceeded.
    l.google.inject(
        Fault::Throttle {
            retry_after_secs: 3,
        },
        2,
    );
    l.google.inject(Fault::RateLimit403, 1);
    let before = l.google.gmail_request_count();
    let start = Instant::now();
    let r = pass(&l).await;
    assert_eq!(r.indexed, 1, "{r:?}");
    assert!(
        start.elapsed() >= Duration::from_secs(6),
        "Retry-After honoured: {:?}",
        start.elapsed()
    );
    assert!(l.google.gmail_request_count() - before >= 3 + 4);
    assert_eq!(emails(&l, "").await.len(), 1);
}
both_backends!(throttling_is_waited_out);

async fn the_sync_loop_lists_new_mail_and_stops_on_a_revoked_grant(backend: Backend) {
    let Some(l) = linked(backend, true, |_| {}).await else {
        return;
    };
    wait::until("the first pass", Duration::from_secs(20), || async {
        (status(&l).await == "OK").then_some(())
    })
    .await;
    l.google.deliver_inbound(&inbound("live"));
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

    l.google.revoke();
    l.google.expire_access_tokens();
    l.app.get(&format!("/api/v1/accounts/{}/sync", l.acc)).await;
    feed_sync::until_credentials(&l.app, &l.acc).await;
}
both_backends!(the_sync_loop_lists_new_mail_and_stops_on_a_revoked_grant);

/// With push set up: the loop watches the mailbox (`users.watch` on the topic), a delivered
/// message is listed and announced within 2 s through the push alone (the sweep is 60 s), and
/// a push and a poll that see the same change announce it once. A wrong token is refused.
async fn gmail_push_brings_new_mail_within_two_seconds(backend: Backend) {
    let Some(l) = linked_with(backend, true, true, |_| {}).await else {
        return;
    };
    wait::until("the first pass", Duration::from_secs(20), || async {
        (status(&l).await == "OK").then_some(())
    })
    .await;
    wait::until("the watch", Duration::from_secs(20), || async {
        (l.google.watched_topic().as_deref() == Some(PUSH_TOPIC)).then_some(())
    })
    .await;
    let start = Instant::now();
    let d = l.google.deliver_inbound(&inbound("pushed"));
    wait::until(
        "the pushed mail is announced",
        Duration::from_secs(10),
        || async { (!events_of(&l, "mail_received").await.is_empty()).then_some(()) },
    )
    .await;
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "delivery → event took {took:?}"
    );
    assert!(by_subject(&emails(&l, "").await, "about pushed").is_some());

    l.google.modify_labels(&d.id, &[], &["UNREAD"]);
    wait::until("the pushed read", Duration::from_secs(10), || async {
        (!events_of(&l, "mail_read").await.is_empty()).then_some(())
    })
    .await;
    // A poll over the same history: nothing new.
    let before = l.google.gmail_request_count();
    let (s, _) = l.app.get(&format!("/api/v1/accounts/{}/sync", l.acc)).await;
    assert_eq!(s, 200);
    wait::until("the polled pass", Duration::from_secs(10), || async {
        (l.google.gmail_request_count() >= before + 2).then_some(())
    })
    .await;
    assert_eq!(events_of(&l, "mail_received").await.len(), 1);
    assert_eq!(events_of(&l, "mail_read").await.len(), 1);
    let (ok, failed) = l.google.pushes();
    assert!(ok >= 2 && failed == 0, "{ok} {failed}");

    let r = l
        .app
        .client
        .post(l.app.url("/push/google/not-the-token-0123456789abc"))
        .json(&json!({"message": {"data": ""}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
both_backends!(gmail_push_brings_new_mail_within_two_seconds);

async fn get(g: &FakeGoogle, token: &SecretString, path: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(
            g.base_url()
                .join(&format!("gmail/v1/users/me/{path}"))
                .unwrap(),
        )
        .bearer_auth(token.expose_secret())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn the_fakes_history_matches_the_discovery_document() {
    let g = FakeGoogle::start(GoogleConfig::default()).await;
    let t = SecretString::from(
        g.issue_tokens(&["https://www.googleapis.com/auth/gmail.modify"])
            .access_token,
    );
    let label = g.create_label("Projects");
    let start = g.history_id();
    let d = g.deliver_inbound(&inbound("h"));
    g.modify_labels(&d.id, &[&label], &["UNREAD"]);
    let other = g.insert_message(&inbound("x"), &["INBOX"], Duration::ZERO);
    g.delete_message(&other.id);

    let (s, h) = get(&g, &t, &format!("history?startHistoryId={start}")).await;
    assert_eq!(s, 200, "{h}");
    let problems = contract::check("ListHistoryResponse", &h);
    assert!(problems.is_empty(), "{problems:#?}\n{h:#}");
    let records = h["history"].as_array().unwrap();
    assert_eq!(records.len(), 5, "{h:#}");
    assert_eq!(
        records[0]["messagesAdded"][0]["message"]["id"],
        d.id.as_str()
    );
    assert_eq!(records[1]["labelsAdded"][0]["labelIds"], json!([label]));
    assert_eq!(
        records[2]["labelsRemoved"][0]["labelIds"],
        json!(["UNREAD"])
    );
    assert_eq!(
        records[4]["messagesDeleted"][0]["message"]["id"],
        other.id.as_str()
    );
    assert_eq!(h["historyId"], g.history_id().to_string());
    let ids: Vec<u64> = records
        .iter()
        .map(|r| r["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    // Pages, and the type filter.
    let (_, p1) = get(
        &g,
        &t,
        &format!("history?startHistoryId={start}&maxResults=2"),
    )
    .await;
    assert_eq!(p1["history"].as_array().unwrap().len(), 2);
    let next = p1["nextPageToken"].as_str().unwrap();
    let (_, p2) = get(
        &g,
        &t,
        &format!("history?startHistoryId={start}&maxResults=2&pageToken={next}"),
    )
    .await;
    assert_eq!(p2["history"][0]["id"], records[2]["id"]);
    let (_, added) = get(
        &g,
        &t,
        &format!("history?startHistoryId={start}&historyTypes=messageAdded"),
    )
    .await;
    assert_eq!(added["history"].as_array().unwrap().len(), 2);
    let (s, _) = get(
        &g,
        &t,
        &format!("history?startHistoryId={start}&historyTypes=bogus"),
    )
    .await;
    assert_eq!(s, 400);

    // Nothing after the current id; 404 notFound once the history is dropped.
    let (_, none) = get(
        &g,
        &t,
        &format!("history?startHistoryId={}", g.history_id()),
    )
    .await;
    assert!(none.get("history").is_none(), "{none}");
    g.expire_history();
    let (s, e) = get(&g, &t, &format!("history?startHistoryId={start}")).await;
    assert_eq!(s, 404, "{e}");
    assert_eq!(e["error"]["errors"][0]["reason"], "notFound");

    // messages.modify and messages.trash answer a Message; unknown fields and labels are refused.
    let post = |path: String, body: Value| {
        reqwest::Client::new()
            .post(
                g.base_url()
                    .join(&format!("gmail/v1/users/me/{path}"))
                    .unwrap(),
            )
            .bearer_auth(t.expose_secret())
            .json(&body)
            .send()
    };
    // A read-only grant may not change labels (the fake checks scopes as Google does).
    let readonly = SecretString::from(
        g.issue_tokens(&["https://www.googleapis.com/auth/gmail.readonly"])
            .access_token,
    );
    let denied = reqwest::Client::new()
        .post(
            g.base_url()
                .join(&format!("gmail/v1/users/me/messages/{}/modify", d.id))
                .unwrap(),
        )
        .bearer_auth(readonly.expose_secret())
        .json(&json!({"addLabelIds": ["STARRED"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let r = post(
        format!("messages/{}/modify", d.id),
        json!({"addLabelIds": ["STARRED"], "removeLabelIds": []}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let m: Value = r.json().await.unwrap();
    assert!(contract::check("Message", &m).is_empty(), "{m}");
    assert!(
        m["labelIds"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "STARRED")
    );
    let bad = post(
        format!("messages/{}/modify", d.id),
        json!({"addLabels": ["X"]}),
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 400);
    let bad = post(
        format!("messages/{}/modify", d.id),
        json!({"addLabelIds": ["Nope"]}),
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 400);
    let r = post(format!("messages/{}/trash", d.id), json!({}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m: Value = r.json().await.unwrap();
    assert!(contract::check("Message", &m).is_empty(), "{m}");
    assert!(
        m["labelIds"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "TRASH")
    );
    let gone = post("messages/0123abcd/trash".into(), json!({}))
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);

    // users.watch answers a WatchResponse; a topic of another form is refused.
    let watch = |topic: &str| {
        reqwest::Client::new()
            .post(g.base_url().join("gmail/v1/users/me/watch").unwrap())
            .bearer_auth(t.expose_secret())
            .json(&json!({"topicName": topic}))
            .send()
    };
    let r = watch("projects/p/topics/gmail").await.unwrap();
    assert_eq!(r.status(), 200);
    let w: Value = r.json().await.unwrap();
    let problems = contract::check("WatchResponse", &w);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(
        g.watched_topic().as_deref(),
        Some("projects/p/topics/gmail")
    );
    assert_eq!(watch("gmail").await.unwrap().status(), 400);

    let (_, labels) = get(&g, &t, "labels").await;
    let problems = contract::check("ListLabelsResponse", &labels);
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(
        labels["labels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["id"] == label.as_str() && l["type"] == "user")
    );
}
