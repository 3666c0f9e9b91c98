//! Webhooks through the API, on both backends, delivered to a receiver on 127.0.0.1: the
//! routes and their errors; deliveries signed (checked with the Standard Webhooks reference
//! library), retried after failures and timeouts with the same `webhook-id`, logged, replayed;
//! 410 Gone disabling the webhook; per-account order; `form` and the rename map; the account
//! filter; the SSRF guard; delivery surviving a restart; and, against the real Dovecot, new mail
//! arriving as a signed `mail_received` and the account's status changes as `AccountStatus`.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use mailroom_core::{Clock, SystemClock};
use mailroom_store::events::{self, NewEvent};
use mailroom_store::webhook_deliveries;
use mailroom_testkit::app::{TestApp, assert_error, spawn_on};
use mailroom_testkit::webhook_receiver::{Reply, WebhookReceiver, verify_signatures};
use mailroom_testkit::{Backend, MailRig, TestDb, both_backends, openapi_check, spawn_app, wait};

use crate::store::seed_account;

const DEADLINE: Duration = Duration::from_secs(60);

async fn create(app: &TestApp, body: Value) -> (String, String) {
    let (s, created) = app.post_json("/api/v1/webhooks", &body).await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["object"], "WebhookCreated");
    (
        created["webhook_id"].as_str().unwrap().to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

/// Records a mail event of `kind` about `account` as the sync would; answers its id.
async fn mail_event(app: &TestApp, account: &str, kind: &str, n: u32) -> String {
    let id = events::event_id(&[kind, account, &format!("test-{n}")]);
    events::record(
        &app.store,
        NewEvent {
            id: id.clone(),
            workspace_id: &app.workspace,
            account_id: Some(account),
            kind,
            payload: json!({
                "event": kind, "account_id": account, "email_id": format!("email-{n}"),
                "subject": format!("subject {n}"), "to_attendees": [{"identifier": "r@example.test"}],
                "origin": "external",
            }),
            now_ms: SystemClock.now_ms(),
        },
    )
    .await
    .unwrap();
    id
}

async fn account(app: &TestApp) -> String {
    seed_account(
        &app.store,
        &app.vault,
        &app.workspace,
        "pw",
        SystemClock.now_ms(),
    )
    .await
}

async fn deliveries(app: &TestApp, webhook: &str) -> Vec<Value> {
    let (s, list) = app
        .get(&format!("/api/v1/webhooks/{webhook}/deliveries"))
        .await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["object"], "WebhookDeliveryList");
    list["items"].as_array().unwrap().clone()
}

