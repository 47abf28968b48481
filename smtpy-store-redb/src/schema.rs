//! Tables, the schema version and its upgrade steps.
//!
//! # Layout (schema version 5)
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `meta` | name | `u64` (`schema_version`) |
//! | `users` | user id | row (with its settings since version 3) |
//! | `users_by_email` | canonical email | user id |
//! | `api_keys` | key id | row |
//! | `api_keys_by_hash` | secret hash | key id |
//! | `api_keys_by_owner` | owner ‖ key id | — |
//! | `sessions` | id hash | row |
//! | `sessions_by_user` | user ‖ id hash | — |
//! | `invitations` | invitation id | row |
//! | `invitations_by_token` | token hash | invitation id |
//! | `domains` | domain id | row (with `disabled` since version 5) |
//! | `domains_by_name` | A-label name | domain id |
//! | `mailboxes` | mailbox id | row |
//! | `mailboxes_by_owner` | owner ‖ mailbox id | — |
//! | `mailboxes_by_address` | owner ‖ canonical address | mailbox id |
//! | `mailboxes_by_token` | verification token hash | mailbox id |
//! | `aliases` | alias id | row |
//! | `aliases_by_address` | canonical address (live and soft-deleted) | alias id |
//! | `aliases_by_owner` | owner ‖ alias id | — |
//! | `aliases_by_domain` | domain ‖ alias id | — |
//! | `aliases_deleted` | deleted_at ‖ alias id (soft-deleted only) | — |
//! | `tombstones` | canonical address of a purged alias | — |
//! | `contacts` | contact id | row |
//! | `contacts_by_reverse_key` | reverse key | contact id |
//! | `contacts_by_alias_address` | alias ‖ canonical address | contact id |
//! | `contacts_by_alias` | alias ‖ contact id | — |
//! | `contacts_by_owner` | owner ‖ contact id | — |
//! | `rules` | rule id | row |
//! | `rules_by_owner` | owner ‖ rule id | — |
//! | `audit` | event id | row |
//! | `audit_by_owner` | owner ‖ event id | — |
//! | `events` | delivery event id | row |
//! | `events_by_owner` | owner ‖ event id | at ‖ kind code |
//! | `events_by_alias` | alias ‖ event id | at ‖ kind code |
//! | `events_by_mailbox` | mailbox ‖ event id | at ‖ kind code |
//! | `events_by_message` | message ‖ event id | at ‖ kind code |
//! | `events_by_time` | at ‖ event id | kind code |
//! | `usage` | kind ‖ subject id ‖ day | messages ‖ bytes |
//! | `rate_limits` | key | TAT (unix ms) |
//! | `queue` | message id | row: envelope, recipients, schedule (no body) |
//! | `queue_bodies` | message id | body bytes, written once |
//! | `queue_leases` | message id | lease token ‖ until |
//! | `queue_due` | eligible_at ‖ message id (unheld only) | — |
//! | `queue_held` | message id (held only) | — |
//! | `queue_by_received` | received_at ‖ message id | — |
//! | `settings` | setting key | row: value (JSON text), version, updated_at |
//! | `jobs` | job name | row: lease holder and until, last run |
//!
//! Every index is written in the same write transaction as its row.
//!
//! The queue tables came with version 2 (see [`UPGRADES`]). A queued
//! message's small, often rewritten state (`queue`, `queue_leases`) is
//! apart from its body (`queue_bodies`), so recording an attempt never
//! copies a 25 MB body. `queue_due` holds each unheld message once, at
//! the instant it can next be leased: `max(next_attempt_at, lease until)`.
//! Leasing moves the entry to the lease's end, so a lapsed lease is found
//! by the same range scan as a due message, and leasing reads only the
//! entries it takes.
//!
//! Version 3 gave users their settings (the upgrade rewrites every user row
//! with the default settings) and added the delivery event log. An event
//! row has an entry in `events_by_time` (for retention purges and unscoped
//! counts) and one in each of `events_by_owner`, `_alias`, `_mailbox` and
//! `_message` whose field it sets. Those entries carry the event's time and
//! kind, so the filters that need neither the row nor another index
//! (`since`, `kinds`: the bounce-threshold count) are answered from the
//! index alone; a list walks one index newest first (descending id) and
//! reads only the rows it may return.
//!
//! Version 4 added the control plane (`ControlStore`): runtime settings
//! (`settings`, one row per key, its version bumped on every write) and
//! background job leases and run records (`jobs`, one row per job). A
//! lease is taken in one write transaction, which redb runs one at a time,
//! so two callers never both get it. The upgrade only creates the two
//! (empty) tables.
//!
//! Version 5 gave domains the administrator's `disabled` flag: the upgrade
//! rewrites every domain row with `disabled = false` (a version 4 row, read
//! through [`DomainV4`], has no such field and postcard is not
//! self-describing), exactly as version 3 rewrote user rows.

