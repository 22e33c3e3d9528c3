//! Stream-level output: the opening header and stream errors (RFC 6120 §4.7, §4.9).

pub use starling_api::stanza::escape_text;
use starling_api::stanza::write_attr;

use super::NS_STREAMS;

/// The attributes of an outgoing stream header.
#[derive(Debug, Clone, Copy)]
pub struct HeaderOut<'a> {
    /// `from`: the responding server's domain.
    pub from: Option<&'a str>,
    /// `to`: the peer, when known.
    pub to: Option<&'a str>,
    /// `id`: a fresh stream id.
    pub id: Option<&'a str>,
    /// `version`, "1.0".
    pub version: Option<&'a str>,
    /// `xml:lang`.
    pub lang: Option<&'a str>,
    /// The content namespace: `jabber:client` or `jabber:server`.
    pub default_ns: &'a str,
    /// Further prefix declarations (`("db", "jabber:server:dialback")`).
    pub extra_ns: &'a [(&'a str, &'a str)],
}

/// Writes `<?xml version='1.0'?><stream:stream …>`.
pub fn write_stream_header(out: &mut Vec<u8>, header: &HeaderOut<'_>) {
    out.extend_from_slice(b"<?xml version='1.0'?><stream:stream");
    write_attr(out, "xmlns", header.default_ns);
    write_attr(out, "xmlns:stream", NS_STREAMS);
    for (prefix, ns) in header.extra_ns {
        write_attr(out, &format!("xmlns:{prefix}"), ns);
    }
    let attrs = [
        ("from", header.from),
        ("to", header.to),
        ("id", header.id),
        ("version", header.version),
        ("xml:lang", header.lang),
    ];
    for (name, value) in attrs {
        if let Some(value) = value {
            write_attr(out, name, value);
        }
    }
    out.push(b'>');
}

/// Writes a stream error and the closing tag (RFC 6120 §4.9): the stream is over.
pub fn write_stream_error(out: &mut Vec<u8>, condition: &str, text: Option<&str>) {
    out.extend_from_slice(b"<stream:error><");
    out.extend_from_slice(condition.as_bytes());
    out.extend_from_slice(b" xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
    if let Some(text) = text {
        out.extend_from_slice(b"<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>");
        escape_text(out, text);
        out.extend_from_slice(b"</text>");
    }
    out.extend_from_slice(b"</stream:error></stream:stream>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_error_are_well_formed() {
        let mut out = Vec::new();
        write_stream_header(
            &mut out,
            &HeaderOut {
                from: Some("example.org"),
                to: None,
                id: Some("a'b"),
                version: Some("1.0"),
                lang: Some("en"),
                default_ns: "jabber:client",
                extra_ns: &[],
            },
        );
        write_stream_error(&mut out, "host-unknown", Some("no <such> host"));
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.starts_with("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='example.org' id='a&apos;b' version='1.0' xml:lang='en'>"));
        assert!(text.ends_with("<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>no &lt;such&gt; host</text></stream:error></stream:stream>"));
    }
}
