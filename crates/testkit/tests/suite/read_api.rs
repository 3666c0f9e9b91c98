//! The read API (`GET /emails`, `GET /emails/{id}`, `GET /folders`, `GET /folders/{id}`)
//! through HTTP, on both backends, over mail APPENDed to real Dovecot users and indexed by
//! one IMAP sync pass (`engine::sync::imap::sync_account_once`): every filter (each case
//! would fail without it), `search` with odd input, `meta_only` and `include_headers`, the
//! item shape, keyset pages that stay stable while mail arrives, lookups by provider id,
//! folders with their roles and counts, and bad input answered 400 / 404.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;

use mailroom_engine::sync::imap::sync_account_once;
use mailroom_store::Store;
use mailroom_store::accounts::{self, Account};
use mailroom_testkit::app::{TestApp, assert_error};
use mailroom_testkit::{Backend, MailRig, MailUser, both_backends, spawn_app};

/// A message `n` of run `run` (Message-ID `<run.n@example.test>`).
struct Mail<'a> {
    n: u32,
    from: &'a str,
    to: &'a str,
    cc: Option<&'a str>,
    subject: &'a str,
    /// Day of December 2026 and second, for the Date header.
    day: u32,
    second: u32,
    text: &'a str,
    html: Option<&'a str>,
    attachment: bool,
    in_reply_to: Option<u32>,
}

impl Default for Mail<'_> {
    fn default() -> Self {
        Mail {
            n: 0,
            from: "Sender <s@example.test>",
            to: "r@example.test",
            cc: None,
            subject: "hello",
            day: 1,
            second: 0,
            text: "plain body",
            html: None,
            attachment: false,
            in_reply_to: None,
        }
    }
}

fn raw(run: &str, m: &Mail<'_>) -> Vec<u8> {
    let mut h = format!(
        "From: {}\r\nTo: {}\r\nSubject: {}\r\nMessage-ID: <{run}.{}@example.test>\r\n\
         Date: Tue, {} Dec 2026 12:00:{:02} +0000\r\nMIME-Version: 1.0\r\nX-Read-Test: {}\r\n",
        m.from, m.to, m.subject, m.n, m.day, m.second, m.n
    );
    if let Some(cc) = m.cc {
        h.push_str(&format!("Cc: {cc}\r\n"));
    }
    if let Some(p) = m.in_reply_to {
        h.push_str(&format!(
            "In-Reply-To: <{run}.{p}@example.test>\r\nReferences: <{run}.{p}@example.test>\r\n"
        ));
    }
    let text_part = format!(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{}\r\n",
        m.text
    );
    let alt = match m.html {
        Some(html) => format!(
            "Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n--alt\r\n{text_part}--alt\r\n\
             Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{html}\r\n--alt--\r\n"
        ),
        None => text_part,
    };
    let body = if m.attachment {
        format!(
            "Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n--mix\r\n{alt}--mix\r\n\
             Content-Type: text/plain; name=\"notes.txt\"\r\nContent-Disposition: attachment; filename=\"notes.txt\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQ=\r\n--mix--\r\n"
        )
    } else {
        alt
    };
    format!("{h}{body}").into_bytes()
}

struct Fixture {
    app: TestApp,
    rig: MailRig,
    user: MailUser,
    acc: String,
    account: Account,
    run: String,
}

/// An app with one IMAP account on a fresh rig user, or `None` (skipped).
async fn fixture(backend: Backend) -> Option<Fixture> {
    let rig = MailRig::from_env()?;
    let app = spawn_app(backend).await?;
    let (user, acc, account) = link(&app, &rig).await;
    Some(Fixture {
        app,
        rig,
        user,
        acc,
        account,
        run: mailroom_testkit::token(),
    })
}

async fn link(app: &TestApp, rig: &MailRig) -> (MailUser, String, Account) {
    let user = rig.create_user();
    let (s, created) = app
        .post_json("/api/v1/accounts", &rig.account_body(&user))
        .await;
    assert_eq!(s, 201, "{created}");
    let acc = created["account_id"].as_str().unwrap().to_owned();
    let account = accounts::get_any(&app.store, &acc).await.unwrap().unwrap();
    (user, acc, account)
}

