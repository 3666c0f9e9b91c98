//! One MIME part decoded as its encoded bytes arrive in pieces (IMAP partial fetches), so an
//! attachment of any size is served without ever being held whole. A cut between two pieces
//! can fall anywhere, so each stage keeps back what the cut left unfinished:
//!
//! - base64: the sextets of an unfinished quad (mail-parser's leniency: whitespace and stray
//!   bytes skipped, `=` ends a group, so concatenated padded blocks decode as one);
//! - quoted-printable: the unfinished line (an `=XX` or a soft break can straddle the cut;
//!   lines are short, and a line that never ends is cut where no escape is open);
//! - text parts: the bytes of an unfinished character, by `encoding_rs`'s streaming decoder
//!   (the part's charset, or UTF-8), so a text part comes back as UTF-8 like
//!   [`crate::decode_part`] gives it.
//!
//! The output equals [`crate::decode_part`] on the whole part, byte for byte, for every place
//! the cuts can fall (tested below at each one).

use encoding_rs::{Decoder, Encoding, UTF_8};
use mail_parser::{MessageParser, MimeHeaders};

/// A quoted-printable line longer than this without a line break is decoded in pieces.
const QP_LINE_MAX: usize = 64 * 1024;

/// Decodes one part piece by piece: [`PartDecoder::push`] each piece, then
/// [`PartDecoder::finish`] once.
pub struct PartDecoder {
    transfer: Transfer,
    /// `Some` for text parts: their charset to UTF-8.
    text: Option<Decoder>,
}

enum Transfer {
    Identity,
    Base64 { quad: u32, sextets: u8 },
    QuotedPrintable { carry: Vec<u8> },
}

impl PartDecoder {
    /// A decoder for the part whose MIME header (`BODY[<part>.MIME]`, or the message header
    /// for a single-part message) is `mime_header`.
    pub fn new(mime_header: &[u8]) -> PartDecoder {
        let mut header = mime_header.to_vec();
        if !header.ends_with(b"\r\n\r\n") && !header.ends_with(b"\n\n") {
            header.extend_from_slice(b"\r\n\r\n");
        }
        let parsed = MessageParser::default().parse_headers(&header);
        let part = parsed.as_ref().and_then(|m| m.parts.first());
        let encoding = part
            .and_then(|p| p.content_transfer_encoding())
            .map(|e| e.trim().to_ascii_lowercase());
        let transfer = match encoding.as_deref() {
            Some("base64") => Transfer::Base64 {
                quad: 0,
                sextets: 0,
            },
            Some("quoted-printable") => Transfer::QuotedPrintable { carry: Vec::new() },
            _ => Transfer::Identity,
        };
        let content_type = part.and_then(|p| p.content_type());
        // As mail-parser decides: no Content-Type at all is text/plain; `text/*` is text.
        let is_text = content_type.is_none_or(|ct| ct.ctype().eq_ignore_ascii_case("text"));
        let text = is_text.then(|| {
            content_type
                .and_then(|ct| ct.attribute("charset"))
                .and_then(|label| Encoding::for_label(label.trim().as_bytes()))
                .unwrap_or(UTF_8)
                .new_decoder_without_bom_handling()
        });
        PartDecoder { transfer, text }
    }

    /// The decoded bytes `piece` completes (possibly none: they wait for the next piece).
    pub fn push(&mut self, piece: &[u8]) -> Vec<u8> {
        let bytes = self.transfer.push(piece);
        text_of(self.text.as_mut(), &bytes, false)
    }

    /// What the last piece left unfinished, decoded as the end of the part.
    pub fn finish(&mut self) -> Vec<u8> {
        let bytes = self.transfer.finish();
        text_of(self.text.as_mut(), &bytes, true)
    }
}

