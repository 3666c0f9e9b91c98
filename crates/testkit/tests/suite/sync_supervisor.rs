//! The sync supervisor against the real Dovecot, on both backends: leases (take, renew, lose,
//! release, requests), a linked account synced by the running server (sweep and nudge),
//! its status (CONNECTING → OK, CREDENTIALS without further logins, ERROR with at most one
//! login per 2 s against a server that drops after login), reconnect and restart resuming,
//! and DELETE removing the index, events and lease.

use std::time::Duration;

use serde_json::{Value, json};

use mailroom_core::{Clock, SystemClock};
use mailroom_store::index::{self, MessageFilter};
use mailroom_store::{accounts, events, sync_leases};
use mailroom_testkit::app::{TestApp, spawn_on};
use mailroom_testkit::imap_proxy::ImapProxy;
use mailroom_testkit::{Backend, MailRig, MailUser, TestDb, both_backends, spawn_app, wait};

use crate::store::seed_account;

// Generous: the machine running the suite may be loaded (the lease and backoff bounds are
// checked separately, not through these deadlines).
const DEADLINE: Duration = Duration::from_secs(60);

/// A server whose sync supervisor runs, with rounds and heartbeats quick and the given sweep.
async fn syncing_app(backend: Backend, sweep: Duration) -> Option<TestApp> {
    let db = TestDb::new(backend).await?;
    Some(
        spawn_on(db, |s| {
            s.sync = mailroom_server::Settings::sync_for_tests();
            s.sync.sweep = sweep;
        })
        .await,
    )
}

/// A syncing server (1 s sweep) with a rig user's account linked through a fresh
/// [`ImapProxy`] and synced once; `None` when the rig or the backend is missing.
struct Linked {
    rig: MailRig,
    app: TestApp,
    proxy: ImapProxy,
    user: MailUser,
    acc: String,
}

async fn linked_through_proxy(backend: Backend) -> Option<Linked> {
    let rig = MailRig::from_env()?;
    let app = syncing_app(backend, Duration::from_secs(1)).await?;
    let proxy = ImapProxy::start(&rig).await;
    let user = rig.create_user();
    let acc = link(&app, &proxy.account_body(&user)).await;
    wait_synced(&app, &acc).await;
    Some(Linked {
        rig,
        app,
        proxy,
        user,
        acc,
    })
}

/// The account's loop is alive (its lease renewed for 3 s) and parked in `status`: after a
/// nudge and several sweeps, no login was tried and the status is unchanged.
async fn stays_parked(app: &TestApp, acc: &str, proxy: &ImapProxy, status: &str) {
    let logins = proxy.login_times().len();
    let since = lease_of(app, acc).await.unwrap().heartbeat_at;
    let (s, _) = app.get(&format!("/api/v1/accounts/{acc}/sync")).await;
    assert_eq!(s, 200);
    wait::until("3 s of heartbeats", DEADLINE, || async {
        let l = lease_of(app, acc).await?;
        (l.heartbeat_at >= since + 3_000).then_some(())
    })
    .await;
    assert_eq!(proxy.login_times().len(), logins, "logins after {status}");
    assert_eq!(source(app, acc).await["status"], status);
}

fn message(run: &str, n: u32) -> Vec<u8> {
    format!(
        "From: Sender <s@example.test>\r\nTo: r@example.test\r\nSubject: live {n}\r\n\
         Message-ID: <{run}.{n}@example.test>\r\nDate: Tue, 1 Dec 2026 12:00:{n:02} +0000\r\n\r\n\
         body {n}\r\n"
    )
    .into_bytes()
}

async fn append(rig: &MailRig, user: &MailUser, folder: &str, raw: &[u8]) {
    let mut s = rig.imap(user).await;
    s.append(folder, None, None, raw).await.expect("APPEND");
    let _ = s.logout().await;
}

