-- Who opened each upload session (a user name, or an address for an
-- anonymous client), so that open sessions can be capped per client.
ALTER TABLE uploads ADD COLUMN client TEXT NOT NULL DEFAULT '';
CREATE INDEX uploads_client ON uploads (client);
