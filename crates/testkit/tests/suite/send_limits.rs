//! Send limits per account (docs/sending.md "Send limits"), against the Google fake, on both
//! backends: a burst past a daily limit answers 202 with `scheduled_for` and every message
//! goes, none early, in order, as the rolling window reopens (a manual clock stands for the
//! day); the same shared by two nodes on one PostgreSQL database; a provider's quota answer
//! pauses the account's sends (`send_paused`) and they resume when it reopens; the limits set
//! on `POST /accounts`, hosted links and `PATCH /accounts/{id}`, validated; usage on
//! `GET /accounts/{id}`; an SMTP `5.4.5` through real Postfix pauses an IMAP/SMTP account;
//! Graph's `ErrorExceededMessageLimit` and `MailboxConcurrency` pause an Outlook account.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use mailroom_core::clock::ManualClock;
use mailroom_core::time_fmt::{format_ms, parse_ms};
use mailroom_core::{Clock, SystemClock};
use mailroom_store::events;
use mailroom_testkit::app::{TestApp, assert_error, spawn_on, spawn_with_clock};
use mailroom_testkit::fakes::google::{FakeGoogle, GoogleConfig};
use mailroom_testkit::fakes::microsoft::{FakeMicrosoft, MicrosoftConfig};
use mailroom_testkit::smtp_fault::{FaultSmtp, Mode, Stage};
use mailroom_testkit::{Backend, MailRig, TestDb, both_backends, wait};

use super::hosted::{connect_google, google_app, google_app_config, make_link};

const DAY_MS: i64 = 86_400_000;
const MODIFY: &str = "https://www.googleapis.com/auth/gmail.modify";

async fn app_on(db: TestDb, google: &FakeGoogle, clock: &ManualClock) -> TestApp {
    spawn_with_clock(db, Arc::new(clock.clone()), |s| {
        s.google = Some(google_app_config(google))
    })
    .await
}

/// Links the fake's mailbox with `extra` fields in the body; answers the account id.
async fn link(app: &TestApp, google: &FakeGoogle, extra: Value) -> String {
    let t = google.issue_tokens(&[MODIFY]);
    let mut body = json!({"provider": "GOOGLE_OAUTH", "access_token": t.access_token, "refresh_token": t.refresh_token});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (s, r) = app.post_json("/api/v1/accounts", &body).await;
    assert_eq!(s, 201, "{r}");
    r["account_id"].as_str().unwrap().to_owned()
}

async fn send(app: &TestApp, acc: &str, subject: &str) -> (u16, Value) {
    app.post_json(
        "/api/v1/emails",
        &json!({"account_id": acc, "to": [{"identifier": "ann@example.test"}], "subject": subject, "body": "hello"}),
    )
    .await
}

fn subjects(google: &FakeGoogle) -> Vec<String> {
    google
        .sent_messages()
        .iter()
        .map(|m| {
            let raw = String::from_utf8_lossy(&m.raw).into_owned();
            raw.lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned))
                .unwrap_or_default()
        })
        .collect()
}

async fn sent_count(google: &FakeGoogle, n: usize) {
    wait::until(
        &format!("{n} messages sent"),
        Duration::from_secs(30),
        || async { (google.sent_messages().len() >= n).then_some(()) },
    )
    .await;
}

/// The job's `scheduled_for` and `sent_at` (ms) from `GET /outbox/{id}`.
async fn job(app: &TestApp, id: &str) -> Value {
    let (s, j) = app.get(&format!("/api/v1/outbox/{id}")).await;
    assert_eq!(s, 200, "{j}");
    j
}

/// The job once its outcome is recorded: the provider has the message a moment before mailroom
/// commits what it answered.
async fn sent_job(app: &TestApp, id: &str) -> Value {
    wait::until(
        &format!("{id} recorded as sent"),
        Duration::from_secs(30),
        || async {
            let j = job(app, id).await;
            (j["status"] == "sent").then_some(j)
        },
    )
    .await
}

fn ms(v: &Value) -> i64 {
    parse_ms(v.as_str().unwrap_or_else(|| panic!("a date: {v}"))).unwrap()
}

