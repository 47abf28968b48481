//! CSRF protection of the web forms, and reading form bodies.
//!
//! Every `POST` to a web path must carry a `_csrf` field equal to the
//! session's CSRF token (signed-in forms) or to the pre-session token of
//! the `smtpy_csrf` cookie (forms shown before sign-in: login, register,
//! password reset). The request's `Origin` (when sent) must be this site
//! and its `Sec-Fetch-Site` (when sent) `same-origin` or `none` — the same
//! check as the API's. A passing request gets the token as
//! `X-CSRF-Token`, so the API handlers the page calls see a request that
//! passed their own check.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, header};
use serde::de::DeserializeOwned;
use smtpy_core::model::SecretHash;

use crate::auth::{CSRF_HEADER, check_csrf, cookie, ct_eq, random_token, session_cookie_name};
use crate::config::HttpConfig;
use crate::problem::{Problem, ProblemType};
use crate::state::ApiState;

/// The page that takes a whole account export as a form.
pub(crate) const IMPORT_PATH: &str = "/app/account/import";

/// The form field carrying the token.
pub(crate) const FIELD: &str = "_csrf";

/// The pre-session token's cookie name under `config`.
pub(crate) fn presession_cookie_name(config: &HttpConfig) -> &'static str {
    if config.tls {
        "__Host-smtpy_csrf"
    } else {
        "smtpy_csrf"
    }
}

/// The pre-session token of the browser, and the `Set-Cookie` to send when
/// it had none yet (a page with a pre-session form must send it).
pub(crate) fn presession(
    config: &HttpConfig,
    headers: &HeaderMap,
) -> Result<(String, Option<HeaderValue>), Problem> {
    let name = presession_cookie_name(config);
    if let Some(v) = cookie(headers, name)
        && v.len() >= 32
        && v.len() <= 64
    {
        return Ok((v.to_owned(), None));
    }
    let token = random_token(32)?;
    let secure = if config.tls { "; Secure" } else { "" };
    let set = HeaderValue::from_str(&format!(
        "{name}={token}; Path=/; HttpOnly; SameSite=Strict{secure}"
    ))
    .ok();
    Ok((token, set))
}

fn refused(detail: &str) -> Problem {
    Problem::new(ProblemType::Csrf, detail.to_owned())
}

/// The guard run on every web `POST` (see the module docs). Buffers the
/// body (up to the configured body limit) and hands the request on.
pub(crate) async fn guard(state: &ApiState, req: Request) -> Result<Request, Problem> {
    let (mut parts, body) = req.into_parts();
    // The import form carries a whole account export: the API's import limit.
    let limit = if parts.uri.path() == IMPORT_PATH {
        state.config().import_body_limit
    } else {
        state.config().body_limit
    };
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        Problem::new(
            ProblemType::TooLarge,
            format!("the form is larger than {limit} bytes"),
        )
    })?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let sent = if content_type.starts_with("application/x-www-form-urlencoded") {
        form_pairs(&bytes)
            .into_iter()
            .find(|(k, _)| k == FIELD)
            .map(|(_, v)| v)
    } else if content_type.starts_with("multipart/form-data") {
        multipart_parts(&content_type, &bytes)
            .into_iter()
            .find(|p| p.name == FIELD && p.filename.is_none())
            .and_then(|p| String::from_utf8(p.data).ok())
    } else {
        None
    }
    .ok_or_else(|| refused("the form has no CSRF token"))?;

    let mut expected: Vec<String> = Vec::new();
    if let Some(value) = cookie(&parts.headers, session_cookie_name(state.config())) {
        let hash = SecretHash::of(value.as_bytes());
        if let Ok(Some(s)) = state.store().find_session(&hash).await {
            expected.push(s.csrf_token);
        }
    }
    if let Some(v) = cookie(&parts.headers, presession_cookie_name(state.config())) {
        expected.push(v.to_owned());
    }
    let Some(token) = expected
        .into_iter()
        .find(|t| !t.is_empty() && ct_eq(t.as_bytes(), sent.as_bytes()))
    else {
        return Err(refused("missing or wrong CSRF token"));
    };
    let value = HeaderValue::from_str(&token).map_err(|_| refused("malformed CSRF token"))?;
    parts.headers.insert(CSRF_HEADER, value);
    // Origin and Sec-Fetch-Site, exactly as the API checks them.
    check_csrf(state.config(), &parts.headers, &token)?;
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// The name/value pairs of an `application/x-www-form-urlencoded` body, in
/// order, repeated names kept (checkbox lists).
pub(crate) fn form_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes).unwrap_or_default()
}

/// A form body read into `T` (fields by name; `_csrf` and unknown fields
/// ignored unless `T` refuses them). A malformed body is a `400` page.
#[derive(Debug)]
pub(crate) struct WebForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for WebForm<T> {
    type Rejection = super::render::WebError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| Problem::bad_request("the form could not be read"))?;
        serde_urlencoded::from_bytes::<T>(&bytes)
            .map(WebForm)
            .map_err(|e| Problem::bad_request(format!("the form could not be read: {e}")).into())
    }
}

