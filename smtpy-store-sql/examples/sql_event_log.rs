//! The delivery event log at size: what appending costs, what the mail
//! path's questions cost once the log holds many events, and the bytes on
//! disk per event.
//!
//! ```sh
//! cargo run --release -p smtpy-store-sql --example sql_event_log
//! SMTPY_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo run --release -p smtpy-store-sql --example sql_event_log
//! ```
//!
//! Seeds `SMTPY_EVENTS` events (default 200,000) over 1,000 owners, 10,000
//! aliases and 2,000 mailboxes in batches of 1,000, then times: one durable
//! single-event append (what the mail path does per decision), the bounce
//! threshold count (`Bounced` events of one mailbox since an instant), an
//! owner's first page of 50 and a page deep in it, a message's events, and a
//! retention purge of a tenth of the log. SQLite runs on a file in the
//! temporary directory (WAL, `synchronous=FULL`); PostgreSQL, when a server
//! is given, in a fresh schema dropped afterwards.

use std::time::{Duration, Instant};

use smtpy_core::ids::{AliasId, MailboxId, MessageId, UserId};
use smtpy_core::model::{DeliveryEvent, EventFilter, EventKind};
use smtpy_core::store::{Access, EventStore, PageRequest};
use smtpy_core::time::Timestamp;
use smtpy_store_sql::{Dialect, SqlStore, SqlStoreOptions};

type Error = Box<dyn std::error::Error + Send + Sync>;

const OWNERS: usize = 1_000;
const ALIASES: usize = 10_000;
const MAILBOXES: usize = 2_000;
const T0: i64 = 1_700_000_000_000;

struct Ids {
    owners: Vec<UserId>,
    aliases: Vec<AliasId>,
    mailboxes: Vec<MailboxId>,
}

