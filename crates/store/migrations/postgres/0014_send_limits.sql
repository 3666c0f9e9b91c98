-- Send limits per account (docs/sending.md "Send limits"). An account's own settings of its
-- limits, each NULL (the provider's default), 0 (no limit) or a number; and the pause a
-- provider's quota answer put on its sends (paused_until, Unix ms; why in pause_reason).
CREATE TABLE send_limits (
    account_id          TEXT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    per_minute          BIGINT,
    per_day             BIGINT,
    recipients_per_day  BIGINT,
    paused_until        BIGINT,
    pause_reason        TEXT,
    updated_at          BIGINT NOT NULL
);

-- The outbox counts an account's rolling windows from what it sent: its sent rows by time,
-- with their envelope recipients counted once at insert (recipients is JSON).
ALTER TABLE outbox ADD COLUMN recipient_count BIGINT NOT NULL DEFAULT 0;
UPDATE outbox SET recipient_count = json_array_length(recipients::json);
-- Where a job stands with its account's limits: NULL (not gated: the account has none, or the
-- job was not yet claimed under them), 'held' (waiting for the window, in acceptance order),
-- 'admitted' (counted as in flight until its attempt ends).
ALTER TABLE outbox ADD COLUMN send_gate TEXT;
CREATE INDEX outbox_account_window ON outbox (account_id, status, sent_at);

-- A hosted link's send_limits (JSON {per_minute, per_day, recipients_per_day}), given to the
-- account it links; NULL: the provider's defaults.
ALTER TABLE hosted_links ADD COLUMN send_limits TEXT;
