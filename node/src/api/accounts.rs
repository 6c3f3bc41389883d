//! Sign-in, accounts, the caller's identity and the tool catalogue.

use std::net::{IpAddr, SocketAddr};

use super::extract::Path;
use actors::policy;
use actors::user::{self, Account, AccountKind, User, UserCommand};
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{BearerToken, Caller, JsonBody, RequestCtx};
use super::{App, authorize_route};
use crate::api::identity::{self, TokenPair};
use crate::auth::PublicKey;
use crate::dto::accounts as dto;

/// Body of `POST /v1/auth/login`.
#[derive(Deserialize, ToSchema)]
pub struct Login {
    pub username: String,
    pub password: String,
}

#[utoipa::path(operation_id = "auth.login", post, path = "/v1/auth/login", tag = "auth", request_body = Login, security(()),
    responses((status = 200, body = TokenPair), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
/// Exchange a username and password for a short-lived access token and a refresh token.
pub(super) async fn login(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    body: JsonBody<Login>,
) -> Result<Json<TokenPair>, ApiError> {
    let client = client_address(&app.edge.trusted_proxies, peer.ip(), &headers);
    identity::login(&app, &body.value.username, &body.value.password, &client.to_string()).await.map(Json)
}

/// The client's address: the peer's, unless the peer is a trusted reverse proxy, in
/// which case the nearest `X-Forwarded-For` entry that is not itself a trusted proxy.
/// Anyone else's `X-Forwarded-For` is ignored (it is just a header).
pub(crate) fn client_address(trusted: &[ipnet::IpNet], peer: IpAddr, headers: &axum::http::HeaderMap) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
    let hops: Vec<IpAddr> = forwarded.flat_map(|v| v.split(',')).filter_map(|h| h.trim().parse().ok()).collect();
    hops.into_iter().rev().find(|ip| !is_trusted(ip)).unwrap_or(peer)
}

/// Body of `POST /v1/auth/refresh` (and optionally of logout).
#[derive(Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[utoipa::path(operation_id = "auth.refresh", post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest, security(()),
    responses((status = 200, body = TokenPair), (status = 401, body = ErrorBody)))]
/// Rotate a refresh token. Each one works once; reusing one revokes the session.
pub(super) async fn refresh(
    State(app): State<App>,
    body: JsonBody<RefreshRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    identity::refresh(&app, &body.value.refresh_token).await.map(Json)
}

/// Optional body of `POST /v1/auth/logout`.
#[derive(Deserialize, ToSchema, Default)]
pub struct Logout {
    #[serde(default)]
    pub refresh_token: Option<String>,
}

#[utoipa::path(operation_id = "auth.logout", post, path = "/v1/auth/logout", tag = "auth", request_body = Logout,
    responses((status = 204), (status = 401, body = ErrorBody)))]
