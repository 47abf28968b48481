//! [`AliasStore`](crate::store::AliasStore): creating, reading, updating and counting aliases.

use uuid::Uuid;

use super::expect;
use super::fixtures::{
    self, address, address_on, new_alias, t, unique, unique_domain_name, upper_cased,
};
use crate::address::DomainName;
use crate::ids::{AliasId, DomainId, MailboxId};
use crate::model::{Alias, AliasCounters, AliasLimits, AliasMode, CounterDelta, DisabledReply};
use crate::store::{Access, Store};

/// An alias with every optional field set reads back equal, spelled as written.
pub async fn alias_create_get_round_trip(store: &dyn Store) {
    let owner = fixtures::user(store).await;
    let domain = fixtures::domain(store, &owner).await;
    let m1 = fixtures::mailbox(store, &owner).await;
    let m2 = fixtures::mailbox(store, &owner).await;
    let mut alias = new_alias(&owner, &domain, &[&m1, &m2]);
    alias.address = address(&format!(
        "{}@{}",
        unique("Shop.Offers"),
        domain.name.as_ascii()
    ));
    alias.enabled = false;
    alias.mode = AliasMode::Forward;
    alias.disabled_reply = DisabledReply::Discard;
    alias.note = Some("used for the shoe shop".into());
    alias.category = Some("shopping".into());
    alias.labels = vec!["shoes".into(), "spaced label".into(), "ünïcode".into()];
    alias.expires_at = Some(t(3600));
    alias.limits = AliasLimits {
        messages_per_hour: Some(20),
        max_message_size: Some(10_000_000),
    };
    alias.updated_at = t(1);
    store.create_alias(&alias).await.expect("create_alias");
    for access in [Access::Owner(owner.id), Access::System] {
        let got = store.get_alias(access, alias.id).await.expect("get_alias");
        assert_eq!(got, alias, "stored alias must equal the written one");
        expect::same_spelling(&got.address, &alias.address, "get_alias");
    }
    assert_eq!(
        store
            .find_alias_by_address(&alias.address)
            .await
            .expect("find"),
        Some(alias)
    );
}

/// An address taken by a live or soft-deleted alias (of anyone) is
/// `AlreadyExists`, in any case or IDNA form.
pub async fn alias_duplicate_address_is_already_exists(store: &dyn Store) {
    let owner = fixtures::user(store).await;
    let mailbox = fixtures::mailbox(store, &owner).await;
    let tag = Uuid::now_v7().simple().to_string();
    let mut domain = fixtures::new_domain(&owner);
    domain.name = DomainName::parse(&format!("bücher-{tag}.example")).expect("IDN parses");
    store.create_domain(&domain).await.expect("create_domain");
    let mut alias = new_alias(&owner, &domain, &[&mailbox]);
    alias.address = address(&format!("Bob.{tag}@Bücher-{tag}.example"));
    store.create_alias(&alias).await.expect("create_alias");

    let spellings = [
        alias.address.clone(),
        upper_cased(&alias.address),
        address(&format!("bob.{tag}@{}", domain.name.as_ascii())),
    ];
    for spelling in &spellings {
        let mut dup = new_alias(&owner, &domain, &[&mailbox]);
        dup.address = spelling.clone();
        expect::already_exists(store.create_alias(&dup).await, "address of a live alias");
        expect::not_found(
            store.get_alias(Access::System, dup.id).await,
            "refused alias not stored",
        );
    }
    store
        .delete_alias(Access::Owner(owner.id), alias.id, t(1))
        .await
        .expect("delete_alias");
    let mut dup = new_alias(&owner, &domain, &[&mailbox]);
    dup.address = upper_cased(&alias.address);
    expect::already_exists(
        store.create_alias(&dup).await,
        "address of a soft-deleted alias",
    );

    let (_admin, shared) = fixtures::shared_domain(store).await;
    let taken = fixtures::alias(store, &owner, &shared, &mailbox).await;
    let other = fixtures::user(store).await;
    let their_box = fixtures::mailbox(store, &other).await;
    let mut theirs = new_alias(&other, &shared, &[&their_box]);
    theirs.address = taken.address.clone();
    expect::already_exists(
        store.create_alias(&theirs).await,
        "address taken by another user",
    );
}

