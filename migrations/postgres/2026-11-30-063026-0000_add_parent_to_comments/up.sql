-- Threaded comments: a reply names the comment it answers. Deleting a
-- comment deletes its replies, to any depth (the cascade recurses).
ALTER TABLE comments
    ADD COLUMN parent_id INTEGER REFERENCES comments (id) ON DELETE CASCADE;

-- A parent is always older than its reply, so no chain of replies can loop
-- back on itself: every step up the thread goes to a smaller id.
ALTER TABLE comments
    ADD CONSTRAINT ck_comments_parent_before_reply CHECK (parent_id < id);

CREATE INDEX ix_comments_parent_id ON comments (parent_id);
