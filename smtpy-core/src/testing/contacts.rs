//! [`ContactStore`](crate::store::ContactStore): contacts and their reverse aliases.

use super::expect;
use super::fixtures::{self, new_contact, t, unique, unique_address, upper_cased};
use crate::StoreError;
use crate::ids::{AliasId, ContactId};
use crate::model::Contact;
use crate::store::{Access, PageRequest, Store};

/// Every contact visible to `access` (of `alias`, if set), paging two at a time.
async fn list_all(store: &dyn Store, access: Access, alias: Option<AliasId>) -> Vec<Contact> {
    let mut seen: Vec<Contact> = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let got = store
            .list_contacts(access, alias, page)
            .await
            .expect("list_contacts");
        assert!(got.items.len() <= 2, "a page holds at most `limit` rows");
        seen.extend(got.items);
        match got.next {
            Some(cursor) => page = PageRequest::after(cursor, 2),
            None => break,
        }
    }
    assert!(
        seen.windows(2).all(|w| w[0].id < w[1].id),
        "list_contacts in id order"
    );
    seen
}

/// A contact with every optional field set reads back equal, spelled as written.
pub async fn contact_create_get_round_trip(store: &dyn Store) {
    let (owner, _, _, alias) = fixtures::owner_with_alias(store).await;
    let mut contact = new_contact(&alias);
    contact.address = unique_address("Jane.Doe", "Outside.Example");
    contact.display_name = Some("Jane Doe (Shop)".into());
    contact.blocked = true;
    contact.updated_at = t(2);
    contact.last_seen_at = Some(t(3));
    store
        .create_contact(&contact)
        .await
        .expect("create_contact");
    for access in [Access::Owner(owner.id), Access::System] {
        let got = store
            .get_contact(access, contact.id)
            .await
            .expect("get_contact");
        assert_eq!(got, contact);
        expect::same_spelling(&got.address, &contact.address, "get_contact");
    }
}

/// An address twice on one alias (any case) or a taken reverse key is `AlreadyExists`.
pub async fn contact_duplicates_are_already_exists(store: &dyn Store) {
    let (owner, domain, mailbox, alias) = fixtures::owner_with_alias(store).await;
    let sibling = fixtures::alias(store, &owner, &domain, &mailbox).await;
    let contact = fixtures::contact(store, &alias).await;
    let mut dup = new_contact(&alias);
    dup.address = upper_cased(&contact.address);
    expect::already_exists(
        store.create_contact(&dup).await,
        "same alias, address upper-cased",
    );
    expect::not_found(
        store.get_contact(Access::System, dup.id).await,
        "refused contact not stored",
    );

    let mut elsewhere = new_contact(&sibling);
    elsewhere.address = contact.address.clone();
    store
        .create_contact(&elsewhere)
        .await
        .expect("the same address on another alias");

    let mut key_taken = new_contact(&sibling);
    key_taken.reverse_key = contact.reverse_key.clone();
    expect::already_exists(store.create_contact(&key_taken).await, "reverse key taken");
    let (_, _, _, foreign) = fixtures::owner_with_alias(store).await;
    let mut key_taken = new_contact(&foreign);
    key_taken.reverse_key = contact.reverse_key.clone();
    expect::already_exists(
        store.create_contact(&key_taken).await,
        "reverse key taken by another user",
    );
}

/// A contact of an unknown alias, or of an alias `contact.owner` does not own, is `NotFound`.
pub async fn contact_alias_must_exist_and_be_owners(store: &dyn Store) {
    let (owner, _, _, alias) = fixtures::owner_with_alias(store).await;
    let (_, _, _, theirs) = fixtures::owner_with_alias(store).await;
    let mut orphan = new_contact(&alias);
    orphan.alias = AliasId::new();
    expect::not_found(
        store.create_contact(&orphan).await,
        "contact of an unknown alias",
    );
    let mut foreign = new_contact(&theirs);
    foreign.owner = owner.id;
    expect::not_found(
        store.create_contact(&foreign).await,
        "contact of another user's alias",
    );
    for refused in [&orphan, &foreign] {
        expect::not_found(
            store.get_contact(Access::System, refused.id).await,
            "not stored",
        );
    }
}

