//! Compressed columns (message bodies, stored headers). A stored value is one format byte
//! followed by the payload: `0` the bytes as they are (short values, or ones that do not
//! shrink), `1` raw DEFLATE (flate2). The byte leaves room for another codec later.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;

use crate::error::{Result, StoreError};

const PLAIN: u8 = 0;
const DEFLATE: u8 = 1;

/// Below this, compression costs more than it saves.
const MIN_COMPRESS: usize = 64;

/// The stored form of `data`.
pub(crate) fn pack(data: &[u8]) -> Vec<u8> {
    if data.len() >= MIN_COMPRESS {
        // The encoder appends to its sink, after the format byte.
        let mut out = Vec::with_capacity(data.len() / 3 + 16);
        out.push(DEFLATE);
        let mut enc = DeflateEncoder::new(out, Compression::new(6));
        enc.write_all(data).expect("writing to a Vec");
        let out = enc.finish().expect("writing to a Vec");
        if out.len() < data.len() + 1 {
            return out;
        }
    }
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(PLAIN);
    out.extend_from_slice(data);
    out
}

/// The bytes [`pack`] stored.
pub(crate) fn unpack(stored: &[u8]) -> Result<Vec<u8>> {
    match stored.split_first() {
        Some((&PLAIN, rest)) => Ok(rest.to_vec()),
        Some((&DEFLATE, rest)) => {
            let mut out = Vec::with_capacity(rest.len() * 3);
            DeflateDecoder::new(rest)
                .read_to_end(&mut out)
                .map_err(|e| StoreError::Corrupt(format!("compressed column: {e}")))?;
            Ok(out)
        }
        Some((other, _)) => Err(StoreError::Corrupt(format!(
            "compressed column: unknown format {other}"
        ))),
        None => Err(StoreError::Corrupt("compressed column: empty".into())),
    }
}

pub(crate) fn pack_str(s: &str) -> Vec<u8> {
    pack(s.as_bytes())
}

pub(crate) fn unpack_string(stored: &[u8]) -> Result<String> {
    String::from_utf8(unpack(stored)?)
        .map_err(|e| StoreError::Corrupt(format!("compressed text: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_short_long_and_incompressible() {
        let long = "Lorem ipsum dolor sit amet. ".repeat(500);
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for data in [b"".as_slice(), b"hi", long.as_bytes(), &noise] {
            let stored = pack(data);
            assert_eq!(unpack(&stored).unwrap(), data);
            assert!(stored.len() <= data.len() + 1);
        }
        assert!(pack(long.as_bytes()).len() < long.len() / 10);
        assert_eq!(pack(b"hi")[0], PLAIN);
        assert!(unpack(&[9, 1, 2]).is_err());
        assert!(unpack(&[]).is_err());
        assert!(unpack(&[DEFLATE, 0xff, 0xff]).is_err());
    }
}
