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
        AdminCmd::Token { sub, role, scope, tools, ttl } => {
            let body = json!({ "sub": sub, "role": role, "accounts": split(&scope.accounts), "sites": split(&scope.sites),
                "tools": tools.as_deref().map(split), "ttl_seconds": ttl });
            let out = connect(&client).await?.call(Method::POST, "/v1/admin/tokens", Some(body), None).await?;
            print(&client, &out, |v| v["token"].as_str().unwrap_or_default().to_owned());
        }
    }
    Ok(())
}
