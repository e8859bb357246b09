-- Numbered tags: version_key orders a live tag's version as bytes (see
-- oci.Version), made under the repository's version_scheme; keys made under
-- another scheme are recomputed before use.
ALTER TABLE tags ADD COLUMN version_key BLOB;
ALTER TABLE repositories ADD COLUMN version_scheme TEXT NOT NULL DEFAULT '';
CREATE INDEX tags_versions ON tags (repository_id, version_key) WHERE ended_at IS NULL AND version_key IS NOT NULL;
-- A repository's history, newest first.
CREATE INDEX tags_by_repository ON tags (repository_id, id);

-- Tag policies set through the admin API, one per repository name or glob;
-- body is the policy's JSON.
CREATE TABLE policies (
    repositories TEXT    PRIMARY KEY,
    body         TEXT    NOT NULL,
    updated_at   INTEGER NOT NULL,
    updated_by   TEXT    NOT NULL DEFAULT ''
);
