//! Keys bound to accounts (they see nothing else: 404) and the audit log (`GET /audit`, what it
//! records and never records, its retention).

use std::time::Duration;

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use mailroom_core::account::{AccountSettings, AccountType, SourceStatus};
use mailroom_core::mail::{FolderRole, MailOrigin};
use mailroom_core::new_id;
use mailroom_engine::audit_retention::{self, AuditRetention};
use mailroom_store::StoreError;
use mailroom_store::accounts::{self, Credentials, NewAccount};
use mailroom_store::api_keys::{self, NewKey, Scopes};
use mailroom_store::audit::{self, Action, Filter, NewEntry, Origin};
use mailroom_store::index::{self, NewFolder, NewMessage};
use mailroom_store::outbox::{self, NewJob};
use mailroom_store::tenant::Tenant;
use mailroom_testkit::app::{TestApp, assert_error, spawn_on};
use mailroom_testkit::smtp_fault::{FaultSmtp, Mode, Stage};
use mailroom_testkit::{Backend, MailRig, TestDb, both_backends, spawn_app, wait};

/// An IMAP/SMTP account written straight to the store (no server behind it: these tests only
/// look it up).
async fn stored_account(app: &TestApp) -> String {
    let id = new_id();
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
        imap_password: SecretString::from("pw".to_owned()),
        smtp_password: SecretString::from("pw".to_owned()),
    };
    accounts::create(
        &app.store,
        &app.vault,
        NewAccount {
            id: &id,
            workspace_id: &app.workspace,
            account_type: AccountType::Mail,
            name: "a@example.test",
            status: SourceStatus::Ok,
            settings: &settings,
            credentials: &creds,
            window: None,
            now_ms: app.engine.clock.now_ms(),
        },
    )
    .await
    .unwrap();
    id
}

/// What an account holds that routes name by id: a folder, a message in it, a scheduled send.
struct Held {
    folder: String,
    message: String,
    job: String,
}

async fn hold(app: &TestApp, account: &str) -> Held {
    let now = app.engine.clock.now_ms();
    let folder = index::upsert_folder(
        &app.store,
        NewFolder {
            id: &new_id(),
            workspace_id: &app.workspace,
            account_id: account,
            name: "INBOX",
            role: FolderRole::Inbox,
            provider_id: "INBOX",
            now_ms: now,
        },
    )
    .await
    .unwrap()
    .id;
    let provider_id = new_id();
    let message = index::upsert_message(
        &app.store,
        NewMessage {
            id: &new_id(),
            workspace_id: &app.workspace,
            account_id: account,
            provider_id: &provider_id,
            message_id: Some(&format!("<{provider_id}@example.test>")),
            in_reply_to: None,
            references: &[],
            thread_id: &provider_id,
            subject: "held",
            from: None,
            to: &[],
            cc: &[],
            bcc: &[],
            reply_to: &[],
            date: now,
            read: false,
            size: 10,
            has_attachments: false,
            attachments: &[],
            body_html: None,
            body_text: Some("held"),
            headers: None,
            origin: MailOrigin::External,
            tracking_id: None,
            folder: Some((&folder, Some(1))),
            now_ms: now,
        },
    )
    .await
    .unwrap()
    .id;
    let job = new_id();
    outbox::insert(
        &app.store,
        NewJob {
            id: &job,
            workspace_id: &app.workspace,
            account_id: account,
            idempotency_key: None,
            request_hash: b"h",
            message_id: &format!("<{job}@example.test>"),
            thread_refs: &[],
            subject: "s",
            recipients: &["r@example.test".to_owned()],
            envelope_from: "a@example.test",
            raw: b"Subject: s\r\n\r\nb",
            max_attempts: 1,
            // Scheduled far ahead: the worker leaves it alone.
            give_up_at: now + 400 * 86_400_000,
            now_ms: now,
            send_at: Some(now + 365 * 86_400_000),
            lease: ("", 0),
            send_gate: None,
        },
    )
    .await
    .unwrap();
    Held {
        folder,
        message,
        job,
    }
}

