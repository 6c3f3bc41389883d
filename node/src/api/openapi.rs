//! The OpenAPI 3.1 document, generated from the handlers' own types.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{access, accounts, admin, blobs, dlq, envelopes, handoffs, insights, lanes, nodes, tasks, tickets, ux};

#[derive(OpenApi)]
#[openapi(
    info(title = "dispatch", description = "Control plane for work that moves between agents, people and machines."),
    paths(
        tickets::create, tickets::triage, tickets::propose_schedule, tickets::confirm_schedule, tickets::dispatch, tickets::confirm_bypass,
        tickets::check_in, tickets::request_change, tickets::decide_approval, tickets::add_evidence, tickets::complete,
        tickets::verify, tickets::generate_invoice, tickets::close, tickets::cancel, tickets::get, tickets::list,
        tickets::timeline, tickets::evidence, tickets::incident_templates, blobs::upload, ux::cockpit, ux::job_packet,
        admin::mint_token, access::list_tokens, access::revoke_token, access::list_sessions,
        access::revoke_sessions, access::retire_signing_key, accounts::rotate_signing_key, accounts::login, accounts::refresh, accounts::logout,
        accounts::keys, accounts::me, accounts::tools, accounts::create_user, accounts::list_users,
        accounts::disable_user, accounts::set_role, accounts::reset_password, nodes::create_token,
        nodes::list_tokens, nodes::revoke_token, nodes::list, nodes::get, nodes::drain, nodes::remove,
        nodes::set_config, tasks::create, tasks::list, tasks::get, tasks::result, tasks::cancel,
        lanes::create, lanes::get, lanes::timeline, lanes::checkpoint, lanes::request_handoff, handoffs::wait_decision,
        lanes::escalate, lanes::assign_owner, lanes::reassign_owner, lanes::owner, lanes::unblock, lanes::override_close,
        envelopes::events, handoffs::queue, handoffs::handoff, handoffs::decide, lanes::freeze, lanes::unfreeze, dlq::dlq,
        dlq::dlq_replay, insights::insights,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// The document as JSON, built once: it only changes with the binary.
pub(super) fn document_json() -> &'static serde_json::Value {
    static DOC: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    DOC.get_or_init(|| serde_json::to_value(ApiDoc::openapi()).unwrap_or_default())
}

/// `GET /v1/openapi.json`.
pub(super) async fn document() -> Json<&'static serde_json::Value> {
    Json(document_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_and_covers_every_tool() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        for tool in actors::policy::TOOLS {
            let op = &doc["paths"][tool.path][tool.method.to_lowercase()];
            assert!(
                op.is_object(),
                "{} {} ({}) is missing from the OpenAPI document",
                tool.method,
                tool.path,
                tool.name
            );
        }
        // Every path parameter is a `{name}` of its route, and every `{name}` is declared.
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                let in_path: Vec<&str> =
                    params.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect();
                for name in &in_path {
                    assert!(
                        path.contains(&format!("{{{name}}}")),
                        "{method} {path}: path parameter {name} is not in the route"
                    );
                }
                for segment in path.split('/').filter(|s| s.starts_with('{')) {
                    assert!(
                        in_path.contains(&segment.trim_matches(['{', '}'])),
                        "{method} {path}: {segment} is undeclared"
                    );
                }
            }
        }
        let create = &doc["paths"]["/v1/tickets"]["post"];
        assert!(create["requestBody"]["content"]["application/json"]["schema"].is_object());
        assert!(doc["components"]["schemas"]["Ticket"]["properties"]["state"].is_object());
    }
}
