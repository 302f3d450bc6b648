//! SQLite connections that keep the plan they were prepared with: keel
//! opens every SQLite connection with SQLite's query planner stability
//! guarantee (QPSG) on, unless [`DatabaseConfig::sqlite_stable_plans`]
//! turns it off.
//!
//! Why: once a database has `ANALYZE` statistics (`ANALYZE`, or the
//! `PRAGMA optimize` SQLite recommends), a SQLite built with STAT4, as the
//! bundled library is, plans a statement with the values bound to it. A
//! statement whose plan looked at a bound value (an equality on a
//! non-unique index, a range, a `LIMIT`) is then prepared again on its
//! next step every time that value is bound anew: a cached statement is
//! parsed and planned on every call, which undoes diesel's statement cache.
//! Measured on the workload's comments of one post (`post_id = ?`, 20,000
//! calls): every call prepared again, about 5x the time of a call without.
//! With QPSG a statement keeps the plan it was prepared with (as
//! PostgreSQL's generic plans do), and every call of a cached statement is
//! a bind and a step. What is given up: a plan chosen for one value on
//! skewed data (a value matching most rows scanned instead of searched).
//!
//! How: diesel 2.3 does not hand out the `sqlite3` handle, where the
//! setting lives. SQLite calls its auto-extensions on the opening thread,
//! inside `sqlite3_open_v2`; keel registers one, once per process, and it
//! acts only while keel itself opens a connection on that thread (a
//! thread-local flag). Other SQLite connections of the process are left as
//! they are.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::ffi::{c_char, c_int};
use std::sync::Once;

use diesel::sqlite::SqliteConnection;
use diesel::{Connection, ConnectionResult};
use libsqlite3_sys as ffi;

#[cfg(doc)]
use crate::DatabaseConfig;

thread_local! {
    /// Set while keel opens a connection on this thread that should have
    /// stable plans.
    static OPENING_STABLE: Cell<bool> = const { Cell::new(false) };
}

/// Opens the SQLite database at `path`, with stable plans when asked.
pub(crate) fn establish(path: &str, stable_plans: bool) -> ConnectionResult<SqliteConnection> {
    opening(stable_plans, || SqliteConnection::establish(path))
}

/// Runs `open`, in which SQLite connections opened on this thread get
/// stable plans when `stable_plans` is set: for openers keel does not call
/// itself (diesel's r2d2 manager).
pub(crate) fn opening<T>(stable_plans: bool, open: impl FnOnce() -> T) -> T {
    if !stable_plans {
        return open();
    }
    register_once();
    crate::scope::with_thread_flag(&OPENING_STABLE, open)
}

fn register_once() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: `on_open` has the signature SQLite calls auto-extensions
        // with, and is a plain function that lives as long as the process.
        let rc = unsafe { ffi::sqlite3_auto_extension(Some(on_open)) };
        if rc != ffi::SQLITE_OK {
            // Only out of memory; the connections then plan as SQLite does by default.
            tracing::warn!(
                code = rc,
                "could not register keel's SQLite open hook: plans follow bound values"
            );
        }
    });
}

/// SQLite's auto-extension entry point, called for every connection the
/// process opens after [`register_once`].
unsafe extern "C" fn on_open(
    db: *mut ffi::sqlite3,
    _error: *mut *mut c_char,
    _api: *const ffi::sqlite3_api_routines,
) -> c_int {
    if OPENING_STABLE.get() {
        // SAFETY: `db` is the connection SQLite is opening, valid for the
        // call. SQLITE_DBCONFIG_ENABLE_QPSG takes an int (1: on) and an
        // optional int pointer for the new value, here none.
        unsafe {
            ffi::sqlite3_db_config(
                db,
                ffi::SQLITE_DBCONFIG_ENABLE_QPSG,
                1 as c_int,
                std::ptr::null_mut::<c_int>(),
            );
        }
    }
    ffi::SQLITE_OK
}
