//! IMAP push and deltas against the real Dovecot (NOTIFY, IDLE, CONDSTORE, QRESYNC), and through
//! the testkit's IMAP proxy for servers without them: `Mailbox::watch` names the folders that
//! changed (every folder with NOTIFY, INBOX with IDLE, which is issued again every period), ends
//! with a transient error when its connection is lost, holds one session of the account's
//! budget; `Mailbox::changes_since` reports expunges (VANISHED) and flag changes in one round
//! trip; the sync pass falls back to the UID diff without them; logins per host are capped.

use std::time::{Duration, Instant};

use futures_util::TryStreamExt as _;
use futures_util::future::join_all;

use mailroom_engine::sync::imap::sync_account_once;
use mailroom_providers::Mailbox;
use mailroom_providers::imap_smtp::imap::ImapSession;
use mailroom_providers::mailbox::{Changes, ImapLimits, Watch, WatchOptions};
use mailroom_store::accounts;
use mailroom_store::events;
use mailroom_store::index;
use mailroom_testkit::mail::{test_providers, test_providers_with};
use mailroom_testkit::{Backend, ImapProxy, MailRig, both_backends, spawn_app, wait};

/// How long a change may take to be reported.
const DEADLINE: Duration = Duration::from_secs(20);

fn message(n: u32) -> Vec<u8> {
    format!(
        "From: Sender <s@example.test>\r\nTo: r@example.test\r\nSubject: push {n}\r\n\
         Message-ID: <push.{n}.{}@example.test>\r\nDate: Tue, 1 Dec 2026 12:00:0{} +0000\r\n\r\n\
         body {n}\r\n",
        mailroom_testkit::token(),
        n % 10
    )
    .into_bytes()
}

fn assert_send<T: Send>(_: &T) {}

/// Waits until the watch names `folder`; answers what that wake-up named.
async fn woken_for(watch: &mut Watch, folder: &str) -> Vec<String> {
    let start = Instant::now();
    loop {
        let left = DEADLINE.saturating_sub(start.elapsed());
        assert!(
            !left.is_zero(),
            "no change reported in {folder} within {DEADLINE:?}"
        );
        match watch.next(left).await.expect("the watch runs") {
            Changes::Folders(f) if f.iter().any(|x| x == folder) => return f,
            // An earlier change, reported separately.
            Changes::Folders(_) => {}
            Changes::Timeout => panic!("no change reported in {folder} within {DEADLINE:?}"),
        }
    }
}

async fn store(s: &mut ImapSession, folder: &str, set: &str, flags: &str) {
    s.select(folder).await.expect("SELECT");
    let _: Vec<_> = s
        .store(set, flags)
        .await
        .expect("STORE")
        .try_collect()
        .await
        .expect("STORE stream");
}

async fn expunge(s: &mut ImapSession, folder: &str, set: &str) {
    store(s, folder, set, "+FLAGS (\\Deleted)").await;
    let _: Vec<_> = s
        .expunge()
        .await
        .expect("EXPUNGE")
        .try_collect()
        .await
        .expect("EXPUNGE stream");
}

