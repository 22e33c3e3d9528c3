//! What a module declares ([`ModuleSpec`]) and how it registers ([`Registrar`]).
//!
//! A module's `start` function only registers: IQ handlers keyed by
//! `(type, scope, namespace, name)`, disco features and identities. Everything is
//! recorded against the module's name in the [`Registry`], which the core freezes after
//! start-up and reads on every routed IQ and disco query; `starling modules` lists it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::hooks::{Event, Flow, Hooks};
use crate::iq::{IqHandlerFn, IqKind, IqPayload, IqRequest, IqResult, erase};
use crate::{Context, Migrations, ModuleError};

/// Where a request is addressed, relative to the server (Prosody's host/bare/self,
/// ejabberd's local/sm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The server itself: `to` is one of our host domains.
    Server,
    /// Any local account's bare JID, on behalf of that account.
    Account,
    /// The sender's own bare JID, or no `to` at all (RFC 6120 §10.3.3).
    OwnAccount,
}

/// A specification a module implements, for the DOAP file (XEP-0453 style `implements`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spec {
    /// An XMPP Extension Protocol, by number.
    Xep(u16),
    /// An IETF RFC, by number.
    Rfc(u16),
}

/// How completely a specification is implemented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Everything the server side must do.
    Complete,
    /// A documented subset.
    Partial,
}

impl Support {
    /// The DOAP `xmpp:status` value.
    pub fn as_doap(self) -> &'static str {
        match self {
            Support::Complete => "complete",
            Support::Partial => "partial",
        }
    }
}

/// One implemented specification, with the disco features it accounts for.
#[derive(Debug, Clone, Copy)]
pub struct SpecSupport {
    /// Which specification.
    pub spec: Spec,
    /// The version implemented.
    pub version: &'static str,
    /// How completely.
    pub status: Support,
    /// Disco features (`var`s) this specification defines and the module advertises.
    pub features: &'static [&'static str],
}

/// A module, as it declares itself. Every module crate exports one `pub static MODULE`.
pub struct ModuleSpec {
    /// Name used in the config (`[modules] enabled = [...]`, `[modules.<name>]`).
    pub name: &'static str,
    /// One line for `starling modules`.
    pub summary: &'static str,
    /// The specifications it implements (feeds doap.xml).
    pub specs: &'static [SpecSupport],
    /// Its tables, if any; versions must be unique across the whole server.
    pub migrations: Option<&'static Migrations>,
    /// Deletes everything the module stores for an account (`host`, `username`), run in
    /// the same transaction that deletes the account, whoever deletes it (CLI, admin
    /// command, in-band unregistration). Every module with per-user rows has one.
    pub forget_user: Option<ForgetUser>,
    /// Registers the module's handlers; called once at start-up.
    pub start: fn(&mut Registrar<'_>) -> Result<(), ModuleError>,
}

/// See [`ModuleSpec::forget_user`].
pub type ForgetUser = fn(&mut crate::DbConn, &str, &str) -> diesel::QueryResult<()>;

/// A disco identity (XEP-0030 §3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoIdentity {
    /// Category, e.g. `server`.
    pub category: &'static str,
    /// Type, e.g. `im`.
    pub type_: &'static str,
    /// Human-readable name.
    pub name: &'static str,
}

/// A registered IQ handler and the module that owns it.
#[derive(Clone)]
pub struct IqRoute {
    /// Index of the owning module in [`Registry::modules`].
    pub module: usize,
    /// The handler.
    pub handler: IqHandlerFn,
}

type IqTable = HashMap<(IqKind, Scope), HashMap<&'static str, Vec<(&'static str, IqRoute)>>>;

