//! The latency floor of sqlx on this machine, next to the store's alias
//! lookup: how much of `find_alias_by_address` is the database driver's
//! fixed cost and how much is the store's own work.
//!
//! ```sh
//! cargo run --release -p smtpy-store-sql --example lookup_floor
//! SMTPY_FLOOR_ALIASES=1000000 \
//! SMTPY_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo run --release -p smtpy-store-sql --example lookup_floor
//! ```
//!
//! Like the workspace's `store_lookup` bench, every call is awaited from a
//! `block_on` of a two-worker multi-threaded tokio runtime, one at a time,
//! and the p50/p90/p99 of single calls are printed:
//!
//! * `SELECT 1` through the pool (acquire, query, release) and through one
//!   connection held for the whole run: sqlx's fixed cost per statement
//!   (on SQLite, the hand-off to and from the connection's worker thread;
//!   on PostgreSQL, a loopback round trip);
//! * the lookup statement alone on a held connection (the SQL and the row
//!   transfer, no decoding into an `Alias`);
//! * `find_alias_by_address` itself.

use std::time::{Duration, Instant};

use smtpy_core::Store;
use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::model::{Alias, Domain, Mailbox, Role, User};
use smtpy_core::time::Timestamp;
use smtpy_store_sql::{SqlStore, SqlStoreOptions};
use sqlx::Row as _;

const DOMAIN: &str = "floor.example";
const SAMPLES: usize = 20_000;

fn address(i: usize) -> EmailAddress {
    EmailAddress::parse(&format!("shop{i:07}@{DOMAIN}")).expect("address")
}

fn percentiles(mut took: Vec<Duration>) -> String {
    took.sort_unstable();
    let p = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
    format!(
        "p50 {:>6.1} µs, p90 {:>6.1} µs, p99 {:>6.1} µs",
        p(0.50).as_secs_f64() * 1e6,
        p(0.90).as_secs_f64() * 1e6,
        p(0.99).as_secs_f64() * 1e6
    )
}

/// Times `SAMPLES` sequential calls of `f` (after a warm-up of a tenth).
fn time<F, Fut>(rt: &tokio::runtime::Runtime, mut f: F) -> String
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let took = rt.block_on(async {
        for i in 0..SAMPLES / 10 {
            f(i).await;
        }
        let mut took = Vec::with_capacity(SAMPLES);
        for i in 0..SAMPLES {
            let t = Instant::now();
            f(i).await;
            took.push(t.elapsed());
        }
        took
    });
    percentiles(took)
}

/// Deterministic pseudo-random indexes (xorshift).
fn index(i: usize, n: usize) -> usize {
    let mut x = 0x9E37_79B9_7F4A_7C15_u64 ^ (i as u64);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    (x % n as u64) as usize
}

