//! keel's database schema: the `table!` definitions that `diesel print-schema`
//! generates from `migrations/postgres` (see `diesel.toml` at the workspace root).
//!
//! `schema.rs` is generated; never edit it by hand. Change a migration, then run
//! `diesel migration run` (or `diesel print-schema > crates/schema/src/schema.rs`)
//! and `cargo xtask schema-check` to confirm both backends still agree with it.
//! The same definitions serve PostgreSQL and SQLite because the migrations only
//! use column types the two backends share.

mod schema;

pub use schema::*;
