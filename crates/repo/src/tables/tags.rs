//! The `tags` table and its join table `post_tags` (posts ↔ tags, many to
//! many): queries, operations, repository, eager-loading result types and
//! input checks.

use diesel::backend::Backend;
use diesel::dsl::{self, AsSelect};
use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper};
use keel_models::{NewTag, Post, PostTag, Tag};
use keel_schema::{post_tags, posts, tags};
use serde::Serialize;

use crate::executor::{call, read};
use crate::explain::{self, ExplainedQuery};
use crate::loading::{InIdList, group_by_key, ids};
use crate::page::{MAX_PAGE_SIZE, Page, found};
use crate::{Conn, Executor, Out, QueryScope, RepoError, TableSize, run, validate};

/// Longest tag name (`VARCHAR(50)`).
pub const MAX_TAG_NAME: usize = 50;

// ---- queries ----------------------------------------------------------------

/// One tag by its unique name.
#[dsl::auto_type]
pub fn tag_by_name<'a, DB: Backend>(name: &'a str) -> _ {
    let select: AsSelect<Tag, DB> = Tag::as_select();
    tags::table.filter(tags::name.eq(name)).select(select)
}

/// The first `limit` tags by name.
#[dsl::auto_type]
pub fn tags_by_name<DB: Backend>(limit: i64) -> _ {
    let select: AsSelect<Tag, DB> = Tag::as_select();
    tags::table
        .order(tags::name.asc())
        .limit(limit)
        .select(select)
}

/// The tags of many posts at once, each with the post that carries it:
/// `post_tags ⋈ tags`, one level of an eager load (on the primary key,
/// which leads with `post_id`).
#[dsl::auto_type]
pub fn tags_of_posts<'a, DB: Backend>(post_ids: &'a [i32]) -> _ {
    let tag: AsSelect<Tag, DB> = Tag::as_select();
    let posts: InIdList<post_tags::post_id> = InIdList::new(post_tags::post_id, post_ids);
    post_tags::table
        .inner_join(tags::table)
        .filter(posts)
        .order((post_tags::post_id.asc(), tags::name.asc()))
        .select((post_tags::post_id, tag))
}

/// The posts of many tags at once, each with the tag it carries:
/// `post_tags ⋈ posts`, on `ix_post_tags_tag_id`.
#[dsl::auto_type]
pub fn posts_of_tags<'a, DB: Backend>(tag_ids: &'a [i32]) -> _ {
    let post: AsSelect<Post, DB> = Post::as_select();
    let tags: InIdList<post_tags::tag_id> = InIdList::new(post_tags::tag_id, tag_ids);
    post_tags::table
        .inner_join(posts::table)
        .filter(tags)
        .order((post_tags::tag_id.asc(), post_tags::post_id.asc()))
        .select((post_tags::tag_id, post))
}

/// A keyset page of the posts carrying a tag: post ids above `after`,
/// ascending, on `ix_post_tags_tag_id (tag_id, post_id)`.
#[dsl::auto_type]
pub fn posts_with_tag_after<DB: Backend>(tag_id: i32, after: i32, limit: i64) -> _ {
    let post: AsSelect<Post, DB> = Post::as_select();
    post_tags::table
        .inner_join(posts::table)
        .filter(post_tags::tag_id.eq(tag_id))
        .filter(post_tags::post_id.gt(after))
        .order(post_tags::post_id.asc())
        .limit(limit)
        .select(post)
}

/// How many tags there are, and the highest id.
#[dsl::auto_type]
pub fn tag_count_and_max_id() -> _ {
    let highest: diesel::helper_types::max<tags::id> = dsl::max(tags::id);
    tags::table.select((dsl::count_star(), highest))
}

// ---- operations -------------------------------------------------------------

/// Rows in the table and the highest id.
pub(crate) async fn size(conn: &mut Conn<'_>) -> diesel::QueryResult<TableSize> {
    let (rows, max_id) = run!(conn, get_result(tag_count_and_max_id()))?;
    Ok(TableSize { rows, max_id })
}

async fn insert_tag(conn: &mut Conn<'_>, tag: &NewTag) -> diesel::QueryResult<Tag> {
    conn.durable_write(async |c| {
        run!(
            c,
            get_result(
                diesel::insert_into(tags::table)
                    .values(tag)
                    .returning(Tag::as_returning())
            )
        )
    })
    .await
}

/// Links a post and a tag; a link that exists already is left as it is.
/// Whether a link was added.
async fn link(conn: &mut Conn<'_>, link: PostTag) -> diesel::QueryResult<bool> {
    let added = conn
        .durable_write(async |c| {
            run!(
                c,
                execute(
                    diesel::insert_into(post_tags::table)
                        .values(link)
                        .on_conflict_do_nothing()
                )
            )
        })
        .await?;
    Ok(added > 0)
}

