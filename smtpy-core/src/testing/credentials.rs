//! [`CredentialStore`](crate::store::CredentialStore): API keys, sessions, invitations.

use super::expect;
use super::fixtures::{
    self, FAR_FUTURE, T0, new_api_key, new_invitation, new_session, new_user, secret_hash, t,
    unique_address,
};
use crate::ids::ApiKeyId;
use crate::model::{ApiScope, Role};
use crate::store::{Access, PageRequest, Store};
use crate::time::Timestamp;

/// An API key with every field set reads back equal; expired keys are still found.
pub async fn api_key_create_find_round_trip(store: &dyn Store) {
    let owner = fixtures::user(store).await;
    let mut key = new_api_key(&owner);
    key.scopes = vec![
        ApiScope::AliasesRead,
        ApiScope::AliasesWrite,
        ApiScope::Admin,
    ];
    key.expires_at = Some(FAR_FUTURE);
    key.last_used_at = Some(t(5));
    store.create_api_key(&key).await.expect("create_api_key");
    assert_eq!(
        store
            .find_api_key(&key.secret_hash)
            .await
            .expect("find_api_key"),
        Some(key)
    );

    let mut expired = new_api_key(&owner);
    expired.expires_at = Some(t(-100));
    store
        .create_api_key(&expired)
        .await
        .expect("create_api_key (expired)");
    assert_eq!(
        store
            .find_api_key(&expired.secret_hash)
            .await
            .expect("find_api_key"),
        Some(expired),
        "find_api_key returns a key whatever its expiry"
    );
    assert_eq!(
        store
            .find_api_key(&secret_hash())
            .await
            .expect("find_api_key"),
        None
    );
}

/// A second key with a taken hash is `AlreadyExists`.
pub async fn api_key_duplicate_hash_is_already_exists(store: &dyn Store) {
    let owner = fixtures::user(store).await;
    let key = fixtures::api_key(store, &owner).await;
    let other = fixtures::user(store).await;
    let mut dup = new_api_key(&other);
    dup.secret_hash = key.secret_hash;
    expect::already_exists(store.create_api_key(&dup).await, "api key hash taken");
    assert_eq!(
        store.find_api_key(&key.secret_hash).await.expect("find"),
        Some(key)
    );
}

/// A key for a user that does not exist is `NotFound`.
pub async fn api_key_owner_must_exist(store: &dyn Store) {
    let key = new_api_key(&new_user());
    expect::not_found(
        store.create_api_key(&key).await,
        "api key of an unknown owner",
    );
    assert_eq!(
        store.find_api_key(&key.secret_hash).await.expect("find"),
        None
    );
}

/// `list_api_keys` returns exactly the owner's keys, by id.
pub async fn api_key_list_by_owner(store: &dyn Store) {
    let a = fixtures::user(store).await;
    let b = fixtures::user(store).await;
    let mut mine = Vec::new();
    for _ in 0..3 {
        mine.push(fixtures::api_key(store, &a).await);
    }
    let theirs = fixtures::api_key(store, &b).await;
    mine.sort_by_key(|k| k.id);
    assert_eq!(
        store.list_api_keys(a.id).await.expect("list_api_keys"),
        mine
    );
    assert_eq!(
        store.list_api_keys(b.id).await.expect("list_api_keys"),
        vec![theirs]
    );
}

/// `touch_api_key` never moves `last_used_at` backwards; unknown ids are `NotFound`.
pub async fn api_key_touch_never_moves_backwards(store: &dyn Store) {
    let owner = fixtures::user(store).await;
    let key = fixtures::api_key(store, &owner).await;
    store
        .touch_api_key(key.id, t(10))
        .await
        .expect("touch_api_key");
    let found = store
        .find_api_key(&key.secret_hash)
        .await
        .expect("find")
        .expect("key exists");
    assert_eq!(found.last_used_at, Some(t(10)));
    store
        .touch_api_key(key.id, t(5))
        .await
        .expect("touch_api_key with an older time");
    let found = store
        .find_api_key(&key.secret_hash)
        .await
        .expect("find")
        .expect("key exists");
    assert_eq!(
        found.last_used_at,
        Some(t(10)),
        "last_used_at never moves backwards"
    );
    store
        .touch_api_key(key.id, t(20))
        .await
        .expect("touch_api_key");
    let found = store
        .find_api_key(&key.secret_hash)
        .await
        .expect("find")
        .expect("key exists");
    assert_eq!(found.last_used_at, Some(t(20)));
    expect::not_found(
        store.touch_api_key(ApiKeyId::new(), t(1)).await,
        "touch of an unknown key",
    );
}

