//! Maintenance that reads the tables from the catalog, not from a list.

use crate::executor::call;
use crate::{Backend, Conn, Executor, Out, run};

/// Moves every serial column's sequence past the column's highest value, so
/// the next insert follows on (a rolled-back insert consumes sequence values;
/// a resumed load needs ids to follow on). PostgreSQL: one statement that
/// first locks every table that owns such a sequence (`SHARE ROW
/// EXCLUSIVE`), so it waits for transactions still writing them, a dead
/// client's last commit included; counts read after it are settled. Run it
/// in a transaction to keep the locks for what follows. SQLite: the
/// `AUTOINCREMENT` tables' entries in `sqlite_sequence` are removed, so each
/// table's next id is its highest plus one again (SQLite recreates an entry
/// from the table's largest id when it is missing); one statement, none when
/// no table uses `AUTOINCREMENT`. Either way, ids of rows deleted from the
/// end of a table can come back: this is for loads that must follow on from
/// the rows present, not for a live service.
pub fn restart_id_sequences<E: Executor>(db: &E) -> Out<'_, E, ()> {
    db.output(async move { call(db, async |conn| restart_sequences(conn).await).await })
}

async fn restart_sequences(conn: &mut Conn<'_>) -> diesel::QueryResult<()> {
    if conn.backend() == Backend::Sqlite {
        let autoincrement: i64 = run!(
            conn,
            get_result(diesel::select(
                diesel::dsl::sql::<diesel::sql_types::BigInt>(
                    "(SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence')"
                )
            ))
        )?;
        if autoincrement > 0 {
            run!(
                conn,
                execute(diesel::sql_query("DELETE FROM sqlite_sequence"))
            )?;
        }
        return Ok(());
    }
    // The catalog names the tables, columns and sequences; identifiers are
    // quoted by `format('%I')` in the server, never built in Rust.
    run!(
        conn,
        execute(diesel::sql_query(
            "DO $$
DECLARE
    owned record;
BEGIN
    FOR owned IN
        SELECT t.relname AS table_name, a.attname AS column_name, s.oid::regclass::text AS sequence
        FROM pg_depend d
        JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
        JOIN pg_class t ON t.oid = d.refobjid
        JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = current_schema()
        JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
        WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
        ORDER BY t.relname
    LOOP
        EXECUTE format('LOCK TABLE %I IN SHARE ROW EXCLUSIVE MODE', owned.table_name);
        EXECUTE format(
            'SELECT setval(%L, COALESCE((SELECT MAX(%I) FROM %I), 0) + 1, false)',
            owned.sequence, owned.column_name, owned.table_name
        );
    END LOOP;
END
$$"
        ))
    )?;
    Ok(())
}
