//! Online backups and verification of a SQLite store.
//!
//! [`SqlStore::backup_to`] runs `VACUUM INTO`: SQLite copies the database
//! as of one read transaction, so the copy is consistent while other
//! connections (other processes too) keep writing. The copy is written to
//! `<path>.tmp`, synced, then renamed over `path`.
//!
//! [`SqlStore::verify`] and [`verify_sqlite_file`] check a database:
//! `PRAGMA integrity_check`, `PRAGMA foreign_key_check`, every embedded
//! migration applied with its recorded checksum, and the rows per table.
//!
//! PostgreSQL has its own tools for this (`pg_dump` / `pg_restore`, or
//! continuous archiving); both methods refuse it with
//! [`StoreError::Invalid`].

use std::path::{Path, PathBuf};

use smtpy_core::StoreError;
use sqlx::Row as _;

use crate::{Dialect, MigrationStatus, SqlStore, SqlStoreOptions};

/// What [`SqlStore::backup_to`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlBackupReport {
    /// The backup file.
    pub path: PathBuf,
    /// What the backup holds (verified after writing).
    pub integrity: SqlIntegrityReport,
    /// Size of the file, in bytes.
    pub bytes: u64,
}

/// What a verification found in a sound database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlIntegrityReport {
    /// The newest migration applied.
    pub schema_version: i64,
    /// Rows per table, by table name.
    pub tables: Vec<(String, u64)>,
}

impl SqlIntegrityReport {
    /// The number of rows of `table` (0 for an unknown name).
    #[must_use]
    pub fn rows(&self, table: &str) -> u64 {
        self.tables
            .iter()
            .find(|(name, _)| name == table)
            .map_or(0, |(_, n)| *n)
    }
}

fn postgres_refused() -> StoreError {
    StoreError::Invalid {
        entity: "backup",
        reason: "PostgreSQL stores are backed up with pg_dump and restored with pg_restore \
                 (or continuous archiving); smtpy backs up SQLite and redb files only"
            .into(),
    }
}

fn corrupt(reason: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        entity: "database",
        reason: reason.into(),
    }
}

fn io(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::backend(
        "sqlite",
        std::io::Error::new(e.kind(), format!("{}: {e}", path.display())),
    )
}

