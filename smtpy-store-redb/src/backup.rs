//! Online backups and offline verification of a redb store file.
//!
//! [`RedbStore::backup_to`] copies every table inside **one read
//! transaction**: redb's MVCC snapshot stays consistent while writers keep
//! committing, so a backup taken under load holds exactly the state of one
//! instant (a message is in the queue with its body and its due entry, or not
//! at all). The copy is written to `<path>.tmp`, committed durably (fsync),
//! then renamed over `path`, so `path` is either absent or complete.
//!
//! [`verify`] checks a file that no process has open: redb's own integrity
//! check, the schema version, every row of every table decoded, and the
//! secondary indexes pointing at rows that exist.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, WriteTransaction,
};
use smtpy_core::model::{
    Alias, ApiKey, AuditEvent, Contact, DeliveryEvent, Domain, ForwardingRule, Invitation, Mailbox,
    Session, User,
};

use crate::codec::{Id, Record, decode, second, time_id_id};
use crate::error::Error;
use crate::queue::BackupQueueRow as QueueRow;
use crate::schema::{
    ALIASES, ALIASES_BY_ADDRESS, ALIASES_BY_DOMAIN, ALIASES_BY_OWNER, API_KEYS, AUDIT, CONTACTS,
    DOMAINS, DOMAINS_BY_NAME, EVENTS, EVENTS_BY_TIME, INVITATIONS, MAILBOXES, MAILBOXES_BY_OWNER,
    META, QUEUE, QUEUE_BODIES, QUEUE_BY_RECEIVED, QUEUE_DUE, QUEUE_HELD, QUEUE_LEASES, RULES,
    SCHEMA_VERSION, SCHEMA_VERSION_KEY, SESSIONS, USERS, USERS_BY_EMAIL, copy_tables, scan_tables,
};
use crate::store::RedbStore;

/// Why a backup or a verification failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The file is open in another process (a running server?).
    #[error("{0} is in use by another process (a running server?)")]
    InUse(PathBuf),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a sound smtpy database: what is wrong with it.
    #[error("{path} is damaged or not an smtpy database: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file was written by a different smtpy schema version.
    #[error(
        "{path} has schema version {found}; this smtpy writes version {expected} (open it with \
         the matching smtpy, or open it as a store once to upgrade it)"
    )]
    SchemaMismatch {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u64,
        /// The version of this build.
        expected: u64,
    },
    /// redb failed while copying.
    #[error("backup failed: {0}")]
    Storage(String),
}

/// What [`RedbStore::backup_to`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// The backup file.
    pub path: PathBuf,
    /// Rows copied per table, in schema order.
    pub tables: Vec<(String, u64)>,
    /// Size of the file, in bytes.
    pub bytes: u64,
}

/// What [`verify`] found in a sound file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrityReport {
    /// The schema version recorded in the file.
    pub schema_version: u64,
    /// Rows per table, in schema order.
    pub tables: Vec<(String, u64)>,
}

impl IntegrityReport {
    /// The number of rows of `table` (0 for an unknown name).
    #[must_use]
    pub fn rows(&self, table: &str) -> u64 {
        self.tables
            .iter()
            .find(|(name, _)| name == table)
            .map_or(0, |(_, n)| *n)
    }
}

fn storage(e: impl Into<redb::Error>) -> BackupError {
    BackupError::Storage(e.into().to_string())
}

