//! Building replies: IQ results and error stanzas (RFC 6120 §8.2.3, §8.3).

use minidom::Element;
use xmpp_parsers::stanza_error::StanzaError;

use crate::Stanza;

/// Serialises `element` as a child of a parent in namespace `parent_ns`, in the
/// canonical form [`Stanza`] keeps its children in.
pub fn child_xml(element: &Element, parent_ns: &str) -> Vec<u8> {
    let mut out = Vec::new();
    Stanza::from_element(element).write_to(&mut out, parent_ns);
    out
}

/// The `<iq type='result'/>` answering `request`, carrying `payload` if any.
///
/// Addressed back to the requester; `from` is the request's `to`, left out when the
/// request had none (RFC 6120 §8.1.2.1: the server answered on the account's behalf).
pub fn iq_result(request: &Stanza, payload: Option<&Element>) -> Stanza {
    let mut reply = reply_to(request);
    reply.set_attr("type", Some("result"));
    match payload {
        Some(payload) => reply.with_children_xml(child_xml(payload, request.ns()).into()),
        None => reply,
    }
}

/// The error stanza answering `stanza` (same name, `type='error'`, same `id`), or
/// `None` when `stanza` is itself an error: errors are never answered (RFC 6120 §8.3.1).
pub fn error_reply(stanza: &Stanza, error: &StanzaError) -> Option<Stanza> {
    if stanza.type_() == Some("error") {
        return None;
    }
    let mut reply = reply_to(stanza);
    reply.set_attr("type", Some("error"));
    let element = Element::from(error.clone());
    Some(reply.with_children_xml(child_xml(&element, stanza.ns()).into()))
}

fn reply_to(request: &Stanza) -> Stanza {
    let mut reply = Stanza::new(request.name(), request.ns());
    reply.set_attr("id", request.id());
    reply.set_attr("from", request.to());
    reply.set_attr("to", request.from());
    reply
}

/// A `type='headline'` message from the server (`from`, a host) to `to` with an
/// optional subject: announcements and notices (XEP-0133 §4.23).
pub fn headline(from: &str, to: &str, subject: Option<&str>, body: &str) -> Stanza {
    let mut children = Vec::new();
    if let Some(subject) = subject {
        children.extend_from_slice(b"<subject>");
        crate::stanza::escape_text(&mut children, subject);
        children.extend_from_slice(b"</subject>");
    }
    children.extend_from_slice(b"<body>");
    crate::stanza::escape_text(&mut children, body);
    children.extend_from_slice(b"</body>");
    let mut message = Stanza::new("message", "jabber:client").with_children_xml(children.into());
    message.set_attr("from", Some(from));
    message.set_attr("to", Some(to));
    message.set_attr("type", Some("headline"));
    message
}
