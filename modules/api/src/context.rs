//! The running server as a module sees it.
//!
//! Modules reach sessions and routing only through the [`Router`] and [`Sessions`]
//! traits, so that a clustered implementation (a shared session registry plus a
//! message bus) can replace the single-node one without touching any module.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jid::{BareJid, FullJid};

use crate::hooks::{Event, Flow};
use crate::{AccountService, BoxFuture, Db, Registry, ServerControl, Stanza};

/// A server-originated IQ got no answer in time (RFC 6120 §8.2.3 requires one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no answer to the IQ in time")]
pub struct IqTimeout;

/// Delivers stanzas the server itself originates (replies, pushes, notifications).
pub trait Router: Send + Sync {
    /// Routes a stanza whose `from` is already set, by the RFC 6121 §8.5 rules.
    /// Never blocks: a recipient whose queue is full is disconnected, not waited for.
    fn route(&self, stanza: Stanza);

    /// Routes an `<iq type='get|set'/>` whose `from` and `to` are set and resolves with
    /// the answer (`type='result'` or `type='error'`), or [`IqTimeout`] after `timeout`.
    /// The router gives the request an id of its own, so answers cannot be confused
    /// with a client's.
    fn send_iq(&self, iq: Stanza, timeout: Duration) -> BoxFuture<'static, Result<Stanza, IqTimeout>>;
}

/// What a bound client session is doing, for features that act differently when
/// nobody looks at the screen (push notifications).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Connected, and active or never said otherwise (XEP-0352).
    Active,
    /// Connected, but the client said `<inactive/>` (XEP-0352).
    Inactive,
    /// No connection: the session waits for a stream-management resumption (XEP-0198).
    Hibernating,
}

/// Read-only view of the session table.
pub trait Sessions: Send + Sync {
    /// Full JIDs of `user`'s bound resources that have sent available presence.
    fn available_resources(&self, user: &BareJid) -> Vec<FullJid>;
    /// Whether a chat message to `user`'s bare JID would reach a session now (an
    /// available resource with non-negative priority that is not closing), exactly as
    /// the router decides it (RFC 6121 §8.5.2.1.1).
    fn takes_bare_messages(&self, user: &BareJid) -> bool;
    /// The state of the session bound as `jid`, or `None` when none is.
    fn client_state(&self, jid: &FullJid) -> Option<ClientState>;
    /// Full JIDs of all of `user`'s bound resources.
    fn resources(&self, user: &BareJid) -> Vec<FullJid>;
    /// Number of bound client sessions on this server.
    fn count(&self) -> usize;
    /// Full JIDs of every bound session of accounts of `host`, and whether each has
    /// sent available presence.
    fn of_host(&self, host: &str) -> Vec<(FullJid, bool)>;
    /// Ends the session bound as `jid` (a full JID), or every session of the account
    /// (a bare JID), with a `policy-violation` stream error after what was already
    /// queued for it (XEP-0133 §4.14); returns how many were ended.
    fn end(&self, jid: &jid::Jid) -> usize;
}

/// Facts about this server.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// Software name, for XEP-0092.
    pub software: &'static str,
    /// Software version, for XEP-0092.
    pub version: &'static str,
    /// The virtual hosts this server serves.
    pub hosts: Vec<String>,
    /// The administrators (`[server] admins`).
    pub admins: Vec<BareJid>,
    /// When the server started.
    pub started_at: SystemTime,
    /// The public base URL of the HTTP listener (`https://host:port`, no trailing
    /// slash), when one runs: where modules point clients (upload slots, web chat).
    pub http_url: Option<String>,
}

/// Answers whether a module (by name) runs for a host.
pub type ModuleFilter = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// What the core hands to [`Context::new`].
pub struct ContextParts {
    /// Stanza delivery.
    pub router: Arc<dyn Router>,
    /// The session table.
    pub sessions: Arc<dyn Sessions>,
    /// Account management.
    pub accounts: Arc<dyn AccountService>,
    /// The database pool.
    pub db: Db,
    /// Server facts.
    pub server: ServerInfo,
    /// What the modules registered.
    pub registry: Arc<Registry>,
    /// Whether the module (by name) runs for the host (`[hosts."x"] modules_disabled`).
    pub module_enabled: ModuleFilter,
    /// Reload and shutdown.
    pub control: Arc<dyn ServerControl>,
}

/// The handle every handler receives. Cheap to clone.
#[derive(Clone)]
pub struct Context {
    inner: Arc<ContextParts>,
}

impl Context {
    /// Built once by the core after all modules have started.
    pub fn new(parts: ContextParts) -> Self {
        Context { inner: Arc::new(parts) }
    }

    /// Routes a stanza (see [`Router::route`]).
    pub fn send(&self, stanza: Stanza) {
        self.inner.router.route(stanza);
    }

    /// Sends an IQ request and waits for its answer (see [`Router::send_iq`]).
    pub fn send_iq(&self, iq: Stanza, timeout: Duration) -> BoxFuture<'static, Result<Stanza, IqTimeout>> {
        self.inner.router.send_iq(iq, timeout)
    }

    /// The service of type `T` a module provided, e.g. `ctx.service::<dyn ArchiveService>()`;
    /// `None` when no enabled module provides it.
    pub fn service<T: ?Sized + Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.inner.registry.service::<T>()
    }

    /// Whether `domain` is a component domain served by a module of this server.
    pub fn is_component(&self, domain: &str) -> bool {
        self.inner.registry.component(domain).is_some()
    }

    /// The session table.
    pub fn sessions(&self) -> &dyn Sessions {
        self.inner.sessions.as_ref()
    }

    /// Account management (see [`crate::accounts`]).
    pub fn accounts(&self) -> &dyn AccountService {
        self.inner.accounts.as_ref()
    }

    /// Reload and shutdown (see [`crate::control`]).
    pub fn control(&self) -> &dyn ServerControl {
        self.inner.control.as_ref()
    }

    /// The database pool.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// Server facts.
    pub fn server(&self) -> &ServerInfo {
        &self.inner.server
    }

    /// Whether `jid` (any resource) is a server administrator.
    pub fn is_admin(&self, jid: &jid::Jid) -> bool {
        self.inner.server.admins.contains(&jid.to_bare())
    }

    /// Whether `domain` is one of this server's virtual hosts.
    pub fn is_local_host(&self, domain: &str) -> bool {
        self.inner.server.hosts.iter().any(|h| h == domain)
    }

    /// Runs the hook chain for `event` (see [`crate::hooks`]).
    pub fn run_hook<E: Event>(&self, event: &mut E) -> Flow {
        let registry = &self.inner.registry;
        registry.hooks().run(self, event, |module, host| {
            registry.modules().get(module).is_some_and(|m| (self.inner.module_enabled)(m.name, host))
        })
    }

    /// Whether `module` runs for `host`.
    pub fn module_enabled(&self, module: &str, host: &str) -> bool {
        (self.inner.module_enabled)(module, host)
    }

    /// What the modules registered (read-only; disco builds its answers from it).
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }
}