/// Unknown ids and other owners' contacts are `NotFound`; `System` sees all.
pub async fn contact_get_missing_and_cross_owner(store: &dyn Store) {
    let (owner, _, _, alias) = fixtures::owner_with_alias(store).await;
    let contact = fixtures::contact(store, &alias).await;
    let other = fixtures::user(store).await;
    expect::not_found(
        store
            .get_contact(Access::Owner(owner.id), ContactId::new())
            .await,
        "unknown id",
    );
    expect::not_found(
        store.get_contact(Access::Owner(other.id), contact.id).await,
        "another owner's",
    );
    assert_eq!(
        store
            .get_contact(Access::System, contact.id)
            .await
            .expect("get"),
        contact
    );
}

/// `find_contact` matches the address case-insensitively, within one alias only.
pub async fn contact_find_case_insensitive(store: &dyn Store) {
    let (owner, domain, mailbox, alias) = fixtures::owner_with_alias(store).await;
    let sibling = fixtures::alias(store, &owner, &domain, &mailbox).await;
    let mut contact = new_contact(&alias);
    contact.address = unique_address("Mixed.Case", "Outside.Example");
    store
        .create_contact(&contact)
        .await
        .expect("create_contact");
    for lookup in [contact.address.clone(), upper_cased(&contact.address)] {
        let found = store
            .find_contact(alias.id, &lookup)
            .await
            .expect("find_contact");
        assert_eq!(found.as_ref(), Some(&contact), "lookup by {lookup}");
        if let Some(found) = found {
            expect::same_spelling(&found.address, &contact.address, "find_contact");
        }
    }
    assert_eq!(
        store
            .find_contact(sibling.id, &contact.address)
            .await
            .expect("find"),
        None
    );
    let stranger = unique_address("stranger", "outside.example");
    assert_eq!(
        store.find_contact(alias.id, &stranger).await.expect("find"),
        None
    );
}

/// `find_contact_by_reverse_key` finds the contact by its key.
pub async fn contact_find_by_reverse_key(store: &dyn Store) {
    let (_, _, _, alias) = fixtures::owner_with_alias(store).await;
    let contact = fixtures::contact(store, &alias).await;
    let other = fixtures::contact(store, &alias).await;
    assert_eq!(
        store
            .find_contact_by_reverse_key(&contact.reverse_key)
            .await
            .expect("find"),
        Some(contact)
    );
    assert_eq!(
        store
            .find_contact_by_reverse_key(&other.reverse_key)
            .await
            .expect("find"),
        Some(other)
    );
    assert_eq!(
        store
            .find_contact_by_reverse_key(&unique("rk"))
            .await
            .expect("find"),
        None
    );
}

/// Owners list only their contacts, optionally of one alias, paged by id.
pub async fn contact_list_scoping_and_pagination(store: &dyn Store) {
    let (a, domain, mailbox, a1) = fixtures::owner_with_alias(store).await;
    let a2 = fixtures::alias(store, &a, &domain, &mailbox).await;
    let (b, _, _, b1) = fixtures::owner_with_alias(store).await;
    let mut of_a1 = Vec::new();
    for _ in 0..3 {
        of_a1.push(fixtures::contact(store, &a1).await);
    }
    let mut all_a = of_a1.clone();
    for _ in 0..2 {
        all_a.push(fixtures::contact(store, &a2).await);
    }
    let theirs = fixtures::contact(store, &b1).await;
    of_a1.sort_by_key(|c| c.id);
    all_a.sort_by_key(|c| c.id);
    assert_eq!(list_all(store, Access::Owner(a.id), None).await, all_a);
    assert_eq!(
        list_all(store, Access::Owner(a.id), Some(a1.id)).await,
        of_a1
    );
    assert_eq!(list_all(store, Access::System, Some(a1.id)).await, of_a1);
    assert_eq!(
        list_all(store, Access::Owner(b.id), None).await,
        vec![theirs]
    );
    match store
        .list_contacts(Access::Owner(b.id), Some(a1.id), PageRequest::default())
        .await
    {
        Ok(page) => assert!(
            page.items.is_empty(),
            "another owner's alias shows no contacts"
        ),
        Err(StoreError::NotFound { .. }) => {}
        Err(e) => panic!("list_contacts of another owner's alias: {e:?}"),
    }
}

