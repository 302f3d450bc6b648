-- Posts belong to a user; deleting the user deletes them.
CREATE TABLE posts (
    id         SERIAL       PRIMARY KEY,
    title      VARCHAR(200) NOT NULL,
    content    TEXT         NOT NULL,
    author_id  INTEGER      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMP    NOT NULL DEFAULT now()
);

CREATE INDEX ix_posts_author_id ON posts (author_id);
