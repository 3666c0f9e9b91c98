//! Hosted auth and OAuth accounts end to end, against the in-process Google fake: the link,
//! the page, consent, the callback, notify_url, replays, denial, expiry, sending through the
//! Gmail API, token refresh (exactly once under concurrency), revocation and reconnect.

use std::time::Duration;

use reqwest::Method;
use reqwest::redirect::Policy;
use serde_json::{Value, json};

use mailroom_server::config::AppConfig;
use mailroom_store::events;
use mailroom_testkit::app::{TestApp, assert_error, spawn_on};
use mailroom_testkit::fakes::google::{AuthorizeDecision, FakeGoogle, GoogleConfig};
use mailroom_testkit::integrator::Integrator;
use mailroom_testkit::webhook_receiver::{WebhookReceiver, verify_signatures};
use mailroom_testkit::{Backend, TestDb, both_backends, wait};
use secrecy::SecretString;

/// The Google app settings that point mailroom at this fake.
pub(super) fn google_app_config(google: &FakeGoogle) -> AppConfig {
    let cfg = google.config();
    AppConfig {
        client_id: cfg.client_id.clone(),
        client_secret: SecretString::from(cfg.client_secret.clone()),
        auth_url: google.auth_url(),
        token_url: google.token_url(),
        api_url: google.base_url(),
    }
}

pub(super) async fn google_app(backend: Backend) -> Option<(TestApp, FakeGoogle, Integrator)> {
    let db = TestDb::new(backend).await?;
    let google = FakeGoogle::start(GoogleConfig::default()).await;
    let app = spawn_on(db, |s| s.google = Some(google_app_config(&google))).await;
    google.allow_redirect_uri(&app.url("/oauth/google/callback"));
    Some((app, google, Integrator::start().await))
}

/// A browser without JavaScript: follows redirects, no cookies needed.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::limited(10))
        .build()
        .unwrap()
}

fn in_an_hour() -> String {
    mailroom_core::time_fmt::format_datetime(
        time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    )
}

