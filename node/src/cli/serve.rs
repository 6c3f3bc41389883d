//! `dispatch up` and `dispatch agent`: run the product (orchestrator, worker, or both).

use std::net::SocketAddr;
use std::path::PathBuf;

use actors::kernel::SupervisorConfig;
use actors::node::{MembershipConfig, NodeConfig};
use actors::policy::{Principal, Role};
use clap::{Args, ValueEnum};

use super::generate_password;
use crate::server::{InferenceConfig, Orchestrator, ServerConfig, StopSignals};

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum AgentRole {
    Orchestrator,
    Worker,
}

#[derive(Args)]
pub(super) struct ServeArgs {
    /// Directory for the log, blobs and keys.
    #[arg(long, default_value = "./dispatch-data", env = "DISPATCH_DATA_DIR")]
    pub(super) data_dir: PathBuf,
    /// Address of the HTTP API (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080", env = "DISPATCH_HTTP_ADDR")]
    pub(super) http_addr: SocketAddr,
    /// Accept X-Actor-* identity headers instead of tokens. Development only.
    #[arg(long)]
    pub(super) dev_headers: bool,
    /// Incident templates file replacing the built-in set.
    #[arg(long)]
    pub(super) templates: Option<PathBuf>,
    /// Log lines as JSON.
    #[arg(long)]
    pub(super) log_json: bool,
    /// File holding the first admin's password (otherwise one is generated and printed once).
    #[arg(long)]
    pub(super) admin_password_file: Option<PathBuf>,
    /// Hours a retried request with the same Idempotency-Key replays the first answer.
    #[arg(long, default_value_t = 24)]
    pub(super) idempotency_retention_hours: u64,
    /// Orchestrator: where workers connect (QUIC; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:7443", env = "DISPATCH_CLUSTER_ADDR")]
    pub(super) cluster_addr: SocketAddr,
    /// Orchestrator: the cluster address written into join tokens (default: the bound one).
    #[arg(long)]
    pub(super) advertise_addr: Option<String>,
    /// Orchestrator: heartbeat interval new nodes are configured with.
    #[arg(long, default_value_t = 5_000)]
    pub(super) node_heartbeat_ms: u64,
    /// Worker: the static busybox the default sandbox image is built from (no registry needed).
    #[arg(long, default_value = "/bin/busybox")]
    pub(super) sandbox_busybox: PathBuf,
    /// Worker: this host runs a local inference runtime (reported in its capabilities).
    #[arg(long)]
    pub(super) local_inference: bool,
    /// Orchestrator: work needs inference; /ready says no until a node has a local
    /// runtime or --inference-provider is set.
    #[arg(long)]
    pub(super) inference_required: bool,
    /// Orchestrator: an external inference provider (URL).
    #[arg(long)]
    pub(super) inference_provider: Option<String>,
    /// Orchestrator: first retry delay of a failed lane callback (doubling; 6 attempts, then the DLQ).
    #[arg(long, default_value_t = 500)]
    pub(super) callback_backoff_ms: u64,
    /// Orchestrator: a callback host allowed even though it resolves to a loopback,
    /// private or link-local address (repeatable). Every other such callback is refused.
    #[arg(long, value_name = "HOST")]
    pub(super) callback_allow_host: Vec<String>,
    /// Orchestrator: PEM certificates trusted for https callbacks besides the system's roots.
    #[arg(long, value_name = "PEM")]
    pub(super) callback_ca_file: Option<PathBuf>,
    /// Orchestrator: how long one callback delivery may take.
    #[arg(long, default_value_t = 5_000)]
    pub(super) callback_timeout_ms: u64,
    /// Orchestrator: a reverse proxy whose X-Forwarded-For is believed (repeatable CIDR).
    #[arg(long, value_name = "CIDR")]
    pub(super) trusted_proxy: Vec<ipnet::IpNet>,
    /// Orchestrator: HTTP connections served at once.
    #[arg(long, default_value_t = 1024)]
    pub(super) max_connections: usize,
    /// Refuse new work (507) while the data dir's filesystem has less free space (MiB).
    #[arg(long, default_value_t = 64)]
    pub(super) min_free_mb: u64,
    /// Serve the API over HTTPS with this PEM certificate chain (with --tls-key; read
    /// again on SIGHUP).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub(super) tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub(super) tls_key: Option<PathBuf>,
    /// Orchestrator: serve HTTPS with a certificate from the cluster CA for this DNS name
    /// or address (repeatable); clients trust <data-dir>/ca/ca.crt.pem (--ca-cert).
    #[arg(long, value_name = "NAME", conflicts_with = "tls_cert")]
    pub(super) tls_san: Vec<String>,
    /// Orchestrator: evidence bytes each account may store (MiB).
    #[arg(long, default_value_t = 1024)]
    pub(super) blob_quota_mb: u64,
    /// Orchestrator: events buffered per event stream (GET /v1/stream).
    #[arg(long, default_value_t = 1024)]
    pub(super) stream_buffer: usize,
    /// Orchestrator: an event stream whose buffer stays full this long is cut off (ms).
    #[arg(long, default_value_t = 10_000)]
    pub(super) stream_slow_ms: u64,
    /// Orchestrator: event streams one caller may hold open at once.
    #[arg(long, default_value_t = 4)]
    pub(super) streams_per_caller: usize,
    /// Orchestrator: ticket actors, and separately lane actors, kept awake at once; past
    /// it the least recently used go to sleep (their state stays in the log).
    #[arg(long, default_value_t = SupervisorConfig::default().max_live as u32, value_parser = clap::value_parser!(u32).range(1..))]
    pub(super) max_awake_actors: u32,
    /// Orchestrator: an actor unused this long goes to sleep (seconds).
    #[arg(long, default_value_t = SupervisorConfig::default().idle_after.as_secs(), value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub(super) actor_idle_secs: u64,
}

