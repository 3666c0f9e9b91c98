//! The mail index in the store, on both backends: idempotent upserts, a message in several
//! folders, every list filter, stable cursor paging, compressed bodies, cascades.

use mailroom_core::cursor::Position;
use mailroom_core::email::Attendee;
use mailroom_core::mail::{AttachmentMeta, FolderRole, FolderSyncStatus, Header, MailOrigin};
use mailroom_store::index::{
    self, FolderRow, FolderSyncState, MessageFilter, NewFolder, NewMessage, Unlinked, Upserted,
};
use mailroom_store::{Backend, MasterKey, Store, Vault, accounts, with_pool, workspaces};
use mailroom_testkit::{TestDb, both_backends};
use sqlx::Row;

struct Fx {
    _db: TestDb,
    store: Store,
    vault: Vault,
}

async fn open(backend: Backend) -> Option<Fx> {
    let db = TestDb::new(backend).await?;
    let store = Store::connect(&db.url).await.expect("connect");
    store.migrate().await.expect("migrate");
    workspaces::ensure(&store, "w", 0).await.unwrap();
    workspaces::ensure(&store, "w2", 0).await.unwrap();
    let (master, _) = MasterKey::generate();
    let vault = Vault::open(store.clone(), &master, 0).await.unwrap();
    Some(Fx {
        _db: db,
        store,
        vault,
    })
}

impl Fx {
    async fn account(&self, ws: &str) -> String {
        crate::store::seed_account(&self.store, &self.vault, ws, "pw", 0).await
    }

    async fn folder(&self, acc: &str, provider_id: &str, role: FolderRole) -> FolderRow {
        let ws = accounts::get_any(&self.store, acc)
            .await
            .unwrap()
            .expect("account")
            .workspace_id;
        index::upsert_folder(
            &self.store,
            NewFolder {
                id: &mailroom_core::new_id(),
                workspace_id: &ws,
                account_id: acc,
                name: provider_id,
                role,
                provider_id,
                now_ms: 1,
            },
        )
        .await
        .unwrap()
    }
}

/// An owned message to index; `as_new()` lends it as the store's input.
#[derive(Clone)]
struct Mail {
    ws: String,
    acc: String,
    provider_id: String,
    message_id: String,
    thread_id: String,
    from: Attendee,
    to: Vec<Attendee>,
    cc: Vec<Attendee>,
    date: i64,
    read: bool,
    html: Option<String>,
    text: Option<String>,
    headers: Option<Vec<Header>>,
    attachments: Vec<AttachmentMeta>,
}

fn who(address: &str) -> Attendee {
    Attendee {
        identifier: address.to_owned(),
        display_name: Some(format!("Name of {address}")),
    }
}

fn mail(ws: &str, acc: &str, provider_id: &str, date: i64) -> Mail {
    Mail {
        ws: ws.to_owned(),
        acc: acc.to_owned(),
        provider_id: provider_id.to_owned(),
        message_id: format!("<{provider_id}@example.test>"),
        thread_id: provider_id.to_owned(),
        from: who("sender@example.test"),
        to: vec![who("rcpt@example.test")],
        cc: vec![],
        date,
        read: false,
        html: Some("<p>hello</p>".to_owned()),
        text: Some("hello".to_owned()),
        headers: None,
        attachments: vec![],
    }
}

