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

/// `YYYY-MM-DD` of `day` (proleptic Gregorian, UTC).
#[must_use]
pub fn format_day(day: Day) -> String {
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = i64::from(day.days_since_epoch()) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses `YYYY-MM-DD`.
#[must_use]
pub fn parse_day(s: &str) -> Option<Day> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=days_in_month).contains(&d) || y < 1970 {
        return None;
    }
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    i32::try_from(days).ok().map(Day::from_days_since_epoch)
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
            day: format_day(d),
            messages,
            bytes,
        });
        d = d.next();
    }
    StatsView {
        from: format_day(from),
        to: format_day(to),
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
        assert_eq!(format_day(Day::from_days_since_epoch(0)), "1970-01-01");
        assert_eq!(parse_day("1970-01-01"), Some(Day::from_days_since_epoch(0)));
        assert_eq!(
            parse_day("2024-02-29").map(format_day).as_deref(),
            Some("2024-02-29")
        );
        assert_eq!(parse_day("2023-02-29"), None);
        assert_eq!(parse_day("2024-13-01"), None);
        assert_eq!(parse_day("24-01-01"), None);
        for n in [0, 59, 60, 365, 10_957, 19_782, 20_000, 40_000] {
            let d = Day::from_days_since_epoch(n);
            assert_eq!(parse_day(&format_day(d)), Some(d), "{n}");
        }
    }
}
