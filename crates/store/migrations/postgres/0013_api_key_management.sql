-- API key management: scopes (comma-separated: read, send, manage), an optional expiry, a
-- revocation time, the last use (refreshed at most once a minute per key, not per request), and
-- the key's own request rate (requests per second; NULL: the server's MAILROOM_API_RATE_PER_SECOND).
ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT 'read,send,manage';
ALTER TABLE api_keys ADD COLUMN expires_at BIGINT;
ALTER TABLE api_keys ADD COLUMN revoked_at BIGINT;
ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT;
ALTER TABLE api_keys ADD COLUMN rate_per_second BIGINT;
