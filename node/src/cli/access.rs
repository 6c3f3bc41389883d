//! `dispatch admin tokens|revoke-token|retire-signing-key` and
//! `dispatch user sessions|revoke-sessions`: what an admin sees and ends.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::{ClientArgs, connect, print};

/// Admin commands about access (flattened into `dispatch admin`).
#[derive(Subcommand)]
pub enum AccessCmd {
    /// Tokens minted by admins or for service accounts (who, for whom, until when).
    Tokens {
        /// Continue after this jti (printed at the end of a full page).
        #[arg(long)]
        after: Option<String>,
    },
    /// Revoke a minted token by its jti; it stops working at once.
    RevokeToken {
        /// The token's id (jti, from `admin tokens`).
        jti: String,
    },
    /// Retire a signing key: tokens it signed verify no more. Refused while some may
    /// still be live, unless --force.
    RetireSigningKey {
        /// The key's id (kid).
        kid: String,
        /// Retire even though tokens it signed may still be live (they stop working).
        #[arg(long)]
        force: bool,
    },
    /// A user's login sessions.
    Sessions {
        /// The account.
        username: String,
        /// Page after this session id.
        #[arg(long)]
        after: Option<String>,
    },
    /// End one session of a user (--session ID) or all of them (--all).
    RevokeSessions {
        /// The account.
        username: String,
        /// End only this session.
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        session: Option<String>,
        /// End every session of the account.
        #[arg(long)]
        all: bool,
    },
}

fn page_query(after: &Option<String>) -> String {
    after.as_ref().map(|a| format!("?cursor={a}")).unwrap_or_default()
}

fn more(v: &Value) -> String {
    v["next_cursor"].as_str().map(|c| format!("\n(more: --after {c})")).unwrap_or_default()
}

/// Runs one access command.
pub async fn run(args: ClientArgs, command: AccessCmd) -> anyhow::Result<()> {
    let client = connect(&args).await?;
    match command {
        AccessCmd::Tokens { after } => {
            let out = client.call(Method::GET, &format!("/v1/admin/tokens{}", page_query(&after)), None, None).await?;
            print(&args, &out, |v| {
                let rows = v["tokens"].as_array().into_iter().flatten().map(|t| {
                    format!(
                        "{}  sub={} role={} expires_at={} minted_by={} kid={}{}",
                        t["jti"].as_str().unwrap_or("?"),
                        t["sub"].as_str().unwrap_or("?"),
                        t["role"].as_str().unwrap_or("?"),
                        t["expires_at"],
                        t["minted_by"].as_str().unwrap_or("?"),
                        t["kid"].as_str().unwrap_or("?"),
                        if t["revoked"] == true { "  REVOKED" } else { "" }
                    )
                });
                rows.collect::<Vec<_>>().join("\n") + &more(v)
            });
        }
        AccessCmd::RevokeToken { jti } => {
            let out = client.call(Method::POST, &format!("/v1/admin/tokens/{jti}/revoke"), None, None).await?;
            print(&args, &out, |_| format!("token {jti} revoked"));
        }
        AccessCmd::RetireSigningKey { kid, force } => {
            let path = format!("/v1/admin/signing-keys/{kid}/retire{}", if force { "?force=true" } else { "" });
            let out = client.call(Method::POST, &path, None, None).await?;
            print(&args, &out, |_| format!("signing key {kid} retired; tokens it signed verify no more"));
        }
        AccessCmd::Sessions { username, after } => {
            let path = format!("/v1/users/{username}/sessions{}", page_query(&after));
            let out = client.call(Method::GET, &path, None, None).await?;
            print(&args, &out, |v| {
                let rows = v["sessions"].as_array().into_iter().flatten().map(|s| {
                    let state = if s["revoked"] == true { "ENDED" } else { "live" };
                    format!("{}  {state}  expires_ms={}", s["id"].as_str().unwrap_or("?"), s["expires_ms"])
                });
                rows.collect::<Vec<_>>().join("\n") + &more(v)
            });
        }
        AccessCmd::RevokeSessions { username, session, all: _ } => {
            let path = format!("/v1/users/{username}/sessions/revoke");
            let out = client.call(Method::POST, &path, Some(json!({ "session_id": session })), None).await?;
            print(&args, &out, |v| {
                format!("ended {} session(s) of {username}", v["revoked"].as_array().map_or(0, Vec::len))
            });
        }
    }
    Ok(())
}
