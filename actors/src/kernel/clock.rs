//! Time and ids, injected: production reads the wall clock and mints UUIDv7s; tests and
//! the simulator pass their own, so a run can be replayed exactly. `apply` never calls
//! these: the time of a change is stored in its event.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use uuid::Uuid;

/// Milliseconds since the Unix epoch, from wherever this run takes its time.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
}

/// Fresh unique ids (event ids, entity ids, delivery ids), time-ordered.
pub trait Ids: Send + Sync + 'static {
    fn next_id(&self) -> Uuid;
}

/// The machine's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
    }
}

/// Random UUIDv7s (time-ordered, so ids sort by creation).
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

impl Ids for RandomIds {
    fn next_id(&self) -> Uuid {
        Uuid::now_v7()
    }
}

/// A clock that moves only when told to (tests and simulations).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn at(ms: i64) -> Arc<Self> {
        Arc::new(ManualClock(AtomicI64::new(ms)))
    }

    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Ids from a seed and a counter: the same seed gives the same ids in the same order
/// (deterministic simulations). Shaped as UUIDv8 so they never collide with v7 ids.
#[derive(Debug)]
pub struct SeededIds {
    seed: u64,
    next: AtomicU64,
}

impl SeededIds {
    pub fn new(seed: u64) -> Arc<Self> {
        Arc::new(SeededIds { seed, next: AtomicU64::new(0) })
    }
}

impl Ids for SeededIds {
    fn next_id(&self) -> Uuid {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&n.to_be_bytes());
        bytes[8..].copy_from_slice(&self.seed.to_be_bytes());
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    }
}
