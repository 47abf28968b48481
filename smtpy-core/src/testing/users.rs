//! [`UserStore`](crate::store::UserStore): accounts, and what deleting one takes with it.

use uuid::Uuid;

use super::expect;
use super::fixtures::{
    self, FAR_FUTURE, T0, address, encrypted_secret, new_user, password_hash, t, unique_address,
    upper_cased,
};
use crate::ids::UserId;
use crate::model::{
    Alias, DmarcQuarantineAction, DmarcRejectAction, EventFilter, EventKind, Role, RuleScope,
    UsageRecord, UsageSubject, UserSettings, UserStatus,
};
use crate::store::{Access, AuditFilter, PageRequest, Store};

/// A user with every optional field set reads back equal, address spelled as written.
pub async fn user_create_get_round_trip(store: &dyn Store) {
    let mut user = new_user();
    user.email = unique_address("Mixed.Case", "Users.Example");
    user.password = Some(password_hash());
    user.role = Role::Admin;
    user.status = UserStatus::Disabled;
    user.totp = Some(encrypted_secret(b"JBSWY3DPEHPK3PXP", b"totp"));
    user.updated_at = t(60);
    user.last_login_at = Some(t(120));
    store.create_user(&user).await.expect("create_user");
    let got = store.get_user(user.id).await.expect("get_user");
    assert_eq!(got, user, "stored user must equal the written one");
    expect::same_spelling(&got.email, &user.email, "get_user");

    let mut plain = new_user();
    plain.status = UserStatus::Pending;
    store
        .create_user(&plain)
        .await
        .expect("create_user (no options)");
    assert_eq!(store.get_user(plain.id).await.expect("get_user"), plain);
}

/// A taken email is `AlreadyExists`, also in another case or IDNA form.
pub async fn user_duplicate_email_is_already_exists(store: &dyn Store) {
    let first = fixtures::user(store).await;
    let mut dup = new_user();
    dup.email = first.email.clone();
    expect::already_exists(store.create_user(&dup).await, "same email");
    dup.email = upper_cased(&first.email);
    expect::already_exists(store.create_user(&dup).await, "email in another case");

    let tag = Uuid::now_v7().simple().to_string();
    let unicode = address(&format!("Bob.{tag}@Bücher-{tag}.example"));
    let ascii = address(&format!("bob.{tag}@{}", unicode.domain().as_ascii()));
    assert_ne!(unicode.to_string(), ascii.to_string());
    let mut idn = new_user();
    idn.email = unicode;
    store
        .create_user(&idn)
        .await
        .expect("create_user with an IDN email");
    dup.email = ascii;
    expect::already_exists(store.create_user(&dup).await, "email in A-label form");
    expect::not_found(store.get_user(dup.id).await, "a refused user is not stored");
}

/// `get_user` of an unknown id is `NotFound`.
pub async fn user_get_missing_is_not_found(store: &dyn Store) {
    expect::not_found(store.get_user(UserId::new()).await, "unknown user");
}

/// `find_user_by_email` ignores case and the IDNA form, and returns the address as written.
pub async fn user_find_by_email_case_and_idna(store: &dyn Store) {
    let tag = Uuid::now_v7().simple().to_string();
    let mut user = new_user();
    user.email = address(&format!("Bob.{tag}@Bücher-{tag}.example"));
    store.create_user(&user).await.expect("create_user");
    let lookups = [
        address(&format!("bob.{tag}@{}", user.email.domain().as_ascii())),
        upper_cased(&user.email),
        user.email.clone(),
    ];
    for lookup in lookups {
        let found = store
            .find_user_by_email(&lookup)
            .await
            .expect("find_user_by_email")
            .unwrap_or_else(|| panic!("{lookup} must find the user"));
        assert_eq!(found, user);
        expect::same_spelling(&found.email, &user.email, "find_user_by_email");
    }
    let missing = unique_address("nobody", "users.example");
    assert_eq!(
        store.find_user_by_email(&missing).await.expect("find"),
        None
    );
}

