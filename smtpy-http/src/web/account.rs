//! The signed-in account's page, `/app/account`: settings, password,
//! second factor, sessions, export and import. Every form calls the API
//! handler of the same change (`PATCH /me`, `POST /auth/password`,
//! `/me/totp…`, `/me/sessions…`, `/export`, `/import`).

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::problem::{ApiJson, ApiPath, Problem};
use crate::routes::accounts::totp::{self, DisableTotp, EnableTotp};
use crate::routes::accounts::{self, ChangePassword};
use crate::routes::me::{
    self, DmarcQuarantine, DmarcReject, SessionItem, SettingsPatch, UserView, wire,
};
use crate::routes::transfer::{self, ExportDoc, ImportJson, ImportReport};
use crate::state::ApiState;

use super::csrf::{WebForm, form_pairs, multipart_parts};
use super::render::{Chrome, Flash, FormErrors, WebError, page, page_with_status, redirect_with};
use super::session::WebUser;
use super::text::when;

/// Where every form of this page goes back to.
const HOME: &str = "/app/account";

/// The settings form's values (the account's, or the ones just sent back
/// with an error).
#[derive(Debug, Clone)]
struct SettingsValues {
    dmarc_reject: String,
    dmarc_quarantine: String,
    subject_tag: String,
    sender_format: String,
    notify_bounces: bool,
    notify_quarantine: bool,
}

impl SettingsValues {
    fn of(user: &UserView) -> SettingsValues {
        let s = &user.settings;
        SettingsValues {
            dmarc_reject: wire(&s.dmarc_reject),
            dmarc_quarantine: wire(&s.dmarc_quarantine),
            subject_tag: s.subject_tag.clone(),
            sender_format: s.sender_format.clone().unwrap_or_default(),
            notify_bounces: s.notify_bounces,
            notify_quarantine: s.notify_quarantine,
        }
    }
}

/// One row of the sessions table.
#[derive(Debug, Clone)]
struct SessionRow {
    id: String,
    current: bool,
    created: String,
    last_seen: String,
    ip: String,
    user_agent: String,
}

