//! Users and their credentials: [`UserStore`] and [`CredentialStore`].

use std::collections::BTreeSet;

use async_trait::async_trait;
use redb::ReadableTable;
use smtpy_core::StoreResult;
use smtpy_core::address::EmailAddress;
use smtpy_core::ids::{AliasId, ApiKeyId, InvitationId, UserId};
use smtpy_core::model::{
    Alias, ApiKey, Domain, Invitation, SecretHash, Session, UsageSubject, User,
};
use smtpy_core::store::{Access, CredentialStore, Page, PageRequest, UserStore};
use smtpy_core::time::Timestamp;

use crate::codec::{Id, decode, encode, pair, session_key, session_key_hash, usage_key};
use crate::error::{Error, conflict, exists, gone, not_found, stale};
use crate::schema::{API_KEYS, API_KEYS_BY_HASH, API_KEYS_BY_OWNER, Tx};
use crate::schema::{INVITATIONS, INVITATIONS_BY_TOKEN, SESSIONS, SESSIONS_BY_USER};
use crate::schema::{USERS, USERS_BY_EMAIL};
use crate::store::{RedbStore, all_children, children, find_via, load, page_rows};
use crate::{aliases, contacts, domains};

/// Fails with `NotFound { entity: "user" }` unless the user exists.
pub(crate) fn user_exists(tx: &Tx<'_>, id: UserId) -> Result<(), Error> {
    if tx.users()?.get(&id.to_bytes())?.is_none() {
        return Err(not_found("user"));
    }
    Ok(())
}

fn remove_session(tx: &Tx<'_>, session: &Session) -> Result<(), Error> {
    let hash = session.id_hash.as_bytes();
    tx.sessions()?.remove(hash)?;
    tx.sessions_by_user()?
        .remove(&session_key(session.user.to_bytes(), hash))?;
    Ok(())
}

fn remove_api_key(tx: &Tx<'_>, key: &ApiKey) -> Result<(), Error> {
    let id = key.id.to_bytes();
    tx.api_keys()?.remove(&id)?;
    tx.api_keys_by_hash()?.remove(key.secret_hash.as_bytes())?;
    tx.api_keys_by_owner()?
        .remove(&pair(key.owner.to_bytes(), id))?;
    Ok(())
}

pub(crate) fn remove_invitation(tx: &Tx<'_>, inv: &Invitation) -> Result<(), Error> {
    tx.invitations()?.remove(&inv.id.to_bytes())?;
    tx.invitations_by_token()?
        .remove(inv.token_hash.as_bytes())?;
    Ok(())
}

/// The sessions of `user`, oldest first.
fn sessions_of(
    index: &impl ReadableTable<&'static [u8; 48], ()>,
    rows: &impl ReadableTable<&'static [u8; 32], &'static [u8]>,
    user: UserId,
) -> Result<Vec<Session>, Error> {
    let u = user.to_bytes();
    let start = session_key(u, &[0; 32]);
    let end = session_key(u, &[0xff; 32]);
    let mut out = Vec::new();
    for entry in index.range::<&[u8; 48]>(&start..=&end)? {
        let (k, ()) = entry.map(|(k, v)| (*k.value(), v.value()))?;
        let row: Session = load(rows, &session_key_hash(&k))?
            .ok_or_else(|| Error::corrupt("session", "an index points at a missing row"))?;
        out.push(row);
    }
    out.sort_by_key(|s| (s.created_at, s.id_hash));
    Ok(out)
}

fn delete_sessions_of(tx: &Tx<'_>, user: UserId) -> Result<u64, Error> {
    let sessions = {
        let index = tx.sessions_by_user()?;
        let rows = tx.sessions()?;
        sessions_of(&*index, &*rows, user)?
    };
    for s in &sessions {
        remove_session(tx, s)?;
    }
    Ok(sessions.len() as u64)
}

#[async_trait]
impl UserStore for RedbStore {
    async fn create_user(&self, user: &User) -> StoreResult<()> {
        let user = user.clone();
        self.write(move |tx| {
            let id = user.id.to_bytes();
            let email = user.email.canonical();
            if tx.users_by_email()?.get(email.as_str())?.is_some()
                || tx.users()?.get(&id)?.is_some()
            {
                return Err(exists("user"));
            }
            tx.users()?.insert(&id, encode(&user)?.as_slice())?;
            tx.users_by_email()?.insert(email.as_str(), &id)?;
            Ok(())
        })
        .await
    }

