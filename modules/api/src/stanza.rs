//! [`Stanza`]: a top-level element of an XML stream (RFC 6120 §4.1, §8), stanza or
//! nonza, kept as canonical XML so that the router can forward it without a DOM.
//!
//! Canonical form of the children: every element whose namespace differs from its
//! parent's carries `xmlns='…'`, no namespace prefixes are used (except `xml:`; an
//! attribute from another namespace gets a prefix declared on its own element), text
//! and attribute values are escaped one way. The bytes are therefore self-contained:
//! the same children are valid on a `jabber:client` stream, on a `jabber:server`
//! stream after [`Stanza::set_ns`] (children in the root's namespace follow it), and
//! in a WebSocket frame.

use std::fmt::Write as _;

use bytes::Bytes;
use minidom::{Element, Node};

/// The XML namespace, bound to the `xml` prefix by definition.
pub const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";

/// A top-level element: root name, namespace and attributes, plus canonical children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stanza {
    name: Box<str>,
    ns: Box<str>,
    attrs: Vec<(Box<str>, Box<str>)>,
    children: Bytes,
}

/// A direct child element of a stanza: its local name and namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildRef {
    name: String,
    ns: String,
}

impl ChildRef {
    /// Local name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Namespace.
    pub fn ns(&self) -> &str {
        &self.ns
    }
}

/// The canonical children could not be turned into a DOM (a bug or memory corruption
/// upstream: the reader only produces well-formed canonical XML).
#[derive(Debug, thiserror::Error)]
#[error("stanza is not well-formed XML: {0}")]
pub struct StanzaError(String);

impl Stanza {
    /// An empty element `<name xmlns='ns'/>`.
    pub fn new(name: &str, ns: &str) -> Self {
        Stanza { name: name.into(), ns: ns.into(), attrs: Vec::new(), children: Bytes::new() }
    }

    /// Local name of the root element.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Namespace of the root element.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// Moves the root, and every child in the root's namespace, to `ns` (S2S translates
    /// `jabber:server` ↔ `jabber:client` this way).
    pub fn set_ns(&mut self, ns: &str) {
        self.ns = ns.into();
    }

    /// An attribute of the root by qualified name (`to`, `xml:lang`, …).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| &**k == name).map(|(_, v)| &**v)
    }

    /// Sets (`Some`) or removes (`None`) a root attribute; the value is unescaped text.
    pub fn set_attr(&mut self, name: &str, value: Option<&str>) {
        let existing = self.attrs.iter().position(|(k, _)| &**k == name);
        match (existing, value) {
            (Some(i), Some(v)) => self.attrs[i].1 = v.into(),
            (Some(i), None) => {
                self.attrs.remove(i);
            }
            (None, Some(v)) => self.attrs.push((name.into(), v.into())),
            (None, None) => {}
        }
    }

    /// The root attributes, in order.
    pub fn attrs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attrs.iter().map(|(k, v)| (&**k, &**v))
    }

    /// `to`
    pub fn to(&self) -> Option<&str> {
        self.attr("to")
    }

    /// `from`
    pub fn from(&self) -> Option<&str> {
        self.attr("from")
    }

    /// `id`
    pub fn id(&self) -> Option<&str> {
        self.attr("id")
    }

    /// `type`
    pub fn type_(&self) -> Option<&str> {
        self.attr("type")
    }

    /// The canonical serialised children.
    pub fn children_xml(&self) -> &[u8] {
        &self.children
    }

    /// Replaces the children. The caller guarantees the canonical form (the stream
    /// reader, [`Stanza::from_element`], or hand-written XML in that form).
    pub fn with_children_xml(mut self, children: Bytes) -> Self {
        self.children = children;
        self
    }

    /// The direct child elements, found by scanning the canonical bytes (no DOM).
    pub fn child_elements(&self) -> impl Iterator<Item = ChildRef> + '_ {
        let text = std::str::from_utf8(&self.children).unwrap_or_default();
        let mut reader = quick_xml::Reader::from_str(text);
        let mut depth = 0usize;
        std::iter::from_fn(move || {
            use quick_xml::events::Event;
            loop {
                let (start, empty) = match reader.read_event().ok()? {
                    Event::Start(e) => (e, false),
                    Event::Empty(e) => (e, true),
                    Event::End(_) => {
                        depth = depth.saturating_sub(1);
                        continue;
                    }
                    Event::Eof => return None,
                    _ => continue,
                };
                let top_level = depth == 0;
                if !empty {
                    depth += 1;
                }
                if top_level {
                    let ns = start
                        .attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == "xmlns")
                        .and_then(|a| {
                            a.normalized_value(quick_xml::XmlVersion::Implicit1_0).ok().map(|v| v.into_owned())
                        })
                        .unwrap_or_else(|| self.ns.to_string());
                    return Some(ChildRef { name: start.name().as_ref().to_owned(), ns });
                }
            }
        })
    }

    /// Serialises the stanza onto a stream whose default namespace is `stream_ns`: the
    /// root carries `xmlns` only when its namespace differs.
    pub fn write_to(&self, out: &mut Vec<u8>, stream_ns: &str) {
        out.push(b'<');
        out.extend_from_slice(self.name.as_bytes());
        if &*self.ns != stream_ns {
            write_attr(out, "xmlns", &self.ns);
        }
        for (k, v) in &self.attrs {
            write_attr(out, k, v);
        }
        if self.children.is_empty() {
            out.extend_from_slice(b"/>");
        } else {
            out.push(b'>');
            out.extend_from_slice(&self.children);
            out.extend_from_slice(b"</");
            out.extend_from_slice(self.name.as_bytes());
            out.push(b'>');
        }
    }

    /// The serialised stanza with an explicit `xmlns`, parseable on its own.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.children.len() + 128);
        self.write_to(&mut out, "");
        out
    }

    /// A DOM of the stanza, for handlers that need the payload.
    pub fn to_element(&self) -> Result<Element, StanzaError> {
        let text = String::from_utf8(self.to_bytes()).map_err(|e| StanzaError(e.to_string()))?;
        text.parse::<Element>().map_err(|e| StanzaError(e.to_string()))
    }

    /// The canonical form of a DOM element.
    pub fn from_element(element: &Element) -> Self {
        let mut attrs = Vec::new();
        let mut declared = Vec::new();
        collect_attrs(element, &mut attrs, &mut declared);
        let mut children = Vec::new();
        write_children(element, &element.ns(), &mut children);
        let mut stanza = Stanza {
            name: element.name().into(),
            ns: element.ns().into(),
            attrs: Vec::new(),
            children: children.into(),
        };
        for (k, v) in declared.into_iter().chain(attrs) {
            stanza.attrs.push((k.into(), v.into()));
        }
        stanza
    }
}

