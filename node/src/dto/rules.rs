//! The input rules the server enforces, as JSON Schema, built from the same constants
//! the checks use: a field says `#[schema(schema_with = rules::…)]` and the document
//! states exactly what the server accepts, so neither can change without the other.

use actors::lane::lifecycle as lane;
use actors::task::spec as task;
use utoipa::openapi::schema::{Array, ArrayBuilder, Object, ObjectBuilder, SchemaType, Type};

/// A string with something besides whitespace in it: the server trims and refuses an
/// empty result. The class lists Unicode's White_Space characters (what Rust's `trim`
/// removes), spelled out so every regex dialect reads it the same way.
pub const NON_BLANK_PATTERN: &str =
    "[^\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn integer(min: u64, max: u64) -> Object {
    ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(min as f64)).maximum(Some(max as f64)).build()
}

fn nullable(schema: Object) -> Object {
    let mut schema = schema;
    if let SchemaType::Type(t) = schema.schema_type {
        schema.schema_type = SchemaType::from_iter([t, Type::Null]);
    }
    schema
}

/// Text the server refuses when blank (reasons, names, ids people type).
pub fn non_blank() -> Object {
    string().pattern(Some(NON_BLANK_PATTERN)).build()
}

/// [`non_blank`], or null/absent.
pub fn optional_non_blank() -> Object {
    nullable(non_blank())
}

/// A list with at least one entry (`"*"` for all).
pub fn non_empty_list() -> Array {
    ArrayBuilder::new().items(string()).min_items(Some(1)).build()
}

/// A password: at least [`crate::api::MIN_PASSWORD`] characters.
pub fn password() -> Object {
    string().min_length(Some(crate::api::MIN_PASSWORD)).build()
}

/// [`password`], or null/absent.
pub fn optional_password() -> Object {
    nullable(password())
}

/// A lane id a caller chooses: [`crate::api::LANE_ID_PATTERN`], or absent (generated).
pub fn lane_id() -> Object {
    nullable(string().pattern(Some(crate::api::LANE_ID_PATTERN)).build())
}

/// A checkpoint's name: non-blank, at most [`lane::MAX_CHECKPOINT_NAME`] characters.
pub fn checkpoint_name() -> Object {
    string().pattern(Some(NON_BLANK_PATTERN)).max_length(Some(lane::MAX_CHECKPOINT_NAME)).build()
}

/// Seconds to the first response: [`lane::SLA_SECONDS`], default [`lane::DEFAULT_SLA_SECONDS`].
pub fn sla_seconds() -> Object {
    nullable(integer(*lane::SLA_SECONDS.start(), *lane::SLA_SECONDS.end()))
}

/// Seconds to the decision: [`lane::DEADLINE_SECONDS`], default [`lane::DEFAULT_DEADLINE_SECONDS`].
pub fn deadline_seconds() -> Object {
    nullable(integer(*lane::DEADLINE_SECONDS.start(), *lane::DEADLINE_SECONDS.end()))
}

/// An access token's lifetime: [`crate::api::TOKEN_TTL_SECONDS`].
pub fn token_ttl() -> Object {
    let range = crate::api::TOKEN_TTL_SECONDS;
    integer(*range.start(), *range.end())
}

/// A join token's lifetime: [`crate::api::JOIN_TOKEN_TTL_SECONDS`], or absent (the default).
pub fn join_token_ttl() -> Object {
    let range = crate::api::JOIN_TOKEN_TTL_SECONDS;
    nullable(integer(*range.start(), *range.end()))
}

/// The tool names a token may be limited to: the policy table's, nothing else.
pub fn tool_names() -> Array {
    let names = actors::policy::TOOLS.iter().map(|t| t.name);
    nullable_array(ArrayBuilder::new().items(string().enum_values(Some(names))))
}

/// An array, or null/absent.
fn nullable_array(array: ArrayBuilder) -> Array {
    array.schema_type(SchemaType::from_iter([Type::Array, Type::Null])).build()
}