/// `update_contact` writes `display_name`, `blocked`, `updated_at`,
/// `last_seen_at` only, revision-checked and owner-scoped.
pub async fn contact_update_round_trip_ignores_non_editable(store: &dyn Store) {
    let (owner, domain, mailbox, alias) = fixtures::owner_with_alias(store).await;
    let sibling = fixtures::alias(store, &owner, &domain, &mailbox).await;
    let contact = fixtures::contact(store, &alias).await;
    let me = Access::Owner(owner.id);
    let mut edit = contact.clone();
    edit.display_name = Some("Renamed".into());
    edit.blocked = true;
    edit.updated_at = t(5);
    edit.last_seen_at = Some(t(6));
    let mut attempt = edit.clone();
    attempt.address = unique_address("other", "outside.example");
    attempt.reverse_key = unique("rk");
    attempt.alias = sibling.id;
    attempt.created_at = t(-999);
    let updated = store
        .update_contact(me, &attempt)
        .await
        .expect("update_contact");
    edit.revision = contact.revision + 1;
    assert_eq!(updated, edit, "only editable fields change; revision + 1");
    assert_eq!(store.get_contact(me, contact.id).await.expect("get"), edit);
    assert_eq!(
        store
            .find_contact_by_reverse_key(&attempt.reverse_key)
            .await
            .expect("find"),
        None
    );
    assert_eq!(
        store
            .find_contact_by_reverse_key(&contact.reverse_key)
            .await
            .expect("find"),
        Some(edit.clone())
    );

    let mut stale = contact.clone();
    stale.blocked = false;
    expect::conflict(store.update_contact(me, &stale).await, "stale revision");
    let other = fixtures::user(store).await;
    expect::not_found(
        store.update_contact(Access::Owner(other.id), &edit).await,
        "another owner's",
    );
    expect::not_found(
        store.update_contact(me, &new_contact(&alias)).await,
        "unknown contact",
    );
    assert_eq!(
        store.get_contact(me, contact.id).await.expect("get"),
        edit,
        "refused updates change nothing"
    );
}

/// Two concurrent updates from one revision: one wins, the other is `Conflict`.
pub async fn contact_concurrent_updates_one_wins(store: &dyn Store) {
    let (_, _, _, alias) = fixtures::owner_with_alias(store).await;
    let contact = fixtures::contact(store, &alias).await;
    let results = fixtures::concurrently(2, |i| {
        let mut edit = contact.clone();
        edit.display_name = Some(format!("editor {i}"));
        async move { store.update_contact(Access::System, &edit).await }
    })
    .await;
    let winner = expect::one_ok_rest_conflict(results, "concurrent update_contact");
    assert_eq!(winner.revision, contact.revision + 1);
    assert_eq!(
        store
            .get_contact(Access::System, contact.id)
            .await
            .expect("get"),
        winner
    );
}

/// Only the owner deletes a contact; its reverse key and address are then free.
pub async fn contact_delete(store: &dyn Store) {
    let (owner, _, _, alias) = fixtures::owner_with_alias(store).await;
    let contact = fixtures::contact(store, &alias).await;
    let other = fixtures::user(store).await;
    let me = Access::Owner(owner.id);
    expect::not_found(
        store
            .delete_contact(Access::Owner(other.id), contact.id)
            .await,
        "another owner's",
    );
    assert!(
        store.get_contact(me, contact.id).await.is_ok(),
        "contact survives"
    );
    store
        .delete_contact(me, contact.id)
        .await
        .expect("delete_contact");
    expect::not_found(
        store.get_contact(Access::System, contact.id).await,
        "deleted contact",
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
    expect::not_found(store.delete_contact(me, contact.id).await, "second delete");
    let mut again = new_contact(&alias);
    again.address = contact.address.clone();
    store
        .create_contact(&again)
        .await
        .expect("the address is free again");
}
