//! Incremental reader for one XML stream (RFC 6120 §4, §11).
//!
//! Bytes arrive in any split. A byte scanner finds the stream header and the end of
//! each top-level element while counting size and depth, so limits trip as the bytes
//! arrive and nothing larger than the limit is ever buffered. A complete element is
//! then checked and parsed with quick-xml, namespaces are resolved against the
//! stream header's declarations, and the element becomes a canonical [`Stanza`].
//!
//! RFC 6120 §11.1's restricted XML is enforced: comments, processing instructions
//! (other than the XML declaration before the header), DTDs and entity declarations
//! are `restricted-xml`; undefined entities, mismatched tags, duplicate attributes,
//! unbound prefixes, control characters and invalid UTF-8 (overlong forms included)
//! are `not-well-formed`; a non-UTF-8 encoding declaration is `unsupported-encoding`.

use std::borrow::Cow;

use bytes::Bytes;
use quick_xml::events::{BytesStart, Event};
use starling_api::Stanza;
use starling_api::stanza::{NS_XML, escape_attr, escape_text};

use super::NS_STREAMS;

/// Limits from the configuration (`[limits]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest top-level element, in bytes, counted as the bytes arrive.
    pub max_stanza_bytes: usize,
    /// Deepest nesting inside a top-level element.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_stanza_bytes: 256 * 1024, max_depth: 64 }
    }
}

/// What the peer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// The opening `<stream:stream>`.
    Header(StreamHeader),
    /// A complete top-level element.
    Stanza(Stanza),
    /// `</stream:stream>`.
    Footer,
}

/// The attributes of the peer's stream header (RFC 6120 §4.7).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamHeader {
    /// `to`
    pub to: Option<String>,
    /// `from`
    pub from: Option<String>,
    /// `id`
    pub id: Option<String>,
    /// `version`
    pub version: Option<String>,
    /// `xml:lang`
    pub lang: Option<String>,
    /// The default (content) namespace, e.g. `jabber:client`.
    pub default_ns: Option<String>,
    /// Other prefix declarations, e.g. `("db", "jabber:server:dialback")`.
    pub prefixes: Vec<(String, String)>,
}

