-- Push subscriptions a provider holds for an account's mailbox (Microsoft Graph change
-- notifications): what any process needs to check a notification posted to mailroom and to
-- pass it on to the account's sync loop, whichever process runs it.
--
-- The subscription's secret (Graph's clientState) is kept only as its SHA-256: a notification
-- is checked by hashing what it carries. `requested` is what a lifecycle notification asked of
-- the account's loop: 'renew' (reauthorizationRequired) or 'replace' (subscriptionRemoved); the
-- loop clears it when done. Rows go with their account (the subscription at the provider is
-- ended first where possible) or when the loop replaces the subscription.
CREATE TABLE push_subscriptions (
    id            TEXT PRIMARY KEY,       -- the provider's subscription id
    account_id    TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    secret_hash   BYTEA NOT NULL,
    expires_at    BIGINT NOT NULL,        -- Unix ms, as the provider last confirmed it
    created_at    BIGINT NOT NULL,
    requested     TEXT,
    requested_at  BIGINT
);
CREATE INDEX push_subscriptions_account ON push_subscriptions (account_id);
