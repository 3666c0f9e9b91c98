-- Full-text search over the mail index (`search=` on GET /emails): subject, text body and
-- addresses. An FTS5 table without content (the text is in `messages`, compressed) keyed by
-- `message_search.doc`, an INTEGER PRIMARY KEY (a VACUUM may renumber the implicit rowids of
-- `messages`, never these). The store writes both rows when it indexes a new message (it
-- alone has the uncompressed body); deleting a message (or its account) deletes its
-- `message_search` row by cascade, and the trigger its FTS entry.
-- The text is written lowercased with every non-alphanumeric character made a space
-- (store::search), and the tokenizer keeps diacritics, so both backends match the same words.

CREATE TABLE message_search (
    doc      INTEGER PRIMARY KEY,
    message  TEXT NOT NULL UNIQUE REFERENCES messages(id) ON DELETE CASCADE
);

CREATE VIRTUAL TABLE message_search_fts USING fts5(
    subject, body, addresses,
    content = '', contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 0'
);

CREATE TRIGGER message_search_forget BEFORE DELETE ON message_search
BEGIN
    DELETE FROM message_search_fts WHERE rowid = old.doc;
END;

-- Messages indexed before this migration: their subjects become searchable (their bodies
-- are compressed and cannot be read from SQL; a resync indexes them fully).
INSERT INTO message_search (message) SELECT id FROM messages;
INSERT INTO message_search_fts (rowid, subject, body, addresses)
    SELECT s.doc, lower(m.subject), '', '' FROM message_search s JOIN messages m ON m.id = s.message;


-- Lists of one account (`account_id` given, always with its workspace): pages walk this
-- index with both equalities, never another account's messages.
CREATE INDEX messages_workspace_account_page ON messages (workspace_id, account_id, date DESC, id DESC);
