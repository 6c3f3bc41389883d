//! The single writer: group commit of appends, index updates, snapshots and
//! idempotency records. Every commit is fsynced before any caller hears back.

use std::collections::{HashMap, HashSet};
use std::thread::JoinHandle;
use std::time::Instant;

use redb::ReadableTable;
use tokio::sync::{mpsc, oneshot};

use crate::StorageError;
use crate::log::{EVENTS, GLOBAL, IDEMPOTENCY, INDEXES, Log, SNAPSHOTS, STREAMS};
use crate::record::{EventRecord, Hash, NewEvent, config};
use crate::stored::{IdempotencyKey, IdempotencyRecord, StreamHead};

/// Most appends folded into one transaction; bounds a commit's latency under a flood.
const MAX_BATCH: usize = 4096;
/// Queue depth before callers wait (backpressure instead of unbounded memory).
const QUEUE_DEPTH: usize = 16 * 1024;

/// A change to a derived index, applied in the same transaction as the events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexOp {
    Put {
        index: String,
        key: String,
        value: Vec<u8>,
    },
    Delete {
        index: String,
        key: String,
    },
    /// Put, but only if `key` is free: otherwise the whole append is refused with
    /// [`AppendError::Taken`] (uniqueness checked in the same transaction as the write).
    Claim {
        index: String,
        key: String,
        value: Vec<u8>,
    },
}

/// One caller's atomic unit: either all of it is committed or none of it.
#[derive(Debug, Clone, Default)]
pub struct Append {
    pub stream: String,
    /// The stream's last sequence number as the caller saw it (0 for a new stream);
    /// the append is refused if another writer got there first.
    pub expected_seq: u64,
    pub events: Vec<NewEvent>,
    /// Entity state after these events, stored as the stream's snapshot.
    pub snapshot: Option<Vec<u8>>,
    pub index_ops: Vec<IndexOp>,
    /// Recorded only if no record exists under this key yet.
    pub idempotency: Option<(IdempotencyKey, IdempotencyRecord)>,
}

/// What a committed append got: its records with their final positions and hashes.
#[derive(Debug, Clone)]
pub struct Appended {
    pub records: Vec<EventRecord>,
}

/// Why an append was not committed. Nothing of it was written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    #[error("stream {stream} is at seq {actual}, expected {expected}")]
    SequenceConflict { stream: String, expected: u64, actual: u64 },
    /// A record already exists under the append's idempotency key.
    #[error("idempotency key already used")]
    IdempotencyKeyExists(IdempotencyRecord),
    /// A [`IndexOp::Claim`] found its key taken.
    #[error("{index} key {key:?} is already taken")]
    Taken { index: String, key: String },
    #[error("storage failure: {0}")]
    Storage(String),
    #[error("the log writer has stopped")]
    WriterGone,
}

enum Job {
    Append {
        append: Box<Append>,
        reply: oneshot::Sender<Result<Appended, AppendError>>,
    },
    /// Drop idempotency records created before `before_ms`; answers how many went.
    PurgeIdempotency {
        before_ms: i64,
        reply: oneshot::Sender<Result<u64, AppendError>>,
    },
}

/// Handle for submitting appends to the writer thread. Clone freely.
#[derive(Clone)]
pub struct LogWriter {
    path: WritePath,
}

#[derive(Clone)]
enum WritePath {
    /// A writer thread group-commits everything queued (a running node).
    Thread(mpsc::Sender<Job>),
    /// Each append commits on the caller's thread as it is called (the simulator): no
    /// other thread, so commits happen in the order the simulation makes them and a
    /// seed always gives the same log.
    Inline(Log),
}

/// Owns the writer thread; dropping every [`LogWriter`] and then calling
/// [`WriterHandle::join`] finishes queued work and stops it.
pub struct WriterHandle {
    thread: Option<JoinHandle<()>>,
}

