//! The `/api/v1` resources, one module each.

pub(crate) mod accounts;
pub(crate) mod admin;
pub(crate) mod aliases;
pub(crate) mod api_keys;
pub(crate) mod audit_log;
pub(crate) mod contacts;
pub(crate) mod domains;
pub(crate) mod events;
pub(crate) mod mailboxes;
pub(crate) mod me;
pub(crate) mod queue;
pub(crate) mod rules;
pub(crate) mod stats;
pub(crate) mod transfer;
pub(crate) mod users;

use utoipa_axum::router::OpenApiRouter;

use crate::state::ApiState;

/// Every `/api/v1` route, paths relative to `/api/v1`.
pub(crate) fn all() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .merge(accounts::routes())
        .merge(me::routes())
        .merge(users::routes())
        .merge(api_keys::routes())
        .merge(domains::routes())
        .merge(mailboxes::routes())
        .merge(aliases::routes())
        .merge(contacts::routes())
        .merge(rules::routes())
        .merge(stats::routes())
        .merge(events::routes())
        .merge(audit_log::routes())
        .merge(queue::routes())
        .merge(transfer::routes())
        .merge(admin::routes())
}
