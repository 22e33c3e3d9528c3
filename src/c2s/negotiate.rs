//! Stream negotiation up to a bound resource (RFC 6120 §4.3, §5 STARTTLS, §6 SASL,
//! §7 resource binding).
//!
//! The client's stream is restarted twice: after TLS and after SASL success. Before TLS
//! only `<starttls/>` is offered (authentication without TLS is refused with
//! `encryption-required`), unless the admin allowed plaintext auth on loopback.
//! SASL offers SCRAM (with -PLUS channel binding when TLS provides it, XEP-0440) and
//! PLAIN over TLS only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use jid::{BareJid, FullJid};
use starling_api::preauth::PreAuthIq;
use starling_api::reply::{error_reply, iq_result};
use starling_api::{Scope, Stanza, caps};
use tokio_rustls::TlsAcceptor;

use super::bind2::{self, Inline, InlineBound, SaslSuccess};
use super::sm::{self, NS_SM, Resumption};
use super::stream::{ReadFailure, Transport, XmppStream};
use super::{Accepted, C2sShared, ListenerKind, bind};

mod sasl2;
use crate::auth::{self, LoginCredentials};
use crate::sasl::ht::HtMechanism;
use crate::sasl::{self, ChannelBinding, Mechanism, SaslFailure, SaslServer, Step};
use crate::session::{SessionHandle, SessionReceiver};
use crate::xml::{HeaderOut, StreamEvent, StreamHeader, escape_text, write_stream_error, write_stream_header};

pub(super) const NS_CLIENT: &str = "jabber:client";
const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub(super) const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub(super) const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
const NS_SASL_CB: &str = "urn:xmpp:sasl-cb:0";
/// Extensible SASL Profile (XEP-0388).
pub(super) const NS_SASL2: &str = "urn:xmpp:sasl:2";
/// Fast Authentication Streamlining Tokens (XEP-0484).
pub(super) const NS_FAST: &str = "urn:xmpp:fast:0";
/// Stream Limits Advertisement (XEP-0478).
const NS_STREAM_LIMITS: &str = "urn:xmpp:stream-limits:0";

/// Which SASL profile an exchange uses: the RFC 6120 one, restarted after success, or
/// XEP-0388's, which continues on the same stream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Profile {
    Legacy,
    Sasl2,
}

impl Profile {
    fn ns(self) -> &'static str {
        match self {
            Profile::Legacy => NS_SASL,
            Profile::Sasl2 => NS_SASL2,
        }
    }
}

/// How the pre-authentication phase ended.
enum Authenticated {
    /// Legacy SASL or STARTTLS: the client restarts the stream.
    Restart(XmppStream),
    /// SASL2 success, not yet answered: the stream goes on without a restart
    /// (XEP-0388), as the inline requests of `<authenticate/>` say.
    Sasl2 { stream: XmppStream, success: SaslSuccess, inline: Box<Inline> },
}

/// A client that finished negotiation: authenticated, with a bound resource.
pub(super) struct Bound {
    pub stream: XmppStream,
    pub jid: FullJid,
    pub handle: Arc<SessionHandle>,
    pub receiver: SessionReceiver,
    /// Bound with Bind 2 (XEP-0386): the session answers the SASL2 authentication.
    pub inline: Option<Box<InlineBound>>,
}

/// How negotiation ended with a session.
pub(super) enum Negotiated {
    /// A new session.
    Bound(Box<Bound>),
    /// The stream went to the session it resumes (XEP-0198 §5), whose task serves it now.
    Resumed,
}

/// How negotiation ended without a session.
struct Abort {
    stream: Option<XmppStream>,
    /// Stream error condition to send, if any (RFC 6120 §4.9.3).
    condition: Option<&'static str>,
}

impl Abort {
    fn with(stream: XmppStream, condition: &'static str) -> Self {
        Abort { stream: Some(stream), condition: Some(condition) }
    }

    fn silent(stream: Option<XmppStream>) -> Self {
        Abort { stream, condition: None }
    }

    fn from_read(stream: XmppStream, failure: ReadFailure) -> Self {
        match failure {
            ReadFailure::Xml(err) => Abort::with(stream, err.condition()),
            ReadFailure::Eof | ReadFailure::Io(_) => Abort::silent(Some(stream)),
        }
    }
}

