//! Requests from clients that have not authenticated yet: XEP-0077 in-band
//! registration is the one protocol that needs them.
//!
//! A module registers pre-authentication IQ handlers and stream features with
//! [`crate::Registrar::pre_auth_iq_get`], [`crate::Registrar::pre_auth_iq_set`] and
//! [`crate::Registrar::pre_auth_stream_feature`]. The core offers those features and
//! dispatches those IQs only on a secured stream (TLS, or plaintext on loopback when the
//! admin allowed plaintext authentication there), by the same rule as SASL; any other
//! stanza before authentication still ends the stream with `not-authorized`
//! (RFC 6120 §4.9.3.12).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use minidom::Element;

use crate::{BoxFuture, Context, IqPayload, IqResult};

/// An IQ get/set from a client before authentication.
#[derive(Debug, Clone)]
pub struct PreAuthIq<P> {
    /// The virtual host the client opened its stream to.
    pub host: String,
    /// The client's address (for rate limits).
    pub peer: IpAddr,
    /// The client's address and port: tells one connection from another, so a module
    /// can keep what an earlier request on the same stream established (XEP-0445's
    /// `<preauth/>` before a XEP-0077 registration).
    pub connection: SocketAddr,
    /// The request id, echoed in the reply.
    pub id: String,
    /// `xml:lang` of the request, if any.
    pub lang: Option<String>,
    /// The parsed payload.
    pub payload: P,
}

/// A type-erased pre-authentication IQ handler.
pub type PreAuthIqFn = Arc<dyn Fn(Context, PreAuthIq<Element>) -> BoxFuture<'static, IqResult> + Send + Sync>;

/// Contributes an element (as XML) to the stream features offered before
/// authentication on streams to `host`, or nothing.
pub type PreAuthFeatureFn = Arc<dyn Fn(&Context, &str) -> Option<String> + Send + Sync>;

/// Wraps a typed handler so that the payload is parsed before it runs; a payload that
/// does not parse is answered with `bad-request`.
pub(crate) fn erase<P, F, Fut>(handler: F) -> PreAuthIqFn
where
    P: IqPayload,
    F: Fn(Context, PreAuthIq<P>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = IqResult> + Send + 'static,
{
    Arc::new(move |ctx, req: PreAuthIq<Element>| {
        let PreAuthIq { host, peer, connection, id, lang, payload } = req;
        match P::try_from(payload) {
            Ok(payload) => Box::pin(handler(ctx, PreAuthIq { host, peer, connection, id, lang, payload })),
            Err(_) => Box::pin(std::future::ready(Err(crate::stanza_error(
                xmpp_parsers::stanza_error::ErrorType::Modify,
                xmpp_parsers::stanza_error::DefinedCondition::BadRequest,
            )))),
        }
    })
}
