-- Workflows: DAGs of steps (JSON), each a job template; a schedule starts runs on its
-- own (`next_run_at` is its next tick).
CREATE TABLE workflows (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id),
    name          TEXT NOT NULL,
    description   TEXT,
    steps         TEXT NOT NULL,
    schedule      TEXT,
    concurrency   INTEGER,
    params_schema TEXT,
    next_run_at   TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (user_id, name)
);
CREATE INDEX workflows_scheduled ON workflows (next_run_at) WHERE schedule IS NOT NULL;
-- Runs: one execution each, with the steps as they were when it was started. A run
-- started by a schedule names its tick, once per workflow whichever node starts it.
CREATE TABLE runs (
    id            TEXT PRIMARY KEY,
    workflow_id   TEXT NOT NULL,
    workflow      TEXT NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users (id),
    status        TEXT NOT NULL CHECK (status IN ('pending', 'running', 'success', 'failed', 'cancelled')),
    params        TEXT NOT NULL,
    steps         TEXT NOT NULL,
    triggered_by  TEXT NOT NULL,
    client_run_id TEXT,
    tick          TEXT,
    error         TEXT,
    created_at    TEXT NOT NULL,
    started_at    TEXT,
    ended_at      TEXT
);
CREATE UNIQUE INDEX runs_client ON runs (user_id, client_run_id) WHERE client_run_id IS NOT NULL;
CREATE UNIQUE INDEX runs_tick ON runs (workflow_id, tick) WHERE tick IS NOT NULL;
CREATE INDEX runs_live ON runs (workflow_id, status) WHERE status IN ('pending', 'running');
CREATE INDEX runs_by_user ON runs (user_id, id);
-- Tasks are jobs that name their run, step and index.
ALTER TABLE jobs ADD COLUMN run_id TEXT;
ALTER TABLE jobs ADD COLUMN step TEXT;
ALTER TABLE jobs ADD COLUMN task_index INTEGER;
CREATE INDEX jobs_run ON jobs (run_id, step, task_index) WHERE run_id IS NOT NULL;
