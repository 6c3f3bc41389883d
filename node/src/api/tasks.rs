//! Tasks: commands run as sandboxed jobs on worker nodes. Creation is an idempotent
//! command (202 with the task id); reads come from the log.

use std::collections::BTreeMap;

use super::extract::{Path, Query};
use crate::dispatch::DispatchError;
use actors::policy::Principal;
use actors::task::{
    DEFAULT_MAX_ATTEMPTS, DEFAULT_PIDS, DEFAULT_TIMEOUT_SECONDS, Task, TaskError, TaskSpec, TaskState, spec,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, JsonBody, RequestCtx};
use super::{App, authorize_route, origin};
use crate::dto::tasks::{self as dto, JobResult, NetworkPolicy};

/// Resource limits of a task's job.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[schema(schema_with = crate::dto::rules::memory_bytes)]
    pub memory_bytes: Option<u64>,
    /// CPU cores (fractions allowed).
    #[schema(schema_with = crate::dto::rules::cpus)]
    pub cpus: Option<f64>,
    #[schema(schema_with = crate::dto::rules::pids)]
    pub pids: Option<u32>,
}

/// Body of `POST /v1/tasks`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    /// The program and its arguments (no shell unless you name one).
    #[schema(schema_with = crate::dto::rules::command)]
    pub command: Vec<String>,
    pub image: Option<String>,
    /// `none` (default) or `restricted`.
    #[serde(default)]
    pub network_policy: NetworkPolicy,
    #[serde(default)]
    pub limits: Limits,
    /// Default 300, at most 86400.
    #[schema(schema_with = crate::dto::rules::timeout_seconds)]
    pub timeout_seconds: Option<u32>,
    #[serde(default)]
    #[schema(schema_with = crate::dto::rules::env)]
    pub env: BTreeMap<String, String>,
    /// Files written into `/workspace` before the job starts: relative path → content.
    #[serde(default)]
    #[schema(schema_with = crate::dto::rules::workspace_files)]
    pub files: BTreeMap<String, String>,
    /// Node labels the task needs.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Scope of the task (default `default`); the caller must cover it.
    pub account_id: Option<String>,
    pub site_id: Option<String>,
    /// A ticket this task works for; its events then appear in the ticket's timeline.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub ticket_id: Option<String>,
    /// Default 3; lost or refused attempts are retried up to this many in all.
    #[schema(schema_with = crate::dto::rules::max_attempts)]
    pub max_attempts: Option<u32>,
    /// Also retry a run that exited non-zero.
    #[serde(default)]
    pub retry_on_failure: bool,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::validation(StatusCode::UNPROCESSABLE_ENTITY, message)
}

impl CreateTask {
    /// The spec asked for, with the domain's defaults for what the body leaves out,
    /// checked against the domain's limits.
    fn into_spec(self) -> Result<TaskSpec, ApiError> {
        let cores = |millis: u32| f64::from(millis) / 1000.0;
        let (min, max) = (cores(*spec::CPU_MILLIS.start()), cores(*spec::CPU_MILLIS.end()));
        if self.limits.cpus.is_some_and(|c| !(min..=max).contains(&c)) {
            return Err(invalid(format!("limits.cpus must be between {min} and {max}")));
        }
        let spec = TaskSpec {
            command: self.command,
            image: self.image.filter(|i| !i.trim().is_empty()),
            network: self.network_policy.into(),
            memory_bytes: self.limits.memory_bytes,
            cpu_millis: self.limits.cpus.map(|c| (c * 1000.0).round() as u32),
            pids: self.limits.pids.unwrap_or(DEFAULT_PIDS),
            timeout_seconds: self.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS),
            env: self.env,
            files: self.files,
            labels: self.labels,
            account_id: self.account_id.unwrap_or_else(|| "default".into()),
            site_id: self.site_id.unwrap_or_else(|| "default".into()),
            ticket_id: self.ticket_id,
            max_attempts: self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
            retry_on_failure: self.retry_on_failure,
        };
        match spec.check() {
            Ok(()) => Ok(spec),
            Err(e) => Err(invalid(e.to_string())),
        }
    }
}
/// The answer to `POST /v1/tasks`.
#[derive(Serialize, ToSchema)]
pub struct Accepted {
    pub task_id: String,
    pub state: dto::TaskState,
}

