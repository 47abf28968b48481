//! [`MailboxStore`](crate::store::MailboxStore): the real addresses aliases deliver to.

use super::expect;
use super::fixtures::{self, new_mailbox, new_user, secret_hash, t, unique_address, upper_cased};
use crate::ids::MailboxId;
use crate::store::{Access, Store};

/// A verified, disabled mailbox with a pending token reads back equal, spelled as written.
pub async fn mailbox_create_get_round_trip(store: &dyn Store) {
    let owner = fixtures::user(store).await;
    let mut mailbox = new_mailbox(&owner);
    mailbox.address = unique_address("John.Doe", "Mail.Example");
    mailbox.verified_at = Some(t(7));
    mailbox.verification_token = Some(secret_hash());
    mailbox.disabled = true;
    mailbox.updated_at = t(8);
    store
        .create_mailbox(&mailbox)
        .await
        .expect("create_mailbox");
    for access in [Access::Owner(owner.id), Access::System] {
        let got = store
            .get_mailbox(access, mailbox.id)
            .await
            .expect("get_mailbox");
        assert_eq!(got, mailbox);
        expect::same_spelling(&got.address, &mailbox.address, "get_mailbox");
    }
}

/// One owner cannot have an address twice (in any case); another owner can.
pub async fn mailbox_duplicate_per_owner(store: &dyn Store) {
    let a = fixtures::user(store).await;
    let b = fixtures::user(store).await;
    let first = fixtures::mailbox(store, &a).await;
    let mut dup = new_mailbox(&a);
    dup.address = first.address.clone();
    expect::already_exists(store.create_mailbox(&dup).await, "same owner, same address");
    dup.address = upper_cased(&first.address);
    expect::already_exists(
        store.create_mailbox(&dup).await,
        "same owner, address upper-cased",
    );
    expect::not_found(
        store.get_mailbox(Access::System, dup.id).await,
        "refused mailbox not stored",
    );
    let mut theirs = new_mailbox(&b);
    theirs.address = first.address.clone();
    store
        .create_mailbox(&theirs)
        .await
        .expect("another owner may use the same address");
}

/// A mailbox of a user that does not exist is `NotFound`.
pub async fn mailbox_owner_must_exist(store: &dyn Store) {
    let mailbox = new_mailbox(&new_user());
    expect::not_found(
        store.create_mailbox(&mailbox).await,
        "mailbox of an unknown owner",
    );
}

/// Unknown ids and other owners' mailboxes are `NotFound`; `System` sees all.
pub async fn mailbox_get_missing_and_cross_owner(store: &dyn Store) {
    let a = fixtures::user(store).await;
    let b = fixtures::user(store).await;
    let mailbox = fixtures::mailbox(store, &a).await;
    expect::not_found(
        store
            .get_mailbox(Access::Owner(a.id), MailboxId::new())
            .await,
        "unknown id",
    );
    expect::not_found(
        store.get_mailbox(Access::Owner(b.id), mailbox.id).await,
        "another owner's mailbox",
    );
    assert_eq!(
        store
            .get_mailbox(Access::System, mailbox.id)
            .await
            .expect("get"),
        mailbox
    );
}

/// `list_mailboxes` returns exactly the owner's mailboxes, by id.
pub async fn mailbox_list_by_owner(store: &dyn Store) {
    let a = fixtures::user(store).await;
    let b = fixtures::user(store).await;
    let mut mine = Vec::new();
    for _ in 0..3 {
        mine.push(fixtures::mailbox(store, &a).await);
    }
    let theirs = fixtures::mailbox(store, &b).await;
    mine.sort_by_key(|m| m.id);
    assert_eq!(
        store.list_mailboxes(a.id).await.expect("list_mailboxes"),
        mine
    );
    assert_eq!(
        store.list_mailboxes(b.id).await.expect("list_mailboxes"),
        vec![theirs]
    );
    assert!(
        store
            .list_mailboxes(new_user().id)
            .await
            .expect("list_mailboxes")
            .is_empty()
    );
}

/// `find_mailbox_by_token` finds the mailbox with a pending token, and not once it is cleared.
pub async fn mailbox_find_by_token(store: &dyn Store) {
    let owner = fixtures::user(store).await;
    let mut mailbox = new_mailbox(&owner);
    let token = secret_hash();
    mailbox.verification_token = Some(token);
    store
        .create_mailbox(&mailbox)
        .await
        .expect("create_mailbox");
    fixtures::mailbox(store, &owner).await;
    assert_eq!(
        store.find_mailbox_by_token(&token).await.expect("find"),
        Some(mailbox.clone())
    );
    assert_eq!(
        store
            .find_mailbox_by_token(&secret_hash())
            .await
            .expect("find"),
        None
    );

    let mut verified = mailbox.clone();
    verified.verification_token = None;
    verified.verified_at = Some(t(1));
    store
        .update_mailbox(Access::Owner(owner.id), &verified)
        .await
        .expect("update_mailbox");
    assert_eq!(
        store.find_mailbox_by_token(&token).await.expect("find"),
        None,
        "cleared token"
    );
}

