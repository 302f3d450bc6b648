//! `keel seed`: loads the workload's data (docs/workload.md: U users, P posts
//! each, C comments per post) through keel-repo's bulk insert, one
//! transaction per chunk, with a progress bar (plain log lines when stderr is
//! not a terminal).
//!
//! Ids follow the insert order, so the load is resumable: a run that was
//! killed leaves whole chunks only, and the next run continues after the
//! last id of each table, or says why it cannot.

use keel_repo::prelude::{CommentsExt as _, PostsExt as _, TagsExt as _, UsersExt as _};
use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use keel_repo::asynchronous::AsyncDatabase;
use keel_repo::{DatabaseConfig, RepoError, TableSize};
use keel_workload::Workload;

/// Rows per transaction: big enough to amortise the commit, small enough
/// that a kill loses little.
const ROWS_PER_CHUNK: usize = 10_000;

/// Options of `keel seed`.
#[derive(Debug, clap::Args)]
pub struct SeedArgs {
    /// Users to create.
    #[arg(long, default_value_t = 10_000)]
    users: i64,
    /// Posts per user.
    #[arg(long, default_value_t = 10)]
    posts_per_user: i64,
    /// Comments per post.
    #[arg(long, default_value_t = 2)]
    comments_per_post: i64,
}

/// Why a load cannot continue.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(transparent)]
    Workload(#[from] keel_workload::WorkloadError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(
        "{table} holds {rows} rows with ids up to {max_id} that are not the first rows of this workload (other data, or a load with other sizes): seed into an empty database, or rerun with the sizes of the interrupted load"
    )]
    NotResumable {
        table: &'static str,
        rows: i64,
        max_id: i64,
    },
}

/// `keel seed`: its own runtime, the async repo, and the load.
pub fn run(config: DatabaseConfig, args: &SeedArgs) -> Result<(), Box<dyn std::error::Error>> {
    let workload = Workload::new(args.users, args.posts_per_user, args.comments_per_post)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let db = AsyncDatabase::connect(&config).await?;
        db.run_migrations().await?;
        seed(&db, &workload).await?;
        Ok(())
    })
}

/// Loads `workload` into `db`, continuing after whatever whole chunks an
/// earlier run committed.
pub async fn seed(db: &AsyncDatabase, workload: &Workload) -> Result<(), SeedError> {
    let total = workload.row_count();
    // A complete load is left as it is, sequences included: a service may
    // have written and deleted rows since, and their ids must not come
    // back. Only its tags and replies are added if it never got them (a run
    // killed after its last chunk).
    if rows_of(loaded(db, workload).await?) == total {
        if db.tags().size().await?.rows == 0 {
            link_tags_and_replies(db).await?;
        }
        tracing::info!(rows = total, "already seeded: nothing to do");
        return Ok(());
    }
    // An incomplete load: first, before counting again, restart the id
    // sequences. On PostgreSQL this locks the tables, so it waits for any
    // transaction still writing them: a run killed just after sending COMMIT
    // leaves the server committing its last chunk, and counting first would
    // miss that chunk and load it again. Then the sequences follow on from
    // the rows committed (a killed run's rolled-back chunk consumed values).
    keel_repo::maintenance::restart_id_sequences(db).await?;
    let [users_done, posts_done, comments_done] = loaded(db, workload).await?;
    let already = rows_of([users_done, posts_done, comments_done]);
    let progress = Progress::new(total, already);
    let started = Instant::now();

    for ids in chunks(users_done, workload.user_count()) {
        let rows: Vec<_> = ids.map(|id| workload.user(id)).collect();
        db.users().insert_many(&rows).await?;
        progress.add("users", rows.len());
    }
    for ids in chunks(posts_done, workload.post_count()) {
        let rows: Vec<_> = ids.map(|id| workload.post(id)).collect();
        db.posts().insert_many(&rows).await?;
        progress.add("posts", rows.len());
    }
    for ids in chunks(comments_done, workload.comment_count()) {
        let rows: Vec<_> = ids.map(|id| workload.comment(id)).collect();
        db.comments().insert_many(&rows).await?;
        progress.add("comments", rows.len());
    }
    link_tags_and_replies(db).await?;
    progress.finish();
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        users = workload.user_count(),
        posts = workload.post_count(),
        comments = workload.comment_count(),
        seconds = format_args!("{seconds:.1}"),
        rows_per_second = format_args!(
            "{:.0}",
            (total - already) as f64 / seconds.max(f64::EPSILON)
        ),
        "seeded"
    );
    Ok(())
}

