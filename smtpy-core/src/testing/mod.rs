//! The backend conformance suite: the contracts of [`crate::store`], as tests.
//!
//! Every backend (memory, redb, SQLite, PostgreSQL) runs the same functions;
//! a backend passes them or it is not done. Each test is a plain
//! `pub async fn name(store: &dyn Store)` that panics on a contract
//! violation, so a backend can also call one directly while debugging.
//!
//! The usual way in is [`conformance_suite!`](crate::conformance_suite), in a
//! backend's integration test file (the crate needs `tokio` as a
//! dev-dependency and `smtpy-core` with the `testing` feature):
//!
//! ```no_run
//! // tests/conformance.rs of a backend crate; here with the in-memory store.
//! use std::sync::Arc;
//! use smtpy_core::{memory::MemoryStore, Store};
//!
//! smtpy_core::conformance_suite!(|| async {
//!     Some(Arc::new(MemoryStore::new()) as Arc<dyn Store>)
//! });
//! # fn main() {}
//! ```
//!
//! It expands to one `#[tokio::test]` per test function, in a module named
//! `conformance`, so `cargo test conformance` runs exactly the suite. A
//! factory returning `None` means the backend is not available here (no
//! database server): every test prints `skipped: …` and passes. To run the
//! suite twice in one file (say SQLite and PostgreSQL), name the modules:
//! `conformance_suite!(conformance_sqlite, || async { … })`.
//!
//! # Writing tests that survive a shared store
//!
//! Each generated test gets a fresh store from the factory, but the tests are
//! written so they also pass on a store that already holds other rows (a
//! PostgreSQL schema shared by parallel tests): addresses and names are
//! unique (UUID-based, see [`fixtures`]), lists are searched for the test's
//! own rows, and counts are compared before and after. The global purges
//! (`purge_deleted_aliases`, `purge_expired_sessions`, `purge_rate_limits`,
//! `purge_events`, `purge_expired_invitations`, `rollup_usage`) are each called by one test only, with cut-offs far
//! before the fixed timestamps every other test uses ([`fixtures::T0`]).

mod aliases;
mod aliases_lifecycle;
mod aliases_list;
mod audit;
mod contacts;
mod control;
mod credentials;
mod domains;
mod events;
mod expect;
pub mod fixtures;
mod mailboxes;
mod queue;
mod ratelimit;
mod rules;
mod store;
mod usage;
mod users;

pub use aliases::*;
pub use aliases_lifecycle::*;
pub use aliases_list::*;
pub use audit::*;
pub use contacts::*;
pub use control::*;
pub use credentials::*;
pub use domains::*;
pub use events::*;
pub use mailboxes::*;
pub use queue::*;
pub use ratelimit::*;
pub use rules::*;
pub use store::*;
pub use usage::*;
pub use users::*;

