//! Nodes and tasks: the worker nodes with their state, configuration and running jobs
//! (drain and remove for admins), the task list with a form to run one, and a task's
//! attempts, output and exit code.

use std::collections::BTreeMap;

use actors::policy::Role;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::pages::{Action, ActionForm, Chrome};
use super::{Console, Viewer};
use crate::dto::nodes::NodeView;
use crate::dto::tasks::{AttemptOutcome, Task, TaskState};
use crate::http::path_segment;

/// A form for `tool` at `path` (the caller's role was checked by the page that offers it;
/// the route checks again).
fn form(tool: &str, path: String) -> ActionForm {
    let action = Action { tool: tool.to_owned(), method: "POST".into(), path, enabled: true, disabled_reason: None };
    ActionForm::of(action, &tool.replace('.', "-"), &[])
}

#[derive(Deserialize)]
struct NodeList {
    nodes: Vec<NodeView>,
}

#[derive(Deserialize)]
struct TaskList {
    tasks: Vec<Task>,
    next_cursor: Option<String>,
}

/// A node as the page shows it.
pub struct NodeRow {
    pub node: NodeView,
    pub running: usize,
    pub controls: Vec<ActionForm>,
}

#[derive(Template)]
#[template(path = "console/nodes.html")]
struct NodesPage {
    chrome: Chrome,
    nodes: Vec<NodeRow>,
    /// Whether the viewer may list tasks (else running jobs are not counted).
    counts_jobs: bool,
    /// Whether the viewer may drain and remove nodes.
    admin: bool,
}

/// `GET /console/nodes`.
pub async fn nodes(State(console): State<Console>, viewer: Viewer) -> Result<Response, Response> {
    let list = console.fetch::<NodeList>(&viewer, "/v1/nodes?limit=1000").await?;
    let counts_jobs = matches!(viewer.principal.role, Role::Operator | Role::Admin);
    let mut running: BTreeMap<String, usize> = BTreeMap::new();
    if counts_jobs && let Ok(tasks) = console.read::<TaskList>(&viewer, "/v1/tasks?state=RUNNING&limit=1000").await {
        for node in tasks.tasks.iter().filter_map(|t| t.attempts.last()).map(|a| a.node.clone()) {
            *running.entry(node).or_default() += 1;
        }
    }
    let admin = viewer.principal.role == Role::Admin;
    let nodes = list
        .nodes
        .into_iter()
        .map(|node| {
            let id = path_segment(&node.node.id);
            let controls = match admin {
                true => vec![
                    form("node.drain", format!("/v1/nodes/{id}/drain")),
                    form("node.remove", format!("/v1/nodes/{id}/remove")),
                ],
                false => vec![],
            };
            NodeRow { running: running.get(&node.node.id).copied().unwrap_or(0), node, controls }
        })
        .collect();
    let page = NodesPage { chrome: Chrome::of(&viewer, "Nodes", "/console/nodes"), nodes, counts_jobs, admin };
    Ok(viewer.page(page.render()))
}

#[derive(Deserialize, Default)]
pub struct TasksQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    cursor: String,
}

#[derive(Template)]
#[template(path = "console/tasks.html")]
struct TasksPage {
    chrome: Chrome,
    state: String,
    states: &'static [&'static str],
    tasks: Vec<Task>,
    next: Option<String>,
    run: ActionForm,
}

const TASK_STATES: &[&str] = &["QUEUED", "DISPATCHED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"];

/// `GET /console/tasks`: tasks by state, oldest first, and a form to run one.
pub async fn tasks(
    State(console): State<Console>,
    viewer: Viewer,
    Query(q): Query<TasksQuery>,
) -> Result<Response, Response> {
    let mut uri = "/v1/tasks?limit=100".to_owned();
    for (name, value) in [("state", &q.state), ("cursor", &q.cursor)] {
        if !value.is_empty() {
            uri.push_str(&format!("&{name}={}", path_segment(value)));
        }
    }
    let list = console.fetch::<TaskList>(&viewer, &uri).await?;
    let next = list.next_cursor.map(|c| {
        format!(
            "/console/tasks?{}",
            serde_urlencoded::to_string([("state", &q.state), ("cursor", &c)]).unwrap_or_default()
        )
    });
    let page = TasksPage {
        chrome: Chrome::of(&viewer, "Tasks", "/console/tasks"),
        state: q.state,
        states: TASK_STATES,
        tasks: list.tasks,
        next,
        run: ActionForm { created: "/console/tasks/", ..form("task.create", "/v1/tasks".into()) },
    };
    Ok(viewer.page(page.render()))
}

/// `GET /v1/tasks/{id}/result`, as the page reads it.
#[derive(Deserialize)]
struct TaskResult {
    result: Option<crate::dto::tasks::JobResult>,
}

#[derive(Template)]
#[template(path = "console/task.html")]
struct TaskPage {
    chrome: Chrome,
    task: Task,
    cancel: Option<ActionForm>,
}

impl TaskPage {
    /// How an attempt ended, in words.
    fn outcome(&self, outcome: &Option<AttemptOutcome>) -> String {
        match outcome {
            None => "under way".into(),
            Some(AttemptOutcome::Ran(ran)) => match ran.exit_code {
                Some(code) => format!("ran, exit code {code}"),
                None => "ran, no exit code".into(),
            },
            Some(AttemptOutcome::Lost) => "lost (the node stopped renewing its lease)".into(),
            Some(AttemptOutcome::Refused(r)) => format!("refused: {}", r.reason),
        }
    }
}

/// `GET /console/tasks/{id}`: a task's attempts, output and exit code.
pub async fn task(
    State(console): State<Console>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let id = path_segment(&id);
    let mut task = console.fetch::<Task>(&viewer, &format!("/v1/tasks/{id}")).await?;
    let open = matches!(task.state, TaskState::Queued | TaskState::Dispatched | TaskState::Running);
    // The output comes from its own route, once the task has finished.
    if !open {
        task.result = console.fetch::<TaskResult>(&viewer, &format!("/v1/tasks/{id}/result")).await?.result;
    }
    let cancel = (open && !task.cancel_requested).then(|| form("task.cancel", format!("/v1/tasks/{id}/cancel")));
    let page = TaskPage { chrome: Chrome::of(&viewer, "Task", "/console/tasks"), task, cancel };
    Ok(viewer.page(page.render()))
}
