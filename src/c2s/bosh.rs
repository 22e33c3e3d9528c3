//! XMPP over BOSH (XEP-0124, XEP-0206) at `/http-bind` on the HTTP listener.
//!
//! Like WebSocket, BOSH is one more [`Transport`](super::stream::Transport) under the
//! unchanged C2S negotiation and session code: [`BoshTransport`] reads the payloads of
//! the client's requests, in `rid` order, as stream bytes (a session request or a
//! restart becomes a stream header, `type='terminate'` the closing tag), and what the
//! C2S code writes is split into top-level elements waiting for a request to carry them.
//!
//! The connection manager side: one request waits at a time (`hold` is 1) for at most
//! `wait` seconds; a new request releases the waiting one; each response is kept until
//! the request after next, so a client resending a `rid` gets the same answer; a
//! session without requests for `inactivity` seconds ends.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use quick_xml::events::Event;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::Instrument;

use super::negotiate::NS_CLIENT;
use super::websocket::{Frame, outbound};
use super::{Accepted, C2sShared};
use crate::http::HttpConnection;
use crate::metrics::{ConnectionGauge, ConnectionKind};
use crate::xml::{HeaderOut, escape_text, write_stream_header};

/// Where the endpoint is served.
pub const PATH: &str = "/http-bind";
const NS_HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
const NS_XBOSH: &str = "urn:xmpp:xbosh";
/// Longest `wait` granted, in seconds.
const MAX_WAIT: u64 = 60;
/// Seconds without a request before a session ends.
const INACTIVITY: u64 = 60;
/// Requests ahead of the expected `rid` accepted (`requests` in the session response).
const WINDOW: u64 = 2;

/// The BOSH endpoint's route.
pub fn routes(shared: Arc<C2sShared>) -> Router {
    let sessions = Arc::new(Mutex::new(HashMap::new()));
    Router::new().route(PATH, post(request).options(preflight)).with_state(Endpoint { shared, sessions })
}

#[derive(Clone)]
struct Endpoint {
    shared: Arc<C2sShared>,
    sessions: Arc<Mutex<HashMap<String, Arc<Session>>>>,
}

/// One BOSH session, shared by its requests and its transport.
struct Session {
    sid: String,
    wait: u64,
    state: Mutex<SessionState>,
    /// Signalled on every change a waiting request or the transport may care about.
    changed: Notify,
}

#[derive(Default)]
struct SessionState {
    /// The `rid` the next request must carry.
    next_rid: u64,
    /// Stream bytes not read by the C2S code yet.
    input: Vec<u8>,
    read_pos: usize,
    reader: Option<Waker>,
    /// Elements waiting for a request to carry them.
    output: VecDeque<String>,
    /// Responses by `rid`, for resends.
    responses: BTreeMap<u64, String>,
    /// Requests up to this `rid` must answer now (a newer one arrived).
    release_upto: u64,
    /// The server ended the stream.
    closed: bool,
    /// The client terminated or went silent: the transport reads end of stream.
    eof: bool,
    in_flight: usize,
    last_request: Option<Instant>,
}

impl Session {
    fn lock(&self) -> std::sync::MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues stream bytes for the C2S code.
    fn feed(&self, bytes: &[u8], eof: bool) {
        let mut state = self.lock();
        if state.read_pos == state.input.len() {
            state.input.clear();
            state.read_pos = 0;
        }
        state.input.extend_from_slice(bytes);
        state.eof |= eof;
        if let Some(waker) = state.reader.take() {
            waker.wake();
        }
    }
}

/// The C2S side of a BOSH session (see the module docs).
pub struct BoshTransport {
    session: Arc<Session>,
    encrypted: bool,
    /// Bytes written since the last flush.
    written: Vec<u8>,
}

impl BoshTransport {
    /// Whether TLS protects the client's requests.
    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }
}

impl AsyncRead for BoshTransport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut state = self.session.lock();
        if state.read_pos < state.input.len() {
            let n = buf.remaining().min(state.input.len() - state.read_pos);
            let from = state.read_pos;
            buf.put_slice(&state.input[from..from + n]);
            state.read_pos += n;
            return Poll::Ready(Ok(()));
        }
        if state.eof {
            return Poll::Ready(Ok(()));
        }
        state.reader = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for BoshTransport {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().written.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.written.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let (frames, rest) = outbound(&std::mem::take(&mut this.written));
        this.written = rest;
        let mut state = this.session.lock();
        for frame in frames {
            match frame {
                // The session response stands for the stream header (XEP-0206 §5).
                Frame::Open(_) => {}
                Frame::Element(element) => state.output.push_back(element),
                Frame::Close => state.closed = true,
            }
        }
        drop(state);
        this.session.changed.notify_waiters();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut *this).poll_flush(cx))?;
        this.session.lock().closed = true;
        this.session.changed.notify_waiters();
        Poll::Ready(Ok(()))
    }
}

fn cors(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, header::HeaderValue::from_static("*"));
    response
}

