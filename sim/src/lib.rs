//! Simulations of the cluster in turmoil: the real orchestrator and worker code,
//! the real quinn + rustls stack, on turmoil's simulated UDP, with partitions,
//! loss, jitter and crashes under the simulator's control and its clock.
//!
//! - [`SimUdp`] adapts turmoil's `UdpSocket` to quinn's `AsyncUdpSocket`.
//! - [`Harness`] builds a simulation with one orchestrator and some workers, each
//!   keeping its files in a real temp dir that survives crashes, and reads the
//!   orchestrator's log to check invariants and build a trace of domain events.

mod control;
mod determinism;

use control::obey;
use determinism::{SimClock, quinn_seed};

use dispatch_node::actors;
use dispatch_node::actors::storage;
use dispatch_node::cluster;
use dispatch_node::cluster::certs;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use actors::kernel::{Kernel, SeededIds};
use actors::node::membership::{history, load_nodes, load_tokens};
use actors::node::{Membership, MembershipConfig, Node, NodeConfig, Origin};
use actors::task::store as task_store;
use actors::task::{NetworkPolicy, Task, TaskSpec};
use cluster::proto::{Capabilities, JobResult, JobSpec};
use dispatch_node::cluster_edge::OrchestratorCluster;
use dispatch_node::dispatch::{DispatchConfig, Dispatcher};
use dispatch_node::worker::{self, Executor, JobRun, Worker, WorkerStatus, WorkerStore};
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use storage::{Log, LogWriter, WriterHandle};
use tokio::sync::mpsc;

type ReadyFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// quinn's socket on turmoil's UDP: one datagram per transmit and per receive.
pub struct SimUdp {
    socket: Arc<turmoil::net::UdpSocket>,
    local: SocketAddr,
    /// The pending "readable" wait, kept across polls so its waker stays registered.
    readable: Mutex<Option<ReadyFuture>>,
}

impl fmt::Debug for SimUdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimUdp").field("local", &self.local).finish()
    }
}

impl SimUdp {
    /// Binds `0.0.0.0:port` on the current simulated host (0: an ephemeral port).
    pub async fn bind(port: u16) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let socket = turmoil::net::UdpSocket::bind(("0.0.0.0", port)).await?;
        let local = socket.local_addr()?;
        Ok(Arc::new(SimUdp { socket: Arc::new(socket), local, readable: Mutex::new(None) }))
    }
}