impl WriterHandle {
    /// Waits for the writer to drain its queue and exit (after all senders are dropped).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl LogWriter {
    /// Starts the writer thread for `log`.
    pub fn start(log: &Log) -> Result<(LogWriter, WriterHandle), StorageError> {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let log = log.clone();
        let thread = std::thread::Builder::new().name("dispatch-log-writer".into()).spawn(move || run(log, rx))?;
        Ok((LogWriter { path: WritePath::Thread(tx) }, WriterHandle { thread: Some(thread) }))
    }

    /// A writer that commits each append on the caller's thread, one commit per append
    /// (still fsynced before it answers). For the simulator, where only one thread may
    /// decide the order of events.
    pub fn inline(log: &Log) -> LogWriter {
        LogWriter { path: WritePath::Inline(log.clone()) }
    }

    /// Appends atomically and returns once the commit holding it is fsynced.
    pub async fn append(&self, append: Append) -> Result<Appended, AppendError> {
        let (reply, rx) = oneshot::channel();
        match &self.path {
            WritePath::Thread(tx) => {
                if tx.send(Job::Append { append: Box::new(append), reply }).await.is_err() {
                    return Err(AppendError::WriterGone);
                }
            }
            WritePath::Inline(log) => {
                if commit_batch(log, vec![append], vec![reply]) {
                    // A failed commit leaves redb refusing until the file is reopened.
                    let _ = log.reopen();
                }
            }
        }
        rx.await.map_err(|_| AppendError::WriterGone)?
    }

    /// Removes idempotency records created before `before_ms` (the end of their
    /// retention window) and returns how many were removed. A retry arriving after
    /// that runs as a new request.
    pub async fn purge_idempotency(&self, before_ms: i64) -> Result<u64, AppendError> {
        match &self.path {
            WritePath::Thread(tx) => {
                let (reply, rx) = oneshot::channel();
                tx.send(Job::PurgeIdempotency { before_ms, reply }).await.map_err(|_| AppendError::WriterGone)?;
                rx.await.map_err(|_| AppendError::WriterGone)?
            }
            WritePath::Inline(log) => {
                purge_idempotency(log, before_ms).map_err(|e| AppendError::Storage(e.to_string()))
            }
        }
    }

    /// True while the writer thread is running.
    pub fn is_running(&self) -> bool {
        match &self.path {
            WritePath::Thread(tx) => !tx.is_closed(),
            WritePath::Inline(_) => true,
        }
    }
}

fn run(log: Log, mut rx: mpsc::Receiver<Job>) {
    // After a failed commit redb refuses everything until the file is reopened.
    let mut broken = false;
    loop {
        if broken {
            if !reopen_when_possible(&log, &mut rx) {
                return;
            }
            broken = false;
        }
        let Some(first) = rx.blocking_recv() else { return };
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let (mut appends, mut replies, mut purges) = (Vec::new(), Vec::new(), Vec::new());
        for job in jobs {
            match job {
                Job::Append { append, reply } => {
                    appends.push(*append);
                    replies.push(reply);
                }
                Job::PurgeIdempotency { before_ms, reply } => purges.push((before_ms, reply)),
            }
        }
        if !appends.is_empty() {
            broken = commit_batch(&log, appends, replies);
        }
        for (before_ms, reply) in purges {
            let _ = reply.send(purge_idempotency(&log, before_ms).map_err(|e| AppendError::Storage(e.to_string())));
        }
    }
}

/// How often a broken log file is reopened.
const REOPEN_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Reopens the log until it works, answering whatever arrives meanwhile with the
/// fault (nothing is acknowledged that is not durable). False when every sender is gone.
fn reopen_when_possible(log: &Log, rx: &mut mpsc::Receiver<Job>) -> bool {
    loop {
        match log.reopen() {
            Ok(()) => {
                tracing::info!("log file reopened after a write failure");
                metrics::counter!("dispatch_log_reopens_total").increment(1);
                return true;
            }
            Err(e) => tracing::debug!(error = %e, "log file not reopened yet"),
        }
        let fault = log.fault().unwrap_or_else(|| "the log file is being reopened".into());
        loop {
            match rx.try_recv() {
                Ok(Job::Append { reply, .. }) => drop(reply.send(Err(AppendError::Storage(fault.clone())))),
                Ok(Job::PurgeIdempotency { reply, .. }) => drop(reply.send(Err(AppendError::Storage(fault.clone())))),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
            }
        }
        std::thread::sleep(REOPEN_EVERY);
    }
}

