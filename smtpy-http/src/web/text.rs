//! Small text helpers every area of the web interface shares: times and
//! dates for people, dates from `<input type="date">`, ids from paths, and
//! links with a query.

use smtpy_core::time::{Day, Timestamp};

use crate::problem::Problem;

use super::session::urlencode;

/// A Unix-milliseconds instant as `2026-11-25 08:57 UTC`.
pub(crate) fn when(ms: i64) -> String {
    let at = Timestamp::from_unix_millis(ms);
    let minutes = ms.rem_euclid(86_400_000) / 60_000;
    format!("{} {:02}:{:02} UTC", at.day(), minutes / 60, minutes % 60)
}

/// [`when`], or `none` (e.g. "never") when there is no time.
pub(crate) fn when_or(ms: Option<i64>, none: &str) -> String {
    ms.map_or_else(|| none.to_owned(), when)
}

/// The `YYYY-MM-DD` (UTC) of a Unix-milliseconds instant: a date input's
/// value.
pub(crate) fn date_of(ms: i64) -> String {
    Timestamp::from_unix_millis(ms).day().to_string()
}

/// The first instant (Unix milliseconds, UTC) of the `YYYY-MM-DD` a date
/// input sends; `None` when it is not a real date.
pub(crate) fn parse_date(text: &str) -> Option<i64> {
    Day::parse(text.trim()).map(|d| d.start().as_unix_millis())
}

/// The id in a page's path; anything that is not an id is `what` not found
/// (the 404 page), as the API answers.
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
    fn times_dates_and_links() {
        // 2024-02-29 23:59:30 UTC.
        let ms = 1_709_251_170_000;
        assert_eq!(when(ms), "2024-02-29 23:59 UTC");
        assert_eq!(when_or(None, "never"), "never");
        assert_eq!(date_of(ms), "2024-02-29");
        assert_eq!(parse_date(" 2024-02-29 "), Some(1_709_164_800_000));
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("tomorrow"), None);
        assert!(path_id("not-an-id", "alias").is_err());
        assert_eq!(
            link(
                "/admin/audit",
                &[("action", "user.create"), ("since", ""), ("q", "a b&c")]
            ),
            "/admin/audit?action=user.create&q=a%20b%26c"
        );
        assert_eq!(link("/app/aliases", &[("q", "")]), "/app/aliases");
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
        assert_eq!(date_of(-1), "1969-12-31");
    }
}
