//! API keys with scopes and expiry through the API, on two nodes sharing one database: each
//! route asks for its scope (403 `errors/insufficient_permissions` naming it), an expired key
//! is refused, and a key revoked on one node is refused by the other on its next request.

use std::time::Duration;

use secrecy::ExposeSecret as _;
use serde_json::json;

use mailroom_store::api_keys::{self, NewKey, Scopes};
use mailroom_testkit::app::{TestApp, assert_error, spawn_on};
use mailroom_testkit::{Backend, TestDb, both_backends, spawn_app, wait};

async fn key(app: &TestApp, scopes: &str, expires_at: Option<i64>) -> (String, String) {
    key_with_rate(app, scopes, expires_at, None).await
}

async fn key_with_rate(
    app: &TestApp,
    scopes: &str,
    expires_at: Option<i64>,
    rate_per_second: Option<u32>,
) -> (String, String) {
    let k = api_keys::create_with(
        &app.store,
        NewKey {
            workspace_id: &app.workspace,
            name: scopes,
            scopes: Scopes::parse(scopes).unwrap(),
            expires_at,
            rate_per_second,
            accounts: None,
        },
        app.engine.clock.now_ms(),
    )
    .await
    .unwrap();
    (k.key_id, k.token.expose_secret().to_owned())
}

async fn status(
    app: &TestApp,
    key: &str,
    method: reqwest::Method,
    path: &str,
) -> (u16, serde_json::Value) {
    let r = app
        .client
        .request(method, app.url(path))
        .header("X-API-KEY", key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or_default())
}

async fn scopes_expiry_and_revocation_across_nodes(backend: Backend) {
    use reqwest::Method;
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let second = spawn_on(app.db.share(), |_| {}).await;
    let (_, reader) = key(&app, "read", None).await;
    let (_, sender) = key(&app, "send", None).await;
    // Reads with a read key; anything else is refused before it runs, naming the scope.
    assert_eq!(
        status(&app, &reader, Method::GET, "/api/v1/accounts")
            .await
            .0,
        200
    );
    assert_eq!(
        status(&app, &reader, Method::GET, "/api/v1/emails").await.0,
        200
    );
    for (m, path, scope) in [
        (Method::POST, "/api/v1/emails", "send"),
        (Method::POST, "/api/v1/drafts", "send"),
        (Method::PUT, "/api/v1/emails/AAAAAAAAAAAAAAAAAAAAAA", "send"),
        (Method::POST, "/api/v1/accounts", "manage"),
        (
            Method::DELETE,
            "/api/v1/accounts/AAAAAAAAAAAAAAAAAAAAAA",
            "manage",
        ),
        (Method::POST, "/api/v1/hosted/accounts/link", "manage"),
    ] {
        let r = status(&app, &reader, m.clone(), path).await;
        assert_error(&r, 403, "insufficient_permissions");
        assert!(
            r.1["detail"].as_str().unwrap().contains(scope),
            "{m} {path}: {}",
            r.1
        );
    }
    // A send key passes the scope check of a send (and the request is then validated) but
    // cannot read or manage.
    assert_error(
        &status(&app, &sender, Method::POST, "/api/v1/emails").await,
        400,
        "missing_parameters",
    );
    assert_error(
        &status(&app, &sender, Method::GET, "/api/v1/accounts").await,
        403,
        "insufficient_permissions",
    );
    assert_error(
        &status(&app, &sender, Method::POST, "/api/v1/accounts").await,
        403,
        "insufficient_permissions",
    );

    // Revoked on one node: refused by the other on its very next request.
    let (fresh_id, fresh) = key(&app, "read", None).await;
    assert_eq!(
        status(&second, &fresh, Method::GET, "/api/v1/accounts")
            .await
            .0,
        200
    );
    assert!(
        api_keys::revoke(&app.store, &fresh_id, app.engine.clock.now_ms())
            .await
            .unwrap()
    );
    let r = status(&second, &fresh, Method::GET, "/api/v1/accounts").await;
    assert_error(&r, 401, "invalid_credentials");
    assert_eq!(r.1["detail"], "the API key was revoked");

    // An expiring key works until its time, then is refused everywhere.
    let (_, brief) = key(&app, "read", Some(app.engine.clock.now_ms() + 1_500)).await;
    assert_eq!(
        status(&second, &brief, Method::GET, "/api/v1/accounts")
            .await
            .0,
        200
    );
    wait::until("the key expires", Duration::from_secs(10), || async {
        let r = status(&app, &brief, Method::GET, "/api/v1/accounts").await;
        (r.0 == 401 && r.1["detail"] == "the API key has expired").then_some(())
    })
    .await;
    assert_eq!(
        status(&second, &brief, Method::GET, "/api/v1/accounts")
            .await
            .0,
        401
    );
}
both_backends!(scopes_expiry_and_revocation_across_nodes);

/// A burst past a key's rate is answered 429 `errors/too_many_requests` with a `Retry-After`
/// that, once waited, lets the key in again; a key's own rate wins over the server's default.
async fn bursts_past_a_keys_rate_are_429_with_retry_after(backend: Backend) {
    use reqwest::Method;
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = spawn_on(db, |s| s.api_rate_per_second = 2).await;
    let mut answers = vec![];
    for _ in 0..6 {
        let r = app
            .client
            .get(app.url("/api/v1/accounts"))
            .header("X-API-KEY", &app.api_key)
            .send()
            .await
            .unwrap();
        let retry_after = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap();
        answers.push((status, retry_after, body));
    }
    assert_eq!((answers[0].0, answers[1].0), (200, 200), "{answers:?}");
    let refused: Vec<_> = answers.iter().filter(|a| a.0 == 429).collect();
    assert!(!refused.is_empty(), "{answers:?}");
    for (_, retry_after, body) in &refused {
        assert_eq!(body["type"], "errors/too_many_requests");
        assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
    }
    wait::until(
        "the key is let in again",
        Duration::from_secs(5),
        || async {
            (status(&app, &app.api_key, Method::GET, "/api/v1/accounts")
                .await
                .0
                == 200)
                .then_some(())
        },
    )
    .await;
    // Unauthenticated routes are not limited by key.
    for _ in 0..10 {
        assert_eq!(
            app.client
                .get(app.url("/healthz"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let (_, fast) = key_with_rate(&app, "read", None, Some(50)).await;
    for _ in 0..10 {
        assert_eq!(
            status(&app, &fast, Method::GET, "/api/v1/accounts").await.0,
            200
        );
    }
}
both_backends!(bursts_past_a_keys_rate_are_429_with_retry_after);