use std::cell::{RefCell, RefMut};

use redb::{ReadableTable, Table, TableDefinition, TableHandle, WriteTransaction};
use serde::{Deserialize, Serialize};
use smtpy_core::address::DomainName;
use smtpy_core::ids::{DomainId, MailboxId, UserId};
use smtpy_core::model::{
    CatchAll, DkimKey, DnsChecks, Domain, Role, User, UserSettings, UserStatus,
};
use smtpy_core::password::PasswordHash;
use smtpy_core::secret::EncryptedSecret;
use smtpy_core::time::Timestamp;

use crate::codec::{Record, decode, encode};
use crate::error::{Error, OpenError};

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: u64 = 5;

/// Key of the schema version in [`META`].
pub(crate) const SCHEMA_VERSION_KEY: &str = "schema_version";

macro_rules! tables {
    ($($field:ident, $def:ident, $name:literal: $k:ty => $v:ty;)*) => {
        $(
            #[doc = concat!("The `", $name, "` table.")]
            pub(crate) const $def: TableDefinition<'static, $k, $v> = TableDefinition::new($name);
        )*

        /// The tables of one write transaction, each opened on first use.
        ///
        /// Each accessor hands out the table for as long as the returned
        /// guard lives; asking for a table that is still borrowed is an
        /// internal error, not a panic.
        pub(crate) struct Tx<'t> {
            txn: &'t WriteTransaction,
            /// Set when the transaction changed nothing and may be aborted
            /// instead of committed (saves the fsync).
            unchanged: std::cell::Cell<bool>,
            $($field: RefCell<Option<Table<'t, $k, $v>>>,)*
        }

        impl<'t> Tx<'t> {
            pub(crate) fn new(txn: &'t WriteTransaction) -> Self {
                Self {
                    txn,
                    unchanged: std::cell::Cell::new(false),
                    $($field: RefCell::new(None),)*
                }
            }

            $(
                #[doc = concat!("The `", $name, "` table.")]
                pub(crate) fn $field(&self) -> Result<RefMut<'_, Table<'t, $k, $v>>, Error> {
                    let mut slot = self
                        .$field
                        .try_borrow_mut()
                        .map_err(|_| Error::Internal(concat!("table ", $name, " opened twice")))?;
                    if slot.is_none() {
                        *slot = Some(self.txn.open_table($def)?);
                    }
                    RefMut::filter_map(slot, Option::as_mut)
                        .map_err(|_| Error::Internal(concat!("table ", $name, " not open")))
                }
            )*

            /// Creates every table that does not exist yet.
            pub(crate) fn create_all(&self) -> Result<(), Error> {
                $(drop(self.$field()?);)*
                Ok(())
            }
        }

        /// Copies every table of `src` into `dst` (a backup); the rows
        /// copied per table, in declaration order.
        pub(crate) fn copy_tables(
            src: &redb::ReadTransaction,
            dst: &WriteTransaction,
        ) -> Result<Vec<(&'static str, u64)>, Error> {
            Ok(vec![$(($name, crate::backup::copy_table(src, dst, $def)?),)*])
        }

        /// Reads every row of every table of `txn` (redb decodes each key
        /// and value); the rows per table, in declaration order.
        pub(crate) fn scan_tables(
            txn: &redb::ReadTransaction,
        ) -> Result<Vec<(&'static str, u64)>, Error> {
            Ok(vec![$(($name, crate::backup::scan_table(txn, $def)?),)*])
        }
    };
}

