-- Uploads (files sent in before a job consumes them) and API tokens.

CREATE TABLE uploads (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    state       TEXT NOT NULL CHECK (state IN ('open', 'finalized', 'consumed', 'expired')),
    size_bytes  INTEGER NOT NULL DEFAULT 0,
    file_count  INTEGER NOT NULL DEFAULT 0,
    job_id      TEXT REFERENCES jobs (id) ON DELETE SET NULL,
    expires_at  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

-- The sweeper's query: live uploads past their expiry.
CREATE INDEX uploads_expiry ON uploads (state, expires_at);
-- Per-user limits count a user's live uploads.
CREATE INDEX uploads_user ON uploads (user_id, state);

-- The upload a job consumed (its files are the job's /input).
ALTER TABLE jobs ADD COLUMN files_id TEXT REFERENCES uploads (id);

-- Retention: terminal jobs by age.
CREATE INDEX jobs_completed ON jobs (status, completed_at);

CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id),
    -- SHA-256 of the whole token, hex; the token itself is never stored.
    hash         TEXT NOT NULL UNIQUE,
    -- The first characters of the token, to tell tokens apart in listings.
    prefix       TEXT NOT NULL,
    -- Space-separated scopes: admin, submit, read, worker.
    scopes       TEXT NOT NULL,
    expires_at   TEXT,
    last_used_at TEXT,
    revoked_at   TEXT,
    created_at   TEXT NOT NULL
);

CREATE INDEX tokens_user ON tokens (user_id);
