//! The backend conformance suite on SQLite: a fresh database file (WAL mode)
//! per test.

mod common;

smtpy_core::conformance_suite!(conformance_sqlite, common::sqlite_store);
