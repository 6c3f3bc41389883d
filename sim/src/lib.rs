//! Simulations of the whole node in turmoil: the orchestrator and the workers are
//! started through the node's own wiring functions (`Orchestrator::start_with`,
//! `worker::join_or_resume`) on simulated sockets (quinn on turmoil's UDP, the HTTP
//! API on turmoil's TCP), simulated time and seeded ids, with partitions, loss,
//! jitter and crashes under the simulator's control.
//!
//! - [`net`]: the simulated sockets under the node's real stacks.
//! - [`http`]: simulated HTTP clients (tickets, lanes, handoffs).
//! - [`Harness`] builds a simulation with one orchestrator and some workers, each
//!   keeping its files in a real temp dir that survives crashes, and reads the
//!   orchestrator's log to check invariants and build a trace of domain events.

mod control;
mod determinism;
pub mod http;
pub mod net;

use control::obey;
use determinism::{SimClock, quinn_seed};
pub use net::{SimTcp, SimUdp};

use dispatch_node::actors;
use dispatch_node::actors::storage;
use dispatch_node::cluster;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use actors::kernel::SeededIds;
use actors::node::membership::{load_nodes, load_tokens};
use actors::node::{MembershipConfig, Node, NodeConfig, Origin};
use actors::task::store as task_store;
use actors::task::{NetworkPolicy, Task, TaskSpec};
use cluster::certs::KeyAlgorithm;
use cluster::proto::{Capabilities, JobResult, JobSpec};
use dispatch_node::server::{Io, Orchestrator, ServerConfig, Storage};
use dispatch_node::worker::{self, Executor, JobRun, WorkerIo, WorkerStatus, WorkerStore};
use storage::{Log, WriterHandle};
use tokio::sync::mpsc;

/// The QUIC port of the simulated orchestrator.
pub const CLUSTER_PORT: u16 = 7443;
/// The HTTP port of the simulated orchestrator.
pub const HTTP_PORT: u16 = 8080;
/// Name of the orchestrator host.
pub const ORCHESTRATOR: &str = "orchestrator";

/// Commands the test sends to the orchestrator host (they run on its runtime).
enum Control {
    SetConfig {
        node: String,
        config: NodeConfig,
    },
    Submit {
        id: String,
        spec: Box<TaskSpec>,
    },
    /// Offer a job again to the node that had it (a duplicated delivery).
    Redeliver {
        job_id: String,
        node: String,
    },
}

/// One run of a job by a fake executor, in simulated time.
#[derive(Debug, Clone)]
pub struct Run {
    pub job_id: String,
    pub host: String,
    pub start: Duration,
    pub end: Option<Duration>,
}

/// Jobs whose command is `work <ms> <exit code>`: they take that long in simulated
/// time (or until cancelled) and exit with that code. Every run is written down.
struct FakeExecutor {
    host: String,
    shared: Arc<Shared>,
}

impl Executor for FakeExecutor {
    fn run(&self, job: JobSpec, mut cancel: tokio::sync::watch::Receiver<bool>) -> JobRun<'_> {
        Box::pin(async move {
            let arg = |i: usize| job.command.get(i).and_then(|a| a.parse::<u64>().ok()).unwrap_or(0);
            let (ms, code) = (arg(1), arg(2) as i64);
            let start = turmoil::sim_elapsed().unwrap_or_default();
            let index = {
                let mut runs = lock(&self.shared.runs);
                runs.push(Run { job_id: job.job_id.clone(), host: self.host.clone(), start, end: None });
                runs.len() - 1
            };
            let cancelled = tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ms)) => false,
                _ = cancel.wait_for(|c| *c) => true,
            };
            lock(&self.shared.runs)[index].end = Some(turmoil::sim_elapsed().unwrap_or_default());
            JobResult {
                exit_code: Some(if cancelled { 137 } else { code }),
                cancelled,
                stdout: format!("{} on {}\n", job.job_id, self.host),
                ..JobResult::default()
            }
        })
    }
}

