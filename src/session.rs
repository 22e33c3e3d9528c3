//! The session table: which client sessions are bound, under which full JID, and how
//! to reach each one (ejabberd's `ejabberd_sm`, Prosody's `full_sessions`).
//!
//! Each session owns a bounded queue of stanzas waiting to be written to its socket.
//! The router never waits on it: when a queue is full the session is too slow and is
//! closed with `policy-violation` (design.md: one slow reader never blocks the router).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use jid::{BareJid, FullJid};
use starling_api::Stanza;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::ResourceConflict;

/// Why the server ends a session from outside its own task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Another session bound the same resource (RFC 6120 §7.7.2.2): `conflict`.
    Replaced,
    /// The session's outbound queue overflowed: `policy-violation`.
    TooSlow,
    /// The account was deleted or disabled: `not-authorized`, after the stanzas
    /// already queued (the answer to an in-band unregistration among them).
    AccountClosed,
    /// An administrator ended the session (XEP-0133 §4.14): `policy-violation`, after
    /// the stanzas already queued.
    Ended,
}

/// A bound session as the rest of the server sees it.
#[derive(Debug)]
pub struct SessionHandle {
    /// The bound full JID.
    pub jid: FullJid,
    /// Unique per process, so a stale handle can't remove a newer session.
    pub id: u64,
    queue: mpsc::Sender<Box<Stanza>>,
    close: Mutex<Option<oneshot::Sender<CloseReason>>>,
    /// Set by the first [`SessionHandle::close`], so routing can skip the session
    /// without taking the lock.
    closing: AtomicBool,
    available: AtomicBool,
    priority: AtomicI8,
    /// Waiting for a stream-management resumption (XEP-0198) with no connection.
    hibernating: AtomicBool,
    /// The client said it is not being looked at (XEP-0352 `<inactive/>`).
    inactive: AtomicBool,
    /// Cancelled once the session task has handed its undelivered stanzas on and left
    /// the table, so a session replacing it can wait for that.
    ended: CancellationToken,
}

/// The receiving side a session task keeps.
pub struct SessionReceiver {
    /// Stanzas to write to the client.
    pub queue: StanzaQueue,
    /// Fires when the server closes the session from outside.
    pub close: oneshot::Receiver<CloseReason>,
}

/// A session's outbound stanzas. They travel boxed: the channel allocates its slots 32 at
/// a time and keeps a block for as long as the session lives, so with 88-byte stanzas
/// every idle session held 2.8 KiB of empty slots (a third of its memory); boxed, 256 bytes.
pub struct StanzaQueue(mpsc::Receiver<Box<Stanza>>);

impl StanzaQueue {
    /// The next stanza; `None` once the queue is closed and empty.
    pub async fn recv(&mut self) -> Option<Stanza> {
        self.0.recv().await.map(|stanza| *stanza)
    }

    /// The next stanza if one is queued.
    pub fn try_recv(&mut self) -> Result<Stanza, mpsc::error::TryRecvError> {
        self.0.try_recv().map(|stanza| *stanza)
    }

