//! Outgoing server-to-server streams (RFC 6120 §4–§6, XEP-0368, XEP-0178, XEP-0220).
//!
//! A connection task resolves the peer, connects (direct TLS or STARTTLS; TLS is
//! always required), then authenticates the local domain: SASL EXTERNAL when the
//! peer's certificate is valid for its domain and the peer offers it, else dialback
//! when the policy allows. Stanzas queued meanwhile are then written; a failure before
//! that bounces them (`remote-server-not-found`, or `remote-server-timeout` when the
//! negotiation deadline passed). Further local domains are added to the stream by
//! dialback. The stream closes after the configured idle time. The same connection
//! code answers the receiving server's need to verify a dialback key with the
//! authoritative server ([`verify`]).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls_pki_types::ServerName;
use starling_api::Stanza;
use starling_api::xmpp_parsers::stanza_error::DefinedCondition;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::dialback::{self, Dialback, Kind, NS_DIALBACK, NS_DIALBACK_FEATURE};
use super::pool::LinkHandle;
use super::{ALPN_XMPP_SERVER, NS_SASL, NS_SERVER, NS_TLS, S2s, domain_of};
use crate::metrics::{ConnectionGauge, ConnectionKind};
use crate::stream::{ReadFailure, Transport, XmppStream};
use crate::xml::{HeaderOut, NS_STREAMS, StreamEvent, write_stream_header};

/// Bytes gathered from the queue into one socket write.
const WRITE_BATCH: usize = 16 * 1024;
/// A write that makes no progress for this long ends the stream.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why no authenticated stream could be had.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectError {
    /// DNS gave nothing to try.
    #[error(transparent)]
    Resolve(#[from] super::dns::ResolveError),
    /// No address answered.
    #[error("no reachable address: {0}")]
    Unreachable(String),
    /// The connection broke or the peer spoke nonsense; another address may do better.
    #[error("connection failed: {0}")]
    Broken(String),
    /// The peer (or our policy) refused: trying elsewhere will not help.
    #[error("refused: {0}")]
    Refused(String),
}

impl ConnectError {
    fn retryable(&self) -> bool {
        matches!(self, ConnectError::Unreachable(_) | ConnectError::Broken(_))
    }
}

impl From<std::io::Error> for ConnectError {
    fn from(err: std::io::Error) -> Self {
        ConnectError::Broken(err.to_string())
    }
}

impl From<ReadFailure> for ConnectError {
    fn from(err: ReadFailure) -> Self {
        ConnectError::Broken(err.to_string())
    }
}

/// What a connection is for.
#[derive(Clone, Copy)]
enum Purpose<'a> {
    /// An authenticated stream for stanzas.
    Link,
    /// Asking the authoritative server whether a dialback key is right.
    Verify { id: &'a str, key: &'a str },
}

enum Outcome {
    Link(Box<Link>),
    Verified(bool),
}

/// An authenticated outgoing stream.
struct Link {
    stream: XmppStream,
    /// The receiving server's stream id (dialback keys for further domains use it).
    stream_id: String,
    /// The peer takes dialback for further local domains on this stream.
    multiplex: bool,
}

/// The stream features a peer offered, as far as S2S cares.
#[derive(Debug, Default)]
struct Features {
    starttls: bool,
    mechanisms: Vec<String>,
    dialback: bool,
}

impl Features {
    fn parse(features: &Stanza) -> Features {
        let mut out = Features::default();
        let Ok(element) = features.to_element() else { return out };
        for child in element.children() {
            match (child.ns().as_str(), child.name()) {
                (NS_TLS, "starttls") => out.starttls = true,
                (NS_SASL, "mechanisms") => {
                    out.mechanisms = child.children().filter(|m| m.name() == "mechanism").map(|m| m.text()).collect();
                }
                (NS_DIALBACK_FEATURE, "dialback") => out.dialback = true,
                _ => {}
            }
        }
        out
    }
}

