-- The schema of migrations/sqlite/0001_init.sql, in PostgreSQL's types.
-- Times are Unix nanoseconds (UTC), digests are "alg:hex" text. Names,
-- digests and ids are compared byte by byte (COLLATE "C"), as in SQLite,
-- whatever the database's locale: lists page in byte order ("10" < "9",
-- "A" < "a"), and the indexes serve that order.

CREATE TABLE repositories (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

-- One row per stored blob, however many repositories link it.
CREATE TABLE blobs (
    digest         TEXT COLLATE "C" PRIMARY KEY,
    size           BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    last_linked_at BIGINT NOT NULL,
    state          TEXT   NOT NULL DEFAULT 'live'
);

-- The access list: a repository may serve a blob only if it links it.
CREATE TABLE repository_blobs (
    repository_id BIGINT NOT NULL REFERENCES repositories (id),
    digest        TEXT COLLATE "C" NOT NULL REFERENCES blobs (digest),
    linked_at     BIGINT NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX repository_blobs_digest ON repository_blobs (digest);

-- Manifests are stored once by digest, as their exact bytes.
CREATE TABLE manifests (
    digest         TEXT COLLATE "C" PRIMARY KEY,
    media_type     TEXT   NOT NULL,
    artifact_type  TEXT   NOT NULL DEFAULT '',
    subject_digest TEXT COLLATE "C",
    config_digest  TEXT COLLATE "C",
    payload        BYTEA  NOT NULL,
    size           BIGINT NOT NULL,
    created_at     BIGINT NOT NULL
);
CREATE INDEX manifests_subject ON manifests (subject_digest) WHERE subject_digest IS NOT NULL;

CREATE TABLE repository_manifests (
    repository_id BIGINT NOT NULL REFERENCES repositories (id),
    digest        TEXT COLLATE "C" NOT NULL REFERENCES manifests (digest),
    linked_at     BIGINT NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX repository_manifests_digest ON repository_manifests (digest);

-- What each manifest needs: config, layers, child manifests. GC walks these.
CREATE TABLE manifest_references (
    manifest_digest TEXT COLLATE "C" NOT NULL REFERENCES manifests (digest),
    child_digest    TEXT COLLATE "C" NOT NULL,
    kind            TEXT NOT NULL,
    PRIMARY KEY (manifest_digest, child_digest, kind)
);
CREATE INDEX manifest_references_child ON manifest_references (child_digest);

-- Tag history: each tag is a series of rows; the live one has ended_at NULL.
-- actor/action say who opened a row and why, ended_by/end_action who closed it.
CREATE TABLE tags (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repository_id   BIGINT NOT NULL REFERENCES repositories (id),
    name            TEXT COLLATE "C" NOT NULL,
    manifest_digest TEXT COLLATE "C" NOT NULL REFERENCES manifests (digest),
    started_at      BIGINT NOT NULL,
    ended_at        BIGINT,
    actor           TEXT   NOT NULL DEFAULT '',
    action          TEXT   NOT NULL,
    ended_by        TEXT,
    end_action      TEXT
);
CREATE UNIQUE INDEX tags_live ON tags (repository_id, name) WHERE ended_at IS NULL;
CREATE INDEX tags_history ON tags (repository_id, name, started_at);
CREATE INDEX tags_manifest ON tags (manifest_digest);

-- Blob uploads in progress; hash_state lets any process continue one.
CREATE TABLE uploads (
    id            TEXT COLLATE "C" PRIMARY KEY,
    repository_id BIGINT NOT NULL REFERENCES repositories (id),
    started_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    size          BIGINT NOT NULL DEFAULT 0,
    hash_state    BYTEA,
    driver_state  BYTEA
);
CREATE INDEX uploads_updated ON uploads (updated_at);