async fn a_burst_past_the_daily_limit_goes_in_order_as_the_window_allows(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let google = FakeGoogle::start(GoogleConfig::default()).await;
    let t0 = SystemClock.now_ms();
    let clock = ManualClock::at_ms(t0);
    let app = app_on(db, &google, &clock).await;
    let acc = link(&app, &google, json!({"send_limits": {"per_day": 3}})).await;
    let (_, a) = app.get(&format!("/api/v1/accounts/{acc}")).await;
    assert_eq!(
        a["send_limits"],
        json!({"per_minute": null, "per_day": 3, "recipients_per_day": 2_000})
    );
    // user@gmail.test is no consumer Gmail address: Workspace's published quotas.
    assert_eq!(
        a["provider_send_limits"],
        json!({"per_minute": null, "per_day": 2_000, "recipients_per_day": 2_000})
    );

    // Six sends a second apart: three go, three wait for the window, each for the send whose
    // place it takes to leave the rolling 24 hours.
    let mut ids = vec![];
    let mut planned_at = vec![];
    for i in 0..6 {
        let (s, r) = send(&app, &acc, &format!("m{i}")).await;
        if i < 3 {
            assert_eq!(s, 201, "{r}");
        } else {
            assert_eq!((s, r["status"].as_str()), (202, Some("scheduled")), "{r}");
            let planned = t0 + (i as i64 - 3) * 1_000 + DAY_MS;
            assert_eq!(r["scheduled_for"], format_ms(planned), "{r}");
            let j = job(&app, r["tracking_id"].as_str().unwrap()).await;
            assert_eq!(j["status"], "scheduled");
            assert_eq!(j["held_for_limits"], true);
            assert_eq!(j["scheduled_for"], format_ms(planned));
            planned_at.push(planned);
        }
        ids.push(r["tracking_id"].as_str().unwrap().to_owned());
        clock.advance_ms(1_000);
    }
    assert_eq!(subjects(&google), ["m0", "m1", "m2"]);
    let (_, a) = app.get(&format!("/api/v1/accounts/{acc}")).await;
    assert_eq!(a["send_usage"]["last_day"], 3, "{a}");
    assert_eq!(a["send_usage"]["recipients_last_day"], 3, "{a}");
    assert_eq!(a["send_usage"]["held"], 3, "{a}");
    assert_eq!(a["send_usage"]["paused_until"], Value::Null);

    // A millisecond before the first slot nothing is due.
    clock.advance_ms(t0 + DAY_MS - 1 - clock.now_ms());
    assert_eq!(app.engine.outbox.sweep().await.unwrap(), 0);
    assert_eq!(google.sent_messages().len(), 3);
    // At it, the oldest held send goes, and only it.
    clock.advance_ms(1);
    sent_count(&google, 4).await;
    assert_eq!(app.engine.outbox.sweep().await.unwrap(), 0);
    assert_eq!(subjects(&google)[3], "m3");
    // Later, the rest, in acceptance order.
    clock.advance_ms(10_000);
    sent_count(&google, 6).await;
    assert_eq!(subjects(&google), ["m0", "m1", "m2", "m3", "m4", "m5"]);
    for (id, planned) in ids[3..].iter().zip(&planned_at) {
        let j = sent_job(&app, id).await;
        assert!(ms(&j["sent_at"]) >= *planned, "early: {j}");
        assert_eq!(j["attempts"], 1, "waiting spends no attempt: {j}");
    }
    // The first held one went exactly when its window opened, not before.
    assert_eq!(ms(&sent_job(&app, &ids[3]).await["sent_at"]), t0 + DAY_MS);
}
both_backends!(a_burst_past_the_daily_limit_goes_in_order_as_the_window_allows);

