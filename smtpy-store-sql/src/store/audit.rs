//! [`AuditStore`]: the append-only audit log.

use async_trait::async_trait;
use smtpy_core::StoreResult;
use smtpy_core::ids::{AuditEventId, UserId};
use smtpy_core::model::AuditEvent;
use smtpy_core::store::{Access, AuditFilter, AuditStore, Page, PageRequest};

use super::{Where, owner_of};
use crate::SqlStore;
use crate::codec::json_text;
use crate::db::{DbResultExt, Row, args};

const AUDIT_SELECT: &str =
    "SELECT id, actor, owner_id, action, target, ip, at, details FROM audit_events";

fn event_from_row(r: &Row) -> StoreResult<AuditEvent> {
    Ok(AuditEvent {
        id: AuditEventId::from_uuid(r.uuid("id")?),
        actor: r.json("actor")?,
        owner: r.opt_uuid("owner_id")?.map(UserId::from_uuid),
        action: r.get("action")?,
        target: r.get("target")?,
        ip: r.get("ip")?,
        at: r.ts("at")?,
        details: r.json("details")?,
    })
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn append_audit(&self, event: &AuditEvent) -> StoreResult<()> {
        let mut s = self.db.write_one().await?;
        s.execute(
            "INSERT INTO audit_events (id, actor, owner_id, action, target, ip, at, details) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            args![
                event.id,
                json_text(&event.actor, "audit event")?,
                event.owner,
                event.action.as_str(),
                event.target.clone(),
                event.ip.clone(),
                event.at,
                json_text(&event.details, "audit event")?,
            ],
        )
        .await
        .on_unique("audit event")?;
        Ok(())
    }

    async fn list_audit(
        &self,
        access: Access,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> StoreResult<Page<AuditEvent>> {
        let mut w = Where::new();
        if let Some(owner) = owner_of(access) {
            w.and("owner_id = ?", owner);
        }
        if let Some(action) = &filter.action {
            w.and("action = ?", action.as_str());
        }
        if let Some(since) = filter.since {
            w.and("at >= ?", since);
        }
        w.after("id", &page);
        let (sql, args) = w.page_query(AUDIT_SELECT, "id", &page);
        let mut s = self.db.read().await?;
        let items = s
            .fetch_all(sql, args)
            .await?
            .iter()
            .map(event_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, page.effective_limit(), |e| {
            *e.id.as_uuid()
        }))
    }
}