async fn webhooks_api_and_its_errors(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let acc = account(&app).await;
    let (id, secret) = create(
        &app,
        json!({
            "source": "email", "request_url": "https://hooks.example.com/in", "name": "mine",
            "events": ["mail_received", "mail_moved", "send_failed"], "account_ids": [acc],
            "headers": [{"key": "X-Auth", "value": "token"}], "format": "form",
            "data": [{"name": "mail", "key": "email_id"}],
        }),
    )
    .await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    let (_, status_hook) = create(
        &app,
        json!({"source": "account_status", "request_url": "https://hooks.example.com/s"}),
    )
    .await;
    assert!(!status_hook.is_empty());

    let (s, list) = app.get("/api/v1/webhooks").await;
    assert_eq!(s, 200);
    assert_eq!(list["object"], "WebhookList");
    assert_eq!(list["cursor"], Value::Null);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let w = &items[0];
    assert_eq!(w["object"], "Webhook");
    assert_eq!(w["id"], id.as_str());
    assert_eq!(w["type"], "AUTO");
    assert_eq!(w["enabled"], true);
    assert_eq!(w["format"], "form");
    assert_eq!(w["name"], "mine");
    assert_eq!(w["request_url"], "https://hooks.example.com/in");
    // The SDK's enum only in `events`; mailroom's own apart.
    assert_eq!(w["events"], json!(["mail_received"]));
    assert_eq!(w["mailroom_events"], json!(["mail_moved", "send_failed"]));
    assert_eq!(
        w["account_ids"],
        json!([{"id": acc, "name": "a@example.test", "type": "MAIL"}])
    );
    assert_eq!(w["headers"], json!([{"key": "X-Auth", "value": "token"}]));
    assert_eq!(w["data"], json!([{"name": "mail", "key": "email_id"}]));
    assert!(w.get("secret").is_none(), "the secret is shown once");
    let s2 = &items[1];
    assert!(
        s2.get("name").is_none(),
        "no name is no field (the SDK refuses null): {s2}"
    );
    assert!(
        s2.get("events").is_none(),
        "account_status has no events: {s2}"
    );
    assert_eq!(s2["format"], "json");
    assert_eq!(s2["headers"], json!([]));
    assert_eq!(s2["data"], json!([]));
    assert_eq!(s2["account_ids"], json!([]));

    // Pages.
    let (_, page) = app.get("/api/v1/webhooks?limit=1").await;
    let cursor = page["cursor"].as_str().expect("a next page").to_owned();
    let (_, next) = app
        .get(&format!(
            "/api/v1/webhooks?cursor={}",
            url::form_urlencoded::byte_serialize(cursor.as_bytes()).collect::<String>()
        ))
        .await;
    assert_eq!(next["items"].as_array().unwrap().len(), 1);
    assert_ne!(next["items"][0]["id"], page["items"][0]["id"]);

    // GET and PATCH one.
    let (s, one) = app.get(&format!("/api/v1/webhooks/{id}")).await;
    assert_eq!((s, &one["id"]), (200, &json!(id)));
    let (s, patched) = app
        .call(
            app.request(Method::PATCH, &format!("/api/v1/webhooks/{id}"))
                .json(&json!({"enabled": false, "events": ["mail_sent"], "request_url": "https://hooks.example.com/v2"})),
        )
        .await;
    assert_eq!(s, 200, "{patched}");
    assert_eq!(patched["enabled"], false);
    assert_eq!(patched["events"], json!(["mail_sent"]));
    assert_eq!(patched["request_url"], "https://hooks.example.com/v2");

    // Bad input: the right slug, never a half-written row.
    let bad = [
        (
            json!({"request_url": "https://x.example.com/"}),
            400,
            "missing_parameters",
        ),
        (json!({"source": "email"}), 400, "missing_parameters"),
        (
            json!({"source": "sms", "request_url": "https://x.example.com/"}),
            400,
            "invalid_parameters",
        ),
        (
            json!({"source": "email", "request_url": "ftp://x.example.com/"}),
            400,
            "invalid_parameters",
        ),
        (
            json!({"source": "email", "request_url": "not a url"}),
            400,
            "invalid_parameters",
        ),
        (
            json!({"source": "email", "request_url": "https://x.example.com/", "events": ["mail_opened"]}),
            400,
            "invalid_parameters",
        ),
        (
            json!({"source": "email", "request_url": "https://x.example.com/", "format": "xml"}),
            400,
            "invalid_parameters",
        ),
        (
            json!({"source": "email", "request_url": "https://x.example.com/", "account_ids": ["nope"]}),
            400,
            "invalid_parameters",
        ),
        (
            json!({"source": "email", "request_url": "https://x.example.com/", "headers": [{"key": "X-A", "value": "a\r\nInjected: 1"}]}),
            422,
            "invalid_headers",
        ),
        (
            json!({"source": "email", "request_url": "https://x.example.com/", "headers": [{"key": "webhook-signature", "value": "v1,x"}]}),
            400,
            "invalid_parameters",
        ),
        (
            json!({"source": "email", "request_url": "https://x.example.com/", "data": [{"name": "x", "key": "ip"}]}),
            400,
            "invalid_parameters",
        ),
        (
            json!({"source": "email", "request_url": "https://x.example.com/", "headers": "X-A: b"}),
            400,
            "invalid_parameters",
        ),
    ];
    for (body, status, slug) in bad {
        let r = app.post_json("/api/v1/webhooks", &body).await;
        assert_error(&r, status, slug);
    }
    let r = app
        .call(
            app.request(Method::POST, "/api/v1/webhooks")
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await;
    assert_error(&r, 400, "malformed_request");
    let (_, list) = app.get("/api/v1/webhooks").await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        2,
        "nothing half-written"
    );

    // Another workspace sees none of it.
    let other = app.other_workspace_key().await;
    for (m, path) in [
        (Method::GET, format!("/api/v1/webhooks/{id}")),
        (Method::DELETE, format!("/api/v1/webhooks/{id}")),
        (Method::GET, format!("/api/v1/webhooks/{id}/deliveries")),
        (Method::POST, format!("/api/v1/webhooks/{id}/rotate-secret")),
    ] {
        let r = app
            .call(
                app.client
                    .request(m, app.url(&path))
                    .header("X-API-KEY", &other),
            )
            .await;
        assert_error(&r, 404, "resource_not_found");
    }
    let r = app
        .call(
            app.client
                .request(Method::GET, app.url("/api/v1/webhooks"))
                .header("X-API-KEY", &other),
        )
        .await;
    assert_eq!(r.1["items"], json!([]));

    // The OpenAPI document describes every route.
    let spec: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (path, methods) in [
        ("/api/v1/webhooks", &["get", "post"][..]),
        (
            "/api/v1/webhooks/{webhook_id}",
            &["get", "patch", "delete"][..],
        ),
        ("/api/v1/webhooks/{webhook_id}/rotate-secret", &["post"][..]),
        ("/api/v1/webhooks/{webhook_id}/deliveries", &["get"][..]),
        (
            "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/replay",
            &["post"][..],
        ),
    ] {
        for m in methods {
            assert!(spec["paths"][path][m].is_object(), "{m} {path} in the spec");
        }
    }

    // DELETE.
    let (s, deleted) = app.delete(&format!("/api/v1/webhooks/{id}")).await;
    assert_eq!((s, &deleted["object"]), (200, &json!("WebhookDeleted")));
    assert_error(
        &app.delete(&format!("/api/v1/webhooks/{id}")).await,
        404,
        "resource_not_found",
    );
}
both_backends!(webhooks_api_and_its_errors);

