//! The command line: `up` and `agent` run the product; every other subcommand is a
//! client of the HTTP API, with `--json` for scripts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use actors::node::{MembershipConfig, NodeConfig};
use actors::policy::{Principal, Role};
use actors::ticket::SupervisorConfig;
use clap::{Args, Parser, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, ClientError};

mod access;
mod terminal;
use crate::server::{InferenceConfig, Orchestrator, ServerConfig, stop_signal};

#[derive(Parser)]
#[command(name = "dispatch", version, about = "Self-hosted control plane for work between agents, people and machines")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the embedded single-node default (data in ./dispatch-data); prints the URL and an admin token.
    Up(ServeArgs),
    /// Run a cluster member in a given role.
    Agent {
        #[arg(long, value_enum)]
        role: AgentRole,
        /// Worker: the orchestrator's cluster address (overrides the one in the token).
        #[arg(long)]
        join: Option<String>,
        /// Worker: bootstrap token for the first start (`dispatch token create`).
        #[arg(long, env = "DISPATCH_JOIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Worker: a label this host reports (k=v, repeatable); shown, never used for placement
        /// (placement follows labels an admin gave: `token create --label`, `node config set`).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Bootstrap tokens for worker hosts (admin).
    Token {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: TokenCmd,
    },
    /// Tasks: commands run as sandboxed jobs on worker nodes.
    Task {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: TaskCmd,
    },
    /// Agent lanes: inspect and operator controls.
    Lane {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: LaneCmd,
    },
    /// Handoffs in your queues, decisions, and the callback dead-letter queue.
    Handoff {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: HandoffCmd,
    },
    /// Worker nodes.
    Node {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: NodeCmd,
    },
    /// Work with tickets.
    Ticket {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: TicketCmd,
    },
    /// Upload an evidence file; prints its blob URI.
    Blob {
        #[command(flatten)]
        client: ClientArgs,
        file: PathBuf,
    },
    /// Log in with a username and password (read from stdin); the CLI keeps the tokens.
    Login {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        username: String,
    },
    /// Manage accounts (admin).
    User {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: UserCmd,
    },
    /// Administration.
    Admin {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: AdminCmd,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum AgentRole {
    Orchestrator,
    Worker,
}

#[derive(Args)]
struct ServeArgs {
    /// Directory for the log, blobs and keys.
    #[arg(long, default_value = "./dispatch-data", env = "DISPATCH_DATA_DIR")]
    data_dir: PathBuf,
    /// Address of the HTTP API (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080", env = "DISPATCH_HTTP_ADDR")]
    http_addr: SocketAddr,
    /// Accept X-Actor-* identity headers instead of tokens. Development only.
    #[arg(long)]
    dev_headers: bool,
    /// Incident templates file replacing the built-in set.
    #[arg(long)]
    templates: Option<PathBuf>,
    /// Log lines as JSON.
    #[arg(long)]
    log_json: bool,
    /// File holding the first admin's password (otherwise one is generated and printed once).
    #[arg(long)]
    admin_password_file: Option<PathBuf>,
    /// Hours a retried request with the same Idempotency-Key replays the first answer.
    #[arg(long, default_value_t = 24)]
    idempotency_retention_hours: u64,
    /// Orchestrator: where workers connect (QUIC; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:7443", env = "DISPATCH_CLUSTER_ADDR")]
    cluster_addr: SocketAddr,
    /// Orchestrator: the cluster address written into join tokens (default: the bound one).
    #[arg(long)]
    advertise_addr: Option<String>,
    /// Orchestrator: heartbeat interval new nodes are configured with.
    #[arg(long, default_value_t = 5_000)]
    node_heartbeat_ms: u64,
    /// Worker: the static busybox the default sandbox image is built from (no registry needed).
    #[arg(long, default_value = "/bin/busybox")]
    sandbox_busybox: PathBuf,
    /// Worker: this host runs a local inference runtime (reported in its capabilities).
    #[arg(long)]
    local_inference: bool,
    /// Orchestrator: work needs inference; /ready says no until a node has a local
    /// runtime or --inference-provider is set.
    #[arg(long)]
    inference_required: bool,
    /// Orchestrator: an external inference provider (URL).
    #[arg(long)]
    inference_provider: Option<String>,
    /// Orchestrator: first retry delay of a failed lane callback (doubling; 6 attempts, then the DLQ).
    #[arg(long, default_value_t = 500)]
    callback_backoff_ms: u64,
    /// Orchestrator: a callback host allowed even though it resolves to a loopback,
    /// private or link-local address (repeatable). Every other such callback is refused.
    #[arg(long, value_name = "HOST")]
    callback_allow_host: Vec<String>,
    /// Orchestrator: PEM certificates trusted for https callbacks besides the system's roots.
    #[arg(long, value_name = "PEM")]
    callback_ca_file: Option<PathBuf>,
    /// Orchestrator: how long one callback delivery may take.
    #[arg(long, default_value_t = 5_000)]
    callback_timeout_ms: u64,
    /// Orchestrator: a reverse proxy whose X-Forwarded-For is believed (repeatable CIDR).
    #[arg(long, value_name = "CIDR")]
    trusted_proxy: Vec<ipnet::IpNet>,
    /// Orchestrator: HTTP connections served at once.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Refuse new work (507) while the data dir's filesystem has less free space (MiB).
    #[arg(long, default_value_t = 64)]
    min_free_mb: u64,
    /// Orchestrator: evidence bytes each account may store (MiB).
    #[arg(long, default_value_t = 1024)]
    blob_quota_mb: u64,
}

impl ServeArgs {
    fn worker_host(&self) -> crate::worker::WorkerHost {
        crate::worker::WorkerHost { busybox: self.sandbox_busybox.clone(), inference: self.local_inference }
    }
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a bootstrap token; prints it once.
    Create {
        /// Lifetime: 90s, 15m, 2h, 1d.
        #[arg(long, default_value = "15m", value_parser = parse_duration)]
        ttl: u64,
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Label for nodes joining with it (k=v, repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// List tokens with their remaining uses.
    List,
    /// Revoke a token by id.
    Revoke { id: String },
}

// Parsed once per process: the size of the `run` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum TaskCmd {
    /// Run a command and wait: prints its output and exits with its exit code.
    Run {
        #[arg(long)]
        image: Option<String>,
        /// none (default) or restricted.
        #[arg(long)]
        network: Option<String>,
        #[arg(long)]
        memory_bytes: Option<u64>,
        #[arg(long)]
        cpus: Option<f64>,
        #[arg(long)]
        pids: Option<u32>,
        #[arg(long)]
        timeout_seconds: Option<u32>,
        /// K=V, repeatable.
        #[arg(long = "env", value_parser = parse_label)]
        env: Vec<(String, String)>,
        /// PATH=LOCAL_FILE: put a local file at /workspace/PATH (repeatable).
        #[arg(long = "file", value_parser = parse_label)]
        files: Vec<(String, String)>,
        /// A node label the task needs (k=v, repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        site: Option<String>,
        #[arg(long)]
        ticket: Option<String>,
        /// Return at once with the task id instead of waiting.
        #[arg(long)]
        detach: bool,
        #[arg(trailing_var_arg = true, required = true, num_args = 1..)]
        command: Vec<String>,
    },
    /// A task's state and attempts.
    Status {
        id: String,
    },
    /// A finished task's output.
    Result {
        id: String,
    },
    Cancel {
        id: String,
    },
    List {
        #[arg(long)]
        state: Option<String>,
    },
}

#[derive(Subcommand)]
enum NodeCmd {
    /// List nodes.
    List,
    /// Show one node.
    Show { id: String },
    /// Give the node no new work.
    Drain { id: String },
    /// Remove the node; its certificate is refused from then on.
    Remove { id: String },
    /// Node configuration.
    Config {
        #[command(subcommand)]
        command: NodeConfigCmd,
    },
}

#[derive(Subcommand)]
enum NodeConfigCmd {
    /// Change fields of a node's configuration (bumps its config_version).
    Set {
        id: String,
        #[arg(long)]
        heartbeat_interval_ms: Option<u64>,
        #[arg(long)]
        max_concurrent_jobs: Option<u32>,
        #[arg(long)]
        sandbox_image: Option<String>,
        /// Comma-separated: none, restricted.
        #[arg(long)]
        network_policies: Option<String>,
        #[arg(long)]
        default_memory_bytes: Option<u64>,
        #[arg(long)]
        default_cpu_millis: Option<u32>,
        /// Replace the node's labels (k=v, repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Option<Vec<(String, String)>>,
    },
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

/// Seconds from `90s`, `15m`, `2h`, `1d` or a bare number of seconds.
fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().map_err(|_| format!("expected a duration like 15m, got {s:?}"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (s, m, h, d)")),
    };
    n.checked_mul(scale).ok_or_else(|| format!("{s:?} is too long"))
}

#[derive(Args)]
struct ClientArgs {
    /// Orchestrator URL.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080", env = "DISPATCH_SERVER")]
    server: String,
    /// Access token (default: ./dispatch-data/admin-token when present).
    #[arg(long, global = true, env = "DISPATCH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the server's JSON answer.
    #[arg(long, global = true)]
    json: bool,
    /// Idempotency-Key for a mutation (default: a fresh one). Reuse it to retry safely.
    #[arg(long, global = true)]
    idempotency_key: Option<String>,
}

#[derive(Subcommand)]
enum TicketCmd {
    /// Open a ticket.
    Create {
        #[arg(long)]
        account: String,
        #[arg(long)]
        site: String,
        #[arg(long)]
        incident_type: String,
        #[arg(long)]
        summary: String,
        #[arg(long)]
        priority: Option<String>,
    },
    /// Triage: --outcome TRIAGED | READY_TO_SCHEDULE | APPROVAL_REQUIRED.
    Triage {
        id: String,
        #[arg(long)]
        outcome: String,
        #[arg(long)]
        priority: Option<String>,
        #[arg(long)]
        notes: Option<String>,
    },
    /// Propose windows, each START/END in RFC 3339.
    Propose {
        id: String,
        #[arg(long = "window", required = true)]
        windows: Vec<String>,
    },
    /// Confirm a proposed window START/END.
    Confirm {
        id: String,
        #[arg(long)]
        window: String,
    },
    /// A manager confirms an emergency bypass; prints the confirmation for the dispatcher.
    ConfirmBypass {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Dispatch a technician; with --emergency-reason and --manager-confirmation (what
    /// `confirm-bypass` printed for a manager), as an emergency bypass.
    Dispatch {
        id: String,
        #[arg(long)]
        technician: String,
        #[arg(long, requires = "manager_confirmation")]
        emergency_reason: Option<String>,
        #[arg(long)]
        manager_confirmation: Option<String>,
    },
    /// Check in on site (assigned technician).
    CheckIn { id: String },
    /// Ask for approval of a change (assigned technician).
    RequestChange {
        id: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        summary: String,
    },
    /// Decide a pending approval: --decision approved | denied.
    Decide {
        id: String,
        #[arg(long)]
        decision: String,
        #[arg(long)]
        reason: String,
    },
    /// Attach evidence: a --file to upload, or an existing --uri.
    Evidence {
        id: String,
        #[arg(long)]
        key: String,
        #[arg(long, default_value = "photo")]
        kind: String,
        #[arg(long, conflicts_with = "uri")]
        file: Option<PathBuf>,
        #[arg(long)]
        uri: Option<String>,
    },
    /// Complete the work; --done ITEM for each checklist item done.
    Complete {
        id: String,
        #[arg(long = "done")]
        done: Vec<String>,
        #[arg(long)]
        no_signature_reason: Option<String>,
    },
    /// Verify completed work.
    Verify {
        id: String,
        #[arg(long)]
        notes: Option<String>,
    },
    /// Invoice verified work.
    Invoice {
        id: String,
        #[arg(long)]
        amount_cents: i64,
        #[arg(long, default_value = "USD")]
        currency: String,
    },
    /// Close an invoiced ticket.
    Close { id: String },
    /// Cancel an open ticket.
    Cancel {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Show a ticket.
    Get { id: String },
    /// Show a ticket's audit timeline.
    Timeline { id: String },
    /// List tickets, oldest first, 1000 a page.
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        site: Option<String>,
        /// Start after this ticket id (printed at the end of a full page).
        #[arg(long)]
        after: Option<String>,
    },
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Add a new token signing key; tokens signed by older keys stay valid until they expire.
    RotateSigningKey,
    /// Mint an access token for a user or service.
    Token {
        #[arg(long)]
        sub: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[command(flatten)]
        scope: ScopeArgs,
        /// Comma-separated tool names this token is limited to.
        #[arg(long)]
        tools: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
    },
    /// Refuse new lanes (503 LANES_FROZEN); reads, decisions and existing lanes keep working.
    FreezeLanes {
        #[arg(long)]
        reason: String,
    },
    /// Accept new lanes again.
    UnfreezeLanes {
        #[arg(long)]
        reason: String,
    },
    #[command(flatten)]
    Access(access::AccessCmd),
}

#[derive(Subcommand)]
enum LaneCmd {
    /// A lane: status, checkpoints, handoffs, owner.
    Inspect { id: String },
    /// Escalate (blocks the lane).
    Escalate {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Give the lane an escalation owner.
    AssignOwner {
        id: String,
        #[arg(long)]
        owner: String,
        #[arg(long)]
        reason: String,
    },
    /// Hand the escalation to another owner.
    ReassignOwner {
        id: String,
        #[arg(long)]
        owner: String,
        #[arg(long)]
        reason: String,
    },
    /// The lane's escalation owner.
    Owner { id: String },
    Unblock {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Close the lane by hand; the reason must start with "human_override:".
    OverrideClose {
        id: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum HandoffCmd {
    /// Handoffs in your queues.
    List {
        #[arg(long)]
        queue: Option<String>,
        #[arg(long)]
        status: Option<String>,
    },
    Show {
        id: String,
    },
    /// approve | reject | reroute (--reroute-to) | add_context (--context JSON).
    Decide {
        id: String,
        #[arg(long)]
        action: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        reroute_to: Option<String>,
        #[arg(long)]
        context: Option<String>,
    },
    /// Callback deliveries that failed every attempt.
    Dlq,
    /// Deliver a dead letter again.
    Replay {
        id: String,
    },
}

/// Which accounts and sites a user or token may touch.
#[derive(Args)]
struct ScopeArgs {
    /// Comma-separated account ids, or * for all.
    #[arg(long, default_value = "*")]
    accounts: String,
    /// Comma-separated site ids, or * for all.
    #[arg(long, default_value = "*")]
    sites: String,
}

#[derive(Subcommand)]
enum UserCmd {
    /// Create a person's account (password from stdin, or generated and printed once),
    /// or with --service NAME an agent's account that gets a long-lived token.
    Create {
        /// The person's username.
        #[arg(required_unless_present = "service", conflicts_with = "service")]
        username: Option<String>,
        /// Create a service account with this name instead.
        #[arg(long)]
        service: Option<String>,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[command(flatten)]
        scope: ScopeArgs,
        /// Comma-separated operator queues.
        #[arg(long, default_value = "")]
        queues: String,
        /// Comma-separated tools a service account may use.
        #[arg(long, requires = "service")]
        tools: Option<String>,
        /// Read the password from stdin instead of generating one.
        #[arg(long, conflicts_with = "service")]
        password_stdin: bool,
    },
    /// List accounts.
    List,
    /// Disable an account; its tokens stop working at once.
    Disable { username: String },
    /// Change an account's role.
    SetRole {
        username: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// Set a new password (from stdin, or generated and printed once).
    ResetPassword {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

fn split(s: &str) -> Vec<String> {
    s.split(',').map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect()
}

/// A password from stdin (one line), or a generated one the caller prints once.
fn password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        return Ok((line.trim_end_matches(['\r', '\n']).to_owned(), false));
    }
    Ok((generate_password(), true))
}

fn generate_password() -> String {
    use base64::Engine;
    let bytes: [u8; 18] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn parse_role(s: &str) -> Result<Role, String> {
    serde_json::from_value(Value::String(s.to_owned()))
        .map_err(|_| format!("unknown role {s:?}; one of: {}", Role::ALL.map(Role::as_str).join(", ")))
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(serve) => serve_until_stopped(serve, true).await,
        Command::Agent { role: AgentRole::Orchestrator, serve, .. } => serve_until_stopped(serve, false).await,
        Command::Agent { role: AgentRole::Worker, join, token, labels, serve } => {
            crate::telemetry::init_logs(serve.log_json);
            let labels = labels.into_iter().collect();
            let host = serve.worker_host();
            crate::worker::run(&serve.data_dir, serve.http_addr, token.as_deref(), join.as_deref(), labels, &host).await
        }
        Command::Token { client, command } => join_token(client, command).await,
        Command::Node { client, command } => node(client, command).await,
        Command::Task { client, command } => task(client, command).await,
        Command::Lane { client, command } => lane(client, command).await,
        Command::Handoff { client, command } => handoff(client, command).await,
        Command::Admin { client, command: AdminCmd::FreezeLanes { reason } } => {
            let out = connect(&client)
                .await?
                .call(Method::POST, "/v1/admin/lanes/freeze", Some(json!({ "reason": reason })), None)
                .await?;
            print(&client, &out, |_| "new lanes are frozen".into());
            Ok(())
        }
        Command::Admin { client, command: AdminCmd::UnfreezeLanes { reason } } => {
            let out = connect(&client)
                .await?
                .call(Method::POST, "/v1/admin/lanes/unfreeze", Some(json!({ "reason": reason })), None)
                .await?;
            print(&client, &out, |_| "new lanes are accepted again".into());
            Ok(())
        }
        Command::Ticket { client, command } => ticket(client, command).await,
        Command::Blob { client, file } => {
            let bytes = std::fs::read(&file).map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
            let out = connect(&client).await?.upload("/v1/blobs", bytes).await?;
            print(&client, &out, |v| format!("{}  ({} bytes)", v["uri"].as_str().unwrap_or("?"), v["size"]));
            Ok(())
        }
        Command::Admin { client, command: AdminCmd::Access(command) } => access::run(client, command).await,
        Command::Admin { client, command: AdminCmd::RotateSigningKey } => {
            let out = connect(&client).await?.call(Method::POST, "/v1/admin/signing-keys", None, None).await?;
            print(&client, &out, |v| format!("new signing key {}", v["kid"].as_str().unwrap_or("?")));
            Ok(())
        }
        Command::Login { client, username } => {
            let pw = terminal::login_password(&username, || Ok(password(true)?.0))?;
            let api = Client::new(&client.server, None);
            let out = api
                .call(Method::POST, "/v1/auth/login", Some(json!({ "username": username, "password": pw })), None)
                .await?;
            let path = store_tokens(&client.server, &out)?;
            println!("logged in as {username}; tokens kept in {} (mode 0600)", path.display());
            Ok(())
        }
        Command::User { client, command } => user(client, command).await,
        Command::Admin { client, command: AdminCmd::Token { sub, role, scope, tools, ttl } } => {
            let body = json!({ "sub": sub, "role": role, "accounts": split(&scope.accounts), "sites": split(&scope.sites),
                "tools": tools.as_deref().map(split), "ttl_seconds": ttl });
            let out = connect(&client).await?.call(Method::POST, "/v1/admin/tokens", Some(body), None).await?;
            print(&client, &out, |v| v["token"].as_str().unwrap_or_default().to_owned());
            Ok(())
        }
    }
}

async fn serve_until_stopped(args: ServeArgs, embedded: bool) -> anyhow::Result<()> {
    crate::telemetry::init_logs(args.log_json);
    let config = ServerConfig {
        data_dir: args.data_dir.clone(),
        http_addr: args.http_addr,
        dev_headers: args.dev_headers,
        templates_file: args.templates.clone(),
        supervisor: SupervisorConfig::default(),
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
        },
        lanes: Default::default(),
    };
    let orchestrator = Orchestrator::start(config).await?;
    let local_worker = match embedded {
        true => Some(start_local_worker(&orchestrator, &args.data_dir.join("worker"), &args.worker_host()).await?),
        false => None,
    };
    let url = format!("http://{}", orchestrator.addr);
    // The admin token exists on disk before anyone is told where to connect.
    let token_file = args.data_dir.join("admin-token");
    let fresh_token = match !token_file.exists() {
        true => {
            let admin = Principal {
                sub: "admin".into(),
                role: Role::Admin,
                accounts: vec!["*".into()],
                sites: vec!["*".into()],
                tools: None,
                queues: vec![],
            };
            let (token, _) = orchestrator.app.auth.mint(&admin, 365 * 24 * 3600)?;
            write_secret(&token_file, &token)?;
            Some(token)
        }
        false => None,
    };
    let first_admin = match embedded {
        true => first_admin(&orchestrator, args.admin_password_file.as_deref()).await?,
        false => None,
    };
    println!("dispatch: listening on {url}");
    println!("  cluster:     {} (QUIC, mutual TLS)", orchestrator.cluster_addr);
    match &local_worker {
        Some((node_id, _, _)) => {
            println!("  mode:        embedded single node (orchestrator + local worker {node_id})")
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
    stop_signal().await;
    println!("dispatch: stopping (finishing in-flight requests)");
    if let Some((_, stop, worker)) = local_worker {
        let _ = stop.send(true);
        let _ = worker.await;
    }
    orchestrator.shutdown().await
}

type LocalWorkerTask = (String, tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>);

/// `up`'s worker: joined over QUIC with a one-use token like any other host (on the
/// first start), then connected with its certificate.
async fn start_local_worker(
    orchestrator: &Orchestrator,
    dir: &std::path::Path,
    host: &crate::worker::WorkerHost,
) -> anyhow::Result<LocalWorkerTask> {
    let store = std::sync::Arc::new(cluster::worker::WorkerStore::open(dir)?);
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
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = local.worker.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = worker.run(stopped).await {
            tracing::error!(error = %e, "local worker stopped");
        }
    });
    Ok((local.node_id, stop, task))
}

async fn join_token(args: ClientArgs, command: TokenCmd) -> anyhow::Result<()> {
    let client = connect(&args).await?;
    let line = |t: &Value| {
        format!(
            "{}  uses {}/{}  expires_ms={}{}  labels={}",
            t["id"].as_str().unwrap_or("?"),
            t["uses"],
            t["uses_allowed"],
            t["expires_ms"],
            if t["revoked"] == true { "  REVOKED" } else { "" },
            t["labels"],
        )
    };
    match command {
        TokenCmd::Create { ttl, uses, labels } => {
            let labels: serde_json::Map<String, Value> =
                labels.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            let body = json!({ "ttl_seconds": ttl, "uses": uses, "labels": labels });
            let out = client.call(Method::POST, "/v1/join-tokens", Some(body), None).await?;
            print(&args, &out, |v| v["token"].as_str().unwrap_or_default().to_owned());
        }
        TokenCmd::List => {
            let out = client.call(Method::GET, "/v1/join-tokens", None, None).await?;
            print(&args, &out, |v| {
                v["tokens"].as_array().into_iter().flatten().map(line).collect::<Vec<_>>().join("\n")
            });
        }
        TokenCmd::Revoke { id } => {
            let out = client.call(Method::POST, &format!("/v1/join-tokens/{id}/revoke"), None, None).await?;
            print(&args, &out, line);
        }
    }
    Ok(())
}

fn task_line(t: &Value) -> String {
    let attempts = t["attempts"].as_array().map_or(0, Vec::len);
    let node = t["attempts"].as_array().and_then(|a| a.last()).and_then(|a| a["node"].as_str()).unwrap_or("-");
    format!(
        "{}  {:<10} attempts={} node={}  {}",
        t["id"].as_str().unwrap_or("?"),
        t["state"].as_str().unwrap_or("?"),
        attempts,
        node,
        t["spec"]["command"]
            .as_array()
            .map(|c| c.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
    )
}

async fn task(args: ClientArgs, command: TaskCmd) -> anyhow::Result<()> {
    let client = connect(&args).await?;
    match command {
        TaskCmd::Run {
            image,
            network,
            memory_bytes,
            cpus,
            pids,
            timeout_seconds,
            env,
            files,
            labels,
            account,
            site,
            ticket,
            detach,
            command,
        } => {
            let mut contents = serde_json::Map::new();
            for (path, local) in files {
                let text = std::fs::read_to_string(&local).map_err(|e| anyhow::anyhow!("reading {local}: {e}"))?;
                contents.insert(path, Value::String(text));
            }
            let map = |pairs: Vec<(String, String)>| {
                pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect::<serde_json::Map<_, _>>()
            };
            let mut body = json!({
                "command": command, "image": image, "network_policy": network,
                "limits": { "memory_bytes": memory_bytes, "cpus": cpus, "pids": pids },
                "timeout_seconds": timeout_seconds, "env": map(env), "files": contents, "labels": map(labels),
                "account_id": account, "site_id": site, "ticket_id": ticket,
            });
            strip_nulls(&mut body);
            let key = args.idempotency_key.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let accepted = client.call(Method::POST, "/v1/tasks", Some(body), Some(&key)).await?;
            let id = accepted["task_id"].as_str().unwrap_or_default().to_owned();
            if detach {
                print(&args, &accepted, |v| v["task_id"].as_str().unwrap_or_default().to_owned());
                return Ok(());
            }
            let done = loop {
                let t = client.call(Method::GET, &format!("/v1/tasks/{id}"), None, None).await?;
                if matches!(t["state"].as_str(), Some("SUCCEEDED" | "FAILED" | "CANCELLED")) {
                    break t;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            };
            let out = client.call(Method::GET, &format!("/v1/tasks/{id}/result"), None, None).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            } else {
                use std::io::Write;
                print!("{}", out["result"]["stdout"].as_str().unwrap_or_default());
                eprint!("{}", out["result"]["stderr"].as_str().unwrap_or_default());
                let _ = std::io::stdout().flush();
                for (flag, what) in [("stdout_truncated", "stdout"), ("stderr_truncated", "stderr")] {
                    if out["result"][flag] == true {
                        eprintln!("dispatch: {what} was cut at the output cap");
                    }
                }
                if out["result"]["timed_out"] == true {
                    eprintln!("dispatch: the task ran past its timeout and was killed");
                }
                if out["result"]["oom_killed"] == true {
                    eprintln!("dispatch: the task used more memory than its limit and was killed");
                }
                if let Some(e) = out["result"]["error"].as_str().or(out["reason"].as_str()) {
                    eprintln!("dispatch: task {} {}: {e}", id, done["state"].as_str().unwrap_or("?"));
                }
            }
            // The job's exit code is ours; a task that never ran exits 125 (like docker run).
            let code = out["result"]["exit_code"].as_i64().map_or(125, |c| c.clamp(0, 255) as i32);
            std::process::exit(code);
        }
        TaskCmd::Status { id } => {
            let out = client.call(Method::GET, &format!("/v1/tasks/{id}"), None, None).await?;
            print(&args, &out, task_line);
        }
        TaskCmd::Result { id } => {
            let out = client.call(Method::GET, &format!("/v1/tasks/{id}/result"), None, None).await?;
            print(&args, &out, |v| {
                format!(
                    "{}{}exit code: {}",
                    v["result"]["stdout"].as_str().unwrap_or_default(),
                    v["result"]["stderr"].as_str().unwrap_or_default(),
                    v["result"]["exit_code"]
                )
            });
        }
        TaskCmd::Cancel { id } => {
            let out = client.call(Method::POST, &format!("/v1/tasks/{id}/cancel"), None, None).await?;
            print(&args, &out, task_line);
        }
        TaskCmd::List { state } => {
            let path = match state {
                Some(s) => format!("/v1/tasks?state={s}"),
                None => "/v1/tasks".to_owned(),
            };
            let out = client.call(Method::GET, &path, None, None).await?;
            print(&args, &out, |v| {
                v["tasks"].as_array().into_iter().flatten().map(task_line).collect::<Vec<_>>().join("\n")
            });
        }
    }
    Ok(())
}

fn lane_line(l: &Value) -> String {
    let h = &l["handoff"];
    format!(
        "{}  {:<13} agent={} owner={} handoff={} ({})",
        l["id"].as_str().unwrap_or("?"),
        l["status"].as_str().unwrap_or("?"),
        l["agent"].as_str().unwrap_or("?"),
        l["owner"].as_str().unwrap_or("-"),
        h["handoff_id"].as_str().unwrap_or("-"),
        h["status"].as_str().unwrap_or("-"),
    )
}

async fn lane(args: ClientArgs, command: LaneCmd) -> anyhow::Result<()> {
    let client = connect(&args).await?;
    let key = || Some(args.idempotency_key.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()));
    let post = |id: &str, what: &str, body: Value| {
        let (client, path, key) = (&client, format!("/v1/lanes/{id}/{what}"), key());
        async move { client.call(Method::POST, &path, Some(body), key.as_deref()).await }
    };
    let out = match command {
        LaneCmd::Inspect { id } => client.call(Method::GET, &format!("/v1/lanes/{id}"), None, None).await?,
        LaneCmd::Escalate { id, reason } => post(&id, "escalate", json!({ "reason": reason })).await?["lane"].clone(),
        LaneCmd::AssignOwner { id, owner, reason } => {
            post(&id, "assign-owner", json!({ "owner": owner, "reason": reason })).await?["lane"].clone()
        }
        LaneCmd::ReassignOwner { id, owner, reason } => {
            post(&id, "reassign-owner", json!({ "owner": owner, "reason": reason })).await?["lane"].clone()
        }
        LaneCmd::Owner { id } => {
            let out = client.call(Method::GET, &format!("/v1/lanes/{id}/owner"), None, None).await?;
            print(&args, &out, |v| v["owner"].as_str().unwrap_or("(none)").to_owned());
            return Ok(());
        }
        LaneCmd::Unblock { id, reason } => post(&id, "unblock", json!({ "reason": reason })).await?["lane"].clone(),
        LaneCmd::OverrideClose { id, reason } => {
            post(&id, "override-close", json!({ "reason": reason })).await?["lane"].clone()
        }
    };
    print(&args, &out, lane_line);
    Ok(())
}

fn handoff_line(h: &Value) -> String {
    format!(
        "{}  {:<8} lane={} queue={} trigger={}{}  {}",
        h["handoff_id"].as_str().unwrap_or("?"),
        h["status"].as_str().unwrap_or("?"),
        h["lane_id"].as_str().unwrap_or("?"),
        h["queue"].as_str().unwrap_or("?"),
        h["trigger_class"].as_str().unwrap_or("?"),
        if h["escalated"] == true { " ESCALATED" } else { "" },
        h["reason"].as_str().unwrap_or_default(),
    )
}

async fn handoff(args: ClientArgs, command: HandoffCmd) -> anyhow::Result<()> {
    let client = connect(&args).await?;
    match command {
        HandoffCmd::List { queue, status } => {
            let query: Vec<String> = [("queue", queue), ("status", status)]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
                .collect();
            let out = client.call(Method::GET, &format!("/v1/handoffs?{}", query.join("&")), None, None).await?;
            print(&args, &out, |v| {
                v["handoffs"].as_array().into_iter().flatten().map(handoff_line).collect::<Vec<_>>().join("\n")
            });
        }
        HandoffCmd::Show { id } => {
            let out = client.call(Method::GET, &format!("/v1/handoffs/{id}"), None, None).await?;
            print(&args, &out, handoff_line);
        }
        HandoffCmd::Decide { id, action, reason, reroute_to, context } => {
            let context = match context {
                Some(c) => {
                    Some(serde_json::from_str::<Value>(&c).map_err(|e| anyhow::anyhow!("--context is not JSON: {e}"))?)
                }
                None => None,
            };
            let mut body = json!({ "action": action, "reason": reason, "reroute_to": reroute_to, "context": context });
            strip_nulls(&mut body);
            let key = args.idempotency_key.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let out = client.call(Method::POST, &format!("/v1/handoffs/{id}/decision"), Some(body), Some(&key)).await?;
            print(&args, &out, |v| lane_line(&v["lane"]));
        }
        HandoffCmd::Dlq => {
            let out = client.call(Method::GET, "/v1/dlq", None, None).await?;
            print(&args, &out, |v| {
                v["deliveries"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| {
                        format!(
                            "{}  lane={} attempts={} last_error={}",
                            d["id"].as_str().unwrap_or("?"),
                            d["lane_id"].as_str().unwrap_or("?"),
                            d["attempts"],
                            d["last_error"].as_str().unwrap_or("-")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        HandoffCmd::Replay { id } => {
            let out = client.call(Method::POST, &format!("/v1/dlq/{id}/replay"), None, None).await?;
            print(&args, &out, |v| format!("requeued {}", v["delivery"].as_str().unwrap_or("?")));
        }
    }
    Ok(())
}

/// Drops null fields (recursively) so the server applies its defaults.
fn strip_nulls(v: &mut Value) {
    if let Some(fields) = v.as_object_mut() {
        fields.retain(|_, f| !f.is_null());
        fields.values_mut().for_each(strip_nulls);
    }
}

fn node_line(n: &Value) -> String {
    let ack = &n["config_ack"];
    format!(
        "{:<10} {:<12} {:<20} config v{} (acked {})  cores={} docker={}",
        n["id"].as_str().unwrap_or("?"),
        n["state"].as_str().unwrap_or("?"),
        n["capabilities"]["hostname"].as_str().unwrap_or("?"),
        n["config_version"],
        match ack["outcome"].as_str() {
            _ if ack.is_null() => "none".to_owned(),
            Some(outcome) => format!("v{} {outcome}", ack["version"]),
            None => format!("v{} failed: {}", ack["version"], ack["outcome"]["failed"]["error"]),
        },
        n["capabilities"]["cores"],
        n["capabilities"]["docker_version"].as_str().unwrap_or("none"),
    )
}

async fn node(args: ClientArgs, command: NodeCmd) -> anyhow::Result<()> {
    let client = connect(&args).await?;
    let out = match command {
        NodeCmd::List => {
            let out = client.call(Method::GET, "/v1/nodes", None, None).await?;
            print(&args, &out, |v| {
                v["nodes"].as_array().into_iter().flatten().map(node_line).collect::<Vec<_>>().join("\n")
            });
            return Ok(());
        }
        NodeCmd::Show { id } => client.call(Method::GET, &format!("/v1/nodes/{id}"), None, None).await?,
        NodeCmd::Drain { id } => client.call(Method::POST, &format!("/v1/nodes/{id}/drain"), None, None).await?,
        NodeCmd::Remove { id } => client.call(Method::POST, &format!("/v1/nodes/{id}/remove"), None, None).await?,
        NodeCmd::Config {
            command:
                NodeConfigCmd::Set {
                    id,
                    heartbeat_interval_ms,
                    max_concurrent_jobs,
                    sandbox_image,
                    network_policies,
                    default_memory_bytes,
                    default_cpu_millis,
                    labels,
                },
        } => {
            let mut body = json!({
                "heartbeat_interval_ms": heartbeat_interval_ms,
                "max_concurrent_jobs": max_concurrent_jobs,
                "sandbox_image": sandbox_image,
                "allowed_network_policies": network_policies.as_deref().map(split),
                "default_memory_bytes": default_memory_bytes,
                "default_cpu_millis": default_cpu_millis,
                "labels": labels.map(|l| l.into_iter().collect::<std::collections::BTreeMap<_, _>>()),
            });
            strip_nulls(&mut body);
            client.call(Method::PUT, &format!("/v1/nodes/{id}/config"), Some(body), None).await?
        }
    };
    print(&args, &out, node_line);
    Ok(())
}

/// Creates the `admin` account when there are no accounts yet. `Some(Some(pw))`:
/// created with a generated password; `Some(None)`: created with the given one.
async fn first_admin(
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
        tokio::task::spawn_blocking(move || crate::identity::hash_password(&password).map(|h| (h, password))).await?;
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
    crate::identity::user_command(app, &system, "admin", create)
        .await
        .map_err(|e| anyhow::anyhow!("creating the admin account: {}", e.message))?;
    Ok(Some(generated.then_some(password)))
}

fn write_secret(path: &std::path::Path, secret: &str) -> anyhow::Result<()> {
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

/// A client with the caller's token: `--token`/`DISPATCH_TOKEN`, else the stored login
/// for this server (refreshed when about to expire), else `./dispatch-data/admin-token`.
async fn connect(args: &ClientArgs) -> anyhow::Result<Client> {
    if let Some(token) = &args.token {
        return Ok(Client::new(&args.server, Some(token.clone())));
    }
    if let Some(stored) = crate::credentials::load().filter(|s| s.server == args.server) {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if stored.access_expires_at > now + 30 {
            return Ok(Client::new(&args.server, Some(stored.access_token)));
        }
        let api = Client::new(&args.server, None);
        let out = api
            .call(Method::POST, "/v1/auth/refresh", Some(json!({ "refresh_token": stored.refresh_token })), None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}; run `dispatch login` again"))?;
        store_tokens(&args.server, &out)?;
        return Ok(Client::new(&args.server, out["access_token"].as_str().map(str::to_owned)));
    }
    let admin = std::fs::read_to_string("./dispatch-data/admin-token").ok().map(|s| s.trim().to_owned());
    Ok(Client::new(&args.server, admin))
}

fn store_tokens(server: &str, pair: &Value) -> anyhow::Result<PathBuf> {
    let field =
        |k: &str| pair[k].as_str().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("the server's answer has no {k}"));
    crate::credentials::save(&crate::credentials::Stored {
        server: server.to_owned(),
        access_token: field("access_token")?,
        refresh_token: field("refresh_token")?,
        access_expires_at: time::OffsetDateTime::now_utc().unix_timestamp() + pair["expires_in"].as_i64().unwrap_or(0),
    })
}

async fn user(args: ClientArgs, command: UserCmd) -> anyhow::Result<()> {
    let client = connect(&args).await?;
    let line = |u: &Value| {
        format!(
            "{:<24} {:<8} {:<11} accounts={} sites={}{}",
            u["username"].as_str().unwrap_or("?"),
            u["kind"].as_str().unwrap_or("?"),
            u["role"].as_str().unwrap_or("?"),
            u["accounts"],
            u["sites"],
            if u["disabled"] == true { "  DISABLED" } else { "" }
        )
    };
    match command {
        UserCmd::Create { username, service, role, scope, queues, tools, password_stdin } => {
            let mut body = json!({ "role": role, "accounts": split(&scope.accounts), "sites": split(&scope.sites), "queues": split(&queues) });
            let mut generated = None;
            if let Some(name) = service {
                body["username"] = json!(name);
                body["service"] = json!(true);
                body["tools"] = json!(tools.as_deref().map(split));
            } else {
                let (pw, was_generated) = password(password_stdin)?;
                body["username"] = json!(username);
                body["password"] = json!(pw);
                generated = was_generated.then_some(pw);
            }
            let out = client.call(Method::POST, "/v1/users", Some(body), None).await?;
            print(&args, &out, |v| {
                let mut s = line(&v["user"]);
                if let Some(token) = v["token"].as_str() {
                    s.push_str(&format!("\ntoken (shown once): {token}"));
                }
                if let Some(pw) = &generated {
                    s.push_str(&format!("\npassword (shown once): {pw}"));
                }
                s
            });
        }
        UserCmd::List => {
            let out = client.call(Method::GET, "/v1/users", None, None).await?;
            print(&args, &out, |v| {
                v["users"].as_array().into_iter().flatten().map(line).collect::<Vec<_>>().join("\n")
            });
        }
        UserCmd::Disable { username } => {
            let out = client.call(Method::POST, &format!("/v1/users/{username}/disable"), None, None).await?;
            print(&args, &out, line);
        }
        UserCmd::SetRole { username, role } => {
            let out = client
                .call(Method::POST, &format!("/v1/users/{username}/role"), Some(json!({ "role": role })), None)
                .await?;
            print(&args, &out, line);
        }
        UserCmd::ResetPassword { username, password_stdin } => {
            let (pw, generated) = password(password_stdin)?;
            let out = client
                .call(Method::POST, &format!("/v1/users/{username}/password"), Some(json!({ "password": pw })), None)
                .await?;
            print(
                &args,
                &out,
                |v| if generated { format!("{}\npassword (shown once): {pw}", line(v)) } else { line(v) },
            );
        }
    }
    Ok(())
}

fn print(args: &ClientArgs, value: &Value, human: impl Fn(&Value) -> String) {
    if args.json {
        println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
    } else {
        println!("{}", human(value));
    }
}

fn ticket_line(t: &Value) -> String {
    format!(
        "{}  {:<30} v{:<3} {} @ {}  {}",
        t["id"].as_str().unwrap_or("?"),
        t["state"].as_str().unwrap_or("?"),
        t["version"],
        t["incident_type"].as_str().unwrap_or("?"),
        t["site_id"].as_str().unwrap_or("?"),
        t["technician_id"].as_str().map(|s| format!("tech={s}")).unwrap_or_default(),
    )
}

fn window(s: &str) -> anyhow::Result<Value> {
    let (start, end) = s.split_once('/').ok_or_else(|| anyhow::anyhow!("a window is START/END, got {s:?}"))?;
    Ok(json!({ "start": start, "end": end }))
}

async fn ticket(args: ClientArgs, command: TicketCmd) -> anyhow::Result<()> {
    let client = connect(&args).await?;
    let key = args.idempotency_key.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let post = |path: String, body: Value| {
        let client = &client;
        let key = key.clone();
        async move { client.call(Method::POST, &path, Some(body), Some(&key)).await }
    };
    let t = |id: &str, action: &str| format!("/v1/tickets/{id}/{action}");
    let result: Result<Value, ClientError> = match command {
        TicketCmd::Create { account, site, incident_type, summary, priority } => {
            post("/v1/tickets".into(), json!({ "account_id": account, "site_id": site, "incident_type": incident_type, "summary": summary, "priority": priority })).await
        }
        TicketCmd::Triage { id, outcome, priority, notes } => {
            post(t(&id, "triage"), json!({ "workflow_outcome": outcome, "priority": priority, "notes": notes })).await
        }
        TicketCmd::Propose { id, windows } => {
            let windows = windows.iter().map(|w| window(w)).collect::<anyhow::Result<Vec<_>>>()?;
            post(t(&id, "schedule/propose"), json!({ "windows": windows })).await
        }
        TicketCmd::Confirm { id, window: w } => post(t(&id, "schedule/confirm"), json!({ "window": window(&w)? })).await,
        TicketCmd::ConfirmBypass { id, reason } => {
            let out = client.call(Method::POST, &t(&id, "assignment/bypass-confirmation"), Some(json!({ "reason": reason })), None).await?;
            print(&args, &out, |v| v["confirmation"].as_str().unwrap_or_default().to_owned());
            return Ok(());
        }
        TicketCmd::Dispatch { id, technician, emergency_reason, manager_confirmation } => {
            let mode = if emergency_reason.is_some() { "EMERGENCY_BYPASS" } else { "STANDARD" };
            post(t(&id, "assignment/dispatch"), json!({ "technician_id": technician, "dispatch_mode": mode, "reason": emergency_reason, "manager_confirmation": manager_confirmation })).await
        }
        TicketCmd::CheckIn { id } => post(t(&id, "tech/check-in"), json!({})).await,
        TicketCmd::RequestChange { id, reason, summary } => {
            post(t(&id, "tech/request-change"), json!({ "reason": reason, "change_summary": summary })).await
        }
        TicketCmd::Decide { id, decision, reason } => post(t(&id, "approval/decide"), json!({ "decision": decision, "reason": reason })).await,
        TicketCmd::Evidence { id, key: evidence_key, kind, file, uri } => {
            let uri = match (file, uri) {
                (Some(file), _) => {
                    let bytes = std::fs::read(&file).map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
                    client.upload("/v1/blobs", bytes).await?["uri"].as_str().unwrap_or_default().to_owned()
                }
                (None, Some(uri)) => uri,
                (None, None) => anyhow::bail!("give --file to upload or --uri of a stored blob"),
            };
            post(t(&id, "evidence"), json!({ "kind": kind, "uri": uri, "evidence_key": evidence_key })).await
        }
        TicketCmd::Complete { id, done, no_signature_reason } => {
            let checklist: serde_json::Map<String, Value> = done.into_iter().map(|i| (i, Value::Bool(true))).collect();
            post(t(&id, "tech/complete"), json!({ "checklist": checklist, "no_signature_reason": no_signature_reason })).await
        }
        TicketCmd::Verify { id, notes } => post(t(&id, "qa/verify"), json!({ "notes": notes })).await,
        TicketCmd::Invoice { id, amount_cents, currency } => {
            post(t(&id, "billing/generate-invoice"), json!({ "amount_cents": amount_cents, "currency": currency })).await
        }
        TicketCmd::Close { id } => post(t(&id, "close"), json!({})).await,
        TicketCmd::Cancel { id, reason } => post(t(&id, "cancel"), json!({ "reason": reason })).await,
        TicketCmd::Get { id } => client.call(Method::GET, &format!("/v1/tickets/{id}"), None, None).await,
        TicketCmd::Timeline { id } => {
            let out = client.call(Method::GET, &t(&id, "timeline"), None, None).await?;
            print(&args, &out, |v| {
                v["events"].as_array().into_iter().flatten().map(|e| format!(
                    "#{:<3} {}  {:<28} {:>30} -> {:<30} {} ({})",
                    e["seq"], e["occurred_at"].as_str().unwrap_or(""), e["kind"].as_str().unwrap_or(""),
                    e["before_state"].as_str().unwrap_or("-"), e["after_state"].as_str().unwrap_or("-"),
                    e["actor"]["id"].as_str().unwrap_or(""), e["actor"]["role"].as_str().unwrap_or(""),
                )).collect::<Vec<_>>().join("\n")
            });
            return Ok(());
        }
        TicketCmd::List { state, site, after } => {
            let mut path = "/v1/tickets?limit=1000".to_owned();
            if let Some(a) = after {
                path.push_str(&format!("&after={a}"));
            }
            if let Some(s) = state {
                path.push_str(&format!("&state={s}"));
            }
            if let Some(s) = site {
                path.push_str(&format!("&site_id={s}"));
            }
            let out = client.call(Method::GET, &path, None, None).await?;
            print(&args, &out, |v| {
                let mut lines: Vec<String> = v["tickets"].as_array().into_iter().flatten().map(ticket_line).collect();
                if let Some(next) = v["next_after"].as_str() {
                    lines.push(format!("… more: dispatch ticket list --after {next}"));
                }
                lines.join("\n")
            });
            return Ok(());
        }
    };
    match result {
        Ok(out) => {
            print(&args, &out, ticket_line);
            Ok(())
        }
        Err(ClientError::Api { status, code, message, details }) => {
            if args.json {
                println!(
                    "{}",
                    json!({ "error": { "status": status, "code": code, "message": message, "details": details } })
                );
            }
            let extra =
                if details.as_object().is_some_and(|d| !d.is_empty()) { format!(" {details}") } else { String::new() };
            anyhow::bail!("{code} ({status}): {message}{extra}")
        }
        Err(e) => Err(e.into()),
    }
}
