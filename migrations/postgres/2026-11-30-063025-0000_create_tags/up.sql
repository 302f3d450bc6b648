-- Tags, and which posts carry them: many-to-many through post_tags.
CREATE TABLE tags (
    id   SERIAL      PRIMARY KEY,
    name VARCHAR(50) NOT NULL
);

CREATE UNIQUE INDEX ix_tags_name ON tags (name);

-- A post carries a tag at most once. Deleting either side removes the link.
CREATE TABLE post_tags (
    post_id INTEGER NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    tag_id  INTEGER NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    PRIMARY KEY (post_id, tag_id)
);

-- The primary key serves "tags of these posts"; this serves "posts with this
-- tag", in post order (a keyset page reads it in order and stops).
CREATE INDEX ix_post_tags_tag_id ON post_tags (tag_id, post_id);
