//! SMTP submission (`SmtpPool`), the Sent copy and Message-ID lookup, against the real
//! Postfix + Dovecot, and through `FaultSmtp` for the failures Postfix will not produce.

use std::time::Duration;

use futures_util::TryStreamExt as _;
use secrecy::SecretString;

use mailroom_core::ErrorKind;
use mailroom_core::account::TlsMode;
use mailroom_providers::NetPolicy;
use mailroom_providers::imap_smtp::mailbox;
use mailroom_providers::imap_smtp::send::{SmtpPool, SmtpSent};
use mailroom_providers::imap_smtp::smtp::{PASSWORD_MECHANISMS, SmtpLogin};
use mailroom_providers::{FailureKind, MailError};
use mailroom_testkit::smtp_fault::{FaultSmtp, Mode, Stage};
use mailroom_testkit::{MailRig, MailUser, token, wait};

/// A Message-ID the tests know to be valid.
fn mid(s: &str) -> mailroom_core::MessageId {
    mailroom_core::MessageId::parse(s).expect("a Message-ID")
}

const DEADLINE: Duration = Duration::from_secs(20);

fn policy() -> NetPolicy {
    NetPolicy {
        allow_private: true,
        tls_insecure_skip_verify: true,
        connect_timeout: Duration::from_secs(10),
    }
}

/// A plain RFC 5322 message; returns it with its Message-ID (brackets included).
fn message(from: &str, to: &str, subject: &str, extra: &str) -> (String, Vec<u8>) {
    let id = format!("<{}@mailroom.test>", token());
    let raw = format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {id}\r\n{extra}\
         Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nHello {to}.\r\n.leading dot stays\r\n"
    );
    (id, raw.into_bytes())
}

/// Waits until `user`'s `mailbox` holds the message with `message_id`, and returns it.
async fn delivered(rig: &MailRig, user: &MailUser, mailbox: &str, message_id: &str) -> Vec<u8> {
    let needle = format!("Message-ID: {message_id}");
    wait::until(&format!("{message_id} in {mailbox}"), DEADLINE, || {
        let needle = needle.clone();
        async move {
            rig.fetch_all(user, mailbox)
                .await
                .into_iter()
                .find(|m| m.windows(needle.len()).any(|w| w == needle.as_bytes()))
        }
    })
    .await
}

struct Sender {
    user: MailUser,
    password: SecretString,
}

impl Sender {
    fn new(user: MailUser) -> Self {
        let password = SecretString::from(user.password.clone());
        Self { user, password }
    }

    fn login<'a>(&'a self, host: &'a str, port: u16, tls: TlsMode) -> SmtpLogin<'a> {
        SmtpLogin {
            host,
            port,
            tls,
            user: &self.user.address,
            password: &self.password,
            mechanisms: PASSWORD_MECHANISMS,
        }
    }
}

/// Sends one message through FaultSmtp (STARTTLS) and returns the error.
async fn fault_error(fault: &FaultSmtp, sender: &Sender, to: &str) -> MailError {
    let pool = SmtpPool::default();
    let login = sender.login("127.0.0.1", fault.port(), TlsMode::Starttls);
    let (_, raw) = message(&sender.user.address, to, "fault", "");
    pool.send(
        "acc:1",
        &login,
        &policy(),
        &sender.user.address,
        &[to.to_owned()],
        &raw,
    )
    .await
    .expect_err("the fault must fail the send")
}

/// Sends a message from `sender` to itself over implicit TLS, through `pool` under `key`.
async fn send_to_self(
    rig: &MailRig,
    pool: &SmtpPool,
    key: &str,
    sender: &Sender,
) -> Result<SmtpSent, MailError> {
    let me = &sender.user.address;
    let (_, raw) = message(me, me, key, "");
    let login = sender.login(&rig.host, rig.smtps_port, TlsMode::Implicit);
    pool.send(key, &login, &policy(), me, std::slice::from_ref(me), &raw)
        .await
}

