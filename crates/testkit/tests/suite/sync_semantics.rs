//! What a sync pass makes of changes beyond arrivals (both backends, real Dovecot): a move is
//! one `mail_moved` (never a delete plus a new mail), each read is announced once, the sync
//! window (`sync_limit`) keeps old mail out and unannounced, an interrupted first fetch resumes
//! and still announces what arrived meanwhile, and header-less replies thread by subject only
//! when they say they are replies.

use futures_util::TryStreamExt as _;
use serde_json::{Value, json};

use mailroom_core::mail::FolderSyncStatus;
use mailroom_engine::sync::imap::{SyncReport, sync_account_once};
use mailroom_providers::imap_smtp::imap::ImapSession;
use mailroom_store::accounts::{self, Account};
use mailroom_store::events;
use mailroom_store::index::{self, FolderSyncState, MessageFilter, MessageRow};
use mailroom_testkit::app::TestApp;
use mailroom_testkit::mail::MailUser;
use mailroom_testkit::{Backend, MailRig, both_backends, spawn_app};

const DAY_MS: i64 = 86_400_000;

fn mail(run: &str, n: u32, from: &str, to: &str, subject: &str, headers: &str) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMessage-ID: <{run}.{n}@example.test>\r\n\
         {headers}Date: Tue, 1 Dec 2026 12:00:00 +0000\r\n\r\nbody {n}\r\n"
    )
    .into_bytes()
}

fn plain(run: &str, n: u32) -> Vec<u8> {
    mail(
        run,
        n,
        "s@example.test",
        "r@example.test",
        &format!("m {n}"),
        "",
    )
}

/// An IMAP INTERNALDATE `days` days before now, quoted for APPEND.
fn days_ago(days: i64) -> String {
    let t = time::OffsetDateTime::now_utc() - time::Duration::days(days);
    let f = time::macros::format_description!(
        "[day]-[month repr:short]-[year] [hour]:[minute]:[second] +0000"
    );
    format!("\"{}\"", t.format(&f).unwrap())
}

struct Linked {
    app: TestApp,
    account: Account,
    acc: String,
    session: ImapSession,
}

async fn link(backend: Backend, extra: Value) -> Option<(MailRig, MailUser, Linked)> {
    let rig = MailRig::from_env()?;
    let app = spawn_app(backend).await?;
    let user = rig.create_user();
    let mut body = rig.account_body(&user);
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (s, created) = app.post_json("/api/v1/accounts", &body).await;
    assert_eq!(s, 201, "{created}");
    let acc = created["account_id"].as_str().unwrap().to_owned();
    let account = accounts::get_any(&app.store, &acc).await.unwrap().unwrap();
    let session = rig.imap(&user).await;
    Some((
        rig,
        user,
        Linked {
            app,
            account,
            acc,
            session,
        },
    ))
}

async fn pass(l: &Linked) -> SyncReport {
    let r = sync_account_once(&l.app.engine, &l.account)
        .await
        .expect("sync pass");
    assert!(r.failed.is_empty(), "{r:?}");
    r
}

