-- Full-text search over the mail index (`search=` on GET /emails): subject, text body and
-- addresses as one tsvector per message (the 'simple' configuration: no stemming, no stop
-- words, any language), with a GIN index. The store writes the row when it indexes a new
-- message (it alone has the uncompressed body); deleting a message (or its account) deletes
-- it by cascade. The text is written lowercased with every non-alphanumeric character made a
-- space (store::search), so both backends match the same words.

CREATE TABLE message_search (
    message  TEXT PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    doc      tsvector NOT NULL
);
CREATE INDEX message_search_doc ON message_search USING GIN (doc);

-- Messages indexed before this migration: their subjects become searchable (their bodies
-- are compressed and cannot be read from SQL; a resync indexes them fully).
INSERT INTO message_search (message, doc)
    SELECT id, to_tsvector('simple', lower(subject)) FROM messages;


-- Lists of one account (`account_id` given, always with its workspace): pages walk this
-- index with both equalities, never another account's messages.
CREATE INDEX messages_workspace_account_page ON messages (workspace_id, account_id, date DESC, id DESC);