/// `bytes` through the text decoder, if the part is text.
fn text_of(decoder: Option<&mut Decoder>, bytes: &[u8], last: bool) -> Vec<u8> {
    let Some(decoder) = decoder else {
        return bytes.to_vec();
    };
    let Some(room) = decoder.max_utf8_buffer_length(bytes.len()) else {
        return String::from_utf8_lossy(bytes).into_owned().into_bytes();
    };
    let mut out = String::with_capacity(room);
    // Room for the worst case was reserved, so the whole input is always consumed.
    let _ = decoder.decode_to_string(bytes, &mut out, last);
    out.into_bytes()
}

impl Transfer {
    fn push(&mut self, piece: &[u8]) -> Vec<u8> {
        match self {
            Transfer::Identity => piece.to_vec(),
            Transfer::Base64 { quad, sextets } => base64_push(quad, sextets, piece),
            Transfer::QuotedPrintable { carry } => {
                carry.extend_from_slice(piece);
                let cut = qp_cut(carry);
                let done: Vec<u8> = carry.drain(..cut).collect();
                qp_decode(&done)
            }
        }
    }

    fn finish(&mut self) -> Vec<u8> {
        match self {
            Transfer::Identity => Vec::new(),
            Transfer::Base64 { quad, sextets } => base64_flush(quad, sextets),
            Transfer::QuotedPrintable { carry } => qp_decode(&std::mem::take(carry)),
        }
    }
}

