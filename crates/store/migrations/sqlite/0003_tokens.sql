-- Scoped API tokens. Only a SHA-256 of each token is kept: a stolen database lets nobody in.
CREATE TABLE api_tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    -- read | operate | admin
    scope       TEXT NOT NULL,
    -- lowercase hex SHA-256 of the whole token
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    last_used   BIGINT,
    revoked_at  BIGINT
);
