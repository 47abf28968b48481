//! `/admin/health`: the checks of `/readyz`, key metrics of this instance
//! and the background jobs.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use smtpy_core::metrics::{
    DELIVERIES, HTTP_REQUESTS, JOB_LAST_SUCCESS, MESSAGES_ACCEPTED, MESSAGES_REJECTED,
    RATE_LIMIT_DENIALS, SMTP_SESSIONS, SMTP_SESSIONS_ACTIVE,
};
use smtpy_core::time::Timestamp;

use crate::ops::{self, Check};
use crate::routes::admin;
use crate::state::ApiState;

use super::super::render::{Chrome, WebError, page};
use super::super::session::WebAdmin;
use super::number;
use crate::web::text::{when, when_or};

/// One readiness check as shown.
struct CheckRow {
    name: &'static str,
    ok: bool,
    detail: String,
}

impl CheckRow {
    fn of(name: &'static str, c: Check) -> CheckRow {
        CheckRow {
            name,
            ok: c.ok,
            detail: c.detail,
        }
    }
}

/// One metric as shown.
struct MetricRow {
    label: &'static str,
    value: String,
    help: &'static str,
}

/// One background job as shown.
struct JobRow {
    job: String,
    holder: String,
    lease_until: String,
    last_run: String,
    /// `ok`, `failed` or `never ran`.
    outcome: &'static str,
    ok: bool,
    detail: String,
    last_success: String,
    /// The last success recorded by this instance's metrics.
    last_success_here: String,
}

#[derive(Template)]
#[template(path = "web/admin/health.html")]
struct HealthPage {
    chrome: Chrome,
    ready: bool,
    checks: Vec<CheckRow>,
    metrics: Vec<MetricRow>,
    jobs: Vec<JobRow>,
}

async fn show(State(state): State<ApiState>, admin: WebAdmin) -> Result<Response, WebError> {
    let user = admin.0;
    let chrome = user.chrome("admin", "Health");
    let checks = ops::ready_checks(&state).await;
    let ready = checks.ready();
    let checks = vec![
        CheckRow::of("Store", checks.store),
        CheckRow::of("SMTP listener", checks.smtp),
        CheckRow::of("Mail queue", checks.queue),
    ];

    let m = state.metrics();
    let outcome = |o: &str| number(m.get(DELIVERIES, &[("outcome", o)]));
    let mut metrics = vec![
        MetricRow {
            label: "Messages accepted",
            value: number(m.total(MESSAGES_ACCEPTED)),
            help: "Messages accepted at the end of DATA.",
        },
        MetricRow {
            label: "Recipients delivered (forwarded)",
            value: outcome("delivered"),
            help: "Delivery attempts that succeeded.",
        },
        MetricRow {
            label: "Recipients deferred",
            value: outcome("deferred"),
            help: "Delivery attempts to be tried again.",
        },
        MetricRow {
            label: "Recipients bounced",
            value: outcome("bounced"),
            help: "Delivery attempts that failed for good.",
        },
        MetricRow {
            label: "Messages or recipients rejected",
            value: number(m.total(MESSAGES_REJECTED)),
            help: "Refused during the SMTP session, for any reason.",
        },
        MetricRow {
            label: "SMTP sessions",
            value: format!(
                "{} open now, {} in all",
                number(m.get(SMTP_SESSIONS_ACTIVE, &[])),
                number(m.total(SMTP_SESSIONS))
            ),
            help: "Connections to the SMTP listener.",
        },
        MetricRow {
            label: "HTTP requests",
            value: number(m.total(HTTP_REQUESTS)),
            help: "Requests to the API and these pages.",
        },
        MetricRow {
            label: "Rate-limit denials",
            value: number(m.total(RATE_LIMIT_DENIALS)),
            help: "Requests and messages refused by a rate limit (SMTP and HTTP).",
        },
    ];
    match ops::queue_stats(&state).await {
        None => metrics.push(MetricRow {
            label: "Queue",
            value: "no mail queue attached".to_owned(),
            help: "This service reads no mail queue.",
        }),
        Some(Ok(stats)) => {
            metrics.push(MetricRow {
                label: "Queue depth",
                value: format!("{} ({} held)", stats.depth, stats.held),
                help: "Messages waiting for delivery.",
            });
            let age = stats.oldest_received_at.map_or_else(
                || "none queued".to_owned(),
                |t| {
                    let secs = state.clock().now().duration_since(t).as_secs();
                    format!("{} (since {})", age_text(secs), when(t.as_unix_millis()))
                },
            );
            metrics.push(MetricRow {
                label: "Oldest queued message",
                value: age,
                help: "How long the oldest message has waited.",
            });
        }
        Some(Err(_)) => metrics.push(MetricRow {
            label: "Queue",
            value: "cannot read the queue".to_owned(),
            help: "The queue did not answer.",
        }),
    }

    let jobs = admin::list_jobs(State(state.clone()), user.principal.clone())
        .await
        .map_err(|p| WebError::within(p, chrome.clone()))?
        .0;
    let jobs = jobs
        .into_iter()
        .map(|j| {
            let here = m.get(JOB_LAST_SUCCESS, &[("job", &j.job)]);
            JobRow {
                holder: j.holder.unwrap_or_else(|| "none".to_owned()),
                lease_until: when_or(j.lease_until, "—"),
                last_run: when_or(j.last_run_at, "never"),
                outcome: match j.last_ok {
                    Some(true) => "ok",
                    Some(false) => "failed",
                    None => "never ran",
                },
                ok: j.last_ok == Some(true),
                detail: j.last_detail.unwrap_or_default(),
                last_success: when_or(j.last_success_at, "never"),
                last_success_here: if here > 0.0 {
                    when(Timestamp::from_unix_secs(here as i64).as_unix_millis())
                } else {
                    "not on this instance".to_owned()
                },
                job: j.job,
            }
        })
        .collect();
    Ok(page(&HealthPage {
        chrome,
        ready,
        checks,
        metrics,
        jobs,
    }))
}

/// `secs` for people: `42 s`, `5 min`, `3 h 20 min`, `2 d 4 h`.
fn age_text(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d {} h", secs / 86_400, secs % 86_400 / 3600),
    }
}

pub(super) fn routes() -> Router<ApiState> {
    Router::new().route("/admin/health", get(show))
}
