//! Entry points for the fuzz targets in `fuzz/`, which reach weir's private parsers only
//! through here.

use crate::edge::ServerPolicy;
use crate::http1::{Chunk, Decoder, Reader, Step};

/// The request and response head parsers and the chunked body decoder over arbitrary bytes.
/// Must never panic, and decoding must stay within the input.
pub fn http1_parse(data: &[u8]) {
    let mut fields = Vec::new();
    let mut r = Reader::from_bytes((), data);
    let policy = ServerPolicy::default();
    while let Ok(Some(_)) = crate::http1::server::take_head(&mut r, &mut fields, &policy) {}
    let mut r = Reader::from_bytes((), data);
    while let Ok(Some(_)) = crate::upstream::h1_head::take_head(&mut r, &mut fields) {}
    let mut r = Reader::from_bytes((), data);
    let mut decoder = Decoder::Chunked(Chunk::Size);
    let mut total = 0;
    while let Ok(Step::Data(chunk)) = decoder.step(&mut r) {
        total += chunk.len();
    }
    assert!(total <= data.len());
}
