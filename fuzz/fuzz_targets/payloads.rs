//! Stanzas from arbitrary bytes (through the server's stream reader) converted into the
//! typed payloads the modules act on: the xmpp-parsers types they use (data forms,
//! roster, vCard, PubSub, MUC, blocking, disco, bookmarks, upload slots, ...) and the
//! modules' own parsers (MAM queries and preferences, ad-hoc commands, registration),
//! on the stanza and every descendant. Invariant: no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling::xml::{Limits, StreamEvent, StreamReader};
use starling_api::minidom::Element;
use starling_api::xmpp_parsers as xp;

const HEADER: &[u8] = b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

fn try_all(element: &Element) {
    macro_rules! try_into {
        ($($t:ty),* $(,)?) => { $( let _ = <$t>::try_from(element.clone()); )* };
    }
    try_into!(
        xp::data_forms::DataForm,
        xp::roster::Roster,
        xp::vcard::VCard,
        xp::pubsub::PubSub,
        xp::pubsub::owner::Owner,
        xp::pubsub::event::Event,
        xp::blocking::BlocklistRequest,
        xp::blocking::Block,
        xp::blocking::Unblock,
        xp::disco::DiscoInfoQuery,
        xp::disco::DiscoItemsQuery,
        xp::disco::DiscoInfoResult,
        xp::muc::Muc,
        xp::muc::MucUser,
        xp::mam::Query,
        xp::rsm::SetQuery,
        xp::bookmarks2::Conference,
        xp::private::Query,
        xp::http_upload::SlotRequest,
        xp::avatar::Metadata,
        xp::avatar::Data,
        xp::stanza_error::StanzaError,
        xp::message::Message,
        xp::presence::Presence,
        xp::iq::Iq,
        xp::caps::Caps,
        xp::delay::Delay,
        xp::stanza_id::StanzaId,
        xp::carbons::Enable,
        xp::push::Enable,
        xp::version::VersionQuery,
    );
    starling_mod_mam::fuzz_payload(element);
    starling_mod_adhoc::fuzz_payload(element);
    starling_mod_register::fuzz_payload(element);
    for child in element.children() {
        try_all(child);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut reader = StreamReader::new(Limits { max_stanza_bytes: 8192, max_depth: 16 });
    reader.feed(HEADER);
    reader.feed(data);
    while let Ok(Some(event)) = reader.next_event() {
        if let StreamEvent::Stanza(stanza) = event
            && let Ok(element) = stanza.to_element()
        {
            try_all(&element);
        }
    }
});
