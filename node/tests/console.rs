//! The web console against the real binary: its session cookies and CSRF rules over
//! plain HTTP, then people using it in Debian's headless Chromium — a dispatcher's
//! cockpit updating live, a technician completing a job on a phone, and a session that
//! ends while a form is half filled.
#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

#[path = "support/browser.rs"]
mod browser;
mod support;

use browser::{Chromium, Tab};
use serde_json::{Value, json};
use support::Server;

const PASSWORD: &str = "correct horse battery";

/// A person's account with a password, through the admin API.
async fn add_user(s: &Server, username: &str, role: &str) {
    let body = json!({ "username": username, "role": role, "password": PASSWORD });
    let (status, created) = s.send("POST", "/v1/users", &s.admin_token, None, Some(body)).await;
    assert_eq!(status, 201, "{created}");
}

/// The `name=value` of each `Set-Cookie`, with its attributes.
fn set_cookies(headers: &reqwest::header::HeaderMap) -> Vec<String> {
    headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

fn cookie<'a>(set: &'a [String], name: &str) -> &'a str {
    set.iter().find(|c| c.starts_with(&format!("{name}="))).unwrap_or_else(|| panic!("no {name} cookie in {set:?}"))
}

fn value(set_cookie: &str) -> &str {
    set_cookie.split(';').next().unwrap().split_once('=').unwrap().1
}

/// Posts `pairs` as a form with a `Cookie` header, as a browser posting a form does.
async fn post_form(
    http: &reqwest::Client,
    url: String,
    cookies: impl AsRef<str>,
    pairs: &[(&str, &str)],
) -> reqwest::Response {
    let body = serde_urlencoded::to_string(pairs).unwrap();
    let req =
        http.post(url).header("cookie", cookies.as_ref()).header("content-type", "application/x-www-form-urlencoded");
    req.body(body).send().await.unwrap()
}

/// Signs in through the console's form; returns the `Cookie` header a browser would send.
async fn sign_in(s: &Server, http: &reqwest::Client, username: &str) -> (String, String) {
    let page = http.get(format!("{}/console/sign-in", s.url)).send().await.unwrap();
    let csrf = value(cookie(&set_cookies(page.headers()), "dispatch_csrf")).to_owned();
    let form = [("username", username), ("password", PASSWORD), ("csrf", &csrf), ("next", "/console/cockpit")];
    let cookie_header = format!("dispatch_csrf={csrf}");
    let r = post_form(http, format!("{}/console/session", s.url), &cookie_header, &form).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/console/cockpit");
    let set = set_cookies(r.headers());
    let access = cookie(&set, "dispatch_access");
    let refresh = cookie(&set, "dispatch_refresh");
    (format!("{cookie_header}; dispatch_access={}; dispatch_refresh={}", value(access), value(refresh)), csrf)
}

