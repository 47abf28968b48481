//! `create_aliases` on batches larger than its statements: the checks read
//! the whole batch with chunked `IN (…)` queries and the rows go in with
//! multi-row `INSERT`s, yet the outcome is that of creating the aliases one
//! by one — the error of the first failing alias, nothing written on an
//! error — on both dialects.

mod common;

use std::sync::Arc;

use smtpy_core::model::{Alias, Domain, Mailbox, User};
use smtpy_core::store::Access;
use smtpy_core::testing::fixtures;
use smtpy_core::{Store, StoreError};

/// More aliases than one `IN (…)` list holds (4096 keys).
const LARGE: usize = 5000;

struct World {
    owner: User,
    domain: Domain,
    mailboxes: Vec<Mailbox>,
    /// Another user's domain and mailbox.
    their_domain: Domain,
    their_mailbox: Mailbox,
    /// An address in use.
    existing: Alias,
    /// An alias of `owner` whose address is tombstoned.
    tombstoned: Alias,
}

async fn world(store: &dyn Store) -> World {
    let (owner, domain, mailbox, existing) = fixtures::owner_with_alias(store).await;
    let mut mailboxes = vec![mailbox];
    for _ in 0..2 {
        mailboxes.push(fixtures::mailbox(store, &owner).await);
    }
    let other = fixtures::user(store).await;
    let their_domain = fixtures::domain(store, &other).await;
    let their_mailbox = fixtures::mailbox(store, &other).await;
    // Deleting a user tombstones the addresses of their aliases; the domain
    // name is then hosted again, by `owner`.
    let (doomed, doomed_domain, _, doomed_alias) = fixtures::owner_with_alias(store).await;
    store.delete_user(doomed.id).await.expect("delete_user");
    let mut rehosted = fixtures::new_domain(&owner);
    rehosted.name = doomed_domain.name.clone();
    store.create_domain(&rehosted).await.expect("rehost");
    let mut tombstoned = fixtures::new_alias(&owner, &rehosted, &[&mailboxes[0]]);
    tombstoned.address = doomed_alias.address.clone();
    World {
        owner,
        domain,
        mailboxes,
        their_domain,
        their_mailbox,
        existing,
        tombstoned,
    }
}

impl World {
    fn good(&self) -> Alias {
        fixtures::new_alias(&self.owner, &self.domain, &[&self.mailboxes[0]])
    }

    fn batch(&self, n: usize) -> Vec<Alias> {
        (0..n).map(|_| self.good()).collect()
    }
}

async fn assert_none_created(store: &dyn Store, batch: &[Alias], what: &str) {
    for alias in batch {
        assert!(
            matches!(
                store.get_alias(Access::System, alias.id).await,
                Err(StoreError::NotFound { .. })
            ),
            "{what}: a failing batch creates nothing"
        );
    }
}

/// 1300 aliases with one to three mailboxes each, in varying orders, and
/// some optional fields set: every alias reads back as it was written.
async fn large_batch_round_trips(store: Arc<dyn Store>) {
    let w = world(&*store).await;
    let batch: Vec<Alias> = (0..1300)
        .map(|i| {
            let mut alias = w.good();
            let n = i % 3 + 1;
            alias.mailboxes = (0..n).map(|k| w.mailboxes[(i + k) % 3].id).collect();
            if i % 7 == 0 {
                alias.note = Some(format!("Imported #{i}"));
                alias.labels = vec!["import".into(), format!("l{i}")];
                alias.category = Some("shops".into());
                alias.enabled = false;
            }
            alias
        })
        .collect();
    store.create_aliases(&batch).await.expect("create_aliases");
    for alias in &batch {
        assert_eq!(
            &store
                .get_alias(Access::System, alias.id)
                .await
                .expect("get_alias"),
            alias
        );
    }
    let last = batch.last().expect("not empty");
    assert_eq!(
        store
            .find_alias_by_address(&fixtures::upper_cased(&last.address))
            .await
            .expect("find"),
        Some(last.clone())
    );
}

