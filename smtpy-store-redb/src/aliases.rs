//! Aliases, the hot path: [`AliasStore`].

use std::collections::BTreeSet;

use async_trait::async_trait;
use redb::ReadableTable;
use smtpy_core::StoreResult;
use smtpy_core::address::EmailAddress;
use smtpy_core::ids::{AliasId, MailboxId, UserId};
use smtpy_core::model::{Alias, CounterDelta, Mailbox, RuleScope};
use smtpy_core::store::{Access, AliasFilter, AliasStore, BulkAliasAction, Page, PageRequest};
use smtpy_core::time::Timestamp;

use crate::accounts::{delete_alias_usage, user_exists};
use crate::codec::{Id, deleted_key, deleted_key_id, encode, pair};
use crate::error::{Error, exists, gone, invalid, not_found, stale};
use crate::schema::Tx;
use crate::schema::{ALIASES, ALIASES_BY_ADDRESS, ALIASES_BY_DOMAIN, ALIASES_BY_OWNER, TOMBSTONES};
use crate::store::{RedbStore, find_via, load, page_children, page_rows};

/// The alias `id` if `access` may see it.
fn visible_alias(
    rows: &impl ReadableTable<&'static [u8; 16], &'static [u8]>,
    access: Access,
    id: AliasId,
) -> Result<Alias, Error> {
    load::<Alias, 16>(rows, &id.to_bytes())?
        .filter(|a| access.permits(a.owner))
        .ok_or(not_found("alias"))
}

/// Mailbox rules shared by create, update and bulk moves: at least one,
/// every one the owner's.
fn check_alias_mailboxes(tx: &Tx<'_>, owner: UserId, mailboxes: &[MailboxId]) -> Result<(), Error> {
    if mailboxes.is_empty() {
        return Err(invalid("alias", "an alias needs at least one mailbox"));
    }
    check_owned_mailboxes(tx, owner, mailboxes)
}

/// `NotFound { entity: "mailbox" }` unless every id is a mailbox of `owner`.
pub(crate) fn check_owned_mailboxes(
    tx: &Tx<'_>,
    owner: UserId,
    mailboxes: &[MailboxId],
) -> Result<(), Error> {
    let rows = tx.mailboxes()?;
    for id in mailboxes {
        match load::<Mailbox, 16>(&*rows, &id.to_bytes())? {
            Some(m) if m.owner == owner => {}
            _ => return Err(not_found("mailbox")),
        }
    }
    Ok(())
}

/// Every check of `create_alias`, in the reference store's order.
fn check_new_alias(tx: &Tx<'_>, alias: &Alias) -> Result<(), Error> {
    user_exists(tx, alias.owner)?;
    let key = alias.address.canonical();
    if tx.tombstones()?.get(key.as_str())?.is_some() {
        return Err(gone("alias"));
    }
    if tx.aliases_by_address()?.get(key.as_str())?.is_some()
        || tx.aliases()?.get(&alias.id.to_bytes())?.is_some()
    {
        return Err(exists("alias"));
    }
    let domain =
        crate::domains::visible_domain(&*tx.domains()?, Access::Owner(alias.owner), alias.domain)?;
    if domain.name != *alias.address.domain() {
        return Err(invalid("alias", "the address is not on the alias's domain"));
    }
    check_alias_mailboxes(tx, alias.owner, &alias.mailboxes)
}

/// Writes a new alias row and all its index entries.
fn insert_alias(tx: &Tx<'_>, alias: &Alias) -> Result<(), Error> {
    let id = alias.id.to_bytes();
    tx.aliases()?.insert(&id, encode(alias)?.as_slice())?;
    tx.aliases_by_address()?
        .insert(alias.address.canonical().as_str(), &id)?;
    tx.aliases_by_owner()?
        .insert(&pair(alias.owner.to_bytes(), id), ())?;
    tx.aliases_by_domain()?
        .insert(&pair(alias.domain.to_bytes(), id), ())?;
    if let Some(at) = alias.deleted_at {
        tx.aliases_deleted()?.insert(&deleted_key(at, id), ())?;
    }
    Ok(())
}

/// Rewrites an alias row whose address, owner and domain did not change,
/// keeping the soft-delete index in step with `deleted_at`.
fn save_alias(tx: &Tx<'_>, before: &Alias, after: &Alias) -> Result<(), Error> {
    let id = after.id.to_bytes();
    if before.deleted_at != after.deleted_at {
        let mut deleted = tx.aliases_deleted()?;
        if let Some(at) = before.deleted_at {
            deleted.remove(&deleted_key(at, id))?;
        }
        if let Some(at) = after.deleted_at {
            deleted.insert(&deleted_key(at, id), ())?;
        }
    }
    tx.aliases()?.insert(&id, encode(after)?.as_slice())?;
    Ok(())
}

