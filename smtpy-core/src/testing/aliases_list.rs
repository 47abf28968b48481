//! [`AliasStore::list_aliases`](crate::store::AliasStore::list_aliases): filters,
//! owner scoping and cursor pagination.

use super::fixtures::{self, address, new_alias, t, unique};
use crate::model::Alias;
use crate::store::{Access, AliasFilter, DeletedFilter, MAX_PAGE_SIZE, PageRequest, Store};

/// Every alias passing `filter`, paging `limit` at a time; asserts id order,
/// page sizes and that each row passes the filter.
async fn list_all(
    store: &dyn Store,
    access: Access,
    filter: &AliasFilter,
    limit: u32,
) -> Vec<Alias> {
    let max = usize::try_from(limit.clamp(1, MAX_PAGE_SIZE)).unwrap_or(1);
    let mut seen: Vec<Alias> = Vec::new();
    let mut page = PageRequest::first(limit);
    loop {
        let got = store
            .list_aliases(access, filter, page)
            .await
            .expect("list_aliases");
        assert!(
            got.items.len() <= max,
            "a page holds at most {max} rows, got {}",
            got.items.len()
        );
        if got.next.is_some() {
            assert_eq!(got.items.len(), max, "only the last page may be short");
        }
        seen.extend(got.items);
        match got.next {
            Some(cursor) => page = PageRequest::after(cursor, limit),
            None => break,
        }
    }
    assert!(
        seen.windows(2).all(|w| w[0].id < w[1].id),
        "list_aliases in strictly increasing id order"
    );
    for alias in &seen {
        assert!(
            filter.matches(alias),
            "{} does not pass {filter:?}",
            alias.address
        );
    }
    seen
}

/// The ids of `aliases`, sorted.
fn ids(aliases: &[&Alias]) -> Vec<crate::ids::AliasId> {
    let mut ids: Vec<_> = aliases.iter().map(|a| a.id).collect();
    ids.sort();
    ids
}

/// Domain, enabled, category and text filters (text on address and note,
/// case-insensitive) each narrow the list as [`AliasFilter::matches`] says.
pub async fn alias_list_filters(store: &dyn Store) {
    let owner = fixtures::user(store).await;
    let d1 = fixtures::domain(store, &owner).await;
    let d2 = fixtures::domain(store, &owner).await;
    let mailbox = fixtures::mailbox(store, &owner).await;
    let mut shoe = new_alias(&owner, &d1, &[&mailbox]);
    shoe.category = Some("shopping".into());
    shoe.note = Some("Shoe SHOP in town".into());
    let mut news = new_alias(&owner, &d1, &[&mailbox]);
    news.enabled = false;
    news.category = Some("news".into());
    let travel_local = unique("Travel");
    let travel = Alias::new(
        address(&format!("{travel_local}@{}", d2.name.as_ascii())),
        owner.id,
        d2.id,
        vec![mailbox.id],
        fixtures::T0,
    );
    let mut gone = new_alias(&owner, &d2, &[&mailbox]);
    gone.category = Some("shopping".into());
    for alias in [&shoe, &news, &travel, &gone] {
        store.create_alias(alias).await.expect("create_alias");
    }
    store
        .delete_alias(Access::Owner(owner.id), gone.id, t(1))
        .await
        .expect("delete_alias");

    let me = Access::Owner(owner.id);
    let cases: Vec<(AliasFilter, Vec<&Alias>)> = vec![
        (AliasFilter::default(), vec![&shoe, &news, &travel]),
        (
            AliasFilter {
                domain: Some(d1.id),
                ..Default::default()
            },
            vec![&shoe, &news],
        ),
        (
            AliasFilter {
                enabled: Some(false),
                ..Default::default()
            },
            vec![&news],
        ),
        (
            AliasFilter {
                enabled: Some(true),
                ..Default::default()
            },
            vec![&shoe, &travel],
        ),
        (
            AliasFilter {
                category: Some("shopping".into()),
                ..Default::default()
            },
            vec![&shoe],
        ),
        (
            AliasFilter {
                category: Some("shopping".into()),
                deleted: DeletedFilter::Any,
                ..Default::default()
            },
            vec![&shoe, &gone],
        ),
        (
            AliasFilter {
                text: Some("shoe shop".into()),
                ..Default::default()
            },
            vec![&shoe],
        ),
        (
            AliasFilter {
                text: Some(travel_local.to_uppercase()),
                ..Default::default()
            },
            vec![&travel],
        ),
        (
            AliasFilter {
                text: Some(d2.name.as_ascii().to_uppercase()),
                ..Default::default()
            },
            vec![&travel],
        ),
        (
            AliasFilter {
                domain: Some(d2.id),
                enabled: Some(true),
                ..Default::default()
            },
            vec![&travel],
        ),
        (
            AliasFilter {
                domain: Some(d2.id),
                enabled: Some(false),
                ..Default::default()
            },
            vec![],
        ),
    ];
    for (filter, want) in cases {
        let got = list_all(store, me, &filter, 50).await;
        let got_ids: Vec<_> = got.iter().map(|a| a.id).collect();
        assert_eq!(got_ids, ids(&want), "list_aliases with {filter:?}");
    }
}

