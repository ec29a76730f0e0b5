-- The chain of causes behind a job's one-line `error` (or a trap's backtrace).
ALTER TABLE jobs ADD COLUMN detail TEXT;
