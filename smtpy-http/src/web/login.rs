//! Sign in (with the second factor when the account has one) and sign out.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::auth::ClientIp;
use crate::problem::{ApiJson, ProblemType};
use crate::routes::accounts::{self, LoginRequest};
use crate::state::ApiState;

use super::csrf::{WebForm, presession};
use super::render::{
    Chrome, Flash, FormErrors, IncomingFlash, WebError, page_with_status, redirect, redirect_with,
    safe_local_path,
};
use super::session::WebUser;

#[derive(Template)]
#[template(path = "web/login.html")]
struct LoginPage {
    chrome: Chrome,
    email: String,
    next: String,
    /// Show the second-factor field (the account has one).
    ask_code: bool,
    errors: FormErrors,
    registration_open: bool,
}

#[derive(Debug, Deserialize)]
struct NextQuery {
    next: Option<String>,
}

fn clean_next(next: Option<&str>) -> String {
    next.filter(|n| safe_local_path(n) && (n.starts_with("/app") || n.starts_with("/admin")))
        .unwrap_or("/app/aliases")
        .to_owned()
}

/// Renders the sign-in page, setting the pre-session cookie if needed.
fn login_page(
    state: &ApiState,
    headers: &HeaderMap,
    status: StatusCode,
    mut page: LoginPage,
) -> Result<Response, WebError> {
    let (token, set) = presession(state.config(), headers)?;
    page.chrome.csrf = token;
    let mut resp = page_with_status(status, &page);
    if let Some(set) = set {
        resp.headers_mut().append(header::SET_COOKIE, set);
    }
    Ok(resp)
}

async fn show(
    State(state): State<ApiState>,
    user: Option<WebUser>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<NextQuery>,
    flash: Option<axum::Extension<IncomingFlash>>,
) -> Result<Response, WebError> {
    let next = clean_next(q.next.as_deref());
    if user.is_some() {
        return Ok(redirect(&next));
    }
    let flash = flash.and_then(|f| f.0.0.clone());
    login_page(
        &state,
        &headers,
        StatusCode::OK,
        LoginPage {
            chrome: Chrome::public("Sign in", String::new(), flash),
            email: String::new(),
            next,
            ask_code: false,
            errors: FormErrors::none(),
            registration_open: state.features().get().registration,
        },
    )
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    email: String,
    password: String,
    totp: Option<String>,
    next: Option<String>,
}

async fn submit(
    State(state): State<ApiState>,
    ip: ClientIp,
    headers: HeaderMap,
    WebForm(form): WebForm<LoginForm>,
) -> Result<Response, WebError> {
    let next = clean_next(form.next.as_deref());
    let totp = form
        .totp
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    let sent_code = totp.is_some();
    let request = LoginRequest {
        email: form.email.clone(),
        password: form.password,
        totp,
    };
    match accounts::login(State(state.clone()), ip, headers.clone(), ApiJson(request)).await {
        Ok(api) => {
            let mut resp = redirect_with(&next, Flash::ok("Signed in."));
            for cookie in api.headers().get_all(header::SET_COOKIE) {
                resp.headers_mut()
                    .append(header::SET_COOKIE, cookie.clone());
            }
            Ok(resp)
        }
        Err(problem) => {
            let ask_code = problem.kind == ProblemType::SecondFactorRequired;
            let mut errors = FormErrors::of(&problem);
            if ask_code && !sent_code {
                errors.summary = Some(
                    "This account has a second factor: enter your password again with the 6-digit code from your authenticator app."
                        .to_owned(),
                );
            }
            login_page(
                &state,
                &headers,
                problem.kind.status(),
                LoginPage {
                    chrome: Chrome::public("Sign in", String::new(), None),
                    email: form.email,
                    next,
                    ask_code,
                    errors,
                    registration_open: state.features().get().registration,
                },
            )
        }
    }
}

async fn logout(State(state): State<ApiState>, user: WebUser) -> Result<Response, WebError> {
    let api = accounts::logout(State(state), user.principal).await?;
    let mut resp = redirect_with("/login", Flash::ok("Signed out."));
    for cookie in api.headers().get_all(header::SET_COOKIE) {
        resp.headers_mut()
            .append(header::SET_COOKIE, cookie.clone());
    }
    Ok(resp.into_response())
}

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/login", get(show).post(submit))
        .route("/logout", post(logout))
}
