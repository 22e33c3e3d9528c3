//! The stanza router: where a stanza goes (RFC 6120 §8, §10; RFC 6121 §8.5).
//!
//! Every stanza reaching [`StanzaRouter::route`] already carries a `from` stamped by
//! the server. The routing table, for a local domain (remote domains are refused with
//! `remote-server-not-found` until federation exists):
//!
//! | `to`                        | message                                                   | presence                          | iq get/set                     | iq result/error |
//! |-----------------------------|-----------------------------------------------------------|-----------------------------------|--------------------------------|-----------------|
//! | none                        | as to the sender's bare JID                               | as to the sender's bare JID       | module, scope `OwnAccount`     | dropped         |
//! | host domain                 | `service-unavailable` (error, groupchat, headline dropped)| dropped                           | module, scope `Server`         | dropped         |
//! | bare JID                    | chat/normal: highest non-negative priority resources, else the `MessageUndelivered` hook (offline storage), else `service-unavailable`; headline: all such resources, else dropped; groupchat: `service-unavailable`; error: dropped | the `PresenceToAccount` hook (subscriptions, probes), then every available resource | module, scope `OwnAccount` (own JID) or `Account` | dropped |
//! | full JID, bound             | that session                                              | that session                      | that session                   | that session    |
//! | full JID, not bound         | chat/normal: as bare JID; groupchat: `service-unavailable`; headline, error: dropped | dropped | `service-unavailable` | dropped |
//!
//! "No module" means `service-unavailable` (RFC 6120 §8.4). An IQ handled by a module
//! runs on its own task, so a slow database never stalls the sender's session. Tests in
//! `tests/c2s_routing.rs` cite these rows.

use std::sync::{Arc, OnceLock};

use jid::{BareJid, Jid};
use starling_api::hooks::{MessageDelivered, MessageUndelivered, PresenceToAccount, Routing};
use starling_api::iq::IqRequest;
use starling_api::module::IqRoute;
use starling_api::reply::{error_reply, iq_result};
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};
use starling_api::{Context, Flow, IqKind, Registry, Scope, Stanza, parse_jid, stanza_error};

use crate::config::Config;
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

/// The single-node router.
pub struct StanzaRouter {
    sessions: Arc<SessionTable>,
    registry: Arc<Registry>,
    config: Arc<Config>,
    context: OnceLock<Context>,
}

impl StanzaRouter {
    /// A router over `sessions`, dispatching IQs to what `registry` holds.
    pub fn new(sessions: Arc<SessionTable>, registry: Arc<Registry>, config: Arc<Config>) -> Self {
        StanzaRouter { sessions, registry, config, context: OnceLock::new() }
    }

    /// Completes the router once the module context exists (it holds the router).
    pub fn set_context(&self, context: Context) {
        let _ = self.context.set(context);
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
        if !self.is_local_host(to.domain().as_str()) {
            return self.bounce(&stanza, ErrorType::Cancel, DefinedCondition::RemoteServerNotFound);
        }
        match (to.node().is_some(), to.resource().is_some()) {
            (false, _) => self.to_host(kind, stanza, &to),
            (true, false) => self.to_bare(kind, stanza, to.to_bare(), from),
            (true, true) => self.to_full(kind, stanza, to),
        }
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
        let available: Vec<_> =
            self.sessions.sessions_of(to).into_iter().filter(|s| s.is_available() && s.priority() >= 0).collect();
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

    /// The `MessageUndelivered` hook (offline storage), else `service-unavailable`.
    fn undelivered(&self, to: &BareJid, stanza: Stanza) {
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

    /// Finds the module handling an IQ get/set and runs it on its own task. `account`
    /// is the addressed account when it is not the sender's own: it must exist.
    fn dispatch_iq(&self, stanza: Stanza, scopes: &[Scope], host: &str, account: Option<BareJid>) {
        let kind = match stanza.type_() {
            Some("get") => IqKind::Get,
            Some("set") => IqKind::Set,
            Some("result" | "error") => return,
            _ => return self.bounce(&stanza, ErrorType::Modify, DefinedCondition::BadRequest),
        };
        let Some(context) = self.context.get().cloned() else { return };
        let element = match stanza.to_element() {
            Ok(element) => element,
            Err(_) => return self.bounce(&stanza, ErrorType::Modify, DefinedCondition::BadRequest),
        };
        let mut children = element.children();
        let (Some(payload), None) = (children.next(), children.next()) else {
            // RFC 6120 §8.2.3: a get or set carries exactly one payload.
            return self.bounce(&stanza, ErrorType::Modify, DefinedCondition::BadRequest);
        };
        let route = scopes.iter().find_map(|scope| {
            let route = self.registry.iq_handler(kind, *scope, &payload.ns(), payload.name())?;
            let module = self.registry.modules()[route.module].name;
            self.config.module_enabled_for(module, host).then(|| route.clone())
        });
        let Some(IqRoute { handler, .. }) = route else {
            return self.bounce(&stanza, ErrorType::Cancel, DefinedCondition::ServiceUnavailable);
        };
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
            payload: payload.clone(),
        };
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
        });
    }

    /// Answers `stanza` with an error, unless it is an error itself.
    fn bounce(&self, stanza: &Stanza, type_: ErrorType, condition: DefinedCondition) {
        if let Some(reply) = error_reply(stanza, &stanza_error(type_, condition)).filter(|r| r.to().is_some()) {
            self.route(reply);
        }
    }
}

impl starling_api::Router for StanzaRouter {
    fn route(&self, stanza: Stanza) {
        StanzaRouter::route(self, stanza);
    }
}
