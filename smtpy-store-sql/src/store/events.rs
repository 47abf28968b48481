//! [`EventStore`]: the delivery event log (`delivery_events`, migration 0003).
//!
//! Lists run newest first: `ORDER BY id DESC`, the next page continuing
//! with `id < cursor`. Each filter field is a bound parameter; the indexes
//! of the migration serve the owner's log, an alias's, a message's, the
//! bounce-threshold count (mailbox and time) and retention purges (time).

use std::collections::BTreeSet;

use async_trait::async_trait;
use smtpy_core::StoreResult;
use smtpy_core::ids::{AliasId, EventId, MailboxId, MessageId, UserId};
use smtpy_core::model::{DeliveryEvent, EventFilter};
use smtpy_core::store::{Access, EventStore, Page, PageRequest};
use smtpy_core::time::Timestamp;

use super::{Where, chunk_sizes, owner_of, values_tuples};
use crate::SqlStore;
use crate::codec::{enum_text, json_text};
use crate::db::{Arg, DbResultExt, Row, args};

const EVENT_SELECT: &str = "SELECT id, at, kind, owner_id, alias_id, mailbox_id, message_id, \
     sender, details FROM delivery_events";

/// The columns of `delivery_events`, in the order of [`event_row_args`].
const EVENT_INSERT_HEAD: &str = "INSERT INTO delivery_events (id, at, kind, owner_id, alias_id, \
     mailbox_id, message_id, sender, details) VALUES ";
/// Parameters per row of [`EVENT_INSERT_HEAD`].
const EVENT_COLUMNS: usize = 9;
/// Most rows of one `INSERT INTO delivery_events`: 9,216 parameters, under
/// SQLite's limit of 32,766.
const EVENT_ROWS: usize = 1024;

fn event_from_row(r: &Row) -> StoreResult<DeliveryEvent> {
    Ok(DeliveryEvent {
        id: EventId::from_uuid(r.uuid("id")?),
        at: r.ts("at")?,
        kind: r.enum_value("kind")?,
        owner: r.opt_uuid("owner_id")?.map(UserId::from_uuid),
        alias: r.opt_uuid("alias_id")?.map(AliasId::from_uuid),
        mailbox: r.opt_uuid("mailbox_id")?.map(MailboxId::from_uuid),
        message: r.opt_uuid("message_id")?.map(MessageId::from_uuid),
        sender: r.get("sender")?,
        details: r.json("details")?,
    })
}

/// The values of one `delivery_events` row, in the order of [`EVENT_INSERT_HEAD`].
fn event_row_args(e: &DeliveryEvent, out: &mut Vec<Arg>) -> StoreResult<()> {
    out.extend(args![
        e.id,
        e.at,
        enum_text(&e.kind, "delivery event")?,
        e.owner,
        e.alias,
        e.mailbox,
        e.message,
        e.sender.clone(),
        json_text(&e.details, "delivery event")?,
    ]);
    Ok(())
}

/// The conditions of `filter` (and of the owner scope) on `delivery_events`.
fn event_where(access: Access, filter: &EventFilter) -> StoreResult<Where> {
    let mut w = Where::new();
    if let Some(owner) = owner_of(access) {
        w.and("owner_id = ?", owner);
    }
    if let Some(alias) = filter.alias {
        w.and("alias_id = ?", alias);
    }
    if let Some(mailbox) = filter.mailbox {
        w.and("mailbox_id = ?", mailbox);
    }
    if let Some(message) = filter.message {
        w.and("message_id = ?", message);
    }
    if !filter.kinds.is_empty() {
        let kinds = filter
            .kinds
            .iter()
            .map(|k| enum_text(k, "delivery event"))
            .collect::<StoreResult<BTreeSet<String>>>()?;
        w.and_in("kind", kinds);
    }
    if let Some(since) = filter.since {
        w.and("at >= ?", since);
    }
    Ok(w)
}

#[async_trait]
impl EventStore for SqlStore {
    async fn append_events(&self, events: &[DeliveryEvent]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut values = Vec::with_capacity(events.len() * EVENT_COLUMNS);
        for e in events {
            event_row_args(e, &mut values)?;
        }
        // Statement sizes are powers of two (see `chunk_sizes`): a batch of
        // one such size is one statement, atomic on its own (the usual case:
        // one event); any other batch takes several, in one transaction.
        let sizes: Vec<usize> = chunk_sizes(events.len(), EVENT_ROWS).collect();
        let mut s = if sizes.len() == 1 {
            self.db.write_one().await?
        } else {
            self.db.write().await?
        };
        let mut values = values.into_iter();
        for n in sizes {
            let sql = format!(
                "{EVENT_INSERT_HEAD}{}",
                values_tuples(s.dialect(), EVENT_COLUMNS, n)
            );
            let chunk: Vec<Arg> = values.by_ref().take(n * EVENT_COLUMNS).collect();
            s.execute(sql, chunk).await.on_unique("delivery event")?;
        }
        s.commit().await
    }

    async fn list_events(
        &self,
        access: Access,
        filter: &EventFilter,
        page: PageRequest,
    ) -> StoreResult<Page<DeliveryEvent>> {
        let mut w = event_where(access, filter)?;
        w.before("id", &page);
        let (sql, args) = w.page_query(EVENT_SELECT, "id DESC", &page);
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

    async fn count_events(&self, filter: &EventFilter) -> StoreResult<u64> {
        let (sql, args) =
            event_where(Access::System, filter)?.build("SELECT COUNT(*) FROM delivery_events");
        let mut s = self.db.read().await?;
        let n = s.fetch_i64(sql, args).await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn purge_events(&self, older_than: Timestamp) -> StoreResult<u64> {
        let mut s = self.db.write_one().await?;
        let n = s
            .execute(
                "DELETE FROM delivery_events WHERE at <= $1",
                args![older_than],
            )
            .await?;
        s.commit().await?;
        Ok(n)
    }
}
