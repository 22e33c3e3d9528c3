//! A bound client session (RFC 6120 §7 onward): stanzas from the client are stamped
//! with its full JID and routed; stanzas queued for it are written in batches.
//!
//! The task ends when the client closes the stream, the connection fails, the server
//! closes the session from outside (resource conflict, queue overflow), the client is
//! silent too long, or the server shuts down; each case sends the matching stream error
//! (RFC 6120 §4.9.3). Whatever ends it, the session leaves the table and the contacts
//! it sent directed presence to learn that it went offline (RFC 6121 §4.6.3).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use jid::FullJid;
use starling_api::hooks::{MessageSent, PresenceBroadcast, SessionEnded, SessionStarted, SubscriptionOut};
use starling_api::{Flow, Stanza};
use tokio::time::Instant;

use super::C2sShared;
use super::negotiate::{Bound, NS_CLIENT};
use super::stream::ReadFailure;
use crate::session::{CloseReason, SessionHandle};
use crate::xml::{StreamEvent, write_stream_error};

/// XEP-0352 Client State Indication.
const NS_CSI: &str = "urn:xmpp:csi:0";
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
    /// Appends `stanza` to `out` now, or holds it.
    fn write(&mut self, stanza: Stanza, out: &mut Vec<u8>) {
        if self.inactive && !important(&stanza) && self.held.len() < CSI_MAX_HELD {
            if stanza.name() == "presence" {
                // Only the latest presence of each contact matters.
                self.held.retain(|h| h.name() != "presence" || h.from() != stanza.from());
            }
            self.held.push(stanza);
            return;
        }
        self.flush(out);
        stanza.write_to(out, NS_CLIENT);
    }

    fn flush(&mut self, out: &mut Vec<u8>) {
        for held in self.held.drain(..) {
            held.write_to(out, NS_CLIENT);
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
    /// Send these stanzas, then this stream error, then close.
    ErrorAfter(Vec<u8>, &'static str),
    /// The client closed its stream: answer with ours.
    Footer,
    /// Nothing can be written any more.
    Gone,
}

/// Runs the session until it ends, then removes it from the table.
pub(super) async fn run(bound: Bound, shared: &C2sShared) {
    let Bound { mut stream, jid, handle, mut receiver } = bound;
    let mut session = Session { jid_text: jid.to_string(), jid, handle, directed: BTreeSet::new(), shared };
    let mut out = Vec::new();
    let idle = Duration::from_secs(shared.config.c2s.idle_timeout);
    let mut ping_sent: Option<Instant> = None;
    let mut csi = Csi::default();
    shared.context.run_hook(&mut SessionStarted { jid: session.jid.clone() });

    let end = loop {
        let wake = match ping_sent {
            Some(sent) if stream.last_activity <= sent => sent + idle,
            _ => stream.last_activity + idle,
        };
        tokio::select! {
            event = stream.next_event() => match event {
                Ok(StreamEvent::Stanza(stanza)) if stanza.ns() == NS_CSI => {
                    ping_sent = None;
                    match stanza.name() {
                        "inactive" => csi.inactive = true,
                        "active" => {
                            csi.inactive = false;
                            out.clear();
                            csi.flush(&mut out);
                            if !out.is_empty() && stream.send(&out).await.is_err() {
                                break End::Gone;
                            }
                        }
                        _ => break End::Error("unsupported-stanza-type"),
                    }
                }
                Ok(StreamEvent::Stanza(stanza)) => {
                    ping_sent = None;
                    if let Err(condition) = session.on_stanza(stanza) {
                        break End::Error(condition);
                    }
                }
                Ok(StreamEvent::Footer) => break End::Footer,
                Ok(StreamEvent::Header(_)) => break End::Error("not-well-formed"),
                Err(ReadFailure::Xml(err)) => break End::Error(err.condition()),
                Err(ReadFailure::Eof | ReadFailure::Io(_)) => break End::Gone,
            },
            Some(first) = receiver.queue.recv() => {
                out.clear();
                csi.write(first, &mut out);
                while out.len() < WRITE_BATCH {
                    match receiver.queue.try_recv() {
                        Ok(stanza) => csi.write(stanza, &mut out),
                        Err(_) => break,
                    }
                }
                if out.is_empty() {
                    continue;
                }
                let (written, closed) = {
                    let send = tokio::time::timeout(WRITE_TIMEOUT, stream.send(&out));
                    tokio::pin!(send);
                    let mut closed = None;
                    let written = tokio::select! {
                        written = &mut send => matches!(written, Ok(Ok(()))),
                        reason = &mut receiver.close => match reason {
                            // A graceful close lets the write finish: it may carry the
                            // answer to the request that caused the close.
                            Ok(reason @ (CloseReason::AccountClosed | CloseReason::Ended)) => {
                                closed = Some(reason);
                                matches!(send.await, Ok(Ok(())))
                            }
                            _ => false,
                        },
                        _ = shared.shutdown.cancelled() => false,
                    };
                    (written, closed)
                };
                if out.capacity() > WRITE_BATCH {
                    out = Vec::new();
                }
                if !written {
                    break End::Gone;
                }
                if let Some(reason) = closed {
                    break closing(reason, &mut csi, &mut receiver.queue);
                }
            },
            reason = &mut receiver.close => break match reason {
                Ok(CloseReason::Replaced) => End::Error("conflict"),
                Ok(CloseReason::TooSlow) => End::Error("policy-violation"),
                Ok(reason) => closing(reason, &mut csi, &mut receiver.queue),
                Err(_) => End::Gone,
            },
            _ = shared.shutdown.cancelled() => break End::Error("system-shutdown"),
            _ = tokio::time::sleep_until(wake) => {
                if ping_sent.is_some() {
                    break End::Error("connection-timeout");
                }
                // XEP-0199 §4.2: ask the client to prove it is alive.
                let domain = session.jid.domain().to_string();
                let ping = format!(
                    "<iq type='get' id='idle-{}' from='{domain}' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
                    rand::random::<u32>(),
                    super::negotiate::escaped(&session.jid_text),
                );
                if stream.send(ping.as_bytes()).await.is_err() {
                    break End::Gone;
                }
                ping_sent = Some(Instant::now());
            },
        }
    };

    session.leave();
    let closing = match end {
        End::Error(condition) => {
            tracing::debug!(condition, "closing stream with an error");
            let mut out = Vec::new();
            write_stream_error(&mut out, condition, None);
            Some(out)
        }
        End::ErrorAfter(mut pending, condition) => {
            tracing::debug!(condition, "closing stream with an error");
            write_stream_error(&mut pending, condition, None);
            Some(pending)
        }
        End::Footer => Some(b"</stream:stream>".to_vec()),
        End::Gone => None,
    };
    if let Some(bytes) = closing {
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.send(&bytes)).await;
        stream.close().await;
    }
    tracing::info!("session ended");
}

/// A graceful close by the server (account deleted or disabled, session ended by an
/// administrator): what was queued before it goes out first (the answer to an
/// unregistration, XEP-0077 §3.2, is among it), then the stream error.
fn closing(reason: CloseReason, csi: &mut Csi, queue: &mut tokio::sync::mpsc::Receiver<Stanza>) -> End {
    let mut pending = Vec::new();
    csi.flush(&mut pending);
    while let Ok(stanza) = queue.try_recv() {
        stanza.write_to(&mut pending, NS_CLIENT);
    }
    let condition = if reason == CloseReason::Ended { "policy-violation" } else { "not-authorized" };
    End::ErrorAfter(pending, condition)
}

fn unavailable(from: &str, to: &str) -> Stanza {
    let mut presence = Stanza::new("presence", NS_CLIENT);
    presence.set_attr("from", Some(from));
    presence.set_attr("to", Some(to));
    presence.set_attr("type", Some("unavailable"));
    presence
}

/// What a bound session's stanza handlers share.
struct Session<'a> {
    jid: FullJid,
    jid_text: String,
    handle: Arc<SessionHandle>,
    /// Where this session sent directed available presence (RFC 6121 §4.6).
    directed: BTreeSet<String>,
    shared: &'a C2sShared,
}

impl Session<'_> {
    /// Stamps, inspects and routes one stanza from the client.
    fn on_stanza(&mut self, mut stanza: Stanza) -> Result<(), &'static str> {
        if stanza.ns() != NS_CLIENT || !matches!(stanza.name(), "message" | "presence" | "iq") {
            return Err("unsupported-stanza-type");
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

    /// Leaves the session table and tells whoever needs to know that the session went.
    fn leave(&mut self) {
        let shared = self.shared;
        shared.sessions.unbind(&self.jid, self.handle.id);
        let was_available = self.handle.is_available();
        self.handle.set_presence(false, 0);
        for to in std::mem::take(&mut self.directed) {
            shared.router.route(unavailable(&self.jid_text, &to));
        }
        shared.context.run_hook(&mut SessionEnded { jid: self.jid.clone(), was_available });
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
