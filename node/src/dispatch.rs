//! Dispatch: one actor that owns every open task, puts queued ones on nodes that
//! can take them, holds each attempt's lease, and records how attempts end.
//!
//! Placement: only nodes that are ACTIVE, run an acknowledged configuration, have a
//! container engine, allow the task's network policy, carry the task's labels and
//! have a free slot (`max_concurrent_jobs`); the least busy wins. A job is a lease:
//! the worker extends it with every heartbeat that lists the job; when it runs out
//! the attempt is lost and the task retried (after a backoff) or failed. The worker
//! kills a job whose lease it could not renew, so two attempts never overlap.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actors::kernel::{self, Failure, Kernel, Loaded, Request};
use actors::node::{Membership, Origin};
use actors::storage::{Hash, IdempotencyKey};
use actors::task::placement::choose;
use actors::task::store::{self, LoadError};
use actors::task::{JobResult, Task, TaskCommand, TaskError, TaskSpec, TaskState, Tasks, lifecycle};
use cluster::orchestrator::Links;
use cluster::proto::{JobAnswer, JobSpec, Push, PushReply};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::time::Instant;

use crate::protocol;

/// Dispatch settings.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// How often leases are checked and queued tasks placed.
    pub tick: Duration,
    /// A lease lasts this many of the node's heartbeat intervals.
    pub lease_beats: u32,
    /// Most bytes of stdout (and of stderr) a job keeps.
    pub output_cap: usize,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig { tick: Duration::from_millis(200), lease_beats: 5, output_cap: 1 << 20 }
    }
}

/// Why a task request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error("the Idempotency-Key was used for another request")]
    KeyReused,
    #[error("storage: {0}")]
    Storage(String),
    #[error("dispatch unavailable")]
    Unavailable,
    /// A node reported a job whose attempt was placed on another node.
    #[error("job {0} is not this node's")]
    NotYours(String),
}

impl From<Failure<Tasks>> for DispatchError {
    fn from(f: Failure<Tasks>) -> Self {
        match f {
            Failure::Rejected(e) => DispatchError::Task(e),
            Failure::KeyReused => DispatchError::KeyReused,
            Failure::Unavailable(why) => DispatchError::Storage(why),
        }
    }
}

impl From<LoadError> for DispatchError {
    fn from(e: LoadError) -> Self {
        DispatchError::Storage(e.to_string())
    }
}

/// A submitted task, and whether this answer replays an earlier submission.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub task: Task,
    pub replayed: bool,
}

enum Msg {
    Submit {
        id: String,
        spec: Box<TaskSpec>,
        origin: Origin,
        idempotency: Option<(IdempotencyKey, Hash)>,
        reply: RpcReplyPort<Result<Submitted, DispatchError>>,
    },
    Cancel {
        id: String,
        origin: Origin,
        reply: RpcReplyPort<Result<Task, DispatchError>>,
    },
    Answer {
        task: String,
        attempt: u32,
        answer: JobAnswer,
    },
    Finished {
        node: String,
        job_id: String,
        result: Box<JobResult>,
        reply: RpcReplyPort<Result<(), DispatchError>>,
    },
    Extend {
        node: String,
        running: Vec<String>,
    },
    Tick,
}

struct Dispatch {
    kernel: Kernel,
    membership: Membership,
    links: Arc<Links>,
    config: DispatchConfig,
    waiting: Waiting,
}

/// Why each queued task could not be placed at the last round: an observation shown
/// with the task, not stored (it changes as nodes come and go). One entry per queued task.
type Waiting = Arc<std::sync::Mutex<HashMap<String, String>>>;

struct State {
    open: BTreeMap<String, (Task, u64)>,
    /// Lease deadline of each task's current attempt.
    leases: HashMap<String, Instant>,
    ticker: Option<tokio::task::JoinHandle<()>>,
    /// Nodes with a running-jobs gauge, so one that empties is set back to 0.
    gauged: std::collections::HashSet<String>,
}

