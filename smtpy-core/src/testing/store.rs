//! The `Store` trait's own methods.

use crate::store::Store;

/// `ping` answers `Ok` and `backend_name` is a non-empty name.
pub async fn store_ping_and_backend_name(store: &dyn Store) {
    store.ping().await.expect("ping of a working store");
    let name = store.backend_name();
    assert!(!name.is_empty(), "backend_name must not be empty");
    assert!(
        !name.contains(char::is_whitespace),
        "backend_name is a short word for logs, got {name:?}"
    );
}