/// A task's command: a program and its arguments, [`task::COMMAND_ARGS`] in all.
pub fn command() -> Array {
    ArrayBuilder::new()
        .prefix_items([non_blank()])
        .items(string())
        .min_items(Some(*task::COMMAND_ARGS.start()))
        .max_items(Some(*task::COMMAND_ARGS.end()))
        .build()
}

/// How many nodes a join token admits: [`crate::api::JOIN_TOKEN_USES`], default 1.
pub fn join_token_uses() -> Object {
    let range = crate::api::JOIN_TOKEN_USES;
    nullable(integer(u64::from(*range.start()), u64::from(*range.end())))
}

/// A username: [`actors::user::USERNAME_PATTERN`].
pub fn username() -> Object {
    string().pattern(Some(actors::user::USERNAME_PATTERN)).build()
}

/// [`non_empty_list`], or null/absent (the default, `["*"]`).
pub fn optional_non_empty_list() -> Array {
    nullable_array(ArrayBuilder::new().items(string()).min_items(Some(1)))
}

fn optional_integer(range: std::ops::RangeInclusive<impl Into<u64> + Copy>) -> Object {
    nullable(integer((*range.start()).into(), (*range.end()).into()))
}

/// A job's time limit: [`task::TIMEOUT_SECONDS`].
pub fn timeout_seconds() -> Object {
    optional_integer(task::TIMEOUT_SECONDS)
}

/// A job's memory limit: [`task::MEMORY_BYTES`].
pub fn memory_bytes() -> Object {
    optional_integer(task::MEMORY_BYTES)
}

/// A job's process limit: [`task::PIDS`].
pub fn pids() -> Object {
    optional_integer(task::PIDS)
}

/// Attempts in all: [`task::MAX_ATTEMPTS`].
pub fn max_attempts() -> Object {
    optional_integer(task::MAX_ATTEMPTS)
}

/// A job's CPU limit in cores: [`task::CPU_MILLIS`] thousandths.
pub fn cpus() -> Object {
    let (min, max) = (f64::from(*task::CPU_MILLIS.start()), f64::from(*task::CPU_MILLIS.end()));
    nullable(
        ObjectBuilder::new().schema_type(Type::Number).minimum(Some(min / 1000.0)).maximum(Some(max / 1000.0)).build(),
    )
}

/// Environment variables: names without `=` (and not the reserved `DISPATCH_*` ones).
pub fn env() -> Object {
    ObjectBuilder::new()
        .property_names(Some(string().pattern(Some("^[^=]+$")).build()))
        .additional_properties(Some(string()))
        .build()
}

/// Workspace files: [`actors::task::WORKSPACE_PATH_PATTERN`] paths to their content.
pub fn workspace_files() -> Object {
    let path = string()
        .pattern(Some(actors::task::WORKSPACE_PATH_PATTERN))
        .max_length(Some(actors::task::MAX_WORKSPACE_PATH))
        .build();
    ObjectBuilder::new().property_names(Some(path)).additional_properties(Some(string())).build()
}

/// An override-close's reason: [`lane::HUMAN_OVERRIDE_PREFIX`] and at least one more character.
pub fn human_override() -> Object {
    string().pattern(Some(format!("^{}[\\s\\S]", lane::HUMAN_OVERRIDE_PREFIX))).build()
}

/// Rules that tie one field to another, which a field's own schema cannot say: they
/// are added to the named component's `allOf`.
pub fn cross_field_rules() -> Vec<(&'static str, serde_json::Value)> {
    use serde_json::json;
    let non_blank = json!({ "type": "string", "pattern": NON_BLANK_PATTERN });
    let password = json!({ "type": "string", "minLength": crate::api::MIN_PASSWORD });
    vec![
        // A person signs in with a password and has no tool list; a service account
        // gets a token instead of a password.
        (
            "CreateUser",
            json!({
                "if": { "properties": { "service": { "const": true } }, "required": ["service"] },
                "then": { "properties": { "password": { "type": "null" } } },
                "else": { "required": ["password"], "properties": { "password": password, "tools": { "type": "null" } } },
            }),
        ),
        (
            "DecisionBody",
            json!({
                "if": { "properties": { "action": { "const": "reroute" } } },
                "then": { "required": ["reroute_to"], "properties": { "reroute_to": non_blank } },
            }),
        ),
        (
            "DecisionBody",
            json!({
                "if": { "properties": { "action": { "const": "add_context" } } },
                "then": { "required": ["context"], "properties": { "context": { "not": { "type": "null" } } } },
            }),
        ),
    ]
}

