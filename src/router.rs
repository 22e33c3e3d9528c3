//! The stanza router: where a stanza goes (RFC 6120 §8, §10; RFC 6121 §8.5).
//!
//! Every stanza reaching [`StanzaRouter::route`] already carries a `from` stamped by
//! the server (or verified by S2S for stanzas from other servers). Stanzas to any
//! other domain go to the S2S pool ([`crate::s2s::S2s::send`]), which bounces them with
//! `remote-server-not-found` / `remote-server-timeout` when the domain cannot be
//! reached (or at once when federation is off). The routing table, for a local domain:
//!
//! | `to`                        | message                                                   | presence                          | iq get/set                     | iq result/error |
//! |-----------------------------|-----------------------------------------------------------|-----------------------------------|--------------------------------|-----------------|
//! | none                        | as to the sender's bare JID                               | as to the sender's bare JID       | module, scope `OwnAccount`     | dropped         |
//! | host domain                 | `service-unavailable` (error, groupchat, headline dropped)| dropped                           | module, scope `Server`         | dropped         |
//! | bare JID                    | chat/normal: highest non-negative priority resources, else the `MessageUndelivered` hook (offline storage), else `service-unavailable`; headline: all such resources, else dropped; groupchat: `service-unavailable`; error: dropped | the `PresenceToAccount` hook (subscriptions, probes), then every available resource | module, scope `OwnAccount` (own JID) or `Account` | dropped |
//! | full JID, bound             | that session                                              | that session                      | that session                   | that session    |
//! | full JID, not bound         | chat/normal: as bare JID; groupchat: `service-unavailable`; headline, error: dropped | dropped | `service-unavailable` | dropped |
//! | component domain            | the component's handler                                   | the component's handler           | module, scope `Component`, else the component's handler | the component's handler |
//! | JID under a component domain| the component's handler                                   | the component's handler           | the component's handler        | the component's handler |
//!
//! Every message to a local account, bare or full JID, first passes the
//! `MessageToAccount` hook (the archive stamps its stanza id there).
//!
//! "No module" means `service-unavailable` (RFC 6120 §8.4). An IQ handled by a module
//! runs on its own task, so a slow database never stalls the sender's session. A
//! component (MUC, upload…) is a domain a module serves (`Registrar::component`); when
//! its module is switched off for the component's host, stanzas to it are answered with
//! `service-unavailable`. Answers to IQs the server itself sent (`Router::send_iq`) are
//! taken out before any of this. Tests in `tests/c2s_routing.rs` and
//! `tests/components.rs` cite these rows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use jid::{BareJid, Jid};
use starling_api::hooks::{MessageDelivered, MessageToAccount, MessageUndelivered, PresenceToAccount, Routing};
use starling_api::iq::AfterReply;
use starling_api::iq::IqRequest;
use starling_api::module::{ComponentRoute, IqRoute};
use starling_api::reply::{error_reply, iq_result};
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};
use starling_api::{BoxFuture, Context, Flow, IqKind, IqTimeout, Registry, Scope, Stanza, parse_jid, stanza_error};
use tokio::sync::oneshot;

use crate::config::Config;
use crate::s2s::S2s;
use crate::session::SessionTable;
use crate::storage::accounts;

/// `jabber:client`, the namespace stanzas are routed in (S2S translates at its edge).
pub const JABBER_CLIENT: &str = "jabber:client";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Message,
    Presence,
    Iq,
}

/// Prefix of the ids the router gives to IQs the server sends (`send_iq`); only answers
/// carrying it are looked up among the pending requests.
const SERVER_IQ_PREFIX: &str = "starling-";

/// An IQ the server sent and waits on.
struct PendingIq {
    /// Who must answer: the request's `to`.
    responder: Jid,
    answer: oneshot::Sender<Stanza>,
}

/// The single-node router.
pub struct StanzaRouter {
    sessions: Arc<SessionTable>,
    registry: Arc<Registry>,
    config: Arc<Config>,
    context: OnceLock<Context>,
    pending_iqs: Arc<Mutex<HashMap<String, PendingIq>>>,
    next_iq: AtomicU64,
    remote: OnceLock<Arc<S2s>>,
}

