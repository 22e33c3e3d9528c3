//! XEP-0198 Stream Management (`urn:xmpp:sm:3`): the per-session counters and the
//! queue of unacknowledged stanzas, and the table through which a new connection hands
//! its stream to the hibernating session it resumes.
//!
//! This works on stanzas, not bytes: the session loop records what it writes and what
//! it handles, whatever transport carries the stream.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jid::BareJid;
use starling_api::Stanza;
use tokio::sync::mpsc;

use super::bind2::SaslSuccess;
use super::stream::XmppStream;

/// The XEP-0198 namespace.
pub(super) const NS_SM: &str = "urn:xmpp:sm:3";
const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// How long an ended resumable session's id is remembered, to answer a late `<resume/>`
/// with the count of stanzas the server handled (XEP-0198 §5).
const ENDED_MEMORY: Duration = Duration::from_secs(600);
/// Ended ids remembered at most.
const ENDED_MAX: usize = 4096;

/// `<failed/>` with a stanza error condition, and `h` when the server knows it.
pub(super) fn failed(condition: &str, h: Option<u32>) -> Vec<u8> {
    let h = h.map(|h| format!(" h='{h}'")).unwrap_or_default();
    format!("<failed xmlns='{NS_SM}'{h}><{condition} xmlns='{NS_STANZAS}'/></failed>").into_bytes()
}

/// The client acknowledged more stanzas than the server sent (XEP-0198 §4).
#[derive(Debug)]
pub(super) struct TooManyAcked {
    /// The stanzas the server sent, mod 2^32.
    pub sent: u32,
}

/// The stream management state of one session.
pub(super) struct StreamManagement {
    /// The resumption id, for a resumable session.
    pub id: Option<String>,
    /// Seconds the session hibernates before it ends.
    pub max: u64,
    /// Stanzas handled from the client since enabling, mod 2^32.
    pub inbound: u32,
    /// Stanzas sent to the client since enabling, mod 2^32.
    sent: u32,
    /// Sent and not acknowledged, oldest first; the last one is number `sent`.
    unacked: VecDeque<Stanza>,
    /// Stanzas sent since the server last asked for an acknowledgement.
    since_request: usize,
    request_every: usize,
    max_unacked: usize,
}

impl StreamManagement {
    /// Stream management just enabled.
    pub fn new(id: Option<String>, max: u64, request_every: usize, max_unacked: usize) -> Self {
        StreamManagement {
            id,
            max,
            inbound: 0,
            sent: 0,
            unacked: VecDeque::new(),
            since_request: 0,
            request_every,
            max_unacked,
        }
    }

    /// Counts one stanza sent to the client.
    pub fn record(&mut self, stanza: Stanza) {
        self.sent = self.sent.wrapping_add(1);
        self.unacked.push_back(stanza);
        self.since_request += 1;
    }

    /// Counts one stanza from the client.
    pub fn handled(&mut self) {
        self.inbound = self.inbound.wrapping_add(1);
    }

    /// Whether to send `<r/>` now; if so, the count starts again.
    pub fn take_ack_request(&mut self) -> bool {
        if self.since_request < self.request_every {
            return false;
        }
        self.since_request = 0;
        true
    }

    /// Whether the client left more stanzas unacknowledged than allowed.
    pub fn over_limit(&self) -> bool {
        self.unacked.len() > self.max_unacked
    }

    /// The client received stanzas up to number `h` (XEP-0198 §4).
    pub fn acknowledge(&mut self, h: u32) -> Result<(), TooManyAcked> {
        let first = self.sent.wrapping_sub(self.unacked.len() as u32);
        let newly = h.wrapping_sub(first) as usize;
        if newly > self.unacked.len() {
            return Err(TooManyAcked { sent: self.sent });
        }
        self.unacked.drain(..newly);
        Ok(())
    }

    /// After a resumption where the client received up to `h`: the stanzas to send
    /// again (each is recorded again as it is written), the counter back at `h`.
    pub fn unacked_after_resume(&mut self, h: u32) -> VecDeque<Stanza> {
        if self.acknowledge(h).is_err() {
            // The client claims more than was sent: it has everything.
            self.unacked.clear();
        }
        self.sent = self.sent.wrapping_sub(self.unacked.len() as u32);
        self.since_request = 0;
        std::mem::take(&mut self.unacked)
    }

    /// Everything unacknowledged, for offline storage when the session ends.
    pub fn take_unacked(&mut self) -> VecDeque<Stanza> {
        std::mem::take(&mut self.unacked)
    }

    /// How many stanzas wait for an acknowledgement.
    pub fn unacked_len(&self) -> usize {
        self.unacked.len()
    }
}

/// A new connection's request to continue a hibernating (or still connected) session.
pub(super) struct Resumption {
    /// The new connection, authenticated as the session's account.
    pub stream: XmppStream,
    /// The client's count of stanzas it received (XEP-0198 §5).
    pub h: u32,
    /// Asked inline in SASL2: `<resumed/>` goes inside this `<success/>`.
    pub sasl2: Option<SaslSuccess>,
}