/// Runs negotiation within the configured deadline; `None` when the client went away
/// or was refused (the stream error has been sent).
pub(super) async fn negotiate(accepted: Accepted, peer: SocketAddr, shared: &C2sShared) -> Option<Negotiated> {
    let deadline = Duration::from_secs(shared.config().c2s.negotiation_timeout);
    let mut negotiation =
        Negotiation { shared, host: None, header_sent: false, user: None, cb: ChannelBinding::default() };
    let result = tokio::time::timeout(deadline, async {
        let transport = match accepted {
            Accepted::WebSocket(socket) => Transport::WebSocket(socket),
            Accepted::Bosh(session) => Transport::Bosh(session),
            Accepted::Tcp(tcp, ListenerKind::StartTls) => Transport::Plain(tcp),
            Accepted::Tcp(tcp, ListenerKind::DirectTls) => {
                match TlsAcceptor::from(shared.tls_direct.clone()).accept(tcp).await {
                    Ok(tls) => {
                        negotiation.cb = binding_of(tls.get_ref().1, shared);
                        Transport::Tls(Box::new(tls))
                    }
                    Err(err) => {
                        tracing::debug!(error = %err, "TLS handshake failed");
                        return Err(Abort::silent(None));
                    }
                }
            }
        };
        let stream = XmppStream::new(transport, peer, shared.limits())
            .with_read_rate(shared.read_rate())
            .with_stanza_rate(shared.stanza_rate())
            .with_stanza_timeout(shared.config().limits.stanza_timeout)
            .with_ingress(shared.ingress());
        negotiation.run(stream).await
    })
    .await;
    let abort = match result {
        Ok(Ok(negotiated)) => return Some(negotiated),
        Ok(Err(abort)) => abort,
        // The stream was dropped with the future; nothing more can be said to it.
        Err(_elapsed) => {
            tracing::debug!("negotiation timed out");
            return None;
        }
    };
    if let (Some(mut stream), Some(condition)) = (abort.stream, abort.condition) {
        tracing::debug!(condition, "refusing stream");
        let mut out = Vec::new();
        if !negotiation.header_sent {
            negotiation.write_header(&mut out, None);
        }
        write_stream_error(&mut out, condition, None);
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.send(&out)).await;
        stream.close().await;
    }
    None
}

struct Negotiation<'a> {
    shared: &'a C2sShared,
    /// The host the client asked for in its first header.
    host: Option<String>,
    header_sent: bool,
    /// The authenticated account, after SASL success.
    user: Option<BareJid>,
    cb: ChannelBinding,
}

