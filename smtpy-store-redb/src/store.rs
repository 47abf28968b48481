//! [`RedbStore`]: opening, options, and running transactions off the async
//! runtime.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable};
use smtpy_core::StoreResult;
use smtpy_core::store::{Page, PageRequest, Store};
use uuid::Uuid;

use crate::codec::{Id, Pair, Record, decode, pair_bounds, second};
use crate::error::{BACKEND, Error, OpenError};
use crate::queue::Committer;
use crate::schema::{self, META, Migration, SCHEMA_VERSION, Tx, UPGRADES, UpgradeStep};

/// Default page cache size: 1 GiB, redb's own default.
pub const DEFAULT_CACHE_SIZE: usize = 1024 * 1024 * 1024;

/// Settings for opening a [`RedbStore`]; a consuming builder.
///
/// ```no_run
/// # fn main() -> Result<(), smtpy_store_redb::OpenError> {
/// use smtpy_store_redb::RedbStore;
/// let store = RedbStore::builder()
///     .cache_size(256 * 1024 * 1024)
///     .open("/var/lib/smtpy/smtpy.redb")?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedbOptions {
    cache_size: usize,
}

impl Default for RedbOptions {
    fn default() -> Self {
        Self {
            cache_size: DEFAULT_CACHE_SIZE,
        }
    }
}

impl RedbOptions {
    /// The defaults (see each setter).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Most memory, in bytes, redb uses to cache database pages.
    ///
    /// Default: [`DEFAULT_CACHE_SIZE`] (1 GiB, redb's default). The cache
    /// fills only as pages are read, so a small database uses little of it;
    /// with many aliases a cache that holds the `aliases_by_address` index
    /// and the alias rows keeps the mail path's lookups off the disk (the
    /// file holds about 350–450 bytes per alias including every index, so
    /// 1 GiB covers a few million aliases).
    #[must_use]
    pub fn cache_size(mut self, bytes: usize) -> Self {
        self.cache_size = bytes;
        self
    }

    /// Opens the database at `path`, creating the file if it does not exist.
    ///
    /// Blocks while the file is opened (and, if it was not closed cleanly,
    /// repaired); call it before serving, or inside
    /// `tokio::task::spawn_blocking`.
    ///
    /// # Errors
    ///
    /// [`OpenError::AlreadyOpen`] if another process or handle has the
    /// file open, [`OpenError::SchemaTooNew`] for a file written by a newer
    /// smtpy (the file is not touched), [`OpenError::Unrecognised`] for a
    /// redb file smtpy did not create, [`OpenError::Storage`] for I/O and
    /// corruption.
    pub fn open(self, path: impl AsRef<Path>) -> Result<RedbStore, OpenError> {
        self.open_with(path.as_ref(), UPGRADES, SCHEMA_VERSION)
    }

    /// [`open`](Self::open) with an explicit upgrade registry and target
    /// version (tests exercise the upgrade mechanism through this).
    pub(crate) fn open_with(
        self,
        path: &Path,
        steps: &[UpgradeStep],
        target: u64,
    ) -> Result<RedbStore, OpenError> {
        let db = Database::builder()
            .set_cache_size(self.cache_size)
            .create(path)?;
        let txn = db.begin_write()?;
        match schema::migrate(&txn, steps, target) {
            Ok(migration) => {
                txn.commit()?;
                match migration {
                    Migration::Created => {
                        tracing::info!(path = %path.display(), version = target, "created smtpy redb database");
                    }
                    Migration::Upgraded(from) => {
                        tracing::info!(path = %path.display(), from, to = target, "upgraded smtpy redb database");
                    }
                    Migration::Current => {
                        tracing::debug!(path = %path.display(), "opened smtpy redb database");
                    }
                }
            }
            Err(e) => {
                if let Err(abort) = txn.abort() {
                    tracing::warn!(error = %abort, "aborting the schema transaction failed");
                }
                return Err(e);
            }
        }
        let db = Arc::new(db);
        let committer = Committer::start(Arc::clone(&db))
            .map_err(|e| OpenError::Storage(redb::Error::Io(e)))?;
        Ok(RedbStore {
            committer,
            db,
            path: path.to_owned(),
            _temporary: None,
        })
    }

