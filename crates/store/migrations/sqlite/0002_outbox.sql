-- The durable outbox: one row per accepted send, holding the exact MIME bytes, its retry
-- schedule, its lease (so one node sends it at a time) and the first answer given (for
-- idempotent replays). Plus the event log later delivered by webhooks.

CREATE TABLE outbox (
    id               TEXT PRIMARY KEY,          -- also the tracking_id
    workspace_id     TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    account_id       TEXT NOT NULL,             -- no FK: the history outlives the account
    idempotency_key  TEXT,
    request_hash     BLOB NOT NULL,
    status           TEXT NOT NULL,             -- scheduled | queued | sending | sent | failed
    message_id       TEXT NOT NULL,
    thread_refs      TEXT NOT NULL,             -- JSON: this message's References + its own id
    subject          TEXT NOT NULL,
    recipients       TEXT NOT NULL,             -- JSON: envelope recipients
    envelope_from    TEXT NOT NULL,
    raw              BLOB NOT NULL,             -- the exact bytes sent
    attempts         BIGINT NOT NULL,
    max_attempts     BIGINT NOT NULL,
    run_after        BIGINT NOT NULL,
    give_up_at       BIGINT NOT NULL,
    locked_by        TEXT,
    locked_until     BIGINT,
    last_error       TEXT,
    last_error_type  TEXT,
    provider_id      TEXT,
    sent_copy        TEXT NOT NULL,             -- none | pending | done | failed
    copy_attempts    BIGINT NOT NULL,
    response_status  BIGINT,
    response_body    TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    sent_at          BIGINT
);
CREATE UNIQUE INDEX outbox_idempotency ON outbox (workspace_id, idempotency_key);
CREATE INDEX outbox_due ON outbox (status, run_after);
CREATE INDEX outbox_copies ON outbox (sent_copy, run_after);
CREATE INDEX outbox_workspace_page ON outbox (workspace_id, created_at DESC, id DESC);
CREATE INDEX outbox_message_id ON outbox (workspace_id, message_id);

-- Events for the webhook dispatcher. Ids are deterministic, so the same change is never
-- recorded twice.
CREATE TABLE events (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    account_id    TEXT,
    type          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX events_workspace ON events (workspace_id, created_at);
