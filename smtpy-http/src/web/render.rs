//! Page plumbing shared by every web module: the layout's data
//! ([`Chrome`]), flash messages, HTML responses with the page headers,
//! errors as pages ([`WebError`]), form errors ([`FormErrors`]), and the
//! middleware ([`layer`]) that runs the CSRF guard and the flash cookie.

use askama::Template;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use crate::auth::{Principal, cookie};
use crate::problem::{FieldError, Problem, ProblemType};
use crate::state::ApiState;

/// The Content-Security-Policy of every page: scripts, styles and images
/// only from this origin, no inline script or style, forms only to this
/// origin, never framed.
pub const WEB_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The cookie carrying a one-shot message to the next page.
pub(crate) const FLASH_COOKIE: &str = "smtpy_flash";

/// How a flash message looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlashKind {
    /// Something worked.
    Ok,
    /// Something failed.
    Error,
}

/// A one-shot message shown at the top of the next page.
#[derive(Debug, Clone)]
pub(crate) struct Flash {
    /// Success or failure.
    pub kind: FlashKind,
    /// The text (plain; escaped when shown).
    pub text: String,
}

impl Flash {
    /// A success message.
    pub(crate) fn ok(text: impl Into<String>) -> Flash {
        Flash {
            kind: FlashKind::Ok,
            text: text.into(),
        }
    }
    /// A failure message.
    pub(crate) fn error(text: impl Into<String>) -> Flash {
        Flash {
            kind: FlashKind::Error,
            text: text.into(),
        }
    }
    /// `ok` or `error`, for the template's CSS class.
    pub(crate) fn class(&self) -> &'static str {
        match self.kind {
            FlashKind::Ok => "ok",
            FlashKind::Error => "error",
        }
    }
    fn encode(&self) -> String {
        let tag = match self.kind {
            FlashKind::Ok => 'o',
            FlashKind::Error => 'e',
        };
        let text: String = self.text.chars().take(500).collect();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{tag}{text}"))
    }
    fn decode(value: &str) -> Option<Flash> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(value)
            .ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let mut chars = text.chars();
        let kind = match chars.next()? {
            'o' => FlashKind::Ok,
            'e' => FlashKind::Error,
            _ => return None,
        };
        Some(Flash {
            kind,
            text: chars.collect(),
        })
    }
}

/// What the layout (`web/base.html`) needs on every signed-in page. Put it
/// in a template struct as the field `chrome`.
#[derive(Debug, Clone)]
pub(crate) struct Chrome {
    /// The page's `<title>` and `<h1>`.
    pub title: String,
    /// The nav entry to mark current: `aliases`, `domains`, `mailboxes`,
    /// `rules`, `keys`, `account`, `admin`, or empty.
    pub section: &'static str,
    /// The signed-in account's address; empty before sign-in.
    pub user_email: String,
    /// Whether to show the admin entries.
    pub is_admin: bool,
    /// The token every form of the page puts in its `_csrf` field.
    pub csrf: String,
    /// The message left by the previous request, if any.
    pub flash: Option<Flash>,
}

impl Chrome {
    /// The chrome of a page shown before sign-in, whose forms carry the
    /// pre-session token `csrf`.
    pub(crate) fn public(title: impl Into<String>, csrf: String, flash: Option<Flash>) -> Chrome {
        Chrome {
            title: title.into(),
            section: "",
            user_email: String::new(),
            is_admin: false,
            csrf,
            flash,
        }
    }
    /// Whether a user is signed in.
    pub(crate) fn signed_in(&self) -> bool {
        !self.user_email.is_empty()
    }
    /// `aria-current="page"` for the current nav entry (used by the layout).
    pub(crate) fn current(&self, section: &str) -> &'static str {
        if self.section == section {
            "page"
        } else {
            "false"
        }
    }
}

/// A page: `tpl` rendered with status 200.
pub(crate) fn page<T: Template>(tpl: &T) -> Response {
    page_with_status(StatusCode::OK, tpl)
}

