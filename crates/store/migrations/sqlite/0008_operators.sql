-- Named operator accounts, and the console's server-side sessions.
-- An operator signs in with a password, kept only as an argon2id PHC string.
CREATE TABLE operators (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT NOT NULL UNIQUE,
    -- read | operate | admin
    scope          TEXT NOT NULL,
    -- argon2id PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash)
    password_hash  TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    disabled_at    BIGINT
);

-- A console session: only the SHA-256 of its random id is kept, so a stolen database opens no
-- session. `actor` is what the audit log names (`operator:NAME`, `token:NAME` or `admin`).
CREATE TABLE console_sessions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    -- lowercase hex SHA-256 of the session id the cookie carries
    session_hash  TEXT NOT NULL UNIQUE,
    actor         TEXT NOT NULL,
    scope         TEXT NOT NULL,
    -- the API token a session was opened with (revoking the token ends the session), if any
    token_id      BIGINT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_at    BIGINT
);
CREATE INDEX console_sessions_actor ON console_sessions (actor);