/// Expands to one `#[tokio::test]` per conformance test, each running
/// against a store made by the given factory.
///
/// The factory is an expression callable with no arguments that returns a
/// future of `Option<Arc<dyn smtpy_core::Store>>`; `None` means the backend is
/// not available (the tests print `skipped: …` and pass). It is called once
/// per test, so every test gets a fresh store. The tests are generated in a
/// module (`conformance` by default, or the name given first) that glob-imports
/// the calling module, so the factory may use the caller's own items.
///
/// ```no_run
/// use std::sync::Arc;
/// use smtpy_core::{memory::MemoryStore, Store};
///
/// async fn fresh() -> Option<Arc<dyn Store>> {
///     Some(Arc::new(MemoryStore::new()))
/// }
/// // Twice in one file, in two named modules (e.g. SQLite and PostgreSQL):
/// smtpy_core::conformance_suite!(conformance_a, || async { fresh().await });
/// smtpy_core::conformance_suite!(conformance_b, || async { fresh().await });
/// # fn main() {}
/// ```
///
/// The calling crate must have `tokio` (with the `macros` and
/// `rt-multi-thread` features) as a dependency.
///
/// This is the one list of test names: a test added here runs on every backend.
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr $(,)?) => {
        $crate::conformance_suite!(conformance, $factory);
    };
    ($module:ident, $factory:expr $(,)?) => {
        $crate::__conformance_tests! { $module, $factory;
            // store
            store_ping_and_backend_name,
            // users
            user_create_get_round_trip,
            user_duplicate_email_is_already_exists,
            user_get_missing_is_not_found,
            user_find_by_email_case_and_idna,
            user_update_round_trip_and_revision,
            user_settings_round_trip,
            user_settings_update_and_revision,
            user_update_stale_revision_is_conflict,
            user_update_email_duplicate_is_already_exists,
            user_update_missing_is_not_found,
            user_concurrent_updates_one_wins,
            user_count,
            user_list_pagination,
            user_delete_cascades,
            user_delete_missing_is_not_found,
            // credentials
            api_key_create_find_round_trip,
            api_key_duplicate_hash_is_already_exists,
            api_key_owner_must_exist,
            api_key_list_by_owner,
            api_key_touch_never_moves_backwards,
            api_key_delete_is_owner_scoped,
            session_create_find_round_trip,
            session_touch_never_moves_backwards,
            session_delete_is_idempotent,
            session_list_and_delete_user_sessions,
            session_purge_expired_boundary,
            invitation_create_find_round_trip,
            invitation_redeem_once,
            invitation_redeem_expired_is_gone,
            invitation_concurrent_redeem_one_wins,
            invitation_list_and_delete,
            // domains
            domain_create_get_round_trip,
            domain_duplicate_name_is_already_exists,
            domain_owner_must_exist,
            domain_get_missing_and_cross_owner,
            domain_find_by_name_case_and_idna,
            domain_list_visibility,
            domain_update_round_trip_and_revision,
            domain_disabled_round_trip,
            domain_update_stale_revision_is_conflict,
            domain_concurrent_updates_one_wins,
            domain_shared_is_read_only_for_others,
            domain_delete_conflicts_while_aliases_exist,
            domain_default_mailboxes_must_be_owners,
            // mailboxes
            mailbox_create_get_round_trip,
            mailbox_duplicate_per_owner,
            mailbox_owner_must_exist,
            mailbox_get_missing_and_cross_owner,
            mailbox_list_by_owner,
            mailbox_find_by_token,
            mailbox_update_round_trip_and_revision,
            mailbox_update_conflicts_and_scoping,
            mailbox_concurrent_updates_one_wins,
            mailbox_delete_conflicts_while_referenced,
            // aliases
            alias_create_get_round_trip,
            alias_duplicate_address_is_already_exists,
            alias_create_referential_checks,
            alias_create_many,
            alias_get_missing_and_cross_owner,
            alias_find_by_address_case_and_idna,
            alias_update_round_trip_ignores_non_editable,
            alias_update_conflicts_and_scoping,
            alias_concurrent_updates_one_wins,
            alias_record_activity,
            alias_record_activity_concurrent,
            alias_list_filters,
            alias_list_deleted_filter,
            alias_list_cross_owner,
            alias_list_pagination,
            alias_list_pagination_stable_under_inserts,
            alias_list_limit_clamping,
            alias_soft_delete_and_restore,
            alias_bulk_update_each_action,
            alias_bulk_update_all_or_nothing,
            alias_purge_leaves_tombstones,
            alias_purge_respects_older_than,
            // contacts
            contact_create_get_round_trip,
            contact_duplicates_are_already_exists,
            contact_alias_must_exist_and_be_owners,
            contact_get_missing_and_cross_owner,
            contact_find_case_insensitive,
            contact_find_by_reverse_key,
            contact_list_scoping_and_pagination,
            contact_update_round_trip_ignores_non_editable,
            contact_concurrent_updates_one_wins,
            contact_delete,
            // rules
            rule_create_get_round_trip,
            rule_create_scope_must_be_visible,
            rule_get_missing_and_cross_owner,
            rule_list_by_priority_then_id,
            rules_for_alias_selects_applicable,
            rule_update_round_trip_and_revision,
            rule_concurrent_updates_one_wins,
            rule_delete_is_owner_scoped,
            rule_reorder,
            rule_reorder_invalid_changes_nothing,
            // audit
            audit_append_list_round_trip,
            audit_owner_scoping,
            audit_filter_action_and_since,
            audit_pagination,
            // delivery events
            event_append_list_round_trip,
            event_list_newest_first_pagination_under_inserts,
            event_filter_each_field,
            event_filter_combined,
            event_owner_scoping,
            event_count,
            event_purge,
            event_append_is_atomic,
            // usage
            usage_records_sum_per_day,
            usage_owner_scoping,
            // rate limits
            rate_limit_matches_gcra_decide,
            rate_limit_burst_then_denied_then_allowed,
            rate_limit_keys_are_independent,
            rate_limit_concurrent_spends_burst_exactly,
            rate_limit_purge,
            // control plane
            control_settings_round_trip_and_versioning,
            control_lease_exclusive_extend_release,
            control_lease_lapse_and_takeover,
            control_lease_concurrent_one_wins,
            control_job_runs_recorded,
            control_expired_aliases,
            control_purge_expired_invitations,
            control_usage_rollup_preserves_totals,
        }
    };
}

