//! The orchestrator role: opens the log, starts the writer and the actors, and
//! serves the HTTP API until asked to stop, then drains and closes in order.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::http::Listener;
use actors::kernel::{Clock, Entities, Ids, Kernel, RandomIds, SystemClock};
use actors::lane::{LaneDeps, LaneHandle};
use actors::node::Membership;
use actors::storage::{BlobStore, Log, LogWriter, WriterHandle};
use actors::ticket::{Templates, TicketDeps, Tickets};
use anyhow::Context;
use tokio::sync::oneshot;

use crate::api::{self, App, AppInner};
use crate::auth::Auth;
use crate::cluster_edge::OrchestratorCluster;
pub use crate::config::{EdgeConfig, InferenceConfig, ServerConfig};
use crate::datadir::log_path;
use crate::dispatch::{DispatchConfig, Dispatcher};

/// A running orchestrator.
pub struct Orchestrator {
    /// Where the HTTP API listens (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// Where workers connect (QUIC).
    pub cluster_addr: SocketAddr,
    /// The API's URL: `https://` when it serves TLS.
    pub url: String,
    pub app: App,
    endpoint: quinn::Endpoint,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// The orchestrator's files: the log (and its writer thread) and the blob store.
pub struct Storage {
    pub log: Log,
    pub writer: LogWriter,
    /// Joined at shutdown; `None` when the caller waits for it itself (the simulator,
    /// which must close one life's log before the next opens it).
    pub writer_thread: Option<WriterHandle>,
    pub blobs: BlobStore,
}

impl Storage {
    /// Makes the data dir private, opens the log and the blob store, starts the writer.
    pub fn open(data_dir: &Path) -> anyhow::Result<Storage> {
        let (log, blobs) = Self::files(data_dir)?;
        let (writer, writer_thread) = LogWriter::start(&log).context("starting the log writer")?;
        Ok(Storage { log, writer, writer_thread: Some(writer_thread), blobs })
    }

    /// As [`Storage::open`], with a writer that commits on the caller's thread (the
    /// simulator's: its runs must not depend on another thread's timing).
    pub fn open_inline(data_dir: &Path) -> anyhow::Result<Storage> {
        let (log, blobs) = Self::files(data_dir)?;
        Ok(Storage { writer: LogWriter::inline(&log), log, writer_thread: None, blobs })
    }

