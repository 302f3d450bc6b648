//! Statement counting on diesel's `Instrumentation`: how many SQL statements
//! a piece of code really sent, for tests and for request metrics.

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use diesel::connection::{Instrumentation, InstrumentationEvent};

use crate::{QueryScope, StatementLog};

/// Counts the SQL statements run on every connection it is installed on,
/// and reports each to the [`QueryScope`] current where it runs.
///
/// Transaction control (`BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`,
/// `RELEASE`) is not counted: a count is the queries the code asked for.
/// Clones share one count, so a pool installs a clone on each connection and
/// reads the total; a service's test can do the same on its own connection
/// with `conn.set_instrumentation(counter.clone())`.
#[derive(Debug, Clone, Default)]
pub struct StatementCounter {
    /// Every statement started, transaction control included.
    started: Arc<AtomicU64>,
    /// Transaction events (begin, commit, rollback, savepoints): diesel and
    /// diesel-async each send exactly one statement for each, so the
    /// difference counts the queries without formatting a single one.
    transaction_control: Arc<AtomicU64>,
    /// What each statement logs (`KEEL_LOG_STATEMENTS`); per connection.
    log: StatementLog,
    /// The statements being logged, oldest first: their text and when they
    /// started (several when they were pipelined; PostgreSQL answers them in
    /// order).
    running: std::collections::VecDeque<(String, std::time::Instant)>,
}

impl StatementCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Statements counted so far.
    pub fn count(&self) -> u64 {
        // Read the subtrahend first: a transaction in flight can only make
        // the result lag by its BEGIN, never underflow.
        let control = self.transaction_control.load(Ordering::Acquire);
        self.started.load(Ordering::Acquire).saturating_sub(control)
    }

    /// The same counter, logging each statement as `log` says: through
    /// `tracing` (target `keel_repo::statements`, level INFO), with its
    /// duration and the current scope's name, after it finished. Bind values
    /// only with [`StatementLog::SqlAndBinds`].
    #[must_use]
    pub fn logging(mut self, log: StatementLog) -> Self {
        self.log = log;
        self
    }

    /// Runs `f` and returns its result with the statements it ran. Only
    /// meaningful when nothing else uses the counted connections meanwhile.
    pub fn measure<T>(&self, f: impl FnOnce() -> T) -> (T, u64) {
        let before = self.count();
        let result = f();
        (result, self.count() - before)
    }
}

impl Instrumentation for StatementCounter {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { query, .. } => {
                self.started.fetch_add(1, Ordering::AcqRel);
                if self.log != StatementLog::Off {
                    let text = match self.log {
                        StatementLog::SqlAndBinds => query.to_string(),
                        _ => sql_text(query),
                    };
                    self.running.push_back((text, std::time::Instant::now()));
                }
                // Always taken, so a note never outlives its statement.
                let noted = crate::scope::shapes::take();
                // Only a scope needs the shape. A statement sent with `run!`
                // is known by its type; any other is formatted (diesel builds
                // its SQL again for that).
                if let Some(scope) = QueryScope::current() {
                    if let Some(noted) = noted {
                        let shape = crate::scope::shapes::shape_of(noted, query);
                        if !shape.control {
                            scope.record_noted(shape);
                        }
                    } else {
                        let text = sql_text(query);
                        let keyword = leading_keyword(&text);
                        if !is_transaction_control(&keyword) {
                            scope.record_statement(&keyword, text);
                        }
                    }
                }
            }
            InstrumentationEvent::FinishQuery { error, .. } => {
                if let Some((statement, started)) = self.running.pop_front() {
                    let scope = QueryScope::current();
                    tracing::info!(
                        target: "keel_repo::statements",
                        scope = scope.as_ref().map_or("-", |s| s.name()),
                        elapsed_us = started.elapsed().as_micros() as u64,
                        failed = error.is_some(),
                        "{statement}"
                    );
                }
            }
            InstrumentationEvent::BeginTransaction { .. }
            | InstrumentationEvent::CommitTransaction { .. }
            | InstrumentationEvent::RollbackTransaction { .. } => {
                self.transaction_control.fetch_add(1, Ordering::AcqRel);
            }
            _ => {}
        }
    }
}

/// What diesel's `debug_query` writes between a statement's SQL and its
/// bind values.
const BINDS_MARKER: &str = " -- binds: ";

/// The statement's SQL without its bind values. diesel's `debug_query`
/// writes the SQL, then [`BINDS_MARKER`], then every bind: formatting stops
/// at the marker, so a statement with 10,000 binds (an `IN` list, a bulk
/// insert) costs no more than its SQL.
pub(crate) fn sql_text(query: &dyn fmt::Display) -> String {
    struct UntilBinds(String);
    impl fmt::Write for UntilBinds {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            match s.find(BINDS_MARKER) {
                Some(end) => {
                    self.0.push_str(&s[..end]);
                    Err(fmt::Error) // the SQL is complete: stop formatting
                }
                None => {
                    self.0.push_str(s);
                    Ok(())
                }
            }
        }
    }
    let mut text = UntilBinds(String::new());
    let _ = write!(text, "{query}");
    let sql = text.0.trim();
    if sql.len() == text.0.len() {
        text.0
    } else {
        sql.to_owned()
    }
}