impl Mail {
    fn as_new<'a>(&'a self, folder: Option<(&'a str, Option<i64>)>, id: &'a str) -> NewMessage<'a> {
        NewMessage {
            id,
            workspace_id: &self.ws,
            account_id: &self.acc,
            provider_id: &self.provider_id,
            message_id: Some(self.message_id.as_str()),
            in_reply_to: None,
            references: &[],
            thread_id: &self.thread_id,
            subject: "subject",
            from: Some(&self.from),
            to: &self.to,
            cc: &self.cc,
            bcc: &[],
            reply_to: &[],
            date: self.date,
            read: self.read,
            size: 1234,
            has_attachments: !self.attachments.is_empty(),
            attachments: &self.attachments,
            body_html: self.html.as_deref(),
            body_text: self.text.as_deref(),
            headers: self.headers.as_deref(),
            origin: MailOrigin::External,
            tracking_id: None,
            folder,
            now_ms: 5,
        }
    }

    async fn put(&self, store: &Store, folder: &str, uid: Option<i64>) -> Upserted {
        let id = mailroom_core::new_id();
        index::upsert_message(store, self.as_new(Some((folder, uid)), &id))
            .await
            .unwrap()
    }
}

async fn ids(store: &Store, ws: &str, f: &MessageFilter<'_>) -> Vec<String> {
    index::list_messages(store, ws, f, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.provider_id)
        .collect()
}

