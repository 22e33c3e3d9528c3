//! Parses arbitrary strings as JIDs (RFC 7622, stringprep). Invariants: no panic, and
//! normalisation is idempotent (a normalised JID parses to itself).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(jid) = jid::Jid::new(text) {
        let normalised = jid.to_string();
        let again = jid::Jid::new(&normalised).expect("a normalised JID parses");
        assert_eq!(again.to_string(), normalised);
    }
});
