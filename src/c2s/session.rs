//! A bound client session (RFC 6120 §7 onward): stanzas from the client are stamped
//! with its full JID and routed; stanzas queued for it are written in batches.
//!
//! The task ends when the client closes the stream, the connection fails, the server
//! closes the session from outside (resource conflict, queue overflow), the client is
//! silent too long, or the server shuts down; each case sends the matching stream error
//! (RFC 6120 §4.9.3). Whatever ends it, the session leaves the table and the contacts
//! it sent directed presence to learn that it went offline (RFC 6121 §4.6.3).
//!
//! With stream management (XEP-0198, [`super::sm`]) every stanza written is kept until
//! the client acknowledges it. When the connection of a resumable session drops or
//! times out, the task hibernates instead of ending: the session stays in the table
//! (still available to its contacts), stanzas for it wait in its queue, and a new
//! connection that resumes it hands its stream over, after which the unacknowledged
//! stanzas are sent again as they were. A session with stream management that ends
//! (hibernation expired, replaced, closed) hands what the client never acknowledged,
//! and what it never got, to offline storage before the usual end-of-session path.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use jid::FullJid;
use starling_api::hooks::{MessageSent, PresenceBroadcast, SessionEnded, SessionStarted, SubscriptionOut};
use starling_api::reply::error_reply;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};
use starling_api::{Flow, Stanza, stanza_error};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::C2sShared;
use super::bind2::{InlineBound, NS_BIND2, NS_CSI, SaslSuccess};
use super::negotiate::{Bound, NS_CLIENT};
use super::sm::{self, NS_SM, Resumption, StreamManagement};
use super::stream::{ReadFailure, XmppStream};
use crate::session::{CloseReason, SessionHandle, SessionReceiver};
use crate::xml::{StreamEvent, write_stream_error};

/// Stanzas held for an inactive client before they are sent anyway.
const CSI_MAX_HELD: usize = 256;

/// What an inactive client (XEP-0352) is spared: presence updates and messages without
/// content (chat states, receipts, markers) wait until it is active again or until
/// something important comes, which takes the held stanzas along, in order.
#[derive(Default)]
struct Csi {
    inactive: bool,
    held: Vec<Stanza>,
}

impl Csi {
    /// Adds `stanza` to `out` now, or holds it.
    fn write(&mut self, stanza: Stanza, out: &mut Outbox) {
        if self.inactive && !important(&stanza) && self.held.len() < CSI_MAX_HELD {
            if stanza.name() == "presence" {
                // Only the latest presence of each contact matters.
                self.held.retain(|h| h.name() != "presence" || h.from() != stanza.from());
            }
            self.held.push(stanza);
            return;
        }
        self.flush(out);
        out.push(stanza);
    }

    fn flush(&mut self, out: &mut Outbox) {
        for held in self.held.drain(..) {
            out.push(held);
        }
    }
}

