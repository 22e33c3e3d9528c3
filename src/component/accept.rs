//! The component side of XEP-0114 §3: header, handshake, then stanzas both ways.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha1::{Digest, Sha1};
use starling_api::{Context, ModuleError, Stanza};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Connected;
use crate::router::JABBER_CLIENT;
use crate::stream::{ReadFailure, Transport, XmppStream};
use crate::xml::{HeaderOut, Limits, NS_STREAMS, StreamEvent, write_stream_error, write_stream_header};

/// `jabber:component:accept`
pub const NS_COMPONENT: &str = "jabber:component:accept";
/// Stanzas queued for one component before it counts as too slow.
const QUEUE: usize = 4096;
/// Time a component has for its header and handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// What every component connection shares.
pub(super) struct Shared {
    pub secrets: HashMap<String, String>,
    pub connected: Arc<Connected>,
    pub max_stanza_bytes: usize,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Binds every component address into `bound`.
pub(super) async fn bind(listen: Vec<SocketAddr>, bound: Arc<Mutex<Vec<TcpListener>>>) -> Result<(), ModuleError> {
    for addr in listen {
        let listener = TcpListener::bind(addr).await.map_err(|err| ModuleError::Start {
            module: "component",
            message: format!("cannot listen for components on {addr}: {err}"),
        })?;
        tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "listening for components");
        bound.lock().unwrap_or_else(|e| e.into_inner()).push(listener);
    }
    Ok(())
}

/// Accepts component connections on `listeners` until `token` is cancelled.
pub(super) async fn serve(ctx: Context, token: CancellationToken, listeners: Vec<TcpListener>, shared: Arc<Shared>) {
    let accepting = listeners.into_iter().map(|listener| {
        let (ctx, token, shared) = (ctx.clone(), token.clone(), shared.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = token.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((tcp, peer)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let span = tracing::info_span!("component", %peer, domain = tracing::field::Empty);
                let (ctx, token, shared) = (ctx.clone(), token.clone(), shared.clone());
                tokio::spawn(connection(ctx, token, shared, tcp, peer).instrument(span));
            }
        })
    });
    for task in accepting.collect::<Vec<_>>() {
        let _ = task.await;
    }
}

fn close_with(condition: &str) -> Vec<u8> {
    let mut out = Vec::new();
    write_stream_error(&mut out, condition, None);
    out
}

async fn connection(ctx: Context, token: CancellationToken, shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    let limits = Limits { max_stanza_bytes: shared.max_stanza_bytes, ..Limits::default() };
    let mut stream = XmppStream::new(Transport::Plain(tcp), peer, limits);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut stream, &shared)).await;
    let (domain, mut out) = match handshake {
        Ok(Ok(domain)) => (domain, Vec::new()),
        Ok(Err(Some(bytes))) => {
            let _ = stream.send(&bytes).await;
            return stream.close().await;
        }
        Ok(Err(None)) | Err(_) => return stream.close().await,
    };
    let (tx, mut rx) = mpsc::channel(QUEUE);
    if !shared.connected.attach(&domain, id, tx) {
        // XEP-0114 §3: one connection per component domain.
        let _ = stream.send(&close_with("conflict")).await;
        return stream.close().await;
    }
    if stream.send(b"<handshake/>").await.is_err() {
        shared.connected.detach(&domain, id);
        return;
    }
    tracing::Span::current().record("domain", domain.as_str());
    tracing::info!("component connected");
    let closing = loop {
        tokio::select! {
            event = stream.next_event() => match event {
                Ok(StreamEvent::Stanza(stanza)) => {
                    if let Err(condition) = inbound(&ctx, &domain, stanza) {
                        break Some(close_with(condition));
                    }
                }
                Ok(StreamEvent::Footer) => break Some(b"</stream:stream>".to_vec()),
                Ok(StreamEvent::Header(_)) => break Some(close_with("not-well-formed")),
                Err(ReadFailure::Xml(err)) => break Some(close_with(err.condition())),
                Err(_) => break None,
            },
            Some(first) = rx.recv() => {
                out.clear();
                write_out(first, &mut out);
                while out.len() < 16 * 1024 {
                    match rx.try_recv() {
                        Ok(stanza) => write_out(stanza, &mut out),
                        Err(_) => break,
                    }
                }
                if !matches!(tokio::time::timeout(Duration::from_secs(30), stream.send(&out)).await, Ok(Ok(()))) {
                    break None;
                }
            },
            _ = token.cancelled() => break Some(close_with("system-shutdown")),
        }
    };
    shared.connected.detach(&domain, id);
    if let Some(bytes) = closing {
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.send(&bytes)).await;
    }
    stream.close().await;
    tracing::info!("component disconnected");
}

