//! `dispatch audit verify` against a real `up` and, after a byte of the file is changed,
//! against its stopped data dir: clean says so, a rewrite is caught and named.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use std::process::Command;

use support::Server;

fn audit(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dispatch"))
        .arg("audit")
        .args(args)
        .env_remove("DISPATCH_TOKEN")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn audit_verify_proves_the_chains_and_names_a_rewritten_event() {
    let dir = support::tempdir();
    let data = dir.path().join("data");
    let s = Server::start(&data);
    let id = support::new_ticket(&s, &s.admin_token).await;
    let (_, timeline) = s.send("GET", &format!("/v1/tickets/{id}/timeline"), &s.admin_token, None, None).await;
    let stream = timeline["events"][0]["stream"].as_str().unwrap().to_owned();

    let (code, said) = audit(&["verify", "--server", &s.url, "--token", &s.admin_token]);
    assert_eq!(code, 0, "{said}");
    assert!(said.starts_with("verified all: ") && said.contains("every chain intact"), "{said}");
    let (code, said) = audit(&["verify", "--stream", &stream, "--server", &s.url, "--token", &s.admin_token]);
    assert!(code == 0 && said.contains(&format!("verified {stream}")), "{said}");
    let (status, body) = s.send("GET", "/v1/admin/audit/verify?stream=ticket/nope", &s.admin_token, None, None).await;
    assert_eq!(status, 404, "{body}");
    let technician = s.token("tess", "technician", &["*"], &["*"]).await;
    assert_eq!(s.send("GET", "/v1/admin/audit/verify", &technician, None, None).await.0, 403);
    let (code, said) = audit(&["verify", "--data-dir", data.to_str().unwrap()]);
    assert_ne!(code, 0, "the running server holds the file: {said}");
    assert!(said.contains("is a dispatch running on this data dir?"), "{said}");
    s.stop();

    // Someone holding the file rewrites one byte of the ticket's first event.
    {
        let db = redb::Database::open(data.join("dispatch.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            use redb::ReadableTable;
            let events: redb::TableDefinition<(&str, u64), &[u8]> = redb::TableDefinition::new("events");
            let mut table = txn.open_table(events).unwrap();
            let mut record = table.get((stream.as_str(), 1)).unwrap().unwrap().value().to_vec();
            *record.last_mut().unwrap() ^= 0x01;
            table.insert((stream.as_str(), 1), record.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let (code, said) = audit(&["verify", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains(&format!("BROKEN: stream {stream} at seq 1")), "{said}");
}
