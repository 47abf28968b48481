//! Enqueue throughput of the SQL queue: how many messages per second become
//! durable with 1, 10 and 50 concurrent enqueuers (SMTP sessions at end of
//! DATA), on SQLite (group commit) and, when a server is given, PostgreSQL.
//!
//! ```sh
//! cargo run --release -p smtpy-store-sql --example sql_queue_throughput
//! SMTPY_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo run --release -p smtpy-store-sql --example sql_queue_throughput
//! ```
//!
//! Each enqueuer loops on `enqueue` of a fresh message with one recipient
//! and a 1 KiB body (`SMTPY_QUEUE_BODY` bytes to change it) until the run's
//! messages are all stored. Printed per dialect and concurrency: messages
//! per second, mean latency of one enqueue, and the commits made (SQLite:
//! `messages / commits` is the mean group-commit batch). SQLite runs on a
//! file in the temporary directory with `synchronous=FULL`, so every commit
//! is an fsync of the WAL; PostgreSQL in a fresh schema, dropped afterwards,
//! with the server's settings (`synchronous_commit = on` for a fair figure).

use std::sync::Arc;
use std::time::{Duration, Instant};

use smtpy_core::StoreError;
use smtpy_core::store::QueueStore;
use smtpy_core::testing::new_message;
use smtpy_store_sql::{SqlStore, SqlStoreOptions};

const CONCURRENCY: [usize; 3] = [1, 10, 50];

/// Messages per run, scaled so each run takes about a second or more.
fn messages_for(concurrency: usize) -> usize {
    match concurrency {
        1 => 500,
        10 => 3_000,
        _ => 10_000,
    }
}

fn body_size() -> usize {
    std::env::var("SMTPY_QUEUE_BODY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

/// One run: `total` enqueues from `concurrency` tasks.
async fn run(store: &Arc<SqlStore>, concurrency: usize, total: usize) -> Result<(), StoreError> {
    let size = body_size();
    let (commits_before, stored_before) = store.enqueue_commit_counts();
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let store = Arc::clone(store);
            tokio::spawn(async move {
                let mut latency = Duration::ZERO;
                let mut n = 0u32;
                for _ in (task..total).step_by(concurrency) {
                    let mut m = new_message(1);
                    m.body = Arc::from(vec![b'x'; size]);
                    let t = Instant::now();
                    store.enqueue(&m).await?;
                    latency += t.elapsed();
                    n += 1;
                }
                Ok::<_, StoreError>((latency, n))
            })
        })
        .collect();
    let mut latency = Duration::ZERO;
    let mut n = 0u32;
    for t in tasks {
        let (l, k) = t
            .await
            .map_err(|e| StoreError::backend("bench", e.to_string()))??;
        latency += l;
        n += k;
    }
    let elapsed = started.elapsed();
    let (commits, stored) = store.enqueue_commit_counts();
    let (commits, stored) = (commits - commits_before, stored - stored_before);
    println!(
        "{:<8} {:>4} enqueuers  {:>8.0} msg/s  {:>8.2} ms/enqueue  {:>6} commits ({:.1} msg/commit)",
        store.dialect().name(),
        concurrency,
        total as f64 / elapsed.as_secs_f64(),
        latency.as_secs_f64() * 1000.0 / f64::from(n.max(1)),
        commits,
        stored as f64 / commits.max(1) as f64,
    );
    Ok(())
}

async fn bench(store: Arc<SqlStore>) -> Result<(), StoreError> {
    // Warm up: connections open, statements prepared.
    run_quiet(&store).await?;
    for c in CONCURRENCY {
        run(&store, c, messages_for(c)).await?;
    }
    Ok(())
}

async fn run_quiet(store: &Arc<SqlStore>) -> Result<(), StoreError> {
    for _ in 0..20 {
        store.enqueue(&new_message(1)).await?;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), StoreError> {
    println!("body {} bytes", body_size());
    let dir = tempfile::tempdir().map_err(|e| StoreError::backend("bench", e))?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("queue.db").display()
    );
    let sqlite = Arc::new(SqlStore::connect(&url).await?);
    bench(Arc::clone(&sqlite)).await?;
    sqlite.close().await;

    if let Ok(url) = std::env::var("SMTPY_TEST_POSTGRES_URL") {
        let schema = format!("smtpy_bench_{}", uuid::Uuid::now_v7().simple());
        let pg = Arc::new(
            SqlStoreOptions::new()
                .schema(schema.clone())
                .max_connections(50)
                .connect(&url)
                .await?,
        );
        let result = bench(Arc::clone(&pg)).await;
        if let Some(pool) = pg.postgres_pool() {
            // A name generated above: a prefix and hex digits.
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA \"{schema}\" CASCADE"
            )))
            .execute(pool)
            .await;
        }
        pg.close().await;
        result?;
    } else {
        println!("postgres: skipped (SMTPY_TEST_POSTGRES_URL not set)");
    }
    Ok(())
}