impl Negotiation<'_> {
    fn write_header(&mut self, out: &mut Vec<u8>, to: Option<&str>) {
        let from = self.host.clone().unwrap_or_else(|| self.shared.config().server.hosts[0].clone());
        let id = format!("{:032x}", rand::random::<u128>());
        write_stream_header(
            out,
            &HeaderOut {
                from: Some(&from),
                to,
                id: Some(&id),
                version: Some("1.0"),
                lang: Some("en"),
                default_ns: NS_CLIENT,
                extra_ns: &[],
            },
        );
        self.header_sent = true;
    }

    async fn run(&mut self, mut stream: XmppStream) -> Result<Negotiated, Abort> {
        loop {
            self.header_sent = false;
            let header = match stream.next_event().await {
                Ok(StreamEvent::Header(header)) => header,
                Ok(_) => return Err(Abort::with(stream, "not-well-formed")),
                Err(failure) => return Err(Abort::from_read(stream, failure)),
            };
            if let Err(condition) = self.check_header(&header) {
                return Err(Abort::with(stream, condition));
            }
            let mut out = Vec::new();
            let to = header.from.as_deref().filter(|f| jid::Jid::new(f).is_ok());
            self.write_header(&mut out, to);
            if self.user.is_some() {
                self.write_bound_features(&mut out);
                if stream.send(&out).await.is_err() {
                    return Err(Abort::silent(None));
                }
                return self.bind_phase(stream).await;
            }
            let tls = stream.is_tls();
            let plaintext_ok =
                !tls && self.shared.config().c2s.allow_plaintext_auth_on_loopback && stream.peer.ip().is_loopback();
            let mechanisms = if tls || plaintext_ok {
                sasl::offered_mechanisms(&self.cb, true, &self.shared.offered_hashes.hashes())
            } else {
                Vec::new()
            };
            out.extend_from_slice(b"<stream:features>");
            if !tls && stream.can_starttls() {
                out.extend_from_slice(format!("<starttls xmlns='{NS_TLS}'>").as_bytes());
                if !plaintext_ok {
                    out.extend_from_slice(b"<required/>");
                }
                out.extend_from_slice(b"</starttls>");
            }
            if !mechanisms.is_empty() {
                out.extend_from_slice(format!("<mechanisms xmlns='{NS_SASL}'>").as_bytes());
                for mechanism in &mechanisms {
                    out.extend_from_slice(format!("<mechanism>{}</mechanism>", mechanism.name()).as_bytes());
                }
                out.extend_from_slice(b"</mechanisms>");
                // XEP-0388: the same mechanisms for the SASL2 profile, over TLS only.
                if tls {
                    let host = self.host.clone().unwrap_or_default();
                    out.extend_from_slice(
                        sasl2::authentication_feature(self.shared, &host, &mechanisms, &self.cb).as_bytes(),
                    );
                }
                let types = self.cb.types();
                if !types.is_empty() {
                    out.extend_from_slice(format!("<sasl-channel-binding xmlns='{NS_SASL_CB}'>").as_bytes());
                    for type_ in types {
                        out.extend_from_slice(format!("<channel-binding type='{type_}'/>").as_bytes());
                    }
                    out.extend_from_slice(b"</sasl-channel-binding>");
                }
            }
            self.write_limits(&mut out);
            if !mechanisms.is_empty() {
                // Pre-authentication features (XEP-0077 registration) need a secured
                // stream, like SASL.
                let host = self.host.clone().unwrap_or_default();
                let context = &self.shared.context;
                for (feature, module) in context.registry().pre_auth_stream_features() {
                    if context.module_enabled(context.registry().modules()[module].name, &host)
                        && let Some(xml) = feature(context, &host)
                    {
                        out.extend_from_slice(xml.as_bytes());
                    }
                }
            }
            out.extend_from_slice(b"</stream:features>");
            if stream.send(&out).await.is_err() {
                return Err(Abort::silent(None));
            }
            stream = match self.pre_auth_phase(stream, &mechanisms).await? {
                Authenticated::Restart(stream) => stream,
                Authenticated::Sasl2 { stream, success, inline } => {
                    return self.after_sasl2(stream, success, *inline).await;
                }
            };
        }
    }

    /// The features of an authenticated stream: binding, SM, CSI, caps and modules'.
    fn write_bound_features(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"<stream:features>");
        out.extend_from_slice(
                    format!("<bind xmlns='{NS_BIND}'/><session xmlns='{NS_SESSION}'><optional/></session><csi xmlns='urn:xmpp:csi:0'/><sm xmlns='{NS_SM}'/>")
                        .as_bytes(),
                );
        let host = self.host.clone().unwrap_or_default();
        // XEP-0115 §6.3: the server's capabilities, so clients can cache its disco.
        let (identities, features) = caps::disco_info(&self.shared.context, &host, &[Scope::Server]);
        let forms = caps::disco_forms(&self.shared.context, &host, &[Scope::Server]);
        out.extend_from_slice(
            format!(
                "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='{}' ver='{}'/>",
                caps::CAPS_NODE,
                caps::ver(&identities, &features, &forms)
            )
            .as_bytes(),
        );
        for (feature, module) in self.shared.context.registry().stream_features() {
            if self.shared.context.module_enabled(module.name, &host) {
                out.extend_from_slice(feature.as_bytes());
            }
        }
        self.write_limits(out);
        out.extend_from_slice(b"</stream:features>");
    }

    /// XEP-0478: the largest stanza accepted and the silence after which the server
    /// checks the client is still there (an XEP-0199 ping, see the session).
    fn write_limits(&self, out: &mut Vec<u8>) {
        let config = self.shared.config();
        out.extend_from_slice(
            format!(
                "<limits xmlns='{NS_STREAM_LIMITS}'><max-bytes>{}</max-bytes><idle-seconds>{}</idle-seconds></limits>",
                config.limits.max_stanza_bytes, config.c2s.idle_timeout
            )
            .as_bytes(),
        );
    }

    /// RFC 6120 §4.7: namespace, version, and a `to` we serve (the same on restarts).
    fn check_header(&mut self, header: &StreamHeader) -> Result<(), &'static str> {
        let hosts = &self.shared.config().server.hosts;
        let requested = match header.to.as_deref() {
            Some(to) => match jid::BareJid::new(to) {
                Ok(jid) if jid.node().is_none() => Some(jid.domain().to_string()),
                _ => None,
            },
            // RFC 6120 §4.7.2 lets a client leave `to` out; with one host there is no ambiguity.
            None if hosts.len() == 1 => Some(hosts[0].clone()),
            None => None,
        };
        let requested = requested.filter(|h| hosts.contains(h));
        match (&self.host, requested) {
            (_, None) => return Err("host-unknown"),
            (None, Some(host)) => self.host = Some(host),
            (Some(first), Some(host)) if *first != host => return Err("host-unknown"),
            _ => {}
        }
        if header.default_ns.as_deref() != Some(NS_CLIENT) {
            return Err("invalid-namespace");
        }
        if header.version.as_deref() != Some("1.0") {
            return Err("unsupported-version");
        }
        Ok(())
    }

    /// Until TLS is up and SASL succeeded. Returns the stream to restart.
    async fn pre_auth_phase(
        &mut self,
        mut stream: XmppStream,
        mechanisms: &[Mechanism],
    ) -> Result<Authenticated, Abort> {
        loop {
            let element = match stream.next_event().await {
                Ok(StreamEvent::Stanza(element)) => element,
                Ok(StreamEvent::Footer) => return Err(Abort::silent(Some(stream))),
                Ok(StreamEvent::Header(_)) => return Err(Abort::with(stream, "not-well-formed")),
                Err(failure) => return Err(Abort::from_read(stream, failure)),
            };
            match (element.ns(), element.name()) {
                (NS_TLS, "starttls") if stream.can_starttls() => {
                    if stream.send(format!("<proceed xmlns='{NS_TLS}'/>").as_bytes()).await.is_err() {
                        return Err(Abort::silent(None));
                    }
                    return self.start_tls(stream).await.map(Authenticated::Restart);
                }
                (NS_SASL, "auth") | (NS_SASL2, "authenticate")
                    if mechanisms.is_empty() || (element.ns() == NS_SASL2 && !stream.is_tls()) =>
                {
                    let profile = if element.ns() == NS_SASL2 { Profile::Sasl2 } else { Profile::Legacy };
                    let failure = sasl_failure(profile, SaslFailure::EncryptionRequired);
                    if stream.send(&failure).await.is_err() {
                        return Err(Abort::silent(None));
                    }
                }
                (NS_SASL, "auth") => {
                    if let Some(success) = self.authenticate(&mut stream, &element, mechanisms, Profile::Legacy).await?
                    {
                        let answer = match success.additional_data {
                            Some(data) => format!("<success xmlns='{NS_SASL}'>{}</success>", BASE64.encode(data)),
                            None => format!("<success xmlns='{NS_SASL}'/>"),
                        };
                        send_or_abort(&mut stream, answer.as_bytes()).await?;
                        stream.reset();
                        return Ok(Authenticated::Restart(stream));
                    }
                }
                (NS_SASL2, "authenticate") => {
                    let token_mechanism = element.attr("mechanism").and_then(HtMechanism::from_name);
                    let requests = sasl2::Requests::of(&element);
                    let (success, token_used) = match token_mechanism {
                        Some(mechanism) => {
                            match self.authenticate_token(&mut stream, &element, &requests, mechanism).await? {
                                Some((success, used)) => (Some(success), Some(used)),
                                None => (None, None),
                            }
                        }
                        None => (self.authenticate(&mut stream, &element, mechanisms, Profile::Sasl2).await?, None),
                    };
                    if let Some(mut success) = success
                        && self.finish_sasl2(&mut stream, &requests, &mut success, token_used).await?
                    {
                        return Ok(Authenticated::Sasl2 { stream, success, inline: Box::new(Inline::of(&element)) });
                    }
                }
                (NS_CLIENT, "iq") if !mechanisms.is_empty() => {
                    if !self.pre_auth_iq(&mut stream, &element).await? {
                        return Err(Abort::with(stream, "not-authorized"));
                    }
                }
                _ => return Err(Abort::with(stream, "not-authorized")),
            }
        }
    }

    /// An IQ before authentication, for a module's pre-authentication handler (see
    /// `starling_api::preauth`). `Ok(false)` when no enabled module handles it.
    async fn pre_auth_iq(&mut self, stream: &mut XmppStream, iq: &Stanza) -> Result<bool, Abort> {
        let (Some(kind), Ok(payload)) = (crate::router::iq_kind(iq), crate::router::single_payload(iq)) else {
            return Ok(false);
        };
        let host = self.host.clone().unwrap_or_default();
        let context = &self.shared.context;
        let Some((handler, module)) = context.registry().pre_auth_iq_handler(kind, &payload.ns(), payload.name())
        else {
            return Ok(false);
        };
        if !context.module_enabled(context.registry().modules()[module].name, &host) {
            return Ok(false);
        }
        let request = PreAuthIq {
            host,
            peer: stream.peer.ip(),
            connection: stream.peer,
            id: iq.id().unwrap_or_default().to_owned(),
            lang: iq.attr("xml:lang").map(str::to_owned),
            payload,
        };
        let reply = match handler.clone()(context.clone(), request).await {
            Ok(payload) => Some(iq_result(iq, payload.as_ref())),
            Err(error) => error_reply(iq, &error),
        };
        if let Some(reply) = reply {
            let mut out = Vec::new();
            reply.write_to(&mut out, NS_CLIENT);
            send_or_abort(stream, &out).await?;
        }
        Ok(true)
    }

    async fn start_tls(&mut self, stream: XmppStream) -> Result<XmppStream, Abort> {
        let peer = stream.peer;
        let Transport::Plain(tcp) = stream.into_transport() else {
            return Err(Abort::silent(None));
        };
        let tls = match TlsAcceptor::from(self.shared.tls_starttls.clone()).accept(tcp).await {
            Ok(tls) => tls,
            Err(err) => {
                tracing::debug!(error = %err, "STARTTLS handshake failed");
                return Err(Abort::silent(None));
            }
        };
        self.cb = binding_of(tls.get_ref().1, self.shared);
        Ok(XmppStream::new(Transport::Tls(Box::new(tls)), peer, self.shared.limits())
            .with_read_rate(self.shared.read_rate())
            .with_stanza_rate(self.shared.stanza_rate())
            .with_stanza_timeout(self.shared.config().limits.stanza_timeout)
            .with_ingress(self.shared.ingress()))
    }

    /// One SASL exchange (RFC 6120 §6.4). `Ok(Some(..))` on success, which the caller
    /// answers; failures are answered here.
    async fn authenticate(
        &mut self,
        stream: &mut XmppStream,
        auth: &Stanza,
        offered: &[Mechanism],
        profile: Profile,
    ) -> Result<Option<SaslSuccess>, Abort> {
        let ns = profile.ns();
        let ip = stream.peer.ip();
        let host = self.host.clone().unwrap_or_default();
        let requested = auth.attr("mechanism").and_then(Mechanism::from_name).filter(|m| offered.contains(m));
        let mechanism = match requested {
            _ if self.shared.throttle.ip_blocked(ip) => Err(SaslFailure::TemporaryAuthFailure),
            Some(mechanism) => Ok(mechanism),
            None => Err(SaslFailure::InvalidMechanism),
        };
        let mechanism = match mechanism {
            Ok(mechanism) => mechanism,
            Err(failure) => {
                send_or_abort(stream, &sasl_failure(profile, failure)).await?;
                return Ok(None);
            }
        };
        let names: Vec<&str> = offered.iter().map(|m| m.name()).collect();
        let advertised = sasl::downgrade_protection_input(&names, &self.cb.types());
        let mut server = SaslServer::start(mechanism, self.cb.clone(), Some(&advertised));
        let mut account: Option<String> = None;
        let initial = match profile {
            Profile::Legacy => sasl_payload(auth),
            Profile::Sasl2 => sasl2_initial_response(auth),
        };
        let mut input = match initial {
            Ok(Some(data)) => data,
            Ok(None) => {
                // No initial response: ask for it with an empty challenge (RFC 6120 §6.4.2).
                send_or_abort(stream, format!("<challenge xmlns='{ns}'/>").as_bytes()).await?;
                match self.next_response(stream, profile).await? {
                    Some(data) => data,
                    None => return Ok(None),
                }
            }
            Err(failure) => {
                send_or_abort(stream, &sasl_failure(profile, failure)).await?;
                return Ok(None);
            }
        };
        let mut step = server.step(&input);
        loop {
            match step {
                Step::Challenge(data) => {
                    let challenge = format!("<challenge xmlns='{ns}'>{}</challenge>", BASE64.encode(data));
                    send_or_abort(stream, challenge.as_bytes()).await?;
                    input = match self.next_response(stream, profile).await? {
                        Some(data) => data,
                        None => return Ok(None),
                    };
                    step = server.step(&input);
                }
                Step::NeedCredentials { username, hash } => {
                    let normalised = starling_api::parse_bare_jid(&format!("{username}@{host}"))
                        .ok()
                        .and_then(|j| j.node().map(|n| n.to_string()));
                    account = normalised.clone().map(|u| format!("{u}@{host}"));
                    if account.as_deref().is_some_and(|a| self.shared.throttle.account_blocked(a)) {
                        send_or_abort(stream, &sasl_failure(profile, SaslFailure::TemporaryAuthFailure)).await?;
                        return Ok(None);
                    }
                    let creds = match normalised {
                        None => LoginCredentials::Unknown,
                        Some(user) => match auth::login_credentials(&self.shared.db, &host, &user, hash).await {
                            Ok(creds) => creds,
                            Err(err) => {
                                tracing::error!(error = %err, "credential lookup failed");
                                send_or_abort(stream, &sasl_failure(profile, SaslFailure::TemporaryAuthFailure))
                                    .await?;
                                return Ok(None);
                            }
                        },
                    };
                    step = match creds {
                        LoginCredentials::Found(creds) => server.credentials(Some(creds)),
                        LoginCredentials::Unknown => server.credentials(None),
                        LoginCredentials::Disabled => Step::Failure(SaslFailure::AccountDisabled),
                    };
                }
                Step::Success { username, authzid, additional_data } => {
                    let Some(jid) = starling_api::parse_bare_jid(&format!("{username}@{host}")).ok() else {
                        send_or_abort(stream, &sasl_failure(profile, SaslFailure::NotAuthorized)).await?;
                        return Ok(None);
                    };
                    if authzid.as_deref().is_some_and(|a| starling_api::parse_bare_jid(a).ok().as_ref() != Some(&jid)) {
                        send_or_abort(stream, &sasl_failure(profile, SaslFailure::InvalidAuthzid)).await?;
                        return Ok(None);
                    }
                    tracing::info!(%jid, mechanism = mechanism.name(), "authenticated");
                    crate::metrics::authentication(true);
                    self.user = Some(jid);
                    return Ok(Some(SaslSuccess { additional_data, fast_token: None }));
                }
                Step::Failure(failure) => {
                    if matches!(failure, SaslFailure::NotAuthorized | SaslFailure::AccountDisabled) {
                        self.shared.throttle.record_failure(ip, account.as_deref());
                        crate::metrics::authentication(false);
                        tracing::info!(account = account.as_deref().unwrap_or("?"), "authentication failed");
                    }
                    send_or_abort(stream, &sasl_failure(profile, failure)).await?;
                    return Ok(None);
                }
            }
        }
    }

    /// The next `<response/>`; `None` after `<abort/>` (answered with `aborted`).
    async fn next_response(&mut self, stream: &mut XmppStream, profile: Profile) -> Result<Option<Vec<u8>>, Abort> {
        let ns = profile.ns();
        let element = match stream.next_event().await {
            Ok(StreamEvent::Stanza(element)) => element,
            Ok(_) => return Err(Abort::silent(None)),
            Err(ReadFailure::Xml(err)) => {
                let condition = err.condition();
                return Err(Abort { stream: None, condition: Some(condition) });
            }
            Err(_) => return Err(Abort::silent(None)),
        };
        match (element.ns(), element.name()) {
            (element_ns, "response") if element_ns == ns => match sasl_payload(&element) {
                Ok(data) => Ok(Some(data.unwrap_or_default())),
                Err(failure) => {
                    send_or_abort(stream, &sasl_failure(profile, failure)).await?;
                    Ok(None)
                }
            },
            (element_ns, "abort") if element_ns == ns => {
                send_or_abort(stream, &sasl_failure(profile, SaslFailure::Aborted)).await?;
                Ok(None)
            }
            _ => Err(Abort::silent(None)),
        }
    }

    /// After SASL2 success (XEP-0388 §2.5): an inline resumption hands the stream to
    /// its session, which answers; an inline Bind 2 request binds, and the new session
    /// answers; otherwise `<success/>` goes out now (with `<failed/>` for a resumption
    /// that failed) and binding follows the bound-stream features.
    async fn after_sasl2(
        &mut self,
        mut stream: XmppStream,
        mut success: SaslSuccess,
        inline: Inline,
    ) -> Result<Negotiated, Abort> {
        let Some(user) = self.user.clone() else { return Err(Abort::silent(None)) };
        let mut before_bound = Vec::new();
        match inline.resume {
            Some(Ok((previd, h))) => {
                let resumption = Resumption { stream, h, sasl2: Some(success) };
                match self.shared.resumes.resume(&previd, &user, resumption) {
                    Ok(()) => return Ok(Negotiated::Resumed),
                    Err(refused) => {
                        tracing::debug!(known = refused.h.is_some(), "inline resumption refused");
                        stream = refused.resumption.stream;
                        success =
                            refused.resumption.sasl2.unwrap_or(SaslSuccess { additional_data: None, fast_token: None });
                        before_bound = sm::failed("item-not-found", refused.h);
                    }
                }
            }
            Some(Err(())) => before_bound = sm::failed("bad-request", None),
            None => {}
        }
        let Some(request) = inline.bind else {
            let mut out = success.open(&user.to_string()).into_bytes();
            out.extend_from_slice(&before_bound);
            out.extend_from_slice(b"</success>");
            self.write_bound_features(&mut out);
            send_or_abort(&mut stream, &out).await?;
            return self.bind_phase(stream).await;
        };
        let resource = bind2::resource(&request, inline.user_agent_id.as_deref());
        match bind::bind_resource(&user, Some(resource), self.shared).await {
            Ok((jid, handle, receiver)) => {
                let inline = InlineBound::new(self.shared, &jid, &request, success, before_bound);
                Ok(Negotiated::Bound(Box::new(Bound { stream, jid, handle, receiver, inline: Some(Box::new(inline)) })))
            }
            Err(condition) => {
                // Authenticated, but without a session the stream has no use.
                tracing::info!(?condition, "Bind 2 failed");
                Err(Abort::with(stream, "internal-server-error"))
            }
        }
    }

    /// After SASL: legacy session requests are acknowledged, the bind request binds,
    /// `<resume/>` hands the stream to the session it names (XEP-0198 §5).
    async fn bind_phase(&mut self, mut stream: XmppStream) -> Result<Negotiated, Abort> {
        let Some(user) = self.user.clone() else { return Err(Abort::silent(None)) };
        loop {
            let element = match stream.next_event().await {
                Ok(StreamEvent::Stanza(element)) => element,
                Ok(_) => return Err(Abort::silent(Some(stream))),
                Err(failure) => return Err(Abort::from_read(stream, failure)),
            };
            if element.ns() == NS_SM {
                stream = match self.resume(stream, &element, &user) {
                    Ok(()) => return Ok(Negotiated::Resumed),
                    Err(mut refused) => {
                        send_or_abort(&mut refused.stream, &refused.answer).await?;
                        refused.stream
                    }
                };
                continue;
            }
            if element.name() != "iq" || element.ns() != NS_CLIENT {
                return Err(Abort::with(stream, "not-authorized"));
            }
            match bind::bind(&mut stream, &element, &user, self.shared).await {
                Ok(Some((jid, handle, receiver))) => {
                    return Ok(Negotiated::Bound(Box::new(Bound { stream, jid, handle, receiver, inline: None })));
                }
                Ok(None) => {}
                Err(()) => return Err(Abort::silent(None)),
            }
        }
    }

    /// `<resume previd h/>`: hands the stream to the session `previd` when it is this
    /// account's and still resumable. Anything else in the XEP-0198 namespace before
    /// binding is an unexpected request (`<enable/>` needs a bound resource, §3).
    fn resume(&self, stream: XmppStream, element: &Stanza, user: &BareJid) -> Result<(), NotResumed> {
        let request = (element.name() == "resume")
            .then(|| Some((element.attr("previd")?, element.attr("h")?.parse::<u32>().ok()?)));
        let (previd, h) = match request {
            Some(Some(request)) => request,
            Some(None) => return Err(NotResumed { stream, answer: sm::failed("bad-request", None) }),
            None => return Err(NotResumed { stream, answer: sm::failed("unexpected-request", None) }),
        };
        match self.shared.resumes.resume(previd, user, Resumption { stream, h, sasl2: None }) {
            Ok(()) => Ok(()),
            Err(refused) => {
                tracing::debug!(known = refused.h.is_some(), "resumption refused");
                Err(NotResumed { stream: refused.resumption.stream, answer: sm::failed("item-not-found", refused.h) })
            }
        }
    }
}

