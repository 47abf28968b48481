//! Writing audit events.

use std::collections::BTreeMap;

use smtpy_core::ids::{AuditEventId, UserId};
use smtpy_core::model::{Actor, AuditEvent};

use crate::auth::Principal;
use crate::state::ApiState;

/// One audit event to write; see [`record`].
#[derive(Debug, Clone)]
pub struct Audit {
    /// Who acted.
    pub actor: Actor,
    /// Whose data it concerns (shown in their own log).
    pub owner: Option<UserId>,
    /// Dotted action, e.g. `alias.create`, `session.login_failed`.
    pub action: &'static str,
    /// What it happened to (an id or address).
    pub target: Option<String>,
    /// The client address.
    pub ip: Option<String>,
    /// Extra facts. Never secrets.
    pub details: BTreeMap<String, String>,
}

impl Audit {
    /// `action` by `principal` on their own data.
    #[must_use]
    pub fn by(principal: &Principal, action: &'static str) -> Audit {
        Audit {
            actor: principal.actor(),
            owner: Some(principal.id()),
            action,
            target: None,
            ip: principal.ip_text(),
            details: BTreeMap::new(),
        }
    }
    /// Sets the target.
    #[must_use]
    pub fn target(mut self, target: impl ToString) -> Audit {
        self.target = Some(target.to_string());
        self
    }
    /// Sets whose data it concerns.
    #[must_use]
    pub fn owner(mut self, owner: Option<UserId>) -> Audit {
        self.owner = owner;
        self
    }
    /// Adds a detail.
    #[must_use]
    pub fn detail(mut self, key: &str, value: impl ToString) -> Audit {
        self.details.insert(key.to_owned(), value.to_string());
        self
    }
}

/// Appends `audit` to the log. A failure is logged, not returned: the
/// action it records has already happened.
pub async fn record(state: &ApiState, audit: Audit) {
    let event = AuditEvent {
        id: AuditEventId::new(),
        actor: audit.actor,
        owner: audit.owner,
        action: audit.action.to_owned(),
        target: audit.target,
        ip: audit.ip,
        at: state.clock().now(),
        details: audit.details,
    };
    if let Err(e) = state.store().append_audit(&event).await {
        tracing::error!(error = %e, action = %event.action, "cannot write an audit event");
    }
}