/// What hosts share with the test: the orchestrator's log (to read), its control
/// channel, the bootstrap token, and each worker's status and join count.
#[derive(Default)]
struct Shared {
    log: Mutex<Option<Log>>,
    control: Mutex<Option<mpsc::UnboundedSender<Control>>>,
    token: Mutex<Option<String>>,
    workers: Mutex<BTreeMap<String, WorkerStatus>>,
    joins: Mutex<BTreeMap<String, u32>>,
    runs: Mutex<Vec<Run>>,
    /// Answers to redelivered jobs.
    redelivered: Mutex<Vec<String>>,
    /// Datagrams the orchestrator's cluster socket sent, over all its lives.
    orchestrator_datagrams: Arc<AtomicU64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A simulation of one orchestrator and its workers.
pub struct Harness {
    pub sim: turmoil::Sim<'static>,
    pub seed: u64,
    shared: Arc<Shared>,
    /// The orchestrator's wall clock, kept across its restarts.
    clock: Arc<SimClock>,
    _dir: tempfile::TempDir,
    root: PathBuf,
}

/// How a harness is set up.
#[derive(Debug, Clone)]
pub struct Setup {
    pub seed: u64,
    /// Uses of the one bootstrap token the orchestrator creates.
    pub token_uses: u32,
    pub heartbeat_interval_ms: u64,
    pub fail_rate: f64,
    pub max_latency: Duration,
}

impl Setup {
    /// A quiet network, with randomness from `seed` (see [`sweep`]).
    pub fn new(seed: u64) -> Self {
        Setup {
            seed,
            token_uses: 2,
            heartbeat_interval_ms: 1_000,
            fail_rate: 0.0,
            max_latency: Duration::from_millis(5),
        }
    }
}

impl Harness {
    /// A simulation with an orchestrator host (not yet any workers).
    pub fn new(setup: &Setup) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_owned();
        let sim = turmoil::Builder::new()
            .rng_seed(setup.seed)
            .epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000))
            .simulation_duration(Duration::from_secs(3_600))
            .udp_capacity(4_096)
            .fail_rate(setup.fail_rate)
            .min_message_latency(Duration::from_millis(1))
            .max_message_latency(setup.max_latency)
            .build();
        let shared = Arc::new(Shared::default());
        let mut h = Harness { sim, seed: setup.seed, shared, clock: Arc::default(), _dir: dir, root };
        h.orchestrator(setup);
        h
    }

    fn orchestrator(&mut self, setup: &Setup) {
        let shared = self.shared.clone();
        let dir = self.root.join(ORCHESTRATOR);
        let disk: Arc<Mutex<Option<WriterHandle>>> = Arc::default();
        let (seed, uses) = (quinn_seed(setup.seed, ORCHESTRATOR), setup.token_uses);
        let (clock, scenario_seed, lives) = (self.clock.clone(), setup.seed, Arc::new(AtomicU64::new(0)));
        let heartbeat_ms = setup.heartbeat_interval_ms;
        self.sim.host(ORCHESTRATOR, move || {
            let (shared, dir, disk) = (shared.clone(), dir.clone(), disk.clone());
            let (clock, life) = (clock.clone(), lives.fetch_add(1, Ordering::SeqCst));
            async move {
                // A restart after a crash: the previous life's log must be closed first.
                drop(lock(&shared.log).take());
                if let Some(previous) = lock(&disk).take() {
                    previous.join();
                }
                // Commits on this host's own thread: a seed always writes the same log.
                let mut storage = Storage::open_inline(&dir)?;
                *lock(&disk) = storage.writer_thread.take();
                let io = Io {
                    storage,
                    http: SimTcp::bind(HTTP_PORT).await?,
                    cluster_socket: SimUdp::bind_counted(CLUSTER_PORT, shared.orchestrator_datagrams.clone()).await?,
                    quinn_seed: Some(seed),
                    // Time and ids from the simulation: the same seed writes the same log.
                    clock,
                    // Each life mints from its own sequence: ids never repeat across a restart.
                    ids: SeededIds::new(scenario_seed ^ (life << 48)),
                };
                let orchestrator = Orchestrator::start_with(server_config(&dir, heartbeat_ms), io).await?;
                let app = orchestrator.app.clone();
                if lock(&shared.token).is_none() {
                    let ttl = Duration::from_secs(3_600);
                    let (_, token) =
                        app.cluster.create_token(BTreeMap::new(), uses, ttl, Origin::system("sim")).await?;
                    *lock(&shared.token) = Some(token);
                }
                let (control, mut commands) = mpsc::unbounded_channel();
                *lock(&shared.control) = Some(control);
                *lock(&shared.log) = Some(app.log.clone());
                obey(&shared, &app.cluster, &app.tasks, &mut commands).await;
                drop(app);
                orchestrator.shutdown().await?;
                Ok(())
            }
        });
    }

    /// Adds a worker host that joins with the shared token (once: its identity is
    /// kept in its own dir across crashes) and then stays connected.
    pub fn worker(&mut self, name: &str) {
        let shared = self.shared.clone();
        let dir = self.root.join(name);
        let name = name.to_owned();
        let seed = quinn_seed(self.seed, &name);
        self.sim.host(name.clone(), move || {
            let (shared, dir, name) = (shared.clone(), dir.clone(), name.clone());
            async move {
                let store = Arc::new(WorkerStore::open_inline(&dir)?);
                let endpoint = cluster::transport::endpoint(SimUdp::bind(0).await?, None, Some(seed))?;
                let capabilities = Capabilities {
                    hostname: name.clone(),
                    cores: 2,
                    docker_version: Some("simulated".into()),
                    ..Capabilities::default()
                };
                let token = match store.identity()? {
                    Some(_) => None,
                    None => {
                        *lock(&shared.joins).entry(name.clone()).or_default() += 1;
                        Some(wait_for_token(&shared).await)
                    }
                };
                let executor = Arc::new(FakeExecutor { host: name.clone(), shared: shared.clone() });
                let io = WorkerIo { endpoint, capabilities, executor: Some(executor), keys: KeyAlgorithm::Ed25519 };
                let local = worker::join_or_resume(store, io, token.as_deref(), None).await?;
                mirror_status(&shared, &name, local.worker.status());
                let (_keep, never) = tokio::sync::watch::channel(false);
                local.worker.run(never).await?;
                Ok(())
            }
        });
    }

    /// Nodes as stored in the orchestrator's log (what a restart would recover).
    pub fn nodes(&self) -> Vec<Node> {
        lock(&self.shared.log).as_ref().map(|log| load_nodes(log).unwrap_or_default()).unwrap_or_default()
    }

    /// A node by its worker's host name.
    pub fn node(&self, host: &str) -> Option<Node> {
        self.nodes().into_iter().find(|n| n.capabilities.hostname == host)
    }

    /// The worker's own view of itself.
    pub fn worker_status(&self, host: &str) -> Option<WorkerStatus> {
        lock(&self.shared.workers).get(host).cloned()
    }

    /// Times the worker asked to join (not counting transport retries inside a join).
    pub fn join_calls(&self, host: &str) -> u32 {
        lock(&self.shared.joins).get(host).copied().unwrap_or(0)
    }

    /// Uses recorded on the bootstrap token.
    pub fn token_uses(&self) -> u32 {
        let Some(log) = lock(&self.shared.log).clone() else { return 0 };
        load_tokens(&log).map(|tokens| tokens.iter().map(|(t, _)| t.uses).sum()).unwrap_or(0)
    }

    /// Asks the orchestrator to change a node's configuration.
    pub fn set_config(&self, node: &str, config: NodeConfig) {
        if let Some(control) = lock(&self.shared.control).as_ref() {
            let _ = control.send(Control::SetConfig { node: node.to_owned(), config });
        }
    }

    /// Submits a task whose job takes `ms` of simulated time and exits with `code`.
    pub fn submit(&self, id: &str, ms: u64, code: i64, max_attempts: u32) {
        let spec = TaskSpec {
            command: vec!["work".into(), ms.to_string(), code.to_string()],
            image: None,
            network: NetworkPolicy::None,
            memory_bytes: None,
            cpu_millis: None,
            pids: 64,
            timeout_seconds: 600,
            env: BTreeMap::new(),
            files: BTreeMap::new(),
            labels: BTreeMap::new(),
            account_id: "sim".into(),
            site_id: "sim".into(),
            ticket_id: None,
            max_attempts,
            retry_on_failure: false,
        };
        if let Some(control) = lock(&self.shared.control).as_ref() {
            let _ = control.send(Control::Submit { id: id.to_owned(), spec: Box::new(spec) });
        }
    }

    /// Offers a job again to `node` (as a duplicated message would).
    pub fn redeliver(&self, job_id: &str, node: &str) {
        if let Some(control) = lock(&self.shared.control).as_ref() {
            let _ = control.send(Control::Redeliver { job_id: job_id.to_owned(), node: node.to_owned() });
        }
    }

    /// What the nodes answered to redelivered jobs.
    pub fn redelivered(&self) -> Vec<String> {
        lock(&self.shared.redelivered).clone()
    }

    /// A task as stored, with its events' `to_state`s in order.
    pub fn task(&self, id: &str) -> Option<(Task, Vec<String>)> {
        let log = lock(&self.shared.log).clone()?;
        let (task, _) = task_store::load(&log, id).ok()??;
        let states = task_store::events(&log, id).ok()?.into_iter().filter_map(|(r, _)| r.to_state).collect();
        Some((task, states))
    }

    /// Every job run so far.
    pub fn runs(&self) -> Vec<Run> {
        lock(&self.shared.runs).clone()
    }

    /// Steps the orchestrator's wall clock by `ms` (back when negative), as an NTP step
    /// would; simulated time, and every monotonic timer, runs on undisturbed.
    pub fn jump_clock(&self, ms: i64) {
        self.clock.jump(ms);
    }

    /// Crashes a host; runs of its jobs end now (its runtime, and the jobs in it, are gone).
    pub fn crash(&mut self, host: &str) {
        let now = self.sim.elapsed();
        for r in lock(&self.shared.runs).iter_mut().filter(|r| r.host == host && r.end.is_none()) {
            r.end = Some(now);
        }
        self.sim.crash(host);
    }

    /// Steps the simulation for `d` of simulated time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.sim.elapsed() + d;
        while self.sim.elapsed() < until {
            self.step();
        }
    }

    /// Steps until `done` holds (checked every 50 simulated ms), at most `limit`.
    pub fn run_until(&mut self, what: &str, limit: Duration, mut done: impl FnMut(&Self) -> bool) {
        let until = self.sim.elapsed() + limit;
        loop {
            if done(self) {
                return;
            }
            assert!(self.sim.elapsed() < until, "{what}: not reached within {limit:?} of simulated time");
            self.run_for(Duration::from_millis(50));
        }
    }

    /// One tick. Durable writes are real (a real file, a real fsync) but made on the
    /// simulation's own thread as the hosts call them, so they take no simulated time
    /// and a seed repeats whatever the machine's load.
    fn step(&mut self) {
        if let Err(e) = self.sim.step() {
            panic!("simulation failed: {e}");
        }
    }

    /// Datagrams the orchestrator has sent to its workers so far.
    pub fn orchestrator_datagrams(&self) -> u64 {
        self.shared.orchestrator_datagrams.load(Ordering::Relaxed)
    }

    /// The domain events of every node, in order, with their ids:
    /// `node/node-1 node.joined → JOINING (event …)`, …
    pub fn trace(&self) -> Vec<String> {
        let Some(log) = lock(&self.shared.log).clone() else { return Vec::new() };
        let nodes = load_nodes(&log).unwrap_or_default();
        nodes.iter().flat_map(|node| self.trace_stream(&format!("node/{}", node.id))).collect()
    }

    /// One stream's events as stored in the orchestrator's log (empty before it starts).
    pub fn stream(&self, stream: &str) -> Vec<storage::EventRecord> {
        lock(&self.shared.log).as_ref().and_then(|log| log.read_stream(stream, 0).ok()).unwrap_or_default()
    }

    /// One stream's events with their ids: `ticket/… ticket.triaged → READY_TO_SCHEDULE (event …)`.
    /// Times are not compared between runs (the log writer is a real thread).
    pub fn trace_stream(&self, stream: &str) -> Vec<String> {
        self.stream(stream)
            .into_iter()
            .map(|r| format!("{stream} {} → {} (event {})", r.kind, r.to_state.unwrap_or_default(), r.event_id))
            .collect()
    }
}