/// Sends accepted in the same millisecond keep their acceptance order: each held one goes at
/// the time it was promised, none overtakes another (the order is the lock's, not the clock's
/// or a random id's).
async fn held_sends_accepted_in_one_millisecond_keep_their_order(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let google = FakeGoogle::start(GoogleConfig::default()).await;
    let t0 = SystemClock.now_ms();
    let clock = ManualClock::at_ms(t0);
    let app = app_on(db, &google, &clock).await;
    let acc = link(&app, &google, json!({"send_limits": {"per_day": 1}})).await;
    let mut promised = vec![];
    for i in 0..6 {
        let (s, r) = send(&app, &acc, &format!("m{i}")).await;
        if i == 0 {
            assert_eq!(s, 201, "{r}");
        } else {
            assert_eq!((s, r["status"].as_str()), (202, Some("scheduled")), "{r}");
            promised.push((
                r["tracking_id"].as_str().unwrap().to_owned(),
                ms(&r["scheduled_for"]),
            ));
        }
    }
    assert_eq!(clock.now_ms(), t0, "all accepted in one millisecond");
    for (i, (id, at)) in promised.iter().enumerate() {
        assert_eq!(
            *at,
            t0 + (i as i64 + 1) * DAY_MS,
            "m{}: a day after the one before",
            i + 1
        );
        clock.advance_ms(at - clock.now_ms());
        sent_count(&google, i + 2).await;
        assert_eq!(
            subjects(&google)[i + 1],
            format!("m{}", i + 1),
            "in acceptance order"
        );
        let j = sent_job(&app, id).await;
        assert_eq!(ms(&j["sent_at"]), *at, "at the promised time: {j}");
    }
}
both_backends!(held_sends_accepted_in_one_millisecond_keep_their_order);

/// Recipients per rolling day are summed over the envelope (To, Cc, Bcc): a send that would
/// pass the cap waits for room, and a later, smaller one does not overtake it.
async fn recipients_per_day_are_counted_over_the_envelope(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let google = FakeGoogle::start(GoogleConfig::default()).await;
    let t0 = SystemClock.now_ms();
    let clock = ManualClock::at_ms(t0);
    let app = app_on(db, &google, &clock).await;
    let acc = link(
        &app,
        &google,
        json!({"send_limits": {"recipients_per_day": 3}}),
    )
    .await;
    let to = |n: &[&str]| {
        n.iter()
            .map(|a| json!({"identifier": a}))
            .collect::<Vec<_>>()
    };
    let post = |subject: &str, body: Value| {
        let mut body = body;
        body["account_id"] = json!(acc);
        body["subject"] = json!(subject);
        body["body"] = json!("hi");
        let app = &app;
        async move { app.post_json("/api/v1/emails", &body).await }
    };
    let (s, r) = post(
        "two",
        json!({"to": to(&["a@example.test"]), "bcc": to(&["b@example.test"])}),
    )
    .await;
    assert_eq!(s, 201, "{r}");
    clock.advance_ms(1_000);
    // 2 + 2 > 3: waits until "two" leaves the rolling day.
    let (s, big) = post(
        "two more",
        json!({"to": to(&["c@example.test"]), "cc": to(&["d@example.test"])}),
    )
    .await;
    assert_eq!(
        (s, big["status"].as_str()),
        (202, Some("scheduled")),
        "{big}"
    );
    assert_eq!(big["scheduled_for"], format_ms(t0 + DAY_MS), "{big}");
    // 2 + 1 would fit, but the held one goes first.
    let (s, small) = post("one", json!({"to": to(&["e@example.test"])})).await;
    assert_eq!(
        (s, small["status"].as_str()),
        (202, Some("scheduled")),
        "{small}"
    );
    assert!(ms(&small["scheduled_for"]) >= t0 + DAY_MS, "{small}");
    let (_, a) = app.get(&format!("/api/v1/accounts/{acc}")).await;
    assert_eq!(a["send_usage"]["recipients_last_day"], 2, "{a}");
    assert_eq!(a["send_usage"]["held"], 2, "{a}");
    assert_eq!(google.sent_messages().len(), 1);

    clock.advance_ms(t0 + DAY_MS - 1 - clock.now_ms());
    assert_eq!(app.engine.outbox.sweep().await.unwrap(), 0);
    clock.advance_ms(1);
    sent_count(&google, 3).await;
    // Both fit once "two" has left the day, and are admitted together (oldest first); sent
    // side by side, they may reach Gmail in either order.
    let mut got = subjects(&google);
    got[1..].sort();
    assert_eq!(got, ["two", "one", "two more"]);
    for r in [&big, &small] {
        let j = job(&app, r["tracking_id"].as_str().unwrap()).await;
        assert_eq!(ms(&j["sent_at"]), t0 + DAY_MS, "not before, not later: {j}");
    }
}
both_backends!(recipients_per_day_are_counted_over_the_envelope);

