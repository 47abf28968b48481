//! [`UserStore`]: accounts, and deleting one with everything it owns.

use async_trait::async_trait;
use smtpy_core::address::EmailAddress;
use smtpy_core::ids::UserId;
use smtpy_core::model::User;
use smtpy_core::store::{Page, PageRequest, UserStore};
use smtpy_core::{StoreError, StoreResult};

use super::{Where, missing_or_stale, not_found, revision_arg};
use crate::SqlStore;
use crate::codec::{enum_text, json_text};
use crate::db::{DbResultExt, Row, args, for_update};

macro_rules! user_columns {
    () => {
        "id, email, password, role, status, totp, created_at, updated_at, last_login_at, settings, \
         revision"
    };
}

const USER_SELECT: &str = concat!("SELECT ", user_columns!(), " FROM users");

fn user_from_row(r: &Row) -> StoreResult<User> {
    Ok(User {
        id: UserId::from_uuid(r.uuid("id")?),
        email: r.address("email")?,
        password: r.opt_password("password")?,
        role: r.enum_value("role")?,
        status: r.enum_value("status")?,
        totp: r.opt_secret("totp")?,
        created_at: r.ts("created_at")?,
        updated_at: r.ts("updated_at")?,
        last_login_at: r.opt_ts("last_login_at")?,
        settings: r.json("settings")?,
        revision: r.u64("revision")?,
    })
}

