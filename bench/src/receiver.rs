//! A webhook receiver on 127.0.0.1 for the benchmarks: answers every POST 200 at once and
//! keeps when each request arrived, its `webhook-id` and its body. Lighter than the test
//! receiver (`mailroom_testkit::webhook_receiver`): no plan of answers, no header map, and a
//! channel that tells a waiting bench about each request as it lands.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use tokio::sync::mpsc;

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Hit {
    pub at: Instant,
    pub id: String,
    pub body: Bytes,
}

#[derive(Default)]
struct Inner {
    hits: Vec<Hit>,
    tap: Option<mpsc::UnboundedSender<Hit>>,
}

#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Mutex<Inner>>,
    pub port: u16,
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Self> {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new().fallback(receive).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver { inner, port })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request from now on is also sent to the returned channel.
    pub fn tap(&self) -> mpsc::UnboundedReceiver<Hit> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner.lock().expect("not poisoned").tap = Some(tx);
        rx
    }

    /// The requests so far, and forgets them.
    pub fn take(&self) -> Vec<Hit> {
        std::mem::take(&mut self.inner.lock().expect("not poisoned").hits)
    }

    pub fn count(&self) -> usize {
        self.inner.lock().expect("not poisoned").hits.len()
    }
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let hit = Hit {
        at: Instant::now(),
        id: headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body,
    };
    let mut i = inner.lock().expect("not poisoned");
    if let Some(tap) = &i.tap {
        let _ = tap.send(hit.clone());
    }
    i.hits.push(hit);
    StatusCode::OK
}
