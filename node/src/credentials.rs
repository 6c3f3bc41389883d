//! The CLI's stored logins, one per context — a name for a server and the tokens of one
//! login there, as kubectl's contexts are — kept in one 0600 file. Commands use the
//! current context unless `--context` (or `$DISPATCH_CONTEXT`) names another, so a
//! second `dispatch login` adds a context instead of silently replacing the first.

use std::collections::BTreeMap;
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
    /// The CA certificate the server's HTTPS certificate is checked against (given at login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<std::path::PathBuf>,
}

/// Every stored login by context name, and which one is current.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Contexts {
    pub current: Option<String>,
    pub contexts: BTreeMap<String, Stored>,
}

/// `$DISPATCH_CONFIG_DIR/credentials.json`, else `~/.config/dispatch/credentials.json`.
pub fn path() -> Option<PathBuf> {
    let dir = match std::env::var_os("DISPATCH_CONFIG_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".config").join("dispatch"),
    };
    Some(dir.join("credentials.json"))
}

impl Contexts {
    /// The stored contexts (none when there is no file or it does not read). A file from
    /// before contexts, holding one login, reads as the context `default`.
    pub fn load() -> Contexts {
        let Some(bytes) = path().and_then(|p| std::fs::read(p).ok()) else { return Contexts::default() };
        if let Ok(all) = serde_json::from_slice::<Contexts>(&bytes) {
            return all;
        }
        match serde_json::from_slice::<Stored>(&bytes) {
            Ok(one) => {
                Contexts { current: Some("default".into()), contexts: BTreeMap::from([("default".into(), one)]) }
            }
            Err(_) => Contexts::default(),
        }
    }

    /// The context `name`, else the current one.
    pub fn get(&self, name: Option<&str>) -> Option<(&str, &Stored)> {
        let name = name.or(self.current.as_deref())?;
        self.contexts.get_key_value(name).map(|(k, v)| (k.as_str(), v))
    }

    /// Writes the file (a temp file with mode 0600, fsynced, then renamed into place).
    pub fn save(&self) -> anyhow::Result<PathBuf> {
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
        f.write_all(&serde_json::to_vec_pretty(self)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }
}
