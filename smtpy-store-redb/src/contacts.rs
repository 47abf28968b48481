//! Contacts and their reverse aliases: [`ContactStore`].

use async_trait::async_trait;
use redb::ReadableTable;
use smtpy_core::StoreResult;
use smtpy_core::address::EmailAddress;
use smtpy_core::ids::{AliasId, ContactId, UserId};
use smtpy_core::model::{Alias, Contact};
use smtpy_core::store::{Access, ContactStore, Page, PageRequest};

use crate::codec::{encode, id_text, pair};
use crate::error::{Error, exists, not_found, stale};
use crate::schema::{CONTACTS, CONTACTS_BY_ALIAS, CONTACTS_BY_ALIAS_ADDRESS, CONTACTS_BY_OWNER};
use crate::schema::{CONTACTS_BY_REVERSE_KEY, Tx};
use crate::store::{RedbStore, all_children, find_via, load, page_children, page_rows};

fn address_key(alias: AliasId, address: &EmailAddress) -> Vec<u8> {
    id_text(alias.to_bytes(), &address.canonical())
}

fn visible_contact(
    rows: &impl ReadableTable<&'static [u8; 16], &'static [u8]>,
    access: Access,
    id: ContactId,
) -> Result<Contact, Error> {
    load::<Contact, 16>(rows, &id.to_bytes())?
        .filter(|c| access.permits(c.owner))
        .ok_or(not_found("contact"))
}

/// Removes a contact row and its index entries.
fn remove_contact(tx: &Tx<'_>, c: &Contact) -> Result<(), Error> {
    let id = c.id.to_bytes();
    tx.contacts()?.remove(&id)?;
    tx.contacts_by_reverse_key()?
        .remove(c.reverse_key.as_str())?;
    tx.contacts_by_alias_address()?
        .remove(address_key(c.alias, &c.address).as_slice())?;
    tx.contacts_by_alias()?
        .remove(&pair(c.alias.to_bytes(), id))?;
    tx.contacts_by_owner()?
        .remove(&pair(c.owner.to_bytes(), id))?;
    Ok(())
}

/// Deletes every contact of an alias (alias purge).
pub(crate) fn delete_contacts_of_alias(tx: &Tx<'_>, alias: AliasId) -> Result<(), Error> {
    let contacts: Vec<Contact> = {
        let index = tx.contacts_by_alias()?;
        let rows = tx.contacts()?;
        all_children(&*index, &*rows, alias.to_bytes())?
    };
    contacts.iter().try_for_each(|c| remove_contact(tx, c))
}

/// Deletes every contact owned by `owner` (user deletion).
pub(crate) fn delete_contacts_of_owner(tx: &Tx<'_>, owner: UserId) -> Result<(), Error> {
    let contacts: Vec<Contact> = {
        let index = tx.contacts_by_owner()?;
        let rows = tx.contacts()?;
        all_children(&*index, &*rows, owner.to_bytes())?
    };
    contacts.iter().try_for_each(|c| remove_contact(tx, c))
}

#[async_trait]
impl ContactStore for RedbStore {
    async fn create_contact(&self, contact: &Contact) -> StoreResult<()> {
        let contact = contact.clone();
        self.write(move |tx| {
            load::<Alias, 16>(&*tx.aliases()?, &contact.alias.to_bytes())?
                .filter(|a| a.owner == contact.owner)
                .ok_or(not_found("alias"))?;
            let id = contact.id.to_bytes();
            let addr = address_key(contact.alias, &contact.address);
            if tx
                .contacts_by_alias_address()?
                .get(addr.as_slice())?
                .is_some()
                || tx
                    .contacts_by_reverse_key()?
                    .get(contact.reverse_key.as_str())?
                    .is_some()
                || tx.contacts()?.get(&id)?.is_some()
            {
                return Err(exists("contact"));
            }
            tx.contacts()?.insert(&id, encode(&contact)?.as_slice())?;
            tx.contacts_by_reverse_key()?
                .insert(contact.reverse_key.as_str(), &id)?;
            tx.contacts_by_alias_address()?
                .insert(addr.as_slice(), &id)?;
            tx.contacts_by_alias()?
                .insert(&pair(contact.alias.to_bytes(), id), ())?;
            tx.contacts_by_owner()?
                .insert(&pair(contact.owner.to_bytes(), id), ())?;
            Ok(())
        })
        .await
    }

    async fn get_contact(&self, access: Access, id: ContactId) -> StoreResult<Contact> {
        self.read(move |txn| visible_contact(&txn.open_table(CONTACTS)?, access, id))
            .await
    }

    async fn find_contact(
        &self,
        alias: AliasId,
        address: &EmailAddress,
    ) -> StoreResult<Option<Contact>> {
        let key = address_key(alias, address);
        self.read(move |txn| {
            find_via(
                &txn.open_table(CONTACTS_BY_ALIAS_ADDRESS)?,
                &txn.open_table(CONTACTS)?,
                key.as_slice(),
            )
        })
        .await
    }

    async fn find_contact_by_reverse_key(&self, key: &str) -> StoreResult<Option<Contact>> {
        let key = key.to_owned();
        self.read(move |txn| {
            find_via(
                &txn.open_table(CONTACTS_BY_REVERSE_KEY)?,
                &txn.open_table(CONTACTS)?,
                key.as_str(),
            )
        })
        .await
    }

    async fn list_contacts(
        &self,
        access: Access,
        alias: Option<AliasId>,
        page: PageRequest,
    ) -> StoreResult<Page<Contact>> {
        self.read(move |txn| {
            let rows = txn.open_table(CONTACTS)?;
            let keep = |c: &Contact| access.permits(c.owner) && alias.is_none_or(|a| a == c.alias);
            let uuid = |c: &Contact| *c.id.as_uuid();
            match (alias, access) {
                (Some(a), _) => page_children(
                    &txn.open_table(CONTACTS_BY_ALIAS)?,
                    &rows,
                    a.to_bytes(),
                    page,
                    keep,
                    uuid,
                ),
                (None, Access::Owner(owner)) => page_children(
                    &txn.open_table(CONTACTS_BY_OWNER)?,
                    &rows,
                    owner.to_bytes(),
                    page,
                    keep,
                    uuid,
                ),
                (None, Access::System) => page_rows(&rows, page, keep, uuid),
            }
        })
        .await
    }

    async fn update_contact(&self, access: Access, contact: &Contact) -> StoreResult<Contact> {
        let contact = contact.clone();
        self.write(move |tx| {
            let stored = visible_contact(&*tx.contacts()?, access, contact.id)?;
            if stored.revision != contact.revision {
                return Err(stale("contact"));
            }
            let mut next = stored;
            next.display_name = contact.display_name;
            next.blocked = contact.blocked;
            next.updated_at = contact.updated_at;
            next.last_seen_at = contact.last_seen_at;
            next.revision += 1;
            tx.contacts()?
                .insert(&next.id.to_bytes(), encode(&next)?.as_slice())?;
            Ok(next)
        })
        .await
    }

    async fn delete_contact(&self, access: Access, id: ContactId) -> StoreResult<()> {
        self.write(move |tx| {
            let stored = visible_contact(&*tx.contacts()?, access, id)?;
            remove_contact(tx, &stored)
        })
        .await
    }
}