tables! {
    meta, META, "meta": &'static str => u64;
    users, USERS, "users": &'static [u8; 16] => &'static [u8];
    users_by_email, USERS_BY_EMAIL, "users_by_email": &'static str => &'static [u8; 16];
    api_keys, API_KEYS, "api_keys": &'static [u8; 16] => &'static [u8];
    api_keys_by_hash, API_KEYS_BY_HASH, "api_keys_by_hash": &'static [u8; 32] => &'static [u8; 16];
    api_keys_by_owner, API_KEYS_BY_OWNER, "api_keys_by_owner": &'static [u8; 32] => ();
    sessions, SESSIONS, "sessions": &'static [u8; 32] => &'static [u8];
    sessions_by_user, SESSIONS_BY_USER, "sessions_by_user": &'static [u8; 48] => ();
    invitations, INVITATIONS, "invitations": &'static [u8; 16] => &'static [u8];
    invitations_by_token, INVITATIONS_BY_TOKEN, "invitations_by_token": &'static [u8; 32] => &'static [u8; 16];
    domains, DOMAINS, "domains": &'static [u8; 16] => &'static [u8];
    domains_by_name, DOMAINS_BY_NAME, "domains_by_name": &'static str => &'static [u8; 16];
    mailboxes, MAILBOXES, "mailboxes": &'static [u8; 16] => &'static [u8];
    mailboxes_by_owner, MAILBOXES_BY_OWNER, "mailboxes_by_owner": &'static [u8; 32] => ();
    mailboxes_by_address, MAILBOXES_BY_ADDRESS, "mailboxes_by_address": &'static [u8] => &'static [u8; 16];
    mailboxes_by_token, MAILBOXES_BY_TOKEN, "mailboxes_by_token": &'static [u8; 32] => &'static [u8; 16];
    aliases, ALIASES, "aliases": &'static [u8; 16] => &'static [u8];
    aliases_by_address, ALIASES_BY_ADDRESS, "aliases_by_address": &'static str => &'static [u8; 16];
    aliases_by_owner, ALIASES_BY_OWNER, "aliases_by_owner": &'static [u8; 32] => ();
    aliases_by_domain, ALIASES_BY_DOMAIN, "aliases_by_domain": &'static [u8; 32] => ();
    aliases_deleted, ALIASES_DELETED, "aliases_deleted": &'static [u8; 24] => ();
    tombstones, TOMBSTONES, "tombstones": &'static str => ();
    contacts, CONTACTS, "contacts": &'static [u8; 16] => &'static [u8];
    contacts_by_reverse_key, CONTACTS_BY_REVERSE_KEY, "contacts_by_reverse_key": &'static str => &'static [u8; 16];
    contacts_by_alias_address, CONTACTS_BY_ALIAS_ADDRESS, "contacts_by_alias_address": &'static [u8] => &'static [u8; 16];
    contacts_by_alias, CONTACTS_BY_ALIAS, "contacts_by_alias": &'static [u8; 32] => ();
    contacts_by_owner, CONTACTS_BY_OWNER, "contacts_by_owner": &'static [u8; 32] => ();
    rules, RULES, "rules": &'static [u8; 16] => &'static [u8];
    rules_by_owner, RULES_BY_OWNER, "rules_by_owner": &'static [u8; 32] => ();
    audit, AUDIT, "audit": &'static [u8; 16] => &'static [u8];
    audit_by_owner, AUDIT_BY_OWNER, "audit_by_owner": &'static [u8; 32] => ();
    usage, USAGE, "usage": &'static [u8; 21] => &'static [u8; 16];
    rate_limits, RATE_LIMITS, "rate_limits": &'static str => i64;
    queue, QUEUE, "queue": &'static [u8; 16] => &'static [u8];
    queue_bodies, QUEUE_BODIES, "queue_bodies": &'static [u8; 16] => &'static [u8];
    queue_leases, QUEUE_LEASES, "queue_leases": &'static [u8; 16] => &'static [u8; 24];
    queue_due, QUEUE_DUE, "queue_due": &'static [u8; 24] => ();
    queue_held, QUEUE_HELD, "queue_held": &'static [u8; 16] => ();
    queue_by_received, QUEUE_BY_RECEIVED, "queue_by_received": &'static [u8; 24] => ();
    events, EVENTS, "events": &'static [u8; 16] => &'static [u8];
    events_by_owner, EVENTS_BY_OWNER, "events_by_owner": &'static [u8; 32] => &'static [u8; 9];
    events_by_alias, EVENTS_BY_ALIAS, "events_by_alias": &'static [u8; 32] => &'static [u8; 9];
    events_by_mailbox, EVENTS_BY_MAILBOX, "events_by_mailbox": &'static [u8; 32] => &'static [u8; 9];
    events_by_message, EVENTS_BY_MESSAGE, "events_by_message": &'static [u8; 32] => &'static [u8; 9];
    events_by_time, EVENTS_BY_TIME, "events_by_time": &'static [u8; 24] => u8;
    settings, SETTINGS, "settings": &'static str => &'static [u8];
    jobs, JOBS, "jobs": &'static str => &'static [u8];
}

