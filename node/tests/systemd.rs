//! deploy/systemd: the units pass `systemd-analyze verify` (with this build's binary in
//! ExecStart) and their sandboxing scores as OK in `systemd-analyze security`. (This
//! machine has no running systemd, so the units are checked, not started.)

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use std::path::Path;
use std::process::Command;

const UNITS: [&str; 2] = ["dispatch-orchestrator.service", "dispatch-worker.service"];

#[test]
fn the_units_verify_and_are_sandboxed() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("\n!!! systemd-analyze is not installed (Debian's systemd): SKIPPING the unit checks !!!\n");
        return;
    }
    let dir = support::tempdir();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd");
    for unit in UNITS {
        let text = std::fs::read_to_string(source.join(unit)).unwrap();
        for needed in [
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "StateDirectory=",
            "Restart=on-failure",
            "User=",
        ] {
            assert!(text.contains(needed), "{unit} lacks {needed}");
        }
        let text = text.replace("/usr/local/bin/dispatch", env!("CARGO_BIN_EXE_dispatch"));
        std::fs::write(dir.path().join(unit), text).unwrap();
    }
    let worker = std::fs::read_to_string(source.join(UNITS[1])).unwrap();
    assert!(worker.contains("SupplementaryGroups=docker"), "the worker reaches the Docker socket");
    let verify = Command::new("systemd-analyze").arg("verify").args(UNITS).current_dir(dir.path()).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    for unit in UNITS {
        // Exposure 0.0 (locked down) … 10.0 (unsafe); 2.5 and under reads as "OK".
        let security = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--threshold=25", unit])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&security.stdout);
        assert!(security.status.success(), "{unit} is exposed: {}", said.lines().last().unwrap_or_default());
        eprintln!("{}", said.lines().last().unwrap_or_default());
    }
}
