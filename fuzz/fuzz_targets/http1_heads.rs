//! The HTTP/1.1 head parsers (request and response) and the chunked decoder must never panic,
//! whatever the bytes, and never produce more body than they were given.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    weir::fuzzing::http1_parse(data);
});
