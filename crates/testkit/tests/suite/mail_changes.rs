//! Changing mail through the API against the real Dovecot, on both backends: read state
//! (JSON, urlencoded, multipart; the SDK's broken `[object Object]` body answered 400), moves,
//! deletion to Trash (and expunge from the Trash), attachment bytes, drafts and `draft_id`
//! sends. Each change is checked on the server, in the index and in the event log, and a
//! sync pass afterwards finds nothing new and records nothing more.

use std::time::Duration;

use futures_util::TryStreamExt as _;
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use mailroom_engine::sync::imap::{SyncReport, sync_account_once};
use mailroom_store::accounts::{self, Account};
use mailroom_store::events;
use mailroom_store::index::{self, MessageFilter, MessageRow};
use mailroom_testkit::app::{TestApp, assert_error};
use mailroom_testkit::{Backend, MailRig, MailUser, both_backends, spawn_app, wait};

const DEADLINE: Duration = Duration::from_secs(30);

struct Ctx {
    rig: MailRig,
    app: TestApp,
    user: MailUser,
    acc: String,
    account: Account,
    run: String,
}

fn message(run: &str, n: u32) -> Vec<u8> {
    format!(
        "From: Sender <s@example.test>\r\nTo: r@example.test\r\nSubject: change {n}\r\n\
         Message-ID: <{run}.{n}@example.test>\r\nDate: Tue, 1 Dec 2026 12:00:{n:02} +0000\r\n\r\n\
         body {n}\r\n"
    )
    .into_bytes()
}

/// A rig user linked as an account, with `Projects` created and `mail` APPENDed, indexed by a
/// first sync pass (which announces nothing).
async fn setup(backend: Backend, mail: &[(&str, Vec<u8>)]) -> Option<Ctx> {
    let rig = MailRig::from_env()?;
    setup_linked(rig, backend, mail, |rig, user| rig.account_body(user)).await
}

/// As [`setup`], with the account linked by the body `link` gives (e.g. through a proxy).
async fn setup_linked(
    rig: MailRig,
    backend: Backend,
    mail: &[(&str, Vec<u8>)],
    link: impl FnOnce(&MailRig, &MailUser) -> Value,
) -> Option<Ctx> {
    let app = spawn_app(backend).await?;
    let user = rig.create_user();
    let (s, created) = app.post_json("/api/v1/accounts", &link(&rig, &user)).await;
    assert_eq!(s, 201, "{created}");
    let acc = created["account_id"].as_str().unwrap().to_owned();
    let account = accounts::get_any(&app.store, &acc).await.unwrap().unwrap();
    let mut s = rig.imap(&user).await;
    s.create("Projects").await.expect("CREATE");
    for (folder, raw) in mail {
        s.append(folder, None, None, raw).await.expect("APPEND");
    }
    let _ = s.logout().await;
    let ctx = Ctx {
        rig,
        app,
        user,
        acc,
        account,
        run: mailroom_testkit::token(),
    };
    let r = ctx.pass().await;
    assert_eq!(r.events, 0, "{r:?}");
    Some(ctx)
}

impl Ctx {
    async fn pass(&self) -> SyncReport {
        let r = sync_account_once(&self.app.engine, &self.account)
            .await
            .expect("sync pass");
        assert!(r.failed.is_empty(), "{r:?}");
        r
    }

    async fn events(&self, kind: &str) -> Vec<Value> {
        events::of_type(&self.app.store, &self.app.workspace, kind)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }

    async fn by_message_id(&self, mid: &str) -> Option<MessageRow> {
        let found = index::list_messages(
            &self.app.store,
            &self.app.workspace,
            &MessageFilter {
                account_id: Some(&self.acc),
                message_id: Some(mid),
                ..Default::default()
            },
            None,
            10,
        )
        .await
        .unwrap()
        .pop()?;
        index::get_message(&self.app.store, &self.app.workspace, &found.id)
            .await
            .unwrap()
    }