/// Only the owner (or `System`) can delete a key; deleting twice is `NotFound`.
pub async fn api_key_delete_is_owner_scoped(store: &dyn Store) {
    let a = fixtures::user(store).await;
    let b = fixtures::user(store).await;
    let key = fixtures::api_key(store, &a).await;
    expect::not_found(
        store.delete_api_key(Access::Owner(b.id), key.id).await,
        "another owner's key",
    );
    assert!(
        store
            .find_api_key(&key.secret_hash)
            .await
            .expect("find")
            .is_some(),
        "key survives"
    );
    store
        .delete_api_key(Access::Owner(a.id), key.id)
        .await
        .expect("owner deletes");
    assert_eq!(
        store.find_api_key(&key.secret_hash).await.expect("find"),
        None
    );
    expect::not_found(
        store.delete_api_key(Access::Owner(a.id), key.id).await,
        "second delete",
    );
    let other = fixtures::api_key(store, &a).await;
    store
        .delete_api_key(Access::System, other.id)
        .await
        .expect("System deletes");
    assert!(
        store
            .list_api_keys(a.id)
            .await
            .expect("list_api_keys")
            .is_empty()
    );
}

/// A session with every field set reads back equal; taken hashes are `AlreadyExists`.
pub async fn session_create_find_round_trip(store: &dyn Store) {
    let user = fixtures::user(store).await;
    let mut session = new_session(&user, T0);
    session.last_seen_at = t(1);
    session.ip = Some("2001:db8::1".into());
    session.user_agent = Some("Mozilla/5.0 (X11; Linux x86_64)".into());
    store
        .create_session(&session)
        .await
        .expect("create_session");
    assert_eq!(
        store
            .find_session(&session.id_hash)
            .await
            .expect("find_session"),
        Some(session.clone())
    );
    let mut dup = new_session(&user, T0);
    dup.id_hash = session.id_hash;
    expect::already_exists(store.create_session(&dup).await, "session hash taken");

    let mut expired = new_session(&user, t(-100));
    expired.expires_at = t(-50);
    store
        .create_session(&expired)
        .await
        .expect("create_session (expired)");
    assert_eq!(
        store
            .find_session(&expired.id_hash)
            .await
            .expect("find_session"),
        Some(expired),
        "find_session returns expired sessions too"
    );
    assert_eq!(
        store
            .find_session(&secret_hash())
            .await
            .expect("find_session"),
        None
    );
}

/// `touch_session` never moves `last_seen_at` backwards; unknown hashes are `NotFound`.
pub async fn session_touch_never_moves_backwards(store: &dyn Store) {
    let user = fixtures::user(store).await;
    let session = fixtures::session(store, &user, T0).await;
    let seen = |s: Option<crate::model::Session>| s.expect("session exists").last_seen_at;
    store
        .touch_session(&session.id_hash, t(10))
        .await
        .expect("touch_session");
    assert_eq!(
        seen(store.find_session(&session.id_hash).await.expect("find")),
        t(10)
    );
    store
        .touch_session(&session.id_hash, t(5))
        .await
        .expect("touch_session with an older time");
    assert_eq!(
        seen(store.find_session(&session.id_hash).await.expect("find")),
        t(10),
        "last_seen_at never moves backwards"
    );
    expect::not_found(
        store.touch_session(&secret_hash(), t(1)).await,
        "touch of an unknown session",
    );
}

/// `delete_session` ends a session and is `Ok` for a missing one.
pub async fn session_delete_is_idempotent(store: &dyn Store) {
    let user = fixtures::user(store).await;
    let session = fixtures::session(store, &user, T0).await;
    store
        .delete_session(&session.id_hash)
        .await
        .expect("delete_session");
    assert_eq!(
        store.find_session(&session.id_hash).await.expect("find"),
        None
    );
    store
        .delete_session(&session.id_hash)
        .await
        .expect("second delete_session is Ok");
    store
        .delete_session(&secret_hash())
        .await
        .expect("delete of an unknown session is Ok");
}

