//! Recipient routing: what smtpy does with one `RCPT TO`, decided on the
//! envelope only (headers never route) and answered before DATA.
//!
//! | recipient | decision |
//! | --- | --- |
//! | a live, enabled alias with a deliverable mailbox | [`Route::Forward`] |
//! | a disabled or expired alias | `550 5.1.1`, or [`Route::Discard`] when the alias says so |
//! | `postmaster@` a hosted domain | [`Route::Postmaster`] |
//! | an SRS address of ours, from the null sender | [`Route::BounceRelay`] to the original sender |
//! | a bounce address of ours (signed, VERP) | [`Route::Bounce`] for the bounce handler |
//! | a reverse alias, from one of the alias owner's verified mailboxes | [`Route::Reply`] |
//! | a forged reverse alias or bounce address | `550 5.7.1`, without a database hit |
//! | a valid reverse alias from anyone else | `550 5.7.1` (only the owner may send through it) |
//! | a forged or expired SRS address | `550 5.7.1` |
//! | no alias, catch-all on (pattern matches) | an alias is created, then [`Route::Forward`] |
//! | no alias | `550 5.1.1` |
//! | a domain we do not host (or not verified) | `550 5.7.1` relay denied |
//! | the store fails | `451 4.4.3` — never a 5xx, never a 250 |
//!
//! Addresses that only look like routing (`user%other@`, `"a@b"@`,
//! `a!b@`) are plain local parts here: they match an alias or nothing, so
//! nothing is ever relayed.

use crate::address::EmailAddress;
use crate::bounce::BounceAddresses;
use crate::ids::MessageId;
use crate::model::{Alias, Contact, DisabledReply, Mailbox, UserStatus};
use crate::reply::Reply;
use crate::reverse::ReverseAliases;
use crate::srs::Srs;
use crate::store::{Access, Store};
use crate::time::Timestamp;
use crate::{StoreError, StoreResult};

/// Longest local part an auto-create pattern is matched against (bounds the work).
const MAX_PATTERN_INPUT: usize = 64;

/// Where a recipient's mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
// One per accepted recipient and short-lived: boxing would cost more than the size.
#[allow(clippy::large_enum_variant)]
pub enum Route {
    /// Forward to these mailboxes of the alias's owner (at least one; all
    /// verified and enabled).
    Forward {
        /// The alias.
        alias: Alias,
        /// Its deliverable mailboxes, in the alias's order.
        mailboxes: Vec<Mailbox>,
    },
    /// Accept and drop (a disabled alias set to discard).
    Discard {
        /// The alias.
        alias: Alias,
    },
    /// A bounce to one of our SRS addresses: relay it to the original sender.
    BounceRelay {
        /// The sender the SRS address stood for.
        original: EmailAddress,
    },
    /// `postmaster@` a hosted domain (RFC 5321 §4.5.1): always accepted.
    Postmaster,
    /// Mail from the alias owner to a reverse alias: sent on to the contact
    /// from the alias.
    Reply {
        /// The alias the reply goes out from.
        alias: Alias,
        /// The outside address it goes to.
        contact: Contact,
        /// The owner's verified mailbox the reply came from (the envelope sender).
        mailbox: Mailbox,
    },
    /// Mail to one of our signed bounce addresses: a bounce (or an
    /// auto-reply) about a message we sent.
    Bounce {
        /// The queued message the bounce address was made for.
        message: MessageId,
    },
}

/// `550 5.7.1`: a reverse alias or bounce address whose signature does not verify.
pub const FORGED_ADDRESS: Reply = Reply::new(
    550,
    (5, 7, 1),
    "This address is not valid here (bad signature)",
);
/// `550 5.7.1`: mail to a reverse alias from someone other than the alias owner.
pub const NOT_THE_OWNER: Reply = Reply::new(
    550,
    (5, 7, 1),
    "Only the owner of this alias can send through this address, from one of their verified mailboxes",
);

/// Decides routes for recipients. Cheap to share.
#[derive(Debug)]
pub struct Router<'a> {
    store: &'a dyn Store,
    srs: Option<&'a Srs>,
    reverse: Option<&'a ReverseAliases>,
    bounces: Option<&'a BounceAddresses>,
    auto_create: bool,
}

/// Why a recipient is refused: the reply to give, and the store failure
/// behind a temporary refusal (for the operator's log; never sent).
#[derive(Debug)]
pub struct Refusal {
    /// What to answer the client.
    pub reply: Reply,
    /// The store error, when the refusal is `451 4.4.3`.
    pub cause: Option<StoreError>,
}

