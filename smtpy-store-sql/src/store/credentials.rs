//! [`CredentialStore`]: API keys, sessions and invitations.

use async_trait::async_trait;
use smtpy_core::ids::{ApiKeyId, InvitationId, UserId};
use smtpy_core::model::{ApiKey, Invitation, SecretHash, Session};
use smtpy_core::store::{Access, CredentialStore, Page, PageRequest};
use smtpy_core::time::Timestamp;
use smtpy_core::{StoreError, StoreResult};

use super::{Where, not_found, owner_of};
use crate::SqlStore;
use crate::codec::{enum_text, json_text};
use crate::db::{DbResultExt, Row, args, for_update};

macro_rules! api_key_columns {
    () => {
        "id, owner_id, name, prefix, secret_hash, scopes, expires_at, last_used_at, created_at"
    };
}
macro_rules! session_columns {
    () => {
        "id_hash, user_id, created_at, last_seen_at, expires_at, csrf_token, ip, user_agent"
    };
}
macro_rules! invitation_columns {
    () => {
        "id, token_hash, email, role, invited_by, created_at, expires_at, used_at, used_by"
    };
}

const API_KEY_SELECT: &str = concat!("SELECT ", api_key_columns!(), " FROM api_keys");
const SESSION_SELECT: &str = concat!("SELECT ", session_columns!(), " FROM sessions");
const INVITATION_SELECT: &str = concat!("SELECT ", invitation_columns!(), " FROM invitations");

fn api_key_from_row(r: &Row) -> StoreResult<ApiKey> {
    Ok(ApiKey {
        id: ApiKeyId::from_uuid(r.uuid("id")?),
        owner: UserId::from_uuid(r.uuid("owner_id")?),
        name: r.get("name")?,
        prefix: r.get("prefix")?,
        secret_hash: r.hash("secret_hash")?,
        scopes: r.json("scopes")?,
        expires_at: r.opt_ts("expires_at")?,
        last_used_at: r.opt_ts("last_used_at")?,
        created_at: r.ts("created_at")?,
    })
}

fn session_from_row(r: &Row) -> StoreResult<Session> {
    Ok(Session {
        id_hash: r.hash("id_hash")?,
        user: UserId::from_uuid(r.uuid("user_id")?),
        created_at: r.ts("created_at")?,
        last_seen_at: r.ts("last_seen_at")?,
        expires_at: r.ts("expires_at")?,
        csrf_token: r.get("csrf_token")?,
        ip: r.get("ip")?,
        user_agent: r.get("user_agent")?,
    })
}

fn invitation_from_row(r: &Row) -> StoreResult<Invitation> {
    Ok(Invitation {
        id: InvitationId::from_uuid(r.uuid("id")?),
        token_hash: r.hash("token_hash")?,
        email: r.opt_address("email")?,
        role: r.enum_value("role")?,
        invited_by: UserId::from_uuid(r.uuid("invited_by")?),
        created_at: r.ts("created_at")?,
        expires_at: r.ts("expires_at")?,
        used_at: r.opt_ts("used_at")?,
        used_by: r.opt_uuid("used_by")?.map(UserId::from_uuid),
    })
}