impl RedbStore {
    /// Writes a consistent copy of the whole store to `path` while the store
    /// stays in use.
    ///
    /// Every table is read from one read transaction (a snapshot: writes
    /// committed after it began are not in the copy, and none is half in
    /// it). The copy goes to `<path>.tmp`, is committed durably, and is
    /// renamed to `path` (replacing a file there), then the directory is
    /// synced. Blocking: call it from `spawn_blocking` on a runtime.
    ///
    /// # Errors
    ///
    /// [`BackupError::Io`] when the file cannot be written,
    /// [`BackupError::Storage`] when redb fails.
    pub fn backup_to(&self, path: &Path) -> Result<BackupReport, BackupError> {
        let tmp = tmp_path(path);
        let io = |source| BackupError::Io {
            path: tmp.clone(),
            source,
        };
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let copied = (|| {
            let snapshot = self.database().begin_read().map_err(storage)?;
            let target = Database::builder()
                .set_cache_size(16 * 1024 * 1024)
                .create(&tmp)
                .map_err(storage)?;
            let txn = target.begin_write().map_err(storage)?;
            let tables = copy_tables(&snapshot, &txn).map_err(|e| match e {
                Error::Redb(e) => storage(e),
                other => BackupError::Storage(other.to_string()),
            })?;
            txn.commit().map_err(storage)?;
            drop(target);
            Ok(tables)
        })();
        let tables = match copied {
            Ok(t) => t,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        std::fs::rename(&tmp, path).map_err(|source| BackupError::Io {
            path: path.to_owned(),
            source,
        })?;
        sync_parent(path);
        let bytes = std::fs::metadata(path)
            .map_err(|source| BackupError::Io {
                path: path.to_owned(),
                source,
            })?
            .len();
        Ok(BackupReport {
            path: path.to_owned(),
            tables: tables
                .into_iter()
                .map(|(name, n)| (name.to_owned(), n))
                .collect(),
            bytes,
        })
    }
}

/// `<path>.tmp`.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Makes a rename in `path`'s directory durable (best effort: not every
/// platform can open a directory).
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// Checks the smtpy redb file at `path`, which no process may have open.
///
/// Runs redb's integrity check (page checksums, tree structure), checks
/// the schema version is this build's, reads every row of every table,
/// decodes every stored record, and checks that each index entry names a
/// row that exists (users by email, domains by name, aliases by address,
/// owner and domain; mailboxes by owner; the queue's bodies, due, held,
/// lease and received indexes; events by time) and every queued message
/// has its body.
///
/// Opening may let redb finish an interrupted commit; a file redb had to
/// repair is reported as damaged.
///
/// redb can panic on some damaged pages instead of returning an error; such
/// a panic is caught and reported as [`BackupError::Corrupt`].
///
/// # Errors
///
/// [`BackupError::InUse`] when a process holds the file,
/// [`BackupError::Corrupt`] with the first problem found,
/// [`BackupError::SchemaMismatch`] for another schema version.
pub fn verify(path: &Path) -> Result<IntegrityReport, BackupError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| verify_inner(path))) {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".to_owned());
            Err(BackupError::Corrupt {
                path: path.to_owned(),
                reason: format!("redb could not read the file ({what})"),
            })
        }
    }
}

fn verify_inner(path: &Path) -> Result<IntegrityReport, BackupError> {
    let corrupt = |reason: String| BackupError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(corrupt("not a regular file".into())),
        Err(source) => {
            return Err(BackupError::Io {
                path: path.to_owned(),
                source,
            });
        }
    }
    let mut db = match Database::builder()
        .set_cache_size(16 * 1024 * 1024)
        .open(path)
    {
        Ok(db) => db,
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            return Err(BackupError::InUse(path.to_owned()));
        }
        Err(e) => return Err(corrupt(e.to_string())),
    };
    match db.check_integrity() {
        Ok(true) => {}
        Ok(false) => return Err(corrupt("redb found damage and had to repair it".into())),
        Err(e) => return Err(corrupt(e.to_string())),
    }
    let txn = db.begin_read().map_err(|e| corrupt(e.to_string()))?;
    let version = match txn.open_table(META) {
        Ok(meta) => meta
            .get(SCHEMA_VERSION_KEY)
            .map_err(|e| corrupt(e.to_string()))?
            .map(|g| g.value()),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(corrupt(e.to_string())),
    };
    let Some(version) = version else {
        return Err(corrupt("no schema version (not an smtpy store)".into()));
    };
    if version != SCHEMA_VERSION {
        return Err(BackupError::SchemaMismatch {
            path: path.to_owned(),
            found: version,
            expected: SCHEMA_VERSION,
        });
    }
    let tables = scan_tables(&txn).map_err(|e| corrupt(e.to_string()))?;
    check_rows(&txn).map_err(|e| corrupt(e.to_string()))?;
    Ok(IntegrityReport {
        schema_version: version,
        tables: tables
            .into_iter()
            .map(|(name, n)| (name.to_owned(), n))
            .collect(),
    })
}