impl ServeArgs {
    /// HTTPS for the API port, when asked for.
    pub(super) fn https(&self) -> Option<crate::tls::HttpsConfig> {
        use crate::tls::HttpsConfig;
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(HttpsConfig::Files { cert: cert.clone(), key: key.clone() }),
            _ if !self.tls_san.is_empty() => Some(HttpsConfig::ClusterCa { names: self.tls_san.clone() }),
            _ => None,
        }
    }

    pub(super) fn worker_host(&self) -> crate::worker::WorkerHost {
        crate::worker::WorkerHost { busybox: self.sandbox_busybox.clone(), inference: self.local_inference }
    }
}

pub(super) async fn serve_until_stopped(args: ServeArgs, embedded: bool) -> anyhow::Result<()> {
    crate::telemetry::init_logs(args.log_json);
    let config = server_config(&args)?;
    let orchestrator = Orchestrator::start(config).await?;
    let local_worker = match embedded {
        true => Some(start_local_worker(&orchestrator, &args.data_dir.join("worker"), &args.worker_host()).await?),
        false => None,
    };
    let url = orchestrator.url.clone();
    // The admin token exists on disk before anyone is told where to connect.
    let token_file = args.data_dir.join("admin-token");
    let fresh_token = mint_admin_token(&orchestrator, &token_file)?;
    let first_admin = match embedded {
        true => first_admin(&orchestrator, args.admin_password_file.as_deref()).await?,
        false => None,
    };
    // Listening for Ctrl-C before anyone is told where to connect: from here on it stops gracefully.
    let mut stop = StopSignals::listen();
    // The console first: it is what a person opens.
    println!("dispatch: console at {url}/");
    println!("dispatch: listening on {url}");
    println!("  cluster:     {} (QUIC, mutual TLS)", orchestrator.cluster_addr);
    print_https(&args);
    match &local_worker {
        Some(local) => {
            println!("  mode:        embedded single node (orchestrator + local worker {})", local.node_id);
            if let Some(problem) = &local.sandbox_problem {
                println!("  sandbox:     WARNING: {problem}");
            }
        }
        None => println!("  mode:        orchestrator"),
    }
    println!("  data dir:    {}", args.data_dir.display());
    match fresh_token {
        Some(token) => {
            println!("  admin token: {token}");
            println!("               (shown once; also saved to {} with mode 0600)", token_file.display());
        }
        None => println!("  admin token: in {} (minted at first start)", token_file.display()),
    }
    if embedded {
        match first_admin {
            Some(Some(pw)) => println!("  admin login: admin / {pw}   (shown once; `dispatch login --username admin`)"),
            Some(None) => println!("  admin login: admin, password from --admin-password-file"),
            None => {}
        }
        println!(
            "  try:         curl -H \"Authorization: Bearer $(cat {})\" {url}/v1/incident-templates",
            token_file.display()
        );
    }
    // The CLI takes --token, then $DISPATCH_TOKEN, then a stored login, then ./dispatch-data/admin-token.
    println!("  cli:         export DISPATCH_SERVER={url} DISPATCH_TOKEN=$(cat {})", token_file.display());
    println!(
        "               (or run it next to dispatch-data/, or `dispatch login`; `dispatch whoami` says who you are)"
    );
    stop.next().await;
    orchestrator.app.serving.stop();
    println!(
        "dispatch: stopping: open long-polls answered, waiting for {} request(s) in flight (Ctrl-C again to exit at once)",
        orchestrator.app.serving.in_flight()
    );
    tokio::spawn(async move {
        stop.next().await;
        // Nothing is lost: every acknowledged write was fsynced before its answer.
        println!("dispatch: second signal: exiting now (every acknowledged write is already on disk)");
        std::process::exit(130);
    });
    if let Some(local) = local_worker {
        let _ = local.stop.send(true);
        let _ = local.task.await;
    }
    orchestrator.shutdown().await
}

