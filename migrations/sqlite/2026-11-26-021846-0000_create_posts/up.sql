-- Posts belong to a user; deleting the user deletes them (foreign keys are
-- enforced because every keel connection sets PRAGMA foreign_keys = ON).
CREATE TABLE posts (
    id         INTEGER      NOT NULL PRIMARY KEY,
    title      VARCHAR(200) NOT NULL,
    content    TEXT         NOT NULL,
    author_id  INTEGER      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX ix_posts_author_id ON posts (author_id);
