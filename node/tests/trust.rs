//! Trust boundaries on the real binary: private files at rest, sessions that end
//! when they should, recorded and revocable tokens, retired signing keys.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};
use support::Server;

fn key() -> Option<String> {
    Some(uuid::Uuid::new_v4().to_string())
}

async fn post(s: &Server, path: &str, token: &str, body: Value) -> (u16, Value) {
    s.send("POST", path, token, key().as_deref(), Some(body)).await
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every file under `dir`, recursively.
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn data_files_are_private_and_a_shared_data_dir_is_refused() {
    let root = support::tempdir();
    let data = root.path().join("data");
    let s = Server::start(&data);
    let tech = s.token("tech-1", "technician", &["*"], &["*"]).await;
    s.blob(&tech, b"evidence photo").await;
    s.stop();
    assert_eq!(mode(&data), 0o700, "data dir");
    let all = files(&data);
    for name in ["dispatch.redb", "admin-token", "worker.redb", "ca.key.pem"] {
        assert!(all.iter().any(|p| p.file_name().unwrap() == name), "{name} not among {all:?}");
    }
    assert!(all.iter().any(|p| p.to_string_lossy().contains("blobs/sha256/")), "a blob was written");
    for f in &all {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }

    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dispatch"))
        .args(["up", "--http-addr", "127.0.0.1:0", "--cluster-addr", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started on a shared data dir");
    assert!(stderr.contains("mode 755") && stderr.contains("chmod -R go-rwx"), "{stderr}");
}

async fn login(s: &Server, user: &str, password: &str) -> Value {
    let (status, pair) =
        s.send("POST", "/v1/auth/login", "", None, Some(json!({"username": user, "password": password}))).await;
    assert_eq!(status, 200, "{pair}");
    pair
}

async fn refresh(s: &Server, pair: &Value) -> (u16, Value) {
    s.send("POST", "/v1/auth/refresh", "", None, Some(json!({"refresh_token": pair["refresh_token"]}))).await
}

async fn me(s: &Server, token: &str) -> u16 {
    s.send("GET", "/v1/me", token, None, None).await.0
}

#[tokio::test]
async fn a_password_reset_ends_every_session_and_admins_can_list_and_end_sessions() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    s.add_person("ann", "first password 1").await;
    let before = login(&s, "ann", "first password 1").await;
    let (status, _) =
        post(&s, "/v1/users/ann/password", &s.admin_token, json!({"password": "second password 2"})).await;
    assert_eq!(status, 200);
    let (status, body) = refresh(&s, &before).await;
    assert_eq!(status, 401, "a refresh token from before the reset still works: {body}");
    assert_eq!(me(&s, before["access_token"].as_str().unwrap()).await, 401);

    // Two new sessions: listed; one ended by an admin; then all.
    let a = login(&s, "ann", "second password 2").await;
    let b = login(&s, "ann", "second password 2").await;
    let (status, list) = s.send("GET", "/v1/users/ann/sessions", &s.admin_token, None, None).await;
    assert_eq!(status, 200, "{list}");
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3, "{list}");
    assert_eq!(sessions.iter().filter(|x| x["revoked"] == json!(false)).count(), 2, "{list}");
    let claims = |pair: &Value| -> Value {
        use base64::Engine;
        let payload = pair["access_token"].as_str().unwrap().split('.').nth(1).unwrap().to_owned();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    };
    let sid_a = claims(&a)["sid"].as_str().unwrap().to_owned();
    let (status, ended) = post(&s, "/v1/users/ann/sessions/revoke", &s.admin_token, json!({"session_id": sid_a})).await;
    assert_eq!((status, ended["revoked"].clone()), (200, json!([sid_a])));
    assert_eq!(refresh(&s, &a).await.0, 401);
    assert_eq!(me(&s, a["access_token"].as_str().unwrap()).await, 401);
    assert_eq!(me(&s, b["access_token"].as_str().unwrap()).await, 200, "the other session lives");
    let (status, _) = post(&s, "/v1/users/ann/sessions/revoke", &s.admin_token, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(refresh(&s, &b).await.0, 401);
    assert_eq!(me(&s, b["access_token"].as_str().unwrap()).await, 401);
    let (status, _) = post(&s, "/v1/users/ann/sessions/revoke", &s.admin_token, json!({"session_id": "nope"})).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn minted_tokens_are_recorded_and_revocable_and_retired_keys_verify_nothing() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let token = s.token("bot-1", "dispatcher", &["*"], &["*"]).await;
    let (status, list) = s.send("GET", "/v1/admin/tokens?limit=200", &s.admin_token, None, None).await;
    assert_eq!(status, 200, "{list}");
    let record = list["tokens"].as_array().unwrap().iter().find(|t| t["sub"] == "bot-1").cloned().unwrap();
    assert_eq!((record["minted_by"].as_str(), record["revoked"].as_bool()), (Some("admin"), Some(false)));
    assert_eq!(me(&s, &token).await, 200);
    let jti = record["jti"].as_str().unwrap();
    let (status, revoked) = post(&s, &format!("/v1/admin/tokens/{jti}/revoke"), &s.admin_token, json!({})).await;
    assert_eq!((status, revoked["revoked"].as_bool()), (200, Some(true)));
    assert_eq!(me(&s, &token).await, 401);

    // Rotation: the old key may still have live tokens (the admin's own), so it stays
    // until forced; then its tokens verify nothing, and the current key is never retired.
    let old_signed = s.token("old-1", "dispatcher", &["*"], &["*"]).await;
    let (_, keys) = s.send("GET", "/v1/auth/keys", "", None, None).await;
    let old_kid = keys["keys"][0]["kid"].as_str().unwrap().to_owned();
    let (status, _) = post(&s, "/v1/admin/signing-keys", &s.admin_token, json!({})).await;
    assert_eq!(status, 201);
    let new_admin = s.token("admin-2", "admin", &["*"], &["*"]).await;
    let retire = format!("/v1/admin/signing-keys/{old_kid}/retire");
    let (status, body) = post(&s, &retire, &new_admin, json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("SIGNING_KEY_IN_USE")), "{body}");
    let (status, body) = post(&s, &format!("{retire}?force=true"), &new_admin, json!({})).await;
    assert_eq!((status, body["retired"].as_bool()), (200, Some(true)), "{body}");
    assert_eq!(me(&s, &old_signed).await, 401, "a token of a retired key");
    assert_eq!(me(&s, &new_admin).await, 200);
    let (_, keys) = s.send("GET", "/v1/auth/keys", "", None, None).await;
    let current = keys["keys"][0]["kid"].as_str().unwrap().to_owned();
    assert_ne!(current, old_kid, "retired keys are no longer published");
    let (status, _) =
        post(&s, &format!("/v1/admin/signing-keys/{current}/retire?force=true"), &new_admin, json!({})).await;
    assert_eq!(status, 409, "the current key is never retired");
}

async fn login_as(s: &Server, user: &str, password: &str, forwarded_for: Option<&str>) -> u16 {
    let body = json!({"username": user, "password": password}).to_string().into_bytes();
    let headers: Vec<(&str, &str)> = forwarded_for.map(|f| ("x-forwarded-for", f)).into_iter().collect();
    s.send_raw("POST", "/v1/auth/login", "", None, Some(body), &headers).await.0
}

#[tokio::test]
async fn parallel_wrong_passwords_are_all_counted() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    s.add_person("bob", "right password 1").await;
    let attempts = (0..20).map(|_| login_as(&s, "bob", "wrong password", None));
    let statuses = futures_util::future::join_all(attempts).await;
    let failed = statuses.iter().filter(|&&st| st == 401).count();
    assert_eq!(failed, 5, "exactly the budget was judged: {statuses:?}");
    assert_eq!(statuses.iter().filter(|&&st| st == 429).count(), 15, "{statuses:?}");
    assert_eq!(login_as(&s, "bob", "right password 1", None).await, 429, "even the right password waits");
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
    let dir = support::tempdir();
    // Behind a proxy on 127.0.0.1: each forwarded client has its own budget.
    let s = Server::start_with(dir.path(), &["--trusted-proxy", "127.0.0.1/32"]);
    for i in 0..30 {
        assert_eq!(login_as(&s, &format!("nobody{i}"), "x", Some("198.51.100.1")).await, 401);
    }
    assert_eq!(login_as(&s, "nobody", "x", Some("198.51.100.1")).await, 429, "this client used its budget");
    assert_eq!(login_as(&s, "nobody", "x", Some("198.51.100.2")).await, 401, "another client behind the proxy");
    drop(s);
    // Without the flag the header is just a header: varying it buys nothing.
    let s = Server::start(dir.path());
    for i in 0..30 {
        login_as(&s, &format!("nobody{i}"), "x", Some(&format!("198.51.100.{i}"))).await;
    }
    assert_eq!(login_as(&s, "nobody", "x", Some("198.51.100.200")).await, 429);
}

#[tokio::test]
async fn each_uploader_has_a_blob_quota() {
    let dir = support::tempdir();
    let s = Server::start_with(dir.path(), &["--blob-quota-mb", "1"]);
    let tech = s.token("tech-1", "technician", &["*"], &["*"]).await;
    let other = s.token("tech-2", "technician", &["*"], &["*"]).await;
    let photo = vec![1u8; 600 << 10];
    s.blob(&tech, &photo).await;
    s.blob(&tech, &photo).await; // the same bytes again: stored once, charged once
    let (status, _, body) = s.send_raw("POST", "/v1/blobs", &tech, None, Some(vec![2u8; 600 << 10]), &[]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (507, Some("QUOTA_EXCEEDED")), "{body}");
    s.blob(&other, &vec![2u8; 600 << 10]).await;
}
