//! The console's screens: each reads what it shows from the API as the signed-in person
//! and draws it with a template under `node/templates/console/`.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use super::forms::{self, Kind};
use super::{Console, Refusal, Viewer};

// ------------------------------------------------------------------ what pages read

/// A row's ticket as the cockpit and the job packet give it.
#[derive(Deserialize)]
pub struct Header {
    pub ticket_id: String,
    pub state: String,
    pub priority: String,
    pub account_id: String,
    pub site_id: String,
    pub incident_type: String,
    pub summary: String,
}

#[derive(Deserialize)]
pub struct Sla {
    pub due_at: String,
    pub status: String,
}

#[derive(Deserialize)]
pub struct Reason {
    pub policy: String,
    pub message: String,
}

/// An action as the API lists it for a ticket.
#[derive(Deserialize)]
pub struct Action {
    pub tool: String,
    pub method: String,
    pub path: String,
    pub enabled: bool,
    pub disabled_reason: Option<Reason>,
}

#[derive(Deserialize)]
struct CockpitAnswer {
    queue: Vec<Row>,
}

#[derive(Deserialize)]
pub struct Row {
    #[serde(flatten)]
    pub ticket: Header,
    pub assignee: Option<String>,
    pub sla: Sla,
    pub actions: Vec<Action>,
}

#[derive(Deserialize)]
struct Templates {
    templates: Vec<IncidentType>,
}

#[derive(Deserialize)]
pub struct IncidentType {
    pub incident_type: String,
    pub description: String,
}

// ---------------------------------------------------------------- what pages draw

/// One field of an action form, ready to draw.
pub struct FieldView {
    pub id: String,
    pub name: &'static str,
    pub label: &'static str,
    pub hint: &'static str,
    pub required: bool,
    /// `text`, `textarea`, `select`, `datetime-local` or `number`.
    pub control: &'static str,
    pub options: Vec<String>,
    /// One item per line, sent as a JSON array.
    pub list: bool,
}

/// An action the person may take now, as a form that posts to its route.
pub struct ActionForm {
    pub tool: String,
    pub label: &'static str,
    pub method: String,
    pub path: String,
    /// Fixed when the page is drawn: a double click, or a retry after signing in
    /// again, sends the same key and runs the command once.
    pub idempotency_key: String,
    pub fields: Vec<FieldView>,
    /// Where what the action creates is shown (its id is appended), if it creates one.
    pub created: &'static str,
    /// Whether it runs only on a second press ([`forms::asks_twice`]).
    pub confirm: bool,
}

/// An action the person may not take, and why, in the policy's words.
pub struct Unavailable {
    pub label: &'static str,
    pub policy: String,
    pub message: String,
}

/// A ticket's actions split into forms and reasons.
pub struct Actions {
    pub forms: Vec<ActionForm>,
    pub unavailable: Vec<Unavailable>,
}

impl Actions {
    /// The forms of the enabled actions and the reasons for the rest, for a ticket in
    /// `state` (a dispatch from TRIAGED is the emergency override, with its own form).
    pub fn of(actions: Vec<Action>, scope: &str, state: &str) -> Actions {
        let (mut forms, mut unavailable) = (Vec::new(), Vec::new());
        for a in actions {
            let label = forms::label(&a.tool);
            if a.enabled {
                if !forms::has_panel(&a.tool) {
                    let form = forms::form_of(&a.tool, state).to_owned();
                    forms.push(ActionForm::with_form(a, &form, scope, &[]));
                }
            } else if let Some(r) = a.disabled_reason {
                unavailable.push(Unavailable { label, policy: r.policy, message: r.message });
            }
        }
        Actions { forms, unavailable }
    }
}

impl ActionForm {
    /// The form for `a`; a [`Kind::Queue`] field offers `queues`.
    pub fn of(a: Action, scope: &str, queues: &[String]) -> ActionForm {
        let form = a.tool.clone();
        ActionForm::with_form(a, &form, scope, queues)
    }

    /// `a` with the fields and label of `form` (its tool's, or a variant's).
    fn with_form(a: Action, form: &str, scope: &str, queues: &[String]) -> ActionForm {
        let fields = forms::fields(form)
            .iter()
            .map(|f| {
                let (control, options) = match f.kind {
                    Kind::Text => ("text", vec![]),
                    Kind::LongText | Kind::Lines => ("textarea", vec![]),
                    Kind::Choice(options) => ("select", options.iter().map(|o| o.to_string()).collect()),
                    Kind::When => ("datetime-local", vec![]),
                    Kind::Number => ("number", vec![]),
                    Kind::Queue => ("select", std::iter::once(String::new()).chain(queues.iter().cloned()).collect()),
                    Kind::Secret => ("password", vec![]),
                    Kind::Fixed(value) => ("hidden", vec![value.to_owned()]),
                };
                FieldView {
                    id: format!("{scope}-{}-{}", form.replace(['.', '#'], "-"), f.name.replace('.', "-")),
                    name: f.name,
                    label: f.label,
                    hint: f.hint,
                    required: f.required,
                    control,
                    options,
                    list: matches!(f.kind, Kind::Lines),
                }
            })
            .collect();
        ActionForm {
            label: forms::label(form),
            confirm: forms::asks_twice(&a.tool),
            tool: a.tool,
            method: a.method,
            path: a.path,
            idempotency_key: uuid::Uuid::new_v4().to_string(),
            fields,
            created: "",
        }
    }
}

