-- Foundation: workspaces, API keys, the vault's data keys and accounts.
-- Timestamps are Unix milliseconds (BIGINT) on both backends; booleans are 0/1 on SQLite.

CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    secret_hash   BLOB NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX api_keys_workspace ON api_keys (workspace_id);

-- Data keys of the vault, each sealed under the operator's master key.
CREATE TABLE vault_keys (
    id          TEXT PRIMARY KEY,
    sealed_key  BLOB NOT NULL,
    active      BOOLEAN NOT NULL,
    created_at  BIGINT NOT NULL
);
-- At most one active key, also when two nodes initialise the vault at once.
CREATE UNIQUE INDEX vault_keys_one_active ON vault_keys (active) WHERE active;

CREATE TABLE accounts (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    type          TEXT NOT NULL,
    name          TEXT NOT NULL,
    status        TEXT NOT NULL,
    settings      TEXT NOT NULL,
    credentials   BLOB NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX accounts_workspace_page ON accounts (workspace_id, created_at DESC, id DESC);
