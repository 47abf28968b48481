//! [`DomainStore`](crate::store::DomainStore): hosted domains, own and shared.

use uuid::Uuid;

use super::expect;
use super::fixtures::{
    self, T0, encrypted_secret, new_domain, new_user, t, unique, unique_domain_name,
};
use crate::address::DomainName;
use crate::ids::DomainId;
use crate::model::{
    CatchAll, CheckStatus, DkimAlgorithm, DkimKey, DkimKeyState, DnsCheck, DnsChecks, Domain,
};
use crate::store::{Access, PageRequest, Store};

/// Every domain visible to `access`, paging two at a time; asserts id order.
async fn all_domains(store: &dyn Store, access: Access) -> Vec<Domain> {
    let mut seen: Vec<Domain> = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let got = store
            .list_domains(access, page)
            .await
            .expect("list_domains");
        assert!(got.items.len() <= 2, "a page holds at most `limit` rows");
        seen.extend(got.items);
        match got.next {
            Some(cursor) => page = PageRequest::after(cursor, 2),
            None => break,
        }
    }
    assert!(
        seen.windows(2).all(|w| w[0].id < w[1].id),
        "list_domains in id order"
    );
    seen
}

/// DNS check results, catch-all and DKIM keys in every state.
fn populated_checks_and_keys(domain: &mut Domain) {
    domain.verified_at = Some(t(30));
    domain.checks = DnsChecks {
        mx: DnsCheck {
            status: CheckStatus::Ok,
            detail: "mx.smtpy.example".into(),
        },
        spf: DnsCheck {
            status: CheckStatus::Wrong,
            detail: "v=spf1 -all".into(),
        },
        dkim: DnsCheck {
            status: CheckStatus::Missing,
            detail: String::new(),
        },
        dmarc: DnsCheck {
            status: CheckStatus::Unknown,
            detail: "timeout".into(),
        },
        last_checked_at: Some(t(31)),
    };
    domain.catch_all = CatchAll {
        enabled: true,
        auto_create_pattern: Some("^shop-[a-z]+$".into()),
    };
    let context = format!("dkim:{}:", domain.name.as_ascii());
    domain.dkim_keys = vec![
        DkimKey {
            selector: "s2024".into(),
            algorithm: DkimAlgorithm::Ed25519,
            private_key: encrypted_secret(b"ed25519 pkcs8", format!("{context}s2024").as_bytes()),
            dns_record: "v=DKIM1; k=ed25519; p=MCowBQYDK2VwAyEA".into(),
            state: DkimKeyState::Active,
            created_at: T0,
            state_since: t(1),
        },
        DkimKey {
            selector: "s2023".into(),
            algorithm: DkimAlgorithm::Rsa2048,
            private_key: encrypted_secret(b"rsa pkcs8", format!("{context}s2023").as_bytes()),
            dns_record: "v=DKIM1; k=rsa; p=MIIBIjANBgkqh".into(),
            state: DkimKeyState::Retiring,
            created_at: t(-1000),
            state_since: t(2),
        },
        DkimKey {
            selector: "s2025".into(),
            algorithm: DkimAlgorithm::Ed25519,
            private_key: encrypted_secret(b"next", format!("{context}s2025").as_bytes()),
            dns_record: "v=DKIM1; k=ed25519; p=next".into(),
            state: DkimKeyState::Pending,
            created_at: t(3),
            state_since: t(3),
        },
    ];
}

/// A domain with DKIM keys, checks, catch-all and default mailboxes reads back equal.
pub async fn domain_create_get_round_trip(store: &dyn Store) {
    let owner = fixtures::user(store).await;
    let mailbox = fixtures::mailbox(store, &owner).await;
    let mut domain = new_domain(&owner);
    populated_checks_and_keys(&mut domain);
    domain.default_mailboxes = vec![mailbox.id];
    domain.updated_at = t(40);
    store.create_domain(&domain).await.expect("create_domain");
    for access in [Access::Owner(owner.id), Access::System] {
        assert_eq!(
            store
                .get_domain(access, domain.id)
                .await
                .expect("get_domain"),
            domain
        );
    }
    assert_eq!(
        store.find_domain_by_name(&domain.name).await.expect("find"),
        Some(domain)
    );
}