/// Implementation detail of [`conformance_suite!`](crate::conformance_suite).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($module:ident, $factory:expr; $($name:ident),* $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let store: ::std::option::Option<::std::sync::Arc<dyn $crate::Store>> =
                        ($factory)().await;
                    let ::std::option::Option::Some(store) = store else {
                        ::std::eprintln!(
                            "skipped: {}: backend not available",
                            ::std::stringify!($name)
                        );
                        return;
                    };
                    $crate::testing::$name(&*store).await;
                }
            )*
        }
    };
}

/// The queue conformance suite: like [`conformance_suite!`](crate::conformance_suite),
/// for a [`QueueStore`](crate::store::QueueStore). The factory returns a
/// future of `Option<Arc<dyn smtpy_core::store::QueueStore>>` holding a
/// fresh, empty queue (`None`: not available, the tests print `skipped: …`).
///
/// ```no_run
/// use std::sync::Arc;
/// use smtpy_core::{memory::MemoryStore, store::QueueStore};
///
/// smtpy_core::queue_conformance_suite!(|| async {
///     Some(Arc::new(MemoryStore::new()) as Arc<dyn QueueStore>)
/// });
/// # fn main() {}
/// ```
///
/// This is the one list of queue test names.
#[macro_export]
macro_rules! queue_conformance_suite {
    ($factory:expr $(,)?) => {
        $crate::queue_conformance_suite!(queue_conformance, $factory);
    };
    ($module:ident, $factory:expr $(,)?) => {
        $crate::__queue_conformance_tests! { $module, $factory;
            queue_enqueue_round_trip,
            queue_lease_due_rules,
            queue_complete_attempt,
            queue_stale_lease_is_conflict,
            queue_follow_ups_are_atomic,
            queue_concurrent_leases_are_exclusive,
            queue_release_lease,
            queue_operator_actions,
            queue_complete_attempts_batch,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __queue_conformance_tests {
    ($module:ident, $factory:expr; $($name:ident),* $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let queue: ::std::option::Option<
                        ::std::sync::Arc<dyn $crate::store::QueueStore>,
                    > = ($factory)().await;
                    let ::std::option::Option::Some(queue) = queue else {
                        ::std::eprintln!(
                            "skipped: {}: backend not available",
                            ::std::stringify!($name)
                        );
                        return;
                    };
                    $crate::testing::$name(&*queue).await;
                }
            )*
        }
    };
}
