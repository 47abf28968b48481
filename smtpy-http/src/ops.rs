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
struct Check {
    ok: bool,
    detail: String,
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

#[derive(Debug, Serialize)]
struct Checks {
    store: Check,
    smtp: Check,
    queue: Check,
}

#[derive(Debug, Serialize)]
struct ReadyBody {
    status: &'static str,
    checks: Checks,
}

async fn queue_stats(state: &ApiState) -> Option<StoreResult<QueueStats>> {
    match state.queue() {
        Some(q) => Some(q.queue_stats().await),
        None => None,
    }
}

/// `/readyz`: store reachable, SMTP listening (when expected), queue backlog
/// under the threshold.
async fn readyz(State(state): State<ApiState>) -> Response {
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
    let queue = match queue_stats(&state).await {
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
    let ready = store.ok && smtp.ok && queue.ok;
    let body = ReadyBody {
        status: if ready { "ready" } else { "not_ready" },
        checks: Checks { store, smtp, queue },
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