/// Whether a stanza must reach an inactive client at once: IQs, subscription requests,
/// errors, and messages with content (a body, a subject, encrypted payloads…).
fn important(stanza: &Stanza) -> bool {
    match stanza.name() {
        "presence" => {
            matches!(stanza.type_(), Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed" | "error"))
        }
        "message" => {
            const FILLER: [&str; 4] = [
                "http://jabber.org/protocol/chatstates",
                "urn:xmpp:receipts",
                "urn:xmpp:chat-markers:0",
                "urn:xmpp:hints",
            ];
            stanza.type_() == Some("error") || stanza.child_elements().any(|c| !FILLER.contains(&c.ns()))
        }
        _ => true,
    }
}

/// Bytes of queued stanzas written with one syscall at most.
const WRITE_BATCH: usize = 64 * 1024;
/// A client that does not read for this long while we have data for it is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

enum End {
    /// Send this stream error, then close.
    Error(&'static str),
    /// The client closed its stream: answer with ours.
    Footer,
    /// Nothing can be written any more.
    Gone,
    /// Send these stanzas, then this stream error, then close.
    ErrorAfter(Vec<u8>, &'static str),
    /// A new connection resumes the session (XEP-0198 §5).
    Resumed(Box<Resumption>),
    /// The client acknowledged `h` stanzas of the `sent` the server sent (XEP-0198 §4):
    /// `undefined-condition` with `<handled-count-too-high/>`.
    TooManyAcked { h: u32, sent: u32 },
}

/// How a write ended.
enum Written {
    Done,
    Failed(End),
    Closed(Result<CloseReason, oneshot::error::RecvError>),
}

/// The bytes of the next write, and the stream management state that counts and keeps
/// every stanza written.
#[derive(Default)]
struct Outbox {
    bytes: Vec<u8>,
    sm: Option<StreamManagement>,
}

impl Outbox {
    fn push(&mut self, stanza: Stanza) {
        stanza.write_to(&mut self.bytes, NS_CLIENT);
        if let Some(sm) = &mut self.sm {
            sm.record(stanza);
        }
    }
}

/// The next resumption for a resumable session; never for others.
async fn next_resumption(resumptions: &mut Option<mpsc::Receiver<Resumption>>) -> Option<Resumption> {
    match resumptions {
        Some(resumptions) => resumptions.recv().await,
        None => std::future::pending().await,
    }
}

/// Runs the session until it ends, then removes it from the table.
pub(super) async fn run(bound: Bound, shared: &C2sShared) {
    let Bound { stream, jid, handle, receiver, inline } = bound;
    let mut session = Session {
        jid_text: jid.to_string(),
        jid,
        handle,
        directed: BTreeSet::new(),
        shared,
        receiver,
        csi: Csi::default(),
        out: Outbox::default(),
        resumptions: None,
        backlog_due: false,
        ack_due: false,
        stored_h: 0,
    };
    shared.context.run_hook(&mut SessionStarted { jid: session.jid.clone() });
    if let Some(inline) = inline {
        session.start_inline(*inline);
    }

    // The rarely taken steps (hibernating, resuming, finishing, the first backlog) are
    // boxed: an idle session's task holds only the state of the step it is in, and
    // that is `connected` for almost all of its life.
    let mut stream = stream;
    let (end, stream) = loop {
        let resumption = match session.connected(&mut stream).await {
            End::Resumed(resumption) => resumption,
            End::Gone | End::Error("connection-timeout") if session.resumable() => {
                drop(stream);
                match Box::pin(session.hibernate()).await {
                    Ok(resumption) => resumption,
                    Err(end) => break (end, None),
                }
            }
            end => break (end, Some(stream)),
        };
        let Resumption { stream: resumed, h, sasl2 } = *resumption;
        stream = resumed;
        if let Some(end) = Box::pin(session.resume(&mut stream, h, sasl2)).await {
            break (end, Some(stream));
        }
    };
    Box::pin(session.finish(end, stream)).await;
    tracing::info!("session ended");
}

fn unavailable(from: &str, to: &str) -> Stanza {
    let mut presence = Stanza::new("presence", NS_CLIENT);
    presence.set_attr("from", Some(from));
    presence.set_attr("to", Some(to));
    presence.set_attr("type", Some("unavailable"));
    presence
}

/// A bound session: its identity, its queue, and what its stanza handlers share.
struct Session<'a> {
    jid: FullJid,
    jid_text: String,
    handle: Arc<SessionHandle>,
    /// Where this session sent directed available presence (RFC 6121 §4.6).
    directed: BTreeSet<String>,
    shared: &'a C2sShared,
    receiver: SessionReceiver,
    csi: Csi,
    out: Outbox,
    /// Where resumptions arrive, once the client enabled resumable stream management.
    resumptions: Option<mpsc::Receiver<Resumption>>,
    /// Initial presence was just sent: the modules' backlogs are owed before the queue.
    backlog_due: bool,
    /// The client asked for an acknowledgement (XEP-0198 `<r/>`).
    ack_due: bool,
    /// The count of handled stanzas known to be stored (see `stored_count`).
    stored_h: u32,
}

impl Session<'_> {
    /// Serves one connection until it ends or another connection resumes the session.
    async fn connected(&mut self, stream: &mut XmppStream) -> End {
        let shared = self.shared;
        let idle = Duration::from_secs(shared.config().c2s.idle_timeout);
        let mut ping_sent: Option<Instant> = None;
        // What the session owes before it reads (the SASL2 success of an inline bind).
        if let Err(end) = self.write_out(stream).await {
            return end;
        }
        loop {
            let wake = match ping_sent {
                Some(sent) if stream.last_activity <= sent => sent + idle,
                _ => stream.last_activity + idle,
            };
            tokio::select! {
                event = stream.next_event() => match event {
                    Ok(StreamEvent::Stanza(stanza)) => {
                        ping_sent = None;
                        let handled = match stanza.ns() {
                            NS_CSI => self.on_csi(&stanza).map_err(End::Error),
                            NS_SM => self.on_sm(&stanza),
                            _ => self.on_stanza(stanza).map_err(End::Error),
                        };
                        if let Err(end) = handled {
                            return end;
                        }
                        if std::mem::take(&mut self.backlog_due) {
                            Box::pin(self.take_backlog()).await;
                        }
                        if std::mem::take(&mut self.ack_due) {
                            let h = Box::pin(self.stored_count()).await;
                            self.out.bytes.extend_from_slice(format!("<a xmlns='{NS_SM}' h='{h}'/>").as_bytes());
                        }
                        if let Err(end) = self.write_out(stream).await {
                            return end;
                        }
                    }
                    Ok(StreamEvent::Footer) => return End::Footer,
                    Ok(StreamEvent::Header(_)) => return End::Error("not-well-formed"),
                    Err(ReadFailure::Xml(err)) => return End::Error(err.condition()),
                    Err(ReadFailure::Eof | ReadFailure::Io(_)) => return End::Gone,
                },
                Some(first) = self.receiver.queue.recv() => {
                    self.csi.write(first, &mut self.out);
                    while self.out.bytes.len() < WRITE_BATCH {
                        match self.receiver.queue.try_recv() {
                            Ok(stanza) => self.csi.write(stanza, &mut self.out),
                            Err(_) => break,
                        }
                    }
                    if let Some(sm) = &mut self.out.sm {
                        if sm.over_limit() {
                            tracing::info!(unacked = sm.unacked_len(), "too many unacknowledged stanzas");
                            return End::Error("policy-violation");
                        }
                        if sm.take_ack_request() {
                            self.out.bytes.extend_from_slice(format!("<r xmlns='{NS_SM}'/>").as_bytes());
                        }
                    }
                    if let Err(end) = self.write_out(stream).await {
                        return end;
                    }
                },
                Some(resumption) = next_resumption(&mut self.resumptions) => return End::Resumed(Box::new(resumption)),
                reason = &mut self.receiver.close => return self.closed(reason),
                _ = shared.shutdown.cancelled() => return End::Error("system-shutdown"),
                _ = tokio::time::sleep_until(wake) => {
                    if ping_sent.is_some() {
                        return End::Error("connection-timeout");
                    }
                    // XEP-0199 §4.2: ask the client to prove it is alive.
                    let mut ping = Stanza::new("iq", NS_CLIENT);
                    ping.set_attr("type", Some("get"));
                    ping.set_attr("id", Some(&format!("idle-{}", rand::random::<u32>())));
                    ping.set_attr("from", Some(self.jid.domain().as_str()));
                    ping.set_attr("to", Some(&self.jid_text));
                    self.out.push(ping.with_children_xml(b"<ping xmlns='urn:xmpp:ping'/>".to_vec().into()));
                    if let Err(end) = self.write_out(stream).await {
                        return end;
                    }
                    ping_sent = Some(Instant::now());
                },
            }
        }
    }

    /// Writes what the outbox holds. Gives up (`End::Gone`) when the client does not read,
    /// and ends when the session is closed or the server shuts down meanwhile; a graceful
    /// close lets the write finish, as it may carry the answer to the request that caused
    /// the close (XEP-0077 §3.2).
    async fn write_out(&mut self, stream: &mut XmppStream) -> Result<(), End> {
        if self.out.bytes.is_empty() {
            return Ok(());
        }
        let shared = self.shared;
        let bytes = std::mem::take(&mut self.out.bytes);
        let outcome = {
            let send = tokio::time::timeout(WRITE_TIMEOUT, stream.send(&bytes));
            tokio::pin!(send);
            tokio::select! {
                written = &mut send => match written {
                    Ok(Ok(())) => Written::Done,
                    _ => Written::Failed(End::Gone),
                },
                reason = &mut self.receiver.close => match reason {
                    Ok(CloseReason::AccountClosed | CloseReason::Ended) => match send.await {
                        Ok(Ok(())) => Written::Closed(reason),
                        _ => Written::Failed(End::Gone),
                    },
                    _ => Written::Closed(reason),
                },
                _ = shared.shutdown.cancelled() => Written::Failed(End::Error("system-shutdown")),
            }
        };
        self.out.bytes = bytes;
        self.out.bytes.clear();
        if self.out.bytes.capacity() > WRITE_BATCH {
            self.out.bytes = Vec::new();
        }
        match outcome {
            Written::Done => Ok(()),
            Written::Failed(end) => Err(end),
            Written::Closed(reason) => Err(self.closed(reason)),
        }
    }

    /// How the session ends when the server closes it: a replaced or too slow session at
    /// once; a graceful close (account deleted or disabled, session ended by an
    /// administrator) after what was queued before it, then the stream error.
    fn closed(&mut self, reason: Result<CloseReason, oneshot::error::RecvError>) -> End {
        let condition = match reason {
            Ok(CloseReason::Replaced) => return End::Error("conflict"),
            Ok(CloseReason::TooSlow) => return End::Error("policy-violation"),
            Err(_) => return End::Gone,
            Ok(CloseReason::AccountClosed) => "not-authorized",
            Ok(CloseReason::Ended) => "policy-violation",
        };
        self.csi.flush(&mut self.out);
        while let Ok(stanza) = self.receiver.queue.try_recv() {
            self.out.push(stanza);
        }
        End::ErrorAfter(std::mem::take(&mut self.out.bytes), condition)
    }

    /// Answers the SASL2 authentication that bound this session inline (XEP-0386 §2.3):
    /// `<success/>` with `<bound/>`, in which stream management is enabled when asked;
    /// CSI state as asked. Written by the first pass of [`Session::connected`].
    fn start_inline(&mut self, inline: InlineBound) {
        let InlineBound { success, before_bound, module_answers, sm_enable, inactive } = inline;
        self.out.bytes.extend_from_slice(success.open(&self.jid_text).as_bytes());
        self.out.bytes.extend_from_slice(&before_bound);
        self.out.bytes.extend_from_slice(format!("<bound xmlns='{NS_BIND2}'>").as_bytes());
        self.out.bytes.extend_from_slice(module_answers.as_bytes());
        if let Some(request) = sm_enable {
            self.enable(&request);
        }
        self.out.bytes.extend_from_slice(b"</bound></success>");
        if inactive {
            self.csi.inactive = true;
            self.handle.set_inactive(true);
        }
    }

    /// XEP-0352 `<active/>` and `<inactive/>`.
    fn on_csi(&mut self, element: &Stanza) -> Result<(), &'static str> {
        match element.name() {
            "inactive" => {
                self.csi.inactive = true;
                self.handle.set_inactive(true);
            }
            "active" => {
                self.csi.inactive = false;
                self.handle.set_inactive(false);
                self.csi.flush(&mut self.out);
            }
            _ => return Err("unsupported-stanza-type"),
        }
        Ok(())
    }

    /// XEP-0198 elements after resource binding.
    fn on_sm(&mut self, element: &Stanza) -> Result<(), End> {
        match (element.name(), &mut self.out.sm) {
            ("enable", None) => self.enable(element),
            ("r", Some(_)) => self.ack_due = true,
            ("a", Some(sm)) => {
                let h = element.attr("h").and_then(|h| h.parse::<u32>().ok()).ok_or(End::Error("bad-format"))?;
                if let Err(too_many) = sm.acknowledge(h) {
                    // XEP-0198 §4: an acknowledgement of stanzas never sent ends the stream.
                    tracing::info!(h, sent = too_many.sent, "client acknowledged more than was sent");
                    return Err(End::TooManyAcked { h, sent: too_many.sent });
                }
            }
            // An acknowledgement without stream management is meaningless; nothing to say.
            ("a", None) => {}
            // Enabling twice, asking for counts never kept, resuming from a bound stream.
            ("enable" | "r" | "resume", _) => self.out.bytes.extend_from_slice(&sm::failed("unexpected-request", None)),
            _ => return Err(End::Error("unsupported-stanza-type")),
        }
        Ok(())
    }

    /// `<enable/>` (XEP-0198 §3): resumable when asked and not switched off, for at most
    /// the configured number of seconds.
    fn enable(&mut self, request: &Stanza) {
        let c2s = &self.shared.config().c2s;
        let wants_resume = matches!(request.attr("resume"), Some("true" | "1"));
        let max = match request.attr("max").and_then(|m| m.parse::<u64>().ok()) {
            Some(asked) if asked > 0 => asked.min(c2s.sm_resume_timeout),
            _ => c2s.sm_resume_timeout,
        };
        let id = (wants_resume && max > 0).then(|| {
            let (id, resumptions) = self.shared.resumes.register(self.jid.to_bare());
            self.resumptions = Some(resumptions);
            id
        });
        let answer = match &id {
            Some(id) => format!("<enabled xmlns='{NS_SM}' id='{id}' resume='true' max='{max}'/>"),
            None => format!("<enabled xmlns='{NS_SM}'/>"),
        };
        tracing::debug!(resumable = id.is_some(), "stream management enabled");
        self.out.bytes.extend_from_slice(answer.as_bytes());
        self.out.sm = Some(StreamManagement::new(id, max, c2s.sm_request_ack_every, c2s.sm_max_unacked));
    }

    fn resumable(&self) -> bool {
        self.out.sm.as_ref().is_some_and(|sm| sm.id.is_some())
    }

    /// No connection: the session stays bound and keeps its queue until a resumption
    /// arrives, the hibernation time is up, or the session is closed.
    async fn hibernate(&mut self) -> Result<Box<Resumption>, End> {
        let max = self.out.sm.as_ref().map_or(0, |sm| sm.max);
        let deadline = Instant::now() + Duration::from_secs(max);
        self.out.bytes = Vec::new();
        self.handle.set_hibernating(true);
        tracing::info!(seconds = max, "connection lost; session hibernating");
        let shared = self.shared;
        let woken = tokio::select! {
            Some(resumption) = next_resumption(&mut self.resumptions) => Ok(Box::new(resumption)),
            reason = &mut self.receiver.close => Err(self.closed(reason)),
            _ = shared.shutdown.cancelled() => Err(End::Error("system-shutdown")),
            _ = tokio::time::sleep_until(deadline) => {
                tracing::info!("hibernation expired");
                Err(End::Gone)
            }
        };
        self.handle.set_hibernating(false);
        woken
    }

    /// Continues on `stream` (XEP-0198 §5): `<resumed/>` with the server's count (inside
    /// the SASL2 `<success/>` when resumed inline), then what the client did not
    /// receive, unchanged. A failed write shows as the next read
    /// failing, which hibernates the session again; the session being closed meanwhile
    /// ends it.
    async fn resume(&mut self, stream: &mut XmppStream, h: u32, sasl2: Option<SaslSuccess>) -> Option<End> {
        let stored = self.stored_count().await;
        let sm = self.out.sm.as_mut()?;
        let again = sm.unacked_after_resume(h);
        let previd = sm.id.clone().unwrap_or_default();
        let mut resumed = format!("<resumed xmlns='{NS_SM}' previd='{previd}' h='{stored}'/>");
        if let Some(success) = sasl2 {
            resumed = format!("{}{resumed}</success>", success.open(&self.jid_text));
        }
        tracing::info!(peer = %stream.peer, resent = again.len(), "session resumed");
        self.out.bytes.clear();
        self.out.bytes.extend_from_slice(resumed.as_bytes());
        for stanza in again {
            self.out.push(stanza);
        }
        self.write_out(stream).await.err().filter(|end| !matches!(end, End::Gone))
    }

    /// Ends the session: out of the table, undelivered stanzas handed on, contacts told,
    /// and the closing words on the stream if there still is one.
    async fn finish(mut self, end: End, stream: Option<XmppStream>) {
        let shared = self.shared;
        shared.sessions.unbind(&self.jid, self.handle.id);
        let mut late = Vec::new();
        if let Some(sm) = &self.out.sm {
            if let Some(id) = &sm.id {
                shared.resumes.end(id, sm.inbound);
            }
            // A connection may have handed itself over just before the id was withdrawn.
            if let Some(mut resumptions) = self.resumptions.take() {
                resumptions.close();
                while let Ok(resumption) = resumptions.try_recv() {
                    late.push(resumption.stream);
                }
            }
            self.hand_over_undelivered();
        }
        self.leave();
        let inbound = self.out.sm.as_ref().map(|sm| sm.inbound);
        for mut stream in late {
            let _ =
                tokio::time::timeout(Duration::from_secs(5), stream.send(&sm::failed("item-not-found", inbound))).await;
            stream.close().await;
        }
        let closing = match end {
            End::Error(condition) => {
                tracing::debug!(condition, "closing stream with an error");
                let mut out = Vec::new();
                write_stream_error(&mut out, condition, None);
                Some(out)
            }
            End::ErrorAfter(mut pending, condition) => {
                tracing::debug!(condition, "closing stream with an error after the queued stanzas");
                write_stream_error(&mut pending, condition, None);
                Some(pending)
            }
            End::TooManyAcked { h, sent } => Some(
                format!(
                    "<stream:error><undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
                     <handled-count-too-high xmlns='{NS_SM}' h='{h}' send-count='{sent}'/>\
                     </stream:error></stream:stream>"
                )
                .into_bytes(),
            ),
            End::Footer => Some(b"</stream:stream>".to_vec()),
            End::Gone | End::Resumed(_) => None,
        };
        if let (Some(bytes), Some(mut stream)) = (closing, stream) {
            let _ = tokio::time::timeout(Duration::from_secs(5), stream.send(&bytes)).await;
            stream.close().await;
        }
    }

    /// What a session with stream management never got acknowledged, still held for an
    /// inactive client, or never got to write: messages go where messages for an account
    /// without a session go (offline storage, carrying the stanza id the archive gave
    /// them, which marks them as archived already); requests are answered with
    /// `service-unavailable` (XEP-0198 §5); the rest is moot now.
    fn hand_over_undelivered(&mut self) {
        let Some(sm) = &mut self.out.sm else { return };
        let mut left: Vec<Stanza> = sm.take_unacked().into();
        left.append(&mut self.csi.held);
        // Closed first, so nothing more arrives while draining: the router then treats
        // this session as gone.
        self.receiver.queue.close();
        while let Ok(stanza) = self.receiver.queue.try_recv() {
            left.push(stanza);
        }
        if !left.is_empty() {
            tracing::info!(stanzas = left.len(), "handing undelivered stanzas on");
        }
        let user = self.jid.to_bare();
        let router = &self.shared.router;
        for stanza in left {
            match (stanza.name(), stanza.type_()) {
                ("message", None | Some("chat" | "normal")) => router.undelivered(&user, stanza),
                ("iq", Some("get" | "set")) => {
                    let error = stanza_error(ErrorType::Cancel, DefinedCondition::ServiceUnavailable);
                    if let Some(reply) = error_reply(&stanza, &error) {
                        router.route(reply);
                    }
                }
                _ => {}
            }
        }
    }

    /// Stamps, inspects and routes one stanza from the client.
    fn on_stanza(&mut self, mut stanza: Stanza) -> Result<(), &'static str> {
        if stanza.ns() != NS_CLIENT || !matches!(stanza.name(), "message" | "presence" | "iq") {
            return Err("unsupported-stanza-type");
        }
        if let Some(sm) = &mut self.out.sm {
            sm.handled();
        }
        // RFC 6120 §8.1.2.1: the server stamps `from`; whatever the client wrote is replaced.
        stanza.set_attr("from", Some(&self.jid_text));
        if is_legacy_session_request(&stanza) {
            // A full own queue means the session is closing anyway.
            let _ = self.handle.deliver(starling_api::reply::iq_result(&stanza, None));
            return Ok(());
        }
        if stanza.name() == "presence" {
            self.on_presence(stanza);
            return Ok(());
        }
        let context = &self.shared.context;
        if stanza.name() == "message" && context.registry().hooks().has::<MessageSent>() {
            let mut event = MessageSent { from: self.jid.clone(), stanza };
            context.run_hook(&mut event);
            stanza = event.stanza;
        }
        self.shared.router.route(stanza);
        Ok(())
    }

    /// Presence from the client: broadcasts (no `to`) update the session and go to the
    /// presence hooks; subscription stanzas go to the roster's hook; directed presence
    /// is remembered so the recipient learns when the session ends (RFC 6121 §4.6).
    fn on_presence(&mut self, stanza: Stanza) {
        let shared = self.shared;
        let Some(to) = stanza.to().map(str::to_owned) else {
            let was_available = self.handle.is_available();
            match stanza.type_() {
                None => self.handle.set_presence(true, priority(&stanza)),
                Some("unavailable") => {
                    self.handle.set_presence(false, 0);
                    // RFC 6121 §4.6.3: unavailable presence also reaches directed recipients.
                    for to in std::mem::take(&mut self.directed) {
                        shared.router.route(unavailable(&self.jid_text, &to));
                    }
                }
                // Other types without `to` mean nothing (RFC 6121 §4.7.1).
                _ => return,
            }
            let initial = !was_available && self.handle.is_available();
            shared.context.run_hook(&mut PresenceBroadcast { from: self.jid.clone(), stanza, initial });
            self.backlog_due |= initial;
            return;
        };
        match stanza.type_() {
            Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed") => {
                let Ok(contact) = starling_api::parse_bare_jid(&to) else {
                    shared.router.route(stanza);
                    return;
                };
                let mut event = SubscriptionOut { from: self.jid.clone(), to: contact, stanza };
                if shared.context.run_hook(&mut event) == Flow::Continue {
                    shared.router.route(event.stanza);
                }
                return;
            }
            None => {
                self.directed.insert(to);
            }
            Some("unavailable") => {
                self.directed.remove(&to);
            }
            _ => {}
        }
        shared.router.route(stanza);
    }

    /// Puts what the modules owe a session that just became available (offline
    /// messages) into the outbox. The session is available already, so anything sent
    /// to it from now on waits in its queue, which is not read meanwhile: older
    /// messages go out first.
    async fn take_backlog(&mut self) {
        let context = &self.shared.context;
        let host = self.jid.domain().as_str();
        for (backlog, module) in context.registry().initial_backlogs() {
            if !context.module_enabled(module.name, host) {
                continue;
            }
            for stanza in backlog(context.clone(), self.jid.clone()).await {
                self.csi.write(stanza, &mut self.out);
            }
        }
    }

    /// The count of stanzas handled from the client (XEP-0198 `h`), once whatever the
    /// modules queued for storage while handling them is stored: an acknowledged
    /// message is in the recipient's offline store or archive even if the server dies
    /// right after. Only stanzas handled since the last call wait.
    async fn stored_count(&mut self) -> u32 {
        let Some(h) = self.out.sm.as_ref().map(|sm| sm.inbound) else { return 0 };
        if h != self.stored_h {
            let context = &self.shared.context;
            for (barrier, _) in context.registry().write_barriers() {
                barrier(context).await;
            }
            self.stored_h = h;
        }
        h
    }

    /// Tells whoever needs to know that the session went (it has left the table).
    fn leave(&mut self) {
        let shared = self.shared;
        let was_available = self.handle.is_available();
        self.handle.set_presence(false, 0);
        for to in std::mem::take(&mut self.directed) {
            shared.router.route(unavailable(&self.jid_text, &to));
        }
        shared.context.run_hook(&mut SessionEnded { jid: self.jid.clone(), was_available });
        self.handle.mark_ended();
    }
}

/// RFC 3921 `<session/>`, which older clients still send after binding: a no-op that
/// must succeed (RFC 6121 Appendix E).
fn is_legacy_session_request(stanza: &Stanza) -> bool {
    stanza.name() == "iq"
        && stanza.type_() == Some("set")
        && stanza
            .child_elements()
            .next()
            .is_some_and(|c| c.name() == "session" && c.ns() == super::negotiate::NS_SESSION)
}

/// RFC 6121 §4.7.2.3: an integer from -128 to 127, 0 when absent or invalid.
fn priority(presence: &Stanza) -> i8 {
    presence
        .to_element()
        .ok()
        .and_then(|p| p.get_child("priority", NS_CLIENT).map(|c| c.text()))
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}