    async fn folder_id(&self, name: &str) -> String {
        index::get_folder_by_provider_id(&self.app.store, &self.app.workspace, &self.acc, name)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("folder {name}"))
            .id
    }

    /// The flags of the message with `mid` in `folder` on the server (`None`: not there).
    async fn server_flags(&self, folder: &str, mid: &str) -> Option<String> {
        let mut s = self.rig.imap(&self.user).await;
        s.examine(folder).await.expect("EXAMINE");
        let uids = s
            .uid_search(format!("HEADER Message-ID \"{mid}\""))
            .await
            .expect("SEARCH");
        let uid = uids.into_iter().max();
        let out = match uid {
            None => None,
            Some(uid) => {
                let fetches: Vec<_> = s
                    .uid_fetch(uid.to_string(), "FLAGS")
                    .await
                    .expect("FETCH")
                    .try_collect()
                    .await
                    .expect("FETCH stream");
                fetches
                    .iter()
                    .find(|f| f.uid == Some(uid))
                    .map(|f| format!("{:?}", f.flags().collect::<Vec<_>>()))
            }
        };
        let _ = s.logout().await;
        out
    }

    async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.app
            .call(self.app.request(Method::PUT, path).json(body))
            .await
    }
}

async fn read_state_reaches_the_server_and_the_index_once(backend: Backend) {
    let run = mailroom_testkit::token();
    let Some(ctx) = setup(backend, &[("INBOX", message(&run, 1))]).await else {
        return;
    };
    let mid = format!("<{run}.1@example.test>");
    let m = ctx.by_message_id(&mid).await.expect("indexed");
    assert!(!m.read);
    let path = format!("/api/v1/emails/{}", m.id);

    // unread=false: \Seen on the server, read in the index, one mail_read.
    let (s, body) = ctx.put(&path, &json!({"unread": false})).await;
    assert_eq!(
        (s, &body["object"]),
        (200, &json!("EmailUpdated")),
        "{body}"
    );
    assert!(
        ctx.server_flags("INBOX", &mid)
            .await
            .unwrap()
            .contains("Seen")
    );
    assert!(ctx.by_message_id(&mid).await.unwrap().read);
    let read = ctx.events("mail_read").await;
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(read[0]["email_id"], m.id.as_str());
    assert_eq!(read[0]["role"], "inbox");

    // Again, then a sync pass: nothing more is recorded.
    let (s, _) = ctx.put(&path, &json!({"unread": false})).await;
    assert_eq!(s, 200);
    let r = ctx.pass().await;
    assert_eq!((r.events, r.read_changed, r.indexed), (0, 0, 0), "{r:?}");
    assert_eq!(ctx.events("mail_read").await.len(), 1);

    // unread=true, urlencoded (and `unread` wins over `folders`).
    let (s, body) = ctx
        .app
        .call(
            ctx.app
                .request(Method::PUT, &path)
                .form(&[("unread", "true"), ("folders", "Projects")]),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert!(
        !ctx.server_flags("INBOX", &mid)
            .await
            .unwrap()
            .contains("Seen")
    );
    let now = ctx.by_message_id(&mid).await.unwrap();
    assert!(!now.read);
    assert_eq!(now.folders.len(), 1, "not moved: unread wins");
    assert_eq!(
        ctx.events("mail_read").await.len(),
        1,
        "unread is not announced"
    );

    // Read again, multipart, by provider id + account_id: a new change, one more event.
    let by_provider = format!(
        "/api/v1/emails/{}?account_id={}",
        urlencode(&m.provider_id),
        ctx.acc
    );
    let form = Form::new().text("unread", "false");
    let (s, body) = ctx
        .app
        .call(ctx.app.request(Method::PUT, &by_provider).multipart(form))
        .await;
    assert_eq!(s, 200, "{body}");
    assert!(
        ctx.server_flags("INBOX", &mid)
            .await
            .unwrap()
            .contains("Seen")
    );
    assert_eq!(ctx.events("mail_read").await.len(), 2);
    let r = ctx.pass().await;
    assert_eq!(r.events, 0, "{r:?}");
    assert_eq!(ctx.events("mail_read").await.len(), 2);

    // The SDK's broken body: 400 saying how to send it.
    let resp = ctx
        .app
        .call(
            ctx.app
                .request(Method::PUT, &path)
                .header("content-type", "text/plain;charset=UTF-8")
                .body("[object Object]"),
        )
        .await;
    assert_error(&resp, 400, "invalid_parameters");
    let detail = resp.1["detail"].as_str().unwrap();
    assert!(
        detail.contains("application/json") && detail.contains("unread"),
        "{detail}"
    );

    // Several folders, an unknown folder, nothing asked, unknown ids.
    let resp = ctx
        .put(&path, &json!({"folders": ["Projects", "Archive"]}))
        .await;
    assert_error(&resp, 400, "invalid_parameters");
    assert!(resp.1["detail"].as_str().unwrap().contains("exactly one"));
    let resp = ctx.put(&path, &json!({"folders": ["Nowhere"]})).await;
    assert_error(&resp, 400, "invalid_parameters");
    assert!(resp.1["detail"].as_str().unwrap().contains("Nowhere"));
    assert_error(&ctx.put(&path, &json!({})).await, 400, "missing_parameters");
    assert_error(
        &ctx.put(
            "/api/v1/emails/AAAAAAAAAAAAAAAAAAAAAA",
            &json!({"unread": true}),
        )
        .await,
        404,
        "resource_not_found",
    );
    let unknown = format!("/api/v1/emails/1:999@INBOX?account_id={}", ctx.acc);
    assert_error(
        &ctx.put(&unknown, &json!({"unread": true})).await,
        404,
        "resource_not_found",
    );
    let _ = ctx.run;
}
both_backends!(read_state_reaches_the_server_and_the_index_once);

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn moves_and_deletes_reach_the_server_and_the_index_once(backend: Backend) {
    let run = mailroom_testkit::token();
    let Some(ctx) = setup(
        backend,
        &[("INBOX", message(&run, 1)), ("INBOX", message(&run, 2))],
    )
    .await
    else {
        return;
    };
    let mid1 = format!("<{run}.1@example.test>");
    let mid2 = format!("<{run}.2@example.test>");
    let first = ctx.by_message_id(&mid1).await.expect("indexed");
    let path = format!("/api/v1/emails/{}", first.id);

    // Move to Projects: on the server, in the index under its new UID, one mail_moved.
    let (s, body) = ctx.put(&path, &json!({"folders": ["Projects"]})).await;
    assert_eq!(
        (s, &body["object"]),
        (200, &json!("EmailUpdated")),
        "{body}"
    );
    assert!(ctx.server_flags("INBOX", &mid1).await.is_none());
    assert!(ctx.server_flags("Projects", &mid1).await.is_some());
    let moved = ctx.by_message_id(&mid1).await.unwrap();
    let projects = ctx.folder_id("Projects").await;
    assert_eq!(moved.id, first.id, "the same email");
    assert_eq!(moved.folders.len(), 1, "{:?}", moved.folders);
    assert_eq!(moved.folders[0].folder_id, projects);
    assert!(moved.folders[0].uid.is_some(), "linked under its new UID");
    let events = ctx.events("mail_moved").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["folder"], "Projects");
    assert_eq!(events[0]["from_folder"], "INBOX");

    // A sync pass sees nothing new; the same move again changes nothing.
    let r = ctx.pass().await;
    assert_eq!(
        (r.indexed, r.linked, r.removed, r.deleted, r.events),
        (0, 0, 0, 0, 0),
        "{r:?}"
    );
    let (s, _) = ctx.put(&path, &json!({"folders": ["Projects"]})).await;
    assert_eq!(s, 200);
    assert_eq!(ctx.events("mail_moved").await.len(), 1);
    assert!(ctx.events("mail_received").await.is_empty());

    // DELETE: to the Trash, on the server and in the index; one mail_deleted.
    let second = ctx.by_message_id(&mid2).await.expect("indexed");
    let del = format!("/api/v1/emails/{}", second.id);
    let (s, body) = ctx.app.delete(&del).await;
    assert_eq!(
        (s, &body["object"]),
        (200, &json!("EmailDeleted")),
        "{body}"
    );
    assert!(ctx.server_flags("INBOX", &mid2).await.is_none());
    assert!(ctx.server_flags("Trash", &mid2).await.is_some());
    let trashed = ctx.by_message_id(&mid2).await.expect("still indexed");
    assert_eq!(trashed.folders.len(), 1);
    assert_eq!(trashed.folders[0].folder_id, ctx.folder_id("Trash").await);
    assert_eq!(ctx.events("mail_deleted").await.len(), 1);
    let r = ctx.pass().await;
    assert_eq!((r.indexed, r.removed, r.events), (0, 0, 0), "{r:?}");

    // DELETE of what is in the Trash: expunged, gone from the index.
    let (s, _) = ctx.app.delete(&del).await;
    assert_eq!(s, 200);
    assert!(ctx.server_flags("Trash", &mid2).await.is_none());
    assert!(ctx.by_message_id(&mid2).await.is_none());
    assert_eq!(ctx.events("mail_deleted").await.len(), 2);
    let r = ctx.pass().await;
    assert_eq!(
        (r.indexed, r.removed, r.deleted, r.events),
        (0, 0, 0, 0),
        "{r:?}"
    );

    // Gone: 404.
    assert_error(&ctx.app.delete(&del).await, 404, "resource_not_found");
    assert_error(
        &ctx.app
            .delete("/api/v1/emails/AAAAAAAAAAAAAAAAAAAAAA")
            .await,
        404,
        "resource_not_found",
    );
}
both_backends!(moves_and_deletes_reach_the_server_and_the_index_once);

