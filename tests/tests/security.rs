//! No SQL is built from strings: every raw statement in library and binary
//! code is a string literal (values go in as bind parameters), or comes from
//! one of the few builders below that format only numbers from configuration.

use std::path::{Path, PathBuf};

/// Builders whose SQL holds only configuration numbers (timeouts, workload
/// sizes), never input: `PRAGMA busy_timeout = 5000`, the load check's sizes.
const FIXED_TEXT_BUILDERS: &[&str] = &[
    "config.sqlite_setup_sql()",
    "self.sqlite_sql",
    "pragmas",
    "$workload.mismatched_rows_sql()",
];

/// Statements on identifiers, which SQL cannot bind: allowed with names the
/// program generated itself (`keel_bench_<pid>_<nanos>`), never input.
const IDENTIFIER_STATEMENTS: &[&str] = &[
    "\"CREATE DATABASE {",
    "\"DROP DATABASE IF EXISTS {",
    "\"PRAGMA busy_timeout = {",
];

/// Calls that send SQL text as written.
const RAW_SQL_CALLS: &[&str] = &[
    "sql_query(",
    "batch_execute(",
    "diesel::dsl::sql::<",
    "dsl::sql::<",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            // Test code may build whatever SQL it likes against its own databases.
            if path
                .file_name()
                .is_some_and(|n| n == "tests" || n == "target")
            {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn raw_sql_is_literal_text_or_a_fixed_builder() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    rust_files(&root.join("xtask"), &mut files);
    assert!(
        files.len() > 20,
        "the walk found the sources: {}",
        files.len()
    );

    let mut offenders = Vec::new();
    let mut raw_calls = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read source");
        if file.ends_with("tests/security.rs") {
            continue;
        }
        for call in RAW_SQL_CALLS {
            for (at, _) in text.match_indices(call) {
                raw_calls += 1;
                let argument = text[at + call.len()..].trim_start();
                let argument = argument.strip_prefix('&').unwrap_or(argument);
                let literal = argument.starts_with('"')
                    || argument.starts_with("r\"")
                    || argument.starts_with("r#\"");
                let generic_type = call.ends_with('<'); // dsl::sql::<T>("..."): check the text after the type
                let fixed = FIXED_TEXT_BUILDERS.iter().any(|b| argument.starts_with(b));
                let constant = argument
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_uppercase())
                    && argument
                        .chars()
                        .take_while(|c| *c != ')')
                        .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit());
                let identifiers = argument
                    .strip_prefix("format!(")
                    .map(str::trim_start)
                    .is_some_and(|text| IDENTIFIER_STATEMENTS.iter().any(|s| text.starts_with(s)));
                // `fn sql_query(` declarations, and the one test-module call in
                // keel-workload that applies its fixed list of literal changes.
                let declaration = text[..at].ends_with("fn ") || argument.starts_with("change)");
                // A connection's own `batch_execute` handing its caller's text
                // to the driver: the caller's call is the one checked.
                let pass_through = argument.starts_with("query)")
                    && text[..at]
                        .rfind("fn batch_execute(&mut self, query: &str)")
                        .is_some_and(|declared| at - declared < 200);
                if !(literal
                    || fixed
                    || constant
                    || identifiers
                    || generic_type
                    || declaration
                    || pass_through)
                {
                    let line = text[..at].lines().count();
                    offenders.push(format!(
                        "{}:{line}: {call}{}",
                        file.display(),
                        argument.lines().next().unwrap_or_default()
                    ));
                }
            }
        }
    }
    assert!(
        raw_calls > 5,
        "the scan saw the raw SQL calls it guards: {raw_calls}"
    );
    assert!(
        offenders.is_empty(),
        "SQL built from strings (use the query builder or bind parameters):\n{}",
        offenders.join("\n")
    );
}
