-- Retries and delayed jobs: a pending job is held until `run_at` (NULL: it may be
-- claimed now), `retry` says how a failed attempt waits before the next, and
-- `outcome` is how the attempt that last ended did (a retried job is pending again,
-- so its status cannot say).
ALTER TABLE jobs ADD COLUMN run_at TIMESTAMPTZ;
ALTER TABLE jobs ADD COLUMN retry JSON;
ALTER TABLE jobs ADD COLUMN outcome TEXT;
-- Claims walk only jobs that may run now; held jobs are found by their time.
CREATE INDEX jobs_ready ON jobs (priority DESC, id) WHERE status = 'pending' AND run_at IS NULL;
CREATE INDEX jobs_held ON jobs (run_at) WHERE status = 'pending' AND run_at IS NOT NULL;
-- Every attempt's end, written by the trigger below whichever statement ended it (a
-- run's end, a retry, a cancel, a recovery), so no path can forget one.
CREATE TABLE job_attempts (
    job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt    BIGINT NOT NULL,
    status     TEXT NOT NULL,
    exit_code  INTEGER,
    error      TEXT,
    started_at TIMESTAMPTZ,
    ended_at   TIMESTAMPTZ NOT NULL,
    worker_id  TEXT,
    PRIMARY KEY (job_id, attempt)
);
CREATE FUNCTION job_attempt_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_attempts (job_id, attempt, status, exit_code, error, started_at, ended_at, worker_id)
    VALUES (NEW.id, NEW.attempt,
            CASE WHEN NEW.status = 'pending' THEN COALESCE(NEW.outcome, 'lost') ELSE NEW.status END,
            CASE WHEN NEW.outcome = 'lost' OR NEW.status = 'cancelled' THEN NULL ELSE NEW.exit_code END,
            CASE WHEN NEW.outcome = 'lost' AND NEW.status = 'pending' THEN NULL ELSE NEW.error END,
            NEW.started_at, NEW.updated_at, NEW.worker_id)
    ON CONFLICT (job_id, attempt) DO UPDATE SET status = excluded.status, exit_code = excluded.exit_code,
        error = excluded.error, started_at = excluded.started_at, ended_at = excluded.ended_at,
        worker_id = excluded.worker_id;
    RETURN NULL;
END $$;
CREATE TRIGGER job_attempt_ended AFTER UPDATE OF status ON jobs FOR EACH ROW
    WHEN (OLD.status IN ('starting', 'running') AND NEW.status NOT IN ('starting', 'running'))
    EXECUTE FUNCTION job_attempt_ended();
