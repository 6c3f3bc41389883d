//! The API's error body and its stable codes (DESIGN.md §7). Every refusal goes
//! through here, so each one is counted and logged the same way.

use actors::kernel::{Entity, Failure};
use actors::policy::PolicyDimension;
use actors::ticket::TicketError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

tokio::task_local! {
    /// The id of the request being served, for error bodies and log lines.
    pub static REQUEST_ID: String;
}

/// A refusal: HTTP status, stable code, message, details and the refusing policy.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
    pub policy: Option<PolicyDimension>,
}

/// `{"error": {...}}`, the body of every error response.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The fields of an error body.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[schema(value_type = Object)]
    pub details: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<crate::dto::accounts::PolicyDimension>,
    pub request_id: Option<String>,
}

impl ApiError {
    /// A refusal with a stable code and a message for people.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), details: json!({}), policy: None }
    }

    /// Adds machine-readable details (missing lists, states).
    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// Names the policy dimension that refused.
    pub fn policy(mut self, policy: PolicyDimension) -> Self {
        self.policy = Some(policy);
        self
    }

    /// 401: no valid identity.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    /// 400 (unreadable) or 422 (readable but invalid) input.
    pub fn validation(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, "VALIDATION_ERROR", message)
    }

    /// 404 for anything but a ticket.
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", format!("{what} not found"))
    }

    /// 404 `TICKET_NOT_FOUND`.
    pub fn ticket_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "TICKET_NOT_FOUND", "ticket not found")
    }

    /// 400 `INVALID_TICKET_ID`, echoing (a bounded prefix of) what was sent.
    pub fn invalid_ticket_id(raw: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_TICKET_ID", "ticket id must be a UUID")
            .details(json!({ "ticket_id": raw.chars().take(64).collect::<String>() }))
    }

    /// 500; the cause is logged, not sent.
    pub fn internal(context: &str, e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, context, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", format!("{context} failed"))
    }

    /// 503: retry later (with the same Idempotency-Key).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message)
    }
}

impl From<TicketError> for ApiError {
    fn from(e: TicketError) -> Self {
        let conflict = StatusCode::CONFLICT;
        match e {
            TicketError::NotFound => ApiError::ticket_not_found(),
            TicketError::Denied(d) => {
                let code = match d.dimension {
                    PolicyDimension::Tool => "TOOL_NOT_ALLOWED",
                    PolicyDimension::Scope => "SCOPE_FORBIDDEN",
                    _ => "FORBIDDEN",
                };
                ApiError::new(StatusCode::FORBIDDEN, code, d.message).policy(d.dimension)
            }
            TicketError::Validation { message, field } => {
                ApiError::validation(StatusCode::UNPROCESSABLE_ENTITY, message).details(json!({ "field": field }))
            }
            TicketError::InvalidTransition { from, to } => {
                ApiError::new(conflict, "INVALID_STATE_TRANSITION", format!("cannot go from {from} to {to}"))
                    .details(json!({ "from_state": from, "to_state": to }))
                    .policy(PolicyDimension::State)
            }
            TicketError::CloseoutIncomplete { missing_evidence_keys, missing_checklist_items } => ApiError::new(
                conflict,
                "CLOSEOUT_REQUIREMENTS_INCOMPLETE",
                "closeout requirements are incomplete",
            )
            .details(json!({ "missing_evidence_keys": missing_evidence_keys, "missing_checklist_items": missing_checklist_items }))
            .policy(PolicyDimension::Evidence),
            TicketError::MissingSignature => ApiError::new(
                conflict,
                "MISSING_SIGNATURE_CONFIRMATION",
                "signature evidence or an explicit no_signature_reason is required",
            )
            .policy(PolicyDimension::Evidence),
            TicketError::InvalidEvidenceReference { uris } => {
                ApiError::new(conflict, "INVALID_EVIDENCE_REFERENCE", "evidence references do not resolve to stored blobs")
                    .details(json!({ "invalid_uris": uris }))
                    .policy(PolicyDimension::Evidence)
            }
        }
    }
}

impl From<actors::lane::freeze::FreezeError> for ApiError {
    fn from(e: actors::lane::freeze::FreezeError) -> Self {
        ApiError::validation(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
    }
}

/// Every entity's command failures map the same way; its refusals map by its own `From`.
impl<E: Entity> From<Failure<E>> for ApiError
where
    ApiError: From<E::Error>,
{
    fn from(e: Failure<E>) -> Self {
        match e {
            Failure::Rejected(t) => t.into(),
            Failure::KeyReused => ApiError::new(
                StatusCode::CONFLICT,
                "IDEMPOTENCY_KEY_REUSED",
                "this Idempotency-Key was already used with a different request",
            ),
            Failure::Unavailable(m) => ApiError::unavailable(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = REQUEST_ID.try_with(Clone::clone).ok();
        metrics::counter!("dispatch_api_errors_total", "code" => self.code).increment(1);
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, message = %self.message, request_id, "request failed");
        } else {
            tracing::info!(code = self.code, message = %self.message, request_id, "request refused");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                details: self.details,
                policy: self.policy.map(Into::into),
                request_id,
            },
        };
        (self.status, axum::Json(body)).into_response()
    }
}
