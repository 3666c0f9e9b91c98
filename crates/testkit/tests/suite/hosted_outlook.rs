//! Outlook / Microsoft 365 accounts end to end against the in-process Microsoft fake: hosted
//! consent, sending through Graph (MIME, and drafts with upload sessions past 4 MB), replies in
//! the conversation, refresh-token rotation, revocation and reconnect.

use std::time::Duration;

use base64::Engine as _;
use reqwest::redirect::Policy;
use serde_json::{Value, json};

use mailroom_server::config::AppConfig;
use mailroom_store::accounts::{self, Credentials};
use mailroom_testkit::app::{TestApp, assert_error, spawn_on};
use mailroom_testkit::fakes::microsoft::{
    AuthorizeDecision, FakeMicrosoft, MicrosoftConfig, SentVia,
};
use mailroom_testkit::integrator::Integrator;
use mailroom_testkit::{Backend, TestDb, both_backends, wait};
use secrecy::{ExposeSecret, SecretString};

async fn outlook_app(backend: Backend) -> Option<(TestApp, FakeMicrosoft, Integrator)> {
    let db = TestDb::new(backend).await?;
    let ms = FakeMicrosoft::start(MicrosoftConfig::default()).await;
    let cfg = ms.config();
    let app = spawn_on(db, |s| {
        s.microsoft = Some(AppConfig {
            client_id: cfg.client_id.clone(),
            client_secret: SecretString::from(cfg.client_secret.clone()),
            auth_url: ms.auth_url(),
            token_url: ms.token_url(),
            api_url: ms.graph_url(),
        });
    })
    .await;
    Some((app, ms, Integrator::start().await))
}

fn in_an_hour() -> String {
    mailroom_core::time_fmt::format_datetime(
        time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    )
}

