//! RCPT-time routing through core: every decision of `routing::Router`, and
//! the open-relay tricks that must never relay.

use std::time::Duration;

use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::memory::MemoryStore;
use smtpy_core::model::{Alias, DisabledReply, Domain, Mailbox, Role, User, UserStatus};
use smtpy_core::reply::Reply;
use smtpy_core::routing::{Route, Router, pattern_matches};
use smtpy_core::srs::{Srs, SrsKey};
use smtpy_core::store::{Access, AliasStore, DomainStore, MailboxStore, UserStore};
use smtpy_core::time::Timestamp;

const NOW: Timestamp = Timestamp::from_unix_secs(1_700_000_000);

fn addr(s: &str) -> EmailAddress {
    EmailAddress::parse(s).expect("test address")
}

struct Fixture {
    store: MemoryStore,
    user: User,
    domain: Domain,
    mailbox: Mailbox,
    srs: Srs,
}

async fn fixture() -> Fixture {
    let store = MemoryStore::new();
    let user = User::new(addr("owner@owner.example"), Role::User, NOW);
    store.create_user(&user).await.expect("user");
    let mut domain = Domain::new(
        DomainName::parse("alias.example").expect("d"),
        user.id,
        "t".into(),
        NOW,
    );
    domain.verified_at = Some(NOW);
    store.create_domain(&domain).await.expect("domain");
    let mut unverified = Domain::new(
        DomainName::parse("pending.example").expect("d"),
        user.id,
        "t".into(),
        NOW,
    );
    unverified.verified_at = None;
    store.create_domain(&unverified).await.expect("domain");
    let mut mailbox = Mailbox::new(user.id, addr("me@mail.example"), NOW);
    mailbox.verified_at = Some(NOW);
    store.create_mailbox(&mailbox).await.expect("mailbox");
    let alias = Alias::new(
        addr("shop@alias.example"),
        user.id,
        domain.id,
        vec![mailbox.id],
        NOW,
    );
    store.create_alias(&alias).await.expect("alias");
    let srs = Srs::new(
        DomainName::parse("bounce.example").expect("d"),
        SrsKey::new('a', [7; 32]).expect("key"),
    );
    Fixture {
        store,
        user,
        domain,
        mailbox,
        srs,
    }
}

impl Fixture {
    async fn route(&self, rcpt: &str, sender: Option<&str>) -> Result<Route, Reply> {
        let sender = sender.map(addr);
        Router::new(&self.store, Some(&self.srs))
            .route(&addr(rcpt), sender.as_ref(), NOW)
            .await
            .map_err(|r| r.reply)
    }
}

