//! The IMAP/SMTP provider against Dovecot and Postfix directly.

use std::time::Duration;

use lettre::transport::smtp::authentication::Mechanism;
use secrecy::SecretString;

use mailroom_core::account::TlsMode;
use mailroom_providers::NetPolicy;
use mailroom_providers::imap_smtp::{imap, smtp};
use mailroom_testkit::MailRig;

fn policy() -> NetPolicy {
    NetPolicy {
        allow_private: true,
        tls_insecure_skip_verify: true,
        connect_timeout: Duration::from_secs(10),
    }
}

#[tokio::test]
async fn smtp_auth_plain_and_login_each_work_on_both_tls_modes() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let user = rig.create_user();
    let pw = SecretString::from(user.password.clone());
    for (port, tls) in [
        (rig.smtp_port, TlsMode::Starttls),
        (rig.smtps_port, TlsMode::Implicit),
    ] {
        for mech in [Mechanism::Plain, Mechanism::Login] {
            let login = smtp::SmtpLogin {
                host: &rig.host,
                port,
                tls,
                user: &user.address,
                password: &pw,
                mechanisms: &[mech],
            };
            smtp::verify(&login, &policy())
                .await
                .unwrap_or_else(|e| panic!("{mech:?} on {port}: {e}"));
            let bad = SecretString::from("wrong".to_owned());
            let login = smtp::SmtpLogin {
                password: &bad,
                ..login
            };
            let e = smtp::verify(&login, &policy()).await.unwrap_err();
            assert!(e.is_auth() && !e.is_transient(), "{mech:?}: {e}");
        }
    }
}

#[tokio::test]
async fn imap_login_errors_are_classified() {
    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let user = rig.create_user();
    let bad = SecretString::from("wrong".to_owned());
    let login = imap::ImapLogin {
        host: &rig.host,
        port: rig.imap_port,
        tls: TlsMode::Starttls,
        user: &user.address,
        password: &bad,
    };
    let e = imap::verify(&login, &policy()).await.unwrap_err();
    assert!(e.is_auth(), "{e}");
    // Implicit TLS spoken to the STARTTLS port fails as a connection problem, not auth.
    let pw = SecretString::from(user.password.clone());
    let login = imap::ImapLogin {
        host: &rig.host,
        port: rig.imap_port,
        tls: TlsMode::Implicit,
        user: &user.address,
        password: &pw,
    };
    let e = imap::verify(&login, &policy()).await.unwrap_err();
    assert!(e.is_transient() && !e.is_auth(), "{e}");
}

#[tokio::test]
async fn smtp_is_guarded_against_private_hosts_and_checks_certificates() {
    // The egress guard refuses before any packet is sent, so no server is needed.
    let pw = SecretString::from("pw".to_owned());
    let login = smtp::SmtpLogin {
        host: "127.0.0.1",
        port: 465,
        tls: TlsMode::Implicit,
        user: "a@example.test",
        password: &pw,
        mechanisms: smtp::PASSWORD_MECHANISMS,
    };
    let strict = NetPolicy {
        allow_private: false,
        ..policy()
    };
    let e = smtp::verify(&login, &strict).await.unwrap_err();
    assert_eq!(
        e.kind,
        mailroom_providers::FailureKind::Rejected(mailroom_core::ErrorKind::InvalidAccount),
        "{e}"
    );
    assert!(!e.is_transient() && e.detail().contains("MAILROOM_MAIL_ALLOW_PRIVATE"));

    let Some(rig) = MailRig::from_env() else {
        return;
    };
    let user = rig.create_user();
    let pw = SecretString::from(user.password.clone());
    let login = smtp::SmtpLogin {
        host: &rig.host,
        port: rig.smtps_port,
        tls: TlsMode::Implicit,
        user: &user.address,
        password: &pw,
        mechanisms: smtp::PASSWORD_MECHANISMS,
    };
    let verifying = NetPolicy {
        tls_insecure_skip_verify: false,
        ..policy()
    };
    let e = smtp::verify(&login, &verifying).await.unwrap_err();
    assert!(!e.is_auth(), "{e}");
    let detail = e.detail().to_ascii_lowercase();
    assert!(
        detail.contains("certificate") || detail.contains("tls"),
        "{detail}"
    );
    // And with verification off (the test setting) the same login works.
    smtp::verify(&login, &policy()).await.unwrap();
}