impl SqlStore {
    /// Writes a consistent copy of this SQLite database to `path` with
    /// `VACUUM INTO` (writers carry on meanwhile), replacing a file there,
    /// then verifies the copy.
    ///
    /// # Errors
    ///
    /// [`StoreError::Invalid`] on PostgreSQL (use `pg_dump`) or when the
    /// copy does not verify; [`StoreError::Backend`] when SQLite or the
    /// file system fails.
    pub async fn backup_to(&self, path: &Path) -> Result<SqlBackupReport, StoreError> {
        let Some(pool) = self.sqlite_pool() else {
            return Err(postgres_refused());
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&tmp, e)),
        }
        let target = tmp
            .to_str()
            .ok_or_else(|| corrupt(format!("{}: the path is not UTF-8", tmp.display())))?
            .to_owned();
        if let Err(e) = sqlx::query("VACUUM INTO ?1")
            .bind(target)
            .execute(pool)
            .await
        {
            let _ = std::fs::remove_file(&tmp);
            return Err(StoreError::backend("sqlite", e));
        }
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io(path, e))?;
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        let integrity = verify_sqlite_file(path).await?;
        let bytes = std::fs::metadata(path).map_err(|e| io(path, e))?.len();
        Ok(SqlBackupReport {
            path: path.to_owned(),
            integrity,
            bytes,
        })
    }

    /// Checks this SQLite database: `PRAGMA integrity_check` and
    /// `PRAGMA foreign_key_check` find nothing, every migration this build
    /// embeds is applied with an unchanged checksum (and none unknown), and
    /// counts the rows of every table.
    ///
    /// # Errors
    ///
    /// [`StoreError::Invalid`] naming the first problem, or on PostgreSQL;
    /// [`StoreError::Backend`] when SQLite fails.
    pub async fn verify(&self) -> Result<SqlIntegrityReport, StoreError> {
        let Some(pool) = self.sqlite_pool() else {
            return Err(postgres_refused());
        };
        let be = |e: sqlx::Error| StoreError::backend("sqlite", e);
        let problems: Vec<String> = sqlx::query("PRAGMA integrity_check")
            .fetch_all(pool)
            .await
            .map_err(be)?
            .iter()
            .filter_map(|r| r.try_get::<String, _>(0).ok())
            .filter(|line| line != "ok")
            .collect();
        if !problems.is_empty() {
            return Err(corrupt(format!(
                "integrity check failed: {}",
                problems.join("; ")
            )));
        }
        let dangling = sqlx::query("PRAGMA foreign_key_check")
            .fetch_all(pool)
            .await
            .map_err(be)?;
        if let Some(row) = dangling.first() {
            let table: String = row.try_get(0).unwrap_or_default();
            return Err(corrupt(format!(
                "foreign key check failed: {} row(s) point at missing rows (first in table {table})",
                dangling.len()
            )));
        }
        let status = self.migration_status().await?;
        check_migrations(&status)?;
        let schema_version = status.iter().map(|m| m.version).max().unwrap_or(0);
        let names: Vec<String> = sqlx::query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             ORDER BY name",
        )
        .fetch_all(pool)
        .await
        .map_err(be)?
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()
        .map_err(be)?;
        let mut tables = Vec::with_capacity(names.len());
        for name in names {
            let quoted = format!("\"{}\"", name.replace('"', "\"\""));
            // The name comes from sqlite_master and is quoted as an identifier.
            let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {quoted}"));
            let n: i64 = sqlx::query(sql)
                .fetch_one(pool)
                .await
                .map_err(be)?
                .try_get(0)
                .map_err(be)?;
            tables.push((name, u64::try_from(n).unwrap_or(0)));
        }
        Ok(SqlIntegrityReport {
            schema_version,
            tables,
        })
    }
}

/// Every embedded migration applied, none edited.
fn check_migrations(status: &[MigrationStatus]) -> Result<(), StoreError> {
    if let Some(m) = status.iter().find(|m| m.checksum_mismatch) {
        return Err(corrupt(format!(
            "migration {} ({}) was applied from a different file than this smtpy embeds",
            m.version, m.description
        )));
    }
    let pending: Vec<String> = status
        .iter()
        .filter(|m| !m.applied)
        .map(|m| format!("{} ({})", m.version, m.description))
        .collect();
    if !pending.is_empty() {
        return Err(corrupt(format!(
            "migrations not applied: {} (an older smtpy wrote it; run `migrate up` on it first)",
            pending.join(", ")
        )));
    }
    Ok(())
}

