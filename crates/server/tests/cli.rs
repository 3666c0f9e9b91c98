//! The `mailroom` binary as an operator runs it: first embedded run, bad configuration,
//! `keys create`, restarts and `vault rotate`.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};

use mailroom_testkit::MailRig;

mod common;
use common::{Server, get, keys_create, mailroom};

#[tokio::test]
async fn first_embedded_run_then_keys_and_accounts_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let env: &[(&str, &str)] = &[
        ("MAILROOM_MAIL_ALLOW_PRIVATE", "true"),
        ("MAILROOM_TLS_INSECURE_SKIP_VERIFY", "true"),
    ];
    let server = Server::start(cwd, env);
    let data = cwd.join("mailroom-data");
    assert!(data.join("mailroom.db").exists());
    let key_file = data.join("master.key");
    assert!(key_file.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let startup = server.startup.join("\n");
    assert!(startup.contains("generated a new master key"), "{startup}");
    assert!(
        startup.contains("NOT verified"),
        "the insecure TLS setting is announced: {startup}"
    );

    let key = keys_create(cwd, env);
    assert_eq!(key.split('.').count(), 2, "{key}");
    let client = reqwest::Client::new();
    let (s, list) = get(&client, &server.url("/api/v1/accounts"), &key).await;
    assert_eq!((s, list["object"].clone()), (200, json!("AccountList")));

    let rig = MailRig::from_env();
    let account_id = match &rig {
        Some(rig) => {
            let user = rig.create_user();
            let r = client
                .post(server.url("/api/v1/accounts"))
                .header("X-API-KEY", &key)
                .json(&rig.account_body(&user))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            let body: Value = r.json().await.unwrap();
            Some(body["account_id"].as_str().unwrap().to_owned())
        }
        None => None,
    };
    server.stop();

    let master_before = std::fs::read(&key_file).unwrap();
    let server = Server::start(cwd, env);
    assert_eq!(
        std::fs::read(&key_file).unwrap(),
        master_before,
        "the master key is kept"
    );
    let log = server.startup.join("\n");
    assert!(!log.contains("generated a new master key"), "{log}");
    let (s, list) = get(&client, &server.url("/api/v1/accounts"), &key).await;
    assert_eq!(s, 200, "the key survives a restart");
    if let Some(id) = account_id {
        assert_eq!(
            list["items"][0]["id"],
            id.as_str(),
            "the account survives a restart"
        );
        // The restarted server's sync loop takes the account up again: CONNECTING, then OK.
        let url = server.url(&format!("/api/v1/accounts/{id}"));
        mailroom_testkit::wait::until("the account OK again", Duration::from_secs(60), || async {
            let (s, account) = get(&client, &url, &key).await;
            (s == 200 && account["sources"][0]["status"] == json!("OK")).then_some(())
        })
        .await;
    }
    server.stop();
}

#[test]
fn the_first_run_warns_that_it_generated_a_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = mailroom(dir.path(), &[])
        .args(["keys", "create"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("generated a new master key"), "{stderr}");
    assert!(dir.path().join("mailroom-data/master.key").exists());
    let again = mailroom(dir.path(), &[])
        .args(["keys", "create"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&again.stderr).contains("generated a new master key"));
}

fn assert_config_error(out: &Output, needle: &str) {
    assert_eq!(
        out.status.code(),
        Some(2),
        "exit code; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one clear line: {stderr}");
    assert!(
        lines[0].starts_with("mailroom: configuration error:"),
        "{stderr}"
    );
    assert!(lines[0].contains(needle), "{needle} in {stderr}");
}