/// Two nodes on one PostgreSQL database share an account's daily limit: whichever accepts or
/// sends, no rolling 24 hours ever holds more than the limit, and the held sends go in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_share_the_daily_limit_on_postgres() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let google = FakeGoogle::start(GoogleConfig::default()).await;
    let t0 = SystemClock.now_ms();
    let clock = ManualClock::at_ms(t0);
    let second_db = db.share();
    let a = app_on(db, &google, &clock).await;
    let b = app_on(second_db, &google, &clock).await;
    let acc = link(&a, &google, json!({"send_limits": {"per_day": 2}})).await;
    // B takes A's workspace key: the database is one.
    let mut ids = vec![];
    for i in 0..6 {
        let node = if i % 2 == 0 { &a } else { &b };
        let (s, r) = node
            .call(
                node.client
                    .post(node.url("/api/v1/emails"))
                    .header("X-API-KEY", &a.api_key)
                    .json(&json!({"account_id": acc, "to": [{"identifier": "ann@example.test"}], "subject": format!("m{i}"), "body": "hi"})),
            )
            .await;
        assert_eq!(s, if i < 2 { 201 } else { 202 }, "{r}");
        ids.push((
            r["tracking_id"].as_str().unwrap().to_owned(),
            r["scheduled_for"].as_str().map(|d| parse_ms(d).unwrap()),
        ));
        clock.advance_ms(1_000);
    }
    // Both nodes' workers run; a day later two more go, another day later the last two.
    clock.advance_ms(DAY_MS + 10_000);
    sent_count(&google, 4).await;
    assert_eq!(
        a.engine.outbox.sweep().await.unwrap() + b.engine.outbox.sweep().await.unwrap(),
        0
    );
    assert_eq!(google.sent_messages().len(), 4);
    clock.advance_ms(DAY_MS + 10_000);
    sent_count(&google, 6).await;
    assert_eq!(subjects(&google), ["m0", "m1", "m2", "m3", "m4", "m5"]);
    let mut sent_at = vec![];
    for (id, planned) in &ids {
        let j = job(&a, id).await;
        assert_eq!(j["status"], "sent", "{j}");
        if let Some(planned) = planned {
            assert!(ms(&j["sent_at"]) >= *planned, "early: {j}");
        }
        sent_at.push(ms(&j["sent_at"]));
    }
    for w in sent_at.windows(3) {
        assert!(
            w[2] - w[0] >= DAY_MS,
            "three sends within 24 hours: {sent_at:?}"
        );
    }
}

async fn a_provider_quota_answer_pauses_the_account_and_resumes(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let google = FakeGoogle::start(GoogleConfig::default()).await;
    let app = spawn_on(db, |s| s.google = Some(google_app_config(&google))).await;
    let acc = link(&app, &google, json!({})).await;
    // Gmail's own quota, lower than mailroom's defaults: 2 messages per 2 s.
    google.set_send_quota(Some((2, Duration::from_secs(2))));
    for i in 0..2 {
        assert_eq!(send(&app, &acc, &format!("m{i}")).await.0, 201);
    }
    let (s, r) = send(&app, &acc, "m2").await;
    assert_eq!((s, r["status"].as_str()), (202, Some("scheduled")), "{r}");
    let reopens = ms(&r["scheduled_for"]);
    let paused = events::of_type(&app.store, &app.workspace, "send_paused")
        .await
        .unwrap();
    assert_eq!(paused.len(), 1, "{paused:?}");
    assert_eq!(paused[0].1["account_id"], acc.as_str());
    assert_eq!(ms(&paused[0].1["paused_until"]), reopens);
    assert!(
        paused[0].1["detail"]
            .as_str()
            .unwrap()
            .contains("Mail sending")
    );
    let (_, a) = app.get(&format!("/api/v1/accounts/{acc}")).await;
    assert_eq!(ms(&a["send_usage"]["paused_until"]), reopens, "{a}");
    // A send during the pause waits behind it, without asking Gmail.
    let (s, r3) = send(&app, &acc, "m3").await;
    assert_eq!((s, r3["status"].as_str()), (202, Some("scheduled")), "{r3}");
    assert_eq!(google.sent_messages().len(), 2);
    sent_count(&google, 4).await;
    assert_eq!(subjects(&google), ["m0", "m1", "m2", "m3"]);
    let j = job(&app, r["tracking_id"].as_str().unwrap()).await;
    assert!(ms(&j["sent_at"]) >= reopens, "{j}");
    assert_eq!(j["attempts"], 1, "the refused attempt is given back: {j}");
}
both_backends!(a_provider_quota_answer_pauses_the_account_and_resumes);