/// A hosted name is `AlreadyExists` for anyone, in any case or IDNA form.
pub async fn domain_duplicate_name_is_already_exists(store: &dyn Store) {
    let a = fixtures::user(store).await;
    let b = fixtures::user(store).await;
    let taken = fixtures::domain(store, &a).await;
    let mut dup = new_domain(&b);
    dup.name = taken.name.clone();
    expect::already_exists(store.create_domain(&dup).await, "same name, other owner");
    dup.name = DomainName::parse(&taken.name.as_ascii().to_uppercase()).expect("parses");
    expect::already_exists(store.create_domain(&dup).await, "same name upper-cased");

    let tag = Uuid::now_v7().simple().to_string();
    let mut idn = new_domain(&a);
    idn.name = DomainName::parse(&format!("Bücher-{tag}.example")).expect("IDN parses");
    store
        .create_domain(&idn)
        .await
        .expect("create_domain (IDN)");
    dup.name = DomainName::parse(idn.name.as_ascii()).expect("A-label parses");
    expect::already_exists(store.create_domain(&dup).await, "same IDN in A-label form");
    expect::not_found(
        store.get_domain(Access::System, dup.id).await,
        "refused domain not stored",
    );
}

/// A domain of a user that does not exist is `NotFound`.
pub async fn domain_owner_must_exist(store: &dyn Store) {
    let domain = new_domain(&new_user());
    expect::not_found(
        store.create_domain(&domain).await,
        "domain of an unknown owner",
    );
    assert_eq!(
        store.find_domain_by_name(&domain.name).await.expect("find"),
        None
    );
}

/// Unknown ids and other owners' unshared domains are `NotFound`; `System` sees all.
pub async fn domain_get_missing_and_cross_owner(store: &dyn Store) {
    let a = fixtures::user(store).await;
    let b = fixtures::user(store).await;
    let domain = fixtures::domain(store, &a).await;
    expect::not_found(
        store.get_domain(Access::Owner(a.id), DomainId::new()).await,
        "unknown id",
    );
    expect::not_found(
        store.get_domain(Access::System, DomainId::new()).await,
        "unknown id",
    );
    expect::not_found(
        store.get_domain(Access::Owner(b.id), domain.id).await,
        "another owner's domain",
    );
    assert_eq!(
        store
            .get_domain(Access::System, domain.id)
            .await
            .expect("get_domain"),
        domain
    );
}

/// `find_domain_by_name` ignores case and the IDNA form.
pub async fn domain_find_by_name_case_and_idna(store: &dyn Store) {
    let owner = fixtures::user(store).await;
    let tag = Uuid::now_v7().simple().to_string();
    let mut domain = new_domain(&owner);
    domain.name = DomainName::parse(&format!("bücher-{tag}.example")).expect("IDN parses");
    store.create_domain(&domain).await.expect("create_domain");
    let lookups = [
        DomainName::parse(domain.name.as_ascii()).expect("A-label"),
        DomainName::parse(&domain.name.as_ascii().to_uppercase()).expect("upper A-label"),
        DomainName::parse(&format!("BÜCHER-{tag}.EXAMPLE")).expect("upper U-label"),
    ];
    for lookup in lookups {
        let found = store
            .find_domain_by_name(&lookup)
            .await
            .expect("find_domain_by_name");
        assert_eq!(found.as_ref(), Some(&domain), "lookup by {lookup}");
        assert_eq!(
            found.map(|d| d.name.as_unicode().to_owned()).as_deref(),
            Some(domain.name.as_unicode())
        );
    }
    assert_eq!(
        store
            .find_domain_by_name(&unique_domain_name())
            .await
            .expect("find"),
        None
    );
}

