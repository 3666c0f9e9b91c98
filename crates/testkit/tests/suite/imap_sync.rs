//! One pass of IMAP folder sync (`engine::sync::imap::sync_account_once`) against the real
//! Dovecot, on both backends: the first pass indexes what is there and announces nothing;
//! later passes index and announce new mail once per message (in INBOX and another folder,
//! `mail_sent` for Sent, nothing for Trash), threads replies, announce a `\Seen` as
//! `mail_read` and an expunge as `mail_deleted`, and a pass run again records nothing.

use futures_util::TryStreamExt as _;
use serde_json::Value;

use mailroom_core::mail::FolderRole;
use mailroom_engine::sync::imap::{SyncReport, sync_account_once};
use mailroom_store::accounts::{self, Account};
use mailroom_store::events;
use mailroom_store::index::{self, MessageFilter, MessageRow};
use mailroom_testkit::app::TestApp;
use mailroom_testkit::{Backend, MailRig, both_backends, spawn_app};

fn message(run: &str, n: u32, in_reply_to: Option<u32>) -> Vec<u8> {
    let reply = in_reply_to
        .map(|p| {
            format!(
                "In-Reply-To: <{run}.{p}@example.test>\r\nReferences: <{run}.{p}@example.test>\r\n"
            )
        })
        .unwrap_or_default();
    format!(
        "From: Sender <s@example.test>\r\nTo: r@example.test\r\nSubject: sync {n}\r\n\
         Message-ID: <{run}.{n}@example.test>\r\n{reply}Date: Tue, 1 Dec 2026 12:00:{n:02} +0000\r\n\r\n\
         body {n}\r\n"
    )
    .into_bytes()
}

async fn pass(app: &TestApp, account: &Account) -> SyncReport {
    let r = sync_account_once(&app.engine, account)
        .await
        .expect("sync pass");
    assert!(r.failed.is_empty(), "{r:?}");
    r
}

async fn events_of(app: &TestApp, kind: &str) -> Vec<Value> {
    events::of_type(&app.store, &app.workspace, kind)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

async fn by_message_id(app: &TestApp, account: &str, mid: &str) -> Option<MessageRow> {
    index::list_messages(
        &app.store,
        &app.workspace,
        &MessageFilter {
            account_id: Some(account),
            message_id: Some(mid),
            ..Default::default()
        },
        None,
        10,
    )
    .await
    .unwrap()
    .pop()
}

async fn folder_count(app: &TestApp, account: &str, name: &str) -> i64 {
    let f = index::get_folder_by_provider_id(&app.store, &app.workspace, account, name)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("folder {name}"));
    index::count_in_folder(&app.store, &f.id).await.unwrap()
}