/// The orchestrator's configuration in a simulation: development identity headers
/// (simulated clients say who they are), the token's address on the simulated network.
fn server_config(dir: &Path, heartbeat_interval_ms: u64) -> ServerConfig {
    let any: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 0));
    ServerConfig {
        data_dir: dir.to_owned(),
        http_addr: any,
        dev_headers: true,
        templates_file: None,
        supervisor: Default::default(),
        idempotency_retention: Duration::from_secs(24 * 3600),
        cluster_addr: any,
        advertise_addr: Some(SocketAddr::new(turmoil::lookup(ORCHESTRATOR), CLUSTER_PORT).to_string()),
        membership: MembershipConfig {
            default_config: NodeConfig { heartbeat_interval_ms, ..NodeConfig::default() },
            ..MembershipConfig::default()
        },
        inference: Default::default(),
        delivery: Default::default(),
        edge: Default::default(),
        lanes: Default::default(),
        https: None,
        // Deterministic signatures of one size: one seed, one history (see KeyAlgorithm).
        cluster_keys: KeyAlgorithm::Ed25519,
    }
}

/// The bootstrap token, once the orchestrator has made it.
async fn wait_for_token(shared: &Shared) -> String {
    loop {
        if let Some(t) = lock(&shared.token).clone() {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Copies a worker's status into the shared state whenever it changes.
fn mirror_status(shared: &Arc<Shared>, host: &str, mut status: tokio::sync::watch::Receiver<WorkerStatus>) {
    let (mirror, who) = (shared.clone(), host.to_owned());
    tokio::spawn(async move {
        loop {
            let now = status.borrow_and_update().clone();
            lock(&mirror.workers).insert(who.clone(), now);
            if status.changed().await.is_err() {
                return;
            }
        }
    });
}

/// Seeds a scenario runs in `cargo test` (its own seed and this many less one more): a
/// few dozen each, so CI sweeps every scenario; `benches/seed-sweep.sh` runs any number.
pub const CI_SEEDS: u64 = 24;

/// The seeds a scenario runs: `SIM_SEED` alone (a replay); else `SIM_SEEDS` seeds from
/// `SIM_SEED_BASE` (a sweep); else `default_seed` and the [`CI_SEEDS`]` - 1` after it.
pub fn seeds(default_seed: u64) -> std::ops::Range<u64> {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(seed) = var("SIM_SEED") {
        return seed..seed + 1;
    }
    match var("SIM_SEEDS") {
        Some(n) => {
            let base = var("SIM_SEED_BASE").unwrap_or(0);
            base..base + n
        }
        None => default_seed..default_seed + CI_SEEDS,
    }
}

/// Runs `scenario` once per seed of [`seeds`], every one of them even after a failure,
/// then fails naming each failing seed and how to replay it.
pub fn sweep(name: &str, default_seed: u64, scenario: impl Fn(u64)) {
    init_logs();
    let seeds = seeds(default_seed);
    let count = seeds.end - seeds.start;
    let mut failed = Vec::new();
    for seed in seeds {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(seed))).is_err() {
            eprintln!(
                "*** simulation {name} failed with seed {seed}; replay: SIM_SEED={seed} cargo test -p dispatch-sim {name} ***"
            );
            failed.push(seed);
        }
    }
    assert!(failed.is_empty(), "{name}: {} of {count} seeds failed: {failed:?}", failed.len());
}

/// Logs from the simulated hosts when `RUST_LOG` is set.
pub fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}
