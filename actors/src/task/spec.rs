//! What a task may ask for: the defaults for what it leaves out and the limits a
//! spec must keep. `decide` refuses a spec outside them; the API checks first so a
//! bad request is answered before anything else happens.

use super::{RESERVED_ENV, TaskError, TaskSpec, valid_workspace_path};

/// A job's time limit when the task names none.
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 300;
/// A job's process limit when the task names none.
pub const DEFAULT_PIDS: u32 = 256;
/// Attempts in all (lost or refused ones are retried) when the task names none.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// A job's time limit, in seconds.
pub const TIMEOUT_SECONDS: std::ops::RangeInclusive<u32> = 1..=86_400;
/// A job's memory limit, in bytes (4 MiB to 64 GiB).
pub const MEMORY_BYTES: std::ops::RangeInclusive<u64> = 4 << 20..=64 << 30;
/// A job's CPU limit, in thousandths of a core (0.01 to 64 cores).
pub const CPU_MILLIS: std::ops::RangeInclusive<u32> = 10..=64_000;
/// A job's process limit.
pub const PIDS: std::ops::RangeInclusive<u32> = 8..=32_768;
/// Attempts in all.
pub const MAX_ATTEMPTS: std::ops::RangeInclusive<u32> = 1..=10;
/// How many strings a command holds: the program and its arguments.
pub const COMMAND_ARGS: std::ops::RangeInclusive<usize> = 1..=256;
/// The most bytes a task's workspace files may hold in all.
pub const MAX_FILES_BYTES: usize = 512 * 1024;

impl TaskSpec {
    /// Checks every limit; the message names the field as the API spells it.
    pub fn check(&self) -> Result<(), TaskError> {
        let invalid = |m: String| Err(TaskError::Invalid(m));
        if !COMMAND_ARGS.contains(&self.command.len()) || self.command[0].trim().is_empty() {
            return invalid("command must name a program (at most 256 arguments)".into());
        }
        if !TIMEOUT_SECONDS.contains(&self.timeout_seconds) {
            return invalid("timeout_seconds must be between 1 and 86400".into());
        }
        if self.memory_bytes.is_some_and(|m| !MEMORY_BYTES.contains(&m)) {
            return invalid("limits.memory_bytes must be between 4 MiB and 64 GiB".into());
        }
        if self.cpu_millis.is_some_and(|c| !CPU_MILLIS.contains(&c)) {
            return invalid("limits.cpus must be between 0.01 and 64".into());
        }
        if !PIDS.contains(&self.pids) {
            return invalid("limits.pids must be between 8 and 32768".into());
        }
        if let Some(k) = self.env.keys().find(|k| RESERVED_ENV.contains(&k.as_str()) || k.is_empty() || k.contains('='))
        {
            return invalid(format!("env name {k:?} is reserved or invalid"));
        }
        if let Some(p) = self.files.keys().find(|p| !valid_workspace_path(p)) {
            return invalid(format!("file path {p:?} must be relative to /workspace, without '..'"));
        }
        if self.files.values().map(String::len).sum::<usize>() > MAX_FILES_BYTES {
            return invalid("files may hold at most 512 KiB in all".into());
        }
        if !MAX_ATTEMPTS.contains(&self.max_attempts) {
            return invalid("max_attempts must be between 1 and 10".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> TaskSpec {
        TaskSpec {
            command: vec!["echo".into(), "hi".into()],
            pids: DEFAULT_PIDS,
            timeout_seconds: DEFAULT_TIMEOUT_SECONDS,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            ..TaskSpec::default()
        }
    }

    #[test]
    fn specs_outside_the_limits_are_refused_with_the_field_named() {
        let table: Vec<(&str, TaskSpec, Option<&str>)> = vec![
            ("valid", valid(), None),
            ("no program", TaskSpec { command: vec![" ".into()], ..valid() }, Some("command")),
            ("no command", TaskSpec { command: vec![], ..valid() }, Some("command")),
            ("timeout 0", TaskSpec { timeout_seconds: 0, ..valid() }, Some("timeout_seconds")),
            ("timeout a day", TaskSpec { timeout_seconds: 86_400, ..valid() }, None),
            ("memory 1 MiB", TaskSpec { memory_bytes: Some(1 << 20), ..valid() }, Some("limits.memory_bytes")),
            ("memory 4 MiB", TaskSpec { memory_bytes: Some(4 << 20), ..valid() }, None),
            ("cpus 0.001", TaskSpec { cpu_millis: Some(1), ..valid() }, Some("limits.cpus")),
            ("cpus 0.01", TaskSpec { cpu_millis: Some(10), ..valid() }, None),
            ("pids 7", TaskSpec { pids: 7, ..valid() }, Some("limits.pids")),
            ("reserved env", TaskSpec { env: [("DISPATCH_JOB_ID".into(), "x".into())].into(), ..valid() }, Some("env")),
            ("escaping file", TaskSpec { files: [("../x".into(), "x".into())].into(), ..valid() }, Some("file path")),
            (
                "files too big",
                TaskSpec { files: [("a".into(), "x".repeat(MAX_FILES_BYTES + 1))].into(), ..valid() },
                Some("files"),
            ),
            ("no attempts", TaskSpec { max_attempts: 0, ..valid() }, Some("max_attempts")),
            ("11 attempts", TaskSpec { max_attempts: 11, ..valid() }, Some("max_attempts")),
        ];
        for (case, spec, field) in table {
            match (spec.check(), field) {
                (Ok(()), None) => {}
                (Err(TaskError::Invalid(m)), Some(f)) => assert!(m.starts_with(f), "{case}: {m}"),
                (got, want) => panic!("{case}: got {got:?}, wanted a refusal naming {want:?}"),
            }
        }
    }
}
