-- Dropping the table drops its indexes.
DROP TABLE users;
