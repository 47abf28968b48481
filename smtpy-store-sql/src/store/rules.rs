//! [`RuleStore`]: forwarding rules. Conditions and actions are JSON text;
//! the scope is two nullable foreign keys, so rules go with their domain or alias.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use smtpy_core::ids::{AliasId, DomainId, RuleId, UserId};
use smtpy_core::model::{Alias, ForwardingRule, RuleScope};
use smtpy_core::store::{Access, RuleStore};
use smtpy_core::{StoreError, StoreResult};
use uuid::Uuid;

use super::{Where, not_found, owner_of, revision_arg, stale};
use crate::SqlStore;
use crate::codec::{enum_text, json_text};
use crate::db::{DbResultExt, Row, Session, Sql, args};

macro_rules! rule_columns {
    () => {
        "id, owner_id, scope_kind, scope_domain_id, scope_alias_id, name, priority, enabled, \
         match_mode, conditions, actions, created_at, updated_at, revision"
    };
}

const RULE_SELECT: &str = concat!("SELECT ", rule_columns!(), " FROM rules");

fn rule_from_row(r: &Row) -> StoreResult<ForwardingRule> {
    let kind: String = r.get("scope_kind")?;
    let scope = match kind.as_str() {
        "user" => RuleScope::User,
        "domain" => RuleScope::Domain(DomainId::from_uuid(
            r.opt_uuid("scope_domain_id")?
                .ok_or_else(|| r.corrupt("domain rule without a domain"))?,
        )),
        "alias" => RuleScope::Alias(AliasId::from_uuid(
            r.opt_uuid("scope_alias_id")?
                .ok_or_else(|| r.corrupt("alias rule without an alias"))?,
        )),
        other => return Err(r.corrupt(format_args!("unknown rule scope {other:?}"))),
    };
    let priority: i64 = r.get("priority")?;
    Ok(ForwardingRule {
        id: RuleId::from_uuid(r.uuid("id")?),
        owner: UserId::from_uuid(r.uuid("owner_id")?),
        scope,
        name: r.get("name")?,
        priority: i32::try_from(priority).map_err(|_| r.corrupt("priority out of range"))?,
        enabled: r.get("enabled")?,
        match_mode: r.enum_value("match_mode")?,
        conditions: r.json("conditions")?,
        actions: r.json("actions")?,
        created_at: r.ts("created_at")?,
        updated_at: r.ts("updated_at")?,
        revision: r.u64("revision")?,
    })
}

/// The scope columns: kind, domain, alias.
fn scope_columns(scope: RuleScope) -> (&'static str, Option<DomainId>, Option<AliasId>) {
    match scope {
        RuleScope::User => ("user", None, None),
        RuleScope::Domain(d) => ("domain", Some(d), None),
        RuleScope::Alias(a) => ("alias", None, Some(a)),
    }
}

/// The error when the scope's domain or alias disappears under a write.
fn scope_missing(scope: RuleScope) -> StoreError {
    match scope {
        RuleScope::Alias(_) => not_found("alias"),
        _ => not_found("domain"),
    }
}

/// `NotFound` unless the scope's domain (own or shared) or alias (own) is
/// visible to `owner`.
async fn check_scope(s: &mut Session, owner: UserId, scope: RuleScope) -> StoreResult<()> {
    let visible = match scope {
        RuleScope::User => true,
        RuleScope::Domain(d) => {
            s.exists(
                "SELECT 1 FROM domains WHERE id = $1 AND (owner_id = $2 OR shared)",
                args![d, owner],
            )
            .await?
        }
        RuleScope::Alias(a) => {
            s.exists(
                "SELECT 1 FROM aliases WHERE id = $1 AND owner_id = $2",
                args![a, owner],
            )
            .await?
        }
    };
    if visible {
        Ok(())
    } else {
        Err(scope_missing(scope))
    }
}

#[async_trait]
impl RuleStore for SqlStore {
    async fn create_rule(&self, rule: &ForwardingRule) -> StoreResult<()> {
        let mut s = self.db.write().await?;
        if !s
            .exists("SELECT 1 FROM users WHERE id = $1", args![rule.owner])
            .await?
        {
            return Err(not_found("user"));
        }
        check_scope(&mut s, rule.owner, rule.scope).await?;
        let (kind, domain, alias) = scope_columns(rule.scope);
        s.execute(
            concat!(
                "INSERT INTO rules (",
                rule_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            ),
            args![
                rule.id,
                rule.owner,
                kind,
                domain,
                alias,
                rule.name.as_str(),
                i64::from(rule.priority),
                rule.enabled,
                enum_text(&rule.match_mode, "rule")?,
                json_text(&rule.conditions, "rule")?,
                json_text(&rule.actions, "rule")?,
                rule.created_at,
                rule.updated_at,
                revision_arg(rule.revision, "rule")?,
            ],
        )
        .await
        .on_unique_or_fk("rule", scope_missing(rule.scope))?;
        s.commit().await
    }