impl Tx<'_> {
    /// Marks the transaction as having changed nothing: it is aborted
    /// instead of committed. Call only before any write.
    pub(crate) fn unchanged(&self) {
        self.unchanged.set(true);
    }

    /// Whether [`unchanged`](Self::unchanged) was called.
    pub(crate) fn is_unchanged(&self) -> bool {
        self.unchanged.get()
    }
}

/// One schema upgrade: turns a file at version `from` into `from + 1`.
///
/// Steps run inside the opening write transaction, so an upgrade either
/// completes (every step and the new version number) or leaves the file as
/// it was.
#[derive(Clone, Copy)]
pub(crate) struct UpgradeStep {
    /// The version this step upgrades from.
    pub(crate) from: u64,
    /// What it does, for the log.
    pub(crate) description: &'static str,
    /// The work.
    pub(crate) apply: fn(&Tx<'_>) -> Result<(), Error>,
}

/// Every upgrade step, by `from` version (version 1 is the first schema).
pub(crate) const UPGRADES: &[UpgradeStep] = &[
    UpgradeStep {
        from: 1,
        description: "add the queue tables",
        apply: add_queue_tables,
    },
    UpgradeStep {
        from: 2,
        description: "give users their settings; add the delivery event tables",
        apply: add_user_settings_and_events,
    },
    UpgradeStep {
        from: 3,
        description: "add the control plane tables (settings, job leases)",
        apply: add_control_tables,
    },
    UpgradeStep {
        from: 4,
        description: "give domains the administrator's disabled flag",
        apply: add_domain_disabled,
    },
];

/// A domain row as versions 1 to 4 wrote it: [`Domain`] without
/// `disabled`.
///
/// Only the upgrade to version 5 reads it (and tests write it, to make
/// version 4 files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DomainV4 {
    pub(crate) id: DomainId,
    pub(crate) name: DomainName,
    pub(crate) owner: UserId,
    pub(crate) shared: bool,
    pub(crate) verification_token: String,
    pub(crate) verified_at: Option<Timestamp>,
    pub(crate) checks: DnsChecks,
    pub(crate) catch_all: CatchAll,
    pub(crate) dkim_keys: Vec<DkimKey>,
    pub(crate) default_mailboxes: Vec<MailboxId>,
    pub(crate) created_at: Timestamp,
    pub(crate) updated_at: Timestamp,
    pub(crate) revision: u64,
}