/// `create_alias` checks the domain, the mailboxes and the address's domain.
pub async fn alias_create_referential_checks(store: &dyn Store) {
    let a = fixtures::user(store).await;
    let b = fixtures::user(store).await;
    let d1 = fixtures::domain(store, &a).await;
    let d2 = fixtures::domain(store, &a).await;
    let theirs = fixtures::domain(store, &b).await;
    let (_admin, shared) = fixtures::shared_domain(store).await;
    let mine = fixtures::mailbox(store, &a).await;
    let their_box = fixtures::mailbox(store, &b).await;
    let mut refused = Vec::new();

    let mut missing_domain = new_alias(&a, &d1, &[&mine]);
    missing_domain.domain = DomainId::new();
    missing_domain.address = address(&format!("x@{}", unique_domain_name()));
    expect::not_found_entity(
        store.create_alias(&missing_domain).await,
        "domain",
        "unknown domain",
    );
    refused.push(missing_domain);

    let foreign_domain = new_alias(&a, &theirs, &[&mine]);
    expect::not_found_entity(
        store.create_alias(&foreign_domain).await,
        "domain",
        "another user's domain",
    );
    refused.push(foreign_domain);

    let foreign_box = new_alias(&a, &d1, &[&their_box]);
    expect::not_found_entity(
        store.create_alias(&foreign_box).await,
        "mailbox",
        "another user's mailbox",
    );
    refused.push(foreign_box);

    let mixed = new_alias(&a, &d1, &[&mine, &their_box]);
    expect::not_found_entity(
        store.create_alias(&mixed).await,
        "mailbox",
        "one foreign mailbox",
    );
    refused.push(mixed);

    let mut missing_box = new_alias(&a, &d1, &[&mine]);
    missing_box.mailboxes.push(MailboxId::new());
    expect::not_found_entity(
        store.create_alias(&missing_box).await,
        "mailbox",
        "unknown mailbox",
    );
    refused.push(missing_box);

    let no_box = new_alias(&a, &d1, &[]);
    expect::invalid(store.create_alias(&no_box).await, "no mailbox");
    refused.push(no_box);

    let mut elsewhere = new_alias(&a, &d1, &[&mine]);
    elsewhere.address = address_on(&d2);
    expect::invalid(
        store.create_alias(&elsewhere).await,
        "address not on the alias's domain",
    );
    refused.push(elsewhere);

    for alias in &refused {
        expect::not_found(
            store.get_alias(Access::System, alias.id).await,
            "refused alias not stored",
        );
        assert_eq!(
            store
                .find_alias_by_address(&alias.address)
                .await
                .expect("find"),
            None
        );
    }
    let on_shared = new_alias(&a, &shared, &[&mine]);
    store
        .create_alias(&on_shared)
        .await
        .expect("alias on a shared domain");
    assert_eq!(
        store
            .get_alias(Access::Owner(a.id), on_shared.id)
            .await
            .expect("get"),
        on_shared
    );
}

