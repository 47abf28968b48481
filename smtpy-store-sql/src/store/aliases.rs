//! [`AliasStore`]: aliases (the mail path's hot lookup), their mailbox links
//! and the tombstones of purged addresses.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use smtpy_core::address::EmailAddress;
use smtpy_core::ids::{AliasId, DomainId, MailboxId, UserId};
use smtpy_core::model::{Alias, AliasCounters, AliasLimits, CounterDelta};
use smtpy_core::store::{
    Access, AliasFilter, AliasStore, BulkAliasAction, DeletedFilter, Page, PageRequest,
};
use smtpy_core::time::Timestamp;
use smtpy_core::{StoreError, StoreResult};
use uuid::Uuid;

use super::{Where, contains_fn, not_found, owner_of, placeholders, revision_arg, stale};
use crate::SqlStore;
use crate::codec::{enum_text, json_text, to_i64};
use crate::db::{Arg, DbResultExt, Dialect, Row, Session, Sql, args};

macro_rules! alias_columns {
    () => {
        "a.id, a.address, a.owner_id, a.domain_id, a.enabled, a.mode, a.disabled_reply, a.note, \
         a.category, a.labels, a.expires_at, a.limit_messages_per_hour, \
         a.limit_max_message_size, a.forwarded, a.blocked, a.replied, a.bounced, \
         a.last_used_at, a.created_at, a.updated_at, a.deleted_at, a.revision"
    };
}

/// `SELECT` of aliases with their ordered mailbox ids folded into one
/// column, so one statement (one consistent snapshot) reads an alias.
macro_rules! alias_select {
    (sqlite) => {
        concat!(
            "SELECT ",
            alias_columns!(),
            ", (SELECT group_concat(hex(m.mailbox_id), ',' ORDER BY m.position) \
             FROM alias_mailboxes m WHERE m.alias_id = a.id) AS mailbox_ids FROM aliases a"
        )
    };
    (postgres) => {
        concat!(
            "SELECT ",
            alias_columns!(),
            ", (SELECT string_agg(m.mailbox_id::text, ',' ORDER BY m.position) \
             FROM alias_mailboxes m WHERE m.alias_id = a.id) AS mailbox_ids FROM aliases a"
        )
    };
    ($tail:literal) => {
        Sql::Split {
            sqlite: concat!(alias_select!(sqlite), " ", $tail),
            postgres: concat!(alias_select!(postgres), " ", $tail),
        }
    };
}

fn alias_select(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => alias_select!(sqlite),
        Dialect::Postgres => alias_select!(postgres),
    }
}

fn alias_from_row(r: &Row) -> StoreResult<Alias> {
    Ok(Alias {
        id: AliasId::from_uuid(r.uuid("id")?),
        address: r.address("address")?,
        owner: UserId::from_uuid(r.uuid("owner_id")?),
        domain: DomainId::from_uuid(r.uuid("domain_id")?),
        mailboxes: r
            .uuid_list("mailbox_ids")?
            .into_iter()
            .map(MailboxId::from_uuid)
            .collect(),
        enabled: r.get("enabled")?,
        mode: r.enum_value("mode")?,
        disabled_reply: r.enum_value("disabled_reply")?,
        note: r.get("note")?,
        category: r.get("category")?,
        labels: r.json("labels")?,
        expires_at: r.opt_ts("expires_at")?,
        limits: AliasLimits {
            messages_per_hour: r.opt_u32("limit_messages_per_hour")?,
            max_message_size: r.opt_u64("limit_max_message_size")?,
        },
        counters: AliasCounters {
            forwarded: r.u64("forwarded")?,
            blocked: r.u64("blocked")?,
            replied: r.u64("replied")?,
            bounced: r.u64("bounced")?,
            last_used_at: r.opt_ts("last_used_at")?,
        },
        created_at: r.ts("created_at")?,
        updated_at: r.ts("updated_at")?,
        deleted_at: r.opt_ts("deleted_at")?,
        revision: r.u64("revision")?,
    })
}

