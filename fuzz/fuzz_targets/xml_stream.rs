//! Feeds arbitrary bytes, split at arbitrary points, to the XML stream reader.
//! Invariants: no panic, no unbounded buffering, and every stanza it accepts
//! serialises to XML that parses back to the same stanza.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling::xml::{Limits, StreamEvent, StreamReader};

fuzz_target!(|data: &[u8]| {
    let Some((&split_seed, input)) = data.split_first() else { return };
    let limits = Limits { max_stanza_bytes: 4096, max_depth: 16 };
    let mut reader = StreamReader::new(limits);
    // A stream header first, so the fuzzer spends its time on stanzas.
    reader.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'>");
    let chunk = usize::from(split_seed % 64) + 1;
    for piece in input.chunks(chunk) {
        reader.feed(piece);
        loop {
            match reader.next_event() {
                Ok(Some(StreamEvent::Stanza(stanza))) => {
                    let element = stanza.to_element().expect("accepted stanzas are well-formed");
                    let again = starling_api::Stanza::from_element(&element);
                    assert_eq!(again, stanza, "canonical form is stable");
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(reader.buffered_len() <= limits.max_stanza_bytes + 2 * chunk + 256);
    }
});
