//! The store and the vault, on both backends.

use mailroom_core::account::{AccountSettings, AccountType, SourceStatus};
use mailroom_core::{Clock, SystemClock};
use mailroom_store::accounts::{self, Credentials, NewAccount};
use mailroom_store::tenant::Tenant;
use mailroom_store::vault::VaultError;
use mailroom_store::{Backend, MasterKey, Store, StoreError, Vault, api_keys, workspaces};
use mailroom_testkit::{TestDb, both_backends};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

async fn open(backend: Backend) -> Option<(TestDb, Store)> {
    let db = TestDb::new(backend).await?;
    let store = Store::connect(&db.url).await.expect("connect");
    store.migrate().await.expect("migrate");
    Some((db, store))
}

fn now() -> i64 {
    SystemClock.now_ms()
}

pub async fn seed_account(
    store: &Store,
    vault: &Vault,
    ws: &str,
    password: &str,
    created_at: i64,
) -> String {
    let id = mailroom_core::new_id();
    let settings = AccountSettings::decode(
        AccountType::Mail,
        &json!({
            "imap_host": "imap.example.test", "imap_port": 993, "imap_user": "a@example.test",
            "imap_encryption": "ssl", "smtp_host": "smtp.example.test", "smtp_port": 465,
            "smtp_user": "a@example.test"
        })
        .to_string(),
    )
    .unwrap();
    let creds = Credentials::Mail {
        imap_password: SecretString::from(password.to_owned()),
        smtp_password: SecretString::from(format!("{password}-smtp")),
    };
    accounts::create(
        store,
        vault,
        NewAccount {
            id: &id,
            workspace_id: ws,
            account_type: AccountType::Mail,
            name: "a@example.test",
            status: SourceStatus::Ok,
            settings: &settings,
            credentials: &creds,
            window: None,
            now_ms: created_at,
        },
    )
    .await
    .expect("create account");
    id
}

fn imap_password(c: Credentials) -> String {
    match c {
        Credentials::Mail { imap_password, .. } => imap_password.expose_secret().to_owned(),
        other => panic!("MAIL credentials expected, got {other:?}"),
    }
}

async fn migrations_are_idempotent(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    store.migrate().await.expect("second migrate is a no-op");
    store.ping().await.expect("ping");
}
both_backends!(migrations_are_idempotent);

async fn api_keys_verify_only_the_right_secret(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    workspaces::ensure(&store, "w1", now()).await.unwrap();
    let key = api_keys::create(&store, "w1", "k", now()).await.unwrap();
    let id = api_keys::verify(&store, &key.token, now())
        .await
        .unwrap()
        .expect("valid key");
    assert_eq!(id.workspace_id, "w1");
    assert_eq!(id.key_id, key.key_id);
    let mut wrong = key.token.expose_secret().to_owned();
    // Change the last character of the secret (to one it is not).
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'Q' { 'R' } else { 'Q' });
    assert_eq!(
        api_keys::verify(&store, &SecretString::from(wrong), now())
            .await
            .unwrap(),
        Err(api_keys::Refused::Invalid)
    );
    assert_eq!(
        api_keys::verify(&store, &SecretString::from("no-dot".to_owned()), now())
            .await
            .unwrap(),
        Err(api_keys::Refused::Invalid)
    );
    // Only a hash is stored: the secret half is nowhere in the table.
    let secret = key
        .token
        .expose_secret()
        .split_once('.')
        .unwrap()
        .1
        .to_owned();
    let dump = dump_database(&store).await;
    assert!(!dump.contains(&secret));
}
both_backends!(api_keys_verify_only_the_right_secret);

