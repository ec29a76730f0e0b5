-- GPUs: what a job asks for, the devices its latest attempt holds (held while the
-- job is starting or running), and what its plugin was granted when it was submitted.
ALTER TABLE jobs ADD COLUMN gpus BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN gpu_type TEXT;
ALTER TABLE jobs ADD COLUMN gpu_devices BIGINT[] NOT NULL DEFAULT '{}';
ALTER TABLE jobs ADD COLUMN grants TEXT[] NOT NULL DEFAULT '{}';
-- A node's GPUs ({index, uuid, type, memory_mb} each).
ALTER TABLE workers ADD COLUMN gpus JSON NOT NULL DEFAULT '[]';
-- What an admin granted a plugin at install.
ALTER TABLE plugins ADD COLUMN grants TEXT[] NOT NULL DEFAULT '{}';
