//! A webhook receiver on 127.0.0.1 for tests: records every request (headers, exact body) and
//! answers as planned (a status, or a hang past the sender's timeout), then 200. Signatures
//! are checked by [`verify_signatures`] with the Standard Webhooks reference library, not with
//! mailroom's code.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse as _;
use serde_json::Value;

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Status(u16),
    /// Answer 200 only after this long (past the sender's attempt timeout).
    Hang(Duration),
    /// 307 to this path of the receiver (a sender following it would POST there).
    Redirect(&'static str),
}

/// A request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// Lowercase names.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// `webhook-id`.
    pub fn id(&self) -> &str {
        self.header("webhook-id").unwrap_or("")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn form(&self) -> BTreeMap<String, String> {
        url::form_urlencoded::parse(&self.body)
            .into_owned()
            .collect()
    }
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    plan: VecDeque<Reply>,
    /// Requests being answered now, and the most there ever were at once.
    in_flight: usize,
    max_in_flight: usize,
}

#[derive(Clone)]
pub struct WebhookReceiver {
    inner: Arc<Mutex<Inner>>,
    pub port: u16,
    _server: Arc<tokio::task::JoinHandle<()>>,
}

impl WebhookReceiver {
    pub async fn start() -> WebhookReceiver {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new().fallback(receive).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        WebhookReceiver {
            inner,
            port,
            _server: Arc::new(server),
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The next requests get these answers, in order; later ones 200.
    pub fn plan(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.lock().unwrap().plan.extend(replies);
    }

    /// Requests being answered now.
    pub fn in_flight(&self) -> usize {
        self.inner.lock().unwrap().in_flight
    }

    /// The most requests that were ever being answered at once.
    pub fn max_in_flight(&self) -> usize {
        self.inner.lock().unwrap().max_in_flight
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// Waits (with a deadline) until `n` requests arrived; answers them all.
    pub async fn wait_for(&self, n: usize, deadline: Duration) -> Vec<Received> {
        crate::wait::until(&format!("{n} webhook requests"), deadline, || async {
            let r = self.received();
            (r.len() >= n).then_some(r)
        })
        .await
    }

    /// Waits until a request satisfies `pred`; answers every request so far.
    pub async fn wait_until(
        &self,
        what: &str,
        deadline: Duration,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        crate::wait::until(what, deadline, || async {
            let r = self.received();
            pred(&r).then_some(r)
        })
        .await
    }
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let reply = {
        let mut i = inner.lock().unwrap();
        i.received.push(Received {
            path: uri.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_ascii_lowercase(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.to_vec(),
            at: std::time::Instant::now(),
        });
        i.in_flight += 1;
        i.max_in_flight = i.max_in_flight.max(i.in_flight);
        i.plan.pop_front()
    };
    let answer = match reply {
        Some(Reply::Redirect(to)) => {
            let mut r = StatusCode::TEMPORARY_REDIRECT.into_response();
            r.headers_mut().insert(
                axum::http::header::LOCATION,
                axum::http::HeaderValue::from_static(to),
            );
            r
        }
        Some(Reply::Status(s)) => StatusCode::from_u16(s)
            .unwrap_or(StatusCode::OK)
            .into_response(),
        Some(Reply::Hang(d)) => {
            // Simulates a receiver that does not answer in time; not a wait of the test's.
            tokio::time::sleep(d).await;
            StatusCode::OK.into_response()
        }
        None => StatusCode::OK.into_response(),
    };
    inner.lock().unwrap().in_flight -= 1;
    answer
}

/// Verifies every request's Standard Webhooks signature under `secret` with the reference
/// library (`MAILROOM_TEST_WEBHOOK_VERIFIER`, set by `scripts/test`: npm `standardwebhooks`).
/// `None` when the verifier is unavailable (skip; a failure where services are required).
pub fn verify_signatures(secret: &str, requests: &[Received]) -> Option<()> {
    let Some(verifier) = std::env::var_os("MAILROOM_TEST_WEBHOOK_VERIFIER") else {
        return crate::missing_service(
            "the Standard Webhooks verifier (MAILROOM_TEST_WEBHOOK_VERIFIER; run scripts/test)",
        );
    };
    let input = serde_json::json!({
        "secret": secret,
        "requests": requests.iter().map(|r| serde_json::json!({
            "headers": {
                "webhook-id": r.header("webhook-id"),
                "webhook-timestamp": r.header("webhook-timestamp"),
                "webhook-signature": r.header("webhook-signature"),
            },
            "body": String::from_utf8_lossy(&r.body),
        })).collect::<Vec<_>>(),
    });
    let mut child = std::process::Command::new(&verifier)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {verifier:?}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "signatures do not verify with the reference library:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(())
}
