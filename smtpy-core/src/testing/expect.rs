//! Assertions on store errors, with the caller's location in the panic.

use std::fmt::Debug;

use crate::error::{StoreError, StoreResult};

/// Panics unless `result` is `NotFound`.
#[track_caller]
pub(crate) fn not_found<T: Debug>(result: StoreResult<T>, what: &str) {
    match result {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

/// Panics unless `result` is `NotFound { entity }`.
#[track_caller]
pub(crate) fn not_found_entity<T: Debug>(result: StoreResult<T>, entity: &str, what: &str) {
    match result {
        Err(StoreError::NotFound { entity: e }) if e == entity => {}
        other => panic!("{what}: expected NotFound {{ entity: {entity:?} }}, got {other:?}"),
    }
}

/// Panics unless `result` is `AlreadyExists`.
#[track_caller]
pub(crate) fn already_exists<T: Debug>(result: StoreResult<T>, what: &str) {
    match result {
        Err(StoreError::AlreadyExists { .. }) => {}
        other => panic!("{what}: expected AlreadyExists, got {other:?}"),
    }
}

/// Panics unless `result` is `Conflict`.
#[track_caller]
pub(crate) fn conflict<T: Debug>(result: StoreResult<T>, what: &str) {
    match result {
        Err(StoreError::Conflict { .. }) => {}
        other => panic!("{what}: expected Conflict, got {other:?}"),
    }
}

/// Panics unless `result` is `Gone`.
#[track_caller]
pub(crate) fn gone<T: Debug>(result: StoreResult<T>, what: &str) {
    match result {
        Err(StoreError::Gone { .. }) => {}
        other => panic!("{what}: expected Gone, got {other:?}"),
    }
}

/// Panics unless `result` is `Invalid`.
#[track_caller]
pub(crate) fn invalid<T: Debug>(result: StoreResult<T>, what: &str) {
    match result {
        Err(StoreError::Invalid { .. }) => {}
        other => panic!("{what}: expected Invalid, got {other:?}"),
    }
}

/// Panics unless exactly one of `results` is `Ok` and every other one is
/// `Conflict`; returns the `Ok` value.
#[track_caller]
pub(crate) fn one_ok_rest_conflict<T: Debug>(results: Vec<StoreResult<T>>, what: &str) -> T {
    let mut winner = None;
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(v) if winner.is_none() => winner = Some(v),
            Ok(v) => panic!("{what}: more than one concurrent call succeeded (also {v:?})"),
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => errors.push(e),
        }
    }
    assert!(
        errors.is_empty(),
        "{what}: losers must fail with Conflict, got {errors:?}"
    );
    match winner {
        Some(v) => v,
        None => panic!("{what}: no concurrent call succeeded"),
    }
}

/// Panics unless the two addresses are spelled the same (stores return
/// addresses as written; `EmailAddress` equality alone ignores case).
#[track_caller]
pub(crate) fn same_spelling(
    stored: &crate::address::EmailAddress,
    written: &crate::address::EmailAddress,
    what: &str,
) {
    assert_eq!(
        stored.to_string(),
        written.to_string(),
        "{what}: the address must be returned as written"
    );
    assert_eq!(
        stored.local_part().as_str(),
        written.local_part().as_str(),
        "{what}: the local part must keep its case"
    );
}
