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
use starling_api::xmpp_parsers::ns;

const HEADER: &[u8] = b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

/// Tries the parsers for `element`'s namespace. Dispatching on it (each parser
/// refuses other namespaces at once anyway) spares a deep clone per parser per
/// element, which made the target some thirty times slower.
fn try_all(element: &Element) {
    macro_rules! try_into {
        ($($t:ty),* $(,)?) => {{ $( let _ = <$t>::try_from(element.clone()); )* }};
    }
    match element.ns().as_str() {
        ns::JABBER_CLIENT => try_into!(
            xp::message::Message,
            xp::presence::Presence,
            xp::iq::Iq,
            xp::stanza_error::StanzaError,
        ),
        ns::DATA_FORMS => try_into!(xp::data_forms::DataForm),
        ns::ROSTER => try_into!(xp::roster::Roster),
        ns::VCARD => try_into!(xp::vcard::VCard),
        ns::PUBSUB => try_into!(xp::pubsub::PubSub),
        ns::PUBSUB_OWNER => try_into!(xp::pubsub::owner::Owner),
        ns::PUBSUB_EVENT => try_into!(xp::pubsub::event::Event),
        ns::BLOCKING => try_into!(xp::blocking::BlocklistRequest, xp::blocking::Block, xp::blocking::Unblock),
        ns::DISCO_INFO => try_into!(xp::disco::DiscoInfoQuery, xp::disco::DiscoInfoResult),
        ns::DISCO_ITEMS => try_into!(xp::disco::DiscoItemsQuery),
        ns::MUC => try_into!(xp::muc::Muc),
        ns::MUC_USER => try_into!(xp::muc::MucUser),
        ns::MAM => {
            try_into!(xp::mam::Query);
            starling_mod_mam::fuzz_payload(element);
        }
        ns::RSM => try_into!(xp::rsm::SetQuery),
        ns::BOOKMARKS2 => try_into!(xp::bookmarks2::Conference),
        ns::PRIVATE => try_into!(xp::private::Query),
        ns::HTTP_UPLOAD => try_into!(xp::http_upload::SlotRequest),
        ns::AVATAR_METADATA => try_into!(xp::avatar::Metadata),
        ns::AVATAR_DATA => try_into!(xp::avatar::Data),
        ns::CAPS => try_into!(xp::caps::Caps),
        ns::DELAY => try_into!(xp::delay::Delay),
        ns::SID => try_into!(xp::stanza_id::StanzaId),
        ns::CARBONS => try_into!(xp::carbons::Enable),
        ns::PUSH => try_into!(xp::push::Enable),
        ns::VERSION => try_into!(xp::version::VersionQuery),
        ns::REGISTER => starling_mod_register::fuzz_payload(element),
        "http://jabber.org/protocol/commands" => starling_mod_adhoc::fuzz_payload(element),
        _ => {}
    }
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
