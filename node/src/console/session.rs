//! A browser's session: the access token in an `HttpOnly` cookie (script never sees a
//! token, so nothing can lift it from `localStorage`), the refresh token in a cookie
//! sent only to the session routes, and a CSRF token checked by double submit.
//!
//! Every cookie is `SameSite=Strict` (another site's page cannot make the browser send
//! it) and `Secure` when the server speaks HTTPS. A request authenticated by the cookie
//! that changes anything must also carry the CSRF cookie's value in `X-CSRF-Token` (or a
//! form's `csrf` field): a page on another origin can make a browser send cookies but
//! cannot read them.

use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use cookie::{Cookie, SameSite};
use serde::Deserialize;

use crate::api::App;
use crate::api::error::ApiError;
use crate::api::identity::{self, ACCESS_TTL_SECONDS, REFRESH_TTL_SECONDS, TokenPair};

/// The access token (`HttpOnly`, every path).
pub const ACCESS: &str = "dispatch_access";
/// The refresh token (`HttpOnly`, sent only to [`SESSION_PATH`]).
pub const REFRESH: &str = "dispatch_refresh";
/// The CSRF token: readable by the console's script, which echoes it in `X-CSRF-Token`.
pub const CSRF: &str = "dispatch_csrf";
/// Where the session routes live; the refresh cookie goes nowhere else.
pub const SESSION_PATH: &str = "/console/session";
/// The header a cookie-authenticated mutation echoes the CSRF cookie in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The value of cookie `name` in the request, if it has one.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| Cookie::split_parse(v).filter_map(Result::ok))
        .find(|c| c.name() == name)
        .map(|c| c.value_raw().unwrap_or_default())
        .filter(|v| !v.is_empty())
}

/// The access token a browser presents, once its CSRF token checks out for a request
/// that changes something. `None`: the request carries no session cookie.
pub fn access_token(parts: &Parts) -> Option<Result<&str, ApiError>> {
    let token = cookie(&parts.headers, ACCESS)?;
    let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    let echoed = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    if safe || csrf_matches(&parts.headers, echoed) { Some(Ok(token)) } else { Some(Err(csrf_refused())) }
}

/// Whether `echoed` is the request's CSRF cookie.
fn csrf_matches(headers: &HeaderMap, echoed: Option<&str>) -> bool {
    matches!((cookie(headers, CSRF), echoed), (Some(cookie), Some(echoed)) if cookie == echoed)
}

fn csrf_refused() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "CSRF_REJECTED",
        "a request signed in by cookie must echo the dispatch_csrf cookie in X-CSRF-Token; reload the page",
    )
}

/// The request's CSRF token, or a new one (with the cookie that sets it).
pub fn csrf_token(headers: &HeaderMap, https: bool) -> (String, Option<HeaderValue>) {
    match cookie(headers, CSRF) {
        Some(token) if token.len() == 43 && token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) => {
            (token.to_owned(), None)
        }
        _ => {
            let token = random_token();
            let set = set_cookie(CSRF, &token, "/", REFRESH_TTL_SECONDS, false, https);
            (token, Some(set))
        }
    }
}

fn random_token() -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    use base64::Engine;
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn set_cookie(name: &str, value: &str, path: &str, max_age: i64, http_only: bool, https: bool) -> HeaderValue {
    let cookie = Cookie::build((name, value))
        .path(path)
        .http_only(http_only)
        .secure(https)
        .same_site(SameSite::Strict)
        .max_age(cookie::time::Duration::seconds(max_age))
        .build();
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The cookies that hold a new token pair.
fn session_cookies(pair: &TokenPair, https: bool) -> [HeaderValue; 2] {
    [
        set_cookie(ACCESS, &pair.access_token, "/", ACCESS_TTL_SECONDS, true, https),
        set_cookie(REFRESH, &pair.refresh_token, SESSION_PATH, REFRESH_TTL_SECONDS, true, https),
    ]
}

/// The cookies that forget a session.
fn cleared_cookies(https: bool) -> [HeaderValue; 2] {
    [set_cookie(ACCESS, "", "/", 0, true, https), set_cookie(REFRESH, "", SESSION_PATH, 0, true, https)]
}

/// The sign-in form (`POST /console/session`).
#[derive(Deserialize)]
pub struct SignIn {
    username: String,
    password: String,
    csrf: String,
    /// The console page to go to after signing in.
    #[serde(default)]
    next: Option<String>,
}

/// Signs in: a login, its tokens in cookies. A form post is sent on to `next` (or the
/// sign-in page again, with the refusal); the console's script, which posts with
/// `X-CSRF-Token` to sign in again over an open page, gets `204` or the refusal's JSON.
pub async fn sign_in(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SignIn>,
) -> Response {
    let scripted = headers.contains_key(CSRF_HEADER);
    if !csrf_matches(&headers, Some(&form.csrf)) {
        return refused(scripted, csrf_refused(), form.next.as_deref());
    }
    let client = crate::api::client_address(&app.edge.trusted_proxies, peer.ip(), &headers);
    match identity::login(&app, form.username.trim(), &form.password, &client.to_string()).await {
        Ok(pair) => {
            let target = if scripted { None } else { Some(safe_next(form.next.as_deref())) };
            with_cookies(target, session_cookies(&pair, app.https))
        }
        Err(e) => refused(scripted, e, form.next.as_deref()),
    }
}

/// A refused sign-in: the JSON error for the script, else the sign-in page saying why.
fn refused(scripted: bool, error: ApiError, next: Option<&str>) -> Response {
    if scripted {
        return error.into_response();
    }
    let query = serde_urlencoded::to_string([("next", safe_next(next)), ("refused", error.code.to_owned())])
        .unwrap_or_default();
    Redirect::to(&format!("/console/sign-in?{query}")).into_response()
}

/// What the sign-in page says for a refusal's code (a link carries only the code, so it
/// cannot put words of its own on the page).
pub fn refusal_words(code: &str) -> &'static str {
    match code {
        "" => "",
        "UNAUTHORIZED" => "Wrong username or password, or the account is disabled.",
        "RATE_LIMITED" => "Too many attempts: wait a minute and try again.",
        "CSRF_REJECTED" => "The sign-in form had expired: try again.",
        _ => "Sign-in was refused: try again, or ask an admin.",
    }
}

