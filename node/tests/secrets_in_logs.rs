//! No password, access token or refresh token ever reaches a log line, even at
//! debug level, through logins (good and bad), refreshes, logouts and API calls.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use serde_json::json;
use support::Server;

#[tokio::test]
async fn logs_never_contain_secrets() {
    let dir = support::tempdir();
    let s = Server::start_logging(dir.path(), &[], "debug");
    let password = "correct horse battery staple";
    let wrong = "tr0ub4dor&3-not-it";
    s.add_person("ann", password).await;
    let (_, bot) = s
        .send(
            "POST",
            "/v1/users",
            &s.admin_token,
            None,
            Some(json!({ "username": "bot", "role": "agent", "service": true, "tools": ["ticket.list"] })),
        )
        .await;
    let mut secrets: Vec<String> =
        vec![password.into(), wrong.into(), s.admin_token.clone(), bot["token"].as_str().unwrap().into()];

    let (status, _) =
        s.send("POST", "/v1/auth/login", "", None, Some(json!({ "username": "ann", "password": wrong }))).await;
    assert_eq!(status, 401);
    let (status, _) =
        s.send("POST", "/v1/auth/login", "", None, Some(json!({ "username": "nobody", "password": wrong }))).await;
    assert_eq!(status, 401);
    let (_, first) =
        s.send("POST", "/v1/auth/login", "", None, Some(json!({ "username": "ann", "password": password }))).await;
    let (_, second) =
        s.send("POST", "/v1/auth/refresh", "", None, Some(json!({ "refresh_token": first["refresh_token"] }))).await;
    // Reuse (a warning is logged), then a fresh login and logout.
    s.send("POST", "/v1/auth/refresh", "", None, Some(json!({ "refresh_token": first["refresh_token"] }))).await;
    let (_, third) =
        s.send("POST", "/v1/auth/login", "", None, Some(json!({ "username": "ann", "password": password }))).await;
    let access = third["access_token"].as_str().unwrap();
    s.send("GET", "/v1/tickets", access, None, None).await;
    s.send("GET", "/v1/tickets", "not.a.token", None, None).await;
    s.send("POST", "/v1/auth/logout", access, None, Some(json!({}))).await;
    s.send("GET", "/v1/tickets", access, None, None).await;
    for pair in [&first, &second, &third] {
        for field in ["access_token", "refresh_token"] {
            secrets.push(pair[field].as_str().unwrap_or_default().to_owned());
        }
    }
    s.stop();

    let log = std::fs::read_to_string(Server::log_path(dir.path())).unwrap();
    assert!(log.contains("login failed"), "failed logins are logged (so this test sees real log lines)");
    assert!(log.contains("refresh token reused"), "theft is logged");
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(
            !log.contains(secret.as_str()),
            "a secret appears in the log:\n{}",
            log.lines().find(|l| l.contains(secret.as_str())).unwrap_or("")
        );
        // Also no long fragment of it (e.g. a token's signature part on its own).
        for part in secret.split('.').filter(|p| p.len() >= 16) {
            assert!(!log.contains(part), "part of a secret appears in the log");
        }
    }
}
