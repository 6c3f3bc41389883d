//! The CLI's stored login: tokens from `dispatch login`, kept in a 0600 file and
//! refreshed when the access token is about to expire.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Tokens for one server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    pub server: String,
    pub access_token: String,
    pub refresh_token: String,
    /// Unix seconds.
    pub access_expires_at: i64,
}

/// `$DISPATCH_CONFIG_DIR/credentials.json`, else `~/.config/dispatch/credentials.json`.
pub fn path() -> Option<PathBuf> {
    let dir = match std::env::var_os("DISPATCH_CONFIG_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".config").join("dispatch"),
    };
    Some(dir.join("credentials.json"))
}

/// The stored login, if there is one and it reads.
pub fn load() -> Option<Stored> {
    serde_json::from_slice(&std::fs::read(path()?).ok()?).ok()
}

/// Stores the login (written to a temp file with mode 0600, then renamed into place).
pub fn save(stored: &Stored) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    let path = path().ok_or_else(|| anyhow::anyhow!("no HOME or DISPATCH_CONFIG_DIR to keep credentials in"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(stored)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Forgets the stored login; the file it was in, when there was one.
pub fn forget() -> anyhow::Result<Option<PathBuf>> {
    let Some(path) = path() else { return Ok(None) };
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(Some(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("removing {}: {e}", path.display())),
    }
}
