//! A small builder for the canonical child XML a [`Stanza`] carries (see
//! `starling_api::stanza`): what the room sends is built once and its bytes shared by
//! every recipient's copy, which only differ in `to`.

use bytes::Bytes;
use starling_api::Stanza;
use starling_api::stanza::{escape_text, write_attr};

/// `jabber:client`, the namespace of the stanzas a room sends.
pub const NS_CLIENT: &str = "jabber:client";

/// An element under construction.
#[derive(Debug, Clone)]
pub struct Node {
    name: &'static str,
    ns: &'static str,
    attrs: Vec<(&'static str, String)>,
    children: Vec<Child>,
}

#[derive(Debug, Clone)]
enum Child {
    Node(Node),
    Text(String),
}

impl Node {
    /// `<name xmlns=ns/>`
    pub fn new(name: &'static str, ns: &'static str) -> Node {
        Node { name, ns, attrs: Vec::new(), children: Vec::new() }
    }

    /// Adds an attribute.
    pub fn attr(mut self, name: &'static str, value: impl Into<String>) -> Node {
        self.attrs.push((name, value.into()));
        self
    }

    /// Adds an attribute when `value` is set.
    pub fn attr_opt(self, name: &'static str, value: Option<impl Into<String>>) -> Node {
        match value {
            Some(value) => self.attr(name, value),
            None => self,
        }
    }

    /// Appends a child element.
    pub fn child(mut self, child: Node) -> Node {
        self.children.push(Child::Node(child));
        self
    }

    /// Appends a child element in place.
    pub fn push(&mut self, child: Node) {
        self.children.push(Child::Node(child));
    }

    /// Appends text.
    pub fn text(mut self, text: impl Into<String>) -> Node {
        self.children.push(Child::Text(text.into()));
        self
    }

    /// `<name xmlns=ns>text</name>`
    pub fn text_element(name: &'static str, ns: &'static str, text: impl Into<String>) -> Node {
        Node::new(name, ns).text(text)
    }

    fn write(&self, parent_ns: &str, out: &mut Vec<u8>) {
        out.push(b'<');
        out.extend_from_slice(self.name.as_bytes());
        if self.ns != parent_ns {
            write_attr(out, "xmlns", self.ns);
        }
        for (name, value) in &self.attrs {
            write_attr(out, name, value);
        }
        if self.children.is_empty() {
            out.extend_from_slice(b"/>");
            return;
        }
        out.push(b'>');
        for child in &self.children {
            match child {
                Child::Node(node) => node.write(self.ns, out),
                Child::Text(text) => escape_text(out, text),
            }
        }
        out.extend_from_slice(b"</");
        out.extend_from_slice(self.name.as_bytes());
        out.push(b'>');
    }
}

/// The children of a `jabber:client` stanza, in canonical form.
#[derive(Debug, Clone, Default)]
pub struct Children(Vec<u8>);

impl Children {
    /// No children yet.
    pub fn new() -> Children {
        Children(Vec::new())
    }

    /// Appends an element.
    pub fn push(&mut self, node: &Node) {
        node.write(NS_CLIENT, &mut self.0);
    }

    /// Appends canonical XML written for a `jabber:client` parent.
    pub fn push_raw(&mut self, raw: &[u8]) {
        self.0.extend_from_slice(raw);
    }

    /// The bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0.into()
    }
}

/// A `jabber:client` stanza `<name from to [type] [id]>children</name>`.
pub fn stanza(name: &str, from: &str, to: &str, type_: Option<&str>, id: Option<&str>, children: Bytes) -> Stanza {
    let mut stanza = Stanza::new(name, NS_CLIENT);
    stanza.set_attr("from", Some(from));
    stanza.set_attr("to", Some(to));
    stanza.set_attr("type", type_);
    stanza.set_attr("id", id);
    stanza.with_children_xml(children)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_canonical_children() {
        let mut children = Children::new();
        children.push(
            &Node::new("x", "http://jabber.org/protocol/muc#user")
                .child(Node::new("item", "http://jabber.org/protocol/muc#user").attr("role", "a<b"))
                .child(Node::text_element("reason", "http://jabber.org/protocol/muc#user", "1 & 2")),
        );
        children.push(&Node::text_element("body", NS_CLIENT, "hi"));
        let stanza = stanza("message", "r@c/n", "u@h/r", Some("groupchat"), None, children.into_bytes());
        let element = stanza.to_element().expect("parses");
        let x = element.get_child("x", "http://jabber.org/protocol/muc#user").expect("x");
        assert_eq!(
            x.get_child("item", "http://jabber.org/protocol/muc#user").and_then(|i| i.attr("role")),
            Some("a<b")
        );
        assert_eq!(element.get_child("body", NS_CLIENT).map(|b| b.text()).as_deref(), Some("hi"));
    }
}
