//! A ticket's page (the dispatcher's detail and the technician's job packet are one
//! page: the actions on it are the ones the person's role and scope allow) and the
//! technician's list of jobs.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;

use super::pages::{Action, Actions, Chrome, Header};
use super::{Console, Viewer};
use crate::dto::tickets::CloseoutStatus;

#[derive(Deserialize)]
pub struct Window {
    pub start: String,
    pub end: String,
}

#[derive(Deserialize)]
pub struct ChecklistItem {
    pub item: String,
    pub done: bool,
}

#[derive(Deserialize)]
pub struct Evidence {
    pub kind: String,
    pub evidence_key: String,
    pub added_at: String,
    pub added_by: String,
}

#[derive(Deserialize)]
pub struct Actor {
    pub id: String,
    pub role: String,
}

#[derive(Deserialize)]
pub struct TimelineEntry {
    pub seq: u64,
    pub occurred_at: String,
    pub kind: String,
    pub actor: Actor,
    pub tool: String,
    pub before_state: Option<String>,
    pub after_state: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// `GET /v1/ux/technician/job-packet/{id}`, as the page reads it.
#[derive(Deserialize)]
struct Packet {
    #[serde(flatten)]
    ticket: Header,
    scope: String,
    window: Option<Window>,
    assignee: Option<String>,
    checklist: Vec<ChecklistItem>,
    closeout: CloseoutStatus,
    evidence: Vec<Evidence>,
    timeline: Vec<TimelineEntry>,
    actions: Vec<Action>,
}

/// The closeout panel's actions, when the person may take them.
pub struct Closing {
    pub evidence: Option<Action>,
    pub complete: Option<Action>,
    /// One key per panel form, fixed when the page is drawn.
    pub evidence_key: String,
    pub signature_key: String,
    pub complete_key: String,
}

#[derive(Template)]
#[template(path = "console/ticket.html")]
struct TicketPage {
    chrome: Chrome,
    ticket: Header,
    scope: String,
    window: Option<Window>,
    assignee: String,
    checklist: Vec<ChecklistItem>,
    closeout: CloseoutStatus,
    evidence: Vec<Evidence>,
    timeline: Vec<TimelineEntry>,
    actions: Actions,
    closing: Closing,
}

/// `GET /console/tickets/{id}`.
pub async fn page(
    State(console): State<Console>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let uri = format!("/v1/ux/technician/job-packet/{}", crate::http::path_segment(&id));
    let packet = console.fetch::<Packet>(&viewer, &uri).await?;
    let mut actions = packet.actions;
    let mut take = |tool: &str| {
        let at = actions.iter().position(|a| a.tool == tool && a.enabled)?;
        Some(actions.remove(at))
    };
    let closing = Closing {
        evidence: take("closeout.add_evidence"),
        complete: take("tech.complete"),
        evidence_key: uuid::Uuid::new_v4().to_string(),
        signature_key: uuid::Uuid::new_v4().to_string(),
        complete_key: uuid::Uuid::new_v4().to_string(),
    };
    let here =
        if viewer.principal.role == actors::policy::Role::Technician { "/console/jobs" } else { "/console/cockpit" };
    let page = TicketPage {
        chrome: Chrome::of(&viewer, "Ticket", here),
        actions: Actions::of(actions, "t", &packet.ticket.state),
        ticket: packet.ticket,
        scope: packet.scope,
        window: packet.window,
        assignee: packet.assignee.unwrap_or_else(|| "nobody yet".into()),
        checklist: packet.checklist,
        closeout: packet.closeout,
        evidence: packet.evidence,
        timeline: packet.timeline,
        closing,
    };
    Ok(viewer.page(page.render()))
}

/// A ticket in the technician's list.
#[derive(Deserialize)]
pub struct Job {
    pub id: String,
    pub state: String,
    pub priority: String,
    pub site_id: String,
    pub summary: String,
    pub technician_id: Option<String>,
    pub confirmed_window: Option<Window>,
}

#[derive(Deserialize)]
struct JobList {
    tickets: Vec<Job>,
}

#[derive(Template)]
#[template(path = "console/jobs.html")]
struct JobsPage {
    chrome: Chrome,
    jobs: Vec<Job>,
}

/// States in which a ticket is a technician's job.
const JOB_STATES: [&str; 4] = ["DISPATCHED", "IN_PROGRESS", "APPROVAL_REQUIRED", "COMPLETED_PENDING_VERIFICATION"];

/// `GET /console/jobs`: the tickets assigned to the signed-in technician (the first
/// page of each open state, which is more than one person works through in a day).
pub async fn jobs(State(console): State<Console>, viewer: Viewer) -> Result<Response, Response> {
    let mut jobs = Vec::new();
    for state in JOB_STATES {
        let list = console.fetch::<JobList>(&viewer, &format!("/v1/tickets?state={state}&limit=200")).await?;
        let mine = |t: &Job| t.technician_id.as_deref() == Some(viewer.principal.sub.as_str());
        jobs.extend(list.tickets.into_iter().filter(mine));
    }
    let page = JobsPage { chrome: Chrome::of(&viewer, "My jobs", "/console/jobs"), jobs };
    Ok(viewer.page(page.render()))
}