#[test]
fn bad_configuration_is_one_line_and_exit_2_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("MAILROOM_MASTER_KEY", "too-short")],
            "MAILROOM_MASTER_KEY",
        ),
        (
            &[("MAILROOM_DATABASE_URL", "mysql://localhost/x")],
            "MAILROOM_DATABASE_URL",
        ),
        (
            &[("MAILROOM_DATABASE_URL", "postgres://127.0.0.1/x")],
            "MAILROOM_MASTER_KEY is required",
        ),
        (&[("MAILROOM_LISTEN", "everywhere")], "MAILROOM_LISTEN"),
        (&[("MAILROOM_LISTN", "127.0.0.1:1")], "listn"),
        (
            &[("MAILROOM_MAIL_ALLOW_PRIVATE", "maybe")],
            "MAIL_ALLOW_PRIVATE",
        ),
        (&[("MAILROOM_LOG_FORMAT", "xml")], "MAILROOM_LOG_FORMAT"),
    ];
    for (env, needle) in cases {
        let mut env = env.to_vec();
        if !env.iter().any(|(k, _)| *k == "MAILROOM_LISTEN") {
            env.push(("MAILROOM_LISTEN", &listen));
        }
        let out = mailroom(dir.path(), &env).arg("serve").output().unwrap();
        assert_config_error(&out, needle);
        assert!(
            std::net::TcpStream::connect(&listen).is_err(),
            "nothing listens"
        );
    }
    // A bad mailroom.toml is reported the same way.
    std::fs::write(dir.path().join("mailroom.toml"), "listen = 8080\n").unwrap();
    let out = mailroom(dir.path(), &[]).arg("serve").output().unwrap();
    assert_config_error(&out, "listen");
    assert!(
        !dir.path().join("mailroom-data").exists(),
        "nothing was created"
    );
}