/// The schema version recorded in the redb file at `path`, without
/// upgrading it (`None` for a file without one). The file must not be open
/// in another process.
///
/// # Errors
///
/// [`BackupError::InUse`] when a process holds the file,
/// [`BackupError::Corrupt`] when redb cannot read it.
pub fn schema_version(path: &Path) -> Result<Option<u64>, BackupError> {
    let corrupt = |e: &dyn std::fmt::Display| BackupError::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let db = match Database::builder().set_cache_size(1024 * 1024).open(path) {
        Ok(db) => db,
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            return Err(BackupError::InUse(path.to_owned()));
        }
        Err(e) => return Err(corrupt(&e)),
    };
    let txn = db.begin_read().map_err(|e| corrupt(&e))?;
    match txn.open_table(META) {
        Ok(meta) => Ok(meta
            .get(SCHEMA_VERSION_KEY)
            .map_err(|e| corrupt(&e))?
            .map(|g| g.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(corrupt(&e)),
    }
}

/// The schema version this build writes (a file at an older one is
/// upgraded when opened as a store).
pub const CURRENT_SCHEMA_VERSION: u64 = SCHEMA_VERSION;

/// Copies one table of `src` into `dst` (created even when `src` lacks it).
pub(crate) fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    src: &ReadTransaction,
    dst: &WriteTransaction,
    def: TableDefinition<'static, K, V>,
) -> Result<u64, Error> {
    let mut to = dst.open_table(def)?;
    let from = match src.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(redb::Error::from(e).into()),
    };
    let mut n = 0u64;
    for entry in from.iter()? {
        let (k, v) = entry?;
        to.insert(k.value(), v.value())?;
        n += 1;
    }
    Ok(n)
}

/// Reads every entry of one table; its row count (0 when it does not exist).
pub(crate) fn scan_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    def: TableDefinition<'static, K, V>,
) -> Result<u64, Error> {
    let table = match txn.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(redb::Error::from(e).into()),
    };
    let mut n = 0u64;
    for entry in table.iter()? {
        let (k, v) = entry?;
        // Touch both halves so redb decodes them.
        drop((k.value(), v.value()));
        n += 1;
    }
    if n != table.len()? {
        return Err(Error::corrupt(
            "table",
            format!("{} counts {} entries but holds {n}", def, table.len()?),
        ));
    }
    Ok(n)
}

/// Decodes every record of the row tables into the ids they hold.
fn ids_of<T: Record>(
    txn: &ReadTransaction,
    def: TableDefinition<'static, &'static [u8; 16], &'static [u8]>,
) -> Result<HashSet<Id>, Error> {
    let table = txn.open_table(def)?;
    let mut ids = HashSet::new();
    for entry in table.iter()? {
        let (k, v) = entry?;
        decode::<T>(v.value())?;
        ids.insert(*k.value());
    }
    Ok(ids)
}

fn missing(index: &str, table: &str) -> Error {
    Error::corrupt(
        "index",
        format!("{index} names a row that is not in {table}"),
    )
}

