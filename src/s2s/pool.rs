//! The outgoing connection pool: each (local domain, remote domain) pair maps to the
//! stream that carries it. A pair without one starts a connection task; a pair whose
//! remote already has an authenticated stream accepting dialback joins that stream
//! (XEP-0220 §2.6 multiplexing) instead of opening another TCP connection.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use starling_api::Stanza;
use starling_api::xmpp_parsers::stanza_error::DefinedCondition;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::{S2s, outgoing};

/// One outgoing stream as the pool sees it.
pub(super) struct LinkHandle {
    /// Unique per process.
    pub id: u64,
    /// The peer's domain.
    pub remote: String,
    /// Stanzas to write (any local domain the pool mapped here).
    pub tx: mpsc::Sender<Stanza>,
    /// Set once authenticated when the peer takes dialback for further local domains.
    pub multiplex: AtomicBool,
    /// Local domains the peer refused on this stream; they need a stream of their own.
    pub refused: Mutex<HashSet<String>>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// (local, remote) → stream.
#[derive(Default)]
pub(super) struct Pool {
    links: Mutex<HashMap<(String, String), Arc<LinkHandle>>>,
}

impl Pool {
    fn get_or_start(&self, s2s: &Arc<S2s>, local: &str, remote: &str) -> Arc<LinkHandle> {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        let key = (local.to_owned(), remote.to_owned());
        if let Some(link) = links.get(&key) {
            return link.clone();
        }
        let shared = links
            .values()
            .find(|l| {
                l.remote == remote
                    && l.multiplex.load(Ordering::Relaxed)
                    && !l.refused.lock().is_ok_and(|r| r.contains(local))
            })
            .cloned();
        if let Some(link) = shared {
            links.insert(key, link.clone());
            return link;
        }
        let (tx, rx) = mpsc::channel(s2s.config.s2s.queue);
        let link = Arc::new(LinkHandle {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            remote: remote.to_owned(),
            tx,
            multiplex: AtomicBool::new(false),
            refused: Mutex::new(HashSet::new()),
        });
        links.insert(key, link.clone());
        let span = tracing::info_span!("s2s_out", %local, %remote);
        s2s.tasks.spawn(outgoing::run(s2s.clone(), link.clone(), rx, local.to_owned()).instrument(span));
        link
    }

    /// Forgets every pair carried by stream `id`.
    pub(super) fn remove_link(&self, id: u64) {
        self.links.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, l| l.id != id);
    }

    /// Forgets one pair, if stream `id` still carries it.
    pub(super) fn remove_pair(&self, local: &str, remote: &str, id: u64) {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        let key = (local.to_owned(), remote.to_owned());
        if links.get(&key).is_some_and(|l| l.id == id) {
            links.remove(&key);
        }
    }
}

/// Queues `stanza` on the stream for (local, remote), starting one if needed. A full
/// queue bounces it with `resource-constraint`.
pub(super) fn send(s2s: &Arc<S2s>, mut stanza: Stanza, local: String, remote: String) {
    // A stream that just ended may still be mapped: forget it and start another.
    for _ in 0..2 {
        let link = s2s.pool.get_or_start(s2s, &local, &remote);
        match link.tx.try_send(stanza) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(refused)) => {
                tracing::warn!(%remote, "S2S queue full; bouncing");
                return s2s.bounce(&refused, DefinedCondition::ResourceConstraint);
            }
            Err(mpsc::error::TrySendError::Closed(refused)) => {
                s2s.pool.remove_link(link.id);
                stanza = refused;
            }
        }
    }
    s2s.bounce(&stanza, DefinedCondition::RemoteServerNotFound);
}