impl Fixture {
    /// APPENDs the messages (folder, flags, mail) to the user's mailbox.
    async fn append(&self, user: &MailUser, mails: &[(&str, Option<&str>, Mail<'_>)]) {
        let mut s = self.rig.imap(user).await;
        for (folder, flags, m) in mails {
            s.append(folder, *flags, None, raw(&self.run, m))
                .await
                .expect("APPEND");
        }
        let _ = s.logout().await;
    }

    async fn sync(&self, account: &Account) {
        let r = sync_account_once(&self.app.engine, account)
            .await
            .expect("sync pass");
        assert!(r.failed.is_empty(), "{r:?}");
    }

    async fn list(&self, query: &[(&str, &str)]) -> (u16, Value) {
        self.app
            .call(self.app.request(Method::GET, "/api/v1/emails").query(query))
            .await
    }

    /// The message numbers (`X-Read-Test` / Message-ID `<run.N@…>`) a list answers, in order.
    async fn numbers(&self, query: &[(&str, &str)]) -> Vec<u32> {
        let (s, body) = self.list(query).await;
        assert_eq!(s, 200, "{query:?}: {body}");
        assert_eq!(body["object"], "EmailList");
        numbers_of(&self.run, &body)
    }

    fn mid(&self, n: u32) -> String {
        format!("<{}.{n}@example.test>", self.run)
    }
}

fn numbers_of(run: &str, body: &Value) -> Vec<u32> {
    body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("items in {body}"))
        .iter()
        .map(|i| {
            let mid = i["message_id"].as_str().unwrap();
            mid.strip_prefix(&format!("<{run}."))
                .and_then(|r| r.strip_suffix("@example.test>"))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("foreign message {mid}"))
        })
        .collect()
}

fn item_of<'a>(body: &'a Value, mid: &str) -> &'a Value {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["message_id"] == mid)
        .unwrap_or_else(|| panic!("{mid} in {body}"))
}

/// The SDK's date format.
fn is_utc_ms(v: &Value) -> bool {
    let s = v.as_str().unwrap_or("");
    s.len() == 24
        && s.ends_with('Z')
        && s.as_bytes()[19] == b'.'
        && time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
}

/// The mailbox every filter test reads: account A has INBOX (1 with an attachment and HTML,
/// 2 answering 1, read), Projects (3, with odd words), Sent (4), Trash (5); account B has
/// INBOX (6).
async fn filters_fixture(f: &Fixture) -> (MailUser, String) {
    {
        let mut s = f.rig.imap(&f.user).await;
        s.create("Projects").await.expect("CREATE");
        let _ = s.logout().await;
    }
    f.append(
        &f.user,
        &[
            (
                "INBOX",
                None,
                Mail {
                    n: 1,
                    from: "Alice <alice@example.test>",
                    to: "Bob <bob@example.test>",
                    subject: "Quarterly invoice 42",
                    day: 1,
                    text: "Please pay for the pineapple.",
                    html: Some("<p>Please pay for the <b>pineapple</b>.</p>"),
                    attachment: true,
                    ..Default::default()
                },
            ),
            (
                "INBOX",
                Some("(\\Seen)"),
                Mail {
                    n: 2,
                    from: "Bob <bob@example.test>",
                    to: "alice@example.test",
                    cc: Some("carol@example.test"),
                    subject: "Re: Quarterly invoice 42",
                    day: 2,
                    text: "Paid.",
                    in_reply_to: Some(1),
                    ..Default::default()
                },
            ),
            (
                "Projects",
                None,
                Mail {
                    n: 3,
                    from: "carol@example.test",
                    to: "Dave <dave@example.test>",
                    subject: "Café ünïcode plans",
                    day: 3,
                    text: "Meet NEAR the river -- bring \"quotes\" and *stars* (x-ray)",
                    ..Default::default()
                },
            ),
            (
                "Sent",
                None,
                Mail {
                    n: 4,
                    from: "me@example.test",
                    to: "erin@example.test",
                    subject: "sent one",
                    day: 4,
                    ..Default::default()
                },
            ),
            (
                "Trash",
                None,
                Mail {
                    n: 5,
                    from: "junk@example.test",
                    subject: "trash one",
                    day: 5,
                    ..Default::default()
                },
            ),
        ],
    )
    .await;
    f.sync(&f.account).await;
    let (user_b, acc_b, account_b) = link(&f.app, &f.rig).await;
    f.append(
        &user_b,
        &[(
            "INBOX",
            None,
            Mail {
                n: 6,
                from: "frank@example.test",
                subject: "other account",
                day: 6,
                ..Default::default()
            },
        )],
    )
    .await;
    f.sync(&account_b).await;
    (user_b, acc_b)
}