    /// Opens a new, empty database in a fresh directory under the system's
    /// temporary directory; the directory is removed when the store is
    /// dropped. For tests and examples.
    ///
    /// # Errors
    ///
    /// [`OpenError::Storage`] if the directory cannot be created, or any
    /// error of [`open`](Self::open).
    pub fn open_temporary(self) -> Result<RedbStore, OpenError> {
        let dir = std::env::temp_dir().join(format!("smtpy-redb-{}", Uuid::now_v7().simple()));
        std::fs::create_dir(&dir).map_err(|e| OpenError::Storage(redb::Error::Io(e)))?;
        let guard = TemporaryDir(dir);
        let mut store = self.open(guard.0.join("smtpy.redb"))?;
        store._temporary = Some(guard);
        Ok(store)
    }
}

/// Removes a temporary store's directory on drop.
struct TemporaryDir(PathBuf);

impl Drop for TemporaryDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(path = %self.0.display(), error = %e, "cannot remove a temporary store");
        }
    }
}

/// The redb [`Store`]: one file, one process.
///
/// Cheap to share behind an `Arc`; every method runs its transaction on
/// tokio's blocking pool. Reads see a consistent snapshot and run
/// concurrently with each other and with the one write transaction redb
/// allows at a time. Writes commit with [`redb::Durability::Immediate`]
/// (fsync before the method returns), so a method that returned `Ok`
/// survives a crash.
pub struct RedbStore {
    // Fields drop in order: the committer first (its drop commits what is
    // still queued and joins the thread, which holds the other reference to
    // the database), then the database, so it is closed before a temporary
    // directory is removed.
    committer: Committer,
    db: Arc<Database>,
    path: PathBuf,
    _temporary: Option<TemporaryDir>,
}