impl StanzaRouter {
    /// A router over `sessions`, dispatching IQs to what `registry` holds.
    pub fn new(sessions: Arc<SessionTable>, registry: Arc<Registry>, config: Arc<Config>) -> Self {
        StanzaRouter {
            sessions,
            registry,
            config,
            context: OnceLock::new(),
            pending_iqs: Arc::default(),
            next_iq: AtomicU64::new(1),
            remote: OnceLock::new(),
        }
    }

    /// Completes the router once the module context exists (it holds the router).
    pub fn set_context(&self, context: Context) {
        let _ = self.context.set(context);
    }

    /// Sends stanzas for other domains through `s2s` (federation).
    pub fn set_remote(&self, s2s: Arc<S2s>) {
        let _ = self.remote.set(s2s);
    }

    fn is_local_host(&self, domain: &str) -> bool {
        self.config.server.hosts.iter().any(|h| h == domain)
    }

    /// Routes one stanza by the table above.
    pub fn route(&self, stanza: Stanza) {
        let kind = match (stanza.name(), stanza.ns()) {
            ("message", JABBER_CLIENT) => Kind::Message,
            ("presence", JABBER_CLIENT) => Kind::Presence,
            ("iq", JABBER_CLIENT) => Kind::Iq,
            (name, ns) => {
                tracing::debug!(name, ns, "not a stanza; dropped");
                return;
            }
        };
        crate::metrics::stanza_routed(stanza.name());
        let from = stanza.from().and_then(|f| parse_jid(f).ok());
        let to = match stanza.to() {
            Some(to) => match parse_jid(to) {
                Ok(to) => to,
                Err(_) => return self.bounce(&stanza, ErrorType::Modify, DefinedCondition::JidMalformed),
            },
            None => match &from {
                Some(from) => Jid::from(from.to_bare()),
                None => return,
            },
        };
        if kind == Kind::Iq && self.is_answer_to_server_iq(&stanza, from.as_ref()) {
            return;
        }
        let stanza = match self.context.get() {
            Some(context) if context.registry().hooks().has::<Routing>() => {
                let mut event = Routing { from: from.clone(), to: to.clone(), stanza };
                if context.run_hook(&mut event) == Flow::Handled {
                    return;
                }
                event.stanza
            }
            _ => stanza,
        };
        if let Some(component) = self.registry.component(to.domain().as_str()) {
            return self.to_component(kind, stanza, &to, component);
        }
        if !self.is_local_host(to.domain().as_str()) {
            return match self.remote.get() {
                Some(s2s) => s2s.send(stanza, to.domain().as_str()),
                None => self.bounce(&stanza, ErrorType::Cancel, DefinedCondition::RemoteServerNotFound),
            };
        }
        let stanza = match (kind, to.node().is_some()) {
            (Kind::Message, true) => self.message_to_account(stanza, &to),
            _ => stanza,
        };
        match (to.node().is_some(), to.resource().is_some()) {
            (false, _) => self.to_host(kind, stanza, &to),
            (true, false) => self.to_bare(kind, stanza, to.to_bare(), from),
            (true, true) => self.to_full(kind, stanza, to),
        }
    }

    /// Fires [`MessageToAccount`] (the archive stamps its stanza id) when anyone listens.
    fn message_to_account(&self, stanza: Stanza, to: &Jid) -> Stanza {
        match self.context.get() {
            Some(context) if context.registry().hooks().has::<MessageToAccount>() => {
                let mut event = MessageToAccount { to: to.to_bare(), stanza };
                context.run_hook(&mut event);
                event.stanza
            }
            _ => stanza,
        }
    }

    /// Resolves a pending [`Router::send_iq`] when `stanza` answers it (and comes from
    /// the entity the request went to).
    fn is_answer_to_server_iq(&self, stanza: &Stanza, from: Option<&Jid>) -> bool {
        let Some(id) = stanza.id().filter(|id| id.starts_with(SERVER_IQ_PREFIX)) else { return false };
        if !matches!(stanza.type_(), Some("result" | "error")) {
            return false;
        }
        let mut pending = self.pending_iqs.lock().unwrap_or_else(|e| e.into_inner());
        match pending.get(id) {
            Some(request) if Some(&request.responder) == from => {}
            _ => return false,
        }
        if let Some(request) = pending.remove(id) {
            // The requester may have given up (timed out) in the meantime.
            let _ = request.answer.send(stanza.clone());
        }
        true
    }

