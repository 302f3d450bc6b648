//! The live schema as each backend's catalog describes it (tables, columns,
//! primary keys, indexes, foreign keys) in one shape for both backends: what
//! `keel doctor` checks and what tests assert on.

use diesel::pg::PgConnection;
use diesel::sql_types::{Bool, Text};
use diesel::sqlite::SqliteConnection;
use diesel::{QueryResult, QueryableByName, RunQueryDsl, sql_query};

/// An index and the columns it covers, in index order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Index {
    /// The indexed table.
    pub table: String,
    /// The index's name.
    pub name: String,
    /// Indexed columns, leading column first.
    pub columns: Vec<String>,
    /// Whether it enforces uniqueness.
    pub unique: bool,
}

/// A (single-column) foreign key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct ForeignKey {
    /// The referencing table.
    pub table: String,
    /// The referencing column.
    pub column: String,
    /// The referenced table.
    pub references: String,
    /// `CASCADE`, `NO ACTION`, `RESTRICT`, `SET NULL` or `SET DEFAULT`.
    pub on_delete: String,
}

#[derive(QueryableByName)]
struct NameRow {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct IndexRow {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    index_name: String,
    #[diesel(sql_type = Bool)]
    is_unique: bool,
    #[diesel(sql_type = Text)]
    columns: String,
}

#[derive(QueryableByName)]
struct ForeignKeyRow {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    referenced_table: String,
    #[diesel(sql_type = Text)]
    on_delete: String,
}

fn names(rows: Vec<NameRow>) -> Vec<String> {
    let mut names: Vec<String> = rows.into_iter().map(|r| r.name).collect();
    names.sort();
    names
}

fn indexes(rows: Vec<IndexRow>) -> Vec<Index> {
    let mut indexes: Vec<Index> = rows
        .into_iter()
        .map(|r| Index {
            table: r.table_name,
            name: r.index_name,
            columns: r.columns.split(',').map(str::to_owned).collect(),
            unique: r.is_unique,
        })
        .collect();
    indexes.sort();
    indexes
}

fn foreign_keys(rows: Vec<ForeignKeyRow>) -> Vec<ForeignKey> {
    let mut keys: Vec<ForeignKey> = rows
        .into_iter()
        .map(|r| ForeignKey {
            table: r.table_name,
            column: r.column_name,
            references: r.referenced_table,
            on_delete: r.on_delete,
        })
        .collect();
    keys.sort();
    keys
}

fn postgres_tables(conn: &mut PgConnection) -> QueryResult<Vec<String>> {
    Ok(names(
        sql_query(
            "SELECT tablename AS name FROM pg_tables \
             WHERE schemaname = 'public' AND tablename <> '__diesel_schema_migrations'",
        )
        .load(conn)?,
    ))
}

fn postgres_indexes(conn: &mut PgConnection) -> QueryResult<Vec<Index>> {
    Ok(indexes(
        sql_query(
            "SELECT t.relname::text AS table_name, i.relname::text AS index_name, \
                    ix.indisunique AS is_unique, \
                    array_to_string(ARRAY( \
                        SELECT a.attname FROM unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord) \
                        JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum \
                        ORDER BY k.ord), ',') AS columns \
             FROM pg_index ix \
             JOIN pg_class t ON t.oid = ix.indrelid \
             JOIN pg_class i ON i.oid = ix.indexrelid \
             JOIN pg_namespace n ON n.oid = t.relnamespace \
             WHERE n.nspname = 'public' AND t.relname <> '__diesel_schema_migrations'",
        )
        .load(conn)?,
    ))
}

fn postgres_foreign_keys(conn: &mut PgConnection) -> QueryResult<Vec<ForeignKey>> {
    Ok(foreign_keys(
        sql_query(
            "SELECT cl.relname::text AS table_name, a.attname::text AS column_name, \
                    rt.relname::text AS referenced_table, \
                    CASE c.confdeltype WHEN 'c' THEN 'CASCADE' WHEN 'r' THEN 'RESTRICT' \
                         WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT' \
                         ELSE 'NO ACTION' END AS on_delete \
             FROM pg_constraint c \
             JOIN pg_class cl ON cl.oid = c.conrelid \
             JOIN pg_class rt ON rt.oid = c.confrelid \
             JOIN pg_namespace n ON n.oid = cl.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] \
             WHERE c.contype = 'f' AND n.nspname = 'public'",
        )
        .load(conn)?,
    ))
}

fn sqlite_tables(conn: &mut SqliteConnection) -> QueryResult<Vec<String>> {
    Ok(names(
        sql_query(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' AND name <> '__diesel_schema_migrations'",
        )
        .load(conn)?,
    ))
}

fn sqlite_indexes(conn: &mut SqliteConnection) -> QueryResult<Vec<Index>> {
    Ok(indexes(
        sql_query(
            "SELECT m.name AS table_name, il.name AS index_name, il.\"unique\" AS is_unique, \
                    (SELECT group_concat(name, ',') FROM \
                        (SELECT ii.name FROM pragma_index_info(il.name) AS ii ORDER BY ii.seqno)) \
                    AS columns \
             FROM sqlite_master AS m JOIN pragma_index_list(m.name) AS il \
             WHERE m.type = 'table' AND m.name <> '__diesel_schema_migrations'",
        )
        .load(conn)?,
    ))
}

fn sqlite_foreign_keys(conn: &mut SqliteConnection) -> QueryResult<Vec<ForeignKey>> {
    Ok(foreign_keys(
        sql_query(
            "SELECT m.name AS table_name, fk.\"from\" AS column_name, \
                    fk.\"table\" AS referenced_table, fk.on_delete AS on_delete \
             FROM sqlite_master AS m JOIN pragma_foreign_key_list(m.name) AS fk \
             WHERE m.type = 'table'",
        )
        .load(conn)?,
    ))
}

/// A column as the database stores it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct ColumnInfo {
    /// The table.
    pub table: String,
    /// The column.
    pub name: String,
}