/// `update_user` replaces every field but `id` and `created_at` and bumps the revision.
pub async fn user_update_round_trip_and_revision(store: &dyn Store) {
    let user = fixtures::user(store).await;
    let mut edit = user.clone();
    edit.email = unique_address("Renamed", "users.example");
    edit.password = Some(password_hash());
    edit.role = Role::Admin;
    edit.status = UserStatus::Pending;
    edit.totp = Some(encrypted_secret(b"seed", b"totp"));
    edit.updated_at = t(10);
    edit.last_login_at = Some(t(9));
    edit.created_at = t(-999);
    let updated = store.update_user(&edit).await.expect("update_user");
    let mut expected = edit.clone();
    expected.created_at = user.created_at;
    expected.revision = user.revision + 1;
    assert_eq!(
        updated, expected,
        "update_user returns the stored row, revision + 1"
    );
    assert_eq!(store.get_user(user.id).await.expect("get_user"), expected);
    expect::same_spelling(&updated.email, &edit.email, "update_user");
    assert_eq!(
        store.find_user_by_email(&user.email).await.expect("find"),
        None,
        "old email is free"
    );
    assert_eq!(
        store
            .find_user_by_email(&edit.email)
            .await
            .expect("find")
            .map(|u| u.id),
        Some(user.id)
    );

    let mut clear = updated.clone();
    clear.password = None;
    clear.totp = None;
    clear.last_login_at = None;
    let cleared = store
        .update_user(&clear)
        .await
        .expect("update_user clearing options");
    clear.revision = user.revision + 2;
    assert_eq!(cleared, clear);
    assert_eq!(store.get_user(user.id).await.expect("get_user"), clear);
}

/// Settings with every field away from its default.
fn custom_settings() -> UserSettings {
    UserSettings {
        dmarc_reject: DmarcRejectAction::Quarantine,
        dmarc_quarantine: DmarcQuarantineAction::TagSubject,
        subject_tag: "[Späm? \"x\"]".into(),
        sender_format: Some("{name} via {address}".into()),
        forwards_per_day: Some(0),
        replies_per_day: Some(u32::MAX),
        aliases_per_hour: Some(7),
        notify_bounces: false,
        notify_quarantine: false,
    }
}

/// A user's settings read back as written, by every read, default or not.
pub async fn user_settings_round_trip(store: &dyn Store) {
    let mut user = new_user();
    user.settings = custom_settings();
    store.create_user(&user).await.expect("create_user");
    assert_eq!(store.get_user(user.id).await.expect("get_user"), user);
    assert_eq!(
        store
            .find_user_by_email(&upper_cased(&user.email))
            .await
            .expect("find_user_by_email"),
        Some(user.clone())
    );

    let plain = fixtures::user(store).await;
    assert_eq!(plain.settings, UserSettings::default());
    assert_eq!(
        store.get_user(plain.id).await.expect("get_user").settings,
        UserSettings::default(),
        "default settings read back as the default"
    );

    let mut page = PageRequest::first(MAX_LIST);
    let mut listed = Vec::new();
    loop {
        let got = store.list_users(page).await.expect("list_users");
        listed.extend(
            got.items
                .into_iter()
                .filter(|u| u.id == user.id || u.id == plain.id),
        );
        match got.next {
            Some(cursor) => page = PageRequest::after(cursor, MAX_LIST),
            None => break,
        }
    }
    assert_eq!(listed, vec![user, plain], "list_users returns the settings");
}

/// Page size for scanning every user.
const MAX_LIST: u32 = 500;