#[tokio::test]
async fn session_cookies_are_http_only_strict_and_every_change_needs_the_csrf_token() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    add_user(&s, "dana", "dispatcher").await;
    let http = support::client_builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    // A page served to someone signed out: the CSRF cookie, and a policy that runs only our script.
    let page = http.get(format!("{}/console/sign-in", s.url)).send().await.unwrap();
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'self'"));
    let set = set_cookies(page.headers());
    let csrf_cookie = cookie(&set, "dispatch_csrf");
    assert!(csrf_cookie.contains("SameSite=Strict") && !csrf_cookie.contains("HttpOnly"), "{csrf_cookie}");
    let csrf = value(csrf_cookie).to_owned();

    // A sign-in posted from another site (no matching CSRF token) is turned away.
    let forged = [("username", "dana"), ("password", PASSWORD), ("csrf", "forged"), ("next", "/")];
    let r = post_form(&http, format!("{}/console/session", s.url), format!("dispatch_csrf={csrf}"), &forged).await;
    assert_eq!(r.status(), 303);
    assert!(r.headers()["location"].to_str().unwrap().starts_with("/console/sign-in?"));
    assert!(set_cookies(r.headers()).iter().all(|c| !c.starts_with("dispatch_access=")));

    // A good sign-in never sends the person to another site, whatever `next` says.
    let form = [("username", "dana"), ("password", PASSWORD), ("csrf", csrf.as_str()), ("next", "//evil.example/")];
    let r = post_form(&http, format!("{}/console/session", s.url), format!("dispatch_csrf={csrf}"), &form).await;
    assert_eq!(r.headers()["location"], "/");
    let set = set_cookies(r.headers());
    let access = cookie(&set, "dispatch_access");
    let refresh = cookie(&set, "dispatch_refresh");
    for c in [access, refresh] {
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && !c.contains("Secure"), "{c}");
    }
    assert!(access.contains("Path=/;") || access.ends_with("Path=/"), "{access}");
    assert!(refresh.contains("Path=/console/session"), "{refresh}");
    let jar = format!("dispatch_csrf={csrf}; dispatch_access={}", value(access));

    // The cookie signs API reads in; a change needs the CSRF token echoed in a header.
    let read = http.get(format!("{}/v1/ux/dispatcher/cockpit", s.url)).header("cookie", &jar).send().await.unwrap();
    assert_eq!(read.status(), 200);
    let body =
        json!({ "account_id": "acct-1", "site_id": "site-1", "incident_type": "LOCKOUT", "summary": "locked out" });
    let create = |token: Option<&str>| {
        let mut req = http
            .post(format!("{}/v1/tickets", s.url))
            .header("cookie", &jar)
            .header("idempotency-key", "console-create-1")
            .json(&body);
        if let Some(t) = token {
            req = req.header("x-csrf-token", t);
        }
        req.send()
    };
    for (token, want) in [(None, 403), (Some("not-the-cookie"), 403), (Some(csrf.as_str()), 201)] {
        let r = create(token).await.unwrap();
        assert_eq!(r.status(), want, "x-csrf-token {token:?}");
        if want == 403 {
            assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "CSRF_REJECTED");
        }
    }

    // Refresh rotates the pair; the old refresh token used again ends the session.
    let refresh_jar = format!("dispatch_csrf={csrf}; dispatch_refresh={}", value(refresh));
    let renew = || {
        http.post(format!("{}/console/session/refresh", s.url))
            .header("cookie", &refresh_jar)
            .header("x-csrf-token", &csrf)
            .send()
    };
    let first = renew().await.unwrap();
    assert_eq!(first.status(), 204);
    let renewed = set_cookies(first.headers());
    let again = renew().await.unwrap();
    assert_eq!(again.status(), 401);
    assert_eq!(again.json::<Value>().await.unwrap()["error"]["code"], "REFRESH_TOKEN_REUSED");
    let new_access = value(cookie(&renewed, "dispatch_access"));
    let page = http
        .get(format!("{}/console/cockpit", s.url))
        .header("cookie", format!("dispatch_access={new_access}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303, "a session ended by reuse no longer opens pages");
    assert!(page.headers()["location"].to_str().unwrap().starts_with("/console/sign-in?next=%2Fconsole%2Fcockpit"));
    s.stop();
}

#[tokio::test]
async fn signing_out_clears_the_cookies_and_ends_the_session() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    add_user(&s, "dana", "dispatcher").await;
    let http = support::client_builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let (jar, csrf) = sign_in(&s, &http, "dana").await;
    let page = http.get(format!("{}/console/cockpit", s.url)).header("cookie", &jar).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let out = post_form(&http, format!("{}/console/session/end", s.url), &jar, &[("csrf", csrf.as_str())]).await;
    assert_eq!(out.status(), 303);
    for c in set_cookies(out.headers()).iter().filter(|c| !c.starts_with("dispatch_csrf")) {
        assert!(c.contains("Max-Age=0"), "{c}");
    }
    let page = http.get(format!("{}/console/cockpit", s.url)).header("cookie", &jar).send().await.unwrap();
    assert_eq!(page.status(), 303, "the old access cookie no longer opens pages");
    s.stop();
}

// ------------------------------------------------------------------ in a browser

/// Signs in through the sign-in page and waits for the first screen.
async fn browser_sign_in(tab: &Tab, username: &str, lands_on: &str) {
    tab.wait_for_page("/console/sign-in").await;
    tab.type_into("#username", username).await;
    tab.type_into("#password", PASSWORD).await;
    tab.click("#sign-in-form button[type=submit]").await;
    tab.wait_for_page(lands_on).await;
}