/// Reads one alias inside a session.
async fn fetch_alias(s: &mut Session, id: AliasId) -> StoreResult<Option<Alias>> {
    s.fetch_optional(alias_select!("WHERE a.id = $1"), args![id])
        .await?
        .as_ref()
        .map(alias_from_row)
        .transpose()
}

/// Reads one alias visible to `access`, locking it on PostgreSQL.
async fn lock_visible_alias(s: &mut Session, access: Access, id: AliasId) -> StoreResult<Alias> {
    let row = s
        .fetch_optional(
            Sql::Split {
                sqlite: "SELECT owner_id FROM aliases WHERE id = $1",
                postgres: "SELECT owner_id FROM aliases WHERE id = $1 FOR UPDATE",
            },
            args![id],
        )
        .await?
        .ok_or_else(|| not_found("alias"))?;
    if let Some(owner) = owner_of(access)
        && row.uuid("owner_id")? != owner
    {
        return Err(not_found("alias"));
    }
    fetch_alias(s, id).await?.ok_or_else(|| not_found("alias"))
}

fn no_mailbox() -> StoreError {
    StoreError::Invalid {
        entity: "alias",
        reason: "an alias needs at least one mailbox".into(),
    }
}

/// `NotFound { entity: "mailbox" }` unless every id is a mailbox of `owner`.
pub(crate) async fn check_mailboxes(
    s: &mut Session,
    owner: UserId,
    ids: &[MailboxId],
) -> StoreResult<()> {
    let distinct: BTreeSet<Uuid> = ids.iter().map(|m| *m.as_uuid()).collect();
    if distinct.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "SELECT COUNT(*) FROM mailboxes WHERE owner_id = $1 AND id IN ({})",
        placeholders(2, distinct.len())
    );
    let mut args = args![owner];
    args.extend(distinct.iter().map(|u| Arg::from(*u)));
    let found = s.fetch_i64(sql, args).await?;
    if usize::try_from(found).ok() != Some(distinct.len()) {
        return Err(not_found("mailbox"));
    }
    Ok(())
}

/// Replaces the ordered mailbox list of an alias.
async fn write_alias_mailboxes(
    s: &mut Session,
    alias: AliasId,
    ids: &[MailboxId],
) -> StoreResult<()> {
    s.execute(
        "DELETE FROM alias_mailboxes WHERE alias_id = $1",
        args![alias],
    )
    .await?;
    for (position, mailbox) in ids.iter().enumerate() {
        s.execute(
            "INSERT INTO alias_mailboxes (alias_id, position, mailbox_id) VALUES ($1, $2, $3)",
            args![alias, position as i64, *mailbox],
        )
        .await
        .on_fk(not_found("mailbox"))?;
    }
    Ok(())
}

fn limits_args(limits: &AliasLimits) -> StoreResult<(Option<i64>, Option<i64>)> {
    let per_hour = limits.messages_per_hour.map(i64::from);
    let max_size = limits
        .max_message_size
        .map(|v| to_i64(v, "alias", "max_message_size"))
        .transpose()?;
    Ok((per_hour, max_size))
}

fn is_tombstone_sql() -> &'static str {
    "SELECT 1 FROM alias_tombstones WHERE address_canonical = $1"
}