impl From<SessionItem> for SessionRow {
    fn from(s: SessionItem) -> SessionRow {
        SessionRow {
            id: s.id,
            current: s.current,
            created: when(s.created_at),
            last_seen: when(s.last_seen_at),
            ip: s.ip.unwrap_or_default(),
            user_agent: s.user_agent.unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "web/account/index.html")]
struct AccountPage {
    chrome: Chrome,
    user: UserView,
    created: String,
    last_login: String,
    settings: SettingsValues,
    sessions: Vec<SessionRow>,
    min_password: usize,
    settings_errors: FormErrors,
    password_errors: FormErrors,
    totp_errors: FormErrors,
    import_errors: FormErrors,
    import_text: String,
}

/// What to show again after a failed form.
#[derive(Default)]
struct Failed {
    settings: Option<(FormErrors, SettingsValues)>,
    password: Option<FormErrors>,
    totp: Option<FormErrors>,
    import: Option<(FormErrors, String)>,
}

/// The account page, with `failed`'s errors (and `status`).
async fn account_page(
    state: &ApiState,
    user: &WebUser,
    status: StatusCode,
    failed: Failed,
) -> Result<Response, WebError> {
    let mut chrome = user.chrome("account", "Account");
    if status != StatusCode::OK {
        // A form shown again: the message of an earlier request is stale
        // (and its cookie stays until a page succeeds).
        chrome.flash = None;
    }
    let axum::Json(list) = me::list_sessions(State(state.clone()), user.principal.clone())
        .await
        .map_err(|p| WebError::within(p, chrome.clone()))?;
    let view = UserView::from(&user.principal.user);
    let (settings_errors, settings) = failed
        .settings
        .unwrap_or_else(|| (FormErrors::none(), SettingsValues::of(&view)));
    let (import_errors, import_text) = failed.import.unwrap_or_default();
    Ok(page_with_status(
        status,
        &AccountPage {
            chrome,
            created: when(view.created_at),
            last_login: view.last_login_at.map(when).unwrap_or_default(),
            user: view,
            settings,
            sessions: list.items.into_iter().map(SessionRow::from).collect(),
            min_password: state.config().min_password_chars.max(1),
            settings_errors,
            password_errors: failed.password.unwrap_or_default(),
            totp_errors: failed.totp.unwrap_or_default(),
            import_errors,
            import_text,
        },
    ))
}

async fn show(State(state): State<ApiState>, user: WebUser) -> Result<Response, WebError> {
    account_page(&state, &user, StatusCode::OK, Failed::default()).await
}

/// The settings form (every field `PATCH /me` takes; the checkboxes are
/// absent when off).
#[derive(Debug, Deserialize)]
struct SettingsForm {
    dmarc_reject: Option<DmarcReject>,
    dmarc_quarantine: Option<DmarcQuarantine>,
    subject_tag: Option<String>,
    sender_format: Option<String>,
    notify_bounces: Option<String>,
    notify_quarantine: Option<String>,
}

async fn save_settings(
    State(state): State<ApiState>,
    user: WebUser,
    WebForm(form): WebForm<SettingsForm>,
) -> Result<Response, WebError> {
    let patch = SettingsPatch {
        dmarc_reject: form.dmarc_reject,
        dmarc_quarantine: form.dmarc_quarantine,
        subject_tag: form.subject_tag.clone(),
        sender_format: form.sender_format.as_deref().map(|s| s.trim().to_owned()),
        notify_bounces: Some(form.notify_bounces.is_some()),
        notify_quarantine: Some(form.notify_quarantine.is_some()),
    };
    match me::patch_me(State(state.clone()), user.principal.clone(), ApiJson(patch)).await {
        Ok(_) => Ok(redirect_with(HOME, Flash::ok("Your settings are saved."))),
        Err(problem) => {
            let current = SettingsValues::of(&UserView::from(&user.principal.user));
            let values = SettingsValues {
                dmarc_reject: form.dmarc_reject.map_or(current.dmarc_reject, |v| wire(&v)),
                dmarc_quarantine: form
                    .dmarc_quarantine
                    .map_or(current.dmarc_quarantine, |v| wire(&v)),
                subject_tag: form.subject_tag.unwrap_or_default(),
                sender_format: form.sender_format.unwrap_or_default(),
                notify_bounces: form.notify_bounces.is_some(),
                notify_quarantine: form.notify_quarantine.is_some(),
            };
            let failed = Failed {
                settings: Some((FormErrors::of(&problem), values)),
                ..Failed::default()
            };
            account_page(&state, &user, problem.kind.status(), failed).await
        }
    }
}

/// The password change form.
#[derive(Debug, Deserialize)]
struct PasswordForm {
    current_password: String,
    new_password: String,
}

async fn change_password(
    State(state): State<ApiState>,
    user: WebUser,
    WebForm(form): WebForm<PasswordForm>,
) -> Result<Response, WebError> {
    let body = ChangePassword {
        current_password: form.current_password,
        new_password: form.new_password,
    };
    match accounts::change_password(State(state.clone()), user.principal.clone(), ApiJson(body))
        .await
    {
        Ok(_) => Ok(redirect_with(
            HOME,
            Flash::ok("Your password is changed; your other sessions have ended."),
        )),
        Err(problem) => {
            let failed = Failed {
                password: Some(FormErrors::of(&problem)),
                ..Failed::default()
            };
            account_page(&state, &user, problem.kind.status(), failed).await
        }
    }
}

#[derive(Template)]
#[template(path = "web/account/totp.html")]
struct TotpPage {
    chrome: Chrome,
    secret: String,
    otpauth_uri: String,
    /// The address as a QR code (inline SVG drawn by [`super::qr`]).
    qr: Option<String>,
    errors: FormErrors,
}

fn totp_qr(otpauth_uri: &str) -> Option<String> {
    if !otpauth_uri.starts_with("otpauth://") {
        return None;
    }
    super::qr::svg(
        otpauth_uri,
        "QR code of the otpauth address: scan it with your authenticator app",
    )
}

/// Draws a secret to enrol (`POST /me/totp/setup`; nothing is stored yet)
/// and shows it with the form confirming it.
async fn totp_setup(State(state): State<ApiState>, user: WebUser) -> Result<Response, WebError> {
    let chrome = user.chrome("account", "Set up a second factor");
    if user.principal.user.totp.is_some() {
        return Ok(redirect_with(
            HOME,
            Flash::error(
                "A second factor is enabled already: turn it off first to set up another.",
            ),
        ));
    }
    let axum::Json(setup) = totp::setup(State(state), user.principal.clone())
        .await
        .map_err(|p| WebError::within(p, chrome.clone()))?;
    Ok(page(&TotpPage {
        chrome,
        secret: setup.secret,
        qr: totp_qr(&setup.otpauth_uri),
        otpauth_uri: setup.otpauth_uri,
        errors: FormErrors::none(),
    }))
}

/// The enrolment's confirmation: the secret shown (sent back) and a code.
#[derive(Debug, Deserialize)]
struct EnableForm {
    secret: String,
    #[serde(default)]
    otpauth_uri: String,
    code: String,
}

async fn totp_enable(
    State(state): State<ApiState>,
    user: WebUser,
    WebForm(form): WebForm<EnableForm>,
) -> Result<Response, WebError> {
    let body = EnableTotp {
        secret: form.secret.clone(),
        code: form.code.trim().replace(' ', ""),
    };
    match totp::enable(State(state), user.principal.clone(), ApiJson(body)).await {
        Ok(_) => Ok(redirect_with(
            HOME,
            Flash::ok(
                "The second factor is on: signing in now asks for a code of your authenticator app.",
            ),
        )),
        Err(problem) => Ok(page_with_status(
            problem.kind.status(),
            &TotpPage {
                chrome: Chrome {
                    flash: None,
                    ..user.chrome("account", "Set up a second factor")
                },
                secret: form.secret,
                qr: totp_qr(&form.otpauth_uri),
                otpauth_uri: form.otpauth_uri,
                errors: FormErrors::of(&problem),
            },
        )),
    }
}

/// Turning the second factor off: the password or a current code.
#[derive(Debug, Deserialize)]
struct DisableForm {
    password: Option<String>,
    code: Option<String>,
}

async fn totp_disable(
    State(state): State<ApiState>,
    user: WebUser,
    WebForm(form): WebForm<DisableForm>,
) -> Result<Response, WebError> {
    let filled = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let body = DisableTotp {
        password: filled(form.password),
        code: filled(form.code).map(|c| c.trim().replace(' ', "")),
    };
    match totp::disable(State(state.clone()), user.principal.clone(), ApiJson(body)).await {
        Ok(_) => Ok(redirect_with(
            HOME,
            Flash::ok("The second factor is off: signing in needs only your password."),
        )),
        Err(problem) => {
            let failed = Failed {
                totp: Some(FormErrors::of(&problem)),
                ..Failed::default()
            };
            account_page(&state, &user, problem.kind.status(), failed).await
        }
    }
}

/// Ends one session (`DELETE /me/sessions/{id}`); another account's is the
/// 404 page.
async fn revoke_session(
    State(state): State<ApiState>,
    user: WebUser,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let chrome = user.chrome("account", "Account");
    me::delete_session(State(state), user.principal.clone(), ApiPath(id))
        .await
        .map_err(|p| WebError::within(p, chrome))?;
    Ok(redirect_with(HOME, Flash::ok("The session has ended.")))
}

/// Ends every other session (`DELETE /me/sessions`).
async fn revoke_others(State(state): State<ApiState>, user: WebUser) -> Result<Response, WebError> {
    match me::delete_sessions(State(state), user.principal.clone()).await {
        Ok(axum::Json(ended)) => {
            let text = match ended.ended {
                0 => "There was no other session.".to_owned(),
                1 => "Signed out of 1 other session.".to_owned(),
                n => format!("Signed out of {n} other sessions."),
            };
            Ok(redirect_with(HOME, Flash::ok(text)))
        }
        Err(problem) => Ok(redirect_with(
            HOME,
            Flash::error(super::render::problem_text(&problem)),
        )),
    }
}

/// The export document as a download (`GET /export`).
async fn export(State(state): State<ApiState>, user: WebUser) -> Result<Response, WebError> {
    let chrome = user.chrome("account", "Account");
    let axum::Json(doc) = transfer::export(State(state), user.principal.clone())
        .await
        .map_err(|p| WebError::within(p, chrome.clone()))?;
    let body = serde_json::to_vec_pretty(&doc)
        .map_err(|e| WebError::within(Problem::internal(e), chrome))?;
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"smtpy-export.json\""),
    );
    Ok(resp)
}