async fn limits_are_set_validated_and_changed(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let google = FakeGoogle::start(GoogleConfig::default()).await;
    let clock = ManualClock::at_ms(SystemClock.now_ms());
    let app = app_on(db, &google, &clock).await;
    let t = google.issue_tokens(&[MODIFY]);
    for bad in [
        json!({"per_day": -1}),
        json!({"per_hour": 5}),
        json!("500"),
        json!({"per_minute": 2.5}),
    ] {
        assert_error(
            &app.post_json(
                "/api/v1/accounts",
                &json!({"provider": "GOOGLE_OAUTH", "access_token": t.access_token, "refresh_token": t.refresh_token, "send_limits": bad}),
            )
            .await,
            400,
            "invalid_parameters",
        );
    }
    let (_, list) = app.get("/api/v1/accounts").await;
    assert_eq!(
        list["items"],
        json!([]),
        "nothing linked by a refused request"
    );

    let acc = link(&app, &google, json!({"send_limits": {"per_day": 1}})).await;
    let patch = |body: Value| {
        let path = format!("/api/v1/accounts/{acc}");
        let app = &app;
        async move {
            app.call(app.request(Method::PATCH, &path).json(&body))
                .await
        }
    };
    assert_error(&patch(json!({})).await, 400, "missing_parameters");
    // Naming no limit (or the same values) changes nothing and records nothing.
    let (s, v) = patch(json!({"send_limits": {}})).await;
    assert_eq!((s, &v["send_limits"]["per_day"]), (200, &json!(1)), "{v}");
    let (s, v) = patch(json!({"send_limits": {"per_day": 1}})).await;
    assert_eq!(s, 200, "{v}");
    // A reconnect keeps the limits; asking it to change them is refused.
    assert_error(
        &app.post_json(
            &format!("/api/v1/accounts/{acc}"),
            &json!({"access_token": "x", "send_limits": {"per_day": 9}}),
        )
        .await,
        400,
        "invalid_parameters",
    );
    assert_error(
        &patch(json!({"name": "x"})).await,
        400,
        "invalid_parameters",
    );
    assert_error(
        &patch(json!({"send_limits": {"per_day": "x"}})).await,
        400,
        "invalid_parameters",
    );
    assert_error(
        &app.call(
            app.request(Method::PATCH, "/api/v1/accounts/AAAAAAAAAAAAAAAAAAAAAA")
                .json(&json!({"send_limits": {}})),
        )
        .await,
        404,
        "resource_not_found",
    );
    // One send goes, the next waits a day.
    assert_eq!(send(&app, &acc, "m0").await.0, 201);
    let (s, r) = send(&app, &acc, "m1").await;
    assert_eq!(s, 202, "{r}");
    // Setting a per-minute limit keeps the per-day one; lifting the per-day limit (0) lets the
    // held send go now, without the clock moving.
    let (s, v) = patch(json!({"send_limits": {"per_minute": 5}})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["send_limits"]["per_minute"], 5);
    assert_eq!(v["send_limits"]["per_day"], 1);
    let (s, v) = patch(json!({"send_limits": {"per_day": 0}})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["send_limits"],
        json!({"per_minute": 5, "per_day": null, "recipients_per_day": 2_000})
    );
    sent_count(&google, 2).await;
    // Gmail has it; mailroom records it right after.
    let held = r["tracking_id"].as_str().unwrap().to_owned();
    wait::until(
        "the held send recorded as sent",
        Duration::from_secs(10),
        || async { (job(&app, &held).await["status"] == "sent").then_some(()) },
    )
    .await;
    // null: back to the provider's default.
    let (_, v) = patch(json!({"send_limits": {"per_day": null, "per_minute": null}})).await;
    assert_eq!(v["send_limits"]["per_day"], 2_000);
    assert_eq!(v["send_limits"]["per_minute"], Value::Null);
    assert_eq!(v["send_usage"]["last_day"], 2);
    // Each change (and no refused one) is in the audit log, credited to the key, as numbers.
    let (s, audit) = app.get("/api/v1/audit?action=account.updated").await;
    assert_eq!(s, 200, "{audit}");
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{audit}");
    let mut changes: Vec<Value> = items
        .iter()
        .map(|e| {
            assert_eq!(e["target"], acc.as_str());
            assert!(e["actor"].as_str().unwrap().starts_with("key:"), "{e}");
            e["details"]["send_limits"].clone()
        })
        .collect();
    changes.sort_by_key(|c| c.to_string());
    assert_eq!(
        changes,
        [
            json!({"per_minute": 5, "per_day": 0, "recipients_per_day": null}),
            json!({"per_minute": 5, "per_day": 1, "recipients_per_day": null}),
            json!({"per_minute": null, "per_day": null, "recipients_per_day": null}),
        ],
        "{audit}"
    );
}
both_backends!(limits_are_set_validated_and_changed);

