//! Forwarding rules: [`RuleStore`].

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use redb::ReadableTable;
use smtpy_core::StoreResult;
use smtpy_core::ids::{RuleId, UserId};
use smtpy_core::model::{Alias, ForwardingRule, RuleScope};
use smtpy_core::store::{Access, RuleStore};

use crate::accounts::user_exists;
use crate::codec::{decode, encode, pair};
use crate::error::{Error, exists, invalid, not_found, stale};
use crate::schema::{RULES, RULES_BY_OWNER, Tx};
use crate::store::{RedbStore, all_children, load};

fn by_priority(rules: &mut [ForwardingRule]) {
    rules.sort_by_key(|r| (r.priority, r.id));
}

fn visible_rule(
    rows: &impl ReadableTable<&'static [u8; 16], &'static [u8]>,
    access: Access,
    id: RuleId,
) -> Result<ForwardingRule, Error> {
    load::<ForwardingRule, 16>(rows, &id.to_bytes())?
        .filter(|r| access.permits(r.owner))
        .ok_or(not_found("rule"))
}

/// The owner exists and the rule's scope (domain or alias) is visible to them.
fn check_rule_scope(tx: &Tx<'_>, rule: &ForwardingRule) -> Result<(), Error> {
    user_exists(tx, rule.owner)?;
    match rule.scope {
        RuleScope::User => Ok(()),
        RuleScope::Domain(d) => {
            crate::domains::visible_domain(&*tx.domains()?, Access::Owner(rule.owner), d)
                .map(|_| ())
        }
        RuleScope::Alias(a) => load::<Alias, 16>(&*tx.aliases()?, &a.to_bytes())?
            .filter(|alias| alias.owner == rule.owner)
            .map(|_| ())
            .ok_or(not_found("alias")),
    }
}

fn save_rule(tx: &Tx<'_>, rule: &ForwardingRule) -> Result<(), Error> {
    tx.rules()?
        .insert(&rule.id.to_bytes(), encode(rule)?.as_slice())?;
    Ok(())
}

fn rules_of(tx: &Tx<'_>, owner: UserId) -> Result<Vec<ForwardingRule>, Error> {
    let index = tx.rules_by_owner()?;
    let rows = tx.rules()?;
    all_children(&*index, &*rows, owner.to_bytes())
}

/// Deletes the rules (of `owner`, or of everyone) that pass `doomed`.
pub(crate) fn delete_rules_where(
    tx: &Tx<'_>,
    owner: Option<UserId>,
    doomed: impl Fn(&ForwardingRule) -> bool,
) -> Result<(), Error> {
    let candidates = match owner {
        Some(o) => rules_of(tx, o)?,
        None => {
            let rows = tx.rules()?;
            let mut out = Vec::new();
            for entry in rows.iter()? {
                let (_, v) = entry?;
                out.push(decode(v.value())?);
            }
            out
        }
    };
    for r in candidates.iter().filter(|r| doomed(r)) {
        let id = r.id.to_bytes();
        tx.rules()?.remove(&id)?;
        tx.rules_by_owner()?.remove(&pair(r.owner.to_bytes(), id))?;
    }
    Ok(())
}

/// Deletes every rule of `owner` (user deletion).
pub(crate) fn delete_rules_of_owner(tx: &Tx<'_>, owner: UserId) -> Result<(), Error> {
    delete_rules_where(tx, Some(owner), |_| true)
}

#[async_trait]
impl RuleStore for RedbStore {
    async fn create_rule(&self, rule: &ForwardingRule) -> StoreResult<()> {
        let rule = rule.clone();
        self.write(move |tx| {
            check_rule_scope(tx, &rule)?;
            let id = rule.id.to_bytes();
            if tx.rules()?.get(&id)?.is_some() {
                return Err(exists("rule"));
            }
            save_rule(tx, &rule)?;
            tx.rules_by_owner()?
                .insert(&pair(rule.owner.to_bytes(), id), ())?;
            Ok(())
        })
        .await
    }

    async fn get_rule(&self, access: Access, id: RuleId) -> StoreResult<ForwardingRule> {
        self.read(move |txn| visible_rule(&txn.open_table(RULES)?, access, id))
            .await
    }

    async fn list_rules(&self, owner: UserId) -> StoreResult<Vec<ForwardingRule>> {
        self.read(move |txn| {
            let mut rules = all_children(
                &txn.open_table(RULES_BY_OWNER)?,
                &txn.open_table(RULES)?,
                owner.to_bytes(),
            )?;
            by_priority(&mut rules);
            Ok(rules)
        })
        .await
    }

    async fn rules_for_alias(&self, alias: &Alias) -> StoreResult<Vec<ForwardingRule>> {
        let (owner, domain, id) = (alias.owner, alias.domain, alias.id);
        self.read(move |txn| {
            let mut rules: Vec<ForwardingRule> = all_children(
                &txn.open_table(RULES_BY_OWNER)?,
                &txn.open_table(RULES)?,
                owner.to_bytes(),
            )?;
            rules.retain(|r| {
                r.enabled
                    && match r.scope {
                        RuleScope::User => true,
                        RuleScope::Domain(d) => d == domain,
                        RuleScope::Alias(a) => a == id,
                    }
            });
            by_priority(&mut rules);
            Ok(rules)
        })
        .await
    }

    async fn update_rule(
        &self,
        access: Access,
        rule: &ForwardingRule,
    ) -> StoreResult<ForwardingRule> {
        let rule = rule.clone();
        self.write(move |tx| {
            let stored = visible_rule(&*tx.rules()?, access, rule.id)?;
            if stored.revision != rule.revision {
                return Err(stale("rule"));
            }
            let mut next = rule;
            next.owner = stored.owner;
            next.created_at = stored.created_at;
            next.revision = stored.revision + 1;
            check_rule_scope(tx, &next)?;
            save_rule(tx, &next)?;
            Ok(next)
        })
        .await
    }

    async fn delete_rule(&self, access: Access, id: RuleId) -> StoreResult<()> {
        self.write(move |tx| {
            let stored = visible_rule(&*tx.rules()?, access, id)?;
            let key = id.to_bytes();
            tx.rules()?.remove(&key)?;
            tx.rules_by_owner()?
                .remove(&pair(stored.owner.to_bytes(), key))?;
            Ok(())
        })
        .await
    }

    async fn reorder_rules(&self, owner: UserId, ids: &[RuleId]) -> StoreResult<()> {
        let ids = ids.to_vec();
        self.write(move |tx| {
            let mine: BTreeMap<RuleId, ForwardingRule> = rules_of(tx, owner)?
                .into_iter()
                .map(|r| (r.id, r))
                .collect();
            let mine_ids: BTreeSet<RuleId> = mine.keys().copied().collect();
            let given: BTreeSet<RuleId> = ids.iter().copied().collect();
            if given.len() != ids.len() || given != mine_ids {
                return Err(invalid(
                    "rule",
                    "the new order must list every rule of the owner exactly once",
                ));
            }
            let mut changed = false;
            for (i, id) in ids.iter().enumerate() {
                let priority =
                    i32::try_from(i).map_err(|_| invalid("rule", "too many rules to reorder"))?;
                if let Some(r) = mine.get(id)
                    && r.priority != priority
                {
                    let mut next = r.clone();
                    next.priority = priority;
                    next.revision += 1;
                    save_rule(tx, &next)?;
                    changed = true;
                }
            }
            if !changed {
                tx.unchanged();
            }
            Ok(())
        })
        .await
    }
}