/// Every check of `create_alias`, in the reference order, then the insert.
async fn insert_alias(s: &mut Session, alias: &Alias) -> StoreResult<()> {
    if !s
        .exists("SELECT 1 FROM users WHERE id = $1", args![alias.owner])
        .await?
    {
        return Err(not_found("user"));
    }
    let canonical = alias.address.canonical();
    if s.exists(is_tombstone_sql(), args![canonical.as_str()])
        .await?
    {
        return Err(StoreError::Gone { entity: "alias" });
    }
    if s.exists(
        "SELECT 1 FROM aliases WHERE address_canonical = $1 OR id = $2",
        args![canonical.as_str(), alias.id],
    )
    .await?
    {
        return Err(StoreError::AlreadyExists { entity: "alias" });
    }
    // On PostgreSQL the domain row is share-locked, so a concurrent
    // delete_domain waits for this insert and then sees the alias.
    let domain = s
        .fetch_optional(
            Sql::Split {
                sqlite: "SELECT owner_id, shared, name_ascii FROM domains WHERE id = $1",
                postgres: "SELECT owner_id, shared, name_ascii FROM domains WHERE id = $1 \
                           FOR SHARE",
            },
            args![alias.domain],
        )
        .await?
        .ok_or_else(|| not_found("domain"))?;
    let shared: bool = domain.get("shared")?;
    if !shared && domain.uuid("owner_id")? != *alias.owner.as_uuid() {
        return Err(not_found("domain"));
    }
    let domain_name: String = domain.get("name_ascii")?;
    if domain_name != alias.address.domain().as_ascii() {
        return Err(StoreError::Invalid {
            entity: "alias",
            reason: format!(
                "the address {} is not on the alias's domain {domain_name}",
                alias.address
            ),
        });
    }
    if alias.mailboxes.is_empty() {
        return Err(no_mailbox());
    }
    check_mailboxes(s, alias.owner, &alias.mailboxes).await?;
    let (per_hour, max_size) = limits_args(&alias.limits)?;
    let c = &alias.counters;
    s.execute(
        "INSERT INTO aliases (id, address, address_canonical, address_lower, owner_id, \
         domain_id, enabled, mode, disabled_reply, note, note_lower, category, labels, \
         expires_at, limit_messages_per_hour, limit_max_message_size, forwarded, blocked, \
         replied, bounced, last_used_at, created_at, updated_at, deleted_at, revision) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
         $17, $18, $19, $20, $21, $22, $23, $24, $25)",
        args![
            alias.id,
            alias.address.to_string(),
            canonical.as_str(),
            alias.address.to_string().to_lowercase(),
            alias.owner,
            alias.domain,
            alias.enabled,
            enum_text(&alias.mode, "alias")?,
            enum_text(&alias.disabled_reply, "alias")?,
            alias.note.clone(),
            alias.note.as_ref().map(|n| n.to_lowercase()),
            alias.category.clone(),
            json_text(&alias.labels, "alias")?,
            alias.expires_at,
            per_hour,
            max_size,
            to_i64(c.forwarded, "alias", "forwarded")?,
            to_i64(c.blocked, "alias", "blocked")?,
            to_i64(c.replied, "alias", "replied")?,
            to_i64(c.bounced, "alias", "bounced")?,
            c.last_used_at,
            alias.created_at,
            alias.updated_at,
            alias.deleted_at,
            revision_arg(alias.revision, "alias")?,
        ],
    )
    .await
    .on_unique_or_fk("alias", not_found("user"))?;
    write_alias_mailboxes(s, alias.id, &alias.mailboxes).await?;
    // A purge of the same address may have committed while this insert
    // waited on the unique index (PostgreSQL): look again.
    if s.exists(is_tombstone_sql(), args![canonical.as_str()])
        .await?
    {
        return Err(StoreError::Gone { entity: "alias" });
    }
    Ok(())
}

#[async_trait]
impl AliasStore for SqlStore {
    async fn create_alias(&self, alias: &Alias) -> StoreResult<()> {
        let mut s = self.db.write().await?;
        insert_alias(&mut s, alias).await?;
        s.commit().await
    }

    /// All or nothing: one transaction and one commit for the whole batch.
    async fn create_aliases(&self, aliases: &[Alias]) -> StoreResult<()> {
        let mut s = self.db.write().await?;
        for alias in aliases {
            insert_alias(&mut s, alias).await?;
        }
        s.commit().await
    }

