//! Client-to-server streams (RFC 6120): listeners, stream negotiation (STARTTLS, SASL,
//! resource binding) and the bound session loop.
//!
//! One tokio task owns each connection. It reads and parses the client's XML, hands
//! stanzas to the router, and writes what the router queued for it; a connection
//! limit (a semaphore) bounds how many exist at once.
//!
//! WebSocket clients (RFC 7395, [`websocket`]) run the same negotiation and session
//! code: the WebSocket framing is one more [`stream::Transport`].

mod bind;
mod bind2;
pub mod bosh;
mod negotiate;
mod session;
mod sm;
pub mod stream;
pub mod websocket;

pub use sm::ResumeTable;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::auth::AuthThrottle;
use crate::config::Config;
use crate::metrics::{ConnectionGauge, ConnectionKind};
use crate::router::StanzaRouter;
use crate::session::SessionTable;
use crate::tls::CertStore;
use crate::xml::Limits;
use starling_api::Db;

/// What every client connection shares.
pub struct C2sShared {
    /// The configuration; read it with [`C2sShared::config`].
    pub config: std::sync::RwLock<Arc<Config>>,
    /// Certificates, for channel binding.
    pub certs: Arc<CertStore>,
    /// TLS settings for STARTTLS (ALPN-less).
    pub tls_starttls: Arc<rustls::ServerConfig>,
    /// TLS settings for direct TLS (ALPN `xmpp-client`, XEP-0368).
    pub tls_direct: Arc<rustls::ServerConfig>,
    /// The database.
    pub db: Db,
    /// Bound sessions.
    pub sessions: Arc<SessionTable>,
    /// The router.
    pub router: Arc<StanzaRouter>,
    /// The module context, for running hooks.
    pub context: starling_api::Context,
    /// Failed-login accounting.
    pub throttle: AuthThrottle,
    /// Cancelled on shutdown.
    pub shutdown: CancellationToken,
    /// Tracks connection tasks so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// Bounds concurrent connections.
    pub connections: Arc<Semaphore>,
    /// Bounds concurrent TCP connections per IP address.
    pub per_ip: crate::rate::ConnectionsPerIp,
    /// Sessions a new connection can resume (XEP-0198).
    pub resumes: ResumeTable,
    /// The SCRAM hashes every account has keys for, the ones offered.
    pub offered_hashes: crate::auth::OfferedHashes,
    /// FAST tokens (XEP-0484).
    pub fast: crate::fast::FastTokens,
}

impl C2sShared {
    /// The configuration now: what `[limits]` and `[c2s]` say for a new connection
    /// (replaced by a reload).
    pub fn config(&self) -> Arc<Config> {
        self.config.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the configuration new connections and logins use, and the limits of
    /// the failed-login throttle and per-address connection count.
    pub fn set_config(&self, config: Arc<Config>) {
        self.throttle.set_limits(config.limits.auth_failures, Duration::from_secs(config.limits.auth_failure_window));
        self.per_ip.set_max(config.limits.connections_per_ip);
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
    }

    fn limits(&self) -> Limits {
        let config = self.config();
        Limits { max_stanza_bytes: config.limits.max_stanza_bytes, max_depth: config.limits.max_depth }
    }

    /// The modules' back-pressure, paused on before each read.
    fn ingress(&self) -> Option<starling_api::ingress::Ingress> {
        Some(self.context.registry().ingress().clone())
    }

    /// A fresh stanza-rate bucket for a client stream.
    fn stanza_rate(&self) -> Option<crate::rate::ReadRate> {
        let config = self.config();
        let limits = &config.limits;
        crate::rate::ReadRate::new(limits.c2s_stanzas_per_second, limits.c2s_burst_stanzas, "c2s_stanzas")
    }

    /// A fresh read-rate bucket for a client stream.
    fn read_rate(&self) -> Option<crate::rate::ReadRate> {
        let config = self.config();
        let limits = &config.limits;
        crate::rate::ReadRate::new(limits.c2s_bytes_per_second, limits.c2s_burst_bytes, "c2s")
    }
}

/// How a listener's connections start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// Plain TCP, upgraded with STARTTLS (port 5222).
    StartTls,
    /// TLS from the first byte (XEP-0368, port 5223).
    DirectTls,
}

/// Accepts connections until shutdown. Accept errors (such as running out of file
/// descriptors) back off instead of spinning.
pub async fn serve(listener: TcpListener, kind: ListenerKind, shared: Arc<C2sShared>) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            permit = shared.connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => {
                backoff = Duration::from_millis(10);
                accepted
            }
            Err(err) => {
                tracing::warn!(error = %err, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let Some(slot) = shared.per_ip.open(peer.ip()) else {
            crate::metrics::connection_refused_per_ip("c2s");
            tracing::info!(%peer, "refused: too many connections from this address");
            shared.tasks.spawn(refuse_over_ip_limit(tcp, kind));
            continue;
        };
        let span = tracing::info_span!("c2s", %peer, jid = tracing::field::Empty);
        let shared = shared.clone();
        shared.tasks.clone().spawn(
            async move {
                handle_connection(tcp, peer, kind, &shared).await;
                drop((permit, slot));
            }
            .instrument(span),
        );
    }
}

/// Tells a client over `[limits] connections_per_ip` why it is turned away (RFC 6120
/// §4.9.3.12 `policy-violation`, after a stream header of our own, §4.9.1.1); a direct
/// TLS connection is only closed, as nothing can be said before the handshake.
async fn refuse_over_ip_limit(mut tcp: TcpStream, kind: ListenerKind) {
    use tokio::io::AsyncWriteExt;
    if kind == ListenerKind::StartTls {
        let refusal = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
            xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><stream:error>\
            <policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
            <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>too many connections from your address</text>\
            </stream:error></stream:stream>";
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.write_all(refusal.as_bytes())).await;
    }
    let _ = tcp.shutdown().await;
}

async fn handle_connection(tcp: TcpStream, peer: SocketAddr, kind: ListenerKind, shared: &C2sShared) {
    let _gauge = ConnectionGauge::open(ConnectionKind::C2s);
    handle(Accepted::Tcp(tcp, kind), peer, shared).await;
}

/// How a client connected.
pub(crate) enum Accepted {
    /// TCP, on a listener of this kind.
    Tcp(TcpStream, ListenerKind),
    /// An upgraded WebSocket (RFC 7395).
    WebSocket(Box<websocket::WebSocketTransport>),
    /// A BOSH session (XEP-0206).
    Bosh(Box<bosh::BoshTransport>),
}

/// Negotiates and runs one client stream, whatever carries it.
async fn handle(accepted: Accepted, peer: SocketAddr, shared: &C2sShared) {
    tracing::debug!("connected");
    // Boxed, so its state (7 KiB: TLS handshake, SASL, binding) is freed once the
    // session starts instead of staying in every connection's task for its lifetime.
    let negotiated = Box::pin(negotiate::negotiate(accepted, peer, shared)).await;
    match negotiated {
        Some(negotiate::Negotiated::Bound(bound)) => session::run(*bound, shared).await,
        Some(negotiate::Negotiated::Resumed) => tracing::debug!("stream handed to the session it resumes"),
        None => tracing::debug!("closed before binding a resource"),
    }
}
