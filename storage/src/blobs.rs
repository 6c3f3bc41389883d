//! Content-addressed evidence files beside the database: `blobs/sha256/ab/cd/<hex>`.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

/// A parsed `blob:sha256:<64 hex>` reference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
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

    /// The URI `bytes` are stored under.
    pub fn of(bytes: &[u8]) -> BlobUri {
        BlobUri { hex: hex::encode(Sha256::digest(bytes)) }
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

/// Blobs on disk, written to a temp file (a name no other writer uses), fsynced,
/// then renamed into place. A blob whose file no longer hashes to its name (a
/// partial write from a crash, a changed file) does not resolve and is replaced by
/// the next upload of the right bytes. A verified file is remembered by its size and
/// modification time, so reads do not hash it again until it changes.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    verified: Arc<Mutex<HashMap<String, (u64, SystemTime)>>>,
}

/// Verified blobs remembered at most (then the memory starts over).
const VERIFIED_CACHE: usize = 100_000;
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl BlobStore {
    /// A store rooted at `dir` (created if missing).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, BlobError> {
        let root = dir.as_ref().join("sha256");
        fs::create_dir_all(root.join("tmp"))?;
        Ok(BlobStore { root, verified: Arc::default() })
    }

    fn path_of(&self, hex: &str) -> PathBuf {
        self.root.join(&hex[0..2]).join(&hex[2..4]).join(hex)
    }

    /// Stores `bytes` durably and returns their URI and whether they were new (an
    /// intact copy already stored is kept; a damaged one is replaced).
    pub fn put(&self, bytes: &[u8]) -> Result<(BlobUri, bool), BlobError> {
        let hex = hex::encode(Sha256::digest(bytes));
        if self.intact(&hex) {
            return Ok((BlobUri { hex }, false));
        }
        let dest = self.path_of(&hex);
        let dir = dest.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir)?;
        let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = self.root.join("tmp").join(format!("{hex}.{}.{seq}", std::process::id()));
        let written = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &dest)?;
            File::open(dir)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
        self.remember(&hex);
        Ok((BlobUri { hex }, true))
    }

    /// True when `uri` is a blob reference whose file exists and still hashes to its name.
    pub fn resolves(&self, uri: &str) -> bool {
        BlobUri::parse(uri).is_some_and(|blob| self.intact(&blob.hex))
    }

    /// The file of `uri`, when it exists and still hashes to its name (backups copy it).
    pub fn path_of_intact(&self, uri: &BlobUri) -> Option<PathBuf> {
        self.intact(&uri.hex).then(|| self.path_of(&uri.hex))
    }

    /// Size and modification time of a blob's file, when it exists.
    fn stamp(&self, hex: &str) -> Option<(u64, SystemTime)> {
        let meta = fs::metadata(self.path_of(hex)).ok()?;
        Some((meta.len(), meta.modified().ok()?))
    }

    fn remember(&self, hex: &str) {
        if let Some(stamp) = self.stamp(hex) {
            let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if verified.len() >= VERIFIED_CACHE {
                verified.clear();
            }
            verified.insert(hex.to_owned(), stamp);
        }
    }

    /// The file exists and hashes to its name (checked once per size and mtime).
    fn intact(&self, hex: &str) -> bool {
        let Some(stamp) = self.stamp(hex) else { return false };
        if self.verified.lock().unwrap_or_else(|p| p.into_inner()).get(hex) == Some(&stamp) {
            return true;
        }
        let Ok(mut f) = File::open(self.path_of(hex)) else { return false };
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => hasher.update(&buf[..n]),
                Err(_) => return false,
            }
        }
        let ok = hex::encode(hasher.finalize()) == hex;
        if ok {
            self.remember(hex);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_blob_resolves_and_tampered_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let (uri, new) = store.put(b"photo").unwrap();
        assert!(new && store.resolves(&uri.to_string()));
        assert_eq!(store.put(b"photo").unwrap(), (uri.clone(), false), "same bytes, same uri, stored once");
        fs::write(store.path_of(uri.hex()), b"other").unwrap();
        assert!(!store.resolves(&uri.to_string()), "content no longer matches its hash");
        // A damaged (or partial) blob is replaced by the next upload of its bytes.
        assert_eq!(store.put(b"photo").unwrap(), (uri.clone(), true));
        assert!(store.resolves(&uri.to_string()));
        assert_eq!(fs::read(store.path_of(uri.hex())).unwrap(), b"photo");
        assert!(!store.resolves("blob:sha256:00"), "malformed");
        assert!(!store.resolves(&format!("blob:sha256:{}", "a".repeat(64))), "missing");
        assert!(!store.resolves("s3://bucket/x"), "other scheme");
    }

    #[test]
    fn concurrent_uploads_of_the_same_bytes_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let bytes = vec![7u8; 256 * 1024];
        let uris: Vec<BlobUri> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| store.put(&bytes).unwrap().0)).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(uris.iter().all(|u| *u == BlobUri::of(&bytes) && store.resolves(&u.to_string())));
        assert_eq!(fs::read_dir(dir.path().join("sha256/tmp")).unwrap().count(), 0, "no temp file left");
    }
}
