//! Which messages go into a user's archive (XEP-0313 §5.1.1, with XEP-0334 hints):
//! `chat` and `normal` messages carrying a body or other content a conversation keeps
//! (end-to-end encrypted payloads, reactions, retractions), never `<no-store/>` or
//! `<no-permanent-store/>`, always `<store/>`. Errors, headlines and groupchat
//! messages are not archived in a user's archive (a room keeps its own).

use starling_api::Stanza;

const NS_CLIENT: &str = "jabber:client";
const NS_HINTS: &str = "urn:xmpp:hints";
/// Payloads worth archiving besides a body.
const CONTENT: &[(&str, &str)] = &[
    ("encrypted", "eu.siacs.conversations.axolotl"), // XEP-0384 (legacy OMEMO)
    ("encrypted", "urn:xmpp:omemo:2"),               // XEP-0384
    ("openpgp", "urn:xmpp:openpgp:0"),               // XEP-0373
    ("reactions", "urn:xmpp:reactions:0"),           // XEP-0444
    ("retract", "urn:xmpp:message-retract:1"),       // XEP-0424
];

/// Whether the message belongs in a user's archive.
pub fn archivable(stanza: &Stanza) -> bool {
    if !matches!(stanza.type_().unwrap_or("normal"), "chat" | "normal") {
        return false;
    }
    let mut content = false;
    let mut store = false;
    for child in stanza.child_elements() {
        match (child.ns(), child.name()) {
            (NS_HINTS, "no-store" | "no-permanent-store") => return false,
            (NS_HINTS, "store") => store = true,
            (NS_CLIENT, "body") => content = true,
            (ns, name) if CONTENT.iter().any(|(n, s)| *n == name && *s == ns) => content = true,
            _ => {}
        }
    }
    content || store
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_api::minidom::Element;

    fn message(type_: &str, children: &str) -> Stanza {
        let element: Element =
            format!("<message xmlns='jabber:client' type='{type_}'>{children}</message>").parse().expect("xml");
        Stanza::from_element(&element)
    }

    #[test]
    fn bodies_and_hints_decide() {
        assert!(archivable(&message("chat", "<body>hi</body>")));
        assert!(archivable(&message("normal", "<body>hi</body>")));
        assert!(!archivable(&message("groupchat", "<body>hi</body>")));
        assert!(!archivable(&message("headline", "<body>hi</body>")));
        assert!(!archivable(&message("error", "<body>hi</body>")));
        assert!(!archivable(&message("chat", "<composing xmlns='http://jabber.org/protocol/chatstates'/>")));
        assert!(!archivable(&message("chat", "<body>x</body><no-store xmlns='urn:xmpp:hints'/>")));
        assert!(!archivable(&message("chat", "<body>x</body><no-permanent-store xmlns='urn:xmpp:hints'/>")));
        assert!(archivable(&message("chat", "<received xmlns='urn:xmpp:receipts'/><store xmlns='urn:xmpp:hints'/>")));
        assert!(archivable(&message("chat", "<encrypted xmlns='urn:xmpp:omemo:2'/>")));
    }
}
