//! XMPP over WebSocket (RFC 7395) at `/xmpp-websocket` on the HTTP listener.
//!
//! A WebSocket carries one XML element per message, and the stream is opened and closed
//! with `<open/>` and `<close/>` in the framing namespace instead of `<stream:stream>`.
//! [`WebSocketTransport`] translates between that framing and the byte stream the C2S
//! negotiation and session code read and write, so the same state machine serves TCP
//! and WebSocket clients: it is one more [`Transport`](super::stream::Transport).
//!
//! - In: `<open/>` becomes a stream header, `<close/>` the closing tag, any other text
//!   message is fed to the stream parser as is (its limits and XML restrictions apply).
//! - Out: everything written between two flushes is split into top-level elements, one
//!   message each, with the namespace declarations a standalone document needs; the
//!   stream header becomes `<open/>` and the closing tag `<close/>`.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{Sink, Stream};
use quick_xml::events::{BytesStart, Event};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::Instrument;

use super::negotiate::NS_CLIENT;
use super::{Accepted, C2sShared};
use crate::http::HttpConnection;
use crate::metrics::{ConnectionGauge, ConnectionKind};
use crate::xml::{HeaderOut, write_stream_header};

/// RFC 7395 §3.3.2.
pub const NS_FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
/// Where the endpoint is served.
pub const PATH: &str = "/xmpp-websocket";

/// The WebSocket endpoint's route.
pub fn routes(shared: Arc<C2sShared>) -> Router {
    Router::new().route(PATH, get(upgrade)).with_state(shared)
}

async fn upgrade(
    State(shared): State<Arc<C2sShared>>,
    Extension(connection): Extension<HttpConnection>,
    ws: WebSocketUpgrade,
) -> Response {
    let ws = ws.protocols(["xmpp"]);
    // RFC 7395 §3.3.1: the client must ask for the `xmpp` subprotocol.
    if ws.selected_protocol().is_none() {
        return (StatusCode::BAD_REQUEST, "the xmpp WebSocket subprotocol is required\n").into_response();
    }
    let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections\n").into_response();
    };
    // Room for the largest stanza the stream parser accepts, plus framing.
    let max = shared.config().limits.max_stanza_bytes + 4096;
    ws.max_message_size(max).max_frame_size(max).on_upgrade(move |socket| {
        let span = tracing::info_span!("c2s_ws", peer = %connection.peer, jid = tracing::field::Empty);
        let tasks = shared.tasks.clone();
        let session = async move {
            let _gauge = ConnectionGauge::open(ConnectionKind::WebSocket);
            let transport = WebSocketTransport::new(socket, connection.encrypted);
            super::handle(Accepted::WebSocket(Box::new(transport)), connection.peer, &shared).await;
            drop(permit);
        };
        async move {
            tasks.spawn(session.instrument(span));
        }
    })
}

/// A WebSocket as the byte stream of an XML stream (see the module docs).
pub struct WebSocketTransport {
    socket: WebSocket,
    encrypted: bool,
    /// Translated input not read yet.
    input: Vec<u8>,
    read_pos: usize,
    eof: bool,
    /// Bytes written since the last flush.
    output: Vec<u8>,
    /// Framed messages not sent yet.
    outbox: VecDeque<Message>,
}

impl WebSocketTransport {
    /// Wraps an upgraded socket; `encrypted` when TLS protects it (HTTPS, or a
    /// TLS-terminating proxy in front).
    pub fn new(socket: WebSocket, encrypted: bool) -> Self {
        WebSocketTransport {
            socket,
            encrypted,
            input: Vec::new(),
            read_pos: 0,
            eof: false,
            output: Vec::new(),
            outbox: VecDeque::new(),
        }
    }

    /// Whether TLS protects the connection.
    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }
}

impl AsyncRead for WebSocketTransport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.read_pos < this.input.len() {
                let n = buf.remaining().min(this.input.len() - this.read_pos);
                buf.put_slice(&this.input[this.read_pos..this.read_pos + n]);
                this.read_pos += n;
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.socket).poll_next(cx)) {
                Some(Ok(Message::Text(text))) => {
                    this.input = inbound(text.as_str());
                    this.read_pos = 0;
                }
                Some(Ok(Message::Binary(_))) => {
                    // RFC 7395 §3.2: XMPP is carried in text frames only.
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "binary WebSocket frame")));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => this.eof = true,
                Some(Err(err)) => return Poll::Ready(Err(io::Error::other(err))),
            }
        }
    }
}