async fn indexed(app: &TestApp, account: &str, mid: &str) -> bool {
    !index::list_messages(
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
    .is_empty()
}

async fn link(app: &TestApp, body: &Value) -> String {
    let (s, created) = app.post_json("/api/v1/accounts", body).await;
    assert_eq!(s, 201, "{created}");
    created["account_id"].as_str().unwrap().to_owned()
}

/// The account's `sources[0]` as the API shows it.
async fn source(app: &TestApp, account: &str) -> Value {
    let (s, a) = app.get(&format!("/api/v1/accounts/{account}")).await;
    assert_eq!(s, 200, "{a}");
    a["sources"][0].clone()
}

/// Waits for the loop's first completed pass (the recorded status changes tell the loop's own
/// `OK` from an `OK` set by a reconnect).
async fn wait_synced(app: &TestApp, account: &str) {
    wait::until("the first pass", DEADLINE, || async {
        statuses(app, account)
            .await
            .contains(&"OK".to_owned())
            .then_some(())
    })
    .await;
    wait_status(app, account, "OK").await;
}

async fn wait_status(app: &TestApp, account: &str, status: &str) -> Value {
    wait::until(&format!("status {status}"), DEADLINE, || async {
        let src = source(app, account).await;
        (src["status"] == status).then_some(src)
    })
    .await
}

/// The `account_status` messages recorded for `account` by changes of its status column,
/// oldest first (the lifecycle announcements, CREATION_SUCCESS, SYNC_SUCCESS, RECONNECTED and
/// DELETED, are the webhooks suite's).
async fn statuses(app: &TestApp, account: &str) -> Vec<String> {
    const LIFECYCLE: [&str; 4] = ["CREATION_SUCCESS", "SYNC_SUCCESS", "RECONNECTED", "DELETED"];
    events::of_type(&app.store, &app.workspace, "account_status")
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, p)| p["AccountStatus"]["account_id"] == account)
        .filter(|(_, p)| !LIFECYCLE.contains(&p["AccountStatus"]["message"].as_str().unwrap_or("")))
        .map(|(_, p)| p["AccountStatus"]["message"].as_str().unwrap().to_owned())
        .collect()
}

async fn lease_of(app: &TestApp, account: &str) -> Option<sync_leases::Lease> {
    sync_leases::all(&app.store)
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.account_id == account)
}

async fn leases_take_renew_expire_and_carry_requests(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let store = &app.store;
    let now = SystemClock.now_ms();
    let acc = seed_account(store, &app.vault, &app.workspace, "pw", now).await;

    assert!(
        sync_leases::acquire(store, &acc, "a", now, now + 15_000)
            .await
            .unwrap()
    );
    // Held and live: another owner cannot take it; its owner takes it again.
    assert!(
        !sync_leases::acquire(store, &acc, "b", now + 1, now + 15_001)
            .await
            .unwrap()
    );
    assert!(
        sync_leases::acquire(store, &acc, "a", now + 2, now + 15_002)
            .await
            .unwrap()
    );
    // Only the owner renews; renewing reads the requests.
    assert_eq!(
        sync_leases::renew(store, &acc, "b", now, now + 1)
            .await
            .unwrap(),
        None
    );
    let r = sync_leases::renew(store, &acc, "a", now + 3, now + 15_003)
        .await
        .unwrap();
    assert_eq!(r, Some(sync_leases::Requests::default()));
    assert!(
        sync_leases::request_resync(store, &acc, now + 4)
            .await
            .unwrap()
    );
    assert!(
        sync_leases::request_restart(store, &acc, now + 5)
            .await
            .unwrap()
    );
    let r = sync_leases::renew(store, &acc, "a", now + 6, now + 15_006)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.resync_requested_at, Some(now + 4));
    assert_eq!(r.restart_requested_at, Some(now + 5));
    // Expired: another owner takes it, and the old owner's renewal fails.
    assert!(
        sync_leases::acquire(store, &acc, "b", now + 20_000, now + 35_000)
            .await
            .unwrap()
    );
    assert_eq!(
        sync_leases::renew(store, &acc, "a", now + 20_001, now + 35_001)
            .await
            .unwrap(),
        None
    );
    // A release by a non-owner does nothing; by the owner frees it.
    sync_leases::release(store, &acc, "a").await.unwrap();
    assert_eq!(sync_leases::all(store).await.unwrap()[0].owner, "b");
    sync_leases::release(store, &acc, "b").await.unwrap();
    assert!(sync_leases::all(store).await.unwrap().is_empty());
    assert!(!sync_leases::request_resync(store, &acc, now).await.unwrap());
    // No lease for an account that does not exist; a deleted account's lease goes with it.
    assert!(
        !sync_leases::acquire(store, "nosuchaccount00000000a", "a", now, now + 1)
            .await
            .unwrap()
    );
    assert!(
        sync_leases::acquire(store, &acc, "a", now, now + 15_000)
            .await
            .unwrap()
    );
    assert!(accounts::delete(store, &app.workspace, &acc).await.unwrap());
    assert!(sync_leases::all(store).await.unwrap().is_empty());
    // Live nodes: seen recently, forgotten when long silent, gone when signed off.
    sync_leases::node_seen(store, "a", now, now - 300_000)
        .await
        .unwrap();
    sync_leases::node_seen(store, "b", now - 20_000, now - 300_000)
        .await
        .unwrap();
    assert_eq!(
        sync_leases::live_nodes(store, now - 15_000).await.unwrap(),
        1
    );
    assert_eq!(
        sync_leases::live_nodes(store, now - 30_000).await.unwrap(),
        2
    );
    sync_leases::node_seen(store, "a", now, now - 10_000)
        .await
        .unwrap();
    assert_eq!(
        sync_leases::live_nodes(store, now - 30_000).await.unwrap(),
        1
    );
    sync_leases::node_gone(store, "a").await.unwrap();
    assert_eq!(sync_leases::live_nodes(store, 0).await.unwrap(), 0);
}
both_backends!(leases_take_renew_expire_and_carry_requests);

