//! The log file: table layout and every read. Writes live in `writer.rs`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::StorageError;
use crate::record::{EventRecord, Hash};
use crate::stored::{IdempotencyKey, IdempotencyRecord, StreamHead};

/// `(stream, seq)` → encoded [`EventRecord`].
pub(crate) const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events");
/// global position → `(stream, seq)`: the one total order of all events.
pub(crate) const GLOBAL: TableDefinition<u64, (&str, u64)> = TableDefinition::new("global");
/// stream → encoded [`StreamHead`] (last seq and hash).
pub(crate) const STREAMS: TableDefinition<&str, &[u8]> = TableDefinition::new("streams");
/// `(principal, route, key)` → encoded [`IdempotencyRecord`].
pub(crate) const IDEMPOTENCY: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("idempotency");
/// stream → `(seq, state bytes)` of the latest snapshot.
pub(crate) const SNAPSHOTS: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("snapshots");
/// `(index name, key)` → value: derived read models kept in the events' transaction.
pub(crate) const INDEXES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("indexes");
/// Named settings and secrets owned by the node (signing keys, counters).
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// A broken link found by [`Log::verify_stream`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub stream: String,
    pub seq: u64,
    pub reason: String,
}

/// Page cache of the log: hot streams fit; memory stays flat as the file grows
/// (redb's default would grow to 1 GiB).
pub const CACHE_BYTES: usize = 64 << 20;

/// The open log file. Cheap to clone; reads run concurrently with the writer.
///
/// A failed write (a full disk, an I/O error) leaves redb refusing every later
/// operation until the file is closed and opened again. The writer then calls
/// [`Log::reopen`] until it succeeds, so a fault that clears (space freed) heals
/// without a restart; meanwhile [`Log::fault`] says why writes fail.
#[derive(Clone)]
pub struct Log {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// `None` only while a reopen is swapping the file.
    db: RwLock<Option<Arc<Database>>>,
    fault: Mutex<Option<String>>,
    /// A test's failing disk under the file (see [`crate::Faults`]); `None` in production.
    faults: Option<Arc<crate::Faults>>,
    /// The last durable global position, so readers of the global order (the event
    /// stream) wait for a commit instead of polling.
    head: tokio::sync::watch::Sender<u64>,
}

/// The layout of the log file (its tables, keys and [`crate::RECORD_VERSION`] records);
/// written into a new file, and a file written with a newer one is refused rather than
/// misread. `dispatch version` prints it.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_KEY: &str = "format_version";

/// How long opening waits for another process to let go of the file's lock.
///
/// A process forked by a dispatch that then died (a job's fence, between its fork and
/// its exec) shares the open file and with it the lock, for as long as it takes to
/// exec: a restart right after a crash found the file "already open" once in 450
/// SIGKILLs of the crash-cycle test. A dispatch that really holds the file still gets
/// its "already open" error, after this wait.
const LOCK_WAIT: Duration = Duration::from_secs(5);

fn create_when_free(builder: &redb::Builder, path: &Path) -> Result<Database, redb::DatabaseError> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match builder.create(path) {
            Err(redb::DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            opened => return opened,
        }
    }
}

fn open_db(path: &Path, faults: Option<&Arc<crate::Faults>>) -> Result<Database, StorageError> {
    let mut builder = Database::builder();
    builder.set_cache_size(CACHE_BYTES);
    let db = match faults {
        None => create_when_free(&builder, path)?,
        Some(faults) => {
            let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
            builder.create_with_backend(crate::faults::FaultyFile::new(file, faults.clone())?)?
        }
    };
    let txn = db.begin_write()?;
    {
        txn.open_table(EVENTS)?;
        txn.open_table(GLOBAL)?;
        txn.open_table(STREAMS)?;
        txn.open_table(IDEMPOTENCY)?;
        txn.open_table(SNAPSHOTS)?;
        txn.open_table(INDEXES)?;
        let mut meta = txn.open_table(META)?;
        let stored = meta.get(FORMAT_KEY)?.map(|v| v.value().to_vec());
        match stored {
            None => drop(meta.insert(FORMAT_KEY, FORMAT_VERSION.to_le_bytes().as_slice())?),
            Some(bytes) => {
                let found = bytes.get(..4).and_then(|b| b.try_into().ok()).map_or(u32::MAX, u32::from_le_bytes);
                if found > FORMAT_VERSION {
                    return Err(StorageError::NewerFormat { found, supported: FORMAT_VERSION });
                }
            }
        }
    }
    txn.commit()?;
    Ok(db)
}

