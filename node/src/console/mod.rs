//! The web console: pages for the people who do the work, served by the binary.
//!
//! Pages are rendered on the server from askama templates (compiled and checked with the
//! binary: no build step outside cargo, nothing fetched at run time) and read their data
//! by calling the API's own routes in-process as the signed-in person, so a page shows
//! exactly what the API would answer that person. A little hand-written script
//! (`assets/console.js`) sends actions to the same `/v1` routes the CLI uses, with an
//! idempotency key fixed when the form was drawn, keeps SLA countdowns live and redraws
//! the page's live region when `GET /v1/stream` reports a change.

mod admin;
mod forms;
mod handoffs;
mod insights;
mod operations;
mod pages;
pub mod session;
mod ticket;
mod view;

use axum::Router;
use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

use crate::api::App;
use actors::policy::{Principal, Role};

/// What the console's handlers share: the server, and its API to read through.
#[derive(Clone)]
pub struct Console {
    app: App,
    api: Router,
}

/// The console's routes: `/`, `/console/…` and its embedded assets.
pub fn router(app: App, api: Router) -> Router {
    let console = Console { app: app.clone(), api };
    let session_routes = Router::new()
        .route(session::SESSION_PATH, post(session::sign_in))
        .route("/console/session/refresh", post(session::refresh))
        .route("/console/session/end", post(session::sign_out))
        .with_state(app.clone());
    Router::new()
        .route("/", get(home))
        .route("/console/sign-in", get(pages::sign_in))
        .route("/console/cockpit", get(pages::cockpit))
        .route("/console/jobs", get(ticket::jobs))
        .route("/console/tickets/{id}", get(ticket::page))
        .route("/console/handoffs", get(handoffs::queue))
        .route("/console/handoffs/{id}", get(handoffs::handoff))
        .route("/console/dead-letters", get(handoffs::dead_letters))
        .route("/console/tasks", get(operations::tasks))
        .route("/console/tasks/{id}", get(operations::task))
        .route("/console/nodes", get(operations::nodes))
        .route("/console/insights", get(insights::page))
        .route("/console/admin", get(admin::page))
        .route("/console/assets/console.js", get(script))
        .route("/console/assets/console.css", get(style))
        .with_state(console)
        .merge(session_routes)
        .layer(axum::middleware::from_fn_with_state(app.clone(), crate::api::observe))
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
}

/// The signed-in person a page is drawn for, and what the page needs to send actions.
pub struct Viewer {
    pub principal: Principal,
    token: String,
    pub csrf: String,
    /// A new CSRF cookie to set with the page, when the browser had none.
    set_csrf: Option<HeaderValue>,
    /// The log's durable head when the request came in.
    pub after: u64,
}

impl FromRequestParts<Console> for Viewer {
    type Rejection = Redirect;

    /// A page's viewer, or the sign-in page that comes back to this page after.
    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Viewer, Redirect> {
        let here = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        Viewer::of(console, &parts.headers, here)
    }
}

impl Viewer {
    /// The person signed in by this request's cookie, or the sign-in page to send them
    /// to (coming back to `path` after).
    fn of(console: &Console, headers: &HeaderMap, path: &str) -> Result<Viewer, Redirect> {
        let signed_in = session::cookie(headers, session::ACCESS)
            .and_then(|token| console.app.auth.verify(token).ok().map(|(p, _)| (p, token.to_owned())));
        let Some((principal, token)) = signed_in else {
            let query = serde_urlencoded::to_string([("next", path)]).unwrap_or_default();
            return Err(Redirect::to(&format!("/console/sign-in?{query}")));
        };
        let (csrf, set_csrf) = session::csrf_token(headers, console.app.https);
        let after = *console.app.log.watch_head().borrow();
        Ok(Viewer { principal, token, csrf, set_csrf, after })
    }

    /// The screens this person's role has, for the top bar (the first is their home).
    pub fn nav(&self) -> Vec<(&'static str, &'static str)> {
        const COCKPIT: (&str, &str) = ("/console/cockpit", "Cockpit");
        const HANDOFFS: (&str, &str) = ("/console/handoffs", "Handoffs");
        const DEAD_LETTERS: (&str, &str) = ("/console/dead-letters", "Dead letters");
        const TASKS: (&str, &str) = ("/console/tasks", "Tasks");
        const NODES: (&str, &str) = ("/console/nodes", "Nodes");
        const INSIGHTS: (&str, &str) = ("/console/insights", "Insights");
        const ADMIN: (&str, &str) = ("/console/admin", "Admin");
        match self.principal.role {
            Role::Technician => vec![("/console/jobs", "My jobs")],
            Role::Dispatcher | Role::Manager => vec![COCKPIT],
            Role::Agent => vec![COCKPIT, TASKS],
            Role::Operator => vec![HANDOFFS, DEAD_LETTERS, TASKS, NODES],
            Role::Engineer => vec![INSIGHTS, NODES],
            Role::Admin => vec![COCKPIT, HANDOFFS, DEAD_LETTERS, TASKS, NODES, INSIGHTS, ADMIN],
            _ => vec![],
        }
    }

    /// A rendered page, with the CSRF cookie when it is new.
    fn page(&self, html: Result<String, askama::Error>) -> Response {
        let mut response = rendered(html);
        if let Some(set) = &self.set_csrf {
            response.headers_mut().append(header::SET_COOKIE, set.clone());
        }
        response
    }
}

/// An answer from the API that is not a success: its status, code and plain message.
pub struct Refusal {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl Console {
    /// What a page shows from `GET uri`, or the page that says why the API refused it.
    async fn fetch<T: DeserializeOwned>(&self, viewer: &Viewer, uri: &str) -> Result<T, Response> {
        self.read(viewer, uri).await.map_err(|refusal| pages::refusal_page(viewer, refusal))
    }

    /// `GET uri` on the API as `viewer`, decoded as `T`.
    async fn read<T: DeserializeOwned>(&self, viewer: &Viewer, uri: &str) -> Result<T, Refusal> {
        let internal = |message: String| Refusal { status: 500, code: "INTERNAL".into(), message };
        let request = Request::get(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", viewer.token))
            .body(Body::empty())
            .map_err(|e| Refusal { status: 400, code: "VALIDATION_ERROR".into(), message: e.to_string() })?;
        let (status, _, bytes) = crate::api::call_in_process(&self.api, request).await.map_err(internal)?;
        if !status.is_success() {
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let text = |k: &str| body["error"][k].as_str().unwrap_or_default().to_owned();
            return Err(Refusal { status: status.as_u16(), code: text("code"), message: text("message") });
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| internal(format!("the answer of {uri} did not read as expected: {e}")))
    }
}

/// `/`: the signed-in person's first screen, or the sign-in page.
async fn home(viewer: Viewer) -> Response {
    match viewer.nav().first() {
        Some((href, _)) => Redirect::to(href).into_response(),
        None => pages::no_screen(&viewer),
    }
}

/// A page as the browser gets it: never cached (it shows one person's data), and
/// allowed to run only the console's own script and style, in no frame.
fn rendered(html: Result<String, askama::Error>) -> Response {
    let mut response = match html {
        Ok(html) => Html(html).into_response(),
        Err(e) => crate::api::error::ApiError::internal("rendering a page", e).into_response(),
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    response
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("assets/console.js"))
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/console.css"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