    async fn get_user(&self, id: UserId) -> StoreResult<User> {
        self.read(move |txn| {
            load(&txn.open_table(USERS)?, &id.to_bytes())?.ok_or(not_found("user"))
        })
        .await
    }

    async fn find_user_by_email(&self, email: &EmailAddress) -> StoreResult<Option<User>> {
        let key = email.canonical();
        self.read(move |txn| {
            find_via(
                &txn.open_table(USERS_BY_EMAIL)?,
                &txn.open_table(USERS)?,
                key.as_str(),
            )
        })
        .await
    }

    async fn update_user(&self, user: &User) -> StoreResult<User> {
        let user = user.clone();
        self.write(move |tx| {
            let id = user.id.to_bytes();
            let stored: User = load(&*tx.users()?, &id)?.ok_or(not_found("user"))?;
            if stored.revision != user.revision {
                return Err(stale("user"));
            }
            let old_key = stored.email.canonical();
            let new_key = user.email.canonical();
            if new_key != old_key {
                let mut by_email = tx.users_by_email()?;
                if by_email.get(new_key.as_str())?.is_some() {
                    return Err(exists("user"));
                }
                by_email.remove(old_key.as_str())?;
                by_email.insert(new_key.as_str(), &id)?;
            }
            let mut next = user;
            next.created_at = stored.created_at;
            next.revision = stored.revision + 1;
            tx.users()?.insert(&id, encode(&next)?.as_slice())?;
            Ok(next)
        })
        .await
    }

    async fn list_users(&self, page: PageRequest) -> StoreResult<Page<User>> {
        self.read(move |txn| {
            page_rows(
                &txn.open_table(USERS)?,
                page,
                |_: &User| true,
                |u| *u.id.as_uuid(),
            )
        })
        .await
    }

    async fn count_users(&self) -> StoreResult<u64> {
        self.read(|txn| {
            use redb::ReadableTableMetadata;
            Ok(txn.open_table(USERS)?.len()?)
        })
        .await
    }

    async fn delete_user(&self, id: UserId) -> StoreResult<()> {
        self.write(move |tx| {
            let uid = id.to_bytes();
            let user: User = load(&*tx.users()?, &uid)?.ok_or(not_found("user"))?;

            // Domains of this user that other users' aliases live on block
            // the deletion: removing the domain would orphan those aliases.
            let owned_domains: Vec<Domain> = domains::all_domains(tx)?
                .into_iter()
                .filter(|d| d.owner == id)
                .collect();
            let mine: BTreeSet<Id> = {
                let index = tx.aliases_by_owner()?;
                children(&*index, uid)?.into_iter().collect()
            };
            for d in &owned_domains {
                let on_domain = {
                    let index = tx.aliases_by_domain()?;
                    children(&*index, d.id.to_bytes())?
                };
                if on_domain.iter().any(|a| !mine.contains(a)) {
                    return Err(conflict(
                        "user",
                        "owns a domain that carries other users' aliases",
                    ));
                }
            }

            // Aliases: purged, leaving tombstones (with their contacts,
            // alias rules and usage).
            let owned_aliases: Vec<Alias> = {
                let index = tx.aliases_by_owner()?;
                let rows = tx.aliases()?;
                all_children(&*index, &*rows, uid)?
            };
            for alias in &owned_aliases {
                aliases::purge_alias(tx, alias)?;
            }
            contacts::delete_contacts_of_owner(tx, id)?;
            crate::rules::delete_rules_of_owner(tx, id)?;
            domains::delete_mailboxes_of_owner(tx, id)?;
            for d in &owned_domains {
                domains::remove_domain(tx, d)?;
            }

            let keys: Vec<ApiKey> = {
                let index = tx.api_keys_by_owner()?;
                let rows = tx.api_keys()?;
                all_children(&*index, &*rows, uid)?
            };
            for k in &keys {
                remove_api_key(tx, k)?;
            }
            delete_sessions_of(tx, id)?;
            let invitations: Vec<Invitation> = {
                let rows = tx.invitations()?;
                let mut out = Vec::new();
                for entry in rows.iter()? {
                    let (_, v) = entry?;
                    let inv: Invitation = decode(v.value())?;
                    if inv.invited_by == id {
                        out.push(inv);
                    }
                }
                out
            };
            for inv in &invitations {
                remove_invitation(tx, inv)?;
            }
            delete_usage(tx, UsageSubject::User(id))?;
            crate::events::delete_events_of_owner(tx, id)?;

            tx.users_by_email()?
                .remove(user.email.canonical().as_str())?;
            tx.users()?.remove(&uid)?;
            Ok(())
        })
        .await
    }
}