/// How far a load got: the last id of each table, checked to be the
/// workload's first rows.
async fn loaded(db: &AsyncDatabase, workload: &Workload) -> Result<[i32; 3], SeedError> {
    let sizes = db.users().table_sizes().await?;
    let users = done("users", sizes.users, workload.user_count())?;
    let posts = done("posts", sizes.posts, workload.post_count())?;
    let comments = done("comments", sizes.comments, workload.comment_count())?;
    same_rows(db, workload, users, posts, comments).await?;
    Ok([users, posts, comments])
}

/// Rows in a load that got this far.
fn rows_of(loaded: [i32; 3]) -> u64 {
    loaded.iter().map(|n| u64::try_from(*n).unwrap_or(0)).sum()
}

/// The workload's 50 tags (`tag0` … `tag49`).
const SEED_TAGS: &str = "\
    WITH RECURSIVE n (k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM n WHERE k < 49) \
    INSERT INTO tags (name) SELECT 'tag' || k FROM n WHERE true \
    ON CONFLICT (name) DO NOTHING";

/// Each post tagged `tag{id % 50}` and `tag{(id · 7) % 50}` (the second as
/// `(id % 50) · 7 % 50`, which cannot overflow).
const SEED_POST_TAGS: &str = "\
    INSERT INTO post_tags (post_id, tag_id) \
    SELECT posts.id, tags.id FROM posts JOIN tags \
    ON tags.name = 'tag' || (posts.id % 50) OR tags.name = 'tag' || ((posts.id % 50) * 7 % 50) \
    WHERE true ON CONFLICT DO NOTHING";

/// Every tenth comment replies to the one before it, when that one is on
/// the same post.
const SEED_REPLIES: &str = "\
    UPDATE comments SET parent_id = id - 1 \
    WHERE id % 10 = 0 AND parent_id IS NULL \
    AND post_id = (SELECT before.post_id FROM comments before WHERE before.id = comments.id - 1)";

/// The workload's tags and replies (docs/workload.md; the same rules as
/// `Workload::tags_of_post` and `Workload::parent_of_comment`): three
/// set-based statements in one transaction, each a no-op when already done,
/// so a rerun completes them. They run on keel's pool through the public
/// path a service's own queries take.
async fn link_tags_and_replies(db: &AsyncDatabase) -> Result<(), RepoError> {
    keel_repo::executor::call(db, async |conn| {
        conn.transaction(async |tx| {
            keel_repo::run!(tx, execute(diesel::sql_query(SEED_TAGS)))?;
            keel_repo::run!(tx, execute(diesel::sql_query(SEED_POST_TAGS)))?;
            keel_repo::run!(tx, execute(diesel::sql_query(SEED_REPLIES)))?;
            Ok(())
        })
        .await
    })
    .await
}

