//! A disk that fails on command, for tests of the write path: the log file under a
//! wrapper that makes writes or fsyncs return an I/O error. A failed fsync also
//! undoes every write since the last good one, as Linux may when it drops dirty pages
//! after a write-back error, so a test sees the worst a real disk does: data the
//! process wrote and believed in the page cache is gone. Nothing here runs unless a
//! [`Log`](crate::Log) is opened with [`Log::open_with_faults`](crate::Log::open_with_faults).

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redb::StorageBackend;

/// What the disk does, switched by the test while the log runs.
#[derive(Debug, Default)]
pub struct Faults {
    mode: AtomicU8,
    injected: AtomicU64,
}

const HEALTHY: u8 = 0;
const FAIL_WRITES: u8 = 1;
const FAIL_SYNCS: u8 = 2;

impl Faults {
    pub fn new() -> Arc<Faults> {
        Arc::default()
    }

    /// Every write fails with EIO from now on.
    pub fn fail_writes(&self) {
        self.mode.store(FAIL_WRITES, Ordering::SeqCst);
    }

    /// Every fsync fails with EIO, losing the writes since the last good one.
    pub fn fail_syncs(&self) {
        self.mode.store(FAIL_SYNCS, Ordering::SeqCst);
    }

    /// The disk works again.
    pub fn heal(&self) {
        self.mode.store(HEALTHY, Ordering::SeqCst);
    }

    /// How many operations failed on purpose so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    fn fail(&self, mode: u8, what: &str) -> io::Result<()> {
        match self.mode.load(Ordering::SeqCst) == mode {
            true => {
                self.injected.fetch_add(1, Ordering::SeqCst);
                Err(io::Error::other(format!("injected {what} failure")))
            }
            false => Ok(()),
        }
    }
}

/// Writes since the last good fsync: (offset, bytes before the write), oldest first;
/// and the file's length at that fsync.
#[derive(Default)]
struct Unsynced {
    undo: Vec<(u64, Vec<u8>)>,
    synced_len: u64,
}

/// The log file behind [`Faults`]: writes go straight to the file, and what each one
/// overwrote is kept until the next good fsync, to be put back if that fsync fails.
pub(crate) struct FaultyFile {
    file: File,
    faults: Arc<Faults>,
    unsynced: Mutex<Unsynced>,
}

impl FaultyFile {
    pub(crate) fn new(file: File, faults: Arc<Faults>) -> io::Result<FaultyFile> {
        let len = file.metadata()?.len();
        Ok(FaultyFile { file, faults, unsynced: Mutex::new(Unsynced { undo: Vec::new(), synced_len: len }) })
    }

    fn unsynced(&self) -> std::sync::MutexGuard<'_, Unsynced> {
        self.unsynced.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl fmt::Debug for FaultyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyFile").field("faults", &self.faults).finish()
    }
}

impl StorageBackend for FaultyFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(out, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.faults.fail(FAIL_WRITES, "write")?;
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut unsynced = self.unsynced();
        if let Err(e) = self.faults.fail(FAIL_SYNCS, "fsync") {
            // The dirty pages are dropped: every write since the last good fsync is undone.
            for (offset, before) in unsynced.undo.drain(..).rev() {
                self.file.write_all_at(&before, offset)?;
            }
            self.file.set_len(unsynced.synced_len)?;
            return Err(e);
        }
        self.file.sync_data()?;
        unsynced.undo.clear();
        unsynced.synced_len = self.file.metadata()?.len();
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.faults.fail(FAIL_WRITES, "write")?;
        let len = self.file.metadata()?.len();
        let mut before = vec![0; data.len().min(len.saturating_sub(offset) as usize)];
        self.file.read_exact_at(&mut before, offset)?;
        self.unsynced().undo.push((offset, before));
        self.file.write_all_at(data, offset)
    }

    fn close(&self) -> io::Result<()> {
        Ok(())
    }
}
