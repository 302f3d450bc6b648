-- Back to tables without AUTOINCREMENT (ids may be reused again), rebuilt
-- the same way as in up.sql, rows, ids, indexes and foreign keys kept.
-- Dropping a table removes its sqlite_sequence entry.

CREATE TABLE users_rebuilt (
    id         INTEGER      NOT NULL PRIMARY KEY,
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
    id         INTEGER      NOT NULL PRIMARY KEY,
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
    id         INTEGER   NOT NULL PRIMARY KEY,
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
