//! Multi-step command sessions (XEP-0050 §3.4): in memory, owned by the full JID that
//! started them, expiring after a period of silence, bounded per owner and in total so
//! that nobody can fill the server's memory with abandoned sessions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use starling_api::jid::Jid;
use starling_api::xmpp_parsers::data_forms::DataForm;

/// A session with no request for this long is forgotten.
const SESSION_TTL: Duration = Duration::from_secs(600);
/// Open sessions one requester may have.
const PER_OWNER: usize = 8;
/// Open sessions on the whole server.
const TOTAL: usize = 10_000;

/// One open session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The command node.
    pub node: String,
    /// Who started it.
    pub owner: Jid,
    /// Forms the handler returned so far.
    pub stage: u32,
    /// The form shown now, and whether it is the last stage.
    pub current: Option<(DataForm, bool)>,
    /// Forms shown before the current one, for `prev`.
    pub history: Vec<(DataForm, bool)>,
    /// Values submitted in earlier stages.
    pub earlier: BTreeMap<String, Vec<String>>,
    touched: Instant,
}

impl Session {
    /// A fresh session of `owner` on `node`.
    pub fn new(node: &str, owner: &Jid) -> Session {
        Session {
            node: node.to_owned(),
            owner: owner.clone(),
            stage: 0,
            current: None,
            history: Vec::new(),
            earlier: BTreeMap::new(),
            touched: Instant::now(),
        }
    }
}

/// Why a session could not be used.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Unknown, or someone else's, or another command's (`bad-sessionid`).
    Unknown,
    /// It existed but timed out (`session-expired`).
    Expired,
}

/// Too many sessions are open.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// The open sessions.
#[derive(Default)]
pub struct SessionStore {
    sessions: Mutex<HashMap<String, Session>>,
}

impl SessionStore {
    /// Takes session `id` out for one step; it must belong to `owner` and `node`.
    pub fn take(&self, id: &str, owner: &Jid, node: &str) -> Result<Session, Lookup> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        match sessions.get(id) {
            Some(s) if s.owner != *owner || s.node != node => return Err(Lookup::Unknown),
            Some(_) => {}
            None => return Err(Lookup::Unknown),
        }
        let session = sessions.remove(id).ok_or(Lookup::Unknown)?;
        if session.touched.elapsed() > SESSION_TTL { Err(Lookup::Expired) } else { Ok(session) }
    }

    /// Stores `session` under `id` (a new id when `None`) and returns the id.
    pub fn put(&self, id: Option<String>, mut session: Session) -> Result<String, Full> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| s.touched.elapsed() <= SESSION_TTL);
        let owned = sessions.values().filter(|s| s.owner == session.owner).count();
        if id.is_none() && (owned >= PER_OWNER || sessions.len() >= TOTAL) {
            return Err(Full);
        }
        let id = id.unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
        session.touched = Instant::now();
        sessions.insert(id.clone(), session);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        Jid::new(s).expect("jid")
    }

    #[test]
    fn sessions_belong_to_their_owner_and_node() {
        let store = SessionStore::default();
        let owner = jid("admin@example.org/laptop");
        let id = store.put(None, Session::new("cmd", &owner)).expect("room");
        assert_eq!(store.take(&id, &jid("mallory@example.org/x"), "cmd").err(), Some(Lookup::Unknown));
        assert_eq!(store.take(&id, &owner, "other").err(), Some(Lookup::Unknown));
        let session = store.take(&id, &owner, "cmd").expect("owner's");
        assert_eq!(session.node, "cmd");
        assert_eq!(store.take(&id, &owner, "cmd").err(), Some(Lookup::Unknown), "taken out while in use");
    }

    #[test]
    fn one_owner_cannot_open_unbounded_sessions() {
        let store = SessionStore::default();
        let owner = jid("admin@example.org/laptop");
        for _ in 0..PER_OWNER {
            store.put(None, Session::new("cmd", &owner)).expect("room");
        }
        assert_eq!(store.put(None, Session::new("cmd", &owner)), Err(Full));
        assert!(store.put(None, Session::new("cmd", &jid("other@example.org/x"))).is_ok());
    }
}
