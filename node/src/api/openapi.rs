//! The OpenAPI 3.1 document, generated from the handlers' own types.

use axum::Json;
use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::extract::IDEMPOTENCY_KEY_PATTERN;

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
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(super::routes::routes().split_for_parts().1).unwrap_or_default();
        declare_route_rules(&mut doc);
        doc
    })
}

/// Writes into every operation what the route guard enforces for its tool, so the rule
/// has one home ([`super::guard`]) and the document says it: the `Idempotency-Key` a
/// keyed tool requires, and a JSON error body for every refusal.
fn declare_route_rules(doc: &mut Value) {
    // A body whose fields are all optional may be left out: `JsonBody` reads none as `{}`.
    let optional_bodies: Vec<String> = doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, s)| s["type"] == "object" && s["required"].as_array().is_none_or(Vec::is_empty))
        .map(|(name, _)| format!("#/components/schemas/{name}"))
        .collect();
    for (name, rule) in crate::dto::rules::cross_field_rules() {
        let all_of = &mut doc["components"]["schemas"][name]["allOf"];
        let mut rules = all_of.as_array().cloned().unwrap_or_default();
        rules.push(rule);
        *all_of = Value::Array(rules);
    }
    let Some(paths) = doc["paths"].as_object_mut() else { return };
    for op in paths.values_mut().filter_map(Value::as_object_mut).flat_map(|item| item.values_mut()) {
        let keyed = op["operationId"].as_str().and_then(actors::policy::tool).is_some_and(|t| t.keyed);
        if keyed {
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let mut params: Vec<Value> = params.into_iter().filter(|p| p["name"] != "Idempotency-Key").collect();
            params.push(json!({
                "name": "Idempotency-Key",
                "in": "header",
                "required": true,
                "description": "A retry with the same key and body replays the first answer; \
                                the same key with another body is refused (409 IDEMPOTENCY_KEY_REUSED).",
                "schema": { "type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN },
            }));
            op["parameters"] = Value::Array(params);
        }
        if op["operationId"] == "events.submit" {
            op["requestBody"]["content"]["application/json"]["schema"] = super::envelopes::intake_schema();
        }
        if let Some(body) = op.get_mut("requestBody")
            && body["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .is_some_and(|r| optional_bodies.iter().any(|o| o == r))
        {
            body["required"] = Value::Bool(false);
        }
        let responses = &mut op["responses"];
        if responses.as_object().is_some_and(|r| !r.contains_key("4XX")) {
            responses["4XX"] = json!({
                "description": "refused; nothing was written (the body's `code` says why)",
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } },
            });
        }
    }
}

/// The route of a tool, from the route table (its operation id is the tool's name):
/// the method (upper case) and the path template.
pub(crate) fn route_of(tool: &str) -> Option<(&'static str, &'static str)> {
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

/// A tool's route as the document states it, for the edges that call routes by tool
/// name (the tool catalogue, MCP): where it is, what it reads from the path and the query,
/// and its JSON body's schema with every `$ref` inlined so the schema stands alone.
pub(crate) struct Operation {
    /// Upper case, e.g. `POST`.
    pub method: &'static str,
    /// e.g. `/v1/tickets/{id}/triage`.
    pub template: &'static str,
    pub path_params: Vec<Param>,
    pub query_params: Vec<Param>,
    pub body: Option<Value>,
    /// False when every field of the body is optional (it may be left out).
    pub body_required: bool,
}

/// One path or query parameter of an [`Operation`].
pub(crate) struct Param {
    pub name: String,
    pub required: bool,
    /// Its JSON Schema, with the parameter's description when the document gives one.
    pub schema: Value,
}

/// The operation serving `tool`, read from the document once.
pub(crate) fn operation(tool: &str) -> Option<&'static Operation> {
    static OPERATIONS: std::sync::OnceLock<std::collections::HashMap<&'static str, Operation>> =
        std::sync::OnceLock::new();
    let operations = OPERATIONS.get_or_init(|| {
        actors::policy::TOOLS.iter().filter_map(|spec| Some((spec.name, operation_of(spec.name)?))).collect()
    });
    operations.get(tool)
}