/// End the session of the bearer token (or of the given refresh token) and revoke the bearer token.
pub(super) async fn logout(
    State(app): State<App>,
    bearer: Option<BearerToken>,
    body: JsonBody<Logout>,
) -> Result<StatusCode, ApiError> {
    identity::logout(&app, bearer.as_ref().map(|b| &b.0), body.value.refresh_token.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The published token verification keys.
#[derive(Serialize, ToSchema)]
pub struct KeySet {
    pub keys: Vec<PublicKey>,
}

#[utoipa::path(operation_id = "auth.keys", get, path = "/v1/auth/keys", tag = "auth", security(()), responses((status = 200, body = KeySet)))]
/// The Ed25519 keys tokens are verified with, by `kid` (newest last).
pub(super) async fn keys(State(app): State<App>) -> Json<KeySet> {
    Json(KeySet { keys: app.auth.public_keys() })
}

/// Who the caller is, and about its token.
#[derive(Serialize, ToSchema)]
pub struct Me {
    pub principal: dto::Principal,
    pub jti: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub session: Option<String>,
}

#[utoipa::path(operation_id = "auth.me", get, path = "/v1/me", tag = "auth", responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
/// Who the server thinks the caller is.
pub(super) async fn me(
    Caller(caller): Caller,
    ctx: RequestCtx,
    BearerToken(claims): BearerToken,
) -> Result<Json<Me>, ApiError> {
    authorize_route(&caller, &ctx, "auth.me")?;
    Ok(Json(Me {
        principal: caller.into(),
        jti: claims.jti,
        issued_at: claims.iat,
        expires_at: claims.exp,
        session: claims.sid,
    }))
}

/// One tool of the catalogue.
#[derive(Serialize, ToSchema)]
pub struct ToolEntry {
    pub name: &'static str,
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub mutating: bool,
    /// Whether the call must carry an `Idempotency-Key` (a retry with the same key and
    /// body replays the first answer).
    pub keyed: bool,
    /// Ticket states the tool may be used from (empty: not state-bound).
    pub allowed_states: Vec<crate::dto::tickets::TicketState>,
    /// JSON Schema of the request body, when it takes one.
    #[schema(value_type = Option<Object>)]
    pub body_schema: Option<Value>,
}

/// The tools a caller may use.
#[derive(Serialize, ToSchema)]
pub struct Catalogue {
    pub tools: Vec<ToolEntry>,
}

#[utoipa::path(operation_id = "tools.list", get, path = "/v1/tools", tag = "auth", responses((status = 200, body = Catalogue), (status = 401, body = ErrorBody)))]
/// The closed catalogue of tools this caller may use, from the policy table the
/// server enforces and the OpenAPI schemas of their bodies.
pub(super) async fn tools(Caller(caller): Caller, ctx: RequestCtx) -> Result<Json<Catalogue>, ApiError> {
    authorize_route(&caller, &ctx, "tools.list")?;
    let tools = policy::TOOLS
        .iter()
        .filter(|spec| policy::authorize(&caller, spec, None).is_ok())
        .filter_map(|spec| {
            let op = super::openapi::operation(spec.name)?;
            Some(ToolEntry {
                name: spec.name,
                method: op.method,
                path: op.template,
                summary: spec.summary,
                mutating: spec.mutating,
                keyed: spec.keyed,
                allowed_states: spec.from_states.iter().map(|s| (*s).into()).collect(),
                body_schema: op.body.clone(),
            })
        })
        .collect();
    Ok(Json(Catalogue { tools }))
}

/// What the API shows of a user.
fn view(u: &User) -> dto::UserView {
    user::UserView::from(u).into()
}

/// Body of `POST /v1/users`.
#[derive(Deserialize, ToSchema)]
pub struct CreateUser {
    #[schema(schema_with = crate::dto::rules::username)]
    pub username: String,
    pub role: dto::Role,
    /// Default `["*"]`.
    #[serde(default)]
    #[schema(schema_with = crate::dto::rules::optional_non_empty_list)]
    pub accounts: Option<Vec<String>>,
    /// Default `["*"]`.
    #[serde(default)]
    #[schema(schema_with = crate::dto::rules::optional_non_empty_list)]
    pub sites: Option<Vec<String>>,
    #[serde(default)]
    pub queues: Vec<String>,
    /// For a person.
    #[serde(default)]
    #[schema(schema_with = crate::dto::rules::optional_password)]
    pub password: Option<String>,
    /// A service account (an agent): gets a long-lived token instead of a password.
    #[serde(default)]
    pub service: bool,
    /// For a service account: the only tools it may use.
    #[serde(default)]
    #[schema(schema_with = crate::dto::rules::tool_names)]
    pub tools: Option<Vec<String>>,
}

/// A created account; a service account's token is shown here once.
#[derive(Serialize, ToSchema)]
pub struct CreatedUser {
    pub user: dto::UserView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// The shortest password, in characters.
pub(crate) const MIN_PASSWORD: usize = 12;

async fn hash(password: String) -> Result<String, ApiError> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(ApiError::validation(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("passwords have at least {MIN_PASSWORD} characters"),
        ));
    }
    tokio::task::spawn_blocking(move || identity::hash_password(&password))
        .await
        .map_err(|e| ApiError::internal("hashing", e))?
}

#[utoipa::path(operation_id = "user.create", post, path = "/v1/users", tag = "users", request_body = CreateUser,
    responses((status = 201, body = CreatedUser), (status = "4XX", body = ErrorBody)))]