/// A hosted link's `send_limits` become the linked account's; bad ones are refused.
async fn hosted_links_carry_send_limits(backend: Backend) {
    let Some((app, _google, integrator)) = google_app(backend).await else {
        return;
    };
    let body = json!({
        "type": "create", "providers": ["GOOGLE"], "api_url": app.base_url,
        "expiresOn": mailroom_core::time_fmt::format_ms(SystemClock.now_ms() + 3_600_000),
        "send_limits": {"per_day": -5},
    });
    assert_error(
        &app.post_json("/api/v1/hosted/accounts/link", &body).await,
        400,
        "invalid_parameters",
    );
    let link = make_link(
        &app,
        &integrator,
        json!({"send_limits": {"per_day": 7, "per_minute": 0}}),
    )
    .await;
    let landed = connect_google(&link).await;
    let (status, text) = (landed.status(), landed.text().await.unwrap());
    assert_eq!(status, 200, "{text}");
    let (which, q) = integrator
        .redirects()
        .pop()
        .expect("a redirect to the integrator");
    assert_eq!(which, "success");
    let acc = q.iter().find(|(k, _)| k == "account_id").unwrap().1.clone();
    let (_, a) = app.get(&format!("/api/v1/accounts/{acc}")).await;
    assert_eq!(
        a["send_limits"],
        json!({"per_minute": null, "per_day": 7, "recipients_per_day": 2_000}),
        "{a}"
    );
    // A reconnect keeps the account's limits: asking it to set them is refused, not ignored.
    let reconnect = json!({
        "type": "reconnect", "reconnect_account": acc, "api_url": app.base_url,
        "expiresOn": mailroom_core::time_fmt::format_ms(SystemClock.now_ms() + 3_600_000),
        "send_limits": {"per_day": 9},
    });
    let refused = app
        .post_json("/api/v1/hosted/accounts/link", &reconnect)
        .await;
    assert_error(&refused, 400, "invalid_parameters");
    assert!(
        refused.1["detail"].as_str().unwrap().contains("PATCH"),
        "{}",
        refused.1
    );
    let (_, a) = app.get(&format!("/api/v1/accounts/{acc}")).await;
    assert_eq!(a["send_limits"]["per_day"], 7, "{a}");
}
both_backends!(hosted_links_carry_send_limits);

