-- Dropping the tables drops their indexes.
DROP TABLE post_tags;
DROP TABLE tags;
