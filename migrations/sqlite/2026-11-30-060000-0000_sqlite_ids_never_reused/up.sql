-- Ids are never reused. Without AUTOINCREMENT, SQLite gives a new row
-- max(id) + 1, so deleting the newest user and creating another hands out
-- the deleted user's id again, and a client retrying a DELETE or PATCH on
-- that id hits someone else. AUTOINCREMENT records the largest id ever used
-- (in sqlite_sequence) and never goes below it.
--
-- SQLite cannot add AUTOINCREMENT to a table, so each table is rebuilt the
-- way SQLite documents (https://www.sqlite.org/lang_altertable.html#otheralter):
-- create the new table, copy the rows with their ids, drop the old one,
-- rename the new one, recreate the indexes. keel's migrator runs SQLite
-- migrations with foreign keys off (dropping the old table must not cascade
-- into its children) and checks every foreign key before it commits.
-- Copying the ids sets each table's sqlite_sequence entry to its largest id.
-- (Ids deleted before this migration are recorded nowhere, so the newest of
-- them may still be handed out once.)

CREATE TABLE users_rebuilt (
    id         INTEGER      NOT NULL PRIMARY KEY AUTOINCREMENT,
    email      VARCHAR(120) NOT NULL,
    full_name  VARCHAR(100) NOT NULL,
    first_name VARCHAR(50),
    last_name  VARCHAR(50),
    is_active  BOOLEAN      NOT NULL DEFAULT 1,
    created_at TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP
);
INSERT INTO users_rebuilt (id, email, full_name, first_name, last_name, is_active, created_at)
    SELECT id, email, full_name, first_name, last_name, is_active, created_at FROM users;
DROP TABLE users;
ALTER TABLE users_rebuilt RENAME TO users;
CREATE UNIQUE INDEX ix_users_email ON users (email);
CREATE INDEX ix_users_last_name ON users (last_name);
CREATE INDEX idx_users_full_name ON users (last_name, first_name);

CREATE TABLE posts_rebuilt (
    id         INTEGER      NOT NULL PRIMARY KEY AUTOINCREMENT,
    title      VARCHAR(200) NOT NULL,
    content    TEXT         NOT NULL,
    author_id  INTEGER      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP
);
INSERT INTO posts_rebuilt (id, title, content, author_id, created_at)
    SELECT id, title, content, author_id, created_at FROM posts;
DROP TABLE posts;
ALTER TABLE posts_rebuilt RENAME TO posts;
CREATE INDEX ix_posts_author_id ON posts (author_id);

CREATE TABLE comments_rebuilt (
    id         INTEGER   NOT NULL PRIMARY KEY AUTOINCREMENT,
    body       TEXT      NOT NULL,
    post_id    INTEGER   NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    author_id  INTEGER   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
INSERT INTO comments_rebuilt (id, body, post_id, author_id, created_at)
    SELECT id, body, post_id, author_id, created_at FROM comments;
DROP TABLE comments;
ALTER TABLE comments_rebuilt RENAME TO comments;
CREATE INDEX ix_comments_post_id ON comments (post_id);
CREATE INDEX ix_comments_author_id ON comments (author_id);
