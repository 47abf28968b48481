//! Alias lookup by address — the hot path of every RCPT TO — on each
//! persistent backend with a large number of aliases stored, and the bytes
//! on disk each alias costs.
//!
//! ```sh
//! cargo bench --bench store_lookup                                   # 1,000,000 aliases
//! SMTPY_BENCH_ALIASES=100000 cargo bench --bench store_lookup        # quicker
//! SMTPY_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench store_lookup
//! SMTPY_BENCH_BACKENDS=redb,sqlite cargo bench --bench store_lookup   # only some backends
//! ```
//!
//! Besides criterion's estimates it prints, per backend, the p50/p90/p99 of
//! single lookups (criterion reports means of batches, not per-call
//! percentiles) and the bytes on disk per alias, indexes included.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use smtpy_core::Store;
use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::model::{Alias, Domain, Mailbox, Role, User};
use smtpy_core::time::Timestamp;
use smtpy_store_redb::RedbStore;
use smtpy_store_sql::{SqlStore, SqlStoreOptions};

const DOMAIN: &str = "bench.example";
const BATCH: usize = 10_000;
const SAMPLES: usize = 20_000;

fn alias_count() -> usize {
    std::env::var("SMTPY_BENCH_ALIASES")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1_000_000)
}

/// True if the backend is selected by `SMTPY_BENCH_BACKENDS` (all when unset).
fn selected(name: &str) -> bool {
    std::env::var("SMTPY_BENCH_BACKENDS").map_or(true, |v| v.split(',').any(|b| b.trim() == name))
}

fn local_part(i: usize) -> String {
    format!("shop{i:07}")
}

fn address(i: usize) -> EmailAddress {
    EmailAddress::parse(&format!("{}@{DOMAIN}", local_part(i))).expect("bench address")
}

/// Deterministic pseudo-random indexes (xorshift), so every backend sees the same lookups.
struct Indexes(u64, usize);
impl Iterator for Indexes {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Some((self.0 % self.1 as u64) as usize)
    }
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
        let batch: Vec<Alias> = (made..n.min(made + BATCH))
            .map(|i| Alias::new(address(i), user.id, domain.id, vec![mailbox.id], now))
            .collect();
        store.create_aliases(&batch).await.expect("create_aliases");
        made += batch.len();
    }
    eprintln!(
        "  seeded {n} aliases in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

fn percentiles(rt: &tokio::runtime::Runtime, store: &dyn Store, n: usize) -> String {
    let addrs: Vec<EmailAddress> = Indexes(0x9E37_79B9_7F4A_7C15, n)
        .take(SAMPLES)
        .map(address)
        .collect();
    let mut took: Vec<Duration> = Vec::with_capacity(SAMPLES);
    rt.block_on(async {
        for a in &addrs {
            let t = Instant::now();
            let found = store.find_alias_by_address(a).await.expect("lookup");
            took.push(t.elapsed());
            assert!(found.is_some(), "{a} must be found");
        }
    });
    took.sort_unstable();
    let p = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
    format!(
        "p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs",
        p(0.50).as_secs_f64() * 1e6,
        p(0.90).as_secs_f64() * 1e6,
        p(0.99).as_secs_f64() * 1e6
    )
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn bench_backend(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    store: &dyn Store,
    n: usize,
    disk_bytes: &dyn Fn() -> u64,
) {
    eprintln!("{name}:");
    rt.block_on(seed(store, n));
    let bytes = disk_bytes();
    eprintln!(
        "  {name}: {n} aliases, {bytes} bytes on disk, {:.0} bytes/alias",
        bytes as f64 / n as f64
    );
    eprintln!("  {name}: single lookups: {}", percentiles(rt, store, n));
    let mut idx = Indexes(0x2545_F491_4F6C_DD1D, n);
    c.bench_function(&format!("alias_lookup/{name}/{n}"), |b| {
        b.to_async(rt).iter_batched(
            || address(idx.next().unwrap_or(0)),
            |a| async move { black_box(store.find_alias_by_address(&a).await.expect("lookup")) },
            criterion::BatchSize::SmallInput,
        );
    });
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(50)
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let n = alias_count();
    let dir = tempfile::tempdir().expect("tempdir");

    if selected("redb") {
        let path = dir.path().join("bench.redb");
        let redb: Arc<dyn Store> = Arc::new(RedbStore::open(&path).expect("redb"));
        bench_backend(&mut c, &rt, "redb", &*redb, n, &|| file_size(&path));
    }
    if selected("sqlite") {
        sqlite(&mut c, &rt, dir.path(), n);
    }
    if selected("postgres") {
        postgres(&mut c, &rt, n);
    }
    c.final_summary();
}

fn sqlite(c: &mut Criterion, rt: &tokio::runtime::Runtime, dir: &Path, n: usize) {
    // SQLite (WAL): the database file plus its write-ahead log.
    let path = dir.join("bench.sqlite");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let sqlite = rt.block_on(SqlStore::connect(&url)).expect("sqlite");
    let wal = dir.join("bench.sqlite-wal");
    let sqlite_ref = &sqlite;
    bench_backend(c, rt, "sqlite", &sqlite, n, &|| {
        if let Some(pool) = sqlite_ref.sqlite_pool() {
            let _ = rt.block_on(sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(pool));
        }
        file_size(&path) + file_size(&wal)
    });
    rt.block_on(sqlite.close());
}

fn postgres(c: &mut Criterion, rt: &tokio::runtime::Runtime, n: usize) {
    // PostgreSQL over loopback, in a schema of its own (dropped at the end).
    match std::env::var("SMTPY_TEST_POSTGRES_URL") {
        Ok(url) => {
            let schema = format!("smtpy_bench_{}", std::process::id());
            let pg = rt
                .block_on(SqlStoreOptions::new().schema(schema.clone()).connect(&url))
                .expect("postgres");
            let pg_ref = &pg;
            let schema_ref = &schema;
            bench_backend(c, rt, "postgres", &pg, n, &|| {
                let Some(pool) = pg_ref.postgres_pool() else {
                    return 0;
                };
                rt.block_on(async {
                    let _ = sqlx::query("VACUUM ANALYZE").execute(pool).await;
                    sqlx::query_scalar::<_, i64>(
                        "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::BIGINT \
                         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                         WHERE n.nspname = $1 AND c.relkind = 'r'",
                    )
                    .bind(schema_ref)
                    .fetch_one(pool)
                    .await
                    .map(|b| u64::try_from(b).unwrap_or(0))
                    .unwrap_or(0)
                })
            });
            if let Some(pool) = pg.postgres_pool() {
                let drop_schema = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                let _ = rt.block_on(sqlx::query(sqlx::AssertSqlSafe(drop_schema)).execute(pool));
            }
            rt.block_on(pg.close());
        }
        Err(_) => eprintln!("postgres: skipped: SMTPY_TEST_POSTGRES_URL not set"),
    }
}
