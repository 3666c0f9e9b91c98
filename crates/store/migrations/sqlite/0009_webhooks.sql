-- Webhooks: the integrator's subscriptions, one durable delivery row per (webhook, event)
-- written in the event's own transaction, and the log of every attempt. Deliveries of one
-- queue (a webhook and an account) go out in `seq` order, each settled before the next.

CREATE TABLE webhooks (
    id                TEXT PRIMARY KEY,
    workspace_id      TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name              TEXT,
    source            TEXT NOT NULL,     -- email | email_tracking | account_status
    request_url       TEXT NOT NULL,
    format            TEXT NOT NULL,     -- json | form
    events            TEXT NOT NULL,     -- JSON: event names
    account_ids       TEXT NOT NULL,     -- JSON: [{id, type, name}]; empty = every account
    headers           TEXT NOT NULL,     -- JSON: [{key, value}]
    data              TEXT NOT NULL,     -- JSON: [{name, key}] rename map
    enabled           BOOLEAN NOT NULL,
    secret            BLOB NOT NULL,     -- sealed `whsec_…` signing secret
    old_secret        BLOB,              -- sealed; still signs until old_secret_until
    old_secret_until  BIGINT,
    disabled_reason   TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX webhooks_workspace ON webhooks (workspace_id, created_at, id);

CREATE TABLE webhook_deliveries (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    webhook_id    TEXT REFERENCES webhooks(id) ON DELETE CASCADE,  -- NULL: a hosted-auth notify_url call
    event_id      TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    queue         TEXT NOT NULL,
    target_url    TEXT,                  -- notify_url calls only
    status        TEXT NOT NULL,         -- pending | delivering | delivered | failed
    attempts      BIGINT NOT NULL,
    max_attempts  BIGINT NOT NULL,
    run_after     BIGINT NOT NULL,
    locked_by     TEXT,
    locked_until  BIGINT,
    last_error    TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    delivered_at  BIGINT
);
CREATE UNIQUE INDEX webhook_deliveries_once ON webhook_deliveries (webhook_id, event_id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, run_after);
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (queue, status, seq);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);

CREATE TABLE webhook_attempts (
    delivery_id  TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    attempt      BIGINT NOT NULL,
    started_at   BIGINT NOT NULL,
    status_code  BIGINT,
    latency_ms   BIGINT NOT NULL,
    error        TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