#[tokio::test]
async fn vault_rotate_while_serving() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let env: &[(&str, &str)] = &[
        ("MAILROOM_MAIL_ALLOW_PRIVATE", "true"),
        ("MAILROOM_TLS_INSECURE_SKIP_VERIFY", "true"),
    ];
    let server = Server::start(cwd, env);
    let key = keys_create(cwd, env);
    let client = reqwest::Client::new();
    let user = rig.create_user();
    let r = client
        .post(server.url("/api/v1/accounts"))
        .header("X-API-KEY", &key)
        .json(&rig.account_body(&user))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["account_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let out = mailroom(cwd, env)
        .args(["vault", "rotate"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("re-sealed 1 secrets"), "{stdout}");

    // The running server opens the re-sealed credentials (a partial reconnect keeps the
    // stored SMTP password, which it must read under the data key it has never seen).
    let r = client
        .post(server.url(&format!("/api/v1/accounts/{id}")))
        .header("X-API-KEY", &key)
        .json(&json!({"imap_password": user.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    server.stop();
}

/// DESIGN §3 and issue 3.6: sends accepted (stored) but stalled inside the SMTP transaction
/// when mailroom is SIGKILLed are sent after the restart, each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_send_loses_nothing_and_sends_nothing_twice() {
    use mailroom_testkit::smtp_fault::{FaultSmtp, Mode};
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let env: &[(&str, &str)] = &[
        ("MAILROOM_MAIL_ALLOW_PRIVATE", "true"),
        ("MAILROOM_TLS_INSECURE_SKIP_VERIFY", "true"),
        ("MAILROOM_SEND_TIMEOUT_SECS", "4"),
        ("MAILROOM_SEND_RETRY_BASE_SECS", "1"),
    ];
    let server = Server::start(cwd, env);
    let key = keys_create(cwd, env);
    let client = reqwest::Client::new();
    let (sender, recipient) = (rig.create_user(), rig.create_user());
    let fault = FaultSmtp::start(rig.clone()).await;
    fault.set_mode(Mode::Stall);
    let mut body = rig.account_body(&sender);
    body["smtp_port"] = json!(fault.port());
    body["smtp_encryption"] = json!("starttls");
    let r = client
        .post(server.url("/api/v1/accounts"))
        .header("X-API-KEY", &key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let account = r.json::<Value>().await.unwrap()["account_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Three sends, each stored and then held by the SMTP server after the message data.
    let run = mailroom_testkit::token();
    let subjects: Vec<String> = (0..3).map(|i| format!("crash {run} #{i}")).collect();
    let request = |subject: &str| json!({"account_id": account, "to": [{"identifier": recipient.address}], "subject": subject, "body": "<p>survives</p>"});
    for (i, subject) in subjects.iter().enumerate() {
        let req = client
            .post(server.url("/api/v1/emails"))
            .header("X-API-KEY", &key)
            .header("Idempotency-Key", format!("{run}-{i}"))
            .json(&request(subject));
        tokio::spawn(async move {
            let _ = req.send().await; // never answered: the server dies first
        });
    }
    fault.wait_for_stalled(3, Duration::from_secs(20)).await;
    server.kill9();
    assert_eq!(
        fault.forwarded_count(),
        0,
        "nothing reached Postfix before the crash"
    );

    // The clients retry with their keys while the dead process's leases still run: each
    // retry answers within the send timeout (4 s, plus the request's own time) with where its
    // job stands, not after the lease (4 s + 5 s) plus a grace of 10 s, as it did before.
    let server = Server::start(cwd, env);
    let send_timeout = Duration::from_secs(4);
    let replays = subjects.iter().enumerate().map(|(i, subject)| {
        let req = client
            .post(server.url("/api/v1/emails"))
            .header("X-API-KEY", &key)
            .header("Idempotency-Key", format!("{run}-{i}"))
            .json(&request(subject));
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap(), started.elapsed())
        })
    });
    let replays: Vec<_> = replays.collect();
    let mut first_ids = Vec::new();
    for replay in replays {
        let (status, body, took) = replay.await.unwrap();
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["status"], "queued", "{body}");
        assert!(
            took < send_timeout + Duration::from_millis(1500),
            "a replay took {took:?}, longer than the send timeout"
        );
        first_ids.push(body["tracking_id"].as_str().unwrap().to_owned());
    }
    fault.set_mode(Mode::Forward);
    let outbox = mailroom_testkit::wait::until(
        "every send is sent after the restart",
        Duration::from_secs(60),
        || async {
            let r = client
                .get(server.url("/api/v1/outbox"))
                .header("X-API-KEY", &key)
                .send()
                .await
                .ok()?;
            let list: Value = r.json().await.ok()?;
            let items = list["items"].as_array()?.clone();
            (items.len() == 3 && items.iter().all(|i| i["status"] == "sent")).then_some(items)
        },
    )
    .await;
    let mut ids: Vec<String> = outbox
        .iter()
        .map(|i| i["message_id"].as_str().unwrap().to_owned())
        .collect();
    let inbox =
        mailroom_testkit::wait::until("three deliveries", Duration::from_secs(30), || async {
            let all = rig.fetch_all(&recipient, "INBOX").await;
            let ours: Vec<Vec<u8>> = all
                .into_iter()
                .filter(|m| String::from_utf8_lossy(m).contains(&format!("crash {run}")))
                .collect();
            (ours.len() >= 3).then_some(ours)
        })
        .await;
    assert_eq!(inbox.len(), 3, "each message arrives exactly once");
    let mut delivered: Vec<String> = inbox
        .iter()
        .map(|m| {
            mail_parser::MessageParser::default()
                .parse(m)
                .unwrap()
                .message_id()
                .map(|id| format!("<{id}>"))
                .unwrap()
        })
        .collect();
    delivered.sort();
    ids.sort();
    assert_eq!(delivered, ids, "by Message-ID");
    assert_eq!(fault.forwarded_count(), 3);
    // Once sent, a replay answers the outcome: 201 for the same tracking id.
    for (i, subject) in subjects.iter().enumerate() {
        let r = client
            .post(server.url("/api/v1/emails"))
            .header("X-API-KEY", &key)
            .header("Idempotency-Key", format!("{run}-{i}"))
            .json(&request(subject))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["tracking_id"], first_ids[i].as_str());
        assert!(body["provider_id"].is_string(), "{body}");
    }
    assert_eq!(fault.forwarded_count(), 3, "replays send nothing");
    server.stop();
}