#[tokio::test]
async fn notify_reports_changes_in_every_folder() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let user = rig.create_user();
    let providers = test_providers();
    let mailbox = rig.open_mailbox(&providers, &user, "pusher", 1);
    let mut s = rig.imap(&user).await;

    // The supervisor runs watches in spawned tasks.
    let opening = mailbox.watch();
    assert_send(&opening);
    let mut watch = opening.await.expect("watch");
    assert_send(&watch.next(Duration::ZERO));
    assert!(watch.covers_all_folders(), "Dovecot offers NOTIFY");
    // The watch holds one session of the account's budget; commands still get the other.
    assert_eq!(providers.imap_pool().in_use("pusher"), 1);
    let state = mailbox.folder_state("INBOX").await.expect("a command");
    assert_eq!(state.exists, 0);
    assert_eq!(providers.imap_pool().in_use("pusher"), 1);
    assert_eq!(
        watch.next(Duration::from_millis(200)).await.expect("quiet"),
        Changes::Timeout
    );

    // New mail in another folder, then in INBOX.
    s.append("Archive", None, None, &message(1))
        .await
        .expect("APPEND");
    woken_for(&mut watch, "Archive").await;
    s.append("INBOX", None, None, &message(2))
        .await
        .expect("APPEND");
    woken_for(&mut watch, "INBOX").await;

    // Flag changes, in another folder and in INBOX.
    store(&mut s, "Archive", "1", "+FLAGS (\\Seen)").await;
    woken_for(&mut watch, "Archive").await;
    store(&mut s, "INBOX", "1", "+FLAGS (\\Flagged)").await;
    woken_for(&mut watch, "INBOX").await;

    // Expunges.
    expunge(&mut s, "Archive", "1").await;
    woken_for(&mut watch, "Archive").await;
    expunge(&mut s, "INBOX", "1").await;
    woken_for(&mut watch, "INBOX").await;

    // A new folder.
    s.create("Projects").await.expect("CREATE");
    woken_for(&mut watch, "Projects").await;
    let _ = s.logout().await;

    // Dropping the watch gives its session's place back.
    drop(watch);
    wait::until(
        "the watch's session to leave the budget",
        DEADLINE,
        || async { (providers.imap_pool().in_use("pusher") == 0).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn without_notify_idle_watches_inbox_and_is_issued_again_every_period() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let proxy = ImapProxy::start(&rig).await;
    proxy.strip_capabilities(&["NOTIFY"]);
    let user = rig.create_user();
    let providers = test_providers();
    let mailbox = proxy.open_mailbox(&providers, &user, "idler", 1);
    let mut s = rig.imap(&user).await;

    let period = Duration::from_millis(300);
    let mut watch = mailbox
        .watch_with(WatchOptions {
            reissue_every: period,
            ..WatchOptions::default()
        })
        .await
        .expect("watch");
    assert!(!watch.covers_all_folders(), "IDLE watches INBOX only");
    assert_eq!(proxy.counts().notifies, 0, "NOTIFY is not offered");
    assert!(proxy.counts().idles >= 1);

    // INBOX wakes it; another folder does not.
    s.append("Archive", None, None, &message(1))
        .await
        .expect("APPEND");
    s.append("INBOX", None, None, &message(2))
        .await
        .expect("APPEND");
    let woken = woken_for(&mut watch, "INBOX").await;
    assert_eq!(woken, vec!["INBOX".to_owned()]);

    // IDLE is ended and issued again every period.
    let before = proxy.counts().idles;
    wait::until("IDLE to be issued again", DEADLINE, || async {
        (proxy.counts().idles >= before + 3).then_some(())
    })
    .await;

    // And still reports changes (a flag change, an expunge) afterwards.
    store(&mut s, "INBOX", "1", "+FLAGS (\\Seen)").await;
    woken_for(&mut watch, "INBOX").await;
    expunge(&mut s, "INBOX", "1").await;
    woken_for(&mut watch, "INBOX").await;
    let _ = s.logout().await;
}

#[tokio::test]
async fn a_lost_connection_ends_the_watch_with_a_transient_error() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let proxy = ImapProxy::start(&rig).await;
    let user = rig.create_user();
    let providers = test_providers();
    let mailbox = proxy.open_mailbox(&providers, &user, "lost", 1);

    let mut watch = mailbox.watch().await.expect("watch");
    assert!(watch.covers_all_folders());
    assert_eq!(proxy.counts().notifies, 1);
    proxy.disconnect_all();
    let e = watch
        .next(DEADLINE)
        .await
        .expect_err("the connection is gone");
    assert!(e.is_transient() && !e.is_auth(), "{e:?}");
    // It stays over; a new watch works.
    assert!(watch.next(DEADLINE).await.is_err());
    drop(watch);
    let mut again = mailbox.watch().await.expect("a new watch");
    let mut s = rig.imap(&user).await;
    s.append("Archive", None, None, &message(3))
        .await
        .expect("APPEND");
    woken_for(&mut again, "Archive").await;
    let _ = s.logout().await;
}

