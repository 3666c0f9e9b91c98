-- Accounts read through one change feed for the whole mailbox (Gmail's history; Graph later)
-- keep its cursor here: written in the same transaction as the last index writes of the pass
-- that reached it, so a pass interrupted before that reads the same changes again (their
-- events have deterministic ids: nothing is announced twice). No row: the account's first
-- listing has not completed.
CREATE TABLE feed_cursors (
    account_id  TEXT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    cursor      TEXT NOT NULL,       -- Gmail historyId
    updated_at  BIGINT NOT NULL      -- when the pass that reached it ended
);