#[tokio::test]
async fn pool_sends_through_postfix_on_both_tls_modes() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let sender = Sender::new(rig.create_user());
    let rcpt = rig.create_user();
    let pool = SmtpPool::default();
    for (port, tls) in [
        (rig.smtp_port, TlsMode::Starttls),
        (rig.smtps_port, TlsMode::Implicit),
    ] {
        let login = sender.login(&rig.host, port, tls);
        // Twice on one key: the second message rides the pooled connection.
        for n in 0..2 {
            let (id, raw) = message(
                &sender.user.address,
                &rcpt.address,
                &format!("{tls:?} {n}"),
                "",
            );
            let key = format!("acc-{tls:?}:v1");
            let sent = pool
                .send(
                    &key,
                    &login,
                    &policy(),
                    &sender.user.address,
                    std::slice::from_ref(&rcpt.address),
                    &raw,
                )
                .await
                .unwrap_or_else(|e| panic!("{tls:?}: {e}"));
            assert!(sent.response.contains("queued"), "{}", sent.response);
            let got = delivered(&rig, &rcpt, "INBOX", &id).await;
            // Postfix and Dovecot only prepend trace headers: the submitted bytes are intact.
            assert!(
                got.ends_with(&raw),
                "{tls:?}: {}",
                String::from_utf8_lossy(&got)
            );
        }
    }
}

#[tokio::test]
async fn a_new_key_version_or_login_replaces_the_transport() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let mut user = rig.create_user();
    let old = Sender::new(user.clone());
    let pool = SmtpPool::default();
    send_to_self(&rig, &pool, "acc:v1", &old).await.unwrap();
    rig.set_password(&mut user, &format!("pw-{}", token()));
    // A new version builds a new transport, which must log in again: the old password fails.
    let e = send_to_self(&rig, &pool, "acc:v2", &old).await.unwrap_err();
    assert!(e.is_auth(), "{e}");
    // The same key with the new password is a new login: replaced again, and it works.
    send_to_self(&rig, &pool, "acc:v2", &Sender::new(user.clone()))
        .await
        .unwrap();
}

#[tokio::test]
async fn wrong_password_is_auth() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let mut sender = Sender::new(rig.create_user());
    sender.password = SecretString::from("wrong".to_owned());
    let pool = SmtpPool::default();
    let (_, raw) = message(&sender.user.address, &sender.user.address, "x", "");
    let login = sender.login(&rig.host, rig.smtps_port, TlsMode::Implicit);
    let e = pool
        .send(
            "acc:1",
            &login,
            &policy(),
            &sender.user.address,
            &[sender.user.address.clone()],
            &raw,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, FailureKind::Auth, "{e}");
    assert!(e.is_auth() && !e.is_transient(), "{e}");
    assert_eq!(e.code.as_deref(), Some("535 5.7.8"), "{e}");
}

#[tokio::test]
async fn fault_4xx_is_transient_and_rates_are_quota() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let sender = Sender::new(rig.create_user());
    let fault = FaultSmtp::start(rig.clone()).await;
    fault.set_mode(Mode::Reply {
        stage: Stage::DataEnd,
        code: 451,
        text: "4.3.0 Error: queue file write error".into(),
    });
    let e = fault_error(&fault, &sender, "bob@example.test").await;
    assert!(matches!(e.kind, FailureKind::Transient { .. }), "{e}");
    assert!(e.is_transient() && !e.is_quota(), "{e}");
    assert_eq!(e.code.as_deref(), Some("451 4.3.0"));
    assert_eq!(fault.received_count(), 1);
    assert_eq!(fault.forwarded_count(), 0);
    // The client's credentials reached the server as given.
    assert_eq!(
        fault.logins().last(),
        Some(&(sender.user.address.clone(), sender.user.password.clone()))
    );

    fault.set_mode(Mode::Reply {
        stage: Stage::Mail,
        code: 450,
        text: "4.7.1 Rate limit exceeded for this sender, try again later".into(),
    });
    let e = fault_error(&fault, &sender, "bob@example.test").await;
    assert!(e.is_transient() && e.is_quota(), "{e}");
}

#[tokio::test]
async fn fault_550_at_rcpt_is_recipient_rejected() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let sender = Sender::new(rig.create_user());
    let fault = FaultSmtp::start(rig.clone()).await;
    let text = "5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in virtual mailbox table";
    fault.set_mode(Mode::Reply {
        stage: Stage::Rcpt,
        code: 550,
        text: text.into(),
    });
    let e = fault_error(&fault, &sender, "nobody@example.test").await;
    assert_eq!(
        e.kind,
        FailureKind::Rejected(ErrorKind::RecipientRejected),
        "{e}"
    );
    assert_eq!(e.code.as_deref(), Some("550 5.1.1"));
    assert_eq!(e.detail(), format!("550 {text}"));
    assert!(!e.is_transient());
    assert_eq!(fault.received_count(), 0, "DATA never started");
}

