//! [`AliasStore`](crate::store::AliasStore): soft delete, restore, bulk
//! changes, purge and tombstones.

use super::expect;
use super::fixtures::{self, T0, address, new_alias, t, unique_address, upper_cased};
use crate::ids::{AliasId, MailboxId};
use crate::model::{Alias, EventFilter, EventKind, RuleScope};
use crate::store::{Access, BulkAliasAction, PageRequest, Store};
use crate::time::Timestamp;

/// The stored state of each alias, by `System`.
async fn snapshot(store: &dyn Store, aliases: &[&Alias]) -> Vec<Alias> {
    let mut rows = Vec::new();
    for alias in aliases {
        rows.push(
            store
                .get_alias(Access::System, alias.id)
                .await
                .expect("get_alias"),
        );
    }
    rows
}

/// Soft delete hides the alias from the mail path but keeps it; it is
/// idempotent (the first `deleted_at` stays) and undone by restore.
pub async fn alias_soft_delete_and_restore(store: &dyn Store) {
    let (owner, _, _, alias) = fixtures::owner_with_alias(store).await;
    let me = Access::Owner(owner.id);
    store
        .delete_alias(me, alias.id, t(10))
        .await
        .expect("delete_alias");
    assert_eq!(
        store
            .find_alias_by_address(&alias.address)
            .await
            .expect("find"),
        None
    );
    let deleted = store
        .get_alias(me, alias.id)
        .await
        .expect("get_alias of a soft-deleted alias");
    let mut expected = alias.clone();
    expected.deleted_at = Some(t(10));
    expected.revision = alias.revision + 1;
    assert_eq!(
        deleted, expected,
        "soft delete sets deleted_at and bumps the revision"
    );
    expect::conflict(
        store.update_alias(me, &alias).await,
        "update from before the delete",
    );

    store
        .delete_alias(me, alias.id, t(20))
        .await
        .expect("second delete_alias is Ok");
    let again = store.get_alias(me, alias.id).await.expect("get_alias");
    assert_eq!(again.deleted_at, Some(t(10)), "the first deleted_at stays");
    assert!(
        !store
            .is_tombstoned(&alias.address)
            .await
            .expect("is_tombstoned"),
        "not purged"
    );

    let other = Access::Owner(fixtures::user(store).await.id);
    expect::not_found(
        store.delete_alias(other, alias.id, t(30)).await,
        "delete of another owner's alias",
    );
    expect::not_found(
        store.restore_alias(other, alias.id).await,
        "restore of another owner's alias",
    );
    expect::not_found(
        store.delete_alias(me, AliasId::new(), t(30)).await,
        "delete of an unknown alias",
    );
    expect::not_found(
        store.restore_alias(me, AliasId::new()).await,
        "restore of an unknown alias",
    );
    assert_eq!(
        store.get_alias(me, alias.id).await.expect("get").deleted_at,
        Some(t(10))
    );

    store
        .restore_alias(me, alias.id)
        .await
        .expect("restore_alias");
    let restored = store.get_alias(me, alias.id).await.expect("get_alias");
    assert_eq!(restored.deleted_at, None);
    assert_eq!(
        store
            .find_alias_by_address(&alias.address)
            .await
            .expect("find"),
        Some(restored.clone())
    );
    store
        .restore_alias(me, alias.id)
        .await
        .expect("restore of a live alias is Ok");
    assert_eq!(
        store.get_alias(me, alias.id).await.expect("get").deleted_at,
        None
    );
}

