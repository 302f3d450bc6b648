-- Nothing to change on PostgreSQL: an identity column's sequence never hands
-- out a value twice, even after the row holding it is deleted. The migration
-- exists so both backends list the same versions (see migrations/sqlite);
-- PostgreSQL refuses an empty migration, hence the SELECT.
SELECT 1;