impl From<Reply> for Refusal {
    fn from(reply: Reply) -> Self {
        Self { reply, cause: None }
    }
}

/// Any store failure at RCPT time is temporary for the client (`451 4.4.3`):
/// never a 5xx (the address may well exist) and never a 250.
fn temp(e: StoreError) -> Refusal {
    Refusal {
        reply: Reply::STORE_UNAVAILABLE,
        cause: Some(e),
    }
}

impl<'a> Router<'a> {
    /// A router over `store`; `srs` recognises our bounce addresses (none:
    /// SRS addresses are treated like any other local part).
    #[must_use]
    pub fn new(store: &'a dyn Store, srs: Option<&'a Srs>) -> Self {
        Self {
            store,
            srs,
            reverse: None,
            bounces: None,
            auto_create: true,
        }
    }

    /// Whether catch-all domains create aliases on first mail (default
    /// `true`; the `auto_create` feature flag). When `false`, an unknown
    /// address on a catch-all domain is refused like on any other domain.
    #[must_use]
    pub fn with_auto_create(mut self, auto_create: bool) -> Self {
        self.auto_create = auto_create;
        self
    }

    /// Recognises reverse aliases (replies and mail sent from aliases).
    #[must_use]
    pub fn with_reverse(mut self, reverse: Option<&'a ReverseAliases>) -> Self {
        self.reverse = reverse;
        self
    }

    /// Recognises our bounce addresses.
    #[must_use]
    pub fn with_bounces(mut self, bounces: Option<&'a BounceAddresses>) -> Self {
        self.bounces = bounces;
        self
    }

    /// The route for `rcpt` in a transaction from `sender` (`None` is the
    /// null reverse-path), or the reply refusing it.
    pub async fn route(
        &self,
        rcpt: &EmailAddress,
        sender: Option<&EmailAddress>,
        now: Timestamp,
    ) -> Result<Route, Refusal> {
        if let Some(srs) = self.srs
            && srs.domain() == rcpt.domain()
            && Srs::is_srs(rcpt.local_part().as_str())
        {
            return self.route_srs(srs, rcpt, sender, now);
        }
        if let Some(bounces) = self.bounces
            && bounces.domain() == rcpt.domain()
            && BounceAddresses::looks_like(rcpt.local_part().as_str())
        {
            return match bounces.decode(rcpt, now) {
                Ok(message) => Ok(Route::Bounce { message }),
                Err(_) => Err(FORGED_ADDRESS.into()),
            };
        }
        let domain = match self.store.find_domain_by_name(rcpt.domain()).await {
            Ok(Some(d)) if d.receives_mail() => d,
            Ok(_) => return Err(Reply::RELAY_DENIED.into()),
            Err(e) => return Err(temp(e)),
        };
        if rcpt
            .local_part()
            .as_str()
            .eq_ignore_ascii_case("postmaster")
        {
            return Ok(Route::Postmaster);
        }
        if let Some(reverse) = self.reverse
            && ReverseAliases::looks_like(rcpt.local_part().as_str())
        {
            return self.route_reply(reverse, rcpt, sender).await;
        }
        let alias = match self.store.find_alias_by_address(rcpt).await {
            Ok(Some(alias)) => alias,
            Ok(None) => match self.catch_all(&domain, rcpt, now).await {
                Ok(Some(alias)) => alias,
                Ok(None) => return Err(Reply::UNKNOWN_RECIPIENT.into()),
                Err(e) => return Err(temp(e)),
            },
            Err(e) => return Err(temp(e)),
        };
        self.forward_route(alias, now).await
    }

    fn route_srs(
        &self,
        srs: &Srs,
        rcpt: &EmailAddress,
        sender: Option<&EmailAddress>,
        now: Timestamp,
    ) -> Result<Route, Refusal> {
        // Only bounces (null sender) travel back through SRS addresses.
        if sender.is_some() {
            return Err(Reply::BAD_BOUNCE_ADDRESS.into());
        }
        match srs.reverse(rcpt, now) {
            Ok(original) => Ok(Route::BounceRelay { original }),
            Err(_) => Err(Reply::BAD_BOUNCE_ADDRESS.into()),
        }
    }