/// Why the stream must end; [`XmlError::condition`] names the RFC 6120 §4.9.3 error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// Malformed XML.
    #[error("not well-formed: {0}")]
    NotWellFormed(Cow<'static, str>),
    /// XML features XMPP forbids.
    #[error("restricted XML: {0}")]
    Restricted(&'static str),
    /// A configured limit was exceeded.
    #[error("limit exceeded: {0}")]
    PolicyViolation(&'static str),
    /// The stream element or its namespaces are wrong.
    #[error("invalid namespace: {0}")]
    InvalidNamespace(Cow<'static, str>),
    /// An encoding other than UTF-8 was declared.
    #[error("unsupported encoding {0}")]
    UnsupportedEncoding(String),
}

impl XmlError {
    /// The stream error condition to send.
    pub fn condition(&self) -> &'static str {
        match self {
            XmlError::NotWellFormed(_) => "not-well-formed",
            XmlError::Restricted(_) => "restricted-xml",
            XmlError::PolicyViolation(_) => "policy-violation",
            XmlError::InvalidNamespace(_) => "invalid-namespace",
            XmlError::UnsupportedEncoding(_) => "unsupported-encoding",
        }
    }
}

fn malformed(why: impl Into<Cow<'static, str>>) -> XmlError {
    XmlError::NotWellFormed(why.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Between top-level elements (or before the header): only whitespace.
    Outside,
    /// Inside `<…>`; `quote` is the open attribute quote, if any.
    Tag { quote: Option<u8> },
    /// Character data inside a top-level element.
    Text,
    /// Inside `<![CDATA[…]]>`.
    CData,
    /// Inside the XML declaration `<?xml …?>`.
    Declaration,
}

/// Namespace bindings of the stream root, inherited by every top-level element.
#[derive(Debug, Clone)]
struct RootScope {
    qname: String,
    default_ns: String,
    prefixes: Vec<(String, String)>,
}

/// The reader. One per connection; [`StreamReader::reset`] on stream restarts.
#[derive(Debug)]
pub struct StreamReader {
    limits: Limits,
    buf: Vec<u8>,
    pos: usize,
    /// Start of the construct being scanned (tag, element, declaration).
    start: usize,
    scan: Scan,
    /// 0 before the header, 1 inside the stream root, 2+ inside a top-level element.
    depth: usize,
    /// Whether the tag being scanned is an end tag.
    end_tag: bool,
    /// Offset of the `<` of the tag being scanned.
    tag_start: usize,
    /// Name ranges (offset, length) of the open elements inside the current top-level
    /// element, so a mismatched end tag fails as soon as it arrives.
    open: Vec<(usize, usize)>,
    root: Option<RootScope>,
    declaration_allowed: bool,
    failed: Option<XmlError>,
}

/// The namespace of `xmlns` declarations themselves, never bindable.
const NS_XMLNS: &str = "http://www.w3.org/2000/xmlns/";

/// Attributes allowed on one element.
const MAX_ATTRIBUTES: usize = 256;

/// Buffers larger than this are released once empty, so idle connections stay small.
const KEEP_CAPACITY: usize = 8 * 1024;

impl StreamReader {
    /// A reader expecting a stream header.
    pub fn new(limits: Limits) -> Self {
        StreamReader {
            limits,
            buf: Vec::new(),
            pos: 0,
            start: 0,
            scan: Scan::Outside,
            depth: 0,
            end_tag: false,
            tag_start: 0,
            open: Vec::new(),
            root: None,
            declaration_allowed: true,
            failed: None,
        }
    }

    /// Appends bytes read from the socket.
    pub fn feed(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// Forgets the current stream: the next bytes start a new one (RFC 6120 §4.3.3).
    pub fn reset(&mut self) {
        *self = StreamReader::new(self.limits);
    }

    /// Whether part of an event (more than whitespace between stanzas) is buffered.
    pub fn in_event(&self) -> bool {
        self.buf.iter().any(|b| !b.is_ascii_whitespace())
    }

    /// Bytes held and not yet returned as events.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// The next complete event, `Ok(None)` when more bytes are needed. After an error
    /// every call returns the same error.
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, XmlError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        match self.scan_event() {
            Ok(event) => Ok(event),
            Err(err) => {
                self.failed = Some(err.clone());
                self.buf = Vec::new();
                Err(err)
            }
        }
    }

    fn check_size(&self) -> Result<(), XmlError> {
        if self.pos - self.start > self.limits.max_stanza_bytes {
            return Err(XmlError::PolicyViolation("stanza too large"));
        }
        Ok(())
    }

    /// Drops everything before `upto` and releases a large, empty buffer.
    fn consume(&mut self, upto: usize) {
        self.buf.drain(..upto);
        self.pos -= upto;
        self.start = self.start.saturating_sub(upto);
        if self.buf.is_empty() && self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        }
    }

    fn scan_event(&mut self) -> Result<Option<StreamEvent>, XmlError> {
        loop {
            match self.scan {
                Scan::Outside => {
                    let skip = self.buf[self.pos..].iter().take_while(|b| b.is_ascii_whitespace()).count();
                    self.pos += skip;
                    self.consume(self.pos);
                    let Some(&first) = self.buf.first() else { return Ok(None) };
                    if first != b'<' {
                        return Err(malformed("text outside of stanzas"));
                    }
                    let Some(&second) = self.buf.get(1) else { return Ok(None) };
                    self.start = 0;
                    match second {
                        b'?' if self.depth == 0 && self.declaration_allowed => {
                            self.scan = Scan::Declaration;
                            self.pos = 2;
                        }
                        b'?' => return Err(XmlError::Restricted("processing instruction")),
                        b'!' => return Err(XmlError::Restricted("comment, DTD or CDATA outside an element")),
                        b'/' if self.depth == 0 => return Err(malformed("end tag before the stream header")),
                        _ => {
                            self.end_tag = second == b'/';
                            self.tag_start = 0;
                            self.scan = Scan::Tag { quote: None };
                            self.pos = 1;
                        }
                    }
                }
                Scan::Declaration => {
                    let found = find(&self.buf[self.pos..], b"?>");
                    let Some(offset) = found else {
                        self.pos = self.buf.len().saturating_sub(1).max(self.pos);
                        self.check_size()?;
                        return Ok(None);
                    };
                    let end = self.pos + offset + 2;
                    check_declaration(&self.buf[..end])?;
                    self.declaration_allowed = false;
                    self.pos = end;
                    self.scan = Scan::Outside;
                }
                Scan::Tag { quote } => {
                    let mut quote = quote;
                    let mut closed_at = None;
                    for (i, &b) in self.buf[self.pos..].iter().enumerate() {
                        match (quote, b) {
                            (Some(q), _) if b == q => quote = None,
                            (Some(_), b'<') => return Err(malformed("'<' in an attribute value")),
                            (Some(_), _) => {}
                            (None, b'"' | b'\'') => quote = Some(b),
                            (None, b'<') => return Err(malformed("'<' inside a tag")),
                            (None, b'>') => {
                                closed_at = Some(self.pos + i);
                                break;
                            }
                            (None, _) => {}
                        }
                    }
                    let Some(close) = closed_at else {
                        self.pos = self.buf.len();
                        self.scan = Scan::Tag { quote };
                        self.check_size()?;
                        return Ok(None);
                    };
                    self.pos = close + 1;
                    self.check_size()?;
                    if let Some(event) = self.tag_closed(close)? {
                        return Ok(Some(event));
                    }
                }
                Scan::Text => {
                    let Some(offset) = self.buf[self.pos..].iter().position(|&b| b == b'<') else {
                        self.pos = self.buf.len();
                        self.check_size()?;
                        return Ok(None);
                    };
                    let lt = self.pos + offset;
                    let rest = &self.buf[lt..];
                    if rest.len() < 2 {
                        self.pos = lt;
                        return Ok(None);
                    }
                    match rest[1] {
                        b'!' => {
                            const CDATA: &[u8] = b"<![CDATA[";
                            let n = rest.len().min(CDATA.len());
                            if rest[..n] != CDATA[..n] {
                                return Err(XmlError::Restricted("comment or DTD"));
                            }
                            if n < CDATA.len() {
                                self.pos = lt;
                                return Ok(None);
                            }
                            self.pos = lt + CDATA.len();
                            self.scan = Scan::CData;
                        }
                        b'?' => return Err(XmlError::Restricted("processing instruction")),
                        second => {
                            self.end_tag = second == b'/';
                            self.tag_start = lt;
                            self.pos = lt + 1;
                            self.scan = Scan::Tag { quote: None };
                        }
                    }
                    self.check_size()?;
                }
                Scan::CData => {
                    let Some(offset) = find(&self.buf[self.pos..], b"]]>") else {
                        self.pos = self.buf.len().saturating_sub(2).max(self.pos);
                        self.check_size()?;
                        return Ok(None);
                    };
                    self.pos += offset + 3;
                    self.scan = Scan::Text;
                    self.check_size()?;
                }
            }
        }
    }

    /// A tag ended at `close` (the `>`): track depth, and finish the header, a
    /// top-level element or the stream.
    fn tag_closed(&mut self, close: usize) -> Result<Option<StreamEvent>, XmlError> {
        let self_closing = !self.end_tag && close > 0 && self.buf[close - 1] == b'/';
        if self.end_tag {
            if self.depth >= 2 {
                let name = tag_name(&self.buf[self.tag_start + 2..close]);
                let matches = self.open.pop().is_some_and(|(at, len)| self.buf[at..at + len] == *name);
                if !matches {
                    return Err(malformed("mismatched end tag"));
                }
            }
            self.depth = self.depth.saturating_sub(1);
            match self.depth {
                0 => {
                    let tag =
                        std::str::from_utf8(&self.buf[self.start..=close]).map_err(|_| malformed("invalid UTF-8"))?;
                    let name = tag.trim_start_matches("</").trim_end_matches('>').trim_end();
                    let expected = self.root.as_ref().map(|r| r.qname.as_str()).unwrap_or_default();
                    if name != expected {
                        return Err(malformed("stream closed with the wrong end tag"));
                    }
                    self.consume(close + 1);
                    self.scan = Scan::Outside;
                    return Ok(Some(StreamEvent::Footer));
                }
                1 => return self.element_complete(close).map(Some),
                _ => self.scan = Scan::Text,
            }
            return Ok(None);
        }
        if self_closing {
            return match self.depth {
                0 => Err(malformed("empty stream element")),
                1 => self.element_complete(close).map(Some),
                _ => {
                    self.scan = Scan::Text;
                    Ok(None)
                }
            };
        }
        self.depth += 1;
        if self.depth == 1 {
            let header = self.parse_header(close)?;
            self.consume(close + 1);
            self.scan = Scan::Outside;
            return Ok(Some(StreamEvent::Header(header)));
        }
        if self.depth - 1 > self.limits.max_depth {
            return Err(XmlError::PolicyViolation("elements nested too deeply"));
        }
        let name_len = tag_name(&self.buf[self.tag_start + 1..close]).len();
        self.open.push((self.tag_start + 1, name_len));
        self.scan = Scan::Text;
        Ok(None)
    }

    fn element_complete(&mut self, close: usize) -> Result<StreamEvent, XmlError> {
        self.open.clear();
        let root = self.root.as_ref().ok_or_else(|| malformed("element before the stream header"))?;
        let stanza = parse_element(&self.buf[self.start..=close], root)?;
        self.consume(close + 1);
        self.scan = Scan::Outside;
        Ok(StreamEvent::Stanza(stanza))
    }

    fn parse_header(&mut self, close: usize) -> Result<StreamHeader, XmlError> {
        let text = std::str::from_utf8(&self.buf[self.start..=close]).map_err(|_| malformed("invalid UTF-8"))?;
        check_chars(text)?;
        let mut reader = quick_xml::Reader::from_str(text);
        let start = match reader.read_event() {
            Ok(Event::Start(start)) => start,
            _ => return Err(malformed("bad stream header")),
        };
        let mut header = StreamHeader::default();
        let mut prefixes = vec![("xml".to_owned(), NS_XML.to_owned())];
        for attr in start.attributes() {
            let attr = attr.map_err(|e| malformed(e.to_string()))?;
            let key = attr.key.as_ref();
            let value = attr
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| malformed(e.to_string()))?
                .into_owned();
            match key {
                "xmlns" => header.default_ns = Some(value),
                "to" => header.to = Some(value),
                "from" => header.from = Some(value),
                "id" => header.id = Some(value),
                "version" => header.version = Some(value),
                "xml:lang" => header.lang = Some(value),
                _ => {
                    if let Some(prefix) = key.strip_prefix("xmlns:") {
                        prefixes.push((prefix.to_owned(), value.clone()));
                        header.prefixes.push((prefix.to_owned(), value));
                    }
                }
            }
        }
        let qname = start.name().as_ref().to_owned();
        let (prefix, local) = split_qname(&qname);
        let ns = match prefix {
            Some(p) => prefixes.iter().find(|(k, _)| k == p).map(|(_, v)| v.as_str()),
            None => header.default_ns.as_deref(),
        };
        if local != "stream" || ns != Some(NS_STREAMS) {
            return Err(XmlError::InvalidNamespace("the root must be {http://etherx.jabber.org/streams}stream".into()));
        }
        self.root = Some(RootScope { qname, default_ns: header.default_ns.clone().unwrap_or_default(), prefixes });
        Ok(header)
    }
}

/// XML 1.0 (5th ed.) §2.3 `Name` without colons (an NCName), less U+FDF0–U+FFFD as
/// rxml (the DOM parser downstream) has it: quick-xml checks none of this, and the
/// fuzzer found names (`m@x`, U+FEFF, U+FEF7) that only the DOM parser refused.
fn is_name(name: &str) -> bool {
    fn start(c: char) -> bool {
        matches!(c, 'A'..='Z' | '_' | 'a'..='z' | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
            | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}' | '\u{2070}'..='\u{218F}'
            | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}'
            | '\u{10000}'..='\u{EFFFF}')
    }
    fn rest(c: char) -> bool {
        start(c) || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
    }
    let mut chars = name.chars();
    chars.next().is_some_and(start) && chars.all(rest)
}