/// The connection task of one pool entry.
pub(super) async fn run(s2s: Arc<S2s>, link: Arc<LinkHandle>, mut rx: mpsc::Receiver<Stanza>, local: String) {
    let remote = link.remote.clone();
    let connected = tokio::select! {
        connected = tokio::time::timeout(s2s.negotiation_timeout(), connect(&s2s, &local, &remote, Purpose::Link)) => connected,
        _ = s2s.shutdown.cancelled() => {
            s2s.pool.remove_link(link.id);
            return;
        }
    };
    let failure = match connected {
        Ok(Ok(Outcome::Link(established))) => {
            tracing::info!("outgoing stream authenticated");
            return serve(&s2s, &link, rx, *established, local).await;
        }
        Ok(Ok(Outcome::Verified(_))) => DefinedCondition::RemoteServerNotFound,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "cannot reach the remote server");
            DefinedCondition::RemoteServerNotFound
        }
        Err(_elapsed) => {
            tracing::warn!("remote server did not complete the stream in time");
            DefinedCondition::RemoteServerTimeout
        }
    };
    s2s.pool.remove_link(link.id);
    rx.close();
    while let Some(stanza) = rx.recv().await {
        s2s.bounce(&stanza, failure.clone());
    }
}

/// Asks `remote`'s server (the authoritative server) whether `key` is the one it
/// gave for stream `id` towards `local` (XEP-0220 §2.1.3).
pub(super) async fn verify(s2s: &S2s, local: &str, remote: &str, id: &str, key: &str) -> Result<bool, ConnectError> {
    match connect(s2s, local, remote, Purpose::Verify { id, key }).await? {
        Outcome::Verified(valid) => Ok(valid),
        Outcome::Link(_) => Err(ConnectError::Broken("no verification answer".into())),
    }
}

async fn connect(s2s: &S2s, local: &str, remote: &str, purpose: Purpose<'_>) -> Result<Outcome, ConnectError> {
    let targets = s2s.resolver.targets(remote).await?;
    let connect_timeout = Duration::from_secs(s2s.config.s2s.connect_timeout);
    let mut last = ConnectError::Unreachable(format!("no address for {remote}"));
    for target in targets {
        for addr in s2s.resolver.addresses(&target.host, target.port).await {
            let tcp = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(err)) => {
                    last = ConnectError::Unreachable(format!("{addr}: {err}"));
                    continue;
                }
                Err(_) => {
                    last = ConnectError::Unreachable(format!("{addr}: connection timed out"));
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            tracing::debug!(%addr, direct_tls = target.direct_tls, "connected");
            let negotiation = Negotiation { s2s, local, remote, purpose };
            match negotiation.run(tcp, addr, target.direct_tls).await {
                Ok(outcome) => return Ok(outcome),
                Err(err) if err.retryable() => {
                    tracing::debug!(%addr, error = %err, "trying the next address");
                    last = err;
                }
                Err(err) => return Err(err),
            }
        }
    }
    Err(last)
}

struct Negotiation<'a> {
    s2s: &'a S2s,
    local: &'a str,
    remote: &'a str,
    purpose: Purpose<'a>,
}

