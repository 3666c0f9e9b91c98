//! Running the `mailroom` binary as an operator does (shared by the binary's test files).
#![allow(dead_code)] // each test file uses its own part

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_mailroom");

/// The binary with a clean environment (no inherited MAILROOM_* settings).
pub fn mailroom(cwd: &Path, env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

pub struct Server {
    pub child: Child,
    pub addr: String,
    /// What the server logged before it listened.
    pub startup: Vec<String>,
    /// Everything logged after start-up.
    pub log: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `mailroom serve` on a free port and waits (with a deadline) until it listens.
    /// The child is killed and reaped by `Drop` (or `stop`).
    #[allow(clippy::zombie_processes)]
    pub fn start(cwd: &Path, env: &[(&str, &str)]) -> Server {
        let mut env = env.to_vec();
        env.push(("MAILROOM_LISTEN", "127.0.0.1:0"));
        let mut child = mailroom(cwd, &env)
            .arg("serve")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut startup = vec![];
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("serve did not start: {startup:#?}"));
            if let Some(i) = line.find("addr=") {
                let addr = line[i + 5..].split_whitespace().next().unwrap().to_owned();
                return Server {
                    child,
                    addr,
                    startup,
                    log: rx,
                };
            }
            startup.push(line);
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// SIGKILL: the process dies wherever it is, as in a crash or an OOM kill.
    pub fn kill9(mut self) {
        let status = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let code = self.child.wait().unwrap();
        assert!(code.success(), "serve exited with {code}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn keys_create(cwd: &Path, env: &[(&str, &str)]) -> String {
    let out = mailroom(cwd, env)
        .args(["keys", "create", "--name", "ops"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned()
}

pub async fn get(client: &reqwest::Client, url: &str, key: &str) -> (u16, Value) {
    let r = client
        .get(url)
        .header("X-API-KEY", key)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}
