//! `limit` and `cursor` for list routes (1–250, default 100; when a cursor is given the
//! other parameters are ignored, as the Unipile contract says).

use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{Error, err};
use crate::extract::QueryPairs;
use mailroom_core::ErrorKind;
use mailroom_core::cursor::{Cursor, Position};

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 250;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    pub after: Option<Position>,
    /// The list's filters, carried from page to page in the cursor.
    pub filters: Vec<(String, String)>,
}

impl Page {
    /// The page, and the list's filters (the parameters named in `filters`): from the
    /// request for a first page, from the cursor for the next ones (whose cursor carries
    /// them again).
    pub fn with_filters(q: &QueryPairs, filters: &[&str]) -> Result<(Self, QueryPairs), Error> {
        let mut page = Self::from_query(q)?;
        if let Some(c) = q.get("cursor") {
            let cursor = Cursor::decode(c).map_err(|_| {
                err(
                    ErrorKind::InvalidParameters,
                    "cursor is not a cursor this server issued",
                )
            })?;
            page.filters = cursor.query;
        } else {
            page.filters =
                q.0.iter()
                    .filter(|(k, _)| filters.contains(&k.as_str()))
                    .cloned()
                    .collect();
        }
        Ok((page.clone(), QueryPairs(page.filters)))
    }

    pub fn from_query(q: &QueryPairs) -> Result<Self, Error> {
        if let Some(c) = q.get("cursor") {
            let cursor = Cursor::decode(c).map_err(|_| {
                err(
                    ErrorKind::InvalidParameters,
                    "cursor is not a cursor this server issued",
                )
            })?;
            if !(1..=MAX_LIMIT).contains(&cursor.limit) {
                return Err(err(
                    ErrorKind::InvalidParameters,
                    "cursor is not a cursor this server issued",
                ));
            }
            return Ok(Page {
                limit: cursor.limit,
                after: Some(cursor.cursor),
                filters: vec![],
            });
        }
        let limit = match q.get("limit") {
            None => DEFAULT_LIMIT,
            Some(s) => match s.trim().parse::<u32>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(err(
                        ErrorKind::InvalidParameters,
                        format!("limit must be an integer from 1 to {MAX_LIMIT}, got `{s}`"),
                    ));
                }
            },
        };
        Ok(Page {
            limit,
            after: None,
            filters: vec![],
        })
    }

    /// How many rows to fetch: one more than the page, to know whether another page exists.
    pub fn fetch_limit(&self) -> u32 {
        self.limit + 1
    }

    /// Trims the extra row and returns the cursor of the next page, if any.
    pub fn finish<T>(
        &self,
        mut rows: Vec<T>,
        position: impl Fn(&T) -> Position,
    ) -> (Vec<T>, Option<String>) {
        if rows.len() > self.limit as usize {
            rows.truncate(self.limit as usize);
            let next = rows.last().map(|last| {
                Cursor {
                    limit: self.limit,
                    cursor: position(last),
                    query: self.filters.clone(),
                }
                .encode()
            });
            (rows, next)
        } else {
            (rows, None)
        }
    }
}

/// `{object: "<X>List", items, cursor}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListEnvelope<T: Serialize + ToSchema> {
    pub object: &'static str,
    pub items: Vec<T>,
    /// Standard-base64 cursor of the next page, `null` on the last page.
    pub cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> QueryPairs {
        QueryPairs(
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    #[test]
    fn limit_bounds() {
        assert_eq!(Page::from_query(&q(&[])).unwrap().limit, 100);
        assert_eq!(Page::from_query(&q(&[("limit", "1")])).unwrap().limit, 1);
        assert_eq!(
            Page::from_query(&q(&[("limit", "250")])).unwrap().limit,
            250
        );
        for bad in ["0", "251", "-1", "ten", ""] {
            let e = Page::from_query(&q(&[("limit", bad)])).unwrap_err();
            assert_eq!(e.0.kind, ErrorKind::InvalidParameters, "{bad}");
        }
    }

    #[test]
    fn cursor_wins_over_other_params() {
        let c = Cursor {
            limit: 3,
            cursor: Position {
                last_id: "x".into(),
                last_date: 5,
            },
            query: vec![],
        }
        .encode();
        let p = Page::from_query(&q(&[("limit", "251"), ("cursor", &c)])).unwrap();
        assert_eq!(p.limit, 3);
        assert!(Page::from_query(&q(&[("cursor", "!!")])).is_err());
    }

    #[test]
    fn cursors_carry_the_filters() {
        let (page, filters) = Page::with_filters(
            &q(&[("limit", "1"), ("role", "inbox"), ("x", "y")]),
            &["role"],
        )
        .unwrap();
        assert_eq!(filters.0, [("role".to_owned(), "inbox".to_owned())]);
        let (_, next) = page.finish(vec![1, 2], |n| Position {
            last_id: n.to_string(),
            last_date: 0,
        });
        let next = next.expect("a next page");
        let (page2, filters2) =
            Page::with_filters(&q(&[("cursor", &next), ("role", "sent")]), &["role"]).unwrap();
        assert_eq!(filters2.0, filters.0, "the cursor's filters win");
        assert_eq!(page2.limit, 1);
        assert_eq!(page2.after.unwrap().last_id, "1");
    }
}
