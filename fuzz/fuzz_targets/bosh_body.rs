//! Arbitrary text as a BOSH (XEP-0124) request body. Invariants: no panic; an accepted
//! body is in the httpbind namespace and its payload is what precedes `</body>`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        starling::c2s::bosh::fuzz_parse_body(text);
    }
});
