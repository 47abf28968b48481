//! The conformance suite on the in-memory reference store.
#![cfg(feature = "testing")]

smtpy_core::conformance_suite!(|| async {
    Some(std::sync::Arc::new(smtpy_core::memory::MemoryStore::new())
        as std::sync::Arc<dyn smtpy_core::Store>)
});

smtpy_core::queue_conformance_suite!(|| async {
    Some(std::sync::Arc::new(smtpy_core::memory::MemoryStore::new())
        as std::sync::Arc<dyn smtpy_core::store::QueueStore>)
});
