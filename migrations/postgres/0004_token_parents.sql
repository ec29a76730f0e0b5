-- A token minted by a non-admin token records it: it is revoked with it.
ALTER TABLE tokens ADD COLUMN parent_id TEXT COLLATE "C" REFERENCES tokens (id);
CREATE INDEX tokens_parent ON tokens (parent_id) WHERE parent_id IS NOT NULL;
