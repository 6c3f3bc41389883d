//! Helpers shared by the storage tests.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing
#![allow(dead_code)]

use dispatch_storage::{ActorRef, Append, NewEvent};

pub fn event(kind: &str, n: u64) -> NewEvent {
    NewEvent {
        event_id: format!("evt-{kind}-{n}"),
        time_ms: 1_700_000_000_000 + n as i64,
        actor: ActorRef { kind: "user".into(), id: "u1".into(), role: "dispatcher".into() },
        tool: "test.append".into(),
        request_id: format!("req-{n}"),
        correlation_id: None,
        trace_id: None,
        kind: kind.into(),
        from_state: None,
        to_state: None,
        payload: format!("{{\"n\":{n}}}").into_bytes(),
    }
}

pub fn append(stream: &str, expected_seq: u64, n: u64) -> Append {
    Append { stream: stream.into(), expected_seq, events: vec![event("tested", n)], ..Default::default() }
}
