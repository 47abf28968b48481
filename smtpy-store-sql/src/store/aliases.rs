//! [`AliasStore`]: aliases (the mail path's hot lookup), their mailbox links
//! and the tombstones of purged addresses.

use std::collections::{BTreeSet, HashMap, HashSet};

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

use super::{
    Where, chunk_sizes, contains_fn, fetch_in, not_found, owner_of, placeholders, revision_arg,
    stale, values_tuples,
};
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
            ", ARRAY(SELECT m.mailbox_id FROM alias_mailboxes m WHERE m.alias_id = a.id \
             ORDER BY m.position) AS mailbox_ids FROM aliases a"
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

/// The columns of [`alias_select!`], by position: the mail path reads an
/// alias per recipient, and positions skip a lookup of each name.
mod col {
    use crate::row::Col;
    pub(super) const ID: Col = Col(0, "id");
    pub(super) const ADDRESS: Col = Col(1, "address");
    pub(super) const OWNER_ID: Col = Col(2, "owner_id");
    pub(super) const DOMAIN_ID: Col = Col(3, "domain_id");
    pub(super) const ENABLED: Col = Col(4, "enabled");
    pub(super) const MODE: Col = Col(5, "mode");
    pub(super) const DISABLED_REPLY: Col = Col(6, "disabled_reply");
    pub(super) const NOTE: Col = Col(7, "note");
    pub(super) const CATEGORY: Col = Col(8, "category");
    pub(super) const LABELS: Col = Col(9, "labels");
    pub(super) const EXPIRES_AT: Col = Col(10, "expires_at");
    pub(super) const LIMIT_MESSAGES_PER_HOUR: Col = Col(11, "limit_messages_per_hour");
    pub(super) const LIMIT_MAX_MESSAGE_SIZE: Col = Col(12, "limit_max_message_size");
    pub(super) const FORWARDED: Col = Col(13, "forwarded");
    pub(super) const BLOCKED: Col = Col(14, "blocked");
    pub(super) const REPLIED: Col = Col(15, "replied");
    pub(super) const BOUNCED: Col = Col(16, "bounced");
    pub(super) const LAST_USED_AT: Col = Col(17, "last_used_at");
    pub(super) const CREATED_AT: Col = Col(18, "created_at");
    pub(super) const UPDATED_AT: Col = Col(19, "updated_at");
    pub(super) const DELETED_AT: Col = Col(20, "deleted_at");
    pub(super) const REVISION: Col = Col(21, "revision");
    pub(super) const MAILBOX_IDS: Col = Col(22, "mailbox_ids");
}

