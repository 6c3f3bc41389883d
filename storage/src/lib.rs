//! The embedded log of dispatch: one redb file holding every entity's events as
//! per-stream hash chains, a global order, idempotency records, snapshots and
//! derived indexes, plus content-addressed blobs beside it.
//!
//! Writes go through a single [`LogWriter`] thread that group-commits everything
//! queued since its last commit in one fsynced transaction; a caller is answered
//! only once its commit is durable. Reads open their own read transactions on the
//! shared [`Log`] and never wait for the writer.

mod backup;
mod blobs;
mod error;
mod faults;
mod log;
mod record;
mod stored;
mod writer;

pub use backup::LogSummary;
pub use blobs::{BlobError, BlobStore, BlobUri};
pub use error::StorageError;
pub use faults::Faults;
pub use log::{ChainBreak, FORMAT_VERSION, Log};
pub use record::{ActorRef, EventRecord, Hash, NewEvent, RECORD_VERSION};
pub use stored::{IdempotencyKey, IdempotencyRecord, StoredResponse};
pub use writer::{Append, AppendError, Appended, IndexOp, LogWriter, WriterHandle};
