-- Workflows: DAGs of steps, each a job template; a schedule starts runs on its own
-- (`next_run_at` is its next tick).
CREATE TABLE workflows (
    id            TEXT COLLATE "C" PRIMARY KEY,
    user_id       TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    name          TEXT COLLATE "C" NOT NULL,
    description   TEXT,
    steps         JSON NOT NULL,
    schedule      TEXT,
    concurrency   BIGINT,
    params_schema JSON,
    next_run_at   TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    UNIQUE (user_id, name)
);
CREATE INDEX workflows_scheduled ON workflows (next_run_at) WHERE schedule IS NOT NULL;
-- Runs: one execution each, with the steps as they were when it was started. A run
-- started by a schedule names its tick, once per workflow whichever node starts it.
CREATE TABLE runs (
    id            TEXT COLLATE "C" PRIMARY KEY,
    workflow_id   TEXT NOT NULL,
    workflow      TEXT NOT NULL,
    user_id       TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    status        TEXT NOT NULL CHECK (status IN ('pending', 'running', 'success', 'failed', 'cancelled')),
    params        JSON NOT NULL,
    steps         JSON NOT NULL,
    triggered_by  TEXT NOT NULL,
    client_run_id TEXT,
    tick          TIMESTAMPTZ,
    error         TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    started_at    TIMESTAMPTZ,
    ended_at      TIMESTAMPTZ
);
CREATE UNIQUE INDEX runs_client ON runs (user_id, client_run_id) WHERE client_run_id IS NOT NULL;
CREATE UNIQUE INDEX runs_tick ON runs (workflow_id, tick) WHERE tick IS NOT NULL;
CREATE INDEX runs_live ON runs (workflow_id, status) WHERE status IN ('pending', 'running');
CREATE INDEX runs_by_user ON runs (user_id, id);
-- Tasks are jobs that name their run, step and index.
ALTER TABLE jobs ADD COLUMN run_id TEXT;
ALTER TABLE jobs ADD COLUMN step TEXT;
ALTER TABLE jobs ADD COLUMN task_index BIGINT;
CREATE INDEX jobs_run ON jobs (run_id, step, task_index) WHERE run_id IS NOT NULL;
