//! The HTTP listener: one axum router, served over HTTPS with the hosts' certificates
//! and/or over plain HTTP for a TLS-terminating reverse proxy (`[http]` in the config).
//!
//! The core contributes XEP-0156 connection discovery (`/.well-known/host-meta` and
//! `host-meta.json`) and `/metrics` (see [`crate::metrics`]); modules add their own
//! routes through [`starling_api::Registrar::http_routes`].

mod host_meta;
mod metrics_route;

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use starling_api::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::Instrument;

use crate::config::Config;
use crate::metrics::{ConnectionGauge, ConnectionKind};

pub use host_meta::{Endpoint, REL_BOSH, REL_WEBSOCKET};

/// Seconds a client has to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the HTTP handlers learn about the connection a request came on (a request
/// extension, next to axum's `ConnectInfo<SocketAddr>`).
#[derive(Debug, Clone, Copy)]
pub struct HttpConnection {
    /// The client's address (the proxy's, behind a reverse proxy).
    pub peer: SocketAddr,
    /// TLS protects the connection: HTTPS, or plain HTTP from a reverse proxy that
    /// terminates TLS (`[http] plain_is_behind_tls_proxy`).
    pub encrypted: bool,
}

/// The bound HTTP listeners.
pub struct HttpListeners {
    listeners: Vec<(TcpListener, bool)>,
    /// Plain HTTP addresses.
    pub addrs: Vec<SocketAddr>,
    /// HTTPS addresses.
    pub tls_addrs: Vec<SocketAddr>,
}

impl HttpListeners {
    /// Binds `[http] listen` and `listen_tls` (port 0 picks a free port).
    pub async fn bind(config: &Config) -> anyhow::Result<HttpListeners> {
        let mut bound = HttpListeners { listeners: Vec::new(), addrs: Vec::new(), tls_addrs: Vec::new() };
        let plain = config.http.listen.iter().map(|a| (*a, false));
        for (addr, tls) in config.http.listen_tls.iter().map(|a| (*a, true)).chain(plain) {
            let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} (HTTP)"))?;
            let local = listener.local_addr()?;
            tracing::info!(addr = %local, tls, "listening for HTTP");
            if tls {
                bound.tls_addrs.push(local)
            } else {
                bound.addrs.push(local)
            }
            bound.listeners.push((listener, tls));
        }
        Ok(bound)
    }

    /// Whether nothing listens.
    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }

    /// The base URL clients reach the listener at: `[http] public_url`, else derived
    /// from the first listener (HTTPS preferred) and the first host.
    pub fn public_url(&self, config: &Config) -> Option<String> {
        if !config.http.public_url.is_empty() {
            return Some(config.http.public_url.clone());
        }
        let host = &config.server.hosts[0];
        let (scheme, addr) = match (self.tls_addrs.first(), self.addrs.first()) {
            (Some(addr), _) => ("https", addr),
            (None, Some(addr)) => ("http", addr),
            (None, None) => return None,
        };
        Some(format!("{scheme}://{host}:{}", addr.port()))
    }

    /// Serves `app` on every listener until shutdown.
    pub fn serve(self, app: Router, shared: &HttpShared) {
        for (listener, tls) in self.listeners {
            let acceptor = tls.then(|| TlsAcceptor::from(shared.tls.clone()));
            let encrypted = tls || shared.config.http.plain_is_behind_tls_proxy;
            shared.tasks.spawn(accept_loop(listener, acceptor, encrypted, app.clone(), shared.clone()));
        }
    }
}

/// What every HTTP connection shares.
#[derive(Clone)]
pub struct HttpShared {
    /// The configuration.
    pub config: Arc<Config>,
    /// TLS settings (ALPN `h2`, `http/1.1`).
    pub tls: Arc<rustls::ServerConfig>,
    /// Cancelled on shutdown.
    pub shutdown: CancellationToken,
    /// Tracks connection tasks so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// Bounds concurrent connections (shared with client streams).
    pub connections: Arc<Semaphore>,
}

/// The core's routes and every enabled module's, merged. `endpoints` are the connection
/// methods host-meta lists. Fails when two route sets claim the same path.
pub fn router(context: &Context, config: &Config, endpoints: Vec<Endpoint>) -> anyhow::Result<Router> {
    let mut app = Router::new()
        .merge(host_meta::routes(endpoints))
        .merge(metrics_route::routes(config.http.metrics_token.clone(), context.db().clone()));
    for (routes, module) in context.registry().http_routes() {
        let module_routes =
            routes(context.clone()).with_context(|| format!("module {} failed to start", module.name))?;
        // axum panics on overlapping routes; that is a configuration error here.
        app = std::panic::catch_unwind(AssertUnwindSafe(|| app.merge(module_routes)))
            .map_err(|_| anyhow!("module {}: its HTTP routes overlap routes already served", module.name))?;
    }
    Ok(app)
}

/// The URL of `path` on a WebSocket scheme (`wss://` for `https://`).
pub fn websocket_url(base: &str, path: &str) -> String {
    match base.strip_prefix("https://") {
        Some(rest) => format!("wss://{rest}{path}"),
        None => format!("ws://{}{path}", base.trim_start_matches("http://")),
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    encrypted: bool,
    app: Router,
    shared: HttpShared,
) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            permit = shared.connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff = Duration::from_millis(10);
                    accepted
                }
                Err(err) => {
                    tracing::warn!(error = %err, "HTTP accept failed; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let connection = HttpConnection { peer, encrypted };
        let (app, tls, shutdown) = (app.clone(), tls.clone(), shared.shutdown.clone());
        shared.tasks.spawn(
            async move {
                serve_connection(tcp, tls, connection, app, shutdown).await;
                drop(permit);
            }
            .instrument(tracing::debug_span!("http", %peer)),
        );
    }
}

async fn serve_connection(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    connection: HttpConnection,
    app: Router,
    shutdown: CancellationToken,
) {
    let _gauge = ConnectionGauge::open(ConnectionKind::Http);
    match tls {
        None => serve_io(TokioIo::new(tcp), connection, app, shutdown).await,
        Some(acceptor) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => serve_io(TokioIo::new(stream), connection, app, shutdown).await,
            Ok(Err(err)) => tracing::debug!(error = %err, "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        },
    }
}

async fn serve_io<I>(io: TokioIo<I>, connection: HttpConnection, app: Router, shutdown: CancellationToken)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(connection.peer));
        request.extensions_mut().insert(connection);
        app.clone().oneshot(request)
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let served = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(served);
    let result = tokio::select! {
        result = served.as_mut() => result,
        _ = shutdown.cancelled() => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(error = %err, "HTTP connection ended with an error");
    }
}
