//! Request extractors: who is calling, the ids and headers that travel with a
//! request, and JSON bodies parsed with clear errors and a canonical hash.

use actors::policy::{Principal, Role};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::App;
use super::error::{ApiError, REQUEST_ID};

/// The authenticated caller.
#[derive(Clone)]
pub struct Caller(pub Principal);

impl FromRequestParts<App> for Caller {
    type Rejection = ApiError;

    /// The principal the route's authorization layer already verified, or the request's
    /// own credentials on routes without a tool.
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        if let Some(Caller(principal)) = parts.extensions.get::<Caller>() {
            return Ok(Caller(principal.clone()));
        }
        authenticate(parts, app).map(Caller)
    }
}

/// Who sent the request: a bearer token, a browser's session cookie (with its CSRF
/// token on a mutation), or (with `--dev-headers` only) `X-Actor-*`.
pub(crate) fn authenticate(parts: &Parts, app: &App) -> Result<Principal, ApiError> {
    let headers = &parts.headers;
    let verify =
        |token: &str| app.auth.verify(token.trim()).map(|(p, _)| p).map_err(|e| ApiError::unauthorized(e.to_string()));
    if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::unauthorized("Authorization must be 'Bearer <token>'"))?;
        return verify(token);
    }
    if let Some(token) = crate::console::session::access_token(parts) {
        return verify(token?);
    }
    let has_dev_headers = headers.keys().any(|k| k.as_str().starts_with("x-actor-"));
    if has_dev_headers && app.dev_headers {
        return dev_principal(headers);
    }
    if has_dev_headers {
        return Err(ApiError::unauthorized(
            "X-Actor-* headers are accepted only when the server runs with --dev-headers",
        ));
    }
    Err(ApiError::unauthorized("missing Authorization: Bearer <token>"))
}

/// The caller's verified bearer token, for routes about the token itself (`/v1/me`, logout).
pub struct BearerToken(pub crate::auth::Claims);

impl FromRequestParts<App> for BearerToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))?;
        app.auth.verify(token.trim()).map(|(_, c)| BearerToken(c)).map_err(|e| ApiError::unauthorized(e.to_string()))
    }
}

impl axum::extract::OptionalFromRequestParts<App> for BearerToken {
    type Rejection = ApiError;

    /// No `Authorization` header: `None`; one that does not verify: refused.
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Option<Self>, ApiError> {
        if parts.headers.contains_key(axum::http::header::AUTHORIZATION) {
            <BearerToken as FromRequestParts<App>>::from_request_parts(parts, app).await.map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Development-only identity from `X-Actor-Id`, `X-Actor-Role`, `X-Actor-Accounts`, `X-Actor-Sites`.
fn dev_principal(headers: &HeaderMap) -> Result<Principal, ApiError> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    let list = |name: &str| get(name).unwrap_or("*").split(',').map(|s| s.trim().to_owned()).collect::<Vec<_>>();
    let sub = get("x-actor-id").ok_or_else(|| ApiError::unauthorized("X-Actor-Id is required"))?;
    let role: Role = get("x-actor-role")
        .and_then(|r| serde_json::from_value(Value::String(r.to_owned())).ok())
        .ok_or_else(|| ApiError::unauthorized("X-Actor-Role must name a known role"))?;
    Ok(Principal {
        sub: sub.to_owned(),
        role,
        accounts: list("x-actor-accounts"),
        sites: list("x-actor-sites"),
        tools: None,
        queues: vec![],
    })
}

/// What an `Idempotency-Key` may be, as the OpenAPI document says it
/// ([`IDEMPOTENCY_KEY_PATTERN`]) and [`is_idempotency_key`] checks it.
pub const IDEMPOTENCY_KEY_RULE: &str = "Idempotency-Key must be 1-128 visible ASCII characters";
/// [`IDEMPOTENCY_KEY_RULE`] as a JSON Schema pattern.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]{1,128}$";

/// Whether `key` follows [`IDEMPOTENCY_KEY_RULE`].
pub fn is_idempotency_key(key: &str) -> bool {
    (1..=128).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// Ids and headers every request carries.
pub struct RequestCtx {
    pub request_id: String,
    pub correlation_id: Option<String>,
    pub trace_id: Option<String>,
    pub idempotency_key: Option<String>,
    /// `X-Tool-Name`, which must match the route's tool when given.
    pub tool_name: Option<String>,
    /// Route template, e.g. `/v1/tickets/{id}/triage`.
    pub route: String,
    pub method: String,
    pub path: String,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestCtx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().chars().take(200).collect::<String>())
                .filter(|v| !v.is_empty())
        };
        // Its form is checked by the route's guard, after the caller is authorized.
        let idempotency_key =
            parts.headers.get("idempotency-key").and_then(|v| v.to_str().ok()).filter(|k| is_idempotency_key(k));
        Ok(RequestCtx {
            request_id: REQUEST_ID.try_with(Clone::clone).unwrap_or_default(),
            correlation_id: header("x-correlation-id"),
            trace_id: header("x-trace-id").or_else(|| header("traceparent")),
            idempotency_key: idempotency_key.map(str::to_owned),
            tool_name: header("x-tool-name"),
            route: parts.extensions.get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_default(),
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
        })
    }
}