fn alias_from_row(r: &Row) -> StoreResult<Alias> {
    Ok(Alias {
        id: AliasId::from_uuid(r.uuid(col::ID)?),
        address: r.address(col::ADDRESS)?,
        owner: UserId::from_uuid(r.uuid(col::OWNER_ID)?),
        domain: DomainId::from_uuid(r.uuid(col::DOMAIN_ID)?),
        mailboxes: r
            .uuid_list(col::MAILBOX_IDS)?
            .into_iter()
            .map(MailboxId::from_uuid)
            .collect(),
        enabled: r.get(col::ENABLED)?,
        mode: r.enum_value(col::MODE)?,
        disabled_reply: r.enum_value(col::DISABLED_REPLY)?,
        note: r.get(col::NOTE)?,
        category: r.get(col::CATEGORY)?,
        labels: r.json(col::LABELS)?,
        expires_at: r.opt_ts(col::EXPIRES_AT)?,
        limits: AliasLimits {
            messages_per_hour: r.opt_u32(col::LIMIT_MESSAGES_PER_HOUR)?,
            max_message_size: r.opt_u64(col::LIMIT_MAX_MESSAGE_SIZE)?,
        },
        counters: AliasCounters {
            forwarded: r.u64(col::FORWARDED)?,
            blocked: r.u64(col::BLOCKED)?,
            replied: r.u64(col::REPLIED)?,
            bounced: r.u64(col::BOUNCED)?,
            last_used_at: r.opt_ts(col::LAST_USED_AT)?,
        },
        created_at: r.ts(col::CREATED_AT)?,
        updated_at: r.ts(col::UPDATED_AT)?,
        deleted_at: r.opt_ts(col::DELETED_AT)?,
        revision: r.u64(col::REVISION)?,
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

/// The columns of `aliases`, in the order of [`alias_row_args`].
const ALIAS_INSERT_HEAD: &str = "INSERT INTO aliases (id, address, address_canonical, \
     address_lower, owner_id, domain_id, enabled, mode, disabled_reply, note, note_lower, \
     category, labels, expires_at, limit_messages_per_hour, limit_max_message_size, forwarded, \
     blocked, replied, bounced, last_used_at, created_at, updated_at, deleted_at, revision) \
     VALUES ";
/// Parameters per row of [`ALIAS_INSERT_HEAD`].
const ALIAS_COLUMNS: usize = 25;
/// Most rows of one `INSERT INTO aliases`: 12,800 parameters, under
/// SQLite's limit of 32,766 (PostgreSQL's is 65,535).
const ALIAS_ROWS: usize = 512;
/// Most rows of one `INSERT INTO alias_mailboxes` (3 parameters each).
const LINK_ROWS: usize = 4096;

/// The values of one `aliases` row, in the order of [`ALIAS_INSERT_HEAD`].
fn alias_row_args(alias: &Alias, canonical: &str, out: &mut Vec<Arg>) -> StoreResult<()> {
    let (per_hour, max_size) = limits_args(&alias.limits)?;
    let c = &alias.counters;
    let display = alias.address.to_string();
    let lower = display.to_lowercase();
    out.extend(args![
        alias.id,
        display,
        canonical,
        lower,
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
    ]);
    Ok(())
}

/// A domain as the alias checks need it.
struct DomainFacts {
    owner: Uuid,
    shared: bool,
    name_ascii: String,
}

/// What the database holds that the checks of a batch of new aliases
/// depend on, read with a few set-based queries.
struct BatchFacts {
    users: HashSet<Uuid>,
    tombstoned: HashSet<String>,
    taken_addresses: HashSet<String>,
    taken_ids: HashSet<Uuid>,
    domains: HashMap<Uuid, DomainFacts>,
    /// Mailbox id → owner.
    mailboxes: HashMap<Uuid, Uuid>,
}

/// Distinct ids as arguments.
fn uuid_args(ids: impl IntoIterator<Item = Uuid>) -> Vec<Arg> {
    ids.into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(Arg::from)
        .collect()
}

/// The keys among `keys` that `head … IN (keys)` finds, read from each row by `read`.
async fn key_set<T: Eq + std::hash::Hash>(
    s: &mut Session,
    head: &str,
    keys: &[Arg],
    read: impl Fn(&Row) -> StoreResult<T>,
) -> StoreResult<HashSet<T>> {
    fetch_in(s, head, "", keys)
        .await?
        .iter()
        .map(read)
        .collect()
}

async fn batch_facts(
    s: &mut Session,
    aliases: &[Alias],
    canonicals: &[String],
) -> StoreResult<BatchFacts> {
    let addresses: Vec<Arg> = canonicals.iter().map(Arg::from).collect();
    let owners = uuid_args(aliases.iter().map(|a| *a.owner.as_uuid()));
    let ids = uuid_args(aliases.iter().map(|a| *a.id.as_uuid()));
    let domain_ids = uuid_args(aliases.iter().map(|a| *a.domain.as_uuid()));
    let mailbox_ids = uuid_args(
        aliases
            .iter()
            .flat_map(|a| a.mailboxes.iter().map(|m| *m.as_uuid())),
    );
    let users = key_set(s, "SELECT id FROM users WHERE id", &owners, |r| {
        r.uuid("id")
    })
    .await?;
    let address = |r: &Row| r.get("address_canonical");
    let tombstoned = key_set(
        s,
        "SELECT address_canonical FROM alias_tombstones WHERE address_canonical",
        &addresses,
        address,
    )
    .await?;
    let taken_addresses = key_set(
        s,
        "SELECT address_canonical FROM aliases WHERE address_canonical",
        &addresses,
        address,
    )
    .await?;
    let taken_ids = key_set(s, "SELECT id FROM aliases WHERE id", &ids, |r| r.uuid("id")).await?;
    // On PostgreSQL the domain rows are share-locked, so a concurrent
    // delete_domain waits for this insert and then sees the aliases.
    let lock = match s.dialect() {
        Dialect::Sqlite => "",
        Dialect::Postgres => " FOR SHARE",
    };
    let domains = fetch_in(
        s,
        "SELECT id, owner_id, shared, name_ascii FROM domains WHERE id",
        lock,
        &domain_ids,
    )
    .await?
    .iter()
    .map(|r| {
        Ok((
            r.uuid("id")?,
            DomainFacts {
                owner: r.uuid("owner_id")?,
                shared: r.get("shared")?,
                name_ascii: r.get("name_ascii")?,
            },
        ))
    })
    .collect::<StoreResult<_>>()?;
    let mailboxes = fetch_in(
        s,
        "SELECT id, owner_id FROM mailboxes WHERE id",
        "",
        &mailbox_ids,
    )
    .await?
    .iter()
    .map(|r| Ok((r.uuid("id")?, r.uuid("owner_id")?)))
    .collect::<StoreResult<_>>()?;
    Ok(BatchFacts {
        users,
        tombstoned,
        taken_addresses,
        taken_ids,
        domains,
        mailboxes,
    })
}

/// Inserts `aliases` with every check of `create_alias`, as if they were
/// created one after the other: the error is the one the first failing
/// alias would get from `create_alias`, in the documented order (and an
/// address or id repeated within the batch is `AlreadyExists` at its second
/// occurrence). Nothing is written until every alias has passed.
///
/// Set-based: a few `IN (…)` queries read what the checks need for the
/// whole batch, then multi-row `INSERT`s write it, so a batch costs a
/// handful of statements per few hundred aliases instead of eight per alias.
/// The caller's transaction makes it all or nothing.
async fn insert_aliases(s: &mut Session, aliases: &[Alias]) -> StoreResult<()> {
    if aliases.is_empty() {
        return Ok(());
    }
    let canonicals: Vec<String> = aliases.iter().map(|a| a.address.canonical()).collect();
    let facts = batch_facts(s, aliases, &canonicals).await?;

    let mut rows: Vec<Arg> = Vec::with_capacity(aliases.len() * ALIAS_COLUMNS);
    let mut links: Vec<Arg> = Vec::new();
    let mut batch_addresses: HashSet<&str> = HashSet::with_capacity(aliases.len());
    let mut batch_ids: HashSet<Uuid> = HashSet::with_capacity(aliases.len());
    for (alias, canonical) in aliases.iter().zip(&canonicals) {
        let owner = *alias.owner.as_uuid();
        if !facts.users.contains(&owner) {
            return Err(not_found("user"));
        }
        if facts.tombstoned.contains(canonical) {
            return Err(StoreError::Gone { entity: "alias" });
        }
        let id = *alias.id.as_uuid();
        if facts.taken_addresses.contains(canonical)
            || facts.taken_ids.contains(&id)
            || !batch_addresses.insert(canonical)
            || !batch_ids.insert(id)
        {
            return Err(StoreError::AlreadyExists { entity: "alias" });
        }
        let domain = facts
            .domains
            .get(alias.domain.as_uuid())
            .filter(|d| d.shared || d.owner == owner)
            .ok_or_else(|| not_found("domain"))?;
        if domain.name_ascii != alias.address.domain().as_ascii() {
            return Err(StoreError::Invalid {
                entity: "alias",
                reason: format!(
                    "the address {} is not on the alias's domain {}",
                    alias.address, domain.name_ascii
                ),
            });
        }
        if alias.mailboxes.is_empty() {
            return Err(no_mailbox());
        }
        if alias
            .mailboxes
            .iter()
            .any(|m| facts.mailboxes.get(m.as_uuid()) != Some(&owner))
        {
            return Err(not_found("mailbox"));
        }
        alias_row_args(alias, canonical, &mut rows)?;
        for (position, mailbox) in alias.mailboxes.iter().enumerate() {
            links.extend(args![alias.id, position as i64, *mailbox]);
        }
    }

    let mut rows = rows.into_iter();
    for n in chunk_sizes(aliases.len(), ALIAS_ROWS) {
        let sql = format!(
            "{ALIAS_INSERT_HEAD}{}",
            values_tuples(s.dialect(), ALIAS_COLUMNS, n)
        );
        let chunk: Vec<Arg> = rows.by_ref().take(n * ALIAS_COLUMNS).collect();
        s.execute(sql, chunk)
            .await
            .on_unique_or_fk("alias", not_found("user"))?;
    }
    let link_rows = links.len() / 3;
    let mut links = links.into_iter();
    for n in chunk_sizes(link_rows, LINK_ROWS) {
        let sql = format!(
            "INSERT INTO alias_mailboxes (alias_id, position, mailbox_id) VALUES {}",
            values_tuples(s.dialect(), 3, n)
        );
        let chunk: Vec<Arg> = links.by_ref().take(n * 3).collect();
        s.execute(sql, chunk).await.on_fk(not_found("mailbox"))?;
    }
    // PostgreSQL: a purge of one of these addresses may have committed
    // while the inserts waited on the unique index: look again. (SQLite
    // writers are serialised, so nothing changed since the checks.)
    if s.dialect() == Dialect::Postgres {
        let addresses: Vec<Arg> = canonicals.iter().map(Arg::from).collect();
        let purged = fetch_in(
            s,
            "SELECT 1 FROM alias_tombstones WHERE address_canonical",
            "",
            &addresses,
        )
        .await?;
        if !purged.is_empty() {
            return Err(StoreError::Gone { entity: "alias" });
        }
    }
    Ok(())
}

#[async_trait]
impl AliasStore for SqlStore {
    async fn create_alias(&self, alias: &Alias) -> StoreResult<()> {
        let mut s = self.db.write().await?;
        insert_aliases(&mut s, std::slice::from_ref(alias)).await?;
        s.commit().await
    }

    /// All or nothing: one transaction and one commit for the whole batch,
    /// checked and written set-based (see `insert_aliases`).
    async fn create_aliases(&self, aliases: &[Alias]) -> StoreResult<()> {
        if aliases.is_empty() {
            return Ok(());
        }
        let mut s = self.db.write().await?;
        insert_aliases(&mut s, aliases).await?;
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

/// Up to `limit` live aliases whose `expires_at <= now`, by id (the
/// expire-aliases job; uses the `aliases_expires` partial index).
pub(crate) async fn fetch_expired(
    s: &mut Session,
    now: Timestamp,
    limit: i64,
) -> StoreResult<Vec<Alias>> {
    let rows = s
        .fetch_all(
            alias_select!(
                "WHERE a.expires_at IS NOT NULL AND a.deleted_at IS NULL AND a.expires_at <= $1 \
                 ORDER BY a.id LIMIT $2"
            ),
            args![now, limit],
        )
        .await?;
    rows.iter().map(alias_from_row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Row as _;

    /// The positions of `col` are those of `alias_select!`.
    #[test]
    fn column_positions_match_the_select() {
        let names: Vec<String> = alias_columns!()
            .split(',')
            .map(|c| c.trim().trim_start_matches("a.").to_owned())
            .chain(["mailbox_ids".to_owned()])
            .collect();
        let cols = [
            col::ID,
            col::ADDRESS,
            col::OWNER_ID,
            col::DOMAIN_ID,
            col::ENABLED,
            col::MODE,
            col::DISABLED_REPLY,
            col::NOTE,
            col::CATEGORY,
            col::LABELS,
            col::EXPIRES_AT,
            col::LIMIT_MESSAGES_PER_HOUR,
            col::LIMIT_MAX_MESSAGE_SIZE,
            col::FORWARDED,
            col::BLOCKED,
            col::REPLIED,
            col::BOUNCED,
            col::LAST_USED_AT,
            col::CREATED_AT,
            col::UPDATED_AT,
            col::DELETED_AT,
            col::REVISION,
            col::MAILBOX_IDS,
        ];
        assert_eq!(names.len(), cols.len());
        for c in cols {
            assert_eq!(names[c.0], c.1, "column {}", c.0);
        }
    }

    /// SQLite plans of the statements whose speed matters: the mail
    /// path's lookup and the checks of `create_aliases` search indexes.
    #[tokio::test]
    async fn sqlite_lookups_search_indexes() {
        let store = SqlStore::connect("sqlite::memory:")
            .await
            .expect("in-memory store");
        let pool = store.sqlite_pool().expect("sqlite");
        let plans = [
            (
                concat!(
                    alias_select!(sqlite),
                    " WHERE a.address_canonical = $1 AND a.deleted_at IS NULL"
                ),
                vec![
                    "SEARCH a USING INDEX aliases_address_canonical (address_canonical=?)",
                    "SEARCH m USING INDEX sqlite_autoindex_alias_mailboxes_1 (alias_id=?)",
                ],
            ),
            (
                "SELECT address_canonical FROM aliases WHERE address_canonical IN (?, ?)",
                vec![
                    "SEARCH aliases USING COVERING INDEX aliases_address_canonical \
                     (address_canonical=?)",
                ],
            ),
            (
                "SELECT id FROM aliases WHERE id IN (?, ?)",
                vec!["SEARCH aliases USING COVERING INDEX sqlite_autoindex_aliases_1 (id=?)"],
            ),
            (
                "SELECT address_canonical FROM alias_tombstones WHERE address_canonical IN (?, ?)",
                vec![
                    "SEARCH alias_tombstones USING COVERING INDEX \
                     sqlite_autoindex_alias_tombstones_1 (address_canonical=?)",
                ],
            ),
        ];
        for (sql, expected) in plans {
            let plan: Vec<String> =
                sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                    .fetch_all(pool)
                    .await
                    .expect("explain")
                    .iter()
                    .map(|r| r.get::<String, _>(3))
                    .collect();
            for step in expected {
                assert!(plan.iter().any(|p| p == step), "{sql}: {plan:#?}");
            }
            assert!(
                !plan.iter().any(|p| p.starts_with("SCAN")),
                "{sql}: {plan:#?}"
            );
        }
        store.close().await;
    }
}
