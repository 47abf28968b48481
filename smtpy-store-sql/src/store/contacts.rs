//! [`ContactStore`]: outside correspondents of an alias and their reverse aliases.

use async_trait::async_trait;
use smtpy_core::StoreResult;
use smtpy_core::address::EmailAddress;
use smtpy_core::ids::{AliasId, ContactId, UserId};
use smtpy_core::model::Contact;
use smtpy_core::store::{Access, ContactStore, Page, PageRequest};

use super::{Where, missing_or_stale, not_found, owner_of, revision_arg};
use crate::SqlStore;
use crate::db::{DbResultExt, Row, args};

macro_rules! contact_columns {
    () => {
        "id, alias_id, owner_id, address, display_name, blocked, reverse_key, created_at, \
         updated_at, last_seen_at, revision"
    };
}

const CONTACT_SELECT: &str = concat!("SELECT ", contact_columns!(), " FROM contacts");

fn contact_from_row(r: &Row) -> StoreResult<Contact> {
    Ok(Contact {
        id: ContactId::from_uuid(r.uuid("id")?),
        alias: AliasId::from_uuid(r.uuid("alias_id")?),
        owner: UserId::from_uuid(r.uuid("owner_id")?),
        address: r.address("address")?,
        display_name: r.get("display_name")?,
        blocked: r.get("blocked")?,
        reverse_key: r.get("reverse_key")?,
        created_at: r.ts("created_at")?,
        updated_at: r.ts("updated_at")?,
        last_seen_at: r.opt_ts("last_seen_at")?,
        revision: r.u64("revision")?,
    })
}

#[async_trait]
impl ContactStore for SqlStore {
    async fn create_contact(&self, contact: &Contact) -> StoreResult<()> {
        let mut s = self.db.write().await?;
        if !s
            .exists(
                "SELECT 1 FROM aliases WHERE id = $1 AND owner_id = $2",
                args![contact.alias, contact.owner],
            )
            .await?
        {
            return Err(not_found("alias"));
        }
        s.execute(
            "INSERT INTO contacts (id, alias_id, owner_id, address, address_canonical, \
             display_name, blocked, reverse_key, created_at, updated_at, last_seen_at, revision) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            args![
                contact.id,
                contact.alias,
                contact.owner,
                contact.address.to_string(),
                contact.address.canonical(),
                contact.display_name.clone(),
                contact.blocked,
                contact.reverse_key.as_str(),
                contact.created_at,
                contact.updated_at,
                contact.last_seen_at,
                revision_arg(contact.revision, "contact")?,
            ],
        )
        .await
        .on_unique_or_fk("contact", not_found("alias"))?;
        s.commit().await
    }

    async fn get_contact(&self, access: Access, id: ContactId) -> StoreResult<Contact> {
        let mut w = Where::new();
        w.and("id = ?", id);
        if let Some(owner) = owner_of(access) {
            w.and("owner_id = ?", owner);
        }
        let (sql, args) = w.build(CONTACT_SELECT);
        let mut s = self.db.read().await?;
        s.fetch_optional(sql, args)
            .await?
            .as_ref()
            .map(contact_from_row)
            .transpose()?
            .ok_or_else(|| not_found("contact"))
    }

    async fn find_contact(
        &self,
        alias: AliasId,
        address: &EmailAddress,
    ) -> StoreResult<Option<Contact>> {
        let mut s = self.db.read().await?;
        let sql = format!("{CONTACT_SELECT} WHERE alias_id = $1 AND address_canonical = $2");
        s.fetch_optional(sql, args![alias, address.canonical()])
            .await?
            .as_ref()
            .map(contact_from_row)
            .transpose()
    }

    async fn find_contact_by_reverse_key(&self, key: &str) -> StoreResult<Option<Contact>> {
        let mut s = self.db.read().await?;
        let sql = format!("{CONTACT_SELECT} WHERE reverse_key = $1");
        s.fetch_optional(sql, args![key])
            .await?
            .as_ref()
            .map(contact_from_row)
            .transpose()
    }

    async fn list_contacts(
        &self,
        access: Access,
        alias: Option<AliasId>,
        page: PageRequest,
    ) -> StoreResult<Page<Contact>> {
        let mut w = Where::new();
        if let Some(owner) = owner_of(access) {
            w.and("owner_id = ?", owner);
        }
        if let Some(alias) = alias {
            w.and("alias_id = ?", alias);
        }
        w.after("id", &page);
        let (sql, args) = w.page_query(CONTACT_SELECT, "id", &page);
        let mut s = self.db.read().await?;
        let items = s
            .fetch_all(sql, args)
            .await?
            .iter()
            .map(contact_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, page.effective_limit(), |c| {
            *c.id.as_uuid()
        }))
    }

    async fn update_contact(&self, access: Access, contact: &Contact) -> StoreResult<Contact> {
        let mut w = Where::new();
        w.and("id = ?", contact.id);
        if let Some(owner) = owner_of(access) {
            w.and("owner_id = ?", owner);
        }
        let (exists_sql, exists_args) = w.build("SELECT 1 FROM contacts");
        let mut s = self.db.write_one().await?;
        let row = s
            .fetch_optional(
                concat!(
                    "UPDATE contacts SET display_name = $3, blocked = $4, updated_at = $5, \
                     last_seen_at = $6, revision = revision + 1 \
                     WHERE id = $1 AND revision = $2 AND ($7 OR owner_id = $8) RETURNING ",
                    contact_columns!()
                ),
                args![
                    contact.id,
                    revision_arg(contact.revision, "contact")?,
                    contact.display_name.clone(),
                    contact.blocked,
                    contact.updated_at,
                    contact.last_seen_at,
                    owner_of(access).is_none(),
                    owner_of(access),
                ],
            )
            .await?;
        match row {
            Some(row) => contact_from_row(&row),
            None => Err(missing_or_stale(&mut s, exists_sql, exists_args, "contact").await),
        }
    }

    async fn delete_contact(&self, access: Access, id: ContactId) -> StoreResult<()> {
        let mut w = Where::new();
        w.and("id = ?", id);
        if let Some(owner) = owner_of(access) {
            w.and("owner_id = ?", owner);
        }
        let (sql, args) = w.build("DELETE FROM contacts");
        let mut s = self.db.write_one().await?;
        if s.execute(sql, args).await? == 0 {
            return Err(not_found("contact"));
        }
        Ok(())
    }
}