/// `list_sessions` is oldest first; `delete_user_sessions` ends only that user's and counts them.
pub async fn session_list_and_delete_user_sessions(store: &dyn Store) {
    let user = fixtures::user(store).await;
    let other = fixtures::user(store).await;
    let newest = fixtures::session(store, &user, t(30)).await;
    let oldest = fixtures::session(store, &user, t(10)).await;
    let middle = fixtures::session(store, &user, t(20)).await;
    let theirs = fixtures::session(store, &other, t(0)).await;
    assert_eq!(
        store.list_sessions(user.id).await.expect("list_sessions"),
        vec![oldest, middle, newest],
        "sessions oldest first"
    );
    assert_eq!(
        store
            .delete_user_sessions(user.id)
            .await
            .expect("delete_user_sessions"),
        3
    );
    assert!(
        store
            .list_sessions(user.id)
            .await
            .expect("list_sessions")
            .is_empty()
    );
    assert_eq!(
        store.list_sessions(other.id).await.expect("list_sessions"),
        vec![theirs]
    );
    assert_eq!(
        store
            .delete_user_sessions(user.id)
            .await
            .expect("delete_user_sessions"),
        0
    );
}

/// `purge_expired_sessions(now)` removes sessions expiring at or before `now`, and only those.
pub async fn session_purge_expired_boundary(store: &dyn Store) {
    // Far before T0: sessions of other tests expire much later and are not touched.
    let now = Timestamp::from_unix_secs(1_600_000_000);
    let user = fixtures::user(store).await;
    let mut sessions = Vec::new();
    for offset_ms in [-1, 0, 1] {
        let mut s = new_session(&user, Timestamp::from_unix_secs(1_599_990_000));
        s.expires_at = Timestamp::from_unix_millis(now.as_unix_millis() + offset_ms);
        store.create_session(&s).await.expect("create_session");
        sessions.push(s);
    }
    let purged = store
        .purge_expired_sessions(now)
        .await
        .expect("purge_expired_sessions");
    assert!(
        purged >= 2,
        "two sessions expired at or before now, purged {purged}"
    );
    assert_eq!(
        store
            .find_session(&sessions[0].id_hash)
            .await
            .expect("find"),
        None
    );
    assert_eq!(
        store
            .find_session(&sessions[1].id_hash)
            .await
            .expect("find"),
        None,
        "expires_at == now is purged"
    );
    assert_eq!(
        store
            .find_session(&sessions[2].id_hash)
            .await
            .expect("find")
            .as_ref(),
        Some(&sessions[2]),
        "a session expiring after now stays"
    );
}

/// An invitation (unused or used) reads back equal; taken token hashes are `AlreadyExists`.
pub async fn invitation_create_find_round_trip(store: &dyn Store) {
    let admin = fixtures::admin(store).await;
    let mut invitation = new_invitation(&admin, FAR_FUTURE);
    invitation.email = Some(unique_address("Invitee", "Outside.Example"));
    invitation.role = Role::Admin;
    store
        .create_invitation(&invitation)
        .await
        .expect("create_invitation");
    let found = store
        .find_invitation(&invitation.token_hash)
        .await
        .expect("find_invitation");
    assert_eq!(found.as_ref(), Some(&invitation));
    if let (Some(Some(got)), Some(written)) = (found.map(|i| i.email), &invitation.email) {
        expect::same_spelling(&got, written, "invitation email");
    }

    let invitee = fixtures::user(store).await;
    let mut used = new_invitation(&admin, FAR_FUTURE);
    used.used_at = Some(t(3));
    used.used_by = Some(invitee.id);
    store
        .create_invitation(&used)
        .await
        .expect("create_invitation (used)");
    assert_eq!(
        store.find_invitation(&used.token_hash).await.expect("find"),
        Some(used)
    );

    let mut dup = new_invitation(&admin, FAR_FUTURE);
    dup.token_hash = invitation.token_hash;
    expect::already_exists(store.create_invitation(&dup).await, "invitation hash taken");
    assert_eq!(
        store.find_invitation(&secret_hash()).await.expect("find"),
        None
    );
}

