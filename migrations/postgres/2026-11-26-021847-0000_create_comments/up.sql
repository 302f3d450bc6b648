-- Comments belong to a post and to their author; deleting either deletes them.
CREATE TABLE comments (
    id         SERIAL    PRIMARY KEY,
    body       TEXT      NOT NULL,
    post_id    INTEGER   NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    author_id  INTEGER   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL DEFAULT now()
);

CREATE INDEX ix_comments_post_id ON comments (post_id);
CREATE INDEX ix_comments_author_id ON comments (author_id);