/// The name at the start of a tag's contents (up to whitespace, `/` or the end).
fn tag_name(tag: &[u8]) -> &[u8] {
    let end = tag.iter().position(|b| b.is_ascii_whitespace() || *b == b'/').unwrap_or(tag.len());
    &tag[..end]
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn split_qname(qname: &str) -> (Option<&str>, &str) {
    match qname.split_once(':') {
        Some((prefix, local)) => (Some(prefix), local),
        None => (None, qname),
    }
}

/// `<?xml version='1.0' encoding='UTF-8'?>` is allowed; any other PI is not.
fn check_declaration(bytes: &[u8]) -> Result<(), XmlError> {
    let text = std::str::from_utf8(bytes).map_err(|_| malformed("invalid UTF-8"))?;
    let body = text.strip_prefix("<?xml").ok_or(XmlError::Restricted("processing instruction"))?;
    if !body.starts_with(|c: char| c.is_ascii_whitespace()) {
        return Err(XmlError::Restricted("processing instruction"));
    }
    if let Some(at) = body.find("encoding") {
        let value: String = body[at + "encoding".len()..]
            .trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '=')
            .trim_start_matches(['\'', '"'])
            .chars()
            .take_while(|c| *c != '\'' && *c != '"')
            .collect();
        if !value.eq_ignore_ascii_case("utf-8") {
            return Err(XmlError::UnsupportedEncoding(value));
        }
    }
    Ok(())
}

