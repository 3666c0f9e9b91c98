//! Full-text search of the mail index (`search=` on `GET /emails`): what is written for a
//! message and how a user's text becomes a query.
//!
//! Both sides go through [`words`]: lowercased (in Rust, so it does not depend on the
//! database's locale), every character that is not a letter or a digit a separator. The
//! query is the AND of its words, each matched as a whole word. A user's text is never
//! passed to the database as query syntax: SQLite gets each word as an FTS5 string (`"…"`),
//! PostgreSQL gets the words through `plainto_tsquery`, so `"`, `*`, `-`, `NEAR`, `OR` or
//! parentheses are plain text, never an FTS syntax error.

use crate::Backend;

/// At most this many characters of a body are indexed (a huge body would bloat the index
/// for little gain: what people search is near the top).
pub const BODY_CHARS: usize = 100_000;

/// A query has at most this many words (longer ones are refused by the API).
pub const MAX_WORDS: usize = 32;

/// The words of `text`, lowercased, in order.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// `text` as it is indexed: its words separated by single spaces.
pub(crate) fn document(text: &str) -> String {
    words(text).join(" ")
}

/// A body as it is indexed (see [`BODY_CHARS`]).
pub(crate) fn body_document(text: &str) -> String {
    match text.char_indices().nth(BODY_CHARS) {
        Some((cut, _)) => document(&text[..cut]),
        None => document(text),
    }
}

/// The statements indexing a new message, each with how many of its parameters it takes:
/// `$1` the message id, `$2` subject, `$3` body, `$4` addresses (each already a
/// [`document`]).
pub(crate) fn insert_statements(backend: Backend) -> &'static [(&'static str, usize)] {
    match backend {
        Backend::Sqlite => &[
            ("INSERT INTO message_search (message) VALUES ($1)", 1),
            (
                "INSERT INTO message_search_fts (rowid, subject, body, addresses) \
                 SELECT doc, $2, $3, $4 FROM message_search WHERE message = $1",
                4,
            ),
        ],
        Backend::Postgres => &[(
            "INSERT INTO message_search (message, doc) VALUES ($1, \
             setweight(to_tsvector('simple', $2), 'A') || to_tsvector('simple', $3) || to_tsvector('simple', $4))",
            4,
        )],
    }
}

/// The condition "message `m` matches the query bound at `placeholder`", and the value to
/// bind there for `words` (non-empty).
pub(crate) fn condition(backend: Backend, placeholder: &str, words: &[String]) -> (String, String) {
    match backend {
        Backend::Sqlite => (
            format!(
                "m.id IN (SELECT s.message FROM message_search_fts JOIN message_search s \
                 ON s.doc = message_search_fts.rowid WHERE message_search_fts MATCH {placeholder})"
            ),
            // Each word an FTS5 string: never an operator, a column filter or a prefix.
            words
                .iter()
                .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Backend::Postgres => (
            format!(
                "m.id IN (SELECT s.message FROM message_search s \
                 WHERE s.doc @@ plainto_tsquery('simple', {placeholder}))"
            ),
            words.join(" "),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lowercase_alphanumeric_runs() {
        assert_eq!(
            words("Re: \"Invoice\" #42 -- bob@Example.com NEAR(x*)"),
            ["re", "invoice", "42", "bob", "example", "com", "near", "x"]
        );
        assert_eq!(words("Ünïcödé café"), ["ünïcödé", "café"]);
        assert!(words("\"*-()\"").is_empty());
        assert_eq!(document("  A,b  "), "a b");
    }

    #[test]
    fn long_bodies_are_cut() {
        let body = "word ".repeat(BODY_CHARS);
        assert_eq!(body_document(&body).len(), BODY_CHARS - 1);
    }
}
