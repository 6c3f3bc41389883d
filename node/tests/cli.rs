//! The CLI as the README uses it: a client of the HTTP API, human or `--json` output,
//! a failing exit status with the server's error code when a command is refused.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use std::process::{Command, Output};

use serde_json::Value;
use support::{Crew, Server};

fn dispatch(s: &Server, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dispatch"))
        .args(["ticket", "--server", &s.url, "--token", token])
        .args(args)
        .env_remove("DISPATCH_TOKEN")
        .output()
        .unwrap()
}

#[tokio::test]
async fn cli_drives_a_ticket_and_reports_refusals() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let crew = Crew::new(&s).await;

    let out = dispatch(
        &s,
        &crew.dispatcher,
        &[
            "--json",
            "create",
            "--account",
            "acct-1",
            "--site",
            "site-1",
            "--incident-type",
            "LOCKOUT",
            "--summary",
            "locked out",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ticket: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = ticket["id"].as_str().unwrap();

    let out = dispatch(&s, &crew.dispatcher, &["triage", id, "--outcome", "READY_TO_SCHEDULE"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("READY_TO_SCHEDULE"), "human output names the state");

    // Refused: a non-zero exit and the server's code on stderr; nothing written.
    let out = dispatch(&s, &crew.dispatcher, &["close", id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("FORBIDDEN"), "{}", String::from_utf8_lossy(&out.stderr));

    // Retrying with the same --idempotency-key is safe.
    for _ in 0..2 {
        let out =
            dispatch(&s, &crew.dispatcher, &["--idempotency-key", "cancel-1", "cancel", id, "--reason", "duplicate"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = dispatch(&s, &crew.dispatcher, &["timeline", id]);
    let timeline = String::from_utf8_lossy(&out.stdout);
    assert_eq!(timeline.lines().count(), 3, "created, triaged, cancelled once:\n{timeline}");
    assert!(timeline.contains("ticket.cancelled"));
}

#[tokio::test]
async fn login_keeps_tokens_private_and_refreshes_them() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = support::tempdir();
    let config = support::tempdir();
    let s = Server::start(dir.path());
    s.add_person("ann", "correct horse battery").await;
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dispatch"))
            .args(args)
            .args(["--server", &s.url])
            .env("DISPATCH_CONFIG_DIR", config.path())
            .env_remove("DISPATCH_TOKEN")
            .current_dir(config.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut login = cli(&["login", "--username", "ann"]);
    login.stdin.take().unwrap().write_all(b"correct horse battery\n").unwrap();
    assert!(login.wait_with_output().unwrap().status.success());
    let file = config.path().join("credentials.json");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);

    let out = cli(&["ticket", "list"]).wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // An expired access token is refreshed (and the rotated refresh token stored).
    let mut stored: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let old_refresh = stored["refresh_token"].clone();
    stored["access_expires_at"] = 0.into();
    std::fs::write(&file, serde_json::to_vec(&stored).unwrap()).unwrap();
    let out = cli(&["ticket", "list"]).wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stored: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_ne!(stored["refresh_token"], old_refresh);
    assert!(stored["access_expires_at"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn up_creates_the_first_admin_account_once() {
    let dir = support::tempdir();
    let secret = dir.path().join("pw");
    std::fs::write(&secret, "a very long admin passphrase\n").unwrap();
    let data = dir.path().join("data");
    let s = Server::start_with(&data, &["--admin-password-file", secret.to_str().unwrap()]);
    let login = serde_json::json!({ "username": "admin", "password": "a very long admin passphrase" });
    let (status, pair) = s.send("POST", "/v1/auth/login", "", None, Some(login.clone())).await;
    assert_eq!(status, 200, "{pair}");
    let (_, me) = s.send("GET", "/v1/me", pair["access_token"].as_str().unwrap(), None, None).await;
    assert_eq!(me["principal"]["role"], "admin");
    s.stop();
    // A restart does not create it again (or change its password).
    std::fs::write(&secret, "another passphrase entirely").unwrap();
    let s = Server::start_with(&data, &["--admin-password-file", secret.to_str().unwrap()]);
    assert_eq!(s.send("POST", "/v1/auth/login", "", None, Some(login)).await.0, 200);
    let (_, users) = s.send("GET", "/v1/users", &s.admin_token, None, None).await;
    assert_eq!(users["users"].as_array().unwrap().len(), 1);
}

/// Reads `out` until `needle` has appeared (bounded by the child's exit or 20 s of bytes).
fn read_until(out: &mut impl std::io::Read, seen: &mut Vec<u8>, needle: &[u8]) {
    let mut buf = [0u8; 256];
    while !seen.windows(needle.len()).any(|w| w == needle) {
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "ended before {:?}: {}", String::from_utf8_lossy(needle), String::from_utf8_lossy(seen));
        seen.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn login_on_a_terminal_does_not_echo_the_password() {
    use std::io::Write;
    use std::process::Stdio;
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    s.add_person("ann", "quiet-password-42").await;
    let config = support::tempdir();
    // `script` gives the CLI a real terminal (a pty); the password goes in only once
    // the prompt is shown, so an echo would come back on the pty's output.
    let command = format!("{} login --username ann --server {}", env!("CARGO_BIN_EXE_dispatch"), s.url);
    let Ok(mut child) = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("DISPATCH_CONFIG_DIR", config.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    else {
        eprintln!(
            "!!! SKIPPING login_on_a_terminal_does_not_echo_the_password: no `script` (bsdutils) to make a pty !!!"
        );
        return;
    };
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    read_until(&mut out, &mut seen, b"password for ann: ");
    child.stdin.as_mut().unwrap().write_all(b"quiet-password-42\n").unwrap();
    read_until(&mut out, &mut seen, b"logged in as ann");
    assert!(child.wait().unwrap().success());
    let text = String::from_utf8_lossy(&seen);
    assert!(!text.contains("quiet-password-42"), "the password was echoed: {text:?}");
}
