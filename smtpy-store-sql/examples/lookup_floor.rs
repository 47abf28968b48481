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
//! `block_on` of a two-worker multi-threaded tokio runtime, one at a time.
//! The probes run interleaved (one call of each per round), so a change in
//! the machine's state during the run — a virtual machine's idle vCPUs make
//! thread wake-ups cost anywhere from 3 to 60 µs — affects them all alike.
//! Printed per probe: p50/p90/p99 of single calls.
//!
//! * `ping-pong`: a round trip to another thread over std channels — the
//!   operating system's cost of two thread wake-ups, which sqlx-sqlite pays
//!   per statement (its connections run on worker threads);
//! * `SELECT 1` through the pool (acquire, query, release) and through one
//!   connection held for the whole run: sqlx's fixed cost per statement;
//! * the store's lookup statement alone on a held connection (the SQL and
//!   the row transfer, no decoding into an `Alias`);
//! * `find_alias_by_address` itself.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use smtpy_core::Store;
use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::model::{Alias, Domain, Mailbox, Role, User};
use smtpy_core::time::Timestamp;
use smtpy_store_sql::{SqlStore, SqlStoreOptions};

const DOMAIN: &str = "floor.example";
const SAMPLES: usize = 20_000;

/// The columns the store reads for an alias.
macro_rules! alias_columns {
    () => {
        "a.id, a.address, a.owner_id, a.domain_id, a.enabled, a.mode, a.disabled_reply, a.note, \
         a.category, a.labels, a.expires_at, a.limit_messages_per_hour, \
         a.limit_max_message_size, a.forwarded, a.blocked, a.replied, a.bounced, \
         a.last_used_at, a.created_at, a.updated_at, a.deleted_at, a.revision"
    };
}

/// The store's lookup statement on SQLite, as of this writing.
const SQLITE_LOOKUP: &str = concat!(
    "SELECT ",
    alias_columns!(),
    ", (SELECT group_concat(hex(m.mailbox_id), ',' ORDER BY m.position) \
     FROM alias_mailboxes m WHERE m.alias_id = a.id) AS mailbox_ids FROM aliases a \
     WHERE a.address_canonical = $1 AND a.deleted_at IS NULL"
);

/// The store's lookup statement on PostgreSQL, as of this writing.
const POSTGRES_LOOKUP: &str = concat!(
    "SELECT ",
    alias_columns!(),
    ", ARRAY(SELECT m.mailbox_id FROM alias_mailboxes m WHERE m.alias_id = a.id \
     ORDER BY m.position) AS mailbox_ids FROM aliases a \
     WHERE a.address_canonical = $1 AND a.deleted_at IS NULL"
);

fn address(i: usize) -> EmailAddress {
    EmailAddress::parse(&format!("shop{i:07}@{DOMAIN}")).expect("address")
}