/// Attributes of a DOM element as (qualified name, value) pairs; namespaced ones other
/// than `xml:` get a prefix whose declaration goes into `declared`.
fn collect_attrs(element: &Element, attrs: &mut Vec<(String, String)>, declared: &mut Vec<(String, String)>) {
    for ((ns, name), value) in element.attrs().iter() {
        let ns: &str = ns.as_ref();
        let qualified = if ns.is_empty() {
            name.to_string()
        } else if ns == NS_XML {
            format!("xml:{name}")
        } else {
            let prefix = match declared.iter().find(|(_, uri)| uri == ns) {
                Some((decl, _)) => decl.trim_start_matches("xmlns:").to_owned(),
                None => {
                    let prefix = format!("ns{}", declared.len());
                    declared.push((format!("xmlns:{prefix}"), ns.to_owned()));
                    prefix
                }
            };
            format!("{prefix}:{name}")
        };
        attrs.push((qualified, value.clone()));
    }
}

fn write_children(element: &Element, ns: &str, out: &mut Vec<u8>) {
    for node in element.nodes() {
        match node {
            Node::Element(child) => write_element(child, ns, out),
            Node::Text(text) => escape_text(out, text),
        }
    }
}

fn write_element(element: &Element, parent_ns: &str, out: &mut Vec<u8>) {
    let ns = element.ns();
    out.push(b'<');
    out.extend_from_slice(element.name().as_bytes());
    if ns != parent_ns {
        write_attr(out, "xmlns", &ns);
    }
    let mut attrs = Vec::new();
    let mut declared = Vec::new();
    collect_attrs(element, &mut attrs, &mut declared);
    for (k, v) in declared.iter().chain(&attrs) {
        write_attr(out, k, v);
    }
    if element.nodes().next().is_none() {
        out.extend_from_slice(b"/>");
        return;
    }
    out.push(b'>');
    write_children(element, &ns, out);
    out.extend_from_slice(b"</");
    out.extend_from_slice(element.name().as_bytes());
    out.push(b'>');
}

/// Writes ` name='value'` with the value escaped for a single-quoted attribute.
pub fn write_attr(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"='");
    escape_attr(out, value);
    out.push(b'\'');
}

/// Escapes text content (`&`, `<`, `>`).
pub fn escape_text(out: &mut Vec<u8>, text: &str) {
    let mut last = 0;
    for (i, b) in text.bytes().enumerate() {
        let entity: &[u8] = match b {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            _ => continue,
        };
        out.extend_from_slice(&text.as_bytes()[last..i]);
        out.extend_from_slice(entity);
        last = i + 1;
    }
    out.extend_from_slice(&text.as_bytes()[last..]);
}

