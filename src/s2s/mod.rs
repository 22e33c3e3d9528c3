//! Server-to-server streams (RFC 6120 §4–§6 and §13, XEP-0220 Server Dialback,
//! XEP-0185 dialback keys, XEP-0178 SASL EXTERNAL, XEP-0368 direct TLS): federation.
//!
//! - [`pool`]: one outgoing stream per (local domain, remote domain) pair, created on
//!   the first stanza, queueing while it connects; further local domains share an
//!   existing stream to the same peer by dialback ("multiplexing", XEP-0220 §2.6).
//! - [`outgoing`]: resolve ([`dns`]), connect, TLS (direct or STARTTLS), authenticate
//!   with SASL EXTERNAL when the peer's certificate is valid ([`certificate`]), else
//!   with dialback where the policy allows; then write stanzas until idle.
//! - [`incoming`]: accept, TLS, SASL EXTERNAL or dialback (asking the authoritative
//!   server), answer dialback verification requests for our domains, and route the
//!   stanzas of every authorised (from, to) pair — nothing else.
//!
//! Stanzas are routed in `jabber:client`; this layer moves them to `jabber:server` on
//! the way out and back on the way in ([`starling_api::Stanza::set_ns`]).

pub mod certificate;
pub mod dialback;
pub mod dns;
mod incoming;
mod outgoing;
mod pool;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use starling_api::reply::error_reply;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};
use starling_api::{Context, Stanza, stanza_error};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::{Config, DomainPolicy};
use crate::metrics::{ConnectionGauge, ConnectionKind};
use crate::tls::CertStore;
use crate::xml::Limits;

pub use incoming::ListenerKind;

/// `jabber:server`, the content namespace of S2S streams.
pub const NS_SERVER: &str = "jabber:server";
/// ALPN protocol id for direct TLS server connections (XEP-0368).
pub const ALPN_XMPP_SERVER: &[u8] = b"xmpp-server";
pub(crate) const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub(crate) const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

/// Why the S2S service could not start.
#[derive(Debug, thiserror::Error)]
pub enum S2sError {
    /// Trust roots.
    #[error(transparent)]
    Trust(#[from] certificate::TrustError),
    /// Resolver set-up.
    #[error(transparent)]
    Resolve(#[from] dns::ResolveError),
}

/// The federation service: the outgoing pool and what incoming streams share.
pub struct S2s {
    config: Arc<Config>,
    certs: Arc<CertStore>,
    trust: certificate::Trust,
    resolver: dns::Resolver,
    secret: dialback::Secret,
    pool: pool::Pool,
    context: OnceLock<Context>,
    local_domains: Box<dyn Fn(&str) -> bool + Send + Sync>,
    tls_starttls: Arc<rustls::ServerConfig>,
    tls_direct: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    connections: Arc<Semaphore>,
}

impl S2s {
    /// Builds the service. `local_domains` says which domains this server speaks for
    /// (its hosts and their components).
    pub fn new(
        config: Arc<Config>,
        certs: Arc<CertStore>,
        local_domains: Box<dyn Fn(&str) -> bool + Send + Sync>,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Result<Arc<S2s>, S2sError> {
        let trust = certificate::Trust::load(config.s2s.system_roots, &config.s2s.extra_ca_files)?;
        let resolver = dns::Resolver::new(&config.s2s, Duration::from_secs(config.s2s.connect_timeout))?;
        Ok(Arc::new(S2s {
            secret: dialback::Secret::new(&config.s2s.dialback_secret),
            tls_starttls: certs.s2s_server_config(&[]),
            tls_direct: certs.s2s_server_config(&[ALPN_XMPP_SERVER]),
            connections: Arc::new(Semaphore::new(config.limits.max_connections)),
            pool: pool::Pool::default(),
            context: OnceLock::new(),
            trust,
            resolver,
            certs,
            config,
            local_domains,
            shutdown,
            tasks,
        }))
    }

    /// Completes the service once the module context (and so the router) exists.
    pub fn set_context(&self, context: Context) {
        let _ = self.context.set(context);
    }

    fn limits(&self) -> Limits {
        Limits { max_stanza_bytes: self.config.limits.max_stanza_bytes, max_depth: self.config.limits.max_depth }
    }

    /// The modules' back-pressure, paused on before each read.
    fn ingress(&self) -> Option<starling_api::ingress::Ingress> {
        self.context.get().map(|context| context.registry().ingress().clone())
    }

    /// A fresh read-rate bucket for an incoming stream.
    fn read_rate(&self) -> Option<crate::rate::ReadRate> {
        let limits = &self.config.limits;
        crate::rate::ReadRate::new(limits.s2s_bytes_per_second, limits.s2s_burst_bytes, "s2s")
    }

    fn is_local(&self, domain: &str) -> bool {
        (self.local_domains)(domain)
    }

    fn policy(&self, domain: &str) -> DomainPolicy {
        self.config.s2s_policy(domain)
    }

    fn negotiation_timeout(&self) -> Duration {
        Duration::from_secs(self.config.s2s.negotiation_timeout)
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.config.s2s.idle_timeout)
    }

    /// Hands a stanza that arrived over S2S (already checked, in `jabber:client`) to the router.
    fn deliver(&self, stanza: Stanza) {
        if let Some(context) = self.context.get() {
            context.send(stanza);
        }
    }

    /// Answers `stanza` with an error from the remote side (RFC 6120 §8.3), unless it
    /// is an error itself.
    fn bounce(&self, stanza: &Stanza, condition: DefinedCondition) {
        let type_ = match condition {
            DefinedCondition::RemoteServerTimeout | DefinedCondition::ResourceConstraint => ErrorType::Wait,
            _ => ErrorType::Cancel,
        };
        if let Some(reply) = error_reply(stanza, &stanza_error(type_, condition)).filter(|r| r.to().is_some()) {
            self.deliver(reply);
        }
    }

    /// Sends a stanza (in `jabber:client`, `from` a local domain) to `remote`'s server.
    pub fn send(self: &Arc<Self>, stanza: Stanza, remote: &str) {
        let local = match stanza.from().and_then(|f| starling_api::parse_jid(f).ok()) {
            Some(from) if self.is_local(from.domain().as_str()) => from.domain().to_string(),
            _ => {
                // Nobody could authenticate it: we only speak for our own domains.
                tracing::debug!(from = stanza.from(), "stanza to a remote domain without a local sender; dropped");
                return;
            }
        };
        if self.config.s2s_blocked(remote) {
            return self.bounce(&stanza, DefinedCondition::RemoteServerNotFound);
        }
        pool::send(self, stanza, local, remote.to_owned());
    }

    /// Accepts S2S connections until shutdown.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, kind: ListenerKind) {
        let mut backoff = Duration::from_millis(10);
        loop {
            let permit = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                permit = self.connections.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            let accepted = tokio::select! {
                _ = self.shutdown.cancelled() => return,
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
            let span = tracing::info_span!("s2s_in", %peer, from = tracing::field::Empty);
            let s2s = self.clone();
            self.tasks.spawn(
                async move {
                    let _gauge = ConnectionGauge::open(ConnectionKind::S2sIn);
                    incoming::handle(s2s, tcp, peer, kind).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
    }
}

/// The domain part of a stanza address, if it parses.
fn domain_of(address: Option<&str>) -> Option<String> {
    starling_api::parse_jid(address?).ok().map(|j| j.domain().to_string())
}