/// An owner lists their own and shared domains, never another owner's; `System` lists all.
pub async fn domain_list_visibility(store: &dyn Store) {
    let (_admin, shared) = fixtures::shared_domain(store).await;
    let a = fixtures::user(store).await;
    let b = fixtures::user(store).await;
    let a1 = fixtures::domain(store, &a).await;
    let a2 = fixtures::domain(store, &a).await;
    let b1 = fixtures::domain(store, &b).await;
    let check = |rows: &[Domain], who: &crate::model::User, want: &[&Domain], not: &[&Domain]| {
        for d in want {
            assert_eq!(
                rows.iter().filter(|r| r == d).count(),
                1,
                "{} must list {}",
                who.email,
                d.name
            );
        }
        for d in not {
            assert!(
                !rows.iter().any(|r| r.id == d.id),
                "{} must not list {}",
                who.email,
                d.name
            );
        }
        for r in rows {
            assert!(
                r.owner == who.id || r.shared,
                "{} sees {} (neither own nor shared)",
                who.email,
                r.name
            );
        }
    };
    check(
        &all_domains(store, Access::Owner(a.id)).await,
        &a,
        &[&a1, &a2, &shared],
        &[&b1],
    );
    check(
        &all_domains(store, Access::Owner(b.id)).await,
        &b,
        &[&b1, &shared],
        &[&a1, &a2],
    );
    let all = all_domains(store, Access::System).await;
    for d in [&a1, &a2, &b1, &shared] {
        assert_eq!(
            all.iter().filter(|r| r == &d).count(),
            1,
            "System lists {}",
            d.name
        );
    }
}

/// `update_domain` replaces all but `id`, `name`, `created_at` and bumps the revision.
pub async fn domain_update_round_trip_and_revision(store: &dyn Store) {
    let owner = fixtures::admin(store).await;
    let mailbox = fixtures::mailbox(store, &owner).await;
    let domain = fixtures::domain(store, &owner).await;
    let mut edit = domain.clone();
    populated_checks_and_keys(&mut edit);
    edit.shared = true;
    edit.verification_token = unique("verify");
    edit.default_mailboxes = vec![mailbox.id];
    edit.updated_at = t(50);
    edit.name = unique_domain_name();
    edit.created_at = t(-999);
    let updated = store
        .update_domain(Access::Owner(owner.id), &edit)
        .await
        .expect("update_domain");
    let mut expected = edit.clone();
    expected.name = domain.name.clone();
    expected.created_at = domain.created_at;
    expected.revision = domain.revision + 1;
    assert_eq!(
        updated, expected,
        "update_domain returns the stored row, revision + 1"
    );
    assert_eq!(
        store
            .get_domain(Access::System, domain.id)
            .await
            .expect("get"),
        expected
    );
    assert_eq!(
        store.find_domain_by_name(&edit.name).await.expect("find"),
        None,
        "name is not editable"
    );

    let mut clear = updated.clone();
    clear.dkim_keys.clear();
    clear.default_mailboxes.clear();
    clear.verified_at = None;
    clear.catch_all = CatchAll::default();
    let cleared = store
        .update_domain(Access::System, &clear)
        .await
        .expect("System updates");
    clear.revision = domain.revision + 2;
    assert_eq!(cleared, clear);
    assert_eq!(
        store
            .get_domain(Access::System, domain.id)
            .await
            .expect("get"),
        clear
    );
}