#[tokio::test]
async fn enabled_alias_forwards_to_its_mailboxes_case_insensitively() {
    let f = fixture().await;
    match f
        .route("SHOP@Alias.Example", Some("bob@outside.example"))
        .await
    {
        Ok(Route::Forward { alias, mailboxes }) => {
            assert_eq!(alias.address, addr("shop@alias.example"));
            assert_eq!(
                mailboxes.iter().map(|m| m.id).collect::<Vec<_>>(),
                vec![f.mailbox.id]
            );
        }
        other => panic!("expected a forward, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_disabled_expired_and_deleted_aliases_are_550_5_1_1() {
    let f = fixture().await;
    assert_eq!(
        f.route("nobody@alias.example", None).await,
        Err(Reply::UNKNOWN_RECIPIENT)
    );
    let mut alias = f
        .store
        .find_alias_by_address(&addr("shop@alias.example"))
        .await
        .expect("find")
        .expect("alias");
    alias.enabled = false;
    let alias = f
        .store
        .update_alias(Access::System, &alias)
        .await
        .expect("disable");
    assert_eq!(
        f.route("shop@alias.example", None).await,
        Err(Reply::UNKNOWN_RECIPIENT)
    );
    // Disabled with "discard": accepted and dropped.
    let mut discard = alias.clone();
    discard.disabled_reply = DisabledReply::Discard;
    let discard = f
        .store
        .update_alias(Access::System, &discard)
        .await
        .expect("discard");
    assert!(matches!(
        f.route("shop@alias.example", None).await,
        Ok(Route::Discard { .. })
    ));
    // Expired behaves as disabled.
    let mut expired = discard.clone();
    expired.enabled = true;
    expired.disabled_reply = DisabledReply::Reject;
    expired.expires_at = Some(NOW.saturating_sub(Duration::from_secs(1)));
    let expired = f
        .store
        .update_alias(Access::System, &expired)
        .await
        .expect("expire");
    assert_eq!(
        f.route("shop@alias.example", None).await,
        Err(Reply::UNKNOWN_RECIPIENT)
    );
    // Soft-deleted: unknown.
    f.store
        .delete_alias(Access::System, expired.id, NOW)
        .await
        .expect("delete");
    assert_eq!(
        f.route("shop@alias.example", None).await,
        Err(Reply::UNKNOWN_RECIPIENT)
    );
}

#[tokio::test]
async fn disabled_owner_or_no_deliverable_mailbox_refuses() {
    let f = fixture().await;
    let mut mailbox = f
        .store
        .get_mailbox(Access::System, f.mailbox.id)
        .await
        .expect("mailbox");
    mailbox.disabled = true;
    let mailbox = f
        .store
        .update_mailbox(Access::System, &mailbox)
        .await
        .expect("disable mailbox");
    let refused = f
        .route("shop@alias.example", None)
        .await
        .expect_err("no deliverable mailbox");
    assert_eq!((refused.code, refused.enhanced), (550, (5, 2, 1)));
    let mut mailbox = mailbox;
    mailbox.disabled = false;
    f.store
        .update_mailbox(Access::System, &mailbox)
        .await
        .expect("enable mailbox");
    let mut user = f.store.get_user(f.user.id).await.expect("user");
    user.status = UserStatus::Disabled;
    f.store.update_user(&user).await.expect("disable user");
    assert_eq!(
        f.route("shop@alias.example", None).await,
        Err(Reply::UNKNOWN_RECIPIENT)
    );
}

#[tokio::test]
async fn domains_not_hosted_or_unverified_are_relay_denied() {
    let f = fixture().await;
    assert_eq!(
        f.route("someone@elsewhere.example", None).await,
        Err(Reply::RELAY_DENIED)
    );
    assert_eq!(
        f.route("someone@pending.example", None).await,
        Err(Reply::RELAY_DENIED)
    );
    // Suffix tricks: a subdomain of a hosted domain is not hosted.
    assert_eq!(
        f.route("shop@sub.alias.example", None).await,
        Err(Reply::RELAY_DENIED)
    );
}

#[tokio::test]
async fn a_disabled_domain_is_refused_exactly_like_an_unhosted_one() {
    let f = fixture().await;
    let mut domain = f
        .store
        .get_domain(Access::System, f.domain.id)
        .await
        .expect("domain");
    domain.disabled = true;
    let domain = f
        .store
        .update_domain(Access::System, &domain)
        .await
        .expect("disable");
    assert!(domain.verified_at.is_some(), "disabling keeps verification");
    // Existing alias, unknown local part and postmaster alike: the same reply
    // as a domain smtpy does not host, so nothing reveals it exists.
    for rcpt in [
        "shop@alias.example",
        "nobody@alias.example",
        "postmaster@alias.example",
    ] {
        assert_eq!(
            f.route(rcpt, Some("bob@outside.example")).await,
            f.route("shop@elsewhere.example", Some("bob@outside.example"))
                .await,
            "{rcpt}"
        );
        assert_eq!(
            f.route(rcpt, Some("bob@outside.example")).await,
            Err(Reply::RELAY_DENIED),
            "{rcpt}"
        );
    }
    // Enabled again: mail flows.
    let mut domain = domain;
    domain.disabled = false;
    f.store
        .update_domain(Access::System, &domain)
        .await
        .expect("enable");
    assert!(matches!(
        f.route("shop@alias.example", Some("bob@outside.example"))
            .await,
        Ok(Route::Forward { .. })
    ));
}

#[tokio::test]
async fn open_relay_tricks_never_relay() {
    let f = fixture().await;
    // Addresses that parse are plain local parts here: unknown, never relayed.
    for rcpt in [
        "user%elsewhere.example@alias.example",
        "\"user@elsewhere.example\"@alias.example",
        "elsewhere.example!user@alias.example",
    ] {
        assert_eq!(
            f.route(rcpt, None).await,
            Err(Reply::UNKNOWN_RECIPIENT),
            "{rcpt}"
        );
    }
    // Addresses that do not parse never reach routing (the session answers 553).
    for bad in [
        "user@elsewhere.example@alias.example",
        "@alias.example,@elsewhere.example:user@elsewhere.example",
        "user@[192.0.2.1]",
        "user@alias.example.",
    ] {
        assert!(EmailAddress::parse(bad).is_err(), "{bad} must not parse");
    }
}

#[tokio::test]
async fn srs_addresses_bounce_back_only_when_genuine_and_from_the_null_sender() {
    let f = fixture().await;
    let original = addr("bob@outside.example");
    let srs_addr = f.srs.forward(&original, NOW).expect("srs");
    assert_eq!(
        f.route(&srs_addr.to_string(), None).await,
        Ok(Route::BounceRelay {
            original: original.clone()
        })
    );
    assert_eq!(
        f.route(&srs_addr.to_string(), Some("spam@outside.example"))
            .await,
        Err(Reply::BAD_BOUNCE_ADDRESS)
    );
    // Forged: one character of the hash changed.
    let text = srs_addr.to_string();
    let mut chars: Vec<char> = text.chars().collect();
    chars[6] = if chars[6] == 'a' { 'b' } else { 'a' };
    let forged: String = chars.into_iter().collect();
    assert_eq!(f.route(&forged, None).await, Err(Reply::BAD_BOUNCE_ADDRESS));
    // Expired.
    let old = f
        .srs
        .forward(
            &original,
            NOW.saturating_sub(Duration::from_secs(60 * 86_400)),
        )
        .expect("old");
    assert_eq!(
        f.route(&old.to_string(), None).await,
        Err(Reply::BAD_BOUNCE_ADDRESS)
    );
}

#[tokio::test]
async fn postmaster_is_always_accepted_at_hosted_domains() {
    let f = fixture().await;
    assert_eq!(
        f.route("PostMaster@alias.example", Some("x@outside.example"))
            .await,
        Ok(Route::Postmaster)
    );
    assert_eq!(
        f.route("postmaster@elsewhere.example", None).await,
        Err(Reply::RELAY_DENIED)
    );
}

#[tokio::test]
async fn catch_all_creates_aliases_matching_the_pattern() {
    let f = fixture().await;
    let mut d = f
        .store
        .get_domain(Access::System, f.domain.id)
        .await
        .expect("domain");
    d.catch_all.enabled = true;
    d.default_mailboxes = vec![f.mailbox.id];
    d.catch_all.auto_create_pattern = Some("news-[a-z]+".into());
    f.store
        .update_domain(Access::System, &d)
        .await
        .expect("catch-all");
    match f
        .route("News-Shoes@alias.example", Some("shop@outside.example"))
        .await
    {
        Ok(Route::Forward { alias, .. }) => assert_eq!(alias.owner, f.user.id),
        other => panic!("expected an auto-created alias, got {other:?}"),
    }
    let created = f
        .store
        .find_alias_by_address(&addr("news-shoes@alias.example"))
        .await
        .expect("find");
    assert!(created.is_some(), "the alias now exists");
    assert_eq!(
        f.route("other@alias.example", None).await,
        Err(Reply::UNKNOWN_RECIPIENT),
        "pattern does not match"
    );
    // A purged alias is not brought back by the catch-all.
    let id = created.map(|a| a.id).expect("id");
    f.store
        .delete_alias(Access::System, id, NOW)
        .await
        .expect("delete");
    f.store.purge_deleted_aliases(NOW).await.expect("purge");
    assert_eq!(
        f.route("news-shoes@alias.example", None).await,
        Err(Reply::UNKNOWN_RECIPIENT)
    );
}

#[tokio::test]
async fn catch_all_creates_nothing_when_auto_create_is_off() {
    let f = fixture().await;
    let mut d = f
        .store
        .get_domain(Access::System, f.domain.id)
        .await
        .expect("domain");
    d.catch_all.enabled = true;
    d.default_mailboxes = vec![f.mailbox.id];
    f.store
        .update_domain(Access::System, &d)
        .await
        .expect("catch-all");
    let rcpt = addr("new@alias.example");
    let route = async |auto_create| {
        Router::new(&f.store, Some(&f.srs))
            .with_auto_create(auto_create)
            .route(&rcpt, None, NOW)
            .await
    };
    assert_eq!(
        route(false).await.map_err(|r| r.reply),
        Err(Reply::UNKNOWN_RECIPIENT),
        "the normal unknown-recipient reply"
    );
    assert_eq!(
        f.store
            .find_alias_by_address(&addr("new@alias.example"))
            .await
            .expect("find"),
        None,
        "no alias was created"
    );
    assert!(
        matches!(route(true).await, Ok(Route::Forward { .. })),
        "created once the flag is on"
    );
    assert!(
        f.store
            .find_alias_by_address(&addr("new@alias.example"))
            .await
            .expect("find")
            .is_some()
    );
}

#[test]
fn auto_create_patterns_are_anchored_and_bounded() {
    assert!(pattern_matches("[a-z]+", "abc"));
    assert!(!pattern_matches("[a-z]+", "abc1"), "anchored at the end");
    assert!(!pattern_matches("b", "abc"), "anchored at the start");
    assert!(
        !pattern_matches("(unclosed", "x"),
        "invalid patterns match nothing"
    );
    assert!(
        !pattern_matches(".*", &"a".repeat(65)),
        "over-long local parts match nothing"
    );
}