/// A query string, refused as a JSON `400 VALIDATION_ERROR` naming the parameter.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|r| ApiError::validation(StatusCode::BAD_REQUEST, r.body_text()))
    }
}

/// Path parameters, refused as a JSON `400 VALIDATION_ERROR`.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|r| ApiError::validation(StatusCode::BAD_REQUEST, r.body_text()))
    }
}

/// A JSON object body: the typed value plus the SHA-256 of its canonical form
/// (sorted keys, no whitespace), which idempotency compares across retries.
pub struct JsonBody<T> {
    pub value: T,
    pub canonical_hash: [u8; 32],
}

/// A raw body, with an oversized one refused as `413 PAYLOAD_TOO_LARGE`.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state).await.map(RawBody).map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", "request body is too large")
            } else {
                ApiError::validation(StatusCode::BAD_REQUEST, format!("could not read the body: {r}"))
            }
        })
    }
}

impl<S: Send + Sync, T: DeserializeOwned + utoipa::PartialSchema> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        let value: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::validation(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")))?
        };
        if !value.is_object() {
            return Err(ApiError::validation(StatusCode::BAD_REQUEST, "the body must be a JSON object"));
        }
        let value = whole_numbers_as_integers(value);
        let mut canonical = Vec::with_capacity(bytes.len());
        write_canonical(&value, &mut canonical);
        let missing = missing_fields::<T>(&value);
        if !missing.is_empty() {
            let message = format!("invalid body: missing field(s) {}", missing.join(", "));
            let details = serde_json::json!({ "missing_fields": missing });
            return Err(ApiError::validation(StatusCode::UNPROCESSABLE_ENTITY, message).details(details));
        }
        let typed = T::deserialize(value)
            .map_err(|e| ApiError::validation(StatusCode::UNPROCESSABLE_ENTITY, format!("invalid body: {e}")))?;
        Ok(JsonBody { value: typed, canonical_hash: Sha256::digest(&canonical).into() })
    }
}

/// Every field `T`'s schema requires that `body` lacks, so a caller hears of all of them at
/// once (serde stops at the first).
fn missing_fields<T: utoipa::PartialSchema>(body: &Value) -> Vec<String> {
    let schema = serde_json::to_value(T::schema()).unwrap_or_default();
    let required = schema["required"].as_array().cloned().unwrap_or_default();
    required.iter().filter_map(Value::as_str).filter(|f| body.get(f).is_none()).map(str::to_owned).collect()
}

/// `2.0` read as `2`: JSON Schema calls a whole-number float an integer, and so do
/// the clients generated from the document; fields typed as floats take either.
fn whole_numbers_as_integers(v: Value) -> Value {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(whole_numbers_as_integers).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, whole_numbers_as_integers(v))).collect()),
        other => other,
    }
}

/// SHA-256 of `v`'s canonical form (see [`JsonBody`]).
pub(crate) fn canonical_sha256(v: &Value) -> [u8; 32] {
    let mut canonical = Vec::new();
    write_canonical(v, &mut canonical);
    Sha256::digest(&canonical).into()
}

/// Canonical JSON: object keys sorted, no insignificant whitespace.
fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend(serde_json::to_vec(k).unwrap_or_default());
                out.push(b':');
                write_canonical(&map[k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => out.extend(serde_json::to_vec(scalar).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn canonical_form_ignores_key_order_and_whitespace() {
        let canon = |s: &str| {
            let mut out = Vec::new();
            super::write_canonical(&serde_json::from_str(s).unwrap(), &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(canon(r#"{ "b": [1, {"d":1,"c":2}], "a": "x" }"#), r#"{"a":"x","b":[1,{"c":2,"d":1}]}"#);
        assert_ne!(canon(r#"{"a":1}"#), canon(r#"{"a":2}"#));
    }
}
