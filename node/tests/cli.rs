//! The CLI as the README uses it: a client of the HTTP API, human or `--json` output,
//! a failing exit status with the server's error code when a command is refused.

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
    let dir = tempfile::tempdir().unwrap();
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