/// The value of a base64 character, or `None`.
fn sextet(b: u8) -> Option<u32> {
    let v = match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

// No base64 crate in the tree decodes across piece boundaries with mail-parser's leniency (the
// decoder the index uses), so the four-sextet state machine is written out here.
fn base64_push(quad: &mut u32, sextets: &mut u8, piece: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(piece.len() / 4 * 3 + 3);
    for &b in piece {
        if let Some(v) = sextet(b) {
            *quad = (*quad << 6) | v;
            *sextets += 1;
            if *sextets == 4 {
                out.extend_from_slice(&quad.to_be_bytes()[1..]);
                *quad = 0;
                *sextets = 0;
            }
        } else if b == b'=' {
            out.extend(base64_flush(quad, sextets));
        }
    }
    out
}

/// The bytes an unfinished group holds (2 sextets: 1 byte, 3: 2 bytes), as padding would end it.
fn base64_flush(quad: &mut u32, sextets: &mut u8) -> Vec<u8> {
    let out = match *sextets {
        2 => vec![(*quad >> 4) as u8],
        3 => {
            let v = *quad >> 2;
            vec![(v >> 8) as u8, v as u8]
        }
        _ => Vec::new(),
    };
    *quad = 0;
    *sextets = 0;
    out
}

/// How much of `carry` can be decoded now: through its last line break, or, for a line that
/// has gone on too long, up to a point no `=` escape is open at.
fn qp_cut(carry: &[u8]) -> usize {
    if let Some(nl) = carry.iter().rposition(|&b| b == b'\n') {
        return nl + 1;
    }
    if carry.len() <= QP_LINE_MAX {
        return 0;
    }
    let mut cut = carry.len();
    while cut > 0 && carry[cut.saturating_sub(2)..cut].contains(&b'=') {
        cut -= 1;
    }
    cut
}

/// Complete quoted-printable lines decoded by mail-parser, as the whole part would be.
fn qp_decode(lines: &[u8]) -> Vec<u8> {
    if lines.is_empty() {
        return Vec::new();
    }
    const HEADER: &[u8] = b"Content-Type: application/octet-stream\r\n\
                            Content-Transfer-Encoding: quoted-printable\r\n\r\n";
    crate::decode_part(HEADER, lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way of cutting `body` in two (and in pieces of every small size) decodes to what
    /// the whole does.
    fn same_at_every_cut(header: &[u8], body: &[u8]) {
        decodes_at_every_cut_to(header, body, &crate::decode_part(header, body));
    }

    fn decodes_at_every_cut_to(header: &[u8], body: &[u8], whole: &[u8]) {
        for cut in 0..=body.len() {
            let mut d = PartDecoder::new(header);
            let mut got = d.push(&body[..cut]);
            got.extend(d.push(&body[cut..]));
            got.extend(d.finish());
            assert_eq!(
                got,
                whole,
                "cut at {cut} of {:?}",
                String::from_utf8_lossy(body)
            );
        }
        for size in 1..=7 {
            let mut d = PartDecoder::new(header);
            let mut got = Vec::new();
            for piece in body.chunks(size) {
                got.extend(d.push(piece));
            }
            got.extend(d.finish());
            assert_eq!(got, whole, "pieces of {size}");
        }
    }

    #[test]
    fn base64_decodes_the_same_wherever_the_pieces_are_cut() {
        let h = b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n";
        same_at_every_cut(h, b"AAECAwQFBgcICQoL\r\nDA0ODxAREhMUFRYX\r\nGBkaGw==\r\n");
        same_at_every_cut(h, b"/+/+AAH/\r\nYQ==\r\n");
        // Lines that are no multiple of four, a padded block followed by another one.
        same_at_every_cut(h, b"AAE\r\nCAw\r\nQF\r\n");
        same_at_every_cut(h, b"YQ==YmM=\r\n");
    }

    #[test]
    fn quoted_printable_decodes_the_same_wherever_the_pieces_are_cut() {
        let h = b"Content-Type: application/x-test\r\n\
                  Content-Transfer-Encoding: quoted-printable\r\n";
        same_at_every_cut(h, b"a=3Db =C3=A9t=C3=A9 soft=\r\nbreak\r\nend=3D\r\n");
        same_at_every_cut(h, b"no newline at the end=20");
        same_at_every_cut(h, b"lf only=\nline\nnext=41\n");
    }

    #[test]
    fn text_parts_come_back_as_utf8_wherever_a_character_is_cut() {
        let latin1 = b"Content-Type: text/plain; charset=iso-8859-1\r\n\
                       Content-Transfer-Encoding: quoted-printable\r\n";
        same_at_every_cut(latin1, b"caf=E9 cr=E8me br=FBl=E9e\r\n");
        let utf8 =
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n";
        same_at_every_cut(utf8, "été — ✓ 😀\r\n".as_bytes());
        let b64 = b"Content-Type: text/csv; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n";
        same_at_every_cut(b64, b"w6l0w6kgLCDinJMK\r\n");
        // A charset mail-parser (built without `full_encoding`) reads as lossy UTF-8 comes
        // back right here.
        let sjis = b"Content-Type: text/plain; charset=shift_jis\r\n";
        decodes_at_every_cut_to(
            sjis,
            b"\x82\xa0\x82\xa2\x82\xa4\r\n",
            "あいう\r\n".as_bytes(),
        );
    }

    #[test]
    fn unencoded_binary_passes_through_and_no_header_is_text() {
        let h = b"Content-Type: image/png\r\n";
        let png = b"\x89PNG\r\n\x1a\n\x00\xff";
        same_at_every_cut(h, png);
        let mut d = PartDecoder::new(b"");
        let mut got = d.push(b"plain ");
        got.extend(d.push(b"text"));
        got.extend(d.finish());
        assert_eq!(got, b"plain text");
    }

    #[test]
    fn a_quoted_printable_line_without_end_is_decoded_in_bounded_pieces() {
        let h = b"Content-Type: application/x-test\r\n\
                  Content-Transfer-Encoding: quoted-printable\r\n";
        let long = "=41".repeat(QP_LINE_MAX); // three times the limit, no line break
        let mut d = PartDecoder::new(h);
        let mut got = Vec::new();
        for piece in long.as_bytes().chunks(4096) {
            got.extend(d.push(piece));
            if let Transfer::QuotedPrintable { carry } = &d.transfer {
                assert!(carry.len() <= QP_LINE_MAX + 4096, "{}", carry.len());
            }
        }
        got.extend(d.finish());
        assert_eq!(got, vec![b'A'; QP_LINE_MAX]);
    }
}