fn operation_of(tool: &str) -> Option<Operation> {
    let doc = document_json();
    let (method, template) = route_of(tool)?;
    let op = &doc["paths"][template][method.to_lowercase()];
    let params = |place: &str| -> Vec<Param> {
        op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == place)
            .map(|p| {
                let mut schema = inline_refs(&p["schema"], doc, 0);
                if let (Some(fields), Some(text)) = (schema.as_object_mut(), p["description"].as_str()) {
                    fields.entry("description").or_insert_with(|| Value::from(text));
                }
                Param {
                    name: p["name"].as_str().unwrap_or_default().to_owned(),
                    required: p["required"] == true,
                    schema,
                }
            })
            .collect()
    };
    let body = &op["requestBody"]["content"]["application/json"]["schema"];
    Some(Operation {
        method,
        template,
        path_params: params("path"),
        query_params: params("query"),
        body: (!body.is_null()).then(|| inline_refs(body, doc, 0)),
        body_required: op["requestBody"]["required"] == true,
    })
}

/// Inlines `#/components/schemas/…` references so a schema stands alone.
fn inline_refs(v: &Value, doc: &Value, depth: usize) -> Value {
    match v {
        Value::Object(map) => {
            if let Some(name) =
                map.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/components/schemas/"))
                && depth < 16
            {
                return inline_refs(&doc["components"]["schemas"][name], doc, depth + 1);
            }
            Value::Object(map.iter().map(|(k, v)| (k.clone(), inline_refs(v, doc, depth))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| inline_refs(i, doc, depth)).collect()),
        other => other.clone(),
    }
}

/// The tool a route serves, by method (any case) and path template.
pub(super) fn tool_of(method: &str, template: &str) -> Option<&'static actors::policy::ToolSpec> {
    type Routes = std::collections::HashMap<(String, String), &'static actors::policy::ToolSpec>;
    static TOOLS: std::sync::OnceLock<Routes> = std::sync::OnceLock::new();
    let tools = TOOLS.get_or_init(|| {
        actors::policy::TOOLS
            .iter()
            .filter_map(|spec| route_of(spec.name).map(|(m, p)| ((m.to_owned(), p.to_owned()), spec)))
            .collect()
    });
    tools.get(&(method.to_uppercase(), template.to_owned())).copied()
}

/// `GET /v1/openapi.json`: the document, with the incident types this server's
/// templates know (they are configuration, not code).
pub(super) async fn document(axum::extract::State(app): axum::extract::State<super::App>) -> Json<Value> {
    let mut doc = document_json().clone();
    doc["components"]["schemas"]["CreateTicket"]["properties"]["incident_type"]["enum"] = json!(app.templates.names());
    Json(doc)
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

    /// utoipa names a schema after its type and keeps one per name: two types of the
    /// same name (once `Decision` for both an approval and a handoff) silently become one
    /// wrong schema. Every type that derives `ToSchema` here has a name of its own.
    #[test]
    fn no_two_schema_types_share_a_name() {
        let mut seen = std::collections::BTreeMap::<String, String>::new();
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut dirs = vec![std::path::PathBuf::from(src)];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let mut derives_schema = false;
                for line in text.lines().map(str::trim) {
                    if line.starts_with("#[derive(") {
                        derives_schema = line.contains("ToSchema");
                    }
                    let name = line.strip_prefix("pub struct ").or_else(|| line.strip_prefix("pub enum "));
                    if let Some(name) = name.filter(|_| derives_schema) {
                        let name: String = name.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                        let here = path.display().to_string();
                        if let Some(first) = seen.insert(name.clone(), here.clone()) {
                            panic!("two schema types named {name}: {first} and {here}");
                        }
                        derives_schema = false;
                    }
                }
            }
        }
        assert!(seen.len() > 100 && seen.contains_key("ApprovalDecision"), "the scan saw the DTOs: {seen:?}");
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
