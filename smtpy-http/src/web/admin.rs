//! Pages: administration, for admins only ([`WebAdmin`](super::session::WebAdmin);
//! anyone else gets a `403` page). Each page calls the admin API's handlers:
//!
//! * `/admin/users`: accounts (disable, enable), invitations (invite,
//!   revoke);
//! * `/admin/health`: the `/readyz` checks, key metrics, background jobs;
//! * `/admin/queue`: the mail queue (inspect, retry, release, delete);
//! * `/admin/audit`: everyone's audit log;
//! * `/admin/features`: the runtime feature flags;
//! * `/admin/config`: the embedding service's effective configuration.

mod audit;
mod config;
mod features;
mod health;
mod queue;
mod users;

use axum::Router;

use crate::problem::Problem;
use crate::state::ApiState;

use super::session::urlencode;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .merge(users::routes())
        .merge(health::routes())
        .merge(queue::routes())
        .merge(audit::routes())
        .merge(features::routes())
        .merge(config::routes())
}

/// `ms` (Unix milliseconds) as `2026-11-25 08:57:10 UTC`.
pub(crate) fn when(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// [`when`], or `none` (e.g. "never") when there is no time.
pub(crate) fn when_or(ms: Option<i64>, none: &str) -> String {
    ms.map_or_else(|| none.to_owned(), when)
}

/// The calendar date (year, month, day) of a count of days since
/// 1970-01-01 (proleptic Gregorian, after H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 of a calendar date (inverse of
/// [`civil_from_days`]).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The start (Unix milliseconds, UTC) of a `YYYY-MM-DD` date, as a date
/// input sends it; `None` when it is not a real date.
pub(crate) fn parse_date(text: &str) -> Option<i64> {
    let mut parts = text.trim().splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    // 31 February and the like do not come back as themselves.
    (civil_from_days(days) == (y, m, d)).then_some(days * 86_400_000)
}

/// The `YYYY-MM-DD` date of `ms` (for a date input's value).
pub(crate) fn date_of(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(86_400_000));
    format!("{y:04}-{m:02}-{d:02}")
}

/// A metric value: whole numbers without decimals.
pub(crate) fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.3}")
    }
}

/// The id in a page's path, or the `404` the API gives for a malformed one.
pub(crate) fn path_id(text: &str, what: &str) -> Result<uuid::Uuid, Problem> {
    uuid::Uuid::try_parse(text).map_err(|_| Problem::not_found(what))
}

/// `path` with the non-empty `params` as its query (values percent-encoded):
/// the links of pagers and filters.
pub(crate) fn link(path: &str, params: &[(&str, &str)]) -> String {
    let query: Vec<String> = params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(when(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(when(1_764_060_430_000), "2025-11-25 08:47:10 UTC");
        assert_eq!(parse_date("2024-02-29"), Some(1_709_164_800_000));
        assert_eq!(date_of(1_709_164_800_000 + 5_000), "2024-02-29");
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("2023-13-01"), None);
        assert_eq!(parse_date("yesterday"), None);
        for days in [-1, 0, 59, 365, 11_016, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn links_encode_their_values() {
        assert_eq!(
            link("/admin/audit", &[("action", ""), ("cursor", "")]),
            "/admin/audit"
        );
        assert_eq!(
            link(
                "/admin/audit",
                &[("action", "user.&x"), ("since", "2024-01-01")]
            ),
            "/admin/audit?action=user.%26x&since=2024-01-01"
        );
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.250");
    }
}