/// The statement's first word, upper-cased, read without formatting the
/// whole statement (this runs for every query).
pub(crate) fn leading_keyword(query: &dyn fmt::Display) -> String {
    struct FirstWord(String);
    impl fmt::Write for FirstWord {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for c in s.chars() {
                if c.is_ascii_alphabetic() {
                    self.0.push(c.to_ascii_uppercase());
                } else if !self.0.is_empty() || !c.is_whitespace() {
                    return Err(fmt::Error); // the word is complete: stop formatting
                }
            }
            Ok(())
        }
    }
    let mut word = FirstWord(String::with_capacity(16));
    let _ = write!(word, "{query}");
    word.0
}

pub(crate) fn is_transaction_control(keyword: &str) -> bool {
    matches!(
        keyword,
        "BEGIN" | "COMMIT" | "ROLLBACK" | "SAVEPOINT" | "RELEASE" | "END"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_text_leaves_out_the_binds_without_formatting_them() {
        use diesel::prelude::*;
        use keel_schema::users;

        let ids: Vec<i32> = (1..=3).collect();
        let query = users::table
            .filter(users::id.eq_any(ids))
            .select(users::email);
        let debug = diesel::debug_query::<diesel::sqlite::Sqlite, _>(&query);
        let full = debug.to_string();
        assert!(full.contains("-- binds: [1, 2, 3]"), "{full}");
        let sql = sql_text(&debug);
        assert!(sql.starts_with("SELECT `users`.`email`"), "{sql}");
        assert_eq!(sql, full.split(" -- binds:").next().unwrap_or_default());

        /// A statement whose binds would never finish formatting: only the
        /// SQL is read, whether the marker comes alone (a rendered SQL
        /// string, as diesel's) or after the SQL in one piece.
        struct Endless(Option<String>);
        impl fmt::Display for Endless {
            // The literal is joined to the marker in one piece: the case tested.
            #[allow(clippy::write_literal)]
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match &self.0 {
                    Some(sql) => write!(f, "{sql} -- binds: {}", Endless(self.0.clone())),
                    None => write!(f, "{} -- binds: {}", "SELECT 1", Endless(None)),
                }
            }
        }
        assert_eq!(sql_text(&Endless(Some("SELECT 2 ".into()))), "SELECT 2");
        assert_eq!(sql_text(&Endless(None)), "SELECT 1");
    }

    #[test]
    fn leading_keyword_reads_the_first_word_only() {
        assert_eq!(leading_keyword(&"  begin immediate"), "BEGIN");
        assert_eq!(leading_keyword(&"SELECT 1"), "SELECT");
        assert_eq!(
            leading_keyword(&"RELEASE SAVEPOINT diesel_savepoint_1"),
            "RELEASE"
        );
        assert!(is_transaction_control(&leading_keyword(
            &"ROLLBACK TO SAVEPOINT x"
        )));
        assert!(!is_transaction_control(&leading_keyword(
            &"SELECT \"users\".\"id\""
        )));
    }

    /// What a sync SQLite pool logs for one lookup by email, as `log` says.
    #[cfg(feature = "sync")]
    fn logged_lookup(log: StatementLog) -> String {
        use std::sync::{Arc, Mutex};

        use crate::prelude::*;
        use crate::{DatabaseConfig, DatabaseUrl, sync::Database};

        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("log buffer").extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = DatabaseConfig::new(DatabaseUrl::Sqlite(
            dir.path().join("log.db").display().to_string(),
        ));
        config.log_statements = log;
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let db = Database::connect(&config).expect("pool");
            db.run_migrations().expect("migrate");
            let missing = db.users().get_by_email("secret-value@example.com");
            assert!(matches!(missing, Err(RepoError::NotFound { .. })));
        });
        let bytes = captured.0.lock().expect("log buffer").clone();
        String::from_utf8(bytes).expect("utf-8 log")
    }

    #[cfg(feature = "sync")]
    #[test]
    fn statements_are_logged_with_binds_only_when_asked() {
        let off = logged_lookup(StatementLog::Off);
        assert!(!off.contains("keel_repo::statements"), "{off}");

        let sql = logged_lookup(StatementLog::Sql);
        let line = sql
            .lines()
            .find(|l| l.contains("keel_repo::statements") && l.contains("`email` = ?"))
            .unwrap_or_else(|| panic!("no logged lookup in:\n{sql}"));
        assert!(line.contains("elapsed_us="), "{line}");
        assert!(
            !sql.contains("secret-value"),
            "bind values must stay out: {sql}"
        );

        let binds = logged_lookup(StatementLog::SqlAndBinds);
        assert!(binds.contains("secret-value@example.com"), "{binds}");
    }
}