    fn files(data_dir: &Path) -> anyhow::Result<(Log, BlobStore)> {
        crate::datadir::prepare(data_dir)?;
        let path = log_path(data_dir);
        let log = Log::open(&path)
            .with_context(|| format!("opening {} (is another dispatch using this data dir?)", path.display()))?;
        let blobs = BlobStore::open(data_dir.join("blobs")).context("opening the blob store")?;
        Ok((log, blobs))
    }
}

/// What the orchestrator runs on besides its configuration: its files, its sockets,
/// its clock and its source of ids. [`Orchestrator::start`] opens the real ones; the
/// simulator passes simulated sockets, time and seeded ids to [`Orchestrator::start_with`].
pub struct Io<L> {
    pub storage: Storage,
    /// Where the HTTP API accepts connections.
    pub http: L,
    /// The UDP socket the cluster (QUIC) listens on.
    pub cluster_socket: Arc<dyn quinn::AsyncUdpSocket>,
    /// Fixes quinn's randomness (simulations); `None` in production.
    pub quinn_seed: Option<[u8; 32]>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn Ids>,
}

impl Orchestrator {
    /// Opens everything on this machine and starts serving.
    pub async fn start(config: ServerConfig) -> anyhow::Result<Orchestrator> {
        let storage = Storage::open(&config.data_dir)?;
        let http = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("binding {}", config.http_addr))?;
        let cluster_socket = cluster::transport::udp_socket(config.cluster_addr)
            .with_context(|| format!("binding the cluster listener on {}", config.cluster_addr))?;
        let io = Io {
            storage,
            http,
            cluster_socket,
            quinn_seed: None,
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds),
        };
        Self::start_with(config, io).await
    }

    /// The one wiring of the orchestrator, whatever it runs on: the kernel, the
    /// entities' actors, the cluster, the background loops, the HTTP API.
    pub async fn start_with<L: Listener<Addr = SocketAddr>>(
        config: ServerConfig,
        io: Io<L>,
    ) -> anyhow::Result<Orchestrator> {
        // The recorder first, so what start-up counts and sets is recorded.
        let metrics = crate::telemetry::metrics();
        crate::telemetry::zero_alerted_counters();
        let Storage { log, writer, writer_thread, blobs } = io.storage;
        let templates = Arc::new(load_templates(&config)?);
        let auth = Auth::load_or_create(&log)?;
        let kernel = Kernel { log: log.clone(), writer: writer.clone(), clock: io.clock, ids: io.ids };
        let deps = Arc::new(TicketDeps { blobs: blobs.clone(), templates: templates.clone() });
        for (state, n) in actors::ticket::store::count_by_state(&log).context("counting tickets")? {
            metrics::gauge!("dispatch_tickets", "state" => state.as_str()).set(n as f64);
        }
        let tickets =
            Entities::start(kernel.clone(), deps, config.supervisor).await.context("starting ticket actors")?;
        let (cluster, endpoint) = start_cluster(&config, &kernel, io.cluster_socket, io.quinn_seed).await?;
        let tasks = Dispatcher::start(
            kernel.clone(),
            cluster.membership.clone(),
            cluster.links.clone(),
            DispatchConfig::default(),
        )
        .await
        .context("starting task dispatch")?;
        cluster.attach_dispatcher(tasks.clone());
        let lane_deps = Arc::new(LaneDeps { changes: tokio::sync::broadcast::channel(1024).0 });
        let lanes =
            actors::lane::start(kernel.clone(), lane_deps, config.lanes).await.context("starting lane actors")?;
        let clock = kernel.clock.clone();
        let background = vec![
            tokio::spawn(crate::lanes::run_timers(log.clone(), lanes.clone(), clock.clone())),
            tokio::spawn(crate::lanes::run_deliveries(
                log.clone(),
                writer.clone(),
                config.delivery.clone(),
                clock.clone(),
            )),
            tokio::spawn(purge_idempotency_records(writer.clone(), config.idempotency_retention, clock)),
            tokio::spawn(crate::memory::return_freed_memory(sweep_interval(&config))),
        ];
        let app = App(Arc::new(AppInner {
            log,
            writer,
            kernel,
            blobs,
            templates,
            tickets: tickets.clone(),
            cluster: cluster.clone(),
            tasks: tasks.clone(),
            inference: config.inference.clone(),
            lanes: lanes.clone(),
            auth,
            dev_headers: config.dev_headers,
            metrics,
            login_limits: Default::default(),
            callbacks: config.delivery.addresses(),
            edge: EdgeConfig { data_dir: config.data_dir.clone(), ..config.edge.clone() },
            blob_quota: Default::default(),
            admin_changes: Default::default(),
            local_node: Default::default(),
            free_space: crate::api::FreeSpace::new(config.data_dir.clone()),
            serving: Default::default(),
            streams: crate::api::Streams::new(&config.edge.streams),
            https: config.https.is_some(),
        }));
        let running = Running { tickets, lanes, tasks, cluster, background, writer_thread };
        Self::serve(config, app, io.http, endpoint, running).await
    }

    /// Serves the API until asked to stop, then stops what runs behind it, in order.
    async fn serve<L: Listener<Addr = SocketAddr>>(
        config: ServerConfig,
        app: App,
        listener: L,
        endpoint: quinn::Endpoint,
        running: Running,
    ) -> anyhow::Result<Orchestrator> {
        let cluster_addr = endpoint.local_addr()?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let (router, http_limits) = (api::router(app.clone()), config.edge.http.clone());
        let tls = match &config.https {
            Some(https) => Some(crate::tls::Https::load(https, &config.data_dir.join("ca")).context("HTTPS")?),
            None => None,
        };
        if let Some(tls) = &tls {
            tls.reload_on_sighup();
        }
        let url = format!("{}://{addr}", if tls.is_some() { "https" } else { "http" });
        let task = tokio::spawn(async move {
            crate::http::serve(listener, router, http_limits, tls, async move {
                let _ = stopped.await;
            })
            .await;
            // In-flight requests are done: stop the actors, then let the writer drain.
            running.stop().await;
            Ok(())
        });
        if config.dev_headers {
            tracing::warn!("X-Actor-* identity headers are accepted (--dev-headers): never use this in production");
        }
        tracing::info!(%addr, %cluster_addr, data_dir = %config.data_dir.display(), "orchestrator started");
        Ok(Orchestrator { addr, cluster_addr, url, app, endpoint, stop, task })
    }

    /// Stops accepting requests, finishes in-flight ones, and closes the log.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let Orchestrator { app, stop, task, endpoint, .. } = self;
        endpoint.close(0u32.into(), b"shutdown");
        let _ = stop.send(());
        drop(app);
        task.await.context("server task")?
    }
}