/// XML 1.0 §2.2: no control characters other than tab, line feed, carriage return.
fn check_chars(text: &str) -> Result<(), XmlError> {
    if text.bytes().any(|b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) {
        return Err(malformed("control character"));
    }
    if text.contains(['\u{FFFE}', '\u{FFFF}']) {
        return Err(malformed("non-character"));
    }
    Ok(())
}

/// One namespace scope while walking an element.
struct Scope {
    default_ns: String,
    prefixes: Vec<(String, String)>,
    /// Resolved namespace of the element that opened the scope.
    ns: String,
}

fn lookup<'a>(scopes: &'a [Scope], root: &'a RootScope, prefix: &str) -> Option<&'a str> {
    for scope in scopes.iter().rev() {
        if let Some((_, ns)) = scope.prefixes.iter().rev().find(|(p, _)| p == prefix) {
            return Some(ns);
        }
    }
    root.prefixes.iter().rev().find(|(p, _)| p == prefix).map(|(_, ns)| ns.as_str())
}

/// Parses one complete top-level element into canonical form.
fn parse_element(bytes: &[u8], root: &RootScope) -> Result<Stanza, XmlError> {
    let text = std::str::from_utf8(bytes).map_err(|_| malformed("invalid UTF-8"))?;
    check_chars(text)?;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut scopes: Vec<Scope> = Vec::new();
    let mut stanza: Option<Stanza> = None;
    let mut children: Vec<u8> = Vec::with_capacity(bytes.len());
    loop {
        let event = reader.read_event().map_err(|e| malformed(e.to_string()))?;
        match event {
            Event::Start(start) => {
                let scope = open_element(&start, &scopes, root, &mut stanza, &mut children, false)?;
                scopes.push(scope);
            }
            Event::Empty(start) => {
                open_element(&start, &scopes, root, &mut stanza, &mut children, true)?;
            }
            Event::End(end) => {
                scopes.pop();
                if !scopes.is_empty() {
                    let name = end.name();
                    let (_, local) = split_qname(name.as_ref());
                    children.extend_from_slice(b"</");
                    children.extend_from_slice(local.as_bytes());
                    children.push(b'>');
                }
            }
            Event::Text(t) => escape_text(&mut children, &t.into_inner()),
            Event::CData(c) => escape_text(&mut children, &c.into_inner()),
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) => c,
                    Ok(None) => match r.as_ref() {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        _ => return Err(malformed("undefined entity")),
                    },
                    Err(_) => return Err(malformed("bad character reference")),
                };
                if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') {
                    return Err(malformed("control character reference"));
                }
                escape_text(&mut children, c.encode_utf8(&mut [0; 4]));
            }
            Event::Comment(_) => return Err(XmlError::Restricted("comment")),
            Event::PI(_) | Event::Decl(_) => return Err(XmlError::Restricted("processing instruction")),
            Event::DocType(_) => return Err(XmlError::Restricted("DTD")),
            Event::Eof => break,
        }
    }
    let stanza = stanza.ok_or_else(|| malformed("no element"))?;
    Ok(stanza.with_children_xml(Bytes::from(children)))
}

