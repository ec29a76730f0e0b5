-- A container job's image and how its command starts (JSON: image, entrypoint, workdir).
ALTER TABLE jobs ADD COLUMN container TEXT;
-- The engine's id of the container the latest attempt ran in.
ALTER TABLE jobs ADD COLUMN container_id TEXT;
