-- The schema of migrations/sqlite/0004_outbox.sql, in PostgreSQL's types.
-- Webhook endpoints, from the configuration or the admin API; body is the
-- endpoint as JSON, which only the notify package reads.
CREATE TABLE webhooks (
    name            TEXT COLLATE "C" PRIMARY KEY,
    body            TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    disabled_at     BIGINT,
    disabled_reason TEXT    NOT NULL DEFAULT '',
    failures        BIGINT  NOT NULL DEFAULT 0, -- consecutive failed attempts
    paused_until    BIGINT  NOT NULL DEFAULT 0
);

-- The outbox: events, written with the change they announce, and one
-- delivery per endpoint that wants the event. Within a repository, events
-- commit in seq order.
CREATE TABLE events (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         TEXT    NOT NULL UNIQUE,
    created_at BIGINT  NOT NULL,
    repository TEXT COLLATE "C" NOT NULL,
    body       TEXT    NOT NULL
);

CREATE TABLE deliveries (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_seq     BIGINT  NOT NULL REFERENCES events (seq),
    webhook       TEXT COLLATE "C" NOT NULL,
    repository    TEXT COLLATE "C" NOT NULL,
    state         TEXT    NOT NULL DEFAULT 'pending', -- pending, delivered, dead
    attempts      BIGINT  NOT NULL DEFAULT 0,
    next_at       BIGINT  NOT NULL,
    due_since     BIGINT  NOT NULL,
    claimed_until BIGINT  NOT NULL DEFAULT 0,
    created_at    BIGINT  NOT NULL,
    done_at       BIGINT
);
-- The oldest pending delivery per endpoint and repository goes first.
CREATE INDEX deliveries_pending ON deliveries (webhook, repository, id) WHERE state = 'pending';
-- The due ones: heads of lines (the rest wait with next_at at the largest value).
CREATE INDEX deliveries_due ON deliveries (next_at) WHERE state = 'pending';
CREATE INDEX deliveries_by_webhook ON deliveries (webhook, id);
-- Pruning: the events whose deliveries are all gone, the deliveries done long ago.
CREATE INDEX deliveries_by_event ON deliveries (event_seq);
-- The dead letters, counted for the metrics (the pending ones are counted from deliveries_due).
CREATE INDEX deliveries_dead ON deliveries (id) WHERE state = 'dead';
CREATE INDEX deliveries_done ON deliveries (done_at) WHERE state = 'delivered';

CREATE TABLE delivery_attempts (
    delivery_id BIGINT  NOT NULL REFERENCES deliveries (id),
    attempt     BIGINT  NOT NULL,
    at          BIGINT  NOT NULL,
    status      BIGINT  NOT NULL, -- the HTTP status; 0 when there was none
    latency     BIGINT  NOT NULL, -- nanoseconds
    response    TEXT    NOT NULL, -- the start of the body, or the error
    PRIMARY KEY (delivery_id, attempt)
);
