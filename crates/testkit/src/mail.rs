//! The local Dovecot + Postfix started by `scripts/test` (see `docs/testing.md`).
//! Each test makes its own mail users, so tests never share a mailbox.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::TryStreamExt as _;
use secrecy::SecretString;
use serde_json::{Value, json};

use mailroom_core::account::{AccountSettings, AccountType, ImapEncryption, MailSettings, TlsMode};
use mailroom_providers::apps::ProviderApps;
use mailroom_providers::imap_smtp::imap::{self, ImapLogin, ImapSession};
use mailroom_providers::mailbox::ImapLimits;
use mailroom_providers::{Mailbox, NetPolicy, Opening, Providers, Secrets};

#[derive(Debug, Clone)]
pub struct MailRig {
    pub host: String,
    /// IMAP with STARTTLS.
    pub imap_port: u16,
    /// IMAP with implicit TLS.
    pub imaps_port: u16,
    /// Submission with STARTTLS required.
    pub smtp_port: u16,
    /// Submission with implicit TLS.
    pub smtps_port: u16,
    pub users_file: PathBuf,
    pub dovecot_conf: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct MailUser {
    pub address: String,
    pub password: String,
}

fn port(var: &str) -> Option<u16> {
    std::env::var(var).ok()?.parse().ok()
}

/// `user`'s IMAP/SMTP account with `settings` (the rig's, or a proxy's) opened through the
/// seam as account `account_id` at `version`, with the user's password for both.
pub fn open_mail_account(
    providers: &Providers,
    settings: &AccountSettings,
    user: &MailUser,
    account_id: &str,
    version: i64,
) -> Mailbox {
    let pw = || SecretString::from(user.password.clone());
    providers
        .open(Opening {
            account_id,
            version,
            account_type: AccountType::Mail,
            settings,
            secrets: Secrets::Passwords {
                imap: pw(),
                smtp: pw(),
            },
        })
        .expect("an IMAP account opens")
}

impl MailRig {
    /// The rig from the environment, or `None` (skip) when it is absent and not required.
    pub fn from_env() -> Option<Self> {
        let rig = (|| {
            Some(MailRig {
                host: std::env::var("MAILROOM_TEST_MAIL_HOST").ok()?,
                imap_port: port("MAILROOM_TEST_IMAP_PORT")?,
                imaps_port: port("MAILROOM_TEST_IMAPS_PORT")?,
                smtp_port: port("MAILROOM_TEST_SMTP_PORT")?,
                smtps_port: port("MAILROOM_TEST_SMTPS_PORT")?,
                users_file: std::env::var("MAILROOM_TEST_MAIL_USERS").ok()?.into(),
                dovecot_conf: std::env::var("MAILROOM_TEST_DOVECOT_CONF")
                    .ok()
                    .map(Into::into),
            })
        })();
        match rig {
            Some(r) => Some(r),
            None => crate::missing_service("Dovecot/Postfix (run the tests through scripts/test)"),
        }
    }

    /// A new mail user with a random password.
    pub fn create_user(&self) -> MailUser {
        let user = MailUser {
            address: format!("u{}@example.test", crate::token()),
            password: format!("pw-{}", crate::token()),
        };
        self.edit_users(|lines| lines.push(format!("{}:{{PLAIN}}{}", user.address, user.password)));
        user
    }

    /// Changes a user's password on the server (as a user would at their provider).
    pub fn set_password(&self, user: &mut MailUser, new_password: &str) {
        let prefix = format!("{}:", user.address);
        self.edit_users(|lines| {
            for l in lines.iter_mut() {
                if l.starts_with(&prefix) {
                    *l = format!("{prefix}{{PLAIN}}{new_password}");
                }
            }
        });
        user.password = new_password.to_owned();
    }

