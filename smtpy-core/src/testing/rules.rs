//! [`RuleStore`](crate::store::RuleStore): forwarding rules, their scopes and order.

use super::expect;
use super::fixtures::{self, new_rule, t};
use crate::ids::{AliasId, DomainId, RuleId};
use crate::model::{
    BlockReply, Condition, ConditionField, ForwardingRule, MatchMode, Operator, RuleAction,
    RuleScope,
};
use crate::store::{Access, Store};

/// Sorts rules the way stores return them: by priority, then id.
fn by_priority(mut rules: Vec<ForwardingRule>) -> Vec<ForwardingRule> {
    rules.sort_by_key(|r| (r.priority, r.id));
    rules
}

/// A condition on `field`.
fn cond(field: ConditionField, operator: Operator, value: &str) -> Condition {
    Condition {
        field,
        operator,
        value: value.into(),
    }
}

/// Rules in every scope, with every action and many conditions, read back equal.
pub async fn rule_create_get_round_trip(store: &dyn Store) {
    let (owner, domain, m1, alias) = fixtures::owner_with_alias(store).await;
    let m2 = fixtures::mailbox(store, &owner).await;
    let scopes = [
        RuleScope::User,
        RuleScope::Domain(domain.id),
        RuleScope::Alias(alias.id),
    ];
    for (i, scope) in scopes.into_iter().enumerate() {
        let mut rule = new_rule(&owner, scope, -5);
        rule.enabled = i != 1;
        rule.match_mode = MatchMode::Any;
        rule.conditions = vec![
            cond(ConditionField::From, Operator::EndsWith, "@shop.example"),
            cond(ConditionField::To, Operator::Is, "x@y.example"),
            cond(
                ConditionField::Subject,
                Operator::MatchesRegex,
                "^(sale|offer)",
            ),
            cond(
                ConditionField::Header("List-Id".into()),
                Operator::Contains,
                "news",
            ),
            cond(ConditionField::Size, Operator::GreaterThan, "1000000"),
            cond(ConditionField::HasAttachment, Operator::Is, "true"),
            cond(ConditionField::Spf, Operator::IsNot, "pass"),
            cond(ConditionField::Dkim, Operator::NotContains, "pass"),
            cond(ConditionField::Dmarc, Operator::StartsWith, "fail"),
        ];
        rule.actions = vec![
            RuleAction::ForwardTo(vec![m2.id, m1.id]),
            RuleAction::Block(BlockReply::Silent),
            RuleAction::Block(BlockReply::Reject),
            RuleAction::Quarantine,
            RuleAction::PrefixSubject("[shop] ".into()),
            RuleAction::AddHeader {
                name: "X-Tag".into(),
                value: "shopping".into(),
            },
            RuleAction::Stop,
        ];
        rule.updated_at = t(3);
        store.create_rule(&rule).await.expect("create_rule");
        for access in [Access::Owner(owner.id), Access::System] {
            assert_eq!(
                store.get_rule(access, rule.id).await.expect("get_rule"),
                rule,
                "{scope:?}"
            );
        }
    }
}

/// A scope naming an unknown or another user's domain or alias is `NotFound`;
/// a shared domain is fine.
pub async fn rule_create_scope_must_be_visible(store: &dyn Store) {
    let owner = fixtures::user(store).await;
    let (_, their_domain, _, their_alias) = fixtures::owner_with_alias(store).await;
    let (_, shared) = fixtures::shared_domain(store).await;
    let refused = [
        (RuleScope::Domain(DomainId::new()), "unknown domain"),
        (RuleScope::Domain(their_domain.id), "another user's domain"),
        (RuleScope::Alias(AliasId::new()), "unknown alias"),
        (RuleScope::Alias(their_alias.id), "another user's alias"),
    ];
    for (scope, what) in refused {
        let rule = new_rule(&owner, scope, 0);
        expect::not_found(store.create_rule(&rule).await, what);
        expect::not_found(
            store.get_rule(Access::System, rule.id).await,
            "refused rule not stored",
        );
    }
    let on_shared = new_rule(&owner, RuleScope::Domain(shared.id), 0);
    store
        .create_rule(&on_shared)
        .await
        .expect("rule on a shared domain");
    assert_eq!(
        store.list_rules(owner.id).await.expect("list_rules"),
        vec![on_shared]
    );
}

