//! Errors as RFC 9457 problem details (`application/problem+json`).
//!
//! Every error the API returns is a [`Problem`] whose `type` is a stable
//! identifier `urn:smtpy:problem:<slug>` ([`ProblemType`]); programs should
//! branch on it, people read `title` and `detail`.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use smtpy_core::error::StoreError;
use utoipa::ToSchema;

/// The stable problem types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemType {
    /// The request is malformed (bad JSON, wrong content type, bad query).
    BadRequest,
    /// The request is well-formed but a value is invalid; see `errors`.
    Validation,
    /// No valid credentials were presented.
    Unauthenticated,
    /// The credentials do not allow this (scope, role, account state).
    Forbidden,
    /// The cookie-authenticated request failed the CSRF check.
    Csrf,
    /// The resource does not exist or is not yours (indistinguishable).
    NotFound,
    /// The resource exists already or the change conflicts with its state.
    Conflict,
    /// The resource was deleted and cannot be reused.
    Gone,
    /// Too many requests; retry after `Retry-After` seconds.
    RateLimited,
    /// The request body is larger than allowed.
    TooLarge,
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// The method is not allowed on this path.
    MethodNotAllowed,
    /// A second factor is required to complete the login.
    SecondFactorRequired,
    /// The feature is switched off by configuration.
    Disabled,
    /// A dependency (store, outbox) is unavailable; retry later.
    Unavailable,
    /// An unexpected error on our side (details are logged, not returned).
    Internal,
}

impl ProblemType {
    /// The slug, e.g. `not-found`.
    #[must_use]
    pub const fn slug(self) -> &'static str {
        match self {
            ProblemType::BadRequest => "bad-request",
            ProblemType::Validation => "validation",
            ProblemType::Unauthenticated => "unauthenticated",
            ProblemType::Forbidden => "forbidden",
            ProblemType::Csrf => "csrf",
            ProblemType::NotFound => "not-found",
            ProblemType::Conflict => "conflict",
            ProblemType::Gone => "gone",
            ProblemType::RateLimited => "rate-limited",
            ProblemType::TooLarge => "too-large",
            ProblemType::UnsupportedMediaType => "unsupported-media-type",
            ProblemType::MethodNotAllowed => "method-not-allowed",
            ProblemType::SecondFactorRequired => "second-factor-required",
            ProblemType::Disabled => "disabled",
            ProblemType::Unavailable => "unavailable",
            ProblemType::Internal => "internal",
        }
    }
    /// The HTTP status that goes with it.
    #[must_use]
    pub const fn status(self) -> StatusCode {
        match self {
            ProblemType::BadRequest => StatusCode::BAD_REQUEST,
            ProblemType::Validation => StatusCode::UNPROCESSABLE_ENTITY,
            ProblemType::Unauthenticated | ProblemType::SecondFactorRequired => {
                StatusCode::UNAUTHORIZED
            }
            ProblemType::Forbidden | ProblemType::Csrf | ProblemType::Disabled => {
                StatusCode::FORBIDDEN
            }
            ProblemType::NotFound => StatusCode::NOT_FOUND,
            ProblemType::Conflict => StatusCode::CONFLICT,
            ProblemType::Gone => StatusCode::GONE,
            ProblemType::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ProblemType::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProblemType::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProblemType::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProblemType::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ProblemType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
    /// A short human title.
    #[must_use]
    pub const fn title(self) -> &'static str {
        match self {
            ProblemType::BadRequest => "Bad request",
            ProblemType::Validation => "Invalid value",
            ProblemType::Unauthenticated => "Authentication required",
            ProblemType::Forbidden => "Forbidden",
            ProblemType::Csrf => "Cross-site request refused",
            ProblemType::NotFound => "Not found",
            ProblemType::Conflict => "Conflict",
            ProblemType::Gone => "Gone",
            ProblemType::RateLimited => "Too many requests",
            ProblemType::TooLarge => "Request body too large",
            ProblemType::UnsupportedMediaType => "Unsupported media type",
            ProblemType::MethodNotAllowed => "Method not allowed",
            ProblemType::SecondFactorRequired => "Second factor required",
            ProblemType::Disabled => "Disabled",
            ProblemType::Unavailable => "Service unavailable",
            ProblemType::Internal => "Internal error",
        }
    }
    /// `urn:smtpy:problem:<slug>`.
    #[must_use]
    pub fn uri(self) -> String {
        format!("urn:smtpy:problem:{}", self.slug())
    }
}

/// One invalid field of a `validation` problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// The field, as a JSON pointer-like path (`mailboxes/0`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// The body of every error response (RFC 9457).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProblemBody {
    /// `urn:smtpy:problem:<slug>`: stable, branch on this.
    #[serde(rename = "type")]
    pub type_: String,
    /// Short summary of the type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong in this request.
    pub detail: String,
    /// Invalid fields (validation problems).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// An error answered as `application/problem+json`.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The type.
    pub kind: ProblemType,
    /// The detail for this request.
    pub detail: String,
    /// Field errors.
    pub errors: Vec<FieldError>,
    /// Sent as `Retry-After` (seconds, rounded up).
    pub retry_after: Option<Duration>,
}

/// What handlers return on failure.
pub type ApiResult<T> = Result<T, Problem>;

