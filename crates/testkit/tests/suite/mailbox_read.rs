//! The read side of the mailbox seam against the real Dovecot (CONDSTORE/QRESYNC, SPECIAL-USE):
//! folders with their roles, a folder's state, new messages by UID (parsed, never marked
//! seen), flag changes by modseq and the UID set after an expunge, all over the account's
//! pooled IMAP sessions.

use futures_util::TryStreamExt as _;

use mailroom_core::ErrorKind;
use mailroom_providers::imap_smtp::imap::ImapSession;
use mailroom_providers::mailbox::RemoteRole;
use mailroom_providers::{FailureKind, Mailbox, Providers};
use mailroom_testkit::{MailRig, MailUser};

const RICH: &[u8] = include_bytes!("../../../mime/tests/fixtures/rich.eml");

fn providers() -> Providers {
    mailroom_testkit::mail::test_providers()
}

fn open(providers: &Providers, rig: &MailRig, user: &MailUser) -> Mailbox {
    rig.open_mailbox(providers, user, "reader", 1)
}

fn message(n: u32) -> Vec<u8> {
    format!(
        "From: Sender <s@example.test>\r\nTo: r@example.test\r\nSubject: read {n}\r\n\
         Message-ID: <read.{n}@example.test>\r\nDate: Tue, 1 Dec 2026 12:00:0{n} +0000\r\n\r\n\
         body {n}\r\n"
    )
    .into_bytes()
}

async fn flags_of(s: &mut ImapSession, uid: u32) -> String {
    let fetches: Vec<_> = s
        .uid_fetch(uid.to_string(), "FLAGS")
        .await
        .expect("fetch flags")
        .try_collect()
        .await
        .expect("flags stream");
    let f = fetches
        .iter()
        .find(|f| f.uid == Some(uid))
        .expect("the uid");
    format!("{:?}", f.flags().collect::<Vec<_>>())
}

#[tokio::test]
async fn folders_come_with_their_roles() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let user = rig.create_user();
    let mut s = rig.imap(&user).await;
    s.create("Projects").await.expect("create");
    s.create("Projects/2026").await.expect("create a child");
    let _ = s.logout().await;

    let providers = providers();
    let mailbox = open(&providers, &rig, &user);
    let folders = mailbox.list_folders().await.expect("LIST");
    let role = |name: &str| {
        let f = folders
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name} in {folders:?}"));
        assert!(f.selectable, "{f:?}");
        assert_eq!(f.delimiter.as_deref(), Some("/"));
        f.role
    };
    assert_eq!(role("INBOX"), RemoteRole::Inbox);
    assert_eq!(role("Sent"), RemoteRole::Sent);
    assert_eq!(role("Drafts"), RemoteRole::Drafts);
    assert_eq!(role("Trash"), RemoteRole::Trash);
    assert_eq!(role("Junk"), RemoteRole::Spam);
    assert_eq!(role("Archive"), RemoteRole::Archive);
    assert_eq!(role("Projects"), RemoteRole::Unknown);
    assert_eq!(role("Projects/2026"), RemoteRole::Unknown);
    assert_eq!(providers.imap_pool().in_use("reader"), 0);
}

