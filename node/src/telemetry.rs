//! Logs and metrics set-up for the process.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Installs the tracing subscriber: JSON lines when asked, text otherwise;
/// level from `RUST_LOG` (default `info`). Safe to call more than once.
pub fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // A log line that cannot be written (stderr on a full disk) is dropped: reporting
    // that through `eprintln!` would panic the request that logged it.
    // Colour only for a person at a terminal, never escape codes in a file or a journal.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .log_internal_errors(false);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

/// The process-wide Prometheus recorder (installed once) and its upkeep task.
pub fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
            let batch = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full("dispatch_log_commit_batch_size".into()), &batch))
                .expect("bucket lists are non-empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            describe();
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("dispatch-metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .ok();
            handle
        })
        .clone()
}

/// Counters the alert rules read with `increase()`, created at 0 when an orchestrator
/// starts: Prometheus cannot see the first increment of a series it never saw, so the
/// first burst of refusals after a start would otherwise never alert.
pub fn zero_alerted_counters() {
    for code in [
        "UNAUTHORIZED",
        "FORBIDDEN",
        "SCOPE_FORBIDDEN",
        "TOOL_NOT_ALLOWED",
        "RATE_LIMITED",
        "CLOSEOUT_REQUIREMENTS_INCOMPLETE",
        "MISSING_SIGNATURE_CONFIRMATION",
        "INVALID_EVIDENCE_REFERENCE",
    ] {
        metrics::counter!("dispatch_api_errors_total", "code" => code).increment(0);
    }
    for name in [
        "dispatch_handoff_sla_misses_total",
        "dispatch_idempotency_conflicts_total",
        "dispatch_leases_expired_total",
        "dispatch_log_commit_failures_total",
    ] {
        metrics::counter!(name).increment(0);
    }
}

fn describe() {
    describe_api_and_log();
    describe_cluster_and_tasks();
    describe_lanes();
}

/// The API, the log and the entity actors.
fn describe_api_and_log() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("dispatch_http_requests_in_flight", "HTTP requests being served now (an MCP call counts once).");
    describe_counter!("dispatch_http_requests_total", "HTTP requests served, by method, route template and status.");
    describe_histogram!(
        "dispatch_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by route template."
    );
    describe_counter!("dispatch_api_errors_total", "Refused or failed API requests, by error code.");
    describe_counter!(
        "dispatch_http_connections_refused_total",
        "HTTP connections closed at once: the cap was reached."
    );
    describe_counter!(
        "dispatch_requests_refused_for_space_total",
        "Mutations refused with 507: the data dir's free space is under the reserve."
    );
    describe_counter!("dispatch_log_commit_failures_total", "Log commits that failed (nothing of them acknowledged).");
    describe_counter!("dispatch_log_reopens_total", "Times the log file was reopened after a failed write.");
    describe_counter!(
        "dispatch_cluster_connections_refused_total",
        "Cluster peers refused before their handshake: too many unauthenticated at once."
    );
    describe_gauge!("dispatch_tickets", "Tickets by state.");
    describe_gauge!(
        "dispatch_data_dir_free_bytes",
        "Free bytes of the data dir's filesystem, measured at each scrape."
    );
    describe_counter!("dispatch_ticket_transitions_total", "Durable ticket state changes, by from and to state.");
    describe_counter!("dispatch_idempotency_replays_total", "Retried requests answered from the stored response.");
    describe_counter!("dispatch_idempotency_conflicts_total", "Idempotency keys reused with a different request.");
    describe_histogram!(
        "dispatch_log_commit_duration_seconds",
        Unit::Seconds,
        "Time to write and fsync one group commit."
    );
    describe_histogram!("dispatch_log_commit_batch_size", "Appends folded into one group commit.");
    describe_counter!("dispatch_log_commits_total", "Group commits of the event log.");
    describe_gauge!("dispatch_live_actors", "Entity actors awake in memory, by kind.");
    describe_counter!("dispatch_actor_restarts_total", "Entity actors restarted after a failure, by kind.");
}

/// Nodes, workers, tasks and jobs.
fn describe_cluster_and_tasks() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    // Cluster: the orchestrator's side.
    describe_gauge!("dispatch_cluster_connections", "Open QUIC connections from workers (joining or joined).");
    describe_counter!("dispatch_cluster_requests_total", "Requests from joined nodes, by request.");
    describe_counter!("dispatch_node_joins_total", "Join attempts, by outcome (joined or the refusal code).");
    describe_counter!("dispatch_node_events_total", "Durable node events, by kind.");
    describe_counter!("dispatch_node_heartbeats_total", "Heartbeats received from nodes.");
    describe_gauge!("dispatch_nodes", "Nodes by state.");
    describe_gauge!("dispatch_join_tokens", "Bootstrap tokens on record (live or not).");
    // Cluster: the worker's side.
    describe_histogram!(
        "dispatch_cluster_request_duration_seconds",
        Unit::Seconds,
        "Round trip of a request over the cluster connection, by request and outcome."
    );
    describe_gauge!("dispatch_worker_connected", "1 while the worker holds an authenticated connection.");
    describe_gauge!("dispatch_worker_config_version", "Configuration version the worker last applied.");
    describe_counter!("dispatch_worker_reconnects_total", "Times the worker lost the orchestrator and redialled.");
    describe_counter!(
        "dispatch_worker_jobs_fenced_total",
        "Jobs a worker stopped because it could not renew their lease."
    );
    // Tasks.
    describe_counter!(
        "dispatch_tasks_total",
        "Tasks that reached a final state, by outcome (SUCCEEDED, FAILED, CANCELLED)."
    );
    describe_gauge!("dispatch_task_queue_depth", "Tasks waiting for a node.");
    describe_gauge!("dispatch_node_running_jobs", "Jobs in flight, by node.");
    describe_histogram!(
        "dispatch_task_dispatch_latency_seconds",
        Unit::Seconds,
        "From a task becoming runnable to its job being handed to a node (container start excluded)."
    );
    describe_histogram!("dispatch_job_run_seconds", Unit::Seconds, "How long jobs ran on their node.");
    describe_counter!(
        "dispatch_task_retries_total",
        "Attempts that ended in a retry (lost, refused, or failed when asked)."
    );
    describe_counter!("dispatch_leases_expired_total", "Job leases that ran out (the node stopped renewing them).");
}

/// Lanes, handoffs and callbacks.
fn describe_lanes() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    // Lanes and handoffs.
    describe_counter!("dispatch_handoffs_requested_total", "Handoffs requested, by trigger class.");
    describe_counter!("dispatch_handoff_decisions_total", "Handoff decisions (approve, reject), by action.");
    describe_histogram!(
        "dispatch_handoff_first_response_seconds",
        Unit::Seconds,
        "From a handoff's request to the first operator response, by trigger class."
    );
    describe_histogram!(
        "dispatch_handoff_decision_seconds",
        Unit::Seconds,
        "From a handoff's request to its decision, by trigger class."
    );
    describe_gauge!("dispatch_open_handoffs", "Handoffs waiting for a decision, by queue.");
    describe_counter!("dispatch_handoff_sla_misses_total", "Handoffs escalated because the first-response SLA passed.");
    describe_counter!(
        "dispatch_handoff_timeouts_total",
        "Handoffs whose deadline passed and whose timeout action rejected them."
    );
    describe_gauge!("dispatch_dlq_depth", "Callback deliveries in the dead-letter queue.");
    describe_counter!("dispatch_callback_attempts_total", "Callback delivery attempts.");
    describe_counter!("dispatch_callback_failures_total", "Callback delivery attempts that failed.");
}