/// Waits until the page shows ticket `id` as the log has it now: every event of the
/// ticket applied and no redraw in flight, so nothing is redrawn under the next click.
async fn settle(tab: &Tab, s: &Server, id: &str) {
    let (_, timeline) = s.send("GET", &format!("/v1/tickets/{id}/timeline"), &s.admin_token, None, None).await;
    let head =
        timeline["events"].as_array().unwrap().iter().map(|e| e["global_position"].as_u64().unwrap()).max().unwrap();
    // Caught up with the log and quiet: an action's own redraw can still follow the stream's.
    let applied = format!(
        "Number(document.documentElement.dataset.applied) >= {head} && !('busy' in document.documentElement.dataset)"
    );
    tab.wait(&applied, &format!("the page to show the log up to {head}")).await;
}

/// Ticks every box of the completion checklist, as a person does (each a click).
async fn tick_checklist(tab: &Tab) {
    let unticked: usize = tab.js("document.querySelectorAll('form.complete [data-check]:not(:checked)').length").await;
    for _ in 0..unticked {
        tab.click("form.complete [data-check]:not(:checked)").await;
    }
}

/// The text of the state badge of ticket `id`'s row in the cockpit.
fn row_state(id: &str) -> String {
    format!("document.querySelector('tr[data-ticket=\"{id}\"] .state')?.textContent")
}

#[tokio::test]
async fn a_dispatcher_creates_and_triages_and_sees_the_queue_change_live() {
    let Some(chromium) = Chromium::launch(1280, 900, false).await else { return };
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    add_user(&s, "dana", "dispatcher").await;
    let tab = chromium.open(&format!("{}/", s.url)).await;
    browser_sign_in(&tab, "dana", "/console/cockpit").await;
    tab.wait("document.querySelector('#queue .empty')", "the empty queue's hint").await;
    tab.weigh("cockpit, empty").await;
    // Marks this page load: a reload would lose it.
    tab.js::<bool>("(window.sameLoad = true)").await;

    tab.click("#new-ticket summary").await;
    tab.type_into("#new-account", "acct-1").await;
    tab.type_into("#new-site", "site-1").await;
    tab.type_into("#new-summary", "Front door will not latch").await;
    // A double click: the second press must not open a second ticket.
    tab.js::<bool>("(() => { const f = document.querySelector('#new-ticket form'); f.requestSubmit(); f.requestSubmit(); return true; })()").await;
    tab.wait("document.querySelector('#new-ticket .outcome').textContent.startsWith('Created')", "the created message")
        .await;
    tab.wait("document.querySelectorAll('#queue tr[data-ticket]').length === 1", "the new row").await;
    let (_, list) = s.send("GET", "/v1/tickets?limit=100", &s.admin_token, None, None).await;
    assert_eq!(list["tickets"].as_array().unwrap().len(), 1, "a double click opened one ticket: {list}");
    let id = list["tickets"][0]["id"].as_str().unwrap().to_owned();
    let countdown: String = tab.js("document.querySelector('#queue time.due').textContent").await;
    assert!(countdown.ends_with(" left"), "a live SLA countdown, not {countdown:?}");

    // Someone else opens a ticket: it appears without a reload.
    let other = support::new_ticket(&s, &s.token("disp-2", "dispatcher", &["*"], &["*"]).await).await;
    tab.wait("document.querySelectorAll('#queue tr[data-ticket]').length === 2", "the other dispatcher's ticket").await;
    assert_eq!(tab.js::<String>(&row_state(&other)).await, "NEW");

    // Triage from the row: the row moves on, live.
    settle(&tab, &s, &other).await;
    let row = format!("tr[data-ticket=\"{id}\"]");
    tab.click(&format!("{row} form[data-tool=\"ticket.triage\"] summary")).await;
    tab.type_into(&format!("{row} form[data-tool=\"ticket.triage\"] textarea"), "customer confirmed").await;
    tab.click(&format!("{row} form[data-tool=\"ticket.triage\"] button[type=submit]")).await;
    tab.wait(&format!("{} === 'READY_TO_SCHEDULE'", row_state(&id)), "the triaged row").await;
    assert!(tab.js::<bool>("window.sameLoad === true").await, "the page was never reloaded");

    // A ticket triaged without a schedule can only be dispatched as the emergency
    // override: its own form, with the reason required and the audit warning.
    let other_row = format!("tr[data-ticket=\"{other}\"]");
    settle(&tab, &s, &id).await;
    tab.click(&format!("{other_row} form[data-tool=\"ticket.triage\"] summary")).await;
    tab.choose(&format!("{other_row} form[data-tool=\"ticket.triage\"] select[name=workflow_outcome]"), "TRIAGED")
        .await;
    tab.click(&format!("{other_row} form[data-tool=\"ticket.triage\"] button[type=submit]")).await;
    tab.wait(&format!("{} === 'TRIAGED'", row_state(&other)), "the ticket triaged without a schedule").await;
    let dispatch = format!("{other_row} form[data-tool=\"assignment.dispatch\"]");
    let summary: String = tab.js(&format!("document.querySelector('{dispatch} summary').textContent")).await;
    assert_eq!(summary, "Emergency dispatch (override)");
    assert!(tab.js::<bool>(&format!("document.querySelector('{dispatch} textarea[name=reason]').required")).await);
    let warning: String = tab.js(&format!("document.querySelector('{dispatch}').textContent")).await;
    assert!(warning.contains("audit timeline"), "{warning}");
    tab.screenshot("cockpit").await;
    tab.goto("/console/cockpit").await;
    tab.wait(&format!("{} === 'READY_TO_SCHEDULE'", row_state(&id)), "the cockpit again").await;
    tab.weigh("cockpit, two tickets").await;

    // Filters narrow the queue; an empty result says how to widen it.
    tab.goto("/console/cockpit?state=SCHEDULED").await;
    tab.wait(
        "document.querySelector('#queue .empty')?.textContent.includes('Clear the filters')",
        "the filtered-out hint",
    )
    .await;
    chromium.close().await;
    s.stop();
}