#[tokio::test]
async fn fault_553_sender_not_owned_is_sender_rejected() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let sender = Sender::new(rig.create_user());
    let fault = FaultSmtp::start(rig.clone()).await;
    // What Postfix's reject_sender_login_mismatch says, at RCPT time.
    let text = format!(
        "5.7.1 <ceo@example.test>: Sender address rejected: not owned by user {}",
        sender.user.address
    );
    fault.set_mode(Mode::Reply {
        stage: Stage::Rcpt,
        code: 553,
        text: text.clone(),
    });
    let e = fault_error(&fault, &sender, "bob@example.test").await;
    assert_eq!(
        e.kind,
        FailureKind::Rejected(ErrorKind::SendAsDenied),
        "{e}"
    );
    assert_eq!(e.code.as_deref(), Some("553 5.7.1"));
    assert!(e.detail().contains("not owned by user"), "{e}");
}

#[tokio::test]
async fn size_limit_fails_before_data_and_smaller_mail_is_forwarded() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let sender = Sender::new(rig.create_user());
    let rcpt = rig.create_user();
    let fault = FaultSmtp::start(rig.clone()).await;
    fault.set_size_limit(2_000);
    let pool = SmtpPool::default();
    let login = sender.login("127.0.0.1", fault.port(), TlsMode::Starttls);
    let padding = format!("X-Padding: {}\r\n", "p".repeat(3_000));
    let (_, big) = message(&sender.user.address, &rcpt.address, "big", &padding);
    let e = pool
        .send(
            "acc:1",
            &login,
            &policy(),
            &sender.user.address,
            std::slice::from_ref(&rcpt.address),
            &big,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, FailureKind::TooLarge, "{e}");
    assert!(e.detail().contains("2000"), "{e}");
    // lettre cannot see SIZE; our own EHLO probe did, so not even MAIL FROM was sent.
    assert_eq!(fault.received_count(), 0);
    assert!(fault.logins().is_empty(), "the probe does not log in");

    // Under the limit, Forward relays to Postfix with the client's login.
    let (id, small) = message(&sender.user.address, &rcpt.address, "small", "");
    let sent = pool
        .send(
            "acc:1",
            &login,
            &policy(),
            &sender.user.address,
            std::slice::from_ref(&rcpt.address),
            &small,
        )
        .await
        .unwrap();
    assert!(sent.response.contains("queued"), "{}", sent.response);
    assert_eq!(fault.forwarded_count(), 1);
    let got = delivered(&rig, &rcpt, "INBOX", &id).await;
    assert!(got.ends_with(&small));

    // A server that advertises nothing but refuses after DATA: 552 maps to TooLarge too.
    fault.set_mode(Mode::Reply {
        stage: Stage::DataEnd,
        code: 552,
        text: "5.3.4 Message size exceeds fixed maximum message size".into(),
    });
    let e = fault_error(&fault, &sender, &rcpt.address).await;
    assert_eq!(e.kind, FailureKind::TooLarge, "{e}");
}