/// Event `i` of the seed: kinds in a realistic mix (spread over every
/// alias, mailbox and owner), one message per three events, one second apart.
fn event(ids: &Ids, i: usize, message: MessageId) -> DeliveryEvent {
    let kind = match i.wrapping_mul(2_654_435_761) % 1_000_003 % 10 {
        0..=3 => EventKind::Accepted,
        4..=7 => EventKind::Delivered,
        8 => EventKind::Deferred,
        _ => EventKind::Bounced,
    };
    let alias = i % ALIASES;
    let mut e = DeliveryEvent::new(kind, Timestamp::from_unix_millis(T0 + i as i64 * 1_000))
        .with("reply", "250 2.0.0 Ok: queued as 4XyZ1");
    e.owner = Some(ids.owners[alias % OWNERS]);
    e.alias = Some(ids.aliases[alias]);
    e.mailbox = Some(ids.mailboxes[alias % MAILBOXES]);
    e.message = Some(message);
    e.sender = Some(format!("sender{}@outside.example", i % 5_000));
    e
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

async fn timed<F, Fut, T>(runs: usize, mut f: F) -> Result<(Duration, Duration), Error>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T, smtpy_core::StoreError>>,
{
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs {
        let start = Instant::now();
        f(i).await?;
        samples.push(start.elapsed());
    }
    Ok((
        percentile(&mut samples, 0.5),
        percentile(&mut samples, 0.99),
    ))
}

fn show(what: &str, (p50, p99): (Duration, Duration)) {
    println!(
        "{what:<44} p50 {:>9.1} µs  p99 {:>9.1} µs",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
}

/// Bytes the event table and its indexes take.
async fn event_bytes(store: &SqlStore) -> Result<u64, Error> {
    let bytes: i64 = match store.dialect() {
        Dialect::Sqlite => {
            sqlx::query_scalar(
                "SELECT COALESCE(SUM(pgsize), 0) FROM dbstat \
                 WHERE name = 'delivery_events' OR name LIKE 'delivery_events_%' \
                 OR name LIKE 'sqlite_autoindex_delivery_events%'",
            )
            .fetch_one(store.sqlite_pool().ok_or("sqlite pool")?)
            .await?
        }
        _ => {
            sqlx::query_scalar("SELECT pg_total_relation_size('delivery_events')")
                .fetch_one(store.postgres_pool().ok_or("postgres pool")?)
                .await?
        }
    };
    Ok(u64::try_from(bytes).unwrap_or(0))
}

async fn run(store: &SqlStore, n: usize) -> Result<(), Error> {
    let name = store.dialect().name();
    let ids = Ids {
        owners: (0..OWNERS).map(|_| UserId::new()).collect(),
        aliases: (0..ALIASES).map(|_| AliasId::new()).collect(),
        mailboxes: (0..MAILBOXES).map(|_| MailboxId::new()).collect(),
    };
    let start = Instant::now();
    let mut message = MessageId::new();
    let mut messages = Vec::new();
    let mut batch = Vec::with_capacity(1_000);
    for i in 0..n {
        if i % 3 == 0 {
            message = MessageId::new();
            messages.push(message);
        }
        batch.push(event(&ids, i, message));
        if batch.len() == 1_000 || i + 1 == n {
            store.append_events(&batch).await?;
            batch.clear();
        }
    }
    let seed = start.elapsed();
    let size = event_bytes(store).await?;
    println!(
        "{name}: {n} events seeded in {:.1} s ({:.0} events/s in batches of 1,000), {} bytes per event (table and indexes)",
        seed.as_secs_f64(),
        n as f64 / seed.as_secs_f64(),
        size / n as u64
    );
    show(
        "append_events, one event (durable)",
        timed(200, |i| {
            let e = event(&ids, n + i, MessageId::new());
            let store = &store;
            async move { store.append_events(&[e]).await }
        })
        .await?,
    );
    let per_mailbox = n / MAILBOXES;
    let bounces = EventFilter {
        mailbox: Some(ids.mailboxes[0]),
        kinds: vec![EventKind::Bounced],
        since: Some(Timestamp::from_unix_millis(T0 + (n as i64 / 2) * 1_000)),
        ..EventFilter::default()
    };
    println!(
        "  (the mailbox has ~{per_mailbox} events; {} bounced in the window)",
        store.count_events(&bounces).await?
    );
    show(
        "count_events: a mailbox's bounces since t",
        timed(200, |_| store.count_events(&bounces)).await?,
    );
    let owner = Access::Owner(ids.owners[0]);
    let all = EventFilter::default();
    show(
        "list_events: an owner's first page of 50",
        timed(200, |_| {
            store.list_events(owner, &all, PageRequest::first(50))
        })
        .await?,
    );
    let mut deep = store
        .list_events(owner, &all, PageRequest::first(50))
        .await?;
    for _ in 0..2 {
        if let Some(c) = deep.next {
            deep = store
                .list_events(owner, &all, PageRequest::after(c, 50))
                .await?;
        }
    }
    if let Some(cursor) = deep.next {
        show(
            "list_events: the owner's 4th page",
            timed(200, |_| {
                store.list_events(owner, &all, PageRequest::after(cursor, 50))
            })
            .await?,
        );
    }
    let delivered = EventFilter {
        kinds: vec![EventKind::Delivered],
        ..EventFilter::default()
    };
    show(
        "list_events: owner, Delivered only, first 50",
        timed(200, |_| {
            store.list_events(owner, &delivered, PageRequest::first(50))
        })
        .await?,
    );
    show(
        "list_events: one message's events (System)",
        timed(200, |i| {
            let filter = EventFilter {
                message: Some(messages[(i * 7919) % messages.len()]),
                ..EventFilter::default()
            };
            let store = &store;
            async move {
                store
                    .list_events(Access::System, &filter, PageRequest::default())
                    .await
            }
        })
        .await?,
    );
    let cut = Timestamp::from_unix_millis(T0 + (n as i64 / 10) * 1_000);
    let start = Instant::now();
    let purged = store.purge_events(cut).await?;
    println!(
        "purge_events: {purged} events in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let n: usize = std::env::var("SMTPY_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("events.db").display()
    );
    let sqlite = SqlStore::connect(&url).await?;
    run(&sqlite, n).await?;
    sqlite.close().await;

    if let Ok(url) = std::env::var("SMTPY_TEST_POSTGRES_URL") {
        let schema = format!("smtpy_bench_{}", uuid::Uuid::now_v7().simple());
        let pg = SqlStoreOptions::new()
            .schema(schema.clone())
            .connect(&url)
            .await?;
        let result = run(&pg, n).await;
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