#[derive(QueryableByName)]
struct ColumnRow {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
}

fn columns(rows: Vec<ColumnRow>) -> Vec<ColumnInfo> {
    let mut columns: Vec<ColumnInfo> = rows
        .into_iter()
        .map(|r| ColumnInfo {
            table: r.table_name,
            name: r.column_name,
        })
        .collect();
    columns.sort();
    columns
}

fn postgres_columns(conn: &mut PgConnection) -> QueryResult<Vec<ColumnInfo>> {
    Ok(columns(
        sql_query(
            "SELECT table_name::text AS table_name, column_name::text AS column_name \
             FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'",
        )
        .load(conn)?,
    ))
}

fn sqlite_columns(conn: &mut SqliteConnection) -> QueryResult<Vec<ColumnInfo>> {
    Ok(columns(
        sql_query(
            "SELECT m.name AS table_name, c.name AS column_name \
             FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS c \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
             AND m.name <> '__diesel_schema_migrations'",
        )
        .load(conn)?,
    ))
}

fn postgres_tables_without_primary_key(conn: &mut PgConnection) -> QueryResult<Vec<String>> {
    Ok(names(
        sql_query(
            "SELECT c.relname::text AS name FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname = 'public' \
             AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p')",
        )
        .load(conn)?,
    ))
}

fn sqlite_tables_without_primary_key(conn: &mut SqliteConnection) -> QueryResult<Vec<String>> {
    Ok(names(
        sql_query(
            "SELECT m.name AS name FROM sqlite_master AS m \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
             AND NOT EXISTS (SELECT 1 FROM pragma_table_info(m.name) AS c WHERE c.pk > 0)",
        )
        .load(conn)?,
    ))
}

/// Reading the catalog of one backend's connection.
pub trait Catalog {
    /// Tables, sorted, without diesel's bookkeeping table.
    fn tables(&mut self) -> QueryResult<Vec<String>>;
    /// Every column, sorted by table and name.
    fn columns(&mut self) -> QueryResult<Vec<ColumnInfo>>;
    /// Every index, with its columns in index order, sorted by table and name.
    fn indexes(&mut self) -> QueryResult<Vec<Index>>;
    /// Every foreign key, sorted by table and column.
    fn foreign_keys(&mut self) -> QueryResult<Vec<ForeignKey>>;
    /// Tables that declare no primary key.
    fn tables_without_primary_key(&mut self) -> QueryResult<Vec<String>>;
}

impl Catalog for PgConnection {
    fn tables(&mut self) -> QueryResult<Vec<String>> {
        postgres_tables(self)
    }
    fn columns(&mut self) -> QueryResult<Vec<ColumnInfo>> {
        postgres_columns(self)
    }
    fn indexes(&mut self) -> QueryResult<Vec<Index>> {
        postgres_indexes(self)
    }
    fn foreign_keys(&mut self) -> QueryResult<Vec<ForeignKey>> {
        postgres_foreign_keys(self)
    }
    fn tables_without_primary_key(&mut self) -> QueryResult<Vec<String>> {
        postgres_tables_without_primary_key(self)
    }
}

impl Catalog for SqliteConnection {
    fn tables(&mut self) -> QueryResult<Vec<String>> {
        sqlite_tables(self)
    }
    fn columns(&mut self) -> QueryResult<Vec<ColumnInfo>> {
        sqlite_columns(self)
    }
    fn indexes(&mut self) -> QueryResult<Vec<Index>> {
        sqlite_indexes(self)
    }
    fn foreign_keys(&mut self) -> QueryResult<Vec<ForeignKey>> {
        sqlite_foreign_keys(self)
    }
    fn tables_without_primary_key(&mut self) -> QueryResult<Vec<String>> {
        sqlite_tables_without_primary_key(self)
    }
}

/// The unique index a SQLite error message names by its columns
/// (`UNIQUE constraint failed: users.email`, or `t.a, t.b` for several):
/// the index on exactly those columns of that table, from the catalog.
/// `None` when the message has no such form or no index matches (a primary
/// key, say).
pub(crate) fn sqlite_unique_index_for(
    conn: &mut SqliteConnection,
    message: &str,
) -> Option<String> {
    let qualified = message.strip_prefix("UNIQUE constraint failed: ")?;
    let mut table = None;
    let mut columns = Vec::new();
    for column in qualified.split(", ") {
        let (t, c) = column.split_once('.')?;
        if table.get_or_insert(t) != &t {
            return None;
        }
        columns.push(c.to_owned());
    }
    let table = table?;
    sqlite_indexes(conn)
        .ok()?
        .into_iter()
        .find(|index| index.unique && index.table == table && index.columns == columns)
        .map(|index| index.name)
}