/// Each bulk action applies to every id and returns how many aliases changed.
pub async fn alias_bulk_update_each_action(store: &dyn Store) {
    let (owner, domain, m1, a) = fixtures::owner_with_alias(store).await;
    let m2 = fixtures::mailbox(store, &owner).await;
    let b = fixtures::alias(store, &owner, &domain, &m1).await;
    let mut c = new_alias(&owner, &domain, &[&m1]);
    c.enabled = false;
    store.create_alias(&c).await.expect("create_alias");
    let me = Access::Owner(owner.id);
    let bulk = |ids: Vec<AliasId>, action: BulkAliasAction, at: Timestamp| async move {
        store
            .bulk_update_aliases(me, &ids, &action, at)
            .await
            .expect("bulk_update_aliases")
    };

    assert_eq!(
        bulk(vec![a.id, b.id, c.id], BulkAliasAction::Disable, t(1)).await,
        2,
        "Disable"
    );
    assert!(
        snapshot(store, &[&a, &b, &c])
            .await
            .iter()
            .all(|x| !x.enabled)
    );
    assert_eq!(
        bulk(vec![a.id, b.id], BulkAliasAction::Enable, t(2)).await,
        2,
        "Enable"
    );
    let rows = snapshot(store, &[&a, &b, &c]).await;
    assert_eq!(
        rows.iter().map(|x| x.enabled).collect::<Vec<_>>(),
        vec![true, true, false]
    );

    assert_eq!(
        bulk(vec![a.id, c.id], BulkAliasAction::Delete, t(10)).await,
        2,
        "Delete"
    );
    assert_eq!(
        bulk(vec![a.id, b.id], BulkAliasAction::Delete, t(20)).await,
        1,
        "Delete (one already deleted)"
    );
    let rows = snapshot(store, &[&a, &b, &c]).await;
    let deleted: Vec<_> = rows.iter().map(|x| x.deleted_at).collect();
    assert_eq!(
        deleted,
        vec![Some(t(10)), Some(t(20)), Some(t(10))],
        "already deleted ones keep deleted_at"
    );
    assert_eq!(
        store.find_alias_by_address(&a.address).await.expect("find"),
        None
    );

    assert_eq!(
        bulk(vec![a.id, b.id, c.id], BulkAliasAction::Restore, t(30)).await,
        3,
        "Restore"
    );
    assert_eq!(
        bulk(vec![a.id], BulkAliasAction::Restore, t(31)).await,
        0,
        "Restore of a live alias"
    );
    assert!(
        snapshot(store, &[&a, &b, &c])
            .await
            .iter()
            .all(|x| x.deleted_at.is_none())
    );

    let target = vec![m2.id, m1.id];
    let moved = bulk(
        vec![a.id, b.id],
        BulkAliasAction::MoveToMailboxes(target.clone()),
        t(40),
    )
    .await;
    assert_eq!(moved, 2, "MoveToMailboxes");
    let rows = snapshot(store, &[&a, &b, &c]).await;
    assert_eq!(rows[0].mailboxes, target);
    assert_eq!(rows[1].mailboxes, target);
    assert_eq!(
        rows[2].mailboxes,
        vec![m1.id],
        "aliases not listed are untouched"
    );
    assert_eq!(
        bulk(vec![], BulkAliasAction::Disable, t(50)).await,
        0,
        "no ids, no change"
    );
}