fn binary() -> Vec<u8> {
    (0..=255u8).cycle().take(1000).collect()
}

async fn attachments_come_back_byte_for_byte(backend: Backend) {
    use base64::Engine as _;
    let run = mailroom_testkit::token();
    let encoded = base64::engine::general_purpose::STANDARD.encode(binary());
    let wrapped: Vec<&str> = encoded
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let raw = format!(
        "From: s@example.test\r\nTo: r@example.test\r\nSubject: with a file\r\n\
         Message-ID: <{run}.a@example.test>\r\nDate: Tue, 1 Dec 2026 12:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee the file\r\n\
         --b1\r\nContent-Type: application/x-mailroom-test; name=\"donnees.bin\"\r\n\
         Content-Disposition: attachment; filename*=UTF-8''donn%C3%A9es.bin\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--b1--\r\n",
        wrapped.join("\r\n")
    );
    let Some(ctx) = setup(backend, &[("INBOX", raw.into_bytes())]).await else {
        return;
    };
    let m = ctx
        .by_message_id(&format!("<{run}.a@example.test>"))
        .await
        .expect("indexed");
    assert_eq!(m.attachments.len(), 1, "{:?}", m.attachments);
    let aid = &m.attachments[0].id;
    for path in [
        format!("/api/v1/emails/{}/attachments/{aid}", m.id),
        format!(
            "/api/v1/emails/{}/attachments/{aid}?account_id={}",
            urlencode(&m.provider_id),
            ctx.acc
        ),
    ] {
        let resp = ctx
            .app
            .request(Method::GET, &path)
            .send()
            .await
            .expect("GET");
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        let header = |h: &str| {
            resp.headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        assert_eq!(header("content-type"), "application/x-mailroom-test");
        let disposition = header("content-disposition");
        assert!(
            disposition.starts_with("attachment;")
                && disposition.contains("filename*=UTF-8''donn%C3%A9es.bin"),
            "{disposition}"
        );
        assert_eq!(resp.bytes().await.unwrap().to_vec(), binary());
    }
    assert_error(
        &ctx.app
            .get(&format!("/api/v1/emails/{}/attachments/9", m.id))
            .await,
        404,
        "resource_not_found",
    );
    assert_error(
        &ctx.app
            .get("/api/v1/emails/AAAAAAAAAAAAAAAAAAAAAA/attachments/2")
            .await,
        404,
        "resource_not_found",
    );
}
both_backends!(attachments_come_back_byte_for_byte);

/// Bytes that do not repeat within a piece, so a piece served twice or skipped shows.
fn large_binary(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// `latin1` as quoted-printable lines of at most 76 characters (soft breaks), CRLF-ended.
fn quoted_printable(latin1: &[u8]) -> String {
    let mut out = String::new();
    let mut line = 0;
    for &b in latin1 {
        let token = if b == b'=' || !(32..127).contains(&b) {
            format!("={b:02X}")
        } else {
            (b as char).to_string()
        };
        if line + token.len() > 75 {
            out.push_str("=\r\n");
            line = 0;
        }
        line += token.len();
        out.push_str(&token);
    }
    out.push_str("\r\n");
    out
}

/// An attachment several partial fetches long comes back whole and in order, through fetches
/// of one piece each (never the whole part), a quoted-printable Latin-1 text part comes back
/// as UTF-8 however the pieces cut it, and downloads dropped half-way give their IMAP session
/// back (the account's budget is two sessions: leaked ones would stall the last download).
async fn large_attachments_are_streamed_in_partial_fetches(backend: Backend) {
    use base64::Engine as _;
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let proxy = mailroom_testkit::imap_proxy::ImapProxy::start(&rig).await;
    let run = mailroom_testkit::token();
    let file = large_binary(700_000);
    let encoded = base64::engine::general_purpose::STANDARD.encode(&file);
    let wrapped: Vec<&str> = encoded
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let text = "caf\u{e9} cr\u{e8}me br\u{fb}l\u{e9}e = dessert\n".repeat(10_000);
    let latin1: Vec<u8> = text.chars().map(|c| c as u32 as u8).collect();
    let raw = format!(
        "From: s@example.test\r\nTo: r@example.test\r\nSubject: large files\r\n\
         Message-ID: <{run}.large@example.test>\r\nDate: Tue, 1 Dec 2026 12:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee the files\r\n\
         --b1\r\nContent-Type: application/octet-stream; name=\"big.bin\"\r\n\
         Content-Disposition: attachment; filename=\"big.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n\
         --b1\r\nContent-Type: text/plain; charset=iso-8859-1; name=\"menu.txt\"\r\n\
         Content-Disposition: attachment; filename=\"menu.txt\"\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n{}--b1--\r\n",
        wrapped.join("\r\n"),
        quoted_printable(&latin1),
    );
    let Some(ctx) = setup_linked(rig, backend, &[("INBOX", raw.into_bytes())], |_, user| {
        proxy.account_body(user)
    })
    .await
    else {
        return;
    };
    let m = ctx
        .by_message_id(&format!("<{run}.large@example.test>"))
        .await
        .expect("indexed");
    let id_of = |name: &str| {
        let a = m.attachments.iter().find(|a| a.name == name);
        a.unwrap_or_else(|| panic!("{name} in {:?}", m.attachments))
            .id
            .clone()
    };
    let (big, menu) = (id_of("big.bin"), id_of("menu.txt"));
    let download = |aid: String| {
        let path = format!("/api/v1/emails/{}/attachments/{aid}", m.id);
        ctx.app.request(Method::GET, &path).send()
    };

    let before = proxy.fetches().len();
    let resp = download(big.clone()).await.expect("GET");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.content_length(),
        None,
        "streamed, so no length up front"
    );
    let got = resp.bytes().await.unwrap();
    assert!(
        got.as_ref() == file.as_slice(),
        "{} bytes of {}",
        got.len(),
        file.len()
    );
    let part_fetches: Vec<String> = proxy.fetches()[before..]
        .iter()
        .filter(|f| f.contains("BODY.PEEK[2"))
        .cloned()
        .collect();
    let pieces = part_fetches
        .iter()
        .filter(|f| f.contains("BODY.PEEK[2]<"))
        .count();
    assert!(
        pieces >= encoded.len().div_ceil(256 * 1024),
        "{part_fetches:#?}"
    );
    assert!(
        part_fetches
            .iter()
            .all(|f| !f.contains("BODY.PEEK[2])") && !f.contains("BODY.PEEK[2] ")),
        "the part was fetched whole: {part_fetches:#?}"
    );

    let resp = download(menu).await.expect("GET");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/plain; charset=utf-8"
    );
    assert!(
        resp.text().await.unwrap() == text,
        "the Latin-1 text as UTF-8"
    );

    for _ in 0..3 {
        let mut resp = download(big.clone()).await.expect("GET");
        assert_eq!(resp.status().as_u16(), 200);
        let first = resp.chunk().await.expect("a first piece");
        assert!(first.is_some_and(|c| !c.is_empty()));
        drop(resp);
    }
    let again = wait::until("a download after dropped ones", DEADLINE, || async {
        let resp = download(big.clone()).await.ok()?;
        (resp.status() == 200).then_some(resp.bytes().await.ok()?)
    })
    .await;
    assert!(again.as_ref() == file.as_slice());
}
both_backends!(large_attachments_are_streamed_in_partial_fetches);