impl Record for DomainV4 {
    const ENTITY: &'static str = "domain";
}

impl DomainV4 {
    /// The domain, not disabled.
    pub(crate) fn upgrade(self) -> Domain {
        Domain {
            id: self.id,
            name: self.name,
            owner: self.owner,
            shared: self.shared,
            verification_token: self.verification_token,
            verified_at: self.verified_at,
            disabled: false,
            checks: self.checks,
            catch_all: self.catch_all,
            dkim_keys: self.dkim_keys,
            default_mailboxes: self.default_mailboxes,
            created_at: self.created_at,
            updated_at: self.updated_at,
            revision: self.revision,
        }
    }
}

/// 4 → 5: rewrites every domain row with `disabled = false`.
///
/// A row that does not decode as a version 4 row but does as a current
/// [`Domain`] (a file written by a development build between the two
/// versions) is kept as it is; a row that decodes as neither fails the
/// upgrade, which then leaves the file untouched. `disabled` is the
/// row's last field, so a version 4 row is a strict prefix of the same
/// domain's version 5 row: neither layout decodes as the other (the codec
/// refuses trailing bytes). The `domains_by_name`
/// and `aliases_by_domain` indexes hold ids only and need no change.
fn add_domain_disabled(tx: &Tx<'_>) -> Result<(), Error> {
    let mut rewritten = Vec::new();
    {
        let domains = tx.domains()?;
        for entry in domains.iter()? {
            let (k, v) = entry?;
            match decode::<DomainV4>(v.value()) {
                Ok(old) => rewritten.push((*k.value(), encode(&old.upgrade())?)),
                Err(legacy) => {
                    if decode::<Domain>(v.value()).is_err() {
                        return Err(legacy);
                    }
                }
            }
        }
    }
    let mut domains = tx.domains()?;
    for (id, row) in &rewritten {
        domains.insert(id, row.as_slice())?;
    }
    Ok(())
}

/// 3 → 4: creates the (empty) `settings` and `jobs` tables.
fn add_control_tables(tx: &Tx<'_>) -> Result<(), Error> {
    drop(tx.settings()?);
    drop(tx.jobs()?);
    Ok(())
}

/// 1 → 2: creates the (empty) queue tables.
fn add_queue_tables(tx: &Tx<'_>) -> Result<(), Error> {
    drop(tx.queue()?);
    drop(tx.queue_bodies()?);
    drop(tx.queue_leases()?);
    drop(tx.queue_due()?);
    drop(tx.queue_held()?);
    drop(tx.queue_by_received()?);
    Ok(())
}

/// A user row as versions 1 and 2 wrote it: [`User`] without `settings`.
///
/// Only the upgrade to version 3 reads it (and tests write it, to make
/// version 2 files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UserV2 {
    pub(crate) id: UserId,
    pub(crate) email: smtpy_core::address::EmailAddress,
    pub(crate) password: Option<PasswordHash>,
    pub(crate) role: Role,
    pub(crate) status: UserStatus,
    pub(crate) totp: Option<EncryptedSecret>,
    pub(crate) created_at: Timestamp,
    pub(crate) updated_at: Timestamp,
    pub(crate) last_login_at: Option<Timestamp>,
    pub(crate) revision: u64,
}

impl Record for UserV2 {
    const ENTITY: &'static str = "user";
}

impl UserV2 {
    /// The user with the default settings.
    pub(crate) fn upgrade(self) -> User {
        User {
            id: self.id,
            email: self.email,
            password: self.password,
            role: self.role,
            status: self.status,
            totp: self.totp,
            created_at: self.created_at,
            updated_at: self.updated_at,
            last_login_at: self.last_login_at,
            settings: UserSettings::default(),
            revision: self.revision,
        }
    }
}

