//! Hosted domains and destination mailboxes: [`DomainStore`] and
//! [`MailboxStore`].

use async_trait::async_trait;
use redb::ReadableTable;
use smtpy_core::StoreResult;
use smtpy_core::address::DomainName;
use smtpy_core::ids::{DomainId, MailboxId, UserId};
use smtpy_core::model::{Alias, Domain, Mailbox, RuleScope, SecretHash};
use smtpy_core::store::{Access, DomainStore, MailboxStore, Page, PageRequest};

use crate::accounts::user_exists;
use crate::codec::{decode, encode, id_text, pair};
use crate::error::{Error, conflict, exists, not_found, stale};
use crate::schema::Tx;
use crate::schema::{DOMAINS, DOMAINS_BY_NAME, MAILBOXES, MAILBOXES_BY_OWNER, MAILBOXES_BY_TOKEN};
use crate::store::{RedbStore, all_children, find_via, has_children, load, page_rows};

/// Every domain, by id (domains are few: a scan is fine).
pub(crate) fn all_domains(tx: &Tx<'_>) -> Result<Vec<Domain>, Error> {
    let rows = tx.domains()?;
    let mut out = Vec::new();
    for entry in rows.iter()? {
        let (_, v) = entry?;
        out.push(decode(v.value())?);
    }
    Ok(out)
}

/// The domain `id` if `access` may see it (its owner's, shared, or `System`).
pub(crate) fn visible_domain(
    rows: &impl ReadableTable<&'static [u8; 16], &'static [u8]>,
    access: Access,
    id: DomainId,
) -> Result<Domain, Error> {
    load::<Domain, 16>(rows, &id.to_bytes())?
        .filter(|d| d.shared || access.permits(d.owner))
        .ok_or(not_found("domain"))
}

/// Removes a domain row, its name index and the rules scoped to it.
pub(crate) fn remove_domain(tx: &Tx<'_>, domain: &Domain) -> Result<(), Error> {
    tx.domains()?.remove(&domain.id.to_bytes())?;
    tx.domains_by_name()?.remove(domain.name.as_ascii())?;
    crate::rules::delete_rules_where(tx, None, |r| r.scope == RuleScope::Domain(domain.id))
}

fn mailbox_address_key(m: &Mailbox) -> Vec<u8> {
    id_text(m.owner.to_bytes(), &m.address.canonical())
}

fn index_mailbox(tx: &Tx<'_>, m: &Mailbox) -> Result<(), Error> {
    let id = m.id.to_bytes();
    tx.mailboxes_by_owner()?
        .insert(&pair(m.owner.to_bytes(), id), ())?;
    tx.mailboxes_by_address()?
        .insert(mailbox_address_key(m).as_slice(), &id)?;
    if let Some(token) = &m.verification_token {
        tx.mailboxes_by_token()?.insert(token.as_bytes(), &id)?;
    }
    Ok(())
}

fn unindex_mailbox(tx: &Tx<'_>, m: &Mailbox) -> Result<(), Error> {
    let id = m.id.to_bytes();
    tx.mailboxes_by_owner()?
        .remove(&pair(m.owner.to_bytes(), id))?;
    tx.mailboxes_by_address()?
        .remove(mailbox_address_key(m).as_slice())?;
    if let Some(token) = &m.verification_token {
        let mut by_token = tx.mailboxes_by_token()?;
        let points_here = by_token
            .get(token.as_bytes())?
            .is_some_and(|g| *g.value() == id);
        if points_here {
            by_token.remove(token.as_bytes())?;
        }
    }
    Ok(())
}

/// Fails with `AlreadyExists` if `m`'s owner has another mailbox with its
/// address, or another mailbox has its verification token.
fn check_mailbox_unique(tx: &Tx<'_>, m: &Mailbox) -> Result<(), Error> {
    let id = m.id.to_bytes();
    let taken_by_other = |found: Option<[u8; 16]>| found.is_some_and(|other| other != id);
    let by_address = tx
        .mailboxes_by_address()?
        .get(mailbox_address_key(m).as_slice())?
        .map(|g| *g.value());
    if taken_by_other(by_address) {
        return Err(exists("mailbox"));
    }
    if let Some(token) = &m.verification_token {
        let by_token = tx
            .mailboxes_by_token()?
            .get(token.as_bytes())?
            .map(|g| *g.value());
        if taken_by_other(by_token) {
            return Err(exists("mailbox"));
        }
    }
    Ok(())
}

