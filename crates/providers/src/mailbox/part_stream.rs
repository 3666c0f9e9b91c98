//! One attachment's bytes as a stream, read from the IMAP server in partial fetches
//! (`BODY.PEEK[<part>]<offset.size>`, [`PART_PIECE`] at a time) and decoded as they come
//! ([`PartDecoder`]): a download holds one piece in memory, whatever the file's size, and its
//! first bytes leave before the last are fetched.
//!
//! The stream owns the pooled session it reads on (a place in the account's connection
//! budget) for as long as it runs: given back to the pool when the part is read to its end,
//! dropped (never reused half-way through a command) when a fetch fails or the stream is
//! dropped early, e.g. because the HTTP client went away.

use futures_util::stream::{self, BoxStream, StreamExt as _, TryStreamExt as _};

use mailroom_mime::PartDecoder;

use super::imap::ImapMailbox;
use super::session_pool::PooledSession;
use crate::failure::MailError;
use crate::imap_smtp::change::{self, PART_PIECE};

/// Decoded bytes of one part, piece by piece; an `Err` ends it.
pub type PartStream = BoxStream<'static, Result<Vec<u8>, MailError>>;

/// A download under way: the session, where it is in the part, and the decoder's state.
struct Reading {
    pooled: PooledSession,
    folder: String,
    uid: u32,
    path: Vec<u32>,
    /// Encoded bytes fetched so far.
    offset: u64,
    decoder: PartDecoder,
}

/// Whether a fetched piece was the part's last (a full piece may be followed by more).
fn is_last(piece: &[u8]) -> bool {
    piece.len() < PART_PIECE as usize
}

impl ImapMailbox {
    /// Opens part `part` of `uid` in `folder`: the first piece is fetched before this answers,
    /// so a missing message or part is an error here, not half-way through a download.
    pub(super) async fn open_part(
        &self,
        folder: &str,
        uid: u32,
        part: &str,
    ) -> Result<PartStream, MailError> {
        let mut pooled = self.checkout().await?;
        // On an error the session is dropped with `pooled`, as `settle` would.
        let start = change::open_part(pooled.session(), folder, uid, part).await?;
        let mut decoder = PartDecoder::new(&start.mime);
        let mut first = decoder.push(&start.first);
        if is_last(&start.first) {
            first.extend(decoder.finish());
            pooled.release();
            return Ok(stream::once(async move { Ok(first) }).boxed());
        }
        let reading = Reading {
            pooled,
            folder: folder.to_owned(),
            uid,
            path: start.path,
            offset: start.first.len() as u64,
            decoder,
        };
        let rest = stream::unfold(Some(reading), |state| async move {
            let mut r = state?;
            let fetched =
                change::fetch_piece(r.pooled.session(), &r.folder, r.uid, &r.path, r.offset).await;
            let piece = match fetched {
                Ok(piece) => piece,
                Err(e) => return Some((Err(e), None)),
            };
            r.offset += piece.len() as u64;
            let mut out = r.decoder.push(&piece);
            if !is_last(&piece) {
                return Some((Ok(out), Some(r)));
            }
            out.extend(r.decoder.finish());
            r.pooled.release();
            Some((Ok(out), None))
        });
        Ok(stream::once(async move { Ok(first) })
            .chain(rest)
            .try_filter(|bytes| std::future::ready(!bytes.is_empty()))
            .boxed())
    }
}
