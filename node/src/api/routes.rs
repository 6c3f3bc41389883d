//! Every route, declared once: the method and path of a documented route come from
//! its handler's `#[utoipa::path]`, so the router and the OpenAPI document cannot
//! disagree. Only the undocumented plumbing (health, metrics, the document itself,
//! the envelope schema) is routed by hand.

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{
    App, BLOB_BODY_LIMIT, access, accounts, admin, audit, blobs, dlq, envelopes, handoffs, insights, lanes, nodes,
    openapi, stream, system, tasks, tickets, ux,
};

/// The API's routes with their OpenAPI description.
pub(super) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(ticket_routes())
        .merge(identity_routes())
        .merge(cluster_routes())
        .merge(lane_routes())
        .routes(routes!(stream::stream))
        .route("/v1/openapi.json", get(openapi::document))
        .route("/v1/schemas/event-envelope.v1.json", get(envelopes::envelope_schema))
        .route("/health", get(system::health))
        .route("/ready", get(system::ready))
        .route("/metrics", get(system::metrics))
}

fn ticket_routes() -> OpenApiRouter<App> {
    let blobs = OpenApiRouter::new().routes(routes!(blobs::upload)).layer(DefaultBodyLimit::max(BLOB_BODY_LIMIT));
    OpenApiRouter::new()
        .routes(routes!(tickets::create, tickets::list))
        .routes(routes!(tickets::get))
        .routes(routes!(tickets::timeline))
        .routes(routes!(tickets::add_evidence, tickets::evidence))
        .routes(routes!(tickets::triage))
        .routes(routes!(tickets::propose_schedule))
        .routes(routes!(tickets::confirm_schedule))
        .routes(routes!(tickets::dispatch))
        .routes(routes!(tickets::confirm_bypass))
        .routes(routes!(tickets::check_in))
        .routes(routes!(tickets::request_change))
        .routes(routes!(tickets::decide_approval))
        .routes(routes!(tickets::complete))
        .routes(routes!(tickets::verify))
        .routes(routes!(tickets::generate_invoice))
        .routes(routes!(tickets::close))
        .routes(routes!(tickets::cancel))
        .routes(routes!(tickets::incident_templates))
        .routes(routes!(ux::cockpit))
        .routes(routes!(ux::job_packet))
        .merge(blobs)
}

fn identity_routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(accounts::login))
        .routes(routes!(accounts::refresh))
        .routes(routes!(accounts::logout))
        .routes(routes!(accounts::keys))
        .routes(routes!(accounts::me))
        .routes(routes!(accounts::tools))
        .routes(routes!(accounts::create_user, accounts::list_users))
        .routes(routes!(accounts::disable_user))
        .routes(routes!(accounts::set_role))
        .routes(routes!(accounts::reset_password))
        .routes(routes!(access::list_sessions))
        .routes(routes!(access::revoke_sessions))
        .routes(routes!(admin::mint_token, access::list_tokens))
        .routes(routes!(access::revoke_token))
        .routes(routes!(accounts::rotate_signing_key))
        .routes(routes!(access::retire_signing_key))
        .routes(routes!(audit::verify))
        .routes(routes!(audit::backup))
}

fn cluster_routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(nodes::create_token, nodes::list_tokens))
        .routes(routes!(nodes::revoke_token))
        .routes(routes!(nodes::list))
        .routes(routes!(nodes::get))
        .routes(routes!(nodes::drain))
        .routes(routes!(nodes::remove))
        .routes(routes!(nodes::set_config))
        .routes(routes!(tasks::create, tasks::list))
        .routes(routes!(tasks::get))
        .routes(routes!(tasks::result))
        .routes(routes!(tasks::cancel))
}

fn lane_routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(lanes::create))
        .routes(routes!(lanes::get))
        .routes(routes!(lanes::timeline))
        .routes(routes!(lanes::checkpoint))
        .routes(routes!(lanes::request_handoff))
        .routes(routes!(handoffs::wait_decision))
        .routes(routes!(lanes::escalate))
        .routes(routes!(lanes::assign_owner))
        .routes(routes!(lanes::reassign_owner))
        .routes(routes!(lanes::owner))
        .routes(routes!(lanes::unblock))
        .routes(routes!(lanes::override_close))
        .routes(routes!(envelopes::events))
        .routes(routes!(handoffs::queue))
        .routes(routes!(handoffs::handoff))
        .routes(routes!(handoffs::decide))
        .routes(routes!(lanes::freeze))
        .routes(routes!(lanes::unfreeze))
        .routes(routes!(dlq::dlq))
        .routes(routes!(dlq::dlq_replay))
        .routes(routes!(insights::insights))
}