async fn drafts_are_filed_then_sent_by_draft_id(backend: Backend) {
    let Some(ctx) = setup(backend, &[]).await else {
        return;
    };
    let rcpt = ctx.rig.create_user();
    let subject = format!("draft {}", ctx.run);
    let form = Form::new()
        .text("account_id", ctx.acc.clone())
        .text("to", json!([{"identifier": rcpt.address}]).to_string())
        .text("subject", subject.clone())
        .text("body", "<p>Written, not sent yet</p>")
        .part(
            "attachments",
            Part::bytes(binary())
                .file_name("blob.bin")
                .mime_str("application/octet-stream")
                .unwrap(),
        );
    let (s, body) = ctx
        .app
        .call(
            ctx.app
                .request(Method::POST, "/api/v1/drafts")
                .multipart(form),
        )
        .await;
    assert_eq!(
        (s, &body["object"]),
        (200, &json!("DraftCreated")),
        "{body}"
    );
    let draft_id = body["draft_id"].as_str().unwrap().to_owned();

    // In Drafts on the server with \Draft, and in the index under the draft id.
    let drafts = ctx.rig.fetch_all(&ctx.user, "Drafts").await;
    let filed = drafts
        .iter()
        .find(|m| String::from_utf8_lossy(m).contains(&subject))
        .expect("the draft is in Drafts");
    let mid = mailroom_mime::parse_mail(filed)
        .and_then(|p| p.message_id)
        .unwrap();
    assert!(
        ctx.server_flags("Drafts", &mid)
            .await
            .unwrap()
            .contains("Draft")
    );
    let row = index::get_message(&ctx.app.store, &ctx.app.workspace, &draft_id)
        .await
        .unwrap()
        .expect("the draft is indexed");
    assert_eq!(row.subject, subject);
    assert_eq!(row.folders[0].folder_id, ctx.folder_id("Drafts").await);
    let r = ctx.pass().await;
    assert_eq!((r.indexed, r.events), (0, 0), "{r:?}");

    // Unknown draft: 404.
    let resp = ctx
        .app
        .post_json(
            "/api/v1/emails",
            &json!({"account_id": ctx.acc, "draft_id": "AAAAAAAAAAAAAAAAAAAAAA"}),
        )
        .await;
    assert_error(&resp, 404, "resource_not_found");

    // Send it: delivered with its subject and file, and gone from Drafts.
    let (s, sent) = ctx
        .app
        .post_json(
            "/api/v1/emails",
            &json!({"account_id": ctx.acc, "draft_id": draft_id}),
        )
        .await;
    assert_eq!(s, 201, "{sent}");
    let wanted = subject.clone();
    let delivered = wait::until("the draft in the recipient's INBOX", DEADLINE, || {
        let wanted = wanted.clone();
        let rig = &ctx.rig;
        let rcpt = &rcpt;
        async move {
            rig.fetch_all(rcpt, "INBOX")
                .await
                .into_iter()
                .find(|m| String::from_utf8_lossy(m).contains(&wanted))
        }
    })
    .await;
    let parsed = mailroom_mime::parse_mail(&delivered).unwrap();
    assert_eq!(parsed.subject.as_deref(), Some(subject.as_str()));
    assert!(parsed.html.unwrap().contains("Written, not sent yet"));
    assert_eq!(parsed.attachments.len(), 1);
    let part = &parsed.attachments[0].part_id;
    assert_eq!(
        mailroom_mime::attachment_bytes(&delivered, part).unwrap().2,
        binary()
    );
    assert!(
        !ctx.rig
            .fetch_all(&ctx.user, "Drafts")
            .await
            .iter()
            .any(|m| String::from_utf8_lossy(m).contains(&subject)),
        "the draft is removed from Drafts"
    );
    assert!(
        index::get_message(&ctx.app.store, &ctx.app.workspace, &draft_id)
            .await
            .unwrap()
            .is_none(),
        "and from the index"
    );
}
both_backends!(drafts_are_filed_then_sent_by_draft_id);