/// Unknown ids and other owners' rules are `NotFound`; `System` sees all.
pub async fn rule_get_missing_and_cross_owner(store: &dyn Store) {
    let owner = fixtures::user(store).await;
    let other = fixtures::user(store).await;
    let rule = fixtures::rule(store, &owner, RuleScope::User, 0).await;
    expect::not_found(
        store.get_rule(Access::Owner(owner.id), RuleId::new()).await,
        "unknown id",
    );
    expect::not_found(
        store.get_rule(Access::Owner(other.id), rule.id).await,
        "another owner's rule",
    );
    assert_eq!(
        store.get_rule(Access::System, rule.id).await.expect("get"),
        rule
    );
}

/// `list_rules` returns the owner's rules by priority, then id.
pub async fn rule_list_by_priority_then_id(store: &dyn Store) {
    let owner = fixtures::user(store).await;
    let other = fixtures::user(store).await;
    let mut mine = Vec::new();
    for priority in [5, 1, 5, 0, 1, -2] {
        mine.push(fixtures::rule(store, &owner, RuleScope::User, priority).await);
    }
    let theirs = fixtures::rule(store, &other, RuleScope::User, 0).await;
    assert_eq!(
        store.list_rules(owner.id).await.expect("list_rules"),
        by_priority(mine)
    );
    assert_eq!(
        store.list_rules(other.id).await.expect("list_rules"),
        vec![theirs]
    );
}

/// `rules_for_alias` returns the owner's enabled user-wide, domain and alias
/// rules that apply, by priority then id — nobody else's, nothing disabled.
pub async fn rules_for_alias_selects_applicable(store: &dyn Store) {
    let (owner, d1, mailbox, x) = fixtures::owner_with_alias(store).await;
    let d2 = fixtures::domain(store, &owner).await;
    let y = fixtures::alias(store, &owner, &d1, &mailbox).await;
    let (_, shared) = fixtures::shared_domain(store).await;
    let z = fixtures::alias(store, &owner, &shared, &mailbox).await;
    let (other, _, _, _) = fixtures::owner_with_alias(store).await;

    let user_wide = fixtures::rule(store, &owner, RuleScope::User, 3).await;
    let user_wide_2 = fixtures::rule(store, &owner, RuleScope::User, 1).await;
    let on_d1 = fixtures::rule(store, &owner, RuleScope::Domain(d1.id), 1).await;
    let _on_d2 = fixtures::rule(store, &owner, RuleScope::Domain(d2.id), 0).await;
    let on_x = fixtures::rule(store, &owner, RuleScope::Alias(x.id), 1).await;
    let _on_y = fixtures::rule(store, &owner, RuleScope::Alias(y.id), 0).await;
    let on_shared = fixtures::rule(store, &owner, RuleScope::Domain(shared.id), 2).await;
    let mut disabled = new_rule(&owner, RuleScope::User, 0);
    disabled.enabled = false;
    store.create_rule(&disabled).await.expect("create_rule");
    let mut disabled_on_x = new_rule(&owner, RuleScope::Alias(x.id), 0);
    disabled_on_x.enabled = false;
    store
        .create_rule(&disabled_on_x)
        .await
        .expect("create_rule");
    let _theirs = fixtures::rule(store, &other, RuleScope::User, 0).await;
    let _theirs_on_shared = fixtures::rule(store, &other, RuleScope::Domain(shared.id), 0).await;

    assert_eq!(
        store.rules_for_alias(&x).await.expect("rules_for_alias"),
        by_priority(vec![user_wide.clone(), user_wide_2.clone(), on_d1, on_x]),
        "rules for an alias on an own domain"
    );
    assert_eq!(
        store.rules_for_alias(&z).await.expect("rules_for_alias"),
        by_priority(vec![user_wide, user_wide_2, on_shared]),
        "rules for an alias on a shared domain"
    );
}