impl Negotiation<'_> {
    async fn tls(&self, tcp: TcpStream, direct: bool) -> Result<Transport, ConnectError> {
        let alpn: &[&[u8]] = if direct { &[ALPN_XMPP_SERVER] } else { &[] };
        let config = self.s2s.certs.s2s_client_config(self.local, alpn);
        let name = ServerName::try_from(self.remote.to_owned()).map_err(|e| ConnectError::Refused(e.to_string()))?;
        let tls = TlsConnector::from(config).connect(name, tcp).await?;
        Ok(Transport::TlsClient(Box::new(tls)))
    }

    async fn next(&self, stream: &mut XmppStream) -> Result<Stanza, ConnectError> {
        match stream.next_event().await? {
            StreamEvent::Stanza(stanza) if stanza.ns() == NS_STREAMS && stanza.name() == "error" => {
                let condition = stanza.child_elements().map(|c| c.name().to_owned()).find(|n| n != "text");
                Err(ConnectError::Refused(format!("stream error {}", condition.unwrap_or_default())))
            }
            StreamEvent::Stanza(stanza) => Ok(stanza),
            StreamEvent::Footer => Err(ConnectError::Broken("stream closed by the peer".into())),
            StreamEvent::Header(_) => Err(ConnectError::Broken("unexpected stream header".into())),
        }
    }

    async fn run(&self, tcp: TcpStream, addr: SocketAddr, direct_tls: bool) -> Result<Outcome, ConnectError> {
        let transport = if direct_tls { self.tls(tcp, true).await? } else { Transport::Plain(tcp) };
        let mut stream = XmppStream::new(transport, addr, self.s2s.limits());
        let mut authenticated = false;
        loop {
            let mut out = Vec::new();
            write_stream_header(
                &mut out,
                &HeaderOut {
                    from: Some(self.local),
                    to: Some(self.remote),
                    id: None,
                    version: Some("1.0"),
                    lang: None,
                    default_ns: NS_SERVER,
                    extra_ns: &[("db", NS_DIALBACK)],
                },
            );
            stream.send(&out).await?;
            let header = match stream.next_event().await? {
                StreamEvent::Header(header) => header,
                _ => return Err(ConnectError::Broken("expected a stream header".into())),
            };
            if header.default_ns.as_deref() != Some(NS_SERVER) {
                return Err(ConnectError::Broken("the peer's stream is not jabber:server".into()));
            }
            let stream_id = header.id.clone().unwrap_or_default();
            let features = self.next(&mut stream).await?;
            if features.ns() != NS_STREAMS || features.name() != "features" {
                return Err(ConnectError::Broken("expected stream features".into()));
            }
            let features = Features::parse(&features);
            if !stream.is_tls() {
                if !features.starttls {
                    return Err(ConnectError::Refused("the peer offers no TLS".into()));
                }
                stream.send(format!("<starttls xmlns='{NS_TLS}'/>").as_bytes()).await?;
                let proceed = self.next(&mut stream).await?;
                if proceed.ns() != NS_TLS || proceed.name() != "proceed" {
                    return Err(ConnectError::Refused("STARTTLS refused".into()));
                }
                let Transport::Plain(tcp) = stream.into_transport() else {
                    return Err(ConnectError::Broken("not a plain connection".into()));
                };
                stream = XmppStream::new(self.tls(tcp, false).await?, addr, self.s2s.limits());
                continue;
            }
            if let Purpose::Verify { id, key } = self.purpose {
                return self.ask_verify(stream, id, key).await;
            }
            let policy = self.s2s.policy(self.remote);
            if authenticated {
                let multiplex = features.dialback && policy.allow_dialback;
                return Ok(Outcome::Link(Box::new(Link { stream, stream_id, multiplex })));
            }
            let certificate = self.s2s.trust.verify(stream.peer_certificates(), self.remote);
            if let Err(why) = &certificate {
                if policy.require_valid_certificate {
                    return Err(ConnectError::Refused(format!("certificate not valid for {}: {why}", self.remote)));
                }
                tracing::debug!(%why, "peer certificate does not authenticate it");
            }
            if certificate.is_ok() && features.mechanisms.iter().any(|m| m == "EXTERNAL") {
                // XEP-0178 §3 step 8: the authorization identity is our domain.
                let auth = format!("<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>{}</auth>", BASE64.encode(self.local));
                stream.send(auth.as_bytes()).await?;
                let answer = self.next(&mut stream).await?;
                if answer.ns() == NS_SASL && answer.name() == "success" {
                    tracing::debug!("SASL EXTERNAL succeeded");
                    stream.reset();
                    authenticated = true;
                    continue;
                }
                tracing::debug!("SASL EXTERNAL refused; trying dialback");
            }
            let dialback_offered = features.dialback || header.prefixes.iter().any(|(_, ns)| ns == NS_DIALBACK);
            if !(policy.allow_dialback && dialback_offered) {
                return Err(ConnectError::Refused("no authentication method both sides accept".into()));
            }
            let key = self.s2s.secret.key(self.remote, self.local, &stream_id);
            stream.send(&dialback::result_request(self.local, self.remote, &key)).await?;
            loop {
                let element = self.next(&mut stream).await?;
                let Some(answer) = Dialback::parse(&element) else { continue };
                if answer.kind != Kind::Result || answer.from != self.remote || answer.to != self.local {
                    continue;
                }
                return match answer.type_.as_deref() {
                    Some("valid") => Ok(Outcome::Link(Box::new(Link { stream, stream_id, multiplex: true }))),
                    Some("invalid") => Err(ConnectError::Refused("dialback key refused".into())),
                    _ => Err(ConnectError::Refused("dialback failed on the remote side".into())),
                };
            }
        }
    }

    async fn ask_verify(&self, mut stream: XmppStream, id: &str, key: &str) -> Result<Outcome, ConnectError> {
        stream.send(&dialback::verify_request(self.local, self.remote, id, key)).await?;
        let valid = loop {
            let element = self.next(&mut stream).await?;
            let Some(answer) = Dialback::parse(&element) else { continue };
            if answer.kind == Kind::Verify && answer.id.as_deref() == Some(id) && answer.from == self.remote {
                break answer.type_.as_deref() == Some("valid");
            }
        };
        let _ = stream.send(b"</stream:stream>").await;
        stream.close().await;
        Ok(Outcome::Verified(valid))
    }
}