    /// Rewrites the users file under an exclusive lock (several test processes share it).
    fn edit_users(&self, edit: impl FnOnce(&mut Vec<String>)) {
        let lock_path = self.users_file.with_extension("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .expect("users lock file");
        lock.lock().expect("lock users file");
        let text = std::fs::read_to_string(&self.users_file).unwrap_or_default();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        edit(&mut lines);
        let tmp = self
            .users_file
            .with_extension(format!("tmp-{}", crate::token()));
        {
            let mut f = std::fs::File::create(&tmp).expect("users tmp file");
            for l in &lines {
                writeln!(f, "{l}").expect("write users");
            }
            f.sync_all().expect("sync users");
        }
        std::fs::rename(&tmp, &self.users_file).expect("replace users file");
        lock.unlock().expect("unlock users file");
    }

    /// The `POST /accounts` body for `user` over IMAP STARTTLS and SMTP STARTTLS.
    pub fn account_body(&self, user: &MailUser) -> Value {
        json!({
            "provider": "MAIL",
            "imap_host": self.host,
            "imap_port": self.imap_port,
            "imap_encryption": "starttls",
            "imap_user": user.address,
            "imap_password": user.password,
            "smtp_host": self.host,
            "smtp_port": self.smtp_port,
            "smtp_user": user.address,
            "smtp_password": user.password,
        })
    }

    /// The settings of an IMAP/SMTP account of `user` on the rig (STARTTLS both ways).
    pub fn account_settings(&self, user: &MailUser) -> AccountSettings {
        AccountSettings::Mail(MailSettings {
            imap_host: self.host.clone(),
            imap_port: self.imap_port,
            imap_user: user.address.clone(),
            imap_encryption: ImapEncryption::Starttls,
            smtp_host: self.host.clone(),
            smtp_port: self.smtp_port,
            smtp_user: user.address.clone(),
            smtp_encryption: None,
        })
    }

    /// `user`'s mailbox opened through the seam as account `account_id` at `version`.
    pub fn open_mailbox(
        &self,
        providers: &Providers,
        user: &MailUser,
        account_id: &str,
        version: i64,
    ) -> Mailbox {
        open_mail_account(
            providers,
            &self.account_settings(user),
            user,
            account_id,
            version,
        )
    }

    /// Logs `user` in over IMAPS (certificates are self-signed).
    pub async fn imap(&self, user: &MailUser) -> ImapSession {
        let password = SecretString::from(user.password.clone());
        let login = ImapLogin {
            host: &self.host,
            port: self.imaps_port,
            tls: TlsMode::Implicit,
            user: &user.address,
            password: &password,
        };
        let policy = test_net_policy();
        imap::login(&login, &policy).await.expect("test IMAP login")
    }

    /// Every message in `mailbox` of `user`, raw.
    pub async fn fetch_all(&self, user: &MailUser, mailbox: &str) -> Vec<Vec<u8>> {
        let mut s = self.imap(user).await;
        let status = s.select(mailbox).await.expect("select");
        let mut out = Vec::new();
        if status.exists > 0 {
            let fetches: Vec<_> = s
                .fetch("1:*", "BODY.PEEK[]")
                .await
                .expect("fetch")
                .try_collect()
                .await
                .expect("fetch stream");
            for f in fetches {
                if let Some(body) = f.body() {
                    out.push(body.to_vec());
                }
            }
        }
        let _ = s.logout().await;
        out
    }
}

/// The network policy of tests and benchmarks: loopback allowed, self-signed certificates
/// accepted (the rig's), 10 s to connect.
pub fn test_net_policy() -> NetPolicy {
    NetPolicy {
        allow_private: true,
        tls_insecure_skip_verify: true,
        connect_timeout: Duration::from_secs(10),
    }
}

/// The providers' shared state as tests use it: loopback allowed, self-signed certificates
/// accepted, no OAuth apps.
pub fn test_providers() -> Providers {
    test_providers_with(ImapLimits::default())
}

/// [`test_providers`] with other IMAP limits (sessions per account, logins per host).
pub fn test_providers_with(limits: ImapLimits) -> Providers {
    let net = test_net_policy();
    Providers::with_limits(
        net,
        reqwest::Client::new(),
        std::sync::Arc::new(ProviderApps::default()),
        limits,
    )
}
