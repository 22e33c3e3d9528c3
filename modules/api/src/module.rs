//! What a module declares ([`ModuleSpec`]) and how it registers ([`Registrar`]).
//!
//! A module's `start` function only registers: IQ handlers keyed by
//! `(type, scope, namespace, name)`, disco features and identities, hooks, component
//! domains, typed services and background tasks. Everything is recorded against the
//! module's name in the [`Registry`], which the core freezes after start-up and reads on
//! every routed IQ and disco query; `starling modules` lists it.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use xmpp_parsers::data_forms::DataForm;

use crate::adhoc::{Access, AdhocCommand, CommandRequest, CommandStep};
use crate::disco::{DiscoItemsFn, DiscoNodeInfoFn, DiscoQuery};
use crate::hooks::{Event, Flow, Hooks};
use crate::http::HttpRoutesFn;
use crate::iq::{IqHandlerFn, IqKind, IqPayload, IqRequest, IqResult, erase};
use crate::preauth::{PreAuthFeatureFn, PreAuthIq, PreAuthIqFn};
use crate::{Context, Migrations, ModuleError, Stanza};

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
    /// A component domain (e.g. `conference.example.org`) itself, without a node. IQ
    /// handlers and disco entries of this scope apply to the components of the module
    /// that registers them; a module that owns no component contributes to every
    /// component (ping, disco itself).
    Component,
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

/// Receives every stanza addressed to a component domain or to a JID under it
/// (`room@conference.example.org/nick`), except IQ get/set to the bare domain that a
/// typed [`Scope::Component`] handler answers. Synchronous, so stanzas from one sender
/// reach the component in order; work that takes time goes to the module's own tasks.
pub type ComponentFn = Arc<dyn Fn(&Context, Stanza) + Send + Sync>;

/// A component domain served by a module (ejabberd's `register_route`).
#[derive(Clone)]
pub struct ComponentRoute {
    /// Index of the owning module in [`Registry::modules`].
    pub module: usize,
    /// The virtual host the component belongs to (`example.org` for
    /// `conference.example.org`), for per-host module switches.
    pub host: String,
    /// The stanza handler.
    pub handler: ComponentFn,
    /// Every stanza goes to the handler, IQs to the bare domain included: an external
    /// component (XEP-0114) answers its own disco and pings.
    pub opaque: bool,
}