    async fn get_alias(&self, access: Access, id: AliasId) -> StoreResult<Alias> {
        let mut s = self.db.read().await?;
        let row = match owner_of(access) {
            None => {
                s.fetch_optional(alias_select!("WHERE a.id = $1"), args![id])
                    .await?
            }
            Some(owner) => {
                s.fetch_optional(
                    alias_select!("WHERE a.id = $1 AND a.owner_id = $2"),
                    args![id, owner],
                )
                .await?
            }
        };
        row.as_ref()
            .map(alias_from_row)
            .transpose()?
            .ok_or_else(|| not_found("alias"))
    }

    async fn find_alias_by_address(&self, address: &EmailAddress) -> StoreResult<Option<Alias>> {
        let mut s = self.db.read().await?;
        s.fetch_optional(
            alias_select!("WHERE a.address_canonical = $1 AND a.deleted_at IS NULL"),
            args![address.canonical()],
        )
        .await?
        .as_ref()
        .map(alias_from_row)
        .transpose()
    }

    async fn list_aliases(
        &self,
        access: Access,
        filter: &AliasFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Alias>> {
        let mut s = self.db.read().await?;
        let dialect = s.dialect();
        let mut w = Where::new();
        if let Some(owner) = owner_of(access) {
            w.and("a.owner_id = ?", owner);
        }
        match filter.deleted {
            DeletedFilter::Live => w.and_fixed("a.deleted_at IS NULL"),
            DeletedFilter::Deleted => w.and_fixed("a.deleted_at IS NOT NULL"),
            DeletedFilter::Any => &mut w,
        };
        if let Some(domain) = filter.domain {
            w.and("a.domain_id = ?", domain);
        }
        if let Some(enabled) = filter.enabled {
            w.and("a.enabled = ?", enabled);
        }
        if let Some(category) = &filter.category {
            w.and("a.category = ?", category.as_str());
        }
        if let Some(text) = &filter.text {
            // The same test as AliasFilter::matches: lower-cased needle, a
            // substring of the canonical address, the lower-cased display
            // address or the lower-cased note (both stored lower-cased by
            // Rust, so the folding is Unicode-exact on both dialects).
            let f = contains_fn(dialect);
            w.and(
                &format!(
                    "({f}(a.address_canonical, ?) > 0 OR {f}(a.address_lower, ?) > 0 \
                     OR {f}(COALESCE(a.note_lower, ''), ?) > 0)"
                ),
                text.to_lowercase(),
            );
        }
        w.after("a.id", &page);
        let (sql, args) = w.page_query(alias_select(dialect), "a.id", &page);
        let items = s
            .fetch_all(sql, args)
            .await?
            .iter()
            .map(alias_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, page.effective_limit(), |a| {
            *a.id.as_uuid()
        }))
    }

    async fn update_alias(&self, access: Access, alias: &Alias) -> StoreResult<Alias> {
        let mut s = self.db.write().await?;
        let current = lock_visible_alias(&mut s, access, alias.id).await?;
        if current.revision != alias.revision {
            return Err(stale("alias"));
        }
        if alias.mailboxes.is_empty() {
            return Err(no_mailbox());
        }
        check_mailboxes(&mut s, current.owner, &alias.mailboxes).await?;
        let (per_hour, max_size) = limits_args(&alias.limits)?;
        let changed = s
            .execute(
                "UPDATE aliases SET enabled = $3, mode = $4, disabled_reply = $5, note = $6, \
                 note_lower = $7, category = $8, labels = $9, expires_at = $10, \
                 limit_messages_per_hour = $11, limit_max_message_size = $12, updated_at = $13, \
                 revision = revision + 1 WHERE id = $1 AND revision = $2",
                args![
                    alias.id,
                    revision_arg(alias.revision, "alias")?,
                    alias.enabled,
                    enum_text(&alias.mode, "alias")?,
                    enum_text(&alias.disabled_reply, "alias")?,
                    alias.note.clone(),
                    alias.note.as_ref().map(|n| n.to_lowercase()),
                    alias.category.clone(),
                    json_text(&alias.labels, "alias")?,
                    alias.expires_at,
                    per_hour,
                    max_size,
                    alias.updated_at,
                ],
            )
            .await?;
        if changed == 0 {
            return Err(stale("alias"));
        }
        if current.mailboxes != alias.mailboxes {
            write_alias_mailboxes(&mut s, alias.id, &alias.mailboxes).await?;
        }
        let stored = fetch_alias(&mut s, alias.id)
            .await?
            .ok_or_else(|| not_found("alias"))?;
        s.commit().await?;
        Ok(stored)
    }