/// A page rendered with `status` (e.g. a form shown again with errors:
/// 422 for invalid values, the problem's status otherwise).
pub(crate) fn page_with_status<T: Template>(status: StatusCode, tpl: &T) -> Response {
    match tpl.render() {
        Ok(body) => {
            let mut resp = (status, body).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot render a page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered; the error has been logged",
            )
                .into_response()
        }
    }
}

/// A `303 See Other` to `to` (a path of this site) that leaves `flash` for
/// the next page.
pub(crate) fn redirect_with(to: &str, flash: Flash) -> Response {
    let mut resp = redirect(to);
    let value = format!(
        "{FLASH_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=60",
        flash.encode()
    );
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// A `303 See Other` to `to`, a path of this site.
pub(crate) fn redirect(to: &str) -> Response {
    let to = if safe_local_path(to) {
        to
    } else {
        "/app/aliases"
    };
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// Whether `to` is a path on this site (so a `next=` parameter cannot send
/// the browser elsewhere): starts with one `/`, no `//`, no backslash, no
/// control characters.
pub(crate) fn safe_local_path(to: &str) -> bool {
    to.starts_with('/')
        && !to.starts_with("//")
        && !to.contains('\\')
        && !to.chars().any(char::is_control)
        && to.len() <= 512
}

/// The problem of a failed form, split for display: the summary at the top
/// and each field's message beside its input.
#[derive(Debug, Clone, Default)]
pub(crate) struct FormErrors {
    /// The problem's title and detail, e.g. "Conflict: alias exists already".
    pub summary: Option<String>,
    /// Field name → message.
    pub fields: Vec<FieldError>,
}

impl FormErrors {
    /// No errors (a fresh form).
    pub(crate) fn none() -> FormErrors {
        FormErrors::default()
    }
    /// The errors of `problem`.
    pub(crate) fn of(problem: &Problem) -> FormErrors {
        FormErrors {
            summary: Some(problem_text(problem)),
            fields: problem.errors.clone(),
        }
    }
    /// Whether there is anything to show.
    pub(crate) fn any(&self) -> bool {
        self.summary.is_some()
    }
    /// The message for field `name`, or "" (templates:
    /// `{% if !errors.field("x").is_empty() %}`).
    pub(crate) fn field(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|f| f.field == name || f.field.starts_with(&format!("{name}/")))
            .map_or("", |f| f.message.as_str())
    }
}

/// The status to show a form again with after `problem`.
pub(crate) fn status_of(problem: &Problem) -> StatusCode {
    problem.kind.status()
}

/// A problem as one sentence for people: its title and its detail.
pub(crate) fn problem_text(problem: &Problem) -> String {
    let mut text = format!("{}: {}", problem.kind.title(), problem.detail);
    if let Some(after) = problem.retry_after {
        text.push_str(&format!(" (try again in {} s)", after.as_secs().max(1)));
    }
    text
}

#[derive(Template)]
#[template(path = "web/error.html")]
struct ErrorPage {
    chrome: Chrome,
    status: u16,
    detail: String,
}

/// An error shown as a page. Handlers return `Result<Response, WebError>`;
/// `?` on a [`Problem`] turns it into this. An authentication problem
/// becomes a redirect to the sign-in page.
/// (Boxed: handlers return it in the error arm of every `Result`, which
/// stays small.)
#[derive(Debug)]
pub(crate) struct WebError(Box<(Problem, Option<Chrome>)>);

impl WebError {
    /// Shows `problem` inside the signed-in layout of `chrome`.
    pub(crate) fn within(problem: Problem, chrome: Chrome) -> WebError {
        WebError(Box::new((problem, Some(chrome))))
    }
}

impl From<Problem> for WebError {
    fn from(problem: Problem) -> WebError {
        WebError(Box::new((problem, None)))
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (problem, chrome) = *self.0;
        error_response(&problem, chrome)
    }
}

/// The page for `problem`.
pub(crate) fn error_response(problem: &Problem, chrome: Option<Chrome>) -> Response {
    if problem.kind == ProblemType::Unauthenticated {
        return redirect_with("/login", Flash::error(problem_text(problem)));
    }
    let status = problem.kind.status();
    let heading = match problem.kind {
        ProblemType::Csrf => "Form refused".to_owned(),
        other => other.title().to_owned(),
    };
    let detail = match problem.kind {
        ProblemType::Csrf => format!(
            "This form was refused: it has expired or was sent from another site ({}). Go back, reload the page and try again.",
            problem.detail
        ),
        _ => problem.detail.clone(),
    };
    let mut chrome = chrome.unwrap_or_else(|| Chrome::public(String::new(), String::new(), None));
    chrome.title = heading;
    let mut resp = page_with_status(
        status,
        &ErrorPage {
            chrome,
            status: status.as_u16(),
            detail,
        },
    );
    if let Some(after) = problem.retry_after
        && let Ok(v) = HeaderValue::from_str(&after.as_secs().max(1).to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// The flash message a request brought (read by [`layer`]).
#[derive(Debug, Clone)]
pub(crate) struct IncomingFlash(pub Option<Flash>);

/// The web middleware: the CSRF guard on `POST`, the flash message into
/// the request's extensions (and its cookie cleared once a page showed
/// it), and the page headers (CSP, `no-store`).
pub(crate) async fn layer(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    if !super::is_web_path(req.uri().path()) {
        return next.run(req).await;
    }
    let static_asset = req.uri().path().starts_with("/static/");
    let mut req = req;
    if req.method() == axum::http::Method::POST {
        req = match super::csrf::guard(&state, req).await {
            Ok(r) => r,
            Err(problem) => return with_page_headers(error_response(&problem, None), false),
        };
    }
    let flash = cookie(req.headers(), FLASH_COOKIE).and_then(Flash::decode);
    let had_flash = flash.is_some();
    req.extensions_mut().insert(IncomingFlash(flash));
    let mut resp = next.run(req).await;
    if had_flash && resp.status().is_success() && !static_asset {
        resp.headers_mut().append(
            header::SET_COOKIE,
            HeaderValue::from_static("smtpy_flash=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        );
    }
    with_page_headers(resp, static_asset)
}

pub(crate) fn with_page_headers(mut resp: Response, static_asset: bool) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(WEB_CSP),
    );
    // Not `no-referrer`: under it browsers send `Origin: null` with every
    // form post, and the same-origin check could not tell our own forms
    // from another site's. `same-origin` still sends nothing to other sites.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !static_asset {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// Whether the request asked for JSON (the in-place toggles of `app.js`
/// send `Accept: application/json` and get a small JSON answer instead of
/// a redirect).
pub(crate) fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The account's chrome for a signed-in page.
pub(crate) fn chrome_for(
    principal: &Principal,
    csrf: &str,
    flash: Option<Flash>,
    section: &'static str,
    title: impl Into<String>,
) -> Chrome {
    Chrome {
        title: title.into(),
        section,
        user_email: principal.user.email.to_string(),
        is_admin: principal.user.is_admin(),
        csrf: csrf.to_owned(),
        flash,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flash_round_trips_and_rejects_junk() {
        let f = Flash::error("alias <x@y> exists — again");
        let back = Flash::decode(&f.encode()).expect("decodes");
        assert_eq!(back.kind, FlashKind::Error);
        assert_eq!(back.text, "alias <x@y> exists — again");
        assert!(Flash::decode("not base64 !").is_none());
        assert!(Flash::decode("").is_none());
    }

    #[test]
    fn next_paths_stay_on_this_site() {
        assert!(safe_local_path("/app/aliases?q=x"));
        assert!(!safe_local_path("//evil.example/"));
        assert!(!safe_local_path("https://evil.example/"));
        assert!(!safe_local_path("/\\evil.example"));
        assert!(!safe_local_path("/a\r\nSet-Cookie: x"));
        let r = redirect("https://evil.example/");
        assert_eq!(
            r.headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok()),
            Some("/app/aliases")
        );
    }
}