/// `update_mailbox` replaces all but `id`, `owner`, `created_at` and bumps the revision.
pub async fn mailbox_update_round_trip_and_revision(store: &dyn Store) {
    let owner = fixtures::user(store).await;
    let other = fixtures::user(store).await;
    let mailbox = fixtures::mailbox(store, &owner).await;
    let mut edit = mailbox.clone();
    edit.address = unique_address("New.Inbox", "Mail.Example");
    edit.verified_at = Some(t(3));
    edit.verification_token = Some(secret_hash());
    edit.disabled = true;
    edit.updated_at = t(4);
    let updated = store
        .update_mailbox(Access::Owner(owner.id), &edit)
        .await
        .expect("update_mailbox");
    let mut expected = edit.clone();
    expected.revision = mailbox.revision + 1;
    assert_eq!(
        updated, expected,
        "update_mailbox returns the stored row, revision + 1"
    );
    expect::same_spelling(&updated.address, &edit.address, "update_mailbox");
    assert_eq!(
        store
            .get_mailbox(Access::System, mailbox.id)
            .await
            .expect("get"),
        expected
    );

    let mut ignored = expected.clone();
    ignored.owner = other.id;
    ignored.created_at = t(-999);
    ignored.disabled = false;
    let updated = store
        .update_mailbox(Access::System, &ignored)
        .await
        .expect("update_mailbox");
    expected.disabled = false;
    expected.revision += 1;
    assert_eq!(updated, expected, "owner and created_at are not editable");
    assert_eq!(
        store.list_mailboxes(owner.id).await.expect("list"),
        vec![expected]
    );
}

/// Stale revisions are `Conflict`, another mailbox's address is `AlreadyExists`,
/// unknown or foreign mailboxes are `NotFound`; refused updates change nothing.
pub async fn mailbox_update_conflicts_and_scoping(store: &dyn Store) {
    let a = fixtures::user(store).await;
    let b = fixtures::user(store).await;
    let me = Access::Owner(a.id);
    let mailbox = fixtures::mailbox(store, &a).await;
    let sibling = fixtures::mailbox(store, &a).await;
    let mut first = mailbox.clone();
    first.verified_at = Some(t(1));
    let stored = store
        .update_mailbox(me, &first)
        .await
        .expect("first update");

    let mut stale = mailbox.clone();
    stale.disabled = true;
    expect::conflict(store.update_mailbox(me, &stale).await, "stale revision");
    let mut taken = stored.clone();
    taken.address = upper_cased(&sibling.address);
    expect::already_exists(
        store.update_mailbox(me, &taken).await,
        "address of a sibling mailbox",
    );
    let mut foreign = stored.clone();
    foreign.disabled = true;
    expect::not_found(
        store.update_mailbox(Access::Owner(b.id), &foreign).await,
        "another owner's",
    );
    expect::not_found(
        store.update_mailbox(me, &new_mailbox(&a)).await,
        "unknown mailbox",
    );
    assert_eq!(
        store.get_mailbox(me, mailbox.id).await.expect("get"),
        stored
    );

    let mut recase = stored.clone();
    recase.address = upper_cased(&stored.address);
    let updated = store
        .update_mailbox(me, &recase)
        .await
        .expect("own address in another case");
    expect::same_spelling(&updated.address, &recase.address, "update_mailbox");
}

/// Two concurrent updates from one revision: one wins, the other is `Conflict`.
pub async fn mailbox_concurrent_updates_one_wins(store: &dyn Store) {
    let owner = fixtures::user(store).await;
    let mailbox = fixtures::mailbox(store, &owner).await;
    let results = fixtures::concurrently(2, |i| {
        let mut edit = mailbox.clone();
        edit.verified_at = Some(t(i64::try_from(i).unwrap_or(0) + 1));
        async move { store.update_mailbox(Access::System, &edit).await }
    })
    .await;
    let winner = expect::one_ok_rest_conflict(results, "concurrent update_mailbox");
    assert_eq!(winner.revision, mailbox.revision + 1);
    assert_eq!(
        store
            .get_mailbox(Access::System, mailbox.id)
            .await
            .expect("get"),
        winner
    );
}

/// `delete_mailbox` is `Conflict` while a live or soft-deleted alias, or a
/// domain default, points at it; `NotFound` for unknown or foreign ones.
pub async fn mailbox_delete_conflicts_while_referenced(store: &dyn Store) {
    let (owner, domain, in_use, alias) = fixtures::owner_with_alias(store).await;
    let me = Access::Owner(owner.id);
    expect::conflict(
        store.delete_mailbox(me, in_use.id).await,
        "mailbox of a live alias",
    );

    let spare = fixtures::mailbox(store, &owner).await;
    let mut moved = alias.clone();
    moved.mailboxes = vec![spare.id];
    store.update_alias(me, &moved).await.expect("update_alias");
    store
        .delete_mailbox(me, in_use.id)
        .await
        .expect("unreferenced mailbox deletes");
    expect::not_found(
        store.get_mailbox(Access::System, in_use.id).await,
        "deleted mailbox",
    );
    expect::not_found(store.delete_mailbox(me, in_use.id).await, "second delete");

    store
        .delete_alias(me, alias.id, t(1))
        .await
        .expect("delete_alias");
    expect::conflict(
        store.delete_mailbox(me, spare.id).await,
        "mailbox of a soft-deleted alias",
    );

    let default = fixtures::mailbox(store, &owner).await;
    let mut with_default = store.get_domain(me, domain.id).await.expect("get_domain");
    with_default.default_mailboxes = vec![default.id];
    let with_default = store
        .update_domain(me, &with_default)
        .await
        .expect("update_domain");
    expect::conflict(
        store.delete_mailbox(me, default.id).await,
        "a domain default",
    );
    let mut without = with_default.clone();
    without.default_mailboxes.clear();
    store
        .update_domain(me, &without)
        .await
        .expect("update_domain");

    let other = fixtures::user(store).await;
    expect::not_found(
        store
            .delete_mailbox(Access::Owner(other.id), default.id)
            .await,
        "another owner's",
    );
    store
        .delete_mailbox(me, default.id)
        .await
        .expect("no longer a default");
    expect::not_found(store.get_mailbox(me, default.id).await, "deleted mailbox");
}