pub(super) async fn make_link(app: &TestApp, integrator: &Integrator, extra: Value) -> String {
    let mut body = json!({
        "type": "create", "providers": ["GOOGLE", "OUTLOOK", "MAIL"], "expiresOn": in_an_hour(),
        "api_url": app.base_url, "name": "crm-user-42",
        "success_redirect_url": integrator.url("/success"), "failure_redirect_url": integrator.url("/failure"),
        "notify_url": integrator.url("/notify"),
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (s, r) = app.post_json("/api/v1/hosted/accounts/link", &body).await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["object"], "HostedAuthUrl");
    r["url"].as_str().unwrap().to_owned()
}

/// Opens the link and picks Google; returns the final response after all redirects.
pub(super) async fn connect_google(link: &str) -> reqwest::Response {
    let b = browser();
    let page = b.get(link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Google") && !html.contains("<script"),
        "{html}"
    );
    b.post(format!("{link}/oauth/google")).send().await.unwrap()
}

async fn the_whole_hosted_google_flow(backend: Backend) {
    let Some((app, google, integrator)) = google_app(backend).await else {
        return;
    };
    integrator.fail_next_notifies(1); // the first notify fails: mailroom must retry
    let link = make_link(&app, &integrator, json!({})).await;
    assert!(link.starts_with(&app.base_url), "{link}");

    let landed = connect_google(&link).await;
    assert_eq!(landed.status(), 200);
    assert_eq!(landed.text().await.unwrap(), "integrator: connected");
    let (which, query) = integrator.redirects().pop().unwrap();
    assert_eq!(which, "success");
    let account_id = query
        .iter()
        .find(|(k, _)| k == "account_id")
        .unwrap()
        .1
        .clone();
    assert!(query.contains(&("status".into(), "CREATION_SUCCESS".into())));

    let notified = integrator.notified(1).await;
    assert_eq!(
        notified,
        json!({"status": "CREATION_SUCCESS", "account_id": account_id, "name": "crm-user-42"})
    );
    mailroom_testkit::openapi_check::assert_delivered("hosted_notify", &notified);
    assert!(
        integrator.notify_attempts() >= 2,
        "the failed notify was retried"
    );
    // Durably: the call is a delivery row of its own event, settled with its attempts logged.
    let calls = events::of_type(&app.store, &app.workspace, "hosted_notify")
        .await
        .unwrap();
    assert_eq!(calls.len(), 1);
    let rows = wait::until(
        "the notify delivery settled",
        Duration::from_secs(30),
        || async {
            let rows = mailroom_store::webhook_deliveries::of_event(&app.store, &calls[0].0)
                .await
                .unwrap();
            (rows.len() == 1 && rows[0].delivered_at.is_some()).then_some(rows)
        },
    )
    .await;
    assert!(rows[0].attempts >= 2, "{rows:?}");

    let (s, account) = app.get(&format!("/api/v1/accounts/{account_id}")).await;
    assert_eq!(s, 200);
    assert_eq!(account["type"], "GOOGLE_OAUTH");
    assert_eq!(account["name"], google.config().email.as_str());
    assert_eq!(
        account["connection_params"]["mail"]["username"],
        google.config().email.as_str()
    );
    assert_eq!(account["sources"][0]["status"], "OK");
    assert!(!account.to_string().contains("token"));
    assert_eq!(google.token_requests("authorization_code"), 1);

    // Single use: the link and the callback cannot be replayed.
    let again = browser().get(&link).send().await.unwrap();
    assert_eq!(again.status(), 410);
    assert!(again.text().await.unwrap().contains("already used"));
    let r = browser()
        .post(format!("{link}/oauth/google"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    let (_, list) = app.get("/api/v1/accounts").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}
both_backends!(the_whole_hosted_google_flow);

#[tokio::test]
async fn a_replayed_callback_is_refused() {
    let Some((app, google, integrator)) = google_app(Backend::Sqlite).await else {
        return;
    };
    let link = make_link(&app, &integrator, json!({})).await;
    let b = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let to_google = b.post(format!("{link}/oauth/google")).send().await.unwrap();
    assert_eq!(to_google.status(), 303);
    let authorize = to_google.headers()["location"].to_str().unwrap().to_owned();
    let q: std::collections::HashMap<String, String> = url::Url::parse(&authorize)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["access_type"], "offline");
    assert_eq!(q["scope"], "https://www.googleapis.com/auth/gmail.modify");
    assert!(q["state"].len() >= 40 && q["code_challenge"].len() == 43);
    let back = b.get(&authorize).send().await.unwrap();
    let callback = back.headers()["location"].to_str().unwrap().to_owned();
    let first = b.get(&callback).send().await.unwrap();
    assert_eq!(first.status(), 303, "completed");
    let second = b.get(&callback).send().await.unwrap();
    assert_eq!(second.status(), 400, "a callback cannot be replayed");
    // A state that was never issued.
    let forged = callback.replace(&q["state"], "forged-state");
    assert_eq!(b.get(&forged).send().await.unwrap().status(), 400);
    assert_eq!(google.token_requests("authorization_code"), 1);
}

#[tokio::test]
async fn denial_and_expiry_go_to_the_failure_url() {
    let Some((app, google, integrator)) = google_app(Backend::Sqlite).await else {
        return;
    };
    google.set_decision(AuthorizeDecision::Deny);
    let link = make_link(&app, &integrator, json!({})).await;
    let landed = connect_google(&link).await;
    assert_eq!(landed.text().await.unwrap(), "integrator: not connected");
    let (which, query) = integrator.redirects().pop().unwrap();
    assert_eq!(
        (which.as_str(), query),
        (
            "failure",
            vec![("error".to_owned(), "access_denied".to_owned())]
        )
    );
    assert_eq!(app.get("/api/v1/accounts").await.1["items"], json!([]));
    // The link was not consumed by the denial: the user may try again.
    google.set_decision(AuthorizeDecision::Approve);
    assert_eq!(
        connect_google(&link).await.text().await.unwrap(),
        "integrator: connected"
    );

    // An expired link shows a page, not a form.
    let expired = make_link(&app, &integrator, json!({})).await;
    let token = expired.rsplit('/').next().unwrap();
    let hash = mailroom_store::hosted_links::hash_token(token);
    if let mailroom_store::Store::Sqlite(p) = &app.store {
        sqlx::query("UPDATE hosted_links SET expires_at = 1 WHERE token_hash = $1")
            .bind(hash)
            .execute(p)
            .await
            .unwrap();
    }
    let r = browser().get(&expired).send().await.unwrap();
    assert_eq!(r.status(), 410);
    assert!(r.text().await.unwrap().contains("expired"));
}

#[tokio::test]
async fn link_requests_are_validated() {
    let Some((app, _google, integrator)) = google_app(Backend::Sqlite).await else {
        return;
    };
    let good = json!({"type": "create", "providers": "*", "expiresOn": in_an_hour(), "api_url": app.base_url});
    assert_eq!(
        app.post_json("/api/v1/hosted/accounts/link", &good).await.0,
        201
    );
    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        if v.is_null() {
            b.as_object_mut().unwrap().remove(k);
        } else {
            b[k] = v;
        }
        b
    };
    let cases = [
        (with("type", json!("delete")), 400, "invalid_parameters"),
        (with("providers", Value::Null), 400, "missing_parameters"),
        (
            with("providers", json!(["LINKEDIN"])),
            400,
            "invalid_parameters",
        ),
        (
            with("expiresOn", json!("2001-01-01T00:00:00.000Z")),
            400,
            "invalid_parameters",
        ),
        (with("expiresOn", json!("soon")), 400, "invalid_parameters"),
        (with("api_url", Value::Null), 400, "missing_parameters"),
        (
            with("notify_url", json!("ftp://x")),
            400,
            "invalid_parameters",
        ),
        (
            json!({"type": "reconnect", "expiresOn": in_an_hour(), "api_url": app.base_url, "reconnect_account": "AAAAAAAAAAAAAAAAAAAAAA"}),
            404,
            "resource_not_found",
        ),
    ];
    for (body, status, slug) in cases {
        assert_error(
            &app.post_json("/api/v1/hosted/accounts/link", &body).await,
            status,
            slug,
        );
    }
    let _ = integrator;
}

/// Links an account through the hosted flow and returns its id.
async fn linked_google(app: &TestApp, integrator: &Integrator) -> String {
    let link = make_link(app, integrator, json!({})).await;
    connect_google(&link).await;
    let (_, q) = integrator.redirects().pop().unwrap();
    q.iter().find(|(k, _)| k == "account_id").unwrap().1.clone()
}

async fn sending_through_the_gmail_api(backend: Backend) {
    let Some((app, google, integrator)) = google_app(backend).await else {
        return;
    };
    let account = linked_google(&app, &integrator).await;
    let big: Vec<u8> = (0..6 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    use base64::Engine as _;
    let body = json!({
        "account_id": account,
        "to": [{"identifier": "ann@example.test"}], "bcc": [{"identifier": "boss@example.test"}],
        "subject": "Report", "body": "<p>see attached</p>",
        "attachments": [{"filename": "big.bin", "content": base64::engine::general_purpose::STANDARD.encode(&big)}],
    });
    let (s, sent) = app.post_json("/api/v1/emails", &body).await;
    assert_eq!(s, 201, "{sent}");
    let msgs = google.sent_messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        sent["provider_id"],
        msgs[0].id.as_str(),
        "the Gmail message id"
    );
    assert_eq!(
        format!("{:?}", msgs[0].upload_type),
        "Resumable",
        "over 5 MB goes as an upload"
    );
    assert!(
        msgs[0].bcc.contains(&"boss@example.test".to_owned()),
        "Bcc reached Gmail"
    );
    assert!(!String::from_utf8_lossy(&msgs[0].delivered_raw()).contains("boss@example.test"));
    let (_, o) = app
        .get(&format!(
            "/api/v1/outbox/{}",
            sent["tracking_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(o["sent_copy"], "none", "Gmail keeps its own Sent copy");

    // A reply to a mail in the mailbox stays in its thread.
    let parent = google.deliver_inbound(b"From: Ann <ann@example.test>\r\nTo: user@gmail.test\r\nSubject: Question\r\nMessage-ID: <q1@example.test>\r\n\r\nHi?\r\n");
    let reply = json!({"account_id": account, "to": [{"identifier": "ann@example.test"}], "body": "Answer", "reply_to": "<q1@example.test>"});
    let (s, r) = app.post_json("/api/v1/emails", &reply).await;
    assert_eq!(s, 201, "{r}");
    let last = google.sent_messages().pop().unwrap();
    assert_eq!(
        last.requested_thread_id.as_deref(),
        Some(parent.thread_id.as_str())
    );
    assert_eq!(
        last.thread_id, parent.thread_id,
        "Gmail kept it in the thread"
    );
    let text = String::from_utf8_lossy(&last.raw);
    assert!(
        text.contains("In-Reply-To: <q1@example.test>") && text.contains("Subject: Re: Question"),
        "{text}"
    );

    // Over Gmail's 35 MB limit: refused before anything is stored.
    let huge = json!({"account_id": account, "to": [{"identifier": "ann@example.test"}], "body": "x",
        "attachments": [{"filename": "a.bin", "content": base64::engine::general_purpose::STANDARD.encode(vec![7u8; 24 * 1024 * 1024])},
                        {"filename": "b.bin", "content": base64::engine::general_purpose::STANDARD.encode(vec![8u8; 4 * 1024 * 1024])}]});
    assert_error(
        &app.post_json("/api/v1/emails", &huge).await,
        400,
        "content_too_large",
    );
}
both_backends!(sending_through_the_gmail_api);

#[tokio::test]
async fn throttling_is_retried_after_the_providers_delay() {
    use mailroom_testkit::fakes::Fault;
    let Some((app, google, integrator)) = google_app(Backend::Sqlite).await else {
        return;
    };
    let account = linked_google(&app, &integrator).await;
    google.inject(
        Fault::Throttle {
            retry_after_secs: 1,
        },
        1,
    );
    let body = json!({"account_id": account, "to": [{"identifier": "ann@example.test"}], "subject": "s", "body": "b"});
    let asked = time::OffsetDateTime::now_utc();
    let (s, sent) = app.post_json("/api/v1/emails", &body).await;
    assert_eq!(s, 202, "{sent}");
    assert_eq!(sent["status"], "queued");
    // Our own first backoff is 200 ms here: the provider's Retry-After (1 s) wins.
    let next = time::OffsetDateTime::parse(
        sent["next_attempt_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(
        next - asked >= time::Duration::milliseconds(900),
        "retry at {next}, asked at {asked}"
    );
    let id = sent["tracking_id"].as_str().unwrap().to_owned();
    wait::until(
        "the throttled send goes out",
        Duration::from_secs(20),
        || async {
            (app.get(&format!("/api/v1/outbox/{id}")).await.1["status"] == "sent").then_some(())
        },
    )
    .await;
    assert_eq!(google.sent_messages().len(), 1);
}

#[tokio::test]
async fn an_expiring_token_is_refreshed_once_for_twenty_concurrent_sends() {
    let Some((app, google, integrator)) = google_app(Backend::Sqlite).await else {
        return;
    };
    let account = linked_google(&app, &integrator).await;
    google.expire_access_tokens();
    // Our copy of the token still looks valid: make it look expired too.
    expire_stored_token(&app, &account).await;
    let before = google.refresh_count();
    let sends = (0..20).map(|i| {
        let body = json!({"account_id": account, "to": [{"identifier": "ann@example.test"}], "subject": format!("n{i}"), "body": "b"});
        let app = &app;
        async move { app.post_json("/api/v1/emails", &body).await.0 }
    });
    let statuses = futures_util::future::join_all(sends).await;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    assert_eq!(google.refresh_count() - before, 1, "exactly one refresh");
    assert_eq!(google.sent_messages().len(), 20);
}

async fn expire_stored_token(app: &TestApp, account: &str) {
    use mailroom_store::accounts::{self, Credentials};
    let creds = accounts::credentials(&app.store, &app.vault, account)
        .await
        .unwrap()
        .unwrap();
    let Credentials::OAuth {
        access_token,
        refresh_token,
        ..
    } = creds
    else {
        panic!("OAuth expected")
    };
    assert!(
        accounts::take_refresh_lease(&app.store, account, "test", 0, 1)
            .await
            .unwrap()
    );
    let expired = Credentials::OAuth {
        access_token,
        refresh_token,
        expires_at_ms: 0,
    };
    assert!(
        accounts::store_refreshed(&app.store, &app.vault, account, "test", &expired)
            .await
            .unwrap()
    );
    accounts::release_refresh_lease(&app.store, account, "test")
        .await
        .unwrap();
}

async fn revocation_then_reconnect(backend: Backend) {
    let Some((app, google, integrator)) = google_app(backend).await else {
        return;
    };
    let account = linked_google(&app, &integrator).await;
    // An integrator's account_status webhook hears of the revocation (issue 10), signed.
    let rx = WebhookReceiver::start().await;
    let (s, hook) = app
        .post_json(
            "/api/v1/webhooks",
            &json!({"source": "account_status", "request_url": rx.url("/status")}),
        )
        .await;
    assert_eq!(s, 201, "{hook}");
    google.revoke();
    google.expire_access_tokens();
    let body = json!({"account_id": account, "to": [{"identifier": "ann@example.test"}], "subject": "s", "body": "b"});
    let (s, sent) = app.post_json("/api/v1/emails", &body).await;
    assert_eq!(s, 202, "{sent}");
    assert_eq!(sent["last_error"]["type"], "errors/disconnected_account");
    let (_, acc) = app.get(&format!("/api/v1/accounts/{account}")).await;
    assert_eq!(acc["sources"][0]["status"], "CREDENTIALS");
    // One CREDENTIALS change (after the link's CREATION_SUCCESS).
    let ev: Vec<_> = events::of_type(&app.store, &app.workspace, "account_status")
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, p)| p["AccountStatus"]["message"] != "CREATION_SUCCESS")
        .collect();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].1["AccountStatus"]["message"], "CREDENTIALS");
    let got = rx
        .wait_until(
            "CREDENTIALS at the receiver",
            Duration::from_secs(20),
            |r| {
                r.iter()
                    .any(|r| r.json()["AccountStatus"]["message"] == "CREDENTIALS")
            },
        )
        .await;
    let status = got
        .iter()
        .find(|r| r.json()["AccountStatus"]["message"] == "CREDENTIALS")
        .unwrap();
    assert_eq!(
        status.json()["AccountStatus"]["account_id"],
        account.as_str()
    );
    assert_eq!(
        status.json()["AccountStatus"]["account_type"],
        "GOOGLE_OAUTH"
    );
    verify_signatures(
        hook["secret"].as_str().unwrap(),
        std::slice::from_ref(status),
    );
    assert_error(
        &app.post_json("/api/v1/emails", &body).await,
        401,
        "disconnected_account",
    );

    // A reconnect link restores it, and the waiting send goes out.
    let link = make_link(
        &app,
        &integrator,
        json!({"type": "reconnect", "reconnect_account": account}),
    )
    .await;
    let landed = connect_google(&link).await;
    assert_eq!(landed.text().await.unwrap(), "integrator: connected");
    let n = integrator.notified(2).await;
    assert_eq!(n["status"], "RECONNECTED");
    assert_eq!(n["account_id"], account.as_str());
    assert_eq!(
        app.get(&format!("/api/v1/accounts/{account}")).await.1["sources"][0]["status"],
        "OK"
    );
    let id = sent["tracking_id"].as_str().unwrap().to_owned();
    wait::until(
        "the queued send goes out after the reconnect",
        Duration::from_secs(30),
        || async {
            (app.get(&format!("/api/v1/outbox/{id}")).await.1["status"] == "sent").then_some(())
        },
    )
    .await;
    assert_eq!(
        app.get("/api/v1/accounts").await.1["items"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "no second account"
    );
    // The audit trail: linked and reconnected by the person on the hosted page, the refused
    // grant by mailroom itself, the send credited to the key that accepted it.
    let (_, log) = app
        .get(&format!("/api/v1/audit?account_id={account}"))
        .await;
    let mut trail: Vec<(String, String)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    trail.reverse();
    let key = format!("key:{}", app.api_key.split_once('.').unwrap().0);
    let want: Vec<(String, String)> = [
        ("account.linked", "hosted-link"),
        ("send.accepted", key.as_str()),
        ("account.credentials_refused", "system"),
        ("account.reconnected", "hosted-link"),
        ("send.sent", key.as_str()),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(trail, want, "{log}");
    let hosted = &log["items"][1];
    assert_eq!(hosted["source_ip"], "127.0.0.1", "{hosted}");
    assert!(hosted["request_id"].is_string(), "{hosted}");
    assert_eq!(hosted["details"], json!({"provider": "GOOGLE_OAUTH"}));
}
both_backends!(revocation_then_reconnect);

#[tokio::test]
async fn accounts_from_tokens_the_integrator_holds() {
    let Some((app, google, _integrator)) = google_app(Backend::Sqlite).await else {
        return;
    };
    let t = google.issue_tokens(&["https://www.googleapis.com/auth/gmail.modify"]);
    let (s, r) = app
        .post_json("/api/v1/accounts", &json!({"provider": "GOOGLE_OAUTH", "access_token": t.access_token, "refresh_token": t.refresh_token}))
        .await;
    assert_eq!(s, 201, "{r}");
    let (_, acc) = app
        .get(&format!(
            "/api/v1/accounts/{}",
            r["account_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(acc["type"], "GOOGLE_OAUTH");
    // A refused token and refresh token: 401 invalid_credentials, nothing stored.
    let r = app
        .post_json(
            "/api/v1/accounts",
            &json!({"provider": "GOOGLE_OAUTH", "access_token": "nope", "refresh_token": "nope"}),
        )
        .await;
    assert_error(&r, 401, "invalid_credentials");
    assert_eq!(
        app.get("/api/v1/accounts").await.1["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let _ = Method::GET;
}

/// Two nodes on one database, twenty sends split between them, one expired token: exactly one
/// refresh (the refresh lease lives in the database).
async fn one_refresh_across_two_nodes(backend: Backend) {
    let Some((app, google, integrator)) = google_app(backend).await else {
        return;
    };
    let account = linked_google(&app, &integrator).await;
    let second = spawn_on(app.db.share(), |s| {
        s.google = Some(google_app_config(&google))
    })
    .await;
    google.expire_access_tokens();
    expire_stored_token(&app, &account).await;
    let before = google.refresh_count();
    let sends = (0..20).map(|i| {
        let node = if i % 2 == 0 { &app } else { &second };
        let body = json!({"account_id": account, "to": [{"identifier": "ann@example.test"}], "subject": format!("n{i}"), "body": "b"});
        // Both nodes serve the first node's workspace.
        let req = node.client.post(node.url("/api/v1/emails")).header("X-API-KEY", &app.api_key).json(&body);
        async move { req.send().await.unwrap().status().as_u16() }
    });
    let statuses = futures_util::future::join_all(sends).await;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    assert_eq!(
        google.refresh_count() - before,
        1,
        "exactly one refresh across both nodes"
    );
}
both_backends!(one_refresh_across_two_nodes);

#[tokio::test]
async fn a_send_only_google_account_uses_the_least_scopes() {
    let Some((app, google, integrator)) = google_app(Backend::Sqlite).await else {
        return;
    };
    let link = make_link(&app, &integrator, json!({"mode": "send"})).await;
    let b = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let to_google = b.post(format!("{link}/oauth/google")).send().await.unwrap();
    let authorize = url::Url::parse(to_google.headers()["location"].to_str().unwrap()).unwrap();
    let q: std::collections::HashMap<String, String> =
        authorize.query_pairs().into_owned().collect();
    assert_eq!(
        q["scope"],
        "openid email https://www.googleapis.com/auth/gmail.send"
    );
    // Complete it like a browser would.
    let back = b.get(authorize.as_str()).send().await.unwrap();
    let callback = back.headers()["location"].to_str().unwrap().to_owned();
    let done = browser().get(&callback).send().await.unwrap();
    assert_eq!(done.text().await.unwrap(), "integrator: connected");
    let (_, query) = integrator.redirects().pop().unwrap();
    let account = query
        .iter()
        .find(|(k, _)| k == "account_id")
        .unwrap()
        .1
        .clone();
    let (_, acc) = app.get(&format!("/api/v1/accounts/{account}")).await;
    assert_eq!(
        acc["name"],
        google.config().email.as_str(),
        "named from the ID token"
    );

    // It sends, and a reply carries its threading headers without searching the mailbox
    // (gmail.send cannot).
    let reply = json!({"account_id": account, "to": [{"identifier": "ann@example.test"}], "subject": "Re: Question",
                       "body": "Answer", "reply_to": "<q9@example.test>"});
    let (s, r) = app.post_json("/api/v1/emails", &reply).await;
    assert_eq!(s, 201, "{r}");
    let sent = google.sent_messages().pop().unwrap();
    assert!(String::from_utf8_lossy(&sent.raw).contains("In-Reply-To: <q9@example.test>"));
    assert_eq!(sent.requested_thread_id, None);

    let bad = app
        .post_json("/api/v1/hosted/accounts/link", &json!({"type": "create", "providers": "*", "expiresOn": in_an_hour(), "api_url": app.base_url, "mode": "read"}))
        .await;
    assert_error(&bad, 400, "invalid_parameters");
}

#[tokio::test]
async fn access_the_person_unticked_is_named_and_the_link_stays_usable() {
    let Some((app, google, integrator)) = google_app(Backend::Sqlite).await else {
        return;
    };
    // Full access asked; the person unticks Gmail on Google's granular consent screen.
    google.untick_scopes(&["https://www.googleapis.com/auth/gmail.modify"]);
    let link = make_link(&app, &integrator, json!({})).await;
    let landed = connect_google(&link).await;
    assert_eq!(landed.text().await.unwrap(), "integrator: not connected");
    let (which, query) = integrator.redirects().pop().unwrap();
    assert_eq!(which, "failure");
    assert!(
        query.contains(&("error".into(), "missing_access".into())),
        "{query:?}"
    );
    let description = &query
        .iter()
        .find(|(k, _)| k == "error_description")
        .expect("the missing access is described")
        .1;
    assert!(
        description.contains("gmail.modify") && description.contains("Gmail"),
        "{description}"
    );
    assert!(!description.contains("openid email"), "{description}");
    assert_eq!(app.get("/api/v1/accounts").await.1["items"], json!([]));

    // A send-only link whose Gmail box is unticked names gmail.send.
    google.untick_scopes(&["https://www.googleapis.com/auth/gmail.send"]);
    let send_link = make_link(&app, &integrator, json!({"mode": "send"})).await;
    connect_google(&send_link).await;
    let (_, query) = integrator.redirects().pop().unwrap();
    let description = &query
        .iter()
        .find(|(k, _)| k == "error_description")
        .expect("described")
        .1;
    assert!(description.contains("gmail.send"), "{description}");

    // Nothing was consumed: granting everything on the same link connects.
    google.untick_scopes(&[]);
    assert_eq!(
        connect_google(&link).await.text().await.unwrap(),
        "integrator: connected"
    );
}
