//! `server backup --out PATH` and `server restore --from PATH [--force]`.
//!
//! Backups are consistent and online: redb copies one read snapshot
//! (through the running server when it holds the file), SQLite runs
//! `VACUUM INTO`. Every backup is verified after writing and every restore
//! before anything is replaced. PostgreSQL is backed up with its own tools.

use std::path::{Path, PathBuf};

use crate::cli::{Backend, Handles, Out, StoreKind, say, store_kind};
use crate::config::Config;
use crate::run::Failure;

const POSTGRES: &str = "PostgreSQL stores are backed up with pg_dump (e.g. pg_dump -Fc -f smtpy.dump \
                        \"$URL\") and restored with pg_restore (pg_restore --clean -d \"$URL\" \
                        smtpy.dump); smtpy's backup and restore handle redb and SQLite files";

/// `backup --out PATH` with the store open (in this process or the server).
pub async fn backup(
    config: &Config,
    handles: &Handles,
    path: &Path,
    out: Out<'_>,
) -> Result<(), Failure> {
    if let StoreKind::Redb(live) | StoreKind::Sqlite(Some(live)) = store_kind(config)
        && same_file(&live, path)
    {
        return Err(Failure::Usage(format!(
            "--out {}: that is the store itself; write the backup elsewhere",
            path.display()
        )));
    }
    match &handles.backend {
        Backend::Redb(store) => {
            let (store, target) = (store.clone(), path.to_owned());
            let written = tokio::task::spawn_blocking(move || {
                let report = store.backup_to(&target)?;
                let checked = smtpy::redb::verify(&target)?;
                Ok::<_, smtpy::redb::BackupError>((report, checked))
            })
            .await
            .map_err(|e| Failure::Runtime(format!("backup task failed: {e}")))?;
            let (report, checked) = written.map_err(|e| Failure::Runtime(e.to_string()))?;
            say!(
                out,
                "backup written to {} ({} bytes) and verified: schema version {}",
                report.path.display(),
                report.bytes,
                checked.schema_version
            );
            for (table, rows) in &checked.tables {
                say!(out, "  {table:<28} {rows}");
            }
            Ok(())
        }
        Backend::Sql(sql) => {
            if sql.sqlite_pool().is_none() {
                return Err(Failure::Usage(format!("backup: {POSTGRES}")));
            }
            let report = sql
                .backup_to(path)
                .await
                .map_err(|e| Failure::Runtime(format!("backup: {e}")))?;
            say!(
                out,
                "backup written to {} ({} bytes) and verified: schema version {}",
                report.path.display(),
                report.bytes,
                report.integrity.schema_version
            );
            for (table, rows) in &report.integrity.tables {
                say!(out, "  {table:<28} {rows}");
            }
            Ok(())
        }
    }
}

/// True if both paths name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// `restore --from PATH [--force]`: verify the backup, then put it in
/// place of the store named by `store.url` (the server must be stopped).
pub async fn restore(
    config: &Config,
    from: &Path,
    force: bool,
    out: Out<'_>,
) -> Result<(), Failure> {
    let target = match store_kind(config) {
        StoreKind::Postgres => return Err(Failure::Usage(format!("restore: {POSTGRES}"))),
        StoreKind::Sqlite(None) => {
            return Err(Failure::Usage(
                "restore: store.url is an in-memory SQLite database; nothing to restore into"
                    .into(),
            ));
        }
        StoreKind::Sqlite(Some(p)) | StoreKind::Redb(p) => p,
    };
    if crate::control::server_running(config) {
        return Err(Failure::Usage(format!(
            "restore: a server is running ({} answers); stop the server first",
            crate::control::socket_path(config).display()
        )));
    }
    if same_file(&target, from) {
        return Err(Failure::Usage(format!(
            "--from {}: that is the store itself",
            from.display()
        )));
    }
    let redb = matches!(store_kind(config), StoreKind::Redb(_));
    // Verify first: nothing is touched when the backup is unsound.
    let summary = if redb {
        if target.exists() {
            // A damaged store is exactly what a restore replaces: only a
            // file held by a process stops it.
            if let Err(smtpy::redb::BackupError::InUse(_)) = smtpy::redb::schema_version(&target) {
                return Err(Failure::Usage(format!(
                    "restore: {} is in use by another process (a running server?); stop the \
                     server first",
                    target.display()
                )));
            }
        }
        let source = from.to_owned();
        let checked = tokio::task::spawn_blocking(move || smtpy::redb::verify(&source))
            .await
            .map_err(|e| Failure::Runtime(format!("verification task failed: {e}")))?
            .map_err(|e| Failure::Runtime(format!("restore refused: {e}")))?;
        (
            checked.schema_version,
            checked.tables.iter().map(|(_, n)| n).sum::<u64>(),
            checked.tables.len(),
        )
    } else {
        let checked = smtpy_store_sql::verify_sqlite_file(from)
            .await
            .map_err(|e| Failure::Runtime(format!("restore refused: {}: {e}", from.display())))?;
        (
            u64::try_from(checked.schema_version).unwrap_or(0),
            checked.tables.iter().map(|(_, n)| n).sum::<u64>(),
            checked.tables.len(),
        )
    };
    // SQLite keeps recent commits in `-wal`/`-shm` files next to the
    // database: they belong to the old file and move with it.
    let companions: Vec<PathBuf> = if redb {
        Vec::new()
    } else {
        ["-wal", "-shm"]
            .iter()
            .map(|s| suffixed(&target, s))
            .collect()
    };
    if target.exists() {
        if !force {
            return Err(Failure::Usage(format!(
                "restore: {} exists; add --force to replace it (the current file is kept as {})",
                target.display(),
                suffixed(&target, ".before-restore").display()
            )));
        }
        for file in std::iter::once(&target).chain(companions.iter()) {
            if file.exists() {
                let kept = suffixed(file, ".before-restore");
                std::fs::rename(file, &kept).map_err(|e| {
                    Failure::Runtime(format!(
                        "cannot move {} to {}: {e}",
                        file.display(),
                        kept.display()
                    ))
                })?;
                say!(
                    out,
                    "kept the previous {} as {}",
                    file.display(),
                    kept.display()
                );
            }
        }
    } else if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| Failure::Runtime(format!("cannot create {}: {e}", parent.display())))?;
    }
    let tmp = suffixed(&target, ".restore-tmp");
    let copied = std::fs::copy(from, &tmp)
        .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &target));
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&tmp);
        return Err(Failure::Runtime(format!(
            "cannot copy {} to {}: {e}",
            from.display(),
            target.display()
        )));
    }
    if let Some(dir) = target.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    say!(
        out,
        "restored {} from {} (verified: schema version {}, {} rows in {} tables)",
        target.display(),
        from.display(),
        summary.0,
        summary.1,
        summary.2
    );
    Ok(())
}

/// `path` with `suffix` appended to its file name.
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