/// Removes an alias for good with its contacts, alias-scoped rules and
/// usage, leaving a tombstone on its address.
pub(crate) fn purge_alias(tx: &Tx<'_>, alias: &Alias) -> Result<(), Error> {
    let id = alias.id.to_bytes();
    let key = alias.address.canonical();
    tx.aliases()?.remove(&id)?;
    tx.aliases_by_address()?.remove(key.as_str())?;
    tx.aliases_by_owner()?
        .remove(&pair(alias.owner.to_bytes(), id))?;
    tx.aliases_by_domain()?
        .remove(&pair(alias.domain.to_bytes(), id))?;
    if let Some(at) = alias.deleted_at {
        tx.aliases_deleted()?.remove(&deleted_key(at, id))?;
    }
    tx.tombstones()?.insert(key.as_str(), ())?;
    crate::contacts::delete_contacts_of_alias(tx, alias.id)?;
    crate::rules::delete_rules_where(tx, Some(alias.owner), |r| {
        r.scope == RuleScope::Alias(alias.id)
    })?;
    delete_alias_usage(tx, alias.id)
}

/// Loads every alias in `ids` visible to `access`; `NotFound` if any is not.
fn load_visible(tx: &Tx<'_>, access: Access, ids: &BTreeSet<AliasId>) -> Result<Vec<Alias>, Error> {
    let rows = tx.aliases()?;
    ids.iter()
        .map(|id| visible_alias(&*rows, access, *id))
        .collect()
}

#[async_trait]
impl AliasStore for RedbStore {
    async fn create_alias(&self, alias: &Alias) -> StoreResult<()> {
        let alias = alias.clone();
        self.write(move |tx| {
            check_new_alias(tx, &alias)?;
            insert_alias(tx, &alias)
        })
        .await
    }

    async fn create_aliases(&self, aliases: &[Alias]) -> StoreResult<()> {
        let aliases = aliases.to_vec();
        self.write(move |tx| {
            // Each insert is visible to the next check, so duplicates inside
            // the batch are caught too; any error aborts everything.
            for alias in &aliases {
                check_new_alias(tx, alias)?;
                insert_alias(tx, alias)?;
            }
            Ok(())
        })
        .await
    }

    async fn get_alias(&self, access: Access, id: AliasId) -> StoreResult<Alias> {
        self.read(move |txn| visible_alias(&txn.open_table(ALIASES)?, access, id))
            .await
    }

    async fn find_alias_by_address(&self, address: &EmailAddress) -> StoreResult<Option<Alias>> {
        let key = address.canonical();
        self.read(move |txn| {
            let found: Option<Alias> = find_via(
                &txn.open_table(ALIASES_BY_ADDRESS)?,
                &txn.open_table(ALIASES)?,
                key.as_str(),
            )?;
            Ok(found.filter(|a| a.deleted_at.is_none()))
        })
        .await
    }