/// `update_user` writes the settings (revision-checked, bumping the
/// revision), and a stale update changes none of them.
pub async fn user_settings_update_and_revision(store: &dyn Store) {
    let user = fixtures::user(store).await;
    let mut edit = user.clone();
    edit.settings = custom_settings();
    let updated = store.update_user(&edit).await.expect("update_user");
    assert_eq!(updated.settings, custom_settings());
    assert_eq!(updated.revision, user.revision + 1);
    assert_eq!(store.get_user(user.id).await.expect("get_user"), updated);

    let mut stale = user.clone();
    stale.settings.notify_bounces = false;
    stale.settings.subject_tag = "[stale]".into();
    expect::conflict(store.update_user(&stale).await, "stale revision");
    assert_eq!(
        store.get_user(user.id).await.expect("get_user"),
        updated,
        "a stale update changes no setting"
    );

    let mut back = updated.clone();
    back.settings = UserSettings::default();
    let reset = store
        .update_user(&back)
        .await
        .expect("update_user back to defaults");
    assert_eq!(reset.settings, UserSettings::default());
    assert_eq!(reset.revision, user.revision + 2);
    assert_eq!(store.get_user(user.id).await.expect("get_user"), reset);

    let mut one = reset.clone();
    one.settings.forwards_per_day = Some(25);
    let changed = store.update_user(&one).await.expect("update_user");
    assert_eq!(
        changed.settings,
        UserSettings {
            forwards_per_day: Some(25),
            ..UserSettings::default()
        }
    );
}

/// An update with a stale (or future) revision is `Conflict` and changes nothing.
pub async fn user_update_stale_revision_is_conflict(store: &dyn Store) {
    let user = fixtures::user(store).await;
    let mut first = user.clone();
    first.status = UserStatus::Disabled;
    let stored = store.update_user(&first).await.expect("first update");
    let mut stale = user.clone();
    stale.role = Role::Admin;
    expect::conflict(store.update_user(&stale).await, "stale revision");
    stale.revision = stored.revision + 5;
    expect::conflict(store.update_user(&stale).await, "revision from the future");
    assert_eq!(store.get_user(user.id).await.expect("get_user"), stored);
}

/// Changing the email to another user's (in any case) is `AlreadyExists`;
/// changing the case of one's own email is fine.
pub async fn user_update_email_duplicate_is_already_exists(store: &dyn Store) {
    let a = fixtures::user(store).await;
    let b = fixtures::user(store).await;
    let mut edit = b.clone();
    edit.email = upper_cased(&a.email);
    expect::already_exists(store.update_user(&edit).await, "email of another user");
    assert_eq!(
        store.get_user(b.id).await.expect("get_user"),
        b,
        "refused update changes nothing"
    );

    edit.email = upper_cased(&b.email);
    let updated = store
        .update_user(&edit)
        .await
        .expect("own email in another case");
    expect::same_spelling(&updated.email, &edit.email, "update_user");
}

/// Updating a user that does not exist is `NotFound`.
pub async fn user_update_missing_is_not_found(store: &dyn Store) {
    expect::not_found(
        store.update_user(&new_user()).await,
        "update of an unknown user",
    );
}

/// Two concurrent updates from the same revision: one wins, the other is `Conflict`.
pub async fn user_concurrent_updates_one_wins(store: &dyn Store) {
    let user = fixtures::user(store).await;
    let results = fixtures::concurrently(2, |i| {
        let mut edit = user.clone();
        edit.status = if i == 0 {
            UserStatus::Disabled
        } else {
            UserStatus::Pending
        };
        async move { store.update_user(&edit).await }
    })
    .await;
    let winner = expect::one_ok_rest_conflict(results, "concurrent update_user");
    assert_eq!(winner.revision, user.revision + 1);
    assert_eq!(store.get_user(user.id).await.expect("get_user"), winner);
}

/// `count_users` grows by the number of users created.
pub async fn user_count(store: &dyn Store) {
    let before = store.count_users().await.expect("count_users");
    for _ in 0..3 {
        fixtures::user(store).await;
    }
    let after = store.count_users().await.expect("count_users");
    // `>=`: other tests may add users to a shared store meanwhile.
    assert!(
        after >= before + 3,
        "count_users: {before} before, {after} after 3 creates"
    );
}

