//! Gives memory freed by sleeping actors back to the operating system.
//!
//! glibc's allocator keeps what a process frees in its arenas for reuse and returns
//! little of it: after 60,000 ticket actors went to sleep an orchestrator stayed at
//! 802 MiB resident; `malloc_trim` took it to 217 MiB (`benches/run-actor-memory.sh`).
//! Actors sleep in the supervisors' sweeps, so the trim runs at the same pace.

use std::time::Duration;

/// Trims every `every`, forever. Runs on the runtime's own thread (no helper thread a
/// simulation would not drive); a trim walks the allocator's free lists (its duration
/// is logged at debug level; not yet measured on a large heap).
pub async fn return_freed_memory(every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // the first tick is at once: nothing has slept yet
    loop {
        ticks.tick().await;
        let started = std::time::Instant::now();
        let released = trim();
        tracing::debug!(released, took_ms = started.elapsed().as_millis() as u64, "returned freed memory");
    }
}

/// Whether any memory went back to the OS.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() -> bool {
    // SAFETY: malloc_trim takes a padding size and touches only the allocator's own state.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}