/// `DeletedFilter` selects live aliases (default), the trash, or both.
pub async fn alias_list_deleted_filter(store: &dyn Store) {
    let (owner, domain, mailbox, live) = fixtures::owner_with_alias(store).await;
    let trashed = fixtures::alias(store, &owner, &domain, &mailbox).await;
    let me = Access::Owner(owner.id);
    store
        .delete_alias(me, trashed.id, t(5))
        .await
        .expect("delete_alias");
    let trashed = store.get_alias(me, trashed.id).await.expect("get");
    let with = |deleted| AliasFilter {
        deleted,
        ..Default::default()
    };
    assert_eq!(
        list_all(store, me, &with(DeletedFilter::Live), 50).await,
        vec![live.clone()]
    );
    assert_eq!(
        list_all(store, me, &with(DeletedFilter::Deleted), 50).await,
        vec![trashed.clone()]
    );
    let mut both = vec![live, trashed];
    both.sort_by_key(|a| a.id);
    assert_eq!(
        list_all(store, me, &with(DeletedFilter::Any), 50).await,
        both
    );
}

/// An owner lists only their own aliases; `System` lists everyone's.
pub async fn alias_list_cross_owner(store: &dyn Store) {
    let (a, a_domain, a_box, a1) = fixtures::owner_with_alias(store).await;
    let a2 = fixtures::alias(store, &a, &a_domain, &a_box).await;
    let (b, _, _, b1) = fixtures::owner_with_alias(store).await;
    let any = AliasFilter {
        deleted: DeletedFilter::Any,
        ..Default::default()
    };
    let theirs = list_all(store, Access::Owner(b.id), &any, 50).await;
    assert_eq!(theirs, vec![b1], "an owner sees only their aliases");
    let on_a_domain = AliasFilter {
        domain: Some(a_domain.id),
        ..any.clone()
    };
    assert!(
        list_all(store, Access::Owner(b.id), &on_a_domain, 50)
            .await
            .is_empty(),
        "filtering by another owner's domain shows nothing"
    );
    let mut want = vec![a1, a2];
    want.sort_by_key(|x| x.id);
    assert_eq!(
        list_all(store, Access::System, &on_a_domain, 50).await,
        want.clone()
    );
    assert_eq!(list_all(store, Access::Owner(a.id), &any, 50).await, want);
}

/// Paging through 25 aliases 7 at a time returns each exactly once, in id order.
pub async fn alias_list_pagination(store: &dyn Store) {
    let (owner, domain, mailbox, first) = fixtures::owner_with_alias(store).await;
    let mut all = vec![first];
    for _ in 1..25 {
        all.push(fixtures::alias(store, &owner, &domain, &mailbox).await);
    }
    all.sort_by_key(|a| a.id);
    let me = Access::Owner(owner.id);
    let filter = AliasFilter::default();
    let mut sizes = Vec::new();
    let mut seen = Vec::new();
    let mut page = PageRequest::first(7);
    loop {
        let got = store
            .list_aliases(me, &filter, page)
            .await
            .expect("list_aliases");
        sizes.push(got.items.len());
        seen.extend(got.items);
        match got.next {
            Some(cursor) => page = PageRequest::after(cursor, 7),
            None => break,
        }
    }
    assert_eq!(sizes, vec![7, 7, 7, 4], "page sizes");
    assert_eq!(seen, all, "every alias exactly once, in id order");
}