    /// A stanza for a component domain or a JID under it.
    fn to_component(&self, kind: Kind, stanza: Stanza, to: &Jid, component: &ComponentRoute) {
        let module = self.registry.modules()[component.module].name;
        if !self.config.module_enabled_for(module, &component.host) {
            if kind != Kind::Presence {
                self.bounce(&stanza, ErrorType::Cancel, DefinedCondition::ServiceUnavailable);
            }
            return;
        }
        let Some(context) = self.context.get() else { return };
        if kind == Kind::Iq && !component.opaque && to.node().is_none() && to.resource().is_none() {
            if let Some(stanza) = self.dispatch_component_iq(stanza, to.domain().as_str(), &component.host) {
                (component.handler)(context, stanza);
            }
            return;
        }
        (component.handler)(context, stanza);
    }

    fn to_host(&self, kind: Kind, stanza: Stanza, to: &Jid) {
        match kind {
            Kind::Iq => self.dispatch_iq(stanza, &[Scope::Server], to.domain().as_str(), None),
            Kind::Message => match stanza.type_() {
                Some("error" | "groupchat" | "headline") => {}
                _ => self.bounce(&stanza, ErrorType::Cancel, DefinedCondition::ServiceUnavailable),
            },
            Kind::Presence => {}
        }
    }

    fn to_bare(&self, kind: Kind, stanza: Stanza, to: BareJid, from: Option<Jid>) {
        match kind {
            Kind::Message => self.message_to_bare(stanza, &to),
            Kind::Presence => self.presence_to_bare(stanza, to),
            Kind::Iq => {
                let own = from.is_some_and(|f| f.to_bare() == to);
                let host = to.domain().to_string();
                if own {
                    self.dispatch_iq(stanza, &[Scope::OwnAccount, Scope::Account], &host, None);
                } else {
                    self.dispatch_iq(stanza, &[Scope::Account], &host, Some(to));
                }
            }
        }
    }

    /// Presence to an account: the roster module handles subscriptions and probes
    /// through [`PresenceToAccount`]; what it leaves goes to every available resource.
    fn presence_to_bare(&self, stanza: Stanza, to: BareJid) {
        let mut event = PresenceToAccount { to, stanza };
        if self.context.get().is_some_and(|c| c.run_hook(&mut event) == Flow::Handled) {
            return;
        }
        let PresenceToAccount { to, stanza } = event;
        if matches!(stanza.type_(), Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed" | "probe")) {
            return;
        }
        self.deliver_to_available(&stanza, &to);
    }

    /// Delivers a copy to each available resource of `to`, addressed to that resource.
    pub fn deliver_to_available(&self, stanza: &Stanza, to: &BareJid) {
        for session in self.sessions.sessions_of(to).iter().filter(|s| s.is_available()) {
            let mut copy = stanza.clone();
            copy.set_attr("to", Some(&session.jid.to_string()));
            // Presence that cannot be queued is superseded by the next one anyway.
            let _ = session.deliver(copy);
        }
    }

    /// RFC 6121 §8.5.2.1.1 and §8.5.2.2.1.
    fn message_to_bare(&self, stanza: Stanza, to: &BareJid) {
        let type_ = stanza.type_().unwrap_or("normal");
        if type_ == "error" {
            return;
        }
        if type_ == "groupchat" {
            return self.bounce(&stanza, ErrorType::Cancel, DefinedCondition::ServiceUnavailable);
        }
        let available: Vec<_> = self.sessions.sessions_of(to).into_iter().filter(|s| s.takes_bare_messages()).collect();
        let headline = type_ == "headline";
        let targets: Vec<_> = if headline {
            available
        } else {
            let top = available.iter().map(|s| s.priority()).max();
            available.into_iter().filter(|s| Some(s.priority()) == top).collect()
        };
        // Sessions whose queue refuses the message (closing, too slow) do not count.
        let mut delivered_to = Vec::new();
        let mut refused = None;
        for session in &targets {
            match session.deliver(stanza.clone()) {
                Ok(()) => delivered_to.push(session.jid.clone()),
                Err(stanza) => refused = Some(stanza),
            }
        }
        match (delivered_to.is_empty(), refused) {
            (false, _) => self.delivered(to, delivered_to, &stanza),
            // RFC 6121 §8.5.2.2: nobody to take it.
            (true, _) if headline => {}
            (true, Some(stanza)) => self.undelivered(to, stanza),
            (true, None) => self.undelivered(to, stanza),
        }
    }

