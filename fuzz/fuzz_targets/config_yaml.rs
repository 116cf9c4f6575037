//! The config loader must never panic: any bytes become resources or positioned errors.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(set) = weir::config::parse_set("fuzz.yaml", text) {
            let _ = weir::config::validate(&set, "127.0.0.1:15001".parse().unwrap());
        }
    }
});