impl Log {
    /// Opens (or creates) the log at `path`, creating every table so reads never miss one.
    /// Fails if another process holds the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        Self::open_on(path.as_ref(), None)
    }

    /// Opens the log on a disk that fails when `faults` says so: for tests of the write
    /// path (reopens after a failure go through the same failing disk).
    pub fn open_with_faults(path: impl AsRef<Path>, faults: Arc<crate::Faults>) -> Result<Self, StorageError> {
        Self::open_on(path.as_ref(), Some(faults))
    }

    fn open_on(path: &Path, faults: Option<Arc<crate::Faults>>) -> Result<Self, StorageError> {
        let db = open_db(path, faults.as_ref())?;
        let last = db.begin_read()?.open_table(GLOBAL)?.last()?.map_or(0, |(k, _)| k.value());
        let db = RwLock::new(Some(Arc::new(db)));
        let head = tokio::sync::watch::Sender::new(last);
        Ok(Log { inner: Arc::new(Inner { path: path.to_owned(), db, fault: Mutex::new(None), faults, head }) })
    }

    /// Where the file is (a backup's temp copy and the blobs live beside it).
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The database, for one operation. Callers hold it for as long as their
    /// transaction lives, so a reopen waits for them (bounded) instead of racing them.
    pub(crate) fn db(&self) -> Result<Arc<Database>, StorageError> {
        let db = self.inner.db.read().unwrap_or_else(|p| p.into_inner()).clone();
        db.ok_or_else(|| StorageError::Unavailable("the log file is being reopened after a write failure".into()))
    }

    /// Why writes are failing, while they are.
    pub fn fault(&self) -> Option<String> {
        self.inner.fault.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The last durable global position, as it changes: `changed()` wakes after each
    /// commit that added events.
    pub fn watch_head(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.head.subscribe()
    }

    /// A commit up to `position` is durable.
    pub(crate) fn committed_up_to(&self, position: u64) {
        self.inner.head.send_if_modified(|head| std::mem::replace(head, position.max(*head)) < position);
    }

    pub(crate) fn set_fault(&self, why: Option<String>) {
        *self.inner.fault.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    /// Closes the file and opens it again (redb's way out of a failed write). Readers
    /// get [`StorageError::Unavailable`] for the moment of the swap. The fault stays
    /// until a commit succeeds.
    pub(crate) fn reopen(&self) -> Result<(), StorageError> {
        let old = self.inner.db.write().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(old) = old {
            // Reads hold the database only for one call: wait them out (bounded).
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut old = old;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still) if Instant::now() < deadline => {
                        old = still;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(still) => {
                        *self.inner.db.write().unwrap_or_else(|p| p.into_inner()) = Some(still);
                        return Err(StorageError::Unavailable("readers held the log file for 5s".into()));
                    }
                }
            }
        }
        let db = open_db(&self.inner.path, self.inner.faults.as_ref())?;
        *self.inner.db.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(db));
        Ok(())
    }

    /// Last sequence number of `stream` (0 when it has no events).
    pub fn stream_head(&self, stream: &str) -> Result<(u64, Hash), StorageError> {
        let db = self.db()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(STREAMS)?;
        Ok(match table.get(stream)? {
            Some(v) => StreamHead::decode(v.value())?.into(),
            None => (0, [0; 32]),
        })
    }

    /// Events of `stream` with `seq > after`, in order.
    pub fn read_stream(&self, stream: &str, after: u64) -> Result<Vec<EventRecord>, StorageError> {
        self.read_range(stream, after.saturating_add(1), u64::MAX)
    }

    /// Events of `stream` with `first <= seq <= last`, in order.
    pub fn read_range(&self, stream: &str, first: u64, last: u64) -> Result<Vec<EventRecord>, StorageError> {
        let db = self.db()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(EVENTS)?;
        let mut out = Vec::new();
        if first > last {
            return Ok(out);
        }
        for entry in table.range((stream, first)..=(stream, last))? {
            let (_, v) = entry?;
            out.push(EventRecord::decode(v.value())?);
        }
        Ok(out)
    }

    /// Up to `limit` events in global order starting at position `from` (inclusive).
    pub fn read_global(&self, from: u64, limit: usize) -> Result<Vec<EventRecord>, StorageError> {
        let db = self.db()?;
        let txn = db.begin_read()?;
        let global = txn.open_table(GLOBAL)?;
        let events = txn.open_table(EVENTS)?;
        let mut out = Vec::new();
        for entry in global.range(from..)?.take(limit) {
            let (_, v) = entry?;
            let (stream, seq) = v.value();
            let rec = events.get((stream, seq))?.ok_or_else(|| StorageError::Corrupt {
                table: "global",
                reason: format!("position points at missing event {stream}#{seq}"),
            })?;
            out.push(EventRecord::decode(rec.value())?);
        }
        Ok(out)
    }

    /// Number of events in the global order.
    pub fn global_len(&self) -> Result<u64, StorageError> {
        let db = self.db()?;
        let txn = db.begin_read()?;
        Ok(txn.open_table(GLOBAL)?.len()?)
    }

    /// The latest snapshot of `stream`: `(seq, state bytes)`.
    pub fn snapshot(&self, stream: &str) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        let db = self.db()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(SNAPSHOTS)?;
        Ok(table.get(stream)?.map(|v| {
            let (seq, bytes) = v.value();
            (seq, bytes.to_vec())
        }))
    }

    /// Snapshots of many streams in one read transaction (missing ones are skipped).
    pub fn snapshots<'a>(
        &self,
        streams: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        let db = self.db()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(SNAPSHOTS)?;
        let mut out = Vec::new();
        for s in streams {
            if let Some(v) = table.get(s)? {
                let (seq, bytes) = v.value();
                out.push((seq, bytes.to_vec()));
            }
        }
        Ok(out)
    }

    /// The stored outcome of an idempotent request, if one was recorded.
    pub fn idempotency(&self, key: &IdempotencyKey) -> Result<Option<IdempotencyRecord>, StorageError> {
        let db = self.db()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(IDEMPOTENCY)?;
        table.get(key.as_tuple())?.map(|v| IdempotencyRecord::decode(v.value())).transpose()
    }

    /// Value of one index entry.
    pub fn index_get(&self, index: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let db = self.db()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(INDEXES)?;
        Ok(table.get((index, key))?.map(|v| v.value().to_vec()))
    }

    /// A page of `index` under `prefix`: up to `limit` entries whose keys sort after
    /// `after` (the last key of the previous page), in key order.
    pub fn index_page(
        &self,
        index: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let db = self.db()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(INDEXES)?;
        let mut out = Vec::new();
        let start = match after {
            Some(a) if a >= prefix => std::ops::Bound::Excluded((index, a)),
            _ => std::ops::Bound::Included((index, prefix)),
        };
        for entry in table.range::<(&str, &str)>((start, std::ops::Bound::Unbounded))? {
            let (k, v) = entry?;
            let (name, key) = k.value();
            if name != index || !key.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((key.to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Keys (and values) of `index` that start with `prefix`, in key order, at most `limit`.
    pub fn index_scan(&self, index: &str, prefix: &str, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        self.index_page(index, prefix, None, limit)
    }

    /// Stores `value` under `key` unless a value is already there; returns what is stored.
    /// Used at start-up, before the writer runs (signing keys are created once).
    pub fn meta_get_or_insert(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, StorageError> {
        let db = self.db()?;
        let txn = db.begin_write()?;
        let stored = {
            let mut table = txn.open_table(META)?;
            let existing = table.get(key)?.map(|v| v.value().to_vec());
            match existing {
                Some(v) => v,
                None => {
                    table.insert(key, value)?;
                    value.to_vec()
                }
            }
        };
        txn.commit()?;
        Ok(stored)
    }

    /// Re-computes every hash of `stream` and checks each link to its predecessor and
    /// the stream head. Returns the first break, if any.
    pub fn verify_stream(&self, stream: &str) -> Result<Option<ChainBreak>, StorageError> {
        let db = self.db()?;
        verify_stream_in(&db.begin_read()?, stream)
    }

    /// Verifies every stream and that the global order names exactly the stored events,
    /// all in one read transaction: the log as of one position, however many commits
    /// land meanwhile.
    pub fn verify_all(&self) -> Result<Vec<ChainBreak>, StorageError> {
        let db = self.db()?;
        let txn = db.begin_read()?;
        let mut breaks = Vec::new();
        let mut total = 0u64;
        for entry in txn.open_table(STREAMS)?.iter()? {
            let (name, head) = entry?;
            if let Some(b) = verify_stream_in(&txn, name.value())? {
                breaks.push(b);
            }
            total += StreamHead::decode(head.value())?.seq;
        }
        breaks.extend(verify_global(&txn, total)?);
        Ok(breaks)
    }
}

fn verify_stream_in(txn: &ReadTransaction, stream: &str) -> Result<Option<ChainBreak>, StorageError> {
    let (head_seq, head_hash) = match txn.open_table(STREAMS)?.get(stream)? {
        Some(v) => StreamHead::decode(v.value())?.into(),
        None => (0, [0; 32]),
    };
    let brk = |seq, reason: &str| ChainBreak { stream: stream.to_owned(), seq, reason: reason.to_owned() };
    let mut prev: Hash = [0; 32];
    let mut count = 0u64;
    for entry in txn.open_table(EVENTS)?.range((stream, 0)..=(stream, u64::MAX))? {
        let r = EventRecord::decode(entry?.1.value())?;
        count += 1;
        if r.seq != count {
            return Ok(Some(brk(r.seq, "sequence gap")));
        }
        if r.prev_hash != prev {
            return Ok(Some(brk(r.seq, "prev_hash does not match the previous event")));
        }
        if r.compute_hash() != r.hash {
            return Ok(Some(brk(r.seq, "hash does not match the record")));
        }
        prev = r.hash;
    }
    if head_seq != count || head_hash != prev {
        return Ok(Some(brk(head_seq, "stream head does not match the last event")));
    }
    Ok(None)
}

/// The global order holds exactly the `total` events of the streams, numbered 1.. with no gap.
fn verify_global(txn: &ReadTransaction, total: u64) -> Result<Option<ChainBreak>, StorageError> {
    let global = txn.open_table(GLOBAL)?;
    let events = txn.open_table(EVENTS)?;
    if global.len()? != total || events.len()? != total {
        let reason = format!(
            "global order holds {} entries and events table {} for {total} events in streams",
            global.len()?,
            events.len()?
        );
        return Ok(Some(ChainBreak { stream: String::new(), seq: 0, reason }));
    }
    for (i, entry) in global.iter()?.enumerate() {
        let (pos, v) = entry?;
        let (stream, seq) = v.value();
        if pos.value() != i as u64 + 1 || events.get((stream, seq))?.is_none() {
            let reason = format!("global position {} is out of order or dangling", pos.value());
            return Ok(Some(ChainBreak { stream: stream.to_owned(), seq, reason }));
        }
    }
    Ok(None)
}
