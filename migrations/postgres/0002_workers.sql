-- Nodes sharing the database: each `jobhost serve` registers at start and heartbeats.
CREATE TABLE workers (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL,
    labels      JSON NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('online', 'draining', 'offline')),
    version     TEXT NOT NULL,
    advertise   TEXT,
    concurrency BIGINT NOT NULL,
    millicpus   BIGINT NOT NULL,
    memory_mb   BIGINT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    last_seen   TIMESTAMPTZ NOT NULL
);
