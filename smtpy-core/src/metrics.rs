//! Service metrics, kept per instance and rendered in the Prometheus text
//! exposition format.
//!
//! One [`Metrics`] is shared (behind an `Arc`) by the SMTP front end, the
//! delivery workers and the HTTP layer; `GET /metrics` renders it. It is an
//! ordinary value, not a process-wide recorder, so an embedding service can
//! run several instances side by side and tests can read exact counts.
//!
//! Only the families in [`FAMILIES`] exist: recording to an unknown name is
//! ignored (and caught by a debug assertion), so a typo never creates a
//! stray series.
//!
//! ```
//! use smtpy_core::metrics::{Metrics, MESSAGES_REJECTED};
//! let m = Metrics::new();
//! m.inc(MESSAGES_REJECTED, &[("reason", "unknown_alias")]);
//! assert_eq!(m.get(MESSAGES_REJECTED, &[("reason", "unknown_alias")]), 1.0);
//! assert!(m.render().contains("smtpy_messages_rejected_total{reason=\"unknown_alias\"} 1"));
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// What kind of series a family holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Set to the current value.
    Gauge,
    /// Observations in [`BUCKETS`] (seconds).
    Histogram,
}

/// Messages accepted at end of DATA (`250`), one per message.
pub const MESSAGES_ACCEPTED: &str = "smtpy_messages_accepted_total";
/// Recipients or messages refused, by `reason` (e.g. `unknown_alias`,
/// `relay_denied`, `dmarc`, `rule`, `rate_limited`, `too_big`).
pub const MESSAGES_REJECTED: &str = "smtpy_messages_rejected_total";
/// Delivery attempts per recipient, by `outcome`
/// (`delivered`, `deferred`, `bounced`).
pub const DELIVERIES: &str = "smtpy_deliveries_total";
/// Messages in the queue (gauge, refreshed at scrape time).
pub const QUEUE_DEPTH: &str = "smtpy_queue_depth";
/// Age in seconds of the oldest queued message (gauge, refreshed at scrape).
pub const QUEUE_OLDEST_AGE: &str = "smtpy_queue_oldest_age_seconds";
/// Seconds from acceptance to delivery, per delivered recipient.
pub const DELIVERY_LATENCY: &str = "smtpy_delivery_latency_seconds";
/// SMTP sessions opened.
pub const SMTP_SESSIONS: &str = "smtpy_smtp_sessions_total";
/// SMTP sessions open now.
pub const SMTP_SESSIONS_ACTIVE: &str = "smtpy_smtp_sessions_active";
/// HTTP requests by `method`, matched `route` and `status`.
pub const HTTP_REQUESTS: &str = "smtpy_http_requests_total";
/// Rate-limit denials by `scope` (SMTP and HTTP).
pub const RATE_LIMIT_DENIALS: &str = "smtpy_rate_limit_denials_total";

/// Background job runs by `job` and `outcome` (`ok`, `error`, or
/// `skipped`: another instance held the job's lease).
pub const JOB_RUNS: &str = "smtpy_job_runs_total";
/// Unix time (seconds) of each `job`'s last successful run on this instance.
pub const JOB_LAST_SUCCESS: &str = "smtpy_job_last_success_timestamp_seconds";
/// Seconds each run of a `job` took (ok or error).
pub const JOB_DURATION: &str = "smtpy_job_duration_seconds";