async fn events_of(l: &Linked, kind: &str) -> Vec<Value> {
    events::of_type(&l.app.store, &l.app.workspace, kind)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

async fn by_mid(l: &Linked, run: &str, n: u32) -> Option<MessageRow> {
    let mid = format!("<{run}.{n}@example.test>");
    index::list_messages(
        &l.app.store,
        &l.app.workspace,
        &MessageFilter {
            account_id: Some(&l.acc),
            message_id: Some(&mid),
            ..Default::default()
        },
        None,
        10,
    )
    .await
    .unwrap()
    .pop()
}

async fn append(s: &mut ImapSession, folder: &str, date: Option<&str>, raw: &[u8]) {
    s.append(folder, None, date, raw).await.expect("APPEND");
}

async fn uid_move(s: &mut ImapSession, from: &str, uid: &str, to: &str) {
    s.select(from).await.expect("SELECT");
    s.uid_mv(uid, to).await.expect("UID MOVE");
}

async fn store_flags(s: &mut ImapSession, folder: &str, uid: &str, change: &str) {
    s.select(folder).await.expect("SELECT");
    let _: Vec<_> = s
        .uid_store(uid, change)
        .await
        .expect("UID STORE")
        .try_collect()
        .await
        .expect("UID STORE stream");
}

async fn a_move_is_one_mail_moved_and_each_read_is_announced(backend: Backend) {
    let Some((_rig, _user, mut l)) = link(backend, json!({})).await else {
        return;
    };
    let run = mailroom_testkit::token();
    l.session.create("Projects").await.expect("CREATE");
    for n in [1, 2] {
        append(&mut l.session, "INBOX", None, &plain(&run, n)).await;
    }
    let r = pass(&l).await;
    assert_eq!((r.indexed, r.events), (2, 0), "{r:?}");
    let before = by_mid(&l, &run, 1).await.expect("indexed");

    // INBOX → Projects: the same message, now in Projects, one mail_moved.
    uid_move(&mut l.session, "INBOX", "1", "Projects").await;
    let r = pass(&l).await;
    assert_eq!((r.moved, r.deleted, r.indexed), (1, 0, 0), "{r:?}");
    let moved = events_of(&l, "mail_moved").await;
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(moved[0]["email_id"], before.id.as_str());
    assert_eq!(moved[0]["from_folder"], "INBOX");
    assert_eq!(moved[0]["folder"], "Projects");
    assert!(events_of(&l, "mail_deleted").await.is_empty());
    assert!(events_of(&l, "mail_received").await.is_empty());
    let after = by_mid(&l, &run, 1).await.expect("still indexed");
    assert_eq!(after.id, before.id, "a move keeps the message's id");
    assert_eq!(after.folders.len(), 1);

    // Quiet again, then back: a second move is a second event.
    let r = pass(&l).await;
    assert_eq!((r.moved, r.events), (0, 0), "{r:?}");
    uid_move(&mut l.session, "Projects", "1", "INBOX").await;
    pass(&l).await;
    assert_eq!(events_of(&l, "mail_moved").await.len(), 2);

    // Read, unread, read: two reads, each announced once.
    store_flags(&mut l.session, "INBOX", "2", "+FLAGS (\\Seen)").await;
    pass(&l).await;
    pass(&l).await;
    assert_eq!(events_of(&l, "mail_read").await.len(), 1);
    store_flags(&mut l.session, "INBOX", "2", "-FLAGS (\\Seen)").await;
    pass(&l).await;
    assert!(!by_mid(&l, &run, 2).await.unwrap().read);
    store_flags(&mut l.session, "INBOX", "2", "+FLAGS (\\Seen)").await;
    pass(&l).await;
    pass(&l).await;
    assert_eq!(events_of(&l, "mail_read").await.len(), 2);

    // Expunged from its only folder: deleted once.
    store_flags(&mut l.session, "INBOX", "2", "+FLAGS (\\Deleted)").await;
    let _: Vec<_> = l
        .session
        .expunge()
        .await
        .expect("EXPUNGE")
        .try_collect()
        .await
        .expect("EXPUNGE stream");
    let r = pass(&l).await;
    assert_eq!(r.deleted, 1, "{r:?}");
    pass(&l).await;
    assert_eq!(events_of(&l, "mail_deleted").await.len(), 1);
    assert!(by_mid(&l, &run, 2).await.is_none());
    for kind in ["mail_moved", "mail_read", "mail_deleted"] {
        for e in events_of(&l, kind).await {
            mailroom_testkit::openapi_check::assert_stored(kind, &e);
        }
    }
}
both_backends!(a_move_is_one_mail_moved_and_each_read_is_announced);

async fn the_default_window_is_thirty_days_and_old_mail_is_never_announced(backend: Backend) {
    let Some((_rig, _user, mut l)) = link(backend, json!({})).await else {
        return;
    };
    let run = mailroom_testkit::token();
    l.session.create("Projects").await.expect("CREATE");
    append(
        &mut l.session,
        "INBOX",
        Some(&days_ago(45)),
        &plain(&run, 1),
    )
    .await;
    append(
        &mut l.session,
        "INBOX",
        Some(&days_ago(10)),
        &plain(&run, 2),
    )
    .await;
    append(&mut l.session, "INBOX", None, &plain(&run, 3)).await;
    let r = pass(&l).await;
    assert_eq!(r.indexed, 2, "{r:?}");
    assert!(by_mid(&l, &run, 1).await.is_none(), "older than 30 days");
    assert!(by_mid(&l, &run, 2).await.is_some());

    // The old message moved into another folder is indexed there, and announced never.
    uid_move(&mut l.session, "INBOX", "1", "Projects").await;
    let r = pass(&l).await;
    assert_eq!(r.indexed, 1, "{r:?}");
    assert!(by_mid(&l, &run, 1).await.is_some());
    assert!(events_of(&l, "mail_received").await.is_empty());
    // Old mail left out stays out on later passes; new mail is announced.
    append(&mut l.session, "INBOX", None, &plain(&run, 4)).await;
    let r = pass(&l).await;
    assert_eq!(r.indexed, 1, "{r:?}");
    assert_eq!(events_of(&l, "mail_received").await.len(), 1);
}
both_backends!(the_default_window_is_thirty_days_and_old_mail_is_never_announced);

async fn sync_limit_no_history_a_date_or_a_count(backend: Backend) {
    // NO_HISTORY_SYNC: nothing that is there; what arrives later is indexed and announced.
    let Some((_rig, _user, mut l)) = link(backend, json!({"sync_limit": "NO_HISTORY_SYNC"})).await
    else {
        return;
    };
    let run = mailroom_testkit::token();
    // Arrived before the account was linked (yesterday).
    append(&mut l.session, "INBOX", Some(&days_ago(1)), &plain(&run, 1)).await;
    let r = pass(&l).await;
    assert_eq!(r.indexed, 0, "{r:?}");
    append(&mut l.session, "INBOX", None, &plain(&run, 2)).await;
    let r = pass(&l).await;
    assert_eq!(r.indexed, 1, "{r:?}");
    assert_eq!(events_of(&l, "mail_received").await.len(), 1);

    // A date: what arrived since then.
    let since = mailroom_core::time_fmt::format_ms(l.app.engine.clock.now_ms() - 15 * DAY_MS);
    let (_rig, _user, mut l) = link(backend, json!({ "sync_limit": since })).await.unwrap();
    append(
        &mut l.session,
        "INBOX",
        Some(&days_ago(20)),
        &plain(&run, 3),
    )
    .await;
    append(&mut l.session, "INBOX", Some(&days_ago(5)), &plain(&run, 4)).await;
    let r = pass(&l).await;
    assert_eq!(r.indexed, 1, "{r:?}");
    assert!(by_mid(&l, &run, 4).await.is_some());

    // A count: the newest N of each folder, whatever their age.
    let (_rig, _user, mut l) = link(backend, json!({"sync_limit": 2})).await.unwrap();
    for (n, days) in [(5, 300), (6, 200), (7, 100)] {
        append(
            &mut l.session,
            "INBOX",
            Some(&days_ago(days)),
            &plain(&run, n),
        )
        .await;
    }
    let r = pass(&l).await;
    assert_eq!(r.indexed, 2, "{r:?}");
    assert!(by_mid(&l, &run, 5).await.is_none());
    assert!(by_mid(&l, &run, 7).await.is_some());

    // A bad one is refused before anything is linked.
    let rig = MailRig::from_env().unwrap();
    let user = rig.create_user();
    let mut body = rig.account_body(&user);
    body["sync_limit"] = json!("last week");
    let (s, e) = l.app.post_json("/api/v1/accounts", &body).await;
    assert_eq!(s, 400, "{e}");
    assert_eq!(e["type"], "errors/invalid_parameters");
    assert!(e["detail"].as_str().unwrap().contains("sync_limit"), "{e}");
}
both_backends!(sync_limit_no_history_a_date_or_a_count);

/// A hosted link's `sync_limit` (Unipile's `{"MAILING": "NO_HISTORY_SYNC"}`) is the linked
/// account's window: mail already in the mailbox is left out, as on `POST /accounts`; a link
/// without one gets the default window (yesterday's mail is indexed).
async fn hosted_links_carry_their_sync_limit(backend: Backend) {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let Some(mut app) = spawn_app(backend).await else {
        return;
    };
    let run = mailroom_testkit::token();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let in_an_hour = mailroom_core::time_fmt::format_ms(app.engine.clock.now_ms() + 3_600_000);
    for (n, extra, indexed) in [
        (1, json!({}), true),
        (
            2,
            // The IMAP form's account takes the link's send limits too.
            json!({"sync_limit": {"MAILING": "NO_HISTORY_SYNC"}, "send_limits": {"per_day": 5}}),
            false,
        ),
    ] {
        let user = rig.create_user();
        let mut s = rig.imap(&user).await;
        append(&mut s, "INBOX", Some(&days_ago(1)), &plain(&run, n)).await;
        let mut body = json!({"type": "create", "providers": ["MAIL"], "expiresOn": in_an_hour,
            "api_url": app.base_url});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (st, link) = app.post_json("/api/v1/hosted/accounts/link", &body).await;
        assert_eq!(st, 201, "{link}");
        let url = link["url"].as_str().unwrap();
        let form = [
            ("email", user.address.clone()),
            ("username", user.address.clone()),
            ("password", user.password.clone()),
            ("imap_host", rig.host.clone()),
            ("imap_port", rig.imap_port.to_string()),
            ("smtp_host", rig.host.clone()),
            ("smtp_port", rig.smtp_port.to_string()),
        ];
        let r = browser
            .post(format!("{url}/imap"))
            .form(&form)
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert!(status.is_success(), "{status}: {}", r.text().await.unwrap());
        let (_, list) = app.get("/api/v1/accounts").await;
        let acc = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == user.address.as_str())
            .unwrap_or_else(|| panic!("{list}"))["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let account = accounts::get_any(&app.store, &acc).await.unwrap().unwrap();
        let l = Linked {
            app,
            account,
            acc,
            session: s,
        };
        pass(&l).await;
        assert_eq!(by_mid(&l, &run, n).await.is_some(), indexed, "{extra}");
        let (_, a) = l.app.get(&format!("/api/v1/accounts/{}", l.acc)).await;
        let per_day = if n == 2 { json!(5) } else { Value::Null };
        assert_eq!(a["send_limits"]["per_day"], per_day, "{a}");
        app = l.app;
    }
}
both_backends!(hosted_links_carry_their_sync_limit);

async fn an_interrupted_first_fetch_resumes_and_announces_what_arrived_meanwhile(backend: Backend) {
    let Some((_rig, _user, mut l)) = link(backend, json!({})).await else {
        return;
    };
    let run = mailroom_testkit::token();
    for n in [1, 2] {
        append(&mut l.session, "INBOX", None, &plain(&run, n)).await;
    }
    pass(&l).await;
    // As if the first fetch had stopped after message 1: message 2 not yet fetched, the
    // folder still fetching, new mail meant to start at UID 3.
    let inbox = index::get_folder_by_provider_id(&l.app.store, &l.app.workspace, &l.acc, "INBOX")
        .await
        .unwrap()
        .unwrap();
    let second = by_mid(&l, &run, 2).await.unwrap();
    index::delete_message(&l.app.store, &second.id)
        .await
        .unwrap();
    for f in index::list_folders(&l.app.store, &l.app.workspace, Some(&l.acc))
        .await
        .unwrap()
    {
        let status = if f.id == inbox.id {
            FolderSyncStatus::Fetching
        } else {
            f.sync_status
        };
        index::set_folder_sync_state(
            &l.app.store,
            &f.id,
            &FolderSyncState {
                uidvalidity: f.uidvalidity,
                uidnext: f.uidnext,
                highest_modseq: None,
                cursor: None,
                nb_mails: f.nb_mails,
                status,
                last_synced_at: None,
            },
            0,
        )
        .await
        .unwrap();
    }
    append(&mut l.session, "INBOX", None, &plain(&run, 3)).await;
    let r = pass(&l).await;
    assert_eq!(
        r.indexed, 2,
        "message 2 fetched on resume, and message 3: {r:?}"
    );
    let received = events_of(&l, "mail_received").await;
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(
        received[0]["message_id"],
        format!("<{run}.3@example.test>").as_str()
    );
}
both_backends!(an_interrupted_first_fetch_resumes_and_announces_what_arrived_meanwhile);

async fn header_less_replies_thread_by_subject_only_when_marked_as_replies(backend: Backend) {
    let Some((_rig, _user, mut l)) = link(backend, json!({})).await else {
        return;
    };
    let run = mailroom_testkit::token();
    let a = "ann@example.test";
    let b = "bob@example.test";
    let msgs = [
        (1, mail(&run, 1, a, b, "Quarterly plan", "")),
        // A reply without In-Reply-To/References, from someone in the first message.
        (2, mail(&run, 2, b, a, "RE: Quarterly plan", "")),
        // Same subject, not marked as a reply: its own thread.
        (3, mail(&run, 3, b, a, "Quarterly plan", "")),
        // Marked, but between strangers: its own thread.
        (
            4,
            mail(
                &run,
                4,
                "x@example.test",
                "y@example.test",
                "Re: Quarterly plan",
                "",
            ),
        ),
        // Headers win: In-Reply-To names message 3.
        (
            5,
            mail(
                &run,
                5,
                a,
                b,
                "Re: Quarterly plan",
                &format!("In-Reply-To: <{run}.3@example.test>\r\n"),
            ),
        ),
    ];
    for (_, raw) in &msgs {
        append(&mut l.session, "INBOX", None, raw).await;
        // One at a time, so each is threaded against the ones before it.
        pass(&l).await;
    }
    let mut t = Vec::new();
    for n in 1..=5 {
        t.push(by_mid(&l, &run, n).await.unwrap().thread_id);
    }
    let [t1, t2, t3, t4, t5] = <[String; 5]>::try_from(t).unwrap();
    assert_eq!(
        t2, t1,
        "a marked reply between the same people joins the thread"
    );
    assert_ne!(t3, t1, "an unmarked subject never joins");
    assert_ne!(t4, t1, "strangers never join");
    assert_eq!(t5, t3, "In-Reply-To decides where present");
}
both_backends!(header_less_replies_thread_by_subject_only_when_marked_as_replies);

async fn mail_sent_through_mailroom_is_origin_unipile_with_its_tracking_id(backend: Backend) {
    let Some((_rig, user, l)) = link(backend, json!({})).await else {
        return;
    };
    pass(&l).await;
    let form = reqwest::multipart::Form::new()
        .text("account_id", l.acc.clone())
        .text("subject", "sent here")
        .text("body", "<p>hello</p>")
        .text(
            "to",
            json!([{"identifier": "someone@example.test"}]).to_string(),
        );
    let (s, sent) = l
        .app
        .call(
            l.app
                .request(reqwest::Method::POST, "/api/v1/emails")
                .multipart(form),
        )
        .await;
    assert_eq!(s, 201, "{sent}");
    let tracking = sent["tracking_id"].as_str().unwrap().to_owned();
    // The outbox files the Sent copy; a pass then indexes it as ours.
    let row = mailroom_testkit::wait::until(
        "the Sent copy indexed",
        std::time::Duration::from_secs(20),
        || async {
            sync_account_once(&l.app.engine, &l.account).await.ok()?;
            index::list_messages(
                &l.app.store,
                &l.app.workspace,
                &MessageFilter {
                    account_id: Some(&l.acc),
                    ..Default::default()
                },
                None,
                10,
            )
            .await
            .unwrap()
            .into_iter()
            .find(|m| m.subject == "sent here")
        },
    )
    .await;
    assert_eq!(row.origin.as_str(), "unipile");
    assert_eq!(row.tracking_id.as_deref(), Some(tracking.as_str()));
    let sent_events = events_of(&l, "mail_sent").await;
    assert_eq!(sent_events.len(), 1, "{sent_events:?}");
    assert_eq!(sent_events[0]["origin"], "unipile");
    assert_eq!(sent_events[0]["tracking_id"], tracking.as_str());
    let _ = user;
}
both_backends!(mail_sent_through_mailroom_is_origin_unipile_with_its_tracking_id);

/// Runs `doveadm -c <the rig's config> args…` and answers its stdout.
fn doveadm(rig: &MailRig, args: &[&str]) -> String {
    let conf = rig
        .dovecot_conf
        .as_ref()
        .expect("MAILROOM_TEST_DOVECOT_CONF");
    let out = std::process::Command::new("doveadm")
        .arg("-c")
        .arg(conf)
        .args(args)
        .output()
        .expect("doveadm runs");
    assert!(
        out.status.success(),
        "doveadm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Gives `user`'s INBOX another UIDVALIDITY (the old one + `by`) with doveadm, as a server
/// that renumbers a folder does; answers the old one.
fn bump_uidvalidity(rig: &MailRig, user: &MailUser, by: u64) -> u64 {
    let status = doveadm(
        rig,
        &[
            "-f",
            "flow",
            "mailbox",
            "status",
            "-u",
            &user.address,
            "uidvalidity",
            "INBOX",
        ],
    );
    let old: u64 = status
        .split("uidvalidity=")
        .nth(1)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("uidvalidity in {status:?}"));
    doveadm(
        rig,
        &[
            "mailbox",
            "update",
            "-u",
            &user.address,
            "--uid-validity",
            &(old + by).to_string(),
            "INBOX",
        ],
    );
    old
}

async fn a_uidvalidity_change_rebuilds_the_folder_without_announcing_known_mail(backend: Backend) {
    let Some((rig, user, mut l)) = link(backend, json!({})).await else {
        return;
    };
    let run = mailroom_testkit::token();
    for n in 1..=3 {
        append(&mut l.session, "INBOX", None, &plain(&run, n)).await;
    }
    pass(&l).await;
    let known: Vec<String> = {
        let mut ids = Vec::new();
        for n in 1..=3 {
            ids.push(by_mid(&l, &run, n).await.unwrap().id);
        }
        ids
    };
    // New mail, then the server renumbers the folder before the next pass.
    append(&mut l.session, "INBOX", None, &plain(&run, 4)).await;
    let old = bump_uidvalidity(&rig, &user, 1000);
    let r = pass(&l).await;
    assert_eq!(r.rebuilt, vec!["INBOX".to_owned()], "{r:?}");
    assert_eq!((r.indexed, r.deleted), (1, 0), "{r:?}");
    for (n, id) in (1..=3).zip(&known) {
        let row = by_mid(&l, &run, n).await.unwrap();
        assert_eq!(&row.id, id, "known mail keeps its id");
        assert_eq!(row.folders.len(), 1);
    }
    let received = events_of(&l, "mail_received").await;
    assert_eq!(received.len(), 1, "only the new mail: {received:?}");
    assert_eq!(
        received[0]["message_id"],
        format!("<{run}.4@example.test>").as_str()
    );
    // Settled: the next pass is quiet.
    let r = pass(&l).await;
    assert_eq!((r.indexed, r.events, r.removed), (0, 0, 0), "{r:?}");
    let inbox = index::get_folder_by_provider_id(&l.app.store, &l.app.workspace, &l.acc, "INBOX")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inbox.uidvalidity, Some(old as i64 + 1000));
}
both_backends!(a_uidvalidity_change_rebuilds_the_folder_without_announcing_known_mail);

async fn a_parent_indexed_after_its_reply_gathers_it_into_one_thread(backend: Backend) {
    let Some((_rig, _user, mut l)) = link(backend, json!({})).await else {
        return;
    };
    let run = mailroom_testkit::token();
    let a = "ann@example.test";
    let b = "bob@example.test";
    // The first pass reads INBOX before Sent: the reply comes first.
    append(
        &mut l.session,
        "Sent",
        None,
        &mail(&run, 1, a, b, "Plan", ""),
    )
    .await;
    let reply = format!("In-Reply-To: <{run}.1@example.test>\r\n");
    append(
        &mut l.session,
        "INBOX",
        None,
        &mail(&run, 2, b, a, "Re: Plan", &reply),
    )
    .await;
    pass(&l).await;
    let parent = by_mid(&l, &run, 1).await.unwrap();
    let child = by_mid(&l, &run, 2).await.unwrap();
    assert_eq!(child.thread_id, parent.thread_id);
}
both_backends!(a_parent_indexed_after_its_reply_gathers_it_into_one_thread);

async fn a_rebuild_keeps_to_the_window_and_mail_from_before_the_link_is_never_announced(
    backend: Backend,
) {
    // A count window: a UIDVALIDITY change must not index (or announce) the older mail.
    let Some((rig, user, mut l)) = link(backend, json!({"sync_limit": 2})).await else {
        return;
    };
    let run = mailroom_testkit::token();
    for n in 1..=4 {
        append(&mut l.session, "INBOX", Some(&days_ago(2)), &plain(&run, n)).await;
    }
    let r = pass(&l).await;
    assert_eq!(r.indexed, 2, "{r:?}");
    bump_uidvalidity(&rig, &user, 7);
    let r = pass(&l).await;
    assert_eq!(r.rebuilt, vec!["INBOX".to_owned()], "{r:?}");
    assert_eq!((r.indexed, r.events), (0, 0), "{r:?}");
    assert!(by_mid(&l, &run, 1).await.is_none());

    // Mail from before the link (arrived two days ago, never indexed), moved after it, is
    // indexed where it lands and announced never.
    l.session.create("Projects").await.expect("CREATE");
    pass(&l).await;
    uid_move(&mut l.session, "INBOX", "1", "Projects").await;
    let r = pass(&l).await;
    assert_eq!(r.indexed, 1, "{r:?}");
    assert!(events_of(&l, "mail_received").await.is_empty());
    assert!(events_of(&l, "mail_deleted").await.is_empty());
}
both_backends!(a_rebuild_keeps_to_the_window_and_mail_from_before_the_link_is_never_announced);