/// Deterministic pseudo-random indexes (xorshift).
fn index(i: usize, n: usize) -> usize {
    let mut x = 0x9E37_79B9_7F4A_7C15_u64 ^ (i as u64);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    (x % n as u64) as usize
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

/// A thread that answers every message: the OS floor of a hand-off.
struct Echo {
    to: mpsc::Sender<usize>,
    from: mpsc::Receiver<usize>,
}

impl Echo {
    fn start() -> Self {
        let (to, rx) = mpsc::channel::<usize>();
        let (tx, from) = mpsc::channel::<usize>();
        std::thread::spawn(move || {
            for v in rx {
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Self { to, from }
    }

    fn round_trip(&self, i: usize) {
        self.to.send(i).expect("send");
        assert_eq!(self.from.recv().expect("recv"), i);
    }
}

/// Runs the probes interleaved, `SAMPLES` rounds after a warm-up of a
/// tenth, and prints each one's percentiles.
macro_rules! measure {
    ($rt:expr, $n:expr, $($label:literal => |$i:ident| $probe:expr;)+) => {{
        let labels = [$($label),+];
        let mut took: Vec<Vec<Duration>> = labels.iter().map(|_| Vec::with_capacity(SAMPLES)).collect();
        $rt.block_on(async {
            for round in 0..SAMPLES + SAMPLES / 10 {
                let mut k = 0;
                $(
                    let $i = index(round * 7 + k, $n);
                    let t = Instant::now();
                    $probe;
                    let elapsed = t.elapsed();
                    if round >= SAMPLES / 10 {
                        took[k].push(elapsed);
                    }
                    k += 1;
                )+
                let _ = k;
            }
        });
        for (label, took) in labels.iter().zip(took) {
            println!("  {label:<28} {}", percentiles(took));
        }
    }};
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // Pooled connections return to their pool from a spawned task.
    let _runtime = rt.enter();
    let n: usize = std::env::var("SMTPY_FLOOR_ALIASES")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = Echo::start();

    println!("sqlite:");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("floor.db").display()
    );
    let store = rt.block_on(SqlStore::connect(&url)).expect("sqlite");
    rt.block_on(seed(&store, n));
    let pooled = rt
        .block_on(SqlStoreOptions::new().read_connection(false).connect(&url))
        .expect("sqlite");
    let pooled: &dyn Store = &pooled;
    let pool = store.sqlite_pool().expect("pool");
    let mut held = rt.block_on(pool.acquire()).expect("acquire");
    let dyn_store: &dyn Store = &store;
    measure!(rt, n,
        "ping-pong (std threads)" => |_i| echo.round_trip(_i);
        "SELECT 1, pool" => |_i| {
            let v: i32 = sqlx::query_scalar("SELECT 1").fetch_one(pool).await.expect("select 1");
            assert_eq!(v, 1);
        };
        "SELECT 1, held connection" => |_i| {
            let v: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut *held).await.expect("select 1");
            assert_eq!(v, 1);
        };
        "lookup SQL, held connection" => |i| {
            let rows = sqlx::query(SQLITE_LOOKUP)
                .bind(address(i).canonical())
                .fetch_optional(&mut *held)
                .await
                .expect("lookup");
            assert!(rows.is_some());
        };
        "find_alias_by_address" => |i| {
            let found = dyn_store.find_alias_by_address(&address(i)).await.expect("lookup");
            assert!(found.is_some());
        };
        "  … every read pooled" => |i| {
            let found = pooled.find_alias_by_address(&address(i)).await.expect("lookup");
            assert!(found.is_some());
        };
    );
    drop(held);
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
    rt.block_on(seed(&store, n));
    let pooled = rt
        .block_on(
            SqlStoreOptions::new()
                .schema(schema.clone())
                .read_connection(false)
                .connect(&pg_url),
        )
        .expect("postgres");
    let pooled: &dyn Store = &pooled;
    let pool = store.postgres_pool().expect("pool");
    rt.block_on(sqlx::query("ANALYZE").execute(pool))
        .expect("analyze");
    let mut held = rt.block_on(pool.acquire()).expect("acquire");
    let dyn_store: &dyn Store = &store;
    measure!(rt, n,
        "ping-pong (std threads)" => |_i| echo.round_trip(_i);
        "SELECT 1, pool" => |_i| {
            let v: i32 = sqlx::query_scalar("SELECT 1").fetch_one(pool).await.expect("select 1");
            assert_eq!(v, 1);
        };
        "SELECT 1, held connection" => |_i| {
            let v: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut *held).await.expect("select 1");
            assert_eq!(v, 1);
        };
        "lookup SQL, held connection" => |i| {
            let rows = sqlx::query(POSTGRES_LOOKUP)
                .bind(address(i).canonical())
                .fetch_optional(&mut *held)
                .await
                .expect("lookup");
            assert!(rows.is_some());
        };
        "find_alias_by_address" => |i| {
            let found = dyn_store.find_alias_by_address(&address(i)).await.expect("lookup");
            assert!(found.is_some());
        };
        "  … every read pooled" => |i| {
            let found = pooled.find_alias_by_address(&address(i)).await.expect("lookup");
            assert!(found.is_some());
        };
    );
    drop(held);
    let drop_schema = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    let _ = rt.block_on(sqlx::query(sqlx::AssertSqlSafe(drop_schema)).execute(pool));
    rt.block_on(store.close());
}
