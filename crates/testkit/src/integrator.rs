//! A stand-in for the integrator's web app: the success/failure redirect targets and the
//! `notify_url` receiver of hosted auth. It records what it receives; `fail_next_notifies`
//! makes the receiver answer 500 (to prove mailroom retries).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};

#[derive(Default)]
struct Seen {
    notifies: Vec<serde_json::Value>,
    redirects: Vec<(String, Vec<(String, String)>)>,
    fail_notifies: usize,
    notify_attempts: usize,
}

#[derive(Clone)]
pub struct Integrator {
    seen: Arc<Mutex<Seen>>,
    pub base_url: String,
    _server: Arc<tokio::task::JoinHandle<()>>,
}

impl Integrator {
    pub async fn start() -> Integrator {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let app = Router::new()
            .route("/notify", post(notify))
            .route("/success", get(|s, q| landing(s, q, "success")))
            .route("/failure", get(|s, q| landing(s, q, "failure")))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Integrator {
            seen,
            base_url: format!("http://{addr}"),
            _server: Arc::new(server),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// The next `n` notify calls answer 500.
    pub fn fail_next_notifies(&self, n: usize) {
        self.seen.lock().expect("lock").fail_notifies = n;
    }

    pub fn notify_attempts(&self) -> usize {
        self.seen.lock().expect("lock").notify_attempts
    }

    /// Waits (with a deadline) for the `n`th successful notify call and returns it.
    pub async fn notified(&self, n: usize) -> serde_json::Value {
        let seen = self.seen.clone();
        crate::wait::until(
            "notify_url to be called",
            Duration::from_secs(20),
            move || {
                let seen = seen.clone();
                async move { seen.lock().expect("lock").notifies.get(n - 1).cloned() }
            },
        )
        .await
    }

    /// Redirects received: (`success`|`failure`, query pairs).
    pub fn redirects(&self) -> Vec<(String, Vec<(String, String)>)> {
        self.seen.lock().expect("lock").redirects.clone()
    }
}

async fn notify(
    State(seen): State<Arc<Mutex<Seen>>>,
    body: axum::Json<serde_json::Value>,
) -> StatusCode {
    let mut s = seen.lock().expect("lock");
    s.notify_attempts += 1;
    if s.fail_notifies > 0 {
        s.fail_notifies -= 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    s.notifies.push(body.0);
    StatusCode::OK
}

async fn landing(
    State(seen): State<Arc<Mutex<Seen>>>,
    Query(q): Query<Vec<(String, String)>>,
    which: &'static str,
) -> &'static str {
    seen.lock()
        .expect("lock")
        .redirects
        .push((which.to_owned(), q));
    if which == "success" {
        "integrator: connected"
    } else {
        "integrator: not connected"
    }
}