/// `update_rule` replaces all but `id`, `owner`, `created_at`, revision-checked and owner-scoped.
pub async fn rule_update_round_trip_and_revision(store: &dyn Store) {
    let (owner, _, mailbox, alias) = fixtures::owner_with_alias(store).await;
    let other = fixtures::user(store).await;
    let rule = fixtures::rule(store, &owner, RuleScope::User, 4).await;
    let me = Access::Owner(owner.id);
    let mut edit = rule.clone();
    edit.scope = RuleScope::Alias(alias.id);
    edit.name = "renamed".into();
    edit.priority = 9;
    edit.enabled = false;
    edit.match_mode = MatchMode::Any;
    edit.conditions = vec![cond(ConditionField::Subject, Operator::Contains, "invoice")];
    edit.actions = vec![RuleAction::ForwardTo(vec![mailbox.id]), RuleAction::Stop];
    edit.updated_at = t(8);
    let mut attempt = edit.clone();
    attempt.created_at = t(-999);
    let updated = store.update_rule(me, &attempt).await.expect("update_rule");
    edit.revision = rule.revision + 1;
    assert_eq!(
        updated, edit,
        "update_rule returns the stored row, revision + 1"
    );
    assert_eq!(store.get_rule(me, rule.id).await.expect("get"), edit);

    let mut owner_change = edit.clone();
    owner_change.owner = other.id;
    let updated = store
        .update_rule(Access::System, &owner_change)
        .await
        .expect("update_rule");
    assert_eq!(updated.owner, owner.id, "owner is not editable");
    assert!(
        store
            .list_rules(other.id)
            .await
            .expect("list_rules")
            .is_empty()
    );

    let mut stale = rule.clone();
    stale.name = "stale".into();
    expect::conflict(store.update_rule(me, &stale).await, "stale revision");
    expect::not_found(
        store.update_rule(Access::Owner(other.id), &updated).await,
        "another owner's",
    );
    expect::not_found(
        store
            .update_rule(me, &new_rule(&owner, RuleScope::User, 0))
            .await,
        "unknown rule",
    );
    assert_eq!(
        store.get_rule(me, rule.id).await.expect("get"),
        updated,
        "refused updates change nothing"
    );
}

/// Two concurrent updates from one revision: one wins, the other is `Conflict`.
pub async fn rule_concurrent_updates_one_wins(store: &dyn Store) {
    let owner = fixtures::user(store).await;
    let rule = fixtures::rule(store, &owner, RuleScope::User, 0).await;
    let results = fixtures::concurrently(2, |i| {
        let mut edit = rule.clone();
        edit.name = format!("editor {i}");
        async move { store.update_rule(Access::Owner(edit.owner), &edit).await }
    })
    .await;
    let winner = expect::one_ok_rest_conflict(results, "concurrent update_rule");
    assert_eq!(winner.revision, rule.revision + 1);
    assert_eq!(
        store.get_rule(Access::System, rule.id).await.expect("get"),
        winner
    );
}

/// Only the owner (or `System`) deletes a rule; deleting twice is `NotFound`.
pub async fn rule_delete_is_owner_scoped(store: &dyn Store) {
    let owner = fixtures::user(store).await;
    let other = fixtures::user(store).await;
    let rule = fixtures::rule(store, &owner, RuleScope::User, 0).await;
    let me = Access::Owner(owner.id);
    expect::not_found(
        store.delete_rule(Access::Owner(other.id), rule.id).await,
        "another owner's",
    );
    assert_eq!(
        store.get_rule(me, rule.id).await.expect("rule survives"),
        rule
    );
    store.delete_rule(me, rule.id).await.expect("delete_rule");
    expect::not_found(store.get_rule(me, rule.id).await, "deleted rule");
    expect::not_found(store.delete_rule(me, rule.id).await, "second delete");
    let second = fixtures::rule(store, &owner, RuleScope::User, 0).await;
    store
        .delete_rule(Access::System, second.id)
        .await
        .expect("System deletes");
    assert!(
        store
            .list_rules(owner.id)
            .await
            .expect("list_rules")
            .is_empty()
    );
}

