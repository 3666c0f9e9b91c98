-- The mail index: an account's folders with their sync state, its messages (headers, flags,
-- addresses, compressed bodies, attachment metadata) and which folders each message is in.
-- Full-text search (FTS5 here, tsvector on PostgreSQL) comes in a later migration.
-- JSON is stored as TEXT; booleans are 0/1; times are Unix milliseconds.

CREATE TABLE folders (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL,
    account_id      TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    role            TEXT NOT NULL,        -- inbox | sent | archive | drafts | trash | spam | all | important | starred | unknown
    provider_id     TEXT NOT NULL,        -- IMAP mailbox name, Gmail label id, Graph folder id
    uidvalidity     BIGINT,
    uidnext         BIGINT,
    highest_modseq  BIGINT,
    cursor          TEXT,                 -- Gmail historyId / Graph deltaLink
    nb_mails        BIGINT NOT NULL,      -- as the provider counts them
    sync_status     TEXT NOT NULL,        -- never | fetching | synced | error
    last_synced_at  BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (account_id, provider_id)
);
CREATE INDEX folders_workspace ON folders (workspace_id, account_id);

CREATE TABLE messages (
    id               TEXT PRIMARY KEY,
    workspace_id     TEXT NOT NULL,
    account_id       TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    provider_id      TEXT NOT NULL,
    message_id       TEXT,                -- RFC 5322 Message-ID, bracketed
    in_reply_to      TEXT,
    references_      TEXT NOT NULL,       -- JSON: ["<a@b>", …], oldest first
    thread_id        TEXT NOT NULL,
    subject          TEXT NOT NULL,
    from_addr        TEXT,                -- JSON attendee {identifier, display_name}
    to_addrs         TEXT NOT NULL,       -- JSON lists of attendees
    cc_addrs         TEXT NOT NULL,
    bcc_addrs        TEXT NOT NULL,
    reply_to_addrs   TEXT NOT NULL,
    date             BIGINT NOT NULL,
    read             BOOLEAN NOT NULL,
    size             BIGINT NOT NULL,
    has_attachments  BOOLEAN NOT NULL,
    attachments      TEXT NOT NULL,       -- JSON: [{id, name, size, mime, cid, part}]
    body_html        BLOB,                -- compressed (see store::blob)
    body_text        BLOB,
    headers          BLOB,                -- compressed JSON [{name, value}]
    origin           TEXT NOT NULL,       -- external | unipile
    tracking_id      TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (account_id, provider_id)
);
CREATE INDEX messages_account_page ON messages (account_id, date DESC, id DESC);
CREATE INDEX messages_workspace_page ON messages (workspace_id, date DESC, id DESC);
CREATE INDEX messages_message_id ON messages (account_id, message_id);
CREATE INDEX messages_thread ON messages (account_id, thread_id);

-- Which folders (or Gmail labels) a message is in; `uid` is its IMAP UID there.
CREATE TABLE message_folders (
    message  TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    folder   TEXT NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
    uid      BIGINT,
    PRIMARY KEY (message, folder)
);
CREATE INDEX message_folders_uid ON message_folders (folder, uid);