/// The parts every page has: who is signed in, the CSRF token, the screens.
pub struct Chrome {
    pub title: &'static str,
    pub user: String,
    pub role: String,
    pub csrf: String,
    pub nav: Vec<(&'static str, &'static str)>,
    /// The screen this page is (its nav entry is marked current).
    pub here: &'static str,
    /// The log's position before the page read its data: its script follows the event
    /// stream from there, so no change made while the page was drawn is missed.
    pub after: u64,
}

impl Chrome {
    pub(super) fn of(viewer: &Viewer, title: &'static str, here: &'static str) -> Chrome {
        Chrome {
            title,
            user: viewer.principal.sub.clone(),
            role: viewer.principal.role.as_str().to_owned(),
            csrf: viewer.csrf.clone(),
            nav: viewer.nav(),
            here,
            after: viewer.after,
        }
    }
}

/// A page that says one thing: a refusal from the API, or that a role has no screen yet.
#[derive(Template)]
#[template(path = "console/message.html")]
pub(super) struct MessagePage {
    chrome: Chrome,
    heading: String,
    code: String,
    message: String,
}

pub(super) fn refusal_page(viewer: &Viewer, r: Refusal) -> Response {
    let page = MessagePage {
        chrome: Chrome::of(viewer, "Refused", ""),
        heading: format!("The server refused this page ({})", r.status),
        code: r.code,
        message: r.message,
    };
    viewer.page(page.render())
}

/// The home of a role with no screen in the console yet.
pub fn no_screen(viewer: &Viewer) -> Response {
    let page = MessagePage {
        chrome: Chrome::of(viewer, "Welcome", ""),
        heading: format!("No screen for the {} role yet", viewer.principal.role.as_str()),
        code: String::new(),
        message: "Use the CLI (dispatch --help) or the API (/v1/openapi.json) for your work meanwhile.".into(),
    };
    viewer.page(page.render())
}

// ------------------------------------------------------------------------ sign-in

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignInPage {
    csrf: String,
    next: String,
    refused: String,
}

#[derive(Deserialize)]
pub struct SignInQuery {
    next: Option<String>,
    refused: Option<String>,
}

/// `GET /console/sign-in`.
pub async fn sign_in(State(console): State<Console>, headers: HeaderMap, Query(q): Query<SignInQuery>) -> Response {
    let (csrf, set) = super::session::csrf_token(&headers, console.app.https);
    let refused = super::session::refusal_words(q.refused.as_deref().unwrap_or_default()).to_owned();
    let page = SignInPage { csrf, next: super::session::safe_next(q.next.as_deref()), refused };
    let mut response = super::rendered(page.render());
    if let Some(set) = set {
        response.headers_mut().append(axum::http::header::SET_COOKIE, set);
    }
    response
}

// ------------------------------------------------------------------------ cockpit

#[derive(Template)]
#[template(path = "console/cockpit.html")]
struct CockpitPage {
    chrome: Chrome,
    filter: CockpitFilter,
    states: &'static [&'static str],
    rows: Vec<(Row, Actions)>,
    hidden: usize,
    incident_types: Vec<IncidentType>,
    create_key: String,
}

/// The cockpit's filters, from its query string.
#[derive(Deserialize, Default)]
pub struct CockpitFilter {
    #[serde(default)]
    state: String,
    #[serde(default)]
    site: String,
    #[serde(default)]
    assignee: String,
}

impl CockpitFilter {
    fn keeps(&self, row: &Row) -> bool {
        let matches = |want: &str, have: &str| want.is_empty() || want.eq_ignore_ascii_case(have);
        matches(&self.state, &row.ticket.state)
            && matches(&self.site, &row.ticket.site_id)
            && matches(&self.assignee, row.assignee.as_deref().unwrap_or("-"))
    }
}

const QUEUE_STATES: &[&str] = &[
    "NEW",
    "TRIAGED",
    "READY_TO_SCHEDULE",
    "SCHEDULE_PROPOSED",
    "SCHEDULED",
    "DISPATCHED",
    "IN_PROGRESS",
    "APPROVAL_REQUIRED",
    "COMPLETED_PENDING_VERIFICATION",
];

/// `GET /console/cockpit`: the queue in SLA order with every action of each row.
pub async fn cockpit(
    State(console): State<Console>,
    viewer: Viewer,
    Query(filter): Query<CockpitFilter>,
) -> Result<Response, Response> {
    let answer = console.fetch::<CockpitAnswer>(&viewer, "/v1/ux/dispatcher/cockpit").await?;
    let incident_types =
        console.read::<Templates>(&viewer, "/v1/incident-templates").await.map(|t| t.templates).unwrap_or_default();
    let total = answer.queue.len();
    let rows: Vec<_> = answer
        .queue
        .into_iter()
        .filter(|r| filter.keeps(r))
        .map(|mut r| {
            let actions = Actions::of(std::mem::take(&mut r.actions), &r.ticket.ticket_id, &r.ticket.state);
            (r, actions)
        })
        .collect();
    let page = CockpitPage {
        chrome: Chrome::of(&viewer, "Cockpit", "/console/cockpit"),
        hidden: total - rows.len(),
        filter,
        states: QUEUE_STATES,
        rows,
        incident_types,
        create_key: uuid::Uuid::new_v4().to_string(),
    };
    Ok(viewer.page(page.render()))
}
