-- The schema of migrations/sqlite/0003_versions_policies.sql, in PostgreSQL's types.
ALTER TABLE tags ADD COLUMN version_key BYTEA;
ALTER TABLE repositories ADD COLUMN version_scheme TEXT NOT NULL DEFAULT '';
CREATE INDEX tags_versions ON tags (repository_id, version_key) WHERE ended_at IS NULL AND version_key IS NOT NULL;
CREATE INDEX tags_by_repository ON tags (repository_id, id);

CREATE TABLE policies (
    repositories TEXT COLLATE "C" PRIMARY KEY,
    body         TEXT   NOT NULL,
    updated_at   BIGINT NOT NULL,
    updated_by   TEXT   NOT NULL DEFAULT ''
);
