//! What templates call to show values: times, enum names, JSON.

/// `ms` since the epoch as RFC 3339; the page's script shows it in the browser's zone.
pub fn when(ms: &i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(*ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// An enum's name as the API writes it (`WAITING_HUMAN`, `approve`).
pub fn name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// JSON as a person reads it.
pub fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_as_the_api_writes_them() {
        assert_eq!(when(&1_796_600_000_123), "2026-12-06T23:33:20.123Z");
        assert_eq!(name(&crate::dto::lanes::LaneStatus::WaitingHuman), "WAITING_HUMAN");
        assert_eq!(name(&crate::dto::lanes::DecisionAction::AddContext), "add_context");
    }
}