/// Every record decodes and every index entry points at a row.
fn check_rows(txn: &ReadTransaction) -> Result<(), Error> {
    let users = ids_of::<User>(txn, USERS)?;
    ids_of::<ApiKey>(txn, API_KEYS)?;
    for entry in txn.open_table(SESSIONS)?.iter()? {
        decode::<Session>(entry?.1.value())?;
    }
    ids_of::<Invitation>(txn, INVITATIONS)?;
    let domains = ids_of::<Domain>(txn, DOMAINS)?;
    let mailboxes = ids_of::<Mailbox>(txn, MAILBOXES)?;
    let aliases = ids_of::<Alias>(txn, ALIASES)?;
    ids_of::<Contact>(txn, CONTACTS)?;
    ids_of::<ForwardingRule>(txn, RULES)?;
    ids_of::<AuditEvent>(txn, AUDIT)?;
    let events = ids_of::<DeliveryEvent>(txn, EVENTS)?;
    let queue = ids_of::<QueueRow<'static>>(txn, QUEUE)?;

    for entry in txn.open_table(USERS_BY_EMAIL)?.iter()? {
        if !users.contains(entry?.1.value()) {
            return Err(missing("users_by_email", "users"));
        }
    }
    for entry in txn.open_table(DOMAINS_BY_NAME)?.iter()? {
        if !domains.contains(entry?.1.value()) {
            return Err(missing("domains_by_name", "domains"));
        }
    }
    for entry in txn.open_table(ALIASES_BY_ADDRESS)?.iter()? {
        if !aliases.contains(entry?.1.value()) {
            return Err(missing("aliases_by_address", "aliases"));
        }
    }
    for (def, name) in [
        (ALIASES_BY_OWNER, "aliases_by_owner"),
        (ALIASES_BY_DOMAIN, "aliases_by_domain"),
    ] {
        for entry in txn.open_table(def)?.iter()? {
            if !aliases.contains(&second(entry?.0.value())) {
                return Err(missing(name, "aliases"));
            }
        }
    }
    for entry in txn.open_table(MAILBOXES_BY_OWNER)?.iter()? {
        if !mailboxes.contains(&second(entry?.0.value())) {
            return Err(missing("mailboxes_by_owner", "mailboxes"));
        }
    }
    let mut bodies = HashSet::new();
    for entry in txn.open_table(QUEUE_BODIES)?.iter()? {
        let id = *entry?.0.value();
        if !queue.contains(&id) {
            return Err(missing("queue_bodies", "queue"));
        }
        bodies.insert(id);
    }
    if let Some(_id) = queue.iter().find(|id| !bodies.contains(*id)) {
        return Err(Error::corrupt(
            "queued message",
            "a queued message has no body in queue_bodies",
        ));
    }
    for entry in txn.open_table(QUEUE_HELD)?.iter()? {
        if !queue.contains(entry?.0.value()) {
            return Err(missing("queue_held", "queue"));
        }
    }
    for entry in txn.open_table(QUEUE_LEASES)?.iter()? {
        if !queue.contains(entry?.0.value()) {
            return Err(missing("queue_leases", "queue"));
        }
    }
    for (def, name) in [
        (QUEUE_DUE, "queue_due"),
        (QUEUE_BY_RECEIVED, "queue_by_received"),
    ] {
        for entry in txn.open_table(def)?.iter()? {
            if !queue.contains(&time_id_id(entry?.0.value())) {
                return Err(missing(name, "queue"));
            }
        }
    }
    for entry in txn.open_table(EVENTS_BY_TIME)?.iter()? {
        if !events.contains(&time_id_id(entry?.0.value())) {
            return Err(missing("events_by_time", "events"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use smtpy_core::address::EmailAddress;
    use smtpy_core::model::{Role, User};
    use smtpy_core::store::{PageRequest, QueueStore, UserStore};
    use smtpy_core::testing::fixtures::T0;
    use smtpy_core::testing::new_message;

    use super::{BackupError, verify};
    use crate::RedbStore;

    fn user(n: usize) -> User {
        User::new(
            EmailAddress::parse(&format!("user{n}@example.org")).expect("address"),
            Role::User,
            T0,
        )
    }

    /// A backup taken while messages are being enqueued verifies, and holds
    /// one instant: every queued message with its body and due entry.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn backup_during_concurrent_writes_is_a_verifiable_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(RedbStore::open(dir.path().join("live.redb")).expect("open"));
        for n in 0..5 {
            store.create_user(&user(n)).await.expect("user");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    store.enqueue(&new_message(2)).await.expect("enqueue");
                    n += 1;
                }
                n
            })
        };
        // Let some writes land first.
        while store.queue_stats().await.expect("stats").depth < 20 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let target = dir.path().join("backup.redb");
        let report = {
            let (store, target) = (Arc::clone(&store), target.clone());
            tokio::task::spawn_blocking(move || store.backup_to(&target))
                .await
                .expect("join")
                .expect("backup")
        };
        stop.store(true, Ordering::Relaxed);
        let written = writer.await.expect("writer");
        let queued_in_backup = report
            .tables
            .iter()
            .find(|(t, _)| t == "queue")
            .map(|(_, n)| *n)
            .expect("queue table");
        assert!(queued_in_backup >= 20, "{queued_in_backup} messages copied");
        assert!(
            queued_in_backup <= written,
            "{queued_in_backup} copied > {written} written"
        );
        assert!(!dir.path().join("backup.redb.tmp").exists());

        let checked = verify(&target).expect("the backup verifies");
        assert_eq!(checked.rows("queue"), queued_in_backup);
        assert_eq!(checked.rows("queue_bodies"), queued_in_backup);
        assert_eq!(checked.rows("queue_due"), queued_in_backup);
        assert_eq!(checked.rows("users"), 5);
        assert_eq!(checked.tables, report.tables);

        // The backup opens as a store and serves its messages with bodies.
        let restored = RedbStore::open(&target).expect("open the backup");
        let page = restored
            .list_queue(PageRequest::first(500))
            .await
            .expect("list");
        assert_eq!(page.items.len() as u64, queued_in_backup.min(500));
        let one = restored.get_queued(page.items[0].id).await.expect("get");
        assert!(one.body.starts_with(b"Received: from client"));
    }

    /// Rows survive a backup and open again from the copy.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn restore_round_trip_preserves_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RedbStore::open(dir.path().join("live.redb")).expect("open");
        let u = user(1);
        store.create_user(&u).await.expect("user");
        let m = new_message(3);
        store.enqueue(&m).await.expect("enqueue");
        let target = dir.path().join("copy.redb");
        store.backup_to(&target).expect("backup");
        drop(store);
        let copy = RedbStore::open(&target).expect("open copy");
        assert_eq!(copy.get_user(u.id).await.expect("user").email, u.email);
        let back = copy.get_queued(m.id).await.expect("queued");
        assert_eq!(back.body, m.body);
        assert_eq!(back.recipients, m.recipients);
    }

    /// A truncated or scribbled-over file is refused, and so is a file in use.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn damaged_or_open_files_fail_verification() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RedbStore::open(dir.path().join("live.redb")).expect("open");
        for n in 0..50 {
            store.create_user(&user(n)).await.expect("user");
        }
        let good = dir.path().join("good.redb");
        store.backup_to(&good).expect("backup");
        assert!(matches!(
            verify(&dir.path().join("live.redb")),
            Err(BackupError::InUse(_))
        ));
        drop(store);
        verify(&good).expect("intact");

        let bytes = std::fs::read(&good).expect("read");
        let truncated = dir.path().join("truncated.redb");
        std::fs::write(&truncated, &bytes[..bytes.len() / 3]).expect("write");
        let e = verify(&truncated).expect_err("a truncated file must fail");
        assert!(matches!(e, BackupError::Corrupt { .. }), "{e}");

        let mut scribbled = bytes.clone();
        for b in scribbled.iter_mut().skip(4096).take(bytes.len() - 8192) {
            *b ^= 0x5a;
        }
        let damaged = dir.path().join("damaged.redb");
        std::fs::write(&damaged, &scribbled).expect("write");
        let e = verify(&damaged).expect_err("a scribbled file must fail");
        assert!(matches!(e, BackupError::Corrupt { .. }), "{e}");

        let empty = dir.path().join("not-smtpy.redb");
        std::fs::write(&empty, b"hello").expect("write");
        assert!(verify(&empty).is_err());
    }
}