/// `list_users` pages through every user once, in id order.
pub async fn user_list_pagination(store: &dyn Store) {
    let mut mine = Vec::new();
    for _ in 0..5 {
        mine.push(fixtures::user(store).await);
    }
    let mut page = PageRequest::first(3);
    let mut seen = Vec::new();
    loop {
        let got = store.list_users(page).await.expect("list_users");
        assert!(got.items.len() <= 3, "a page holds at most `limit` rows");
        if got.next.is_some() {
            assert_eq!(got.items.len(), 3, "only the last page may be short");
        }
        seen.extend(got.items);
        match got.next {
            Some(cursor) => page = PageRequest::after(cursor, 3),
            None => break,
        }
    }
    assert!(
        seen.windows(2).all(|w| w[0].id < w[1].id),
        "list_users must be in strictly increasing id order"
    );
    for user in &mine {
        let rows: Vec<_> = seen.iter().filter(|u| u.id == user.id).collect();
        assert_eq!(
            rows,
            vec![user],
            "each user appears exactly once, as stored"
        );
    }
}

/// `delete_user` removes everything the user owns (their delivery events
/// included), tombstones their aliases and keeps audit events; other users
/// are untouched.
pub async fn user_delete_cascades(store: &dyn Store) {
    let (owner, domain, mailbox, alias) = fixtures::owner_with_alias(store).await;
    let contact = fixtures::contact(store, &alias).await;
    let rules = [
        fixtures::rule(store, &owner, RuleScope::User, 0).await,
        fixtures::rule(store, &owner, RuleScope::Domain(domain.id), 1).await,
        fixtures::rule(store, &owner, RuleScope::Alias(alias.id), 2).await,
    ];
    let session = fixtures::session(store, &owner, T0).await;
    let key = fixtures::api_key(store, &owner).await;
    let invitation = fixtures::new_invitation(&owner, FAR_FUTURE);
    store
        .create_invitation(&invitation)
        .await
        .expect("create_invitation");
    let usage = UsageRecord {
        user: owner.id,
        alias: Some(alias.id),
        at: T0,
        messages: 1,
        bytes: 10,
    };
    store.record_usage(&usage).await.expect("record_usage");
    let action = fixtures::unique("test.cascade");
    let event = fixtures::new_audit_event(Some(&owner), &action, T0);
    store.append_audit(&event).await.expect("append_audit");
    let (bystander, _, _, bystander_alias) = fixtures::owner_with_alias(store).await;
    let bystander_session = fixtures::session(store, &bystander, T0).await;
    let mut delivered = fixtures::new_event(EventKind::Delivered, Some(owner.id), T0);
    delivered.alias = Some(alias.id);
    delivered.mailbox = Some(mailbox.id);
    let mut ownerless = fixtures::new_event(EventKind::Refused, None, T0);
    ownerless.alias = Some(alias.id);
    let mut bystander_event = fixtures::new_event(EventKind::Delivered, Some(bystander.id), T0);
    bystander_event.alias = Some(bystander_alias.id);
    store
        .append_events(&[delivered, ownerless.clone(), bystander_event.clone()])
        .await
        .expect("append_events");

    store.delete_user(owner.id).await.expect("delete_user");

    let sys = Access::System;
    expect::not_found(store.get_user(owner.id).await, "deleted user");
    assert_eq!(
        store.find_user_by_email(&owner.email).await.expect("find"),
        None
    );
    assert_eq!(
        store
            .find_session(&session.id_hash)
            .await
            .expect("find_session"),
        None
    );
    assert!(
        store
            .list_sessions(owner.id)
            .await
            .expect("list_sessions")
            .is_empty()
    );
    assert_eq!(
        store
            .find_api_key(&key.secret_hash)
            .await
            .expect("find_api_key"),
        None
    );
    assert!(
        store
            .list_api_keys(owner.id)
            .await
            .expect("list_api_keys")
            .is_empty()
    );
    assert_eq!(
        store
            .find_invitation(&invitation.token_hash)
            .await
            .expect("find"),
        None
    );
    expect::not_found(
        store.get_domain(sys, domain.id).await,
        "domain of a deleted user",
    );
    assert_eq!(
        store.find_domain_by_name(&domain.name).await.expect("find"),
        None
    );
    expect::not_found(
        store.get_mailbox(sys, mailbox.id).await,
        "mailbox of a deleted user",
    );
    assert!(
        store
            .list_mailboxes(owner.id)
            .await
            .expect("list_mailboxes")
            .is_empty()
    );
    assert!(
        store
            .list_rules(owner.id)
            .await
            .expect("list_rules")
            .is_empty()
    );
    for rule in &rules {
        expect::not_found(store.get_rule(sys, rule.id).await, "rule of a deleted user");
    }
    expect::not_found(
        store.get_contact(sys, contact.id).await,
        "contact of a deleted user",
    );
    assert_eq!(
        store
            .find_contact_by_reverse_key(&contact.reverse_key)
            .await
            .expect("find"),
        None
    );
    expect::not_found(
        store.get_alias(sys, alias.id).await,
        "alias of a deleted user",
    );
    assert_eq!(
        store
            .find_alias_by_address(&alias.address)
            .await
            .expect("find"),
        None
    );
    assert!(
        store
            .is_tombstoned(&upper_cased(&alias.address))
            .await
            .expect("is_tombstoned")
    );
    let day = T0.day();
    for subject in [UsageSubject::User(owner.id), UsageSubject::Alias(alias.id)] {
        match store.usage(sys, subject, day, day).await {
            Ok(rows) => assert!(
                rows.is_empty(),
                "usage of a deleted user is deleted: {rows:?}"
            ),
            Err(crate::StoreError::NotFound { .. }) => {}
            Err(e) => panic!("usage of a deleted user: {e:?}"),
        }
    }
    let filter = AuditFilter {
        action: Some(action),
        since: None,
    };
    let audit = store
        .list_audit(sys, &filter, PageRequest::default())
        .await
        .expect("list_audit");
    assert_eq!(audit.items, vec![event], "audit events outlive the user");
    let of_alias = EventFilter {
        alias: Some(alias.id),
        ..EventFilter::default()
    };
    let events = store
        .list_events(sys, &of_alias, PageRequest::default())
        .await
        .expect("list_events");
    assert_eq!(
        events.items,
        vec![ownerless],
        "the user's delivery events go with them; events without an owner stay"
    );
    assert!(
        store
            .list_events(
                Access::Owner(owner.id),
                &EventFilter::default(),
                PageRequest::default()
            )
            .await
            .expect("list_events")
            .items
            .is_empty()
    );
    let of_mailbox = EventFilter {
        mailbox: Some(mailbox.id),
        ..EventFilter::default()
    };
    assert_eq!(
        store.count_events(&of_mailbox).await.expect("count_events"),
        0
    );

    // Nobody can take the address over, even after hosting the domain again.
    let newcomer = fixtures::user(store).await;
    let mut again = fixtures::new_domain(&newcomer);
    again.name = domain.name.clone();
    store
        .create_domain(&again)
        .await
        .expect("the domain name is free again");
    let inbox = fixtures::mailbox(store, &newcomer).await;
    let takeover = Alias::new(
        alias.address.clone(),
        newcomer.id,
        again.id,
        vec![inbox.id],
        T0,
    );
    expect::gone(
        store.create_alias(&takeover).await,
        "address of a deleted user's alias",
    );

    store
        .get_user(bystander.id)
        .await
        .expect("other users stay");
    store
        .get_alias(sys, bystander_alias.id)
        .await
        .expect("other aliases stay");
    assert!(
        store
            .find_session(&bystander_session.id_hash)
            .await
            .expect("find")
            .is_some()
    );
    assert_eq!(
        store
            .list_events(
                Access::Owner(bystander.id),
                &EventFilter::default(),
                PageRequest::default()
            )
            .await
            .expect("list_events")
            .items,
        vec![bystander_event],
        "other users' events stay"
    );
}

/// Deleting an unknown (or already deleted) user is `NotFound`.
pub async fn user_delete_missing_is_not_found(store: &dyn Store) {
    expect::not_found(store.delete_user(UserId::new()).await, "unknown user");
    let user = fixtures::user(store).await;
    store.delete_user(user.id).await.expect("delete_user");
    expect::not_found(store.delete_user(user.id).await, "second delete");
}