/// Escapes an attribute value (text escapes plus both quotes; tabs and line breaks as
/// character references so that attribute-value normalisation keeps them).
pub fn escape_attr(out: &mut Vec<u8>, value: &str) {
    let mut last = 0;
    for (i, b) in value.bytes().enumerate() {
        let entity: &[u8] = match b {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'\'' => b"&apos;",
            b'"' => b"&quot;",
            b'\t' => b"&#9;",
            b'\n' => b"&#10;",
            b'\r' => b"&#13;",
            _ => continue,
        };
        out.extend_from_slice(&value.as_bytes()[last..i]);
        out.extend_from_slice(entity);
        last = i + 1;
    }
    out.extend_from_slice(&value.as_bytes()[last..]);
}

impl std::fmt::Display for Stanza {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

/// Builds `<error type='…'><condition xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>`
/// children for hand-made error stanzas.
pub fn error_children(type_: &str, condition: &str) -> Bytes {
    let mut out = String::new();
    let _ = write!(out, "<error type='{type_}'><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_stays_small() {
        assert!(std::mem::size_of::<Stanza>() <= 96, "{}", std::mem::size_of::<Stanza>());
    }

    #[test]
    fn attributes_set_replace_remove() {
        let mut s = Stanza::new("message", "jabber:client");
        s.set_attr("to", Some("a@b"));
        s.set_attr("from", Some("x@y/z"));
        s.set_attr("from", Some("c@d/e"));
        s.set_attr("to", None);
        assert_eq!(s.from(), Some("c@d/e"));
        assert_eq!(s.to(), None);
        let mut out = Vec::new();
        s.write_to(&mut out, "jabber:client");
        assert_eq!(out, b"<message from='c@d/e'/>");
    }

    #[test]
    fn element_round_trip_is_canonical() {
        let xml = "<message xmlns='jabber:client' to='a@b' xml:lang='en' type='chat'><body>1 &lt; 2 &amp; 'q'</body>\
                   <x xmlns='urn:x' a='&apos;&quot;'><y/><body xmlns='jabber:client'>inner</body></x></message>";
        let element: Element = xml.parse().expect("valid");
        let stanza = Stanza::from_element(&element);
        assert_eq!(stanza.attr("xml:lang"), Some("en"));
        let children = String::from_utf8(stanza.children_xml().to_vec()).expect("utf8");
        assert_eq!(
            children,
            "<body>1 &lt; 2 &amp; 'q'</body><x xmlns='urn:x' a='&apos;&quot;'><y/><body xmlns='jabber:client'>inner</body></x>"
        );
        assert_eq!(stanza.to_element().expect("parses"), element);
        let kids: Vec<_> = stanza.child_elements().collect();
        assert_eq!(
            kids,
            vec![
                ChildRef { name: "body".into(), ns: "jabber:client".into() },
                ChildRef { name: "x".into(), ns: "urn:x".into() }
            ]
        );
    }

    #[test]
    fn set_ns_moves_children_in_the_root_namespace() {
        let element: Element = "<message xmlns='jabber:client'><body>hi</body></message>".parse().expect("valid");
        let mut stanza = Stanza::from_element(&element);
        stanza.set_ns("jabber:server");
        let reparsed = stanza.to_element().expect("parses");
        assert_eq!(reparsed.ns(), "jabber:server");
        assert!(reparsed.get_child("body", "jabber:server").is_some());
        let mut out = Vec::new();
        stanza.write_to(&mut out, "jabber:server");
        assert_eq!(out, b"<message><body>hi</body></message>");
    }

    #[test]
    fn foreign_namespaced_attributes_get_a_local_prefix() {
        let element: Element =
            "<iq xmlns='jabber:client' xmlns:e='urn:ext' e:flag='1' id='x'/>".parse().expect("valid");
        let stanza = Stanza::from_element(&element);
        let reparsed = stanza.to_element().expect("parses");
        assert_eq!(reparsed.attr_ns("urn:ext", "flag"), Some("1"));
    }

    #[test]
    fn typed_payloads_convert() {
        let element: Element =
            "<iq xmlns='jabber:client' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>".parse().expect("valid");
        let stanza = Stanza::from_element(&element);
        let iq = xmpp_parsers::iq::Iq::try_from(stanza.to_element().expect("dom")).expect("typed iq");
        assert!(matches!(iq, xmpp_parsers::iq::Iq::Get { .. }));
    }
}
