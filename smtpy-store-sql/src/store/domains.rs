//! [`DomainStore`]: hosted domains, with their default mailboxes in a join table.

use async_trait::async_trait;
use smtpy_core::address::DomainName;
use smtpy_core::ids::{DomainId, MailboxId, UserId};
use smtpy_core::model::Domain;
use smtpy_core::store::{Access, DomainStore, Page, PageRequest};
use smtpy_core::{StoreError, StoreResult};

use super::{Where, missing_or_stale, not_found, owner_of, revision_arg};
use crate::SqlStore;
use crate::codec::json_text;
use crate::db::{DbResultExt, Dialect, Row, Session, Sql, args, for_update};

macro_rules! domain_columns {
    () => {
        "d.id, d.name, d.owner_id, d.shared, d.verification_token, d.verified_at, d.checks, \
         d.catch_all, d.dkim_keys, d.created_at, d.updated_at, d.revision, d.disabled"
    };
}

/// `SELECT` of domains with their ordered default mailboxes folded into one
/// column (see [`Row::uuid_list`](crate::db::Row)).
macro_rules! domain_select {
    (sqlite) => {
        concat!(
            "SELECT ",
            domain_columns!(),
            ", (SELECT group_concat(hex(m.mailbox_id), ',' ORDER BY m.position) \
             FROM domain_default_mailboxes m WHERE m.domain_id = d.id) AS default_mailbox_ids \
             FROM domains d"
        )
    };
    (postgres) => {
        concat!(
            "SELECT ",
            domain_columns!(),
            ", ARRAY(SELECT m.mailbox_id FROM domain_default_mailboxes m \
             WHERE m.domain_id = d.id ORDER BY m.position) AS default_mailbox_ids FROM domains d"
        )
    };
    ($tail:literal) => {
        Sql::Split {
            sqlite: concat!(domain_select!(sqlite), " ", $tail),
            postgres: concat!(domain_select!(postgres), " ", $tail),
        }
    };
}

fn domain_select(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => domain_select!(sqlite),
        Dialect::Postgres => domain_select!(postgres),
    }
}

fn domain_from_row(r: &Row) -> StoreResult<Domain> {
    Ok(Domain {
        id: DomainId::from_uuid(r.uuid("id")?),
        name: r.domain_name("name")?,
        owner: UserId::from_uuid(r.uuid("owner_id")?),
        shared: r.get("shared")?,
        verification_token: r.get("verification_token")?,
        verified_at: r.opt_ts("verified_at")?,
        checks: r.json("checks")?,
        catch_all: r.json("catch_all")?,
        dkim_keys: r.json("dkim_keys")?,
        default_mailboxes: r
            .uuid_list("default_mailbox_ids")?
            .into_iter()
            .map(MailboxId::from_uuid)
            .collect(),
        created_at: r.ts("created_at")?,
        updated_at: r.ts("updated_at")?,
        revision: r.u64("revision")?,
        disabled: r.get("disabled")?,
    })
}

/// Writes the ordered default-mailbox list of a domain (replacing it);
/// every mailbox must be the domain owner's.
async fn write_default_mailboxes(s: &mut Session, domain: &Domain) -> StoreResult<()> {
    super::aliases::check_mailboxes(s, domain.owner, &domain.default_mailboxes).await?;
    s.execute(
        "DELETE FROM domain_default_mailboxes WHERE domain_id = $1",
        args![domain.id],
    )
    .await?;
    for (position, mailbox) in domain.default_mailboxes.iter().enumerate() {
        s.execute(
            "INSERT INTO domain_default_mailboxes (domain_id, position, mailbox_id) \
             VALUES ($1, $2, $3)",
            args![domain.id, position as i64, *mailbox],
        )
        .await
        .on_fk(not_found("mailbox"))?;
    }
    Ok(())
}

/// Reads one domain inside a session.
pub(crate) async fn fetch_domain(s: &mut Session, id: DomainId) -> StoreResult<Option<Domain>> {
    s.fetch_optional(domain_select!("WHERE d.id = $1"), args![id])
        .await?
        .as_ref()
        .map(domain_from_row)
        .transpose()
}

