-- The whole schema, equal in meaning to migrations/sqlite after its 0004: users,
-- installed plugins, jobs, their log chunks and artifacts, uploads and API tokens.
-- One migration, since no Postgres database predates it; later changes are numbered
-- migrations here as they are under sqlite/.
--
-- Timestamps are TIMESTAMPTZ, read back by the store as RFC 3339 UTC text with
-- milliseconds and a trailing Z (what the model carries). JSON values are JSON, not
-- JSONB: kept verbatim as SQLite keeps them, and JSONB refuses the escape \u0000 that
-- JSON text may hold. Log chunk data is BYTEA (UTF-8 text): Postgres TEXT cannot hold
-- NUL, which a job's output may contain. Ids and names sort by their bytes (COLLATE
-- "C"), as SQLite sorts text, whatever the database's default collation.

CREATE TABLE users (
    id         TEXT COLLATE "C" PRIMARY KEY,
    name       TEXT COLLATE "C" NOT NULL UNIQUE,
    is_admin   BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE plugins (
    name         TEXT COLLATE "C" PRIMARY KEY,
    digest       TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('plugin', 'command')),
    size_bytes   BIGINT NOT NULL,
    installed_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE uploads (
    id          TEXT COLLATE "C" PRIMARY KEY,
    user_id     TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    state       TEXT NOT NULL CHECK (state IN ('open', 'finalized', 'consumed', 'expired')),
    size_bytes  BIGINT NOT NULL DEFAULT 0,
    file_count  BIGINT NOT NULL DEFAULT 0,
    -- The job that consumed it (its reference is added below, after `jobs`).
    job_id      TEXT COLLATE "C",
    expires_at  TIMESTAMPTZ NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

-- The sweeper's query: live uploads past their expiry.
CREATE INDEX uploads_expiry ON uploads (state, expires_at);
-- Per-user limits count a user's live uploads.
CREATE INDEX uploads_user ON uploads (user_id, state);

CREATE TABLE jobs (
    id               TEXT COLLATE "C" PRIMARY KEY,
    user_id          TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    kind             TEXT NOT NULL,
    plugin           TEXT NOT NULL,
    plugin_digest    TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'starting', 'running',
                         'completed', 'failed', 'timed_out', 'cancelled', 'cleaning', 'cleaned')),
    args             JSON NOT NULL,
    env              JSON NOT NULL,
    input            JSON,
    labels           JSON NOT NULL,
    priority         BIGINT NOT NULL DEFAULT 0,
    -- Declared CPUs in thousandths of a CPU.
    millicpus        BIGINT NOT NULL,
    memory_mb        BIGINT NOT NULL,
    timeout_s        BIGINT NOT NULL,
    client_job_id    TEXT,
    attempt          BIGINT NOT NULL DEFAULT 0,
    max_attempts     BIGINT NOT NULL DEFAULT 1,
    lease_expires_at TIMESTAMPTZ,
    exit_code        INTEGER,
    error            TEXT,
    -- The chain of causes behind `error` (or a trap's backtrace).
    detail           TEXT,
    progress_done    BIGINT,
    progress_total   BIGINT,
    progress_message TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    started_at       TIMESTAMPTZ,
    completed_at     TIMESTAMPTZ,
    updated_at       TIMESTAMPTZ NOT NULL,
    -- The upload the job consumed (its files are the job's /input).
    files_id         TEXT COLLATE "C" REFERENCES uploads (id)
);

ALTER TABLE uploads ADD FOREIGN KEY (job_id) REFERENCES jobs (id) ON DELETE SET NULL;

-- The scheduler's claim query: next pending job by priority, then age.
CREATE INDEX jobs_queue ON jobs (status, priority DESC, id);
-- Listing a user's jobs newest first, optionally by status.
CREATE INDEX jobs_user ON jobs (user_id, status, id);
-- An idempotency key names one live job per user until that job is cleaned.
CREATE UNIQUE INDEX jobs_client_job_id ON jobs (user_id, client_job_id)
    WHERE client_job_id IS NOT NULL AND status <> 'cleaned';
-- Retention: terminal jobs by age.
CREATE INDEX jobs_completed ON jobs (status, completed_at);

CREATE TABLE log_chunks (
    job_id TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq    BIGINT NOT NULL,
    stream TEXT NOT NULL CHECK (stream IN ('stdout', 'stderr', 'log', 'system')),
    data   BYTEA NOT NULL,
    at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE artifacts (
    id         TEXT COLLATE "C" PRIMARY KEY,
    job_id     TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name       TEXT COLLATE "C" NOT NULL,
    size_bytes BIGINT NOT NULL,
    sha256     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (job_id, name)
);

CREATE TABLE tokens (
    id           TEXT COLLATE "C" PRIMARY KEY,
    user_id      TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    -- SHA-256 of the whole token, hex; the token itself is never stored.
    hash         TEXT NOT NULL UNIQUE,
    -- The first characters of the token, to tell tokens apart in listings.
    prefix       TEXT NOT NULL,
    -- Space-separated scopes: admin, submit, read, worker.
    scopes       TEXT NOT NULL,
    expires_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL
);

CREATE INDEX tokens_user ON tokens (user_id);