/// Deletes every mailbox of `owner` (user deletion).
pub(crate) fn delete_mailboxes_of_owner(tx: &Tx<'_>, owner: UserId) -> Result<(), Error> {
    let mailboxes: Vec<Mailbox> = {
        let index = tx.mailboxes_by_owner()?;
        let rows = tx.mailboxes()?;
        all_children(&*index, &*rows, owner.to_bytes())?
    };
    for m in &mailboxes {
        unindex_mailbox(tx, m)?;
        tx.mailboxes()?.remove(&m.id.to_bytes())?;
    }
    Ok(())
}

#[async_trait]
impl DomainStore for RedbStore {
    async fn create_domain(&self, domain: &Domain) -> StoreResult<()> {
        let domain = domain.clone();
        self.write(move |tx| {
            user_exists(tx, domain.owner)?;
            let id = domain.id.to_bytes();
            if tx.domains_by_name()?.get(domain.name.as_ascii())?.is_some()
                || tx.domains()?.get(&id)?.is_some()
            {
                return Err(exists("domain"));
            }
            crate::aliases::check_owned_mailboxes(tx, domain.owner, &domain.default_mailboxes)?;
            tx.domains()?.insert(&id, encode(&domain)?.as_slice())?;
            tx.domains_by_name()?.insert(domain.name.as_ascii(), &id)?;
            Ok(())
        })
        .await
    }

    async fn get_domain(&self, access: Access, id: DomainId) -> StoreResult<Domain> {
        self.read(move |txn| visible_domain(&txn.open_table(DOMAINS)?, access, id))
            .await
    }

    async fn find_domain_by_name(&self, name: &DomainName) -> StoreResult<Option<Domain>> {
        let key = name.as_ascii().to_owned();
        self.read(move |txn| {
            find_via(
                &txn.open_table(DOMAINS_BY_NAME)?,
                &txn.open_table(DOMAINS)?,
                key.as_str(),
            )
        })
        .await
    }

    async fn list_domains(&self, access: Access, page: PageRequest) -> StoreResult<Page<Domain>> {
        self.read(move |txn| {
            page_rows(
                &txn.open_table(DOMAINS)?,
                page,
                |d: &Domain| d.shared || access.permits(d.owner),
                |d| *d.id.as_uuid(),
            )
        })
        .await
    }

    async fn update_domain(&self, access: Access, domain: &Domain) -> StoreResult<Domain> {
        let domain = domain.clone();
        self.write(move |tx| {
            let id = domain.id.to_bytes();
            let stored: Domain = load(&*tx.domains()?, &id)?
                .filter(|d: &Domain| access.permits(d.owner))
                .ok_or(not_found("domain"))?;
            if stored.revision != domain.revision {
                return Err(stale("domain"));
            }
            if domain.owner != stored.owner {
                user_exists(tx, domain.owner)?;
            }
            crate::aliases::check_owned_mailboxes(tx, domain.owner, &domain.default_mailboxes)?;
            let mut next = domain;
            next.name = stored.name;
            next.created_at = stored.created_at;
            next.revision = stored.revision + 1;
            tx.domains()?.insert(&id, encode(&next)?.as_slice())?;
            Ok(next)
        })
        .await
    }

    async fn delete_domain(&self, access: Access, id: DomainId) -> StoreResult<()> {
        self.write(move |tx| {
            let stored: Domain = load(&*tx.domains()?, &id.to_bytes())?
                .filter(|d: &Domain| access.permits(d.owner))
                .ok_or(not_found("domain"))?;
            if has_children(&*tx.aliases_by_domain()?, id.to_bytes())? {
                return Err(conflict("domain", "aliases still exist on this domain"));
            }
            remove_domain(tx, &stored)
        })
        .await
    }
}

