//! # smtpy-http
//!
//! The optional HTTP layer of smtpy: an axum `Router` with the REST API v1,
//! authentication, OpenAPI, metrics and health endpoints, built from a
//! `Store` so another Rust service can mount it.
//!
//! Not built yet: this crate holds only its documentation until the HTTP
//! work lands. The design is in `docs/architecture.md`.