/// The orchestrator's configuration from the command line.
fn server_config(args: &ServeArgs) -> anyhow::Result<ServerConfig> {
    Ok(ServerConfig {
        data_dir: args.data_dir.clone(),
        http_addr: args.http_addr,
        dev_headers: args.dev_headers,
        templates_file: args.templates.clone(),
        supervisor: actors_awake(args),
        idempotency_retention: std::time::Duration::from_secs(args.idempotency_retention_hours.max(1) * 3600),
        cluster_addr: args.cluster_addr,
        advertise_addr: args.advertise_addr.clone(),
        membership: MembershipConfig {
            default_config: NodeConfig { heartbeat_interval_ms: args.node_heartbeat_ms, ..NodeConfig::default() },
            ..MembershipConfig::default()
        },
        inference: InferenceConfig { required: args.inference_required, provider: args.inference_provider.clone() },
        delivery: crate::lanes::DeliveryPolicy {
            first_backoff: std::time::Duration::from_millis(args.callback_backoff_ms),
            allow_hosts: args.callback_allow_host.clone(),
            timeout: std::time::Duration::from_millis(args.callback_timeout_ms),
            extra_roots: match &args.callback_ca_file {
                Some(path) => crate::outbound::read_roots(path)?,
                None => vec![],
            },
            ..Default::default()
        },
        edge: crate::server::EdgeConfig {
            http: crate::http::HttpLimits { max_connections: args.max_connections, ..Default::default() },
            trusted_proxies: args.trusted_proxy.clone(),
            min_free_bytes: args.min_free_mb << 20,
            blob_quota_bytes: args.blob_quota_mb << 20,
            data_dir: args.data_dir.clone(),
            streams: crate::api::StreamLimits {
                buffer: args.stream_buffer,
                slow_after: std::time::Duration::from_millis(args.stream_slow_ms),
                per_principal: args.streams_per_caller,
                ..Default::default()
            },
        },
        lanes: actors_awake(args),
        cluster_keys: Default::default(),
        https: args.https(),
    })
}

/// How many actors of each kind stay awake, and for how long unused.
fn actors_awake(args: &ServeArgs) -> SupervisorConfig {
    SupervisorConfig {
        max_live: args.max_awake_actors as usize,
        idle_after: std::time::Duration::from_secs(args.actor_idle_secs),
    }
}

/// What an HTTPS client needs to know; a warning when plain HTTP leaves this host.
fn print_https(args: &ServeArgs) {
    match args.https() {
        Some(crate::tls::HttpsConfig::ClusterCa { names }) => println!(
            "  https:       certificate from the cluster CA for {}; clients: --ca-cert {}",
            names.join(", "),
            crate::tls::ca_pem_path(&args.data_dir.join("ca")).display()
        ),
        Some(crate::tls::HttpsConfig::Files { cert, .. }) => {
            println!("  https:       certificate {} (kill -HUP {} reloads it)", cert.display(), std::process::id())
        }
        None if !args.http_addr.ip().is_loopback() => println!(
            "  WARNING:     plain HTTP on {}: tokens and passwords cross the network unencrypted; use --tls-cert/--tls-key or --tls-san",
            args.http_addr
        ),
        None => {}
    }
}