#[tokio::test]
async fn dropped_send_during_stall_forwards_nothing_and_the_pool_recovers() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let sender = Sender::new(rig.create_user());
    let rcpt = rig.create_user();
    let fault = FaultSmtp::start(rig.clone()).await;
    fault.set_mode(Mode::Stall);
    let pool = SmtpPool::default();
    let login = sender.login("127.0.0.1", fault.port(), TlsMode::Starttls);
    let (stalled_id, first) = message(&sender.user.address, &rcpt.address, "stalled", "");
    let to = [rcpt.address.clone()];
    let net = policy();
    {
        let send = pool.send("acc:1", &login, &net, &sender.user.address, &to, &first);
        tokio::pin!(send);
        tokio::select! {
            r = &mut send => panic!("a stalled send cannot finish: {r:?}"),
            _ = fault.wait_for_stalled(1, DEADLINE) => {}
        }
        // The caller's deadline fires: the future is dropped here.
    }
    assert_eq!(fault.forwarded_count(), 0);

    // The same key works at once: the abandoned connection was not recycled into the pool.
    fault.set_mode(Mode::Forward);
    let (id, second) = message(&sender.user.address, &rcpt.address, "after", "");
    let sent = tokio::time::timeout(
        DEADLINE,
        pool.send(
            "acc:1",
            &login,
            &policy(),
            &sender.user.address,
            &to,
            &second,
        ),
    )
    .await
    .expect("the pool must not reuse the stalled connection")
    .unwrap();
    assert!(sent.response.contains("queued"), "{}", sent.response);
    delivered(&rig, &rcpt, "INBOX", &id).await;
    assert_eq!(fault.forwarded_count(), 1);
    let inbox = rig.fetch_all(&rcpt, "INBOX").await;
    assert_eq!(inbox.len(), 1);
    let stalled_header = format!("Message-ID: {stalled_id}");
    assert!(
        !inbox[0]
            .windows(stalled_header.len())
            .any(|w| w == stalled_header.as_bytes())
    );
}

#[tokio::test]
async fn append_sent_stores_the_exact_bytes_seen() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let user = rig.create_user();
    let (_, raw) = message(&user.address, "bob@example.test", "copy", "");
    let mut s = rig.imap(&user).await;
    assert_eq!(mailbox::sent_folder(&mut s).await.unwrap(), "Sent");
    mailbox::append_sent(&mut s, &raw).await.unwrap();
    s.select("Sent").await.unwrap();
    let fetches: Vec<_> = s
        .fetch("1:*", "(FLAGS BODY.PEEK[])")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(fetches.len(), 1);
    assert_eq!(fetches[0].body(), Some(&raw[..]));
    assert!(
        fetches[0]
            .flags()
            .any(|f| f == async_imap::types::Flag::Seen)
    );
    let _ = s.logout().await;
}

#[tokio::test]
async fn find_by_message_id_reads_references_and_subject() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let sender = Sender::new(rig.create_user());
    let rcpt = rig.create_user();
    let extra = "References: <root@mailroom.test>\r\n <mid@mailroom.test>\r\n";
    let (id, raw) = message(
        &sender.user.address,
        &rcpt.address,
        "=?UTF-8?Q?R=C3=A9union_lundi?=",
        extra,
    );
    let login = sender.login(&rig.host, rig.smtps_port, TlsMode::Implicit);
    SmtpPool::default()
        .send(
            "acc:1",
            &login,
            &policy(),
            &sender.user.address,
            std::slice::from_ref(&rcpt.address),
            &raw,
        )
        .await
        .unwrap();
    delivered(&rig, &rcpt, "INBOX", &id).await;

    let mut s = rig.imap(&rcpt).await;
    let parent = mailbox::find_by_message_id(&mut s, &mid(&id))
        .await
        .unwrap()
        .expect("found in INBOX");
    assert_eq!(parent.message_id, id);
    assert_eq!(
        parent.references,
        ["<root@mailroom.test>", "<mid@mailroom.test>"]
    );
    assert_eq!(parent.subject.as_deref(), Some("Réunion lundi"));
    // Without brackets too.
    let bare = id.trim_start_matches('<').trim_end_matches('>');
    let again = mailbox::find_by_message_id(&mut s, &mid(bare))
        .await
        .unwrap();
    assert_eq!(again.as_ref(), Some(&parent));
    // A shorter id is another id.
    let prefix = &id[..id.len() - 6];
    assert_eq!(
        mailbox::find_by_message_id(&mut s, &mid(prefix))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        mailbox::find_by_message_id(&mut s, &mid("<unknown@mailroom.test>"))
            .await
            .unwrap(),
        None
    );
    // Unsafe ids never become a MessageId, so they can never reach the server.
    assert!(mailroom_core::MessageId::parse("<a\"b@x>\r\nA1 LOGOUT").is_none());

    // The sender's own copy is found in Sent.
    let mut own = rig.imap(&sender.user).await;
    mailbox::append_sent(&mut own, &raw).await.unwrap();
    let mine = mailbox::find_by_message_id(&mut own, &mid(&id))
        .await
        .unwrap();
    assert_eq!(mine.map(|p| p.message_id), Some(id));
    let _ = own.logout().await;
    let _ = s.logout().await;
}