impl AsyncWrite for WebSocketTransport {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().output.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.output.is_empty() {
            let output = std::mem::take(&mut this.output);
            let (messages, rest) = outbound(&output);
            this.outbox.extend(messages.into_iter().map(|m| Message::Text(m.into_message().into())));
            this.output = rest;
        }
        while !this.outbox.is_empty() {
            ready!(Pin::new(&mut this.socket).poll_ready(cx)).map_err(io::Error::other)?;
            if let Some(message) = this.outbox.pop_front() {
                Pin::new(&mut this.socket).start_send(message).map_err(io::Error::other)?;
            }
        }
        Pin::new(&mut this.socket).poll_flush(cx).map_err(io::Error::other)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().socket).poll_close(cx).map_err(io::Error::other)
    }
}

/// Whether `text` starts with the tag `<name` (followed by a space, `/` or `>`).
fn starts_with_tag(text: &str, name: &str) -> bool {
    text.strip_prefix('<')
        .and_then(|t| t.strip_prefix(name))
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>'))
}

/// A client message as stream bytes: `<open/>` → header, `<close/>` → closing tag,
/// anything else unchanged (the stream parser judges it).
pub(super) fn inbound(text: &str) -> Vec<u8> {
    let trimmed = text.trim_start();
    if (starts_with_tag(trimmed, "open") || starts_with_tag(trimmed, "close"))
        && let Ok(element) = trimmed.parse::<minidom::Element>()
        && element.ns() == NS_FRAMING
    {
        if element.name() == "close" {
            return b"</stream:stream>".to_vec();
        }
        let mut out = Vec::new();
        write_stream_header(
            &mut out,
            &HeaderOut {
                from: element.attr("from"),
                to: element.attr("to"),
                id: None,
                version: element.attr("version"),
                lang: element.attr("xml:lang"),
                default_ns: NS_CLIENT,
                extra_ns: &[],
            },
        );
        return out;
    }
    text.as_bytes().to_vec()
}

/// `<open/>` with the attributes of our stream header (RFC 7395 §3.3.2).
fn open_message(header: &BytesStart<'_>) -> String {
    let mut open = format!("<open xmlns='{NS_FRAMING}'");
    for attr in header.attributes().flatten() {
        let key = attr.key.as_ref();
        if key == "xmlns" || key.starts_with("xmlns:") {
            continue;
        }
        let quote = if attr.value.contains('\'') { '"' } else { '\'' };
        open.push_str(&format!(" {key}={quote}{}{quote}", attr.value));
    }
    open.push_str("/>");
    open
}

/// The declaration a top-level element needs to stand alone: `stream:` elements
/// (features, errors) need the prefix, stanzas without `xmlns` the content namespace.
fn missing_declaration(start: &BytesStart<'_>) -> Option<String> {
    let name = start.name();
    if name.as_ref().starts_with("stream:") {
        return Some(format!(" xmlns:stream='{NS_STREAMS}'"));
    }
    let declares = start.attributes().flatten().any(|a| a.key.as_ref() == "xmlns");
    (!declares).then(|| format!(" xmlns='{NS_CLIENT}'"))
}

/// One unit of server output, as message-framed transports carry it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Frame {
    /// The stream header, as RFC 7395 `<open/>`.
    Open(String),
    /// A top-level element that stands alone (namespaces declared).
    Element(String),
    /// The end of the stream.
    Close,
}

impl Frame {
    /// The RFC 7395 message.
    fn into_message(self) -> String {
        match self {
            Frame::Open(open) | Frame::Element(open) => open,
            Frame::Close => format!("<close xmlns='{NS_FRAMING}'/>"),
        }
    }
}

