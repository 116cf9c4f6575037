//! The access checks' parsers (tokens, key sets, public keys, certificate identities,
//! security policies) must never panic, whatever a client or a config sends.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    weir::fuzzing::access_parse(data);
});
