//! The event record: what one stored event is, and how its hash is computed.

use bincode::{Decode, Encode};
use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Version of the on-disk record layout; bumped when fields change.
pub const RECORD_VERSION: u8 = 1;

/// Who caused an event: kind of principal (user, service, system), its id and role.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ActorRef {
    pub kind: String,
    pub id: String,
    pub role: String,
}

/// An event as a caller submits it; the writer assigns sequence, position and hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub event_id: String,
    pub time_ms: i64,
    pub actor: ActorRef,
    pub tool: String,
    pub request_id: String,
    pub correlation_id: Option<String>,
    pub trace_id: Option<String>,
    pub kind: String,
    /// Entity state before and after the event, for entities that have one.
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    /// Domain payload, JSON-encoded by the owning domain module.
    pub payload: Vec<u8>,
}

/// One stored event: a link in its stream's hash chain and a position in the global order.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct EventRecord {
    pub version: u8,
    pub event_id: String,
    pub stream: String,
    pub seq: u64,
    pub global_position: u64,
    pub time_ms: i64,
    pub actor: ActorRef,
    pub tool: String,
    pub request_id: String,
    pub correlation_id: Option<String>,
    pub trace_id: Option<String>,
    pub kind: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub payload: Vec<u8>,
    pub prev_hash: Hash,
    pub hash: Hash,
}

/// Largest value any stored record may claim to hold. A corrupt length inside a
/// record is refused by bincode before it allocates (the encoding is unchanged).
pub const MAX_RECORD: usize = 16 << 20;

pub(crate) type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_RECORD>,
>;

pub(crate) fn config() -> Config {
    bincode::config::standard().with_limit::<MAX_RECORD>()
}

impl EventRecord {
    pub(crate) fn seal(stream: &str, seq: u64, global_position: u64, prev_hash: Hash, e: NewEvent) -> Self {
        let mut record = EventRecord {
            version: RECORD_VERSION,
            event_id: e.event_id,
            stream: stream.to_owned(),
            seq,
            global_position,
            time_ms: e.time_ms,
            actor: e.actor,
            tool: e.tool,
            request_id: e.request_id,
            correlation_id: e.correlation_id,
            trace_id: e.trace_id,
            kind: e.kind,
            from_state: e.from_state,
            to_state: e.to_state,
            payload: e.payload,
            prev_hash,
            hash: [0; 32],
        };
        record.hash = record.compute_hash();
        record
    }

    /// SHA-256 over every field but `hash` itself (`prev_hash` included), so a change
    /// to any stored event breaks every later link of its stream.
    pub fn compute_hash(&self) -> Hash {
        let mut unsealed = self.clone();
        unsealed.hash = [0; 32];
        let bytes =
            bincode::encode_to_vec(&unsealed, config()).expect("encoding plain fields into a Vec is infallible");
        Sha256::digest(&bytes).into()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        bincode::encode_to_vec(self, config()).expect("encoding plain fields into a Vec is infallible")
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, crate::StorageError> {
        bincode::decode_from_slice(bytes, config())
            .map(|(r, _)| r)
            .map_err(|e| crate::StorageError::Corrupt { table: "events", reason: e.to_string() })
    }
}

/// Decodes a stored value of `table`; a value that does not decode is corruption.
pub(crate) fn decode<T: bincode::Decode<()>>(table: &'static str, bytes: &[u8]) -> Result<T, crate::StorageError> {
    bincode::decode_from_slice(bytes, config())
        .map(|(v, _)| v)
        .map_err(|e| crate::StorageError::Corrupt { table, reason: e.to_string() })
}