async fn every_filter_narrows_the_list(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let (_, acc_b) = filters_fixture(&f).await;
    let a = f.acc.as_str();

    assert_eq!(
        f.numbers(&[]).await,
        [6, 5, 4, 3, 2, 1],
        "the workspace, newest first"
    );
    assert_eq!(f.numbers(&[("account_id", a)]).await, [5, 4, 3, 2, 1]);
    assert_eq!(f.numbers(&[("account_id", &acc_b)]).await, [6]);
    assert_eq!(
        f.numbers(&[("account_id", a), ("role", "inbox")]).await,
        [2, 1]
    );
    assert_eq!(f.numbers(&[("role", "inbox")]).await, [6, 2, 1]);
    assert_eq!(f.numbers(&[("role", "sent")]).await, [4]);
    assert_eq!(
        f.numbers(&[("account_id", a), ("folder", "Projects")])
            .await,
        [3]
    );
    assert_eq!(
        f.numbers(&[("folder", "Projects")]).await,
        [3],
        "a provider id without the account"
    );
    assert_eq!(f.numbers(&[("folder", "INBOX")]).await, [6, 2, 1]);
    assert_eq!(f.numbers(&[("from", "alice@example.test")]).await, [1]);
    assert_eq!(
        f.numbers(&[("from", "ALICE@example.test")]).await,
        [1],
        "addresses ignore case"
    );
    assert_eq!(f.numbers(&[("to", "bob@example.test")]).await, [1]);
    assert_eq!(
        f.numbers(&[("any_email", "carol@example.test,erin@example.test")])
            .await,
        [4, 3, 2],
        "sender, To and Cc"
    );
    assert_eq!(
        f.numbers(&[
            ("after", "2026-12-02T12:00:00.000Z"),
            ("before", "2026-12-05T12:00:00.000Z")
        ])
        .await,
        [4, 3],
        "both bounds exclusive"
    );
    assert_eq!(
        f.numbers(&[("after", "2026-12-05")]).await,
        [6, 5],
        "a date is midnight UTC"
    );
    assert_eq!(f.numbers(&[("message_id", &f.mid(3))]).await, [3]);
    let bare = f.mid(3).trim_matches(['<', '>']).to_owned();
    assert_eq!(
        f.numbers(&[("message_id", &bare)]).await,
        [3],
        "brackets optional"
    );
    assert_eq!(
        f.numbers(&[("account_id", a), ("exclude_folders", "Trash,Sent")])
            .await,
        [3, 2, 1]
    );
    assert_eq!(
        f.numbers(&[
            ("account_id", a),
            ("folder", "INBOX"),
            ("exclude_folders", "INBOX")
        ])
        .await,
        [2, 1],
        "exclude_folders is ignored with folder"
    );

    // thread_id: 2 answers 1, so they share one.
    let (_, all) = f.list(&[("account_id", a)]).await;
    let thread = item_of(&all, &f.mid(1))["thread_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(item_of(&all, &f.mid(2))["thread_id"], thread.as_str());
    assert_eq!(f.numbers(&[("thread_id", &thread)]).await, [2, 1]);

    // Search: subject, body, addresses, all words required, combinable with filters.
    for (q, want) in [
        ("pineapple", vec![1]),
        ("invoice", vec![2, 1]),
        ("INVOICE 42", vec![2, 1]),
        ("dave@example.test", vec![3]),
        ("Dave", vec![3]),
        ("pineapple invoice", vec![1]),
        ("pineapple dave", vec![]),
        ("\"quotes\"", vec![3]),
        ("stars*", vec![3]),
        ("NEAR", vec![3]),
        ("river NEAR", vec![3]),
        ("x-ray", vec![3]),
        ("(x OR ray)", vec![]),
        ("café", vec![3]),
        ("CAFÉ ÜNÏCODE", vec![3]),
        ("subject:plans", vec![]),
        ("it's", vec![]),
    ] {
        assert_eq!(f.numbers(&[("search", q)]).await, want, "search {q:?}");
    }
    assert_eq!(
        f.numbers(&[
            ("search", "invoice"),
            ("account_id", a),
            ("role", "inbox"),
            ("from", "bob@example.test")
        ])
        .await,
        [2]
    );
    assert_eq!(
        f.numbers(&[("search", "frank"), ("account_id", a)]).await,
        Vec::<u32>::new()
    );
    for odd in ["*", "-", "\"", "\"\"\"", "(*)", "^", "'", " "] {
        let r = f.list(&[("search", odd)]).await;
        assert_error(&r, 400, "invalid_parameters");
        assert!(
            r.1["detail"].as_str().unwrap().contains("search"),
            "{}",
            r.1
        );
    }
}
both_backends!(every_filter_narrows_the_list);

async fn items_have_the_sdk_shape(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    filters_fixture(&f).await;
    let a = f.acc.as_str();
    let (s, body) = f.list(&[("account_id", a)]).await;
    assert_eq!(s, 200, "{body}");
    assert!(
        body["cursor"].is_null(),
        "a single page has a null cursor: {body}"
    );
    let first = item_of(&body, &f.mid(1));
    let reply = item_of(&body, &f.mid(2));
    for item in body["items"].as_array().unwrap() {
        assert_eq!(item["object"], "Email");
        assert_eq!(item["kind"], "2_full");
        assert_eq!(item["type"], "MAIL");
        assert_eq!(item["account_id"], a);
        assert_eq!(item["deprecated_id"], item["id"]);
        assert!(is_utc_ms(&item["date"]), "{item}");
        assert!(item["provider_id"].as_str().is_some_and(|p| !p.is_empty()));
        assert_eq!(item["from_attendee"]["identifier_type"], "EMAIL_ADDRESS");
        assert!(item["headers"].is_null(), "no headers unless asked: {item}");
        assert_eq!(
            item["folders"].as_array().unwrap().len(),
            item["folderIds"].as_array().unwrap().len()
        );
    }
    assert_eq!(first["role"], "inbox");
    assert_eq!(first["folders"], serde_json::json!(["INBOX"]));
    assert_eq!(first["subject"], "Quarterly invoice 42");
    assert_eq!(first["from_attendee"]["identifier"], "alice@example.test");
    assert_eq!(first["from_attendee"]["display_name"], "Alice");
    assert_eq!(first["to_attendees"][0]["identifier"], "bob@example.test");
    assert!(
        first["body"].as_str().unwrap().contains("<b>pineapple</b>"),
        "{first}"
    );
    assert!(
        first["body_plain"].as_str().unwrap().contains("pineapple"),
        "{first}"
    );
    assert_eq!(first["has_attachments"], true);
    let att = &first["attachments"][0];
    assert_eq!(att["name"], "notes.txt");
    assert_eq!(att["extension"], "txt");
    assert_eq!(att["mime"], "text/plain");
    assert_eq!(att["size"], 11);
    assert!(att["id"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(first["origin"], "external");
    assert!(first["read_date"].is_null(), "unread: {first}");
    assert!(first["in_reply_to"].is_null(), "answers nothing indexed");
    assert!(
        is_utc_ms(&reply["read_date"]),
        "\\Seen gives a read date: {reply}"
    );
    assert_eq!(reply["in_reply_to"]["message_id"], f.mid(1).as_str());
    assert_eq!(reply["in_reply_to"]["id"], first["id"]);
    assert_eq!(reply["cc_attendees"][0]["identifier"], "carol@example.test");
    assert_eq!(
        reply["body"], reply["body_plain"],
        "text-only mail: body is the text"
    );
    assert!(
        reply["body_plain"].as_str().unwrap().starts_with("Paid."),
        "{reply}"
    );
    let folder_of = |mid: &str| item_of(&body, mid)["role"].clone();
    assert_eq!(folder_of(&f.mid(3)), "unknown");
    assert_eq!(folder_of(&f.mid(4)), "sent");
    assert_eq!(folder_of(&f.mid(5)), "trash");
    let folder_ids: BTreeSet<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| {
            i["folderIds"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
        })
        .collect();
    assert_eq!(folder_ids.len(), 4, "INBOX, Projects, Sent, Trash");

    // meta_only: no bodies at all, kind 1_meta.
    let (s, meta) = f.list(&[("account_id", a), ("meta_only", "true")]).await;
    assert_eq!(s, 200, "{meta}");
    for item in meta["items"].as_array().unwrap() {
        assert_eq!(item["kind"], "1_meta");
        assert_eq!(item["body"], "");
        assert_eq!(item["body_plain"], "");
        assert!(item["headers"].is_null());
    }
    assert_eq!(
        item_of(&meta, &f.mid(1))["attachments"][0]["name"],
        "notes.txt"
    );

    // include_headers: the stored header lines.
    let (s, full) = f
        .list(&[
            ("account_id", a),
            ("include_headers", "true"),
            ("limit", "10"),
        ])
        .await;
    assert_eq!(s, 200, "{full}");
    let headers = item_of(&full, &f.mid(3))["headers"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        headers.iter().any(|h| h["name"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case("x-read-test")
            && h["value"] == "3"),
        "{headers:?}"
    );

    // One email: by id, by provider id + account, with headers on demand.
    let id = first["id"].as_str().unwrap();
    let (s, one) = f.app.get(&format!("/api/v1/emails/{id}")).await;
    assert_eq!(s, 200, "{one}");
    assert_eq!(one["object"], "Email");
    assert_eq!(one["kind"], "2_full");
    assert_eq!(one["id"], id);
    assert!(one["body"].as_str().unwrap().contains("pineapple"));
    assert!(one["headers"].is_null());
    let (s, one_h) = f
        .app
        .get(&format!("/api/v1/emails/{id}?include_headers=true"))
        .await;
    assert_eq!(s, 200, "{one_h}");
    assert!(
        one_h["headers"].as_array().is_some_and(|h| !h.is_empty()),
        "{one_h}"
    );
    let pid = first["provider_id"].as_str().unwrap();
    assert!(pid.contains(':') && pid.contains('@'), "{pid}");
    let (s, by_pid) = f
        .app
        .get(&format!("/api/v1/emails/{pid}?account_id={a}"))
        .await;
    assert_eq!(s, 200, "{by_pid}");
    assert_eq!(by_pid["id"], id);
    let (s, by_id_with_account) = f
        .app
        .get(&format!("/api/v1/emails/{id}?account_id={a}"))
        .await;
    assert_eq!(
        s, 200,
        "our id works with account_id too: {by_id_with_account}"
    );
    assert_error(
        &f.app.get(&format!("/api/v1/emails/{pid}")).await,
        404,
        "resource_not_found",
    );
    assert_error(
        &f.app.get("/api/v1/emails/AAAAAAAAAAAAAAAAAAAAAA").await,
        404,
        "resource_not_found",
    );
    assert_error(
        &f.app
            .get(&format!(
                "/api/v1/emails/{pid}?account_id=AAAAAAAAAAAAAAAAAAAAAA"
            ))
            .await,
        404,
        "resource_not_found",
    );
    // Another workspace sees none of it.
    let other = f.app.other_workspace_key().await;
    let r = f
        .app
        .call(
            f.app
                .client
                .get(f.app.url(&format!("/api/v1/emails/{id}")))
                .header("X-API-KEY", &other),
        )
        .await;
    assert_error(&r, 404, "resource_not_found");
    let r = f
        .app
        .call(
            f.app
                .client
                .get(f.app.url("/api/v1/emails"))
                .header("X-API-KEY", &other),
        )
        .await;
    assert_eq!(r.0, 200);
    assert_eq!(r.1["items"], serde_json::json!([]));
}
both_backends!(items_have_the_sdk_shape);

async fn pages_stay_stable_while_mail_arrives(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    // 1..=5 in INBOX (3 and 4 at the same second: the id breaks the tie), 9 in Sent.
    let at = |n: u32, day: u32, second: u32| Mail {
        n,
        day,
        second,
        ..Default::default()
    };
    f.append(
        &f.user,
        &[
            ("INBOX", None, at(1, 1, 10)),
            ("INBOX", None, at(2, 2, 0)),
            ("INBOX", None, at(3, 3, 0)),
            ("INBOX", None, at(4, 3, 0)),
            ("INBOX", None, at(5, 5, 0)),
            ("Sent", None, at(9, 4, 0)),
        ],
    )
    .await;
    f.sync(&f.account).await;
    let a = f.acc.as_str();

    let (s, p1) = f
        .list(&[("account_id", a), ("folder", "INBOX"), ("limit", "2")])
        .await;
    assert_eq!(s, 200, "{p1}");
    let first = numbers_of(&f.run, &p1);
    assert_eq!(first.len(), 2);
    assert_eq!(first[0], 5);
    assert!(first[1] == 3 || first[1] == 4, "{first:?}");
    let cursor = p1["cursor"].as_str().expect("a next page").to_owned();
    assert!(
        cursor.len() % 4 == 0
            && cursor
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)),
        "standard base64: {cursor}"
    );

    // Mail arrives between the pages: two newer ones, one older than everything.
    f.append(
        &f.user,
        &[
            ("INBOX", None, at(6, 6, 0)),
            ("INBOX", None, at(7, 7, 0)),
            ("INBOX", None, at(8, 1, 5)),
        ],
    )
    .await;
    f.sync(&f.account).await;

    // The cursor carries the filters (the Sent mail never shows) and wins over the request's.
    let (s, p2) = f
        .list(&[("cursor", &cursor), ("folder", "Sent"), ("limit", "9")])
        .await;
    assert_eq!(s, 200, "{p2}");
    let second = numbers_of(&f.run, &p2);
    assert_eq!(second.len(), 2, "{second:?}");
    assert_eq!(second[1], 2);
    let cursor = p2["cursor"].as_str().expect("a third page").to_owned();
    let (s, p3) = f.list(&[("cursor", &cursor)]).await;
    assert_eq!(s, 200, "{p3}");
    let third = numbers_of(&f.run, &p3);
    assert_eq!(third, [1, 8], "the older arrival comes in its place");
    assert!(p3["cursor"].is_null(), "last page: {p3}");

    let mut seen: Vec<u32> = first.into_iter().chain(second).chain(third).collect();
    seen.sort();
    assert_eq!(
        seen,
        [1, 2, 3, 4, 5, 8],
        "no repeat, no gap, nothing newer than page 1"
    );
    assert_eq!(
        f.numbers(&[("account_id", a), ("folder", "INBOX"), ("limit", "2")])
            .await,
        [7, 6],
        "a fresh first page shows the new mail"
    );
    assert_eq!(
        f.numbers(&[("account_id", a), ("limit", "250")])
            .await
            .len(),
        9
    );

    for bad in ["!!!", "e30=", "bm90IGpzb24="] {
        let r = f.list(&[("cursor", bad)]).await;
        assert_error(&r, 400, "invalid_parameters");
    }
}
both_backends!(pages_stay_stable_while_mail_arrives);

async fn folders_list_and_get(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let (_, acc_b) = filters_fixture(&f).await;
    let a = f.acc.as_str();
    let (s, list) = f.app.get(&format!("/api/v1/folders?account_id={a}")).await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["object"], "FolderList");
    assert!(
        list.get("cursor").is_none(),
        "the SDK's FolderList has no cursor: {list}"
    );
    let items = list["items"].as_array().unwrap();
    let by_name = |name: &str| {
        items
            .iter()
            .find(|i| i["provider_id"] == name)
            .unwrap_or_else(|| panic!("{name} in {list}"))
            .clone()
    };
    for (name, role, count) in [
        ("INBOX", "inbox", 2),
        ("Projects", "unknown", 1),
        ("Sent", "sent", 1),
        ("Trash", "trash", 1),
    ] {
        let folder = by_name(name);
        assert_eq!(folder["object"], "Folder");
        assert_eq!(folder["role"], role, "{folder}");
        assert_eq!(folder["nb_mails"], count, "{folder}");
        assert_eq!(folder["name"], name);
        assert_eq!(folder["account_id"], a);
    }
    assert!(items.iter().all(|i| i["account_id"] == a));

    let (s, all) = f.app.get("/api/v1/folders").await;
    assert_eq!(s, 200, "{all}");
    let accounts: BTreeSet<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["account_id"].as_str().unwrap())
        .collect();
    assert_eq!(accounts, BTreeSet::from([a, acc_b.as_str()]));

    let inbox = by_name("INBOX");
    let id = inbox["id"].as_str().unwrap();
    let (s, one) = f.app.get(&format!("/api/v1/folders/{id}")).await;
    assert_eq!((s, &one), (200, &inbox));
    let (s, one) = f
        .app
        .get(&format!("/api/v1/folders/INBOX?account_id={a}"))
        .await;
    assert_eq!((s, &one), (200, &inbox), "by provider id");
    let (s, b_inbox) = f
        .app
        .get(&format!("/api/v1/folders/INBOX?account_id={acc_b}"))
        .await;
    assert_eq!(s, 200);
    assert_ne!(b_inbox["id"], inbox["id"]);
    assert_eq!(b_inbox["nb_mails"], 1);
    // The folder's id works as a filter too, and so does its provider id.
    assert_eq!(f.numbers(&[("folder", id)]).await, [2, 1]);

    assert_error(
        &f.app.get("/api/v1/folders/INBOX").await,
        404,
        "resource_not_found",
    );
    assert_error(
        &f.app
            .get("/api/v1/folders/Nope?account_id=".to_owned().as_str())
            .await,
        400,
        "invalid_parameters",
    );
    assert_error(
        &f.app
            .get(&format!("/api/v1/folders/Nope?account_id={a}"))
            .await,
        404,
        "resource_not_found",
    );
    assert_error(
        &f.app
            .get(&format!("/api/v1/folders/{id}?account_id={acc_b}"))
            .await,
        404,
        "resource_not_found",
    );
    assert_error(
        &f.app
            .get("/api/v1/folders?account_id=AAAAAAAAAAAAAAAAAAAAAA")
            .await,
        404,
        "resource_not_found",
    );
}
both_backends!(folders_list_and_get);