async fn bound_key(app: &TestApp, accounts: &[String]) -> Result<String, StoreError> {
    let k = api_keys::create_with(
        &app.store,
        NewKey {
            workspace_id: &app.workspace,
            name: "bound",
            scopes: Scopes::ALL,
            expires_at: None,
            rate_per_second: None,
            accounts: Some(accounts),
        },
        app.engine.clock.now_ms(),
    )
    .await?;
    Ok(k.token.expose_secret().to_owned())
}

async fn call(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = app
        .client
        .request(method, app.url(path))
        .header("X-API-KEY", key);
    if let Some(b) = body {
        req = req.json(b);
    }
    app.call(req).await
}

/// Every account-scoped route, walked from the OpenAPI document with a key bound to another
/// account: each answers as if the account and what it holds did not exist. A route added
/// later with an id this walk has no object for fails here until it is added.
async fn a_bound_key_sees_nothing_of_other_accounts(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mine = stored_account(&app).await;
    let theirs = stored_account(&app).await;
    let my_held = hold(&app, &mine).await;
    let their_held = hold(&app, &theirs).await;
    let (s, hook) = app
        .post_json(
            "/api/v1/webhooks",
            &json!({"request_url": "https://hooks.example.test/x", "source": "email", "account_ids": [theirs]}),
        )
        .await;
    assert_eq!(s, 201, "{hook}");
    let their_hook = hook["webhook_id"].as_str().unwrap().to_owned();
    let key = bound_key(&app, std::slice::from_ref(&mine)).await.unwrap();

    // The unbound key sees their objects: the 404s below are the binding's doing.
    for path in [
        format!("/api/v1/accounts/{theirs}"),
        format!("/api/v1/emails/{}", their_held.message),
        format!("/api/v1/folders/{}", their_held.folder),
        format!("/api/v1/outbox/{}", their_held.job),
        format!("/api/v1/webhooks/{their_hook}"),
    ] {
        assert_eq!(app.get(&path).await.0, 200, "{path} with the unbound key");
    }

    let id_of = |param: &str| -> String {
        match param {
            "account_id" => theirs.clone(),
            "email_id" => their_held.message.clone(),
            "folder_id" => their_held.folder.clone(),
            "tracking_id" => their_held.job.clone(),
            "webhook_id" => their_hook.clone(),
            // Under another account's email or webhook: refused before the part is looked at.
            "attachment_id" | "delivery_id" => new_id(),
            other => panic!("no object of another account for path parameter `{other}`: add one"),
        }
    };
    let (_, doc) = app.get("/openapi.json").await;
    let mut walked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let m: Method = method.to_uppercase().parse().unwrap();
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let named = |place: &str| -> Vec<String> {
                params
                    .iter()
                    .filter(|p| p["in"] == place)
                    .map(|p| p["name"].as_str().unwrap().to_owned())
                    .collect()
            };
            let (in_path, in_query) = (named("path"), named("query"));
            let body = json!({"enabled": false, "unread": true, "account_id": theirs});
            let (target, expect) = if !in_path.is_empty() {
                let mut p = path.clone();
                for name in &in_path {
                    p = p.replace(&format!("{{{name}}}"), &id_of(name));
                }
                (p, (404, "resource_not_found"))
            } else if in_query.iter().any(|q| q == "account_id") && m == Method::GET {
                (
                    format!("{path}?account_id={theirs}"),
                    (404, "resource_not_found"),
                )
            } else {
                // The routes naming the account in their body, or making one.
                let expect = match (m.as_str(), path.as_str()) {
                    ("POST", "/api/v1/emails") | ("POST", "/api/v1/drafts") => {
                        (404, "resource_not_found")
                    }
                    ("POST", "/api/v1/accounts") => (403, "insufficient_permissions"),
                    ("POST", "/api/v1/hosted/accounts/link") | ("POST", "/api/v1/webhooks") => {
                        continue; // below, with their own bodies
                    }
                    ("GET", _) => continue, // the lists: below
                    other => panic!("{other:?}: say what a bound key gets here"),
                };
                (path.clone(), expect)
            };
            // A well-formed link request: the refusal is the binding's, not the body's.
            let body = match target.as_str() {
                "/api/v1/accounts" => {
                    json!({"provider": "GOOGLE_OAUTH", "access_token": "a", "refresh_token": "r"})
                }
                "/api/v1/emails" | "/api/v1/drafts" => json!({"account_id": theirs,
                    "to": [{"identifier": "x@example.test"}], "subject": "s", "body": "b"}),
                _ => body,
            };
            let body = (m != Method::GET && m != Method::DELETE).then_some(&body);
            let r = call(&app, &key, m.clone(), &target, body).await;
            assert_error(&r, expect.0, expect.1);
            walked += 1;
        }
    }
    assert!(walked >= 20, "walked only {walked} routes");

    // A hosted link can reconnect its accounts only, and not create one.
    let link = |body: Value| {
        let key = key.clone();
        let app = &app;
        async move {
            call(
                app,
                &key,
                Method::POST,
                "/api/v1/hosted/accounts/link",
                Some(&body),
            )
            .await
        }
    };
    let base = json!({"expiresOn": "2099-01-01T00:00:00.000Z", "api_url": "http://127.0.0.1", "providers": "*"});
    let mut create = base.clone();
    create["type"] = json!("create");
    assert_error(&link(create).await, 403, "insufficient_permissions");
    let mut reconnect = base.clone();
    reconnect["type"] = json!("reconnect");
    reconnect["reconnect_account"] = json!(theirs);
    assert_error(&link(reconnect.clone()).await, 404, "resource_not_found");
    reconnect["reconnect_account"] = json!(mine);
    assert_eq!(link(reconnect).await.0, 201);

    // A webhook on their account is refused exactly as one on an account that does not exist.
    let hook_on = |account: String| json!({"request_url": "https://hooks.example.test/y", "source": "email", "account_ids": [account]});
    let theirs_answer = call(
        &app,
        &key,
        Method::POST,
        "/api/v1/webhooks",
        Some(&hook_on(theirs.clone())),
    )
    .await;
    let missing = new_id();
    let missing_answer = call(
        &app,
        &key,
        Method::POST,
        "/api/v1/webhooks",
        Some(&hook_on(missing.clone())),
    )
    .await;
    assert_error(&theirs_answer, 400, "invalid_parameters");
    assert_eq!(
        theirs_answer.1["detail"]
            .as_str()
            .unwrap()
            .replace(&theirs, "X"),
        missing_answer.1["detail"]
            .as_str()
            .unwrap()
            .replace(&missing, "X")
    );
    // Without account_ids, a bound key's webhook is limited to its accounts.
    let (s, own) = call(
        &app,
        &key,
        Method::POST,
        "/api/v1/webhooks",
        Some(&json!({"request_url": "https://hooks.example.test/z", "source": "email"})),
    )
    .await;
    assert_eq!(s, 201, "{own}");
    let own_id = own["webhook_id"].as_str().unwrap().to_owned();
    let (s, seen) = call(
        &app,
        &key,
        Method::GET,
        &format!("/api/v1/webhooks/{own_id}"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{seen}");
    let limited_to = seen["account_ids"].to_string();
    assert!(
        limited_to.contains(&mine) && !limited_to.contains(&theirs),
        "{seen}"
    );

    // The lists hold its accounts' rows only.
    for (path, want) in [
        ("/api/v1/accounts", mine.clone()),
        ("/api/v1/emails", my_held.message.clone()),
        ("/api/v1/folders", my_held.folder.clone()),
        ("/api/v1/outbox", my_held.job.clone()),
        ("/api/v1/webhooks", own_id.clone()),
    ] {
        let (s, list) = call(&app, &key, Method::GET, path, None).await;
        assert_eq!(s, 200, "{path}: {list}");
        let text = list.to_string();
        assert!(text.contains(&want), "{path} lists {want}: {list}");
        for other in [
            &theirs,
            &their_held.message,
            &their_held.folder,
            &their_held.job,
            &their_hook,
        ] {
            assert!(
                !text.contains(other.as_str()),
                "{path} shows {other}: {list}"
            );
        }
    }
    let (s, log) = call(&app, &key, Method::GET, "/api/v1/audit", None).await;
    assert_eq!(s, 200, "{log}");
    let items = log["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(
        items.iter().all(|e| e["account_id"] == json!(mine)),
        "{log}"
    );

    // Binding to an account the workspace does not have is refused, and nothing is made.
    let before = api_keys::list(&app.store, Some(&app.workspace))
        .await
        .unwrap();
    let e = bound_key(&app, &[mine.clone(), new_id()])
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::UnknownAccount { .. }), "{e}");
    let after = api_keys::list(&app.store, Some(&app.workspace))
        .await
        .unwrap();
    assert_eq!(before.len(), after.len(), "no half-made key");
    let listed = after.iter().find(|k| k.name == "bound").unwrap();
    assert_eq!(listed.accounts, Some(vec![mine.clone()]));
    // A bound key whose accounts are all gone sees nothing, never everything.
    let (s, _) = app.delete(&format!("/api/v1/accounts/{mine}")).await;
    assert_eq!(s, 200);
    let (_, list) = call(&app, &key, Method::GET, "/api/v1/accounts", None).await;
    assert_eq!(list["items"], json!([]));
    let (_, list) = call(&app, &key, Method::GET, "/api/v1/emails", None).await;
    assert_eq!(list["items"], json!([]));
}
both_backends!(a_bound_key_sees_nothing_of_other_accounts);

