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

/// The route of a tool, from the route table (its operation id is the tool's name):
/// the method (upper case) and the path template.
pub(super) fn route_of(tool: &str) -> Option<(&'static str, &'static str)> {
    static ROUTES: std::sync::OnceLock<std::collections::HashMap<String, (String, String)>> =
        std::sync::OnceLock::new();
    let routes = ROUTES.get_or_init(|| {
        let mut routes = std::collections::HashMap::new();
        for (path, item) in document_json()["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                if let Some(id) = op["operationId"].as_str() {
                    routes.insert(id.to_owned(), (method.to_uppercase(), path.clone()));
                }
            }
        }
        routes
    });
    routes.get(tool).map(|(m, p)| (m.as_str(), p.as_str()))
}

/// `GET /v1/openapi.json`.
pub(super) async fn document() -> Json<&'static serde_json::Value> {
    Json(document_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's role × command table is the policy table joined with the route
    /// table, word for word.
    #[test]
    fn readme_role_table_matches_the_policy_and_the_routes() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        for spec in actors::policy::TOOLS {
            let roles = if spec.roles == actors::policy::ANY_ROLE {
                "any role".to_owned()
            } else {
                spec.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
            };
            let (method, path) = route_of(spec.name).unwrap();
            let row = format!("| `{}` | `{method} {path}` | {roles} |", spec.name);
            assert!(readme.contains(&row), "README.md lacks the row:\n{row}");
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_and_covers_every_tool() {
        let doc = document_json().clone();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        // The route table and the policy table join on the tool name: every tool has
        // exactly one route, and no two routes share an operation id.
        let mut ids = std::collections::BTreeMap::<String, usize>::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                *ids.entry(op["operationId"].as_str().unwrap_or("<none>").to_owned()).or_default() += 1;
            }
        }
        assert!(ids.iter().all(|(_, n)| *n == 1), "operation ids are unique: {ids:?}");
        for tool in actors::policy::TOOLS {
            assert!(route_of(tool.name).is_some(), "no route serves the tool {}", tool.name);
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