#[tokio::test]
async fn a_technician_on_a_phone_checks_in_uploads_is_refused_then_signs_and_completes() {
    let Some(chromium) = Chromium::launch(390, 844, true).await else { return };
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    add_user(&s, "tech-1", "technician").await;
    let crew = support::Crew::new(&s).await;
    let id = support::dispatched_ticket(&s, &crew).await;
    let tab = chromium.open(&format!("{}/", s.url)).await;
    browser_sign_in(&tab, "tech-1", "/console/jobs").await;
    tab.weigh("my jobs").await;
    tab.click(&format!("a[href=\"/console/tickets/{id}\"]")).await;
    tab.wait_for_page(&format!("/console/tickets/{id}")).await;
    tab.weigh("ticket / job packet").await;

    // Nothing of the dispatcher's is offered; what is held back says which rule holds it.
    let offered: Vec<String> =
        tab.js("[...document.querySelectorAll('form[data-tool]')].map(f => f.dataset.tool)").await;
    assert_eq!(offered, ["tech.check_in"], "a dispatched job offers the technician only check-in");
    let held: String = tab.js("document.querySelector('.unavailable').textContent").await;
    assert!(held.contains("Cancel ticket") && held.contains("(role rule)"), "{held}");

    tab.click("form[data-tool=\"tech.check_in\"] button[type=submit]").await;
    tab.wait("document.querySelector('#ticket .state').textContent === 'IN_PROGRESS'", "IN_PROGRESS").await;
    tab.wait("document.querySelector('form.upload') !== null", "the evidence form, without a reload").await;
    settle(&tab, &s, &id).await;

    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let photo = |name: &str| {
        let path = photos.join(name);
        std::fs::write(&path, format!("\u{ff}\u{d8} a photo of {name}")).unwrap();
        path
    };
    let upload = |key: &'static str, file: std::path::PathBuf| {
        let tab = &tab;
        let (s, id) = (&s, &id);
        async move {
            tab.choose("#evidence-key", key).await;
            tab.choose_files("#evidence-file", &[file]).await;
            tab.click("form.upload button[type=submit]").await;
            let shown =
                format!("[...document.querySelectorAll('#evidence li code')].some(c => c.textContent === '{key}')");
            tab.wait(&shown, key).await;
            settle(tab, s, id).await;
        }
    };
    upload("photo_before", photo("before.jpg")).await;

    // Completing with a photo missing is refused, naming it; the gate lists it too.
    tick_checklist(&tab).await;
    tab.click("form.complete button[type=submit]").await;
    tab.wait("document.querySelector('form.complete .outcome').classList.contains('refusal')", "the refusal").await;
    let refusal: String = tab.js("document.querySelector('form.complete .outcome').textContent").await;
    assert!(refusal.starts_with("CLOSEOUT_REQUIREMENTS_INCOMPLETE") && refusal.contains("photo_after"), "{refusal}");
    let missing: String = tab.js("document.querySelector('#closeout-missing').textContent").await;
    assert!(
        missing.contains("photo_after") && missing.contains("signature"),
        "the gate lists what is missing: {missing}"
    );
    tab.screenshot("job-packet-refused").await;

    upload("photo_after", photo("after.jpg")).await;
    tab.draw("#signature-pad", &[(20.0, 40.0), (60.0, 70.0), (100.0, 30.0), (150.0, 80.0), (200.0, 40.0)]).await;
    tab.click("form.signature button[type=submit]").await;
    tab.wait(
        "[...document.querySelectorAll('#evidence li')].some(l => l.textContent.includes('signature'))",
        "the signature",
    )
    .await;
    settle(&tab, &s, &id).await;
    tick_checklist(&tab).await;
    tab.click("form.complete button[type=submit]").await;
    tab.wait("document.querySelector('#ticket .state').textContent === 'COMPLETED_PENDING_VERIFICATION'", "completion")
        .await;
    tab.screenshot("job-packet-completed").await;

    let (_, ticket) = s.send("GET", &format!("/v1/tickets/{id}"), &s.admin_token, None, None).await;
    assert_eq!(ticket["state"], "COMPLETED_PENDING_VERIFICATION");
    let kinds: Vec<&str> = ticket["evidence"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["photo", "photo", "signature"]);
    chromium.close().await;
    s.stop();
}

