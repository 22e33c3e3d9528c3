//! Incoming server-to-server streams (RFC 6120 §4–§6, XEP-0178, XEP-0220, XEP-0368).
//!
//! TLS is required first (STARTTLS, or direct TLS on its own port). Then the peer
//! authenticates domains: SASL EXTERNAL, offered when its certificate is valid for the
//! domain in its stream header, or dialback, verified with the authoritative server
//! over a connection of our own. Every authenticated (remote, local) pair is recorded
//! for the stream; a stanza is routed only when its `from` and `to` domains form such
//! a pair (else `invalid-from` / `host-unknown`), with no address (`improper-addressing`)
//! or before any authentication (`not-authorized`) the stream ends. This side also
//! answers dialback verification requests for our own domains (XEP-0220 §2.1.3).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use starling_api::Stanza;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::dialback::{self, Dialback, Kind, NS_DIALBACK, NS_DIALBACK_FEATURE};
use super::outgoing::{self, ConnectError};
use super::{NS_SASL, NS_SERVER, NS_TLS, S2s, domain_of};
use crate::router::JABBER_CLIENT;
use crate::stream::{ReadFailure, Transport, XmppStream};
use crate::xml::{HeaderOut, NS_STREAMS, StreamEvent, StreamHeader, write_stream_error, write_stream_header};

/// How a listener's connections start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// Plain TCP, upgraded with STARTTLS (port 5269).
    StartTls,
    /// TLS from the first byte (XEP-0368, port 5270).
    DirectTls,
}

/// Dialback verifications one stream may have in flight; each costs a connection to
/// the domain the peer names, so an unbounded number would make us a flood relay.
const MAX_VERIFYING: usize = 16;

/// A dialback verification that finished: (remote, local, outcome).
type Verified = (String, String, Result<bool, ConnectError>);

/// Runs one incoming connection to its end.
pub(super) async fn handle(s2s: Arc<S2s>, tcp: TcpStream, peer: SocketAddr, kind: ListenerKind) {
    let transport = match kind {
        ListenerKind::StartTls => Transport::Plain(tcp),
        ListenerKind::DirectTls => {
            let accept = TlsAcceptor::from(s2s.tls_direct.clone()).accept(tcp);
            match tokio::time::timeout(s2s.negotiation_timeout(), accept).await {
                Ok(Ok(tls)) => Transport::Tls(Box::new(tls)),
                Ok(Err(err)) => return tracing::debug!(error = %err, "TLS handshake failed"),
                Err(_) => return tracing::debug!("TLS handshake timed out"),
            }
        }
    };
    let (verified_tx, verified_rx) = mpsc::channel(64);
    let mut session = Incoming {
        s2s,
        local: None,
        sasl_done: false,
        stream_id: String::new(),
        authorised: HashSet::new(),
        verifying: HashSet::new(),
        verified_tx,
        verified_rx,
    };
    let mut stream = XmppStream::new(transport, peer, session.s2s.limits())
        .with_read_rate(session.s2s.read_rate())
        .with_ingress(session.s2s.ingress());
    loop {
        match session.stream(&mut stream).await {
            Next::Restart => stream.reset(),
            Next::StartTls => {
                let Transport::Plain(tcp) = stream.into_transport() else { return };
                let accept = TlsAcceptor::from(session.s2s.tls_starttls.clone()).accept(tcp);
                match tokio::time::timeout(session.s2s.negotiation_timeout(), accept).await {
                    Ok(Ok(tls)) => {
                        stream = XmppStream::new(Transport::Tls(Box::new(tls)), peer, session.s2s.limits())
                            .with_read_rate(session.s2s.read_rate())
                            .with_ingress(session.s2s.ingress());
                    }
                    _ => return tracing::debug!("STARTTLS handshake failed"),
                }
            }
            Next::Close(bytes) => {
                if let Some(bytes) = bytes {
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), stream.send(&bytes)).await;
                }
                stream.close().await;
                tracing::debug!("incoming stream closed");
                return;
            }
        }
    }
}

enum Next {
    /// SASL succeeded: a new stream on the same connection.
    Restart,
    /// `<proceed/>` was sent: TLS next.
    StartTls,
    /// The end; these bytes (stream error or footer) go out first.
    Close(Option<Vec<u8>>),
}