#[tokio::test]
async fn a_server_dropping_sessions_after_login_fails_the_watch_transiently() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let proxy = ImapProxy::start(&rig).await;
    proxy.set_drop_after_login(true);
    let user = rig.create_user();
    let providers = test_providers();
    let mailbox = proxy.open_mailbox(&providers, &user, "dropped", 1);
    let Err(e) = mailbox.watch().await else {
        panic!("a watch over a dropped session");
    };
    assert!(e.is_transient() && !e.is_auth(), "{e:?}");
    assert_eq!(proxy.counts().logins, 1, "the login itself succeeded");
    assert_eq!(providers.imap_pool().in_use("dropped"), 0);
}

#[tokio::test]
async fn logins_per_host_are_capped_across_accounts() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let proxy = ImapProxy::start(&rig).await;
    // A slow server: without the cap, all eight logins would be in progress at once.
    proxy.set_login_delay(Duration::from_millis(300));
    let providers = test_providers_with(ImapLimits {
        logins_per_host: 3,
        ..ImapLimits::default()
    });
    let mailboxes: Vec<Mailbox> = (0..8)
        .map(|i| proxy.open_mailbox(&providers, &rig.create_user(), &format!("cap{i}"), 1))
        .collect();
    let states = join_all(mailboxes.iter().map(|m| m.folder_state("INBOX"))).await;
    for s in states {
        s.expect("every account logs in, in turn");
    }
    let counts = proxy.counts();
    assert_eq!(counts.logins, 8);
    assert_eq!(counts.max_concurrent_logins, 3, "{counts:?}");
}

#[tokio::test]
async fn qresync_reports_vanished_messages_and_flag_changes() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let user = rig.create_user();
    let providers = test_providers();
    let mailbox = rig.open_mailbox(&providers, &user, "qresync", 1);
    let mut s = rig.imap(&user).await;
    for n in 1..=4 {
        s.append("INBOX", None, None, &message(n))
            .await
            .expect("APPEND");
    }
    let state = mailbox.folder_state("INBOX").await.expect("EXAMINE");
    let (uv, m0) = (state.uid_validity, state.highest_modseq.expect("CONDSTORE"));
    let uids = mailbox.uids("INBOX", uv).await.expect("UIDs");
    assert_eq!(uids.len(), 4);

    let quiet = mailbox
        .changes_since("INBOX", uv, m0)
        .await
        .expect("QRESYNC")
        .expect("Dovecot has QRESYNC");
    assert!(
        quiet.vanished.is_empty() && quiet.flags.is_empty(),
        "{quiet:?}"
    );
    assert_eq!((quiet.highest_modseq, quiet.exists), (m0, 4));

    // Read the third, expunge the first two.
    store(&mut s, "INBOX", "3", "+FLAGS (\\Seen)").await;
    expunge(&mut s, "INBOX", "1:2").await;
    let _ = s.logout().await;
    let changes = mailbox
        .changes_since("INBOX", uv, m0)
        .await
        .expect("QRESYNC")
        .expect("Dovecot has QRESYNC");
    assert_eq!(changes.vanished, uids[..2].to_vec(), "{changes:?}");
    let read = changes
        .flags
        .iter()
        .find(|c| c.uid == uids[2])
        .unwrap_or_else(|| panic!("the read message in {changes:?}"));
    assert!(read.flags.seen && read.modseq.unwrap_or(0) > m0);
    assert!(
        changes.flags.iter().all(|c| c.uid != uids[3]),
        "the untouched message is not reported: {changes:?}"
    );
    assert!(changes.highest_modseq > m0);
    assert_eq!(changes.exists, 2);

    // Since the new modseq: nothing.
    let none = mailbox
        .changes_since("INBOX", uv, changes.highest_modseq)
        .await
        .expect("QRESYNC")
        .expect("QRESYNC");
    assert!(
        none.vanished.is_empty() && none.flags.is_empty(),
        "{none:?}"
    );
    // A stale UIDVALIDITY is a cursor to rebuild.
    let stale = mailbox
        .changes_since("INBOX", uv.wrapping_add(1), m0)
        .await
        .expect_err("stale UIDVALIDITY");
    assert!(stale.is_cursor_expired(), "{stale:?}");
    assert_eq!(providers.imap_pool().in_use("qresync"), 0);

    // A server without QRESYNC or CONDSTORE says so: the caller diffs UIDs.
    let proxy = ImapProxy::start(&rig).await;
    proxy.strip_capabilities(&["QRESYNC", "CONDSTORE"]);
    let plain = proxy.open_mailbox(&providers, &user, "plain", 1);
    assert_eq!(
        plain
            .changes_since("INBOX", uv, m0)
            .await
            .expect("no QRESYNC"),
        None
    );
    assert_eq!(
        plain
            .fetch_flags_changed("INBOX", uv, m0)
            .await
            .expect("no CONDSTORE"),
        None
    );
    assert_eq!(
        plain
            .folder_state("INBOX")
            .await
            .expect("EXAMINE")
            .highest_modseq,
        None
    );
}

