//! The wall clock of this process, in milliseconds since the Unix epoch: one home for
//! the reading the node's edges stamp records with (domain rules take time as input).

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