    async fn list_aliases(
        &self,
        access: Access,
        filter: &AliasFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Alias>> {
        let filter = filter.clone();
        self.read(move |txn| {
            let rows = txn.open_table(ALIASES)?;
            let keep = |a: &Alias| access.permits(a.owner) && filter.matches(a);
            let uuid = |a: &Alias| *a.id.as_uuid();
            match (access, filter.domain) {
                (Access::Owner(owner), _) => page_children(
                    &txn.open_table(ALIASES_BY_OWNER)?,
                    &rows,
                    owner.to_bytes(),
                    page,
                    keep,
                    uuid,
                ),
                (Access::System, Some(domain)) => page_children(
                    &txn.open_table(ALIASES_BY_DOMAIN)?,
                    &rows,
                    domain.to_bytes(),
                    page,
                    keep,
                    uuid,
                ),
                (Access::System, None) => page_rows(&rows, page, keep, uuid),
            }
        })
        .await
    }

    async fn update_alias(&self, access: Access, alias: &Alias) -> StoreResult<Alias> {
        let alias = alias.clone();
        self.write(move |tx| {
            let stored = visible_alias(&*tx.aliases()?, access, alias.id)?;
            if stored.revision != alias.revision {
                return Err(stale("alias"));
            }
            check_alias_mailboxes(tx, stored.owner, &alias.mailboxes)?;
            let mut next = stored.clone();
            next.mailboxes = alias.mailboxes;
            next.enabled = alias.enabled;
            next.mode = alias.mode;
            next.disabled_reply = alias.disabled_reply;
            next.note = alias.note;
            next.category = alias.category;
            next.labels = alias.labels;
            next.expires_at = alias.expires_at;
            next.limits = alias.limits;
            next.updated_at = alias.updated_at;
            next.revision = stored.revision + 1;
            save_alias(tx, &stored, &next)?;
            Ok(next)
        })
        .await
    }

    async fn delete_alias(&self, access: Access, id: AliasId, at: Timestamp) -> StoreResult<()> {
        self.write(move |tx| {
            let stored = visible_alias(&*tx.aliases()?, access, id)?;
            if stored.deleted_at.is_some() {
                tx.unchanged();
                return Ok(());
            }
            let mut next = stored.clone();
            next.deleted_at = Some(at);
            next.revision += 1;
            save_alias(tx, &stored, &next)
        })
        .await
    }

    async fn restore_alias(&self, access: Access, id: AliasId) -> StoreResult<()> {
        self.write(move |tx| {
            let stored = visible_alias(&*tx.aliases()?, access, id)?;
            if stored.deleted_at.is_none() {
                tx.unchanged();
                return Ok(());
            }
            let mut next = stored.clone();
            next.deleted_at = None;
            next.revision += 1;
            save_alias(tx, &stored, &next)
        })
        .await
    }

    async fn bulk_update_aliases(
        &self,
        access: Access,
        ids: &[AliasId],
        action: &BulkAliasAction,
        at: Timestamp,
    ) -> StoreResult<u64> {
        let ids: BTreeSet<AliasId> = ids.iter().copied().collect();
        let action = action.clone();
        self.write(move |tx| {
            let aliases = load_visible(tx, access, &ids)?;
            if let BulkAliasAction::MoveToMailboxes(m) = &action {
                let owners: BTreeSet<UserId> = aliases.iter().map(|a| a.owner).collect();
                for owner in owners {
                    check_alias_mailboxes(tx, owner, m)?;
                }
            }
            let mut changed = 0u64;
            for stored in &aliases {
                let mut next = stored.clone();
                let did = match &action {
                    BulkAliasAction::Enable => !std::mem::replace(&mut next.enabled, true),
                    BulkAliasAction::Disable => std::mem::replace(&mut next.enabled, false),
                    BulkAliasAction::Delete => {
                        next.deleted_at.is_none() && next.deleted_at.replace(at).is_none()
                    }
                    BulkAliasAction::Restore => next.deleted_at.take().is_some(),
                    BulkAliasAction::MoveToMailboxes(m) => {
                        let differs = next.mailboxes != *m;
                        next.mailboxes.clone_from(m);
                        differs
                    }
                    _ => return Err(invalid("alias", "unsupported bulk action")),
                };
                if did {
                    next.revision += 1;
                    next.updated_at = at;
                    save_alias(tx, stored, &next)?;
                    changed += 1;
                }
            }
            if changed == 0 {
                tx.unchanged();
            }
            Ok(changed)
        })
        .await
    }

    async fn record_alias_activity(
        &self,
        id: AliasId,
        delta: CounterDelta,
        at: Timestamp,
    ) -> StoreResult<()> {
        self.write_lazy(move |tx| {
            let key: Id = id.to_bytes();
            let mut alias: Alias = load(&*tx.aliases()?, &key)?.ok_or(not_found("alias"))?;
            let c = &mut alias.counters;
            c.forwarded = c.forwarded.saturating_add(delta.forwarded);
            c.blocked = c.blocked.saturating_add(delta.blocked);
            c.replied = c.replied.saturating_add(delta.replied);
            c.bounced = c.bounced.saturating_add(delta.bounced);
            c.last_used_at = Some(c.last_used_at.map_or(at, |t| t.max(at)));
            tx.aliases()?.insert(&key, encode(&alias)?.as_slice())?;
            Ok(())
        })
        .await
    }

    async fn purge_deleted_aliases(&self, older_than: Timestamp) -> StoreResult<u64> {
        self.write(move |tx| {
            let due: Vec<Id> = {
                let deleted = tx.aliases_deleted()?;
                let end = deleted_key(older_than, [0xff; 16]);
                let mut ids = Vec::new();
                for entry in deleted.range::<&[u8; 24]>(..=&end)? {
                    let (k, _) = entry?;
                    ids.push(deleted_key_id(k.value()));
                }
                ids
            };
            for id in &due {
                let alias: Alias = crate::store::load_indexed(&*tx.aliases()?, id)?;
                purge_alias(tx, &alias)?;
            }
            if due.is_empty() {
                tx.unchanged();
            }
            Ok(due.len() as u64)
        })
        .await
    }

    async fn is_tombstoned(&self, address: &EmailAddress) -> StoreResult<bool> {
        let key = address.canonical();
        self.read(move |txn| Ok(txn.open_table(TOMBSTONES)?.get(key.as_str())?.is_some()))
            .await
    }
}