#[derive(Template)]
#[template(path = "web/account/import.html")]
struct ImportPage {
    chrome: Chrome,
    report: ImportReport,
}

/// The import document of the form: the file if one was chosen, else the
/// text area. Multipart (the file input) or urlencoded (text only).
fn import_document(headers: &HeaderMap, body: &[u8]) -> Option<Vec<u8>> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let not_blank = |d: &[u8]| d.iter().any(|b| !b.is_ascii_whitespace());
    if content_type.starts_with("multipart/form-data") {
        let parts = multipart_parts(content_type, body);
        let file = parts
            .iter()
            .find(|p| p.name == "file" && p.filename.is_some() && not_blank(&p.data));
        let text = parts
            .iter()
            .find(|p| p.name == "document" && p.filename.is_none() && not_blank(&p.data));
        file.or(text).map(|p| p.data.clone())
    } else {
        form_pairs(body)
            .into_iter()
            .find(|(k, v)| k == "document" && not_blank(v.as_bytes()))
            .map(|(_, v)| v.into_bytes())
    }
}

/// Imports an export document (`POST /import`) and shows its report.
async fn import(
    State(state): State<ApiState>,
    user: WebUser,
    headers: HeaderMap,
    req: axum::extract::Request,
) -> Result<Response, WebError> {
    // The API's import limit, not the general body limit (the CSRF guard
    // read the body with the same limit).
    let limit = state.config().import_body_limit;
    let body = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| {
            Problem::new(
                crate::problem::ProblemType::TooLarge,
                format!("the import is larger than {limit} bytes"),
            )
        })?;
    let document = import_document(&headers, &body);
    let text_of = |d: &Option<Vec<u8>>| {
        d.as_deref()
            .map(|b| String::from_utf8_lossy(b).chars().take(100_000).collect())
            .unwrap_or_default()
    };
    let failed = |problem: Problem, text: String| Failed {
        import: Some((FormErrors::of(&problem), text)),
        ..Failed::default()
    };
    let Some(bytes) = document.as_deref() else {
        let problem = Problem::invalid("document", "choose an export file or paste a document");
        return account_page(
            &state,
            &user,
            problem.kind.status(),
            failed(problem, String::new()),
        )
        .await;
    };
    let doc = match axum::Json::<ExportDoc>::from_bytes(bytes) {
        Ok(axum::Json(doc)) => doc,
        Err(rejection) => {
            let problem = Problem::from(rejection);
            let status = problem.kind.status();
            return account_page(&state, &user, status, failed(problem, text_of(&document))).await;
        }
    };
    match transfer::import(
        State(state.clone()),
        user.principal.clone(),
        ImportJson(doc),
    )
    .await
    {
        Ok(axum::Json(report)) => Ok(page(&ImportPage {
            chrome: user.chrome("account", "Import report"),
            report,
        })),
        Err(problem) => {
            let status = problem.kind.status();
            account_page(&state, &user, status, failed(problem, text_of(&document))).await
        }
    }
}

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/app/account", get(show).post(save_settings))
        .route("/app/account/password", post(change_password))
        .route("/app/account/totp", post(totp_setup))
        .route("/app/account/totp/enable", post(totp_enable))
        .route("/app/account/totp/disable", post(totp_disable))
        .route("/app/account/sessions/{id}/revoke", post(revoke_session))
        .route("/app/account/sessions/revoke-others", post(revoke_others))
        .route("/app/account/export", get(export))
        .route("/app/account/import", post(import))
}