/// The admin token, minted and saved (0600) at the first start only; `Some` when new.
fn mint_admin_token(orchestrator: &Orchestrator, token_file: &std::path::Path) -> anyhow::Result<Option<String>> {
    if token_file.exists() {
        return Ok(None);
    }
    let admin = Principal {
        sub: "admin".into(),
        role: Role::Admin,
        accounts: vec!["*".into()],
        sites: vec!["*".into()],
        tools: None,
        queues: vec![],
    };
    let (token, _) = orchestrator.app.auth.mint(&admin, 365 * 24 * 3600)?;
    write_secret(token_file, &token)?;
    Ok(Some(token))
}

/// `up`'s own worker node, running in this process.
pub(super) struct LocalWorkerTask {
    node_id: String,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// Why it cannot run the default sandbox image, if it cannot.
    sandbox_problem: Option<String>,
}

/// `up`'s worker: joined over QUIC with a one-use token like any other host (on the
/// first start), then connected with its certificate.
pub(super) async fn start_local_worker(
    orchestrator: &Orchestrator,
    dir: &std::path::Path,
    host: &crate::worker::WorkerHost,
) -> anyhow::Result<LocalWorkerTask> {
    let store = std::sync::Arc::new(crate::worker::WorkerStore::open(dir)?);
    let token = match store.identity()?.is_some() {
        true => None,
        false => {
            let origin = actors::node::Origin::system("up.local_worker");
            let ttl = std::time::Duration::from_secs(60);
            Some(orchestrator.app.cluster.create_token(Default::default(), 1, ttl, origin).await?.1)
        }
    };
    let via = orchestrator.cluster_addr.to_string();
    let local = crate::worker::prepare(store, dir, token.as_deref(), Some(&via), Default::default(), host).await?;
    let _ = orchestrator.app.local_node.set(local.node_id.clone());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = local.worker.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = worker.run(stopped).await {
            tracing::error!(error = %e, "local worker stopped");
        }
    });
    Ok(LocalWorkerTask { node_id: local.node_id, stop, task, sandbox_problem: local.sandbox_problem })
}

/// Creates the `admin` account when there are no accounts yet. `Some(Some(pw))`:
/// created with a generated password; `Some(None)`: created with the given one.
pub(super) async fn first_admin(
    orchestrator: &Orchestrator,
    password_file: Option<&std::path::Path>,
) -> anyhow::Result<Option<Option<String>>> {
    let app = &orchestrator.app;
    if !actors::user::list(&app.log)?.is_empty() {
        return Ok(None);
    }
    let (password, generated) = match password_file {
        Some(f) => {
            let pw = std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("reading {}: {e}", f.display()))?;
            (pw.trim_end_matches(['\r', '\n']).to_owned(), false)
        }
        None => (generate_password(), true),
    };
    let hash =
        tokio::task::spawn_blocking(move || crate::api::identity::hash_password(&password).map(|h| (h, password)))
            .await?;
    let (hash, password) = hash.map_err(|e| anyhow::anyhow!("hashing the admin password: {}", e.message))?;
    let system = Principal {
        sub: "system".into(),
        role: Role::Admin,
        accounts: vec!["*".into()],
        sites: vec!["*".into()],
        tools: None,
        queues: vec![],
    };
    let account = actors::user::Account {
        username: "admin".into(),
        kind: actors::user::AccountKind::Human,
        role: Role::Admin,
        accounts: vec!["*".into()],
        sites: vec!["*".into()],
        queues: vec![],
        tools: None,
    };
    let create = actors::user::UserCommand::Create { account, password_hash: Some(hash) };
    crate::api::identity::user_command(app, &system, "admin", create)
        .await
        .map_err(|e| anyhow::anyhow!("creating the admin account: {}", e.message))?;
    Ok(Some(generated.then_some(password)))
}

pub(super) fn write_secret(path: &std::path::Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    f.write_all(secret.as_bytes())?;
    f.sync_all()?;
    Ok(())
}
