//! `dispatch backup` of a running orchestrator under concurrent writes, `dispatch
//! restore` into a fresh data dir, and what a damaged backup gets: refused, naming why,
//! with nothing left behind.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::json;
use support::{Crew, Server};

fn dispatch(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dispatch")).args(args).env_remove("DISPATCH_TOKEN").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A ticket whose summary is `marker`, so its bytes can be found in a backup.
async fn marked_ticket(s: &Server, token: &str, marker: &str) -> String {
    let body =
        json!({ "account_id": "acct-1", "site_id": "site-1", "incident_type": "DOOR_WONT_LATCH", "summary": marker });
    let (status, body) = s.send("POST", "/v1/tickets", token, Some(&support::key()), Some(body)).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_writes_restores_verified_and_a_damaged_one_is_refused() {
    let dir = support::tempdir();
    let s = Server::start(&dir.path().join("data"));
    let crew = Crew::new(&s).await;
    let marker = format!("backup-marker-{}", uuid::Uuid::new_v4().simple());
    let marked = marked_ticket(&s, &crew.dispatcher, &marker).await;
    let photo = s.blob(&crew.technician, b"the latch, photographed").await;
    let dispatched = support::dispatched_ticket(&s, &crew).await;
    let evidence = json!({ "evidence_key": "photo_latch", "kind": "photo", "uri": photo });
    let (status, body) = s
        .send(
            "POST",
            &format!("/v1/tickets/{dispatched}/evidence"),
            &crew.technician,
            Some(&support::key()),
            Some(evidence),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Tickets keep being created while the backup runs.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let writes = {
        let (url, token) = (s.url.clone(), crew.dispatcher.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut acknowledged = 0;
            while !*stop_rx.borrow() {
                let body = json!({ "account_id": "acct-1", "site_id": "site-1", "incident_type": "DOOR_WONT_LATCH", "summary": "during backup" });
                let r = http
                    .post(format!("{url}/v1/tickets"))
                    .bearer_auth(&token)
                    .header("idempotency-key", support::key())
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                acknowledged += 1;
            }
            acknowledged
        })
    };
    let file = dir.path().join("nightly.tar");
    let (code, said) = tokio::task::spawn_blocking({
        let (url, token, file) = (s.url.clone(), s.admin_token.clone(), file.clone());
        move || dispatch(&["backup", path(&file), "--server", &url, "--token", &token])
    })
    .await
    .unwrap();
    stop_tx.send(true).unwrap();
    let during = writes.await.unwrap();
    assert_eq!(code, 0, "{said}");
    assert!(said.starts_with(&format!("backup {}: ", file.display())) && said.contains("1 blob(s)"), "{said}");
    assert!(!dir.path().join("nightly.partial").exists(), "no partial file is left");
    let technician = s.token("tess", "technician", &["*"], &["*"]).await;
    assert_eq!(s.send("GET", "/v1/admin/backup", &technician, None, None).await.0, 403, "admins only");
    let (code, said) = dispatch(&["backup", path(&file), "--server", &s.url, "--token", &s.admin_token]);
    assert!(code != 0 && said.contains("never overwrites"), "{said}");
    s.stop();
    eprintln!("{during} tickets were acknowledged while the backup ran");
    let stopped = dir.path().join("stopped.tar");
    let (code, said) = dispatch(&["backup", path(&stopped), "--data-dir", path(&dir.path().join("data"))]);
    assert!(code == 0 && said.contains("1 blob(s)"), "a stopped node's data dir is backed up without a server: {said}");

    // Restore into a fresh dir: verified, and the restored node serves what was backed up.
    let restored = dir.path().join("restored");
    let (code, said) = dispatch(&["restore", path(&file), "--data-dir", path(&restored)]);
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("verified") && said.contains("as in the manifest"), "{said}");
    let (code, said) = dispatch(&["audit", "verify", "--data-dir", path(&restored)]);
    assert!(code == 0 && said.contains("every chain intact"), "{said}");
    let s = Server::start(&restored);
    for id in [&marked, &dispatched] {
        let (status, body) = s.send("GET", &format!("/v1/tickets/{id}"), &crew.dispatcher, None, None).await;
        assert_eq!(status, 200, "{id} was acknowledged before the backup: {body}");
    }
    let (status, body) =
        s.send("GET", &format!("/v1/tickets/{dispatched}/evidence"), &crew.technician, None, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains(&photo), "the evidence survives the restore: {body}");
    s.stop();
    let (code, said) = dispatch(&["restore", path(&file), "--data-dir", path(&restored)]);
    assert!(code != 0 && said.contains("is not empty"), "{said}");

    refused_when_damaged(
        &std::fs::read(&file).unwrap(),
        marker.as_bytes(),
        dir.path(),
        "hash does not match the record",
    );
    refused_when_damaged(
        &std::fs::read(&file).unwrap(),
        b"the latch, photographed",
        dir.path(),
        "does not hash to its name",
    );
}

/// Flips one bit of every occurrence of `needle` in a copy of the backup: the restore
/// refuses it naming `why`, and the target dir never appears.
fn refused_when_damaged(archive: &[u8], needle: &[u8], dir: &Path, why: &str) {
    let mut damaged = archive.to_vec();
    let mut flipped = 0;
    for at in 0..damaged.len() - needle.len() {
        if damaged[at..at + needle.len()] == *needle {
            damaged[at] ^= 0x01;
            flipped += 1;
        }
    }
    assert!(flipped > 0, "the backup holds {:?}", String::from_utf8_lossy(needle));
    let copy = dir.join(format!("damaged-{flipped}-{}.tar", needle.len()));
    std::fs::write(&copy, damaged).unwrap();
    let target = dir.join(format!("target-{}", needle.len()));
    let (code, said) = dispatch(&["restore", path(&copy), "--data-dir", path(&target)]);
    assert!(code != 0 && said.contains(why), "{said}");
    assert!(!target.exists(), "a refused restore leaves nothing: {said}");
    let staging: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("restoring"))
        .collect();
    assert!(staging.is_empty(), "no staging dir is left");
}