/// An invitation redeems once; a second redeem is `Conflict`, an unknown one `NotFound`.
pub async fn invitation_redeem_once(store: &dyn Store) {
    let admin = fixtures::admin(store).await;
    let invitation = new_invitation(&admin, FAR_FUTURE);
    store
        .create_invitation(&invitation)
        .await
        .expect("create_invitation");
    let invitee = fixtures::user(store).await;
    let redeemed = store
        .redeem_invitation(&invitation.token_hash, invitee.id, t(5))
        .await
        .expect("redeem_invitation");
    let mut expected = invitation.clone();
    expected.used_at = Some(t(5));
    expected.used_by = Some(invitee.id);
    assert_eq!(redeemed, expected);
    assert_eq!(
        store
            .find_invitation(&invitation.token_hash)
            .await
            .expect("find"),
        Some(expected.clone())
    );

    let late = fixtures::user(store).await;
    expect::conflict(
        store
            .redeem_invitation(&invitation.token_hash, late.id, t(6))
            .await,
        "second redeem",
    );
    assert_eq!(
        store
            .find_invitation(&invitation.token_hash)
            .await
            .expect("find"),
        Some(expected)
    );
    expect::not_found(
        store.redeem_invitation(&secret_hash(), late.id, t(6)).await,
        "redeem of an unknown invitation",
    );
}

/// Redeeming at or after `expires_at` is `Gone` and leaves the invitation unused.
pub async fn invitation_redeem_expired_is_gone(store: &dyn Store) {
    let admin = fixtures::admin(store).await;
    let invitee = fixtures::user(store).await;
    let invitation = new_invitation(&admin, t(100));
    store
        .create_invitation(&invitation)
        .await
        .expect("create_invitation");
    for at in [t(100), t(101)] {
        expect::gone(
            store
                .redeem_invitation(&invitation.token_hash, invitee.id, at)
                .await,
            "redeem of an expired invitation",
        );
    }
    assert_eq!(
        store
            .find_invitation(&invitation.token_hash)
            .await
            .expect("find"),
        Some(invitation.clone()),
        "a refused redeem changes nothing"
    );
    let ok = store
        .redeem_invitation(&invitation.token_hash, invitee.id, t(99))
        .await
        .expect("redeem just before expiry");
    assert_eq!(ok.used_at, Some(t(99)));
}

/// Concurrent redeems of one invitation: exactly one succeeds, the rest are `Conflict`.
pub async fn invitation_concurrent_redeem_one_wins(store: &dyn Store) {
    let admin = fixtures::admin(store).await;
    let invitation = new_invitation(&admin, FAR_FUTURE);
    store
        .create_invitation(&invitation)
        .await
        .expect("create_invitation");
    let mut invitees = Vec::new();
    for _ in 0..8 {
        invitees.push(fixtures::user(store).await);
    }
    let hash = invitation.token_hash;
    let results = fixtures::concurrently(invitees.len(), |i| {
        let user = invitees[i].id;
        async move { store.redeem_invitation(&hash, user, t(1)).await }
    })
    .await;
    let winner = expect::one_ok_rest_conflict(results, "concurrent redeem_invitation");
    assert!(
        winner
            .used_by
            .is_some_and(|u| invitees.iter().any(|i| i.id == u))
    );
    assert_eq!(
        store.find_invitation(&hash).await.expect("find"),
        Some(winner)
    );
}

/// `list_invitations` pages by id; `delete_invitation` removes one, `NotFound` the second time.
pub async fn invitation_list_and_delete(store: &dyn Store) {
    let admin = fixtures::admin(store).await;
    let mut mine = Vec::new();
    for _ in 0..3 {
        let inv = new_invitation(&admin, FAR_FUTURE);
        store
            .create_invitation(&inv)
            .await
            .expect("create_invitation");
        mine.push(inv);
    }
    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let got = store
            .list_invitations(page)
            .await
            .expect("list_invitations");
        assert!(got.items.len() <= 2);
        seen.extend(got.items);
        match got.next {
            Some(cursor) => page = PageRequest::after(cursor, 2),
            None => break,
        }
    }
    assert!(
        seen.windows(2).all(|w| w[0].id < w[1].id),
        "invitations in id order"
    );
    for inv in &mine {
        assert_eq!(
            seen.iter().filter(|i| *i == inv).count(),
            1,
            "each invitation once"
        );
    }
    store
        .delete_invitation(mine[0].id)
        .await
        .expect("delete_invitation");
    assert_eq!(
        store
            .find_invitation(&mine[0].token_hash)
            .await
            .expect("find"),
        None
    );
    expect::not_found(store.delete_invitation(mine[0].id).await, "second delete");
    assert!(
        store
            .find_invitation(&mine[1].token_hash)
            .await
            .expect("find")
            .is_some()
    );
}