async fn bad_input_is_answered_400_or_404(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let a = f.acc.as_str();
    // An account with nothing indexed yet answers an empty, valid list.
    let (s, empty) = f.list(&[("account_id", a)]).await;
    assert_eq!(s, 200, "{empty}");
    assert_eq!(empty["items"], serde_json::json!([]));
    assert!(empty["cursor"].is_null());
    for (query, name) in [
        (vec![("limit", "0")], "limit"),
        (vec![("limit", "251")], "limit"),
        (vec![("role", "Inbox")], "role"),
        (vec![("before", "last week")], "before"),
        (vec![("after", "2026-02-30T00:00:00Z")], "after"),
        (vec![("from", "not an address")], "from"),
        (vec![("to", "")], "to"),
        (vec![("any_email", "a@x.test,")], "any_email"),
        (vec![("message_id", "<a b@c>")], "message_id"),
        (vec![("meta_only", "maybe")], "meta_only"),
        (vec![("include_headers", "2")], "include_headers"),
        (
            vec![("meta_only", "true"), ("include_headers", "true")],
            "include_headers",
        ),
        (vec![("search", "&&&")], "search"),
        (vec![("exclude_folders", ",")], "exclude_folders"),
        (vec![("account_id", a), ("folder", "Nope")], "folder"),
        (vec![("cursor", "%%%")], "cursor"),
    ] {
        let r = f.list(&query).await;
        assert_error(&r, 400, "invalid_parameters");
        assert!(
            r.1["detail"].as_str().unwrap().contains(name),
            "{query:?}: {}",
            r.1
        );
    }
    let long = "word ".repeat(400);
    assert_error(
        &f.list(&[("search", &long)]).await,
        400,
        "invalid_parameters",
    );
    for account in ["AAAAAAAAAAAAAAAAAAAAAA", "nope"] {
        assert_error(
            &f.list(&[("account_id", account)]).await,
            404,
            "resource_not_found",
        );
    }
    assert_error(
        &f.app
            .get("/api/v1/emails/AAAAAAAAAAAAAAAAAAAAAA?include_headers=perhaps")
            .await,
        400,
        "invalid_parameters",
    );
    // Without a key: 401, never a list.
    let r = f
        .app
        .call(f.app.client.get(f.app.url("/api/v1/emails")))
        .await;
    assert_error(&r, 401, "missing_credentials");
}
both_backends!(bad_input_is_answered_400_or_404);

