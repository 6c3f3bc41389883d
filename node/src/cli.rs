//! The command line: `up` and `agent` run the product; every other subcommand is a
//! client of the HTTP API, with `--json` for scripts. This file parses and picks the
//! mode; each command group lives in `cli/` (`serve`, `ticket`, `lane`, `node`, `task`,
//! `user`, `admin`, `access`), with the helpers they share (`connect`, `print`) here.

use std::path::PathBuf;
use std::process::ExitCode;

use actors::policy::Role;
use clap::{Args, Parser, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::Client;

mod access;
mod admin;
mod audit;
mod backup;
mod context;
mod lane;
mod mcp;
mod node;
mod serve;
mod table;
mod task;
mod terminal;
mod ticket;
mod user;
mod views;

use admin::AdminCmd;
use lane::{HandoffCmd, LaneCmd, handoff, lane};
use node::{NodeCmd, TokenCmd, join_token, node};
use serve::{AgentRole, ServeArgs, serve_until_stopped};
use task::{TaskCmd, task};
use ticket::{TicketCmd, ticket};
use user::{UserCmd, user};

#[derive(Parser)]
#[command(name = "dispatch", version, about = "Self-hosted control plane for work between agents, people and machines")]
struct Cli {
    #[command(flatten)]
    leading: LeadingFlags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the embedded single-node default (data in ./dispatch-data); prints the URL and an admin token.
    Up(ServeArgs),
    /// Run a cluster member in a given role.
    Agent {
        /// Which member this process is: orchestrator or worker.
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
        client: ClientFlags,
        #[command(subcommand)]
        command: TokenCmd,
    },
    /// Tasks: commands run as sandboxed jobs on worker nodes.
    Task {
        #[command(flatten)]
        client: ClientFlags,
        #[command(subcommand)]
        command: TaskCmd,
    },
    /// Agent lanes: inspect and operator controls.
    Lane {
        #[command(flatten)]
        client: ClientFlags,
        #[command(subcommand)]
        command: LaneCmd,
    },
    /// Handoffs in your queues, decisions, and the callback dead-letter queue.
    Handoff {
        #[command(flatten)]
        client: ClientFlags,
        #[command(subcommand)]
        command: HandoffCmd,
    },
    /// Worker nodes.
    Node {
        #[command(flatten)]
        client: ClientFlags,
        #[command(subcommand)]
        command: NodeCmd,
    },
    /// Work with tickets.
    Ticket {
        #[command(flatten)]
        client: ClientFlags,
        #[command(subcommand)]
        command: TicketCmd,
    },
    /// Upload an evidence file; prints its blob URI.
    Blob {
        #[command(flatten)]
        client: ClientFlags,
        /// The file to upload.
        file: PathBuf,
    },
    /// Log in with a username and password (read from stdin); the CLI keeps the tokens.
    Login {
        /// Orchestrator URL (else $DISPATCH_SERVER, else http://127.0.0.1:8080).
        #[arg(long)]
        server: Option<String>,
        /// The name to keep this login under (default USER@HOST:PORT).
        #[arg(long)]
        context: Option<String>,
        /// The account to log in as.
        #[arg(long)]
        username: String,
        /// PEM certificate to trust for an https:// server (the cluster CA's); kept with the login.
        #[arg(long, value_name = "PEM")]
        ca_cert: Option<PathBuf>,
    },
    /// Who the server takes you for: the token's subject, role, scopes and expiry.
    Whoami {
        #[command(flatten)]
        client: ClientFlags,
    },
    /// End the stored login's session on the server and forget its tokens here.
    Logout {
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Prove the log's hash chains (admin), on the server or on a stopped data dir.
    Audit {
        #[command(flatten)]
        client: ClientFlags,
        #[command(subcommand)]
        command: audit::AuditCmd,
    },
    /// Write a consistent backup of the running orchestrator (admin) to FILE, or of a
    /// stopped node's data dir with --data-dir. FILE appears only once complete.
    Backup {
        #[command(flatten)]
        client: ClientFlags,
        /// Where to write the backup (must not exist).
        file: PathBuf,
        /// Back up this stopped node's data dir directly instead of asking the server.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Restore a backup into a new or empty data dir, after verifying every hash chain,
    /// every blob and the manifest; then start `dispatch up --data-dir DIR` on it.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The data dir to create (missing or empty).
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Stored logins by name (kubectl's contexts): list, use, remove.
    Context {
        #[command(flatten)]
        client: ClientFlags,
        #[command(subcommand)]
        command: context::ContextCmd,
    },
    /// This binary's version and the versions of what it stores and speaks.
    Version {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Started by a worker beside each job: stops the job's container once its hold runs out.
    #[command(hide = true)]
    SandboxFence {
        /// The job's container, killed once its hold runs out.
        #[arg(long)]
        container: String,
        /// The file holding until when (Unix ms) the job may run; the fence ends when it is gone.
        #[arg(long)]
        hold_file: PathBuf,
    },
    /// Print a shell completion script: `dispatch completions bash > /etc/bash_completion.d/dispatch`.
    Completions {
        /// The shell to complete for: bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Speak MCP on stdin/stdout, forwarded to the server's /mcp: for agent hosts that launch MCP servers as processes.
    Mcp {
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Manage accounts (admin).
    User {
        #[command(flatten)]
        client: ClientFlags,
        #[command(subcommand)]
        command: UserCmd,
    },
    /// Administration.
    Admin {
        #[command(flatten)]
        client: ClientFlags,
        #[command(subcommand)]
        command: AdminCmd,
    },
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

/// The server a client command talks to when none is named.
const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// How a client command prints its answer.
#[derive(Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    /// For people: tables with headers, human times.
    #[default]
    Table,
    /// Tables with more columns.
    Wide,
    /// The server's JSON answer (the same as --json).
    Json,
    /// The server's answer as YAML.
    Yaml,
}

/// Client options given after the command group (`dispatch ticket list --token T`).
#[derive(Args)]
struct ClientFlags {
    /// Orchestrator URL (else $DISPATCH_SERVER, else http://127.0.0.1:8080).
    #[arg(long, global = true)]
    server: Option<String>,
    /// Access token (else $DISPATCH_TOKEN, a stored login for this server, or ./dispatch-data/admin-token).
    #[arg(long, global = true)]
    token: Option<String>,
    /// Print the server's JSON answer (-o json).
    #[arg(long, global = true)]
    json: bool,
    /// How to print the answer: table (default), wide, json or yaml.
    #[arg(short = 'o', long, global = true, value_enum)]
    output: Option<Output>,
    /// The stored login to use (else $DISPATCH_CONTEXT, else the current one; `dispatch context list`).
    #[arg(long, global = true)]
    context: Option<String>,
    /// Idempotency-Key for a mutation (default: a fresh one). Reuse it to retry safely.
    #[arg(long, global = true)]
    idempotency_key: Option<String>,
    /// PEM certificate to trust for an https:// server besides the system's roots: the
    /// cluster CA's (<data-dir>/ca/ca.crt.pem) (else $DISPATCH_CA_CERT, or the context's).
    #[arg(long, global = true, value_name = "PEM")]
    ca_cert: Option<PathBuf>,
}

/// The same options given before the command (`dispatch --token T ticket list`), as
/// kubectl and nomad take them; given in both places, the one after the command wins.
#[derive(Args)]
struct LeadingFlags {
    /// Orchestrator URL, for the command that follows.
    #[arg(long = "server", id = "leading_server", value_name = "SERVER")]
    server: Option<String>,
    /// Access token, for the command that follows.
    #[arg(long = "token", id = "leading_token", value_name = "TOKEN")]
    token: Option<String>,
    /// Print the server's JSON answer (-o json).
    #[arg(long = "json", id = "leading_json")]
    json: bool,
    /// How to print the answer: table (default), wide, json or yaml.
    #[arg(short = 'o', long = "output", id = "leading_output", value_enum)]
    output: Option<Output>,
    /// The stored login to use, for the command that follows.
    #[arg(long = "context", id = "leading_context", value_name = "CONTEXT")]
    context: Option<String>,
}

/// The client options in effect: after the command, then before it, then the
/// environment, then the defaults.
struct ClientArgs {
    server: String,
    token: Option<String>,
    /// The answer is printed as JSON (`--json` or `-o json`).
    json: bool,
    output: Output,
    /// The context named by --context or $DISPATCH_CONTEXT (None: the current one).
    context: Option<String>,
    idempotency_key: Option<String>,
    /// The CA certificate to trust for https (flag, $DISPATCH_CA_CERT, or the context's).
    ca_cert: Option<PathBuf>,
}

impl ClientArgs {
    /// A client of the server these options name, with `token`.
    fn client(&self, token: Option<String>) -> Client {
        Client::new(&self.server, token, self.ca_cert.as_deref())
    }
}

impl ClientFlags {
    fn resolve(self, leading: &LeadingFlags) -> ClientArgs {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let context = self.context.or_else(|| leading.context.clone()).or_else(|| env("DISPATCH_CONTEXT"));
        let output = self.output.or(leading.output);
        table::set_wide(output == Some(Output::Wide));
        let stored = || crate::credentials::Contexts::load().get(context.as_deref()).map(|(_, s)| s.clone());
        let context_server = || stored().map(|s| s.server);
        let ca_cert = self.ca_cert.or_else(|| env("DISPATCH_CA_CERT").map(PathBuf::from)).or_else(|| stored()?.ca_cert);
        ClientArgs {
            server: self
                .server
                .or_else(|| leading.server.clone())
                .or_else(|| env("DISPATCH_SERVER"))
                .or_else(context_server)
                .unwrap_or_else(|| DEFAULT_SERVER.to_owned()),
            token: self.token.or_else(|| leading.token.clone()).or_else(|| env("DISPATCH_TOKEN")),
            json: self.json || leading.json || output == Some(Output::Json),
            output: if self.json || leading.json { Output::Json } else { output.unwrap_or_default() },
            context,
            idempotency_key: self.idempotency_key,
            ca_cert,
        }
    }
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

/// An error and its causes on one line, each cause said once: libraries often repeat
/// their source's text in their own message (`error sending request: error sending request`).
fn one_line(e: &anyhow::Error) -> String {
    let mut said: Vec<String> = Vec::new();
    for cause in e.chain().map(ToString::to_string) {
        if !said.iter().any(|s| s.contains(cause.as_str())) {
            said.push(cause);
        }
    }
    said.join(": ")
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
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let leading = cli.leading;
    let resolve = |flags: ClientFlags| flags.resolve(&leading);
    match cli.command {
        Command::Up(serve) => serve_until_stopped(serve, true).await,
        Command::SandboxFence { container, hold_file } => crate::sandbox::run_fence(&container, &hold_file).await,
        Command::Agent { role: AgentRole::Orchestrator, serve, .. } => serve_until_stopped(serve, false).await,
        Command::Agent { role: AgentRole::Worker, join, token, labels, serve } => {
            crate::telemetry::init_logs(serve.log_json);
            let labels = labels.into_iter().collect();
            let host = serve.worker_host();
            let (addr, https) = (serve.http_addr, serve.https());
            crate::worker::run(&serve.data_dir, addr, token.as_deref(), join.as_deref(), labels, &host, https.as_ref())
                .await
        }
        Command::Token { client, command } => join_token(resolve(client), command).await,
        Command::Node { client, command } => node(resolve(client), command).await,
        Command::Task { client, command } => task(resolve(client), command).await,
        Command::Lane { client, command } => lane(resolve(client), command).await,
        Command::Handoff { client, command } => handoff(resolve(client), command).await,
        Command::Ticket { client, command } => ticket(resolve(client), command).await,
        Command::Blob { client, file } => {
            let client = resolve(client);
            let bytes = std::fs::read(&file).map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
            let out = connect(&client).await?.upload("/v1/blobs", bytes).await?;
            print(&client, &out, |v| format!("{}  ({} bytes)", v["uri"].as_str().unwrap_or("?"), v["size"]));
            Ok(())
        }
        Command::Admin { client, command } => admin::run(resolve(client), command).await,
        Command::Login { server, context, username, ca_cert } => {
            let flags =
                ClientFlags { server, token: None, json: false, output: None, context, idempotency_key: None, ca_cert };
            context::login(&resolve(flags), &username).await
        }
        Command::User { client, command } => user(resolve(client), command).await,
        Command::Mcp { client } => mcp::bridge(resolve(client)).await,
        Command::Whoami { client } => whoami(&resolve(client)).await,
        Command::Logout { client } => context::logout(&resolve(client)).await,
        Command::Audit { client, command } => audit::audit(resolve(client), command).await,
        Command::Backup { client, file, data_dir } => backup::backup(resolve(client), file, data_dir).await,
        Command::Restore { file, data_dir } => backup::restore(&file, &data_dir),
        Command::Context { client, command } => context::context(&resolve(client), command),
        Command::Version { json } => {
            let v = json!({
                "version": env!("CARGO_PKG_VERSION"),
                "data_format": actors::storage::FORMAT_VERSION,
                "record_version": actors::storage::RECORD_VERSION,
                "cluster_protocol": cluster::wire::PROTOCOL_VERSION,
            });
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                println!(
                    "dispatch {}\n  data format:      {} (records v{}); a newer file is refused, not misread\n  cluster protocol: {}",
                    v["version"].as_str().unwrap_or("?"),
                    v["data_format"],
                    v["record_version"],
                    v["cluster_protocol"]
                );
            }
            Ok(())
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "dispatch", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// `dispatch whoami`: the server's view of the token this CLI would use.
async fn whoami(args: &ClientArgs) -> anyhow::Result<()> {
    let me = connect(args).await?.call(Method::GET, "/v1/me", None, None).await?;
    print(args, &me, |v| {
        let p = &v["principal"];
        let list = |k: &str| p[k].as_array().map(|l| l.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","));
        let left = v["expires_at"].as_i64().unwrap_or(0) - time::OffsetDateTime::now_utc().unix_timestamp();
        format!(
            "{} ({})\n  accounts: {}\n  sites:    {}\n  queues:   {}\n  tools:    {}\n  expires:  in {}",
            p["sub"].as_str().unwrap_or("?"),
            p["role"].as_str().unwrap_or("?"),
            list("accounts").unwrap_or_default(),
            list("sites").unwrap_or_default(),
            list("queues").filter(|q| !q.is_empty()).unwrap_or_else(|| "-".into()),
            list("tools").unwrap_or_else(|| "all of the role's".into()),
            table::span(left),
        )
    });
    Ok(())
}

/// Where the CLI keeps a login, for messages.
fn credentials_place() -> String {
    crate::credentials::path()
        .map_or_else(|| "$HOME/.config/dispatch/credentials.json".into(), |p| p.display().to_string())
}

/// Drops null fields (recursively) so the server applies its defaults.
fn strip_nulls(v: &mut Value) {
    if let Some(fields) = v.as_object_mut() {
        fields.retain(|_, f| !f.is_null());
        fields.values_mut().for_each(strip_nulls);
    }
}

/// A client with the caller's token: `--token`/`DISPATCH_TOKEN`, else the stored login
/// for this server (refreshed when about to expire), else `./dispatch-data/admin-token`.
async fn connect(args: &ClientArgs) -> anyhow::Result<Client> {
    if !args.server.starts_with("http://") && !args.server.starts_with("https://") {
        anyhow::bail!("--server needs a scheme: http://{0} or https://{0}", args.server);
    }
    if let Some(token) = &args.token {
        return Ok(args.client(Some(token.clone())));
    }
    let contexts = crate::credentials::Contexts::load();
    if let Some(name) = &args.context
        && !contexts.contexts.contains_key(name)
    {
        anyhow::bail!("no context {name:?} (see `dispatch context list`)");
    }
    if let Some((name, stored)) = contexts.get(args.context.as_deref()).filter(|(_, s)| s.server == args.server) {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if stored.access_expires_at > now + 30 {
            return Ok(args.client(Some(stored.access_token.clone())));
        }
        let api = args.client(None);
        let out = api
            .call(Method::POST, "/v1/auth/refresh", Some(json!({ "refresh_token": stored.refresh_token })), None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}; run `dispatch login` again"))?;
        context::store(name, args, &out, false)?;
        return Ok(args.client(out["access_token"].as_str().map(str::to_owned)));
    }
    match std::fs::read_to_string(ADMIN_TOKEN_FILE) {
        Ok(admin) => Ok(args.client(Some(admin.trim().to_owned()))),
        Err(_) => anyhow::bail!(
            "no access token for {}: looked at --token, $DISPATCH_TOKEN, a stored login for this server ({}) \
             and {ADMIN_TOKEN_FILE}; pass --token, `dispatch login --server {} --username NAME`, or run from \
             the directory above `up`'s data dir",
            args.server,
            credentials_place(),
            args.server,
        ),
    }
}

/// Where `up` leaves the admin token, relative to where it was started.
const ADMIN_TOKEN_FILE: &str = "./dispatch-data/admin-token";

fn print(args: &ClientArgs, value: &Value, human: impl Fn(&Value) -> String) {
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value).unwrap_or_default()),
        Output::Yaml => print!("{}", yaml_serde::to_string(value).unwrap_or_default()),
        Output::Table | Output::Wide => println!("{}", human(value)),
    }
}

#[cfg(test)]
mod tests {
    /// Every command and every option says what it is in `--help`.
    #[test]
    fn every_command_and_option_has_help() {
        use clap::CommandFactory;
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none_or(|h| h.to_string().trim().is_empty()) {
                    missing.push(format!("{path} --{}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                let here = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none_or(|a| a.to_string().trim().is_empty()) {
                    missing.push(format!("{here} (no description)"));
                }
                walk(sub, &here, missing);
            }
        }
        let mut missing = vec![];
        walk(&super::Cli::command(), "dispatch", &mut missing);
        assert!(missing.is_empty(), "{} without help:\n{}", missing.len(), missing.join("\n"));
    }
}
