//! Read-only resources: a ticket, its timeline and its job packet; a lane and its
//! current handoff; the incident templates. Each read is the route's `GET`, under the
//! caller's own role and scope.

use actors::policy::{self, Principal};
use axum::Router;
use rmcp::ErrorData as McpError;
use rmcp::model::{ErrorCode, ReadResourceResult, Resource, ResourceContents, ResourceTemplate};
use serde_json::json;

use super::forward::{self, Call, Origin};

/// A family of resources: its URI template, what it is, and the tool whose route reads it.
struct Family {
    uri_template: &'static str,
    name: &'static str,
    description: &'static str,
    tool: &'static str,
}

const TEMPLATES_URI: &str = "dispatch://incident-templates";

const FAMILIES: &[Family] = &[
    Family {
        uri_template: "dispatch://tickets/{id}",
        name: "ticket",
        description: "A ticket: state, site, scope, assignee",
        tool: "ticket.get",
    },
    Family {
        uri_template: "dispatch://tickets/{id}/timeline",
        name: "ticket timeline",
        description: "A ticket's hash-chained audit timeline",
        tool: "ticket.timeline",
    },
    Family {
        uri_template: "dispatch://tickets/{id}/job-packet",
        name: "job packet",
        description: "A ticket's technician job packet: site, scope, evidence, closeout gate",
        tool: "tech.job_packet",
    },
    Family {
        uri_template: "dispatch://lanes/{id}",
        name: "lane",
        description: "An agent lane: status, checkpoints, its handoff",
        tool: "lane.get",
    },
    Family {
        uri_template: "dispatch://lanes/{id}/handoff",
        name: "current handoff",
        description: "A lane's latest handoff and its decision, if any",
        tool: "handoff.await_decision",
    },
];

/// Whether `caller`'s role and token may use `tool`.
fn may(caller: &Principal, tool: &str) -> bool {
    policy::tool(tool).is_some_and(|spec| policy::authorize(caller, spec, None).is_ok())
}

/// The resources with a fixed URI that `caller` may read.
pub(super) fn fixed(caller: &Principal) -> Vec<Resource> {
    let templates = Resource::new(TEMPLATES_URI, "incident templates")
        .with_description("Closeout templates by incident type: required evidence and checklist")
        .with_mime_type("application/json");
    if may(caller, "incident_templates.list") { vec![templates] } else { vec![] }
}

/// The resource templates `caller` may read.
pub(super) fn templates(caller: &Principal) -> Vec<ResourceTemplate> {
    FAMILIES
        .iter()
        .filter(|f| may(caller, f.tool))
        .map(|f| {
            ResourceTemplate::new(f.uri_template, f.name)
                .with_description(f.description)
                .with_mime_type("application/json")
        })
        .collect()
}

/// Reads `uri` through its route; refusals are JSON-RPC errors carrying the API's code.
pub(super) async fn read(api: &Router, origin: &Origin, uri: &str) -> Result<ReadResourceResult, McpError> {
    let (tool, path) = route_of(uri).ok_or_else(|| {
        McpError::resource_not_found(format!("no resource {uri:?}; see resources/templates/list"), None)
    })?;
    let call = Call { tool, method: "GET", uri: path, body: None, idempotency_key: None };
    let answer = forward::send(api, origin, call).await;
    if (200..300).contains(&answer.status) {
        let text = answer.body.to_string();
        return Ok(ReadResourceResult::new(vec![ResourceContents::text(text, uri).with_mime_type("application/json")]));
    }
    let error = &answer.body["error"];
    let message = format!(
        "{} ({}): {}",
        error["code"].as_str().unwrap_or("ERROR"),
        answer.status,
        error["message"].as_str().unwrap_or_default()
    );
    let code = if answer.status == 404 { ErrorCode::RESOURCE_NOT_FOUND } else { ErrorCode::INVALID_PARAMS };
    Err(McpError::new(code, message, Some(json!({ "status": answer.status, "error": error }))))
}

/// The tool and API path a resource URI stands for: the URI's id put into the path
/// template of the tool's route.
fn route_of(uri: &str) -> Option<(&'static str, String)> {
    if uri == TEMPLATES_URI {
        return Some((
            "incident_templates.list",
            crate::api::openapi::operation("incident_templates.list")?.template.into(),
        ));
    }
    FAMILIES.iter().find_map(|f| {
        let (before, after) = f.uri_template.split_once("{id}")?;
        let id = uri.strip_prefix(before)?.strip_suffix(after)?;
        if id.is_empty() || id.contains('/') {
            return None;
        }
        let template = crate::api::openapi::operation(f.tool)?.template;
        Some((f.tool, template.replace("{id}", &crate::http::path_segment(id))))
    })
}
