//! Outlook push through Graph change notifications, against the in-process Microsoft fake
//! (both backends), with mailroom's public URL on its own loopback address (the fake validates
//! the notification URL and posts to it) and a sweep of an hour, so that only push explains
//! what is seen quickly: the subscription made by the sync loop (the `validationToken`
//! handshake passed), new mail listed and announced within 2 s, a push and a poll that see the
//! same change announcing it once, forged notifications ignored, renewal before expiry, the
//! lifecycle events (`reauthorizationRequired`, `subscriptionRemoved`, `missed`), one live
//! subscription per account through a reconnect, a restart and a deletion, and none left once
//! push is turned off.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use mailroom_engine::sync::SyncConfig;
use mailroom_server::Settings;
use mailroom_store::push_subscriptions::{self, PushSubscription};
use mailroom_store::{api_keys, events, sync_leases};
use mailroom_testkit::app::{TestApp, spawn_on, spawn_public};
use mailroom_testkit::fakes::microsoft::{FakeMicrosoft, InboundMessage, MicrosoftConfig};
use mailroom_testkit::{Backend, TestDb, both_backends, wait};

use crate::feed_sync::{self, by_subject};
use crate::graph_sync::{inbound, microsoft_app_config, outlook_grant};

/// The sweep: long enough that a poll cannot explain anything a test waits for.
const SWEEP: Duration = Duration::from_secs(3600);

struct Pushed {
    app: TestApp,
    ms: FakeMicrosoft,
    acc: String,
    /// The account's workspace (the first app's: a restarted app has a workspace of its own).
    workspace: String,
}

fn sync_config(lifetime: Option<Duration>) -> SyncConfig {
    let mut c = SyncConfig {
        sweep: SWEEP,
        ..Settings::sync_for_tests()
    };
    if let Some(l) = lifetime {
        c.subscription_lifetime = l;
    }
    c
}

/// A mailroom reachable at its public URL, its sync loop running, a fresh fake Microsoft and
/// an Outlook account linked; returns once the first pass is done and the account's
/// subscription is live at the fake.
async fn pushed(backend: Backend, lifetime: Option<Duration>) -> Option<Pushed> {
    let db = TestDb::new(backend).await?;
    let ms = FakeMicrosoft::start(MicrosoftConfig::default()).await;
    let app = spawn_public(db, |s: &mut Settings| {
        s.microsoft = Some(microsoft_app_config(&ms));
        s.sync = sync_config(lifetime);
    })
    .await;
    let (s, r) = app.post_json("/api/v1/accounts", &outlook_grant(&ms)).await;
    assert_eq!(s, 201, "{r}");
    let acc = r["account_id"].as_str().unwrap().to_owned();
    let workspace = app.workspace.clone();
    let p = Pushed {
        app,
        ms,
        acc,
        workspace,
    };
    wait::until("the first pass", Duration::from_secs(20), || async {
        (feed_sync::status(&p.app, &p.acc).await == "OK").then_some(())
    })
    .await;
    live_subscription(&p).await;
    Some(p)
}

/// The id of the account's subscription when exactly one is live at the fake and it is the
/// one mailroom stores.
async fn current_subscription(p: &Pushed) -> Option<String> {
    let live = p.ms.subscriptions();
    let stored = stored(p).await;
    match (live.as_slice(), stored.as_slice()) {
        ([(id, _, _)], [s]) if *id == s.id => Some(id.clone()),
        _ => None,
    }
}

/// Waits for [`current_subscription`].
async fn live_subscription(p: &Pushed) -> String {
    wait::until("one stored subscription", Duration::from_secs(20), || {
        current_subscription(p)
    })
    .await
}

async fn stored(p: &Pushed) -> Vec<PushSubscription> {
    push_subscriptions::of_account(&p.app.store, &p.acc)
        .await
        .unwrap()
}

async fn events_of(p: &Pushed, kind: &str) -> Vec<Value> {
    events::of_type(&p.app.store, &p.workspace, kind)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .collect()
}

/// Delivers a message to the fake's inbox and waits for its `mail_received` (the
/// `announced`-th): within 2 s, so by push (the sweep is an hour).
async fn delivered_by_push(p: &Pushed, name: &str, announced: usize) -> InboundMessage {
    let start = Instant::now();
    let d = p.ms.deliver_inbound(&inbound(name));
    wait::until(
        "the pushed mail is announced",
        Duration::from_secs(10),
        || async { (events_of(p, "mail_received").await.len() >= announced).then_some(()) },
    )
    .await;
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "delivery → event took {took:?}"
    );
    assert_eq!(events_of(p, "mail_received").await.len(), announced);
    d
}