/// Why a resumption was refused; the stream comes back to answer `<failed/>`.
pub(super) struct Refused {
    /// The connection that asked.
    pub resumption: Resumption,
    /// The server's inbound count, when the session ended recently.
    pub h: Option<u32>,
}

struct Live {
    user: BareJid,
    session: mpsc::Sender<Resumption>,
}

struct Ended {
    user: BareJid,
    h: u32,
    at: Instant,
}

/// Resumable sessions by resumption id. An id is 128 random bits and only resumes for
/// the account it was issued to.
#[derive(Default)]
pub struct ResumeTable {
    live: Mutex<HashMap<String, Live>>,
    ended: Mutex<HashMap<String, Ended>>,
}

impl ResumeTable {
    /// A fresh id for `user`'s session, and where resumptions for it arrive.
    pub(super) fn register(&self, user: BareJid) -> (String, mpsc::Receiver<Resumption>) {
        let id = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
        let (session, resumptions) = mpsc::channel(1);
        self.live.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), Live { user, session });
        (id, resumptions)
    }

    /// The session `id` ended after handling `h` stanzas: it can no longer be resumed.
    pub(super) fn end(&self, id: &str, h: u32) {
        let Some(live) = self.live.lock().unwrap_or_else(|e| e.into_inner()).remove(id) else { return };
        let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        ended.retain(|_, e| now.duration_since(e.at) < ENDED_MEMORY);
        if ended.len() >= ENDED_MAX {
            let oldest = ended.iter().min_by_key(|(_, e)| e.at).map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                ended.remove(&oldest);
            }
        }
        ended.insert(id.to_owned(), Ended { user: live.user, h, at: now });
    }

    /// Hands `resumption` to the session `id` when it belongs to `user`.
    pub(super) fn resume(&self, id: &str, user: &BareJid, resumption: Resumption) -> Result<(), Refused> {
        let session = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .filter(|live| live.user == *user)
            .map(|live| live.session.clone());
        let Some(session) = session else {
            let ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
            let h = ended.get(id).filter(|e| e.user == *user && e.at.elapsed() < ENDED_MEMORY).map(|e| e.h);
            return Err(Refused { resumption, h });
        };
        // Full: another connection is resuming it right now; closed: it is ending.
        session.try_send(resumption).map_err(|err| Refused { resumption: err.into_inner(), h: None })
    }

    /// Resumable sessions now (hibernating or connected).
    pub fn len(&self) -> usize {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no session is resumable.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sm() -> StreamManagement {
        StreamManagement::new(None, 60, 5, 100)
    }

    fn sent(sm: &mut StreamManagement, n: usize) {
        for i in 0..n {
            let mut stanza = Stanza::new("message", "jabber:client");
            stanza.set_attr("id", Some(&i.to_string()));
            sm.record(stanza);
        }
    }

    #[test]
    fn acknowledgements_drop_the_acked_prefix_and_refuse_too_many() {
        let mut sm = sm();
        sent(&mut sm, 4);
        sm.acknowledge(1).expect("one acked");
        assert_eq!(sm.unacked_len(), 3);
        sm.acknowledge(1).expect("the same h again is fine");
        assert_eq!(sm.unacked_len(), 3);
        assert_eq!(sm.acknowledge(9).map_err(|e| e.sent).expect_err("too many"), 4);
        sm.acknowledge(4).expect("all acked");
        assert_eq!(sm.unacked_len(), 0);
    }

    #[test]
    fn counters_wrap_at_two_to_the_thirty_second() {
        let mut sm = sm();
        sm.sent = u32::MAX - 1;
        sent(&mut sm, 3);
        assert_eq!(sm.sent, 1);
        // The three are numbered 2^32-1, 0 and 1.
        sm.acknowledge(u32::MAX).expect("the first");
        assert_eq!(sm.unacked_len(), 2);
        sm.acknowledge(0).expect("the second, across the wrap");
        assert_eq!(sm.unacked_len(), 1);
        sm.acknowledge(1).expect("the last one");
        assert_eq!(sm.unacked_len(), 0);
    }

    #[test]
    fn resumption_resends_what_the_client_did_not_get_under_the_same_numbers() {
        let mut sm = sm();
        sent(&mut sm, 5);
        let again = sm.unacked_after_resume(3);
        assert_eq!(again.iter().map(|s| s.id().unwrap_or_default().to_owned()).collect::<Vec<_>>(), ["3", "4"]);
        for stanza in again {
            sm.record(stanza);
        }
        assert_eq!(sm.sent, 5);
        sm.acknowledge(5).expect("numbers continue");
        assert_eq!(sm.unacked_len(), 0);
    }

    #[test]
    fn ack_requests_come_every_n_stanzas() {
        let mut sm = sm();
        sent(&mut sm, 4);
        assert!(!sm.take_ack_request());
        sent(&mut sm, 1);
        assert!(sm.take_ack_request());
        assert!(!sm.take_ack_request());
    }
}