/// Everything the enabled modules registered. Built at start-up, then read-only.
#[derive(Default)]
pub struct Registry {
    modules: Vec<&'static ModuleSpec>,
    iq: IqTable,
    features: Vec<(Scope, &'static str, usize)>,
    identities: Vec<(Scope, DiscoIdentity, usize)>,
    disco_forms: Vec<(Scope, DataForm, usize)>,
    stream_features: Vec<(&'static str, usize)>,
    on_start: Vec<(OnStart, usize)>,
    on_reload: Vec<(OnReload, usize)>,
    tasks: Vec<(&'static str, Task, usize)>,
    components: HashMap<String, ComponentRoute>,
    services: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
    disco_items: Vec<(Scope, DiscoItemsFn, usize)>,
    disco_node_info: Vec<(Scope, DiscoNodeInfoFn, usize)>,
    commands: Vec<(AdhocCommand, usize)>,
    http_routes: Vec<(HttpRoutesFn, usize)>,
    initial_backlogs: Vec<(InitialBacklogFn, usize)>,
    write_barriers: Vec<(WriteBarrierFn, usize)>,
    pre_auth_iq: HashMap<(IqKind, &'static str, &'static str), (PreAuthIqFn, usize)>,
    pre_auth_features: Vec<(PreAuthFeatureFn, usize)>,
    bind2_features: Vec<(&'static str, Bind2FeatureFn, usize)>,
    hosts: Vec<String>,
    hooks: Hooks,
    ingress: crate::ingress::Ingress,
}

/// Work a module does once the server runs, before clients are accepted.
pub type OnStart = Arc<dyn Fn(Context) -> crate::BoxFuture<'static, Result<(), ModuleError>> + Send + Sync>;

/// A module's settings from its `[modules.<name>]` table (defaults when absent), as a
/// reload handler reads them.
pub fn parse_settings<T: serde::de::DeserializeOwned + Default>(settings: Option<&toml::Value>) -> Result<T, String> {
    match settings {
        None => Ok(T::default()),
        Some(value) => value.clone().try_into().map_err(|e: toml::de::Error| e.message().to_owned()),
    }
}

/// See [`Registrar::on_reload`].
pub type OnReload = Arc<dyn Fn(&Context, Option<&toml::Value>) -> Result<(), String> + Send + Sync>;

/// A background task of a module: runs from start-up until the token is cancelled at
/// shutdown (the core waits for it to return).
pub type Task = Arc<dyn Fn(Context, CancellationToken) -> crate::BoxFuture<'static, ()> + Send + Sync>;

/// Stanzas a session is owed once it sends initial presence (see
/// [`Registrar::initial_backlog`]).
pub type InitialBacklogFn = Arc<dyn Fn(Context, jid::FullJid) -> crate::BoxFuture<'static, Vec<Stanza>> + Send + Sync>;

/// Resolves once everything a module accepted for storage so far is stored (see
/// [`Registrar::write_barrier`]).
pub type WriteBarrierFn = Arc<dyn Fn(&Context) -> crate::BoxFuture<'static, ()> + Send + Sync>;

/// A feature a client can enable inline in a Bind 2 request (XEP-0386 §2.2): called
/// with the freshly bound resource and the client's element in the feature's namespace,
/// before the session starts; answers with an element (as XML) for `<bound/>`, or
/// nothing.
pub type Bind2FeatureFn = Arc<dyn Fn(&Context, &jid::FullJid, &minidom::Element) -> Option<String> + Send + Sync>;

impl Registry {
    /// An empty registry for a server hosting `hosts` (the XMPP domains of its accounts).
    pub fn new(hosts: Vec<String>) -> Self {
        Registry { hosts, ..Registry::default() }
    }

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

    /// The component serving `domain`, if a module registered one.
    pub fn component(&self, domain: &str) -> Option<&ComponentRoute> {
        self.components.get(domain)
    }

    /// Every component domain with its route, for disco#items and listings.
    pub fn components(&self) -> impl Iterator<Item = (&str, &ComponentRoute)> + '_ {
        self.components.iter().map(|(domain, route)| (domain.as_str(), route))
    }

    /// Whether module `module` owns any component.
    pub fn owns_components(&self, module: usize) -> bool {
        self.components.values().any(|c| c.module == module)
    }

    /// The handler for an IQ to component domain `domain`: the owning module's own
    /// [`Scope::Component`] handler first, else one from a module that owns no
    /// component (such handlers serve every component).
    pub fn component_iq_handler(&self, kind: IqKind, domain: &str, ns: &str, name: &str) -> Option<&IqRoute> {
        let owner = self.components.get(domain)?.module;
        let entries = self.iq.get(&(kind, Scope::Component))?.get(ns)?;
        let routes = || entries.iter().filter(|(n, _)| *n == name).map(|(_, route)| route);
        routes().find(|r| r.module == owner).or_else(|| routes().find(|r| !self.owns_components(r.module)))
    }

    /// Background tasks, with their names and owning modules.
    pub fn tasks(&self) -> impl Iterator<Item = (&'static str, &Task, &'static ModuleSpec)> + '_ {
        self.tasks.iter().map(|(name, task, m)| (*name, task, self.modules[*m]))
    }

    /// Disco#items providers for `scope`, with the owning module's index.
    pub fn disco_items(&self, scope: Scope) -> impl Iterator<Item = (&DiscoItemsFn, usize)> + '_ {
        self.disco_items.iter().filter(move |(s, _, _)| *s == scope).map(|(_, f, m)| (f, *m))
    }

    /// Disco#info node providers for `scope`, with the owning module's index.
    pub fn disco_node_info(&self, scope: Scope) -> impl Iterator<Item = (&DiscoNodeInfoFn, usize)> + '_ {
        self.disco_node_info.iter().filter(move |(s, _, _)| *s == scope).map(|(_, f, m)| (f, *m))
    }

