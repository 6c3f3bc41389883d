//! The operator's screens: the handoff queue, one handoff with its decision and its
//! lane's controls, and the dead letters of lane callbacks with replay.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::pages::{Action, ActionForm, Chrome};
use super::{Console, Viewer};
use crate::dto::lanes::{Handoff, HandoffStatus, Lane, LaneStatus};
use crate::http::path_segment;

#[derive(Deserialize)]
struct HandoffList {
    handoffs: Vec<Handoff>,
    next_cursor: Option<String>,
}

/// The queue's filters and page, from its query string.
#[derive(Deserialize, Default)]
pub struct QueueQuery {
    #[serde(default)]
    queue: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    cursor: String,
}

#[derive(Template)]
#[template(path = "console/handoffs.html")]
struct QueuePage {
    chrome: Chrome,
    filter: QueueQuery,
    queues: Vec<String>,
    handoffs: Vec<Handoff>,
    next: Option<String>,
}

/// `GET /console/handoffs`: the open handoffs in the operator's queues, oldest first.
pub async fn queue(
    State(console): State<Console>,
    viewer: Viewer,
    Query(q): Query<QueueQuery>,
) -> Result<Response, Response> {
    let status = if q.status.is_empty() { "OPEN" } else { q.status.as_str() };
    let mut uri = format!("/v1/handoffs?limit=100&status={}", path_segment(status));
    for (name, value) in [("queue", &q.queue), ("cursor", &q.cursor)] {
        if !value.is_empty() {
            uri.push_str(&format!("&{name}={}", path_segment(value)));
        }
    }
    let list = console.fetch::<HandoffList>(&viewer, &uri).await?;
    let next = list.next_cursor.map(|c| {
        let query = [("queue", q.queue.as_str()), ("status", status), ("cursor", c.as_str())];
        format!("/console/handoffs?{}", serde_urlencoded::to_string(query).unwrap_or_default())
    });
    let page = QueuePage {
        chrome: Chrome::of(&viewer, "Handoffs", "/console/handoffs"),
        queues: viewer.principal.queues.clone(),
        filter: QueueQuery { status: status.to_owned(), ..q },
        handoffs: list.handoffs,
        next,
    };
    Ok(viewer.page(page.render()))
}

#[derive(Template)]
#[template(path = "console/handoff.html")]
struct HandoffPage {
    chrome: Chrome,
    handoff: Handoff,
    lane: Lane,
    /// The state the agent saved at the handoff's checkpoint.
    checkpoint_state: Option<String>,
    decide: Option<ActionForm>,
    controls: Vec<ActionForm>,
}

/// `GET /console/handoffs/{id}`: context and checkpoint, the decision, the lane's controls.
pub async fn handoff(
    State(console): State<Console>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let id = path_segment(&id);
    let handoff = console.fetch::<Handoff>(&viewer, &format!("/v1/handoffs/{id}")).await?;
    let lane_id = path_segment(&handoff.lane_id);
    let lane = console.fetch::<Lane>(&viewer, &format!("/v1/lanes/{lane_id}")).await?;
    let queues: Vec<String> =
        viewer.principal.queues.iter().filter(|q| **q != handoff.request.queue && *q != "*").cloned().collect();
    let form = |tool: &str, path: String| {
        let action =
            Action { tool: tool.to_owned(), method: "POST".into(), path, enabled: true, disabled_reason: None };
        ActionForm::of(action, "h", &queues)
    };
    let decide =
        (handoff.status == HandoffStatus::Open).then(|| form("handoff.decide", format!("/v1/handoffs/{id}/decision")));
    let controls = lane_controls(&lane)
        .into_iter()
        .map(|(tool, path)| form(tool, format!("/v1/lanes/{lane_id}/{path}")))
        .collect();
    let checkpoint_state = lane
        .checkpoints
        .iter()
        .rev()
        .find(|c| c.name == handoff.request.checkpoint)
        .map(|c| super::view::pretty(&c.state));
    let page = HandoffPage {
        chrome: Chrome::of(&viewer, "Handoff", "/console/handoffs"),
        handoff,
        lane,
        checkpoint_state,
        decide,
        controls,
    };
    Ok(viewer.page(page.render()))
}

/// The controls that apply to a lane in its present status (tool, route under the lane).
fn lane_controls(lane: &Lane) -> Vec<(&'static str, &'static str)> {
    let mut controls = Vec::new();
    match lane.status {
        LaneStatus::Closed => return controls,
        LaneStatus::Blocked => controls.push(("lane.unblock", "unblock")),
        LaneStatus::Active | LaneStatus::WaitingHuman => controls.push(("lane.escalate", "escalate")),
    }
    match lane.owner {
        None => controls.push(("lane.assign_owner", "assign-owner")),
        Some(_) => controls.push(("lane.reassign_owner", "reassign-owner")),
    }
    controls.push(("lane.override_close", "override-close"));
    controls
}

#[derive(Deserialize)]
struct DeadLetterList {
    deliveries: Vec<crate::lanes::Delivery>,
    next_cursor: Option<String>,
}

#[derive(Template)]
#[template(path = "console/dead_letters.html")]
struct DeadLettersPage {
    chrome: Chrome,
    letters: Vec<(crate::lanes::Delivery, ActionForm)>,
    next: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct CursorQuery {
    #[serde(default)]
    cursor: String,
}

/// `GET /console/dead-letters`: callbacks that failed every attempt, each with replay.
pub async fn dead_letters(
    State(console): State<Console>,
    viewer: Viewer,
    Query(q): Query<CursorQuery>,
) -> Result<Response, Response> {
    let mut uri = "/v1/dlq?limit=100".to_owned();
    if !q.cursor.is_empty() {
        uri.push_str(&format!("&cursor={}", path_segment(&q.cursor)));
    }
    let list = console.fetch::<DeadLetterList>(&viewer, &uri).await?;
    let letters = list
        .deliveries
        .into_iter()
        .map(|d| {
            let path = format!("/v1/dlq/{}/replay", path_segment(&d.id));
            let action =
                Action { tool: "dlq.replay".into(), method: "POST".into(), path, enabled: true, disabled_reason: None };
            (d, ActionForm::of(action, "d", &[]))
        })
        .collect();
    let next = list.next_cursor.map(|c| format!("/console/dead-letters?cursor={}", path_segment(&c)));
    let page = DeadLettersPage { chrome: Chrome::of(&viewer, "Dead letters", "/console/dead-letters"), letters, next };
    Ok(viewer.page(page.render()))
}
