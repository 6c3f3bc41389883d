//! Authenticate → authorize → validate, in that order, on every tool route. This layer
//! runs after routing and before any extractor reads the path, the query or the body,
//! so a caller without the role learns nothing about the route's input rules.

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::extract::{self, Caller, IDEMPOTENCY_KEY_RULE, RequestCtx, is_idempotency_key};
use super::{App, authorize_route, openapi};

/// Checks the caller's identity, role, token tool list and `X-Tool-Name` against the
/// route's tool, then the `Idempotency-Key` the tool needs, and hands the verified
/// caller to the handler. Routes without a tool (sign-in, the key set) pass through.
pub(super) async fn authorize_first(State(app): State<App>, req: Request, next: Next) -> Response {
    let template = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let Some(spec) = template.and_then(|t| openapi::tool_of(req.method().as_str(), &t)) else {
        return next.run(req).await;
    };
    let (mut parts, body) = req.into_parts();
    let caller = match extract::authenticate(&parts, &app) {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    let ctx = match RequestCtx::from_request_parts(&mut parts, &app).await {
        Ok(ctx) => ctx,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = authorize_route(&caller, &ctx, spec.name) {
        return e.into_response();
    }
    if spec.keyed {
        match parts.headers.get("idempotency-key") {
            None => return missing_idempotency_key().into_response(),
            Some(key) if !key.to_str().is_ok_and(is_idempotency_key) => {
                return ApiError::validation(StatusCode::BAD_REQUEST, IDEMPOTENCY_KEY_RULE).into_response();
            }
            Some(_) => {}
        }
    }
    parts.extensions.insert(Caller(caller));
    next.run(Request::from_parts(parts, body)).await
}

/// 400 `MISSING_IDEMPOTENCY_KEY`.
pub(super) fn missing_idempotency_key() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "MISSING_IDEMPOTENCY_KEY",
        "the Idempotency-Key header is required on every mutation",
    )
}
