-- How much of an account's existing mail its first sync indexes (`sync_limit` on account
-- creation). Fixed when the account is linked, so a restart or a resync never widens or
-- narrows it. Mail that arrives after linking is always indexed.
CREATE TABLE sync_windows (
    account_id      TEXT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    since_ms        BIGINT,           -- index existing mail that arrived at or after this time
    max_per_folder  BIGINT,           -- and at most this many of the newest per folder
    created_at      BIGINT NOT NULL
);

-- Replies indexed before their parent (a first sync reads INBOX before Sent) join the parent's
-- thread when it is indexed: found by their In-Reply-To.
CREATE INDEX messages_in_reply_to ON messages (account_id, in_reply_to);
