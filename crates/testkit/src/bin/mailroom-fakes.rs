//! `mailroom-fakes`: the fake Google (OAuth + Gmail API) and fake Microsoft (identity platform
//! + Graph) as one standalone process, for trying hosted auth and sending by hand.
//!
//!     mailroom-fakes [--mailroom-url URL] [--google-port N] [--microsoft-port N] [--seed-mail]
//!
//! It prints the `MAILROOM_*` variables that point mailroom at it (eval them in the shell that
//! runs `mailroom serve`), then serves until interrupted. With `--seed-mail` (the SDK
//! compatibility suite's read calls on a Gmail account) the Gmail mailbox starts with mail in
//! it (two messages in the INBOX, one with an attachment, and one sent from Gmail's own apps),
//! and a grant of `gmail.modify` is issued and printed as `COMPAT_GOOGLE_ACCESS_TOKEN` and
//! `COMPAT_GOOGLE_REFRESH_TOKEN` (what `POST /accounts` takes for a `GOOGLE_OAUTH` account);
//! the Outlook mailbox gets the same kind of mail (Inbox and Sent Items) and its grant
//! (`Mail.ReadWrite`, `Mail.Send`) is printed as `COMPAT_MICROSOFT_ACCESS_TOKEN` and
//! `COMPAT_MICROSOFT_REFRESH_TOKEN` (for an `OUTLOOK` account).

use std::net::SocketAddr;

use mailroom_testkit::fakes::google::{FakeGoogle, GoogleConfig};
use mailroom_testkit::fakes::microsoft::{FakeMicrosoft, MicrosoftConfig};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!(
            "usage: mailroom-fakes [--mailroom-url URL] [--google-port N] [--microsoft-port N] [--seed-mail]"
        );
        return;
    }
    let mailroom = arg(&args, "--mailroom-url").unwrap_or_else(|| "http://127.0.0.1:8080/".into());
    let mailroom = url::Url::parse(&mailroom).expect("--mailroom-url must be an absolute URL");
    let port = |name: &str| -> u16 {
        arg(&args, name)
            .map(|p| p.parse().expect("a port number"))
            .unwrap_or(0)
    };
    let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));

    let google_cfg = GoogleConfig {
        redirect_uris: vec![
            mailroom
                .join("oauth/google/callback")
                .expect("valid")
                .to_string(),
        ],
        consent_ui: true,
        ..GoogleConfig::default()
    };
    let google = FakeGoogle::start_on(at(port("--google-port")), google_cfg.clone())
        .await
        .expect("bind the fake Google");
    let ms_cfg = MicrosoftConfig::default();
    let microsoft = FakeMicrosoft::start_on(at(port("--microsoft-port")), ms_cfg.clone())
        .await
        .expect("bind the fake Microsoft");

    println!("export MAILROOM_PUBLIC_URL={mailroom}");
    println!("export MAILROOM_GOOGLE_CLIENT_ID={}", google_cfg.client_id);
    println!(
        "export MAILROOM_GOOGLE_CLIENT_SECRET={}",
        google_cfg.client_secret
    );
    println!("export MAILROOM_GOOGLE_AUTH_URL={}", google.auth_url());
    println!("export MAILROOM_GOOGLE_TOKEN_URL={}", google.token_url());
    println!("export MAILROOM_GMAIL_API_URL={}", google.base_url());
    println!("export MAILROOM_MICROSOFT_CLIENT_ID={}", ms_cfg.client_id);
    println!(
        "export MAILROOM_MICROSOFT_CLIENT_SECRET={}",
        ms_cfg.client_secret
    );
    println!(
        "export MAILROOM_MICROSOFT_AUTH_URL={}",
        microsoft.auth_url()
    );
    println!(
        "export MAILROOM_MICROSOFT_TOKEN_URL={}",
        microsoft.token_url()
    );
    if args.iter().any(|a| a == "--seed-mail") {
        seed_gmail(&google);
        let t = google.issue_tokens(&["https://www.googleapis.com/auth/gmail.modify"]);
        println!("export COMPAT_GOOGLE_ACCESS_TOKEN={}", t.access_token);
        println!("export COMPAT_GOOGLE_REFRESH_TOKEN={}", t.refresh_token);
        seed_outlook(&microsoft);
        let t = microsoft.mint_tokens(&[
            "offline_access",
            "https://graph.microsoft.com/User.Read",
            "https://graph.microsoft.com/Mail.ReadWrite",
            "https://graph.microsoft.com/Mail.Send",
        ]);
        println!("export COMPAT_MICROSOFT_ACCESS_TOKEN={}", t.access_token);
        println!("export COMPAT_MICROSOFT_REFRESH_TOKEN={}", t.refresh_token);
    }
    // Last: whoever reads these lines waits for this one.
    println!("export MAILROOM_GRAPH_API_URL={}", microsoft.graph_url());
    eprintln!(
        "mailroom-fakes: Google at {} ({}), Microsoft at {} ({}); Ctrl-C to stop",
        google.base_url(),
        google_cfg.email,
        microsoft.base_url(),
        ms_cfg.mail
    );
    let _ = tokio::signal::ctrl_c().await;
}

