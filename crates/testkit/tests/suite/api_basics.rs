//! Cross-cutting API behaviour: auth, the error body, pagination, operational routes.

use reqwest::Method;
use serde_json::Value;

use crate::app;
use crate::store::seed_account;
use mailroom_testkit::app::assert_error;
use mailroom_testkit::{Backend, both_backends};

fn is_strict_date(v: &Value) -> bool {
    let s = v.as_str().unwrap_or("");
    s.len() == 24
        && s.ends_with('Z')
        && s.as_bytes()[19] == b'.'
        && time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
}

fn is_standard_base64(s: &str) -> bool {
    !s.is_empty()
        && s.len().is_multiple_of(4)
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
}

async fn auth_errors(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let none = app.call(app.client.get(app.url("/api/v1/accounts"))).await;
    assert_error(&none, 401, "missing_credentials");
    assert_eq!(none.1["instance"], "/api/v1/accounts");
    let wrong = app
        .call(
            app.client
                .get(app.url("/api/v1/accounts"))
                .header("X-API-KEY", "nope.nope"),
        )
        .await;
    assert_error(&wrong, 401, "invalid_credentials");
    let mut tampered = app.api_key.clone();
    tampered.push('x');
    let bad = app
        .call(
            app.client
                .get(app.url("/api/v1/accounts"))
                .header("X-API-KEY", tampered),
        )
        .await;
    assert_error(&bad, 401, "invalid_credentials");
    let ok = app.get("/api/v1/accounts").await;
    assert_eq!(ok.0, 200);
    assert_eq!(
        ok.1,
        serde_json::json!({"object": "AccountList", "items": [], "cursor": null})
    );
}
both_backends!(auth_errors);

async fn other_workspaces_ids_are_not_found(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let id = seed_account(&app.store, &app.vault, &app.workspace, "pw", 1_000).await;
    assert_eq!(app.get(&format!("/api/v1/accounts/{id}")).await.0, 200);
    let other = app.other_workspace_key().await;
    let path = format!("/api/v1/accounts/{id}");
    for method in [Method::GET, Method::DELETE] {
        let r = app
            .call(
                app.client
                    .request(method, app.url(&path))
                    .header("X-API-KEY", &other),
            )
            .await;
        assert_error(&r, 404, "resource_not_found");
    }
    let r = app
        .call(
            app.client
                .post(app.url(&path))
                .header("X-API-KEY", &other)
                .json(&serde_json::json!({"imap_password": "x"})),
        )
        .await;
    assert_error(&r, 404, "resource_not_found");
    let list = app
        .call(
            app.client
                .get(app.url("/api/v1/accounts"))
                .header("X-API-KEY", &other),
        )
        .await;
    assert_eq!(list.1["items"], serde_json::json!([]));
    // And it is still there for its owner.
    assert_eq!(app.get(&path).await.0, 200);
    assert_error(
        &app.get("/api/v1/accounts/not-an-id").await,
        404,
        "resource_not_found",
    );
}
both_backends!(other_workspaces_ids_are_not_found);