    /// The `MessageUndelivered` hook (offline storage), else `service-unavailable`; also
    /// for the messages a stream-management session never got acknowledged (the
    /// `MessageToAccount` hook has already run for them).
    pub fn undelivered(&self, to: &BareJid, stanza: Stanza) {
        let mut event = MessageUndelivered { to: to.clone(), stanza };
        if self.context.get().is_some_and(|c| c.run_hook(&mut event) == Flow::Handled) {
            return;
        }
        self.bounce(&event.stanza, ErrorType::Cancel, DefinedCondition::ServiceUnavailable)
    }

    fn to_full(&self, kind: Kind, stanza: Stanza, to: Jid) {
        let Ok(full) = to.clone().try_into_full() else { return };
        let stanza = match self.sessions.get(&full) {
            Some(session) => {
                let copy = (kind == Kind::Message).then(|| stanza.clone());
                match session.deliver(stanza) {
                    Ok(()) => {
                        if let Some(copy) = copy {
                            self.delivered(&full.to_bare(), vec![full.clone()], &copy);
                        }
                        return;
                    }
                    // The session is going away: handled as if it were not bound.
                    Err(stanza) => stanza,
                }
            }
            None => stanza,
        };
        match kind {
            // RFC 6121 §8.5.3.2.1
            Kind::Message => match stanza.type_().unwrap_or("normal") {
                "chat" | "normal" => self.message_to_bare(stanza, &full.to_bare()),
                "groupchat" => self.bounce(&stanza, ErrorType::Cancel, DefinedCondition::ServiceUnavailable),
                _ => {}
            },
            Kind::Presence => {}
            Kind::Iq => {
                if matches!(stanza.type_(), Some("get" | "set")) {
                    self.bounce(&stanza, ErrorType::Cancel, DefinedCondition::ServiceUnavailable);
                }
            }
        }
    }

    /// Fires [`MessageDelivered`] (cloning the stanza only when someone listens).
    fn delivered(&self, to: &BareJid, delivered_to: Vec<jid::FullJid>, stanza: &Stanza) {
        let Some(context) = self.context.get() else { return };
        if context.registry().hooks().has::<MessageDelivered>() {
            let mut event = MessageDelivered { to: to.clone(), delivered_to, stanza: stanza.clone() };
            context.run_hook(&mut event);
        }
    }

    /// An IQ to a component domain itself: a typed `Scope::Component` handler if one
    /// matches, else the stanza comes back for the component's own handler.
    fn dispatch_component_iq(&self, stanza: Stanza, domain: &str, host: &str) -> Option<Stanza> {
        let Some(kind) = iq_kind(&stanza) else { return Some(stanza) };
        let Ok(payload) = single_payload(&stanza) else { return Some(stanza) };
        let route = self
            .registry
            .component_iq_handler(kind, domain, &payload.ns(), payload.name())
            .filter(|route| self.config.module_enabled_for(self.registry.modules()[route.module].name, host));
        match route {
            Some(route) => {
                let handler = route.handler.clone();
                self.run_iq_handler(stanza, payload, handler, None);
                None
            }
            None => Some(stanza),
        }
    }