const DAY: std::time::Duration = std::time::Duration::from_secs(86_400);
const PLAIN: &str =
    "Content-Type: text/plain; charset=utf-8\r\n\r\nHello from the compat suite.\r\n";
const WITH_FILE: &str = "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
    Content-Type: text/plain; charset=utf-8\r\n\r\nThe report is attached.\r\n--b\r\n\
    Content-Type: application/pdf; name=\"report.pdf\"\r\n\
    Content-Disposition: attachment; filename=\"report.pdf\"\r\n\
    Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcOkw7zDtsOfCg==\r\n--b--\r\n";

/// Message `n` of the `provider` seed (`gmail`, `outlook`), with `extra` as its body part.
fn seed_mail(provider: &str, n: u32, from: &str, to: &str, subject: &str, extra: &str) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\
         Message-ID: <compat-{provider}-{n}@example.test>\r\nDate: Tue, 1 Dec 2026 12:0{n}:00 +0000\r\n\
         MIME-Version: 1.0\r\n{extra}"
    )
    .into_bytes()
}

/// Mail already in the Gmail mailbox before the account is linked (received in the last days,
/// inside the default sync window).
fn seed_gmail(google: &FakeGoogle) {
    let me = google.config().email;
    let (day, plain, with_file) = (DAY, PLAIN, WITH_FILE);
    let mail = |n, from: &str, to: &str, subject: &str, extra: &str| {
        seed_mail("gmail", n, from, to, subject, extra)
    };
    google.insert_message(
        &mail(1, "ann@example.test", &me, "compat gmail one", plain),
        &["INBOX", "UNREAD"],
        day,
    );
    google.insert_message(
        &mail(2, "bob@example.test", &me, "compat gmail report", with_file),
        &["INBOX"],
        day / 2,
    );
    google.insert_message(
        &mail(3, &me, "carol@example.test", "compat gmail sent", plain),
        &["SENT"],
        day / 4,
    );
}

/// The same mail in the Outlook mailbox: "compat outlook one" (Inbox, unread), "compat outlook
/// report" (Inbox, read, a PDF attached), "compat outlook sent" (Sent Items).
fn seed_outlook(microsoft: &FakeMicrosoft) {
    let me = microsoft.config().mail;
    let mail = |n, from: &str, to: &str, subject: &str, extra: &str| {
        seed_mail("outlook", n, from, to, subject, extra)
    };
    let one = microsoft.insert_message(
        &mail(1, "ann@example.test", &me, "compat outlook one", PLAIN),
        "inbox",
        DAY,
    );
    microsoft.set_read(&one.immutable_id, false);
    let report = microsoft.insert_message(
        &mail(
            2,
            "bob@example.test",
            &me,
            "compat outlook report",
            WITH_FILE,
        ),
        "inbox",
        DAY / 2,
    );
    microsoft.set_read(&report.immutable_id, true);
    microsoft.insert_message(
        &mail(3, &me, "carol@example.test", "compat outlook sent", PLAIN),
        "sentitems",
        DAY / 4,
    );
}
