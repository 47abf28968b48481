//! `/api/v1/stats` and `/api/v1/aliases/{id}/stats`: daily usage series.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use smtpy_core::ids::AliasId;
use smtpy_core::model::{ApiScope, DailyUsage, UsageSubject};
use smtpy_core::time::Day;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::problem::{ApiPath, ApiQuery, ApiResult, Problem};
use crate::state::ApiState;

/// Days in a series when `from` is not given.
pub const DEFAULT_DAYS: i32 = 30;
/// Most days in one series.
pub const MAX_DAYS: i32 = 366;

/// Parses `YYYY-MM-DD` of 1970 or later (series start at the epoch).
#[must_use]
pub fn parse_day(s: &str) -> Option<Day> {
    Day::parse(s).filter(|d| d.days_since_epoch() >= 0)
}

/// The period of a series.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StatsQuery {
    /// First day, `YYYY-MM-DD` (default: 29 days before `to`).
    #[param(max_length = 10)]
    pub from: Option<String>,
    /// Last day, `YYYY-MM-DD` (default: today, UTC).
    #[param(max_length = 10)]
    pub to: Option<String>,
}

/// Usage of one day.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct DayView {
    /// The day, `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Messages.
    pub messages: u64,
    /// Bytes.
    pub bytes: u64,
}

/// Lifetime counters of an alias.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct AliasTotalsView {
    /// Messages forwarded.
    pub forwarded: u64,
    /// Messages blocked.
    pub blocked: u64,
    /// Replies sent.
    pub replied: u64,
    /// Forwards that bounced.
    pub bounced: u64,
    /// Last use (Unix ms).
    pub last_used_at: Option<i64>,
}

/// A daily series, every day of the period (days without traffic are 0).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct StatsView {
    /// First day.
    pub from: String,
    /// Last day.
    pub to: String,
    /// One entry per day, ascending.
    pub days: Vec<DayView>,
    /// Sum of `messages` over the period.
    pub total_messages: u64,
    /// Sum of `bytes` over the period.
    pub total_bytes: u64,
    /// The alias's lifetime counters (alias series only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counters: Option<AliasTotalsView>,
}

fn period(state: &ApiState, q: &StatsQuery) -> ApiResult<(Day, Day)> {
    let day = |field: &str, v: &Option<String>| -> ApiResult<Option<Day>> {
        match v.as_deref().filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => parse_day(s)
                .map(Some)
                .ok_or_else(|| Problem::invalid(field, "not a date (YYYY-MM-DD)")),
        }
    };
    let to = day("to", &q.to)?.unwrap_or_else(|| state.clock().now().day());
    let from = day("from", &q.from)?.unwrap_or_else(|| {
        Day::from_days_since_epoch(to.days_since_epoch().saturating_sub(DEFAULT_DAYS - 1))
    });
    let span = to.days_since_epoch() - from.days_since_epoch();
    if span < 0 {
        return Err(Problem::invalid("from", "must not be after to"));
    }
    if span >= MAX_DAYS {
        return Err(Problem::invalid(
            "from",
            format!("a series covers at most {MAX_DAYS} days"),
        ));
    }
    Ok((from, to))
}

fn series(from: Day, to: Day, rows: &[DailyUsage]) -> StatsView {
    let mut days = Vec::new();
    let (mut total_messages, mut total_bytes) = (0u64, 0u64);
    let mut d = from;
    while d <= to {
        let (messages, bytes) = rows
            .iter()
            .find(|r| r.day == d)
            .map_or((0, 0), |r| (r.messages, r.bytes));
        total_messages = total_messages.saturating_add(messages);
        total_bytes = total_bytes.saturating_add(bytes);
        days.push(DayView {
            day: d.to_string(),
            messages,
            bytes,
        });
        d = d.next();
    }
    StatsView {
        from: from.to_string(),
        to: to.to_string(),
        days,
        total_messages,
        total_bytes,
        counters: None,
    }
}

/// The caller's daily usage over all their aliases.
#[utoipa::path(
    get,
    path = "/stats",
    tag = "stats",
    params(StatsQuery),
    responses((status = 200, description = "Daily series", body = StatsView))
)]
async fn user_stats(
    State(state): State<ApiState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> ApiResult<Json<StatsView>> {
    principal.require(ApiScope::AliasesRead)?;
    let (from, to) = period(&state, &q)?;
    let rows = state
        .store()
        .usage(
            principal.access(),
            UsageSubject::User(principal.id()),
            from,
            to,
        )
        .await?;
    Ok(Json(series(from, to, &rows)))
}

/// One of the caller's aliases: daily usage and lifetime counters.
#[utoipa::path(
    get,
    path = "/aliases/{id}/stats",
    tag = "stats",
    params(("id" = String, Path, description = "Alias id"), StatsQuery),
    responses((status = 200, description = "Daily series", body = StatsView))
)]
pub(crate) async fn alias_stats(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<AliasId>,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> ApiResult<Json<StatsView>> {
    principal.require(ApiScope::AliasesRead)?;
    let alias = state.store().get_alias(principal.access(), id).await?;
    let (from, to) = period(&state, &q)?;
    let rows = state
        .store()
        .usage(principal.access(), UsageSubject::Alias(id), from, to)
        .await?;
    let mut view = series(from, to, &rows);
    let c = alias.counters;
    view.counters = Some(AliasTotalsView {
        forwarded: c.forwarded,
        blocked: c.blocked,
        replied: c.replied,
        bounced: c.bounced,
        last_used_at: c.last_used_at.map(|t| t.as_unix_millis()),
    });
    Ok(Json(view))
}

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(user_stats))
        .routes(routes!(alias_stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip() {
        assert_eq!(Day::from_days_since_epoch(0).to_string(), "1970-01-01");
        assert_eq!(parse_day("1970-01-01"), Some(Day::from_days_since_epoch(0)));
        assert_eq!(
            parse_day("2024-02-29").map(|d| d.to_string()).as_deref(),
            Some("2024-02-29")
        );
        assert_eq!(parse_day("2023-02-29"), None);
        assert_eq!(parse_day("2024-13-01"), None);
        assert_eq!(parse_day("24-01-01"), None);
        // Series start at the epoch.
        assert_eq!(parse_day("1969-12-31"), None);
        for n in [0, 59, 60, 365, 10_957, 19_782, 20_000, 40_000] {
            let d = Day::from_days_since_epoch(n);
            assert_eq!(parse_day(&d.to_string()), Some(d), "{n}");
        }
    }
}