#[tokio::test]
async fn new_mail_flag_changes_and_expunges_are_read_without_touching_the_mailbox() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let user = rig.create_user();
    let providers = providers();
    let mailbox = open(&providers, &rig, &user);

    let before = mailbox.folder_state("INBOX").await.expect("EXAMINE");
    assert_eq!(before.exists, 0);
    let modseq0 = before.highest_modseq.expect("Dovecot has CONDSTORE");

    let mut s = rig.imap(&user).await;
    for raw in [message(1), RICH.to_vec(), message(3)] {
        s.append("INBOX", None, None, &raw).await.expect("APPEND");
    }
    let after = mailbox.folder_state("INBOX").await.expect("EXAMINE");
    assert_eq!(after.uid_validity, before.uid_validity);
    assert_eq!(after.exists, 3);
    assert_eq!(
        after.uid_next,
        before.uid_next.map(|n| n + 3),
        "{before:?} → {after:?}"
    );
    let modseq1 = after.highest_modseq.expect("modseq");
    assert!(modseq1 > modseq0, "{modseq0} → {modseq1}");
    let uv = after.uid_validity;

    // Oldest first, at most `limit`, from `after_uid` on.
    let first = mailbox.fetch_new("INBOX", uv, 0, 2).await.expect("fetch");
    assert_eq!(first.len(), 2, "{first:?}");
    assert!(first[0].uid < first[1].uid);
    let p0 = first[0].parsed.as_ref().expect("parsed");
    assert_eq!(p0.subject.as_deref(), Some("read 1"));
    assert_eq!(p0.message_id.as_deref(), Some("<read.1@example.test>"));
    assert_eq!(first[0].size as usize, message(1).len());
    assert!(first[0].internal_date_ms.is_some());
    let rich = first[1].parsed.as_ref().expect("parsed");
    assert_eq!(rich.message_id.as_deref(), Some("<rich.1@example.test>"));
    assert_eq!(rich.attachments.len(), 3);
    assert!(first.iter().all(|m| !m.flags.seen && !m.flags.flagged));

    let rest = mailbox
        .fetch_new("INBOX", uv, first[1].uid, 10)
        .await
        .expect("fetch");
    assert_eq!(rest.len(), 1);
    let subject = rest[0].parsed.as_ref().and_then(|p| p.subject.clone());
    assert_eq!(subject.as_deref(), Some("read 3"));
    let last = rest[0].uid;
    let none = mailbox
        .fetch_new("INBOX", uv, last, 10)
        .await
        .expect("fetch");
    assert!(none.is_empty(), "nothing above the last UID: {none:?}");

    // Reading marked nothing seen.
    s.select("INBOX").await.expect("SELECT");
    for uid in [first[0].uid, first[1].uid, last] {
        let flags = flags_of(&mut s, uid).await;
        assert!(!flags.contains("Seen"), "uid {uid}: {flags}");
    }

    // A flag change is seen through CHANGEDSINCE, and only that one.
    let unchanged = mailbox
        .fetch_flags_changed("INBOX", uv, modseq1)
        .await
        .expect("CHANGEDSINCE")
        .expect("CONDSTORE");
    assert!(unchanged.is_empty(), "{unchanged:?}");
    let target = first[1].uid;
    let _: Vec<_> = s
        .uid_store(target.to_string(), "+FLAGS (\\Seen \\Flagged)")
        .await
        .expect("STORE")
        .try_collect()
        .await
        .expect("STORE stream");
    let changed = mailbox
        .fetch_flags_changed("INBOX", uv, modseq1)
        .await
        .expect("CHANGEDSINCE")
        .expect("CONDSTORE");
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0].uid, target);
    assert!(changed[0].flags.seen && changed[0].flags.flagged && !changed[0].flags.deleted);
    assert!(changed[0].modseq.unwrap_or(0) > modseq1);

    // An expunge shows in the UID set.
    assert_eq!(
        mailbox.uids("INBOX", uv).await.expect("UID SEARCH"),
        vec![first[0].uid, target, last]
    );
    let _: Vec<_> = s
        .uid_store(first[0].uid.to_string(), "+FLAGS (\\Deleted)")
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
    assert_eq!(
        mailbox.uids("INBOX", uv).await.expect("UID SEARCH"),
        vec![target, last]
    );
    assert_eq!(
        mailbox.folder_state("INBOX").await.expect("state").exists,
        2
    );

    // A stale UIDVALIDITY is a cursor to rebuild, and costs no session.
    let logins = providers.imap_pool().logins();
    let stale = mailbox
        .fetch_new("INBOX", uv.wrapping_add(1), 0, 10)
        .await
        .expect_err("stale UIDVALIDITY");
    assert!(stale.is_cursor_expired(), "{stale:?}");
    let stale = mailbox
        .uids("INBOX", uv.wrapping_add(1))
        .await
        .expect_err("stale UIDVALIDITY");
    assert!(stale.is_cursor_expired(), "{stale:?}");

    // A folder the server does not have.
    let missing = mailbox
        .folder_state("Nope")
        .await
        .expect_err("no such folder");
    assert_eq!(
        missing.kind,
        FailureKind::Rejected(ErrorKind::ResourceNotFound),
        "{missing:?}"
    );
    assert_eq!(
        providers.imap_pool().logins(),
        logins,
        "sessions were reused"
    );
    assert_eq!(providers.imap_pool().in_use("reader"), 0);
}