/// What runs behind the API; stopped after the last request, in order.
struct Running {
    tickets: Entities<Tickets>,
    lanes: LaneHandle,
    tasks: Dispatcher,
    cluster: Arc<OrchestratorCluster>,
    /// Lane timers, callback deliveries, the idempotency purge.
    background: Vec<tokio::task::JoinHandle<()>>,
    writer_thread: Option<WriterHandle>,
}

impl Running {
    async fn stop(self) {
        for task in &self.background {
            task.abort();
        }
        for task in self.background {
            let _ = task.await;
        }
        self.tickets.stop().await;
        self.lanes.stop().await;
        // The handles hold log writers: let go of them before waiting for the writer.
        drop((self.tickets, self.lanes));
        self.tasks.stop();
        self.cluster.membership.stop();
        let Some(writer_thread) = self.writer_thread else { return };
        let joined = tokio::task::spawn_blocking(move || writer_thread.join());
        if tokio::time::timeout(Duration::from_secs(10), joined).await.is_err() {
            tracing::warn!("log writer did not stop within 10s; every acknowledged write is already durable");
        }
    }
}

/// The incident templates: the file given, or the built-in set.
fn load_templates(config: &ServerConfig) -> anyhow::Result<Templates> {
    let Some(path) = &config.templates_file else { return Ok(Templates::builtin()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Templates::parse(&text).with_context(|| format!("loading {}", path.display()))
}

/// Opens the cluster CA (created on first start), starts the node actors and the
/// QUIC listener that workers join and connect to.
async fn start_cluster(
    config: &ServerConfig,
    kernel: &Kernel,
    socket: Arc<dyn quinn::AsyncUdpSocket>,
    seed: Option<[u8; 32]>,
) -> anyhow::Result<(Arc<OrchestratorCluster>, quinn::Endpoint)> {
    let ca = cluster::certs::open_or_create_ca(
        &config.data_dir.join("ca"),
        std::time::SystemTime::now(),
        config.cluster_keys,
    )
    .context("opening the cluster CA")?;
    let token_key = kernel
        .log
        .meta_get_or_insert("cluster.join_token_key", &rand::random::<[u8; 32]>())
        .context("reading the join token key")?;
    let membership =
        Membership::start(kernel.clone(), config.membership.clone()).await.context("starting node actors")?;
    let bound = socket.local_addr()?;
    let advertise = config.advertise_addr.clone().unwrap_or_else(|| {
        let ip = if bound.ip().is_unspecified() { std::net::Ipv4Addr::LOCALHOST.into() } else { bound.ip() };
        SocketAddr::new(ip, bound.port()).to_string()
    });
    let cluster = OrchestratorCluster::new(membership, Arc::new(ca), token_key, vec![advertise]);
    let tls = cluster.server_tls().context("cluster TLS")?;
    let endpoint = cluster::transport::endpoint(socket, Some(tls), seed).context("starting the cluster listener")?;
    let cluster = Arc::new(cluster);
    tokio::spawn(cluster.clone().serve(endpoint.clone()));
    Ok((cluster, endpoint))
}

/// Hourly, drops idempotency records older than the retention window.
/// How often idle actors are put to sleep (the supervisors sweep at half their idle time).
fn sweep_interval(config: &ServerConfig) -> Duration {
    (config.supervisor.idle_after.min(config.lanes.idle_after) / 2).max(Duration::from_secs(1))
}

async fn purge_idempotency_records(writer: LogWriter, retention: Duration, clock: Arc<dyn Clock>) {
    let mut every = tokio::time::interval(Duration::from_secs(3600).min(retention).max(Duration::from_secs(1)));
    loop {
        every.tick().await;
        let cutoff_ms = clock.now_ms() - retention.as_millis() as i64;
        match writer.purge_idempotency(cutoff_ms).await {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!("dispatch_idempotency_records_purged_total").increment(n);
                tracing::info!(removed = n, "purged idempotency records past retention");
            }
            Err(e) => tracing::warn!(error = %e, "purging idempotency records failed; will retry"),
        }
    }
}

/// Ctrl-C and SIGTERM, listened for from the moment this is made.
///
/// Made once and asked twice (stop gracefully, then exit at once): a listener made only
/// when awaited misses a signal that arrives before it is first polled, and the second
/// Ctrl-C of an impatient operator would then be lost.
pub struct StopSignals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Starts listening now; until then the default action (exit) applies.
    pub fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            StopSignals {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// Resolves at the next Ctrl-C or SIGTERM received since `listen` (or the previous call).
    pub async fn next(&mut self) {
        #[cfg(unix)]
        {
            async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = recv(&mut self.interrupt) => {}
                _ = recv(&mut self.terminate) => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