    async fn delete_alias(&self, access: Access, id: AliasId, at: Timestamp) -> StoreResult<()> {
        let mut s = self.db.write().await?;
        let current = lock_visible_alias(&mut s, access, id).await?;
        if current.deleted_at.is_none() {
            s.execute(
                "UPDATE aliases SET deleted_at = $2, revision = revision + 1 WHERE id = $1",
                args![id, at],
            )
            .await?;
        }
        s.commit().await
    }

    async fn restore_alias(&self, access: Access, id: AliasId) -> StoreResult<()> {
        let mut s = self.db.write().await?;
        let current = lock_visible_alias(&mut s, access, id).await?;
        if current.deleted_at.is_some() {
            s.execute(
                "UPDATE aliases SET deleted_at = NULL, revision = revision + 1 WHERE id = $1",
                args![id],
            )
            .await?;
        }
        s.commit().await
    }

    async fn bulk_update_aliases(
        &self,
        access: Access,
        ids: &[AliasId],
        action: &BulkAliasAction,
        at: Timestamp,
    ) -> StoreResult<u64> {
        let distinct: BTreeSet<Uuid> = ids.iter().map(|a| *a.as_uuid()).collect();
        if distinct.is_empty() {
            return Ok(0);
        }
        let mut s = self.db.write().await?;
        let dialect = s.dialect();
        // Visible rows among the ids, locked on PostgreSQL.
        let mut w = Where::new();
        if let Some(owner) = owner_of(access) {
            w.and("owner_id = ?", owner);
        }
        w.and_in("id", distinct.iter().copied());
        let (mut sql, args) = w.build("SELECT id, owner_id FROM aliases");
        if dialect == Dialect::Postgres {
            sql.push_str(" FOR UPDATE");
        }
        let rows = s.fetch_all(sql, args).await?;
        if rows.len() != distinct.len() {
            return Err(not_found("alias"));
        }
        if let BulkAliasAction::MoveToMailboxes(mailboxes) = action
            && mailboxes.is_empty()
        {
            return Err(no_mailbox());
        }
        let in_ids = placeholders(1, distinct.len());
        // Every statement binds the ids first and `at` last.
        let id_at_args = || {
            let mut v = distinct.iter().map(|u| Arg::from(*u)).collect::<Vec<_>>();
            v.push(Arg::from(at));
            v
        };
        let n = distinct.len() + 1;
        let changed = match action {
            BulkAliasAction::Enable => {
                s.execute(
                    format!(
                        "UPDATE aliases SET enabled = TRUE, updated_at = ${n}, \
                         revision = revision + 1 WHERE id IN ({in_ids}) AND NOT enabled"
                    ),
                    id_at_args(),
                )
                .await?
            }
            BulkAliasAction::Disable => {
                s.execute(
                    format!(
                        "UPDATE aliases SET enabled = FALSE, updated_at = ${n}, \
                         revision = revision + 1 WHERE id IN ({in_ids}) AND enabled"
                    ),
                    id_at_args(),
                )
                .await?
            }
            BulkAliasAction::Delete => {
                s.execute(
                    format!(
                        "UPDATE aliases SET deleted_at = ${n}, updated_at = ${n}, \
                         revision = revision + 1 WHERE id IN ({in_ids}) AND deleted_at IS NULL"
                    ),
                    id_at_args(),
                )
                .await?
            }
            BulkAliasAction::Restore => {
                s.execute(
                    format!(
                        "UPDATE aliases SET deleted_at = NULL, updated_at = ${n}, \
                         revision = revision + 1 WHERE id IN ({in_ids}) AND deleted_at IS NOT NULL"
                    ),
                    id_at_args(),
                )
                .await?
            }
            BulkAliasAction::MoveToMailboxes(mailboxes) => {
                let owners: HashMap<Uuid, Uuid> = rows
                    .iter()
                    .map(|r| Ok((r.uuid("id")?, r.uuid("owner_id")?)))
                    .collect::<StoreResult<_>>()?;
                let distinct_owners: BTreeSet<Uuid> = owners.values().copied().collect();
                for owner in distinct_owners {
                    check_mailboxes(&mut s, UserId::from_uuid(owner), mailboxes).await?;
                }
                let mut changed = 0;
                for id in &distinct {
                    let id = AliasId::from_uuid(*id);
                    let current = fetch_alias(&mut s, id)
                        .await?
                        .ok_or_else(|| not_found("alias"))?;
                    if current.mailboxes != *mailboxes {
                        write_alias_mailboxes(&mut s, id, mailboxes).await?;
                        s.execute(
                            "UPDATE aliases SET updated_at = $2, revision = revision + 1 \
                             WHERE id = $1",
                            args![id, at],
                        )
                        .await?;
                        changed += 1;
                    }
                }
                changed
            }
            other => {
                return Err(StoreError::Invalid {
                    entity: "alias",
                    reason: format!("unsupported bulk action {other:?}"),
                });
            }
        };
        s.commit().await?;
        Ok(changed)
    }