impl Problem {
    /// A problem of `kind` with `detail`.
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Problem {
        Problem {
            kind,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }
    /// `400 bad-request`.
    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(ProblemType::BadRequest, detail)
    }
    /// `422 validation` for one field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Problem {
        let (field, message) = (field.into(), message.into());
        let mut p = Problem::new(ProblemType::Validation, format!("{field}: {message}"));
        p.errors.push(FieldError { field, message });
        p
    }
    /// `401 unauthenticated`.
    pub fn unauthenticated(detail: impl Into<String>) -> Problem {
        Problem::new(ProblemType::Unauthenticated, detail)
    }
    /// `403 forbidden`.
    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(ProblemType::Forbidden, detail)
    }
    /// `404 not-found`.
    pub fn not_found(what: &str) -> Problem {
        Problem::new(ProblemType::NotFound, format!("{what} not found"))
    }
    /// `409 conflict`.
    pub fn conflict(detail: impl Into<String>) -> Problem {
        Problem::new(ProblemType::Conflict, detail)
    }
    /// `429 rate-limited` with `Retry-After`.
    pub fn rate_limited(retry_after: Duration) -> Problem {
        let mut p = Problem::new(
            ProblemType::RateLimited,
            "too many requests; retry after the time in Retry-After",
        );
        p.retry_after = Some(retry_after.max(Duration::from_secs(1)));
        p
    }
    /// `503 unavailable`.
    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem::new(ProblemType::Unavailable, detail)
    }
    /// `500 internal`: logs `error` and returns a detail that reveals nothing.
    pub fn internal(error: impl std::fmt::Display) -> Problem {
        tracing::error!(error = %error, "internal error in the HTTP API");
        Problem::new(
            ProblemType::Internal,
            "an unexpected error occurred; it has been logged",
        )
    }

    /// The body.
    #[must_use]
    pub fn body(&self) -> ProblemBody {
        ProblemBody {
            type_: self.kind.uri(),
            title: self.kind.title().to_owned(),
            status: self.kind.status().as_u16(),
            detail: self.detail.clone(),
            errors: self.errors.clone(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut resp = (self.kind.status(), body).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(after) = self.retry_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// Maps store errors: `NotFound` → 404, `AlreadyExists`/`Conflict` → 409,
/// `Gone` → 410, `Invalid` → 422, `Unavailable` → 503, anything else → 500
/// (logged).
impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Problem {
        match e {
            StoreError::NotFound { entity } => Problem::not_found(entity),
            StoreError::AlreadyExists { entity } => {
                Problem::conflict(format!("{entity} already exists"))
            }
            StoreError::Conflict { entity, reason } => {
                Problem::conflict(format!("{entity}: {reason}"))
            }
            StoreError::Gone { entity } => Problem::new(
                ProblemType::Gone,
                format!("{entity} was deleted and cannot be reused"),
            ),
            StoreError::Invalid { entity, reason } => Problem::invalid(entity, reason),
            StoreError::Unavailable { source } => {
                tracing::warn!(error = %source, "store unavailable");
                Problem::unavailable("the store is unavailable; retry later")
            }
            other => Problem::internal(other),
        }
    }
}

impl From<JsonRejection> for Problem {
    fn from(r: JsonRejection) -> Problem {
        match r {
            JsonRejection::MissingJsonContentType(_) => Problem::new(
                ProblemType::UnsupportedMediaType,
                "the body must be application/json",
            ),
            JsonRejection::JsonDataError(e) => Problem::new(ProblemType::Validation, e.body_text()),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Problem::new(ProblemType::TooLarge, "the request body is too large")
            }
            other => Problem::bad_request(other.body_text()),
        }
    }
}

impl From<QueryRejection> for Problem {
    fn from(r: QueryRejection) -> Problem {
        Problem::bad_request(r.body_text())
    }
}

impl From<PathRejection> for Problem {
    fn from(r: PathRejection) -> Problem {
        Problem::not_found(&format!("resource ({})", r.body_text()))
    }
}

/// `Json<T>` whose rejections are problems. Use it for every request body;
/// give `T` `#[serde(deny_unknown_fields)]`.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(Problem))]
pub struct ApiJson<T>(pub T);

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

/// `Query<T>` whose rejections are problems.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Problem))]
pub struct ApiQuery<T>(pub T);

/// `Path<T>` whose rejections are problems (a malformed id is a 404).
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Problem))]
pub struct ApiPath<T>(pub T);

/// Checks a string's length in characters: `min..=max`.
///
/// # Errors
///
/// A `validation` problem naming `field`.
pub fn check_len(field: &str, value: &str, min: usize, max: usize) -> ApiResult<()> {
    let n = value.chars().count();
    if n < min {
        return Err(Problem::invalid(
            field,
            format!("must be at least {min} characters"),
        ));
    }
    if n > max {
        return Err(Problem::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(())
}

/// Checks a list's length: at most `max` items.
///
/// # Errors
///
/// A `validation` problem naming `field`.
pub fn check_count<T>(field: &str, items: &[T], max: usize) -> ApiResult<()> {
    if items.len() > max {
        return Err(Problem::invalid(
            field,
            format!("must have at most {max} items"),
        ));
    }
    Ok(())
}
