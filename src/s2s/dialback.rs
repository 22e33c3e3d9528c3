//! Server Dialback (XEP-0220) elements and keys (XEP-0185).
//!
//! The originating server sends `<db:result from='orig' to='recv'>KEY</db:result>`;
//! the receiving server asks the authoritative server for `orig` with
//! `<db:verify from='recv' to='orig' id='STREAM-ID'>KEY</db:verify>`, which answers
//! `type='valid'` or `'invalid'` after recomputing the key. Keys follow XEP-0185 §3:
//! `HEX(HMAC-SHA256(HEX(SHA256(secret)), "recv orig stream-id"))`, so they never
//! reveal the secret and a verification needs no state.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use starling_api::Stanza;
use starling_api::stanza::{escape_text, write_attr};

/// `jabber:server:dialback`
pub const NS_DIALBACK: &str = "jabber:server:dialback";
/// XEP-0220 §2.5's stream feature namespace.
pub const NS_DIALBACK_FEATURE: &str = "urn:xmpp:features:dialback";
const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// The server's dialback secret, already hashed once, in hex (XEP-0185 §2 notes 2, 4).
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// From the configured secret; a random one when it is empty.
    pub fn new(configured: &str) -> Secret {
        let material: Vec<u8> =
            if configured.is_empty() { rand::random::<[u8; 32]>().to_vec() } else { configured.as_bytes().to_vec() };
        Secret(hex(&Sha256::digest(material)))
    }

    /// The key for `originating` proving itself to `receiving` on stream `id`.
    pub fn key(&self, receiving: &str, originating: &str, id: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.0.as_bytes()) else {
            unreachable!("HMAC accepts keys of any length")
        };
        mac.update(receiving.as_bytes());
        mac.update(b" ");
        mac.update(originating.as_bytes());
        mac.update(b" ");
        mac.update(id.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// Whether `key` is the right one, compared in constant time.
    pub fn check(&self, key: &str, receiving: &str, originating: &str, id: &str) -> bool {
        use subtle::ConstantTimeEq;
        let expected = self.key(receiving, originating, id);
        expected.as_bytes().ct_eq(key.trim().as_bytes()).into()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Which dialback element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `<db:result/>`
    Result,
    /// `<db:verify/>`
    Verify,
}

/// A dialback element read from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialback {
    /// result or verify.
    pub kind: Kind,
    /// `from`
    pub from: String,
    /// `to`
    pub to: String,
    /// `id` (verify only).
    pub id: Option<String>,
    /// `type`: none on requests; `valid`, `invalid` or `error` on answers.
    pub type_: Option<String>,
    /// The key (requests only).
    pub key: String,
}

impl Dialback {
    /// Reads a `jabber:server:dialback` element; `None` for anything else or when an
    /// address is missing.
    pub fn parse(stanza: &Stanza) -> Option<Dialback> {
        if stanza.ns() != NS_DIALBACK {
            return None;
        }
        let kind = match stanza.name() {
            "result" => Kind::Result,
            "verify" => Kind::Verify,
            _ => return None,
        };
        let key = if stanza.children_xml().is_empty() { String::new() } else { stanza.to_element().ok()?.text() };
        Some(Dialback {
            kind,
            from: domain(stanza.from()?)?,
            to: domain(stanza.to()?)?,
            id: stanza.id().map(str::to_owned),
            type_: stanza.type_().map(str::to_owned),
            key: key.trim().to_owned(),
        })
    }
}

fn domain(text: &str) -> Option<String> {
    match starling_api::parse_jid(text) {
        Ok(jid) if jid.node().is_none() && jid.resource().is_none() => Some(jid.domain().to_string()),
        _ => None,
    }
}

fn element(kind: Kind, attrs: &[(&str, &str)], text: Option<&str>, children: &str) -> Vec<u8> {
    let name = match kind {
        Kind::Result => "db:result",
        Kind::Verify => "db:verify",
    };
    let mut out = Vec::with_capacity(160);
    out.push(b'<');
    out.extend_from_slice(name.as_bytes());
    for (k, v) in attrs {
        write_attr(&mut out, k, v);
    }
    match (text, children.is_empty()) {
        (None, true) => out.extend_from_slice(b"/>"),
        _ => {
            out.push(b'>');
            if let Some(text) = text {
                escape_text(&mut out, text);
            }
            out.extend_from_slice(children.as_bytes());
            out.extend_from_slice(b"</");
            out.extend_from_slice(name.as_bytes());
            out.push(b'>');
        }
    }
    out
}

