//! The backend conformance suite of `smtpy_core::testing`, on redb: every
//! test gets a fresh database file in its own temporary directory, removed
//! when the store is dropped.

use std::sync::Arc;

use smtpy_core::Store;
use smtpy_store_redb::RedbStore;

fn fresh_store() -> Arc<dyn Store> {
    let store = RedbStore::builder()
        // Small: the suite's stores hold a few rows each.
        .cache_size(16 * 1024 * 1024)
        .open_temporary()
        .expect("open a temporary redb store");
    Arc::new(store)
}

smtpy_core::conformance_suite!(|| async { Some(fresh_store()) });

/// Two background job schedulers sharing one redb store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_share_leases() {
    smtpy_core::testing::jobs_two_schedulers_share_leases(fresh_store()).await;
}