#[tokio::test]
async fn a_session_that_ends_mid_form_signs_in_again_and_sends_the_form_once() {
    let Some(chromium) = Chromium::launch(1280, 900, false).await else { return };
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    add_user(&s, "dana", "dispatcher").await;
    let id = support::new_ticket(&s, &s.token("disp-2", "dispatcher", &["*"], &["*"]).await).await;
    let tab = chromium.open(&format!("{}/console/cockpit", s.url)).await;
    browser_sign_in(&tab, "dana", "/console/cockpit").await;
    let row = format!("tr[data-ticket=\"{id}\"]");
    tab.click(&format!("{row} form[data-tool=\"ticket.triage\"] summary")).await;
    tab.type_into(&format!("{row} form[data-tool=\"ticket.triage\"] textarea"), "half-written notes").await;

    // An admin ends every session of dana's while she types.
    let (status, body) =
        s.send("POST", "/v1/users/dana/sessions/revoke", &s.admin_token, Some(&support::key()), Some(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    tab.click(&format!("{row} form[data-tool=\"ticket.triage\"] button[type=submit]")).await;
    tab.wait("document.querySelector('#sign-in-again').open", "the sign-in dialog").await;
    let kept: String =
        tab.js(&format!("document.querySelector('{row} form[data-tool=\"ticket.triage\"] textarea').value")).await;
    assert_eq!(kept, "half-written notes", "the form is kept under the dialog");
    tab.screenshot("session-ended").await;

    tab.type_into("#again-password", PASSWORD).await;
    tab.click("#sign-in-again button[type=submit]").await;
    tab.wait(&format!("{} === 'READY_TO_SCHEDULE'", row_state(&id)), "the triage sent after signing in").await;
    let (_, timeline) = s.send("GET", &format!("/v1/tickets/{id}/timeline"), &s.admin_token, None, None).await;
    let triaged = timeline["events"].as_array().unwrap().iter().filter(|e| e["tool"] == "ticket.triage").count();
    assert_eq!(triaged, 1, "the form was sent once: {timeline}");

    // A page opened with the ended session's cookie goes to sign-in, and back after.
    s.send("POST", "/v1/users/dana/sessions/revoke", &s.admin_token, Some(&support::key()), Some(json!({}))).await;
    tab.goto("/console/cockpit").await;
    browser_sign_in(&tab, "dana", "/console/cockpit").await;
    chromium.close().await;
    s.stop();
}

#[tokio::test]
async fn an_operator_approves_a_handoff_and_the_waiting_agent_gets_the_decision() {
    let Some(chromium) = Chromium::launch(1280, 900, false).await else { return };
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let body = json!({ "username": "olga", "role": "operator", "password": PASSWORD, "queues": ["ops", "triage"] });
    assert_eq!(s.send("POST", "/v1/users", &s.admin_token, None, Some(body)).await.0, 201);
    let agent = s.token("bot", "agent", &["*"], &["*"]).await;
    for (path, body) in [
        ("/v1/lanes", json!({ "lane_id": "lane-1" })),
        ("/v1/lanes/lane-1/checkpoints", json!({ "name": "c1", "state": { "step": 1, "draft": "refund 900" } })),
        (
            "/v1/lanes/lane-1/handoffs",
            json!({ "checkpoint": "c1", "trigger_class": "policy", "reason": "refund over limit",
            "context": { "amount": 900 }, "queue": "ops", "sla_seconds": 600, "deadline_seconds": 3600, "timeout_action": "reject" }),
        ),
    ] {
        let (status, answer) = s.send("POST", path, &agent, Some(&support::key()), Some(body)).await;
        assert!(status == 200 || status == 201, "{path}: {answer}");
    }
    // The agent waits for the decision, as agents do.
    let poll = {
        let url = format!("{}/v1/lanes/lane-1/decision?wait=60", s.url);
        let agent = agent.clone();
        tokio::spawn(async move {
            let http = support::client_builder().build().unwrap();
            http.get(url).bearer_auth(agent).send().await.unwrap().json::<Value>().await.unwrap()
        })
    };

    let tab = chromium.open(&format!("{}/", s.url)).await;
    browser_sign_in(&tab, "olga", "/console/handoffs").await;
    tab.weigh("handoff queue").await;
    tab.click("tr[data-handoff] a").await;
    tab.wait_for_page("/console/handoffs/").await;
    let context: String = tab.js("document.querySelector('pre.json').textContent").await;
    assert!(context.contains("\"amount\": 900"), "{context}");
    let reroutes: Vec<String> =
        tab.js("[...document.querySelectorAll('select[name=reroute_to] option')].map(o => o.value)").await;
    assert_eq!(reroutes, ["", "triage"], "reroute offers only the operator's other queues");
    tab.click("form[data-tool=\"handoff.decide\"] summary").await;
    tab.type_into("form[data-tool=\"handoff.decide\"] textarea[name=reason]", "within policy after review").await;
    tab.screenshot("handoff").await;
    tab.click("form[data-tool=\"handoff.decide\"] button[type=submit]").await;
    tab.wait("document.querySelector('#handoff .state').textContent === 'DECIDED'", "the decided handoff").await;

    let answer = tokio::time::timeout(std::time::Duration::from_secs(30), poll).await.unwrap().unwrap();
    assert_eq!(answer["decided"], true, "{answer}");
    assert_eq!(answer["decision"]["action"], "approve");
    assert_eq!(answer["decision"]["by"], "olga");
    assert_eq!(answer["decision"]["reason"], "within policy after review");
    chromium.close().await;
    s.stop();
}

/// A lane of `bot`'s with one handoff in queue `ops`, decided by `olga` as `decision`.
async fn decided_handoff(s: &Server, decision: &str) {
    let agent = s.token("bot", "agent", &["*"], &["*"]).await;
    for (path, body) in [
        ("/v1/lanes", json!({ "lane_id": "lane-1" })),
        ("/v1/lanes/lane-1/checkpoints", json!({ "name": "c1", "state": { "step": 1 } })),
        (
            "/v1/lanes/lane-1/handoffs",
            json!({ "checkpoint": "c1", "trigger_class": "policy", "reason": "refund over limit",
            "context": { "secret_customer": "Ada Lovelace" }, "queue": "ops", "sla_seconds": 600, "deadline_seconds": 3600,
            "timeout_action": "reject" }),
        ),
    ] {
        let (status, answer) = s.send("POST", path, &agent, Some(&support::key()), Some(body)).await;
        assert!(status == 200 || status == 201, "{path}: {answer}");
    }
    let ops = json!({ "sub": "olga", "role": "operator", "accounts": ["*"], "sites": ["*"], "queues": ["ops"], "ttl_seconds": 600 });
    let (_, minted) = s.send("POST", "/v1/admin/tokens", &s.admin_token, None, Some(ops)).await;
    let olga = minted["token"].as_str().unwrap();
    let (_, list) = s.send("GET", "/v1/handoffs", olga, None, None).await;
    let id = list["handoffs"][0]["handoff_id"].as_str().unwrap();
    let body = json!({ "action": decision, "reason": "checked" });
    let (status, answer) =
        s.send("POST", &format!("/v1/handoffs/{id}/decision"), olga, Some(&support::key()), Some(body)).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn an_engineer_sees_the_charts_and_no_handoff_content() {
    let Some(chromium) = Chromium::launch(1280, 900, false).await else { return };
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    add_user(&s, "eve", "engineer").await;
    decided_handoff(&s, "approve").await;
    let tab = chromium.open(&format!("{}/", s.url)).await;
    browser_sign_in(&tab, "eve", "/console/insights").await;
    tab.weigh("insights").await;
    assert_eq!(tab.js::<String>("document.querySelector('#hitl-rate').textContent").await, "100.0%");
    let bars: usize = tab.js("document.querySelectorAll('svg.chart rect').length").await;
    assert_eq!(bars, 1 + 4, "one decision-mix bar and four latency bars for one trigger class");
    let text: String = tab.js("document.body.innerText").await;
    assert!(text.contains("approve") && text.contains("policy"), "{text}");
    for secret in ["Ada Lovelace", "refund over limit", "lane-1", "ops"] {
        assert!(!text.contains(secret), "an engineer is shown {secret:?}");
    }
    tab.screenshot("insights").await;

    // The handoff queue is not an engineer's: the refusal says so, with its code.
    tab.goto("/console/handoffs").await;
    tab.wait("document.querySelector('.refusal code')?.textContent === 'FORBIDDEN'", "the refusal").await;
    chromium.close().await;
    s.stop();
}

#[tokio::test]
async fn an_operator_runs_a_task_and_reads_its_output_as_it_finishes() {
    if !support::docker::tasks_can_run("the console's task test") {
        return;
    }
    let Some(chromium) = Chromium::launch(1280, 900, false).await else { return };
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let body = json!({ "username": "olga", "role": "operator", "password": PASSWORD, "queues": ["ops"] });
    assert_eq!(s.send("POST", "/v1/users", &s.admin_token, None, Some(body)).await.0, 201);
    let tab = chromium.open(&format!("{}/console/nodes", s.url)).await;
    browser_sign_in(&tab, "olga", "/console/nodes").await;
    tab.wait("document.querySelector('tr[data-node] .state')?.textContent === 'ACTIVE'", "the local worker").await;

    tab.goto("/console/tasks").await;
    tab.wait("document.querySelector('#tasks .empty')", "the empty task list").await;
    tab.click("#run-task summary").await;
    tab.type_into("#run-task textarea[name=command]", "echo").await;
    tab.page.find_element("#run-task textarea[name=command]").await.unwrap().press_key("Enter").await.unwrap();
    tab.type_into("#run-task textarea[name=command]", "hello from the console").await;
    tab.click("#run-task button[type=submit]").await;
    tab.wait("document.querySelector('#run-task .outcome a')", "the link to the new task").await;
    tab.click("#run-task .outcome a").await;
    tab.wait_for_page("/console/tasks/").await;
    tab.wait("document.querySelector('#stdout')?.textContent.includes('hello from the console')", "the output").await;
    assert_eq!(tab.js::<String>("document.querySelector('#exit-code strong').textContent").await, "0");
    assert_eq!(tab.js::<String>("document.querySelector('#task .state').textContent").await, "SUCCEEDED");
    tab.screenshot("task").await;
    chromium.close().await;
    s.stop();
}

#[tokio::test]
async fn an_admin_adds_a_person_who_then_signs_in_and_creates_a_join_token_shown_once() {
    let Some(chromium) = Chromium::launch(1280, 900, false).await else { return };
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    add_user(&s, "ada", "admin").await;
    let tab = chromium.open(&format!("{}/console/admin", s.url)).await;
    browser_sign_in(&tab, "ada", "/console/admin").await;
    tab.weigh("admin").await;

    tab.click("#new-user summary").await;
    tab.type_into("#new-user input[name=username]", "tom").await;
    tab.choose("#new-user select[name=role]", "technician").await;
    tab.type_into("#new-user input[name=password]", PASSWORD).await;
    tab.type_into("#new-user textarea[name=accounts]", "acct-1").await;
    tab.click("#new-user button[type=submit]").await;
    tab.wait("document.querySelector('tr[data-user=\"tom\"] .role-name')?.textContent === 'technician'", "tom's row")
        .await;
    let (_, users) = s.send("GET", "/v1/users", &s.admin_token, None, None).await;
    let tom = users["users"].as_array().unwrap().iter().find(|u| u["username"] == "tom").unwrap().clone();
    assert_eq!(tom["accounts"], json!(["acct-1"]), "{tom}");

    tab.click("#new-token summary").await;
    tab.click("#new-token button[type=submit]").await;
    tab.wait("document.querySelector('#new-token code.secret')", "the join token").await;
    let token: String = tab.js("document.querySelector('#new-token code.secret').textContent").await;
    assert!(token.len() > 20, "{token}");
    tab.wait(
        "[...document.querySelectorAll('tr[data-token]')].some(r => r.textContent.includes('by ada'))",
        "the token's row",
    )
    .await;
    let page: String = tab.js("document.querySelector('#join-tokens').innerHTML").await;
    assert!(!page.contains(&token), "the list never shows the secret again");
    tab.screenshot("admin").await;

    // Disabling asks for a second press; the first alone changes nothing.
    let disable = "tr[data-user=\"tom\"] form[data-tool=\"user.disable\"] button";
    tab.click(disable).await;
    tab.wait(
        &format!("document.querySelector('{disable}').textContent.includes('press again')"),
        "the second-press prompt",
    )
    .await;
    let (_, users) = s.send("GET", "/v1/users", &s.admin_token, None, None).await;
    assert!(users["users"].as_array().unwrap().iter().any(|u| u["username"] == "tom" && u["disabled"] == false));

    // The new person signs in with what the admin set.
    tab.click(".who button[type=submit]").await;
    browser_sign_in(&tab, "tom", "/console/jobs").await;
    chromium.close().await;
    s.stop();
}

#[tokio::test]
async fn every_screen_labels_its_controls_and_fits_a_360_px_phone() {
    let Some(chromium) = Chromium::launch(360, 740, true).await else { return };
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    add_user(&s, "ada", "admin").await;
    let crew = support::Crew::new(&s).await;
    let id = support::dispatched_ticket(&s, &crew).await;
    decided_handoff(&s, "reject").await;
    let tab = chromium.open(&format!("{}/console/sign-in", s.url)).await;
    tab.audit("sign-in").await;
    browser_sign_in(&tab, "ada", "/console/cockpit").await;
    for page in [
        "/console/cockpit".to_owned(),
        format!("/console/tickets/{id}"),
        "/console/handoffs?status=DECIDED".to_owned(),
        "/console/dead-letters".to_owned(),
        "/console/tasks".to_owned(),
        "/console/nodes".to_owned(),
        "/console/insights".to_owned(),
        "/console/admin".to_owned(),
    ] {
        tab.goto(&page).await;
        tab.wait("document.readyState === 'complete' && document.querySelector('main h1')", &page).await;
        // Open every folded form, so what it holds is checked too.
        tab.js::<bool>("(document.querySelectorAll('details').forEach(d => d.open = true), true)").await;
        tab.audit(&page).await;
        if page == "/console/cockpit" {
            tab.screenshot("cockpit-360").await;
        }
    }
    chromium.close().await;
    s.stop();
}
