-- Keys bound to accounts, and the audit log.
--
-- A bound key sees only the accounts listed for it. `account_bound` is on the key itself so
-- that a bound key whose accounts are all gone sees nothing (an empty list never means "all").
-- No foreign key to accounts: a deleted account's binding stays, harmless (the id is gone).
ALTER TABLE api_keys ADD COLUMN account_bound BOOLEAN NOT NULL DEFAULT 0;
CREATE TABLE api_key_accounts (
    key_id      TEXT NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
    account_id  TEXT NOT NULL,
    PRIMARY KEY (key_id, account_id)
);

-- The audit log: append-only (rows are only ever inserted, and deleted by the retention prune).
-- `details` is a small JSON object with counts, provider names and status codes: never a
-- secret, token, body or address. `account_id` and `target` have no foreign keys: the trail
-- outlives what it is about.
CREATE TABLE audit_events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    at            BIGINT NOT NULL,
    action        TEXT NOT NULL,
    actor         TEXT NOT NULL,
    request_id    TEXT,
    source_ip     TEXT,
    account_id    TEXT,
    target        TEXT,
    details       TEXT NOT NULL
);
CREATE INDEX audit_events_page ON audit_events (workspace_id, at DESC, seq DESC);
CREATE INDEX audit_events_target ON audit_events (target, action);
CREATE INDEX audit_events_age ON audit_events (at);