/// Each failure at a position past the first chunk of keys fails the
/// whole batch, with the error of the first failing alias (in the order
/// of `create_alias`'s checks).
async fn first_failing_alias_decides(store: Arc<dyn Store>) {
    let w = world(&*store).await;
    let s = &*store;

    let mut batch = w.batch(LARGE);
    batch[4500].address = fixtures::upper_cased(&w.existing.address);
    let result = s.create_aliases(&batch).await;
    assert!(
        matches!(result, Err(StoreError::AlreadyExists { entity: "alias" })),
        "a taken address: {result:?}"
    );
    assert_none_created(s, &[batch[0].clone(), batch[4999].clone()], "taken").await;

    let mut batch = w.batch(LARGE);
    batch[4200].domain = w.their_domain.id;
    batch[4200].address = fixtures::address_on(&w.their_domain);
    batch[4600] = w.tombstoned.clone();
    let result = s.create_aliases(&batch).await;
    assert!(
        matches!(result, Err(StoreError::NotFound { entity: "domain" })),
        "another user's domain before a tombstone: {result:?}"
    );

    batch.swap(4200, 4600);
    let result = s.create_aliases(&batch).await;
    assert!(
        matches!(result, Err(StoreError::Gone { entity: "alias" })),
        "a tombstone before another user's domain: {result:?}"
    );
    assert_none_created(s, &batch, "tombstone").await;

    // Within one alias the order of create_alias holds too: the tombstone
    // (checked second) wins over the foreign mailbox (checked last).
    let mut both = w.tombstoned.clone();
    both.mailboxes = vec![w.their_mailbox.id];
    let result = s.create_aliases(&[w.good(), both]).await;
    assert!(matches!(result, Err(StoreError::Gone { .. })), "{result:?}");

    let mut batch = w.batch(20);
    batch[3].mailboxes = vec![w.mailboxes[1].id, w.their_mailbox.id];
    batch[9].owner = fixtures::new_user().id;
    let result = s.create_aliases(&batch).await;
    assert!(
        matches!(result, Err(StoreError::NotFound { entity: "mailbox" })),
        "another user's mailbox before an unknown owner: {result:?}"
    );
    batch.swap(3, 9);
    let result = s.create_aliases(&batch).await;
    assert!(
        matches!(result, Err(StoreError::NotFound { entity: "user" })),
        "an unknown owner first: {result:?}"
    );

    let mut batch = w.batch(20);
    batch[5].address = fixtures::address_on(&w.their_domain);
    batch[6].mailboxes.clear();
    let result = s.create_aliases(&batch).await;
    assert!(
        matches!(
            result,
            Err(StoreError::Invalid {
                entity: "alias",
                ..
            })
        ),
        "an address off the alias's domain: {result:?}"
    );
    batch.swap(5, 6);
    let result = s.create_aliases(&batch).await;
    assert!(
        matches!(
            result,
            Err(StoreError::Invalid {
                entity: "alias",
                ..
            })
        ),
        "no mailbox: {result:?}"
    );

    // The same address or id twice: AlreadyExists at the second occurrence.
    let mut batch = w.batch(LARGE);
    batch[4999].address = fixtures::upper_cased(&batch[17].address);
    let result = s.create_aliases(&batch).await;
    assert!(
        matches!(result, Err(StoreError::AlreadyExists { .. })),
        "an address twice: {result:?}"
    );
    let mut batch = w.batch(30);
    batch[20].id = batch[2].id;
    let result = s.create_aliases(&batch).await;
    assert!(
        matches!(result, Err(StoreError::AlreadyExists { .. })),
        "an id twice: {result:?}"
    );
    let mut batch = w.batch(30);
    batch[29].id = w.existing.id;
    let result = s.create_aliases(&batch).await;
    assert!(
        matches!(result, Err(StoreError::AlreadyExists { .. })),
        "an existing id: {result:?}"
    );
    assert_none_created(s, &batch[..29], "duplicates").await;

    // After all that, the same batch without its faults goes in whole.
    let batch = w.batch(LARGE);
    s.create_aliases(&batch).await.expect("create_aliases");
    for alias in batch.iter().step_by(97) {
        assert_eq!(
            &s.get_alias(Access::System, alias.id).await.expect("get"),
            alias
        );
    }
}

#[tokio::test]
async fn sqlite_large_batch_round_trips() {
    large_batch_round_trips(common::new_sqlite_store().await).await;
}

#[tokio::test]
async fn sqlite_first_failing_alias_decides() {
    first_failing_alias_decides(common::new_sqlite_store().await).await;
}

#[tokio::test]
async fn postgres_large_batch_round_trips() {
    if let Some(store) = common::new_postgres_store().await {
        large_batch_round_trips(store).await;
    }
}

#[tokio::test]
async fn postgres_first_failing_alias_decides() {
    if let Some(store) = common::new_postgres_store().await {
        first_failing_alias_decides(store).await;
    }
}
