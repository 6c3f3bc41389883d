//! Content-addressed evidence files beside the database: `blobs/sha256/ab/cd/<hex>`.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A parsed `blob:sha256:<64 hex>` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobUri {
    hex: String,
}

impl BlobUri {
    const PREFIX: &'static str = "blob:sha256:";

    /// Parses a URI; anything but a well-formed blob reference is `None`.
    pub fn parse(uri: &str) -> Option<BlobUri> {
        let hex = uri.strip_prefix(Self::PREFIX)?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .then(|| BlobUri { hex: hex.to_owned() })
    }

    /// The digest in lowercase hex.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl std::fmt::Display for BlobUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.hex)
    }
}

/// Why a blob could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob store io: {0}")]
    Io(#[from] std::io::Error),
}

/// Blobs on disk, written to a temp file, fsynced, then renamed into place, so a
/// blob that exists under its name is always complete.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// A store rooted at `dir` (created if missing).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, BlobError> {
        let root = dir.as_ref().join("sha256");
        fs::create_dir_all(root.join("tmp"))?;
        Ok(BlobStore { root })
    }

    fn path_of(&self, hex: &str) -> PathBuf {
        self.root.join(&hex[0..2]).join(&hex[2..4]).join(hex)
    }

    /// Stores `bytes` durably and returns their URI. Storing the same bytes twice is a no-op.
    pub fn put(&self, bytes: &[u8]) -> Result<BlobUri, BlobError> {
        let hex = hex::encode(Sha256::digest(bytes));
        let dest = self.path_of(&hex);
        if !dest.exists() {
            let dir = dest.parent().unwrap_or(&self.root);
            fs::create_dir_all(dir)?;
            let tmp = self.root.join("tmp").join(format!("{hex}.{}", std::process::id()));
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &dest)?;
            File::open(dir)?.sync_all()?;
        }
        Ok(BlobUri { hex })
    }

    /// True when `uri` is a blob reference whose file exists and still hashes to its name.
    pub fn resolves(&self, uri: &str) -> bool {
        let Some(blob) = BlobUri::parse(uri) else { return false };
        let Ok(mut f) = File::open(self.path_of(&blob.hex)) else { return false };
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => hasher.update(&buf[..n]),
                Err(_) => return false,
            }
        }
        hex::encode(hasher.finalize()) == blob.hex
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_blob_resolves_and_tampered_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let uri = store.put(b"photo").unwrap();
        assert!(store.resolves(&uri.to_string()));
        assert_eq!(store.put(b"photo").unwrap(), uri, "same bytes, same uri");
        fs::write(store.path_of(uri.hex()), b"other").unwrap();
        assert!(!store.resolves(&uri.to_string()), "content no longer matches its hash");
        assert!(!store.resolves("blob:sha256:00"), "malformed");
        assert!(!store.resolves(&format!("blob:sha256:{}", "a".repeat(64))), "missing");
        assert!(!store.resolves("s3://bucket/x"), "other scheme");
    }
}
