//! Several store instances on one database (several smtpy processes):
//! read-decide-write stays atomic across them.

mod common;

use std::sync::Arc;

use smtpy_core::Store;
use smtpy_core::gcra::Quota;
use smtpy_core::time::Timestamp;
use smtpy_store_sql::{SqlStore, SqlStoreOptions};

/// Two instances on one schema spend a burst exactly once between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limit_is_atomic_across_instances() {
    let Some(first) = common::new_postgres_store().await else {
        return;
    };
    let url = common::postgres_url().expect("set, since the first store exists");
    let second = Arc::new(
        SqlStoreOptions::new()
            .schema(first.schema().expect("schema"))
            .connect(&url)
            .await
            .expect("second instance"),
    );
    assert_burst_spent_once(first as Arc<dyn Store>, second as Arc<dyn Store>).await;
}

/// The same across two SQLite pools on one file (two processes).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_rate_limit_is_atomic_across_instances() {
    let dir = common::temp_dir();
    let url = common::sqlite_url(&dir);
    let first = Arc::new(SqlStore::connect(&url).await.expect("first"));
    let second = Arc::new(SqlStore::connect(&url).await.expect("second"));
    assert_burst_spent_once(first as Arc<dyn Store>, second as Arc<dyn Store>).await;
    let _ = std::fs::remove_dir_all(dir);
}

async fn assert_burst_spent_once(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    const BURST: u32 = 10;
    let quota = Quota::per_hour(BURST).expect("quota");
    let key = format!("k-{}", uuid::Uuid::now_v7().simple());
    let now = Timestamp::from_unix_secs(1_700_000_000);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            store.check_rate(&key, &quota, now, 1).await
        }));
    }
    let mut allowed = 0;
    for t in tasks {
        if t.await.expect("join").expect("check_rate").allowed {
            allowed += 1;
        }
    }
    assert_eq!(
        allowed, BURST,
        "exactly the burst passes, whichever instance asks"
    );
}
