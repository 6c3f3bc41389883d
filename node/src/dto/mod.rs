//! The HTTP API's request and response bodies, with their OpenAPI schemas. They
//! mirror the domain's values field for field, and every conversion destructures its
//! input, so a field added on either side does not compile until it is mapped here:
//! the API's JSON changes only when these types do, while the domain (and the
//! snapshots and events it stores) knows nothing of HTTP or OpenAPI.

pub mod accounts;
pub mod lanes;
pub mod nodes;
pub mod rules;
pub mod tasks;
pub mod ticket_commands;
pub mod tickets;
