//! A `dispatch` process of a multi-process test (an orchestrator or a worker), on
//! loopback or inside a network namespace.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `dispatch` process, its stdout read up to the line that says it is up.
pub struct Member {
    child: Option<Child>,
    lines: Vec<String>,
    log: PathBuf,
}

impl Member {
    pub fn spawn(args: &[&str], log: &Path, up: impl Fn(&str) -> bool) -> Member {
        Self::spawn_in(None, args, log, up)
    }

    /// The same, inside network namespace `netns` (`ip netns exec` execs the binary,
    /// so signals reach dispatch itself).
    pub fn spawn_in(netns: Option<&str>, args: &[&str], log: &Path, up: impl Fn(&str) -> bool) -> Member {
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_dispatch")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_dispatch")),
        };
        let mut child = command
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut lines = Vec::new();
        loop {
            match stdout.next() {
                Some(Ok(line)) => {
                    let done = up(&line);
                    lines.push(line);
                    if done {
                        break;
                    }
                }
                _ => {
                    let _ = child.kill();
                    panic!("{args:?} exited before it was up:\n{}", std::fs::read_to_string(log).unwrap_or_default());
                }
            }
        }
        std::thread::spawn(move || for _ in stdout {});
        Member { child: Some(child), lines, log: log.to_owned() }
    }

    /// The text after `prefix` on the first line that has it.
    pub fn after(&self, prefix: &str) -> String {
        let line = self
            .lines
            .iter()
            .find_map(|l| l.split_once(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {:?}", self.lines));
        line.1.split_whitespace().next().unwrap_or_default().trim_end_matches(';').to_owned()
    }

    pub fn stop(mut self) {
        let child = self.child.take().unwrap();
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "did not stop cleanly: {}\n{}",
            out.status,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Waits for the process to exit on its own (bounded) and returns its stderr log.
    pub fn exited(mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status, std::fs::read_to_string(&self.log).unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "process did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Member {
    /// Sends a signal (`STOP`, `CONT`, `KILL`, …) to the process.
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill").args([&format!("-{name}"), &pid]).status().unwrap().success());
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
