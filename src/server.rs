//! Start-up and shutdown: certificates, database, modules, router, listeners.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use starling_api::{Context, ContextParts, Db, Migrations, Registry, ServerInfo};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{AuthThrottle, CoreAccounts};
use crate::c2s::{self, C2sShared, ListenerKind};
use crate::c2s::{bosh, websocket};
use crate::config::Config;
use crate::control::CoreControl;
use crate::http::{Endpoint, HttpListeners, HttpShared, REL_BOSH, REL_WEBSOCKET, websocket_url};
use crate::router::StanzaRouter;
use crate::s2s::{ListenerKind as S2sListener, S2s};
use crate::session::SessionTable;
use crate::storage::CORE_MIGRATIONS;
use crate::tls::CertStore;

/// ALPN protocol id for direct TLS client connections (XEP-0368).
const ALPN_XMPP_CLIENT: &[u8] = b"xmpp-client";

/// A running server.
pub struct Server {
    /// Addresses the STARTTLS client listeners are bound to.
    pub c2s_addrs: Vec<SocketAddr>,
    /// Addresses the direct-TLS client listeners are bound to.
    pub c2s_direct_tls_addrs: Vec<SocketAddr>,
    /// Addresses the STARTTLS server-to-server listeners are bound to.
    pub s2s_addrs: Vec<SocketAddr>,
    /// Addresses the direct-TLS server-to-server listeners are bound to (XEP-0368).
    pub s2s_direct_tls_addrs: Vec<SocketAddr>,
    /// Addresses the plain HTTP listeners are bound to.
    pub http_addrs: Vec<SocketAddr>,
    /// Addresses the HTTPS listeners are bound to.
    pub http_tls_addrs: Vec<SocketAddr>,
    /// The module context (routing, sessions, storage).
    pub context: Context,
    /// The session table.
    pub sessions: Arc<SessionTable>,
    /// Reload and shutdown on request.
    pub control: Arc<CoreControl>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// Opens the database and applies the core's and the enabled modules' migrations.
pub fn open_database(config: &Config) -> anyhow::Result<Db> {
    let db = Db::open(&config.storage.url, config.storage.pool_size)
        .with_context(|| format!("cannot open storage {}", redact(&config.storage.url)))?;
    let mut sets: Vec<(&'static str, &'static Migrations)> = vec![("core", &CORE_MIGRATIONS)];
    for name in &config.modules.enabled {
        if let Some(migrations) = crate::modules::find(name).and_then(|m| m.migrations.map(|x| (m.name, x))) {
            sets.push(migrations);
        }
    }
    let applied = db.run_migrations(&sets).context("database migration failed")?;
    if applied > 0 {
        tracing::info!(applied, "database migrations applied");
    }
    Ok(db)
}

/// Hides a password in a database URL for logs and messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme + 3], &credentials[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Starts the enabled modules, in the order the config lists them.
pub fn start_modules(config: &Config) -> anyhow::Result<Registry> {
    let mut registry = Registry::new(config.server.hosts.clone());
    for name in &config.modules.enabled {
        let Some(module) = crate::modules::find(name) else {
            bail!("[modules] enabled: unknown module {name:?}; available: {}", crate::modules::names().join(", "));
        };
        registry.start_module(module, config.modules.settings.get(name))?;
    }
    Ok(registry)
}

impl Server {
    /// Starts everything and binds the listeners (port 0 picks a free port).
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        let config = Arc::new(config);
        let certs = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || {
                CertStore::load(&config.tls.cert_dir, &config.server.hosts, config.tls.generate_self_signed)
            })
            .await??
        };
        let certs = Arc::new(certs);
        let db = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || open_database(&config)).await??
        };
        let registry = Arc::new(start_modules(&config)?);
        let http = HttpListeners::bind(&config).await?;
        let http_url = http.public_url(&config);
        let sessions = Arc::new(SessionTable::default());
        let router = Arc::new(StanzaRouter::new(sessions.clone(), registry.clone(), config.clone()));
        let enabled = config.modules.enabled.iter().filter_map(|name| crate::modules::find(name)).collect();
        let accounts = CoreAccounts::new(db.clone(), config.server.hosts.clone(), enabled, sessions.clone());
        let control = Arc::new(CoreControl::new(certs.clone()));
        let context = Context::new(ContextParts {
            control: control.clone(),
            router: router.clone(),
            sessions: sessions.clone(),
            accounts: Arc::new(accounts),
            db: db.clone(),
            server: ServerInfo {
                software: "Starling",
                version: env!("CARGO_PKG_VERSION"),
                hosts: config.server.hosts.clone(),
                admins: config.server.admins.iter().filter_map(|a| starling_api::parse_bare_jid(a).ok()).collect(),
                started_at: SystemTime::now(),
                http_url: http_url.clone(),
            },
            registry,
            module_enabled: {
                let config = config.clone();
                Arc::new(move |module: &str, host: &str| config.module_enabled_for(module, host))
            },
        });
        router.set_context(context.clone());
        for (task, module) in context.registry().on_start() {
            task(context.clone()).await.with_context(|| format!("module {} failed to start", module.name))?;
        }

        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let s2s = if config.s2s.enabled {
            // Our hosts and the components served here (modules' and external ones).
            let (local, components) = (config.clone(), context.clone());
            let local_domains = Box::new(move |domain: &str| {
                local.server.hosts.iter().any(|h| h == domain) || components.registry().component(domain).is_some()
            });
            let s2s = S2s::new(config.clone(), certs.clone(), local_domains, shutdown.clone(), tasks.clone())
                .context("cannot start federation")?;
            s2s.set_context(context.clone());
            router.set_remote(s2s.clone());
            Some(s2s)
        } else {
            None
        };
        for (name, task, module) in context.registry().tasks() {
            tracing::debug!(module = module.name, task = name, "starting background task");
            tasks.spawn(task(context.clone(), shutdown.child_token()));
        }
        let offered_hashes =
            crate::auth::OfferedHashes::load(&db).await.context("cannot read which SCRAM hashes accounts have")?;
        let db_for_fast = db.clone();
        let shared = Arc::new(C2sShared {
            config: std::sync::RwLock::new(config.clone()),
            tls_starttls: certs.server_config(&[]),
            tls_direct: certs.server_config(&[ALPN_XMPP_CLIENT]),
            certs: certs.clone(),
            db,
            sessions: sessions.clone(),
            router,
            context: context.clone(),
            throttle: AuthThrottle::new(
                config.limits.auth_failures,
                Duration::from_secs(config.limits.auth_failure_window),
            ),
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
            connections: Arc::new(Semaphore::new(config.limits.max_connections)),
            per_ip: crate::rate::ConnectionsPerIp::new(
                config.limits.connections_per_ip,
                config.limits.connections_per_ip_exempt.clone(),
            ),
            resumes: c2s::ResumeTable::default(),
            offered_hashes,
            fast: crate::fast::FastTokens::new(db_for_fast, &config.c2s),
        });

        control.attach(context.clone(), shared.clone());
        // The admin socket is bound before any listener, so that a second server on
        // the same data directory stops here.
        if !config.server.admin_socket.as_os_str().is_empty() {
            let path = config.server.admin_socket.clone();
            let listener = crate::admin_socket::bind(&path).await?;
            tracing::info!(path = %path.display(), "admin socket listening");
            tasks.spawn(crate::admin_socket::serve(
                listener,
                path,
                context.clone(),
                control.clone(),
                shutdown.clone(),
                tasks.clone(),
            ));
        }
        {
            // An administrator's shutdown request (XEP-0133, `starling shutdown`).
            let (requested, shutdown) = (control.stop_requested(), shutdown.clone());
            tasks.spawn(async move {
                tokio::select! {
                    _ = requested.cancelled() => shutdown.cancel(),
                    _ = shutdown.cancelled() => {}
                }
            });
        }
        let mut c2s_addrs = Vec::new();
        let mut c2s_direct_tls_addrs = Vec::new();
        let listeners = config.listen.c2s.iter().map(|a| (*a, ListenerKind::StartTls));
        let direct = config.listen.c2s_direct_tls.iter().map(|a| (*a, ListenerKind::DirectTls));
        for (addr, kind) in listeners.chain(direct) {
            let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
            let local = listener.local_addr()?;
            tracing::info!(addr = %local, ?kind, "listening for clients");
            match kind {
                ListenerKind::StartTls => c2s_addrs.push(local),
                ListenerKind::DirectTls => c2s_direct_tls_addrs.push(local),
            }
            tasks.spawn(c2s::serve(listener, kind, shared.clone()));
        }
        let mut s2s_addrs = Vec::new();
        let mut s2s_direct_tls_addrs = Vec::new();
        if let Some(s2s) = &s2s {
            let listeners = config.s2s.listen.iter().map(|a| (*a, S2sListener::StartTls));
            let direct = config.s2s.listen_direct_tls.iter().map(|a| (*a, S2sListener::DirectTls));
            for (addr, kind) in listeners.chain(direct) {
                let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
                let local = listener.local_addr()?;
                tracing::info!(addr = %local, ?kind, "listening for servers");
                match kind {
                    S2sListener::StartTls => s2s_addrs.push(local),
                    S2sListener::DirectTls => s2s_direct_tls_addrs.push(local),
                }
                tasks.spawn(s2s.clone().serve(listener, kind));
            }
        }
        let (http_addrs, http_tls_addrs) = (http.addrs.clone(), http.tls_addrs.clone());
        if !http.is_empty() {
            // Installs the process-wide recorder before the first request.
            crate::metrics::handle();
            let url = http_url.unwrap_or_default();
            let endpoints = vec![
                Endpoint { rel: REL_WEBSOCKET, href: websocket_url(&url, websocket::PATH) },
                Endpoint { rel: REL_BOSH, href: format!("{url}{}", bosh::PATH) },
            ];
            let app = crate::http::router(&context, &config, endpoints)?
                .merge(websocket::routes(shared.clone()))
                .merge(bosh::routes(shared.clone()));
            let http_shared = HttpShared {
                config: config.clone(),
                tls: certs.server_config(&[b"h2", b"http/1.1"]),
                shutdown: shutdown.clone(),
                tasks: tasks.clone(),
                connections: shared.connections.clone(),
            };
            http.serve(app, &http_shared);
        }
        tracing::info!(hosts = ?config.server.hosts, "Starling {} started", env!("CARGO_PKG_VERSION"));
        Ok(Server {
            c2s_addrs,
            c2s_direct_tls_addrs,
            s2s_addrs,
            s2s_direct_tls_addrs,
            http_addrs,
            http_tls_addrs,
            context,
            sessions,
            control,
            shutdown,
            tasks,
        })
    }

    /// Resolves when the server stops on its own: an administrator asked it to.
    pub async fn stopped(&self) {
        self.shutdown.cancelled().await;
    }

    /// Closes every stream with `system-shutdown` and waits (at most 10 s) for the
    /// connection tasks to finish.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(10), self.tasks.wait()).await.is_err() {
            tracing::warn!("some connections did not close in time");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_hidden_in_urls() {
        assert_eq!(redact("postgres://user:secret@db/x"), "postgres://user:***@db/x");
        assert_eq!(redact("postgres://user@db/x"), "postgres://user@db/x");
        assert_eq!(redact("sqlite://data/x.sqlite"), "sqlite://data/x.sqlite");
    }
}