/// `create_aliases` creates every alias with the checks of `create_alias`.
///
/// All or nothing: on an error no alias of the batch is created.
pub async fn alias_create_many(store: &dyn Store) {
    let (owner, domain, mailbox, existing) = fixtures::owner_with_alias(store).await;
    let other = fixtures::user(store).await;
    let their_box = fixtures::mailbox(store, &other).await;
    store
        .create_aliases(&[])
        .await
        .expect("create_aliases of nothing");

    let mut batch: Vec<Alias> = (0..3)
        .map(|_| new_alias(&owner, &domain, &[&mailbox]))
        .collect();
    batch[1].note = Some("imported".into());
    batch[2].enabled = false;
    store.create_aliases(&batch).await.expect("create_aliases");
    for alias in &batch {
        assert_eq!(
            &store
                .get_alias(Access::System, alias.id)
                .await
                .expect("get"),
            alias
        );
    }

    // A tombstoned address: its owner was deleted, the domain is hosted again.
    let (doomed, doomed_domain, _, doomed_alias) = fixtures::owner_with_alias(store).await;
    store.delete_user(doomed.id).await.expect("delete_user");
    let mut rehosted = fixtures::new_domain(&owner);
    rehosted.name = doomed_domain.name.clone();
    store.create_domain(&rehosted).await.expect("create_domain");

    let good = || new_alias(&owner, &domain, &[&mailbox]);
    let mut taken = good();
    taken.address = upper_cased(&existing.address);
    let foreign_box = new_alias(&owner, &domain, &[&their_box]);
    let mut tombstoned = new_alias(&owner, &rehosted, &[&mailbox]);
    tombstoned.address = doomed_alias.address.clone();
    let twin = good();
    let mut twin_again = good();
    twin_again.address = upper_cased(&twin.address);
    let batches = [
        (vec![good(), taken, good()], 1, "a taken address"),
        (
            vec![good(), foreign_box, good()],
            1,
            "another user's mailbox",
        ),
        (vec![good(), tombstoned, good()], 1, "a tombstoned address"),
        (
            vec![good(), twin, twin_again, good()],
            2,
            "the same address twice",
        ),
    ];
    for (batch, failing, what) in batches {
        let result = store.create_aliases(&batch).await;
        match what {
            "another user's mailbox" => expect::not_found_entity(result, "mailbox", what),
            "a tombstoned address" => expect::gone(result, what),
            _ => expect::already_exists(result, what),
        }
        let mut created = Vec::new();
        for alias in &batch {
            created.push(store.get_alias(Access::System, alias.id).await.is_ok());
        }
        assert!(
            created.iter().all(|c| !c),
            "{what}: a failing batch creates nothing (failing alias at {failing}): {created:?}"
        );
    }
}

/// Unknown ids and other owners' aliases are `NotFound`; `System` sees all.
pub async fn alias_get_missing_and_cross_owner(store: &dyn Store) {
    let (owner, _, _, alias) = fixtures::owner_with_alias(store).await;
    let other = fixtures::user(store).await;
    expect::not_found(
        store
            .get_alias(Access::Owner(owner.id), AliasId::new())
            .await,
        "unknown id",
    );
    expect::not_found(
        store.get_alias(Access::System, AliasId::new()).await,
        "unknown id",
    );
    expect::not_found(
        store.get_alias(Access::Owner(other.id), alias.id).await,
        "another owner's alias",
    );
    assert_eq!(
        store
            .get_alias(Access::System, alias.id)
            .await
            .expect("get"),
        alias
    );
}

/// `find_alias_by_address` ignores case and the IDNA form, and returns the address as written.
pub async fn alias_find_by_address_case_and_idna(store: &dyn Store) {
    let owner = fixtures::user(store).await;
    let mailbox = fixtures::mailbox(store, &owner).await;
    let tag = Uuid::now_v7().simple().to_string();
    let mut domain = fixtures::new_domain(&owner);
    domain.name = DomainName::parse(&format!("bücher-{tag}.example")).expect("IDN parses");
    store.create_domain(&domain).await.expect("create_domain");
    let mut alias = new_alias(&owner, &domain, &[&mailbox]);
    alias.address = address(&format!("Shop.{tag}@Bücher-{tag}.example"));
    store.create_alias(&alias).await.expect("create_alias");
    let lookups = [
        alias.address.clone(),
        upper_cased(&alias.address),
        address(&format!("shop.{tag}@{}", domain.name.as_ascii())),
    ];
    for lookup in lookups {
        let found = store
            .find_alias_by_address(&lookup)
            .await
            .expect("find_alias_by_address")
            .unwrap_or_else(|| panic!("{lookup} must find the alias"));
        assert_eq!(found, alias);
        expect::same_spelling(&found.address, &alias.address, "find_alias_by_address");
    }
    assert_eq!(
        store
            .find_alias_by_address(&address_on(&domain))
            .await
            .expect("find"),
        None
    );
}