/// Resolves an element's namespaces and writes its canonical start tag (or, for the
/// top-level element, fills in the stanza root). Returns the scope it opens.
fn open_element(
    start: &BytesStart<'_>,
    scopes: &[Scope],
    root: &RootScope,
    stanza: &mut Option<Stanza>,
    children: &mut Vec<u8>,
    empty: bool,
) -> Result<Scope, XmlError> {
    let parent_default = scopes.last().map_or(root.default_ns.as_str(), |s| s.default_ns.as_str());
    let mut default_ns = parent_default.to_owned();
    let mut prefixes = Vec::new();
    let mut attrs: Vec<(String, String)> = Vec::new();
    for (count, attr) in start.attributes().enumerate() {
        // quick-xml's duplicate check is quadratic; a legitimate element has a few.
        if count >= MAX_ATTRIBUTES {
            return Err(XmlError::PolicyViolation("too many attributes"));
        }
        let attr = attr.map_err(|e| malformed(e.to_string()))?;
        let key = attr.key.as_ref();
        let (key_prefix, key_local) = split_qname(key);
        if !is_name(key_local) || key_prefix.is_some_and(|p| !is_name(p)) {
            return Err(malformed("bad attribute name"));
        }
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| malformed(e.to_string()))?
            .into_owned();
        // Character references may smuggle in what the raw bytes could not (fuzzing).
        check_chars(&value)?;
        if key == "xmlns" {
            // Namespaces in XML §3: these two may not be the default namespace.
            if value == NS_XML || value == NS_XMLNS {
                return Err(malformed("reserved namespace as default"));
            }
            default_ns = value;
        } else if let Some(prefix) = key.strip_prefix("xmlns:") {
            if value.is_empty() || prefix == "xmlns" || (prefix == "xml") != (value == NS_XML) || value == NS_XMLNS {
                return Err(malformed("bad namespace declaration"));
            }
            prefixes.push((prefix.to_owned(), value));
        } else {
            attrs.push((key.to_owned(), value));
        }
    }
    let mut scope = Scope { default_ns, prefixes, ns: String::new() };
    let qname = start.name();
    let (prefix, local) = split_qname(qname.as_ref());
    if !is_name(local) || prefix.is_some_and(|p| !is_name(p)) {
        return Err(malformed("bad element name"));
    }
    let resolve = |prefix: &str, scope: &Scope| -> Result<String, XmlError> {
        if let Some((_, ns)) = scope.prefixes.iter().find(|(p, _)| p == prefix) {
            return Ok(ns.clone());
        }
        lookup(scopes, root, prefix).map(str::to_owned).ok_or_else(|| malformed(format!("unbound prefix {prefix}")))
    };
    scope.ns = match prefix {
        Some(prefix) => resolve(prefix, &scope)?,
        None => scope.default_ns.clone(),
    };
    // Found by fuzzing: `<xml:x/>` is an element in the reserved XML namespace, which
    // no serialisation can declare.
    if scope.ns == NS_XML || scope.ns == NS_XMLNS {
        return Err(malformed("element in a reserved namespace"));
    }
    // `xmlns=''` puts an element in no namespace, which nothing in XMPP is (fuzzing:
    // the DOM parser refuses it).
    if scope.ns.is_empty() {
        return Err(XmlError::InvalidNamespace("element without a namespace".into()));
    }
    // Attributes: unprefixed ones have no namespace; xml:* stay; others get a local prefix.
    let mut canonical: Vec<(String, String)> = Vec::with_capacity(attrs.len());
    let mut declared: Vec<(String, String)> = Vec::new();
    for (key, value) in attrs {
        let (prefix, name) = split_qname(&key);
        let qualified = match prefix {
            None => key.clone(),
            Some("xml") => key.clone(),
            Some(prefix) => {
                let ns = resolve(prefix, &scope)?;
                let local = match declared.iter().position(|(_, uri)| *uri == ns) {
                    Some(i) => format!("ns{i}"),
                    None => {
                        declared.push((format!("ns{}", declared.len()), ns));
                        format!("ns{}", declared.len() - 1)
                    }
                };
                format!("{local}:{name}")
            }
        };
        if canonical.iter().any(|(k, _)| *k == qualified) {
            return Err(malformed("duplicate attribute"));
        }
        canonical.push((qualified, value));
    }
    match stanza {
        None => {
            let mut root_stanza = Stanza::new(local, &scope.ns);
            for (prefix, ns) in &declared {
                root_stanza.set_attr(&format!("xmlns:{prefix}"), Some(ns));
            }
            for (k, v) in &canonical {
                root_stanza.set_attr(k, Some(v));
            }
            *stanza = Some(root_stanza);
        }
        Some(_) => {
            let parent_ns = scopes.last().map_or("", |s| s.ns.as_str());
            children.push(b'<');
            children.extend_from_slice(local.as_bytes());
            if scope.ns != parent_ns {
                write_attr_raw(children, "xmlns", &scope.ns);
            }
            for (prefix, ns) in &declared {
                write_attr_raw(children, &format!("xmlns:{prefix}"), ns);
            }
            for (k, v) in &canonical {
                write_attr_raw(children, k, v);
            }
            children.extend_from_slice(if empty { b"/>" } else { b">" });
        }
    }
    Ok(scope)
}

