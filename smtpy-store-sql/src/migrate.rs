//! Versioned, reversible schema migrations, embedded in the binary.
//!
//! Each dialect has its own directory, `migrations/sqlite/` and
//! `migrations/postgres/`, with `NNNN_name.up.sql` / `NNNN_name.down.sql`
//! pairs. The files are compiled in with `include_str!` and run by sqlx's
//! [`Migrator`], which records applied versions (with a checksum of each
//! file) in the [`MIGRATIONS_TABLE`] table of the store's database or
//! schema, takes a PostgreSQL advisory lock while it runs (so several
//! instances starting at once apply each migration exactly once) and runs
//! each migration in its own transaction.
//!
//! The bookkeeping table is smtpy's own, not sqlx's default
//! `_sqlx_migrations`: an application that embeds smtpy and keeps its own
//! sqlx migrations in the same database would otherwise see smtpy's versions
//! as unknown ones (and the reverse).

use std::borrow::Cow;

use smtpy_core::StoreError;
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use crate::db::{Db, Dialect, Pool, args, classify};

/// One embedded migration: version, description, up and down SQL per dialect.
struct Embedded {
    version: i64,
    description: &'static str,
    sqlite_up: &'static str,
    sqlite_down: &'static str,
    postgres_up: &'static str,
    postgres_down: &'static str,
}

/// Every migration, in version order. Add new ones at the end; never edit
/// one that has shipped (its checksum is recorded where it was applied).
const MIGRATIONS: &[Embedded] = &[
    Embedded {
        version: 1,
        description: "init",
        sqlite_up: include_str!("../migrations/sqlite/0001_init.up.sql"),
        sqlite_down: include_str!("../migrations/sqlite/0001_init.down.sql"),
        postgres_up: include_str!("../migrations/postgres/0001_init.up.sql"),
        postgres_down: include_str!("../migrations/postgres/0001_init.down.sql"),
    },
    Embedded {
        version: 2,
        description: "queue",
        sqlite_up: include_str!("../migrations/sqlite/0002_queue.up.sql"),
        sqlite_down: include_str!("../migrations/sqlite/0002_queue.down.sql"),
        postgres_up: include_str!("../migrations/postgres/0002_queue.up.sql"),
        postgres_down: include_str!("../migrations/postgres/0002_queue.down.sql"),
    },
    Embedded {
        version: 3,
        description: "events_settings",
        sqlite_up: include_str!("../migrations/sqlite/0003_events_settings.up.sql"),
        sqlite_down: include_str!("../migrations/sqlite/0003_events_settings.down.sql"),
        postgres_up: include_str!("../migrations/postgres/0003_events_settings.up.sql"),
        postgres_down: include_str!("../migrations/postgres/0003_events_settings.down.sql"),
    },
    Embedded {
        version: 4,
        description: "control",
        sqlite_up: include_str!("../migrations/sqlite/0004_control.up.sql"),
        sqlite_down: include_str!("../migrations/sqlite/0004_control.down.sql"),
        postgres_up: include_str!("../migrations/postgres/0004_control.up.sql"),
        postgres_down: include_str!("../migrations/postgres/0004_control.down.sql"),
    },
    Embedded {
        version: 5,
        description: "domain_disabled",
        sqlite_up: include_str!("../migrations/sqlite/0005_domain_disabled.up.sql"),
        sqlite_down: include_str!("../migrations/sqlite/0005_domain_disabled.down.sql"),
        postgres_up: include_str!("../migrations/postgres/0005_domain_disabled.up.sql"),
        postgres_down: include_str!("../migrations/postgres/0005_domain_disabled.down.sql"),
    },
];

/// The newest schema version this build knows.
pub const LATEST_VERSION: i64 = 5;

/// The table recording which migrations are applied.
pub const MIGRATIONS_TABLE: &str = "_smtpy_migrations";

fn migrator(dialect: Dialect) -> Migrator {
    let mut list = Vec::with_capacity(MIGRATIONS.len() * 2);
    for m in MIGRATIONS {
        let (up, down) = match dialect {
            Dialect::Sqlite => (m.sqlite_up, m.sqlite_down),
            Dialect::Postgres => (m.postgres_up, m.postgres_down),
        };
        list.push(Migration::new(
            m.version,
            Cow::Borrowed(m.description),
            MigrationType::ReversibleUp,
            up.into_sql_str(),
            false,
        ));
        list.push(Migration::new(
            m.version,
            Cow::Borrowed(m.description),
            MigrationType::ReversibleDown,
            down.into_sql_str(),
            false,
        ));
    }
    let mut migrator = Migrator::with_migrations(list);
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
}

