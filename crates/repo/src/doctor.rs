//! Schema health checks on a live database: what `keel doctor` reports, and
//! what a service's own tests can assert.

use std::collections::BTreeSet;

use diesel::QueryResult;
use serde::Serialize;

use crate::catalog::{Catalog, ColumnInfo};

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Which check found it: `unindexed_foreign_key`, `no_delete_action`,
    /// `no_primary_key`, `schema_drift` (or `pending_migration`, added by
    /// the caller).
    pub check: &'static str,
    /// The table concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// The column concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// What is wrong and what would fix it.
    pub message: String,
}

/// The columns a compiled `SELECT` of every column of `table` names, read
/// from the SQL diesel generates for it (`table.select(table::all_columns)`).
pub fn columns_of<Q>(table: &str, select_all: &Q) -> Vec<ColumnInfo>
where
    Q: diesel::query_builder::QueryFragment<diesel::sqlite::Sqlite>,
{
    let sql = diesel::debug_query::<diesel::sqlite::Sqlite, _>(select_all).to_string();
    // `SELECT `users`.`id`, `users`.`email`, … FROM `users``
    let list = sql.split(" FROM ").next().unwrap_or_default();
    list.trim_start_matches("SELECT ")
        .split(", ")
        .filter_map(|qualified| qualified.rsplit('.').next())
        .map(|name| ColumnInfo {
            table: table.to_owned(),
            name: name.trim_matches(['`', '"']).to_owned(),
        })
        .collect()
}

/// Runs every catalog check on `conn`.
pub fn diagnose(conn: &mut impl Catalog, compiled: &[ColumnInfo]) -> QueryResult<Vec<Finding>> {
    let mut findings = Vec::new();
    let indexes = conn.indexes()?;
    for key in conn.foreign_keys()? {
        let indexed = indexes
            .iter()
            .any(|i| i.table == key.table && i.columns.first() == Some(&key.column));
        if !indexed {
            findings.push(Finding {
                check: "unindexed_foreign_key",
                message: format!(
                    "foreign key {}.{} -> {} has no index leading with it: deletes in {} scan {}; add CREATE INDEX ix_{}_{} ON {} ({})",
                    key.table, key.column, key.references, key.references, key.table, key.table, key.column, key.table, key.column
                ),
                table: Some(key.table.clone()),
                column: Some(key.column.clone()),
            });
        }
        if key.on_delete == "NO ACTION" {
            findings.push(Finding {
                check: "no_delete_action",
                message: format!(
                    "foreign key {}.{} -> {} has no ON DELETE action: deleting a {} row fails while rows point at it",
                    key.table, key.column, key.references, key.references
                ),
                table: Some(key.table),
                column: Some(key.column),
            });
        }
    }
    for table in conn.tables_without_primary_key()? {
        findings.push(Finding {
            check: "no_primary_key",
            message: format!("table {table} has no primary key"),
            table: Some(table),
            column: None,
        });
    }
    let live: BTreeSet<ColumnInfo> = conn.columns()?.into_iter().collect();
    let compiled: BTreeSet<ColumnInfo> = compiled.iter().cloned().collect();
    let live_tables: BTreeSet<&str> = live.iter().map(|c| c.table.as_str()).collect();
    let compiled_tables: BTreeSet<&str> = compiled.iter().map(|c| c.table.as_str()).collect();
    for table in compiled_tables.difference(&live_tables) {
        findings.push(Finding {
            check: "schema_drift",
            message: format!(
                "the compiled schema has table {table} but the database does not: run `keel migrate run`"
            ),
            table: Some((*table).to_owned()),
            column: None,
        });
    }
    for missing in compiled.difference(&live) {
        if !live_tables.contains(missing.table.as_str()) {
            continue; // reported above, once per table
        }
        findings.push(Finding {
            check: "schema_drift",
            message: format!(
                "the compiled schema has {}.{} but the database does not: run `keel migrate run`, or regenerate the schema crate",
                missing.table, missing.name
            ),
            table: Some(missing.table.clone()),
            column: Some(missing.name.clone()),
        });
    }
    for extra in live.difference(&compiled) {
        if compiled_tables.contains(extra.table.as_str()) {
            findings.push(Finding {
                check: "schema_drift",
                message: format!(
                    "the database has {}.{} but the compiled schema does not: regenerate the schema crate (`cargo xtask schema-update`)",
                    extra.table, extra.name
                ),
                table: Some(extra.table.clone()),
                column: Some(extra.name.clone()),
            });
        }
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {

    #[test]
    fn compiled_columns_are_read_from_the_schema() {
        let columns = crate::tables::compiled_columns();
        let users: Vec<&str> = columns
            .iter()
            .filter(|c| c.table == "users")
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            users,
            [
                "created_at",
                "email",
                "first_name",
                "full_name",
                "id",
                "is_active",
                "last_name"
            ]
        );
        assert_eq!(columns.len(), 7 + 5 + 6 + 2 + 2);
    }
}