/// Splits what the server wrote into top-level units; returns them and any incomplete
/// tail (kept for the next flush).
pub(super) fn outbound(bytes: &[u8]) -> (Vec<Frame>, Vec<u8>) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        // Our own writers emit UTF-8 only.
        return (Vec::new(), Vec::new());
    };
    // The closing tag is always the last thing written, and has no start tag in this
    // buffer for the parser to match it with.
    let (text, closes) = match text.trim_end().strip_suffix("</stream:stream>") {
        Some(before) => (before, true),
        None => (text, false),
    };
    let mut reader = quick_xml::Reader::from_str(text);
    let mut messages = Vec::new();
    let mut depth = 0usize;
    // Where the current top-level element started, and what it must declare.
    let mut unit: Option<(usize, Option<String>)> = None;
    loop {
        let start = reader.buffer_position() as usize;
        let event = match reader.read_event() {
            Ok(Event::Eof) | Err(_) => break,
            Ok(event) => event,
        };
        let end = reader.buffer_position() as usize;
        match event {
            Event::Start(e) if depth == 0 && e.name().as_ref() == "stream:stream" => {
                messages.push(Frame::Open(open_message(&e)));
            }
            Event::Start(e) => {
                if depth == 0 {
                    unit = Some((start, missing_declaration(&e)));
                }
                depth += 1;
            }
            Event::Empty(e) if depth == 0 => {
                messages.push(Frame::Element(with_declaration(&text[start..end], missing_declaration(&e))));
            }
            Event::End(_) if depth > 0 => {
                depth -= 1;
                if depth == 0
                    && let Some((from, declaration)) = unit.take()
                {
                    messages.push(Frame::Element(with_declaration(&text[from..end], declaration)));
                }
            }
            // Declarations and whitespace between elements carry nothing over WebSocket.
            _ => {}
        }
    }
    if closes {
        messages.push(Frame::Close);
    }
    let rest = unit.map(|(from, _)| bytes[from..text.len()].to_vec()).unwrap_or_default();
    (messages, rest)
}

/// `element` with `declaration` inserted after its name.
fn with_declaration(element: &str, declaration: Option<String>) -> String {
    let Some(declaration) = declaration else { return element.to_owned() };
    let name_end =
        element[1..].find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>').map_or(element.len(), |i| i + 1);
    format!("{}{declaration}{}", &element[..name_end], &element[name_end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_and_close_become_stream_tags() {
        let header = inbound("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.org' version='1.0'/>");
        let header = String::from_utf8(header).expect("utf8");
        assert!(header.contains("<stream:stream xmlns='jabber:client'"), "{header}");
        assert!(header.contains("to='example.org'") && header.contains("version='1.0'"), "{header}");
        assert_eq!(inbound("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"), b"</stream:stream>");
        assert_eq!(inbound("<message to='a@b'/>"), b"<message to='a@b'/>");
        // Not the framing namespace: left to the parser, which will refuse it.
        assert_eq!(inbound("<open xmlns='other'/>"), b"<open xmlns='other'/>");
    }

    fn outbound_messages(bytes: &[u8]) -> (Vec<String>, Vec<u8>) {
        let (frames, rest) = outbound(bytes);
        (frames.into_iter().map(Frame::into_message).collect(), rest)
    }

    #[test]
    fn output_is_split_into_standalone_elements() {
        let written = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='example.org' id='x1' version='1.0' xml:lang='en'><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>";
        let (messages, rest) = outbound_messages(written.as_bytes());
        assert!(rest.is_empty());
        assert_eq!(
            messages,
            [
                "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='example.org' id='x1' version='1.0' xml:lang='en'/>",
                "<stream:features xmlns:stream='http://etherx.jabber.org/streams'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>",
            ]
        );
        let (messages, _) = outbound_messages(b"<message from='a@b/c'><body>1</body></message><iq type='result' id='1'/><success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
        assert_eq!(
            messages,
            [
                "<message xmlns='jabber:client' from='a@b/c'><body>1</body></message>",
                "<iq xmlns='jabber:client' type='result' id='1'/>",
                "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
            ]
        );
        let (messages, _) = outbound_messages(b"</stream:stream>");
        assert_eq!(messages, ["<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"]);
        let (messages, _) = outbound_messages(
            b"<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>",
        );
        assert_eq!(messages.len(), 2);
        assert!(messages[0].starts_with("<stream:error xmlns:stream="), "{}", messages[0]);
        assert_eq!(messages[1], "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>");
    }

    #[test]
    fn an_unfinished_element_waits_for_the_next_flush() {
        let (messages, rest) = outbound_messages(b"<message><body>1</body></message><message><body>");
        assert_eq!(messages.len(), 1);
        assert_eq!(rest, b"<message><body>");
    }
}