async fn preflight() -> Response {
    cors(
        (
            StatusCode::NO_CONTENT,
            [
                (header::ACCESS_CONTROL_ALLOW_METHODS, "POST, OPTIONS"),
                (header::ACCESS_CONTROL_ALLOW_HEADERS, "Content-Type"),
                (header::ACCESS_CONTROL_MAX_AGE, "86400"),
            ],
        )
            .into_response(),
    )
}

fn xml_response(body: String) -> Response {
    cors(([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response())
}

/// A terminal binding error (XEP-0124 §17).
fn terminate(condition: &str) -> Response {
    xml_response(format!("<body xmlns='{NS_HTTPBIND}' type='terminate' condition='{condition}'/>"))
}

async fn request(
    State(endpoint): State<Endpoint>,
    Extension(connection): Extension<HttpConnection>,
    body: Bytes,
) -> Response {
    if body.len() > endpoint.shared.config().limits.max_stanza_bytes {
        return terminate("policy-violation");
    }
    let Some(wrapper) = std::str::from_utf8(&body).ok().and_then(parse_wrapper) else {
        return terminate("bad-request");
    };
    let Some(rid) = wrapper.attr("rid").and_then(|r| r.parse::<u64>().ok()) else { return terminate("bad-request") };
    match wrapper.attr("sid") {
        None => create(&endpoint, connection, &wrapper, rid).await,
        Some(sid) => {
            let session = endpoint.sessions.lock().unwrap_or_else(|e| e.into_inner()).get(sid).cloned();
            match session {
                Some(session) => exchange(&session, &wrapper, rid).await,
                None => terminate("item-not-found"),
            }
        }
    }
}

/// Stream bytes for the header of a new or restarted stream.
fn stream_header(to: Option<&str>, lang: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    let header =
        HeaderOut { from: None, to, id: None, version: Some("1.0"), lang, default_ns: NS_CLIENT, extra_ns: &[] };
    write_stream_header(&mut out, &header);
    out
}

/// A request's `<body/>`: its attributes and the raw XML inside, which goes to the
/// stream parser as it is (its limits and XML restrictions apply there).
struct Wrapper<'a> {
    attrs: HashMap<String, String>,
    inner: &'a str,
}

impl Wrapper<'_> {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).map(String::as_str)
    }
}

fn parse_wrapper(text: &str) -> Option<Wrapper<'_>> {
    let mut reader = quick_xml::Reader::from_str(text);
    loop {
        let (start, empty) = match reader.read_event().ok()? {
            Event::Start(start) => (start, false),
            Event::Empty(start) => (start, true),
            Event::Decl(_) | Event::Comment(_) | Event::Text(_) => continue,
            _ => return None,
        };
        if start.name().as_ref() != "body" {
            return None;
        }
        let mut attrs = HashMap::new();
        for attr in start.attributes() {
            let attr = attr.ok()?;
            let value = quick_xml::escape::unescape(&attr.value).ok()?.into_owned();
            attrs.insert(attr.key.as_ref().to_owned(), value);
        }
        if attrs.get("xmlns").map(String::as_str) != Some(NS_HTTPBIND) {
            return None;
        }
        if empty {
            return Some(Wrapper { attrs, inner: "" });
        }
        let from = reader.buffer_position() as usize;
        let to = text.trim_end().strip_suffix("</body>").map(str::len)?;
        return (to >= from).then(|| Wrapper { attrs, inner: &text[from..to] });
    }
}

/// The fuzz target `bosh_body` (docs/fuzzing.md): the request body parser, with what
/// it must hold for any input. Built only by cargo-fuzz.
#[cfg(fuzzing)]
pub fn fuzz_parse_body(text: &str) {
    if let Some(wrapper) = parse_wrapper(text) {
        assert_eq!(wrapper.attr("xmlns"), Some(NS_HTTPBIND));
        if !wrapper.inner.is_empty() {
            let close = format!("{}</body>", wrapper.inner);
            assert!(text.trim_end().ends_with(&close), "the payload is what precedes the closing tag");
        }
    }
}

