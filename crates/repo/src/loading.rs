//! Eager-loading helpers for table modules: the next level's id list, bound
//! as one value on either backend, and grouping children under parents.
//! One statement per level, never one per row.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::OnceLock;

use diesel::QueryResult;
use diesel::expression::{AppearsOnTable, Expression, ValidGrouping};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{Array, Integer, Text};
use diesel::sqlite::Sqlite;

/// The keys of `rows` (`key` picks them: an id, or any column a relation
/// joins on) as the next level's id list; `None` for no rows, so the level
/// runs no statement.
pub fn ids<T>(rows: &[T], key: impl Fn(&T) -> i32) -> Option<Vec<i32>> {
    (!rows.is_empty()).then(|| rows.iter().map(key).collect())
}

/// The distinct keys `key` picks from `rows` (`None`s skipped), ascending:
/// the id list of a many-to-one level loaded select-in (each comment's
/// post, each post's author). `None` when there are none, so the level
/// runs no statement.
pub fn distinct_ids<T>(rows: &[T], key: impl Fn(&T) -> Option<i32>) -> Option<Vec<i32>> {
    let mut ids: Vec<i32> = rows.iter().filter_map(key).collect();
    ids.sort_unstable();
    ids.dedup();
    (!ids.is_empty()).then_some(ids)
}

/// The maps these helpers return. Hashed with foldhash: their keys are ids
/// read from the database, and an eager load hashes one per row.
pub type KeyMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// `rows` by their id, for each child to find its one parent in.
pub fn by_id<T>(rows: Vec<T>, id: impl Fn(&T) -> i32) -> KeyMap<i32, T> {
    rows.into_iter().map(|row| (id(&row), row)).collect()
}

/// Groups `children` under the key of the parent each belongs to (what
/// diesel's `grouped_by` does, for any key and for children that already
/// carry their own children). Children whose parent is not in `parents`
/// are dropped; each group keeps the children's order.
pub fn group_by_key<C, P, K>(
    children: Vec<C>,
    parents: &[P],
    child_key: impl Fn(&C) -> K,
    parent_key: impl Fn(&P) -> K,
) -> KeyMap<K, Vec<C>>
where
    K: Eq + Hash,
{
    let mut groups: KeyMap<K, Vec<C>> = parents
        .iter()
        .map(|p| (parent_key(p), Vec::new()))
        .collect();
    for child in children {
        if let Some(group) = groups.get_mut(&child_key(&child)) {
            group.push(child);
        }
    }
    groups
}

/// `column IN (…ids)` bound as one value: `= ANY($1)` with an array on
/// PostgreSQL, `IN (SELECT value FROM json_each(?))` with a JSON array on
/// SQLite. `eq_any`'s SQLite form `IN (?, ?, …)` has one placeholder per
/// id, so its SQL changes with the list's length: diesel prepares it afresh
/// on every call, and a list longer than SQLite's bind limit must be split.
/// This statement is the same for every list: prepared once, then cached,
/// and never split.
#[derive(Debug, Clone)]
pub struct InIdList<Column> {
    column: Column,
    ids: Vec<i32>,
    /// The ids as a JSON array, written when SQLite first needs it: on
    /// PostgreSQL formatting every id would be wasted work.
    json: OnceLock<String>,
}

impl<Column> InIdList<Column> {
    /// `column` among `ids`.
    pub fn new(column: Column, ids: &[i32]) -> Self {
        Self {
            column,
            ids: ids.to_vec(),
            json: OnceLock::new(),
        }
    }

    fn json(&self) -> &str {
        self.json.get_or_init(|| {
            use std::fmt::Write as _;
            let mut json = String::with_capacity(self.ids.len() * 7 + 2);
            json.push('[');
            for (i, id) in self.ids.iter().enumerate() {
                if i > 0 {
                    json.push(',');
                }
                // Writing to a String cannot fail.
                let _ = write!(json, "{id}");
            }
            json.push(']');
            json
        })
    }
}

impl<Column: Expression> Expression for InIdList<Column> {
    type SqlType = diesel::sql_types::Bool;
}

impl<Column, QS> AppearsOnTable<QS> for InIdList<Column> where Column: AppearsOnTable<QS> {}

impl<Column, GroupBy> ValidGrouping<GroupBy> for InIdList<Column>
where
    Column: ValidGrouping<GroupBy>,
{
    type IsAggregate = Column::IsAggregate;
}

impl<Column: QueryId> QueryId for InIdList<Column> {
    type QueryId = InIdList<Column::QueryId>;
    const HAS_STATIC_QUERY_ID: bool = Column::HAS_STATIC_QUERY_ID;
}

impl<Column: QueryFragment<Pg>> QueryFragment<Pg> for InIdList<Column> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.column.walk_ast(out.reborrow())?;
        out.push_sql(" = ANY(");
        out.push_bind_param::<Array<Integer>, _>(&self.ids)?;
        out.push_sql(")");
        Ok(())
    }
}

impl<Column: QueryFragment<Sqlite>> QueryFragment<Sqlite> for InIdList<Column> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        self.column.walk_ast(out.reborrow())?;
        out.push_sql(" IN (SELECT value FROM json_each(");
        out.push_bind_param::<Text, _>(self.json())?;
        out.push_sql("))");
        Ok(())
    }
}