/// Create an account (admin only).
pub(super) async fn create_user(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    body: JsonBody<CreateUser>,
) -> Result<(StatusCode, Json<CreatedUser>), ApiError> {
    authorize_route(&caller, &ctx, "user.create")?;
    let b = body.value;
    let password_hash = match (b.service, b.password) {
        (false, Some(p)) => Some(hash(p).await?),
        (true, Some(_)) => {
            return Err(ApiError::validation(StatusCode::UNPROCESSABLE_ENTITY, "service accounts have no password"));
        }
        (_, None) => None,
    };
    let account = Account {
        username: b.username.clone(),
        kind: if b.service { AccountKind::Service } else { AccountKind::Human },
        role: b.role.into(),
        accounts: b.accounts.unwrap_or_else(|| vec!["*".into()]),
        sites: b.sites.unwrap_or_else(|| vec!["*".into()]),
        queues: b.queues,
        tools: b.tools,
    };
    let created =
        identity::user_command(&app, &caller, &b.username, UserCommand::Create { account, password_hash }).await?;
    let token = match created.account.kind {
        AccountKind::Service => Some(crate::api::tokens::service_token(&app, &caller, &created).await?),
        AccountKind::Human => None,
    };
    tracing::info!(username = %created.account.username, role = created.account.role.as_str(), by = %caller.sub, "account created");
    Ok((StatusCode::CREATED, Json(CreatedUser { user: view(&created), token })))
}

/// Every account.
#[derive(Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<dto::UserView>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

#[utoipa::path(operation_id = "user.list", get, path = "/v1/users", tag = "users", params(super::paging::Page),
    responses((status = 200, body = UserList), (status = "4XX", body = ErrorBody)))]
/// List accounts (admin only).
pub(super) async fn list_users(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    super::extract::Query(page): super::extract::Query<super::paging::Page>,
) -> Result<Json<UserList>, ApiError> {
    authorize_route(&caller, &ctx, "user.list")?;
    let users = user::list(&app.log).map_err(|e| ApiError::internal("listing users", e))?;
    let (users, next_cursor) = page.slice(users, |u| u.account.username.clone());
    Ok(Json(UserList { users: users.iter().map(view).collect(), next_cursor }))
}

#[utoipa::path(operation_id = "user.disable", post, path = "/v1/users/{username}/disable", tag = "users", params(("username" = String, Path)),
    responses((status = 200, body = dto::UserView), (status = "4XX", body = ErrorBody)))]
/// Disable an account; its tokens stop working at once.
pub(super) async fn disable_user(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(username): Path<String>,
) -> Result<Json<dto::UserView>, ApiError> {
    authorize_route(&caller, &ctx, "user.disable")?;
    let u = identity::user_command(&app, &caller, &username, UserCommand::Disable).await?;
    Ok(Json(view(&u)))
}

/// Body of `POST /v1/users/{username}/role`.
#[derive(Deserialize, ToSchema)]
pub struct SetRole {
    pub role: dto::Role,
}

#[utoipa::path(operation_id = "user.set_role", post, path = "/v1/users/{username}/role", tag = "users", params(("username" = String, Path)), request_body = SetRole,
    responses((status = 200, body = dto::UserView), (status = "4XX", body = ErrorBody)))]
