//! Linking IMAP/SMTP mailboxes against the real Dovecot + Postfix.

use std::time::Duration;

use serde_json::{Value, json};

use crate::store::dump_database;
use mailroom_store::accounts;
use mailroom_testkit::app::{TestApp, assert_error, spawn_on};
use mailroom_testkit::{Backend, MailRig, TestDb, both_backends, spawn_app};

async fn setup(backend: Backend) -> Option<(TestApp, MailRig)> {
    let rig = MailRig::from_env()?;
    let app = spawn_app(backend).await?;
    Some((app, rig))
}

fn assert_connection_params(body: &Value, rig: &MailRig, user: &str) {
    let p = &body["connectionParams"];
    assert_eq!(p["imap_host"], rig.host.as_str(), "{body}");
    assert_eq!(p["imap_user"], user);
    assert!(p["imap_port"].is_u64() && p["smtp_port"].is_u64() && p["smtp_user"].is_string());
    assert!(p["imap_encryption"].is_string());
}

async fn link_show_list_delete(backend: Backend) {
    let Some((app, rig)) = setup(backend).await else {
        return;
    };
    let user = rig.create_user();
    let (s, created) = app
        .post_json("/api/v1/accounts", &rig.account_body(&user))
        .await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["object"], "AccountCreated");
    let id = created["account_id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 22);

    let (s, account) = app.get(&format!("/api/v1/accounts/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(account["object"], "Account");
    assert_eq!(account["type"], "MAIL");
    assert_eq!(account["name"], user.address.as_str());
    assert_eq!(account["groups"], json!([]));
    assert_eq!(
        account["sources"],
        json!([{"id": format!("{id}_MAILS"), "status": "OK"}])
    );
    let mail = &account["connection_params"]["mail"];
    assert_eq!(mail["imap_port"], rig.imap_port);
    assert_eq!(mail["imap_encryption"], "starttls");
    assert_eq!(mail["smtp_user"], user.address.as_str());
    assert!(
        !account.to_string().contains(&user.password),
        "no password in the answer"
    );

    let (_, list) = app.get("/api/v1/accounts").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["id"], id.as_str());

    // The password is nowhere in the database, in the clear.
    assert!(!dump_database(&app.store).await.contains(&user.password));
    for file in app.db.sqlite_files() {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes
                .windows(user.password.len())
                .any(|w| w == user.password.as_bytes()),
            "{file:?}"
        );
    }

    let (s, deleted) = app.delete(&format!("/api/v1/accounts/{id}")).await;
    assert_eq!((s, deleted), (200, json!({"object": "AccountDeleted"})));
    assert_error(
        &app.get(&format!("/api/v1/accounts/{id}")).await,
        404,
        "resource_not_found",
    );
    assert_error(
        &app.delete(&format!("/api/v1/accounts/{id}")).await,
        404,
        "resource_not_found",
    );
    assert!(
        accounts::sealed_blob(&app.store, &id)
            .await
            .unwrap()
            .is_none(),
        "credentials gone"
    );
}
both_backends!(link_show_list_delete);

async fn implicit_tls_on_both_protocols(backend: Backend) {
    let Some((app, rig)) = setup(backend).await else {
        return;
    };
    let user = rig.create_user();
    let mut body = rig.account_body(&user);
    body["imap_port"] = json!(rig.imaps_port);
    body["imap_encryption"] = json!("ssl");
    body["smtp_port"] = json!(rig.smtps_port);
    // Our test port is not 465, so say implicit TLS explicitly.
    body["smtp_encryption"] = json!("implicit");
    let (s, created) = app.post_json("/api/v1/accounts", &body).await;
    assert_eq!(s, 201, "{created}");
    // "tls" is implicit TLS as well; "default" on a non-993 port is STARTTLS.
    body["imap_encryption"] = json!("tls");
    assert_eq!(app.post_json("/api/v1/accounts", &body).await.0, 201);
    let mut starttls_default = rig.account_body(&user);
    starttls_default["imap_encryption"] = json!("default");
    assert_eq!(
        app.post_json("/api/v1/accounts", &starttls_default).await.0,
        201
    );
}
both_backends!(implicit_tls_on_both_protocols);

