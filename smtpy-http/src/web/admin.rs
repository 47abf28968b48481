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

use crate::state::ApiState;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .merge(users::routes())
        .merge(health::routes())
        .merge(queue::routes())
        .merge(audit::routes())
        .merge(features::routes())
        .merge(config::routes())
}

/// A metric value: whole numbers without decimals.
pub(crate) fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_values_read_as_numbers() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.250");
    }
}