async fn without_condstore_the_sync_pass_finds_expunges_by_uid_diff(backend: Backend) {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let proxy = ImapProxy::start(&rig).await;
    proxy.strip_capabilities(&["CONDSTORE", "QRESYNC", "NOTIFY"]);
    let user = rig.create_user();
    let (status, created) = app
        .post_json("/api/v1/accounts", &proxy.account_body(&user))
        .await;
    assert_eq!(status, 201, "{created}");
    let acc = created["account_id"].as_str().unwrap().to_owned();
    let account = accounts::get_any(&app.store, &acc).await.unwrap().unwrap();
    let mut s = rig.imap(&user).await;
    for n in 1..=3 {
        s.append("INBOX", None, None, &message(n))
            .await
            .expect("APPEND");
    }

    let r = sync_account_once(&app.engine, &account)
        .await
        .expect("pass");
    assert!(r.failed.is_empty(), "{r:?}");
    assert_eq!(r.indexed, 3, "{r:?}");
    let inbox = || async {
        index::get_folder_by_provider_id(&app.store, &app.workspace, &acc, "INBOX")
            .await
            .unwrap()
            .expect("INBOX")
    };
    let folder = inbox().await;
    assert_eq!(
        folder.highest_modseq, None,
        "no CONDSTORE through the proxy"
    );
    assert_eq!(folder.nb_mails, 3);

    expunge(&mut s, "INBOX", "2").await;
    let _ = s.logout().await;
    let r = sync_account_once(&app.engine, &account)
        .await
        .expect("pass");
    assert!(r.failed.is_empty(), "{r:?}");
    assert_eq!((r.removed, r.deleted, r.indexed), (1, 1, 0), "{r:?}");
    let folder = inbox().await;
    assert_eq!(folder.nb_mails, 2);
    assert_eq!(
        index::count_in_folder(&app.store, &folder.id)
            .await
            .unwrap(),
        2
    );
    let deleted = events::of_type(&app.store, &app.workspace, "mail_deleted")
        .await
        .unwrap();
    assert_eq!(deleted.len(), 1, "{deleted:?}");

    // Once more: quiet.
    let r = sync_account_once(&app.engine, &account)
        .await
        .expect("pass");
    assert_eq!(
        (r.removed, r.deleted, r.indexed, r.events),
        (0, 0, 0, 0),
        "{r:?}"
    );
}
both_backends!(without_condstore_the_sync_pass_finds_expunges_by_uid_diff);