/// Removes a link between a post and a tag; whether there was one.
async fn unlink(conn: &mut Conn<'_>, link: PostTag) -> diesel::QueryResult<bool> {
    let removed = conn
        .durable_write(async |c| {
            run!(
                c,
                execute(diesel::delete(
                    post_tags::table.find((link.post_id, link.tag_id))
                ))
            )
        })
        .await?;
    Ok(removed > 0)
}

async fn tag_named(conn: &mut Conn<'_>, name: &str) -> diesel::QueryResult<Option<Tag>> {
    run!(conn, get_result(tag_by_name(name))).optional()
}

/// `NotFound` for a tag name that names no tag.
fn tag_found<T>(value: Option<T>, name: &str) -> Result<T, RepoError> {
    found(value, "tag", || format!("name {name}"))
}

/// The tags of `posts`, grouped under each post: 1 statement (none for no posts).
pub(crate) async fn load_tags_of_posts(
    conn: &mut Conn<'_>,
    posts: &[Post],
) -> diesel::QueryResult<std::collections::HashMap<i32, Vec<Tag>>> {
    let rows: Vec<(i32, Tag)> = match ids(posts, |p| p.id) {
        Some(ids) => run!(conn, load(tags_of_posts(&ids)))?,
        None => Vec::new(),
    };
    let grouped = group_by_key(rows, posts, |(post_id, _)| *post_id, |p| p.id);
    Ok(grouped
        .into_iter()
        .map(|(post_id, rows)| (post_id, rows.into_iter().map(|(_, tag)| tag).collect()))
        .collect())
}

/// Each post with its tags: 1 statement for all of them.
pub(crate) async fn posts_with_tags(
    conn: &mut Conn<'_>,
    posts: Vec<Post>,
) -> diesel::QueryResult<Vec<PostWithTags>> {
    let mut tags = load_tags_of_posts(conn, &posts).await?;
    Ok(posts
        .into_iter()
        .map(|post| {
            let tags = tags.remove(&post.id).unwrap_or_default();
            PostWithTags { post, tags }
        })
        .collect())
}

/// Each tag with its posts: 1 statement for all of them.
async fn tags_with_posts(
    conn: &mut Conn<'_>,
    tags: Vec<Tag>,
) -> diesel::QueryResult<Vec<TagWithPosts>> {
    let rows: Vec<(i32, Post)> = match ids(&tags, |t| t.id) {
        Some(ids) => run!(conn, load(posts_of_tags(&ids)))?,
        None => Vec::new(),
    };
    let mut grouped = group_by_key(rows, &tags, |(tag_id, _)| *tag_id, |t| t.id);
    Ok(tags
        .into_iter()
        .map(|tag| {
            let posts = grouped.remove(&tag.id).unwrap_or_default();
            TagWithPosts {
                tag,
                posts: posts.into_iter().map(|(_, post)| post).collect(),
            }
        })
        .collect())
}

// ---- eager-loading results ----------------------------------------------------

/// A post with every tag it carries, loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PostWithTags {
    /// The post.
    pub post: Post,
    /// Its tags, by name.
    pub tags: Vec<Tag>,
}

/// A tag with every post that carries it, loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagWithPosts {
    /// The tag.
    pub tag: Tag,
    /// Its posts, oldest first.
    pub posts: Vec<Post>,
}

// ---- input checks ---------------------------------------------------------------

/// A tag name: 1 to 50 characters, no spaces at either end, no NUL, no `/`
/// (a name is a path segment in the HTTP API).
pub fn check_tag_name(name: &str) -> Result<(), RepoError> {
    validate::required_text("name", name, Some(MAX_TAG_NAME))?;
    if name.trim() != name {
        return Err(RepoError::validation(
            "name",
            "must not start or end with spaces",
        ));
    }
    if name.contains('/') {
        return Err(RepoError::validation("name", "must not contain `/`"));
    }
    Ok(())
}

// ---- repository -------------------------------------------------------------------

/// Tags: create and look up, tag and untag posts, and load either side of
/// the posts ↔ tags relation with the other.
pub struct TagRepository<'a, E> {
    db: &'a E,
}

/// `tags()` on every executor.
pub trait TagsExt: Executor + Sized {
    /// Tags, on this executor's connections.
    fn tags(&self) -> TagRepository<'_, Self> {
        TagRepository { db: self }
    }
}

impl<E: Executor> TagsExt for E {}

