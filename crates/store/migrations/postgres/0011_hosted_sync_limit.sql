-- `sync_limit` of a hosted link (`SyncLimit::as_stored`), applied when its mailbox is linked;
-- NULL: the default window (the last 30 days).
ALTER TABLE hosted_links ADD COLUMN sync_limit TEXT;