fn write_attr_raw(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"='");
    escape_attr(out, value);
    out.push(b'\'');
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.org' version='1.0' xml:lang='en'>";

    fn events(input: &[u8], limits: Limits) -> Result<Vec<StreamEvent>, XmlError> {
        let mut reader = StreamReader::new(limits);
        reader.feed(input);
        let mut out = Vec::new();
        while let Some(event) = reader.next_event()? {
            out.push(event);
        }
        Ok(out)
    }

    /// Feeds `input` split at every offset in chunks of `chunk` bytes.
    fn events_split(input: &[u8], chunk: usize) -> Result<Vec<StreamEvent>, XmlError> {
        let mut reader = StreamReader::new(Limits::default());
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            reader.feed(piece);
            while let Some(event) = reader.next_event()? {
                out.push(event);
            }
        }
        Ok(out)
    }

    fn stanza(event: &StreamEvent) -> &Stanza {
        match event {
            StreamEvent::Stanza(s) => s,
            other => panic!("expected a stanza, got {other:?}"),
        }
    }

    fn error_of(input: &str) -> &'static str {
        match events(input.as_bytes(), Limits::default()) {
            Err(err) => err.condition(),
            Ok(events) => panic!("accepted: {events:?}"),
        }
    }

    #[test]
    fn header_stanzas_and_footer() {
        let input = format!(
            "{HEADER} <message to='a@b' type='chat'><body>hi &amp; &#x263A;</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>\n<presence/></stream:stream>"
        );
        let out = events(input.as_bytes(), Limits::default()).expect("valid");
        assert_eq!(out.len(), 4);
        let StreamEvent::Header(header) = &out[0] else { panic!("header") };
        assert_eq!(header.to.as_deref(), Some("example.org"));
        assert_eq!(header.default_ns.as_deref(), Some("jabber:client"));
        assert_eq!(header.lang.as_deref(), Some("en"));
        let message = stanza(&out[1]);
        assert_eq!((message.name(), message.ns(), message.to()), ("message", "jabber:client", Some("a@b")));
        assert_eq!(
            std::str::from_utf8(message.children_xml()).expect("utf8"),
            "<body>hi &amp; \u{263A}</body><active xmlns='http://jabber.org/protocol/chatstates'/>"
        );
        let typed = xmpp_parsers::message::Message::try_from(message.to_element().expect("dom")).expect("typed");
        assert_eq!(typed.bodies.get("").map(String::as_str), Some("hi & \u{263A}"));
        assert_eq!(stanza(&out[2]).name(), "presence");
        assert_eq!(out[3], StreamEvent::Footer);
    }

    #[test]
    fn every_split_gives_the_same_events() {
        let input = format!(
            "{HEADER}<iq type='get' id='a&apos;b'><query xmlns='jabber:iq:roster' ver=\"x>y\"/></iq><message><body><![CDATA[<not a tag> ]]]]></body></message></stream:stream>"
        );
        let whole = events_split(input.as_bytes(), input.len()).expect("valid");
        assert_eq!(whole.len(), 4);
        for chunk in 1..40 {
            assert_eq!(events_split(input.as_bytes(), chunk).expect("valid"), whole, "chunk {chunk}");
        }
        let iq = stanza(&whole[1]);
        assert_eq!(iq.id(), Some("a'b"));
        assert_eq!(
            std::str::from_utf8(iq.children_xml()).expect("utf8"),
            "<query xmlns='jabber:iq:roster' ver='x&gt;y'/>"
        );
        let message = stanza(&whole[2]).to_element().expect("dom");
        assert_eq!(message.get_child("body", "jabber:client").map(|b| b.text()).as_deref(), Some("<not a tag> ]]"));
    }

    #[test]
    fn multibyte_characters_split_anywhere() {
        let input = format!("{HEADER}<message><body>\u{1F600}é中</body></message>");
        let out = events_split(input.as_bytes(), 1).expect("valid");
        let body = stanza(&out[1]).to_element().expect("dom");
        assert_eq!(body.get_child("body", "jabber:client").map(|b| b.text()).as_deref(), Some("\u{1F600}é中"));
    }

    #[test]
    fn prefixes_are_resolved_and_canonicalised() {
        let input = format!(
            "{HEADER}<x:message xmlns:x='jabber:client' to='a@b'><y:thing xmlns:y='urn:y' y:attr='1' xml:lang='de'><y:inner/><x:body>b</x:body></y:thing></x:message><stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
        );
        let out = events(input.as_bytes(), Limits::default()).expect("valid");
        let message = stanza(&out[1]);
        assert_eq!((message.name(), message.ns()), ("message", "jabber:client"));
        assert_eq!(
            std::str::from_utf8(message.children_xml()).expect("utf8"),
            "<thing xmlns='urn:y' xmlns:ns0='urn:y' ns0:attr='1' xml:lang='de'><inner/><body xmlns='jabber:client'>b</body></thing>"
        );
        message.to_element().expect("canonical bytes parse");
        let features = stanza(&out[2]);
        assert_eq!((features.name(), features.ns()), ("features", NS_STREAMS));
    }

    #[test]
    fn whitespace_keepalives_are_ignored_and_release_memory() {
        let mut reader = StreamReader::new(Limits::default());
        reader.feed(HEADER.as_bytes());
        assert!(matches!(reader.next_event(), Ok(Some(StreamEvent::Header(_)))));
        reader.feed(b" \n\t ");
        assert_eq!(reader.next_event(), Ok(None));
        assert_eq!(reader.buffered_len(), 0);
        reader.feed(&vec![b' '; 100_000]);
        assert_eq!(reader.next_event(), Ok(None));
        assert_eq!(reader.buf.capacity(), 0);
    }

    #[test]
    fn reset_starts_a_new_stream() {
        let mut reader = StreamReader::new(Limits::default());
        reader.feed(HEADER.as_bytes());
        assert!(matches!(reader.next_event(), Ok(Some(StreamEvent::Header(_)))));
        reader.reset();
        reader.feed(HEADER.as_bytes());
        assert!(matches!(reader.next_event(), Ok(Some(StreamEvent::Header(_)))));
    }

    #[test]
    fn restricted_xml_is_refused() {
        assert_eq!(error_of("<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]>"), "restricted-xml");
        assert_eq!(error_of(&format!("{HEADER}<!-- c -->")), "restricted-xml");
        assert_eq!(error_of(&format!("{HEADER}<message><!-- c --></message>")), "restricted-xml");
        assert_eq!(error_of(&format!("{HEADER}<message><?pi x?></message>")), "restricted-xml");
        assert_eq!(error_of(&format!("{HEADER}<?pi x?>")), "restricted-xml");
        assert_eq!(error_of("<?php evil ?>"), "restricted-xml");
    }

    #[test]
    fn malformed_xml_is_not_well_formed() {
        for bad in [
            "<message><body>x</message>",
            "<message a='1' a='2'/>",
            "<message>&bogus;</message>",
            "<message>&#0;</message>",
            "<message>\u{1}</message>",
            "<message><p:x/></message>",
            "<message a=1/>",
            "<message m@x='1'/>",
            "<1message/>",
            "<message><b@d/></message>",
            "<messa\u{FEFF}ge/>",
            "<m\u{FEF7}/>",
            "<message xmlns='http://www.w3.org/XML/1998/namespace'/>",
            "<xml:lang/>",
            "<message a='&#x13;'/>",
            "<message xmlns:p='http://www.w3.org/2000/xmlns/'/>",
            "text",
        ] {
            assert_eq!(error_of(&format!("{HEADER}{bad}")), "not-well-formed", "{bad}");
        }
        assert_eq!(error_of("</stream:stream>"), "not-well-formed");
        assert_eq!(error_of(&format!("{HEADER}</stream:other>")), "not-well-formed");
    }

    #[test]
    fn invalid_utf8_and_overlong_forms_are_refused() {
        for bad in [&b"\xff\xfe"[..], b"\xc0\xaf", b"\xed\xa0\x80", b"\xe0\x80\xaf"] {
            let mut input = format!("{HEADER}<message><body>").into_bytes();
            input.extend_from_slice(bad);
            input.extend_from_slice(b"</body></message>");
            let err = events(&input, Limits::default()).expect_err("refused");
            assert_eq!(err.condition(), "not-well-formed");
        }
    }

    #[test]
    fn elements_without_a_namespace_are_refused() {
        assert_eq!(error_of(&format!("{HEADER}<auth xmlns=''/>")), "invalid-namespace");
        assert_eq!(error_of(&format!("{HEADER}<message><x xmlns=''/></message>")), "invalid-namespace");
    }

    #[test]
    fn encodings_and_namespaces_are_checked() {
        assert_eq!(error_of("<?xml version='1.0' encoding='ISO-8859-1'?>"), "unsupported-encoding");
        assert_eq!(error_of("<stream:stream xmlns:stream='urn:wrong' xmlns='jabber:client'>"), "invalid-namespace");
        assert_eq!(error_of("<stream xmlns='jabber:client'>"), "invalid-namespace");
        assert!(events(b"<?xml version='1.0' encoding='utf-8'?>", Limits::default()).expect("ok").is_empty());
    }

    #[test]
    fn size_limit_trips_without_buffering_the_whole_stanza() {
        let limits = Limits { max_stanza_bytes: 10_000, max_depth: 64 };
        let mut reader = StreamReader::new(limits);
        reader.feed(HEADER.as_bytes());
        reader.feed(b"<message><body>");
        assert!(matches!(reader.next_event(), Ok(Some(StreamEvent::Header(_)))));
        let chunk = vec![b'a'; 4096];
        let mut fed = 0;
        let err = loop {
            reader.feed(&chunk);
            fed += chunk.len();
            assert!(fed < 100 * 1024 * 1024, "never tripped");
            match reader.next_event() {
                Ok(None) => assert!(reader.buffered_len() <= 10_000 + 2 * chunk.len()),
                Ok(Some(e)) => panic!("unexpected {e:?}"),
                Err(err) => break err,
            }
        };
        assert_eq!(err.condition(), "policy-violation");
        assert!(fed <= 20_000, "tripped late: {fed}");
        reader.feed(b"more");
        assert_eq!(reader.next_event().map_err(|e| e.condition()), Err("policy-violation"));
        assert_eq!(reader.buffered_len(), 0);
    }

    #[test]
    fn huge_attribute_value_trips_the_limit() {
        let limits = Limits { max_stanza_bytes: 10_000, max_depth: 64 };
        let input = format!("{HEADER}<message a='{}'/>", "x".repeat(20_000));
        assert_eq!(events(input.as_bytes(), limits).map_err(|e| e.condition()), Err("policy-violation"));
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let input = format!("{HEADER}<message>{}", "<a>".repeat(10_000));
        assert_eq!(error_of(&input), "policy-violation");
        let ok = format!("{HEADER}<message>{}{}</message>", "<a>".repeat(60), "</a>".repeat(60));
        assert!(events(ok.as_bytes(), Limits::default()).is_ok());
    }

    #[test]
    fn too_many_attributes_are_refused() {
        let attrs: String = (0..1000).map(|i| format!(" a{i}='x'")).collect();
        assert_eq!(error_of(&format!("{HEADER}<message{attrs}/>")), "policy-violation");
    }

    #[test]
    fn idle_reader_is_small() {
        assert!(std::mem::size_of::<StreamReader>() <= 256, "{}", std::mem::size_of::<StreamReader>());
    }
}

#[cfg(test)]
mod split_stress {
    use super::*;

    #[test]
    fn many_messages_in_random_chunks_all_arrive() {
        let mut input = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='bench.test' version='1.0'>".to_vec();
        let n = 20_000;
        for i in 0..n {
            input.extend_from_slice(
                format!(
                    "<message to='u2@bench.test' type='chat' id='m{i}'><body>{} {i}</body></message>",
                    1_700_000_000_000_000_000u64 + i
                )
                .as_bytes(),
            );
        }
        let mut seed = 12345u64;
        let mut reader = StreamReader::new(Limits::default());
        let mut stanzas = 0;
        let mut at = 0;
        while at < input.len() {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let len = ((seed >> 33) % 4096 + 1) as usize;
            let end = (at + len).min(input.len());
            reader.feed(&input[at..end]);
            at = end;
            while let Some(event) = reader.next_event().expect("valid") {
                if matches!(event, StreamEvent::Stanza(_)) {
                    stanzas += 1;
                }
            }
        }
        assert_eq!(stanzas, n);
    }
}
