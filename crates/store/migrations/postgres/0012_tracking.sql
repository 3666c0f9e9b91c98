-- Open and click tracking (tracking_options on a send): one row per token in a sent message.
-- An `open` token is the message's 1×1 image; a `click` token stands for one URL of the message,
-- and only those URLs can be reached through /t/c/{token} (no open redirect).
CREATE TABLE tracking_links (
    token          TEXT PRIMARY KEY,   -- 128 random bits, URL-safe base64
    workspace_id   TEXT NOT NULL,
    account_id     TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    tracking_id    TEXT NOT NULL,      -- the send's tracking_id
    kind           TEXT NOT NULL,      -- open | click
    url            TEXT,               -- click: the URL the message had
    label          TEXT,
    custom_domain  TEXT,
    created_at     BIGINT NOT NULL
);
CREATE INDEX tracking_links_tracking_id ON tracking_links (tracking_id);

-- Tracking events name the indexed copy of the sent message (its Sent copy carries the id).
CREATE INDEX messages_tracking_id ON messages (account_id, tracking_id);