/// A stream management element before binding that did not resume a session: the
/// stream, and the answer to send on it.
struct NotResumed {
    stream: XmppStream,
    answer: Vec<u8>,
}

fn binding_of(tls: &rustls::ServerConnection, shared: &C2sShared) -> ChannelBinding {
    let (exporter, end_point) = crate::tls::channel_binding(tls, &shared.certs);
    ChannelBinding { tls_exporter: exporter, tls_server_end_point: end_point }
}

async fn send_or_abort(stream: &mut XmppStream, bytes: &[u8]) -> Result<(), Abort> {
    stream.send(bytes).await.map_err(|_| Abort::silent(None))
}

/// The base64 payload of `<auth/>` or `<response/>`: `None` when the element is empty,
/// `Some(empty)` for `=` (RFC 6120 §6.4.2).
fn sasl_payload(element: &Stanza) -> Result<Option<Vec<u8>>, SaslFailure> {
    let text = element.to_element().map_err(|_| SaslFailure::MalformedRequest)?.text();
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    sasl::decode_b64(text).map(Some)
}

/// The base64 payload of SASL2's `<initial-response/>` child, `None` when absent
/// (XEP-0388).
fn sasl2_initial_response(authenticate: &Stanza) -> Result<Option<Vec<u8>>, SaslFailure> {
    let element = authenticate.to_element().map_err(|_| SaslFailure::MalformedRequest)?;
    let Some(initial) = element.get_child("initial-response", NS_SASL2) else {
        return Ok(None);
    };
    let text = initial.text();
    // An empty `<initial-response/>` is an empty response, unlike a missing one.
    sasl::decode_b64(text.trim()).map(Some)
}

/// `<failure/>` in the profile's namespace; SASL2 keeps the RFC 6120 condition in its
/// own namespace (XEP-0388).
fn sasl_failure(profile: Profile, failure: SaslFailure) -> Vec<u8> {
    match profile {
        Profile::Legacy => format!("<failure xmlns='{NS_SASL}'><{}/></failure>", failure.condition()),
        Profile::Sasl2 => {
            format!("<failure xmlns='{NS_SASL2}'><{} xmlns='{NS_SASL}'/></failure>", failure.condition())
        }
    }
    .into_bytes()
}

/// `<jid>` text for the bind result.
pub(super) fn escaped(text: &str) -> String {
    let mut out = Vec::new();
    escape_text(&mut out, text);
    String::from_utf8(out).unwrap_or_default()
}
