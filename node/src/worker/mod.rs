//! The worker role: join once with a token, then stay connected to the orchestrator
//! from the identity kept in the worker's own data dir, and serve `/health`,
//! `/ready` (ready once a configuration is acknowledged) and `/metrics`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use serde_json::json;
use tokio::sync::watch;

use crate::sandbox::Sandbox;

pub mod jobs;
mod session;
mod store;

pub use jobs::{Executor, JobRun};
pub use session::{Worker, WorkerStatus, apply_config, join};
pub use store::{Identity, WorkerError, WorkerStore};

/// What the operator says about a worker host.
#[derive(Debug, Clone)]
pub struct WorkerHost {
    /// The static busybox the default sandbox image is built from.
    pub busybox: std::path::PathBuf,
    /// The host runs a local inference runtime.
    pub inference: bool,
}

/// A worker's joining and connecting, shared by `agent --role worker` and `up`.
pub struct LocalWorker {
    pub worker: Arc<Worker>,
    pub node_id: String,
    /// What keeps this host from running the default sandbox image (no engine, no
    /// busybox to build it from), to be said at start.
    pub sandbox_problem: Option<String>,
}

/// What a worker runs on: its QUIC endpoint, what it reports about its host, and
/// what runs its jobs (`None`: no container engine, every job is refused).
pub struct WorkerIo {
    pub endpoint: quinn::Endpoint,
    pub capabilities: cluster::proto::Capabilities,
    pub executor: Option<Arc<dyn Executor>>,
    /// The type of the key made at join (renewals keep the type of the key they replace).
    pub keys: cluster::certs::KeyAlgorithm,
}

/// Opens this host's endpoint and container engine, then [`join_or_resume`].
pub async fn prepare(
    store: Arc<WorkerStore>,
    data_dir: &Path,
    token: Option<&str>,
    via: Option<&str>,
    labels: BTreeMap<String, String>,
    host: &WorkerHost,
) -> anyhow::Result<LocalWorker> {
    let socket = cluster::transport::udp_socket(SocketAddr::from(([0, 0, 0, 0], 0)))?;
    let endpoint = cluster::transport::endpoint(socket, None, None)?;
    let (sandbox, problem) = match Sandbox::connect(data_dir.join("workspaces"), host.busybox.clone()).await {
        Ok(s) => {
            let s = s.with_fence(std::env::current_exe().context("this program's path, for job fences")?);
            take_back_leftovers(&store, &s).await;
            let problem = s.default_image_problem().await;
            (Some(Arc::new(s)), problem)
        }
        Err(e) => (None, Some(format!("no container engine ({e}): this node gets no jobs"))),
    };
    if let Some(problem) = &problem {
        tracing::warn!(%problem, "this node cannot run the default sandbox image");
    }
    let capabilities = crate::capabilities::detect(data_dir, labels, sandbox.as_deref(), host.inference).await;
    let executor = sandbox.map(|s| s as Arc<dyn Executor>);
    let local =
        join_or_resume(store, WorkerIo { endpoint, capabilities, executor, keys: Default::default() }, token, via)
            .await?;
    Ok(LocalWorker { sandbox_problem: problem, ..local })
}

/// Before any job is offered: the results held by job containers this worker's
/// previous process left are stored (and reported once connected), then the containers
/// go. A result already stored is kept; a container whose result cannot be stored stays.
async fn take_back_leftovers(store: &WorkerStore, sandbox: &Sandbox) {
    let leftovers = match sandbox.leftover_results().await {
        Ok(l) => l,
        Err(e) => return tracing::warn!(error = %e, "cannot list this worker's leftover job containers"),
    };
    for (job_id, result) in leftovers {
        let stored = match store.job_result(&job_id) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => store.save_job_result(&job_id, &result).await,
            Err(e) => Err(e),
        };
        match stored {
            Ok(()) => {
                tracing::info!(job = %job_id, exit_code = ?result.exit_code, lost = result.lease_lost, "took back a job left by a restart");
                sandbox.release(&job_id).await;
            }
            Err(e) => {
                tracing::warn!(job = %job_id, error = %e, "a leftover job's result not stored; its container stays")
            }
        }
    }
}