#[async_trait]
impl MailboxStore for RedbStore {
    async fn create_mailbox(&self, mailbox: &Mailbox) -> StoreResult<()> {
        let mailbox = mailbox.clone();
        self.write(move |tx| {
            user_exists(tx, mailbox.owner)?;
            let id = mailbox.id.to_bytes();
            if tx.mailboxes()?.get(&id)?.is_some() {
                return Err(exists("mailbox"));
            }
            check_mailbox_unique(tx, &mailbox)?;
            tx.mailboxes()?.insert(&id, encode(&mailbox)?.as_slice())?;
            index_mailbox(tx, &mailbox)
        })
        .await
    }

    async fn get_mailbox(&self, access: Access, id: MailboxId) -> StoreResult<Mailbox> {
        self.read(move |txn| {
            load(&txn.open_table(MAILBOXES)?, &id.to_bytes())?
                .filter(|m: &Mailbox| access.permits(m.owner))
                .ok_or(not_found("mailbox"))
        })
        .await
    }

    async fn list_mailboxes(&self, owner: UserId) -> StoreResult<Vec<Mailbox>> {
        self.read(move |txn| {
            all_children(
                &txn.open_table(MAILBOXES_BY_OWNER)?,
                &txn.open_table(MAILBOXES)?,
                owner.to_bytes(),
            )
        })
        .await
    }

    async fn find_mailbox_by_token(&self, hash: &SecretHash) -> StoreResult<Option<Mailbox>> {
        let hash = *hash.as_bytes();
        self.read(move |txn| {
            find_via(
                &txn.open_table(MAILBOXES_BY_TOKEN)?,
                &txn.open_table(MAILBOXES)?,
                &hash,
            )
        })
        .await
    }

    async fn update_mailbox(&self, access: Access, mailbox: &Mailbox) -> StoreResult<Mailbox> {
        let mailbox = mailbox.clone();
        self.write(move |tx| {
            let id = mailbox.id.to_bytes();
            let stored: Mailbox = load(&*tx.mailboxes()?, &id)?
                .filter(|m: &Mailbox| access.permits(m.owner))
                .ok_or(not_found("mailbox"))?;
            if stored.revision != mailbox.revision {
                return Err(stale("mailbox"));
            }
            let mut next = mailbox;
            next.owner = stored.owner;
            next.created_at = stored.created_at;
            next.revision = stored.revision + 1;
            check_mailbox_unique(tx, &next)?;
            unindex_mailbox(tx, &stored)?;
            index_mailbox(tx, &next)?;
            tx.mailboxes()?.insert(&id, encode(&next)?.as_slice())?;
            Ok(next)
        })
        .await
    }

    async fn delete_mailbox(&self, access: Access, id: MailboxId) -> StoreResult<()> {
        self.write(move |tx| {
            let stored: Mailbox = load(&*tx.mailboxes()?, &id.to_bytes())?
                .filter(|m: &Mailbox| access.permits(m.owner))
                .ok_or(not_found("mailbox"))?;
            // Aliases only ever point at their owner's mailboxes, so the
            // owner's aliases are the only ones to check.
            let used_by_alias = {
                let index = tx.aliases_by_owner()?;
                let rows = tx.aliases()?;
                let mut used = false;
                for alias_id in crate::store::children(&*index, stored.owner.to_bytes())? {
                    let alias: Alias = crate::store::load_indexed(&*rows, &alias_id)?;
                    if alias.mailboxes.contains(&id) {
                        used = true;
                        break;
                    }
                }
                used
            };
            if used_by_alias
                || all_domains(tx)?
                    .iter()
                    .any(|d| d.default_mailboxes.contains(&id))
            {
                return Err(conflict(
                    "mailbox",
                    "still used by an alias or as a domain default",
                ));
            }
            unindex_mailbox(tx, &stored)?;
            tx.mailboxes()?.remove(&id.to_bytes())?;
            Ok(())
        })
        .await
    }
}