/// Keys expire, are revoked for good, carry their scopes, and record their last use at most
/// once a minute (not a write per request).
async fn api_keys_expire_revoke_and_record_their_last_use(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let t0 = now();
    workspaces::ensure(&store, "w1", t0).await.unwrap();
    workspaces::ensure(&store, "w2", t0).await.unwrap();
    let new = |name, scopes, expires_at| api_keys::NewKey {
        workspace_id: "w1",
        name,
        scopes,
        expires_at,
        rate_per_second: None,
        accounts: None,
    };
    let reader = api_keys::Scopes::parse("read").unwrap();
    let short = api_keys::create_with(&store, new("short", reader, Some(t0 + 1_000)), t0)
        .await
        .unwrap();
    let id = api_keys::verify(&store, &short.token, t0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id.scopes, reader);
    assert_eq!(
        api_keys::verify(&store, &short.token, t0 + 1_000)
            .await
            .unwrap(),
        Err(api_keys::Refused::Expired)
    );

    let key = api_keys::create(&store, "w1", "long", t0 + 1)
        .await
        .unwrap();
    let other = api_keys::create(&store, "w2", "theirs", t0).await.unwrap();
    let last_used = |id: String| {
        let store = store.clone();
        async move {
            api_keys::list(&store, None)
                .await
                .unwrap()
                .into_iter()
                .find(|k| k.key_id == id)
                .unwrap()
                .last_used_at
        }
    };
    assert_eq!(last_used(key.key_id.clone()).await, None);
    api_keys::verify(&store, &key.token, t0)
        .await
        .unwrap()
        .unwrap();
    api_keys::verify(&store, &key.token, t0 + 59_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        last_used(key.key_id.clone()).await,
        Some(t0),
        "not rewritten within a minute"
    );
    api_keys::verify(&store, &key.token, t0 + 61_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last_used(key.key_id.clone()).await, Some(t0 + 61_000));

    let w1: Vec<String> = api_keys::list(&store, Some("w1"))
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(w1, ["short", "long"]);
    assert!(
        api_keys::revoke(&store, &key.key_id, t0 + 70_000)
            .await
            .unwrap()
    );
    assert!(
        api_keys::revoke(&store, &key.key_id, t0 + 80_000)
            .await
            .unwrap()
    );
    assert!(
        !api_keys::revoke(&store, "AAAAAAAAAAAAAAAAAAAAAA", t0)
            .await
            .unwrap()
    );
    assert_eq!(
        api_keys::verify(&store, &key.token, t0 + 71_000)
            .await
            .unwrap(),
        Err(api_keys::Refused::Revoked)
    );
    let revoked = api_keys::list(&store, Some("w1")).await.unwrap();
    assert_eq!(
        revoked[1].revoked_at,
        Some(t0 + 70_000),
        "the first revocation stays"
    );
    assert!(
        api_keys::verify(&store, &other.token, t0)
            .await
            .unwrap()
            .is_ok()
    );
}
both_backends!(api_keys_expire_revoke_and_record_their_last_use);

/// Every row of every table as text (to look for leaked secrets on PostgreSQL, where the
/// data files are not ours to read).
pub async fn dump_database(store: &Store) -> String {
    use sqlx::Row;
    let mut out = String::new();
    for table in ["workspaces", "api_keys", "vault_keys", "accounts"] {
        match store {
            Store::Sqlite(pool) => {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table}")))
                    .fetch_all(pool)
                    .await
                    .unwrap();
                for r in rows {
                    for i in 0..r.len() {
                        if let Ok(v) = r.try_get::<Vec<u8>, _>(i) {
                            out.push_str(&String::from_utf8_lossy(&v));
                        } else if let Ok(v) = r.try_get::<String, _>(i) {
                            out.push_str(&v);
                        }
                        out.push('|');
                    }
                }
            }
            Store::Postgres(pool) => {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT row_to_json(t)::text FROM {table} t"
                )))
                .fetch_all(pool)
                .await
                .unwrap();
                for r in rows {
                    let json: String = r.get(0);
                    out.push_str(&json);
                    // bytea appears hex-encoded in JSON; decode it too.
                    for part in json.split("\\\\x").skip(1) {
                        let hex: String =
                            part.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
                        let bytes: Vec<u8> = (0..hex.len() / 2)
                            .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
                            .collect();
                        out.push_str(&String::from_utf8_lossy(&bytes));
                    }
                }
            }
        }
    }
    out
}

async fn vault_seals_and_survives_a_restart(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    workspaces::ensure(&store, "w", now()).await.unwrap();
    let (master, b64) = MasterKey::generate();
    let vault = Vault::open(store.clone(), &master, now()).await.unwrap();
    let id = seed_account(&store, &vault, "w", "correct-horse-battery", now()).await;

    // A new process with the same master key opens it.
    let again = Vault::open(store.clone(), &MasterKey::from_base64(&b64).unwrap(), now())
        .await
        .unwrap();
    let creds = accounts::credentials(&store, &again, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(imap_password(creds), "correct-horse-battery");

    // A wrong master key is refused when the vault opens, not later.
    let (other, _) = MasterKey::generate();
    let err = Vault::open(store.clone(), &other, now()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Vault(VaultError::WrongMasterKey)),
        "{err}"
    );

    // The password is in no column of any table.
    assert!(
        !dump_database(&store)
            .await
            .contains("correct-horse-battery")
    );
}
both_backends!(vault_seals_and_survives_a_restart);