/// Aliases inserted between page fetches never make an existing alias be
/// skipped or returned twice.
pub async fn alias_list_pagination_stable_under_inserts(store: &dyn Store) {
    let (owner, domain, mailbox, first) = fixtures::owner_with_alias(store).await;
    let mut existing = vec![first.id];
    for _ in 1..10 {
        existing.push(fixtures::alias(store, &owner, &domain, &mailbox).await.id);
    }
    let me = Access::Owner(owner.id);
    let filter = AliasFilter::default();
    let mut seen = Vec::new();
    let mut inserted = Vec::new();
    let mut page = PageRequest::first(3);
    loop {
        let got = store
            .list_aliases(me, &filter, page)
            .await
            .expect("list_aliases");
        seen.extend(got.items.iter().map(|a| a.id));
        for _ in 0..2 {
            inserted.push(fixtures::alias(store, &owner, &domain, &mailbox).await.id);
        }
        match got.next {
            Some(cursor) => page = PageRequest::after(cursor, 3),
            None => break,
        }
        assert!(seen.len() < 200, "paging must end");
    }
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "no duplicates, id order"
    );
    for id in &existing {
        assert!(seen.contains(id), "existing alias {id} skipped");
    }
    for id in &seen {
        assert!(
            existing.contains(id) || inserted.contains(id),
            "unknown alias {id} listed"
        );
    }
}

/// A limit of 0 returns one row per page; a limit above the maximum returns at most 500.
pub async fn alias_list_limit_clamping(store: &dyn Store) {
    let (owner, domain, mailbox, first) = fixtures::owner_with_alias(store).await;
    let me = Access::Owner(owner.id);
    let filter = AliasFilter::default();
    let zero = store
        .list_aliases(me, &filter, PageRequest::first(0))
        .await
        .expect("list_aliases");
    assert_eq!(zero.items, vec![first.clone()], "limit 0 is clamped to 1");
    assert!(zero.next.is_none(), "one alias only: no next page");

    let mut rest: Vec<Alias> = (0..MAX_PAGE_SIZE)
        .map(|_| new_alias(&owner, &domain, &[&mailbox]))
        .collect();
    let workers = 8;
    let results = fixtures::concurrently(workers, |w| {
        let mine: Vec<&Alias> = rest.iter().skip(w).step_by(workers).collect();
        async move {
            for alias in mine {
                store.create_alias(alias).await?;
            }
            Ok::<(), crate::StoreError>(())
        }
    })
    .await;
    for r in results {
        r.expect("create_alias");
    }
    rest.push(first);
    rest.sort_by_key(|a| a.id);

    let ones = store
        .list_aliases(me, &filter, PageRequest::first(0))
        .await
        .expect("list_aliases");
    assert_eq!(ones.items.len(), 1, "limit 0 is clamped to 1");
    let cursor = ones.next.expect("more rows: a next page");
    let second = store
        .list_aliases(me, &filter, PageRequest::after(cursor, 0))
        .await
        .expect("list");
    assert_eq!(
        second.items,
        vec![rest[1].clone()],
        "the page after the first row"
    );

    for limit in [MAX_PAGE_SIZE + 1, u32::MAX] {
        let big = store
            .list_aliases(me, &filter, PageRequest::first(limit))
            .await
            .expect("list_aliases");
        assert_eq!(
            big.items.len(),
            500,
            "limit {limit} is clamped to {MAX_PAGE_SIZE}"
        );
        assert_eq!(big.items[..], rest[..500]);
        let cursor = big.next.expect("501 rows: a next page");
        let last = store
            .list_aliases(me, &filter, PageRequest::after(cursor, limit))
            .await
            .expect("list");
        assert_eq!(last.items, vec![rest[500].clone()]);
        assert!(last.next.is_none());
    }
}