/// Why an established stream ended.
enum End {
    /// Idle, or closed by the peer: stanzas still queued go to a new stream.
    Closed,
    /// Broken: likewise.
    Failed,
    /// The server is stopping.
    Shutdown,
}

/// Writes queued stanzas until the stream ends; adds local domains by dialback.
async fn serve(s2s: &Arc<S2s>, handle: &Arc<LinkHandle>, mut rx: mpsc::Receiver<Stanza>, link: Link, local: String) {
    let Link { mut stream, stream_id, multiplex } = link;
    let _gauge = ConnectionGauge::open(ConnectionKind::S2sOut);
    handle.multiplex.store(multiplex, Ordering::Relaxed);
    let remote = handle.remote.clone();
    let mut state = Domains { authorised: HashSet::from([local]), pending: HashMap::new(), retry: Vec::new() };
    let mut out = Vec::new();
    let idle = s2s.idle_timeout();
    let mut last_write = Instant::now();
    let end = loop {
        let wake = stream.last_activity.max(last_write) + idle;
        tokio::select! {
            received = rx.recv() => {
                let Some(first) = received else { break End::Closed };
                out.clear();
                state.write(s2s, handle, &stream_id, first, &mut out);
                while out.len() < WRITE_BATCH {
                    match rx.try_recv() {
                        Ok(stanza) => state.write(s2s, handle, &stream_id, stanza, &mut out),
                        Err(_) => break,
                    }
                }
                for stanza in std::mem::take(&mut state.retry) {
                    resend(s2s, stanza);
                }
                if !out.is_empty() {
                    let written = tokio::time::timeout(WRITE_TIMEOUT, stream.send(&out)).await;
                    if !matches!(written, Ok(Ok(()))) {
                        break End::Failed;
                    }
                    last_write = Instant::now();
                }
                if out.capacity() > WRITE_BATCH * 4 {
                    out = Vec::new();
                }
            }
            event = stream.next_event() => match event {
                Ok(StreamEvent::Stanza(element)) => {
                    if element.ns() == NS_STREAMS && element.name() == "error" {
                        tracing::info!(error = %element, "stream error from the peer");
                        break End::Failed;
                    }
                    let Some(answer) = Dialback::parse(&element) else {
                        // Without XEP-0288 nothing but dialback answers travel this way.
                        tracing::debug!(name = element.name(), "ignoring an element on an outgoing stream");
                        continue;
                    };
                    if answer.kind != Kind::Result || answer.from != remote {
                        continue;
                    }
                    out.clear();
                    state.answered(s2s, handle, &answer.to, answer.type_.as_deref() == Some("valid"), &mut out);
                    for stanza in std::mem::take(&mut state.retry) {
                        resend(s2s, stanza);
                    }
                    if !out.is_empty() && !matches!(tokio::time::timeout(WRITE_TIMEOUT, stream.send(&out)).await, Ok(Ok(()))) {
                        break End::Failed;
                    }
                }
                Ok(StreamEvent::Footer) => break End::Closed,
                Ok(StreamEvent::Header(_)) | Err(_) => break End::Failed,
            },
            _ = tokio::time::sleep_until(wake) => {
                if rx.is_empty() && state.pending.is_empty() {
                    tracing::debug!("idle; closing");
                    break End::Closed;
                }
            }
            _ = s2s.shutdown.cancelled() => break End::Shutdown,
        }
    };
    s2s.pool.remove_link(handle.id);
    if !matches!(end, End::Failed) {
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.send(b"</stream:stream>")).await;
    }
    stream.close().await;
    rx.close();
    let mut left: Vec<Stanza> = state.pending.into_values().flatten().collect();
    while let Some(stanza) = rx.recv().await {
        left.push(stanza);
    }
    if matches!(end, End::Shutdown) {
        return;
    }
    tracing::debug!(queued = left.len(), "stream ended; queued stanzas go to a new stream");
    for stanza in left {
        resend(s2s, stanza);
    }
}