async fn rotation_reseals_every_secret_under_the_new_key(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    workspaces::ensure(&store, "w", now()).await.unwrap();
    let (master, _) = MasterKey::generate();
    let vault = Vault::open(store.clone(), &master, now()).await.unwrap();
    let ids: Vec<String> = {
        let mut v = vec![];
        for i in 0..3 {
            v.push(seed_account(&store, &vault, "w", &format!("secret-{i}"), now()).await);
        }
        v
    };
    let before = Vault::blob_key_id(
        &accounts::sealed_blob(&store, &ids[0])
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();

    // A second "node" that opened the vault before the rotation keeps working afterwards.
    let other_node = Vault::open(store.clone(), &master, now()).await.unwrap();
    let rotation = vault.rotate(now()).await.unwrap();
    assert_eq!(rotation.resealed, 3);
    assert_ne!(rotation.new_key_id, before);
    for (i, id) in ids.iter().enumerate() {
        let blob = accounts::sealed_blob(&store, id).await.unwrap().unwrap();
        assert_eq!(Vault::blob_key_id(&blob).unwrap(), rotation.new_key_id);
        let creds = accounts::credentials(&store, &other_node, id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(imap_password(creds), format!("secret-{i}"));
    }
    // New secrets from the other node are sealed under the new key too.
    let fresh = seed_account(&store, &other_node, "w", "after-rotation", now()).await;
    let blob = accounts::sealed_blob(&store, &fresh)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(Vault::blob_key_id(&blob).unwrap(), rotation.new_key_id);
}
both_backends!(rotation_reseals_every_secret_under_the_new_key);

async fn concurrent_first_opens_make_one_active_key(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let (_, b64) = MasterKey::generate();
    let opens = (0..4).map(|_| {
        let store = store.clone();
        let b64 = b64.clone();
        tokio::spawn(async move {
            Vault::open(store, &MasterKey::from_base64(&b64).unwrap(), now()).await
        })
    });
    for h in opens {
        h.await.unwrap().expect("every node opens the vault");
    }
    let active: i64 = match &store {
        Store::Sqlite(p) => sqlx::query_scalar("SELECT COUNT(*) FROM vault_keys WHERE active")
            .fetch_one(p)
            .await
            .unwrap(),
        Store::Postgres(p) => sqlx::query_scalar("SELECT COUNT(*) FROM vault_keys WHERE active")
            .fetch_one(p)
            .await
            .unwrap(),
    };
    assert_eq!(active, 1);
}
both_backends!(concurrent_first_opens_make_one_active_key);

async fn a_blob_cannot_be_moved_to_another_account(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    workspaces::ensure(&store, "w", now()).await.unwrap();
    let (master, _) = MasterKey::generate();
    let vault = Vault::open(store.clone(), &master, now()).await.unwrap();
    let a = seed_account(&store, &vault, "w", "pw-a", now()).await;
    let b = seed_account(&store, &vault, "w", "pw-b", now()).await;
    let blob_a = accounts::sealed_blob(&store, &a).await.unwrap().unwrap();
    match &store {
        Store::Sqlite(p) => {
            sqlx::query("UPDATE accounts SET credentials = $1 WHERE id = $2")
                .bind(&blob_a)
                .bind(&b)
                .execute(p)
                .await
                .unwrap();
        }
        Store::Postgres(p) => {
            sqlx::query("UPDATE accounts SET credentials = $1 WHERE id = $2")
                .bind(&blob_a)
                .bind(&b)
                .execute(p)
                .await
                .unwrap();
        }
    }
    let err = accounts::credentials(&store, &vault, &b).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Vault(VaultError::Tampered)),
        "{err}"
    );
}
both_backends!(a_blob_cannot_be_moved_to_another_account);

async fn account_pages_are_newest_first_and_scoped(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    workspaces::ensure(&store, "w", now()).await.unwrap();
    workspaces::ensure(&store, "other", now()).await.unwrap();
    let (master, _) = MasterKey::generate();
    let vault = Vault::open(store.clone(), &master, now()).await.unwrap();
    // Two accounts share a timestamp: the id breaks the tie, so nothing is skipped.
    let a = seed_account(&store, &vault, "w", "x", 1_000).await;
    let b = seed_account(&store, &vault, "w", "x", 2_000).await;
    let c = seed_account(&store, &vault, "w", "x", 2_000).await;
    seed_account(&store, &vault, "other", "x", 3_000).await;
    let page1 = accounts::list(&store, &Tenant::workspace("w"), None, 2)
        .await
        .unwrap();
    assert_eq!(page1.len(), 2);
    let last = page1.last().unwrap();
    let pos = mailroom_core::cursor::Position {
        last_id: last.id.to_string(),
        last_date: last.created_at,
    };
    let page2 = accounts::list(&store, &Tenant::workspace("w"), Some(&pos), 2)
        .await
        .unwrap();
    let mut all: Vec<String> = page1
        .iter()
        .chain(page2.iter())
        .map(|a| a.id.to_string())
        .collect();
    assert_eq!(all.len(), 3);
    assert_eq!(all.last().unwrap(), &a, "oldest last");
    all.sort();
    let mut want = vec![a, b, c];
    want.sort();
    assert_eq!(all, want);
    assert!(
        accounts::get(&store, "other", &want[0])
            .await
            .unwrap()
            .is_none(),
        "scoped to the workspace"
    );
}
both_backends!(account_pages_are_newest_first_and_scoped);