    /// Refuses further stanzas; those already queued can still be taken.
    pub fn close(&mut self) {
        self.0.close();
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl SessionHandle {
    /// A handle and its receiving side, with a queue of `capacity` stanzas.
    pub fn new(jid: FullJid, capacity: usize) -> (Arc<SessionHandle>, SessionReceiver) {
        let (tx, rx) = mpsc::channel(capacity);
        let (close_tx, close_rx) = oneshot::channel();
        let handle = SessionHandle {
            jid,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            queue: tx,
            close: Mutex::new(Some(close_tx)),
            closing: AtomicBool::new(false),
            available: AtomicBool::new(false),
            priority: AtomicI8::new(0),
            hibernating: AtomicBool::new(false),
            inactive: AtomicBool::new(false),
            ended: CancellationToken::new(),
        };
        (Arc::new(handle), SessionReceiver { queue: StanzaQueue(rx), close: close_rx })
    }

    /// Queues a stanza for the client. A full queue closes the session as too slow;
    /// the stanza comes back when it could not be queued, so the router can treat it
    /// as undelivered (offline storage) instead of losing it.
    pub fn deliver(&self, stanza: Stanza) -> Result<(), Stanza> {
        crate::metrics::stanza_delivered(stanza.name());
        match self.queue.try_send(Box::new(stanza)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(stanza)) => {
                tracing::warn!(jid = %self.jid, "outbound queue full; closing the session");
                self.close(CloseReason::TooSlow);
                Err(*stanza)
            }
            // The session task has ended; its removal from the table is in progress.
            Err(mpsc::error::TrySendError::Closed(stanza)) => Err(*stanza),
        }
    }

    /// Asks the session task to end with `reason`. Only the first request counts.
    pub fn close(&self, reason: CloseReason) {
        self.closing.store(true, Ordering::Relaxed);
        let sender = self.close.lock().ok().and_then(|mut slot| slot.take());
        if let Some(sender) = sender {
            let _ = sender.send(reason);
        }
    }

    /// Records the session's presence (RFC 6121 §4.7.2.3 priority, -128..127).
    pub fn set_presence(&self, available: bool, priority: i8) {
        self.priority.store(priority, Ordering::Relaxed);
        self.available.store(available, Ordering::Relaxed);
    }

    /// Whether the client has sent available presence and not gone unavailable since.
    pub fn is_available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    /// Whether the session was asked to close or its task has stopped taking stanzas.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed) || self.queue.is_closed()
    }

    /// Whether a message to the bare JID goes to this session (RFC 6121 §8.5.2.1.1):
    /// available with a non-negative priority, and not closing.
    pub fn takes_bare_messages(&self) -> bool {
        self.is_available() && self.priority() >= 0 && !self.is_closing()
    }

    /// The priority of the client's last available presence.
    pub fn priority(&self) -> i8 {
        self.priority.load(Ordering::Relaxed)
    }

    /// Marks the session as waiting for a resumption (or connected again).
    pub fn set_hibernating(&self, hibernating: bool) {
        self.hibernating.store(hibernating, Ordering::Relaxed);
    }

    /// Whether the session has no connection and waits for a resumption (XEP-0198).
    pub fn is_hibernating(&self) -> bool {
        self.hibernating.load(Ordering::Relaxed)
    }

    /// Records the client's XEP-0352 state.
    pub fn set_inactive(&self, inactive: bool) {
        self.inactive.store(inactive, Ordering::Relaxed);
    }

    /// What the client is doing, as far as the server knows.
    pub fn client_state(&self) -> starling_api::ClientState {
        if self.is_hibernating() {
            starling_api::ClientState::Hibernating
        } else if self.inactive.load(Ordering::Relaxed) {
            starling_api::ClientState::Inactive
        } else {
            starling_api::ClientState::Active
        }
    }

    /// Called by the session task once it has left the table and passed its undelivered
    /// stanzas on.
    pub fn mark_ended(&self) {
        self.ended.cancel();
    }

    /// Resolves once the session task called [`SessionHandle::mark_ended`].
    pub async fn wait_ended(&self) {
        self.ended.cancelled().await;
    }
}

/// Result of binding a resource.
#[derive(Debug)]
pub enum BindOutcome {
    /// Bound; `replaced` is a session that held the same resource and must be closed.
    Bound {
        /// The evicted session, if any.
        replaced: Option<Arc<SessionHandle>>,
    },
    /// Refused under [`ResourceConflict::Refuse`].
    Conflict,
    /// The account has as many sessions as it may (RFC 6120 §7.6.2.1 `resource-constraint`).
    TooMany,
}

/// All bound sessions, by bare JID.
#[derive(Default)]
pub struct SessionTable {
    by_user: RwLock<HashMap<BareJid, Vec<Arc<SessionHandle>>>>,
}

