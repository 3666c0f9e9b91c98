//! Logging: human text or JSON lines on stderr (stdout is kept for command output such as
//! `keys create`). Secrets never reach a log field.

use std::io::IsTerminal as _;

use tracing::Level;
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, fmt};

/// Protocol libraries log the wire at DEBUG/TRACE, and the wire carries passwords (IMAP
/// `LOGIN`, SMTP `AUTH PLAIN`). Whatever the operator's filter says, their events below INFO
/// are dropped.
fn is_wire_log(meta: &tracing::Metadata<'_>) -> bool {
    let t = meta.target();
    (t.starts_with("async_imap") || t.starts_with("imap_proto") || t.starts_with("lettre"))
        && *meta.level() > Level::INFO
}

pub fn init(filter: &str, json: bool) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let no_wire = filter_fn(|meta| !is_wire_log(meta));
    let ansi = std::io::stderr().is_terminal();
    let layer = if json {
        fmt::layer().json().with_writer(std::io::stderr).boxed()
    } else {
        fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .boxed()
    };
    // A second init (tests building several apps) is harmless; keep the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(no_wire).with_filter(filter))
        .try_init();
}