#[async_trait]
impl CredentialStore for SqlStore {
    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        let mut s = self.db.write_one().await?;
        s.execute(
            concat!(
                "INSERT INTO api_keys (",
                api_key_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ),
            args![
                key.id,
                key.owner,
                key.name.as_str(),
                key.prefix.as_str(),
                key.secret_hash,
                json_text(&key.scopes, "api key")?,
                key.expires_at,
                key.last_used_at,
                key.created_at,
            ],
        )
        .await
        .on_unique_or_fk("api key", not_found("user"))?;
        s.commit().await
    }

    async fn find_api_key(&self, hash: &SecretHash) -> StoreResult<Option<ApiKey>> {
        let mut s = self.db.read().await?;
        let sql = format!("{API_KEY_SELECT} WHERE secret_hash = $1");
        s.fetch_optional(sql, args![hash])
            .await?
            .as_ref()
            .map(api_key_from_row)
            .transpose()
    }

    async fn list_api_keys(&self, owner: UserId) -> StoreResult<Vec<ApiKey>> {
        let mut s = self.db.read().await?;
        let sql = format!("{API_KEY_SELECT} WHERE owner_id = $1 ORDER BY id");
        s.fetch_all(sql, args![owner])
            .await?
            .iter()
            .map(api_key_from_row)
            .collect()
    }

    async fn touch_api_key(&self, id: ApiKeyId, at: Timestamp) -> StoreResult<()> {
        let mut s = self.db.write_one().await?;
        let found = s
            .execute(
                "UPDATE api_keys SET last_used_at = CASE \
                 WHEN last_used_at IS NULL OR last_used_at < $2 THEN $2 ELSE last_used_at END \
                 WHERE id = $1",
                args![id, at],
            )
            .await?;
        if found == 0 {
            return Err(not_found("api key"));
        }
        Ok(())
    }

    async fn delete_api_key(&self, access: Access, id: ApiKeyId) -> StoreResult<()> {
        let mut w = Where::new();
        w.and("id = ?", id);
        if let Some(owner) = owner_of(access) {
            w.and("owner_id = ?", owner);
        }
        let (sql, args) = w.build("DELETE FROM api_keys");
        let mut s = self.db.write_one().await?;
        if s.execute(sql, args).await? == 0 {
            return Err(not_found("api key"));
        }
        Ok(())
    }

    async fn create_session(&self, session: &Session) -> StoreResult<()> {
        let mut s = self.db.write_one().await?;
        s.execute(
            concat!(
                "INSERT INTO sessions (",
                session_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
            args![
                session.id_hash,
                session.user,
                session.created_at,
                session.last_seen_at,
                session.expires_at,
                session.csrf_token.as_str(),
                session.ip.clone(),
                session.user_agent.clone(),
            ],
        )
        .await
        .on_unique("session")?;
        Ok(())
    }

    async fn find_session(&self, hash: &SecretHash) -> StoreResult<Option<Session>> {
        let mut s = self.db.read().await?;
        let sql = format!("{SESSION_SELECT} WHERE id_hash = $1");
        s.fetch_optional(sql, args![hash])
            .await?
            .as_ref()
            .map(session_from_row)
            .transpose()
    }

    async fn touch_session(&self, hash: &SecretHash, at: Timestamp) -> StoreResult<()> {
        let mut s = self.db.write_one().await?;
        let found = s
            .execute(
                "UPDATE sessions SET last_seen_at = CASE \
                 WHEN last_seen_at < $2 THEN $2 ELSE last_seen_at END WHERE id_hash = $1",
                args![hash, at],
            )
            .await?;
        if found == 0 {
            return Err(not_found("session"));
        }
        Ok(())
    }

    async fn delete_session(&self, hash: &SecretHash) -> StoreResult<()> {
        let mut s = self.db.write_one().await?;
        s.execute("DELETE FROM sessions WHERE id_hash = $1", args![hash])
            .await?;
        Ok(())
    }

    async fn list_sessions(&self, user: UserId) -> StoreResult<Vec<Session>> {
        let mut s = self.db.read().await?;
        let sql = format!("{SESSION_SELECT} WHERE user_id = $1 ORDER BY created_at, id_hash");
        s.fetch_all(sql, args![user])
            .await?
            .iter()
            .map(session_from_row)
            .collect()
    }

    async fn delete_user_sessions(&self, user: UserId) -> StoreResult<u64> {
        let mut s = self.db.write_one().await?;
        Ok(
            s.execute("DELETE FROM sessions WHERE user_id = $1", args![user])
                .await?,
        )
    }

    async fn purge_expired_sessions(&self, now: Timestamp) -> StoreResult<u64> {
        let mut s = self.db.write_one().await?;
        Ok(
            s.execute("DELETE FROM sessions WHERE expires_at <= $1", args![now])
                .await?,
        )
    }

    async fn create_invitation(&self, invitation: &Invitation) -> StoreResult<()> {
        let mut s = self.db.write_one().await?;
        s.execute(
            concat!(
                "INSERT INTO invitations (",
                invitation_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ),
            args![
                invitation.id,
                invitation.token_hash,
                invitation.email.as_ref().map(ToString::to_string),
                enum_text(&invitation.role, "invitation")?,
                invitation.invited_by,
                invitation.created_at,
                invitation.expires_at,
                invitation.used_at,
                invitation.used_by,
            ],
        )
        .await
        .on_unique("invitation")?;
        Ok(())
    }

    async fn find_invitation(&self, hash: &SecretHash) -> StoreResult<Option<Invitation>> {
        let mut s = self.db.read().await?;
        let sql = format!("{INVITATION_SELECT} WHERE token_hash = $1");
        s.fetch_optional(sql, args![hash])
            .await?
            .as_ref()
            .map(invitation_from_row)
            .transpose()
    }

    async fn redeem_invitation(
        &self,
        hash: &SecretHash,
        user: UserId,
        now: Timestamp,
    ) -> StoreResult<Invitation> {
        let mut s = self.db.write().await?;
        let row = s
            .fetch_optional(
                for_update!(
                    "SELECT id, token_hash, email, role, invited_by, created_at, expires_at, \
                     used_at, used_by FROM invitations WHERE token_hash = $1"
                ),
                args![hash],
            )
            .await?
            .ok_or_else(|| not_found("invitation"))?;
        let mut invitation = invitation_from_row(&row)?;
        if invitation.used_at.is_some() {
            return Err(StoreError::Conflict {
                entity: "invitation",
                reason: "already used",
            });
        }
        if invitation.expires_at <= now {
            return Err(StoreError::Gone {
                entity: "invitation",
            });
        }
        s.execute(
            "UPDATE invitations SET used_at = $2, used_by = $3 WHERE id = $1",
            args![invitation.id, now, user],
        )
        .await?;
        s.commit().await?;
        invitation.used_at = Some(now);
        invitation.used_by = Some(user);
        Ok(invitation)
    }

    async fn list_invitations(&self, page: PageRequest) -> StoreResult<Page<Invitation>> {
        let mut w = Where::new();
        w.after("id", &page);
        let (sql, args) = w.page_query(INVITATION_SELECT, "id", &page);
        let mut s = self.db.read().await?;
        let items = s
            .fetch_all(sql, args)
            .await?
            .iter()
            .map(invitation_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, page.effective_limit(), |i| {
            *i.id.as_uuid()
        }))
    }

    async fn delete_invitation(&self, id: InvitationId) -> StoreResult<()> {
        let mut s = self.db.write_one().await?;
        if s.execute("DELETE FROM invitations WHERE id = $1", args![id])
            .await?
            == 0
        {
            return Err(not_found("invitation"));
        }
        Ok(())
    }
}
