//! `dispatch admin tokens|revoke-token|retire-signing-key` and
//! `dispatch user sessions|revoke-sessions`: what an admin sees and ends.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::table::{Table, at_ms, at_secs, cell};
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
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                let mut table = Table::new(&["JTI", "SUB", "ROLE", "STATE", "EXPIRES", "MINTED BY", "KID"]);
                for t in v["tokens"].as_array().into_iter().flatten() {
                    let expires = t["expires_at"].as_i64().unwrap_or(0);
                    let state = match () {
                        _ if t["revoked"] == true => "REVOKED",
                        _ if expires <= now => "EXPIRED",
                        _ => "live",
                    };
                    let (jti, sub, role) = (cell(&t["jti"]), cell(&t["sub"]), cell(&t["role"]));
                    table.row(vec![
                        jti,
                        sub,
                        role,
                        state.into(),
                        at_secs(expires),
                        cell(&t["minted_by"]),
                        cell(&t["kid"]),
                    ]);
                }
                table.render("no minted tokens") + &more(v)
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
                let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
                let mut table = Table::new(&["SESSION", "STATE", "EXPIRES"]);
                for s in v["sessions"].as_array().into_iter().flatten() {
                    let expires = s["expires_ms"].as_i64().unwrap_or(0);
                    let state = match () {
                        _ if s["revoked"] == true => "ENDED",
                        _ if expires <= now_ms => "EXPIRED",
                        _ => "live",
                    };
                    table.row(vec![cell(&s["id"]), state.into(), at_ms(expires)]);
                }
                table.render(&format!("{username} has no sessions")) + &more(v)
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
