-- created_at is a TIMESTAMP (no zone) that keel reads as UTC. `now()` is
-- converted to the writing session's time zone when stored in such a column,
-- so a row inserted by psql, another service or a backfill in a
-- `SET TIME ZONE 'America/New_York'` session held New York time. Converting
-- explicitly stores UTC whoever writes the row.
ALTER TABLE users ALTER COLUMN created_at SET DEFAULT (now() AT TIME ZONE 'utc');
ALTER TABLE posts ALTER COLUMN created_at SET DEFAULT (now() AT TIME ZONE 'utc');
ALTER TABLE comments ALTER COLUMN created_at SET DEFAULT (now() AT TIME ZONE 'utc');