/// 2 → 3: rewrites every user row with [`UserSettings::default()`] and
/// creates the (empty) delivery event tables.
///
/// A row that already decodes as a current [`User`] (a file written by a
/// development build between the two versions) is kept as it is; a row
/// that decodes as neither fails the upgrade, which then leaves the file
/// untouched.
fn add_user_settings_and_events(tx: &Tx<'_>) -> Result<(), Error> {
    let mut rewritten = Vec::new();
    {
        let users = tx.users()?;
        for entry in users.iter()? {
            let (k, v) = entry?;
            match decode::<UserV2>(v.value()) {
                Ok(old) => rewritten.push((*k.value(), encode(&old.upgrade())?)),
                Err(legacy) => {
                    if decode::<User>(v.value()).is_err() {
                        return Err(legacy);
                    }
                }
            }
        }
    }
    let mut users = tx.users()?;
    for (id, row) in &rewritten {
        users.insert(id, row.as_slice())?;
    }
    drop(users);
    drop(tx.events()?);
    drop(tx.events_by_owner()?);
    drop(tx.events_by_alias()?);
    drop(tx.events_by_mailbox()?);
    drop(tx.events_by_message()?);
    drop(tx.events_by_time()?);
    Ok(())
}

/// What opening did to the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Migration {
    /// A new file: the current version was written.
    Created,
    /// Already at the current version.
    Current,
    /// Upgraded from this version.
    Upgraded(u64),
}

/// Brings the schema of the file behind `txn` to `target` using `steps`:
/// writes `target` into a new file, accepts a file at `target`, runs the
/// steps from the file's version up to `target`, and refuses a newer file.
/// The caller commits on `Ok` (and must abort on `Err`).
pub(crate) fn migrate(
    txn: &WriteTransaction,
    steps: &[UpgradeStep],
    target: u64,
) -> Result<Migration, OpenError> {
    let found = read_version(txn)?;
    let tx = Tx::new(txn);
    let outcome = match found {
        None => {
            let foreign = txn
                .list_tables()
                .map_err(redb::Error::from)?
                .map(|t| t.name().to_owned())
                .find(|name| name != META.name());
            if let Some(name) = foreign {
                return Err(OpenError::Unrecognised {
                    reason: format!("it has a table `{name}` but no schema version"),
                });
            }
            Migration::Created
        }
        Some(v) if v == target => Migration::Current,
        Some(v) if v > target => {
            return Err(OpenError::SchemaTooNew {
                found: v,
                supported: target,
            });
        }
        Some(v) => {
            for from in v..target {
                let step = steps
                    .iter()
                    .find(|s| s.from == from)
                    .ok_or(OpenError::NoUpgradePath { from })?;
                tracing::info!(
                    from,
                    to = from + 1,
                    step = step.description,
                    "upgrading redb schema"
                );
                (step.apply)(&tx).map_err(|e| OpenError::Unrecognised {
                    reason: format!("upgrade step from version {from} failed: {e}"),
                })?;
            }
            Migration::Upgraded(v)
        }
    };
    let written = (|| -> Result<(), Error> {
        tx.create_all()?;
        if outcome != Migration::Current {
            tx.meta()?.insert(SCHEMA_VERSION_KEY, target)?;
        }
        Ok(())
    })();
    written.map_err(|e| match e {
        Error::Redb(e) => OpenError::Storage(e),
        other => OpenError::Unrecognised {
            reason: other.to_string(),
        },
    })?;
    Ok(outcome)
}

/// The schema version recorded in the file, if any.
fn read_version(txn: &WriteTransaction) -> Result<Option<u64>, OpenError> {
    let exists = txn
        .list_tables()
        .map_err(redb::Error::from)?
        .any(|t| t.name() == META.name());
    if !exists {
        return Ok(None);
    }
    let meta = txn.open_table(META)?;
    let version = meta.get(SCHEMA_VERSION_KEY)?.map(|g| g.value());
    Ok(version)
}
