//! A full disk on a real (small, tmpfs) filesystem: new work is refused early with
//! 507 while the free space is under the reserve; when writes fail anyway, nothing is
//! acknowledged, `/ready` says why, and once space is freed the log heals without a
//! restart. Needs root to mount; says SKIPPING loudly otherwise.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::Server;

/// A tmpfs of `mb` MiB mounted on a temp dir, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mb: u32) -> Option<SmallDisk> {
        let dir = support::tempdir();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m,mode=0700"), "tmpfs"])
            .arg(dir.path())
            .status();
        match mounted {
            Ok(s) if s.success() => Some(SmallDisk { dir }),
            other => {
                eprintln!(
                    "\n!!! cannot mount a {mb} MiB tmpfs ({other:?}; needs root): SKIPPING the disk-full tests !!!\n"
                );
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `filler` until the filesystem refuses (or `limit` bytes).
    fn fill(&self, name: &str, limit: Option<u64>) -> PathBuf {
        let path = self.path().join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0xA5u8; 64 * 1024];
        let mut written = 0u64;
        while limit.is_none_or(|l| written < l) && f.write_all(&chunk).is_ok() {
            written += chunk.len() as u64;
        }
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

async fn ready(s: &Server) -> (u16, serde_json::Value) {
    s.send("GET", "/ready", "", None, None).await
}

async fn create_ticket(s: &Server, token: &str) -> (u16, serde_json::Value) {
    let body =
        json!({ "account_id": "acct-1", "site_id": "site-1", "incident_type": "DOOR_WONT_LATCH", "summary": "door" });
    s.send("POST", "/v1/tickets", token, Some(&uuid::Uuid::new_v4().to_string()), Some(body)).await
}

#[tokio::test]
async fn new_work_is_refused_under_the_space_reserve_and_resumes_when_space_returns() {
    let Some(disk) = SmallDisk::mount(32) else { return };
    let s = Server::start_with(&disk.path().join("data"), &["--min-free-mb", "8"]);
    let tech = s.token("tech-1", "technician", &["*"], &["*"]).await;
    let disp = s.token("disp-1", "dispatcher", &["*"], &["*"]).await;
    let filler = disk.fill("filler", Some(14 << 20));
    let mut refused = None;
    for i in 0..32u8 {
        let blob = vec![i; 1 << 20];
        let (status, _, body) = s.send_raw("POST", "/v1/blobs", &tech, None, Some(blob), &[]).await;
        if status != 201 {
            refused = Some((status, body));
            break;
        }
    }
    let (status, body) = refused.expect("the reserve was reached");
    assert_eq!((status, body["error"]["code"].as_str()), (507, Some("INSUFFICIENT_STORAGE")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("KiB"), "says how much is free: {body}");
    assert_eq!(create_ticket(&s, &disp).await.0, 507, "every kind of new work waits");
    assert_eq!(ready(&s).await.0, 200, "the log itself is fine");
    std::fs::remove_file(filler).unwrap();
    let (status, body) = create_ticket(&s, &disp).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn failed_writes_are_never_acknowledged_and_heal_without_a_restart() {
    let Some(disk) = SmallDisk::mount(24) else { return };
    // No reserve: the disk really fills up under the log.
    let s = Server::start_with(&disk.path().join("data"), &["--min-free-mb", "0"]);
    let disp = s.token("disp-1", "dispatcher", &["*"], &["*"]).await;
    let (status, before) = create_ticket(&s, &disp).await;
    assert_eq!(status, 201, "{before}");
    let filler = disk.fill("filler", None);
    // Until the log's spare pages run out some writes may still fit; then they fail.
    let mut failed = None;
    for _ in 0..200 {
        let (status, body) = create_ticket(&s, &disp).await;
        if status != 201 {
            failed = Some((status, body));
            break;
        }
    }
    let (status, body) = failed.expect("writes failed on the full disk");
    assert_eq!(status, 503, "not acknowledged: {body}");
    let (status, why) = ready(&s).await;
    assert_eq!(status, 503, "{why}");
    assert!(why["reasons"].to_string().contains("storage"), "{why}");

    std::fs::remove_file(filler).unwrap();
    let mut healed = false;
    for _ in 0..100 {
        if create_ticket(&s, &disp).await.0 == 201 && ready(&s).await.0 == 200 {
            healed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healed, "writes resumed without a restart: {:?}", ready(&s).await);
    let id = before["id"].as_str().unwrap();
    let (status, _) = s.send("GET", &format!("/v1/tickets/{id}"), &disp, None, None).await;
    assert_eq!(status, 200, "what was acknowledged before the fault is still there");
}