impl<'a, E: Executor> TagRepository<'a, E> {
    /// Creates a tag; a name taken already is `Conflict { constraint: "ix_tags_name" }`.
    pub fn create<'s>(&self, name: &'s str) -> Out<'s, E, Tag>
    where
        'a: 's,
    {
        let db = self.db;
        db.output(async move {
            check_tag_name(name)?;
            let tag = NewTag {
                name: name.to_owned(),
            };
            call(db, async |conn| insert_tag(conn, &tag).await).await
        })
    }

    /// The tag with this name. 1 statement.
    pub fn get_by_name<'s>(&self, name: &'s str) -> Out<'s, E, Tag>
    where
        'a: 's,
    {
        let db = self.db;
        db.output(async move {
            check_tag_name(name)?;
            let tag = read(db, async |conn| tag_named(conn, name).await).await?;
            tag_found(tag, name)
        })
    }

    /// Tags a post with the tag of this name; tagging twice is not an error.
    /// An unknown tag is `NotFound`, a missing post `RelatedMissing`. Returns
    /// the tag and whether the post was newly tagged. 2 statements.
    pub fn tag_post<'s>(&self, post_id: i32, name: &'s str) -> Out<'s, E, (Tag, bool)>
    where
        'a: 's,
    {
        let db = self.db;
        db.output(async move {
            validate::id("post_id", post_id)?;
            check_tag_name(name)?;
            let tagged = call(db, async |conn| {
                let Some(tag) = tag_named(conn, name).await? else {
                    return Ok(None);
                };
                let added = link(
                    conn,
                    PostTag {
                        post_id,
                        tag_id: tag.id,
                    },
                )
                .await?;
                Ok(Some((tag, added)))
            })
            .await
            .map_err(|e| e.naming_related("post_id"))?;
            tag_found(tagged, name)
        })
    }

    /// Removes the tag of this name from a post; untagging a post that does
    /// not carry it is not an error. An unknown tag is `NotFound`. Returns
    /// whether the post carried it. 2 statements.
    pub fn untag_post<'s>(&self, post_id: i32, name: &'s str) -> Out<'s, E, bool>
    where
        'a: 's,
    {
        let db = self.db;
        db.output(async move {
            validate::id("post_id", post_id)?;
            check_tag_name(name)?;
            let removed = call(db, async |conn| {
                let Some(tag) = tag_named(conn, name).await? else {
                    return Ok(None);
                };
                unlink(
                    conn,
                    PostTag {
                        post_id,
                        tag_id: tag.id,
                    },
                )
                .await
                .map(Some)
            })
            .await?;
            tag_found(removed, name)
        })
    }

    /// A keyset page of the posts carrying the tag of this name, oldest
    /// first. An unknown tag is `NotFound`. 2 statements; a paging loop is
    /// not an N+1.
    pub fn posts_with_tag<'s>(
        &self,
        name: &'s str,
        after: Option<i32>,
        limit: i64,
    ) -> Out<'s, E, Page<Post>>
    where
        'a: 's,
    {
        let db = self.db;
        db.output(QueryScope::repeats_intended_in(async move {
            check_tag_name(name)?;
            validate::limit(limit, MAX_PAGE_SIZE)?;
            let after = after.unwrap_or(0);
            let posts = read(db, async |conn| {
                let Some(tag) = tag_named(conn, name).await? else {
                    return Ok(None);
                };
                run!(conn, load(posts_with_tag_after(tag.id, after, limit))).map(Some)
            })
            .await?;
            Ok(Page::new(tag_found(posts, name)?, limit, |p| p.id))
        }))
    }

    /// The tags a post carries, by name. 1 statement; a missing post has none.
    pub fn tags_of_post(&self, post_id: i32) -> Out<'a, E, Vec<Tag>> {
        let db = self.db;
        db.output(async move {
            validate::id("post_id", post_id)?;
            let rows: Vec<(i32, Tag)> =
                read(db, async |conn| run!(conn, load(tags_of_posts(&[post_id])))).await?;
            Ok(rows.into_iter().map(|(_, tag)| tag).collect())
        })
    }

    /// The first `limit` tags by name, each with every post carrying it:
    /// 2 statements, whatever the number of tags and posts.
    pub fn tags_with_posts(&self, limit: i64) -> Out<'a, E, Vec<TagWithPosts>> {
        let db = self.db;
        db.output(async move {
            validate::limit(limit, MAX_PAGE_SIZE)?;
            read(db, async |conn| {
                let tags = run!(conn, load(tags_by_name(limit)))?;
                tags_with_posts(conn, tags).await
            })
            .await
        })
    }

    /// Rows in the table and the highest id: 1 statement.
    pub fn size(&self) -> Out<'a, E, TableSize> {
        let db = self.db;
        db.output(async move { read(db, async |conn| size(conn).await).await })
    }
}

// ---- registrations -----------------------------------------------------------------

/// The queries `keel explain` shows for this table, with sample arguments.
pub(crate) fn explained_queries() -> Vec<ExplainedQuery> {
    vec![
        ExplainedQuery {
            name: "tags_of_posts",
            description: "eager load: the tags of many posts (post_tags ⋈ tags)",
            needs_index: true,
            explain: |conn| explain::explain!(conn, tags_of_posts(&[1, 2, 3])),
        },
        ExplainedQuery {
            name: "posts_with_tag",
            description: "a page of the posts carrying a tag (post_tags ⋈ posts)",
            needs_index: true,
            explain: |conn| explain::explain!(conn, posts_with_tag_after(1, 0, 20)),
        },
    ]
}
