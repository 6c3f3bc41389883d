use thiserror::Error;

/// Anything that can go wrong opening, reading or writing the log file.
#[derive(Debug, Error)]
pub enum StorageError {
    /// redb refused or failed an operation (I/O, corruption, lock held by another process).
    #[error("database: {0}")]
    Database(#[from] redb::Error),
    /// A stored record could not be decoded: the file was written by an incompatible
    /// version or is damaged.
    #[error("corrupt record in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
    /// Filesystem error outside redb (data dir, blobs).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The file was written by a newer dispatch, in a layout this one does not know.
    #[error(
        "the log was written in data format {found}, newer than this dispatch reads ({supported}): \
         run the newer dispatch, or restore a backup made with this one"
    )]
    NewerFormat { found: u32, supported: u32 },
    /// The log cannot be used right now (it is being reopened after a write failure).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StorageError {
            fn from(e: $t) -> Self { StorageError::Database(e.into()) }
        }
    )*};
}
from_redb!(redb::DatabaseError, redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);
