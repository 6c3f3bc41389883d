//! `dispatch admin …`: lane freezes, ad-hoc tokens, signing keys, sessions.

use actors::policy::Role;
use clap::Subcommand;

use reqwest::Method;
use serde_json::json;

use super::{ClientArgs, ScopeArgs, access, connect, parse_role, print, split};

#[derive(Subcommand)]
pub(super) enum AdminCmd {
    /// Add a new token signing key; tokens signed by older keys stay valid until they expire.
    RotateSigningKey,
    /// Mint an access token for a user or service.
    Token {
        /// Who the token speaks for (a user name or a service's name); recorded in the audit trail.
        #[arg(long)]
        sub: String,
        /// The role it carries (admin, dispatcher, technician, manager, qa, billing, agent, operator, engineer).
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[command(flatten)]
        scope: ScopeArgs,
        /// Comma-separated tool names this token is limited to.
        #[arg(long)]
        tools: Option<String>,
        /// Comma-separated handoff queues an operator token sees, or * for all.
        #[arg(long)]
        queues: Option<String>,
        /// Lifetime: 90s, 15m, 2h, 30d.
        #[arg(long, default_value = "1h", value_parser = super::node::parse_duration)]
        ttl: u64,
    },
    /// Refuse new lanes (503 LANES_FROZEN); reads, decisions and existing lanes keep working.
    FreezeLanes {
        /// Why, in words; kept in the audit trail.
        #[arg(long)]
        reason: String,
    },
    /// Accept new lanes again.
    UnfreezeLanes {
        /// Why, in words; kept in the audit trail.
        #[arg(long)]
        reason: String,
    },
    #[command(flatten)]
    Access(access::AccessCmd),
}

/// Runs one admin command.
pub(super) async fn run(client: ClientArgs, command: AdminCmd) -> anyhow::Result<()> {
    match command {
        AdminCmd::Access(command) => return access::run(client, command).await,
        AdminCmd::FreezeLanes { reason } => {
            let out = connect(&client)
                .await?
                .call(Method::POST, "/v1/admin/lanes/freeze", Some(json!({ "reason": reason })), None)
                .await?;
            print(&client, &out, |_| "new lanes are frozen".into());
        }
        AdminCmd::UnfreezeLanes { reason } => {
            let out = connect(&client)
                .await?
                .call(Method::POST, "/v1/admin/lanes/unfreeze", Some(json!({ "reason": reason })), None)
                .await?;
            print(&client, &out, |_| "new lanes are accepted again".into());
        }
        AdminCmd::RotateSigningKey => {
            let out = connect(&client).await?.call(Method::POST, "/v1/admin/signing-keys", None, None).await?;
            print(&client, &out, |v| format!("new signing key {}", v["kid"].as_str().unwrap_or("?")));
        }
        AdminCmd::Token { sub, role, scope, tools, queues, ttl } => {
            let body = json!({ "sub": sub, "role": role, "accounts": split(&scope.accounts), "sites": split(&scope.sites),
                "tools": tools.as_deref().map(split), "queues": queues.as_deref().map(split).unwrap_or_default(),
                "ttl_seconds": ttl });
            let out = connect(&client).await?.call(Method::POST, "/v1/admin/tokens", Some(body), None).await?;
            print(&client, &out, |v| v["token"].as_str().unwrap_or_default().to_owned());
        }
    }
    Ok(())
}