/// Trades the refresh cookie for a new pair (`POST /console/session/refresh`, from the
/// console's script when an access token has run out).
pub async fn refresh(State(app): State<App>, headers: HeaderMap) -> Response {
    let echoed = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    if !csrf_matches(&headers, echoed) {
        return csrf_refused().into_response();
    }
    let Some(token) = cookie(&headers, REFRESH) else {
        return ApiError::unauthorized("no session to refresh: sign in").into_response();
    };
    match identity::refresh(&app, token).await {
        Ok(pair) => with_cookies(None, session_cookies(&pair, app.https)),
        Err(e) => {
            let mut response = e.into_response();
            for c in cleared_cookies(app.https) {
                response.headers_mut().append(header::SET_COOKIE, c);
            }
            response
        }
    }
}

/// The sign-out form: its CSRF token.
#[derive(Deserialize)]
pub struct SignOut {
    csrf: String,
}

/// Ends the session (`POST /console/session/end`) and clears its cookies.
pub async fn sign_out(State(app): State<App>, headers: HeaderMap, Form(form): Form<SignOut>) -> Response {
    if !csrf_matches(&headers, Some(&form.csrf)) {
        return csrf_refused().into_response();
    }
    let claims = cookie(&headers, ACCESS).and_then(|t| app.auth.verify(t).ok()).map(|(_, c)| c);
    let refresh = cookie(&headers, REFRESH);
    if claims.is_some() || refresh.is_some() {
        // A session already gone is as good as ended: the cookies go either way.
        if let Err(e) = identity::logout(&app, claims.as_ref(), refresh).await {
            tracing::info!(error = %e.message, "console sign-out of a session already ended");
        }
    }
    with_cookies(Some("/console/sign-in".into()), cleared_cookies(app.https))
}

fn with_cookies(target: Option<String>, cookies: [HeaderValue; 2]) -> Response {
    let mut response = match target {
        Some(target) => Redirect::to(&target).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    };
    for c in cookies {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    response
}

/// `next` when it is a console path on this server, else the console's home: a sign-in
/// link must not send a person to another site.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') && n.len() <= 512 => n.to_owned(),
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cookies_are_http_only_strict_and_secure_under_tls() {
        let pair = TokenPair {
            access_token: "a".into(),
            token_type: "Bearer",
            expires_in: ACCESS_TTL_SECONDS,
            refresh_token: "r".into(),
        };
        for https in [false, true] {
            for c in session_cookies(&pair, https) {
                let c = c.to_str().unwrap();
                assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict"), "{c}");
                assert_eq!(c.contains("Secure"), https, "{c}");
            }
        }
        let (_, csrf) = csrf_token(&HeaderMap::new(), true);
        let csrf = csrf.unwrap();
        let csrf = csrf.to_str().unwrap();
        assert!(csrf.contains("Secure") && !csrf.contains("HttpOnly"), "script reads the CSRF cookie: {csrf}");
    }

    #[test]
    fn next_stays_on_this_server() {
        for (next, want) in [
            (Some("/console/tickets/1?x=1"), "/console/tickets/1?x=1"),
            (Some("//evil.example/"), "/"),
            (Some("/\\evil.example"), "/"),
            (Some("https://evil.example/"), "/"),
            (None, "/"),
        ] {
            assert_eq!(safe_next(next), want, "{next:?}");
        }
    }
}
