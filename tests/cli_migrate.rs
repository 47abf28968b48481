//! `migrate status|up|down` on SQLite, PostgreSQL (a fresh database per
//! test; skipped without `SMTPY_TEST_POSTGRES_URL`, failing under `CI`)
//! and redb. Needs `cargo build --example server` first.

#[path = "e2e/cli.rs"]
mod cli;

use cli::Setup;

/// `(version, state)` per line of `migrate status`.
fn states(status: &str) -> Vec<(String, String)> {
    status
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let version = words.next()?;
            let state = l.split_whitespace().last()?;
            version
                .chars()
                .all(|c| c.is_ascii_digit())
                .then(|| (version.to_owned(), state.to_owned()))
        })
        .collect()
}

fn sql_migrations(s: &Setup) {
    // A new database: nothing applied yet (the command does not migrate on open).
    let status = s.run(&["migrate", "status"]);
    let fresh = states(status.ok());
    assert!(fresh.len() >= 3, "{status:?}");
    assert!(fresh.iter().all(|(_, st)| st == "pending"), "{fresh:?}");
    assert!(status.stdout.contains("0001 init"), "{status:?}");

    let up = s.run(&["migrate", "up"]);
    let latest = fresh.len();
    assert!(
        up.ok().contains(&format!("schema at version {latest}")),
        "{up:?}"
    );
    let applied = states(s.run(&["migrate", "status"]).ok());
    assert!(applied.iter().all(|(_, st)| st == "applied"), "{applied:?}");

    let down = s.run(&["migrate", "down", "--to", "1"]);
    assert!(down.ok().contains("schema at version 1"), "{down:?}");
    let after = states(s.run(&["migrate", "status"]).ok());
    assert_eq!(after[0], ("0001".to_owned(), "applied".to_owned()));
    assert!(
        after[1..].iter().all(|(_, st)| st == "pending"),
        "{after:?}"
    );

    s.run(&["migrate", "down", "--to", "99"])
        .fails(2, "--to 99");
    s.run(&["migrate", "down", "--to", "-1"]).fails(2, "");
    s.run(&["migrate", "down"]).fails(2, "--to");

    // Other commands bring the schema up to date by themselves.
    s.run(&["admin", "domain", "create", "alias.test"]).ok();
    let current = states(s.run(&["migrate", "status"]).ok());
    assert!(current.iter().all(|(_, st)| st == "applied"), "{current:?}");
    let list = s.run(&["admin", "domain", "list"]);
    assert!(list.ok().contains("alias.test"), "{list:?}");
}

#[test]
fn migrate_on_sqlite() {
    sql_migrations(&Setup::sqlite());
}

#[test]
fn migrate_on_postgres() {
    let Some(base) = postgres_url() else {
        return;
    };
    let name = format!(
        "smtpy_cli_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let admin = |sql: String| {
        runtime.block_on(async {
            use sqlx::Connection as _;
            let mut conn = sqlx::PgConnection::connect(&base)
                .await
                .expect("connect to SMTPY_TEST_POSTGRES_URL");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .expect("admin statement");
        })
    };
    admin(format!("CREATE DATABASE {name}"));
    struct Cleanup<F: FnMut()>(F);
    impl<F: FnMut()> Drop for Cleanup<F> {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    let _cleanup = Cleanup(|| admin(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")));
    let url = match base.rfind('/') {
        Some(i) if base[..i].contains("://") && i > base.find("://").unwrap_or(0) + 2 => {
            format!("{}/{name}", &base[..i])
        }
        _ => panic!("SMTPY_TEST_POSTGRES_URL should end with /<database>: {base}"),
    };
    sql_migrations(&Setup::url(&url));
    // PostgreSQL is backed up with its own tools.
    let s = Setup::url(&url);
    s.run(&["backup", "--out", "x.dump"]).fails(2, "pg_dump");
    s.run(&["restore", "--from", "x.dump"])
        .fails(2, "pg_restore");
}

fn postgres_url() -> Option<String> {
    match std::env::var("SMTPY_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("SMTPY_TEST_POSTGRES_URL is not set, but CI is: the PostgreSQL tests must run")
        }
        _ => {
            eprintln!("skipped: SMTPY_TEST_POSTGRES_URL is not set");
            None
        }
    }
}

#[test]
fn migrate_on_redb() {
    let s = Setup::redb();
    let none = s.run(&["migrate", "status"]);
    assert!(none.ok().contains("no store at"), "{none:?}");
    let up = s.run(&["migrate", "up"]);
    assert!(up.ok().contains("schema version "), "{up:?}");
    let status = s.run(&["migrate", "status"]);
    assert!(
        status.ok().starts_with("schema version ") && status.stdout.contains("(current)"),
        "{status:?}"
    );
    s.run(&["migrate", "down", "--to", "1"])
        .fails(2, "redb stores cannot be downgraded; restore a backup");
}
