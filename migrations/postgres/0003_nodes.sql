-- Nodes run jobs: each job records the node that took its latest attempt and the
-- labels a node must have to take it; admission counts each node's own jobs.
ALTER TABLE jobs ADD COLUMN worker_id TEXT COLLATE "C";
ALTER TABLE jobs ADD COLUMN requires TEXT[] NOT NULL DEFAULT '{}';
CREATE INDEX jobs_live_by_worker ON jobs (worker_id) WHERE status IN ('starting', 'running');
CREATE INDEX jobs_live_by_lease ON jobs (lease_expires_at) WHERE status IN ('starting', 'running');
-- An upload's files stay on the node it was created through; a job run elsewhere
-- fetches them from there.
ALTER TABLE uploads ADD COLUMN worker_id TEXT COLLATE "C";
-- The bytes of every installed component, so any node can run what another installed.
CREATE TABLE components (
    digest     TEXT COLLATE "C" PRIMARY KEY,
    wasm       BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