async fn upserts_are_idempotent(backend: Backend) {
    let Some(fx) = open(backend).await else {
        return;
    };
    let acc = fx.account("w").await;
    let inbox = fx.folder(&acc, "INBOX", FolderRole::Inbox).await;
    assert_eq!(inbox.sync_status, FolderSyncStatus::Never);
    assert_eq!(inbox.role, FolderRole::Inbox);
    // The same provider id again: the same folder, renamed.
    let again = index::upsert_folder(
        &fx.store,
        NewFolder {
            id: &mailroom_core::new_id(),
            workspace_id: "w",
            account_id: &acc,
            name: "Inbox",
            role: FolderRole::Inbox,
            provider_id: "INBOX",
            now_ms: 2,
        },
    )
    .await
    .unwrap();
    assert_eq!(again.id, inbox.id);
    assert_eq!(again.name, "Inbox");
    assert_eq!(again.created_at, inbox.created_at);
    assert_eq!(
        index::list_folders(&fx.store, "w", Some(acc.as_str()))
            .await
            .unwrap()
            .len(),
        1
    );

    let mut m = mail("w", &acc, "p1", 1000);
    let first = m.put(&fx.store, &inbox.id, Some(7)).await;
    assert!(first.created && first.linked && !first.read_changed);
    let second = m.put(&fx.store, &inbox.id, Some(7)).await;
    assert_eq!(
        second,
        Upserted {
            id: first.id.clone(),
            created: false,
            linked: false,
            read_changed: false
        }
    );
    m.read = true;
    let third = m.put(&fx.store, &inbox.id, Some(7)).await;
    assert!(!third.created && !third.linked && third.read_changed);
    assert_eq!(third.id, first.id);
    let all = index::list_messages(&fx.store, "w", &MessageFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert!(all[0].read);
    assert_eq!(
        index::count_in_folder(&fx.store, &inbox.id).await.unwrap(),
        1
    );

    // Flags through set_read: true only when it changes.
    assert!(
        index::set_read(&fx.store, &first.id, false, 9)
            .await
            .unwrap()
    );
    assert!(
        !index::set_read(&fx.store, &first.id, false, 9)
            .await
            .unwrap()
    );
    let got = index::get_message(&fx.store, "w", &first.id)
        .await
        .unwrap()
        .unwrap();
    assert!(!got.read);
    assert_eq!(got.updated_at, 9);

    // The folder's sync state round-trips.
    let state = FolderSyncState {
        uidvalidity: Some(42),
        uidnext: Some(8),
        highest_modseq: Some(9_000_000_000),
        cursor: None,
        nb_mails: 1,
        status: FolderSyncStatus::Synced,
        last_synced_at: Some(77),
    };
    assert!(
        index::set_folder_sync_state(&fx.store, &inbox.id, &state, 78)
            .await
            .unwrap()
    );
    let f = index::get_folder_by_provider_id(&fx.store, "w", &acc, "INBOX")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (f.uidvalidity, f.uidnext, f.highest_modseq, f.nb_mails),
        (Some(42), Some(8), Some(9_000_000_000), 1)
    );
    assert_eq!(f.sync_status, FolderSyncStatus::Synced);
    assert_eq!(f.last_synced_at, Some(77));
    // Another workspace sees none of it.
    assert!(
        index::get_folder(&fx.store, "w2", &inbox.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        index::get_message(&fx.store, "w2", &first.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        index::list_folders(&fx.store, "w2", None)
            .await
            .unwrap()
            .is_empty()
    );
}
both_backends!(upserts_are_idempotent);

async fn a_message_in_two_folders(backend: Backend) {
    let Some(fx) = open(backend).await else {
        return;
    };
    let acc = fx.account("w").await;
    let inbox = fx.folder(&acc, "INBOX", FolderRole::Inbox).await;
    let archive = fx.folder(&acc, "Archive", FolderRole::Archive).await;
    let m = mail("w", &acc, "p1", 1000);
    let a = m.put(&fx.store, &inbox.id, Some(5)).await;
    let b = m.put(&fx.store, &archive.id, Some(9)).await;
    assert!(a.created && !b.created && b.linked);
    assert_eq!(a.id, b.id);

    let got = index::get_message_by_provider_id(&fx.store, "w", &acc, "p1")
        .await
        .unwrap()
        .unwrap();
    let mut folders: Vec<(String, Option<i64>)> = got
        .folders
        .iter()
        .map(|l| (l.folder_id.clone(), l.uid))
        .collect();
    folders.sort();
    let mut want = vec![(inbox.id.clone(), Some(5)), (archive.id.clone(), Some(9))];
    want.sort();
    assert_eq!(folders, want);
    for f in [&inbox, &archive] {
        let only = MessageFilter {
            folder_id: Some(f.id.as_str()),
            ..Default::default()
        };
        assert_eq!(ids(&fx.store, "w", &only).await, ["p1"]);
    }
    assert_eq!(
        index::messages_in_folder_uids(&fx.store, &archive.id)
            .await
            .unwrap(),
        vec![(9, a.id.clone())]
    );
    // A new UID in a folder it is already in (IMAP MOVE back and forth) is recorded.
    let c = m.put(&fx.store, &archive.id, Some(12)).await;
    assert!(!c.linked && !c.created);
    assert_eq!(
        index::messages_in_folder_uids(&fx.store, &archive.id)
            .await
            .unwrap(),
        vec![(12, a.id.clone())]
    );

    // Expunged from INBOX: still in Archive.
    assert_eq!(
        index::remove_message_from_folder(&fx.store, &inbox.id, 5)
            .await
            .unwrap(),
        Some(Unlinked {
            message_id: a.id.clone(),
            remaining: 1
        })
    );
    assert_eq!(
        index::remove_message_from_folder(&fx.store, &inbox.id, 5)
            .await
            .unwrap(),
        None
    );
    let in_inbox = MessageFilter {
        folder_id: Some(inbox.id.as_str()),
        ..Default::default()
    };
    assert!(ids(&fx.store, "w", &in_inbox).await.is_empty());
    let mut counts = index::folder_counts(&fx.store, &acc).await.unwrap();
    counts.sort();
    let mut want = vec![(inbox.id.clone(), 0), (archive.id.clone(), 1)];
    want.sort();
    assert_eq!(counts, want);
    assert!(
        index::unlink_message(&fx.store, &a.id, &archive.id)
            .await
            .unwrap()
    );
    assert!(index::delete_message(&fx.store, &a.id).await.unwrap());
    assert!(
        ids(&fx.store, "w", &MessageFilter::default())
            .await
            .is_empty()
    );
}
both_backends!(a_message_in_two_folders);

async fn each_list_filter_narrows(backend: Backend) {
    let Some(fx) = open(backend).await else {
        return;
    };
    let acc = fx.account("w").await;
    let acc2 = fx.account("w").await;
    let inbox = fx.folder(&acc, "INBOX", FolderRole::Inbox).await;
    let sent = fx.folder(&acc, "Sent", FolderRole::Sent).await;
    let archive = fx.folder(&acc, "Archive", FolderRole::Archive).await;
    let inbox2 = fx.folder(&acc2, "INBOX", FolderRole::Inbox).await;

    let mut m1 = mail("w", &acc, "m1", 1000);
    m1.from = who("alice@example.test");
    m1.to = vec![who("bob@example.test")];
    m1.thread_id = "t1".into();
    m1.put(&fx.store, &inbox.id, Some(1)).await;

    let mut m2 = mail("w", &acc, "m2", 2000);
    m2.from = who("bob@example.test");
    m2.to = vec![who("carol@example.test")];
    m2.cc = vec![who("dave@example.test")];
    m2.thread_id = "t1".into();
    m2.put(&fx.store, &sent.id, Some(1)).await;

    let mut m3 = mail("w", &acc2, "m3", 3000);
    m3.from = who("alice@example.test");
    m3.thread_id = "t2".into();
    m3.put(&fx.store, &inbox2.id, Some(1)).await;

    let mut m4 = mail("w", &acc, "m4", 4000);
    m4.from = who("exe@example.test");
    m4.put(&fx.store, &archive.id, Some(1)).await;

    let s = &fx.store;
    let f = MessageFilter::default;
    assert_eq!(ids(s, "w", &f()).await, ["m4", "m3", "m2", "m1"]);
    assert!(ids(s, "w2", &f()).await.is_empty());
    let cases: Vec<(MessageFilter, Vec<&str>)> = vec![
        (
            MessageFilter {
                account_id: Some(acc.as_str()),
                ..f()
            },
            vec!["m4", "m2", "m1"],
        ),
        (
            MessageFilter {
                folder_id: Some(inbox.id.as_str()),
                ..f()
            },
            vec!["m1"],
        ),
        (
            MessageFilter {
                role: Some(FolderRole::Sent),
                ..f()
            },
            vec!["m2"],
        ),
        (
            MessageFilter {
                role: Some(FolderRole::Inbox),
                ..f()
            },
            vec!["m3", "m1"],
        ),
        (
            MessageFilter {
                from: Some("alice@example.test"),
                ..f()
            },
            vec!["m3", "m1"],
        ),
        // Addresses compare without case.
        (
            MessageFilter {
                from: Some("ALICE@Example.test"),
                account_id: Some(acc.as_str()),
                ..f()
            },
            vec!["m1"],
        ),
        // `_` is no wildcard: e_e does not match exe.
        (
            MessageFilter {
                from: Some("e_e@example.test"),
                ..f()
            },
            vec![],
        ),
        (
            MessageFilter {
                from: Some("exe@example.test"),
                ..f()
            },
            vec!["m4"],
        ),
        // A display name is not an address.
        (
            MessageFilter {
                from: Some("Name of alice@example.test"),
                ..f()
            },
            vec![],
        ),
        (
            MessageFilter {
                to: Some("carol@example.test"),
                ..f()
            },
            vec!["m2"],
        ),
        // Cc is not To.
        (
            MessageFilter {
                to: Some("dave@example.test"),
                ..f()
            },
            vec![],
        ),
        (
            MessageFilter {
                any_email: &["dave@example.test"],
                ..f()
            },
            vec!["m2"],
        ),
        (
            MessageFilter {
                any_email: &["carol@example.test", "alice@example.test"],
                ..f()
            },
            vec!["m3", "m2", "m1"],
        ),
        // Dates are exclusive.
        (
            MessageFilter {
                before: Some(2000),
                ..f()
            },
            vec!["m1"],
        ),
        (
            MessageFilter {
                after: Some(2000),
                ..f()
            },
            vec!["m4", "m3"],
        ),
        (
            MessageFilter {
                after: Some(1000),
                before: Some(4000),
                ..f()
            },
            vec!["m3", "m2"],
        ),
        (
            MessageFilter {
                thread_id: Some("t1"),
                ..f()
            },
            vec!["m2", "m1"],
        ),
        (
            MessageFilter {
                message_id: Some("<m2@example.test>"),
                ..f()
            },
            vec!["m2"],
        ),
    ];
    for (filter, want) in cases {
        assert_eq!(ids(s, "w", &filter).await, want, "{filter:?}");
    }
}
both_backends!(each_list_filter_narrows);

async fn cursor_paging_is_stable_while_mail_arrives(backend: Backend) {
    let Some(fx) = open(backend).await else {
        return;
    };
    let acc = fx.account("w").await;
    let inbox = fx.folder(&acc, "INBOX", FolderRole::Inbox).await;
    // Two messages share a date: the id breaks the tie.
    let dates = [100, 200, 300, 300, 400, 500];
    let mut stored = vec![];
    for (i, d) in dates.iter().enumerate() {
        let u = mail("w", &acc, &format!("p{i}"), *d)
            .put(&fx.store, &inbox.id, Some(i as i64 + 1))
            .await;
        stored.push((*d, u.id));
    }
    stored.sort();
    stored.reverse();
    let want: Vec<String> = stored.into_iter().map(|(_, id)| id).collect();

    let filter = MessageFilter {
        account_id: Some(acc.as_str()),
        ..Default::default()
    };
    let mut seen = vec![];
    let mut after: Option<Position> = None;
    let mut pages = 0;
    loop {
        let page = index::list_messages(&fx.store, "w", &filter, after.as_ref(), 2)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        pages += 1;
        if pages == 1 {
            // New mail, newer than everything, between two pages.
            mail("w", &acc, "newer", 10_000)
                .put(&fx.store, &inbox.id, Some(99))
                .await;
        }
        let last = page.last().unwrap();
        after = Some(Position {
            last_id: last.id.clone(),
            last_date: last.date,
        });
        seen.extend(page.into_iter().map(|m| m.id));
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen, want,
        "every message once, in order, the new one not mixed in"
    );
    // A fresh first page shows the new one.
    let first = index::list_messages(&fx.store, "w", &filter, None, 1)
        .await
        .unwrap();
    assert_eq!(first[0].provider_id, "newer");
}
both_backends!(cursor_paging_is_stable_while_mail_arrives);

async fn bodies_round_trip_compressed(backend: Backend) {
    let Some(fx) = open(backend).await else {
        return;
    };
    let acc = fx.account("w").await;
    let inbox = fx.folder(&acc, "INBOX", FolderRole::Inbox).await;
    let mut m = mail("w", &acc, "big", 1000);
    let html: String = (0..3000)
        .map(|i| format!("<tr><td>row {i}</td><td>Quarterly figures, unchanged.</td></tr>\n"))
        .collect();
    let text = "Grüße — a plain body with some unicode ✓\n".repeat(2000);
    m.html = Some(html.clone());
    m.text = Some(text.clone());
    m.headers = Some(vec![
        Header {
            name: "Subject".into(),
            value: "subject".into(),
        },
        Header {
            name: "X-Weird".into(),
            value: "ünïcödé \"quoted\"".into(),
        },
    ]);
    m.attachments = vec![AttachmentMeta {
        id: "2".into(),
        name: "report.pdf".into(),
        size: 4096,
        mime: "application/pdf".into(),
        cid: None,
        part: Some("2".into()),
    }];
    let u = m.put(&fx.store, &inbox.id, Some(1)).await;

    let got = index::get_message(&fx.store, "w", &u.id)
        .await
        .unwrap()
        .unwrap();
    let content = got.content.as_ref().expect("content on a single read");
    assert_eq!(content.body_html.as_deref(), Some(html.as_str()));
    assert_eq!(content.body_text.as_deref(), Some(text.as_str()));
    assert_eq!(content.headers, m.headers);
    assert_eq!(got.attachments, m.attachments);
    assert!(got.has_attachments);
    assert_eq!(got.from, Some(m.from.clone()));
    assert_eq!(got.to, m.to);
    assert_eq!(got.message_id.as_deref(), Some("<big@example.test>"));
    assert_eq!(got.origin, MailOrigin::External);

    // Lists never read the bodies.
    let listed = index::list_messages(&fx.store, "w", &MessageFilter::default(), None, 10)
        .await
        .unwrap();
    assert!(listed[0].content.is_none());
    assert_eq!(listed[0].attachments, m.attachments);

    // What is stored is much smaller than the text.
    let (html_len, text_len): (i64, i64) = with_pool!(&fx.store, pool => {
        let r = sqlx::query(
            "SELECT CAST(length(body_html) AS BIGINT), CAST(length(body_text) AS BIGINT) FROM messages WHERE id = $1",
        )
        .bind(&u.id)
        .fetch_one(pool)
        .await
        .unwrap();
        (r.get(0), r.get(1))
    });
    assert!(
        html_len * 5 < html.len() as i64,
        "{html_len} vs {}",
        html.len()
    );
    assert!(
        text_len * 5 < text.len() as i64,
        "{text_len} vs {}",
        text.len()
    );

    // No bodies stay no bodies; an empty body stays empty.
    let mut none = mail("w", &acc, "none", 2000);
    none.html = None;
    none.text = Some(String::new());
    let n = none.put(&fx.store, &inbox.id, Some(2)).await;
    let got = index::get_message(&fx.store, "w", &n.id)
        .await
        .unwrap()
        .unwrap();
    let content = got.content.unwrap();
    assert_eq!(content.body_html, None);
    assert_eq!(content.body_text.as_deref(), Some(""));
    assert_eq!(content.headers, None);
}
both_backends!(bodies_round_trip_compressed);

fn of(acc: &str) -> MessageFilter<'_> {
    MessageFilter {
        account_id: Some(acc),
        ..Default::default()
    }
}

async fn link_count(store: &Store) -> i64 {
    with_pool!(store, pool => {
        sqlx::query("SELECT COUNT(*) FROM message_folders").fetch_one(pool).await.unwrap().get::<i64, _>(0)
    })
}

async fn deleting_an_account_removes_its_index(backend: Backend) {
    let Some(fx) = open(backend).await else {
        return;
    };
    let gone = fx.account("w").await;
    let kept = fx.account("w").await;
    for acc in [&gone, &kept] {
        let inbox = fx.folder(acc, "INBOX", FolderRole::Inbox).await;
        let sent = fx.folder(acc, "Sent", FolderRole::Sent).await;
        let m = mail("w", acc, "p1", 1000);
        m.put(&fx.store, &inbox.id, Some(1)).await;
        m.put(&fx.store, &sent.id, Some(1)).await;
        mail("w", acc, "p2", 2000)
            .put(&fx.store, &inbox.id, Some(2))
            .await;
    }
    assert_eq!(link_count(&fx.store).await, 6);

    assert!(accounts::delete(&fx.store, "w", &gone).await.unwrap());
    assert!(
        index::list_folders(&fx.store, "w", Some(gone.as_str()))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(ids(&fx.store, "w", &of(&gone)).await.is_empty());
    assert_eq!(ids(&fx.store, "w", &of(&kept)).await, ["p2", "p1"]);
    assert_eq!(link_count(&fx.store).await, 3);

    // Emptying an account's index (a full resync) keeps the account.
    index::delete_account_index(&fx.store, &kept).await.unwrap();
    assert!(ids(&fx.store, "w", &of(&kept)).await.is_empty());
    assert!(
        index::list_folders(&fx.store, "w", None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(link_count(&fx.store).await, 0);
    assert!(
        accounts::get(&fx.store, "w", &kept)
            .await
            .unwrap()
            .is_some()
    );
}
both_backends!(deleting_an_account_removes_its_index);
