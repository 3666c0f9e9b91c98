//! List cursors: standard-alphabet base64 (the SDK validator rejects base64url) of a JSON
//! document holding the page size and the position after which the next page starts.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// Where a page ended. Lists are ordered by `(date desc, id desc)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub last_id: String,
    pub last_date: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub limit: u32,
    pub cursor: Position,
    /// The list's filters as the first page was asked (`[name, value]` pairs): with a
    /// cursor, the request's other parameters are ignored (Unipile's rule), so the cursor
    /// carries them. Empty for lists without filters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("cursor is not one this server issued")]
pub struct InvalidCursor;

impl Cursor {
    pub fn encode(&self) -> String {
        STANDARD.encode(serde_json::to_vec(self).expect("cursor serializes"))
    }

    pub fn decode(s: &str) -> Result<Self, InvalidCursor> {
        let bytes = STANDARD.decode(s.trim()).map_err(|_| InvalidCursor)?;
        serde_json::from_slice(&bytes).map_err(|_| InvalidCursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_the_standard_alphabet() {
        let c = Cursor {
            limit: 7,
            cursor: Position {
                last_id: "zYnh13HWV76_G3KyE-cAyg".into(),
                last_date: 1_700_000_000_000,
            },
            query: vec![],
        };
        let s = c.encode();
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        );
        assert_eq!(s.len() % 4, 0);
        assert_eq!(Cursor::decode(&s), Ok(c.clone()));
        assert_eq!(Cursor::decode("not base64!"), Err(InvalidCursor));
        assert_eq!(Cursor::decode("e30="), Err(InvalidCursor)); // "{}"
        let with_query = Cursor {
            query: vec![("search".into(), "a \"b\"".into())],
            ..c
        };
        assert_eq!(Cursor::decode(&with_query.encode()), Ok(with_query));
    }
}
