//! Logins and contexts: `dispatch login` stores a login as a named context (kubectl's
//! word) and makes it current; `dispatch context list|use|remove` manage them;
//! `dispatch logout` ends one. Client commands take their token from the context named
//! by `--context`, else the current one, when it is for the server they talk to.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::{ClientArgs, print, terminal};
use crate::client::Client;
use crate::credentials::{Contexts, Stored};

#[derive(Subcommand)]
pub(super) enum ContextCmd {
    /// The stored contexts; the current one is marked with *.
    List,
    /// Make a context current: client commands use it unless --context names another.
    Use {
        /// The context's name (see `dispatch context list`).
        name: String,
    },
    /// Forget a context's tokens here (the server session stays; `dispatch logout` ends it).
    Remove {
        /// The context's name.
        name: String,
    },
}

/// `dispatch context …`.
pub(super) fn context(args: &ClientArgs, command: ContextCmd) -> anyhow::Result<()> {
    let mut all = Contexts::load();
    match command {
        ContextCmd::List => {
            let rows: Vec<Value> = all
                .contexts
                .iter()
                .map(|(name, s)| {
                    json!({ "name": name, "server": s.server, "current": all.current.as_deref() == Some(name.as_str()) })
                })
                .collect();
            print(args, &json!({ "contexts": rows }), |v| {
                let rows = v["contexts"].as_array().cloned().unwrap_or_default();
                if rows.is_empty() {
                    return "no contexts yet: `dispatch login --server URL --username NAME` makes one".into();
                }
                let mut out = format!("{:<2}{:<32} {}", "", "NAME", "SERVER");
                for r in rows {
                    let mark = if r["current"] == true { "*" } else { "" };
                    let (name, server) = (r["name"].as_str().unwrap_or(""), r["server"].as_str().unwrap_or(""));
                    out.push_str(&format!("\n{mark:<2}{name:<32} {server}"));
                }
                out
            });
        }
        ContextCmd::Use { name } => {
            anyhow::ensure!(all.contexts.contains_key(&name), "no context {name:?} (see `dispatch context list`)");
            all.current = Some(name.clone());
            all.save()?;
            println!("now using context {name}");
        }
        ContextCmd::Remove { name } => {
            anyhow::ensure!(all.contexts.remove(&name).is_some(), "no context {name:?} (see `dispatch context list`)");
            if all.current.as_deref() == Some(name.as_str()) {
                all.current = None;
            }
            all.save()?;
            println!("removed context {name}");
        }
    }
    Ok(())
}

/// `dispatch login`: signs in and stores the tokens as context `--context` (default
/// `USER@HOST:PORT`), which becomes current; other contexts stay as they were.
pub(super) async fn login(args: &ClientArgs, username: &str) -> anyhow::Result<()> {
    let pw = terminal::login_password(username, || Ok(super::password(true)?.0))?;
    let api = args.client(None);
    let body = json!({ "username": username, "password": pw });
    let out = api.call(Method::POST, "/v1/auth/login", Some(body), None).await?;
    let host = args.server.split("://").nth(1).unwrap_or(&args.server).trim_end_matches('/');
    let name = args.context.clone().unwrap_or_else(|| format!("{username}@{host}"));
    let path = store(&name, args, &out, true)?;
    println!("logged in as {username}; context {name} is now current (tokens in {}, mode 0600)", path.display());
    Ok(())
}

/// Stores a token pair (a login's or a refresh's answer) as context `name`.
pub(super) fn store(
    name: &str,
    args: &ClientArgs,
    pair: &Value,
    make_current: bool,
) -> anyhow::Result<std::path::PathBuf> {
    let field =
        |k: &str| pair[k].as_str().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("the server's answer has no {k}"));
    let stored = Stored {
        server: args.server.clone(),
        ca_cert: args.ca_cert.as_ref().map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())),
        access_token: field("access_token")?,
        refresh_token: field("refresh_token")?,
        access_expires_at: time::OffsetDateTime::now_utc().unix_timestamp() + pair["expires_in"].as_i64().unwrap_or(0),
    };
    let mut all = Contexts::load();
    all.contexts.insert(name.to_owned(), stored);
    if make_current || all.current.is_none() {
        all.current = Some(name.to_owned());
    }
    all.save()
}

/// `dispatch logout`: ends the session of the context named (else the current one) on
/// its server and forgets it here.
pub(super) async fn logout(args: &ClientArgs) -> anyhow::Result<()> {
    let mut all = Contexts::load();
    let Some((name, stored)) = all.get(args.context.as_deref()).map(|(n, s)| (n.to_owned(), s.clone())) else {
        println!("not logged in (no stored login at {})", super::credentials_place());
        return Ok(());
    };
    let api = Client::new(&stored.server, Some(stored.access_token.clone()), stored.ca_cert.as_deref());
    let body = json!({ "refresh_token": stored.refresh_token });
    if let Err(e) = api.call(Method::POST, "/v1/auth/logout", Some(body), None).await {
        eprintln!("warning: the server did not end the session ({e}); forgetting the tokens anyway");
    }
    all.contexts.remove(&name);
    if all.current.as_deref() == Some(name.as_str()) {
        all.current = None;
    }
    let path = all.save()?;
    println!("logged out of {} (context {name} removed from {})", stored.server, path.display());
    Ok(())
}
