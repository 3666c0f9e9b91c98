//! An in-process mailroom on 127.0.0.1:0 with a fresh database and an API key.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::db::TestDb;
use mailroom_core::{Clock, SystemClock};
use mailroom_server::{Application, Settings};
use mailroom_store::{Backend, Store, api_keys, workspaces};

pub struct TestApp {
    pub base_url: String,
    pub api_key: String,
    pub workspace: String,
    pub client: reqwest::Client,
    pub store: Store,
    pub vault: mailroom_store::Vault,
    /// The app's engine (for library calls no route exposes yet, e.g. a sync pass).
    pub engine: mailroom_engine::Engine,
    pub db: TestDb,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A test master key (fixed: tests may restart an app on the same database).
pub const TEST_MASTER_KEY: &str = "dGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGVzLWxvbmchISE=";

/// Starts mailroom on a fresh database of `backend`; `None` means skipped.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    let db = TestDb::new(backend).await?;
    Some(spawn_on(db, |_| {}).await)
}

/// Starts mailroom on `db`, letting the test adjust the settings first.
pub async fn spawn_on(db: TestDb, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_with_clock(db, Arc::new(SystemClock), adjust).await
}

/// [`spawn_on`] with the app's clock given (e.g. a [`mailroom_core::clock::ManualClock`] that
/// the test moves a day ahead instead of waiting for it). Several apps may share one clock
/// and one database (`TestDb::share`) as separate nodes.
pub async fn spawn_with_clock(
    db: TestDb,
    clock: Arc<dyn Clock>,
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the app's listener");
    spawn_listening(db, clock, listener, adjust).await
}

/// [`spawn_on`] with `MAILROOM_PUBLIC_URL` set to the app's own loopback address (before
/// `adjust`): what a provider's push must reach (Graph's change notifications, which the fake
/// Microsoft posts over plain HTTP on loopback).
pub async fn spawn_public(db: TestDb, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the app's listener");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let public = url::Url::parse(&format!("http://{addr}/")).expect("valid");
    spawn_listening(db, Arc::new(SystemClock), listener, |s: &mut Settings| {
        s.public_url = Some(public);
        adjust(s);
    })
    .await
}

async fn spawn_listening(
    db: TestDb,
    clock: Arc<dyn Clock>,
    listener: tokio::net::TcpListener,
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    mailroom_server::app::install_crypto_provider();
    let mut settings = Settings::for_tests(&db.url, TEST_MASTER_KEY);
    adjust(&mut settings);
    let app = Application::build_on(&settings, clock, listener)
        .await
        .expect("build app");
    let addr = app.local_addr();
    let store = app.engine().store.clone();
    let vault = app.engine().vault.clone();
    let engine = app.engine().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    let workspace = format!("ws-{}", crate::token());
    let now = SystemClock.now_ms();
    workspaces::ensure(&store, &workspace, now)
        .await
        .expect("workspace");
    let key = api_keys::create(&store, &workspace, "test", now)
        .await
        .expect("api key");
    TestApp {
        base_url: format!("http://{addr}"),
        api_key: key.token.expose_secret().to_owned(),
        workspace,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client"),
        store,
        vault,
        engine,
        db,
        shutdown: Some(tx),
        server: Some(server),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// A request with this app's API key.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("X-API-KEY", &self.api_key)
    }

    /// Sends and returns `(status, JSON body)`; panics if the body is not JSON.
    pub async fn call(&self, req: RequestBuilder) -> (u16, Value) {
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = resp.text().await.expect("body");
        assert!(
            ct.starts_with("application/json"),
            "non-JSON answer ({status}, {ct}): {text}"
        );
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON {e}: {text}")),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(self.request(Method::GET, path)).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call(self.request(Method::POST, path).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(self.request(Method::DELETE, path)).await
    }

    /// A second API key in another workspace (for isolation tests).
    pub async fn other_workspace_key(&self) -> String {
        let ws = format!("ws-{}", crate::token());
        let now = SystemClock.now_ms();
        workspaces::ensure(&self.store, &ws, now)
            .await
            .expect("workspace");
        api_keys::create(&self.store, &ws, "other", now)
            .await
            .expect("key")
            .token
            .expose_secret()
            .to_owned()
    }

    /// Stops the server, waiting for in-flight requests; returns the database for a restart.
    pub async fn stop(mut self) -> TestDb {
        self.halt().await;
        std::mem::replace(&mut self.db, TestDb::placeholder())
    }

    async fn halt(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = h.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Asserts an error answer: status, `type` slug, and the body's shape.
pub fn assert_error(resp: &(u16, Value), status: u16, slug: &str) {
    let (s, body) = resp;
    assert_eq!(*s, status, "status of {body}");
    assert_eq!(body["type"], format!("errors/{slug}"), "type of {body}");
    assert_eq!(body["status"], status, "status field of {body}");
    assert!(
        body["title"].is_string() && body["detail"].is_string() && body["instance"].is_string(),
        "shape of {body}"
    );
}
