-- Users: the same columns and indexes as migrations/postgres. SQLite does not
-- enforce VARCHAR lengths; the repo layer validates them before writing.
CREATE TABLE users (
    id         INTEGER      NOT NULL PRIMARY KEY,
    email      VARCHAR(120) NOT NULL,
    full_name  VARCHAR(100) NOT NULL,
    first_name VARCHAR(50),
    last_name  VARCHAR(50),
    is_active  BOOLEAN      NOT NULL DEFAULT 1,
    created_at TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE UNIQUE INDEX ix_users_email ON users (email);
CREATE INDEX ix_users_last_name ON users (last_name);
CREATE INDEX idx_users_full_name ON users (last_name, first_name);