/// `reorder_rules` sets priorities 0, 1, 2… in the given order and bumps the
/// revision of the rules whose priority changed (only those).
pub async fn rule_reorder(store: &dyn Store) {
    let owner = fixtures::user(store).await;
    let other = fixtures::user(store).await;
    let r1 = fixtures::rule(store, &owner, RuleScope::User, 5).await;
    let r2 = fixtures::rule(store, &owner, RuleScope::User, 1).await;
    let r3 = fixtures::rule(store, &owner, RuleScope::User, 3).await;
    let theirs = fixtures::rule(store, &other, RuleScope::User, 7).await;
    let state = |rules: &[ForwardingRule]| {
        rules
            .iter()
            .map(|r| (r.id, r.priority, r.revision))
            .collect::<Vec<_>>()
    };

    store
        .reorder_rules(owner.id, &[r3.id, r1.id, r2.id])
        .await
        .expect("reorder_rules");
    let listed = store.list_rules(owner.id).await.expect("list_rules");
    assert_eq!(
        state(&listed),
        vec![(r3.id, 0, 1), (r1.id, 1, 1), (r2.id, 2, 1)]
    );

    store
        .reorder_rules(owner.id, &[r3.id, r1.id, r2.id])
        .await
        .expect("same order again");
    let listed = store.list_rules(owner.id).await.expect("list_rules");
    assert_eq!(
        state(&listed),
        vec![(r3.id, 0, 1), (r1.id, 1, 1), (r2.id, 2, 1)],
        "unchanged rules keep their revision"
    );

    store
        .reorder_rules(owner.id, &[r3.id, r2.id, r1.id])
        .await
        .expect("reorder_rules");
    let listed = store.list_rules(owner.id).await.expect("list_rules");
    assert_eq!(
        state(&listed),
        vec![(r3.id, 0, 1), (r2.id, 1, 2), (r1.id, 2, 2)]
    );
    assert_eq!(
        store.list_rules(other.id).await.expect("list_rules"),
        vec![theirs]
    );

    let empty = fixtures::user(store).await;
    store
        .reorder_rules(empty.id, &[])
        .await
        .expect("reordering no rules");
}

/// `reorder_rules` with a missing, duplicated, foreign or unknown id is `Invalid` and changes nothing.
pub async fn rule_reorder_invalid_changes_nothing(store: &dyn Store) {
    let owner = fixtures::user(store).await;
    let other = fixtures::user(store).await;
    let r1 = fixtures::rule(store, &owner, RuleScope::User, 2).await;
    let r2 = fixtures::rule(store, &owner, RuleScope::User, 0).await;
    let r3 = fixtures::rule(store, &owner, RuleScope::User, 1).await;
    let theirs = fixtures::rule(store, &other, RuleScope::User, 0).await;
    let before = store.list_rules(owner.id).await.expect("list_rules");
    let attempts: [(Vec<RuleId>, &str); 6] = [
        (vec![r1.id, r2.id], "a rule missing"),
        (vec![], "every rule missing"),
        (vec![r1.id, r2.id, r3.id, r1.id], "a duplicate"),
        (vec![r1.id, r1.id, r2.id], "a duplicate instead of a rule"),
        (vec![r1.id, r2.id, r3.id, theirs.id], "another owner's rule"),
        (vec![r1.id, r2.id, r3.id, RuleId::new()], "an unknown id"),
    ];
    for (ids, what) in attempts {
        expect::invalid(store.reorder_rules(owner.id, &ids).await, what);
        assert_eq!(
            store.list_rules(owner.id).await.expect("list_rules"),
            before,
            "{what}: nothing changes"
        );
    }
    expect::invalid(
        store
            .reorder_rules(owner.id, &[r1.id, r2.id, theirs.id])
            .await,
        "foreign in place of own",
    );
    assert_eq!(
        store.list_rules(owner.id).await.expect("list_rules"),
        before
    );
    assert_eq!(
        store.list_rules(other.id).await.expect("list_rules"),
        vec![theirs]
    );
}