async fn create(endpoint: &Endpoint, connection: HttpConnection, wrapper: &Wrapper<'_>, rid: u64) -> Response {
    let shared = &endpoint.shared;
    let hosts = &shared.config().server.hosts;
    let Some(to) = wrapper.attr("to").filter(|to| hosts.iter().any(|h| h == to)) else {
        return terminate("host-unknown");
    };
    let wait = wrapper.attr("wait").and_then(|w| w.parse::<u64>().ok()).unwrap_or(MAX_WAIT).clamp(1, MAX_WAIT);
    let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
        return terminate("remote-connection-failed");
    };
    let sid = format!("{:032x}", rand::random::<u128>());
    let session = Arc::new(Session {
        sid: sid.clone(),
        wait,
        state: Mutex::new(SessionState { next_rid: rid + 1, ..SessionState::default() }),
        changed: Notify::new(),
    });
    session.feed(&stream_header(Some(to), wrapper.attr("xml:lang")), false);
    endpoint.sessions.lock().unwrap_or_else(|e| e.into_inner()).insert(sid.clone(), session.clone());
    let transport = BoshTransport { session: session.clone(), encrypted: connection.encrypted, written: Vec::new() };
    let span = tracing::info_span!("c2s_bosh", peer = %connection.peer, jid = tracing::field::Empty);
    let (task_shared, sessions, task_session) = (shared.clone(), endpoint.sessions.clone(), session.clone());
    shared.tasks.spawn(
        async move {
            let _gauge = ConnectionGauge::open(ConnectionKind::Bosh);
            let watchdog = watch_inactivity(task_session.clone());
            tokio::select! {
                _ = super::handle(Accepted::Bosh(Box::new(transport)), connection.peer, &task_shared) => {}
                _ = watchdog => {}
            }
            sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(&task_session.sid);
            task_session.lock().closed = true;
            task_session.changed.notify_waiters();
            drop(permit);
        }
        .instrument(span),
    );
    let attributes = format!(
        "xmlns='{NS_HTTPBIND}' xmlns:xmpp='{NS_XBOSH}' xmlns:stream='http://etherx.jabber.org/streams' sid='{sid}' wait='{wait}' hold='1' requests='{}' polling='1' inactivity='{INACTIVITY}' ver='1.11' from='{}' xmpp:version='1.0' xmpp:restartlogic='true'",
        WINDOW,
        escaped(to),
    );
    let elements = wait_for_output(&session, rid, None).await;
    respond(&session, rid, &attributes, elements)
}

fn escaped(text: &str) -> String {
    let mut out = Vec::new();
    escape_text(&mut out, text);
    String::from_utf8(out).unwrap_or_default()
}

/// Ends the session when no request came for [`INACTIVITY`] seconds.
async fn watch_inactivity(session: Arc<Session>) {
    let limit = Duration::from_secs(INACTIVITY);
    loop {
        let deadline = {
            let state = session.lock();
            match state.last_request {
                _ if state.in_flight > 0 => None,
                Some(last) => Some(last + limit),
                None => Some(Instant::now() + limit),
            }
        };
        match deadline {
            Some(deadline) if deadline <= Instant::now() => {
                session.feed(b"", true);
                return;
            }
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => tokio::time::sleep(limit).await,
        }
    }
}

async fn exchange(session: &Arc<Session>, wrapper: &Wrapper<'_>, rid: u64) -> Response {
    let attributes = format!("xmlns='{NS_HTTPBIND}'");
    {
        let mut state = session.lock();
        if let Some(cached) = state.responses.get(&rid) {
            return xml_response(cached.clone());
        }
        if rid < state.next_rid || rid >= state.next_rid + WINDOW {
            return terminate("item-not-found");
        }
        state.in_flight += 1;
        state.last_request = Some(Instant::now());
    }
    // Requests are handled in rid order: a request ahead of its turn waits for it.
    let deadline = Instant::now() + Duration::from_secs(session.wait);
    loop {
        let notified = session.changed.notified();
        {
            let state = session.lock();
            if state.next_rid == rid || state.closed {
                break;
            }
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            session.lock().in_flight -= 1;
            return terminate("item-not-found");
        }
    }
    let terminating = wrapper.attr("type") == Some("terminate");
    let restart = wrapper.attr("xmpp:restart") == Some("true");
    let mut bytes = Vec::new();
    if restart {
        bytes = stream_header(wrapper.attr("to"), wrapper.attr("xml:lang"));
    }
    bytes.extend_from_slice(wrapper.inner.as_bytes());
    if terminating {
        bytes.extend_from_slice(b"</stream:stream>");
    }
    {
        let mut state = session.lock();
        state.next_rid = rid + 1;
        // A newer request releases the one waiting before it (hold = 1).
        state.release_upto = rid.saturating_sub(1);
    }
    session.feed(&bytes, false);
    session.changed.notify_waiters();
    if terminating {
        session.lock().in_flight -= 1;
        return respond(session, rid, &format!("{attributes} type='terminate'"), Vec::new());
    }
    let elements = wait_for_output(session, rid, Some(deadline)).await;
    let closed = session.lock().closed;
    let attributes = if closed { format!("{attributes} type='terminate'") } else { attributes };
    session.lock().in_flight -= 1;
    respond(session, rid, &attributes, elements)
}

/// Waits until there is output, the stream ended, a newer request releases this one,
/// or `wait` passes; returns the output.
async fn wait_for_output(session: &Session, rid: u64, deadline: Option<Instant>) -> Vec<String> {
    let deadline = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(session.wait));
    loop {
        let notified = session.changed.notified();
        {
            let mut state = session.lock();
            if !state.output.is_empty() || state.closed || state.release_upto >= rid {
                return state.output.drain(..).collect();
            }
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return session.lock().output.drain(..).collect();
        }
    }
}

/// Builds the response for `rid` and keeps it for resends.
fn respond(session: &Session, rid: u64, attributes: &str, elements: Vec<String>) -> Response {
    let body = if elements.is_empty() {
        format!("<body {attributes}/>")
    } else {
        format!("<body {attributes}>{}</body>", elements.concat())
    };
    let mut state = session.lock();
    state.responses.insert(rid, body.clone());
    while state.responses.len() > WINDOW as usize {
        state.responses.pop_first();
    }
    drop(state);
    xml_response(body)
}
