-- SQLite cannot drop a column that holds a foreign key, so the table is
-- rebuilt without it, as in 2026-11-30-060000-0000_sqlite_ids_never_reused:
-- rows, ids, indexes and the other foreign keys kept. Replies become
-- top-level comments.
CREATE TABLE comments_rebuilt (
    id         INTEGER   NOT NULL PRIMARY KEY AUTOINCREMENT,
    body       TEXT      NOT NULL,
    post_id    INTEGER   NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    author_id  INTEGER   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
INSERT INTO comments_rebuilt (id, body, post_id, author_id, created_at)
    SELECT id, body, post_id, author_id, created_at FROM comments;
-- The largest id ever used carries over, not just the largest still there:
-- dropping the old table drops its sqlite_sequence entry.
DELETE FROM sqlite_sequence WHERE name = 'comments_rebuilt';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'comments_rebuilt', seq FROM sqlite_sequence WHERE name = 'comments';
DROP TABLE comments;
ALTER TABLE comments_rebuilt RENAME TO comments;
CREATE INDEX ix_comments_post_id ON comments (post_id);
CREATE INDEX ix_comments_author_id ON comments (author_id);