/// A missing id, another owner's id or a foreign mailbox fails the whole
/// bulk update with no change at all.
pub async fn alias_bulk_update_all_or_nothing(store: &dyn Store) {
    let (owner, domain, mailbox, a1) = fixtures::owner_with_alias(store).await;
    let a2 = fixtures::alias(store, &owner, &domain, &mailbox).await;
    let (_other, _, their_box, b1) = fixtures::owner_with_alias(store).await;
    let me = Access::Owner(owner.id);
    let before = snapshot(store, &[&a1, &a2, &b1]).await;
    let attempts = [
        (
            vec![a1.id, a2.id, AliasId::new()],
            BulkAliasAction::Disable,
            "an unknown id",
        ),
        (
            vec![a1.id, b1.id],
            BulkAliasAction::Disable,
            "another owner's alias",
        ),
        (
            vec![a1.id, a2.id, AliasId::new()],
            BulkAliasAction::Delete,
            "an unknown id",
        ),
        (
            vec![b1.id, a1.id],
            BulkAliasAction::Delete,
            "another owner's alias",
        ),
    ];
    for (ids, action, what) in attempts {
        expect::not_found(
            store.bulk_update_aliases(me, &ids, &action, t(5)).await,
            what,
        );
        assert_eq!(
            snapshot(store, &[&a1, &a2, &b1]).await,
            before,
            "{action:?} with {what} changed rows"
        );
    }
    let foreign = BulkAliasAction::MoveToMailboxes(vec![mailbox.id, their_box.id]);
    expect::not_found_entity(
        store
            .bulk_update_aliases(me, &[a1.id, a2.id], &foreign, t(5))
            .await,
        "mailbox",
        "moving to another user's mailbox",
    );
    let unknown = BulkAliasAction::MoveToMailboxes(vec![MailboxId::new()]);
    expect::not_found_entity(
        store
            .bulk_update_aliases(me, &[a1.id], &unknown, t(5))
            .await,
        "mailbox",
        "moving to an unknown mailbox",
    );
    let empty = BulkAliasAction::MoveToMailboxes(vec![]);
    expect::invalid(
        store.bulk_update_aliases(me, &[a1.id], &empty, t(5)).await,
        "moving to no mailbox",
    );
    assert_eq!(
        snapshot(store, &[&a1, &a2, &b1]).await,
        before,
        "refused moves change nothing"
    );

    let all = [a1.id, b1.id];
    let n = store
        .bulk_update_aliases(Access::System, &all, &BulkAliasAction::Disable, t(6))
        .await
        .expect("System spans owners");
    assert_eq!(n, 2);
}

/// Purging removes the alias with its contacts and alias-scoped rules and
/// leaves a tombstone: the address can never be created again. Its delivery
/// events stay.
pub async fn alias_purge_leaves_tombstones(store: &dyn Store) {
    // Long before every other test's deletions (see the module docs of `testing`).
    let era = Timestamp::from_unix_secs(900_000_000);
    let (owner, domain, mailbox, alias) = fixtures::owner_with_alias(store).await;
    let me = Access::Owner(owner.id);
    let keep = fixtures::alias(store, &owner, &domain, &mailbox).await;
    let contact = fixtures::contact(store, &alias).await;
    let alias_rule = fixtures::rule(store, &owner, RuleScope::Alias(alias.id), 0).await;
    let user_rule = fixtures::rule(store, &owner, RuleScope::User, 1).await;
    let domain_rule = fixtures::rule(store, &owner, RuleScope::Domain(domain.id), 2).await;
    let keep_rule = fixtures::rule(store, &owner, RuleScope::Alias(keep.id), 3).await;
    let mut event = fixtures::new_event(EventKind::Delivered, Some(owner.id), T0);
    event.alias = Some(alias.id);
    event.mailbox = Some(mailbox.id);
    store
        .append_events(std::slice::from_ref(&event))
        .await
        .expect("append_events");
    store
        .delete_alias(me, alias.id, era)
        .await
        .expect("delete_alias");
    store
        .purge_deleted_aliases(era)
        .await
        .expect("purge_deleted_aliases");
    let of_alias = EventFilter {
        alias: Some(alias.id),
        ..EventFilter::default()
    };
    assert_eq!(
        store
            .list_events(me, &of_alias, PageRequest::default())
            .await
            .expect("list_events")
            .items,
        vec![event],
        "a purged alias's delivery events stay: they are history"
    );

    expect::not_found(
        store.get_alias(Access::System, alias.id).await,
        "purged alias",
    );
    assert_eq!(
        store
            .find_alias_by_address(&alias.address)
            .await
            .expect("find"),
        None
    );
    expect::not_found(
        store.restore_alias(me, alias.id).await,
        "restore of a purged alias",
    );
    for spelling in [alias.address.clone(), upper_cased(&alias.address)] {
        assert!(
            store.is_tombstoned(&spelling).await.expect("is_tombstoned"),
            "{spelling} tombstoned"
        );
    }
    assert!(
        !store
            .is_tombstoned(&keep.address)
            .await
            .expect("is_tombstoned"),
        "live alias"
    );
    let never = unique_address("never", "nowhere.example");
    assert!(
        !store.is_tombstoned(&never).await.expect("is_tombstoned"),
        "unknown address"
    );

    let mut again = new_alias(&owner, &domain, &[&mailbox]);
    again.address = upper_cased(&alias.address);
    expect::gone(
        store.create_alias(&again).await,
        "re-creating a purged address",
    );
    again.address = address(&alias.address.to_string());
    expect::gone(
        store.create_alias(&again).await,
        "re-creating a purged address",
    );

    expect::not_found(
        store.get_contact(Access::System, contact.id).await,
        "contact of a purged alias",
    );
    assert_eq!(
        store
            .find_contact_by_reverse_key(&contact.reverse_key)
            .await
            .expect("find"),
        None
    );
    assert_eq!(
        store
            .find_contact(alias.id, &contact.address)
            .await
            .expect("find"),
        None
    );
    expect::not_found(
        store.get_rule(Access::System, alias_rule.id).await,
        "alias-scoped rule",
    );
    for rule in [&user_rule, &domain_rule, &keep_rule] {
        assert_eq!(
            &store.get_rule(me, rule.id).await.expect("other rules stay"),
            rule
        );
    }
    assert_eq!(
        store
            .get_alias(me, keep.id)
            .await
            .expect("live aliases stay"),
        keep
    );

    // Tombstones do not hold the domain: once its aliases are purged it deletes.
    store
        .delete_alias(me, keep.id, era)
        .await
        .expect("delete_alias");
    store
        .purge_deleted_aliases(era)
        .await
        .expect("purge_deleted_aliases");
    store
        .delete_domain(me, domain.id)
        .await
        .expect("domain without aliases deletes");
    assert!(
        store
            .is_tombstoned(&alias.address)
            .await
            .expect("is_tombstoned"),
        "tombstone outlives domain"
    );
}

