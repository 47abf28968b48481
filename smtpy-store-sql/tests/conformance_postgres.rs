//! The backend conformance suite on PostgreSQL: a fresh schema per test.
//!
//! Needs `SMTPY_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`);
//! without it every test prints `skipped: …` and passes, unless `CI` is set,
//! where the tests fail instead.

mod common;

smtpy_core::conformance_suite!(conformance_postgres, common::postgres_store);