/// `update_alias` writes the owner-editable fields only and bumps the revision.
pub async fn alias_update_round_trip_ignores_non_editable(store: &dyn Store) {
    let (owner, domain, m1, alias) = fixtures::owner_with_alias(store).await;
    let m2 = fixtures::mailbox(store, &owner).await;
    let other = fixtures::user(store).await;
    let other_domain = fixtures::domain(store, &owner).await;
    let delta = CounterDelta {
        forwarded: 3,
        blocked: 1,
        ..CounterDelta::default()
    };
    store
        .record_alias_activity(alias.id, delta, t(5))
        .await
        .expect("record_alias_activity");
    let current = store
        .get_alias(Access::System, alias.id)
        .await
        .expect("get");

    let mut edit = current.clone();
    edit.mailboxes = vec![m2.id, m1.id];
    edit.enabled = false;
    edit.mode = AliasMode::Forward;
    edit.disabled_reply = DisabledReply::Discard;
    edit.note = Some("Newsletter".into());
    edit.category = Some("news".into());
    edit.labels = vec!["a".into(), "b".into()];
    edit.expires_at = Some(t(99));
    edit.limits = AliasLimits {
        messages_per_hour: Some(5),
        max_message_size: None,
    };
    edit.updated_at = t(20);
    let mut attempt = edit.clone();
    attempt.address = address_on(&domain);
    attempt.owner = other.id;
    attempt.domain = other_domain.id;
    attempt.counters = AliasCounters {
        forwarded: 999,
        blocked: 999,
        replied: 999,
        bounced: 999,
        last_used_at: None,
    };
    attempt.deleted_at = Some(t(30));
    attempt.created_at = t(-999);
    let updated = store
        .update_alias(Access::Owner(owner.id), &attempt)
        .await
        .expect("update_alias");
    edit.revision = current.revision + 1;
    assert_eq!(updated, edit, "only editable fields change; revision + 1");
    assert_eq!(
        store
            .get_alias(Access::System, alias.id)
            .await
            .expect("get"),
        edit
    );
    assert_eq!(
        store
            .find_alias_by_address(&attempt.address)
            .await
            .expect("find"),
        None
    );
    assert_eq!(
        store
            .find_alias_by_address(&alias.address)
            .await
            .expect("find"),
        Some(edit.clone())
    );

    let mut clear = edit.clone();
    clear.note = None;
    clear.category = None;
    clear.labels.clear();
    clear.expires_at = None;
    clear.limits = AliasLimits::default();
    let cleared = store
        .update_alias(Access::System, &clear)
        .await
        .expect("update_alias");
    clear.revision += 1;
    assert_eq!(cleared, clear);
}

/// Stale revisions are `Conflict`; foreign or unknown aliases `NotFound`;
/// mailbox rules as on create; refused updates change nothing.
pub async fn alias_update_conflicts_and_scoping(store: &dyn Store) {
    let (owner, domain, mailbox, alias) = fixtures::owner_with_alias(store).await;
    let me = Access::Owner(owner.id);
    let other = fixtures::user(store).await;
    let their_box = fixtures::mailbox(store, &other).await;
    let mut first = alias.clone();
    first.note = Some("first".into());
    let stored = store.update_alias(me, &first).await.expect("first update");

    let mut stale = alias.clone();
    stale.note = Some("stale".into());
    expect::conflict(store.update_alias(me, &stale).await, "stale revision");
    let mut edit = stored.clone();
    edit.note = Some("foreign".into());
    expect::not_found(
        store.update_alias(Access::Owner(other.id), &edit).await,
        "another owner's alias",
    );
    edit.mailboxes = vec![their_box.id];
    expect::not_found_entity(
        store.update_alias(me, &edit).await,
        "mailbox",
        "another user's mailbox",
    );
    edit.mailboxes = vec![MailboxId::new()];
    expect::not_found_entity(
        store.update_alias(me, &edit).await,
        "mailbox",
        "unknown mailbox",
    );
    edit.mailboxes.clear();
    expect::invalid(store.update_alias(me, &edit).await, "no mailbox");
    let unknown = new_alias(&owner, &domain, &[&mailbox]);
    expect::not_found(store.update_alias(me, &unknown).await, "unknown alias");
    assert_eq!(
        store.get_alias(me, alias.id).await.expect("get"),
        stored,
        "refused updates change nothing"
    );
}

