-- Nodes sharing the database: each `jobhost serve` registers at start and heartbeats.
CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    labels TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('online', 'draining', 'offline')),
    version TEXT NOT NULL,
    advertise TEXT,
    concurrency INTEGER NOT NULL,
    millicpus INTEGER NOT NULL,
    memory_mb INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    last_seen TEXT NOT NULL
);