async fn the_server_syncs_a_linked_account_and_a_nudge_makes_it_immediate(backend: Backend) {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    // A sweep far longer than the deadlines: only the first pass and the nudge can index.
    let Some(app) = syncing_app(backend, Duration::from_secs(600)).await else {
        return;
    };
    let user = rig.create_user();
    let run = mailroom_testkit::token();
    append(&rig, &user, "INBOX", &message(&run, 1)).await;
    let acc = link(&app, &rig.account_body(&user)).await;

    // The first pass indexes what is there; the status went CONNECTING → OK.
    let first = format!("<{run}.1@example.test>");
    wait::until("the first pass", DEADLINE, || async {
        indexed(&app, &acc, &first).await.then_some(())
    })
    .await;
    wait_synced(&app, &acc).await;
    let src = source(&app, &acc).await;
    assert!(src.get("reason").is_none(), "{src}");
    // Linked as CONNECTING (no change to record), then the first pass's OK.
    assert_eq!(statuses(&app, &acc).await, ["OK"]);
    let lease = lease_of(&app, &acc).await.expect("a lease");
    assert_eq!(lease.owner, app.engine.sync.owner());

    // New mail is indexed (and announced) once the account is nudged.
    append(&rig, &user, "INBOX", &message(&run, 2)).await;
    let (s, body) = app.get(&format!("/api/v1/accounts/{acc}/sync")).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body,
        json!({"object": "AccountResync", "status": "SYNC_STARTED"})
    );
    let second = format!("<{run}.2@example.test>");
    wait::until("the nudged pass", DEADLINE, || async {
        indexed(&app, &acc, &second).await.then_some(())
    })
    .await;
    let received = events::of_type(&app.store, &app.workspace, "mail_received")
        .await
        .unwrap();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].1["message_id"], second.as_str());

    // A request written on the lease (as another process answering the API would) is picked
    // up by the heartbeat.
    append(&rig, &user, "INBOX", &message(&run, 3)).await;
    sync_leases::request_resync(&app.store, &acc, SystemClock.now_ms())
        .await
        .unwrap();
    let third = format!("<{run}.3@example.test>");
    wait::until("the pass asked through the lease", DEADLINE, || async {
        indexed(&app, &acc, &third).await.then_some(())
    })
    .await;

    // Unknown accounts are 404; the routes are the API's.
    let (s, e) = app
        .get("/api/v1/accounts/AAAAAAAAAAAAAAAAAAAAAA/sync")
        .await;
    assert_eq!(
        (s, e["type"].as_str()),
        (404, Some("errors/resource_not_found"))
    );
    let (s, e) = app
        .post_json(
            "/api/v1/accounts/AAAAAAAAAAAAAAAAAAAAAA/restart",
            &json!({}),
        )
        .await;
    assert_eq!(
        (s, e["type"].as_str()),
        (404, Some("errors/resource_not_found"))
    );
}
both_backends!(the_server_syncs_a_linked_account_and_a_nudge_makes_it_immediate);

async fn new_mail_is_indexed_by_the_sweep_without_a_nudge(backend: Backend) {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let Some(app) = syncing_app(backend, Duration::from_secs(1)).await else {
        return;
    };
    // A server without NOTIFY: IDLE watches INBOX only, so mail in Sent needs the sweep.
    let proxy = ImapProxy::start(&rig).await;
    proxy.strip_capabilities(&["NOTIFY"]);
    let user = rig.create_user();
    let acc = link(&app, &proxy.account_body(&user)).await;
    wait_synced(&app, &acc).await;
    let run = mailroom_testkit::token();
    append(&rig, &user, "Sent", &message(&run, 1)).await;
    let mid = format!("<{run}.1@example.test>");
    wait::until("the sweep", Duration::from_secs(15), || async {
        indexed(&app, &acc, &mid).await.then_some(())
    })
    .await;
}
both_backends!(new_mail_is_indexed_by_the_sweep_without_a_nudge);

