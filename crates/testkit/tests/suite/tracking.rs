//! Open and click tracking end to end, on both backends: a send with `tracking_options`
//! delivered through the rig's Postfix to a Dovecot mailbox; the delivered HTML carries the
//! pixel and tracked links; fetching them as the recipient's client would records
//! `mail_opened` (first open only, scanners apart) and `mail_link_clicked` (every click) with
//! the client's address and agent, and a click lands on the message's own URL only.

use std::time::Duration;

use mail_parser::MessageParser;
use reqwest::redirect::Policy;
use serde_json::{Value, json};

use mailroom_store::events;
use mailroom_testkit::app::{TestApp, assert_error};
use mailroom_testkit::webhook_receiver::{WebhookReceiver, verify_signatures};
use mailroom_testkit::{Backend, MailRig, MailUser, both_backends, spawn_app, wait};

const PERSON: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15";
const SCANNER: &str = "Mozilla/5.0 (compatible; Proofpoint URL Defense)";

async fn delivered(rig: &MailRig, user: &MailUser, message_id: &str) -> Vec<u8> {
    let needle = format!("message-id: {}", message_id.to_ascii_lowercase());
    wait::until(
        "the tracked message delivered",
        Duration::from_secs(20),
        || async {
            rig.fetch_all(user, "INBOX").await.into_iter().find(|m| {
                String::from_utf8_lossy(m)
                    .to_ascii_lowercase()
                    .contains(&needle)
            })
        },
    )
    .await
}

async fn events_of(app: &TestApp, kind: &str) -> Vec<Value> {
    events::of_type(&app.store, &app.workspace, kind)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

/// The URLs of `html` that start with `prefix`, in order.
fn urls(html: &str, prefix: &str) -> Vec<String> {
    html.match_indices(prefix)
        .map(|(at, _)| {
            html[at..]
                .chars()
                .take_while(|c| !matches!(c, '"' | '\'' | ' ' | '>'))
                .collect()
        })
        .collect()
}

async fn opens_and_clicks_become_events(backend: Backend) {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (sender, to) = (rig.create_user(), rig.create_user());
    let (s, created) = app
        .post_json("/api/v1/accounts", &rig.account_body(&sender))
        .await;
    assert_eq!(s, 201, "{created}");
    let account = created["account_id"].as_str().unwrap();
    let rx = WebhookReceiver::start().await;
    let (s, hook) = app
        .post_json(
            "/api/v1/webhooks",
            &json!({"source": "email_tracking", "events": ["mail_opened", "mail_link_clicked"],
                    "request_url": rx.url("/tracking")}),
        )
        .await;
    assert_eq!(s, 201, "{hook}");
    let body = json!({
        "account_id": account,
        "to": [{"identifier": to.address}],
        "subject": "tracked",
        "body": "<p>See <a href=\"https://example.com/offer?a=1&amp;b=2\">the offer</a> and \
                 <a href=\"mailto:sales@example.com\">write</a>.</p>",
        "tracking_options": {"opens": true, "links": true, "label": "campaign-7"},
    });
    let (s, sent) = app.post_json("/api/v1/emails", &body).await;
    assert_eq!(s, 201, "{sent}");
    let tracking_id = sent["tracking_id"].as_str().unwrap();
    let raw = delivered(&rig, &to, sent["message_id"].as_str().unwrap()).await;
    let m = MessageParser::default().parse(&raw).unwrap();
    let html = m.body_html(0).unwrap().into_owned();
    let text = m.body_text(0).unwrap().into_owned();
    let base = app.base_url.trim_end_matches('/');
    let pixels = urls(&html, &format!("{base}/t/o/"));
    let clicks = urls(&html, &format!("{base}/t/c/"));
    assert_eq!((pixels.len(), clicks.len()), (1, 1), "{html}");
    assert!(!html.contains("https://example.com/offer"), "{html}");
    assert!(html.contains("mailto:sales@example.com"), "{html}");
    assert!(
        text.contains("https://example.com/offer"),
        "the text part is as written: {text}"
    );

    let client = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let fetch = |url: String, ua: &'static str| {
        let client = client.clone();
        async move {
            client
                .get(url)
                .header("user-agent", ua)
                .send()
                .await
                .unwrap()
        }
    };

    // A scanner first: marked, and it does not use up the person's first open.
    let r = fetch(pixels[0].clone(), SCANNER).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/gif");
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("no-store")
    );
    assert_eq!(&r.bytes().await.unwrap()[..6], b"GIF89a");
    for _ in 0..3 {
        assert_eq!(fetch(pixels[0].clone(), PERSON).await.status(), 200);
    }
    let opened = events_of(&app, "mail_opened").await;
    assert_eq!(opened.len(), 2, "one prefetch, one first open: {opened:#?}");
    let person = opened.iter().find(|e| e["prefetch"] == false).unwrap();
    assert_eq!(person["tracking_id"], tracking_id);
    assert_eq!(person["account_id"], account);
    assert_eq!(person["label"], "campaign-7");
    assert_eq!(person["user_agent"], PERSON);
    assert_eq!(person["ip"], "127.0.0.1");
    assert_eq!(person["type"], "mail_opened");
    assert!(
        opened
            .iter()
            .any(|e| e["prefetch"] == true && e["user_agent"] == SCANNER)
    );

    // Every click counts and goes to the message's own URL (its &amp; decoded).
    for n in 1..=2 {
        let r = fetch(clicks[0].clone(), PERSON).await;
        assert_eq!(r.status(), 302);
        assert_eq!(r.headers()["location"], "https://example.com/offer?a=1&b=2");
        assert_eq!(events_of(&app, "mail_link_clicked").await.len(), n);
    }
    let clicked = events_of(&app, "mail_link_clicked").await;
    assert_eq!(clicked[0]["url"], "https://example.com/offer?a=1&b=2");
    assert_eq!(clicked[0]["label"], "campaign-7");
    assert_ne!(clicked[0]["event_id"], clicked[1]["event_id"]);
    // The same events reach an `email_tracking` webhook, signed.
    let got = rx.wait_for(4, Duration::from_secs(20)).await;
    verify_signatures(hook["secret"].as_str().unwrap(), &got);
    let kinds: Vec<String> = got
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        (
            kinds.iter().filter(|k| *k == "mail_opened").count(),
            kinds.iter().filter(|k| *k == "mail_link_clicked").count()
        ),
        (2, 2),
        "{kinds:?}"
    );
    assert!(got.iter().all(|r| r.json()["tracking_id"] == tracking_id));
    for r in &got {
        let body = r.json();
        mailroom_testkit::openapi_check::assert_delivered(body["event"].as_str().unwrap(), &body);
    }

    // No open redirect: a token that was not in a message leads nowhere and records nothing;
    // an open token is no click token.
    for bad in [
        format!("{base}/t/c/AAAAAAAAAAAAAAAAAAAAAA"),
        format!("{base}/t/c/not-a-token"),
        pixels[0].replace("/t/o/", "/t/c/"),
    ] {
        let r = fetch(bad.clone(), PERSON).await;
        assert_eq!(r.status(), 404, "{bad}");
        assert!(r.headers().get("location").is_none());
    }
    assert_eq!(events_of(&app, "mail_link_clicked").await.len(), 2);
    // An unknown pixel is still an image (an old message never shows a broken one).
    let r = fetch(format!("{base}/t/o/AAAAAAAAAAAAAAAAAAAAAA"), PERSON).await;
    assert_eq!(r.status(), 200);
    assert_eq!(events_of(&app, "mail_opened").await.len(), 2);
}
both_backends!(opens_and_clicks_become_events);

