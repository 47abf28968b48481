//! [`MailboxStore`]: verified destination mailboxes.

use async_trait::async_trait;
use smtpy_core::ids::{MailboxId, UserId};
use smtpy_core::model::{Mailbox, SecretHash};
use smtpy_core::store::{Access, MailboxStore};
use smtpy_core::{StoreError, StoreResult};

use super::{Where, missing_or_stale, not_found, owner_of, revision_arg};
use crate::SqlStore;
use crate::db::{DbResultExt, Row, args, for_update};

macro_rules! mailbox_columns {
    () => {
        "id, owner_id, address, verified_at, verification_token, disabled, created_at, \
         updated_at, revision"
    };
}

const MAILBOX_SELECT: &str = concat!("SELECT ", mailbox_columns!(), " FROM mailboxes");

fn mailbox_from_row(r: &Row) -> StoreResult<Mailbox> {
    Ok(Mailbox {
        id: MailboxId::from_uuid(r.uuid("id")?),
        owner: UserId::from_uuid(r.uuid("owner_id")?),
        address: r.address("address")?,
        verified_at: r.opt_ts("verified_at")?,
        verification_token: r.opt_hash("verification_token")?,
        disabled: r.get("disabled")?,
        created_at: r.ts("created_at")?,
        updated_at: r.ts("updated_at")?,
        revision: r.u64("revision")?,
    })
}

#[async_trait]
impl MailboxStore for SqlStore {
    async fn create_mailbox(&self, mailbox: &Mailbox) -> StoreResult<()> {
        let mut s = self.db.write_one().await?;
        s.execute(
            "INSERT INTO mailboxes (id, owner_id, address, address_canonical, verified_at, \
             verification_token, disabled, created_at, updated_at, revision) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            args![
                mailbox.id,
                mailbox.owner,
                mailbox.address.to_string(),
                mailbox.address.canonical(),
                mailbox.verified_at,
                mailbox.verification_token,
                mailbox.disabled,
                mailbox.created_at,
                mailbox.updated_at,
                revision_arg(mailbox.revision, "mailbox")?,
            ],
        )
        .await
        .on_unique_or_fk("mailbox", not_found("user"))?;
        Ok(())
    }

    async fn get_mailbox(&self, access: Access, id: MailboxId) -> StoreResult<Mailbox> {
        let mut w = Where::new();
        w.and("id = ?", id);
        if let Some(owner) = owner_of(access) {
            w.and("owner_id = ?", owner);
        }
        let (sql, args) = w.build(MAILBOX_SELECT);
        let mut s = self.db.read().await?;
        s.fetch_optional(sql, args)
            .await?
            .as_ref()
            .map(mailbox_from_row)
            .transpose()?
            .ok_or_else(|| not_found("mailbox"))
    }

    async fn list_mailboxes(&self, owner: UserId) -> StoreResult<Vec<Mailbox>> {
        let mut s = self.db.read().await?;
        let sql = format!("{MAILBOX_SELECT} WHERE owner_id = $1 ORDER BY id");
        s.fetch_all(sql, args![owner])
            .await?
            .iter()
            .map(mailbox_from_row)
            .collect()
    }

    async fn find_mailbox_by_token(&self, hash: &SecretHash) -> StoreResult<Option<Mailbox>> {
        let mut s = self.db.read().await?;
        let sql = format!("{MAILBOX_SELECT} WHERE verification_token = $1");
        s.fetch_optional(sql, args![hash])
            .await?
            .as_ref()
            .map(mailbox_from_row)
            .transpose()
    }

    async fn update_mailbox(&self, access: Access, mailbox: &Mailbox) -> StoreResult<Mailbox> {
        let mut w = Where::new();
        w.and("id = ?", mailbox.id);
        if let Some(owner) = owner_of(access) {
            w.and("owner_id = ?", owner);
        }
        let (exists_sql, exists_args) = w.build("SELECT 1 FROM mailboxes");
        let mut s = self.db.write_one().await?;
        let row = s
            .fetch_optional(
                concat!(
                    "UPDATE mailboxes SET address = $3, address_canonical = $4, verified_at = $5, \
                     verification_token = $6, disabled = $7, updated_at = $8, \
                     revision = revision + 1 \
                     WHERE id = $1 AND revision = $2 AND ($9 OR owner_id = $10) RETURNING ",
                    mailbox_columns!()
                ),
                args![
                    mailbox.id,
                    revision_arg(mailbox.revision, "mailbox")?,
                    mailbox.address.to_string(),
                    mailbox.address.canonical(),
                    mailbox.verified_at,
                    mailbox.verification_token,
                    mailbox.disabled,
                    mailbox.updated_at,
                    owner_of(access).is_none(),
                    owner_of(access),
                ],
            )
            .await
            .on_unique("mailbox")?;
        match row {
            Some(row) => mailbox_from_row(&row),
            None => Err(missing_or_stale(&mut s, exists_sql, exists_args, "mailbox").await),
        }
    }

    async fn delete_mailbox(&self, access: Access, id: MailboxId) -> StoreResult<()> {
        let mut s = self.db.write().await?;
        let row = s
            .fetch_optional(
                for_update!("SELECT owner_id FROM mailboxes WHERE id = $1"),
                args![id],
            )
            .await?;
        let visible = match (&row, owner_of(access)) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(r), Some(owner)) => r.uuid("owner_id")? == owner,
        };
        if !visible {
            return Err(not_found("mailbox"));
        }
        let in_use = StoreError::Conflict {
            entity: "mailbox",
            reason: "an alias or a domain default still forwards to it",
        };
        let referenced = s
            .exists(
                "SELECT 1 FROM alias_mailboxes WHERE mailbox_id = $1 \
                 UNION ALL SELECT 1 FROM domain_default_mailboxes WHERE mailbox_id = $1 LIMIT 1",
                args![id],
            )
            .await?;
        if referenced {
            return Err(in_use);
        }
        s.execute("DELETE FROM mailboxes WHERE id = $1", args![id])
            .await
            .on_fk(in_use)?;
        s.commit().await
    }
}