/// Push, with the sweep out of the way (10 minutes): NOTIFY brings new mail in a folder that is
/// not INBOX, and IDLE (a server without NOTIFY) brings new mail in INBOX, each as one
/// `mail_received` event, within seconds.
async fn push_brings_new_mail_without_a_sweep(backend: Backend) {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let Some(app) = syncing_app(backend, Duration::from_secs(600)).await else {
        return;
    };
    let received = |mid: String| {
        let app = &app;
        async move {
            wait::until(&format!("mail_received for {mid}"), DEADLINE, || async {
                events::of_type(&app.store, &app.workspace, "mail_received")
                    .await
                    .unwrap()
                    .iter()
                    .any(|(_, p)| p["message_id"] == mid.as_str())
                    .then_some(())
            })
            .await
        }
    };
    let run = mailroom_testkit::token();

    // NOTIFY: a folder created after the first pass, then mail in it.
    let user = rig.create_user();
    let acc = link(&app, &rig.account_body(&user)).await;
    wait_synced(&app, &acc).await;
    let mut s = rig.imap(&user).await;
    s.create("Projects").await.expect("CREATE");
    wait::until("Projects indexed", DEADLINE, || async {
        index::get_folder_by_provider_id(&app.store, &app.workspace, &acc, "Projects")
            .await
            .unwrap()
            .filter(|f| f.last_synced_at.is_some())
    })
    .await;
    s.append("Projects", None, None, message(&run, 1))
        .await
        .expect("APPEND");
    received(format!("<{run}.1@example.test>")).await;
    let _ = s.logout().await;

    // IDLE: the same server without NOTIFY, mail in INBOX.
    let proxy = ImapProxy::start(&rig).await;
    proxy.strip_capabilities(&["NOTIFY"]);
    let other = rig.create_user();
    let acc2 = link(&app, &proxy.account_body(&other)).await;
    wait_synced(&app, &acc2).await;
    wait::until("an IDLE", DEADLINE, || async {
        (proxy.counts().idles > 0).then_some(())
    })
    .await;
    append(&rig, &other, "INBOX", &message(&run, 2)).await;
    received(format!("<{run}.2@example.test>")).await;
    assert_eq!(proxy.counts().notifies, 0, "{:?}", proxy.counts());
}
both_backends!(push_brings_new_mail_without_a_sweep);