impl fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbStore {
    /// Opens (or creates) the database at `path` with the default
    /// [`RedbOptions`].
    ///
    /// # Errors
    ///
    /// See [`RedbOptions::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<RedbStore, OpenError> {
        RedbOptions::default().open(path)
    }

    /// Options for opening a store.
    #[must_use]
    pub fn builder() -> RedbOptions {
        RedbOptions::default()
    }

    /// The file this store lives in.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The group committer of [`enqueue`](smtpy_core::store::QueueStore::enqueue).
    pub(crate) fn committer(&self) -> &Committer {
        &self.committer
    }

    /// How many durable commits the queue's group committer has made, and
    /// how many enqueued messages they stored, since the store was opened.
    /// `messages / commits` is the mean batch size; each commit is one
    /// fsync. For tests and benchmarks; not a stable API.
    #[doc(hidden)]
    #[must_use]
    pub fn enqueue_commit_counts(&self) -> (u64, u64) {
        self.committer.counts()
    }

    /// The underlying database (backups read it; tests poke at raw tables).
    pub(crate) fn database(&self) -> &Database {
        &self.db
    }

    /// Runs `f` in a read transaction, off the async workers (see the body).
    pub(crate) async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> Result<T, Error> + Send + 'static,
    {
        // A point lookup is a few microseconds of work on cached pages, less
        // than handing it to the blocking pool (measured: p50 3.4 µs with
        // `block_in_place`, 21 µs with `spawn_blocking`). `block_in_place`
        // still keeps the runtime responsive: tokio moves this worker's other
        // tasks to another thread while the read runs, so a read that does
        // go to disk blocks nothing else. It needs the multi-thread runtime;
        // elsewhere the read goes to the blocking pool.
        if tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
        {
            return Ok(tokio::task::block_in_place(|| {
                let txn = self.db.begin_read()?;
                f(&txn)
            })?);
        }
        let db = Arc::clone(&self.db);
        let joined = tokio::task::spawn_blocking(move || {
            let txn = db.begin_read()?;
            f(&txn)
        })
        .await;
        Ok(joined.map_err(Error::from)??)
    }

    /// Runs `f` in a write transaction on the blocking pool and commits
    /// (durably) if it returns `Ok`; aborts otherwise, or when `f` marked
    /// the transaction unchanged.
    pub(crate) async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, Error> + Send + 'static,
    {
        self.write_with(redb::Durability::Immediate, f).await
    }

    /// [`write`](Self::write) without its own fsync, for bookkeeping that
    /// may trail the mail it describes (events, counters, usage) and for
    /// rows the caller makes durable with a durable commit of its own right
    /// after (a contact created before its message is queued). The commit
    /// is visible at once and reaches the disk with the next durable commit
    /// of any writer (the queue commits all the time); a crash before that
    /// loses it, never mail.
    pub(crate) async fn write_lazy<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, Error> + Send + 'static,
    {
        self.write_with(redb::Durability::None, f).await
    }

    async fn write_with<T, F>(&self, durability: redb::Durability, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, Error> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        let joined = tokio::task::spawn_blocking(move || {
            let mut txn = db.begin_write()?;
            if txn.set_durability(durability).is_err() {
                // Not allowed for this transaction: stay durable.
                let _ = txn.set_durability(redb::Durability::Immediate);
            }
            let (out, unchanged) = {
                let tx = Tx::new(&txn);
                let out = f(&tx);
                (out, tx.is_unchanged())
            };
            match out {
                Ok(value) if !unchanged => {
                    txn.commit()?;
                    Ok(value)
                }
                outcome => {
                    if let Err(e) = txn.abort() {
                        tracing::warn!(error = %e, "aborting a redb write transaction failed");
                    }
                    outcome
                }
            }
        })
        .await;
        Ok(joined.map_err(Error::from)??)
    }
}

#[async_trait]
impl Store for RedbStore {
    fn backend_name(&self) -> &'static str {
        BACKEND
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|txn| {
            let meta = txn.open_table(META)?;
            meta.get(schema::SCHEMA_VERSION_KEY)?;
            Ok(())
        })
        .await
    }
}

// ---------------------------------------------------------------------------
// Helpers shared by the trait implementations.

/// A row by id from a table of rows.
pub(crate) fn load<T: Record, const N: usize>(
    table: &impl ReadableTable<&'static [u8; N], &'static [u8]>,
    key: &[u8; N],
) -> Result<Option<T>, Error> {
    match table.get(key)? {
        Some(guard) => decode(guard.value()).map(Some),
        None => Ok(None),
    }
}

/// A row that an index entry points at; a dangling entry is corruption.
pub(crate) fn load_indexed<T: Record>(
    table: &impl ReadableTable<&'static [u8; 16], &'static [u8]>,
    id: &Id,
) -> Result<T, Error> {
    load(table, id)?.ok_or_else(|| Error::corrupt(T::ENTITY, "an index points at a missing row"))
}

/// Looks `key` up in a unique index and loads the row it points at.
pub(crate) fn find_via<T: Record, K: redb::Key + 'static>(
    index: &impl ReadableTable<K, &'static [u8; 16]>,
    rows: &impl ReadableTable<&'static [u8; 16], &'static [u8]>,
    key: K::SelfType<'_>,
) -> Result<Option<T>, Error> {
    let id = match index.get(key)? {
        Some(guard) => *guard.value(),
        None => return Ok(None),
    };
    load_indexed(rows, &id).map(Some)
}

