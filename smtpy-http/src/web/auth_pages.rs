//! Pages shown before sign-in: registration (open, or with an invitation)
//! and the password reset (asking for the mail, then choosing a new
//! password with its token).
//!
//! Tokens from mail (invitation, reset) come in the URL fragment
//! (`/register#token=…`, `/reset-password/confirm#token=…`): the browser
//! never sends a fragment, and `app.js` copies it into the form's
//! `data-fragment-token` input. Every form is checked against the
//! pre-session token (see [`super::csrf::presession`]).

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::auth::ClientIp;
use crate::problem::{ApiJson, Problem};
use crate::routes::accounts::{self, RegisterRequest, ResetConfirm, ResetRequest};
use crate::state::ApiState;

use super::csrf::{WebForm, presession};
use super::render::{
    Chrome, Flash, FormErrors, IncomingFlash, WebError, page_with_status, redirect_with,
};

/// The message after a reset request, whether the account exists or not
/// (as the API, the page does not tell).
const RESET_SENT: &str = "If an account has this address, a mail with a link to choose a new password is on its way. The link works once and expires soon.";

/// Renders a public page whose forms carry the pre-session token: `build`
/// gets the token; the cookie is set when the browser had none. (A failure
/// to draw a token is the error page.)
fn public_page<T: Template>(
    state: &ApiState,
    headers: &HeaderMap,
    status: StatusCode,
    build: impl FnOnce(String) -> T,
) -> Response {
    let (token, set) = match presession(state.config(), headers) {
        Ok(t) => t,
        Err(problem) => return WebError::from(problem).into_response(),
    };
    let mut resp = page_with_status(status, &build(token));
    if let Some(set) = set {
        resp.headers_mut().append(header::SET_COOKIE, set);
    }
    resp
}

fn incoming(flash: Option<axum::Extension<IncomingFlash>>) -> Option<Flash> {
    flash.and_then(|f| f.0.0.clone())
}

/// A form value, `None` when blank.
fn filled(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

#[derive(Template)]
#[template(path = "web/auth/register.html")]
struct RegisterPage {
    chrome: Chrome,
    email: String,
    invitation: String,
    /// Open registration: the invitation is optional.
    open: bool,
    min_password: usize,
    errors: FormErrors,
}

async fn register_show(
    State(state): State<ApiState>,
    headers: HeaderMap,
    flash: Option<axum::Extension<IncomingFlash>>,
) -> Response {
    let flash = incoming(flash);
    public_page(&state, &headers, StatusCode::OK, |csrf| RegisterPage {
        chrome: Chrome::public("Create an account", csrf, flash),
        email: String::new(),
        invitation: String::new(),
        open: state.features().get().registration,
        min_password: state.config().min_password_chars.max(1),
        errors: FormErrors::none(),
    })
}

/// The registration form.
#[derive(Debug, Deserialize)]
struct RegisterForm {
    email: String,
    password: String,
    invitation: Option<String>,
}

async fn register_submit(
    State(state): State<ApiState>,
    ip: ClientIp,
    headers: HeaderMap,
    WebForm(form): WebForm<RegisterForm>,
) -> Result<Response, WebError> {
    let invitation = filled(form.invitation);
    let request = RegisterRequest {
        email: form.email.clone(),
        password: form.password,
        invitation: invitation.clone(),
    };
    match accounts::register(State(state.clone()), ip, ApiJson(request)).await {
        // The API creates the account without signing it in.
        Ok(_) => Ok(redirect_with(
            "/login",
            Flash::ok("Your account is ready: sign in with your address and password."),
        )),
        Err(problem) => Ok(register_failed(
            &state, &headers, &problem, form.email, invitation,
        )),
    }
}

fn register_failed(
    state: &ApiState,
    headers: &HeaderMap,
    problem: &Problem,
    email: String,
    invitation: Option<String>,
) -> Response {
    public_page(state, headers, problem.kind.status(), |csrf| RegisterPage {
        chrome: Chrome::public("Create an account", csrf, None),
        email,
        invitation: invitation.unwrap_or_default(),
        open: state.features().get().registration,
        min_password: state.config().min_password_chars.max(1),
        errors: FormErrors::of(problem),
    })
}

#[derive(Template)]
#[template(path = "web/auth/reset_request.html")]
struct ResetRequestPage {
    chrome: Chrome,
    email: String,
    errors: FormErrors,
}

async fn reset_show(
    State(state): State<ApiState>,
    headers: HeaderMap,
    flash: Option<axum::Extension<IncomingFlash>>,
) -> Response {
    let flash = incoming(flash);
    public_page(&state, &headers, StatusCode::OK, |csrf| ResetRequestPage {
        chrome: Chrome::public("Reset your password", csrf, flash),
        email: String::new(),
        errors: FormErrors::none(),
    })
}

/// The reset request form.
#[derive(Debug, Deserialize)]
struct ResetRequestForm {
    email: String,
}

async fn reset_submit(
    State(state): State<ApiState>,
    ip: ClientIp,
    headers: HeaderMap,
    WebForm(form): WebForm<ResetRequestForm>,
) -> Result<Response, WebError> {
    let request = ResetRequest {
        email: form.email.clone(),
    };
    match accounts::reset_request(State(state.clone()), ip, ApiJson(request)).await {
        Ok(_) => Ok(redirect_with("/reset-password", Flash::ok(RESET_SENT))),
        Err(problem) => Ok(public_page(
            &state,
            &headers,
            problem.kind.status(),
            |csrf| ResetRequestPage {
                chrome: Chrome::public("Reset your password", csrf, None),
                email: form.email,
                errors: FormErrors::of(&problem),
            },
        )),
    }
}

#[derive(Template)]
#[template(path = "web/auth/reset_confirm.html")]
struct ResetConfirmPage {
    chrome: Chrome,
    token: String,
    min_password: usize,
    errors: FormErrors,
}

async fn confirm_show(
    State(state): State<ApiState>,
    headers: HeaderMap,
    flash: Option<axum::Extension<IncomingFlash>>,
) -> Response {
    let flash = incoming(flash);
    public_page(&state, &headers, StatusCode::OK, |csrf| ResetConfirmPage {
        chrome: Chrome::public("Choose a new password", csrf, flash),
        token: String::new(),
        min_password: state.config().min_password_chars.max(1),
        errors: FormErrors::none(),
    })
}

/// The new-password form.
#[derive(Debug, Deserialize)]
struct ResetConfirmForm {
    token: String,
    password: String,
}

async fn confirm_submit(
    State(state): State<ApiState>,
    ip: ClientIp,
    headers: HeaderMap,
    WebForm(form): WebForm<ResetConfirmForm>,
) -> Result<Response, WebError> {
    let token = form.token.trim().to_owned();
    let request = ResetConfirm {
        token: token.clone(),
        new_password: form.password,
    };
    match accounts::reset_confirm(State(state.clone()), ip, ApiJson(request)).await {
        Ok(_) => Ok(redirect_with(
            "/login",
            Flash::ok(
                "Your new password is set and every session of the account has ended: sign in with it.",
            ),
        )),
        Err(problem) => Ok(public_page(
            &state,
            &headers,
            problem.kind.status(),
            |csrf| ResetConfirmPage {
                chrome: Chrome::public("Choose a new password", csrf, None),
                token,
                min_password: state.config().min_password_chars.max(1),
                errors: FormErrors::of(&problem),
            },
        )),
    }
}

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/register", get(register_show).post(register_submit))
        .route("/reset-password", get(reset_show).post(reset_submit))
        .route(
            "/reset-password/confirm",
            get(confirm_show).post(confirm_submit),
        )
}
