//! Resource binding (RFC 6120 §7) and the legacy session request (RFC 3921 §3, kept
//! as a no-op for old clients as RFC 6121 Appendix E allows).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jid::{BareJid, FullJid, ResourcePart};
use starling_api::Stanza;
use starling_api::reply::{error_reply, iq_result};
use starling_api::stanza_error;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::C2sShared;
use super::negotiate::{NS_BIND, NS_CLIENT, NS_SESSION, escaped};
use super::stream::XmppStream;
use crate::config::ResourceConflict;
use crate::session::{BindOutcome, CloseReason, SessionHandle, SessionReceiver};

pub(super) type Bound = (FullJid, Arc<SessionHandle>, SessionReceiver);

/// A fresh server-generated resource (RFC 6120 §7.6.2.1).
fn generated_resource() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 9]>())
}

/// What the client asked for in an IQ before binding.
enum Request {
    Bind(Option<String>),
    Session,
    Other,
}

fn parse(iq: &Stanza) -> Result<Request, ()> {
    let element = iq.to_element().map_err(|_| ())?;
    let mut children = element.children();
    let (Some(payload), None) = (children.next(), children.next()) else { return Ok(Request::Other) };
    if iq.type_() != Some("set") {
        return Ok(Request::Other);
    }
    if payload.is("bind", NS_BIND) {
        let resource = payload.get_child("resource", NS_BIND).map(|r| r.text()).filter(|r| !r.is_empty());
        return Ok(Request::Bind(resource));
    }
    if payload.is("session", NS_SESSION) {
        return Ok(Request::Session);
    }
    Ok(Request::Other)
}

/// Handles one IQ in the bind phase. `Ok(Some(..))` once bound, `Ok(None)` to wait for
/// the next IQ, `Err(())` when the connection is gone.
pub(super) async fn bind(
    stream: &mut XmppStream,
    iq: &Stanza,
    user: &BareJid,
    shared: &C2sShared,
) -> Result<Option<Bound>, ()> {
    let reply_error = |condition| error_reply(iq, &stanza_error(ErrorType::Cancel, condition));
    let request = parse(iq).unwrap_or(Request::Other);
    let reply = match request {
        Request::Session => Some(iq_result(iq, None)),
        Request::Other => {
            if matches!(iq.type_(), Some("get" | "set")) {
                reply_error(DefinedCondition::NotAllowed)
            } else {
                None
            }
        }
        Request::Bind(resource) => match bind_resource(user, resource, shared).await {
            Ok((jid, handle, receiver)) => {
                let mut result = iq_result(iq, None);
                let payload = format!("<bind xmlns='{NS_BIND}'><jid>{}</jid></bind>", escaped(&jid.to_string()));
                result = result.with_children_xml(payload.into_bytes().into());
                send(stream, &result).await?;
                return Ok(Some((jid, handle, receiver)));
            }
            Err(condition) => Some(
                error_reply(
                    iq,
                    &stanza_error(
                        match condition {
                            DefinedCondition::BadRequest => ErrorType::Modify,
                            // RFC 6120 §7.6.2.1: the client may retry once a session ends.
                            DefinedCondition::ResourceConstraint => ErrorType::Wait,
                            _ => ErrorType::Cancel,
                        },
                        condition,
                    ),
                )
                .ok_or(())?,
            ),
        },
    };
    if let Some(reply) = reply {
        send(stream, &reply).await?;
    }
    Ok(None)
}

async fn send(stream: &mut XmppStream, stanza: &Stanza) -> Result<(), ()> {
    let mut out = Vec::new();
    stanza.write_to(&mut out, NS_CLIENT);
    stream.send(&out).await.map_err(|_| ())
}

/// Binds `resource` (or a generated one) for `user`, closing the session it replaces
/// first; for RFC 6120 binding and Bind 2 (XEP-0386) alike.
pub(super) async fn bind_resource(
    user: &BareJid,
    resource: Option<String>,
    shared: &C2sShared,
) -> Result<Bound, DefinedCondition> {
    let (bound, replaced) = try_bind(user, resource, shared)?;
    if let Some(old) = replaced {
        // Its undelivered stanzas go to offline storage and its contacts learn it left
        // before this session can announce itself.
        old.close(CloseReason::Replaced);
        let _ = tokio::time::timeout(REPLACED_WAIT, old.wait_ended()).await;
    }
    tracing::Span::current().record("jid", tracing::field::display(&bound.0));
    tracing::info!("resource bound");
    Ok(bound)
}

/// How long a bind waits for the session it replaces to finish leaving.
const REPLACED_WAIT: Duration = Duration::from_secs(5);

/// Binds a resource; also returns the session it replaced, which the caller closes.
fn try_bind(
    user: &BareJid,
    resource: Option<String>,
    shared: &C2sShared,
) -> Result<(Bound, Option<Arc<SessionHandle>>), DefinedCondition> {
    let policy = shared.config().c2s.resource_conflict;
    let mut resource = match resource {
        // RFC 6120 §7.7.2.1: a resource that fails resourceprep is a bad request.
        Some(requested) => ResourcePart::new(&requested).map_err(|_| DefinedCondition::BadRequest)?.to_string(),
        None => generated_resource(),
    };
    for _ in 0..3 {
        let jid = user.with_resource_str(&resource).map_err(|_| DefinedCondition::BadRequest)?;
        let (handle, receiver) = SessionHandle::new(jid.clone(), shared.config().limits.session_queue);
        match shared.sessions.bind(handle.clone(), policy, shared.config().c2s.max_sessions_per_account) {
            BindOutcome::Bound { replaced } => return Ok(((jid, handle, receiver), replaced)),
            BindOutcome::Conflict if policy == ResourceConflict::Random => {
                resource = format!("{resource}.{}", generated_resource());
            }
            BindOutcome::Conflict => return Err(DefinedCondition::Conflict),
            BindOutcome::TooMany => {
                tracing::info!(%user, "session limit reached; bind refused");
                return Err(DefinedCondition::ResourceConstraint);
            }
        }
    }
    Err(DefinedCondition::Conflict)
}