/// Two concurrent updates from one revision: one wins, the other is `Conflict`.
pub async fn alias_concurrent_updates_one_wins(store: &dyn Store) {
    let (owner, _, _, alias) = fixtures::owner_with_alias(store).await;
    let results = fixtures::concurrently(2, |i| {
        let mut edit = alias.clone();
        edit.note = Some(format!("editor {i}"));
        async move { store.update_alias(Access::Owner(owner.id), &edit).await }
    })
    .await;
    let winner = expect::one_ok_rest_conflict(results, "concurrent update_alias");
    assert_eq!(winner.revision, alias.revision + 1);
    assert_eq!(
        store
            .get_alias(Access::System, alias.id)
            .await
            .expect("get"),
        winner
    );
}

/// `record_alias_activity` adds to the counters, never moves `last_used_at`
/// backwards and changes nothing else (not even the revision).
pub async fn alias_record_activity(store: &dyn Store) {
    let (_, _, _, alias) = fixtures::owner_with_alias(store).await;
    let first = CounterDelta {
        forwarded: 2,
        blocked: 1,
        replied: 0,
        bounced: 0,
    };
    store
        .record_alias_activity(alias.id, first, t(10))
        .await
        .expect("record_alias_activity");
    let second = CounterDelta {
        forwarded: 1,
        blocked: 0,
        replied: 3,
        bounced: 4,
    };
    store
        .record_alias_activity(alias.id, second, t(5))
        .await
        .expect("record_alias_activity");
    let mut expected = alias.clone();
    expected.counters = AliasCounters {
        forwarded: 3,
        blocked: 1,
        replied: 3,
        bounced: 4,
        last_used_at: Some(t(10)),
    };
    assert_eq!(
        store
            .get_alias(Access::System, alias.id)
            .await
            .expect("get"),
        expected,
        "counters add up, last_used_at never moves backwards, revision unchanged"
    );
    store
        .record_alias_activity(alias.id, CounterDelta::default(), t(20))
        .await
        .expect("record");
    let got = store
        .get_alias(Access::System, alias.id)
        .await
        .expect("get");
    assert_eq!(got.counters.last_used_at, Some(t(20)));
    assert_eq!(got.revision, alias.revision);
    expect::not_found(
        store
            .record_alias_activity(AliasId::new(), first, t(1))
            .await,
        "activity of an unknown alias",
    );
}

/// 50 concurrent `record_alias_activity` calls are all counted.
pub async fn alias_record_activity_concurrent(store: &dyn Store) {
    let (_, _, _, alias) = fixtures::owner_with_alias(store).await;
    let results = fixtures::concurrently(50, |i| {
        let delta = CounterDelta {
            forwarded: 1,
            ..CounterDelta::default()
        };
        let at = t(i64::try_from(i).unwrap_or(0));
        async move { store.record_alias_activity(alias.id, delta, at).await }
    })
    .await;
    for r in results {
        r.expect("concurrent record_alias_activity");
    }
    let got = store
        .get_alias(Access::System, alias.id)
        .await
        .expect("get");
    assert_eq!(
        got.counters.forwarded, 50,
        "every concurrent increment is counted"
    );
    assert_eq!(
        got.counters.last_used_at,
        Some(t(49)),
        "last_used_at is the latest"
    );
    assert_eq!(got.revision, alias.revision);
}