/// Revoked through one node, refused by another serving the same database within a second.
async fn a_revoked_key_is_refused_by_a_second_node_within_a_second(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let second = spawn_on(app.db.share(), |_| {}).await;
    // The first node's key, presented to the second node.
    let on_second = || {
        app.call(
            app.client
                .get(second.url("/api/v1/accounts"))
                .header("X-API-KEY", &app.api_key),
        )
    };
    assert_eq!(on_second().await.0, 200);
    let id = app.api_key.split_once('.').unwrap().0.to_owned();
    assert!(
        api_keys::revoke(&app.store, &id, app.engine.clock.now_ms())
            .await
            .unwrap()
    );
    let r = wait::until(
        "the second node refuses the revoked key",
        Duration::from_secs(1),
        || async {
            let r = on_second().await;
            (r.0 == 401).then_some(r)
        },
    )
    .await;
    assert_error(&r, 401, "invalid_credentials");
}
both_backends!(a_revoked_key_is_refused_by_a_second_node_within_a_second);

fn key_actor(app: &TestApp) -> String {
    format!("key:{}", app.api_key.split_once('.').unwrap().0)
}

/// Webhook changes and key changes are audited with their actor, request id and address; the
/// filters and the cursor; a scope short of `manage` cannot read the log.
async fn webhook_and_key_changes_filters_and_cursor(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let account = stored_account(&app).await;
    let send = |method: Method, path: &str, rid: &str, body: Option<Value>| {
        let mut req = app
            .request(method, path)
            .header("x-request-id", rid)
            .header("x-forwarded-for", "198.51.100.9, 203.0.113.7");
        if let Some(b) = body {
            req = req.json(&b);
        }
        app.call(req)
    };
    let (s, hook) = send(
        Method::POST,
        "/api/v1/webhooks",
        "rid-create",
        Some(json!({"request_url": "https://hooks.example.test/secret-token-in-url", "source": "email", "account_ids": [account],
            "headers": [{"key": "Authorization", "value": "Bearer very-secret"}]})),
    )
    .await;
    assert_eq!(s, 201, "{hook}");
    let hook_id = hook["webhook_id"].as_str().unwrap();
    let (s, _) = send(
        Method::PATCH,
        &format!("/api/v1/webhooks/{hook_id}"),
        "rid-patch",
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = send(
        Method::DELETE,
        &format!("/api/v1/webhooks/{hook_id}"),
        "rid-delete",
        None,
    )
    .await;
    assert_eq!(s, 200);
    let created = api_keys::create(&app.store, &app.workspace, "k2", app.engine.clock.now_ms())
        .await
        .unwrap();
    api_keys::revoke(&app.store, &created.key_id, app.engine.clock.now_ms())
        .await
        .unwrap();
    // Revoking again writes no second entry.
    api_keys::revoke(&app.store, &created.key_id, app.engine.clock.now_ms())
        .await
        .unwrap();

    let (s, log) = app.get("/api/v1/audit").await;
    assert_eq!(s, 200, "{log}");
    assert_eq!(log["object"], "AuditEventList");
    let items: Vec<&Value> = log["items"].as_array().unwrap().iter().collect();
    let actions: Vec<&str> = items
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    // Newest first; the test's own key was created before the app served.
    assert_eq!(
        actions,
        [
            "key.revoked",
            "key.created",
            "webhook.deleted",
            "webhook.updated",
            "webhook.created",
            "key.created"
        ]
    );
    for (e, rid) in items[2..5]
        .iter()
        .zip(["rid-delete", "rid-patch", "rid-create"])
    {
        assert_eq!(e["object"], "AuditEvent");
        assert_eq!(e["actor"], json!(key_actor(&app)));
        assert_eq!(e["request_id"], rid);
        assert_eq!(
            e["source_ip"], "203.0.113.7",
            "the rightmost public address"
        );
        assert_eq!(e["target"], hook_id);
        assert_eq!(e["account_id"], json!(account));
        assert!(e["date"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(items[3]["details"]["changed"], json!(["enabled"]));
    assert_eq!(items[0]["actor"], "cli");
    assert_eq!(items[0]["target"], json!(created.key_id));
    let text = log.to_string();
    for secret in [
        "secret-token-in-url",
        "very-secret",
        created.token.expose_secret(),
    ] {
        assert!(!text.contains(secret), "{secret} in {log}");
    }

    // Filters.
    let only = |q: &str| {
        let q = q.to_owned();
        let app = &app;
        async move {
            let (s, l) = app.get(&format!("/api/v1/audit?{q}")).await;
            assert_eq!(s, 200, "{q}: {l}");
            l["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["action"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(only("action=webhook.updated").await, ["webhook.updated"]);
    assert_eq!(only(&format!("account_id={account}")).await.len(), 3);
    assert_eq!(
        only("actor=cli").await,
        ["key.revoked", "key.created", "key.created"]
    );
    assert_eq!(only("after=2099-01-01").await.len(), 0);
    assert_eq!(only("before=2001-01-01").await.len(), 0);
    assert_eq!(only("after=2001-01-01").await.len(), 6);
    // A well-formed cursor of another list (an email id as its position): 400, not a 500.
    let email_cursor = mailroom_core::cursor::Cursor {
        limit: 2,
        cursor: mailroom_core::cursor::Position {
            last_id: "zYnh13HWV76_G3KyE-cAyg".into(),
            last_date: 1_700_000_000_000,
        },
        query: vec![],
    }
    .encode();
    let foreign = format!("cursor={}", urlencode(&email_cursor));
    for bad in [
        "action=account.hacked",
        "limit=0",
        "limit=251",
        "after=yesterday",
        "cursor=notacursor",
        foreign.as_str(),
    ] {
        assert_error(
            &app.get(&format!("/api/v1/audit?{bad}")).await,
            400,
            "invalid_parameters",
        );
    }
    // The cursor walks every entry once, in order, and carries the filters.
    let mut seen = vec![];
    let mut path = "/api/v1/audit?limit=2&actor=cli".to_owned();
    loop {
        let (s, page) = app.get(&path).await;
        assert_eq!(s, 200, "{page}");
        for e in page["items"].as_array().unwrap() {
            seen.push(e["id"].as_str().unwrap().to_owned());
        }
        match page["cursor"].as_str() {
            Some(c) => path = format!("/api/v1/audit?cursor={}", urlencode(c)),
            None => break,
        }
    }
    assert_eq!(seen.len(), 3);
    let mut all = vec![];
    let mut path = "/api/v1/audit?limit=1".to_owned();
    loop {
        let (_, page) = app.get(&path).await;
        for e in page["items"].as_array().unwrap() {
            all.push(e["action"].as_str().unwrap().to_owned());
        }
        match page["cursor"].as_str() {
            Some(c) => path = format!("/api/v1/audit?cursor={}", urlencode(c)),
            None => break,
        }
    }
    assert_eq!(all, actions);

    // Reading the log takes `manage`; another workspace sees none of it.
    let reader = api_keys::create_with(
        &app.store,
        NewKey {
            workspace_id: &app.workspace,
            name: "reader",
            scopes: Scopes::parse("read,send").unwrap(),
            expires_at: None,
            rate_per_second: None,
            accounts: None,
        },
        app.engine.clock.now_ms(),
    )
    .await
    .unwrap();
    assert_error(
        &call(
            &app,
            reader.token.expose_secret(),
            Method::GET,
            "/api/v1/audit",
            None,
        )
        .await,
        403,
        "insufficient_permissions",
    );
    let other = app.other_workspace_key().await;
    let (_, theirs) = call(&app, &other, Method::GET, "/api/v1/audit", None).await;
    let theirs: Vec<&str> = theirs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(theirs, ["key.created"], "only its own key's creation");
}
both_backends!(webhook_and_key_changes_filters_and_cursor);

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Entries older than the retention go, in batches, by the background task; newer ones stay.
async fn retention_prunes_old_entries_in_batches(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = spawn_on(db, |s| {
        s.audit = AuditRetention {
            keep: Some(Duration::from_secs(86_400)),
            interval: Duration::from_millis(100),
            batch: 2,
        }
    })
    .await;
    let now = app.engine.clock.now_ms();
    let cli = Origin::cli();
    let entry = |at: i64| NewEntry {
        workspace_id: &app.workspace,
        action: Action::KeyCreated,
        origin: &cli,
        account_id: None,
        target: Some("old"),
        details: json!({}),
        now_ms: at,
    };
    for days in [2, 3, 5, 30, 400] {
        audit::record(&app.store, entry(now - days * 86_400_000))
            .await
            .unwrap();
    }
    audit::record(&app.store, entry(now - 3_600_000))
        .await
        .unwrap();
    let all = Tenant::workspace(&app.workspace);
    let left = wait::until(
        "the retention task prunes",
        Duration::from_secs(10),
        || async {
            let rows = audit::list(&app.store, &all, &Filter::default(), None, 100)
                .await
                .unwrap();
            (!rows.iter().any(|e| e.at < now - 86_400_000)).then_some(rows)
        },
    )
    .await;
    // The hour-old entry and the test key's creation stay.
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().any(|e| e.at == now - 3_600_000));
    // Without retention nothing is pruned.
    let keep_all = app.engine.clone().with_audit_retention(AuditRetention {
        keep: None,
        ..AuditRetention::default()
    });
    audit::record(&app.store, entry(now - 900 * 86_400_000))
        .await
        .unwrap();
    assert_eq!(audit_retention::prune(&keep_all).await.unwrap(), 0);
}
both_backends!(retention_prunes_old_entries_in_batches);

/// The life cycle of an IMAP/SMTP account against the real Dovecot and Postfix: linked,
/// reconnected, a send accepted and sent, a send refused, the credentials refused, deleted;
/// in order, with actor, request id and address, and no password, address, subject or body in
/// any stored row.
async fn the_audit_trail_of_an_account_life_cycle(backend: Backend) {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (mut sender, to) = (rig.create_user(), rig.create_user());
    let fault = FaultSmtp::start(rig.clone()).await;
    let mut body = rig.account_body(&sender);
    body["smtp_port"] = json!(fault.port());
    body["smtp_encryption"] = json!("starttls");
    let req = |m: Method, path: &str, rid: &str| {
        app.request(m, path)
            .header("x-request-id", rid)
            .header("x-forwarded-for", "203.0.113.7")
    };
    let (s, created) = app
        .call(req(Method::POST, "/api/v1/accounts", "rid-link").json(&body))
        .await;
    assert_eq!(s, 201, "{created}");
    let account = created["account_id"].as_str().unwrap().to_owned();
    let password = sender.password.clone();
    let (s, r) = app
        .call(
            req(
                Method::POST,
                &format!("/api/v1/accounts/{account}"),
                "rid-reconnect",
            )
            .json(&json!({"imap_password": password, "smtp_password": password})),
        )
        .await;
    assert_eq!(s, 200, "{r}");

    let subject = format!("audit subject {}", mailroom_testkit::token());
    let body_text = format!("audit body {}", mailroom_testkit::token());
    let mail = json!({"account_id": account, "to": [{"identifier": to.address}], "subject": subject, "body": body_text});
    let (s, sent) = app
        .call(req(Method::POST, "/api/v1/emails", "rid-send").json(&mail))
        .await;
    assert_eq!(s, 201, "{sent}");
    let sent_id = sent["tracking_id"].as_str().unwrap().to_owned();

    fault.set_mode(Mode::Reply {
        stage: Stage::Rcpt,
        code: 550,
        text: "5.1.1 Recipient address rejected: User unknown".into(),
    });
    let r = app
        .call(req(Method::POST, "/api/v1/emails", "rid-refused").json(&mail))
        .await;
    assert_error(&r, 422, "recipient_rejected");
    fault.set_mode(Mode::Forward);

    // The password changes behind mailroom's back: the next send finds it refused.
    let new_pw = format!("rotated-{}", mailroom_testkit::token());
    rig.set_password(&mut sender, &new_pw);
    let (s, queued) = app
        .call(req(Method::POST, "/api/v1/emails", "rid-disconnected").json(&mail))
        .await;
    assert_eq!(s, 202, "{queued}");
    let (s, _) = app
        .call(req(
            Method::DELETE,
            &format!("/api/v1/accounts/{account}"),
            "rid-delete",
        ))
        .await;
    assert_eq!(s, 200);

    let (_, log) = app
        .get(&format!("/api/v1/audit?account_id={account}&limit=250"))
        .await;
    let mut items: Vec<Value> = log["items"].as_array().unwrap().clone();
    items.reverse();
    let trail: Vec<(String, String, String)> = items
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
                e["request_id"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    let me = key_actor(&app);
    let want: Vec<(String, String, String)> = [
        ("account.linked", me.as_str(), "rid-link"),
        ("account.reconnected", &me, "rid-reconnect"),
        ("send.accepted", &me, "rid-send"),
        ("send.sent", &me, "rid-send"),
        ("send.accepted", &me, "rid-refused"),
        ("send.refused", &me, "rid-refused"),
        ("send.accepted", &me, "rid-disconnected"),
        ("account.credentials_refused", "system", "-"),
        ("account.deleted", &me, "rid-delete"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    // What the queued send becomes after the deletion may follow; the life cycle comes first.
    assert_eq!(trail[..want.len()], want[..], "{log}");
    for e in &items[..want.len()] {
        if e["actor"] != "system" {
            assert_eq!(e["source_ip"], "203.0.113.7", "{e}");
        }
    }
    assert_eq!(items[2]["target"], json!(sent_id));
    assert_eq!(items[2]["details"]["recipients"], 1);
    assert_eq!(items[5]["details"]["type"], "errors/recipient_rejected");
    assert_eq!(items[0]["details"]["provider"], "MAIL");

    // No stored row holds a password, an address, the subject or the body.
    let rows = audit::list(
        &app.store,
        &Tenant::workspace(&app.workspace),
        &Filter::default(),
        None,
        250,
    )
    .await
    .unwrap();
    let stored = format!("{rows:?}");
    for needle in [
        password.as_str(),
        new_pw.as_str(),
        sender.address.as_str(),
        to.address.as_str(),
        subject.as_str(),
        body_text.as_str(),
        app.api_key.split_once('.').unwrap().1,
    ] {
        assert!(!stored.contains(needle), "`{needle}` in the audit rows");
    }
}
both_backends!(the_audit_trail_of_an_account_life_cycle);