/// `<task>/<attempt>` back to its parts.
fn parse_job_id(job_id: &str) -> Option<(&str, u32)> {
    let (task, n) = job_id.rsplit_once('/')?;
    Some((task, n.parse().ok()?))
}

impl Actor for Dispatch {
    type Msg = Msg;
    type State = State;
    type Arguments = ();

    async fn pre_start(&self, me: ActorRef<Msg>, _: ()) -> Result<State, ActorProcessingErr> {
        let mut open = BTreeMap::new();
        let mut leases = HashMap::new();
        // After a restart every attempt in flight gets a fresh lease: its worker may
        // still be running it and will renew; if not, it expires one lease from now.
        let grace = Instant::now() + self.config.tick * 50;
        for id in store::open_ids(&self.kernel.log)? {
            if let Some((task, seq)) = store::load(&self.kernel.log, &id)? {
                if task.current().is_some() {
                    leases.insert(id.clone(), grace);
                }
                open.insert(id, (task, seq));
            }
        }
        let ticker = Some(me.send_interval(self.config.tick, || Msg::Tick));
        let mut st = State { open, leases, ticker, gauged: Default::default() };
        report(&mut st);
        Ok(st)
    }

    async fn post_stop(&self, _me: ActorRef<Msg>, st: &mut State) -> Result<(), ActorProcessingErr> {
        if let Some(t) = st.ticker.take() {
            t.abort();
        }
        Ok(())
    }

    async fn handle(&self, me: ActorRef<Msg>, msg: Msg, st: &mut State) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Submit { id, spec, origin, idempotency, reply } => {
                let _ = reply.send(self.submit(st, id, *spec, origin, idempotency).await);
                // Place it now rather than at the next tick.
                self.place(&me, st).await;
            }
            Msg::Cancel { id, origin, reply } => {
                let result = self.cancel(st, &id, &origin).await;
                let _ = reply.send(result);
            }
            Msg::Answer { task, attempt, answer } => {
                let now = self.kernel.clock.now_ms();
                let command = match answer {
                    JobAnswer::Accepted => TaskCommand::Start { attempt },
                    JobAnswer::AlreadyFinished(result) => {
                        TaskCommand::Finish { attempt, result: protocol::job_result(result), now_ms: now }
                    }
                    JobAnswer::Refused(reason) => TaskCommand::Refuse { attempt, reason, now_ms: now },
                    JobAnswer::Unknown => return Ok(()),
                };
                self.run_logged(st, &task, command, &Origin::system("task.dispatch")).await;
            }
            Msg::Finished { node, job_id, result, reply } => {
                let holder = parse_job_id(&job_id).and_then(|(task, n)| {
                    let (t, _) = st.open.get(task)?;
                    t.attempts.iter().find(|a| a.n == n).map(|a| a.node.clone())
                });
                let outcome = match parse_job_id(&job_id) {
                    // Only the node that holds the attempt may report it.
                    Some(_) if holder.as_ref().is_some_and(|h| *h != node) => {
                        tracing::warn!(node, job = %job_id, "a node reported another node's job; refused");
                        Err(DispatchError::NotYours(job_id.clone()))
                    }
                    Some((task, attempt)) if st.open.contains_key(task) => {
                        let task = task.to_owned();
                        let command =
                            TaskCommand::Finish { attempt, result: *result, now_ms: self.kernel.clock.now_ms() };
                        self.run(st, &task, command, &Origin::system("task.finished")).await.map(|_| ())
                    }
                    // Final already, or not ours: recorded as far as anyone will ever need.
                    _ => Ok(()),
                };
                let _ = reply.send(outcome);
                // A slot is free: the next queued task need not wait for the tick.
                self.place(&me, st).await;
            }
            Msg::Extend { node, running } => self.extend(st, &node, running).await,
            Msg::Tick => {
                self.expire(st).await;
                self.place(&me, st).await;
                report(st);
            }
        }
        Ok(())
    }
}

