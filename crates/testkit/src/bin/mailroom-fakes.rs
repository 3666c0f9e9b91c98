//! `mailroom-fakes`: the fake Google (OAuth + Gmail API) and fake Microsoft (identity platform
//! + Graph) as one standalone process, for trying hosted auth and sending by hand.
//!
//!     mailroom-fakes [--mailroom-url URL] [--google-port N] [--microsoft-port N]
//!
//! It prints the `MAILROOM_*` variables that point mailroom at it (eval them in the shell that
//! runs `mailroom serve`), then serves until interrupted.

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
            "usage: mailroom-fakes [--mailroom-url URL] [--google-port N] [--microsoft-port N]"
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
