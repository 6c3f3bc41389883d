//! The admin's screen: people and service accounts (create, role, password, disable,
//! sessions), join tokens for worker hosts, and the token signing keys.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::pages::{Action, ActionForm, Chrome};
use super::{Console, Viewer};
use crate::dto::accounts::UserView;
use crate::dto::nodes::JoinToken;
use crate::http::path_segment;

#[derive(Deserialize)]
struct Users {
    users: Vec<UserView>,
}

#[derive(Deserialize)]
struct JoinTokens {
    tokens: Vec<JoinToken>,
}

#[derive(Deserialize)]
struct KeySet {
    keys: Vec<Key>,
}

#[derive(Deserialize)]
struct Key {
    kid: String,
}

/// A form for `tool` posting to `path`, its ids prefixed by `scope`.
fn form(tool: &str, path: String, scope: &str) -> ActionForm {
    let action = Action { tool: tool.to_owned(), method: "POST".into(), path, enabled: true, disabled_reason: None };
    ActionForm::of(action, scope, &[])
}

/// A person's or service's row and what an admin can do to it.
pub struct UserRow {
    pub user: UserView,
    pub controls: Vec<ActionForm>,
}

#[derive(Template)]
#[template(path = "console/admin.html")]
struct AdminPage {
    chrome: Chrome,
    users: Vec<UserRow>,
    new_user: ActionForm,
    tokens: Vec<(JoinToken, Option<ActionForm>)>,
    new_token: ActionForm,
    keys: Vec<(String, ActionForm)>,
    rotate: ActionForm,
}

/// `GET /console/admin`: the first 1,000 accounts and join tokens (more than a small
/// cluster has), and every signing key.
pub async fn page(State(console): State<Console>, viewer: Viewer) -> Result<Response, Response> {
    let (users, tokens, keys) = tokio::try_join!(
        console.fetch::<Users>(&viewer, "/v1/users?limit=1000"),
        console.fetch::<JoinTokens>(&viewer, "/v1/join-tokens?limit=1000"),
        console.fetch::<KeySet>(&viewer, "/v1/auth/keys"),
    )?;
    let users = users
        .users
        .into_iter()
        .map(|user| {
            let u = path_segment(&user.account.username);
            let scope = format!("u-{u}");
            let mut controls = vec![
                form("user.set_role", format!("/v1/users/{u}/role"), &scope),
                form("user.reset_password", format!("/v1/users/{u}/password"), &scope),
                form("user.sessions.revoke", format!("/v1/users/{u}/sessions/revoke"), &scope),
            ];
            if !user.disabled {
                controls.push(form("user.disable", format!("/v1/users/{u}/disable"), &scope));
            }
            UserRow { user, controls }
        })
        .collect();
    let tokens = tokens
        .tokens
        .into_iter()
        .map(|t| {
            let revoke = (!t.revoked)
                .then(|| form("join_token.revoke", format!("/v1/join-tokens/{}/revoke", path_segment(&t.id)), "j"));
            (t, revoke)
        })
        .collect();
    let keys = keys
        .keys
        .into_iter()
        .map(|k| {
            let retire = form(
                "admin.signing_keys.retire",
                format!("/v1/admin/signing-keys/{}/retire", path_segment(&k.kid)),
                "k",
            );
            (k.kid, retire)
        })
        .collect();
    let page = AdminPage {
        chrome: Chrome::of(&viewer, "Admin", "/console/admin"),
        users,
        new_user: form("user.create", "/v1/users".into(), "new-user"),
        tokens,
        new_token: form("join_token.create", "/v1/join-tokens".into(), "new-token"),
        keys,
        rotate: form("admin.signing_keys.rotate", "/v1/admin/signing-keys".into(), "rotate"),
    };
    Ok(viewer.page(page.render()))
}