#[tokio::test]
async fn wrong_password_is_invalid_credentials_and_nothing_is_saved() {
    let Some((app, rig)) = setup(Backend::Sqlite).await else {
        return;
    };
    let user = rig.create_user();
    let mut body = rig.account_body(&user);
    body["imap_password"] = json!("wrong-password");
    let r = app.post_json("/api/v1/accounts", &body).await;
    assert_error(&r, 401, "invalid_credentials");
    assert!(r.1["detail"].as_str().unwrap().contains("IMAP"), "{}", r.1);
    assert_connection_params(&r.1, &rig, &user.address);
    assert!(!r.1.to_string().contains("wrong-password"));

    let mut body = rig.account_body(&user);
    body["smtp_password"] = json!("wrong-password");
    let r = app.post_json("/api/v1/accounts", &body).await;
    assert_error(&r, 401, "invalid_credentials");
    assert!(r.1["detail"].as_str().unwrap().contains("SMTP"), "{}", r.1);

    assert_eq!(app.get("/api/v1/accounts").await.1["items"], json!([]));
}

#[tokio::test]
async fn unreachable_servers_are_configuration_errors() {
    let Some((app, rig)) = setup(Backend::Sqlite).await else {
        return;
    };
    let user = rig.create_user();
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut body = rig.account_body(&user);
    body["imap_port"] = json!(closed);
    let r = app.post_json("/api/v1/accounts", &body).await;
    assert_error(&r, 401, "invalid_imap_configuration");
    assert_connection_params(&r.1, &rig, &user.address);
    assert_eq!(r.1["connectionParams"]["imap_port"], closed);

    let mut body = rig.account_body(&user);
    body["smtp_port"] = json!(closed);
    let r = app.post_json("/api/v1/accounts", &body).await;
    assert_error(&r, 401, "invalid_smtp_configuration");

    // IMAP spoken to an SMTP port: no IMAP greeting.
    let mut body = rig.account_body(&user);
    body["imap_port"] = json!(rig.smtp_port);
    let r = app.post_json("/api/v1/accounts", &body).await;
    assert_error(&r, 401, "invalid_imap_configuration");

    // A host name that does not resolve.
    let mut body = rig.account_body(&user);
    body["smtp_host"] = json!("no-such-host.invalid");
    assert_error(
        &app.post_json("/api/v1/accounts", &body).await,
        401,
        "invalid_smtp_configuration",
    );
}

#[tokio::test]
async fn a_server_that_never_answers_hits_the_deadline() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let app = spawn_on(db, |s| s.mail_connect_timeout = Duration::from_secs(1)).await;
    // Accepts connections and never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = vec![];
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let user = rig.create_user();
    let mut body = rig.account_body(&user);
    body["imap_port"] = json!(port);
    let r = app.post_json("/api/v1/accounts", &body).await;
    assert_error(&r, 401, "invalid_imap_configuration");
    assert!(
        r.1["detail"].as_str().unwrap().contains("within 1s"),
        "{}",
        r.1
    );
    hold.abort();
}

#[tokio::test]
async fn private_hosts_are_refused_unless_allowed() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let app = spawn_on(db, |s| s.mail_allow_private = false).await;
    let body = json!({
        "provider": "MAIL", "imap_host": "127.0.0.1", "imap_port": 993, "imap_encryption": "ssl",
        "imap_user": "a@example.test", "imap_password": "pw",
        "smtp_host": "10.0.0.1", "smtp_port": 465, "smtp_user": "a@example.test", "smtp_password": "pw",
    });
    let r = app.post_json("/api/v1/accounts", &body).await;
    assert_error(&r, 401, "invalid_imap_configuration");
    assert!(
        r.1["detail"]
            .as_str()
            .unwrap()
            .contains("MAILROOM_MAIL_ALLOW_PRIVATE"),
        "{}",
        r.1
    );
    // SMTP hosts are guarded the same way: see mail_providers (the API reports IMAP first).
}

#[tokio::test]
async fn certificates_are_verified_unless_told_otherwise() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let app = spawn_on(db, |s| s.tls_insecure_skip_verify = false).await;
    let user = rig.create_user();
    let r = app
        .post_json("/api/v1/accounts", &rig.account_body(&user))
        .await;
    assert_error(&r, 401, "invalid_imap_configuration");
    let detail = r.1["detail"].as_str().unwrap().to_ascii_lowercase();
    assert!(
        detail.contains("certificate") || detail.contains("tls"),
        "{detail}"
    );
}

