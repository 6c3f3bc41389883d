//! Wall-clock milliseconds for the node's edges (request deadlines, timer scans,
//! receipts). Commands take their time from the kernel's injected `Clock` instead.

use actors::kernel::{Clock, SystemClock};

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> i64 {
    SystemClock.now_ms()
}
