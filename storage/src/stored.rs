//! What the log stores besides events: each stream's head and the first answer to
//! each idempotency key. Read by the log, written by the writer.

use bincode::{Decode, Encode};

use crate::StorageError;
use crate::record::{Hash, decode};

/// Scope of an idempotency key: the same key from another principal or on another
/// route is a different request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    pub principal: String,
    pub route: String,
    pub key: String,
}

impl IdempotencyKey {
    pub(crate) fn as_tuple(&self) -> (&str, &str, &str) {
        (&self.principal, &self.route, &self.key)
    }
}

/// What was answered to the first request with a key, so a retry gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct IdempotencyRecord {
    /// SHA-256 of the canonical request (method, path, canonical JSON body).
    pub request_hash: Hash,
    pub status: u16,
    pub response: StoredResponse,
    pub created_ms: i64,
}

/// The first answer's body, or where to rebuild it from.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum StoredResponse {
    /// The body bytes as sent.
    Body(Vec<u8>),
    /// The body was the state of `stream` right after event `seq`; the owner of the
    /// stream rebuilds it by replaying, so the state is not stored a second time.
    StreamState { stream: String, seq: u64 },
    /// The answer was a command's outcome: the events `first..=last` of `stream` and
    /// the state right after `last`, both rebuilt from the log.
    Command { stream: String, first: u64, last: u64 },
}

impl IdempotencyRecord {
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StorageError> {
        decode("idempotency", bytes)
    }
}

#[derive(Debug, Clone, Copy, Encode, Decode)]
pub(crate) struct StreamHead {
    pub(crate) seq: u64,
    pub(crate) hash: Hash,
}

impl StreamHead {
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StorageError> {
        decode("streams", bytes)
    }
}

impl From<StreamHead> for (u64, Hash) {
    fn from(h: StreamHead) -> Self {
        (h.seq, h.hash)
    }
}