/// The child ids of every `parent ‖ child` entry in a pair index, in order.
pub(crate) fn children(
    index: &impl ReadableTable<&'static [u8; 32], ()>,
    parent: Id,
) -> Result<Vec<Id>, Error> {
    let (start, end) = pair_bounds(parent, None);
    let start = as_ref_bound(&start);
    let mut ids = Vec::new();
    for entry in index.range::<&Pair>((start, std::ops::Bound::Included(&end)))? {
        let (k, ()) = entry.map(|(k, v)| (*k.value(), v.value()))?;
        ids.push(second(&k));
    }
    Ok(ids)
}

/// True if a pair index has any entry under `parent`.
pub(crate) fn has_children(
    index: &impl ReadableTable<&'static [u8; 32], ()>,
    parent: Id,
) -> Result<bool, Error> {
    let (start, end) = pair_bounds(parent, None);
    let start = as_ref_bound(&start);
    let mut range = index.range::<&Pair>((start, std::ops::Bound::Included(&end)))?;
    Ok(range.next().transpose()?.is_some())
}

fn as_ref_bound<T>(b: &std::ops::Bound<T>) -> std::ops::Bound<&T> {
    match b {
        std::ops::Bound::Included(x) => std::ops::Bound::Included(x),
        std::ops::Bound::Excluded(x) => std::ops::Bound::Excluded(x),
        std::ops::Bound::Unbounded => std::ops::Bound::Unbounded,
    }
}

/// The cursor of a page request as id bytes.
fn after_id(page: PageRequest) -> Option<Id> {
    page.after.map(|c| *c.last_id().as_bytes())
}

/// One page of a table of rows, in id order, keeping rows that pass `keep`.
pub(crate) fn page_rows<T: Record>(
    rows: &impl ReadableTable<&'static [u8; 16], &'static [u8]>,
    page: PageRequest,
    mut keep: impl FnMut(&T) -> bool,
    uuid_of: impl Fn(&T) -> Uuid,
) -> Result<Page<T>, Error> {
    let limit = page.effective_limit();
    let after = after_id(page);
    let start = match &after {
        Some(a) => std::ops::Bound::Excluded(a),
        None => std::ops::Bound::Unbounded,
    };
    let mut out = Vec::new();
    for entry in rows.range::<&Id>((start, std::ops::Bound::Unbounded))? {
        let (_, v) = entry?;
        let row: T = decode(v.value())?;
        if keep(&row) {
            out.push(row);
            if out.len() > limit {
                break;
            }
        }
    }
    Ok(Page::from_overfetch(out, limit, uuid_of))
}

/// One page of the rows listed under `parent` in a pair index, in child id
/// order, keeping rows that pass `keep`.
pub(crate) fn page_children<T: Record>(
    index: &impl ReadableTable<&'static [u8; 32], ()>,
    rows: &impl ReadableTable<&'static [u8; 16], &'static [u8]>,
    parent: Id,
    page: PageRequest,
    mut keep: impl FnMut(&T) -> bool,
    uuid_of: impl Fn(&T) -> Uuid,
) -> Result<Page<T>, Error> {
    let limit = page.effective_limit();
    let (start, end) = pair_bounds(parent, after_id(page));
    let start = as_ref_bound(&start);
    let mut out = Vec::new();
    for entry in index.range::<&Pair>((start, std::ops::Bound::Included(&end)))? {
        let (k, _) = entry?;
        let row: T = load_indexed(rows, &second(k.value()))?;
        if keep(&row) {
            out.push(row);
            if out.len() > limit {
                break;
            }
        }
    }
    Ok(Page::from_overfetch(out, limit, uuid_of))
}

/// Every row listed under `parent` in a pair index, in child id order.
pub(crate) fn all_children<T: Record>(
    index: &impl ReadableTable<&'static [u8; 32], ()>,
    rows: &impl ReadableTable<&'static [u8; 16], &'static [u8]>,
    parent: Id,
) -> Result<Vec<T>, Error> {
    children(index, parent)?
        .iter()
        .map(|id| load_indexed(rows, id))
        .collect()
}