fn report(st: &mut State) {
    let queued = st.open.values().filter(|(t, _)| t.state == TaskState::Queued).count();
    metrics::gauge!("dispatch_task_queue_depth").set(queued as f64);
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for (t, _) in st.open.values() {
        if let Some(a) = t.current() {
            *per_node.entry(a.node.clone()).or_default() += 1;
        }
    }
    for node in st.gauged.iter().filter(|n| !per_node.contains_key(*n)) {
        metrics::gauge!("dispatch_node_running_jobs", "node" => node.clone()).set(0.0);
    }
    for (node, n) in &per_node {
        metrics::gauge!("dispatch_node_running_jobs", "node" => node.clone()).set(*n as f64);
    }
    st.gauged.extend(per_node.into_keys());
}

impl Dispatch {
    /// A new task through the kernel (which answers a retry with the first answer).
    async fn submit(
        &self,
        st: &mut State,
        id: String,
        spec: TaskSpec,
        origin: Origin,
        idempotency: Option<(IdempotencyKey, Hash)>,
    ) -> Result<Submitted, DispatchError> {
        let request = Request { idempotency, ..Request::new(id, TaskCommand::Create { spec }, origin) };
        let outcome = self.persist(st, None, request).await?;
        Ok(Submitted { task: outcome.state, replayed: outcome.replayed })
    }

    async fn cancel(&self, st: &mut State, id: &str, origin: &Origin) -> Result<Task, DispatchError> {
        if !st.open.contains_key(id) {
            // Final (or unknown): the rules say which, from the stored task.
            let (task, _) = store::load(&self.kernel.log, id)?.ok_or(TaskError::NotFound)?;
            lifecycle::decide(Some(&task), &TaskCommand::Cancel)?;
            return Ok(task);
        }
        let task = self.run(st, id, TaskCommand::Cancel, origin).await?;
        if let Some(attempt) = task.current() {
            self.push(&attempt.node, Push::CancelJob { job_id: attempt.job_id.clone() });
        }
        Ok(task)
    }

    /// Runs a command on an open task.
    async fn run(
        &self,
        st: &mut State,
        id: &str,
        command: TaskCommand,
        origin: &Origin,
    ) -> Result<Task, DispatchError> {
        let current = st.open.get(id).cloned().ok_or(TaskError::NotFound)?;
        let request = Request::new(id.to_owned(), command, origin.clone());
        Ok(self.persist(st, Some(current), request).await?.state)
    }

    /// [`Self::run`] for the dispatcher's own commands: failures are logged, not returned.
    async fn run_logged(&self, st: &mut State, id: &str, command: TaskCommand, origin: &Origin) {
        if let Err(e) = self.run(st, id, command, origin).await {
            tracing::warn!(task = %id, error = %e, "task command not recorded");
        }
    }

    /// The kernel's command path; the scheduler's view of open tasks and leases
    /// changes only once the events are durable.
    async fn persist(
        &self,
        st: &mut State,
        current: Option<(Task, u64)>,
        request: Request<Tasks>,
    ) -> Result<kernel::Outcome<Tasks>, DispatchError> {
        let mut loaded = match current {
            Some((task, seq)) => Loaded { state: Some(task), seq },
            None => Loaded { state: None, seq: 0 },
        };
        let outcome = kernel::execute(&self.kernel, &(), &mut loaded, &request).await?;
        if outcome.replayed {
            return Ok(outcome);
        }
        let (id, after) = (&request.id, &outcome.state);
        if after.state.is_terminal() {
            st.open.remove(id);
            st.leases.remove(id);
        } else {
            if after.current().is_none() {
                st.leases.remove(id);
            }
            st.open.insert(id.clone(), (after.clone(), loaded.seq));
        }
        Ok(outcome)
    }