/// Checks sample rows an earlier run committed against this workload's rows
/// at the same ids (the last of each table, and the comments whose author
/// depends on U): a load with other sizes must not be continued as if it
/// were this one.
async fn same_rows(
    db: &AsyncDatabase,
    workload: &Workload,
    users: i32,
    posts: i32,
    comments: i32,
) -> Result<(), SeedError> {
    let mismatch = |table: &'static str, id: i32| SeedError::NotResumable {
        table,
        rows: i64::from(id),
        max_id: i64::from(id),
    };
    if users > 0 {
        let stored = db.users().get_by_id(users).await?;
        let expected = workload.user(users);
        if (stored.email, stored.last_name) != (expected.email, expected.last_name) {
            return Err(mismatch("users", users));
        }
    }
    if posts > 0 {
        let stored = db.posts().get_by_id(posts).await?;
        let expected = workload.post(posts);
        if (stored.title, stored.author_id) != (expected.title, expected.author_id) {
            return Err(mismatch("posts", posts));
        }
    }
    // A comment's author is (post_id + k) % U + 1: the rows where
    // post_id + k is U - 1 and U tell any other U apart, and the last row
    // checks P and C.
    let per_post = workload.comments_per_post();
    let probes = [
        (workload.user_count() - 3) * per_post + 1,
        (workload.user_count() - 2) * per_post + 1,
        comments,
    ];
    for id in probes.into_iter().filter(|&id| id >= 1 && id <= comments) {
        let stored = db.comments().get_by_id(id).await?;
        let expected = workload.comment(id);
        if (stored.body, stored.post_id, stored.author_id)
            != (expected.body, expected.post_id, expected.author_id)
        {
            return Err(mismatch("comments", comments));
        }
    }
    Ok(())
}

/// How many rows of `table` an earlier run committed: its ids must be
/// exactly 1..=rows, and no more than the workload has.
fn done(table: &'static str, size: TableSize, wanted: i32) -> Result<i32, SeedError> {
    let max_id = i64::from(size.max_id.unwrap_or(0));
    if size.rows != max_id || size.rows > i64::from(wanted) {
        return Err(SeedError::NotResumable {
            table,
            rows: size.rows,
            max_id,
        });
    }
    // rows <= wanted, an i32.
    Ok(i32::try_from(size.rows).unwrap_or(wanted))
}

/// The ids after `done`, up to `last`, in chunks of [`ROWS_PER_CHUNK`].
fn chunks(done: i32, last: i32) -> impl Iterator<Item = std::ops::RangeInclusive<i32>> {
    let step = i32::try_from(ROWS_PER_CHUNK).unwrap_or(i32::MAX);
    (done..last)
        .step_by(ROWS_PER_CHUNK)
        .map(move |start| start + 1..=start.saturating_add(step).min(last))
}

/// A progress bar on a terminal; a log line per table otherwise.
struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new(total: u64, already: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:>9} [{bar:40}] {human_pos}/{human_len} rows  {per_sec}  eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_position(already);
            bar
        });
        if bar.is_none() {
            tracing::info!(rows = total, already, "seeding");
        }
        Self { bar }
    }

    fn add(&self, table: &'static str, rows: usize) {
        match &self.bar {
            Some(bar) => {
                bar.set_message(table);
                bar.inc(rows as u64);
            }
            None => tracing::info!(table, rows, "chunk committed"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_with_message("done");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_remaining_ids_once() {
        let ranges: Vec<_> = chunks(0, 25_000).collect();
        assert_eq!(ranges, [1..=10_000, 10_001..=20_000, 20_001..=25_000]);
        let resumed: Vec<_> = chunks(20_000, 25_000).collect();
        assert_eq!(resumed, [20_001..=25_000]);
        assert_eq!(chunks(25_000, 25_000).count(), 0);
    }

    #[test]
    fn only_a_prefix_of_the_workload_can_be_resumed() {
        let size = |rows, max_id| TableSize { rows, max_id };
        assert_eq!(done("users", size(0, None), 10).ok(), Some(0));
        assert_eq!(done("users", size(5, Some(5)), 10).ok(), Some(5));
        assert!(done("users", size(5, Some(7)), 10).is_err(), "a gap");
        assert!(
            done("users", size(11, Some(11)), 10).is_err(),
            "more than wanted"
        );
    }
}
