//! `/metrics` after real traffic: the documented series exist and the exposition
//! passes `promtool check metrics` (installed by .ci/run from Debian's prometheus).

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use serde_json::json;
use support::{Crew, Server};

#[tokio::test]
async fn metrics_cover_requests_commits_and_transitions_and_pass_promtool() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let crew = Crew::new(&s).await;
    let id = support::new_ticket(&s, &crew.dispatcher).await;
    let triage = json!({ "workflow_outcome": "TRIAGED" });
    s.send("POST", &format!("/v1/tickets/{id}/triage"), &crew.dispatcher, Some("t1"), Some(triage.clone())).await;
    s.send("POST", &format!("/v1/tickets/{id}/triage"), &crew.dispatcher, Some("t1"), Some(triage)).await;
    s.send("POST", &format!("/v1/tickets/{id}/close"), &crew.dispatcher, Some("c1"), Some(json!({}))).await;

    let text = support::get(format!("{}/metrics", s.url)).await.unwrap().text().await.unwrap();
    for series in [
        "dispatch_http_requests_total{method=\"POST\",route=\"/v1/tickets/{id}/triage\",status=\"200\"} 2",
        "dispatch_ticket_transitions_total{from=\"NEW\",to=\"TRIAGED\"} 1",
        "dispatch_ticket_transitions_total{from=\"NONE\",to=\"NEW\"} 1",
        "dispatch_idempotency_replays_total 1",
        "dispatch_api_errors_total{code=\"FORBIDDEN\"} 1",
        "dispatch_live_actors{kind=\"ticket\"} 1",
        "dispatch_log_commit_duration_seconds_bucket",
        "dispatch_log_commit_batch_size_bucket",
        "dispatch_http_request_duration_seconds_bucket",
        "dispatch_tickets{state=\"TRIAGED\"} 1",
        "dispatch_tickets{state=\"NEW\"} 0",
        "dispatch_data_dir_free_bytes ",
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }

    if support::have_prometheus_tool("promtool") {
        support::promtool_check(&text, "the orchestrator");
    }
    // After a restart the gauge of tickets by state is counted from the log.
    s.stop();
    let s = Server::start(dir.path());
    let text = support::get(format!("{}/metrics", s.url)).await.unwrap().text().await.unwrap();
    assert!(text.contains("dispatch_tickets{state=\"TRIAGED\"} 1"), "{text}");
}