async fn seed(store: &dyn Store, n: usize) {
    let now = Timestamp::from_unix_secs(1_700_000_000);
    let user = User::new(
        EmailAddress::parse("owner@owner.example").expect("a"),
        Role::User,
        now,
    );
    store.create_user(&user).await.expect("user");
    let domain = Domain::new(
        DomainName::parse(DOMAIN).expect("d"),
        user.id,
        "t".into(),
        now,
    );
    store.create_domain(&domain).await.expect("domain");
    let mailbox = Mailbox::new(
        user.id,
        EmailAddress::parse("me@mail.example").expect("m"),
        now,
    );
    store.create_mailbox(&mailbox).await.expect("mailbox");
    let started = Instant::now();
    let mut made = 0;
    while made < n {
        let batch: Vec<Alias> = (made..n.min(made + 10_000))
            .map(|i| Alias::new(address(i), user.id, domain.id, vec![mailbox.id], now))
            .collect();
        store.create_aliases(&batch).await.expect("create_aliases");
        made += batch.len();
    }
    println!(
        "  seeded {n} aliases in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

macro_rules! floor {
    ($rt:expr, $pool:expr, $lookup_sql:expr, $n:expr) => {{
        let pool = $pool;
        println!(
            "  SELECT 1, pool:             {}",
            time($rt, |_| async {
                let v: i32 = sqlx::query_scalar("SELECT 1")
                    .fetch_one(pool)
                    .await
                    .expect("select 1");
                assert_eq!(v, 1);
            })
        );
        let conn = std::cell::RefCell::new(Some($rt.block_on(pool.acquire()).expect("acquire")));
        println!(
            "  SELECT 1, held connection:  {}",
            time($rt, |_| {
                let mut c = conn.borrow_mut().take().expect("conn");
                let conn = &conn;
                async move {
                    let v: i32 = sqlx::query_scalar("SELECT 1")
                        .fetch_one(&mut *c)
                        .await
                        .expect("select 1");
                    assert_eq!(v, 1);
                    *conn.borrow_mut() = Some(c);
                }
            })
        );
        println!(
            "  lookup SQL, held connection:{}",
            time($rt, |i| {
                let mut c = conn.borrow_mut().take().expect("conn");
                let conn = &conn;
                async move {
                    let row = sqlx::query($lookup_sql)
                        .bind(address(index(i, $n)).canonical())
                        .fetch_optional(&mut *c)
                        .await
                        .expect("lookup");
                    assert!(row.is_some_and(|r| r.len() > 1));
                    *conn.borrow_mut() = Some(c);
                }
            })
        );
        drop(conn);
    }};
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let n: usize = std::env::var("SMTPY_FLOOR_ALIASES")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let lookup_sql = "SELECT a.*, (SELECT group_concat(hex(m.mailbox_id), ',' ORDER BY m.position) \
                      FROM alias_mailboxes m WHERE m.alias_id = a.id) AS mailbox_ids \
                      FROM aliases a WHERE a.address_canonical = $1 AND a.deleted_at IS NULL";
    let pg_lookup_sql = "SELECT a.*, (SELECT string_agg(m.mailbox_id::text, ',' ORDER BY m.position) \
                      FROM alias_mailboxes m WHERE m.alias_id = a.id) AS mailbox_ids \
                      FROM aliases a WHERE a.address_canonical = $1 AND a.deleted_at IS NULL";

    println!("sqlite:");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("floor.db").display()
    );
    let store = rt.block_on(SqlStore::connect(&url)).expect("sqlite");
    rt.block_on(seed(&store as &dyn Store, n));
    floor!(&rt, store.sqlite_pool().expect("pool"), lookup_sql, n);
    println!(
        "  find_alias_by_address:      {}",
        time(&rt, |i| {
            let store: &dyn Store = &store;
            async move {
                let found = store
                    .find_alias_by_address(&address(index(i, n)))
                    .await
                    .expect("lookup");
                assert!(found.is_some());
            }
        })
    );
    rt.block_on(store.close());

    let Ok(pg_url) = std::env::var("SMTPY_TEST_POSTGRES_URL") else {
        println!("postgres: skipped: SMTPY_TEST_POSTGRES_URL not set");
        return;
    };
    println!("postgres:");
    let schema = format!("smtpy_floor_{}", std::process::id());
    let store = rt
        .block_on(
            SqlStoreOptions::new()
                .schema(schema.clone())
                .connect(&pg_url),
        )
        .expect("postgres");
    rt.block_on(seed(&store as &dyn Store, n));
    let pool = store.postgres_pool().expect("pool");
    rt.block_on(sqlx::query("ANALYZE").execute(pool))
        .expect("analyze");
    floor!(&rt, pool, pg_lookup_sql, n);
    println!(
        "  find_alias_by_address:      {}",
        time(&rt, |i| {
            let store: &dyn Store = &store;
            async move {
                let found = store
                    .find_alias_by_address(&address(index(i, n)))
                    .await
                    .expect("lookup");
                assert!(found.is_some());
            }
        })
    );
    let drop_schema = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    let _ = rt.block_on(sqlx::query(sqlx::AssertSqlSafe(drop_schema)).execute(pool));
    rt.block_on(store.close());
}
