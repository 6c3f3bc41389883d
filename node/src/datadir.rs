//! Data directories hold the signing keys, the join-token key, callback secrets,
//! password hashes, the cluster CA and evidence: only the service's own user may
//! read them. A new directory is made 0700 and the process creates files 0600
//! (umask 077), so every file written later — database, blobs, credentials, the
//! worker's store — is private without each writer remembering to say so.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;

/// Makes `dir` (0700) if it is missing, refuses one that others can read or enter,
/// and sets the process umask so every file created from now on is 0600.
pub fn prepare(dir: &Path) -> anyhow::Result<()> {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating data dir {}", dir.display()))?;
    }
    let mode = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?.permissions().mode();
    refuse_if_shared(dir, mode, "data dir")?;
    let log = log_path(dir);
    if let Ok(meta) = std::fs::metadata(&log) {
        refuse_if_shared(&log, meta.permissions().mode(), "database")?;
    }
    Ok(())
}

fn refuse_if_shared(path: &Path, mode: u32, what: &str) -> anyhow::Result<()> {
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "{what} {} has mode {:o}: other users could read its keys and secrets; fix: chmod -R go-rwx {}",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    Ok(())
}

/// Path of the log file inside a data dir.
pub fn log_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("dispatch.redb")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_dir_is_private_and_a_shared_one_is_refused_with_the_fix() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        prepare(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::write(dir.join("f"), b"x").unwrap();
        assert_eq!(std::fs::metadata(dir.join("f")).unwrap().permissions().mode() & 0o777, 0o600, "umask 077");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = prepare(&dir).unwrap_err().to_string();
        assert!(err.contains("mode 755") && err.contains("chmod -R go-rwx"), "{err}");
    }
}