impl SessionTable {
    /// Binds `handle` under its full JID. `Random` conflicts are resolved by the caller
    /// (it picks a fresh resource before calling), so they behave like `Refuse` here.
    /// A hibernating session (XEP-0198) is always replaced: its client came back
    /// without resuming.
    pub fn bind(&self, handle: Arc<SessionHandle>, policy: ResourceConflict, max_per_account: usize) -> BindOutcome {
        let mut table = self.by_user.write().unwrap_or_else(|e| e.into_inner());
        let sessions = table.entry(handle.jid.to_bare()).or_default();
        let existing = sessions.iter().position(|s| s.jid == handle.jid);
        let replaced = match (existing, policy) {
            // A session taking over a resource does not add one; a new one may not
            // exceed the limit (0: none). Hibernating sessions count: they are online.
            (None, _) if max_per_account > 0 && sessions.len() >= max_per_account => return BindOutcome::TooMany,
            (None, _) => None,
            (Some(index), _) if sessions[index].is_hibernating() => Some(sessions.swap_remove(index)),
            (Some(index), ResourceConflict::KickOld) => Some(sessions.swap_remove(index)),
            (Some(_), ResourceConflict::Refuse | ResourceConflict::Random) => {
                return BindOutcome::Conflict;
            }
        };
        sessions.push(handle);
        BindOutcome::Bound { replaced }
    }

    /// Whether `jid` is bound now.
    pub fn is_bound(&self, jid: &FullJid) -> bool {
        self.get(jid).is_some()
    }

    /// Removes the session `id` bound as `jid`; a newer session with the same JID stays.
    pub fn unbind(&self, jid: &FullJid, id: u64) {
        let mut table = self.by_user.write().unwrap_or_else(|e| e.into_inner());
        let bare = jid.to_bare();
        if let Some(sessions) = table.get_mut(&bare) {
            sessions.retain(|s| s.id != id);
            if sessions.is_empty() {
                table.remove(&bare);
            }
        }
    }

    /// The session bound as `jid`.
    pub fn get(&self, jid: &FullJid) -> Option<Arc<SessionHandle>> {
        let table = self.by_user.read().unwrap_or_else(|e| e.into_inner());
        table.get(&jid.to_bare())?.iter().find(|s| s.jid == *jid).cloned()
    }

    /// All sessions of `user`.
    pub fn sessions_of(&self, user: &BareJid) -> Vec<Arc<SessionHandle>> {
        let table = self.by_user.read().unwrap_or_else(|e| e.into_inner());
        table.get(user).cloned().unwrap_or_default()
    }

    /// Every session, for shutdown and admin listings.
    pub fn all(&self) -> Vec<Arc<SessionHandle>> {
        let table = self.by_user.read().unwrap_or_else(|e| e.into_inner());
        table.values().flatten().cloned().collect()
    }
}

impl starling_api::Sessions for SessionTable {
    fn available_resources(&self, user: &BareJid) -> Vec<FullJid> {
        self.sessions_of(user).iter().filter(|s| s.is_available()).map(|s| s.jid.clone()).collect()
    }

    fn takes_bare_messages(&self, user: &BareJid) -> bool {
        self.sessions_of(user).iter().any(|s| s.takes_bare_messages())
    }

    fn resources(&self, user: &BareJid) -> Vec<FullJid> {
        self.sessions_of(user).iter().map(|s| s.jid.clone()).collect()
    }

    fn client_state(&self, jid: &FullJid) -> Option<starling_api::ClientState> {
        self.get(jid).map(|s| s.client_state())
    }

    fn count(&self) -> usize {
        let table = self.by_user.read().unwrap_or_else(|e| e.into_inner());
        table.values().map(Vec::len).sum()
    }

    fn of_host(&self, host: &str) -> Vec<(FullJid, bool)> {
        let table = self.by_user.read().unwrap_or_else(|e| e.into_inner());
        table
            .iter()
            .filter(|(user, _)| user.domain().as_str() == host)
            .flat_map(|(_, sessions)| sessions.iter().map(|s| (s.jid.clone(), s.is_available())))
            .collect()
    }