async fn tracking_options_are_validated_and_custom_domains_used(backend: Backend) {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (sender, to) = (rig.create_user(), rig.create_user());
    let (_, created) = app
        .post_json("/api/v1/accounts", &rig.account_body(&sender))
        .await;
    let account = created["account_id"].as_str().unwrap();
    let send = |opts: Value| {
        json!({"account_id": account, "to": [{"identifier": to.address}], "subject": "t",
               "body": "<p><a href=\"https://example.com/x\">x</a></p>", "tracking_options": opts})
    };
    for bad in [
        json!({"opens": "yes"}),
        json!({"links": 1}),
        json!({"label": 7}),
        json!({"custom_domain": "not a host"}),
        json!({"custom_domain": "evil.example/path"}),
        json!({"opens": true, "pixel": true}),
        json!("opens"),
    ] {
        let (s, e) = app.post_json("/api/v1/emails", &send(bad.clone())).await;
        assert_error(&(s, e), 400, "invalid_parameters");
    }
    let (s, sent) = app
        .post_json(
            "/api/v1/emails",
            &send(json!({"opens": true, "links": true, "custom_domain": "Track.Example.com"})),
        )
        .await;
    assert_eq!(s, 201, "{sent}");
    let raw = delivered(&rig, &to, sent["message_id"].as_str().unwrap()).await;
    let html = MessageParser::default()
        .parse(&raw)
        .unwrap()
        .body_html(0)
        .unwrap()
        .into_owned();
    assert_eq!(
        urls(&html, "https://track.example.com/t/o/").len(),
        1,
        "{html}"
    );
    assert_eq!(
        urls(&html, "https://track.example.com/t/c/").len(),
        1,
        "{html}"
    );
    // The tokens work on any name that reaches this server.
    let token = urls(&html, "https://track.example.com/t/c/")[0]
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let r = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
        .get(format!(
            "{}/t/c/{token}",
            app.base_url.trim_end_matches('/')
        ))
        .header("user-agent", PERSON)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let clicked = events_of(&app, "mail_link_clicked").await;
    assert_eq!(clicked[0]["custom_domain"], "track.example.com");

    // Nothing asked (or a plain-text body): nothing added.
    let (s, sent) = app
        .post_json(
            "/api/v1/emails",
            &json!({"account_id": account, "to": [{"identifier": to.address}], "subject": "t",
                    "body": "plain https://example.com/y", "tracking_options": {"opens": true, "links": true}}),
        )
        .await;
    assert_eq!(s, 201, "{sent}");
    let raw = delivered(&rig, &to, sent["message_id"].as_str().unwrap()).await;
    assert!(
        !String::from_utf8_lossy(&raw).contains("/t/"),
        "plain text is not tracked"
    );
}
both_backends!(tracking_options_are_validated_and_custom_domains_used);