/// turmoil's UDP has no send backpressure: always writable.
#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncUdpSocket for SimUdp {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.socket.try_send_to(transmit.contents, transmit.destination).map(|_| ())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [io::IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut readable = self.readable.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(wait) = readable.as_mut() {
                match wait.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(result) => {
                        *readable = None;
                        result?;
                    }
                }
            }
            let (Some(buf), Some(slot)) = (bufs.first_mut(), meta.first_mut()) else { return Poll::Ready(Ok(0)) };
            match self.socket.try_recv_from(buf) {
                Ok((len, from)) => {
                    *slot = RecvMeta { addr: from, len, stride: len, ecn: None, dst_ip: None };
                    return Poll::Ready(Ok(1));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let socket = self.socket.clone();
                    *readable = Some(Box::pin(async move { socket.readable().await }));
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// The QUIC port of the simulated orchestrator.
pub const CLUSTER_PORT: u16 = 7443;
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
    /// Each host's count of writes its log writer thread has not answered yet.
    writes: Mutex<BTreeMap<String, Arc<AtomicUsize>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A simulation of one orchestrator and its workers.
pub struct Harness {
    pub sim: turmoil::Sim<'static>,
    pub seed: u64,
    shared: Arc<Shared>,
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
    /// A quiet network; the seed from `SIM_SEED` when set (to replay a failure).
    pub fn new(default_seed: u64) -> Self {
        let seed = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(default_seed);
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
        let mut h = Harness { sim, seed: setup.seed, shared: Arc::new(Shared::default()), _dir: dir, root };
        h.orchestrator(setup);
        h
    }

    fn orchestrator(&mut self, setup: &Setup) {
        let shared = self.shared.clone();
        let dir = self.root.join(ORCHESTRATOR);
        let disk: Arc<Mutex<Option<WriterHandle>>> = Arc::default();
        let (seed, uses) = (quinn_seed(setup.seed, ORCHESTRATOR), setup.token_uses);
        let (clock, scenario_seed, lives) = (Arc::new(SimClock::default()), setup.seed, Arc::new(AtomicU64::new(0)));
        let config = MembershipConfig {
            default_config: NodeConfig { heartbeat_interval_ms: setup.heartbeat_interval_ms, ..NodeConfig::default() },
            ..MembershipConfig::default()
        };
        self.sim.host(ORCHESTRATOR, move || {
            let (shared, dir, disk, config) = (shared.clone(), dir.clone(), disk.clone(), config.clone());
            let (clock, life) = (clock.clone(), lives.fetch_add(1, Ordering::SeqCst));
            async move {
                // A restart after a crash: the previous life's log must be closed first.
                drop(lock(&shared.log).take());
                if let Some(previous) = lock(&disk).take() {
                    previous.join();
                }
                std::fs::create_dir_all(&dir)?;
                let log = Log::open(dir.join("log.redb"))?;
                let (writer, handle) = LogWriter::start(&log)?;
                *lock(&disk) = Some(handle);
                lock(&shared.writes).insert(ORCHESTRATOR.into(), writer.in_flight());
                // Time and ids from the simulation: the same seed writes the same log.
                let kernel = Kernel {
                    log: log.clone(),
                    writer: writer.clone(),
                    clock,
                    // Each life mints from its own sequence: ids never repeat across a restart.
                    ids: SeededIds::new(scenario_seed ^ (life << 48)),
                };
                let membership = Membership::start(kernel.clone(), config).await?;
                let ca = certs::open_or_create_ca(&dir.join("ca"), SystemTime::now())?;
                let advertise = SocketAddr::new(turmoil::lookup(ORCHESTRATOR), CLUSTER_PORT).to_string();
                let cluster = OrchestratorCluster::new(membership, Arc::new(ca), b"sim key".to_vec(), vec![advertise]);
                let endpoint = cluster::transport::endpoint(
                    SimUdp::bind(CLUSTER_PORT).await?,
                    Some(cluster.server_tls()?),
                    Some(seed),
                )?;
                let cluster = Arc::new(cluster);
                let dispatch = DispatchConfig { output_cap: 4_096, ..DispatchConfig::default() };
                let tasks =
                    Dispatcher::start(kernel.clone(), cluster.membership.clone(), cluster.links.clone(), dispatch)
                        .await?;
                cluster.attach_dispatcher(tasks.clone());
                if lock(&shared.token).is_none() {
                    let ttl = Duration::from_secs(3_600);
                    let (_, token) = cluster.create_token(BTreeMap::new(), uses, ttl, Origin::system("sim")).await?;
                    *lock(&shared.token) = Some(token);
                }
                let (control, mut commands) = mpsc::unbounded_channel();
                *lock(&shared.control) = Some(control);
                *lock(&shared.log) = Some(log);
                tokio::spawn(cluster.clone().serve(endpoint));
                obey(&shared, &cluster, &tasks, &mut commands).await;
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
                let store = Arc::new(WorkerStore::open(&dir)?);
                if let Some(writes) = store.in_flight() {
                    lock(&shared.writes).insert(name.clone(), writes);
                }
                let endpoint = cluster::transport::endpoint(SimUdp::bind(0).await?, None, Some(seed))?;
                let capabilities = Capabilities {
                    hostname: name.clone(),
                    cores: 2,
                    docker_version: Some("simulated".into()),
                    ..Capabilities::default()
                };
                if store.identity()?.is_none() {
                    let token = loop {
                        if let Some(t) = lock(&shared.token).clone() {
                            break t;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    };
                    *lock(&shared.joins).entry(name.clone()).or_default() += 1;
                    worker::join(&store, &endpoint, &token, None, capabilities.clone()).await?;
                }
                let executor = Arc::new(FakeExecutor { host: name.clone(), shared: shared.clone() });
                let worker = Worker::new(store, endpoint, capabilities, Some(executor))?;
                let mut status = worker.status();
                let mirror = shared.clone();
                let who = name.clone();
                tokio::spawn(async move {
                    loop {
                        let now = status.borrow_and_update().clone();
                        lock(&mirror.workers).insert(who.clone(), now);
                        if status.changed().await.is_err() {
                            return;
                        }
                    }
                });
                let (_keep, never) = tokio::sync::watch::channel(false);
                worker.run(never).await?;
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

    /// One tick. Durable writes happen outside the simulation (a real file, a real
    /// fsync on a real thread); the clock waits for them, so they take no simulated
    /// time and runs repeat whatever the machine's load.
    fn step(&mut self) {
        let started = std::time::Instant::now();
        while lock(&self.shared.writes).values().any(|w| w.load(Ordering::SeqCst) > 0) {
            assert!(started.elapsed() < Duration::from_secs(60), "a log write has not finished in 60 s");
            std::thread::yield_now();
        }
        if let Err(e) = self.sim.step() {
            panic!("simulation failed: {e}");
        }
    }

    /// The domain events of every node, in order, with their ids:
    /// `node-1 node.joined → JOINING (event …)`, …
    pub fn trace(&self) -> Vec<String> {
        let Some(log) = lock(&self.shared.log).clone() else { return Vec::new() };
        let mut trace = Vec::new();
        for node in load_nodes(&log).unwrap_or_default() {
            for r in history(&log, &node.id).unwrap_or_default() {
                // Ids are seeded; times are not compared (the log writer is a real thread).
                trace.push(format!(
                    "{} {} → {} (event {})",
                    node.id,
                    r.kind,
                    r.to_state.unwrap_or_default(),
                    r.event_id
                ));
            }
        }
        trace
    }
}

/// Prints the seed when a scenario fails, so it can be replayed with `SIM_SEED`.
pub struct SeedOnFailure {
    pub scenario: &'static str,
    pub seed: u64,
}

impl Drop for SeedOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\n*** simulation {} failed with seed {}; replay: SIM_SEED={} cargo test -p dispatch-sim {} ***\n",
                self.scenario, self.seed, self.seed, self.scenario
            );
        }
    }
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