/// Real Postfix behind the fault-injecting SMTP server: Gmail's SMTP answer to a mailbox past
/// its quota (`550 5.4.5`) pauses the IMAP/SMTP account's sends for the default hour (SMTP
/// names no time), records `send_paused`, and the send goes once the hour has passed.
async fn an_smtp_quota_reply_pauses_the_account_for_the_default_hour(backend: Backend) {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let clock = ManualClock::at_ms(SystemClock.now_ms());
    let app = spawn_with_clock(db, Arc::new(clock.clone()), |_| {}).await;
    let (sender, to) = (rig.create_user(), rig.create_user());
    let fault = FaultSmtp::start(rig.clone()).await;
    let mut body = rig.account_body(&sender);
    body["smtp_port"] = json!(fault.port());
    body["smtp_encryption"] = json!("starttls");
    let (s, r) = app.post_json("/api/v1/accounts", &body).await;
    assert_eq!(s, 201, "{r}");
    let acc = r["account_id"].as_str().unwrap().to_owned();
    let (_, a) = app.get(&format!("/api/v1/accounts/{acc}")).await;
    assert_eq!(
        a["send_limits"],
        json!({"per_minute": null, "per_day": null, "recipients_per_day": null}),
        "IMAP/SMTP: none unless set"
    );

    fault.set_mode(Mode::Reply {
        stage: Stage::Mail,
        code: 550,
        text: "5.4.5 Daily user sending limit exceeded.".into(),
    });
    let now = clock.now_ms();
    let (s, r) = app
        .post_json("/api/v1/emails", &json!({"account_id": acc, "to": [{"identifier": to.address}], "subject": "over quota", "body": "b"}))
        .await;
    assert_eq!((s, r["status"].as_str()), (202, Some("scheduled")), "{r}");
    assert_eq!(ms(&r["scheduled_for"]), now + 3_600_000);
    let paused = events::of_type(&app.store, &app.workspace, "send_paused")
        .await
        .unwrap();
    assert_eq!(paused.len(), 1);
    assert!(paused[0].1["detail"].as_str().unwrap().contains("5.4.5"));
    let id = r["tracking_id"].as_str().unwrap().to_owned();

    // The server would take it now, but the hour has not passed.
    fault.set_mode(Mode::Forward);
    clock.advance_ms(3_600_000 - 1);
    assert_eq!(app.engine.outbox.sweep().await.unwrap(), 0);
    assert_eq!(job(&app, &id).await["status"], "scheduled");
    clock.advance_ms(1);
    let done = wait::until("the paused send goes", Duration::from_secs(30), || async {
        let j = job(&app, &id).await;
        (j["status"] == "sent").then_some(j)
    })
    .await;
    assert_eq!(done["attempts"], 1, "{done}");
    let mid = r["message_id"].as_str().unwrap().to_ascii_lowercase();
    wait::until("delivery", Duration::from_secs(20), || async {
        rig.fetch_all(&to, "INBOX")
            .await
            .iter()
            .any(|m| {
                String::from_utf8_lossy(m)
                    .to_ascii_lowercase()
                    .contains(&mid)
            })
            .then_some(())
    })
    .await;
}
both_backends!(an_smtp_quota_reply_pauses_the_account_for_the_default_hour);