/// Every family: name, kind and help text.
pub const FAMILIES: &[(&str, Kind, &str)] = &[
    (
        MESSAGES_ACCEPTED,
        Kind::Counter,
        "Messages accepted at end of DATA.",
    ),
    (
        MESSAGES_REJECTED,
        Kind::Counter,
        "Recipients or messages refused, by reason.",
    ),
    (
        DELIVERIES,
        Kind::Counter,
        "Delivery attempts per recipient, by outcome.",
    ),
    (QUEUE_DEPTH, Kind::Gauge, "Messages in the queue."),
    (
        QUEUE_OLDEST_AGE,
        Kind::Gauge,
        "Age in seconds of the oldest queued message.",
    ),
    (
        DELIVERY_LATENCY,
        Kind::Histogram,
        "Seconds from acceptance to delivery.",
    ),
    (SMTP_SESSIONS, Kind::Counter, "SMTP sessions opened."),
    (SMTP_SESSIONS_ACTIVE, Kind::Gauge, "SMTP sessions open now."),
    (
        HTTP_REQUESTS,
        Kind::Counter,
        "HTTP requests by method, route and status.",
    ),
    (
        RATE_LIMIT_DENIALS,
        Kind::Counter,
        "Rate-limit denials by scope.",
    ),
    (
        JOB_RUNS,
        Kind::Counter,
        "Background job runs by job and outcome (ok, error, skipped).",
    ),
    (
        JOB_LAST_SUCCESS,
        Kind::Gauge,
        "Unix time of each job's last successful run on this instance.",
    ),
    (
        JOB_DURATION,
        Kind::Histogram,
        "Seconds each background job run took.",
    ),
];

/// Upper bounds (seconds) of the histogram buckets; `+Inf` is implied.
pub const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

type Labels = Vec<(String, String)>;

#[derive(Debug, Clone, Default)]
struct Histogram {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Series {
    values: BTreeMap<(&'static str, Labels), f64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
}

/// A set of metric series. Cheap to update (one short lock), rendered on
/// demand. See the [module documentation](self).
#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<Series>,
}

fn family(name: &str) -> Option<(&'static str, Kind)> {
    let found = FAMILIES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(n, k, _)| (*n, *k));
    debug_assert!(found.is_some(), "unknown metric {name}");
    found
}

fn labels(labels: &[(&str, &str)]) -> Labels {
    let mut v: Labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    v.sort();
    v
}

