-- Core schema: users, installed plugins, jobs, their log chunks and artifacts.
-- Timestamps are RFC 3339 UTC text with a trailing Z; JSON values are stored as text.

CREATE TABLE users (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    is_admin   INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);

CREATE TABLE plugins (
    name         TEXT PRIMARY KEY,
    digest       TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('plugin', 'command')),
    size_bytes   INTEGER NOT NULL,
    installed_at TEXT NOT NULL
);

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES users (id),
    kind             TEXT NOT NULL,
    plugin           TEXT NOT NULL,
    plugin_digest    TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'starting', 'running',
                         'completed', 'failed', 'timed_out', 'cancelled', 'cleaning', 'cleaned')),
    args             TEXT NOT NULL,
    env              TEXT NOT NULL,
    input            TEXT,
    labels           TEXT NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    cpus             INTEGER NOT NULL,
    memory_mb        INTEGER NOT NULL,
    timeout_s        INTEGER NOT NULL,
    client_job_id    TEXT,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL DEFAULT 1,
    lease_expires_at TEXT,
    exit_code        INTEGER,
    error            TEXT,
    progress_done    INTEGER,
    progress_total   INTEGER,
    progress_message TEXT,
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    completed_at     TEXT,
    updated_at       TEXT NOT NULL
);

-- The scheduler's claim query: next pending job by priority, then age.
CREATE INDEX jobs_queue ON jobs (status, priority DESC, id);
-- Listing a user's jobs newest first, optionally by status.
CREATE INDEX jobs_user ON jobs (user_id, status, id);
-- An idempotency key names one live job per user until that job is cleaned.
CREATE UNIQUE INDEX jobs_client_job_id ON jobs (user_id, client_job_id)
    WHERE client_job_id IS NOT NULL AND status <> 'cleaned';

CREATE TABLE log_chunks (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq    INTEGER NOT NULL,
    stream TEXT NOT NULL CHECK (stream IN ('stdout', 'stderr', 'log', 'system')),
    data   TEXT NOT NULL,
    at     TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;

CREATE TABLE artifacts (
    id         TEXT PRIMARY KEY,
    job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (job_id, name)
);
