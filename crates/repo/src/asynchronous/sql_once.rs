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
//! Whether a statement is safe to cache is found by walking its AST, and
//! three parties ask: the N+1 guard's note, diesel-async, and `to_sql`.
//! [`SqlOnce::new`] walks once and answers all three.
//!
//! [`run!`]: crate::run

use std::any::TypeId;

use diesel::pg::{Pg, PgQueryBuilder};
use diesel::query_builder::{AstPass, Query, QueryBuilder as _, QueryFragment, QueryId};
use diesel::result::QueryResult;

use crate::interned::Interned;
use crate::scope::shapes::{self, Site};

/// A statement whose SQL is rendered once per process (see the module),
/// sent from the `run!` call site `site`.
#[doc(hidden)]
pub struct SqlOnce<Q> {
    query: Q,
    site: &'static Site,
    /// Its static identity, when its SQL is fixed by its type.
    cached_as: Option<TypeId>,
}

impl<Q: QueryFragment<Pg> + QueryId> SqlOnce<Q> {
    /// Wraps `query`, finding out once whether its SQL may be reused.
    pub fn new(query: Q, site: &'static Site) -> Self {
        let cached_as = Q::query_id().filter(|_| {
            // A statement that cannot say renders every time, as diesel's
            // cache would treat it.
            query.is_safe_to_cache_prepared(&Pg).unwrap_or(false)
        });
        Self {
            query,
            site,
            cached_as,
        }
    }

    /// Tells the N+1 guard this statement's identity (see
    /// [`crate::scope::shapes`]), when it has one.
    pub fn note(&self) {
        if let Some(query) = self.cached_as {
            shapes::note::<Pg>(query, self.site);
        }
    }
}

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
        self.query.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        // Answered by `new`'s walk: a `Q` without a static identity may
        // still be safe to cache, and is asked again.
        match self.cached_as {
            Some(_) => Ok(true),
            None => self.query.is_safe_to_cache_prepared(&Pg),
        }
    }

    fn to_sql(&self, out: &mut PgQueryBuilder, backend: &Pg) -> QueryResult<()> {
        let Some(id) = self.cached_as else {
            return self.query.to_sql(out, backend);
        };
        let sql = self.site.sql.get_or_make(id, &RENDERED, || {
            let mut builder = PgQueryBuilder::default();
            self.query.to_sql(&mut builder, backend)?;
            QueryResult::Ok(builder.finish().into_boxed_str())
        })?;
        out.push_sql(sql);
        Ok(())
    }
}

/// SQL by statement type, for this process: what a call site's own memory
/// ([`Site`]) does not hold.
static RENDERED: Interned<TypeId, str> = Interned::new();

#[cfg(test)]
mod tests {
    use diesel::prelude::*;
    use keel_schema::users;

    use super::*;

    static SITE: Site = Site::new();

    fn sql_of(query: &impl QueryFragment<Pg>) -> String {
        let mut builder = PgQueryBuilder::default();
        query.to_sql(&mut builder, &Pg).expect("renders");
        builder.finish()
    }

    #[test]
    fn a_static_statement_renders_as_diesel_renders_it_every_time() {
        let query = users::table.filter(users::id.eq(7)).select(users::email);
        let expected = sql_of(&query);
        assert_eq!(sql_of(&SqlOnce::new(query, &SITE)), expected);
        // The second time comes from the map, and must say the same.
        let again = users::table.filter(users::id.eq(8)).select(users::email);
        assert_eq!(sql_of(&SqlOnce::new(again, &SITE)), expected);
        assert!(expected.contains("$1"), "{expected}");
    }

    /// diesel-async keys its statement cache on the wrapper's answer, which
    /// `new` found out once: it must be the query's own.
    #[test]
    fn the_wrapper_answers_safe_to_cache_as_its_query_does() {
        let fixed = users::table.filter(users::id.eq(7)).select(users::email);
        // Raw SQL is never cached: its text is not known from its type.
        let literal = users::table.select(diesel::dsl::sql::<diesel::sql_types::Integer>("1"));
        let boxed = users::table.select(users::id).into_boxed::<Pg>();
        fn safe(query: &impl QueryFragment<Pg>) -> Option<bool> {
            query.is_safe_to_cache_prepared(&Pg).ok()
        }
        let expected = [safe(&fixed), safe(&literal), safe(&boxed)];
        let wrapped = [
            safe(&SqlOnce::new(fixed, &SITE)),
            safe(&SqlOnce::new(literal, &SITE)),
            safe(&SqlOnce::new(boxed, &SITE)),
        ];
        assert_eq!(wrapped, expected);
        assert_eq!(expected[..2], [Some(true), Some(false)]);
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
            sql_of(&SqlOnce::new(all, &SITE)),
            "SELECT \"users\".\"id\" FROM \"users\""
        );
        assert_eq!(
            sql_of(&SqlOnce::new(one, &SITE)),
            "SELECT \"users\".\"id\" FROM \"users\" WHERE (\"users\".\"id\" = $1)"
        );
    }
}
