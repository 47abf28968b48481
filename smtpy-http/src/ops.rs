//! Operations endpoints outside `/api/v1`: `/healthz`, `/readyz`, `/metrics`.
//!
//! * `/healthz` — the process answers (always `200 ok`).
//! * `/readyz` — `200` when the instance can do its work, `503` otherwise,
//!   with the same JSON shape either way:
//!   `{"status": "ready" | "not_ready", "checks": {"store": …, "smtp": …, "queue": …}}`
//!   where each check is `{"ok": bool, "detail": "…"}`. Checked: the store
//!   answers [`ping`](smtpy_core::store::Store::ping); the SMTP listener
//!   listens (when the embedding service said one is expected, see
//!   [`Readiness`](crate::Readiness)); the queue (when one is attached with
//!   [`ApiState::with_queue`](crate::ApiState::with_queue)) holds at most
//!   [`HttpConfig::ready_queue_backlog`](crate::HttpConfig::ready_queue_backlog)
//!   messages.
//! * `/metrics` — every [`Metrics`](smtpy_core::metrics::Metrics) family in
//!   the Prometheus text format (version 0.0.4), with the queue gauges
//!   refreshed from the attached queue at each scrape.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use smtpy_core::StoreResult;
use smtpy_core::metrics::{QUEUE_DEPTH, QUEUE_OLDEST_AGE};
use smtpy_core::store::QueueStats;

use crate::state::ApiState;

/// `/healthz`: the process is alive.
async fn healthz() -> &'static str {
    "ok\n"
}

/// One readiness check.
#[derive(Debug, Serialize)]
pub(crate) struct Check {
    /// Whether it passed.
    pub ok: bool,
    /// What was found, for people.
    pub detail: String,
}

impl Check {
    fn ok(detail: impl Into<String>) -> Check {
        Check {
            ok: true,
            detail: detail.into(),
        }
    }
    fn failed(detail: impl Into<String>) -> Check {
        Check {
            ok: false,
            detail: detail.into(),
        }
    }
}

/// The checks of `/readyz` (also shown on the admin health page).
#[derive(Debug, Serialize)]
pub(crate) struct Checks {
    /// The store answers.
    pub store: Check,
    /// The SMTP listener listens (when one is expected).
    pub smtp: Check,
    /// The queue backlog is under the threshold (when a queue is attached).
    pub queue: Check,
}

impl Checks {
    /// Whether every check passed.
    pub(crate) fn ready(&self) -> bool {
        self.store.ok && self.smtp.ok && self.queue.ok
    }
}

#[derive(Debug, Serialize)]
struct ReadyBody {
    status: &'static str,
    checks: Checks,
}

/// The attached queue's statistics, if a queue is attached.
pub(crate) async fn queue_stats(state: &ApiState) -> Option<StoreResult<QueueStats>> {
    match state.queue() {
        Some(q) => Some(q.queue_stats().await),
        None => None,
    }
}

/// Runs the readiness checks: store reachable, SMTP listening (when
/// expected), queue backlog under the threshold.
pub(crate) async fn ready_checks(state: &ApiState) -> Checks {
    let store = match state.store().ping().await {
        Ok(()) => Check::ok("the store answers"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: the store does not answer");
            Check::failed("the store does not answer")
        }
    };
    let smtp = match state.readiness().smtp_listening() {
        None => Check::ok("no SMTP listener expected"),
        Some(true) => Check::ok("the SMTP listener accepts connections"),
        Some(false) => Check::failed("the SMTP listener is not accepting connections yet"),
    };
    let limit = state.config().ready_queue_backlog;
    let queue = match queue_stats(state).await {
        None => Check::ok("no mail queue attached"),
        Some(Ok(stats)) if stats.depth <= limit => Check::ok(format!(
            "{} messages queued (threshold {limit})",
            stats.depth
        )),
        Some(Ok(stats)) => Check::failed(format!(
            "{} messages queued, more than the threshold of {limit}",
            stats.depth
        )),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "readiness: cannot read the queue");
            Check::failed("cannot read the queue")
        }
    };
    Checks { store, smtp, queue }
}

/// `/readyz`: the [`ready_checks`], `200` when all pass, `503` otherwise.
async fn readyz(State(state): State<ApiState>) -> Response {
    let checks = ready_checks(&state).await;
    let ready = checks.ready();
    let body = ReadyBody {
        status: if ready { "ready" } else { "not_ready" },
        checks,
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `/metrics`: refreshes the queue gauges, then renders every family.
async fn metrics(State(state): State<ApiState>) -> Response {
    let m = state.metrics();
    match queue_stats(&state).await {
        None => {}
        Some(Ok(stats)) => {
            m.set(QUEUE_DEPTH, &[], stats.depth as f64);
            let age = stats
                .oldest_received_at
                .map_or(0.0, |t| state.clock().now().duration_since(t).as_secs_f64());
            m.set(QUEUE_OLDEST_AGE, &[], age);
        }
        // The gauges keep their last values; the scrape still succeeds.
        Some(Err(e)) => tracing::warn!(error = %e, "metrics: cannot read the queue"),
    }
    let mut resp = m.render().into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The operations routes.
pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}