/// A count from the database as it is.
async fn raw_count(store: &Store, sql: &'static str) -> i64 {
    match store {
        Store::Sqlite(p) => sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(p)
            .await
            .unwrap(),
        Store::Postgres(p) => sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(p)
            .await
            .unwrap(),
    }
}

/// How many search entries hold the word `zanzibar` (the FTS / tsvector side itself).
async fn search_entries(store: &Store) -> i64 {
    match store {
        Store::Sqlite(_) => {
            raw_count(
                store,
                "SELECT COUNT(*) FROM message_search_fts WHERE message_search_fts MATCH '\"zanzibar\"'",
            )
            .await
        }
        Store::Postgres(_) => {
            raw_count(
                store,
                "SELECT COUNT(*) FROM message_search WHERE doc @@ plainto_tsquery('simple', 'zanzibar')",
            )
            .await
        }
    }
}

async fn search_follows_the_index(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.append(
        &f.user,
        &[
            (
                "INBOX",
                None,
                Mail {
                    n: 1,
                    subject: "first",
                    text: "a trip to Zanzibar",
                    ..Default::default()
                },
            ),
            (
                "INBOX",
                None,
                Mail {
                    n: 2,
                    day: 2,
                    subject: "Zanzibar again",
                    ..Default::default()
                },
            ),
        ],
    )
    .await;
    f.sync(&f.account).await;
    assert_eq!(f.numbers(&[("search", "zanzibar")]).await, [2, 1]);
    assert_eq!(search_entries(&f.app.store).await, 2);
    // A second pass re-indexes nothing twice.
    f.sync(&f.account).await;
    assert_eq!(search_entries(&f.app.store).await, 2);

    // Expunge 1: gone from the index, gone from search.
    {
        use futures_util::TryStreamExt as _;
        let mut s = f.rig.imap(&f.user).await;
        s.select("INBOX").await.expect("SELECT");
        let _: Vec<_> = s
            .store("1", "+FLAGS (\\Deleted)")
            .await
            .expect("STORE")
            .try_collect()
            .await
            .expect("STORE stream");
        let _: Vec<_> = s
            .expunge()
            .await
            .expect("EXPUNGE")
            .try_collect()
            .await
            .expect("EXPUNGE stream");
        let _ = s.logout().await;
    }
    f.sync(&f.account).await;
    assert_eq!(f.numbers(&[("search", "zanzibar")]).await, [2]);
    assert_eq!(search_entries(&f.app.store).await, 1);

    // Deleting the account takes its search entries with it.
    let (s, body) = f.app.delete(&format!("/api/v1/accounts/{}", f.acc)).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(search_entries(&f.app.store).await, 0);
    assert_eq!(
        raw_count(&f.app.store, "SELECT COUNT(*) FROM message_search").await,
        0
    );
}
both_backends!(search_follows_the_index);