async fn a_refused_login_is_credentials_until_reconnected(backend: Backend) {
    let Some(Linked {
        rig,
        app,
        proxy,
        mut user,
        acc,
    }) = linked_through_proxy(backend).await
    else {
        return;
    };

    // The user changes their password at the provider; the sessions mailroom holds go.
    let new_password = format!("pw-{}", mailroom_testkit::token());
    rig.set_password(&mut user, &new_password);
    proxy.disconnect_all();
    let src = wait_status(&app, &acc, "CREDENTIALS").await;
    assert!(
        src["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{src}"
    );

    // The loop stays alive (its lease is renewed) and parked: several sweeps and a nudge
    // later, no login was tried.
    stays_parked(&app, &acc, &proxy, "CREDENTIALS").await;

    // Sending is refused while the credentials are (a sync ERROR would not refuse it).
    let (s, e) = app
        .post_json(
            "/api/v1/emails",
            &json!({"account_id": acc, "to": [{"identifier": "x@example.test"}], "subject": "s", "body": "b"}),
        )
        .await;
    assert_eq!(
        (s, e["type"].as_str()),
        (401, Some("errors/disconnected_account")),
        "{e}"
    );

    // A reconnect with the new password resumes the sync.
    let (s, body) = app
        .post_json(
            &format!("/api/v1/accounts/{acc}"),
            &json!({"provider": "MAIL", "imap_password": new_password, "smtp_password": new_password}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let src = wait_status(&app, &acc, "OK").await;
    assert!(src.get("reason").is_none(), "{src}");
    let run = mailroom_testkit::token();
    append(&rig, &user, "INBOX", &message(&run, 1)).await;
    let mid = format!("<{run}.1@example.test>");
    wait::until("a pass after the reconnect", DEADLINE, || async {
        indexed(&app, &acc, &mid).await.then_some(())
    })
    .await;
    // Every change recorded once: the password change showed as CREDENTIALS (after an ERROR
    // if the closed sessions failed a pass first), and the reconnect restarted the loop once.
    let seen = wait::until("the statuses after the reconnect", DEADLINE, || async {
        let seen = statuses(&app, &acc).await;
        seen.ends_with(&["CREDENTIALS".into(), "CONNECTING".into(), "OK".into()])
            .then_some(seen)
    })
    .await;
    assert!(
        seen == ["OK", "CREDENTIALS", "CONNECTING", "OK"]
            || seen == ["OK", "ERROR", "CREDENTIALS", "CONNECTING", "OK"],
        "{seen:?}"
    );
}
both_backends!(a_refused_login_is_credentials_until_reconnected);

async fn a_server_dropping_after_login_sees_one_login_per_2s_and_restart_resumes(backend: Backend) {
    let Some(Linked {
        app, proxy, acc, ..
    }) = linked_through_proxy(backend).await
    else {
        return;
    };

    proxy.set_drop_after_login(true);
    proxy.disconnect_all();
    let before = proxy.login_times().len();
    let src = wait_status(&app, &acc, "ERROR").await;
    assert!(
        src["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{src}"
    );
    // Nudges do not shorten the backoff.
    for _ in 0..3 {
        let (s, _) = app.get(&format!("/api/v1/accounts/{acc}/sync")).await;
        assert_eq!(s, 200);
    }
    let logins = wait::until("three more logins", DEADLINE, || async {
        let l = proxy.login_times();
        (l.len() >= before + 3).then_some(l)
    })
    .await;
    let tried = &logins[before..];
    for pair in tried.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_secs(2),
            "two logins {gap:?} apart: {tried:?}"
        );
    }
    assert_eq!(source(&app, &acc).await["status"], "ERROR");

    // The server heals; a restart resumes at once (no waiting out the backoff).
    proxy.set_drop_after_login(false);
    let (s, body) = app
        .post_json(&format!("/api/v1/accounts/{acc}/restart"), &json!({}))
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body,
        json!({"object": "AccountRestarted", "account_id": acc})
    );
    wait_status(&app, &acc, "OK").await;
}
both_backends!(a_server_dropping_after_login_sees_one_login_per_2s_and_restart_resumes);

async fn deleting_an_account_removes_its_index_events_and_lease(backend: Backend) {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let Some(app) = syncing_app(backend, Duration::from_secs(1)).await else {
        return;
    };
    let user = rig.create_user();
    let acc = link(&app, &rig.account_body(&user)).await;
    wait_synced(&app, &acc).await;
    let run = mailroom_testkit::token();
    append(&rig, &user, "INBOX", &message(&run, 1)).await;
    let mid = format!("<{run}.1@example.test>");
    wait::until("the new mail", DEADLINE, || async {
        indexed(&app, &acc, &mid).await.then_some(())
    })
    .await;
    assert!(lease_of(&app, &acc).await.is_some());
    assert!(
        !events::of_type(&app.store, &app.workspace, "mail_received")
            .await
            .unwrap()
            .is_empty()
    );

    let (s, body) = app.delete(&format!("/api/v1/accounts/{acc}")).await;
    assert_eq!(s, 200, "{body}");
    assert!(!indexed(&app, &acc, &mid).await);
    let folders = index::list_folders(&app.store, &app.workspace, Some(&acc))
        .await
        .unwrap();
    assert!(folders.is_empty(), "{folders:?}");
    let left = events::of_type(&app.store, &app.workspace, "mail_received")
        .await
        .unwrap();
    assert!(left.is_empty(), "mail_received: {left:?}");
    // Of its status events, only the announcement of the deletion is left (for the webhooks).
    let left = events::of_type(&app.store, &app.workspace, "account_status")
        .await
        .unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].1["AccountStatus"]["message"], "DELETED");
    assert!(lease_of(&app, &acc).await.is_none());
    wait::until("the loop to stop", DEADLINE, || async {
        (!app.engine.sync.runs(&acc)).then_some(())
    })
    .await;
    assert!(lease_of(&app, &acc).await.is_none());
}
both_backends!(deleting_an_account_removes_its_index_events_and_lease);

