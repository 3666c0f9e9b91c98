//! Two real `mailroom serve` processes on one PostgreSQL database share the IMAP accounts
//! through sync leases: each owns some, no account is ever owned twice, and when one process
//! is SIGKILLed the other takes its accounts over within 30 s and keeps indexing their mail.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use mailroom_store::index::{self, MessageFilter};
use mailroom_store::{Backend, Store, accounts, sync_leases};
use mailroom_testkit::app::TEST_MASTER_KEY;
use mailroom_testkit::{MailRig, TestDb, wait};

mod common;
use common::{Server, keys_create};

const ACCOUNTS: usize = 6;

/// Owner → the accounts it holds a live lease on.
async fn owners(store: &Store) -> BTreeMap<String, BTreeSet<String>> {
    let now = mailroom_core::Clock::now_ms(&mailroom_core::SystemClock);
    let mut by_owner: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for l in sync_leases::all(store).await.unwrap() {
        if l.expires_at >= now {
            by_owner.entry(l.owner).or_default().insert(l.account_id);
        }
    }
    by_owner
}

async fn indexed(store: &Store, account: &str, mid: &str) -> bool {
    let a = accounts::get_any(store, account).await.unwrap().unwrap();
    !index::list_messages(
        store,
        &a.workspace_id,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_split_the_accounts_and_one_takes_over_after_a_sigkill() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let env: &[(&str, &str)] = &[
        ("MAILROOM_DATABASE_URL", &db.url),
        ("MAILROOM_MASTER_KEY", TEST_MASTER_KEY),
        ("MAILROOM_MAIL_ALLOW_PRIVATE", "true"),
        ("MAILROOM_TLS_INSECURE_SKIP_VERIFY", "true"),
        ("MAILROOM_SYNC_SWEEP_SECS", "2"),
    ];
    let first = Server::start(cwd, env);
    let key = keys_create(cwd, env);
    let client = reqwest::Client::new();
    let mut users = BTreeMap::new();
    for _ in 0..ACCOUNTS {
        let user = rig.create_user();
        let r = client
            .post(first.url("/api/v1/accounts"))
            .header("X-API-KEY", &key)
            .json(&rig.account_body(&user))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let id = r.json::<Value>().await.unwrap()["account_id"]
            .as_str()
            .unwrap()
            .to_owned();
        users.insert(id, user);
    }
    let store = Store::connect(&db.url).await.unwrap();
    // Alone, the first process takes every account.
    wait::until(
        "the first process owning all",
        Duration::from_secs(30),
        || async {
            let o = owners(&store).await;
            (o.len() == 1 && o.values().next().unwrap().len() == ACCOUNTS).then_some(())
        },
    )
    .await;

    let second = Server::start(cwd, env);
    // They split the accounts: both own some, every account is owned (by one: the lease is
    // the account's primary key, so "both own one" can only show as a missing account).
    let split = wait::until("the split", Duration::from_secs(40), || async {
        let o = owners(&store).await;
        let total: usize = o.values().map(BTreeSet::len).sum();
        (o.len() == 2 && total == ACCOUNTS && o.values().all(|a| !a.is_empty())).then_some(o)
    })
    .await;
    // And it holds: sampled across several heartbeats.
    let sampled_until = Instant::now() + Duration::from_secs(6);
    let samples = std::cell::Cell::new(0);
    wait::until(
        "several samples of a stable split",
        Duration::from_secs(20),
        || async {
            let o = owners(&store).await;
            let total: usize = o.values().map(BTreeSet::len).sum();
            assert!(total <= ACCOUNTS, "{o:?}");
            assert!(
                o.keys().all(|k| split.contains_key(k)),
                "a third owner: {o:?}"
            );
            if o.len() == 2 && total == ACCOUNTS {
                assert!(o.values().all(|a| !a.is_empty()), "{o:?}");
                samples.set(samples.get() + 1);
            }
            (samples.get() >= 5 && Instant::now() >= sampled_until).then_some(())
        },
    )
    .await;

    // SIGKILL the second process: its leases expire and the first takes them over.
    let before = owners(&store).await;
    second.kill9();
    let killed_at = Instant::now();
    let o = wait::until("the takeover", Duration::from_secs(30), || async {
        let o = owners(&store).await;
        (o.len() == 1 && o.values().next().unwrap().len() == ACCOUNTS).then_some(o)
    })
    .await;
    assert!(killed_at.elapsed() < Duration::from_secs(30));
    let survivor = o.keys().next().unwrap().clone();
    let orphaned: Vec<&String> = before
        .iter()
        .filter(|(owner, _)| **owner != survivor)
        .flat_map(|(_, a)| a)
        .collect();
    assert!(!orphaned.is_empty(), "{before:?}");

    // Mail delivered to an account the killed process synced is indexed by the survivor.
    let account = orphaned[0];
    let run = mailroom_testkit::token();
    let mid = format!("<{run}@example.test>");
    let raw = format!(
        "From: s@example.test\r\nTo: r@example.test\r\nSubject: takeover\r\nMessage-ID: {mid}\r\n\
         Date: Tue, 1 Dec 2026 12:00:00 +0000\r\n\r\nafter the crash\r\n"
    );
    let mut s = rig.imap(&users[account]).await;
    s.append("INBOX", None, None, raw.as_bytes())
        .await
        .expect("APPEND");
    let _ = s.logout().await;
    // The survivor first logs in to every account it took over (logins per host are capped),
    // then runs their passes: on a loaded 2-core CI machine that took over 30 s once.
    wait::until(
        "the mail indexed by the survivor",
        Duration::from_secs(60),
        || async { indexed(&store, account, &mid).await.then_some(()) },
    )
    .await;
    first.stop();
    store.close().await;
}
