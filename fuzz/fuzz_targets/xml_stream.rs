//! Feeds arbitrary bytes, split at arbitrary points, to the XML stream reader.
//! Invariants: no panic, no unbounded buffering, and every stanza it accepts
//! serialises to canonical XML that parses (as a DOM) and that the reader reads back
//! to the same element.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling::xml::{Limits, StreamEvent, StreamReader};

const HEADER: &[u8] =
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'>";

/// Reads one serialised stanza with a fresh reader.
fn reread(bytes: &[u8]) -> starling_api::Stanza {
    let mut reader = StreamReader::new(Limits { max_stanza_bytes: 1 << 20, max_depth: 64 });
    reader.feed(HEADER);
    reader.feed(bytes);
    assert!(matches!(reader.next_event(), Ok(Some(StreamEvent::Header(_)))));
    match reader.next_event() {
        Ok(Some(StreamEvent::Stanza(stanza))) => stanza,
        other => panic!("canonical output not accepted: {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&split_seed, input)) = data.split_first() else { return };
    let limits = Limits { max_stanza_bytes: 4096, max_depth: 16 };
    let mut reader = StreamReader::new(limits);
    // A stream header first, so the fuzzer spends its time on stanzas.
    reader.feed(HEADER);
    let chunk = usize::from(split_seed % 64) + 1;
    for piece in input.chunks(chunk) {
        reader.feed(piece);
        loop {
            match reader.next_event() {
                Ok(Some(StreamEvent::Stanza(stanza))) => {
                    let element = stanza.to_element().expect("accepted stanzas are well-formed");
                    let again = reread(&stanza.to_bytes());
                    assert_eq!(again.to_element().expect("canonical XML parses"), element, "canonical form is stable");
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(reader.buffered_len() <= limits.max_stanza_bytes + 2 * chunk + 256);
    }
});
