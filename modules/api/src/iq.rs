//! IQ requests as modules see them (RFC 6120 §8.2.3).
//!
//! The router dispatches an `<iq type='get|set'/>` on the qualified name of its payload
//! before parsing it, so a payload type declares that name ([`IqPayload`]). The handler
//! receives the parsed payload and answers with a result payload, an empty result, or a
//! stanza error; the router writes the reply with the request's `id`.

use std::future::Future;
use std::sync::{Arc, Mutex};

use jid::Jid;
use minidom::Element;
use xmpp_parsers::stanza_error::StanzaError;

use crate::{BoxFuture, Context};

/// What an IQ handler answers: `Ok(Some(payload))` for a result with a payload,
/// `Ok(None)` for an empty result, `Err(error)` for `type='error'`.
pub type IqResult = Result<Option<Element>, StanzaError>;

/// The two request types of RFC 6120 §8.2.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IqKind {
    /// `type='get'`
    Get,
    /// `type='set'`
    Set,
}

/// A request routed to a module.
#[derive(Debug, Clone)]
pub struct IqRequest<P> {
    /// The sender, stamped by the server (a full JID for local clients).
    pub from: Jid,
    /// The addressee as the sender wrote it; the account's bare JID when it wrote none.
    pub to: Jid,
    /// The request id, echoed in the reply.
    pub id: String,
    /// `xml:lang` of the request, if any.
    pub lang: Option<String>,
    /// The parsed payload.
    pub payload: P,
    /// Work to run once the reply is routed (see [`IqRequest::after_reply`]).
    pub after_reply: AfterReply,
}

impl<P> IqRequest<P> {
    /// Runs `work` after the handler's reply has been routed — for a local requester,
    /// queued on its session — for effects the requester must only see after the
    /// answer, such as the end of its session after an XEP-0077 unregistration. The
    /// last call wins.
    pub fn after_reply(&self, work: impl Future<Output = ()> + Send + 'static) {
        *self.after_reply.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::pin(work));
    }
}

/// The slot behind [`IqRequest::after_reply`]; the router takes the work out.
#[derive(Clone, Default)]
pub struct AfterReply(Arc<Mutex<Option<BoxFuture<'static, ()>>>>);

impl AfterReply {
    /// The work a handler left, if any.
    pub fn take(&self) -> Option<BoxFuture<'static, ()>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl std::fmt::Debug for AfterReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AfterReply")
    }
}

/// A payload type that can be dispatched by the qualified name of its root element.
pub trait IqPayload: TryFrom<Element> + Send + 'static {
    /// Namespace of the payload element.
    const NS: &'static str;
    /// Local name of the payload element.
    const NAME: &'static str;
}

/// A type-erased handler as the registry stores it.
pub type IqHandlerFn = Arc<dyn Fn(Context, IqRequest<Element>) -> BoxFuture<'static, IqResult> + Send + Sync>;

/// Wraps a typed handler so that the payload is parsed before it runs; a payload that
/// does not parse is answered with `bad-request` (RFC 6120 §8.3.3.1).
pub(crate) fn erase<P, F, Fut>(handler: F) -> IqHandlerFn
where
    P: IqPayload,
    F: Fn(Context, IqRequest<P>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = IqResult> + Send + 'static,
{
    Arc::new(move |ctx, req: IqRequest<Element>| {
        let IqRequest { from, to, id, lang, payload, after_reply } = req;
        match P::try_from(payload) {
            Ok(payload) => Box::pin(handler(ctx, IqRequest { from, to, id, lang, payload, after_reply })),
            Err(_) => Box::pin(std::future::ready(Err(crate::stanza_error(
                xmpp_parsers::stanza_error::ErrorType::Modify,
                xmpp_parsers::stanza_error::DefinedCondition::BadRequest,
            )))),
        }
    })
}

macro_rules! iq_payloads {
    ($($ty:ty => $ns:expr, $name:literal;)*) => {$(
        impl IqPayload for $ty {
            const NS: &'static str = $ns;
            const NAME: &'static str = $name;
        }
    )*};
}

use xmpp_parsers::ns;
iq_payloads! {
    xmpp_parsers::ping::Ping => ns::PING, "ping";
    xmpp_parsers::version::VersionQuery => ns::VERSION, "query";
    xmpp_parsers::time::TimeQuery => ns::TIME, "time";
    xmpp_parsers::disco::DiscoInfoQuery => ns::DISCO_INFO, "query";
    xmpp_parsers::disco::DiscoItemsQuery => ns::DISCO_ITEMS, "query";
    xmpp_parsers::roster::Roster => ns::ROSTER, "query";
    xmpp_parsers::carbons::Enable => ns::CARBONS, "enable";
    xmpp_parsers::carbons::Disable => ns::CARBONS, "disable";
    xmpp_parsers::blocking::BlocklistRequest => ns::BLOCKING, "blocklist";
    xmpp_parsers::blocking::Block => ns::BLOCKING, "block";
    xmpp_parsers::blocking::Unblock => ns::BLOCKING, "unblock";
}
