//! The README's walkthroughs — tickets, tasks, lanes — run verbatim by bash against a real
//! `up`, so the README cannot drift from the binary. A block is marked in the README with
//! `<!-- walkthrough: NAME -->`; every command must succeed except the ones the README
//! itself shows failing.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use std::path::Path;
use std::process::Command;

use support::Server;

/// The `sh` blocks marked `walkthrough: NAME` (and `NAME, continued`), in order.
fn walkthrough(name: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let marker = format!("<!-- walkthrough: {name}");
    let mut script = String::new();
    for (at, _) in readme.match_indices(&marker) {
        let block = &readme[at..];
        let start = block.find("```sh\n").unwrap() + "```sh\n".len();
        let end = start + block[start..].find("```").unwrap();
        script.push_str(&block[start..end]);
    }
    assert!(!script.is_empty(), "no walkthrough {name:?} in the README");
    script
}

/// What a run printed, and the commands that failed (`bash`'s ERR trap names them).
struct Run {
    stdout: String,
    stderr: String,
    failed: Vec<String>,
}

/// Runs `script` with bash in `dir` (where `up`'s dispatch-data is), with `dispatch` on the
/// PATH being this build's binary and DISPATCH_SERVER pointing at `s`.
fn run(s: &Server, dir: &Path, script: &str) -> Run {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let _ = std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_dispatch"), bin.join("dispatch"));
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let preamble = "set -o pipefail\ntrap 'echo \"FAILED[$?]: $BASH_COMMAND\" >&2' ERR\n";
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("{preamble}{script}"))
        .current_dir(dir)
        .env("PATH", path)
        .env("DISPATCH_SERVER", &s.url)
        .env("DISPATCH_CONFIG_DIR", dir.join("config"))
        .env_remove("DISPATCH_TOKEN")
        .env_remove("DISPATCH_CONTEXT")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let failed = stderr.lines().filter_map(|l| l.strip_prefix("FAILED")).map(str::to_owned).collect();
    Run { stdout: String::from_utf8_lossy(&out.stdout).into_owned(), stderr, failed }
}

/// `up` with its data in `dir/dispatch-data`, as the README starts it.
fn up(dir: &Path) -> Server {
    Server::start(&dir.join("dispatch-data"))
}

#[test]
fn the_ticket_walkthrough_runs_as_written() {
    if !support::have_tool("jq", "apt-get install jq") {
        return;
    }
    let dir = support::tempdir();
    let s = up(dir.path());
    std::fs::write(dir.path().join("before.jpg"), b"a photo before").unwrap();
    std::fs::write(dir.path().join("after.jpg"), b"a photo after").unwrap();
    let run = run(&s, dir.path(), &walkthrough("tickets"));
    // The README shows the first `complete` refused for the missing photo; nothing else fails.
    assert_eq!(run.failed.len(), 1, "{}\n{}", run.stderr, run.stdout);
    assert!(run.failed[0].contains("complete"), "{:?}", run.failed);
    assert!(run.stderr.contains("CLOSEOUT_REQUIREMENTS_INCOMPLETE (409)"), "{}", run.stderr);
    assert!(run.stderr.contains("photo_after"), "{}", run.stderr);
    let timeline = run.stdout.lines().skip_while(|l| !l.starts_with("SEQ ")).collect::<Vec<_>>();
    assert!(timeline.iter().any(|l| l.contains("ticket.closed") && l.contains("ticket.close")), "{}", run.stdout);
}

#[test]
fn the_task_walkthrough_runs_as_written() {
    let docker = Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output();
    if !docker.is_ok_and(|o| o.status.success()) {
        assert!(std::env::var_os("CI").is_none(), "CI must have a Docker Engine");
        eprintln!("\n!!! no Docker Engine answers: SKIPPING the README's task walkthrough !!!\n");
        return;
    }
    let dir = support::tempdir();
    let s = up(dir.path());
    let run = run(&s, dir.path(), &walkthrough("tasks"));
    // Only the task no node can take fails, as the README says (exit 124, still queued).
    assert_eq!(run.failed.len(), 1, "{}\n{}", run.stderr, run.stdout);
    assert!(run.failed[0].starts_with("[124]") && run.failed[0].contains("zone=a"), "{:?}", run.failed);
    for printed in ["hello", "hi", "some input"] {
        assert!(run.stdout.lines().any(|l| l == printed), "{printed:?} missing from:\n{}", run.stdout);
    }
    assert!(run.stderr.contains("waiting: no active node carries the label(s) zone=a"), "{}", run.stderr);
    assert!(run.stdout.contains("CANCELLED") && run.stdout.contains("QUEUED"), "{}", run.stdout);
}

#[tokio::test]
async fn the_lane_walkthrough_runs_as_written() {
    if !support::have_tool("uuidgen", "apt-get install uuid-runtime") {
        return;
    }
    let dir = support::tempdir();
    let s = up(dir.path());
    let run = run(&s, dir.path(), &walkthrough("lanes"));
    assert!(run.failed.is_empty(), "{:?}\n{}\n{}", run.failed, run.stderr, run.stdout);
    let (_, lane) = s.send("GET", "/v1/lanes/refunds-7", &s.admin_token, None, None).await;
    assert_eq!(lane["status"], "CLOSED", "{lane}");
    assert_eq!(lane["handoff"]["decision"]["action"], "approve", "{lane}");
    assert_eq!(lane["owner"], "bob", "{lane}");
}