/// Change an account's role; tokens with the old role stop working.
pub(super) async fn set_role(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(username): Path<String>,
    body: JsonBody<SetRole>,
) -> Result<Json<dto::UserView>, ApiError> {
    authorize_route(&caller, &ctx, "user.set_role")?;
    let u = identity::user_command(&app, &caller, &username, UserCommand::SetRole(body.value.role.into())).await?;
    Ok(Json(view(&u)))
}

/// Body of `POST /v1/users/{username}/password`.
#[derive(Deserialize, ToSchema)]
pub struct ResetPassword {
    #[schema(schema_with = crate::dto::rules::password)]
    pub password: String,
}

#[utoipa::path(operation_id = "user.reset_password", post, path = "/v1/users/{username}/password", tag = "users", params(("username" = String, Path)), request_body = ResetPassword,
    responses((status = 200, body = dto::UserView), (status = "4XX", body = ErrorBody)))]
/// Set a new password; the account's existing tokens stop working.
pub(super) async fn reset_password(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
    Path(username): Path<String>,
    body: JsonBody<ResetPassword>,
) -> Result<Json<dto::UserView>, ApiError> {
    authorize_route(&caller, &ctx, "user.reset_password")?;
    let password_hash = hash(body.value.password).await?;
    let u = identity::user_command(&app, &caller, &username, UserCommand::ResetPassword(password_hash)).await?;
    Ok(Json(view(&u)))
}

/// The key added by a rotation.
#[derive(Serialize, ToSchema)]
pub struct RotatedKey {
    pub kid: String,
}

#[utoipa::path(operation_id = "admin.signing_keys.rotate", post, path = "/v1/admin/signing-keys", tag = "admin", responses((status = 201, body = RotatedKey), (status = "4XX", body = ErrorBody)))]
/// Start signing with a new key; tokens signed by earlier keys stay valid until they expire.
pub(super) async fn rotate_signing_key(
    State(app): State<App>,
    Caller(caller): Caller,
    ctx: RequestCtx,
) -> Result<(StatusCode, Json<RotatedKey>), ApiError> {
    authorize_route(&caller, &ctx, "admin.signing_keys.rotate")?;
    let der = crate::auth::generate_key().map_err(|e| ApiError::internal("generating a key", e))?;
    let name = format!("{:06}", app.auth.rotated_key_count() + 1);
    let outgoing = app.auth.current_kid();
    let payload = serde_json::json!({ "name": name }).to_string().into_bytes();
    identity::append_to(&app, "auth/signing-keys", || {
        let event = identity::event(&app, &caller, "admin.signing_keys.rotate", "signing_key.added", payload.clone());
        let key = actors::storage::IndexOp::Put {
            index: crate::auth::ROTATED_KEYS_INDEX.into(),
            key: name.clone(),
            value: der.clone(),
        };
        (vec![event], vec![key, crate::api::tokens::superseded(&outgoing)])
    })
    .await?;
    let kid = app.auth.add_key(&der).map_err(|e| ApiError::internal("rotation", e))?;
    tracing::info!(kid, by = %caller.sub, "signing key rotated");
    Ok((StatusCode::CREATED, Json(RotatedKey { kid })))
}

#[cfg(test)]
mod client_address_tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9, 198.51.100.7, 10.1.1.1".parse().unwrap());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cases = [
            ("a trusted proxy: the nearest untrusted hop", ip("10.0.0.2"), &trusted[..], ip("198.51.100.7")),
            ("an untrusted peer's header is ignored", ip("192.0.2.1"), &trusted[..], ip("192.0.2.1")),
            ("no trusted proxies configured", ip("10.0.0.2"), &[][..], ip("10.0.0.2")),
        ];
        for (name, peer, trusted, want) in cases {
            assert_eq!(client_address(trusted, peer, &headers), want, "{name}");
        }
        assert_eq!(client_address(&trusted, ip("10.0.0.2"), &axum::http::HeaderMap::new()), ip("10.0.0.2"));
    }
}