    async fn get_rule(&self, access: Access, id: RuleId) -> StoreResult<ForwardingRule> {
        let mut w = Where::new();
        w.and("id = ?", id);
        if let Some(owner) = owner_of(access) {
            w.and("owner_id = ?", owner);
        }
        let (sql, args) = w.build(RULE_SELECT);
        let mut s = self.db.read().await?;
        s.fetch_optional(sql, args)
            .await?
            .as_ref()
            .map(rule_from_row)
            .transpose()?
            .ok_or_else(|| not_found("rule"))
    }

    async fn list_rules(&self, owner: UserId) -> StoreResult<Vec<ForwardingRule>> {
        let mut s = self.db.read().await?;
        let sql = format!("{RULE_SELECT} WHERE owner_id = $1 ORDER BY priority, id");
        s.fetch_all(sql, args![owner])
            .await?
            .iter()
            .map(rule_from_row)
            .collect()
    }

    async fn rules_for_alias(&self, alias: &Alias) -> StoreResult<Vec<ForwardingRule>> {
        let mut s = self.db.read().await?;
        let sql = format!(
            "{RULE_SELECT} WHERE owner_id = $1 AND enabled AND (scope_kind = 'user' \
             OR scope_domain_id = $2 OR scope_alias_id = $3) ORDER BY priority, id"
        );
        s.fetch_all(sql, args![alias.owner, alias.domain, alias.id])
            .await?
            .iter()
            .map(rule_from_row)
            .collect()
    }

    async fn update_rule(
        &self,
        access: Access,
        rule: &ForwardingRule,
    ) -> StoreResult<ForwardingRule> {
        let mut s = self.db.write().await?;
        let current = s
            .fetch_optional(
                Sql::Split {
                    sqlite: "SELECT owner_id, revision FROM rules WHERE id = $1",
                    postgres: "SELECT owner_id, revision FROM rules WHERE id = $1 FOR UPDATE",
                },
                args![rule.id],
            )
            .await?
            .ok_or_else(|| not_found("rule"))?;
        let owner = UserId::from_uuid(current.uuid("owner_id")?);
        if !access.permits(owner) {
            return Err(not_found("rule"));
        }
        if current.u64("revision")? != rule.revision {
            return Err(stale("rule"));
        }
        check_scope(&mut s, owner, rule.scope).await?;
        let (kind, domain, alias) = scope_columns(rule.scope);
        let row = s
            .fetch_optional(
                concat!(
                    "UPDATE rules SET scope_kind = $3, scope_domain_id = $4, scope_alias_id = $5, \
                     name = $6, priority = $7, enabled = $8, match_mode = $9, conditions = $10, \
                     actions = $11, updated_at = $12, revision = revision + 1 \
                     WHERE id = $1 AND revision = $2 RETURNING ",
                    rule_columns!()
                ),
                args![
                    rule.id,
                    revision_arg(rule.revision, "rule")?,
                    kind,
                    domain,
                    alias,
                    rule.name.as_str(),
                    i64::from(rule.priority),
                    rule.enabled,
                    enum_text(&rule.match_mode, "rule")?,
                    json_text(&rule.conditions, "rule")?,
                    json_text(&rule.actions, "rule")?,
                    rule.updated_at,
                ],
            )
            .await
            .on_fk(scope_missing(rule.scope))?
            .ok_or_else(|| stale("rule"))?;
        let stored = rule_from_row(&row)?;
        s.commit().await?;
        Ok(stored)
    }

    async fn delete_rule(&self, access: Access, id: RuleId) -> StoreResult<()> {
        let mut w = Where::new();
        w.and("id = ?", id);
        if let Some(owner) = owner_of(access) {
            w.and("owner_id = ?", owner);
        }
        let (sql, args) = w.build("DELETE FROM rules");
        let mut s = self.db.write_one().await?;
        if s.execute(sql, args).await? == 0 {
            return Err(not_found("rule"));
        }
        Ok(())
    }

    async fn reorder_rules(&self, owner: UserId, ids: &[RuleId]) -> StoreResult<()> {
        let mut s = self.db.write().await?;
        let rows = s
            .fetch_all(
                Sql::Split {
                    sqlite: "SELECT id, priority FROM rules WHERE owner_id = $1",
                    postgres: "SELECT id, priority FROM rules WHERE owner_id = $1 FOR UPDATE",
                },
                args![owner],
            )
            .await?;
        let current: HashMap<Uuid, i64> = rows
            .iter()
            .map(|r| Ok((r.uuid("id")?, r.get::<i64>("priority")?)))
            .collect::<StoreResult<_>>()?;
        let given: BTreeSet<Uuid> = ids.iter().map(|r| *r.as_uuid()).collect();
        if given.len() != ids.len()
            || given.len() != current.len()
            || !given.iter().all(|id| current.contains_key(id))
        {
            return Err(StoreError::Invalid {
                entity: "rule",
                reason: "the order must list every rule of the owner exactly once".into(),
            });
        }
        for (position, id) in ids.iter().enumerate() {
            let position = i64::try_from(position).map_err(|_| StoreError::Invalid {
                entity: "rule",
                reason: "too many rules".into(),
            })?;
            if current.get(id.as_uuid()) != Some(&position) {
                s.execute(
                    "UPDATE rules SET priority = $2, revision = revision + 1 WHERE id = $1",
                    args![*id, position],
                )
                .await?;
            }
        }
        s.commit().await
    }
}