async fn imap_pass_indexes_and_announces_only_new_changes(backend: Backend) {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let user = rig.create_user();
    let (s, created) = app
        .post_json("/api/v1/accounts", &rig.account_body(&user))
        .await;
    assert_eq!(s, 201, "{created}");
    let acc = created["account_id"].as_str().unwrap().to_owned();
    let account = accounts::get_any(&app.store, &acc).await.unwrap().unwrap();
    let run = mailroom_testkit::token();
    let mid = |n: u32| format!("<{run}.{n}@example.test>");

    let mut s = rig.imap(&user).await;
    s.create("Projects").await.expect("CREATE");
    for (folder, n) in [("INBOX", 1), ("INBOX", 2), ("Projects", 3)] {
        s.append(folder, None, None, &message(&run, n, None))
            .await
            .expect("APPEND");
    }

    // The first pass indexes what is there and announces nothing.
    let r = pass(&app, &account).await;
    assert_eq!(r.indexed, 3, "{r:?}");
    assert_eq!(r.events, 0, "{r:?}");
    assert_eq!(folder_count(&app, &acc, "INBOX").await, 2);
    assert_eq!(folder_count(&app, &acc, "Projects").await, 1);
    let folders = index::list_folders(&app.store, &app.workspace, Some(&acc))
        .await
        .unwrap();
    let inbox = folders.iter().find(|f| f.provider_id == "INBOX").unwrap();
    assert_eq!(inbox.role, FolderRole::Inbox);
    assert_eq!(inbox.nb_mails, 2);
    assert!(inbox.uidvalidity.is_some() && inbox.last_synced_at.is_some());
    let sent = folders.iter().find(|f| f.provider_id == "Sent").unwrap();
    assert_eq!(sent.role, FolderRole::Sent);
    let first = by_message_id(&app, &acc, &mid(1)).await.expect("indexed");
    assert_eq!(first.subject, "sync 1");
    assert!(!first.read);

    // New mail: a reply in INBOX, one in Projects, one in Sent, one in Trash.
    for (folder, n, parent) in [
        ("INBOX", 4, Some(1)),
        ("Projects", 5, None),
        ("Sent", 6, None),
        ("Trash", 7, None),
    ] {
        s.append(folder, None, None, &message(&run, n, parent))
            .await
            .expect("APPEND");
    }
    let r = pass(&app, &account).await;
    assert_eq!(r.indexed, 4, "{r:?}");
    let received = events_of(&app, "mail_received").await;
    assert_eq!(received.len(), 2, "{received:?}");
    let mut announced: Vec<&str> = received
        .iter()
        .map(|e| e["message_id"].as_str().unwrap())
        .collect();
    announced.sort();
    let mut expected = vec![mid(4), mid(5)];
    expected.sort();
    assert_eq!(announced, expected);
    let inbox_event = received
        .iter()
        .find(|e| e["message_id"] == mid(4).as_str())
        .unwrap();
    assert_eq!(inbox_event["role"], "inbox");
    assert_eq!(inbox_event["account_id"], acc.as_str());
    assert_eq!(inbox_event["subject"], "sync 4");
    let sent_events = events_of(&app, "mail_sent").await;
    assert_eq!(sent_events.len(), 1, "{sent_events:?}");
    assert_eq!(sent_events[0]["message_id"], mid(6).as_str());
    let reply = by_message_id(&app, &acc, &mid(4)).await.expect("indexed");
    assert_eq!(reply.thread_id, first.thread_id, "threaded by In-Reply-To");
    assert_eq!(
        inbox_event["email_id"],
        reply.id.as_str(),
        "the event names the indexed message"
    );

    // Again: nothing new, nothing recorded twice.
    let r = pass(&app, &account).await;
    assert_eq!((r.indexed, r.events, r.removed), (0, 0, 0), "{r:?}");
    assert_eq!(events_of(&app, "mail_received").await.len(), 2);
    assert_eq!(events_of(&app, "mail_sent").await.len(), 1);

    // \Seen on message 2 → mail_read.
    s.select("INBOX").await.expect("SELECT");
    let _: Vec<_> = s
        .store("2", "+FLAGS (\\Seen)")
        .await
        .expect("STORE")
        .try_collect()
        .await
        .expect("STORE stream");
    let r = pass(&app, &account).await;
    assert_eq!(r.read_changed, 1, "{r:?}");
    let second = by_message_id(&app, &acc, &mid(2)).await.expect("indexed");
    assert!(second.read);
    let read = events_of(&app, "mail_read").await;
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(read[0]["email_id"], second.id.as_str());

    // Expunge message 1 → out of INBOX, out of the index, mail_deleted.
    let _: Vec<_> = s
        .store("1", "+FLAGS (\\Deleted)")
        .await
        .expect("STORE")
        .try_collect()
        .await
        .expect("STORE stream");
    let _: Vec<_> = s
        .expunge()
        .await
        .expect("EXPUNGE")
        .try_collect()
        .await
        .expect("EXPUNGE stream");
    let _ = s.logout().await;
    let r = pass(&app, &account).await;
    assert_eq!((r.removed, r.deleted), (1, 1), "{r:?}");
    assert_eq!(folder_count(&app, &acc, "INBOX").await, 2);
    assert!(by_message_id(&app, &acc, &mid(1)).await.is_none());
    let deleted = events_of(&app, "mail_deleted").await;
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(deleted[0]["email_id"], first.id.as_str());
    assert_eq!(deleted[0]["message_id"], mid(1).as_str());

    // And once more: quiet.
    let r = pass(&app, &account).await;
    assert_eq!((r.indexed, r.events, r.removed), (0, 0, 0), "{r:?}");
    for (kind, n) in [
        ("mail_received", 2),
        ("mail_sent", 1),
        ("mail_read", 1),
        ("mail_deleted", 1),
    ] {
        assert_eq!(events_of(&app, kind).await.len(), n, "{kind}");
    }
}
both_backends!(imap_pass_indexes_and_announces_only_new_changes);
