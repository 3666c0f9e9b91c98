-- Hosted auth links and OAuth token refresh leases.

-- A link handed to an end user. Only a hash of its token is stored; it expires, and it is
-- consumed by the first completed linking (single use).
CREATE TABLE hosted_links (
    id                    TEXT PRIMARY KEY,
    token_hash            BLOB NOT NULL UNIQUE,
    workspace_id          TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    kind                  TEXT NOT NULL,            -- create | reconnect
    mode                  TEXT NOT NULL,            -- full | send (the scopes asked for)
    providers             TEXT NOT NULL,            -- JSON: ["GOOGLE", "OUTLOOK", "MAIL"]
    reconnect_account     TEXT,
    name                  TEXT,
    success_redirect_url  TEXT,
    failure_redirect_url  TEXT,
    notify_url            TEXT,
    expires_at            BIGINT NOT NULL,
    used_at               BIGINT,
    account_id            TEXT,                     -- the account it linked
    -- The OAuth round trip in progress: a hash of `state`, which provider, and the PKCE
    -- verifier (sealed).
    oauth_state_hash      BLOB UNIQUE,
    oauth_provider        TEXT,
    oauth_verifier        BLOB,
    created_at            BIGINT NOT NULL
);
CREATE INDEX hosted_links_workspace ON hosted_links (workspace_id, created_at);

-- One token refresh per account at a time, across every node sharing the database.
ALTER TABLE accounts ADD COLUMN refresh_lock_by TEXT;
ALTER TABLE accounts ADD COLUMN refresh_lock_until BIGINT;