/// Fails, redirects (not followed), times out, then takes it: four attempts with one `webhook-id`, every
/// signature verified by the reference library, each attempt in the log. A replay sends it
/// again with the same id.
async fn deliveries_are_retried_signed_and_logged(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let rx = WebhookReceiver::start().await;
    rx.plan([
        Reply::Status(500),
        Reply::Redirect("/elsewhere"),       // never followed
        Reply::Hang(Duration::from_secs(4)), // past the tests' 2 s attempt timeout
    ]);
    let acc = account(&app).await;
    let (hook, secret) = create(
        &app,
        json!({"source": "email", "request_url": rx.url("/hook"), "name": "retry",
               "headers": [{"key": "X-Token", "value": "t0k"}]}),
    )
    .await;
    let event = mail_event(&app, &acc, "mail_received", 1).await;
    let got = rx.wait_for(4, DEADLINE).await;
    assert!(
        got.iter().all(|r| r.id() == event),
        "one webhook-id: {got:?}"
    );
    assert!(got.iter().all(|r| r.header("x-token") == Some("t0k")));
    assert!(
        got.iter()
            .all(|r| r.header("content-type") == Some("application/json"))
    );
    let body = got[3].json();
    assert_eq!(body["event"], "mail_received");
    assert_eq!(body["email_id"], "email-1");
    assert_eq!(body["account_id"], acc.as_str());
    assert_eq!(body["webhook_name"], "retry");
    verify_signatures(&secret, &got);

    let items = wait::until("the delivery settled", DEADLINE, || async {
        let d = deliveries(&app, &hook).await;
        (d.len() == 1 && d[0]["status"] == "delivered").then_some(d)
    })
    .await;
    let d = &items[0];
    assert_eq!(d["object"], "WebhookDelivery");
    assert_eq!(d["event_id"], event.as_str());
    assert_eq!(d["event"], "mail_received");
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 4, "{d}");
    assert_eq!(attempts[0]["status"], 500);
    assert_eq!(attempts[1]["status"], 307);
    assert!(
        attempts[1]["error"]
            .as_str()
            .unwrap()
            .contains("redirects are not followed")
    );
    assert!(
        rx.received().iter().all(|r| r.path == "/hook"),
        "no redirect followed"
    );
    assert!(attempts[2].get("status").is_none(), "{}", attempts[2]);
    assert!(
        attempts[2]["error"].as_str().unwrap().contains("no answer"),
        "{}",
        attempts[2]
    );
    assert!(attempts[2]["latency_ms"].as_i64().unwrap() >= 1500);
    assert_eq!(attempts[3]["status"], 200);
    for a in attempts {
        assert!(a["at"].as_str().unwrap().ends_with('Z'));
    }

    // Replay: the same event again, same id.
    let did = d["id"].as_str().unwrap();
    let (s, replayed) = app
        .post_json(
            &format!("/api/v1/webhooks/{hook}/deliveries/{did}/replay"),
            &json!({}),
        )
        .await;
    assert_eq!(s, 200, "{replayed}");
    let got = rx.wait_for(5, DEADLINE).await;
    assert_eq!(got[4].id(), event);
    verify_signatures(&secret, &got[4..]);
    assert_error(
        &app.post_json(
            &format!("/api/v1/webhooks/{hook}/deliveries/nope/replay"),
            &json!({}),
        )
        .await,
        404,
        "resource_not_found",
    );
}
both_backends!(deliveries_are_retried_signed_and_logged);

