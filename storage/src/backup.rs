//! A consistent copy of a log that is being written, and the summary a restore proves
//! it got. Everything is read in one read transaction (redb's snapshot), so the copy is
//! exactly the log at one global position however many commits land meanwhile.

use std::collections::BTreeSet;
use std::path::Path;

use redb::{
    Database, Key, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, Value,
};
use sha2::{Digest, Sha256};

use crate::log::{EVENTS, GLOBAL, IDEMPOTENCY, INDEXES, META, SNAPSHOTS, STREAMS};
use crate::stored::StreamHead;
use crate::{BlobUri, Hash, Log, StorageError};

/// Rows written per transaction of the copy, so its memory stays bounded for any log size.
const ROWS_PER_COMMIT: u64 = 20_000;

/// What a log holds at one global position: enough to prove a copy is the same log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSummary {
    /// Events in the global order.
    pub global_position: u64,
    /// Streams with at least one event.
    pub streams: u64,
    /// SHA-256 over every stream's name, last seq and head hash, in stream order.
    pub heads_sha256: Hash,
}

impl Log {
    /// Writes a consistent copy of the log into a new file at `dest` (which must not
    /// exist) and returns what the copy holds and the blobs its events reference.
    pub fn copy_to(&self, dest: &Path) -> Result<(LogSummary, BTreeSet<BlobUri>), StorageError> {
        if dest.exists() {
            return Err(StorageError::Io(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} already exists", dest.display()),
            )));
        }
        let db = self.db()?;
        let src = db.begin_read()?;
        let out = Database::builder().create(dest)?;
        copy_table(&src, &out, EVENTS)?;
        copy_table(&src, &out, GLOBAL)?;
        copy_table(&src, &out, STREAMS)?;
        copy_table(&src, &out, IDEMPOTENCY)?;
        copy_table(&src, &out, SNAPSHOTS)?;
        copy_table(&src, &out, INDEXES)?;
        copy_table(&src, &out, META)?;
        drop(out);
        Ok((summarize(&src)?, referenced_blobs(&src)?))
    }

    /// Every blob an event references (one read transaction).
    pub fn referenced_blobs(&self) -> Result<BTreeSet<BlobUri>, StorageError> {
        let db = self.db()?;
        referenced_blobs(&db.begin_read()?)
    }

    /// What the log holds now (one read transaction).
    pub fn summary(&self) -> Result<LogSummary, StorageError> {
        let db = self.db()?;
        summarize(&db.begin_read()?)
    }
}

/// Copies every row of `def`, committing every [`ROWS_PER_COMMIT`] rows.
fn copy_table<K: Key + 'static, V: Value + 'static>(
    src: &ReadTransaction,
    out: &Database,
    def: TableDefinition<K, V>,
) -> Result<u64, StorageError> {
    let table = src.open_table(def)?;
    let mut rows = table.iter()?;
    let mut copied = 0u64;
    loop {
        let txn = out.begin_write()?;
        let mut finished = true;
        {
            let mut dest = txn.open_table(def)?;
            for entry in rows.by_ref() {
                let (k, v) = entry?;
                dest.insert(k.value(), v.value())?;
                copied += 1;
                if copied.is_multiple_of(ROWS_PER_COMMIT) {
                    finished = false;
                    break;
                }
            }
        }
        txn.commit()?;
        if finished {
            return Ok(copied);
        }
    }
}

fn summarize(txn: &ReadTransaction) -> Result<LogSummary, StorageError> {
    let streams = txn.open_table(STREAMS)?;
    let mut hasher = Sha256::new();
    for entry in streams.iter()? {
        let (name, head) = entry?;
        let head = StreamHead::decode(head.value())?;
        let name = name.value();
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update(head.seq.to_le_bytes());
        hasher.update(head.hash);
    }
    Ok(LogSummary {
        global_position: txn.open_table(GLOBAL)?.len()?,
        streams: streams.len()?,
        heads_sha256: hasher.finalize().into(),
    })
}

/// Every `blob:sha256:<hex>` reference inside an event record.
fn referenced_blobs(txn: &ReadTransaction) -> Result<BTreeSet<BlobUri>, StorageError> {
    const PREFIX: &[u8] = b"blob:sha256:";
    let mut found = BTreeSet::new();
    for entry in txn.open_table(EVENTS)?.iter()? {
        let (_, record) = entry?;
        let bytes = record.value();
        let mut at = 0;
        while let Some(i) = bytes[at..].windows(PREFIX.len()).position(|w| w == PREFIX) {
            let start = at + i;
            let end = (start + PREFIX.len() + 64).min(bytes.len());
            if let Some(uri) = std::str::from_utf8(&bytes[start..end]).ok().and_then(BlobUri::parse) {
                found.insert(uri);
            }
            at = start + PREFIX.len();
        }
    }
    Ok(found)
}