    async fn record_alias_activity(
        &self,
        id: AliasId,
        delta: CounterDelta,
        at: Timestamp,
    ) -> StoreResult<()> {
        let mut s = self.db.write_one().await?;
        let found = s
            .execute(
                "UPDATE aliases SET forwarded = forwarded + $2, blocked = blocked + $3, \
                 replied = replied + $4, bounced = bounced + $5, last_used_at = CASE \
                 WHEN last_used_at IS NULL OR last_used_at < $6 THEN $6 ELSE last_used_at END \
                 WHERE id = $1",
                args![
                    id,
                    to_i64(delta.forwarded, "alias", "forwarded")?,
                    to_i64(delta.blocked, "alias", "blocked")?,
                    to_i64(delta.replied, "alias", "replied")?,
                    to_i64(delta.bounced, "alias", "bounced")?,
                    at,
                ],
            )
            .await?;
        if found == 0 {
            return Err(not_found("alias"));
        }
        Ok(())
    }

    async fn purge_deleted_aliases(&self, older_than: Timestamp) -> StoreResult<u64> {
        let mut s = self.db.write().await?;
        s.execute(
            "INSERT INTO alias_tombstones (address_canonical, alias_id, owner_id, retired_at) \
             SELECT address_canonical, id, owner_id, deleted_at FROM aliases \
             WHERE deleted_at IS NOT NULL AND deleted_at <= $1 ON CONFLICT DO NOTHING",
            args![older_than],
        )
        .await?;
        s.execute(
            "DELETE FROM usage_daily WHERE subject_kind = 'alias' AND subject_id IN \
             (SELECT id FROM aliases WHERE deleted_at IS NOT NULL AND deleted_at <= $1)",
            args![older_than],
        )
        .await?;
        // Contacts, alias-scoped rules and mailbox links cascade.
        let purged = s
            .execute(
                "DELETE FROM aliases WHERE deleted_at IS NOT NULL AND deleted_at <= $1",
                args![older_than],
            )
            .await?;
        s.commit().await?;
        Ok(purged)
    }

    async fn is_tombstoned(&self, address: &EmailAddress) -> StoreResult<bool> {
        let mut s = self.db.read().await?;
        Ok(s.exists(is_tombstone_sql(), args![address.canonical()])
            .await?)
    }
}