fn escape(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn write_labels(labels: &Labels, extra: Option<(&str, &str)>, out: &mut String) {
    if labels.is_empty() && extra.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    let all = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(extra);
    for (k, v) in all {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        escape(v, out);
        out.push('"');
    }
    out.push('}');
}

fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl Metrics {
    /// An empty set.
    #[must_use]
    pub fn new() -> Metrics {
        Metrics::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Series> {
        self.series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds 1 to a counter.
    pub fn inc(&self, name: &str, label_pairs: &[(&str, &str)]) {
        self.add(name, label_pairs, 1);
    }

    /// Adds `n` to a counter.
    pub fn add(&self, name: &str, label_pairs: &[(&str, &str)], n: u64) {
        let Some((name, Kind::Counter)) = family(name) else {
            return;
        };
        *self
            .lock()
            .values
            .entry((name, labels(label_pairs)))
            .or_default() += n as f64;
    }

    /// Sets a gauge.
    pub fn set(&self, name: &str, label_pairs: &[(&str, &str)], value: f64) {
        let Some((name, Kind::Gauge)) = family(name) else {
            return;
        };
        self.lock()
            .values
            .insert((name, labels(label_pairs)), value);
    }

    /// Adds `delta` (may be negative) to a gauge.
    pub fn shift(&self, name: &str, label_pairs: &[(&str, &str)], delta: f64) {
        let Some((name, Kind::Gauge)) = family(name) else {
            return;
        };
        *self
            .lock()
            .values
            .entry((name, labels(label_pairs)))
            .or_default() += delta;
    }

    /// Records one observation (seconds) in a histogram.
    pub fn observe(&self, name: &str, label_pairs: &[(&str, &str)], seconds: f64) {
        let Some((name, Kind::Histogram)) = family(name) else {
            return;
        };
        let mut series = self.lock();
        let h = series
            .histograms
            .entry((name, labels(label_pairs)))
            .or_insert_with(|| Histogram {
                buckets: vec![0; BUCKETS.len()],
                ..Histogram::default()
            });
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.buckets[i] += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    /// The current value of a counter or gauge series (0 when never
    /// recorded), or the observation count of a histogram series.
    #[must_use]
    pub fn get(&self, name: &str, label_pairs: &[(&str, &str)]) -> f64 {
        let key_labels = labels(label_pairs);
        let series = self.lock();
        if let Some((name, kind)) = family(name) {
            if kind == Kind::Histogram {
                return series
                    .histograms
                    .get(&(name, key_labels))
                    .map_or(0.0, |h| h.count as f64);
            }
            return series
                .values
                .get(&(name, key_labels))
                .copied()
                .unwrap_or(0.0);
        }
        0.0
    }

    /// The sum of a counter family over all its label values.
    #[must_use]
    pub fn total(&self, name: &str) -> f64 {
        self.lock()
            .values
            .iter()
            .filter(|((n, _), _)| *n == name)
            .map(|(_, v)| v)
            .sum()
    }

    /// Every family in the Prometheus text exposition format (version
    /// 0.0.4): `# HELP`, `# TYPE`, then the series; families never recorded
    /// show only their HELP and TYPE lines.
    #[must_use]
    pub fn render(&self) -> String {
        let series = self.lock();
        let mut out = String::with_capacity(4096);
        for (name, kind, help) in FAMILIES {
            let kind_text = match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind_text}");
            if *kind == Kind::Histogram {
                for ((n, l), h) in &series.histograms {
                    if n != name {
                        continue;
                    }
                    for (i, bound) in BUCKETS.iter().enumerate() {
                        out.push_str(name);
                        out.push_str("_bucket");
                        write_labels(l, Some(("le", &number(*bound))), &mut out);
                        let _ = writeln!(out, " {}", h.buckets[i]);
                    }
                    out.push_str(name);
                    out.push_str("_bucket");
                    write_labels(l, Some(("le", "+Inf")), &mut out);
                    let _ = writeln!(out, " {}", h.count);
                    out.push_str(name);
                    out.push_str("_sum");
                    write_labels(l, None, &mut out);
                    let _ = writeln!(out, " {}", number(h.sum));
                    out.push_str(name);
                    out.push_str("_count");
                    write_labels(l, None, &mut out);
                    let _ = writeln!(out, " {}", h.count);
                }
            } else {
                for ((n, l), v) in &series.values {
                    if n != name {
                        continue;
                    }
                    out.push_str(name);
                    write_labels(l, None, &mut out);
                    let _ = writeln!(out, " {}", number(*v));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_histograms_render() {
        let m = Metrics::new();
        m.inc(DELIVERIES, &[("outcome", "delivered")]);
        m.add(DELIVERIES, &[("outcome", "delivered")], 2);
        m.set(QUEUE_DEPTH, &[], 7.0);
        m.observe(DELIVERY_LATENCY, &[], 0.2);
        m.observe(DELIVERY_LATENCY, &[], 20.0);
        let text = m.render();
        assert!(text.contains("smtpy_deliveries_total{outcome=\"delivered\"} 3\n"));
        assert!(text.contains("smtpy_queue_depth 7\n"));
        assert!(text.contains("smtpy_delivery_latency_seconds_bucket{le=\"0.25\"} 1\n"));
        assert!(text.contains("smtpy_delivery_latency_seconds_bucket{le=\"30\"} 2\n"));
        assert!(text.contains("smtpy_delivery_latency_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("smtpy_delivery_latency_seconds_count 2\n"));
        assert!(text.contains("# TYPE smtpy_http_requests_total counter\n"));
        assert_eq!(m.get(DELIVERY_LATENCY, &[]), 2.0);
        assert_eq!(m.total(DELIVERIES), 3.0);
    }

    #[test]
    fn label_values_are_escaped_and_order_is_canonical() {
        let m = Metrics::new();
        m.inc(HTTP_REQUESTS, &[("status", "200"), ("route", "/a\"b\\")]);
        m.inc(HTTP_REQUESTS, &[("route", "/a\"b\\"), ("status", "200")]);
        let text = m.render();
        assert!(
            text.contains("smtpy_http_requests_total{route=\"/a\\\"b\\\\\",status=\"200\"} 2\n"),
            "{text}"
        );
    }

    #[test]
    fn kind_mismatch_is_ignored() {
        let m = Metrics::new();
        m.set(DELIVERIES, &[], 5.0);
        assert_eq!(m.get(DELIVERIES, &[]), 0.0);
    }
}