/// Removes every usage counter of `subject`.
pub(crate) fn delete_usage(tx: &Tx<'_>, subject: UsageSubject) -> Result<(), Error> {
    use smtpy_core::time::Day;
    let start = usage_key(subject, Day::from_days_since_epoch(i32::MIN));
    let end = usage_key(subject, Day::from_days_since_epoch(i32::MAX));
    let mut usage = tx.usage()?;
    usage.retain_in::<&[u8; 21], _>(&start..=&end, |_, _| false)?;
    Ok(())
}

/// The alias usage of an alias id (for purges).
pub(crate) fn delete_alias_usage(tx: &Tx<'_>, alias: AliasId) -> Result<(), Error> {
    delete_usage(tx, UsageSubject::Alias(alias))
}

#[async_trait]
impl CredentialStore for RedbStore {
    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        let key = key.clone();
        self.write(move |tx| {
            user_exists(tx, key.owner)?;
            let id = key.id.to_bytes();
            if tx
                .api_keys_by_hash()?
                .get(key.secret_hash.as_bytes())?
                .is_some()
                || tx.api_keys()?.get(&id)?.is_some()
            {
                return Err(exists("api key"));
            }
            tx.api_keys()?.insert(&id, encode(&key)?.as_slice())?;
            tx.api_keys_by_hash()?
                .insert(key.secret_hash.as_bytes(), &id)?;
            tx.api_keys_by_owner()?
                .insert(&pair(key.owner.to_bytes(), id), ())?;
            Ok(())
        })
        .await
    }

    async fn find_api_key(&self, hash: &SecretHash) -> StoreResult<Option<ApiKey>> {
        let hash = *hash.as_bytes();
        self.read(move |txn| {
            find_via(
                &txn.open_table(API_KEYS_BY_HASH)?,
                &txn.open_table(API_KEYS)?,
                &hash,
            )
        })
        .await
    }

    async fn list_api_keys(&self, owner: UserId) -> StoreResult<Vec<ApiKey>> {
        self.read(move |txn| {
            all_children(
                &txn.open_table(API_KEYS_BY_OWNER)?,
                &txn.open_table(API_KEYS)?,
                owner.to_bytes(),
            )
        })
        .await
    }

    async fn touch_api_key(&self, id: ApiKeyId, at: Timestamp) -> StoreResult<()> {
        self.write(move |tx| {
            let kid = id.to_bytes();
            let mut key: ApiKey = load(&*tx.api_keys()?, &kid)?.ok_or(not_found("api key"))?;
            let next = Some(key.last_used_at.map_or(at, |t| t.max(at)));
            if next == key.last_used_at {
                tx.unchanged();
                return Ok(());
            }
            key.last_used_at = next;
            tx.api_keys()?.insert(&kid, encode(&key)?.as_slice())?;
            Ok(())
        })
        .await
    }

    async fn delete_api_key(&self, access: Access, id: ApiKeyId) -> StoreResult<()> {
        self.write(move |tx| {
            let key: ApiKey = load(&*tx.api_keys()?, &id.to_bytes())?
                .filter(|k: &ApiKey| access.permits(k.owner))
                .ok_or(not_found("api key"))?;
            remove_api_key(tx, &key)
        })
        .await
    }

    async fn create_session(&self, session: &Session) -> StoreResult<()> {
        let session = session.clone();
        self.write(move |tx| {
            let hash = session.id_hash.as_bytes();
            if tx.sessions()?.get(hash)?.is_some() {
                return Err(exists("session"));
            }
            tx.sessions()?.insert(hash, encode(&session)?.as_slice())?;
            tx.sessions_by_user()?
                .insert(&session_key(session.user.to_bytes(), hash), ())?;
            Ok(())
        })
        .await
    }

    async fn find_session(&self, hash: &SecretHash) -> StoreResult<Option<Session>> {
        let hash = *hash.as_bytes();
        self.read(move |txn| load(&txn.open_table(SESSIONS)?, &hash))
            .await
    }

    async fn touch_session(&self, hash: &SecretHash, at: Timestamp) -> StoreResult<()> {
        let hash = *hash.as_bytes();
        self.write(move |tx| {
            let mut s: Session = load(&*tx.sessions()?, &hash)?.ok_or(not_found("session"))?;
            if s.last_seen_at >= at {
                tx.unchanged();
                return Ok(());
            }
            s.last_seen_at = at;
            tx.sessions()?.insert(&hash, encode(&s)?.as_slice())?;
            Ok(())
        })
        .await
    }

    async fn delete_session(&self, hash: &SecretHash) -> StoreResult<()> {
        let hash = *hash.as_bytes();
        self.write(move |tx| {
            let stored: Option<Session> = load(&*tx.sessions()?, &hash)?;
            match stored {
                Some(s) => remove_session(tx, &s),
                None => {
                    tx.unchanged();
                    Ok(())
                }
            }
        })
        .await
    }

    async fn list_sessions(&self, user: UserId) -> StoreResult<Vec<Session>> {
        self.read(move |txn| {
            sessions_of(
                &txn.open_table(SESSIONS_BY_USER)?,
                &txn.open_table(SESSIONS)?,
                user,
            )
        })
        .await
    }

    async fn delete_user_sessions(&self, user: UserId) -> StoreResult<u64> {
        self.write(move |tx| delete_sessions_of(tx, user)).await
    }

    async fn purge_expired_sessions(&self, now: Timestamp) -> StoreResult<u64> {
        self.write(move |tx| {
            let expired: Vec<Session> = {
                let rows = tx.sessions()?;
                let mut out = Vec::new();
                for entry in rows.iter()? {
                    let (_, v) = entry?;
                    let s: Session = decode(v.value())?;
                    if s.expires_at <= now {
                        out.push(s);
                    }
                }
                out
            };
            for s in &expired {
                remove_session(tx, s)?;
            }
            Ok(expired.len() as u64)
        })
        .await
    }

    async fn create_invitation(&self, invitation: &Invitation) -> StoreResult<()> {
        let inv = invitation.clone();
        self.write(move |tx| {
            let id = inv.id.to_bytes();
            if tx
                .invitations_by_token()?
                .get(inv.token_hash.as_bytes())?
                .is_some()
                || tx.invitations()?.get(&id)?.is_some()
            {
                return Err(exists("invitation"));
            }
            tx.invitations()?.insert(&id, encode(&inv)?.as_slice())?;
            tx.invitations_by_token()?
                .insert(inv.token_hash.as_bytes(), &id)?;
            Ok(())
        })
        .await
    }

    async fn find_invitation(&self, hash: &SecretHash) -> StoreResult<Option<Invitation>> {
        let hash = *hash.as_bytes();
        self.read(move |txn| {
            find_via(
                &txn.open_table(INVITATIONS_BY_TOKEN)?,
                &txn.open_table(INVITATIONS)?,
                &hash,
            )
        })
        .await
    }

    async fn redeem_invitation(
        &self,
        hash: &SecretHash,
        user: UserId,
        now: Timestamp,
    ) -> StoreResult<Invitation> {
        let hash = *hash.as_bytes();
        self.write(move |tx| {
            let found: Option<Invitation> = {
                let index = tx.invitations_by_token()?;
                let rows = tx.invitations()?;
                find_via(&*index, &*rows, &hash)?
            };
            let mut inv = found.ok_or(not_found("invitation"))?;
            if inv.used_at.is_some() {
                return Err(conflict("invitation", "already used"));
            }
            if inv.expires_at <= now {
                return Err(gone("invitation"));
            }
            inv.used_at = Some(now);
            inv.used_by = Some(user);
            tx.invitations()?
                .insert(&inv.id.to_bytes(), encode(&inv)?.as_slice())?;
            Ok(inv)
        })
        .await
    }

    async fn list_invitations(&self, page: PageRequest) -> StoreResult<Page<Invitation>> {
        self.read(move |txn| {
            page_rows(
                &txn.open_table(INVITATIONS)?,
                page,
                |_: &Invitation| true,
                |i| *i.id.as_uuid(),
            )
        })
        .await
    }

    async fn delete_invitation(&self, id: InvitationId) -> StoreResult<()> {
        self.write(move |tx| {
            let inv: Invitation =
                load(&*tx.invitations()?, &id.to_bytes())?.ok_or(not_found("invitation"))?;
            remove_invitation(tx, &inv)
        })
        .await
    }
}
