//! `server migrate …`: the store's schema.
//!
//! SQL stores apply numbered migrations (`up`, `down --to N`, `status`:
//! one line per migration, `<version> <name> applied|pending`). A redb
//! file upgrades itself when opened and cannot be downgraded.

use clap::Subcommand;

use crate::Command;
use crate::admin::store_err;
use crate::cli::{Backend, Ctx, Handles, Out, StoreKind, say, store_kind};
use crate::config::Config;
use crate::run::Failure;

/// `migrate …`
#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// Apply every pending migration (redb: open the file, which upgrades it).
    Up,
    /// Revert migrations newer than version N (SQL only; drops their data).
    Down {
        /// The schema version to go back to (0 drops every smtpy table).
        #[arg(long, value_name = "N")]
        to: i64,
    },
    /// Print each migration and whether it is applied (redb: the file's version).
    Status,
}

const REDB_DOWN: &str = "migrate down: redb stores cannot be downgraded; restore a backup \
                         taken before the upgrade (server restore --from FILE)";

/// What can be answered before opening the store (which would upgrade a
/// redb file): `Some(exit code)` when the command is done.
pub fn before_open(
    config: &Config,
    command: &Command,
    out: Out<'_>,
) -> Result<Option<u8>, Failure> {
    let Command::Migrate { action } = command else {
        return Ok(None);
    };
    let StoreKind::Redb(path) = store_kind(config) else {
        return Ok(None);
    };
    match action {
        MigrateAction::Down { .. } => Err(Failure::Usage(REDB_DOWN.into())),
        MigrateAction::Up => Ok(None),
        MigrateAction::Status => {
            let current = smtpy::redb::CURRENT_SCHEMA_VERSION;
            if !path.exists() {
                say!(
                    out,
                    "no store at {} yet: it is created at schema version {current}",
                    path.display()
                );
                return Ok(Some(0));
            }
            match smtpy::redb::schema_version(&path) {
                Ok(Some(v)) if v == current => {
                    say!(out, "schema version {v} (current)");
                    Ok(Some(0))
                }
                Ok(Some(v)) if v < current => {
                    say!(
                        out,
                        "schema version {v}: pending upgrade to {current} (migrate up, or start the server)"
                    );
                    Ok(Some(0))
                }
                Ok(Some(v)) => Err(Failure::Runtime(format!(
                    "schema version {v} is newer than the {current} this smtpy supports"
                ))),
                Ok(None) => Err(Failure::Runtime(format!(
                    "{} has no schema version: not an smtpy store",
                    path.display()
                ))),
                // A running server holds it: ask the server.
                Err(smtpy::redb::BackupError::InUse(_)) => Ok(None),
                Err(e) => Err(Failure::Runtime(e.to_string())),
            }
        }
    }
}

/// Runs a `migrate` command on an open store.
pub async fn run(
    handles: &Handles,
    ctx: &Ctx,
    action: MigrateAction,
    out: Out<'_>,
) -> Result<(), Failure> {
    let sql = match &handles.backend {
        Backend::Redb(_) => {
            return match action {
                MigrateAction::Down { .. } => Err(Failure::Usage(REDB_DOWN.into())),
                MigrateAction::Up | MigrateAction::Status => {
                    say!(
                        out,
                        "schema version {} (current{})",
                        smtpy::redb::CURRENT_SCHEMA_VERSION,
                        if ctx.in_server {
                            ", the running server opened it"
                        } else {
                            ""
                        }
                    );
                    Ok(())
                }
            };
        }
        Backend::Sql(sql) => sql,
    };
    match action {
        MigrateAction::Status => print_status(sql, out).await,
        MigrateAction::Up => {
            sql.migrate_up().await.map_err(store_err)?;
            print_status(sql, out).await?;
            say!(out, "schema at version {}", applied_version(sql).await?);
            Ok(())
        }
        MigrateAction::Down { to } => {
            let latest = smtpy_store_sql::LATEST_VERSION;
            if !(0..=latest).contains(&to) {
                return Err(Failure::Usage(format!(
                    "--to {to}: the versions are 0 (no tables) to {latest}"
                )));
            }
            if ctx.in_server {
                return Err(Failure::Usage("migrate down: stop the server first".into()));
            }
            sql.migrate_down(to).await.map_err(store_err)?;
            print_status(sql, out).await?;
            say!(out, "schema at version {}", applied_version(sql).await?);
            Ok(())
        }
    }
}

async fn applied_version(sql: &smtpy_store_sql::SqlStore) -> Result<i64, Failure> {
    Ok(sql
        .migration_status()
        .await
        .map_err(store_err)?
        .iter()
        .filter(|m| m.applied)
        .map(|m| m.version)
        .max()
        .unwrap_or(0))
}

async fn print_status(sql: &smtpy_store_sql::SqlStore, out: Out<'_>) -> Result<(), Failure> {
    for m in sql.migration_status().await.map_err(store_err)? {
        say!(
            out,
            "{:04} {:<28} {}",
            m.version,
            m.description,
            match (m.applied, m.checksum_mismatch) {
                (true, false) => "applied",
                (true, true) => "applied (checksum differs from this build's file)",
                (false, _) => "pending",
            }
        );
    }
    Ok(())
}