/// `<db:result from to>key</db:result>`: the originating server's request.
pub fn result_request(from: &str, to: &str, key: &str) -> Vec<u8> {
    element(Kind::Result, &[("from", from), ("to", to)], Some(key), "")
}

/// `<db:result type='valid|invalid'/>` from the receiving server.
pub fn result_answer(from: &str, to: &str, valid: bool) -> Vec<u8> {
    element(Kind::Result, &[("from", from), ("to", to), ("type", if valid { "valid" } else { "invalid" })], None, "")
}

/// `<db:result type='error'>` with a stanza error condition (XEP-0220 §2.4).
pub fn result_error(from: &str, to: &str, type_: &str, condition: &str) -> Vec<u8> {
    let children = format!("<error type='{type_}'><{condition} xmlns='{NS_STANZAS}'/></error>");
    element(Kind::Result, &[("from", from), ("to", to), ("type", "error")], None, &children)
}

/// `<db:verify from to id>key</db:verify>`: the receiving server asks.
pub fn verify_request(from: &str, to: &str, id: &str, key: &str) -> Vec<u8> {
    element(Kind::Verify, &[("from", from), ("to", to), ("id", id)], Some(key), "")
}

/// `<db:verify type='valid|invalid'/>` from the authoritative server.
pub fn verify_answer(from: &str, to: &str, id: &str, valid: bool) -> Vec<u8> {
    let type_ = if valid { "valid" } else { "invalid" };
    element(Kind::Verify, &[("from", from), ("to", to), ("id", id), ("type", type_)], None, "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{Limits, StreamEvent, StreamReader};

    fn read(bytes: &[u8]) -> Stanza {
        let mut reader = StreamReader::new(Limits::default());
        reader.feed(
            b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'>",
        );
        reader.feed(bytes);
        assert!(matches!(reader.next_event(), Ok(Some(StreamEvent::Header(_)))));
        match reader.next_event() {
            Ok(Some(StreamEvent::Stanza(stanza))) => stanza,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn xep_0185_key_matches_an_independent_computation() {
        // Python: hmac.new(sha256(b"s3cr3tf0rd14lb4ck").hexdigest().encode(),
        //                  b"example.net example.com D60000229F", sha256).hexdigest()
        let secret = Secret::new("s3cr3tf0rd14lb4ck");
        let expected = "008c689ff366b50c63d69a3e2d2c0e0e1f8404b0118eb688a0102c87cb691bdc";
        assert_eq!(secret.key("example.net", "example.com", "D60000229F"), expected);
        assert!(secret.check(expected, "example.net", "example.com", "D60000229F"));
        assert!(!secret.check("00", "example.net", "example.com", "D60000229F"));
        assert!(!Secret::new("other").check(&secret.key("a", "b", "c"), "a", "b", "c"));
    }

    #[test]
    fn elements_round_trip_through_the_reader() {
        let request = read(&verify_request("b.test", "a.test", "s1", "abc"));
        let parsed = Dialback::parse(&request).expect("dialback");
        assert_eq!(parsed.kind, Kind::Verify);
        assert_eq!((parsed.from.as_str(), parsed.to.as_str(), parsed.id.as_deref()), ("b.test", "a.test", Some("s1")));
        assert_eq!(parsed.key, "abc");
        let answer = Dialback::parse(&read(&result_answer("b.test", "a.test", true))).expect("answer");
        assert_eq!((answer.kind, answer.type_.as_deref()), (Kind::Result, Some("valid")));
        let error = read(&result_error("b.test", "a.test", "cancel", "remote-server-not-found"));
        assert_eq!(Dialback::parse(&error).and_then(|d| d.type_), Some("error".into()));
        assert!(Dialback::parse(&read(b"<db:result from='u@a.test' to='b.test'>k</db:result>")).is_none());
    }
}
