//! Shared helpers for tests that run the real `dispatch` binary.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing
#![allow(dead_code)]

pub mod docker;
pub mod member;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

/// A `dispatch up` process on a temp (or given) data dir, on a free port.
pub struct Server {
    child: Option<Child>,
    /// What the process prints on stdout after its listening line.
    stdout: std::sync::Mutex<std::sync::mpsc::Receiver<String>>,
    pub url: String,
    pub data_dir: PathBuf,
    pub admin_token: String,
    http: reqwest::Client,
}

impl Server {
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, &[])
    }

    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Server {
        Self::start_logging(data_dir, extra, "warn")
    }

    /// Path of the server's captured log (stderr).
    pub fn log_path(data_dir: &Path) -> PathBuf {
        data_dir.with_extension("stderr.log")
    }

    pub fn start_logging(data_dir: &Path, extra: &[&str], rust_log: &str) -> Server {
        // The server's log goes to a file in its data dir, never to the test's pipes.
        let log = std::fs::File::create(data_dir.with_extension("stderr.log")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_dispatch"))
            .args(["up", "--http-addr", "127.0.0.1:0", "--cluster-addr", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start dispatch");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("dispatch: listening on ") {
                        break url.to_owned();
                    }
                }
                _ => {
                    let _ = child.kill();
                    let log = std::fs::read_to_string(data_dir.with_extension("stderr.log")).unwrap_or_default();
                    panic!("dispatch exited before listening:\n{log}");
                }
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe; tests may read it.
        let (line_tx, stdout) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = line_tx.send(line);
            }
        });
        let admin_token = std::fs::read_to_string(data_dir.join("admin-token")).unwrap().trim().to_owned();
        // No connection reuse: a server answering 413 early closes the connection, and a
        // pooled client would race that close on its next request.
        let http = client_builder().pool_max_idle_per_host(0).build().unwrap();
        let stdout = std::sync::Mutex::new(stdout);
        Server { child: Some(child), stdout, url, data_dir: data_dir.to_owned(), admin_token, http }
    }

    /// The next stdout line containing `needle`, waiting at most `within`.
    pub fn line_with(&self, needle: &str, within: std::time::Duration) -> String {
        let deadline = std::time::Instant::now() + within;
        let lines = self.stdout.lock().unwrap();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("no stdout line with {needle:?} within {within:?}: {e}"),
            }
        }
    }

    /// Sends a signal (`INT`, `TERM`, …) to the process.
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill").args([&format!("-{name}"), &pid]).status().unwrap().success());
    }

    /// Waits at most `within` for the process to exit; its status.
    pub fn exit_within(mut self, within: std::time::Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let pid = child.id();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(within) {
            Ok(status) => status.unwrap(),
            Err(_) => {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                panic!("dispatch did not exit within {within:?}");
            }
        }
    }

    /// SIGTERM, then wait: the process must drain and exit cleanly.
    pub fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let exit = child.wait().unwrap();
        assert!(exit.success(), "dispatch did not exit cleanly on SIGTERM: {exit}");
    }

    /// Mints a token through the admin API.
    pub async fn token(&self, sub: &str, role: &str, accounts: &[&str], sites: &[&str]) -> String {
        let (status, body) = self
            .send(
                "POST",
                "/v1/admin/tokens",
                &self.admin_token,
                None,
                Some(json!({ "sub": sub, "role": role, "accounts": accounts, "sites": sites, "ttl_seconds": 600 })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// A request with an optional idempotency key and JSON body; returns status and JSON.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, _, body) =
            self.send_raw(method, path, token, key, body.map(|b| b.to_string().into_bytes()), &[]).await;
        (status, body)
    }

    pub async fn send_raw(
        &self,
        method: &str,
        path: &str,
        token: &str,
        key: Option<&str>,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self.http.request(method.parse().unwrap(), format!("{}{path}", self.url));
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, value)
    }

    /// Creates a person's account (a dispatcher in every scope) through the admin API.
    pub async fn add_person(&self, username: &str, password: &str) {
        let body = json!({ "username": username, "role": "dispatcher", "password": password });
        let (status, created) = self.send("POST", "/v1/users", &self.admin_token, None, Some(body)).await;
        assert_eq!(status, 201, "{created}");
    }

    /// Uploads bytes as a blob and returns its URI.
    pub async fn blob(&self, token: &str, bytes: &[u8]) -> String {
        let (status, _, body) = self.send_raw("POST", "/v1/blobs", token, None, Some(bytes.to_vec()), &[]).await;
        assert_eq!(status, 201, "{body}");
        body["uri"].as_str().unwrap().to_owned()
    }

    pub async fn timeline_len(&self, id: &str) -> usize {
        let (status, body) =
            self.send("GET", &format!("/v1/tickets/{id}/timeline"), &self.admin_token, None, None).await;
        assert_eq!(status, 200, "{body}");
        body["events"].as_array().unwrap().len()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Tokens for each role of the lifecycle, scoped to account `acct-1`.
pub struct Crew {
    pub dispatcher: String,
    pub technician: String,
    pub manager: String,
    pub qa: String,
    pub billing: String,
}

impl Crew {
    pub async fn new(s: &Server) -> Crew {
        let acct = &["acct-1"];
        let all = &["*"];
        Crew {
            dispatcher: s.token("disp-1", "dispatcher", acct, all).await,
            technician: s.token("tech-1", "technician", acct, all).await,
            manager: s.token("mgr-1", "manager", acct, all).await,
            qa: s.token("qa-1", "qa", acct, all).await,
            billing: s.token("bill-1", "billing", acct, all).await,
        }
    }
}

/// Creates a DOOR_WONT_LATCH ticket on acct-1/site-1 and returns its id.
pub async fn new_ticket(s: &Server, token: &str) -> String {
    let (status, body) = s
        .send("POST", "/v1/tickets", token, Some(&uuid::Uuid::new_v4().to_string()),
            Some(json!({ "account_id": "acct-1", "site_id": "site-1", "incident_type": "DOOR_WONT_LATCH", "summary": "front door will not latch" })))
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

pub const WINDOW: &str = r#"{"start":"2026-11-23T09:00:00Z","end":"2026-11-23T11:00:00Z"}"#;

/// Moves a new ticket to DISPATCHED with tech-1 assigned.
pub async fn dispatched_ticket(s: &Server, crew: &Crew) -> String {
    let id = new_ticket(s, &crew.dispatcher).await;
    let w: Value = serde_json::from_str(WINDOW).unwrap();
    for (path, body) in [
        ("triage", json!({ "workflow_outcome": "READY_TO_SCHEDULE" })),
        ("schedule/propose", json!({ "windows": [w.clone()] })),
        ("schedule/confirm", json!({ "window": w })),
        ("assignment/dispatch", json!({ "technician_id": "tech-1" })),
    ] {
        let (status, body) = s
            .send(
                "POST",
                &format!("/v1/tickets/{id}/{path}"),
                &crew.dispatcher,
                Some(&uuid::Uuid::new_v4().to_string()),
                Some(body),
            )
            .await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    id
}

/// Whether `bin` (from Debian's prometheus package) is installed. CI must have it;
/// elsewhere its absence is said loudly and the caller skips that part.
pub fn have_prometheus_tool(bin: &str) -> bool {
    have_tool(bin, "apt-get install prometheus")
}

/// Whether `bin` runs (`bin --version`). `.ci/run` installs what the tests use; elsewhere
/// a missing tool is said loudly, with how to install it, and the caller skips.
pub fn have_tool(bin: &str, install: &str) -> bool {
    let found = Command::new(bin).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !found {
        assert!(std::env::var_os("CI").is_none(), "{bin} must be installed in CI (.ci/run: {install})");
        eprintln!("\n!!! {bin} not installed: SKIPPING what needs it ({install}) !!!\n");
    }
    found
}

/// `promtool check metrics` on an exposition; fails the test with promtool's report.
pub fn promtool_check(text: &str, what: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "promtool check metrics for {what}:\n{report}");
}

/// A fresh `Idempotency-Key`.
pub fn key() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A temp dir only its owner may enter, as a data dir must be (dispatch refuses others).
pub fn tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new().permissions(std::fs::Permissions::from_mode(0o700)).tempdir().unwrap()
}

/// reqwest is built without a default crypto provider (the product passes ring
/// explicitly); test clients install ring as the process default once.
pub fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// `reqwest::get` for tests.
pub async fn get(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::Response> {
    client_builder().build()?.get(url).send().await
}

/// The in-process orchestrator's configuration for tests: a data dir, free ports.
pub fn server_config(dir: &Path) -> dispatch_node::server::ServerConfig {
    dispatch_node::server::ServerConfig {
        data_dir: dir.to_owned(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        dev_headers: false,
        templates_file: None,
        supervisor: Default::default(),
        idempotency_retention: std::time::Duration::from_secs(3600),
        cluster_addr: "127.0.0.1:0".parse().unwrap(),
        advertise_addr: None,
        membership: Default::default(),
        inference: Default::default(),
        delivery: Default::default(),
        edge: Default::default(),
        lanes: Default::default(),
        https: None,
        cluster_keys: Default::default(),
    }
}
