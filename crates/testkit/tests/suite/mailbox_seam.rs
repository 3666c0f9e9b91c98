//! The mailbox seam against the real Dovecot and Postfix: an IMAP/SMTP account opened through
//! `Providers::open` sends, files Sent copies and finds reply parents, every IMAP use of the
//! account sharing one connection budget and reusing its logged-in sessions.

use std::time::Duration;

use mailroom_core::MessageId;
use mailroom_providers::mailbox::session_pool::SESSIONS_PER_ACCOUNT;
use mailroom_providers::{Mailbox, Outgoing, Providers};
use mailroom_testkit::{MailRig, MailUser};

fn providers() -> Providers {
    mailroom_testkit::mail::test_providers()
}

fn open(providers: &Providers, rig: &MailRig, user: &MailUser, version: i64) -> Mailbox {
    rig.open_mailbox(providers, user, "acct", version)
}

fn message(from: &str, to: &str, id: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: seam {id}\r\nMessage-ID: <{id}@example.test>\r\n\
         Date: Tue, 1 Dec 2026 12:00:00 +0000\r\n\r\nbody {id}\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn sent_copies_and_parent_lookups_share_the_accounts_imap_sessions() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let user = rig.create_user();
    let providers = providers();
    let mailbox = open(&providers, &rig, &user, 1);
    let run = mailroom_testkit::token();

    // Six concurrent copies, then three concurrent lookups: never more sessions than the
    // budget, so no more logins than that either.
    let ids: Vec<String> = (0..6).map(|i| format!("{run}.{i}")).collect();
    let raws: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| message(&user.address, "x@example.test", id))
        .collect();
    let appends = raws.iter().map(|raw| mailbox.append_sent(raw));
    let results = futures_util::future::join_all(appends).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let wanted = MessageId::parse(&format!("<{run}.0@example.test>")).unwrap();
    let lookups = (0..3).map(|_| mailbox.find_parent(&wanted));
    for found in futures_util::future::join_all(lookups).await {
        let parent = found.expect("lookup").expect("the copy is found in Sent");
        assert_eq!(parent.message_id, wanted.bracketed());
    }
    let logins = providers.imap_pool().logins();
    assert!(
        (1..=SESSIONS_PER_ACCOUNT as u64).contains(&logins),
        "{logins} IMAP logins for 9 concurrent uses"
    );
    assert_eq!(providers.imap_pool().in_use("acct"), 0);

    // One after another: the pooled session is reused, no new login.
    for i in 6..9 {
        let raw = message(&user.address, "x@example.test", &format!("{run}.{i}"));
        mailbox.append_sent(&raw).await.expect("append");
    }
    assert_eq!(
        providers.imap_pool().logins(),
        logins,
        "sessions are reused"
    );
    let sent = rig.fetch_all(&user, "Sent").await;
    let ours = sent
        .iter()
        .filter(|m| String::from_utf8_lossy(m).contains(&format!("seam {run}")))
        .count();
    assert_eq!(ours, 9, "every copy is filed once");

    // A reconnect (new version) replaces pooled sessions: the next use logs in anew.
    let reconnected = open(&providers, &rig, &user, 2);
    reconnected
        .find_parent(&wanted)
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(providers.imap_pool().logins(), logins + 1);
}

#[tokio::test]
async fn an_imap_account_sends_through_the_seam() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let (sender, recipient) = (rig.create_user(), rig.create_user());
    let providers = providers();
    let mailbox = open(&providers, &rig, &sender, 1);
    let id = format!("{}@example.test", mailroom_testkit::token());
    let raw = message(
        &sender.address,
        &recipient.address,
        id.trim_end_matches("@example.test"),
    );
    let delivered = mailbox
        .send(&Outgoing {
            raw: &raw,
            envelope_from: &sender.address,
            recipients: std::slice::from_ref(&recipient.address),
            message_id: &MessageId::parse(&id).unwrap(),
            parent: None,
        })
        .await
        .expect("sent");
    assert_eq!(delivered.provider_id, format!("<{id}>"));
    assert!(delivered.needs_sent_copy, "SMTP servers keep no copy");
    mailroom_testkit::wait::until("delivered", Duration::from_secs(20), || async {
        let inbox = rig.fetch_all(&recipient, "INBOX").await;
        inbox
            .iter()
            .any(|m| String::from_utf8_lossy(m).contains(&id))
            .then_some(())
    })
    .await;
}
