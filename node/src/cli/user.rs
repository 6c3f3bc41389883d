//! `dispatch user …`: accounts of people and services.

use actors::policy::Role;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::table::{Table, cell};
use super::{ClientArgs, ScopeArgs, connect, parse_role, password, print, split};

#[derive(Subcommand)]
pub(super) enum UserCmd {
    /// Create a person's account (password from stdin, or generated and printed once),
    /// or with --service NAME an agent's account that gets a long-lived token.
    Create {
        /// The person's username.
        #[arg(required_unless_present = "service", conflicts_with = "service")]
        username: Option<String>,
        /// Create a service account with this name instead.
        #[arg(long)]
        service: Option<String>,
        /// The account's role.
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
    Disable {
        /// The account to disable.
        username: String,
    },
    /// Change an account's role.
    SetRole {
        /// The account.
        username: String,
        /// Its new role.
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// Set a new password (from stdin, or generated and printed once).
    ResetPassword {
        /// The account.
        username: String,
        /// Read the new password from stdin instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
}

const HEADERS: [&str; 8] = ["USERNAME", "KIND", "ROLE", "STATE", "ACCOUNTS", "SITES", "QUEUES", "TOOLS"];

/// An account as a row of [`HEADERS`].
fn row(u: &Value) -> Vec<String> {
    let state = if u["disabled"] == true { "DISABLED" } else { "enabled" };
    let mut cells: Vec<String> = [&u["username"], &u["kind"], &u["role"]].into_iter().map(cell).collect();
    cells.push(state.into());
    cells.extend([&u["accounts"], &u["sites"], &u["queues"], &u["tools"]].into_iter().map(cell));
    cells
}

/// One account, under the headers.
fn line(u: &Value) -> String {
    let mut table = Table::new(&HEADERS);
    table.row(row(u));
    table.render("")
}

pub(super) async fn user(args: ClientArgs, command: UserCmd) -> anyhow::Result<()> {
    let client = connect(&args).await?;
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
                let mut table = Table::new(&HEADERS);
                v["users"].as_array().into_iter().flatten().for_each(|u| table.row(row(u)));
                table.render("no accounts")
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