impl From<DispatchError> for ApiError {
    fn from(e: DispatchError) -> Self {
        match e {
            DispatchError::Task(TaskError::NotFound) => task_not_found(),
            DispatchError::Task(e @ TaskError::Invalid(_)) => invalid(e.to_string()),
            DispatchError::Task(TaskError::Finished(state)) => {
                ApiError::new(StatusCode::CONFLICT, "TASK_FINISHED", format!("the task is already {}", state.as_str()))
            }
            DispatchError::KeyReused => ApiError::new(
                StatusCode::CONFLICT,
                "IDEMPOTENCY_KEY_REUSED",
                "this Idempotency-Key was used for a different request",
            ),
            other => ApiError::unavailable(other.to_string()),
        }
    }
}

fn task_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "TASK_NOT_FOUND", "task not found")
}

fn scope_forbidden() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "SCOPE_FORBIDDEN", "the task is outside the caller's account/site scope")
        .policy(actors::policy::PolicyDimension::Scope)
}

#[utoipa::path(operation_id = "task.create", post, path = "/v1/tasks", tag = "tasks", request_body = CreateTask,
    responses((status = 202, body = Accepted), (status = "4XX", body = ErrorBody)))]
/// Accept a task: it is durable when this answers, and runs as soon as a node can take it.
pub(super) async fn create(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    body: JsonBody<CreateTask>,
) -> Result<Response, ApiError> {
    authorize_route(&caller, &ctx, "task.create")?;
    let (key, hash) = super::idempotency(&caller, &ctx, body.canonical_hash)?;
    let spec = body.value.into_spec()?;
    if !caller.in_scope(&spec.account_id, &spec.site_id) {
        return Err(scope_forbidden());
    }
    if let Some(ticket) = &spec.ticket_id {
        let t = super::tickets::parse_ticket_id(ticket)?;
        let ticket = actors::ticket::store::load(&app.log, t)
            .map_err(|e| ApiError::internal("loading the ticket", e))?
            .ok_or_else(ApiError::ticket_not_found)?;
        if !caller.in_scope(&ticket.account_id, &ticket.site_id) {
            return Err(scope_forbidden());
        }
    }
    let id = app.kernel.ids.next_id().to_string();
    let submitted = app.tasks.submit(id, spec, origin(&caller, &ctx, "task.create"), Some((key, hash))).await?;
    let body = Accepted { task_id: submitted.task.id.clone(), state: submitted.task.state.into() };
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if submitted.replayed {
        response.headers_mut().insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
    } else {
        tracing::info!(task = %submitted.task.id, by = %caller.sub, "task accepted");
    }
    Ok(response)
}

/// A task without its (possibly large) result; see `/result`.
/// A task as lists and reads show it: without its output, with why it waits if it does.
fn summary(app: &App, mut task: Task) -> dto::Task {
    task.result = None;
    let waiting = app.tasks.waiting(&task.id);
    dto::Task { waiting, ..task.into() }
}

fn load_for(app: &App, caller: &Principal, ctx: &RequestCtx, id: &str, tool: &str) -> Result<Task, ApiError> {
    authorize_route(caller, ctx, tool)?;
    let (task, _) = actors::task::store::load(&app.log, id)
        .map_err(|e| ApiError::internal("loading the task", e))?
        .ok_or_else(task_not_found)?;
    if !caller.in_scope(&task.spec.account_id, &task.spec.site_id) {
        return Err(scope_forbidden());
    }
    Ok(task)
}

#[utoipa::path(operation_id = "task.get", get, path = "/v1/tasks/{id}", tag = "tasks", params(("id" = String, Path)),
    responses((status = 200, body = dto::Task), (status = "4XX", body = ErrorBody)))]
