//! XEP-0411: Bookmarks Conversion — `storage:bookmarks` (XEP-0048) in private XML
//! storage is kept as XEP-0402 PEP native bookmarks (`urn:xmpp:bookmarks:1`, one item
//! per room, `max_items=max`, whitelist access), so old and new clients see one list.
//! Sans-IO conversion both ways; `lib.rs` reads and writes through `PepService`.

use starling_api::minidom::Element;
use starling_api::minidom::rxml::xml_ncname;
use starling_api::parse_bare_jid;
use starling_api::pep::PepItem;

pub const NS_LEGACY: &str = "storage:bookmarks";
pub const NS_NATIVE: &str = "urn:xmpp:bookmarks:1";

fn is_true(value: Option<&str>) -> bool {
    matches!(value, Some("true" | "1"))
}

/// `<storage xmlns='storage:bookmarks'>` from XEP-0402 items.
pub fn to_legacy(items: &[PepItem]) -> Element {
    let mut storage = Element::builder("storage", NS_LEGACY).build();
    for item in items {
        let native = &item.payload;
        if !native.is("conference", NS_NATIVE) {
            continue;
        }
        let mut conference =
            Element::builder("conference", NS_LEGACY).attr(xml_ncname!("jid").into(), item.id.as_str());
        if let Some(name) = native.attr("name") {
            conference = conference.attr(xml_ncname!("name").into(), name);
        }
        if is_true(native.attr("autojoin")) {
            conference = conference.attr(xml_ncname!("autojoin").into(), "true");
        }
        for child in ["nick", "password"] {
            if let Some(value) = native.get_child(child, NS_NATIVE) {
                conference = conference.append(Element::builder(child, NS_LEGACY).append(value.text()).build());
            }
        }
        storage.append_child(conference.build());
    }
    storage
}

/// XEP-0402 items from `<storage xmlns='storage:bookmarks'>` (URL bookmarks have no
/// native form and are dropped, XEP-0411 §4).
pub fn to_native(storage: &Element) -> Vec<PepItem> {
    let mut items = Vec::new();
    for conference in storage.children().filter(|c| c.is("conference", NS_LEGACY)) {
        let Some(jid) = conference.attr("jid").and_then(|j| parse_bare_jid(j).ok()) else { continue };
        let mut native = Element::builder("conference", NS_NATIVE);
        if let Some(name) = conference.attr("name") {
            native = native.attr(xml_ncname!("name").into(), name);
        }
        if is_true(conference.attr("autojoin")) {
            native = native.attr(xml_ncname!("autojoin").into(), "true");
        }
        for child in ["nick", "password"] {
            if let Some(value) = conference.get_child(child, NS_LEGACY) {
                native = native.append(Element::builder(child, NS_NATIVE).append(value.text()).build());
            }
        }
        items.push(PepItem { id: jid.to_string(), payload: native.build() });
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xep_0048_and_xep_0402_forms_convert_both_ways() {
        let legacy: Element = "<storage xmlns='storage:bookmarks'>\
            <conference name='Council of Oberon' autojoin='true' jid='council@conference.underhill.org'>\
            <nick>Puck</nick><password>x</password></conference>\
            <url name='Complete Works' url='http://example.org/'/></storage>"
            .parse()
            .expect("xml");
        let items = to_native(&legacy);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].id, "council@conference.underhill.org");
        assert_eq!(items[0].payload.attr("autojoin"), Some("true"));
        assert_eq!(items[0].payload.get_child("nick", NS_NATIVE).map(|n| n.text()).as_deref(), Some("Puck"));
        let back = to_legacy(&items);
        let conference = back.get_child("conference", NS_LEGACY).expect("conference");
        assert_eq!(conference.attr("name"), Some("Council of Oberon"));
        assert_eq!(conference.get_child("password", NS_LEGACY).map(|p| p.text()).as_deref(), Some("x"));
    }
}
