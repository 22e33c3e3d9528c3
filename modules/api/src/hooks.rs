//! Typed hooks: the points where modules join the core's handling of stanzas and
//! sessions (Prosody's events, ejabberd's `run_fold`), one struct per hook point.
//!
//! Handlers run in priority order, **higher first**; a handler returning
//! [`Flow::Handled`] stops the chain and the core's default behaviour for that event
//! (documented on each event). Handlers are synchronous and must not block: work that
//! needs the database is spawned (`tokio::spawn`) with a clone of the [`Context`].
//! A module disabled for a host (`[hosts."x"] modules_disabled`) is skipped for events
//! of that host.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

use jid::{BareJid, FullJid};

use crate::{Context, Stanza};

/// Whether the chain goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Let later handlers and the default behaviour run.
    Continue,
    /// The event is dealt with: stop here.
    Handled,
}

/// A hook point. Implemented by the event structs below.
pub trait Event: Send + Sync + 'static {
    /// The host the event belongs to (for per-host module switches).
    fn host(&self) -> &str;
}

/// A registered handler.
pub type HookFn<E> = Arc<dyn Fn(&Context, &mut E) -> Flow + Send + Sync>;

struct Chain<E> {
    handlers: Vec<(i32, usize, HookFn<E>)>,
}

/// All hook chains, by event type.
#[derive(Default)]
pub struct Hooks {
    chains: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl Hooks {
    pub(crate) fn add<E: Event>(&mut self, priority: i32, module: usize, handler: HookFn<E>) {
        let chain = self
            .chains
            .entry(TypeId::of::<E>())
            .or_insert_with(|| Box::new(Chain::<E> { handlers: Vec::new() }))
            .downcast_mut::<Chain<E>>();
        if let Some(chain) = chain {
            chain.handlers.push((priority, module, handler));
            // Stable: equal priorities keep registration (module start) order.
            chain.handlers.sort_by_key(|(p, _, _)| std::cmp::Reverse(*p));
        }
    }

    /// Runs the chain for `event`; `enabled(module, host)` filters per host.
    pub fn run<E: Event>(&self, ctx: &Context, event: &mut E, enabled: impl Fn(usize, &str) -> bool) -> Flow {
        let Some(chain) = self.chains.get(&TypeId::of::<E>()).and_then(|c| c.downcast_ref::<Chain<E>>()) else {
            return Flow::Continue;
        };
        for (_, module, handler) in &chain.handlers {
            if !enabled(*module, event.host()) {
                continue;
            }
            if handler(ctx, event) == Flow::Handled {
                return Flow::Handled;
            }
        }
        Flow::Continue
    }

    /// Whether any handler is registered for `E`.
    pub fn has<E: Event>(&self) -> bool {
        self.chains.contains_key(&TypeId::of::<E>())
    }
}

/// A client bound a resource. Fired by c2s after the bind result was sent.
#[derive(Debug)]
pub struct SessionStarted {
    /// The bound full JID.
    pub jid: FullJid,
}

/// A client session ended (any reason), after it left the session table.
#[derive(Debug)]
pub struct SessionEnded {
    /// The session's full JID.
    pub jid: FullJid,
    /// Whether it had sent available presence (and not unavailable since).
    pub was_available: bool,
}

/// A client sent presence without `to` (RFC 6121 §4.2, §4.4, §4.5): available
/// (`initial` when it is the session's first) or unavailable. The core has already
/// updated the session's availability; default: nothing more.
#[derive(Debug)]
pub struct PresenceBroadcast {
    /// The sender.
    pub from: FullJid,
    /// The presence, `from` stamped.
    pub stanza: Stanza,
    /// The first available presence of this session.
    pub initial: bool,
}

/// A client sent a presence subscription stanza (`subscribe`, `subscribed`,
/// `unsubscribe`, `unsubscribed`; RFC 6121 §3). Default: route it as is.
#[derive(Debug)]
pub struct SubscriptionOut {
    /// The sender.
    pub from: FullJid,
    /// The contact addressed.
    pub to: BareJid,
    /// The stanza, `from` stamped with the full JID.
    pub stanza: Stanza,
}

/// Presence addressed to a local account's bare JID arrived (from a local or remote
/// sender): subscription stanzas, probes, directed presence. Default: subscription
/// stanzas and probes are dropped, others go to every available resource.
#[derive(Debug)]
pub struct PresenceToAccount {
    /// The account.
    pub to: BareJid,
    /// The stanza.
    pub stanza: Stanza,
}

/// A chat or normal message for a local account found no available resource
/// (RFC 6121 §8.5.2.2). Default: `service-unavailable` to the sender.
#[derive(Debug)]
pub struct MessageUndelivered {
    /// The account.
    pub to: BareJid,
    /// The message.
    pub stanza: Stanza,
}

/// Any stanza about to be routed (from a client, a module or the server), after its
/// addresses were parsed. Fired first thing by the router; `Flow::Handled` drops it
/// (the handler sends any error itself). Default: route it.
#[derive(Debug)]
pub struct Routing {
    /// The sender, when the stanza has one.
    pub from: Option<jid::Jid>,
    /// The addressee (the sender's bare JID when the stanza had no `to`).
    pub to: jid::Jid,
    /// The stanza.
    pub stanza: Stanza,
}

/// A client sent a message; `from` is stamped. Fired by c2s before routing; default:
/// route it (handlers observe, e.g. carbons copy it to the sender's other resources).
#[derive(Debug)]
pub struct MessageSent {
    /// The sending session.
    pub from: FullJid,
    /// The message.
    pub stanza: Stanza,
}

/// A message was queued for sessions of a local account. Fired by the router after
/// delivery; default: nothing.
#[derive(Debug)]
pub struct MessageDelivered {
    /// The account.
    pub to: BareJid,
    /// The sessions that received it.
    pub delivered_to: Vec<FullJid>,
    /// The message.
    pub stanza: Stanza,
}

/// A message addressed to a local account (its bare JID or one of its full JIDs) is
/// about to be delivered or stored, whoever sent it. Fired once by the router, before
/// the RFC 6121 §8.5 delivery rules; handlers may change the stanza (the archive
/// stamps its XEP-0359 `<stanza-id/>` here, so live, offline and resent copies all
/// carry it). Default: deliver it.
#[derive(Debug)]
pub struct MessageToAccount {
    /// The account.
    pub to: BareJid,
    /// The message.
    pub stanza: Stanza,
}

macro_rules! host_of {
    ($($event:ty => |$e:ident| $host:expr;)*) => {$(
        impl Event for $event {
            fn host(&self) -> &str {
                let $e = self;
                $host
            }
        }
    )*};
}

host_of! {
    SessionStarted => |e| e.jid.domain().as_str();
    SessionEnded => |e| e.jid.domain().as_str();
    PresenceBroadcast => |e| e.from.domain().as_str();
    SubscriptionOut => |e| e.from.domain().as_str();
    PresenceToAccount => |e| e.to.domain().as_str();
    MessageUndelivered => |e| e.to.domain().as_str();
    MessageSent => |e| e.from.domain().as_str();
    Routing => |e| e.to.domain().as_str();
    MessageDelivered => |e| e.to.domain().as_str();
    MessageToAccount => |e| e.to.domain().as_str();
}