/// A task: its state, every attempt (node, times, outcome) and its spec.
pub(super) async fn get(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
) -> Result<Json<dto::Task>, ApiError> {
    Ok(Json(summary(&app, load_for(&app, &caller, &ctx, &id, "task.get")?)))
}

/// A finished task's outcome.
#[derive(Serialize, ToSchema)]
pub struct TaskResult {
    pub task_id: String,
    pub state: dto::TaskState,
    /// The run that decided the task (none when it never ran, e.g. cancelled while queued).
    pub result: Option<JobResult>,
    pub reason: Option<String>,
}

#[utoipa::path(operation_id = "task.result", get, path = "/v1/tasks/{id}/result", tag = "tasks", params(("id" = String, Path)),
    responses((status = 200, body = TaskResult), (status = "4XX", body = ErrorBody)))]
/// Output, exit code and flags of a finished task; 409 `TASK_NOT_FINISHED` before that.
pub(super) async fn result(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
) -> Result<Json<TaskResult>, ApiError> {
    let task = load_for(&app, &caller, &ctx, &id, "task.result")?;
    if !task.state.is_terminal() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "TASK_NOT_FINISHED",
            format!("the task is {}; its result comes when it finishes", task.state.as_str()),
        ));
    }
    let result = task.result.map(JobResult::from);
    Ok(Json(TaskResult { task_id: task.id, state: task.state.into(), result, reason: task.reason }))
}

#[utoipa::path(operation_id = "task.cancel", post, path = "/v1/tasks/{id}/cancel", tag = "tasks", params(("id" = String, Path)),
    responses((status = 200, body = dto::Task), (status = "4XX", body = ErrorBody)))]
/// Cancel: a queued task ends at once; a running job is killed on its node first.
pub(super) async fn cancel(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(id): Path<String>,
) -> Result<Json<dto::Task>, ApiError> {
    load_for(&app, &caller, &ctx, &id, "task.cancel")?;
    let task = app.tasks.cancel(&id, origin(&caller, &ctx, "task.cancel")).await?;
    Ok(Json(summary(&app, task)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only tasks in this state.
    pub state: Option<dto::TaskState>,
    #[serde(default, deserialize_with = "super::paging::limit")]
    #[param(schema_with = super::paging::limit_schema)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Tasks in the caller's scope.
#[derive(Serialize, ToSchema)]
pub struct TaskList {
    pub tasks: Vec<dto::Task>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

#[utoipa::path(operation_id = "task.list", get, path = "/v1/tasks", tag = "tasks", params(ListQuery),
    responses((status = 200, body = TaskList), (status = "4XX", body = ErrorBody)))]
/// Tasks by state, oldest first.
pub(super) async fn list(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Query(q): Query<ListQuery>,
) -> Result<Json<TaskList>, ApiError> {
    authorize_route(&caller, &ctx, "task.list")?;
    let state: Option<TaskState> = q.state.map(Into::into);
    let limit = q.limit.unwrap_or(super::paging::DEFAULT_LIMIT);
    let ids = actors::task::store::ids(&app.log, state).map_err(|e| ApiError::internal("listing tasks", e))?;
    let mut tasks = Vec::new();
    let mut next_cursor = None;
    // Task ids are v7 UUIDs: their order is creation order, and the cursor's.
    for id in ids.into_iter().filter(|id| q.cursor.as_ref().is_none_or(|c| id > c)) {
        if tasks.len() >= limit {
            next_cursor = tasks.last().map(|t: &dto::Task| t.id.clone());
            break;
        }
        if let Some((task, _)) =
            actors::task::store::load(&app.log, &id).map_err(|e| ApiError::internal("loading a task", e))?
            && caller.in_scope(&task.spec.account_id, &task.spec.site_id)
        {
            tasks.push(summary(&app, task));
        }
    }
    Ok(Json(TaskList { tasks, next_cursor }))
}
