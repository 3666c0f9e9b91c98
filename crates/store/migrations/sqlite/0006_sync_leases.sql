-- Who syncs which account. One lease row per account a process is syncing: taken when free or
-- expired, renewed by the owner's heartbeat, released on a graceful stop; a SIGKILLed owner's
-- rows simply expire. The request columns carry GET /accounts/{id}/sync and
-- POST /accounts/{id}/restart to the owner, whichever process answered the request.
CREATE TABLE sync_leases (
    account_id            TEXT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    owner                 TEXT NOT NULL,      -- the owning process's random id
    expires_at            BIGINT NOT NULL,    -- Unix ms; free to take after this
    heartbeat_at          BIGINT NOT NULL,
    resync_requested_at   BIGINT,             -- a sync pass asked for (Unix ms)
    restart_requested_at  BIGINT              -- a loop restart asked for (Unix ms)
);
CREATE INDEX sync_leases_owner ON sync_leases (owner, expires_at);

-- The processes running a sync supervisor, so each can take its fair share of the accounts
-- (a process owning no account yet is counted too).
CREATE TABLE sync_nodes (
    owner       TEXT PRIMARY KEY,
    started_at  BIGINT NOT NULL,
    seen_at     BIGINT NOT NULL
);

-- Why the account's status is what it is (the reason of an ERROR), shown next to the status.
ALTER TABLE accounts ADD COLUMN status_detail TEXT;