/// A node's heartbeat interval: [`actors::node::lifecycle::HEARTBEAT_INTERVAL_MS`].
pub fn heartbeat_interval_ms() -> Object {
    optional_integer(actors::node::lifecycle::HEARTBEAT_INTERVAL_MS)
}

/// Jobs a node runs at once: up to [`actors::node::lifecycle::MAX_CONCURRENT_JOBS`].
pub fn max_concurrent_jobs() -> Object {
    optional_integer(0..=actors::node::lifecycle::MAX_CONCURRENT_JOBS)
}

/// The network policies a node allows: [`actors::node::lifecycle::NETWORK_POLICIES`].
pub fn network_policies() -> Array {
    nullable_array(ArrayBuilder::new().items(string().enum_values(Some(actors::node::lifecycle::NETWORK_POLICIES))))
}

/// A lane's callback URL: [`crate::outbound::CALLBACK_URL_PATTERN`], or absent.
pub fn callback_url() -> Object {
    nullable(string().pattern(Some(crate::outbound::CALLBACK_URL_PATTERN)).build())
}

/// The body of an upload: raw bytes, not JSON.
pub struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        // `format: binary` as well, which generators of OpenAPI 3.0 clients read as a file.
        let binary = utoipa::openapi::schema::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Binary);
        // Not empty: an empty upload is refused.
        let bytes = string().content_media_type("application/octet-stream").format(Some(binary));
        bytes.min_length(Some(1)).build().into()
    }
}

impl utoipa::ToSchema for Binary {}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, s: &str) -> bool {
        regex::Regex::new(pattern).unwrap().is_match(s)
    }

    /// The server's check and the document's pattern agree, on the edges that matter.
    #[test]
    fn non_blank_is_what_trim_leaves_something_of() {
        let samples =
            ["x", " x ", "", " ", "\t\n\r", "\u{85}", "\u{a0}", "\u{3000}", "\u{2028}x", "\u{feff}", "\u{1c}"];
        for s in samples {
            assert_eq!(matches(NON_BLANK_PATTERN, s), !s.trim().is_empty(), "{s:?}");
        }
    }

    #[test]
    fn workspace_paths_match_the_check() {
        let samples =
            ["a", "a/b", ".a", "..a", "...", "a/.b", "", "/a", "a//b", ".", "..", "a/../b", "a/./b", "a/", "./a"];
        for p in samples {
            assert_eq!(
                matches(actors::task::WORKSPACE_PATH_PATTERN, p),
                actors::task::valid_workspace_path(p),
                "{p:?}"
            );
        }
    }

    #[test]
    fn callback_urls_in_the_documented_form_parse() {
        let good = ["http://example.com/hook", "https://a-b.example:8443/x?y=1#z", "http://10.0.0.1:65535", "http://h"];
        for url in good {
            assert!(crate::outbound::is_callback_url(url), "{url}");
            assert!(reqwest::Url::parse(url).is_ok(), "{url}");
        }
        let bad = [
            "",
            "ftp://a/",
            "http://[::1]/",
            "http://a:65536/",
            "http://u:p@a/",
            "http://1.2.3.4.5/",
            "http://256.1.1.1/",
        ];
        for url in bad {
            assert!(!crate::outbound::is_callback_url(url), "{url}");
        }
    }

    #[test]
    fn the_human_override_rule_is_the_lane_rules() {
        for reason in ["human_override: done", "human_override:x", "human_override:", "done", " human_override: x"] {
            let pattern = human_override().pattern.unwrap();
            assert_eq!(matches(&pattern, reason), lane::is_human_override(reason), "{reason:?}");
        }
    }
}