    /// Finds the module handling an IQ get/set and runs it on its own task. `account`
    /// is the addressed account when it is not the sender's own: it must exist.
    fn dispatch_iq(&self, stanza: Stanza, scopes: &[Scope], host: &str, account: Option<BareJid>) {
        let kind = match (iq_kind(&stanza), stanza.type_()) {
            (Some(kind), _) => kind,
            (None, Some("result" | "error")) => return,
            (None, _) => return self.bounce(&stanza, ErrorType::Modify, DefinedCondition::BadRequest),
        };
        let payload = match single_payload(&stanza) {
            Ok(payload) => payload,
            Err(()) => return self.bounce(&stanza, ErrorType::Modify, DefinedCondition::BadRequest),
        };
        let route = scopes.iter().find_map(|scope| {
            let route = self.registry.iq_handler(kind, *scope, &payload.ns(), payload.name())?;
            let module = self.registry.modules()[route.module].name;
            self.config.module_enabled_for(module, host).then(|| route.clone())
        });
        let Some(IqRoute { handler, .. }) = route else {
            return self.bounce(&stanza, ErrorType::Cancel, DefinedCondition::ServiceUnavailable);
        };
        self.run_iq_handler(stanza, payload, handler, account);
    }

    /// Runs a module's IQ handler on its own task and routes its answer.
    fn run_iq_handler(
        &self,
        stanza: Stanza,
        payload: starling_api::minidom::Element,
        handler: starling_api::IqHandlerFn,
        account: Option<BareJid>,
    ) {
        let Some(context) = self.context.get().cloned() else { return };
        let Some(from) = stanza.from().and_then(|f| parse_jid(f).ok()) else { return };
        let to = match stanza.to().map(parse_jid) {
            Some(Ok(to)) => to,
            _ => Jid::from(from.to_bare()),
        };
        let request = IqRequest {
            from,
            to,
            id: stanza.id().unwrap_or_default().to_owned(),
            lang: stanza.attr("xml:lang").map(str::to_owned),
            payload,
            after_reply: AfterReply::default(),
        };
        let after_reply = request.after_reply.clone();
        tokio::spawn(async move {
            if let Some(account) = account {
                let (host, user) = (account.domain().to_string(), account.node().map(|n| n.to_string()));
                let exists = match user {
                    Some(user) => context.db().run(move |c| accounts::exists(c, &host, &user)).await,
                    None => Ok(false),
                };
                if !matches!(exists, Ok(true)) {
                    let error = stanza_error(ErrorType::Cancel, DefinedCondition::ServiceUnavailable);
                    if let Some(reply) = error_reply(&stanza, &error) {
                        context.send(reply);
                    }
                    return;
                }
            }
            let reply = match handler(context.clone(), request).await {
                Ok(payload) => Some(iq_result(&stanza, payload.as_ref())),
                Err(error) => error_reply(&stanza, &error),
            };
            if let Some(reply) = reply {
                context.send(reply);
            }
            if let Some(work) = after_reply.take() {
                work.await;
            }
        });
    }

    /// Answers `stanza` with an error, unless it is an error itself.
    fn bounce(&self, stanza: &Stanza, type_: ErrorType, condition: DefinedCondition) {
        if let Some(reply) = error_reply(stanza, &stanza_error(type_, condition)).filter(|r| r.to().is_some()) {
            self.route(reply);
        }
    }
}

/// `get` or `set`; `None` for anything else.
pub(crate) fn iq_kind(stanza: &Stanza) -> Option<IqKind> {
    match stanza.type_() {
        Some("get") => Some(IqKind::Get),
        Some("set") => Some(IqKind::Set),
        _ => None,
    }
}

/// The one payload of an IQ get/set (RFC 6120 §8.2.3); `Err` when there is not exactly one.
pub(crate) fn single_payload(stanza: &Stanza) -> Result<starling_api::minidom::Element, ()> {
    let element = stanza.to_element().map_err(|_| ())?;
    let mut children = element.children();
    match (children.next(), children.next()) {
        (Some(payload), None) => Ok(payload.clone()),
        _ => Err(()),
    }
}

impl starling_api::Router for StanzaRouter {
    fn route(&self, stanza: Stanza) {
        StanzaRouter::route(self, stanza);
    }

