-- Dropping the column drops its index, foreign key and check.
ALTER TABLE comments DROP COLUMN parent_id;