async fn connect_microsoft(
    app: &TestApp,
    integrator: &Integrator,
    extra: Value,
) -> reqwest::Response {
    let mut body = json!({
        "type": "create", "providers": ["OUTLOOK"], "expiresOn": in_an_hour(), "api_url": app.base_url, "name": "n",
        "success_redirect_url": integrator.url("/success"), "failure_redirect_url": integrator.url("/failure"),
        "notify_url": integrator.url("/notify"),
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (s, r) = app.post_json("/api/v1/hosted/accounts/link", &body).await;
    assert_eq!(s, 201, "{r}");
    let link = r["url"].as_str().unwrap().to_owned();
    let b = reqwest::Client::builder()
        .redirect(Policy::limited(10))
        .build()
        .unwrap();
    let html = b.get(&link).send().await.unwrap().text().await.unwrap();
    assert!(
        html.contains("Microsoft") && !html.contains("Google"),
        "only the link's providers are offered"
    );
    b.post(format!("{link}/oauth/microsoft"))
        .send()
        .await
        .unwrap()
}

async fn linked(app: &TestApp, integrator: &Integrator) -> String {
    let landed = connect_microsoft(app, integrator, json!({})).await;
    assert_eq!(landed.text().await.unwrap(), "integrator: connected");
    let (_, q) = integrator.redirects().pop().unwrap();
    q.iter().find(|(k, _)| k == "account_id").unwrap().1.clone()
}

async fn outlook_linking_and_sending(backend: Backend) {
    let Some((app, ms, integrator)) = outlook_app(backend).await else {
        return;
    };
    let account = linked(&app, &integrator).await;
    let n = integrator.notified(1).await;
    assert_eq!(
        (n["status"].as_str(), n["account_id"].as_str()),
        (Some("CREATION_SUCCESS"), Some(account.as_str()))
    );
    let (_, acc) = app.get(&format!("/api/v1/accounts/{account}")).await;
    assert_eq!(acc["type"], "OUTLOOK");
    assert_eq!(
        acc["connection_params"]["mail"]["username"],
        ms.config().mail.as_str()
    );
    assert_eq!(
        acc["connection_params"]["mail"]["id"],
        ms.config().user_id.as_str()
    );

    // Small: MIME through sendMail, Bcc delivered but not shown.
    let small = json!({"account_id": account, "to": [{"identifier": "ann@example.test"}], "bcc": [{"identifier": "boss@example.test"}],
                       "subject": "hello", "body": "<p>hi</p>"});
    let (s, sent) = app.post_json("/api/v1/emails", &small).await;
    assert_eq!(s, 201, "{sent}");
    let item = ms.sent_items().pop().unwrap();
    assert_eq!(item.via, SentVia::SendMail);
    assert_eq!(item.bcc, vec!["boss@example.test".to_owned()]);
    assert_eq!(
        item.internet_message_id,
        sent["message_id"].as_str().unwrap()
    );

    // Large (a 5 MB attachment): a draft with an upload session, then send.
    let big: Vec<u8> = (0..5 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    let large = json!({"account_id": account, "to": [{"identifier": "ann@example.test"}], "subject": "big", "body": "<p>file</p>",
        "attachments": [{"filename": "big.bin", "content": base64::engine::general_purpose::STANDARD.encode(&big)}]});
    let (s, sent) = app.post_json("/api/v1/emails", &large).await;
    assert_eq!(s, 201, "{sent}");
    let item = ms.sent_items().pop().unwrap();
    assert_eq!(item.via, SentVia::Draft);
    let att = item
        .attachments
        .iter()
        .find(|a| a.name == "big.bin")
        .unwrap();
    assert_eq!(att.bytes, big, "byte-exact through the upload session");

    // A reply to a mail in the inbox stays in its conversation.
    let parent = ms.deliver_inbound(b"From: Ann <ann@example.test>\r\nTo: adele@contoso.example\r\nSubject: Offer\r\nMessage-ID: <offer1@example.test>\r\n\r\nInterested?\r\n");
    let reply = json!({"account_id": account, "to": [{"identifier": "ann@example.test"}], "body": "<p>Yes</p>", "subject": "Re: Offer", "reply_to": "<offer1@example.test>"});
    let (s, r) = app.post_json("/api/v1/emails", &reply).await;
    assert_eq!(s, 201, "{r}");
    let item = ms.sent_items().pop().unwrap();
    assert_eq!(
        item.conversation_id, parent.conversation_id,
        "the reply joined the conversation"
    );
}
both_backends!(outlook_linking_and_sending);

#[tokio::test]
async fn the_rotated_refresh_token_is_saved() {
    let Some((app, ms, integrator)) = outlook_app(Backend::Sqlite).await else {
        return;
    };
    let account = linked(&app, &integrator).await;
    let refresh_of = |c: Credentials| match c {
        Credentials::OAuth { refresh_token, .. } => refresh_token.expose_secret().to_owned(),
        other => panic!("{other:?}"),
    };
    let before = refresh_of(
        accounts::credentials(&app.store, &app.vault, &account)
            .await
            .unwrap()
            .unwrap(),
    );
    ms.expire_access_tokens();
    // Our copy still looks fresh; the provider's 401 makes mailroom refresh and try again.
    let body = json!({"account_id": account, "to": [{"identifier": "ann@example.test"}], "subject": "s", "body": "b"});
    let (s, r) = app.post_json("/api/v1/emails", &body).await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(ms.refresh_count(), 1);
    let after = refresh_of(
        accounts::credentials(&app.store, &app.vault, &account)
            .await
            .unwrap()
            .unwrap(),
    );
    assert_ne!(
        before, after,
        "Microsoft rotated the refresh token and mailroom kept the new one"
    );
}

#[tokio::test]
async fn revoked_grant_then_reconnect_and_denial() {
    let Some((app, ms, integrator)) = outlook_app(Backend::Sqlite).await else {
        return;
    };
    let account = linked(&app, &integrator).await;
    ms.revoke();
    ms.expire_access_tokens();
    let body = json!({"account_id": account, "to": [{"identifier": "ann@example.test"}], "subject": "s", "body": "b"});
    let (s, sent) = app.post_json("/api/v1/emails", &body).await;
    assert_eq!(s, 202, "{sent}");
    assert_eq!(
        app.get(&format!("/api/v1/accounts/{account}")).await.1["sources"][0]["status"],
        "CREDENTIALS"
    );
    assert_error(
        &app.post_json("/api/v1/emails", &body).await,
        401,
        "disconnected_account",
    );

    // The user cancels once, then accepts.
    ms.set_decision(AuthorizeDecision::Deny);
    let r = connect_microsoft(
        &app,
        &integrator,
        json!({"type": "reconnect", "reconnect_account": account}),
    )
    .await;
    assert_eq!(r.text().await.unwrap(), "integrator: not connected");
    ms.set_decision(AuthorizeDecision::Approve);
    let r = connect_microsoft(
        &app,
        &integrator,
        json!({"type": "reconnect", "reconnect_account": account}),
    )
    .await;
    assert_eq!(r.text().await.unwrap(), "integrator: connected");
    assert_eq!(
        app.get(&format!("/api/v1/accounts/{account}")).await.1["sources"][0]["status"],
        "OK"
    );
    let id = sent["tracking_id"].as_str().unwrap().to_owned();
    wait::until(
        "the waiting send goes out",
        Duration::from_secs(30),
        || async {
            (app.get(&format!("/api/v1/outbox/{id}")).await.1["status"] == "sent").then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn at_most_four_requests_per_mailbox_and_reconnect_with_tokens() {
    let Some((app, ms, integrator)) = outlook_app(Backend::Sqlite).await else {
        return;
    };
    let account = linked(&app, &integrator).await;
    // Graph throttles past 4 concurrent requests per mailbox; mailroom never goes past it.
    ms.set_concurrency_limit(Some(4));
    let sends = (0..12).map(|i| {
        let body = json!({"account_id": account, "to": [{"identifier": "ann@example.test"}], "subject": format!("c{i}"), "body": "b"});
        let app = &app;
        async move { app.post_json("/api/v1/emails", &body).await.0 }
    });
    let statuses = futures_util::future::join_all(sends).await;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    assert_eq!(ms.throttled_count(), 0, "no request was throttled");

    // POST /accounts/{id} with new tokens reconnects an Outlook account.
    let t = ms.mint_tokens(&[
        "offline_access",
        "https://graph.microsoft.com/User.Read",
        "https://graph.microsoft.com/Mail.ReadWrite",
        "https://graph.microsoft.com/Mail.Send",
    ]);
    let r = app
        .post_json(&format!("/api/v1/accounts/{account}"), &json!({"provider": "OUTLOOK", "access_token": t.access_token, "refresh_token": t.refresh_token}))
        .await;
    assert_eq!(
        r,
        (
            200,
            json!({"object": "AccountReconnected", "account_id": account})
        )
    );
    let r = app
        .post_json(
            &format!("/api/v1/accounts/{account}"),
            &json!({"imap_password": "x"}),
        )
        .await;
    assert_error(&r, 400, "missing_parameters");
}