/// Commits one batch and answers its callers; true when storage failed (the file
/// must be reopened before the next commit).
fn commit_batch(log: &Log, appends: Vec<Append>, replies: Vec<oneshot::Sender<Result<Appended, AppendError>>>) -> bool {
    let started = Instant::now();
    let size = appends.len();
    let (results, failed) = match commit(log, appends) {
        Ok(results) => {
            log.set_fault(None);
            let last = results.iter().flatten().flat_map(|a| a.records.last()).map(|r| r.global_position).max();
            if let Some(last) = last {
                log.committed_up_to(last);
            }
            (results, false)
        }
        Err(e) => {
            tracing::error!(error = %e, batch = size, "log commit failed; nothing of it is acknowledged");
            metrics::counter!("dispatch_log_commit_failures_total").increment(1);
            let broken = !matches!(e, StorageError::Corrupt { .. });
            if broken {
                log.set_fault(Some(format!("writes are failing: {e}")));
            }
            ((0..size).map(|_| Err(AppendError::Storage(e.to_string()))).collect(), broken)
        }
    };
    metrics::histogram!("dispatch_log_commit_duration_seconds").record(started.elapsed().as_secs_f64());
    metrics::histogram!("dispatch_log_commit_batch_size").record(size as f64);
    metrics::counter!("dispatch_log_commits_total").increment(1);
    for (reply, result) in replies.into_iter().zip(results) {
        let _ = reply.send(result);
    }
    failed
}

fn purge_idempotency(log: &Log, before_ms: i64) -> Result<u64, StorageError> {
    let db = log.db()?;
    let txn = db.begin_write()?;
    let mut removed = 0;
    {
        let mut table = txn.open_table(IDEMPOTENCY)?;
        // An undecodable record is kept: it is evidence for whoever investigates.
        table.retain(|_, v| {
            let keep = IdempotencyRecord::decode(v).map_or(true, |r| r.created_ms >= before_ms);
            removed += u64::from(!keep);
            keep
        })?;
    }
    txn.commit()?;
    Ok(removed)
}

/// The first claimed index key that is already taken, if any.
fn first_taken(
    indexes: &redb::Table<(&str, &str), &[u8]>,
    ops: &[IndexOp],
) -> Result<Option<(String, String)>, StorageError> {
    for op in ops {
        if let IndexOp::Claim { index, key, .. } = op
            && indexes.get((index.as_str(), key.as_str()))?.is_some()
        {
            return Ok(Some((index.clone(), key.clone())));
        }
    }
    Ok(None)
}

/// Validates and writes every append in one transaction, then commits with fsync.
/// An append that fails validation is skipped whole; the others still commit.
/// The tables one commit writes, opened once per transaction.
struct Tables<'t> {
    events: redb::Table<'t, (&'static str, u64), &'static [u8]>,
    global: redb::Table<'t, u64, (&'static str, u64)>,
    streams: redb::Table<'t, &'static str, &'static [u8]>,
    idem: redb::Table<'t, (&'static str, &'static str, &'static str), &'static [u8]>,
    snapshots: redb::Table<'t, &'static str, (u64, &'static [u8])>,
    indexes: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
}

/// What the appends of one batch have done so far.
struct Batch {
    next_global: u64,
    heads: HashMap<String, (u64, Hash)>,
    keys: HashSet<IdempotencyKey>,
}

