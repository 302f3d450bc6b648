-- Users. The unique index on email serves lookups by email; last_name and
-- (last_name, first_name) serve name searches.
CREATE TABLE users (
    id         SERIAL       PRIMARY KEY,
    email      VARCHAR(120) NOT NULL,
    full_name  VARCHAR(100) NOT NULL,
    first_name VARCHAR(50),
    last_name  VARCHAR(50),
    is_active  BOOLEAN      NOT NULL DEFAULT true,
    created_at TIMESTAMP    NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX ix_users_email ON users (email);
CREATE INDEX ix_users_last_name ON users (last_name);
CREATE INDEX idx_users_full_name ON users (last_name, first_name);