async fn pagination_limits_and_cursors(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let mut ids = vec![];
    for i in 0..5 {
        ids.push(
            seed_account(
                &app.store,
                &app.vault,
                &app.workspace,
                "pw",
                1_700_000_000_000 + i * 1000,
            )
            .await,
        );
    }
    for bad in ["0", "251", "x", "-3"] {
        assert_error(
            &app.get(&format!("/api/v1/accounts?limit={bad}")).await,
            400,
            "invalid_parameters",
        );
    }
    assert_eq!(app.get("/api/v1/accounts?limit=250").await.0, 200);
    assert_error(
        &app.get("/api/v1/accounts?cursor=%21%21").await,
        400,
        "invalid_parameters",
    );

    let mut seen = vec![];
    let (s, mut page) = app.get("/api/v1/accounts?limit=2").await;
    assert_eq!(s, 200);
    loop {
        for item in page["items"].as_array().unwrap() {
            assert!(is_strict_date(&item["created_at"]), "{item}");
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match page["cursor"].as_str() {
            None => break,
            Some(c) => {
                assert!(is_standard_base64(c), "{c}");
                // With a cursor, the other parameters are ignored (limit=1 here changes nothing).
                let q = url::form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>();
                page = app
                    .get(&format!("/api/v1/accounts?cursor={q}&limit=1"))
                    .await
                    .1;
                assert!(page["items"].as_array().unwrap().len() <= 2);
            }
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "every account once, newest first");
    assert_eq!(page["cursor"], Value::Null);
}
both_backends!(pagination_limits_and_cursors);

#[tokio::test]
async fn request_decoding_errors_are_json() {
    let Some(app) = app(Backend::Sqlite).await else {
        return;
    };
    let post = || app.request(Method::POST, "/api/v1/accounts");
    let r = app
        .call(
            post()
                .header("content-type", "application/json")
                .body("{\"provider\": "),
        )
        .await;
    assert_error(&r, 400, "malformed_request");
    let r = app
        .call(
            post()
                .header("content-type", "text/plain")
                .body("[object Object]"),
        )
        .await;
    assert_error(&r, 400, "invalid_request");
    assert!(
        r.1["detail"].as_str().unwrap().contains("application/json"),
        "{}",
        r.1
    );
    let r = app
        .call(
            post()
                .header("content-type", "application/json")
                .body("[1,2]"),
        )
        .await;
    assert_error(&r, 400, "invalid_request");
    let big = format!(
        "{{\"provider\":\"MAIL\",\"x\":\"{}\"}}",
        "a".repeat(3 * 1024 * 1024)
    );
    let r = app
        .call(post().header("content-type", "application/json").body(big))
        .await;
    assert_error(&r, 400, "content_too_large");
    let r = app.get("/api/v1/nothing-here").await;
    assert_error(&r, 404, "resource_not_found");
    assert_eq!(r.1["instance"], "/api/v1/nothing-here");
    let r = app
        .call(app.request(Method::PATCH, "/api/v1/accounts"))
        .await;
    assert_error(&r, 404, "resource_not_found");
    assert!(r.1["detail"].as_str().unwrap().contains("PATCH"), "{}", r.1);
    // A path parameter the framework cannot decode is still a JSON error.
    for method in [Method::GET, Method::POST, Method::DELETE] {
        let r = app.call(app.request(method, "/api/v1/accounts/%FF")).await;
        assert_error(&r, 400, "invalid_request");
    }
    // Every answer carries a request id.
    let resp = app
        .request(Method::GET, "/api/v1/accounts")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"].len(), 22);
    let resp = app
        .request(Method::GET, "/api/v1/accounts")
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
}

#[tokio::test]
async fn operational_routes() {
    let Some(app) = app(Backend::Sqlite).await else {
        return;
    };
    let health: Value = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    app.get("/api/v1/accounts").await;
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mailroom_http_requests_total"),
        "{metrics}"
    );
    assert!(metrics.contains("route=\"/api/v1/accounts\""), "{metrics}");

    let spec: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/api/v1/accounts", "/api/v1/accounts/{account_id}"] {
        assert!(
            spec["paths"][path].is_object(),
            "{path} missing from the spec"
        );
    }
    assert!(spec["paths"]["/api/v1/accounts"]["post"]["requestBody"].is_object());
    assert!(spec["components"]["schemas"]["ErrorBody"].is_object());
    assert_eq!(
        spec["components"]["securitySchemes"]["api_key"]["name"],
        "X-API-KEY"
    );

    let docs = app.client.get(app.url("/docs")).send().await.unwrap();
    assert!(
        docs.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = docs.text().await.unwrap();
    assert!(html.contains("/api/v1/accounts/{account_id}") && html.contains("DELETE"));
    assert!(
        !html.contains("<script") && !html.contains("http://") && !html.contains("https://"),
        "self-contained"
    );

    // Readiness follows the database.
    app.store.close().await;
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["type"], "errors/service_unavailable");
}