fn write_out(mut stanza: Stanza, out: &mut Vec<u8>) {
    stanza.set_ns(NS_COMPONENT);
    stanza.write_to(out, NS_COMPONENT);
}

/// Header and handshake; the component's domain on success, else what to send (if
/// anything) before closing.
async fn handshake(stream: &mut XmppStream, shared: &Shared) -> Result<String, Option<Vec<u8>>> {
    let header = match stream.next_event().await {
        Ok(StreamEvent::Header(header)) => header,
        Ok(_) => return Err(Some(close_with("not-well-formed"))),
        Err(ReadFailure::Xml(err)) => return Err(Some(close_with(err.condition()))),
        Err(_) => return Err(None),
    };
    let domain = header.to.as_deref().and_then(|t| starling_api::parse_jid(t).ok()).map(|j| j.domain().to_string());
    let stream_id = format!("{:032x}", rand::random::<u128>());
    let mut out = Vec::new();
    write_stream_header(
        &mut out,
        &HeaderOut {
            from: domain.as_deref(),
            to: None,
            id: Some(&stream_id),
            version: None,
            lang: None,
            default_ns: NS_COMPONENT,
            extra_ns: &[],
        },
    );
    let secret = match domain.as_deref().and_then(|d| shared.secrets.get(d)) {
        _ if header.default_ns.as_deref() != Some(NS_COMPONENT) => {
            out.extend_from_slice(&close_with("invalid-namespace"));
            return Err(Some(out));
        }
        Some(secret) => secret,
        None => {
            out.extend_from_slice(&close_with("host-unknown"));
            return Err(Some(out));
        }
    };
    stream.send(&out).await.map_err(|_| None)?;
    let element = match stream.next_event().await {
        Ok(StreamEvent::Stanza(element)) => element,
        Ok(_) => return Err(Some(close_with("not-well-formed"))),
        Err(ReadFailure::Xml(err)) => return Err(Some(close_with(err.condition()))),
        Err(_) => return Err(None),
    };
    if element.name() != "handshake" || element.ns() != NS_COMPONENT {
        return Err(Some(close_with("not-authorized")));
    }
    let given = element.to_element().map(|e| e.text()).unwrap_or_default();
    let expected: String = Sha1::digest(format!("{stream_id}{secret}")).iter().map(|b| format!("{b:02x}")).collect();
    use subtle::ConstantTimeEq;
    if !bool::from(expected.as_bytes().ct_eq(given.trim().to_ascii_lowercase().as_bytes())) {
        tracing::info!("component handshake refused");
        return Err(Some(close_with("not-authorized")));
    }
    domain.ok_or(None)
}

/// A stanza from the component: its `from` must be its domain or a JID under it.
fn inbound(ctx: &Context, domain: &str, mut stanza: Stanza) -> Result<(), &'static str> {
    if stanza.ns() != NS_COMPONENT || !matches!(stanza.name(), "message" | "presence" | "iq") {
        return Err(if stanza.ns() == NS_STREAMS { "not-well-formed" } else { "unsupported-stanza-type" });
    }
    let from = stanza.from().and_then(|f| starling_api::parse_jid(f).ok());
    let Some(from) = from else { return Err("improper-addressing") };
    if stanza.to().is_none() {
        return Err("improper-addressing");
    }
    if from.domain().as_str() != domain {
        return Err("invalid-from");
    }
    stanza.set_ns(JABBER_CLIENT);
    ctx.send(stanza);
    Ok(())
}