    /// Extends the leases of the node's jobs; asks it to stop any job that is not the
    /// current attempt of an open task (a leftover from before a lease ran out).
    async fn extend(&self, st: &mut State, node: &str, running: Vec<String>) {
        for job_id in running {
            let current = parse_job_id(&job_id).and_then(|(task, n)| {
                let (t, _) = st.open.get(task)?;
                t.current().filter(|a| a.n == n && a.node == node).map(|a| (task.to_owned(), a.n, t.state))
            });
            match current {
                Some((task, n, state)) => {
                    let lease = self.lease(node).await;
                    st.leases.insert(task.clone(), Instant::now() + lease);
                    if state == TaskState::Dispatched {
                        // Its "accepted" answer was lost; the heartbeat says it runs.
                        self.run_logged(st, &task, TaskCommand::Start { attempt: n }, &Origin::system("task.dispatch"))
                            .await;
                    }
                }
                None => {
                    tracing::warn!(node, job = %job_id, "node runs a job that is not current; cancelling it");
                    self.push(node, Push::CancelJob { job_id });
                }
            }
        }
    }

    async fn expire(&self, st: &mut State) {
        let now = Instant::now();
        let expired: Vec<String> = st.leases.iter().filter(|(_, d)| **d <= now).map(|(id, _)| id.clone()).collect();
        for id in expired {
            st.leases.remove(&id);
            let Some(attempt) = st.open.get(&id).and_then(|(t, _)| t.current().map(|a| a.n)) else { continue };
            tracing::warn!(task = %id, attempt, "lease expired; the attempt is lost");
            metrics::counter!("dispatch_leases_expired_total").increment(1);
            let command = TaskCommand::ExpireLease { attempt, now_ms: self.kernel.clock.now_ms() };
            self.run_logged(st, &id, command, &Origin::system("task.lease_expired")).await;
        }
    }

    async fn place(&self, me: &ActorRef<Msg>, st: &mut State) {
        let now = self.kernel.clock.now_ms();
        let mut queued: Vec<(i64, String)> = st
            .open
            .values()
            .filter(|(t, _)| t.state == TaskState::Queued && t.not_before_ms <= now)
            .map(|(t, _)| (t.created_ms, t.id.clone()))
            .collect();
        if queued.is_empty() {
            self.waiting.lock().unwrap_or_else(|p| p.into_inner()).clear();
            return;
        }
        queued.sort();
        let Ok(nodes) = self.membership.nodes().await else { return };
        let mut waiting = HashMap::new();
        let mut busy: HashMap<String, u32> = HashMap::new();
        for (t, _) in st.open.values() {
            if let Some(a) = t.current() {
                *busy.entry(a.node.clone()).or_default() += 1;
            }
        }
        for (_, id) in queued {
            let Some((task, _)) = st.open.get(&id) else { continue };
            let node = match choose(&nodes, &busy, &task.spec) {
                Ok(node) => node,
                Err(why) => {
                    waiting.insert(id.clone(), why.to_string());
                    continue;
                }
            };
            let (node_id, config) = (node.node.id.clone(), node.node.config.clone());
            let command = TaskCommand::Dispatch { node: node_id.clone(), now_ms: now };
            let waited = (now - task.not_before_ms.max(task.created_ms)).max(0);
            let task = match self.run(st, &id, command, &Origin::system("task.dispatch")).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(task = %id, error = %e, "dispatch not recorded");
                    continue;
                }
            };
            metrics::histogram!("dispatch_task_dispatch_latency_seconds").record(waited as f64 / 1e3);
            *busy.entry(node_id.clone()).or_default() += 1;
            let lease = Duration::from_millis(config.heartbeat_interval_ms * u64::from(self.config.lease_beats));
            st.leases.insert(id.clone(), Instant::now() + lease);
            let Some(attempt) = task.current() else { continue };
            let job = job_spec(&task, attempt.n, &config, self.config.output_cap);
            let (links, me, node) = (self.links.clone(), me.clone(), node_id);
            let (task_id, n) = (id.clone(), attempt.n);
            tokio::spawn(async move {
                let push = Push::RunJob { job, lease_ms: lease.as_millis() as u64 };
                match links.offer(&node, &push).await {
                    Some(PushReply::Job(answer)) => {
                        let _ = me.send_message(Msg::Answer { task: task_id, attempt: n, answer });
                    }
                    // No answer: the lease decides (the worker may have it, or not).
                    _ => tracing::debug!(task = %task_id, node, "job offer unanswered"),
                }
            });
        }
        *self.waiting.lock().unwrap_or_else(|p| p.into_inner()) = waiting;
    }

    async fn lease(&self, node: &str) -> Duration {
        let interval = match self.membership.lookup(node).await {
            Some(h) => h.view().await.map_or(5_000, |v| v.node.config.heartbeat_interval_ms),
            None => 5_000,
        };
        Duration::from_millis(interval * u64::from(self.config.lease_beats))
    }

    fn push(&self, node: &str, push: Push) {
        let (links, node) = (self.links.clone(), node.to_owned());
        tokio::spawn(async move {
            links.offer(&node, &push).await;
        });
    }
}

