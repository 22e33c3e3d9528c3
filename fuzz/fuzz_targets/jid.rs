//! Parses arbitrary strings as JIDs (RFC 7622, stringprep) the way the server does.
//! Invariants: no panic, and normalisation is idempotent (a normalised JID parses to
//! itself). The jid crate alone is not (see starling_api::address); this checks the
//! server's fixed-point normalisation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(jid) = starling_api::parse_jid(text) {
        let normalised = jid.to_string();
        let again = starling_api::parse_jid(&normalised).expect("a normalised JID parses");
        assert_eq!(again.to_string(), normalised);
    }
});