#[tokio::test]
async fn migrate_and_keys_per_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let out = mailroom(cwd, &[]).arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(cwd.join("mailroom-data/mailroom.db").exists());
    let run = |args: &[&str]| {
        let out = mailroom(cwd, &[]).args(args).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_owned()
    };
    let acme = run(&["keys", "create", "--name", "ci", "--workspace", "acme"]);
    let other = run(&["keys", "create", "--workspace", "globex"]);
    let server = Server::start(cwd, &[]);
    let client = reqwest::Client::new();
    for key in [&acme, &other] {
        let (s, list) = get(&client, &server.url("/api/v1/accounts"), key).await;
        assert_eq!((s, list["items"].clone()), (200, json!([])));
    }
    // An id from one workspace is unknown in the other: seen through the outbox, which needs
    // no mail server, by asking each workspace for a made-up id.
    let (s, body) = get(
        &client,
        &server.url("/api/v1/outbox/AAAAAAAAAAAAAAAAAAAAAA"),
        &acme,
    )
    .await;
    assert_eq!(
        (s, body["type"].clone()),
        (404, json!("errors/resource_not_found"))
    );
    server.stop();
}

#[test]
fn a_master_key_that_does_not_fit_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    // The first rotation makes the vault under the generated key; another key cannot open it.
    assert!(
        mailroom(cwd, &[])
            .args(["vault", "rotate"])
            .output()
            .unwrap()
            .status
            .success()
    );
    let out = mailroom(
        cwd,
        &[(
            "MAILROOM_MASTER_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )],
    )
    .args(["vault", "rotate"])
    .output()
    .unwrap();
    assert_config_error(&out, "does not open this database");
    // So is a damaged key file, and an address already in use.
    std::fs::write(cwd.join("mailroom-data/master.key"), "garbage").unwrap();
    let out = mailroom(cwd, &[]).arg("serve").output().unwrap();
    assert_config_error(&out, "master key");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let fresh = tempfile::tempdir().unwrap();
    let out = mailroom(
        fresh.path(),
        &[
            ("MAILROOM_LISTEN", &addr),
            (
                "MAILROOM_MASTER_KEY",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            ),
        ],
    )
    .arg("serve")
    .output()
    .unwrap();
    assert_config_error(&out, "cannot listen");
}

/// Protocol libraries log the wire at DEBUG/TRACE, and the wire carries the password (IMAP
/// LOGIN, SMTP AUTH PLAIN): even at `trace`, the log must not contain it.
#[tokio::test]
async fn passwords_stay_out_of_the_log_even_at_trace() {
    use base64::Engine as _;
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let env: &[(&str, &str)] = &[
        ("MAILROOM_MAIL_ALLOW_PRIVATE", "true"),
        ("MAILROOM_TLS_INSECURE_SKIP_VERIFY", "true"),
        ("MAILROOM_LOG", "trace"),
    ];
    let key = keys_create(cwd, env);
    let mut server = Server::start(cwd, env);
    let client = reqwest::Client::new();
    let user = rig.create_user();
    let r = client
        .post(server.url("/api/v1/accounts"))
        .header("X-API-KEY", &key)
        .json(&rig.account_body(&user))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["account_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = client
        .post(server.url("/api/v1/emails"))
        .header("X-API-KEY", &key)
        .json(&json!({"account_id": id, "to": [{"identifier": user.address}], "subject": "log check", "body": "b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let _ = server.child.wait();
    let log: Vec<String> = server.log.iter().collect(); // until stderr closes
    let log = log.join("\n");
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "the log is verbose: {}",
        log.len()
    );
    let plain = base64::engine::general_purpose::STANDARD
        .encode(format!("\0{}\0{}", user.address, user.password));
    let login = base64::engine::general_purpose::STANDARD.encode(&user.password);
    for secret in [
        user.password.as_str(),
        plain.as_str(),
        login.as_str(),
        key.as_str(),
    ] {
        assert!(!log.contains(secret), "a secret leaked into the log");
    }
}

#[tokio::test]
async fn keys_are_listed_scoped_and_revoked_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let run = |args: &[&str]| mailroom(cwd, &[]).args(args).output().unwrap();
    let last_line = |out: &Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_owned()
    };
    let reader = last_line(&run(&[
        "keys",
        "create",
        "--name",
        "dashboard",
        "--scopes",
        "read",
        "--expires",
        "30d",
        "--rate",
        "5",
    ]));
    let admin = last_line(&run(&["keys", "create", "--name", "ops"]));
    for bad in [
        &["keys", "create", "--scopes", "read,admin"][..],
        &["keys", "create", "--expires", "2001-01-01T00:00:00Z"],
        &["keys", "create", "--expires", "soon"],
        &["keys", "revoke", "AAAAAAAAAAAAAAAAAAAAAA"],
        &["keys", "create", "--accounts", "AAAAAAAAAAAAAAAAAAAAAA"],
        &["keys", "create", "--accounts", " , "],
        &["keys", "create", "--accounts", "not an id"],
    ] {
        let out = run(bad);
        assert!(!out.status.success(), "{bad:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.lines().count() == 1 && err.starts_with("mailroom: "),
            "{bad:?}: {err}"
        );
    }
    let list = run(&["keys", "list"]);
    let table = String::from_utf8(list.stdout).unwrap();
    let reader_id = reader.split_once('.').unwrap().0;
    let row = |id: &str| {
        table
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} in {table}"))
            .split('\t')
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let r = row(reader_id);
    assert_eq!(
        (r[2].as_str(), r[3].as_str(), r[7].as_str(), r[8].as_str()),
        ("dashboard", "read", "active", "5")
    );
    assert_ne!(r[5], "-", "an expiry: {r:?}");
    assert_eq!(r[9], "all", "an unbound key: {r:?}");
    // A binding to an account the workspace lacks is refused by name, and no key is made.
    let unknown = run(&["keys", "create", "--accounts", "AAAAAAAAAAAAAAAAAAAAAA"]);
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no account AAAAAAAAAAAAAAAAAAAAAA"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    assert_eq!(table.lines().count(), 3, "a header and two keys: {table}");
    assert!(
        !table.contains(reader.split_once('.').unwrap().1),
        "no secret in the list"
    );

    let server = Server::start(cwd, &[]);
    let client = reqwest::Client::new();
    let (s, _) = get(&client, &server.url("/api/v1/accounts"), &reader).await;
    assert_eq!(s, 200);
    let post = |key: &str| {
        client
            .post(server.url("/api/v1/accounts"))
            .header("X-API-KEY", key)
            .json(&json!({"provider": "MAIL"}))
            .send()
    };
    let r = post(&reader).await.unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "errors/insufficient_permissions");
    assert!(
        body["detail"].as_str().unwrap().contains("manage"),
        "{body}"
    );
    assert_eq!(
        post(&admin).await.unwrap().status(),
        400,
        "allowed, then validated"
    );
    // Used keys show their last use; a revoked key is refused by the running server at once.
    let table = String::from_utf8(run(&["keys", "list"]).stdout).unwrap();
    let used = table.lines().find(|l| l.starts_with(reader_id)).unwrap();
    assert_ne!(used.split('\t').nth(6), Some("-"), "{used}");
    let out = run(&["keys", "revoke", reader_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, body) = get(&client, &server.url("/api/v1/accounts"), &reader).await;
    assert_eq!(
        (s, body["detail"].clone()),
        (401, json!("the API key was revoked"))
    );
    let table = String::from_utf8(run(&["keys", "list"]).stdout).unwrap();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(reader_id) && l.contains("\trevoked\t"))
    );
    // The audit log credits the command line with the keys it made and revoked.
    let (s, log) = get(&client, &server.url("/api/v1/audit?actor=cli"), &admin).await;
    assert_eq!(s, 200, "{log}");
    let entries: Vec<(String, String)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let admin_id = admin.split_once('.').unwrap().0;
    assert_eq!(
        entries,
        [
            ("key.revoked".to_owned(), reader_id.to_owned()),
            ("key.created".to_owned(), admin_id.to_owned()),
            ("key.created".to_owned(), reader_id.to_owned()),
        ]
    );
    server.stop();
}