#[async_trait]
impl DomainStore for SqlStore {
    async fn create_domain(&self, domain: &Domain) -> StoreResult<()> {
        let mut s = self.db.write().await?;
        s.execute(
            "INSERT INTO domains (id, name, name_ascii, owner_id, shared, verification_token, \
             verified_at, checks, catch_all, dkim_keys, created_at, updated_at, revision, \
             disabled) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            args![
                domain.id,
                domain.name.to_string(),
                domain.name.as_ascii(),
                domain.owner,
                domain.shared,
                domain.verification_token.as_str(),
                domain.verified_at,
                json_text(&domain.checks, "domain")?,
                json_text(&domain.catch_all, "domain")?,
                json_text(&domain.dkim_keys, "domain")?,
                domain.created_at,
                domain.updated_at,
                revision_arg(domain.revision, "domain")?,
                domain.disabled,
            ],
        )
        .await
        .on_unique_or_fk("domain", not_found("user"))?;
        write_default_mailboxes(&mut s, domain).await?;
        s.commit().await
    }

    async fn get_domain(&self, access: Access, id: DomainId) -> StoreResult<Domain> {
        let mut s = self.db.read().await?;
        let row = match owner_of(access) {
            None => {
                s.fetch_optional(domain_select!("WHERE d.id = $1"), args![id])
                    .await?
            }
            Some(owner) => {
                s.fetch_optional(
                    domain_select!("WHERE d.id = $1 AND (d.owner_id = $2 OR d.shared)"),
                    args![id, owner],
                )
                .await?
            }
        };
        row.as_ref()
            .map(domain_from_row)
            .transpose()?
            .ok_or_else(|| not_found("domain"))
    }

    async fn find_domain_by_name(&self, name: &DomainName) -> StoreResult<Option<Domain>> {
        let mut s = self.db.read().await?;
        s.fetch_optional(
            domain_select!("WHERE d.name_ascii = $1"),
            args![name.as_ascii()],
        )
        .await?
        .as_ref()
        .map(domain_from_row)
        .transpose()
    }

    async fn list_domains(&self, access: Access, page: PageRequest) -> StoreResult<Page<Domain>> {
        let mut s = self.db.read().await?;
        let mut w = Where::new();
        if let Some(owner) = owner_of(access) {
            w.and("(d.owner_id = ? OR d.shared)", owner);
        }
        w.after("d.id", &page);
        let (sql, args) = w.page_query(domain_select(s.dialect()), "d.id", &page);
        let items = s
            .fetch_all(sql, args)
            .await?
            .iter()
            .map(domain_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, page.effective_limit(), |d| {
            *d.id.as_uuid()
        }))
    }

    async fn update_domain(&self, access: Access, domain: &Domain) -> StoreResult<Domain> {
        let mut s = self.db.write().await?;
        let mut w = Where::new();
        w.and("id = ?", domain.id);
        if let Some(owner) = owner_of(access) {
            w.and("owner_id = ?", owner);
        }
        let (exists_sql, exists_args) = w.build("SELECT 1 FROM domains");
        let changed = s
            .execute(
                "UPDATE domains SET owner_id = $3, shared = $4, verification_token = $5, \
                 verified_at = $6, checks = $7, catch_all = $8, dkim_keys = $9, updated_at = $10, \
                 disabled = $13, revision = revision + 1 \
                 WHERE id = $1 AND revision = $2 AND ($11 OR owner_id = $12)",
                args![
                    domain.id,
                    revision_arg(domain.revision, "domain")?,
                    domain.owner,
                    domain.shared,
                    domain.verification_token.as_str(),
                    domain.verified_at,
                    json_text(&domain.checks, "domain")?,
                    json_text(&domain.catch_all, "domain")?,
                    json_text(&domain.dkim_keys, "domain")?,
                    domain.updated_at,
                    owner_of(access).is_none(),
                    owner_of(access),
                    domain.disabled,
                ],
            )
            .await
            .on_fk(not_found("user"))?;
        if changed == 0 {
            return Err(missing_or_stale(&mut s, exists_sql, exists_args, "domain").await);
        }
        write_default_mailboxes(&mut s, domain).await?;
        let stored = fetch_domain(&mut s, domain.id)
            .await?
            .ok_or_else(|| not_found("domain"))?;
        s.commit().await?;
        Ok(stored)
    }

    async fn delete_domain(&self, access: Access, id: DomainId) -> StoreResult<()> {
        let mut s = self.db.write().await?;
        let row = s
            .fetch_optional(
                for_update!("SELECT owner_id FROM domains WHERE id = $1"),
                args![id],
            )
            .await?;
        let visible = match (&row, owner_of(access)) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(r), Some(owner)) => r.uuid("owner_id")? == owner,
        };
        if !visible {
            return Err(not_found("domain"));
        }
        let in_use = StoreError::Conflict {
            entity: "domain",
            reason: "aliases (live or deleted) exist on it",
        };
        if s.exists(
            "SELECT 1 FROM aliases WHERE domain_id = $1 LIMIT 1",
            args![id],
        )
        .await?
        {
            return Err(in_use);
        }
        s.execute("DELETE FROM domains WHERE id = $1", args![id])
            .await
            .on_fk(in_use)?;
        s.commit().await
    }
}