/// Everything the enabled modules registered. Built at start-up, then read-only.
#[derive(Default)]
pub struct Registry {
    modules: Vec<&'static ModuleSpec>,
    iq: IqTable,
    features: Vec<(Scope, &'static str, usize)>,
    identities: Vec<(Scope, DiscoIdentity, usize)>,
    stream_features: Vec<(&'static str, usize)>,
    on_start: Vec<(OnStart, usize)>,
    hooks: Hooks,
}

/// Work a module does once the server runs, before clients are accepted.
pub type OnStart = Arc<dyn Fn(Context) -> crate::BoxFuture<'static, Result<(), ModuleError>> + Send + Sync>;

impl Registry {
    /// Starts `module`, recording what it registers. `config` is its `[modules.<name>]`
    /// table, if the config has one.
    pub fn start_module(
        &mut self,
        module: &'static ModuleSpec,
        config: Option<&toml::Value>,
    ) -> Result<(), ModuleError> {
        let index = self.modules.len();
        self.modules.push(module);
        let mut registrar = Registrar { registry: self, module: index, config };
        (module.start)(&mut registrar)
    }

    /// The started modules, in start order.
    pub fn modules(&self) -> &[&'static ModuleSpec] {
        &self.modules
    }

    /// The handler for an IQ request, if a module registered one.
    pub fn iq_handler(&self, kind: IqKind, scope: Scope, ns: &str, name: &str) -> Option<&IqRoute> {
        self.iq.get(&(kind, scope))?.get(ns)?.iter().find(|(n, _)| *n == name).map(|(_, route)| route)
    }

    /// Disco features registered for `scope`, with the owning module's index.
    pub fn features(&self, scope: Scope) -> impl Iterator<Item = (&'static str, usize)> + '_ {
        self.features.iter().filter(move |(s, _, _)| *s == scope).map(|(_, f, m)| (*f, *m))
    }

    /// Disco identities registered for `scope`, with the owning module's index.
    pub fn identities(&self, scope: Scope) -> impl Iterator<Item = (&DiscoIdentity, usize)> + '_ {
        self.identities.iter().filter(move |(s, _, _)| *s == scope).map(|(_, i, m)| (i, *m))
    }

    /// Stream features offered to authenticated clients (XML), with the owning module.
    pub fn stream_features(&self) -> impl Iterator<Item = (&'static str, &'static ModuleSpec)> + '_ {
        self.stream_features.iter().map(|(xml, m)| (*xml, self.modules[*m]))
    }

    /// Start-up work, with the owning module.
    pub fn on_start(&self) -> impl Iterator<Item = (&OnStart, &'static ModuleSpec)> + '_ {
        self.on_start.iter().map(|(f, m)| (f, self.modules[*m]))
    }

    /// The hook chains.
    pub fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    /// Every (scope, feature, module name) triple, for checks and listings.
    pub fn all_features(&self) -> impl Iterator<Item = (Scope, &'static str, &'static str)> + '_ {
        self.features.iter().map(|(s, f, m)| (*s, *f, self.modules[*m].name))
    }

    /// Every registered IQ key with the owning module's name, for listings.
    pub fn all_iq_handlers(&self) -> Vec<(IqKind, Scope, &'static str, &'static str, &'static str)> {
        let mut out = Vec::new();
        for ((kind, scope), by_ns) in &self.iq {
            for (ns, entries) in by_ns {
                for (name, route) in entries {
                    out.push((*kind, *scope, *ns, *name, self.modules[route.module].name));
                }
            }
        }
        out.sort_by_key(|(_, _, ns, name, module)| (*module, *ns, *name));
        out
    }
}

/// The handle a module registers through while it starts.
pub struct Registrar<'a> {
    registry: &'a mut Registry,
    module: usize,
    config: Option<&'a toml::Value>,
}

impl Registrar<'_> {
    fn name(&self) -> &'static str {
        self.registry.modules[self.module].name
    }

    /// The module's `[modules.<name>]` table, or the type's defaults when absent.
    /// Declare `T` with `#[serde(deny_unknown_fields, default)]` so that a misspelt key
    /// is an error naming the module and the key.
    pub fn config<T: DeserializeOwned + Default>(&self) -> Result<T, ModuleError> {
        match self.config {
            None => Ok(T::default()),
            Some(value) => value.clone().try_into().map_err(|e: toml::de::Error| ModuleError::Config {
                module: self.name(),
                message: e.message().to_owned(),
            }),
        }
    }

    /// Advertises a disco feature (XEP-0030 §3.1) on entities of `scope`.
    pub fn disco_feature(&mut self, scope: Scope, var: &'static str) {
        self.registry.features.push((scope, var, self.module));
    }

    /// Advertises a disco identity on entities of `scope`.
    pub fn disco_identity(&mut self, scope: Scope, identity: DiscoIdentity) {
        self.registry.identities.push((scope, identity, self.module));
    }

    /// Offers a stream feature (an element, as XML) to clients after authentication,
    /// e.g. `<ver xmlns='urn:xmpp:features:rosterver'/>`.
    pub fn stream_feature(&mut self, xml: &'static str) {
        self.registry.stream_features.push((xml, self.module));
    }

    /// Runs `task` once the server runs, before it accepts clients (e.g. to load state
    /// that synchronous hooks need). An error stops the server from starting.
    pub fn on_start<F, Fut>(&mut self, task: F)
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ModuleError>> + Send + 'static,
    {
        self.registry.on_start.push((Arc::new(move |ctx| Box::pin(task(ctx))), self.module));
    }

    /// Joins the chain of hook `E` (see [`crate::hooks`]); higher `priority` runs first.
    pub fn hook<E, F>(&mut self, priority: i32, handler: F)
    where
        E: Event,
        F: Fn(&Context, &mut E) -> Flow + Send + Sync + 'static,
    {
        self.registry.hooks.add(priority, self.module, std::sync::Arc::new(handler));
    }

    /// Handles `<iq type='get'/>` requests carrying payload `P` addressed to `scope`.
    pub fn iq_get<P, F, Fut>(&mut self, scope: Scope, handler: F)
    where
        P: IqPayload,
        F: Fn(Context, IqRequest<P>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = IqResult> + Send + 'static,
    {
        self.insert_iq(IqKind::Get, scope, P::NS, P::NAME, erase(handler));
    }

    /// Handles `<iq type='set'/>` requests carrying payload `P` addressed to `scope`.
    pub fn iq_set<P, F, Fut>(&mut self, scope: Scope, handler: F)
    where
        P: IqPayload,
        F: Fn(Context, IqRequest<P>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = IqResult> + Send + 'static,
    {
        self.insert_iq(IqKind::Set, scope, P::NS, P::NAME, erase(handler));
    }

    fn insert_iq(&mut self, kind: IqKind, scope: Scope, ns: &'static str, name: &'static str, handler: IqHandlerFn) {
        let module_name = self.name();
        let entries = self.registry.iq.entry((kind, scope)).or_default().entry(ns).or_default();
        let route = IqRoute { module: self.module, handler };
        match entries.iter_mut().find(|(n, _)| *n == name) {
            Some(existing) => {
                tracing::warn!(module = module_name, ns, name, "IQ handler registered twice; the later one wins");
                existing.1 = route;
            }
            None => entries.push((name, route)),
        }
    }
}