#[async_trait]
impl UserStore for SqlStore {
    async fn create_user(&self, user: &User) -> StoreResult<()> {
        let mut s = self.db.write_one().await?;
        s.execute(
            "INSERT INTO users (id, email, email_canonical, password, role, status, totp, \
             created_at, updated_at, last_login_at, settings, revision) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            args![
                user.id,
                user.email.to_string(),
                user.email.canonical(),
                user.password.as_ref().map(|p| p.as_phc().to_owned()),
                enum_text(&user.role, "user")?,
                enum_text(&user.status, "user")?,
                user.totp.as_ref().map(|t| t.to_text()),
                user.created_at,
                user.updated_at,
                user.last_login_at,
                json_text(&user.settings, "user")?,
                revision_arg(user.revision, "user")?,
            ],
        )
        .await
        .on_unique("user")?;
        s.commit().await
    }

    async fn get_user(&self, id: UserId) -> StoreResult<User> {
        let mut s = self.db.read().await?;
        let sql = format!("{USER_SELECT} WHERE id = $1");
        match s.fetch_optional(sql, args![id]).await? {
            Some(row) => user_from_row(&row),
            None => Err(not_found("user")),
        }
    }

    async fn find_user_by_email(&self, email: &EmailAddress) -> StoreResult<Option<User>> {
        let mut s = self.db.read().await?;
        let sql = format!("{USER_SELECT} WHERE email_canonical = $1");
        s.fetch_optional(sql, args![email.canonical()])
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn update_user(&self, user: &User) -> StoreResult<User> {
        let mut s = self.db.write_one().await?;
        let row = s
            .fetch_optional(
                concat!(
                    "UPDATE users SET email = $3, email_canonical = $4, password = $5, role = $6, \
                     status = $7, totp = $8, updated_at = $9, last_login_at = $10, \
                     settings = $11, revision = revision + 1 \
                     WHERE id = $1 AND revision = $2 RETURNING ",
                    user_columns!()
                ),
                args![
                    user.id,
                    revision_arg(user.revision, "user")?,
                    user.email.to_string(),
                    user.email.canonical(),
                    user.password.as_ref().map(|p| p.as_phc().to_owned()),
                    enum_text(&user.role, "user")?,
                    enum_text(&user.status, "user")?,
                    user.totp.as_ref().map(|t| t.to_text()),
                    user.updated_at,
                    user.last_login_at,
                    json_text(&user.settings, "user")?,
                ],
            )
            .await
            .on_unique("user")?;
        match row {
            Some(row) => user_from_row(&row),
            None => Err(missing_or_stale(
                &mut s,
                "SELECT 1 FROM users WHERE id = $1",
                args![user.id],
                "user",
            )
            .await),
        }
    }

    async fn list_users(&self, page: PageRequest) -> StoreResult<Page<User>> {
        let mut w = Where::new();
        w.after("id", &page);
        let (sql, args) = w.page_query(USER_SELECT, "id", &page);
        let mut s = self.db.read().await?;
        let rows = s.fetch_all(sql, args).await?;
        let users = rows
            .iter()
            .map(user_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_overfetch(users, page.effective_limit(), |u| {
            *u.id.as_uuid()
        }))
    }

    async fn count_users(&self) -> StoreResult<u64> {
        let mut s = self.db.read().await?;
        let n = s.fetch_i64("SELECT COUNT(*) FROM users", args![]).await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn delete_user(&self, id: UserId) -> StoreResult<()> {
        let mut s = self.db.write().await?;
        // Locking the user row first makes concurrent inserts that reference
        // it (their foreign-key check needs a share lock) wait and then fail.
        if !s
            .exists(for_update!("SELECT id FROM users WHERE id = $1"), args![id])
            .await?
        {
            return Err(not_found("user"));
        }
        // Aliases on the user's domains that belong to someone else would be
        // orphaned: refuse rather than delete another user's data.
        if s.exists(
            "SELECT 1 FROM aliases a JOIN domains d ON d.id = a.domain_id \
                 WHERE d.owner_id = $1 AND a.owner_id <> $1 LIMIT 1",
            args![id],
        )
        .await?
        {
            return Err(StoreError::Conflict {
                entity: "user",
                reason: "other users have aliases on domains of this user",
            });
        }
        // Aliases: purged, leaving tombstones. Their contacts, alias-scoped
        // rules and mailbox links go with them (ON DELETE CASCADE).
        s.execute(
            "INSERT INTO alias_tombstones (address_canonical, alias_id, owner_id, retired_at) \
             SELECT address_canonical, id, owner_id, COALESCE(deleted_at, updated_at) \
             FROM aliases WHERE owner_id = $1 ON CONFLICT DO NOTHING",
            args![id],
        )
        .await?;
        s.execute(
            "DELETE FROM usage_daily WHERE subject_kind = 'alias' AND subject_id IN \
             (SELECT id FROM aliases WHERE owner_id = $1)",
            args![id],
        )
        .await?;
        s.execute("DELETE FROM aliases WHERE owner_id = $1", args![id])
            .await?;
        s.execute("DELETE FROM rules WHERE owner_id = $1", args![id])
            .await?;
        s.execute("DELETE FROM contacts WHERE owner_id = $1", args![id])
            .await?;
        // Other domains' default lists must not keep pointing at the
        // mailboxes about to go.
        s.execute(
            "DELETE FROM domain_default_mailboxes WHERE mailbox_id IN \
             (SELECT id FROM mailboxes WHERE owner_id = $1)",
            args![id],
        )
        .await?;
        s.execute("DELETE FROM domains WHERE owner_id = $1", args![id])
            .await?;
        s.execute("DELETE FROM mailboxes WHERE owner_id = $1", args![id])
            .await
            .on_fk(StoreError::Conflict {
                entity: "user",
                reason: "another user's alias forwards to a mailbox of this user",
            })?;
        s.execute("DELETE FROM api_keys WHERE owner_id = $1", args![id])
            .await?;
        s.execute("DELETE FROM sessions WHERE user_id = $1", args![id])
            .await?;
        s.execute("DELETE FROM invitations WHERE invited_by = $1", args![id])
            .await?;
        s.execute("DELETE FROM usage_daily WHERE user_id = $1", args![id])
            .await?;
        // The log of their mail goes with them (events are kept otherwise).
        s.execute("DELETE FROM delivery_events WHERE owner_id = $1", args![id])
            .await?;
        s.execute("DELETE FROM users WHERE id = $1", args![id])
            .await?;
        s.commit().await
    }
}