/// [`SqlStore::verify`] for the SQLite file at `path`, opened without
/// applying migrations (the file must exist; it is closed on return).
///
/// # Errors
///
/// As [`SqlStore::verify`]; [`StoreError::Invalid`] when the file is not
/// a SQLite database.
pub async fn verify_sqlite_file(path: &Path) -> Result<SqlIntegrityReport, StoreError> {
    if !path.is_file() {
        return Err(corrupt(format!("{}: no such file", path.display())));
    }
    let text = path
        .to_str()
        .ok_or_else(|| corrupt(format!("{}: the path is not UTF-8", path.display())))?;
    if text.contains(['?', '#']) {
        return Err(corrupt(format!(
            "{}: a path with '?' or '#' cannot be opened as a SQLite URL",
            path.display()
        )));
    }
    let store = SqlStoreOptions::new()
        .migrate_on_connect(false)
        .max_connections(1)
        .read_connection(false)
        .connect(&format!("sqlite:{text}?mode=rw"))
        .await
        .map_err(|e| match e {
            StoreError::Backend { .. } => corrupt(format!("{}: {e}", path.display())),
            other => other,
        })?;
    debug_assert_eq!(store.dialect(), Dialect::Sqlite);
    let result = store.verify().await;
    store.close().await;
    result.map_err(|e| match e {
        StoreError::Backend { .. } => corrupt(format!("{}: {e}", path.display())),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use smtpy_core::address::EmailAddress;
    use smtpy_core::model::{Role, User};
    use smtpy_core::store::{QueueStore, UserStore};
    use smtpy_core::testing::fixtures::T0;
    use smtpy_core::testing::new_message;

    use super::verify_sqlite_file;
    use crate::SqlStore;

    async fn open(path: &std::path::Path) -> SqlStore {
        SqlStore::connect(&format!("sqlite:{}?mode=rwc", path.display()))
            .await
            .expect("open")
    }

    fn user(n: usize) -> User {
        User::new(
            EmailAddress::parse(&format!("user{n}@example.org")).expect("address"),
            Role::User,
            T0,
        )
    }

    /// A backup taken while another connection enqueues verifies and
    /// holds a consistent number of messages (every one with its recipients).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn backup_during_concurrent_writes_is_a_verifiable_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir.path().join("live.db")).await;
        for n in 0..3 {
            store.create_user(&user(n)).await.expect("user");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (store, stop) = (store.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    store.enqueue(&new_message(2)).await.expect("enqueue");
                    n += 1;
                }
                n
            })
        };
        while store.queue_stats().await.expect("stats").depth < 10 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let target = dir.path().join("backup.db");
        let report = store.backup_to(&target).await.expect("backup");
        stop.store(true, Ordering::Relaxed);
        let written = writer.await.expect("writer");
        let queued = report.integrity.rows("queue");
        assert!(
            (10..=written).contains(&queued),
            "{queued} of {written} in the backup"
        );
        assert_eq!(report.integrity.rows("users"), 3);
        assert!(!dir.path().join("backup.db.tmp").exists());
        let again = verify_sqlite_file(&target).await.expect("verifies");
        assert_eq!(again, report.integrity);
        assert_eq!(
            again.schema_version,
            crate::LATEST_VERSION,
            "every migration applied"
        );
    }

    /// Rows survive a backup; the copy opens as a store.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn restore_round_trip_preserves_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir.path().join("live.db")).await;
        let u = user(7);
        store.create_user(&u).await.expect("user");
        let m = new_message(2);
        store.enqueue(&m).await.expect("enqueue");
        let target = dir.path().join("copy.db");
        store.backup_to(&target).await.expect("backup");
        store.close().await;
        let copy = open(&target).await;
        assert_eq!(copy.get_user(u.id).await.expect("user").email, u.email);
        let back = copy.get_queued(m.id).await.expect("queued");
        assert_eq!(back.body, m.body);
    }

    /// A truncated file, a file that is not SQLite, and a database with a
    /// migration rolled back all fail verification.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn damaged_files_fail_verification() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir.path().join("live.db")).await;
        for n in 0..200 {
            store.create_user(&user(n)).await.expect("user");
        }
        let good = dir.path().join("good.db");
        store.backup_to(&good).await.expect("backup");
        let bytes = std::fs::read(&good).expect("read");

        let truncated = dir.path().join("truncated.db");
        std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
        assert!(verify_sqlite_file(&truncated).await.is_err());

        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, b"not a database at all, just text").expect("write");
        assert!(verify_sqlite_file(&junk).await.is_err());

        store
            .migrate_down(crate::LATEST_VERSION - 1)
            .await
            .expect("down");
        let old = dir.path().join("old.db");
        store
            .backup_to(&old)
            .await
            .expect_err("an older schema does not verify");
        let e = verify_sqlite_file(&old)
            .await
            .expect_err("pending migration");
        assert!(e.to_string().contains("not applied"), "{e}");
    }
}
