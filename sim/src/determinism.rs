//! What makes a run repeat: simulated time for the kernel and per-host seeds.

use dispatch_node::actors::kernel::Clock;

/// The simulation's clock: simulated time since the run's first reading, from a fixed
/// epoch, so event times repeat run to run and never go back across a restart — unless
/// a test makes the wall clock jump (an NTP step, a VM resumed), as [`SimClock::jump`] does.
#[derive(Default)]
pub(crate) struct SimClock {
    start: std::sync::OnceLock<tokio::time::Instant>,
    jumped_ms: std::sync::atomic::AtomicI64,
}

impl SimClock {
    /// Moves the wall clock by `ms` (back when negative); simulated time runs on.
    pub(crate) fn jump(&self, ms: i64) {
        self.jumped_ms.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

/// 2026-01-01T00:00:00Z.
const SIM_EPOCH_MS: i64 = 1_767_225_600_000;

impl Clock for SimClock {
    fn now_ms(&self) -> i64 {
        let start = self.start.get_or_init(tokio::time::Instant::now);
        SIM_EPOCH_MS + start.elapsed().as_millis() as i64 + self.jumped_ms.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Per-host quinn seed from the scenario seed, so runs repeat.
pub(crate) fn quinn_seed(seed: u64, host: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
    for b in host.bytes() {
        x = (x ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    for chunk in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    out
}