/// Submits a stanza to the pool again (a new or another stream).
fn resend(s2s: &Arc<S2s>, stanza: Stanza) {
    let Some(remote) = domain_of(stanza.to()) else { return };
    s2s.send(stanza, &remote);
}

/// The local domains of one stream.
struct Domains {
    authorised: HashSet<String>,
    /// Domains waiting for a dialback answer, with their stanzas.
    pending: HashMap<String, Vec<Stanza>>,
    /// Stanzas this stream cannot carry, to give back to the pool.
    retry: Vec<Stanza>,
}

impl Domains {
    fn write(&mut self, s2s: &S2s, handle: &LinkHandle, stream_id: &str, mut stanza: Stanza, out: &mut Vec<u8>) {
        let Some(local) = domain_of(stanza.from()) else { return };
        if self.authorised.contains(&local) {
            stanza.set_ns(NS_SERVER);
            stanza.write_to(out, NS_SERVER);
            return;
        }
        if let Some(waiting) = self.pending.get_mut(&local) {
            waiting.push(stanza);
            return;
        }
        if handle.multiplex.load(Ordering::Relaxed) {
            let key = s2s.secret.key(&handle.remote, &local, stream_id);
            out.extend_from_slice(&dialback::result_request(&local, &handle.remote, &key));
            self.pending.insert(local, vec![stanza]);
            return;
        }
        self.refuse(s2s, handle, &local);
        self.retry.push(stanza);
    }

    fn answered(&mut self, s2s: &S2s, handle: &LinkHandle, local: &str, valid: bool, out: &mut Vec<u8>) {
        let Some(waiting) = self.pending.remove(local) else { return };
        if valid {
            tracing::debug!(%local, "further local domain authorised on the stream");
            self.authorised.insert(local.to_owned());
            for mut stanza in waiting {
                stanza.set_ns(NS_SERVER);
                stanza.write_to(out, NS_SERVER);
            }
        } else {
            self.refuse(s2s, handle, local);
            self.retry.extend(waiting);
        }
    }

    /// This stream will not carry `local`: the pool opens another for it.
    fn refuse(&mut self, s2s: &S2s, handle: &LinkHandle, local: &str) {
        if let Ok(mut refused) = handle.refused.lock() {
            refused.insert(local.to_owned());
        }
        s2s.pool.remove_pair(local, &handle.remote, handle.id);
    }
}
