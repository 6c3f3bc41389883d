//! What an entity is to the kernel: its stream, its pure rules, the indexes its events
//! imply. An entity module implements this trait and writes no shell code: the kernel
//! sequences `decide`, the durable append and `apply` for every kind the same way.

use std::fmt::{Debug, Display};
use std::hash::Hash;
use std::str::FromStr;

use serde::Serialize;
use serde::de::DeserializeOwned;
use storage::IndexOp;

use super::clock::Ids;
use super::origin::Origin;

/// Everything `decide` and `index_ops` may consult besides state and command.
pub struct Context<'a, E: Entity> {
    pub id: &'a E::Id,
    /// When the command is decided (from the injected clock); becomes the events' time.
    pub now_ms: i64,
    pub origin: &'a Origin,
    /// For ids the rules mint (deliveries, attempts): injected, never `Uuid::now_v7()`.
    pub ids: &'a dyn Ids,
}

/// Where an event sits: `apply` reads time from here, never from a clock, so a stream
/// replayed anywhere gives the same state.
#[derive(Debug, Clone, Copy)]
pub struct At<'a, Id> {
    pub id: &'a Id,
    pub seq: u64,
    pub time_ms: i64,
}

/// One kind of entity (ticket, lane, ...): one stream per id, one actor per live id.
/// (The kind itself is a marker type: `Debug + Clone` only so outcomes can derive them.)
pub trait Entity: Sized + Send + Sync + Clone + Debug + 'static {
    /// The kind, in metric labels and log lines.
    const KIND: &'static str;
    /// Store the state as the stream's snapshot every this many events, so waking
    /// replays at most this many; `None` replays the whole stream. A kind that sets it
    /// implements `to_snapshot` and `from_snapshot`.
    const SNAPSHOT_EVERY: Option<u64> = None;

    type Id: Clone + Eq + Hash + Display + FromStr + Debug + Send + Sync + 'static;
    type State: Clone + Send + Sync + 'static;
    type Command: Send + Sync + 'static;
    /// Stored in the log as JSON.
    type Event: Serialize + DeserializeOwned + Send + Sync + 'static;
    type Error: Clone + Debug + Display + Send + Sync + 'static;
    /// What the rules consult that is not in the stream (templates, the blob store),
    /// shared by every actor of the kind.
    type Deps: Send + Sync + 'static;

    /// The kind's streams are `<STREAM>/<id>` (`ticket/…`, `lane/…`).
    const STREAM: &'static str;

    /// The log stream of one entity.
    fn stream(id: &Self::Id) -> String {
        format!("{}/{id}", Self::STREAM)
    }

    /// The id a stream name belongs to (the inverse of `stream`): a retried create
    /// carries a freshly minted id, so its replay finds the entity by the stored stream.
    fn id_of(stream: &str) -> Option<Self::Id> {
        stream.strip_prefix(Self::STREAM)?.strip_prefix('/')?.parse().ok()
    }

    /// Whether the command may bring a new entity into existence (others on an
    /// unknown id are refused without waking an actor).
    fn creates(command: &Self::Command) -> bool;

    /// The refusal for a command on an entity that does not exist.
    fn not_found() -> Self::Error;

    /// Checks the command against the state (None before creation), including who
    /// asks, and answers with the events it causes or why it is refused. Pure.
    fn decide(
        deps: &Self::Deps,
        cx: &Context<'_, Self>,
        state: Option<&Self::State>,
        command: &Self::Command,
    ) -> Result<Vec<Self::Event>, Self::Error>;

    /// The state after one event. Pure: time and sequence come from `at`.
    fn apply(state: Option<Self::State>, at: At<'_, Self::Id>, event: &Self::Event) -> Option<Self::State>;

    /// The event's kind as recorded in the log (`ticket.triaged`, ...).
    fn event_kind(event: &Self::Event) -> &'static str;

    /// The state as stored in a snapshot.
    fn to_snapshot(_state: &Self::State) -> Option<Result<Vec<u8>, String>> {
        None
    }

    /// A snapshot back to the state.
    fn from_snapshot(_bytes: &[u8]) -> Option<Result<Self::State, String>> {
        None
    }

    /// The state's name in the audit record's from/to columns.
    fn state_name(state: &Self::State) -> &'static str;

    /// Index changes the events imply, written in the same transaction.
    fn index_ops(
        _cx: &Context<'_, Self>,
        _before: Option<&Self::State>,
        _after: &Self::State,
        _events: &[Self::Event],
    ) -> Vec<IndexOp> {
        Vec::new()
    }

    /// A state that takes no more commands: its actor is passivated at once.
    fn is_final(_state: &Self::State) -> bool {
        false
    }

    /// Runs after the events are durable (metrics, wake-ups). Must not fail.
    fn committed(_deps: &Self::Deps, _before: Option<&Self::State>, _after: &Self::State, _events: &[Self::Event]) {}

    /// The refusal when a uniqueness claim of the append found its key taken.
    fn claim_taken(_key: String) -> Option<Self::Error> {
        None
    }
}