/// `disabled` reads back through create, get, `find_domain_by_name`,
/// `list_domains` and update, in both directions, independently of
/// `verified_at`.
pub async fn domain_disabled_round_trip(store: &dyn Store) {
    let owner = fixtures::user(store).await;
    let mut domain = new_domain(&owner);
    domain.verified_at = Some(t(5));
    domain.disabled = true;
    store.create_domain(&domain).await.expect("create_domain");
    let read_back = |want: Domain| async move {
        assert_eq!(
            store
                .get_domain(Access::System, want.id)
                .await
                .expect("get_domain"),
            want,
            "get_domain"
        );
        assert_eq!(
            store.find_domain_by_name(&want.name).await.expect("find"),
            Some(want.clone()),
            "find_domain_by_name"
        );
        let listed = all_domains(store, Access::Owner(want.owner)).await;
        assert_eq!(
            listed.iter().find(|d| d.id == want.id),
            Some(&want),
            "list_domains"
        );
    };
    read_back(domain.clone()).await;

    let mut enabled = domain.clone();
    enabled.disabled = false;
    let stored = store
        .update_domain(Access::System, &enabled)
        .await
        .expect("enable");
    assert!(!stored.disabled, "update_domain returns disabled = false");
    assert_eq!(stored.verified_at, Some(t(5)), "verification kept");
    read_back(stored.clone()).await;

    let mut disabled = stored;
    disabled.disabled = true;
    let stored = store
        .update_domain(Access::Owner(owner.id), &disabled)
        .await
        .expect("disable");
    assert!(stored.disabled, "update_domain returns disabled = true");
    read_back(stored).await;

    let fresh = fixtures::domain(store, &owner).await;
    assert!(!fresh.disabled, "a new domain is not disabled");
    read_back(fresh).await;
}

/// Stale revisions are `Conflict`; unknown or another owner's domains are `NotFound`.
pub async fn domain_update_stale_revision_is_conflict(store: &dyn Store) {
    let a = fixtures::user(store).await;
    let b = fixtures::user(store).await;
    let domain = fixtures::domain(store, &a).await;
    let mut first = domain.clone();
    first.verified_at = Some(t(1));
    let stored = store
        .update_domain(Access::Owner(a.id), &first)
        .await
        .expect("first update");
    let mut stale = domain.clone();
    stale.verification_token = unique("stale");
    expect::conflict(
        store.update_domain(Access::Owner(a.id), &stale).await,
        "stale revision",
    );
    let mut foreign = stored.clone();
    foreign.verification_token = unique("foreign");
    expect::not_found(
        store.update_domain(Access::Owner(b.id), &foreign).await,
        "another owner's domain",
    );
    expect::not_found(
        store.update_domain(Access::System, &new_domain(&a)).await,
        "unknown domain",
    );
    assert_eq!(
        store
            .get_domain(Access::System, domain.id)
            .await
            .expect("get"),
        stored
    );
}

/// Two concurrent updates from one revision: one wins, the other is `Conflict`.
pub async fn domain_concurrent_updates_one_wins(store: &dyn Store) {
    let owner = fixtures::user(store).await;
    let domain = fixtures::domain(store, &owner).await;
    let results = fixtures::concurrently(2, |i| {
        let mut edit = domain.clone();
        edit.verification_token = format!("token-{i}");
        async move { store.update_domain(Access::Owner(edit.owner), &edit).await }
    })
    .await;
    let winner = expect::one_ok_rest_conflict(results, "concurrent update_domain");
    assert_eq!(winner.revision, domain.revision + 1);
    assert_eq!(
        store
            .get_domain(Access::System, domain.id)
            .await
            .expect("get"),
        winner
    );
}

/// Other users can read a shared domain but neither update nor delete it.
pub async fn domain_shared_is_read_only_for_others(store: &dyn Store) {
    let (admin, shared) = fixtures::shared_domain(store).await;
    let user = fixtures::user(store).await;
    let as_user = Access::Owner(user.id);
    assert_eq!(
        store
            .get_domain(as_user, shared.id)
            .await
            .expect("get shared"),
        shared
    );
    let mut edit = shared.clone();
    edit.catch_all.enabled = true;
    expect::not_found(
        store.update_domain(as_user, &edit).await,
        "update of a shared domain by a user",
    );
    expect::not_found(
        store.delete_domain(as_user, shared.id).await,
        "delete of a shared domain by a user",
    );
    assert_eq!(
        store
            .get_domain(Access::System, shared.id)
            .await
            .expect("get"),
        shared
    );
    let updated = store
        .update_domain(Access::Owner(admin.id), &edit)
        .await
        .expect("owner updates");
    assert!(updated.catch_all.enabled);
}