/// Where one migration stands in a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// Version number (`1` for `0001_init`).
    pub version: i64,
    /// Description taken from the file name (`"init"`).
    pub description: String,
    /// Whether it is applied to the database.
    pub applied: bool,
    /// Whether the database records it as applied with a different checksum
    /// than the embedded file (the file was edited after it shipped).
    pub checksum_mismatch: bool,
}

fn migrate_err(dialect: Dialect, e: sqlx::migrate::MigrateError) -> StoreError {
    match e {
        sqlx::migrate::MigrateError::Execute(inner)
        | sqlx::migrate::MigrateError::ExecuteMigration(inner, _) => classify(dialect, inner),
        other => StoreError::backend(dialect.name(), other),
    }
}

/// Applies every pending migration.
pub(crate) async fn up(db: &Db) -> Result<(), StoreError> {
    let dialect = db.dialect();
    let m = migrator(dialect);
    let result = match &db.pool {
        Pool::Sqlite(p) => m.run(p).await,
        Pool::Postgres(p) => m.run(p).await,
    };
    result.map_err(|e| migrate_err(dialect, e))
}

/// Reverts applied migrations newer than `target` (0 reverts everything).
pub(crate) async fn down(db: &Db, target: i64) -> Result<(), StoreError> {
    let dialect = db.dialect();
    let m = migrator(dialect);
    let result = match &db.pool {
        Pool::Sqlite(p) => m.undo(p, target).await,
        Pool::Postgres(p) => m.undo(p, target).await,
    };
    result.map_err(|e| migrate_err(dialect, e))
}

/// Every embedded migration and whether it is applied.
pub(crate) async fn status(db: &Db) -> Result<Vec<MigrationStatus>, StoreError> {
    let dialect = db.dialect();
    let mut s = db.read().await?;
    let table_exists = match dialect {
        Dialect::Sqlite => {
            s.exists(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = $1",
                args![MIGRATIONS_TABLE],
            )
            .await?
        }
        Dialect::Postgres => {
            s.exists(
                "SELECT 1 FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = $1",
                args![MIGRATIONS_TABLE],
            )
            .await?
        }
    };
    let mut applied: Vec<(i64, Vec<u8>)> = Vec::new();
    if table_exists {
        let rows = s
            .fetch_all(
                format!(
                    "SELECT version, checksum FROM {MIGRATIONS_TABLE} WHERE success ORDER BY version"
                ),
                args![],
            )
            .await?;
        for row in rows {
            applied.push((row.get("version")?, row.get("checksum")?));
        }
    }
    let m = migrator(dialect);
    Ok(m.iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| {
            let found = applied.iter().find(|(v, _)| *v == m.version);
            MigrationStatus {
                version: m.version,
                description: m.description.to_string(),
                applied: found.is_some(),
                checksum_mismatch: found.is_some_and(|(_, sum)| sum.as_slice() != &*m.checksum),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_and_latest_is_the_last() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{}", m.description);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(LATEST_VERSION));
    }

    /// The `DEFAULT` that migration 0003 gives existing users' `settings`
    /// is the JSON of `UserSettings::default()`, in both dialects: users
    /// created before it keep the settings they had in effect.
    #[test]
    fn settings_default_is_the_default_settings() {
        let expected = serde_json::to_value(smtpy_core::model::UserSettings::default())
            .expect("settings serialise");
        let m = MIGRATIONS
            .iter()
            .find(|m| m.version == 3)
            .expect("migration 3");
        for up in [m.sqlite_up, m.postgres_up] {
            let line = up
                .lines()
                .find(|l| l.starts_with("ALTER TABLE users ADD COLUMN settings"))
                .expect("the settings column");
            let json = line
                .split_once("DEFAULT '")
                .and_then(|(_, rest)| rest.strip_suffix("';"))
                .expect("a quoted default");
            let found: serde_json::Value = serde_json::from_str(json).expect("JSON");
            assert_eq!(found, expected);
            let settings: smtpy_core::model::UserSettings =
                serde_json::from_str(json).expect("reads as settings");
            assert_eq!(settings, smtpy_core::model::UserSettings::default());
        }
    }
}
