-- GPUs: what a job asks for, the devices its latest attempt holds (JSON array of
-- indices; held while the job is starting or running), and what its plugin was
-- granted when it was submitted (JSON array of grant names).
ALTER TABLE jobs ADD COLUMN gpus INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN gpu_type TEXT;
ALTER TABLE jobs ADD COLUMN gpu_devices TEXT NOT NULL DEFAULT '[]';
ALTER TABLE jobs ADD COLUMN grants TEXT NOT NULL DEFAULT '[]';
-- A node's GPUs (JSON array of {index, uuid, type, memory_mb}).
ALTER TABLE workers ADD COLUMN gpus TEXT NOT NULL DEFAULT '[]';
-- What an admin granted a plugin at install (JSON array of grant names).
ALTER TABLE plugins ADD COLUMN grants TEXT NOT NULL DEFAULT '[]';