/// `purge_deleted_aliases(older_than)` purges aliases deleted at or before
/// `older_than` and nothing else.
pub async fn alias_purge_respects_older_than(store: &dyn Store) {
    let cutoff = Timestamp::from_unix_secs(1_000_000_000);
    let (owner, domain, mailbox, live) = fixtures::owner_with_alias(store).await;
    let me = Access::Owner(owner.id);
    let mut deleted = Vec::new();
    for offset in [-10, 0, 10] {
        let alias = fixtures::alias(store, &owner, &domain, &mailbox).await;
        store
            .delete_alias(
                me,
                alias.id,
                Timestamp::from_unix_secs(1_000_000_000 + offset),
            )
            .await
            .expect("delete");
        deleted.push(alias);
    }
    let purged = store
        .purge_deleted_aliases(cutoff)
        .await
        .expect("purge_deleted_aliases");
    assert!(
        purged >= 2,
        "two aliases were deleted at or before the cut-off, purged {purged}"
    );
    for alias in &deleted[..2] {
        expect::not_found(
            store.get_alias(me, alias.id).await,
            "deleted at or before the cut-off",
        );
        assert!(
            store
                .is_tombstoned(&alias.address)
                .await
                .expect("is_tombstoned")
        );
    }
    let late = store
        .get_alias(me, deleted[2].id)
        .await
        .expect("deleted after the cut-off: kept");
    assert!(late.deleted_at.is_some());
    assert!(
        !store
            .is_tombstoned(&late.address)
            .await
            .expect("is_tombstoned")
    );
    assert_eq!(
        store.get_alias(me, live.id).await.expect("live alias kept"),
        live
    );

    let later = Timestamp::from_unix_secs(1_000_000_010);
    let purged = store
        .purge_deleted_aliases(later)
        .await
        .expect("purge_deleted_aliases");
    assert!(purged >= 1, "purged {purged}");
    expect::not_found(
        store.get_alias(me, late.id).await,
        "purged at its deleted_at",
    );
    assert_eq!(
        store.get_alias(me, live.id).await.expect("live alias kept"),
        live
    );
    assert!(
        !store
            .is_tombstoned(&live.address)
            .await
            .expect("is_tombstoned")
    );
}