/// A 410 Gone disables the webhook (no delivery is queued for it any more) until it is
/// enabled again.
async fn gone_disables_the_webhook(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let rx = WebhookReceiver::start().await;
    rx.plan([Reply::Status(410)]);
    let acc = account(&app).await;
    let (hook, _) = create(
        &app,
        json!({"source": "email", "request_url": rx.url("/gone")}),
    )
    .await;
    mail_event(&app, &acc, "mail_received", 1).await;
    let w = wait::until("the webhook disabled", DEADLINE, || async {
        let (_, w) = app.get(&format!("/api/v1/webhooks/{hook}")).await;
        (w["enabled"] == false).then_some(w)
    })
    .await;
    assert!(w["disabled_reason"].as_str().unwrap().contains("410"));
    assert_eq!(rx.received().len(), 1);
    let d = deliveries(&app, &hook).await;
    assert_eq!(d[0]["status"], "failed");
    assert_eq!(d[0]["attempts"][0]["status"], 410);
    let later = mail_event(&app, &acc, "mail_received", 2).await;
    assert!(
        webhook_deliveries::of_event(&app.store, &later)
            .await
            .unwrap()
            .is_empty(),
        "nothing queued for a disabled webhook"
    );
    let (s, w) = app
        .call(
            app.request(Method::PATCH, &format!("/api/v1/webhooks/{hook}"))
                .json(&json!({"enabled": true})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(w["enabled"], true);
    assert!(w.get("disabled_reason").is_none());
    let third = mail_event(&app, &acc, "mail_received", 3).await;
    rx.wait_until("the event after re-enabling", DEADLINE, |r| {
        r.iter().any(|r| r.id() == third)
    })
    .await;
}
both_backends!(gone_disables_the_webhook);

/// For one account, a later event is not sent before the earlier one is settled, while
/// another account's events are not held up by it.
async fn one_accounts_events_arrive_in_order(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let rx = WebhookReceiver::start().await;
    let a = account(&app).await;
    create(
        &app,
        json!({"source": "email", "request_url": rx.url("/order"), "events": ["mail_received", "mail_read"]}),
    )
    .await;
    rx.plan([Reply::Status(500), Reply::Status(500), Reply::Status(500)]);
    let e1 = mail_event(&app, &a, "mail_received", 1).await;
    let e2 = mail_event(&app, &a, "mail_read", 2).await;
    let e3 = mail_event(&app, &a, "mail_received", 3).await;
    let got = rx.wait_for(6, DEADLINE).await;
    let ids: Vec<&str> = got.iter().map(|r| r.id()).collect();
    assert_eq!(
        ids,
        [&e1, &e1, &e1, &e1, &e2, &e3].map(String::as_str),
        "in order, each after the previous one was delivered"
    );
    assert_eq!(got[4].json()["event"], "mail_read");
}
both_backends!(one_accounts_events_arrive_in_order);

/// `format: "form"` and the rename map; the account filter; delivery well under a second after
/// the event is recorded.
async fn form_rename_and_account_filter(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    // A poll far longer than the deadline below: only the wake-up on commit can be that quick.
    let app = spawn_on(db, |s| s.webhooks.poll_interval = Duration::from_secs(60)).await;
    let rx = WebhookReceiver::start().await;
    let a = account(&app).await;
    let b = account(&app).await;
    let (_, secret) = create(
        &app,
        json!({"source": "email", "request_url": rx.url("/form"), "format": "form", "name": "f",
               "account_ids": [a], "data": [{"name": "mail_id", "key": "email_id"}, {"name": "title", "key": "subject"}]}),
    )
    .await;
    let skipped = mail_event(&app, &b, "mail_received", 1).await;
    assert!(
        webhook_deliveries::of_event(&app.store, &skipped)
            .await
            .unwrap()
            .is_empty(),
        "another account's event is not for this webhook"
    );
    let recorded = std::time::Instant::now();
    let wanted = mail_event(&app, &a, "mail_received", 2).await;
    let got = rx.wait_for(1, DEADLINE).await;
    assert_eq!(got.len(), 1);
    // The worker is woken when the event's transaction commits, not at its next poll.
    let latency = got[0].at - recorded;
    assert!(
        latency < Duration::from_secs(1),
        "delivered after {latency:?}"
    );
    assert_eq!(got[0].id(), wanted);
    assert_eq!(
        got[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form = got[0].form();
    assert_eq!(form["mail_id"], "email-2");
    assert_eq!(form["title"], "subject 2");
    assert_eq!(form["webhook_name"], "f");
    assert_eq!(form["account_id"], a);
    assert!(!form.contains_key("email_id") && !form.contains_key("subject"));
    assert_eq!(form["to_attendees"], r#"[{"identifier":"r@example.test"}]"#);
    verify_signatures(&secret, &got);
}
both_backends!(form_rename_and_account_filter);

/// Without MAILROOM_WEBHOOK_ALLOW_PRIVATE, a loopback address is refused when the webhook is
/// created, and a name resolving to one at each delivery: nothing reaches the receiver, the
/// log says why.
async fn the_ssrf_guard_refuses_private_targets(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = spawn_on(db, |s| s.webhook_allow_private = false).await;
    let rx = WebhookReceiver::start().await;
    let r = app
        .post_json(
            "/api/v1/webhooks",
            &json!({"source": "email", "request_url": rx.url("/x")}),
        )
        .await;
    assert_error(&r, 400, "invalid_parameters");
    assert!(
        r.1["detail"]
            .as_str()
            .unwrap()
            .contains("MAILROOM_WEBHOOK_ALLOW_PRIVATE")
    );
    let (hook, _) = create(
        &app,
        json!({"source": "email", "request_url": format!("http://localhost:{}/x", rx.port)}),
    )
    .await;
    let acc = account(&app).await;
    mail_event(&app, &acc, "mail_received", 1).await;
    let d = wait::until("a refused attempt", DEADLINE, || async {
        let d = deliveries(&app, &hook).await;
        (!d.is_empty() && !d[0]["attempts"].as_array().unwrap().is_empty()).then_some(d)
    })
    .await;
    let err = d[0]["attempts"][0]["error"].as_str().unwrap();
    assert!(err.contains("SSRF guard"), "{err}");
    assert!(rx.received().is_empty());
}
both_backends!(the_ssrf_guard_refuses_private_targets);

/// The previous secret signs too during the overlap: both signatures verify, each with its
/// own secret.
async fn rotated_secrets_overlap(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let rx = WebhookReceiver::start().await;
    let acc = account(&app).await;
    let (hook, old) = create(
        &app,
        json!({"source": "email", "request_url": rx.url("/r")}),
    )
    .await;
    let (s, rotated) = app
        .post_json(
            &format!("/api/v1/webhooks/{hook}/rotate-secret"),
            &json!({"overlap_seconds": 3600}),
        )
        .await;
    assert_eq!(s, 200, "{rotated}");
    assert_eq!(rotated["object"], "WebhookSecretRotated");
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    mail_event(&app, &acc, "mail_received", 1).await;
    let got = rx.wait_for(1, DEADLINE).await;
    let sig = got[0].header("webhook-signature").unwrap();
    assert_eq!(sig.split(' ').count(), 2, "{sig}");
    verify_signatures(&new, &got);
    verify_signatures(&old, &got);
    assert_error(
        &app.post_json(
            &format!("/api/v1/webhooks/{hook}/rotate-secret"),
            &json!({"overlap_seconds": -1}),
        )
        .await,
        400,
        "invalid_parameters",
    );
}
both_backends!(rotated_secrets_overlap);

/// Events recorded while the server is down, and one whose attempt the stop cut short, are all
/// delivered by the next server on the same database, with their ids.
async fn deliveries_survive_a_restart(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let rx = WebhookReceiver::start().await;
    let acc = account(&app).await;
    let (_, secret) = create(
        &app,
        json!({"source": "email", "request_url": rx.url("/restart"), "events": ["mail_received"]}),
    )
    .await;
    rx.plan([Reply::Hang(Duration::from_secs(5))]);
    let first = mail_event(&app, &acc, "mail_received", 1).await;
    rx.wait_for(1, DEADLINE).await;
    let workspace = app.workspace.clone();
    let db = app.stop().await;
    // The stopped server closed its pool; this is another client of the database.
    let store = mailroom_store::Store::connect(&db.url).await.unwrap();
    // Recorded while no server runs (as another process would).
    let mut later = vec![];
    for n in 2..=4 {
        let id = events::event_id(&["mail_received", &acc, &format!("down-{n}")]);
        events::record(
            &store,
            NewEvent {
                id: id.clone(),
                workspace_id: &workspace,
                account_id: Some(&acc),
                kind: "mail_received",
                payload: json!({"event": "mail_received", "email_id": format!("e{n}")}),
                now_ms: SystemClock.now_ms(),
            },
        )
        .await
        .unwrap();
        later.push(id);
    }
    let app = spawn_on(db, |_| {}).await;
    let got = rx
        .wait_until("every event delivered", DEADLINE, |r| {
            later.iter().all(|id| r.iter().any(|x| x.id() == id))
        })
        .await;
    let ids: Vec<&str> = got.iter().map(|r| r.id()).collect();
    assert!(ids.iter().filter(|i| **i == first).count() >= 2, "{ids:?}");
    // In order: the first event (retried) before the later ones.
    let last_first = ids.iter().rposition(|i| *i == first).unwrap();
    for id in &later {
        assert!(ids.iter().position(|i| i == id).unwrap() > last_first);
    }
    verify_signatures(&secret, &got);
    drop(app);
}
both_backends!(deliveries_survive_a_restart);

/// Against the real Dovecot, with the sync running: the account's status changes reach an
/// `account_status` webhook as `{"AccountStatus": …}` (CREATION_SUCCESS, then the sync's
/// OK and SYNC_SUCCESS; RECONNECTED; DELETED), and a message delivered to the mailbox reaches
/// an `email` webhook as a signed `mail_received`.
/// Puts `raw` into `user`'s INBOX over IMAP (as a delivery would).
async fn append_to_inbox(rig: &MailRig, user: &mailroom_testkit::MailUser, raw: &str) {
    let mut session = rig.imap(user).await;
    session
        .append("INBOX", None, None, raw.as_bytes())
        .await
        .expect("APPEND");
    let _ = session.logout().await;
}

async fn dovecot_mail_and_status_reach_the_receiver(backend: Backend) {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = spawn_on(db, |s| {
        s.sync = mailroom_server::Settings::sync_for_tests();
        s.sync.sweep = Duration::from_secs(1);
    })
    .await;
    let rx = WebhookReceiver::start().await;
    let (_, status_secret) = create(
        &app,
        json!({"source": "account_status", "request_url": rx.url("/status")}),
    )
    .await;
    let (_, mail_secret) = create(
        &app,
        json!({"source": "email", "request_url": rx.url("/mail"), "name": "dovecot"}),
    )
    .await;
    let user = rig.create_user();
    let (s, created) = app
        .post_json("/api/v1/accounts", &rig.account_body(&user))
        .await;
    assert_eq!(s, 201, "{created}");
    let acc = created["account_id"].as_str().unwrap().to_owned();
    let statuses = |r: &[mailroom_testkit::webhook_receiver::Received]| -> Vec<String> {
        r.iter()
            .filter(|r| r.path == "/status")
            .map(|r| {
                r.json()["AccountStatus"]["message"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let got = rx
        .wait_until("CREATION_SUCCESS, OK, SYNC_SUCCESS", DEADLINE, |r| {
            let s = statuses(r);
            ["CREATION_SUCCESS", "OK", "SYNC_SUCCESS"]
                .iter()
                .all(|m| s.iter().any(|x| x == m))
        })
        .await;
    let s = statuses(&got);
    assert_eq!(s[0], "CREATION_SUCCESS", "{s:?}");
    let first = got.iter().find(|r| r.path == "/status").unwrap().json();
    assert_eq!(
        first,
        json!({"AccountStatus": {"account_id": acc, "account_type": "MAIL", "message": "CREATION_SUCCESS"}})
    );
    let status_requests: Vec<_> = got
        .iter()
        .filter(|r| r.path == "/status")
        .cloned()
        .collect();
    verify_signatures(&status_secret, &status_requests);

    // New mail → mail_received.
    let mid = format!("<wh-{}@example.test>", mailroom_testkit::token());
    let raw = format!(
        "From: Sender <s@example.test>\r\nTo: {}\r\nSubject: webhook live\r\nMessage-ID: {mid}\r\n\
         Date: Tue, 1 Dec 2026 12:00:00 +0000\r\n\r\nhello\r\n",
        user.address
    );
    append_to_inbox(&rig, &user, &raw).await;
    let got = rx
        .wait_until("mail_received", DEADLINE, |r| {
            r.iter()
                .any(|r| r.path == "/mail" && r.json()["message_id"] == mid.as_str())
        })
        .await;
    let mail: Vec<_> = got.iter().filter(|r| r.path == "/mail").cloned().collect();
    let m = mail
        .iter()
        .find(|r| r.json()["message_id"] == mid.as_str())
        .unwrap()
        .json();
    assert_eq!(m["event"], "mail_received");
    assert_eq!(m["account_id"], acc.as_str());
    assert_eq!(m["subject"], "webhook live");
    assert_eq!(m["webhook_name"], "dovecot");
    assert_eq!(m["role"], "inbox");
    assert_eq!(m["body_plain"].as_str().unwrap().trim(), "hello");
    assert_eq!(m["body"], m["body_plain"], "no HTML part: the text");
    assert_eq!(m["is_complete"], true);
    assert_eq!(
        m["in_reply_to"],
        serde_json::Value::Null,
        "it answers nothing"
    );
    verify_signatures(&mail_secret, &mail);

    // A reply to it: `in_reply_to` names the first by Message-ID and by its id in the index.
    let reply_mid = format!("<wh-re-{}@example.test>", mailroom_testkit::token());
    let raw = format!(
        "From: Sender <s@example.test>\r\nTo: {}\r\nSubject: Re: webhook live\r\nMessage-ID: {reply_mid}\r\n\
         In-Reply-To: {mid}\r\nDate: Tue, 1 Dec 2026 12:05:00 +0000\r\n\r\nthanks\r\n",
        user.address
    );
    append_to_inbox(&rig, &user, &raw).await;
    let got = rx
        .wait_until("the reply's mail_received", DEADLINE, |r| {
            r.iter()
                .any(|r| r.path == "/mail" && r.json()["message_id"] == reply_mid.as_str())
        })
        .await;
    let reply = got
        .iter()
        .find(|r| r.path == "/mail" && r.json()["message_id"] == reply_mid.as_str())
        .unwrap()
        .json();
    assert_eq!(
        reply["in_reply_to"],
        json!({"message_id": mid, "id": m["email_id"]}),
        "{reply}"
    );

    // Reconnect, then delete.
    let (s, r) = app
        .post_json(
            &format!("/api/v1/accounts/{acc}"),
            &json!({"imap_password": user.password, "smtp_password": user.password}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    rx.wait_until("RECONNECTED", DEADLINE, |r| {
        statuses(r).iter().any(|m| m == "RECONNECTED")
    })
    .await;
    let (s, _) = app.delete(&format!("/api/v1/accounts/{acc}")).await;
    assert_eq!(s, 200);
    rx.wait_until("DELETED", DEADLINE, |r| {
        statuses(r).iter().any(|m| m == "DELETED")
    })
    .await;
    // Every body received is what the OpenAPI document's webhooks say.
    for r in rx.received() {
        let body = r.json();
        match r.path.as_str() {
            "/status" => openapi_check::assert_delivered("account_status", &body),
            _ => openapi_check::assert_delivered(body["event"].as_str().unwrap(), &body),
        }
    }
}
both_backends!(dovecot_mail_and_status_reach_the_receiver);

/// At most `per_host` attempts to one host at once, however many queues are due.
async fn attempts_to_one_host_are_bounded(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = spawn_on(db, |s| s.webhooks.per_host = 2).await;
    let rx = WebhookReceiver::start().await;
    rx.plan([Reply::Hang(Duration::from_millis(700)); 6]);
    create(
        &app,
        json!({"source": "email", "request_url": rx.url("/bounded")}),
    )
    .await;
    // Six accounts: six queues, all due at once.
    for n in 0..6 {
        let acc = account(&app).await;
        mail_event(&app, &acc, "mail_received", n).await;
    }
    rx.wait_for(6, DEADLINE).await;
    wait::until("the answers", DEADLINE, || async {
        (rx.in_flight() == 0).then_some(())
    })
    .await;
    assert_eq!(rx.max_in_flight(), 2, "per-host bound");
}
both_backends!(attempts_to_one_host_are_bounded);