/// The fake's requests matching `method` and a path that ends with `tail`, from `from` on.
fn requests(ms: &FakeMicrosoft, from: usize, method: &str, tail: &str) -> usize {
    ms.request_log()[from..]
        .iter()
        .filter(|r| r.method == method && r.path.ends_with(tail))
        .count()
}

/// Waits until mailroom answered every notification the fake posted so far, and none failed.
async fn notifications_settled(ms: &FakeMicrosoft, at_least: usize) {
    wait::until(
        "the notifications answered",
        Duration::from_secs(10),
        || async {
            let (ok, failed) = ms.notifications();
            assert_eq!(failed, 0, "a notification was refused");
            (ok >= at_least).then_some(())
        },
    )
    .await;
}

/// A message delivered with push on is listed and announced within 2 s (the sweep is an
/// hour); the subscription was made as Graph wants it (its handshake passed at the fake); a
/// push and a forced poll that see the same changes announce each once.
async fn outlook_push_brings_new_mail_within_two_seconds(backend: Backend) {
    let Some(p) = pushed(backend, None).await else {
        return;
    };
    let id = live_subscription(&p).await;
    let (_, resource, expires) = p.ms.subscriptions().remove(0);
    assert_eq!(resource, "me/messages");
    let days = (expires - time::OffsetDateTime::now_utc().unix_timestamp()) as f64 / 86_400.0;
    assert!((2.9..=3.0).contains(&days), "3 days asked: {days}");
    assert_eq!(stored(&p).await[0].expires_at / 1000, expires);
    let posts = requests(&p.ms, 0, "POST", "/subscriptions");
    assert_eq!(posts, 1, "one subscription made");

    let d = delivered_by_push(&p, "pushed", 1).await;
    let items = feed_sync::emails(&p.app, &p.acc, "").await;
    let item = by_subject(&items, "about pushed").expect("listed");
    assert_eq!(item["provider_id"], d.immutable_id.as_str());

    // A change pushed, and a poll forced at the same time over the same delta: once.
    p.ms.set_read(&d.id, true);
    let (s, _) = p.app.get(&format!("/api/v1/accounts/{}/sync", p.acc)).await;
    assert_eq!(s, 200);
    wait::until("the pushed read", Duration::from_secs(10), || async {
        (!events_of(&p, "mail_read").await.is_empty()).then_some(())
    })
    .await;
    // And a new message announced by push and poll alike.
    let before = p.ms.request_log().len();
    p.ms.deliver_inbound(&inbound("twice"));
    let (s, _) = p.app.get(&format!("/api/v1/accounts/{}/sync", p.acc)).await;
    assert_eq!(s, 200);
    wait::until("the second arrival", Duration::from_secs(10), || async {
        (events_of(&p, "mail_received").await.len() >= 2).then_some(())
    })
    .await;
    // Whatever passes the push and the poll still run read the same delta: wait until a pass
    // after the last change is complete (its delta requests answered), then count.
    wait::until("a pass after both", Duration::from_secs(10), || async {
        (requests(&p.ms, before, "GET", "/messages/delta") >= 2).then_some(())
    })
    .await;
    notifications_settled(&p.ms, 3).await;
    let (s, _) = p.app.get(&format!("/api/v1/accounts/{}/sync", p.acc)).await;
    assert_eq!(s, 200);
    let after = p.ms.request_log().len();
    wait::until("one more pass", Duration::from_secs(10), || async {
        (requests(&p.ms, after, "GET", "/messages/delta") >= 1).then_some(())
    })
    .await;
    assert_eq!(events_of(&p, "mail_received").await.len(), 2);
    assert_eq!(events_of(&p, "mail_read").await.len(), 1);
    assert_eq!(p.ms.subscriptions().len(), 1);
    assert_eq!(
        p.ms.subscriptions()[0].0,
        id,
        "the same subscription all along"
    );
}
both_backends!(outlook_push_brings_new_mail_within_two_seconds);

async fn resync_requested_at(p: &Pushed) -> Option<i64> {
    sync_leases::all(&p.app.store)
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.account_id == p.acc)
        .and_then(|l| l.resync_requested_at)
}