/// The job for attempt `n`, with the node's defaults filled in.
fn job_spec(task: &Task, n: u32, config: &actors::node::NodeConfig, output_cap: usize) -> JobSpec {
    let s = &task.spec;
    JobSpec {
        job_id: format!("{}/{n}", task.id),
        task_id: task.id.clone(),
        attempt: n,
        command: s.command.clone(),
        image: s.image.clone().unwrap_or_else(|| config.sandbox_image.clone()),
        network: protocol::network(s.network),
        memory_bytes: s.memory_bytes.unwrap_or(config.default_memory_bytes),
        cpu_millis: s.cpu_millis.unwrap_or(config.default_cpu_millis),
        pids: s.pids,
        timeout_ms: u64::from(s.timeout_seconds) * 1_000,
        env: s.env.clone(),
        files: s.files.clone(),
        output_cap,
    }
}

/// Handle to the dispatcher. Clone freely.
#[derive(Clone)]
pub struct Dispatcher {
    actor: ActorRef<Msg>,
    waiting: Waiting,
}

fn gone<T>(_: T) -> DispatchError {
    DispatchError::Unavailable
}

impl Dispatcher {
    /// Loads open tasks from the log and starts placing them.
    pub async fn start(
        kernel: Kernel,
        membership: Membership,
        links: Arc<Links>,
        config: DispatchConfig,
    ) -> Result<Self, DispatchError> {
        let waiting = Waiting::default();
        let dispatch = Dispatch { kernel, membership, links, config, waiting: waiting.clone() };
        let (actor, _) = Actor::spawn(None, dispatch, ()).await.map_err(|e| DispatchError::Storage(e.to_string()))?;
        Ok(Dispatcher { actor, waiting })
    }

    /// Why queued task `id` found no node at the last placement round, if it did not.
    pub fn waiting(&self, id: &str) -> Option<String> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// Stops dispatching (tasks stay in the log).
    pub fn stop(&self) {
        self.actor.stop(None);
    }

    /// Accepts a task (durably) for dispatch. With a key, a retry replays the first answer.
    pub async fn submit(
        &self,
        id: String,
        spec: TaskSpec,
        origin: Origin,
        idempotency: Option<(IdempotencyKey, Hash)>,
    ) -> Result<Submitted, DispatchError> {
        let spec = Box::new(spec);
        ractor::call!(self.actor, |reply| Msg::Submit { id, spec, origin, idempotency, reply }).map_err(gone)?
    }

    /// Cancels a task: at once when queued, through its node when running.
    pub async fn cancel(&self, id: &str, origin: Origin) -> Result<Task, DispatchError> {
        let id = id.to_owned();
        ractor::call!(self.actor, |reply| Msg::Cancel { id, origin, reply }).map_err(gone)?
    }

    /// Node `node` reported a job's result; answers once it is durable. Refused when
    /// the job's attempt was placed on another node.
    pub async fn finished(&self, node: &str, job_id: String, result: JobResult) -> Result<(), DispatchError> {
        let (node, result) = (node.to_owned(), Box::new(result));
        ractor::call!(self.actor, |reply| Msg::Finished { node, job_id, result, reply }).map_err(gone)?
    }

    /// A node's heartbeat listed these running jobs.
    pub fn running(&self, node: &str, running: Vec<String>) {
        if !running.is_empty() {
            let _ = self.actor.send_message(Msg::Extend { node: node.to_owned(), running });
        }
    }
}