    /// The registered ad-hoc commands (XEP-0050), with the owning module's index.
    pub fn adhoc_commands(&self) -> impl Iterator<Item = (&AdhocCommand, usize)> + '_ {
        self.commands.iter().map(|(c, m)| (c, *m))
    }

    /// The handler for an IQ before authentication (see [`crate::preauth`]), with the
    /// owning module's index.
    pub fn pre_auth_iq_handler(&self, kind: IqKind, ns: &str, name: &str) -> Option<(&PreAuthIqFn, usize)> {
        self.pre_auth_iq
            .iter()
            .find(|((k, n, l), _)| *k == kind && *n == ns && *l == name)
            .map(|(_, (handler, module))| (handler, *module))
    }

    /// Every pre-authentication IQ key with the owning module's name, for listings.
    pub fn all_pre_auth_iq_handlers(&self) -> Vec<(IqKind, &'static str, &'static str, &'static str)> {
        let mut out: Vec<_> = self
            .pre_auth_iq
            .iter()
            .map(|((kind, ns, name), (_, module))| (*kind, *ns, *name, self.modules[*module].name))
            .collect();
        out.sort_by_key(|(kind, ns, name, module)| (*module, *ns, *name, matches!(kind, IqKind::Set)));
        out
    }

    /// Stream feature providers for streams before authentication, with the owning
    /// module's index.
    pub fn pre_auth_stream_features(&self) -> impl Iterator<Item = (&PreAuthFeatureFn, usize)> + '_ {
        self.pre_auth_features.iter().map(|(f, m)| (f, *m))
    }

    /// The service of type `T` a module provided (see [`Registrar::provide`]).
    pub fn service<T: ?Sized + Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.services.get(&TypeId::of::<Arc<T>>())?.downcast_ref::<Arc<T>>().cloned()
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

    /// Extended disco#info forms (XEP-0128) registered for `scope`, with the owning
    /// module's index.
    pub fn disco_forms(&self, scope: Scope) -> impl Iterator<Item = (&DataForm, usize)> + '_ {
        self.disco_forms.iter().filter(move |(s, _, _)| *s == scope).map(|(_, f, m)| (f, *m))
    }

    /// Stream features offered to authenticated clients (XML), with the owning module.
    pub fn stream_features(&self) -> impl Iterator<Item = (&'static str, &'static ModuleSpec)> + '_ {
        self.stream_features.iter().map(|(xml, m)| (*xml, self.modules[*m]))
    }

    /// Features that can be enabled inline in Bind 2 (XEP-0386), by namespace, with the
    /// owning module.
    pub fn bind2_features(&self) -> impl Iterator<Item = (&'static str, &Bind2FeatureFn, &'static ModuleSpec)> + '_ {
        self.bind2_features.iter().map(|(ns, f, m)| (*ns, f, self.modules[*m]))
    }

    /// Start-up work, with the owning module.
    pub fn on_start(&self) -> impl Iterator<Item = (&OnStart, &'static ModuleSpec)> + '_ {
        self.on_start.iter().map(|(f, m)| (f, self.modules[*m]))
    }

    /// The reload handler of the module called `name`, if it has one.
    pub fn on_reload(&self, name: &str) -> Option<&OnReload> {
        self.on_reload.iter().find(|(_, m)| self.modules[*m].name == name).map(|(f, _)| f)
    }

    /// HTTP route builders (see [`crate::http`]), with the owning module.
    pub fn http_routes(&self) -> impl Iterator<Item = (&HttpRoutesFn, &'static ModuleSpec)> + '_ {
        self.http_routes.iter().map(|(f, m)| (f, self.modules[*m]))
    }

    /// Every initial-backlog provider with its module, in registration order.
    pub fn initial_backlogs(&self) -> impl Iterator<Item = (&InitialBacklogFn, &'static ModuleSpec)> + '_ {
        self.initial_backlogs.iter().map(|(f, m)| (f, self.modules[*m]))
    }

    /// Every write barrier with its module, in registration order.
    pub fn write_barriers(&self) -> impl Iterator<Item = (&WriteBarrierFn, &'static ModuleSpec)> + '_ {
        self.write_barriers.iter().map(|(f, m)| (f, self.modules[*m]))
    }

    /// What client and server streams wait on before reading (see [`crate::ingress`]).
    pub fn ingress(&self) -> &crate::ingress::Ingress {
        &self.ingress
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

    /// The virtual hosts of the server (account domains), for modules that serve one
    /// component per host.
    pub fn hosts(&self) -> &[String] {
        &self.registry.hosts
    }

    /// Serves the component domain `domain` (belonging to virtual host `host`): the
    /// router hands every stanza addressed to it, or to a JID under it, to `handler`,
    /// except IQs that a typed [`Scope::Component`] handler answers. A domain can have
    /// one owner and cannot be a virtual host.
    pub fn component<F>(&mut self, domain: &str, host: &str, handler: F) -> Result<(), ModuleError>
    where
        F: Fn(&Context, Stanza) + Send + Sync + 'static,
    {
        self.add_component(domain, host, Arc::new(handler), false)
    }

    /// Like [`Registrar::component`], but no typed handler answers for it: every
    /// stanza, IQs to the bare domain included, goes to `handler` (for components
    /// outside the server, XEP-0114, which answer their own disco and pings).
    pub fn external_component<F>(&mut self, domain: &str, host: &str, handler: F) -> Result<(), ModuleError>
    where
        F: Fn(&Context, Stanza) + Send + Sync + 'static,
    {
        self.add_component(domain, host, Arc::new(handler), true)
    }

    fn add_component(
        &mut self,
        domain: &str,
        host: &str,
        handler: ComponentFn,
        opaque: bool,
    ) -> Result<(), ModuleError> {
        let module = self.name();
        let domain = crate::parse_bare_jid(domain)
            .ok()
            .filter(|jid| jid.node().is_none())
            .map(|jid| jid.domain().to_string())
            .ok_or_else(|| ModuleError::Config { module, message: format!("{domain:?} is not a domain name") })?;
        if self.registry.hosts.contains(&domain) {
            return Err(ModuleError::Config {
                module,
                message: format!("{domain} is a virtual host; a component needs a domain of its own"),
            });
        }
        if let Some(existing) = self.registry.components.get(&domain) {
            let owner = self.registry.modules[existing.module].name;
            return Err(ModuleError::Config { module, message: format!("{domain} is already served by {owner}") });
        }
        let route = ComponentRoute { module: self.module, host: host.to_owned(), handler, opaque };
        self.registry.components.insert(domain, route);
        Ok(())
    }

    /// Contributes items to `disco#items` answers of entities of `scope` (see
    /// [`crate::disco`]).
    pub fn disco_items<F, Fut>(&mut self, scope: Scope, provider: F)
    where
        F: Fn(Context, DiscoQuery) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<Vec<xmpp_parsers::disco::Item>>> + Send + 'static,
    {
        let provider: DiscoItemsFn = Arc::new(move |ctx, query| Box::pin(provider(ctx, query)));
        self.registry.disco_items.push((scope, provider, self.module));
    }

    /// Answers `disco#info` on nodes of entities of `scope` (see [`crate::disco`]).
    pub fn disco_node_info<F, Fut>(&mut self, scope: Scope, provider: F)
    where
        F: Fn(Context, DiscoQuery) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<xmpp_parsers::disco::DiscoInfoResult>> + Send + 'static,
    {
        let provider: DiscoNodeInfoFn = Arc::new(move |ctx, query| Box::pin(provider(ctx, query)));
        self.registry.disco_node_info.push((scope, provider, self.module));
    }

    /// Offers an ad-hoc command (XEP-0050) on the server's hosts; the `adhoc` module
    /// lists and runs it (see [`crate::adhoc`]).
    pub fn adhoc_command<F, Fut>(&mut self, node: &'static str, name: &'static str, access: Access, handler: F)
    where
        F: Fn(Context, CommandRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<CommandStep, xmpp_parsers::stanza_error::StanzaError>> + Send + 'static,
    {
        let handler: crate::adhoc::CommandFn = Arc::new(move |ctx, req| Box::pin(handler(ctx, req)));
        self.registry.commands.push((AdhocCommand { node, name, access, handler }, self.module));
    }

    /// A switch that pauses reading on every client and server stream while it is
    /// raised: back-pressure for a module whose queue fills faster than it drains.
    pub fn ingress_pressure(&mut self) -> crate::ingress::PressureSource {
        self.registry.ingress.source()
    }

    /// Provides a typed service other modules reach with [`Context::service`], e.g.
    /// `reg.provide::<dyn ArchiveService>(Arc::new(MyArchive))`. The last provider wins.
    pub fn provide<T: ?Sized + Send + Sync + 'static>(&mut self, service: Arc<T>) {
        self.registry.services.insert(TypeId::of::<Arc<T>>(), Box::new(service));
    }

    /// Runs `task` in the background from start-up (after every `on_start`) until
    /// shutdown cancels its token; the server waits for it to return.
    pub fn task<F, Fut>(&mut self, name: &'static str, task: F)
    where
        F: Fn(Context, CancellationToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let task: Task = Arc::new(move |ctx, token| Box::pin(task(ctx, token)));
        self.registry.tasks.push((name, task, self.module));
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

    /// Adds an extended-information form (XEP-0128, `type='result'` with a hidden
    /// `FORM_TYPE`) to disco#info answers of entities of `scope`, e.g. XEP-0157 contact
    /// addresses. The forms count in the XEP-0115 hash.
    pub fn disco_form(&mut self, scope: Scope, form: DataForm) {
        self.registry.disco_forms.push((scope, form, self.module));
    }

    /// Offers a stream feature (an element, as XML) to clients after authentication,
    /// e.g. `<ver xmlns='urn:xmpp:features:rosterver'/>`.
    pub fn stream_feature(&mut self, xml: &'static str) {
        self.registry.stream_features.push((xml, self.module));
    }

    /// Lets clients enable the feature `ns` inline when they bind with Bind 2
    /// (XEP-0386 §2.2): it is listed in the `<inline/>` of the SASL2 bind feature, and
    /// a child element in `ns` of the client's `<bind/>` goes to `handler` (see
    /// [`Bind2FeatureFn`]).
    pub fn bind2_feature<F>(&mut self, ns: &'static str, handler: F)
    where
        F: Fn(&Context, &jid::FullJid, &minidom::Element) -> Option<String> + Send + Sync + 'static,
    {
        self.registry.bind2_features.push((ns, Arc::new(handler), self.module));
    }

    /// Handles `<iq type='get'/>` with payload `P` from clients that have not
    /// authenticated yet (see [`crate::preauth`]).
    pub fn pre_auth_iq_get<P, F, Fut>(&mut self, handler: F)
    where
        P: IqPayload,
        F: Fn(Context, PreAuthIq<P>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = IqResult> + Send + 'static,
    {
        let handler = crate::preauth::erase(handler);
        self.registry.pre_auth_iq.insert((IqKind::Get, P::NS, P::NAME), (handler, self.module));
    }

    /// Handles `<iq type='set'/>` with payload `P` from clients that have not
    /// authenticated yet (see [`crate::preauth`]).
    pub fn pre_auth_iq_set<P, F, Fut>(&mut self, handler: F)
    where
        P: IqPayload,
        F: Fn(Context, PreAuthIq<P>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = IqResult> + Send + 'static,
    {
        let handler = crate::preauth::erase(handler);
        self.registry.pre_auth_iq.insert((IqKind::Set, P::NS, P::NAME), (handler, self.module));
    }

    /// Offers a stream feature before authentication: `feature(ctx, host)` answers,
    /// per stream, with the element (as XML) or nothing (see [`crate::preauth`]).
    pub fn pre_auth_stream_feature<F>(&mut self, feature: F)
    where
        F: Fn(&Context, &str) -> Option<String> + Send + Sync + 'static,
    {
        self.registry.pre_auth_features.push((Arc::new(feature), self.module));
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

    /// Takes new `[modules.<name>]` settings while running (a reload: SIGHUP,
    /// `starling reload`). `Ok` when they apply from now on; `Err` with what needs a
    /// restart (the old settings then stay). Modules without one need a restart for
    /// any change of their settings.
    pub fn on_reload(
        &mut self,
        handler: impl Fn(&Context, Option<&toml::Value>) -> Result<(), String> + Send + Sync + 'static,
    ) {
        self.registry.on_reload.push((Arc::new(handler), self.module));
    }

    /// Serves HTTP routes on the server's HTTP listener (see [`crate::http`]): `routes`
    /// builds them once the server runs, from the module's [`Context`].
    pub fn http_routes<F>(&mut self, routes: F)
    where
        F: Fn(Context) -> Result<axum::Router, ModuleError> + Send + Sync + 'static,
    {
        self.registry.http_routes.push((Arc::new(routes), self.module));
    }

    /// Owes a session the stanzas `backlog(ctx, jid)` returns once it sends initial
    /// presence (offline messages, XEP-0160). The session writes them before anything
    /// routed to it after it became available, so a message that arrives while the
    /// backlog loads cannot overtake older ones. The session waits for the future, so
    /// it must not wait on the session itself; what it returns is the session's to
    /// deliver (or hand back as undelivered if the session ends first).
    pub fn initial_backlog<F, Fut>(&mut self, backlog: F)
    where
        F: Fn(Context, jid::FullJid) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Stanza>> + Send + 'static,
    {
        self.registry.initial_backlogs.push((Arc::new(move |ctx, jid| Box::pin(backlog(ctx, jid))), self.module));
    }

    /// Declares that the module stores stanzas behind the router's back (a write queue
    /// its hooks fill): `barrier(ctx)` resolves once everything queued before the call
    /// is durably stored. Before a stream acknowledges stanzas (XEP-0198 `<a h/>`) it
    /// waits for every module's barrier, so an acknowledged message survives a crash.
    pub fn write_barrier<F, Fut>(&mut self, barrier: F)
    where
        F: Fn(&Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.registry.write_barriers.push((Arc::new(move |ctx| Box::pin(barrier(ctx))), self.module));
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
        // Component handlers of different modules coexist: each answers for its own
        // components (the disco module's serves those whose module has none).
        let module = self.module;
        let same =
            |(n, r): &&mut (&'static str, IqRoute)| *n == name && (scope != Scope::Component || r.module == module);
        match entries.iter_mut().find(same) {
            Some(existing) => {
                tracing::warn!(module = module_name, ns, name, "IQ handler registered twice; the later one wins");
                existing.1 = route;
            }
            None => entries.push((name, route)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    trait Greeter: Send + Sync {
        fn greet(&self) -> &'static str;
    }

    struct English;
    impl Greeter for English {
        fn greet(&self) -> &'static str {
            "hello"
        }
    }

    fn start_owner(reg: &mut Registrar<'_>) -> Result<(), ModuleError> {
        reg.component("svc.example.org", "example.org", |_, _| {})?;
        reg.provide::<dyn Greeter>(Arc::new(English));
        reg.iq_get::<xmpp_parsers::ping::Ping, _, _>(Scope::Component, |_, _| async { Ok(None) });
        Ok(())
    }

    fn start_generic(reg: &mut Registrar<'_>) -> Result<(), ModuleError> {
        reg.iq_get::<xmpp_parsers::ping::Ping, _, _>(Scope::Component, |_, _| async { Ok(None) });
        reg.iq_get::<xmpp_parsers::version::VersionQuery, _, _>(Scope::Component, |_, _| async { Ok(None) });
        Ok(())
    }

    fn start_plain_owner(reg: &mut Registrar<'_>) -> Result<(), ModuleError> {
        reg.component("plain.example.org", "example.org", |_, _| {})
    }

    fn start_squatter(reg: &mut Registrar<'_>) -> Result<(), ModuleError> {
        reg.component("SVC.example.org", "example.org", |_, _| {})
    }

    fn start_on_host(reg: &mut Registrar<'_>) -> Result<(), ModuleError> {
        reg.component("example.org", "example.org", |_, _| {})
    }

    fn spec(name: &'static str, start: fn(&mut Registrar<'_>) -> Result<(), ModuleError>) -> &'static ModuleSpec {
        Box::leak(Box::new(ModuleSpec { name, summary: "", specs: &[], migrations: None, forget_user: None, start }))
    }

    #[test]
    fn components_have_one_owner_and_never_take_a_virtual_host() {
        let mut registry = Registry::new(vec!["example.org".into()]);
        registry.start_module(spec("generic", start_generic), None).expect("generic");
        registry.start_module(spec("owner", start_owner), None).expect("owner");
        assert!(registry.start_module(spec("squatter", start_squatter), None).is_err(), "same domain, other case");
        assert!(registry.start_module(spec("host", start_on_host), None).is_err(), "a virtual host");
        assert_eq!(registry.component("svc.example.org").map(|c| c.module), Some(1));
    }

    #[test]
    fn component_iqs_prefer_the_owner_then_modules_without_components() {
        let mut registry = Registry::new(vec!["example.org".into()]);
        registry.start_module(spec("generic", start_generic), None).expect("generic");
        registry.start_module(spec("owner", start_owner), None).expect("owner");
        let ping = registry.component_iq_handler(IqKind::Get, "svc.example.org", xmpp_parsers::ns::PING, "ping");
        assert_eq!(ping.map(|r| r.module), Some(1));
        let version = registry.component_iq_handler(IqKind::Get, "svc.example.org", xmpp_parsers::ns::VERSION, "query");
        assert_eq!(version.map(|r| r.module), Some(0));
        assert!(
            registry.component_iq_handler(IqKind::Get, "other.example.org", xmpp_parsers::ns::PING, "ping").is_none()
        );
    }

    #[test]
    fn an_owners_own_handler_does_not_displace_the_generic_one_for_other_components() {
        let mut registry = Registry::new(vec!["example.org".into()]);
        registry.start_module(spec("generic", start_generic), None).expect("generic");
        registry.start_module(spec("owner", start_owner), None).expect("owner");
        registry.start_module(spec("plain", start_plain_owner), None).expect("plain");
        let ping = |domain| registry.component_iq_handler(IqKind::Get, domain, xmpp_parsers::ns::PING, "ping");
        assert_eq!(ping("svc.example.org").map(|r| r.module), Some(1));
        assert_eq!(ping("plain.example.org").map(|r| r.module), Some(0));
    }

    #[test]
    fn services_are_found_by_trait() {
        let mut registry = Registry::new(vec!["example.org".into()]);
        assert!(registry.service::<dyn Greeter>().is_none());
        registry.start_module(spec("owner", start_owner), None).expect("owner");
        assert_eq!(registry.service::<dyn Greeter>().map(|g| g.greet()), Some("hello"));
    }
}
