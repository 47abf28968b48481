//! Background work the embedding service schedules.

use std::time::Duration;

use smtpy_core::model::{Actor, AuditEvent};
use smtpy_core::store::{Access, PageRequest};

use crate::problem::ApiResult;
use crate::routes::domains::{check, store_results};
use crate::state::ApiState;

/// Domains fetched per store call.
const PAGE: u32 = 100;

/// Re-checks the DNS of every domain last checked more than `older_than`
/// ago (or never) and stores the results; returns how many domains were
/// checked.
///
/// A domain whose verification record is now right becomes verified (as
/// with `POST /domains/{id}/verify`); a verified domain stays verified
/// whatever the check finds. A domain an administrator disabled is checked
/// (its results are stored) but never becomes verified. Each domain whose MX, SPF, DKIM or DMARC check
/// went from `ok` to anything else is logged (`tracing::warn`). Without a
/// DNS seam ([`ApiState::dns`]) nothing is checked and the result is 0.
///
/// # Errors
///
/// A store failure while listing domains. A failure to store one domain's
/// results is logged and the job goes on with the next.
pub async fn recheck_domains(state: &ApiState, older_than: Duration) -> ApiResult<usize> {
    let Some(dns) = state.dns().cloned() else {
        return Ok(0);
    };
    let cutoff = state.clock().now().saturating_sub(older_than);
    let mut checked = 0usize;
    let mut page = PageRequest::first(PAGE);
    loop {
        let rows = state.store().list_domains(Access::System, page).await?;
        for d in rows.items {
            if d.checks.last_checked_at.is_some_and(|t| t > cutoff) {
                continue;
            }
            let before = d.checks.clone();
            let results = check::run(&*dns, &d, state.config()).await;
            let (stored, newly) = match store_results(state, Access::System, d, &results).await {
                Ok(v) => v,
                Err(p) => {
                    tracing::warn!(detail = %p.detail, "cannot store a domain's DNS check");
                    continue;
                }
            };
            checked += 1;
            let broken = check::broken(&before, &stored.checks);
            if !broken.is_empty() {
                tracing::warn!(
                    domain = %stored.name.as_ascii(),
                    broken = %broken.join(","),
                    "DNS records of a domain broke since the last check"
                );
            }
            if newly {
                let event = AuditEvent {
                    id: smtpy_core::ids::AuditEventId::new(),
                    actor: Actor::System,
                    owner: Some(stored.owner),
                    action: "domain.verify".to_owned(),
                    target: Some(stored.id.to_string()),
                    ip: None,
                    at: state.clock().now(),
                    details: [("verified".to_owned(), "true".to_owned())]
                        .into_iter()
                        .collect(),
                };
                if let Err(e) = state.store().append_audit(&event).await {
                    tracing::error!(error = %e, "cannot write an audit event");
                }
            }
        }
        match rows.next {
            Some(cursor) => page = PageRequest::after(cursor, PAGE),
            None => break,
        }
    }
    Ok(checked)
}