fn commit(log: &Log, appends: Vec<Append>) -> Result<Vec<Result<Appended, AppendError>>, StorageError> {
    let db = log.db()?;
    let txn = db.begin_write()?;
    let mut results = Vec::with_capacity(appends.len());
    {
        let mut t = Tables {
            events: txn.open_table(EVENTS)?,
            global: txn.open_table(GLOBAL)?,
            streams: txn.open_table(STREAMS)?,
            idem: txn.open_table(IDEMPOTENCY)?,
            snapshots: txn.open_table(SNAPSHOTS)?,
            indexes: txn.open_table(INDEXES)?,
        };
        let next_global = match t.global.last()? {
            Some((k, _)) => k.value() + 1,
            None => 1,
        };
        let mut batch = Batch { next_global, heads: HashMap::new(), keys: HashSet::new() };
        for append in appends {
            // Validate first: nothing of a refused append is written.
            let head = match batch.heads.get(&append.stream) {
                Some(h) => *h,
                None => match t.streams.get(append.stream.as_str())? {
                    Some(v) => StreamHead::decode(v.value())?.into(),
                    None => (0, [0; 32]),
                },
            };
            results.push(match refusal(&t, &batch, &append, head)? {
                Some(refused) => Err(refused),
                None => Ok(write(&mut t, &mut batch, append, head)?),
            });
        }
    }
    txn.commit()?;
    Ok(results)
}

/// Why `append` cannot be written on top of `head`, if it cannot.
fn refusal(
    t: &Tables<'_>,
    batch: &Batch,
    append: &Append,
    head: (u64, Hash),
) -> Result<Option<AppendError>, StorageError> {
    let conflict = || AppendError::SequenceConflict {
        stream: append.stream.clone(),
        expected: append.expected_seq,
        actual: head.0,
    };
    if head.0 != append.expected_seq {
        return Ok(Some(conflict()));
    }
    if let Some((key, _)) = &append.idempotency {
        if let Some(existing) = t.idem.get(key.as_tuple())? {
            return Ok(Some(AppendError::IdempotencyKeyExists(IdempotencyRecord::decode(existing.value())?)));
        }
        if batch.keys.contains(key) {
            // Only possible for concurrent duplicates; the caller re-reads the record.
            return Ok(Some(conflict()));
        }
    }
    Ok(first_taken(&t.indexes, &append.index_ops)?.map(|(index, key)| AppendError::Taken { index, key }))
}

/// Writes a validated append: its events (sealed into the stream's hash chain and the
/// global order), the stream head, snapshot, index changes and idempotency record.
fn write(t: &mut Tables<'_>, batch: &mut Batch, append: Append, head: (u64, Hash)) -> Result<Appended, StorageError> {
    let (mut seq, mut prev) = head;
    let mut records = Vec::with_capacity(append.events.len());
    for e in append.events {
        seq += 1;
        let record = EventRecord::seal(&append.stream, seq, batch.next_global, prev, e);
        t.events.insert((append.stream.as_str(), seq), record.encode().as_slice())?;
        t.global.insert(batch.next_global, (append.stream.as_str(), seq))?;
        batch.next_global += 1;
        prev = record.hash;
        records.push(record);
    }
    if seq != head.0 {
        let encoded = bincode::encode_to_vec(StreamHead { seq, hash: prev }, config())
            .map_err(|e| StorageError::Corrupt { table: "streams", reason: e.to_string() })?;
        t.streams.insert(append.stream.as_str(), encoded.as_slice())?;
        batch.heads.insert(append.stream.clone(), (seq, prev));
    }
    if let Some(state) = &append.snapshot {
        t.snapshots.insert(append.stream.as_str(), (seq, state.as_slice()))?;
    }
    for op in &append.index_ops {
        match op {
            IndexOp::Put { index, key, value } | IndexOp::Claim { index, key, value } => {
                t.indexes.insert((index.as_str(), key.as_str()), value.as_slice())?;
            }
            IndexOp::Delete { index, key } => {
                t.indexes.remove((index.as_str(), key.as_str()))?;
            }
        }
    }
    if let Some((key, record)) = append.idempotency {
        let encoded = bincode::encode_to_vec(&record, config())
            .map_err(|e| StorageError::Corrupt { table: "idempotency", reason: e.to_string() })?;
        t.idem.insert(key.as_tuple(), encoded.as_slice())?;
        batch.keys.insert(key);
    }
    Ok(Appended { records })
}