/// A form body as its name/value pairs (for repeated fields such as the
/// checkboxes of a bulk action).
#[derive(Debug, Default)]
pub(crate) struct FormPairs(pub Vec<(String, String)>);

impl FormPairs {
    /// The first value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// Every value of `name`, in order.
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl<S: Send + Sync> FromRequest<S> for FormPairs {
    type Rejection = super::render::WebError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| Problem::bad_request("the form could not be read"))?;
        Ok(FormPairs(form_pairs(&bytes)))
    }
}

/// One part of a `multipart/form-data` body.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    /// The field name.
    pub name: String,
    /// The file name, for a file input.
    pub filename: Option<String>,
    /// The content.
    pub data: Vec<u8>,
}

/// The parts of a `multipart/form-data` body (RFC 7578). A malformed body
/// yields the parts read before the damage.
pub(crate) fn multipart_parts(content_type: &str, body: &[u8]) -> Vec<Part> {
    let Some(boundary) = content_type.split(';').find_map(|p| {
        p.trim()
            .strip_prefix("boundary=")
            .map(|b| b.trim_matches('"').to_owned())
    }) else {
        return Vec::new();
    };
    if boundary.is_empty() || boundary.len() > 200 {
        return Vec::new();
    }
    let delimiter = format!("--{boundary}");
    let delim = delimiter.as_bytes();
    let mut parts = Vec::new();
    let Some(mut pos) = find(body, delim, 0) else {
        return parts;
    };
    loop {
        let start = pos + delim.len();
        if body[start..].starts_with(b"--") {
            break;
        }
        let Some(head_start) = skip_crlf(body, start) else {
            break;
        };
        let Some(head_end) = find(body, b"\r\n\r\n", head_start) else {
            break;
        };
        let head = String::from_utf8_lossy(&body[head_start..head_end]).into_owned();
        let data_start = head_end + 4;
        let closing = format!("\r\n{delimiter}");
        let Some(next) = find(body, closing.as_bytes(), data_start) else {
            break;
        };
        let (mut name, mut filename) = (None, None);
        for line in head.split("\r\n") {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            if !key.trim().eq_ignore_ascii_case("content-disposition") {
                continue;
            }
            for param in value.split(';').skip(1) {
                if let Some((k, v)) = param.trim().split_once('=') {
                    let v = v.trim().trim_matches('"').to_owned();
                    match k.trim() {
                        "name" => name = Some(v),
                        "filename" => filename = Some(v),
                        _ => {}
                    }
                }
            }
        }
        if let Some(name) = name {
            parts.push(Part {
                name,
                filename,
                data: body[data_start..next].to_vec(),
            });
        }
        pos = next + 2;
    }
    parts
}

fn skip_crlf(body: &[u8], at: usize) -> Option<usize> {
    body.get(at..at + 2)
        .filter(|s| *s == b"\r\n")
        .map(|_| at + 2)
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_fields_and_files_are_read() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"_csrf\"\r\n\r\ntok123\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.json\"\r\nContent-Type: application/json\r\n\r\n{\"a\":\r\n1}\r\n--XyZ--\r\n";
        let parts = multipart_parts("multipart/form-data; boundary=XyZ", body);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "_csrf");
        assert_eq!(parts[0].data, b"tok123");
        assert_eq!(parts[1].filename.as_deref(), Some("a.json"));
        assert_eq!(parts[1].data, b"{\"a\":\r\n1}");
        // Damaged bodies give what was read, never panic.
        assert!(multipart_parts("multipart/form-data; boundary=XyZ", b"--XyZ").is_empty());
        assert!(multipart_parts("multipart/form-data", body).is_empty());
        assert!(multipart_parts("multipart/form-data; boundary=Q", body).is_empty());
    }

    proptest::proptest! {
        /// Hostile bodies never panic the parser, and every part it returns
        /// lies within the body.
        #[test]
        fn multipart_survives_any_body(body in proptest::collection::vec(proptest::num::u8::ANY, 0..600), boundary in "[A-Za-z0-9]{1,12}") {
            let mut framed = format!("--{boundary}\r\n").into_bytes();
            framed.extend_from_slice(&body);
            for input in [&body, &framed] {
                let parts = multipart_parts(&format!("multipart/form-data; boundary={boundary}"), input);
                for p in parts {
                    proptest::prop_assert!(p.data.len() <= input.len());
                }
            }
        }

        #[test]
        fn form_pairs_survive_any_body(body in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = form_pairs(&body);
        }
    }

    #[test]
    fn form_pairs_keep_repeats() {
        let pairs = FormPairs(form_pairs(b"_csrf=t&ids=a&ids=b&q=x+y%21"));
        assert_eq!(pairs.all("ids"), vec!["a", "b"]);
        assert_eq!(pairs.get("q"), Some("x y!"));
        assert_eq!(pairs.get("none"), None);
    }
}