    async fn route_reply(
        &self,
        reverse: &ReverseAliases,
        rcpt: &EmailAddress,
        sender: Option<&EmailAddress>,
    ) -> Result<Route, Refusal> {
        let token = rcpt.local_part().as_str();
        // Forged tokens die here, before any database access.
        if reverse.verify(token, rcpt.domain()).is_err() {
            return Err(FORGED_ADDRESS.into());
        }
        let Some(sender) = sender else {
            // A bounce to a reverse alias: nobody to relay it to that would
            // not reveal the contact's correspondent. Refuse.
            return Err(NOT_THE_OWNER.into());
        };
        let contact = match self
            .store
            .find_contact_by_reverse_key(&ReverseAliases::lookup_key(token))
            .await
        {
            Ok(Some(c)) => c,
            // Revoked (deleted) contact.
            Ok(None) => return Err(Reply::UNKNOWN_RECIPIENT.into()),
            Err(e) => return Err(temp(e)),
        };
        let alias = match self.store.get_alias(Access::System, contact.alias).await {
            Ok(a) if a.deleted_at.is_none() && a.address.domain() == rcpt.domain() => a,
            Ok(_) | Err(StoreError::NotFound { .. } | StoreError::Gone { .. }) => {
                return Err(Reply::UNKNOWN_RECIPIENT.into());
            }
            Err(e) => return Err(temp(e)),
        };
        let owner = self.store.get_user(alias.owner).await.map_err(temp)?;
        if owner.status != UserStatus::Active {
            return Err(Reply::UNKNOWN_RECIPIENT.into());
        }
        let mailboxes = self.store.list_mailboxes(alias.owner).await.map_err(temp)?;
        let canonical = sender.canonical();
        let Some(mailbox) = mailboxes
            .into_iter()
            .find(|m| m.verified_at.is_some() && m.address.canonical() == canonical)
        else {
            return Err(NOT_THE_OWNER.into());
        };
        Ok(Route::Reply {
            alias,
            contact,
            mailbox,
        })
    }

    async fn forward_route(&self, alias: Alias, now: Timestamp) -> Result<Route, Refusal> {
        let owner = self.store.get_user(alias.owner).await.map_err(temp)?;
        if !alias.is_active(now) || owner.status != UserStatus::Active {
            return match alias.disabled_reply {
                DisabledReply::Discard if owner.status == UserStatus::Active => {
                    Ok(Route::Discard { alias })
                }
                _ => Err(Reply::UNKNOWN_RECIPIENT.into()),
            };
        }
        // Only the alias's own mailboxes, by id: an owner may have thousands.
        let mut mailboxes: Vec<Mailbox> = Vec::with_capacity(alias.mailboxes.len());
        for id in &alias.mailboxes {
            let m = match self
                .store
                .get_mailbox(Access::Owner(alias.owner), *id)
                .await
            {
                Ok(m) => m,
                Err(StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(temp(e)),
            };
            if m.can_receive()
                && !mailboxes
                    .iter()
                    .any(|x| x.address.canonical() == m.address.canonical())
            {
                mailboxes.push(m);
            }
        }
        if mailboxes.is_empty() {
            return Err(
                Reply::new(550, (5, 2, 1), "This address cannot receive mail right now").into(),
            );
        }
        Ok(Route::Forward { alias, mailboxes })
    }

    /// The alias a catch-all domain creates for `rcpt`, if it does.
    async fn catch_all(
        &self,
        domain: &crate::model::Domain,
        rcpt: &EmailAddress,
        now: Timestamp,
    ) -> StoreResult<Option<Alias>> {
        if !self.auto_create || !domain.catch_all.enabled || domain.default_mailboxes.is_empty() {
            return Ok(None);
        }
        let local = rcpt.local_part().as_str();
        if let Some(pattern) = &domain.catch_all.auto_create_pattern
            && !pattern_matches(pattern, local)
        {
            return Ok(None);
        }
        // A purged alias stays dead even on a catch-all domain.
        if self.store.is_tombstoned(rcpt).await? {
            return Ok(None);
        }
        let alias = Alias::new(
            rcpt.clone(),
            domain.owner,
            domain.id,
            domain.default_mailboxes.clone(),
            now,
        );
        match self.store.create_alias(&alias).await {
            Ok(()) => Ok(Some(alias)),
            // Created concurrently by another session: use that one.
            Err(StoreError::AlreadyExists { .. }) => self.store.find_alias_by_address(rcpt).await,
            Err(StoreError::Gone { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// True if `local` matches the whole auto-create `pattern` (case-insensitive).
/// An invalid or oversized pattern matches nothing.
#[must_use]
pub fn pattern_matches(pattern: &str, local: &str) -> bool {
    if local.len() > MAX_PATTERN_INPUT || pattern.len() > crate::model::MAX_REGEX_LEN {
        return false;
    }
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
        .is_ok_and(|re| re.is_match(local))
}