#[tokio::test]
async fn bad_fields_are_precise_400s() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let good = json!({
        "provider": "MAIL", "imap_host": "imap.example.test", "imap_port": 993, "imap_encryption": "ssl",
        "imap_user": "a@example.test", "imap_password": "pw",
        "smtp_host": "smtp.example.test", "smtp_port": 465, "smtp_user": "a@example.test", "smtp_password": "pw",
    });
    let cases: &[(&str, Value, &str, &str)] = &[
        ("provider", Value::Null, "missing_parameters", "provider"),
        ("provider", json!("YAHOO"), "invalid_parameters", "provider"),
        (
            "provider",
            json!("GOOGLE_OAUTH"),
            "invalid_parameters",
            "not configured",
        ),
        ("imap_host", Value::Null, "missing_parameters", "imap_host"),
        (
            "imap_host",
            json!("bad host\r\nA1 LOGOUT"),
            "invalid_parameters",
            "imap_host",
        ),
        ("imap_port", json!(0), "invalid_parameters", "imap_port"),
        ("imap_port", json!(70000), "invalid_parameters", "imap_port"),
        ("imap_port", json!("abc"), "invalid_parameters", "imap_port"),
        ("smtp_port", Value::Null, "missing_parameters", "smtp_port"),
        (
            "imap_encryption",
            json!("plaintext"),
            "invalid_parameters",
            "imap_encryption",
        ),
        (
            "imap_password",
            json!(""),
            "invalid_parameters",
            "imap_password",
        ),
        (
            "imap_password",
            json!("pw\r\nA2 DELETE INBOX"),
            "invalid_parameters",
            "imap_password",
        ),
        (
            "smtp_password",
            Value::Null,
            "missing_parameters",
            "smtp_password",
        ),
        ("imap_user", json!(42), "invalid_parameters", "imap_user"),
        (
            "smtp_encryption",
            json!("none"),
            "invalid_parameters",
            "smtp_encryption",
        ),
    ];
    for (field, value, slug, needle) in cases {
        let mut body = good.clone();
        if value.is_null() {
            body.as_object_mut().unwrap().remove(*field);
        } else {
            body[*field] = value.clone();
        }
        let r = app.post_json("/api/v1/accounts", &body).await;
        assert_error(&r, 400, slug);
        assert!(
            r.1["detail"].as_str().unwrap().contains(needle),
            "{field}: {}",
            r.1
        );
    }
    // A numeric string port is accepted as a port (it then fails to connect, not to parse).
    assert_eq!(app.get("/api/v1/accounts").await.1["items"], json!([]));
}

async fn reconnect_after_a_password_change(backend: Backend) {
    let Some((app, rig)) = setup(backend).await else {
        return;
    };
    let mut user = rig.create_user();
    let (_, created) = app
        .post_json("/api/v1/accounts", &rig.account_body(&user))
        .await;
    let id = created["account_id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/accounts/{id}");

    rig.set_password(&mut user, &format!("new-{}", mailroom_testkit::token()));
    // The old password no longer works: refused, and nothing changes.
    let before = accounts::sealed_blob(&app.store, &id).await.unwrap();
    let r = app
        .post_json(&path, &json!({"account_id": id, "provider": "MAIL", "imap_password": "stale", "smtp_password": "stale"}))
        .await;
    assert_error(&r, 401, "invalid_credentials");
    assert_eq!(
        accounts::sealed_blob(&app.store, &id).await.unwrap(),
        before
    );

    let r = app
        .post_json(&path, &json!({"account_id": id, "provider": "MAIL", "imap_password": user.password, "smtp_password": user.password}))
        .await;
    assert_eq!(
        r,
        (
            200,
            json!({"object": "AccountReconnected", "account_id": id})
        )
    );
    let creds = accounts::credentials(&app.store, &app.vault, &id)
        .await
        .unwrap()
        .unwrap();
    let accounts::Credentials::Mail {
        imap_password,
        smtp_password,
    } = creds
    else {
        panic!("MAIL credentials expected")
    };
    use secrecy::ExposeSecret;
    assert_eq!(imap_password.expose_secret(), user.password);
    assert_eq!(smtp_password.expose_secret(), user.password);

    let r = app
        .post_json(
            &path,
            &json!({"account_id": "someone-else", "imap_password": "x"}),
        )
        .await;
    assert_error(&r, 400, "invalid_parameters");
    let r = app.post_json(&path, &json!({"provider": "MAIL"})).await;
    assert_error(&r, 400, "missing_parameters");
    assert_eq!(app.get(&path).await.1["sources"][0]["status"], "OK");
}
both_backends!(reconnect_after_a_password_change);