    fn end(&self, jid: &jid::Jid) -> usize {
        let sessions = match jid.try_as_full() {
            Ok(full) => self.get(full).into_iter().collect(),
            Err(bare) => self.sessions_of(bare),
        };
        for session in &sessions {
            session.close(CloseReason::Ended);
        }
        sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> FullJid {
        FullJid::new(s).expect("valid jid")
    }

    #[test]
    fn kick_old_replaces_and_unbind_keeps_the_newer_session() {
        let table = SessionTable::default();
        let (old, _rx_old) = SessionHandle::new(jid("a@x/r"), 4);
        let (new, _rx_new) = SessionHandle::new(jid("a@x/r"), 4);
        assert!(matches!(table.bind(old.clone(), ResourceConflict::KickOld, 0), BindOutcome::Bound { replaced: None }));
        match table.bind(new.clone(), ResourceConflict::KickOld, 0) {
            BindOutcome::Bound { replaced: Some(r) } => assert_eq!(r.id, old.id),
            other => panic!("unexpected {other:?}"),
        }
        table.unbind(&old.jid, old.id);
        assert_eq!(table.get(&jid("a@x/r")).map(|s| s.id), Some(new.id));
    }

    #[test]
    fn refuse_policy_reports_conflict() {
        let table = SessionTable::default();
        let (a, _ra) = SessionHandle::new(jid("a@x/r"), 4);
        let (b, _rb) = SessionHandle::new(jid("a@x/r"), 4);
        table.bind(a, ResourceConflict::Refuse, 0);
        assert!(matches!(table.bind(b, ResourceConflict::Refuse, 0), BindOutcome::Conflict));
    }

    #[test]
    fn an_account_at_its_session_limit_may_only_replace_a_resource() {
        let table = SessionTable::default();
        let (a, _ra) = SessionHandle::new(jid("a@x/one"), 4);
        let (b, _rb) = SessionHandle::new(jid("a@x/two"), 4);
        let (again, _rc) = SessionHandle::new(jid("a@x/one"), 4);
        let (other, _ro) = SessionHandle::new(jid("b@x/two"), 4);
        assert!(matches!(table.bind(a, ResourceConflict::KickOld, 1), BindOutcome::Bound { replaced: None }));
        assert!(matches!(table.bind(b, ResourceConflict::KickOld, 1), BindOutcome::TooMany));
        assert!(matches!(table.bind(again, ResourceConflict::KickOld, 1), BindOutcome::Bound { replaced: Some(_) }));
        assert!(matches!(table.bind(other, ResourceConflict::KickOld, 1), BindOutcome::Bound { replaced: None }));
    }

    #[test]
    fn client_state_reports_hibernation_before_inactivity() {
        let (handle, _rx) = SessionHandle::new(jid("a@x/r"), 4);
        assert_eq!(handle.client_state(), starling_api::ClientState::Active);
        handle.set_inactive(true);
        assert_eq!(handle.client_state(), starling_api::ClientState::Inactive);
        handle.set_hibernating(true);
        assert_eq!(handle.client_state(), starling_api::ClientState::Hibernating);
        handle.set_hibernating(false);
        handle.set_inactive(false);
        assert_eq!(handle.client_state(), starling_api::ClientState::Active);
    }

    #[tokio::test]
    async fn full_queue_closes_the_session() {
        let (handle, mut rx) = SessionHandle::new(jid("a@x/r"), 1);
        assert!(handle.deliver(Stanza::new("message", "jabber:client")).is_ok());
        assert!(handle.deliver(Stanza::new("message", "jabber:client")).is_err(), "the refused stanza comes back");
        assert_eq!((&mut rx.close).await.ok(), Some(CloseReason::TooSlow));
        assert!(rx.queue.recv().await.is_some());
    }
}
