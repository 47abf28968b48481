//! `/api/v1/admin/features` and `/api/v1/admin/jobs` (admins only): the
//! runtime feature flags and the state of the background jobs.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use smtpy_core::features::{FeatureError, FeatureFlags};
use smtpy_core::store::JobState;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{self, Audit};
use crate::auth::Principal;
use crate::problem::{ApiJson, ApiResult, Problem};
use crate::state::ApiState;

/// The feature flags in effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub(crate) struct FeaturesView {
    /// Anyone may register without an invitation.
    pub registration: bool,
    /// Owners may reply through reverse aliases (SMTP).
    pub replies: bool,
    /// Owners may create contacts to start new mail from an alias.
    pub send_from_alias: bool,
    /// Catch-all domains create aliases on first mail.
    pub auto_create: bool,
}

impl From<FeatureFlags> for FeaturesView {
    fn from(f: FeatureFlags) -> Self {
        Self {
            registration: f.registration,
            replies: f.replies,
            send_from_alias: f.send_from_alias,
            auto_create: f.auto_create,
        }
    }
}

/// A change to the flags: only the flags given change (JSON merge of
/// booleans); an unknown flag or a non-boolean value is a `400`.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // documents the body; the handler reads it as JSON
pub(crate) struct FeaturesPatch {
    /// Anyone may register without an invitation.
    pub registration: Option<bool>,
    /// Owners may reply through reverse aliases (SMTP).
    pub replies: Option<bool>,
    /// Owners may create contacts to start new mail from an alias.
    pub send_from_alias: Option<bool>,
    /// Catch-all domains create aliases on first mail.
    pub auto_create: Option<bool>,
}

/// The feature flags in effect on this instance (every instance converges
/// on the stored flags within a few seconds).
#[utoipa::path(
    get,
    path = "/admin/features",
    tag = "admin",
    responses(
        (status = 200, description = "The feature flags", body = FeaturesView),
        (status = 403, description = "Not an administrator")
    )
)]
pub(crate) async fn get_features(
    State(state): State<ApiState>,
    principal: Principal,
) -> ApiResult<Json<FeaturesView>> {
    principal.require_admin()?;
    Ok(Json(state.features().get().into()))
}

/// Switches feature flags at runtime for every instance sharing the store,
/// and returns the flags now in effect. Audited as `features.update`.
#[utoipa::path(
    patch,
    path = "/admin/features",
    tag = "admin",
    request_body = FeaturesPatch,
    responses(
        (status = 200, description = "The feature flags after the change", body = FeaturesView),
        (status = 400, description = "Not a JSON object of known flags with boolean values"),
        (status = 403, description = "Not an administrator")
    )
)]
pub(crate) async fn patch_features(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(patch): ApiJson<serde_json::Value>,
) -> ApiResult<Json<FeaturesView>> {
    principal.require_admin()?;
    let before = state.features().get();
    let now = state.clock().now();
    let after = state
        .features()
        .update(&**state.store(), &patch, now)
        .await
        .map_err(|e| match e {
            FeatureError::Invalid(detail) => Problem::bad_request(detail),
            FeatureError::Store(e) => e.into(),
            other => Problem::internal(other),
        })?;
    let mut entry = Audit::by(&principal, "features.update");
    for name in smtpy_core::features::FLAG_NAMES {
        let (mut old, mut new) = (before, after);
        let (Some(was), Some(is)) = (old.flag_mut(name), new.flag_mut(name)) else {
            continue;
        };
        if was != is {
            entry = entry.detail(name, is);
        }
    }
    audit::record(&state, entry).await;
    Ok(Json(after.into()))
}

/// One background job as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub(crate) struct JobView {
    /// The job's name (`purge-deleted-aliases`, …).
    pub job: String,
    /// The instance holding its lease, if any.
    pub holder: Option<String>,
    /// Until when the lease holds (Unix milliseconds).
    pub lease_until: Option<i64>,
    /// When the last run started (Unix milliseconds).
    pub last_run_at: Option<i64>,
    /// Whether the last run succeeded.
    pub last_ok: Option<bool>,
    /// The last run's summary or error.
    pub last_detail: Option<String>,
    /// When the last successful run started (Unix milliseconds).
    pub last_success_at: Option<i64>,
}

impl From<JobState> for JobView {
    fn from(j: JobState) -> Self {
        Self {
            job: j.job,
            holder: j.holder,
            lease_until: j.lease_until.map(|t| t.as_unix_millis()),
            last_run_at: j.last_run_at.map(|t| t.as_unix_millis()),
            last_ok: j.last_ok,
            last_detail: j.last_detail,
            last_success_at: j.last_success_at.map(|t| t.as_unix_millis()),
        }
    }
}

/// The background jobs: lease holder and last run of each, by name.
#[utoipa::path(
    get,
    path = "/admin/jobs",
    tag = "admin",
    responses(
        (status = 200, description = "Every job that ever ran or was leased", body = Vec<JobView>),
        (status = 403, description = "Not an administrator")
    )
)]
pub(crate) async fn list_jobs(
    State(state): State<ApiState>,
    principal: Principal,
) -> ApiResult<Json<Vec<JobView>>> {
    principal.require_admin()?;
    let jobs = state.store().list_jobs().await?;
    Ok(Json(jobs.into_iter().map(JobView::from).collect()))
}

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(get_features, patch_features))
        .routes(routes!(list_jobs))
}
