-- Times are Unix nanoseconds (UTC), digests are "alg:hex" text.

CREATE TABLE repositories (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

-- One row per stored blob, however many repositories link it.
CREATE TABLE blobs (
    digest         TEXT    PRIMARY KEY,
    size           INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    last_linked_at INTEGER NOT NULL,
    state          TEXT    NOT NULL DEFAULT 'live'
);

-- The access list: a repository may serve a blob only if it links it.
CREATE TABLE repository_blobs (
    repository_id INTEGER NOT NULL REFERENCES repositories (id),
    digest        TEXT    NOT NULL REFERENCES blobs (digest),
    linked_at     INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX repository_blobs_digest ON repository_blobs (digest);

-- Manifests are stored once by digest, as their exact bytes.
CREATE TABLE manifests (
    digest         TEXT    PRIMARY KEY,
    media_type     TEXT    NOT NULL,
    artifact_type  TEXT    NOT NULL DEFAULT '',
    subject_digest TEXT,
    config_digest  TEXT,
    payload        BLOB    NOT NULL,
    size           INTEGER NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE INDEX manifests_subject ON manifests (subject_digest) WHERE subject_digest IS NOT NULL;

CREATE TABLE repository_manifests (
    repository_id INTEGER NOT NULL REFERENCES repositories (id),
    digest        TEXT    NOT NULL REFERENCES manifests (digest),
    linked_at     INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX repository_manifests_digest ON repository_manifests (digest);

-- What each manifest needs: config, layers, child manifests. GC walks these.
CREATE TABLE manifest_references (
    manifest_digest TEXT NOT NULL REFERENCES manifests (digest),
    child_digest    TEXT NOT NULL,
    kind            TEXT NOT NULL,
    PRIMARY KEY (manifest_digest, child_digest, kind)
);
CREATE INDEX manifest_references_child ON manifest_references (child_digest);

-- Tag history: each tag is a series of rows; the live one has ended_at NULL.
-- actor/action say who opened a row and why, ended_by/end_action who closed it.
CREATE TABLE tags (
    id              INTEGER PRIMARY KEY,
    repository_id   INTEGER NOT NULL REFERENCES repositories (id),
    name            TEXT    NOT NULL,
    manifest_digest TEXT    NOT NULL REFERENCES manifests (digest),
    started_at      INTEGER NOT NULL,
    ended_at        INTEGER,
    actor           TEXT    NOT NULL DEFAULT '',
    action          TEXT    NOT NULL,
    ended_by        TEXT,
    end_action      TEXT
);
CREATE UNIQUE INDEX tags_live ON tags (repository_id, name) WHERE ended_at IS NULL;
CREATE INDEX tags_history ON tags (repository_id, name, started_at);
CREATE INDEX tags_manifest ON tags (manifest_digest);

-- Blob uploads in progress; hash_state lets any process continue one.
CREATE TABLE uploads (
    id            TEXT    PRIMARY KEY,
    repository_id INTEGER NOT NULL REFERENCES repositories (id),
    started_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    size          INTEGER NOT NULL DEFAULT 0,
    hash_state    BLOB,
    driver_state  BLOB
);
CREATE INDEX uploads_updated ON uploads (updated_at);