/// An Outlook account against the Microsoft fake on a manual clock; answers the account id.
async fn outlook_on(
    db: TestDb,
    outlook: &FakeMicrosoft,
    clock: &ManualClock,
    tune: impl FnOnce(&mut mailroom_server::Settings),
) -> (TestApp, String) {
    let app = spawn_with_clock(db, Arc::new(clock.clone()), |s| {
        s.microsoft = Some(super::graph_sync::microsoft_app_config(outlook));
        tune(s);
    })
    .await;
    let t = outlook.mint_tokens(&[
        "offline_access",
        "https://graph.microsoft.com/User.Read",
        "https://graph.microsoft.com/Mail.ReadWrite",
        "https://graph.microsoft.com/Mail.Send",
    ]);
    let (s, r) = app
        .post_json(
            "/api/v1/accounts",
            &json!({"provider": "OUTLOOK", "access_token": t.access_token, "refresh_token": t.refresh_token}),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let acc = r["account_id"].as_str().unwrap().to_owned();
    (app, acc)
}

async fn outlook_sent(outlook: &FakeMicrosoft, n: usize) {
    wait::until(
        &format!("{n} messages sent by Outlook"),
        Duration::from_secs(30),
        || async { (outlook.sent_items().len() >= n).then_some(()) },
    )
    .await;
}

/// Graph's answers about the mailbox's sending, end to end: `ErrorExceededMessageLimit` (no
/// time given) pauses the account's sends for the default hour; `MailboxConcurrency` on a send
/// pauses them for its `Retry-After`. Each records `send_paused`, gives the attempt back, and
/// the send goes once the pause is over, not before.
async fn graph_quota_answers_pause_an_outlook_account(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let outlook = FakeMicrosoft::start(MicrosoftConfig::default()).await;
    let clock = ManualClock::at_ms(SystemClock.now_ms());
    let (app, acc) = outlook_on(db, &outlook, &clock, |_| {}).await;

    // The mailbox's sending limit: one more message, then ErrorExceededMessageLimit.
    outlook.set_send_allowance(Some(1));
    assert_eq!(send(&app, &acc, "m0").await.0, 201);
    let now = clock.now_ms();
    let (s, r) = send(&app, &acc, "m1").await;
    assert_eq!((s, r["status"].as_str()), (202, Some("scheduled")), "{r}");
    assert_eq!(ms(&r["scheduled_for"]), now + 3_600_000, "{r}");
    let paused = events::of_type(&app.store, &app.workspace, "send_paused")
        .await
        .unwrap();
    assert_eq!(paused.len(), 1, "{paused:?}");
    assert!(
        paused[0].1["detail"]
            .as_str()
            .unwrap()
            .contains("ErrorExceededMessageLimit")
            || paused[0].1["detail"]
                .as_str()
                .unwrap()
                .contains("exceeds the sending limit"),
        "{paused:?}"
    );
    let (_, a) = app.get(&format!("/api/v1/accounts/{acc}")).await;
    assert_eq!(ms(&a["send_usage"]["paused_until"]), now + 3_600_000, "{a}");
    // The provider would take it now; mailroom keeps the pause it promised.
    outlook.set_send_allowance(None);
    clock.advance_ms(3_599_000);
    assert_eq!(app.engine.outbox.sweep().await.unwrap(), 0);
    assert_eq!(outlook.sent_items().len(), 1);
    clock.advance_ms(2_000);
    outlook_sent(&outlook, 2).await;
    let j = job(&app, r["tracking_id"].as_str().unwrap()).await;
    assert_eq!(j["status"], "sent", "{j}");
    assert_eq!(j["attempts"], 1, "the refused attempt is given back: {j}");

    // Outlook's MailboxConcurrency throttle on a send: paused for its Retry-After (5 s).
    outlook.inject(
        mailroom_testkit::fakes::Fault::Throttle {
            retry_after_secs: 5,
        },
        1,
    );
    let now = clock.now_ms();
    let (s, r) = send(&app, &acc, "m2").await;
    assert_eq!((s, r["status"].as_str()), (202, Some("scheduled")), "{r}");
    assert_eq!(ms(&r["scheduled_for"]), now + 5_000, "{r}");
    let paused = events::of_type(&app.store, &app.workspace, "send_paused")
        .await
        .unwrap();
    assert_eq!(paused.len(), 2, "{paused:?}");
    for p in &paused {
        mailroom_testkit::openapi_check::assert_stored("send_paused", &p.1);
    }
    assert!(
        paused.iter().any(|p| p.1["detail"]
            .as_str()
            .unwrap()
            .contains("MailboxConcurrency")),
        "{paused:?}"
    );
    clock.advance_ms(5_001);
    outlook_sent(&outlook, 3).await;
    let j = job(&app, r["tracking_id"].as_str().unwrap()).await;
    assert_eq!(
        (j["status"].as_str(), j["attempts"].as_i64()),
        (Some("sent"), Some(1)),
        "{j}"
    );
}
both_backends!(graph_quota_answers_pause_an_outlook_account);

/// A message the provider keeps refusing "for the mailbox's quota" is given up at its retry
/// horizon (`send_failed`, `send.given_up`): the pauses it causes do not move its own horizon,
/// so it cannot hold the account's sends back for ever.
async fn a_send_refused_for_quota_past_its_horizon_is_given_up(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let outlook = FakeMicrosoft::start(MicrosoftConfig::default()).await;
    let t0 = SystemClock.now_ms();
    let clock = ManualClock::at_ms(t0);
    let (app, acc) = outlook_on(db, &outlook, &clock, |s| {
        s.outbox.retry_horizon = Duration::from_secs(2 * 3600);
    })
    .await;
    outlook.set_send_allowance(Some(0));
    let (s, r) = send(&app, &acc, "never").await;
    assert_eq!((s, r["status"].as_str()), (202, Some("scheduled")), "{r}");
    let id = r["tracking_id"].as_str().unwrap().to_owned();
    // Refused again an hour later: paused again, still inside its two hours.
    clock.advance_ms(3_600_000);
    wait::until("a second pause", Duration::from_secs(20), || async {
        let paused = events::of_type(&app.store, &app.workspace, "send_paused")
            .await
            .unwrap();
        (paused.len() == 2).then_some(())
    })
    .await;
    assert_eq!(job(&app, &id).await["status"], "scheduled");
    // At its horizon the next refusal gives it up.
    clock.advance_ms(3_600_000);
    let j = wait::until("given up", Duration::from_secs(20), || async {
        let j = job(&app, &id).await;
        (j["status"] == "failed").then_some(j)
    })
    .await;
    assert_eq!(j["last_error"]["type"], "errors/cant_send_message", "{j}");
    let failed = events::of_type(&app.store, &app.workspace, "send_failed")
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    let (_, audit) = app.get("/api/v1/audit?action=send.given_up").await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
    assert!(outlook.sent_items().is_empty());
}
both_backends!(a_send_refused_for_quota_past_its_horizon_is_given_up);