async fn credentials_refused_elsewhere_park_the_loop_until_a_restart(backend: Backend) {
    let Some(Linked {
        app, proxy, acc, ..
    }) = linked_through_proxy(backend).await
    else {
        return;
    };

    // The SMTP side of a send (or a token refresh) found the credentials refused.
    let account = accounts::get_any(&app.store, &acc).await.unwrap().unwrap();
    mailroom_engine::tokens::mark_credentials(&app.store, &account, SystemClock.now_ms())
        .await
        .unwrap();
    let logins = proxy.login_times().len();
    let since = SystemClock.now_ms();
    wait::until("3 s of heartbeats", DEADLINE, || async {
        let l = lease_of(&app, &acc).await?;
        (l.heartbeat_at >= since + 3_000).then_some(())
    })
    .await;
    // Several sweeps later the sync neither tried the account nor called it OK again.
    assert_eq!(proxy.login_times().len(), logins);
    assert_eq!(source(&app, &acc).await["status"], "CREDENTIALS");

    let (s, _) = app
        .post_json(&format!("/api/v1/accounts/{acc}/restart"), &json!({}))
        .await;
    assert_eq!(s, 200);
    wait_status(&app, &acc, "OK").await;
}
both_backends!(credentials_refused_elsewhere_park_the_loop_until_a_restart);

/// A new IMAP account is `CONNECTING` from its link until its first pass, then `OK`.
async fn a_new_account_is_connecting_until_its_first_pass(backend: Backend) {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let Some(app) = syncing_app(backend, Duration::from_secs(600)).await else {
        return;
    };
    // Slow logins keep the first pass from finishing before we look.
    let proxy = ImapProxy::start(&rig).await;
    proxy.set_login_delay(Duration::from_secs(3));
    let user = rig.create_user();
    let acc = link(&app, &proxy.account_body(&user)).await;
    assert_eq!(source(&app, &acc).await["status"], "CONNECTING");
    wait_status(&app, &acc, "OK").await;
}
both_backends!(a_new_account_is_connecting_until_its_first_pass);

async fn a_server_that_keeps_refusing_the_sync_stops_it_until_a_restart(backend: Backend) {
    let Some(Linked {
        rig,
        app,
        proxy,
        user,
        acc,
    }) = linked_through_proxy(backend).await
    else {
        return;
    };
    let run = mailroom_testkit::token();
    append(&rig, &user, "INBOX", &message(&run, 1)).await;
    let known = format!("<{run}.1@example.test>");
    wait::until("the first message indexed", DEADLINE, || async {
        indexed(&app, &acc, &known).await.then_some(())
    })
    .await;

    // The server now answers the folder listing every pass starts with `NO`: not the login,
    // not "later". A few passes try again (ERROR), then the sync stops with the reason.
    proxy.refuse_commands(&["LIST"]);
    let (s, _) = app.get(&format!("/api/v1/accounts/{acc}/sync")).await;
    assert_eq!(s, 200);
    let src = wait_status(&app, &acc, "STOPPED").await;
    assert!(
        src["reason"].as_str().is_some_and(|r| r.contains("LIST")),
        "{src}"
    );
    let seen = statuses(&app, &acc).await;
    assert_eq!(seen, ["OK", "ERROR", "STOPPED"], "{seen:?}");

    // Stopped means stopped: sweeps and a nudge later, no login was tried.
    stays_parked(&app, &acc, &proxy, "STOPPED").await;
    // A refused listing is not "every folder is gone": the index keeps what it had.
    assert!(
        indexed(&app, &acc, &known).await,
        "the index lost a message"
    );

    // The server is fixed; a restart resumes the sync and new mail is indexed again.
    proxy.refuse_commands(&[]);
    let (s, body) = app
        .post_json(&format!("/api/v1/accounts/{acc}/restart"), &json!({}))
        .await;
    assert!(s == 200 || s == 202, "{s} {body}");
    let src = wait_status(&app, &acc, "OK").await;
    assert!(src.get("reason").is_none(), "{src}");
    append(&rig, &user, "INBOX", &message(&run, 2)).await;
    let mid = format!("<{run}.2@example.test>");
    wait::until("a pass after the restart", DEADLINE, || async {
        indexed(&app, &acc, &mid).await.then_some(())
    })
    .await;
    assert_eq!(
        statuses(&app, &acc).await,
        ["OK", "ERROR", "STOPPED", "CONNECTING", "OK"]
    );
}
both_backends!(a_server_that_keeps_refusing_the_sync_stops_it_until_a_restart);
