//! The OpenAPI 3.1 document, generated from the handlers' own types.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "dispatch", description = "Control plane for work that moves between agents, people and machines."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub(super) struct ApiDoc;

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
    DOC.get_or_init(|| serde_json::to_value(super::routes::routes().split_for_parts().1).unwrap_or_default())
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
        let doc = document_json().clone();
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