/// `delete_domain` is `Conflict` while live or soft-deleted aliases (of anyone) are on it.
pub async fn domain_delete_conflicts_while_aliases_exist(store: &dyn Store) {
    let (owner, domain, _mailbox, alias) = fixtures::owner_with_alias(store).await;
    let me = Access::Owner(owner.id);
    expect::conflict(
        store.delete_domain(me, domain.id).await,
        "domain with a live alias",
    );
    store
        .delete_alias(me, alias.id, t(10))
        .await
        .expect("delete_alias");
    expect::conflict(
        store.delete_domain(me, domain.id).await,
        "domain with a soft-deleted alias",
    );
    expect::conflict(
        store.delete_domain(Access::System, domain.id).await,
        "System too",
    );
    assert!(
        store.get_domain(me, domain.id).await.is_ok(),
        "domain survives"
    );

    let (admin, shared) = fixtures::shared_domain(store).await;
    let mailbox = fixtures::mailbox(store, &owner).await;
    fixtures::alias(store, &owner, &shared, &mailbox).await;
    expect::conflict(
        store
            .delete_domain(Access::Owner(admin.id), shared.id)
            .await,
        "shared domain with another user's alias",
    );

    let empty = fixtures::domain(store, &owner).await;
    let other = fixtures::user(store).await;
    expect::not_found(
        store.delete_domain(Access::Owner(other.id), empty.id).await,
        "another owner's",
    );
    store
        .delete_domain(me, empty.id)
        .await
        .expect("delete_domain without aliases");
    expect::not_found(
        store.get_domain(Access::System, empty.id).await,
        "deleted domain",
    );
    assert_eq!(
        store.find_domain_by_name(&empty.name).await.expect("find"),
        None
    );
    expect::not_found(store.delete_domain(me, empty.id).await, "second delete");
}

/// Default mailboxes must exist and be the domain owner's, on create and on
/// update (catch-all mail must never reach another user's mailbox).
pub async fn domain_default_mailboxes_must_be_owners(store: &dyn Store) {
    let owner = fixtures::user(store).await;
    let other = fixtures::user(store).await;
    let mine = fixtures::mailbox(store, &owner).await;
    let theirs = fixtures::mailbox(store, &other).await;

    let mut foreign = new_domain(&owner);
    foreign.default_mailboxes = vec![mine.id, theirs.id];
    expect::not_found_entity(
        store.create_domain(&foreign).await,
        "mailbox",
        "another user's default mailbox",
    );
    assert!(
        store
            .find_domain_by_name(&foreign.name)
            .await
            .expect("find")
            .is_none(),
        "nothing created"
    );
    let mut unknown = new_domain(&owner);
    unknown.default_mailboxes = vec![crate::ids::MailboxId::new()];
    expect::not_found_entity(
        store.create_domain(&unknown).await,
        "mailbox",
        "unknown default mailbox",
    );

    let mut good = new_domain(&owner);
    good.default_mailboxes = vec![mine.id];
    store
        .create_domain(&good)
        .await
        .expect("own default mailbox");
    let mut changed = good.clone();
    changed.default_mailboxes = vec![theirs.id];
    expect::not_found_entity(
        store.update_domain(Access::Owner(owner.id), &changed).await,
        "mailbox",
        "update to another user's mailbox",
    );
    let stored = store
        .get_domain(Access::System, good.id)
        .await
        .expect("get");
    assert_eq!(
        stored.default_mailboxes,
        vec![mine.id],
        "update refused whole"
    );
    assert_eq!(
        stored.revision, good.revision,
        "no revision bump on refusal"
    );
}
