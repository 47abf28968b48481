//! The queue conformance suite of `smtpy_core::testing` on redb: every test
//! gets a fresh, empty queue in its own temporary database file, removed
//! when the store is dropped.

use std::sync::Arc;

use smtpy_core::store::QueueStore;
use smtpy_store_redb::RedbStore;

fn fresh_queue() -> Arc<dyn QueueStore> {
    let store = RedbStore::builder()
        // Small: each test queues a few messages.
        .cache_size(16 * 1024 * 1024)
        .open_temporary()
        .expect("open a temporary redb store");
    Arc::new(store)
}

smtpy_core::queue_conformance_suite!(|| async { Some(fresh_queue()) });