/// The one wiring of a worker, whatever it runs on: joins with `token` when the
/// store holds no identity yet (the token is ignored, with a note, once joined),
/// then makes the worker that stays connected from the stored identity.
pub async fn join_or_resume(
    store: Arc<WorkerStore>,
    io: WorkerIo,
    token: Option<&str>,
    via: Option<&str>,
) -> anyhow::Result<LocalWorker> {
    let WorkerIo { endpoint, capabilities, executor, keys } = io;
    let identity = match (store.identity()?, token) {
        (Some(identity), Some(_)) => {
            eprintln!("dispatch worker: already joined as {}; --token ignored", identity.node_id);
            identity
        }
        (Some(identity), None) => identity,
        (None, Some(token)) => join(&store, &endpoint, token, via, capabilities.clone(), keys).await?,
        (None, None) => return Err(WorkerError::NotJoined.into()),
    };
    let worker = Worker::new(store, endpoint, capabilities, executor)?.prefer(via.map(str::to_owned));
    Ok(LocalWorker { worker: Arc::new(worker), node_id: identity.node_id, sandbox_problem: None })
}

#[derive(Clone)]
struct WorkerApp {
    status: watch::Receiver<WorkerStatus>,
    store: Arc<WorkerStore>,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
}

fn router(app: WorkerApp) -> Router {
    Router::new()
        .route("/health", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(app)
}

async fn ready(State(app): State<WorkerApp>) -> impl IntoResponse {
    let status = app.status.borrow().clone();
    let body = |ready: bool, reasons: Vec<String>| {
        Json(
            json!({ "ready": ready, "reasons": reasons, "node_id": status.node_id, "config_version": status.applied_version }),
        )
    };
    let mut reasons: Vec<String> = status.ready().err().into_iter().collect();
    if let Some(fault) = app.store.fault() {
        reasons.push(format!("storage: {fault}"));
    }
    match reasons.is_empty() {
        true => (StatusCode::OK, body(true, reasons)),
        false => (StatusCode::SERVICE_UNAVAILABLE, body(false, reasons)),
    }
}

async fn metrics(State(app): State<WorkerApp>) -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render())
}

/// `dispatch agent --role worker`: runs until stopped or removed from the cluster.
pub async fn run(
    data_dir: &Path,
    http_addr: SocketAddr,
    token: Option<&str>,
    via: Option<&str>,
    labels: BTreeMap<String, String>,
    host: &WorkerHost,
    https: Option<&crate::tls::HttpsConfig>,
) -> anyhow::Result<()> {
    if let Some(crate::tls::HttpsConfig::ClusterCa { .. }) = https {
        anyhow::bail!(
            "--tls-san is for the orchestrator (it holds the CA); a worker serves HTTPS with --tls-cert and --tls-key"
        );
    }
    let tls = https.map(|c| crate::tls::Https::load(c, &data_dir.join("ca"))).transpose().context("HTTPS")?;
    if let Some(tls) = &tls {
        tls.reload_on_sighup();
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let metrics = crate::telemetry::metrics();
    crate::datadir::prepare(data_dir)?;
    let store = Arc::new(WorkerStore::open(data_dir)?);
    let stored = store.clone();
    let local = match prepare(store, data_dir, token, via, labels, host).await {
        Err(e) => match e.downcast_ref::<WorkerError>() {
            Some(WorkerError::Refused { code, message }) => anyhow::bail!("join refused: {message} ({code})"),
            _ => return Err(e),
        },
        Ok(l) => l,
    };
    let listener = tokio::net::TcpListener::bind(http_addr).await.with_context(|| format!("binding {http_addr}"))?;
    let addr = listener.local_addr()?;
    let app = WorkerApp { status: local.worker.status(), store: stored, metrics };
    let (stop, stopped) = watch::channel(false);
    let mut http_stopped = stopped.clone();
    let http = tokio::spawn(async move {
        let stopped = async move {
            let _ = http_stopped.wait_for(|s| *s).await;
        };
        crate::http::serve(listener, router(app), crate::http::HttpLimits::default(), tls, stopped).await
    });
    let mut stop_signals = crate::server::StopSignals::listen();
    println!("dispatch worker: {} joined; health, readiness and metrics on {scheme}://{addr}", local.node_id);
    let run = local.worker.run(stopped);
    tokio::pin!(run);
    let result = tokio::select! {
        r = &mut run => r,
        _ = stop_signals.next() => {
            let _ = stop.send(true);
            run.await
        }
    };
    let _ = stop.send(true);
    let _ = http.await;
    match result {
        Ok(()) => Ok(()),
        Err(WorkerError::Refused { message, code }) => anyhow::bail!("stopped by the orchestrator: {message} ({code})"),
        Err(e) => Err(e.into()),
    }
}