    fn send_iq(&self, mut iq: Stanza, timeout: Duration) -> BoxFuture<'static, Result<Stanza, IqTimeout>> {
        let Some(responder) = iq.to().and_then(|to| parse_jid(to).ok()) else {
            return Box::pin(std::future::ready(Err(IqTimeout)));
        };
        let id =
            format!("{SERVER_IQ_PREFIX}{}-{:08x}", self.next_iq.fetch_add(1, Ordering::Relaxed), rand::random::<u32>());
        iq.set_attr("id", Some(&id));
        let (answer, answered) = oneshot::channel();
        self.pending_iqs.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), PendingIq { responder, answer });
        self.route(iq);
        let pending = self.pending_iqs.clone();
        Box::pin(async move {
            match tokio::time::timeout(timeout, answered).await {
                Ok(Ok(answer)) => Ok(answer),
                _ => {
                    pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                    Err(IqTimeout)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::{Duration, SystemTime};

    use starling_api::module::DiscoIdentity;
    use starling_api::xmpp_parsers::ping::Ping;
    use starling_api::{ContextParts, ModuleSpec, Registrar, ServerInfo};

    use super::*;
    use crate::session::{SessionHandle, SessionReceiver};
    use crate::storage::test_db::TestDb;

    /// What the test component's handler received.
    static RECEIVED: Mutex<Vec<Stanza>> = Mutex::new(Vec::new());

    static COMPONENT_MODULE: ModuleSpec = ModuleSpec {
        name: "testsvc",
        summary: "a component for router tests",
        specs: &[],
        migrations: None,
        forget_user: None,
        start: start_component,
    };

    fn start_component(reg: &mut Registrar<'_>) -> Result<(), starling_api::ModuleError> {
        reg.component("svc.localhost", "localhost", |_ctx, stanza| {
            RECEIVED.lock().unwrap_or_else(|e| e.into_inner()).push(stanza);
        })?;
        reg.disco_identity(Scope::Component, DiscoIdentity { category: "test", type_: "svc", name: "" });
        reg.iq_get::<Ping, _, _>(Scope::Component, |_ctx, _req| async { Ok(None) });
        Ok(())
    }

    struct Harness {
        router: Arc<StanzaRouter>,
        context: Context,
        alice: Arc<SessionHandle>,
        alice_rx: SessionReceiver,
        _db: TestDb,
    }

    /// The router never reloads or stops the server.
    struct NoControl;

    impl starling_api::ServerControl for NoControl {
        fn reload(&self) -> starling_api::BoxFuture<'static, Result<starling_api::ReloadReport, String>> {
            Box::pin(async { Err("not in this test".into()) })
        }

        fn shutdown(&self, _: std::time::Duration, _: Option<String>) {}
    }

    fn harness(modules: &str) -> Harness {
        let text = format!("[server]\nhosts = [\"localhost\"]\n[modules]\nenabled = [{modules}]\n");
        let config = Arc::new(Config::parse(&text, std::path::Path::new("test.toml")).expect("config"));
        let mut registry = Registry::new(config.server.hosts.clone());
        registry.start_module(&COMPONENT_MODULE, None).expect("component module starts");
        let registry = Arc::new(registry);
        let sessions = Arc::new(SessionTable::default());
        let router = Arc::new(StanzaRouter::new(sessions.clone(), registry.clone(), config.clone()));
        let db = TestDb::sqlite();
        let accounts =
            crate::auth::CoreAccounts::new(db.db.clone(), config.server.hosts.clone(), Vec::new(), sessions.clone());
        let context = Context::new(ContextParts {
            router: router.clone(),
            sessions: sessions.clone(),
            accounts: Arc::new(accounts),
            db: db.db.clone(),
            server: ServerInfo {
                software: "Starling",
                version: "test",
                hosts: config.server.hosts.clone(),
                admins: Vec::new(),
                started_at: SystemTime::now(),
                http_url: None,
            },
            registry,
            module_enabled: {
                let config = config.clone();
                Arc::new(move |module: &str, host: &str| config.module_enabled_for(module, host))
            },
            control: Arc::new(NoControl),
        });
        router.set_context(context.clone());
        let jid = jid::FullJid::new("alice@localhost/phone").expect("jid");
        let (alice, alice_rx) = SessionHandle::new(jid, 16);
        sessions.bind(alice.clone(), crate::config::ResourceConflict::KickOld, 0);
        Harness { router, context, alice, alice_rx, _db: db }
    }

    fn stanza(xml: &str) -> Stanza {
        Stanza::from_element(&xml.parse().expect("test XML"))
    }

    fn received_to(to: &str) -> Vec<Stanza> {
        RECEIVED.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|s| s.to() == Some(to)).cloned().collect()
    }

    async fn next(rx: &mut crate::session::StanzaQueue) -> Stanza {
        tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("in time").expect("a stanza")
    }

    #[tokio::test]
    async fn stanzas_to_a_component_and_jids_under_it_reach_its_handler() {
        let h = harness("\"testsvc\"");
        let from = h.alice.jid.to_string();
        h.router.route(stanza(&format!("<message xmlns='jabber:client' from='{from}' to='svc.localhost'/>")));
        h.router
            .route(stanza(&format!("<presence xmlns='jabber:client' from='{from}' to='room@svc.localhost/nick'/>")));
        h.router.route(stanza(&format!(
            "<iq xmlns='jabber:client' type='get' id='x' from='{from}' to='room@svc.localhost'><query xmlns='urn:x'/></iq>"
        )));
        assert_eq!(received_to("svc.localhost").len(), 1);
        assert_eq!(received_to("room@svc.localhost/nick").len(), 1);
        assert_eq!(received_to("room@svc.localhost").len(), 1);
    }

    #[tokio::test]
    async fn typed_component_iqs_are_answered_and_others_go_to_the_handler() {
        let mut h = harness("\"testsvc\"");
        let from = h.alice.jid.to_string();
        h.router.route(stanza(&format!(
            "<iq xmlns='jabber:client' type='get' id='p1' from='{from}' to='svc.localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        )));
        let reply = next(&mut h.alice_rx.queue).await;
        assert_eq!((reply.id(), reply.type_(), reply.from()), (Some("p1"), Some("result"), Some("svc.localhost")));
        h.router.route(stanza(&format!(
            "<iq xmlns='jabber:client' type='get' id='u1' from='{from}' to='svc.localhost'><unknown xmlns='urn:other'/></iq>"
        )));
        let forwarded = received_to("svc.localhost");
        assert!(forwarded.iter().any(|s| s.id() == Some("u1")), "untyped IQ reaches the component handler");
        assert!(!forwarded.iter().any(|s| s.id() == Some("p1")), "a typed handler answered the ping");
    }

    #[tokio::test]
    async fn a_component_whose_module_is_off_answers_service_unavailable() {
        let mut h = harness("");
        let from = h.alice.jid.to_string();
        h.router.route(stanza(&format!(
            "<message xmlns='jabber:client' id='m1' from='{from}' to='off@svc.localhost'><body>x</body></message>"
        )));
        let bounce = next(&mut h.alice_rx.queue).await;
        assert_eq!((bounce.id(), bounce.type_()), (Some("m1"), Some("error")));
        assert!(received_to("off@svc.localhost").is_empty());
    }

    #[tokio::test]
    async fn send_iq_resolves_with_the_addressees_answer_only() {
        let mut h = harness("\"testsvc\"");
        let alice = h.alice.jid.to_string();
        let request = stanza(&format!(
            "<iq xmlns='jabber:client' type='get' id='ignored' from='localhost' to='{alice}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ));
        let answer = h.context.send_iq(request, Duration::from_secs(5));
        let delivered = next(&mut h.alice_rx.queue).await;
        let id = delivered.id().expect("an id").to_owned();
        assert!(id.starts_with(SERVER_IQ_PREFIX), "{id}");
        // An answer from someone else is not taken for the addressee's.
        h.router.route(stanza(&format!(
            "<iq xmlns='jabber:client' type='result' id='{id}' from='mallory@localhost/x' to='localhost'/>"
        )));
        h.router.route(stanza(&format!(
            "<iq xmlns='jabber:client' type='result' id='{id}' from='{alice}' to='localhost'/>"
        )));
        let answer = answer.await.expect("answered");
        assert_eq!(answer.type_(), Some("result"));
        assert!(h.router.pending_iqs.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn send_iq_times_out_and_forgets_the_request() {
        let h = harness("\"testsvc\"");
        let alice = h.alice.jid.to_string();
        let request = stanza(&format!(
            "<iq xmlns='jabber:client' type='get' from='localhost' to='{alice}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ));
        assert_eq!(h.context.send_iq(request, Duration::from_millis(20)).await, Err(IqTimeout));
        assert!(h.router.pending_iqs.lock().expect("lock").is_empty());
    }
}
