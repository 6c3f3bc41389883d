//! A ticket's service-level target: the time allowed from creation to completion, by
//! priority, and where the ticket stands against it at a given moment.

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use super::model::{Priority, Ticket};

/// Time allowed from creation to completion.
pub fn target(priority: Priority) -> Duration {
    match priority {
        Priority::Emergency => Duration::hours(2),
        Priority::High => Duration::hours(8),
        Priority::Normal => Duration::hours(48),
        Priority::Low => Duration::hours(120),
    }
}

#[derive(Serialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SlaStatus {
    OnTrack,
    /// Less than a quarter of the target time is left.
    AtRisk,
    Breached,
}

/// When the ticket is due, the time left at `now` (negative once breached), and the verdict.
pub fn standing(t: &Ticket, now: OffsetDateTime) -> (OffsetDateTime, Duration, SlaStatus) {
    let target = target(t.priority);
    let due = t.created_at + target;
    let remaining = due - now;
    let status = if remaining.is_negative() {
        SlaStatus::Breached
    } else if remaining < target / 4 {
        SlaStatus::AtRisk
    } else {
        SlaStatus::OnTrack
    };
    (due, remaining, status)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use uuid::Uuid;

    use super::*;
    use crate::ticket::{TicketEvent, apply};

    #[test]
    fn a_ticket_is_on_track_then_at_risk_in_its_last_quarter_then_breached() {
        let created = datetime!(2026-11-22 08:00 UTC);
        let event = TicketEvent::Created {
            account_id: "a".into(),
            site_id: "s".into(),
            incident_type: "LOCKOUT".into(),
            summary: "locked out".into(),
            priority: Priority::Normal,
        };
        let Some(t) = apply(None, Uuid::nil(), 1, created, &event) else { panic!("created") };
        let at = |hours: i64| standing(&t, created + Duration::hours(hours));
        assert_eq!(at(0).0, created + Duration::hours(48), "NORMAL: 48 hours");
        for (hours, status) in
            [(1, SlaStatus::OnTrack), (36, SlaStatus::OnTrack), (37, SlaStatus::AtRisk), (49, SlaStatus::Breached)]
        {
            assert_eq!(at(hours).2, status, "after {hours} h");
        }
        assert_eq!(at(49).1, Duration::hours(-1));
        assert_eq!(target(Priority::Emergency), Duration::hours(2));
    }
}
