//! SQL rendered once per statement type on tokio-postgres.
//!
//! diesel-async renders every statement's SQL on every call (`to_sql`, one
//! `String` per identifier quoted) and only then finds the prepared
//! statement in its cache, keyed by the statement's static `QueryId`.
//! diesel's sync connections skip the rendering on a cache hit. [`run!`]
//! wraps each async PostgreSQL statement in [`SqlOnce`], whose `to_sql`
//! reuses the SQL rendered the first time its type ran. The rule for what
//! may be reused is diesel's own cache's: a static `QueryId` and safe to
//! cache as a prepared statement (its SQL is fixed by its type). Every other
//! statement renders as before. Binds are still collected per call.
//!
//! [`run!`]: crate::run

use std::any::TypeId;
use std::sync::{Arc, OnceLock, RwLock};

use diesel::pg::{Pg, PgQueryBuilder};
use diesel::query_builder::{AstPass, Query, QueryBuilder as _, QueryFragment, QueryId};
use diesel::result::QueryResult;

/// A statement whose SQL is rendered once per process (see the module).
#[doc(hidden)]
pub struct SqlOnce<Q>(pub Q);

impl<Q: QueryId> QueryId for SqlOnce<Q> {
    // The same identity, so diesel-async's statement cache sees no wrapper.
    type QueryId = Q::QueryId;
    const HAS_STATIC_QUERY_ID: bool = Q::HAS_STATIC_QUERY_ID;
}

impl<Q: Query> Query for SqlOnce<Q> {
    type SqlType = Q::SqlType;
}

impl<Q: QueryFragment<Pg> + QueryId> QueryFragment<Pg> for SqlOnce<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn to_sql(&self, out: &mut PgQueryBuilder, backend: &Pg) -> QueryResult<()> {
        let Some(id) = Q::query_id() else {
            return self.0.to_sql(out, backend);
        };
        if !self.0.is_safe_to_cache_prepared(backend)? {
            return self.0.to_sql(out, backend);
        }
        let known = rendered().read().ok().and_then(|map| map.get(&id).cloned());
        let sql = match known {
            Some(sql) => sql,
            None => {
                let mut builder = PgQueryBuilder::default();
                self.0.to_sql(&mut builder, backend)?;
                let sql: Arc<str> = builder.finish().into();
                if let Ok(mut map) = rendered().write() {
                    map.entry(id).or_insert_with(|| sql.clone());
                }
                sql
            }
        };
        out.push_sql(&sql);
        Ok(())
    }
}

/// SQL by statement type, for this process. Read once per statement, so
/// hashed with foldhash (its keys are type ids, not client input), as the
/// N+1 guard's shape map is.
fn rendered() -> &'static RwLock<foldhash::HashMap<TypeId, Arc<str>>> {
    static RENDERED: OnceLock<RwLock<foldhash::HashMap<TypeId, Arc<str>>>> = OnceLock::new();
    RENDERED.get_or_init(Default::default)
}

#[cfg(test)]
mod tests {
    use diesel::prelude::*;
    use keel_schema::users;

    use super::*;

    fn sql_of(query: &impl QueryFragment<Pg>) -> String {
        let mut builder = PgQueryBuilder::default();
        query.to_sql(&mut builder, &Pg).expect("renders");
        builder.finish()
    }

    #[test]
    fn a_static_statement_renders_as_diesel_renders_it_every_time() {
        let query = users::table.filter(users::id.eq(7)).select(users::email);
        let expected = sql_of(&query);
        assert_eq!(sql_of(&SqlOnce(query)), expected);
        // The second time comes from the map, and must say the same.
        let again = users::table.filter(users::id.eq(8)).select(users::email);
        assert_eq!(sql_of(&SqlOnce(again)), expected);
        assert!(expected.contains("$1"), "{expected}");
    }

    #[test]
    fn a_statement_whose_sql_varies_renders_each_time() {
        // Boxed queries share one type whatever their clauses: no static
        // identity, so each renders its own SQL.
        let all = users::table.select(users::id).into_boxed::<Pg>();
        let one = users::table
            .select(users::id)
            .filter(users::id.eq(1))
            .into_boxed::<Pg>();
        assert_eq!(
            sql_of(&SqlOnce(all)),
            "SELECT \"users\".\"id\" FROM \"users\""
        );
        assert_eq!(
            sql_of(&SqlOnce(one)),
            "SELECT \"users\".\"id\" FROM \"users\" WHERE (\"users\".\"id\" = $1)"
        );
    }
}