async fn post_push(p: &Pushed, body: &Value) -> reqwest::Response {
    p.app
        .client
        .post(p.app.url("/push/microsoft"))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The handshake echoes the token as `text/plain`; a notification with a wrong `clientState`,
/// none, or for a subscription mailroom does not hold is answered 202 and asks for nothing
/// (no pass requested, nothing announced); a malformed body is a 400 JSON error; a genuine
/// notification does ask for a pass.
async fn forged_notifications_trigger_nothing(backend: Backend) {
    let Some(p) = pushed(backend, None).await else {
        return;
    };
    let id = live_subscription(&p).await;
    let r = p
        .app
        .client
        .post(p.app.url(
            "/push/microsoft?validationToken=Validation%3A+Testing+client+application+reachability",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(
        r.text().await.unwrap(),
        "Validation: Testing client application reachability"
    );

    let before = resync_requested_at(&p).await;
    let tenant = p.ms.config().tenant_id;
    let change = |sub: &str, state: Option<&str>| {
        json!({"value": [{
            "subscriptionId": sub,
            "subscriptionExpirationDateTime": "2026-12-09T00:00:00.0000000Z",
            "changeType": "created",
            "resource": "Users/x/Messages/y",
            "resourceData": {"@odata.type": "#Microsoft.Graph.Message", "id": "y"},
            "clientState": state,
            "tenantId": tenant,
        }]})
    };
    for body in [
        change(&id, Some("not-the-secret")),
        change(&id, None),
        change("00000000-0000-0000-0000-000000000000", Some("anything")),
        json!({"value": [{"subscriptionId": id, "lifecycleEvent": "subscriptionRemoved", "clientState": "guess"}]}),
    ] {
        let r = post_push(&p, &body).await;
        assert_eq!(r.status(), 202, "{body}");
    }
    assert_eq!(resync_requested_at(&p).await, before, "no pass asked for");
    assert!(
        stored(&p).await[0].requested.is_none(),
        "no lifecycle request"
    );
    for kind in ["mail_received", "mail_read", "mail_moved", "mail_deleted"] {
        assert!(events_of(&p, kind).await.is_empty(), "{kind}");
    }

    for bad in [
        "not json".to_owned(),
        "{}".into(),
        json!({"value": [{"clientState": "x"}]}).to_string(),
    ] {
        let r = p
            .app
            .client
            .post(p.app.url("/push/microsoft"))
            .header("content-type", "application/json")
            .body(bad.clone())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        mailroom_testkit::app::assert_error(&(status, body), 400, "malformed_request");
    }

    p.ms.deliver_inbound(&inbound("genuine"));
    wait::until("a pass asked for", Duration::from_secs(10), || async {
        (resync_requested_at(&p).await != before).then_some(())
    })
    .await;
    wait::until("announced", Duration::from_secs(10), || async {
        (events_of(&p, "mail_received").await.len() == 1).then_some(())
    })
    .await;
}
both_backends!(forged_notifications_trigger_nothing);

/// With a 6 s lifetime the watch renews the subscription (`PATCH`) when 2 s are left: the
/// fake shows the same subscription with a later expiry, mailroom stores it, and mail still
/// arrives by push.
async fn the_subscription_is_renewed_before_it_expires(backend: Backend) {
    let Some(p) = pushed(backend, Some(Duration::from_secs(6))).await else {
        return;
    };
    let id = live_subscription(&p).await;
    let first = p.ms.subscriptions()[0].2;
    let renewed = wait::until("a renewal", Duration::from_secs(15), || async {
        let live = p.ms.subscriptions();
        (live.len() == 1 && live[0].0 == id && live[0].2 > first).then_some(live[0].2)
    })
    .await;
    assert!(requests(&p.ms, 0, "PATCH", &format!("/subscriptions/{id}")) >= 1);
    wait::until("the stored expiry", Duration::from_secs(15), || async {
        let s = stored(&p).await;
        (s.len() == 1 && s[0].id == id && s[0].expires_at / 1000 >= renewed).then_some(())
    })
    .await;
    // Still the one subscription, still pushing (within its renewed life).
    delivered_by_push(&p, "after renewal", 1).await;
    assert_eq!(requests(&p.ms, 0, "POST", "/subscriptions"), 1);
}
both_backends!(the_subscription_is_renewed_before_it_expires);

/// Lifecycle notifications: `reauthorizationRequired` → the subscription is renewed (a
/// `PATCH`, the request cleared); `missed` → a pass; `subscriptionRemoved` → a new
/// subscription (the old one forgotten) and mail arrives by push again.
async fn lifecycle_events_renew_resync_and_resubscribe(backend: Backend) {
    let Some(p) = pushed(backend, None).await else {
        return;
    };
    let first = live_subscription(&p).await;
    let from = p.ms.request_log().len();
    assert_eq!(p.ms.lifecycle("reauthorizationRequired"), 1);
    wait::until("the renewal", Duration::from_secs(10), || async {
        (requests(&p.ms, from, "PATCH", &format!("/subscriptions/{first}")) == 1).then_some(())
    })
    .await;
    wait::until("the request done", Duration::from_secs(10), || async {
        stored(&p).await[0].requested.is_none().then_some(())
    })
    .await;

    let from = p.ms.request_log().len();
    assert_eq!(p.ms.lifecycle("missed"), 1);
    wait::until("a pass", Duration::from_secs(10), || async {
        (requests(&p.ms, from, "GET", "/messages/delta") >= 1).then_some(())
    })
    .await;

    assert_eq!(p.ms.lifecycle("subscriptionRemoved"), 1);
    let second = wait::until("a new subscription", Duration::from_secs(20), || async {
        let live = p.ms.subscriptions();
        let stored = stored(&p).await;
        match (live.as_slice(), stored.as_slice()) {
            ([(id, _, _)], [s]) if *id != first && s.id == *id => Some(id.clone()),
            _ => None,
        }
    })
    .await;
    assert_ne!(second, first);
    delivered_by_push(&p, "resubscribed", 1).await;
    notifications_settled(&p.ms, 4).await;
}
both_backends!(lifecycle_events_renew_resync_and_resubscribe);

/// One live subscription per account at Graph: a reconnect (a new version of the account)
/// and a restart of mailroom (another process taking the account) each replace it, the old
/// one deleted at Graph; deleting the account deletes its subscription.
async fn one_live_subscription_through_reconnect_restart_and_deletion(backend: Backend) {
    let Some(p) = pushed(backend, None).await else {
        return;
    };
    let first = live_subscription(&p).await;
    let (s, r) = p
        .app
        .post_json(
            &format!("/api/v1/accounts/{}", p.acc),
            &outlook_grant(&p.ms),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let second = wait::until(
        "the reconnect's subscription",
        Duration::from_secs(20),
        || async { current_subscription(&p).await.filter(|id| *id != first) },
    )
    .await;
    assert!(requests(&p.ms, 0, "DELETE", &format!("/subscriptions/{first}")) >= 1);

    // Another process (a restart on the same database) takes the account over.
    let Pushed {
        app,
        ms,
        acc,
        workspace,
    } = p;
    let db = app.stop().await;
    let app = spawn_public(db, |s: &mut Settings| {
        s.microsoft = Some(microsoft_app_config(&ms));
        s.sync = sync_config(None);
    })
    .await;
    let p = Pushed {
        app,
        ms,
        acc,
        workspace,
    };
    let third = wait::until(
        "the new process's subscription",
        Duration::from_secs(30),
        || async { current_subscription(&p).await.filter(|id| *id != second) },
    )
    .await;
    assert_eq!(p.ms.subscriptions().len(), 1);
    assert!(requests(&p.ms, 0, "DELETE", &format!("/subscriptions/{second}")) >= 1);
    delivered_by_push(&p, "after restart", 1).await;

    // The account's workspace is the first process's: a key of it deletes the account.
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let key = api_keys::create(&p.app.store, &p.workspace, "t", now)
        .await
        .unwrap();
    use secrecy::ExposeSecret as _;
    let r = p
        .app
        .client
        .delete(p.app.url(&format!("/api/v1/accounts/{}", p.acc)))
        .header("X-API-KEY", key.token.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(p.ms.subscriptions().is_empty(), "ended with the account");
    assert!(requests(&p.ms, 0, "DELETE", &format!("/subscriptions/{third}")) >= 1);
    assert!(stored(&p).await.is_empty());
}
both_backends!(one_live_subscription_through_reconnect_restart_and_deletion);

/// Push turned off (mailroom restarted without a public URL): the account is polled again,
/// and the subscription the earlier process left is ended at Graph and forgotten.
async fn without_a_public_url_the_left_subscription_is_ended(backend: Backend) {
    let Some(p) = pushed(backend, None).await else {
        return;
    };
    let first = live_subscription(&p).await;
    let Pushed { app, ms, acc, .. } = p;
    let db = app.stop().await;
    let app = spawn_on(db, |s: &mut Settings| {
        s.microsoft = Some(microsoft_app_config(&ms));
        s.sync = sync_config(None);
    })
    .await;
    wait::until(
        "the subscription ended",
        Duration::from_secs(20),
        || async {
            let stored = push_subscriptions::of_account(&app.store, &acc)
                .await
                .unwrap();
            (ms.subscriptions().is_empty() && stored.is_empty()).then_some(())
        },
    )
    .await;
    assert_eq!(
        requests(&ms, 0, "DELETE", &format!("/subscriptions/{first}")),
        1
    );
    assert_eq!(requests(&ms, 0, "POST", "/subscriptions"), 1);
}
both_backends!(without_a_public_url_the_left_subscription_is_ended);