struct Incoming {
    s2s: Arc<S2s>,
    /// Our domain the peer addressed in its first header.
    local: Option<String>,
    sasl_done: bool,
    /// The id of the current stream (dialback keys are bound to it).
    stream_id: String,
    /// Authenticated (remote, local) pairs.
    authorised: HashSet<(String, String)>,
    /// Pairs whose dialback key is being verified.
    verifying: HashSet<(String, String)>,
    verified_tx: mpsc::Sender<Verified>,
    verified_rx: mpsc::Receiver<Verified>,
}

fn stream_error(condition: &str) -> Next {
    let mut out = Vec::new();
    write_stream_error(&mut out, condition, None);
    Next::Close(Some(out))
}

impl Incoming {
    fn header_out(&mut self, out: &mut Vec<u8>, to: Option<&str>) {
        self.stream_id = format!("{:032x}", rand::random::<u128>());
        let from = self.local.clone();
        write_stream_header(
            out,
            &HeaderOut {
                from: from.as_deref(),
                to,
                id: Some(&self.stream_id),
                version: Some("1.0"),
                lang: None,
                default_ns: NS_SERVER,
                extra_ns: &[("db", NS_DIALBACK)],
            },
        );
    }

    /// RFC 6120 §4.7 for S2S: `jabber:server`, version 1.0, and `to` one of ours.
    fn check_header(&mut self, header: &StreamHeader) -> Result<(), &'static str> {
        let to = header.to.as_deref().and_then(|t| domain_of(Some(t)));
        match (to, &self.local) {
            (Some(to), None) if self.s2s.is_local(&to) => self.local = Some(to),
            (Some(to), Some(first)) if *first == to => {}
            _ => return Err("host-unknown"),
        }
        if header.default_ns.as_deref() != Some(NS_SERVER) {
            return Err("invalid-namespace");
        }
        if header.version.as_deref() != Some("1.0") {
            return Err("unsupported-version");
        }
        Ok(())
    }

    /// One stream, from the peer's header to a restart or the end.
    async fn stream(&mut self, stream: &mut XmppStream) -> Next {
        let deadline = Instant::now() + self.s2s.negotiation_timeout();
        let header = tokio::select! {
            event = stream.next_event() => match event {
                Ok(StreamEvent::Header(header)) => header,
                Ok(_) => return stream_error("not-well-formed"),
                Err(ReadFailure::Xml(err)) => return stream_error(err.condition()),
                Err(_) => return Next::Close(None),
            },
            _ = tokio::time::sleep_until(deadline) => return Next::Close(None),
        };
        let remote = header.from.as_deref().and_then(|f| domain_of(Some(f)));
        let mut out = Vec::new();
        if let Err(condition) = self.check_header(&header) {
            self.header_out(&mut out, None);
            write_stream_error(&mut out, condition, None);
            return Next::Close(Some(out));
        }
        if let Some(remote) = &remote {
            if self.stream_id.is_empty() {
                tracing::Span::current().record("from", remote.as_str());
            }
            if self.s2s.config.s2s_blocked(remote) {
                self.header_out(&mut out, None);
                write_stream_error(&mut out, "policy-violation", Some("federation with this domain is blocked"));
                return Next::Close(Some(out));
            }
        }
        self.header_out(&mut out, remote.as_deref());
        out.extend_from_slice(b"<stream:features>");
        let tls = stream.is_tls();
        if !tls {
            out.extend_from_slice(format!("<starttls xmlns='{NS_TLS}'><required/></starttls>").as_bytes());
        } else {
            if !self.sasl_done && remote.as_deref().is_some_and(|r| self.certificate_valid(stream, r)) {
                out.extend_from_slice(
                    format!("<mechanisms xmlns='{NS_SASL}'><mechanism>EXTERNAL</mechanism></mechanisms>").as_bytes(),
                );
            }
            let s2s = &self.s2s.config.s2s;
            if s2s.allow_dialback || s2s.domains.values().any(|d| d.allow_dialback == Some(true)) {
                out.extend_from_slice(
                    format!("<dialback xmlns='{NS_DIALBACK_FEATURE}'><errors/></dialback>").as_bytes(),
                );
            }
        }
        out.extend_from_slice(b"</stream:features>");
        if stream.send(&out).await.is_err() {
            return Next::Close(None);
        }
        self.session(stream, remote).await
    }

    fn certificate_valid(&self, stream: &XmppStream, remote: &str) -> bool {
        match self.s2s.trust.verify(stream.peer_certificates(), remote) {
            Ok(()) => true,
            Err(why) => {
                tracing::debug!(%remote, %why, "peer certificate does not authenticate it");
                false
            }
        }
    }

    async fn session(&mut self, stream: &mut XmppStream, remote: Option<String>) -> Next {
        loop {
            let limit =
                if self.authorised.is_empty() { self.s2s.negotiation_timeout() } else { self.s2s.idle_timeout() };
            let wake = stream.last_activity + limit;
            let mut out = Vec::new();
            tokio::select! {
                event = stream.next_event() => match event {
                    Ok(StreamEvent::Stanza(element)) => {
                        if let Some(next) = self.element(stream, element, remote.as_deref(), &mut out) {
                            if !out.is_empty() && stream.send(&out).await.is_err() {
                                return Next::Close(None);
                            }
                            return next;
                        }
                    }
                    Ok(StreamEvent::Footer) => return Next::Close(Some(b"</stream:stream>".to_vec())),
                    Ok(StreamEvent::Header(_)) => return stream_error("not-well-formed"),
                    Err(ReadFailure::Xml(err)) => return stream_error(err.condition()),
                    Err(_) => return Next::Close(None),
                },
                Some((from, to, outcome)) = self.verified_rx.recv() => self.verified(from, to, outcome, &mut out),
                _ = tokio::time::sleep_until(wake) => {
                    if self.verifying.is_empty() {
                        return stream_error("connection-timeout");
                    }
                }
                _ = self.s2s.shutdown.cancelled() => return stream_error("system-shutdown"),
            }
            if !out.is_empty() && stream.send(&out).await.is_err() {
                return Next::Close(None);
            }
        }
    }

    /// Handles one top-level element; `Some` ends this stream.
    fn element(
        &mut self,
        stream: &XmppStream,
        element: Stanza,
        remote: Option<&str>,
        out: &mut Vec<u8>,
    ) -> Option<Next> {
        match (element.ns(), element.name()) {
            (NS_TLS, "starttls") if !stream.is_tls() => {
                out.extend_from_slice(format!("<proceed xmlns='{NS_TLS}'/>").as_bytes());
                Some(Next::StartTls)
            }
            (NS_SASL, "auth") if stream.is_tls() && !self.sasl_done => {
                self.sasl_external(stream, &element, remote, out)
            }
            (NS_DIALBACK, _) if stream.is_tls() => {
                match Dialback::parse(&element) {
                    Some(db) if db.type_.is_none() && db.kind == Kind::Result => self.dialback_result(stream, db, out),
                    Some(db) if db.type_.is_none() && db.kind == Kind::Verify => self.dialback_verify(db, out),
                    Some(_) => {}
                    None => return Some(stream_error("improper-addressing")),
                }
                None
            }
            (NS_SERVER, "message" | "presence" | "iq") => self.stanza(element).err().map(stream_error),
            (NS_STREAMS, "error") => {
                tracing::info!(error = %element, "stream error from the peer");
                Some(Next::Close(None))
            }
            _ if !stream.is_tls() => Some(stream_error("not-authorized")),
            _ => Some(stream_error("unsupported-stanza-type")),
        }
    }

    /// XEP-0178 §3 (receiving side).
    fn sasl_external(
        &mut self,
        stream: &XmppStream,
        auth: &Stanza,
        remote: Option<&str>,
        out: &mut Vec<u8>,
    ) -> Option<Next> {
        let failure = |out: &mut Vec<u8>, condition: &str| {
            out.extend_from_slice(format!("<failure xmlns='{NS_SASL}'><{condition}/></failure>").as_bytes());
            None
        };
        if auth.attr("mechanism") != Some("EXTERNAL") {
            return failure(out, "invalid-mechanism");
        }
        let text = auth.to_element().map(|e| e.text()).unwrap_or_default();
        let text = text.trim();
        let authzid = if text.is_empty() || text == "=" {
            None
        } else {
            match BASE64.decode(text).ok().and_then(|b| String::from_utf8(b).ok()) {
                Some(authzid) => Some(authzid),
                None => return failure(out, "incorrect-encoding"),
            }
        };
        // The identity is the stream's `from`; an authzid, if given, must be the same.
        let (Some(remote), Some(local)) = (remote, self.local.clone()) else { return failure(out, "not-authorized") };
        if authzid.as_deref().is_some_and(|a| domain_of(Some(a)).as_deref() != Some(remote)) {
            return failure(out, "invalid-authzid");
        }
        if !self.certificate_valid(stream, remote) {
            return failure(out, "not-authorized");
        }
        tracing::info!(%remote, "peer authenticated with SASL EXTERNAL");
        self.authorised.insert((remote.to_owned(), local));
        self.sasl_done = true;
        out.extend_from_slice(format!("<success xmlns='{NS_SASL}'/>").as_bytes());
        Some(Next::Restart)
    }

    /// XEP-0220 §2.1.2: the originating server asks for a pair; we verify the key with
    /// its authoritative server.
    fn dialback_result(&mut self, stream: &XmppStream, db: Dialback, out: &mut Vec<u8>) {
        let pair = (db.from.clone(), db.to.clone());
        if !self.s2s.is_local(&db.to) {
            out.extend_from_slice(&dialback::result_error(&db.to, &db.from, "cancel", "item-not-found"));
            return;
        }
        if self.authorised.contains(&pair) {
            out.extend_from_slice(&dialback::result_answer(&db.to, &db.from, true));
            return;
        }
        let policy = self.s2s.policy(&db.from);
        let refused = self.s2s.config.s2s_blocked(&db.from)
            || !policy.allow_dialback
            || (policy.require_valid_certificate && !self.certificate_valid(stream, &db.from));
        if refused {
            tracing::info!(remote = %db.from, "dialback refused by policy");
            out.extend_from_slice(&dialback::result_error(&db.to, &db.from, "cancel", "not-authorized"));
            return;
        }
        if self.verifying.len() >= MAX_VERIFYING {
            out.extend_from_slice(&dialback::result_error(&db.to, &db.from, "wait", "resource-constraint"));
            return;
        }
        if !self.verifying.insert(pair) {
            return;
        }
        let (s2s, tx, id) = (self.s2s.clone(), self.verified_tx.clone(), self.stream_id.clone());
        tokio::spawn(async move {
            let outcome = match tokio::time::timeout(
                s2s.negotiation_timeout(),
                outgoing::verify(&s2s, &db.to, &db.from, &id, &db.key),
            )
            .await
            {
                Ok(outcome) => outcome,
                Err(_) => Err(ConnectError::Unreachable("verification timed out".into())),
            };
            let _ = tx.send((db.from, db.to, outcome)).await;
        });
    }

    fn verified(&mut self, remote: String, local: String, outcome: Result<bool, ConnectError>, out: &mut Vec<u8>) {
        let pair = (remote, local);
        self.verifying.remove(&pair);
        let (remote, local) = &pair;
        match outcome {
            Ok(true) => {
                tracing::info!(%remote, %local, "peer authenticated with dialback");
                out.extend_from_slice(&dialback::result_answer(local, remote, true));
                self.authorised.insert(pair);
            }
            Ok(false) => {
                tracing::warn!(%remote, %local, "dialback key refused by the authoritative server");
                out.extend_from_slice(&dialback::result_answer(local, remote, false));
            }
            Err(err) => {
                tracing::warn!(%remote, error = %err, "cannot verify the dialback key");
                let condition = match err {
                    ConnectError::Unreachable(ref m) if m.contains("timed out") => "remote-server-timeout",
                    _ => "remote-server-not-found",
                };
                out.extend_from_slice(&dialback::result_error(local, remote, "cancel", condition));
            }
        }
    }

    /// XEP-0220 §2.1.3: the receiving server asks us, as authoritative server.
    fn dialback_verify(&self, db: Dialback, out: &mut Vec<u8>) {
        let id = db.id.clone().unwrap_or_default();
        let valid = self.s2s.is_local(&db.to) && self.s2s.secret.check(&db.key, &db.from, &db.to, &id);
        tracing::debug!(receiving = %db.from, originating = %db.to, valid, "answered a dialback verification");
        out.extend_from_slice(&dialback::verify_answer(&db.to, &db.from, &id, valid));
    }

    /// A stanza from the peer: only for authorised pairs (RFC 6120 §4.9.3.9, §8.1.1.1).
    fn stanza(&self, mut stanza: Stanza) -> Result<(), &'static str> {
        if self.authorised.is_empty() {
            return Err("not-authorized");
        }
        let (Some(from), Some(to)) = (domain_of(stanza.from()), domain_of(stanza.to())) else {
            return Err("improper-addressing");
        };
        if !self.authorised.contains(&(from.clone(), to.clone())) {
            return Err(if self.authorised.iter().any(|(r, _)| *r == from) { "host-unknown" } else { "invalid-from" });
        }
        stanza.set_ns(JABBER_CLIENT);
        self.s2s.deliver(stanza);
        Ok(())
    }
}
