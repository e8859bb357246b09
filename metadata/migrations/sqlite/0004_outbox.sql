-- Webhook endpoints, from the configuration or the admin API; body is the
-- endpoint as JSON, which only the notify package reads.
CREATE TABLE webhooks (
    name            TEXT    PRIMARY KEY,
    body            TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    disabled_at     INTEGER,
    disabled_reason TEXT    NOT NULL DEFAULT '',
    failures        INTEGER NOT NULL DEFAULT 0, -- consecutive failed attempts
    paused_until    INTEGER NOT NULL DEFAULT 0
);

-- The outbox: events, written with the change they announce, and one
-- delivery per endpoint that wants the event. Within a repository, events
-- commit in seq order.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused: deliveries name it
    id         TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    repository TEXT    NOT NULL,
    body       TEXT    NOT NULL
);

CREATE TABLE deliveries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused: an attempt in flight names it
    event_seq     INTEGER NOT NULL REFERENCES events (seq),
    webhook       TEXT    NOT NULL,
    repository    TEXT    NOT NULL,
    state         TEXT    NOT NULL DEFAULT 'pending', -- pending, delivered, dead
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       INTEGER NOT NULL,
    due_since     INTEGER NOT NULL, -- when it last became due: its age, for webhooks.max-age, counts from here
    claimed_until INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    done_at       INTEGER
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
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
    attempt     INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    status      INTEGER NOT NULL, -- the HTTP status; 0 when there was none
    latency     INTEGER NOT NULL, -- nanoseconds
    response    TEXT    NOT NULL, -- the start of the body, or the error
    PRIMARY KEY (delivery_id, attempt)
);
