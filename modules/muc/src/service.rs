//! The MUC service: one actor (tokio task) per room, each the only owner of its
//! room's state, fed through a bounded queue by the component's synchronous handler.
//!
//! A room's actor starts on the first stanza for it (loading the room if stored) and
//! retires when the room ends (destroyed, a temporary room's last occupant left, or a
//! stanza for a room that does not exist). Retiring takes the room out of the table
//! and re-queues, in order, whatever reached the old queue meanwhile, all under the
//! table's lock, so no stanza is lost or overtaken.

use starling_api::tracing;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use starling_api::jid::{BareJid, Jid};
use starling_api::reply::error_reply;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};
use starling_api::{Context, Stanza, stanza_error};
use tokio::sync::mpsc;

use crate::config::MucConfig;

/// What the directory (service disco#items) shows of a loaded public room.
#[derive(Debug, Clone)]
pub struct Listing {
    /// `muc#roomconfig_roomname`, or empty.
    pub name: String,
}

/// The service shared by the component handler, the room actors and the disco
/// provider.
pub struct Service {
    /// The module's settings.
    pub config: MucConfig,
    /// Service domain → the virtual host it belongs to.
    pub domains: HashMap<String, String>,
    rooms: Mutex<HashMap<BareJid, mpsc::Sender<Stanza>>>,
    listings: Mutex<HashMap<BareJid, Listing>>,
}

type RoomTable = HashMap<BareJid, mpsc::Sender<Stanza>>;

impl Service {
    /// A service for `domains` (service domain → host).
    pub fn new(config: MucConfig, domains: HashMap<String, String>) -> Service {
        Service { config, domains, rooms: Mutex::default(), listings: Mutex::default() }
    }

    /// The component handler: a stanza for the service domain or a JID under it.
    pub fn handle(self: &Arc<Self>, ctx: &Context, stanza: Stanza) {
        let Some(to) = stanza.to().and_then(|to| starling_api::parse_jid(to).ok()) else { return };
        let Some(node) = to.node() else {
            // The bare service domain: typed handlers answered every IQ they know.
            refuse(ctx, &stanza, ErrorType::Cancel, DefinedCondition::ServiceUnavailable);
            return;
        };
        let room = BareJid::from_parts(Some(node), to.domain());
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        self.queue(ctx, &mut rooms, room, stanza, true);
    }

    /// Hands `stanza` to the room's actor, starting one if needed. A closed queue means
    /// the actor ended without retiring (it panicked): `restart` starts a fresh one, once.
    fn queue(self: &Arc<Self>, ctx: &Context, rooms: &mut RoomTable, room: BareJid, stanza: Stanza, restart: bool) {
        let sender = rooms.entry(room.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(self.config.room_queue);
            tokio::spawn(crate::room::run(self.clone(), ctx.clone(), room.clone(), rx));
            tx
        });
        match sender.try_send(stanza) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(stanza)) => {
                tracing::warn!(room = %room_name(&stanza), "room queue full; stanza refused");
                refuse(ctx, &stanza, ErrorType::Wait, DefinedCondition::ResourceConstraint);
            }
            Err(mpsc::error::TrySendError::Closed(stanza)) => {
                rooms.remove(&room);
                if restart {
                    self.queue(ctx, rooms, room, stanza, false);
                } else {
                    // Even a fresh actor's queue is closed: the runtime is shutting down
                    // and drops new tasks at once.
                    refuse(ctx, &stanza, ErrorType::Cancel, DefinedCondition::ServiceUnavailable);
                }
            }
        }
    }

    /// Called by a room's actor when the room ended: removes it from the table and
    /// re-queues what reached its queue meanwhile (a join that re-creates the room).
    pub fn retire(self: &Arc<Self>, ctx: &Context, room: &BareJid, rx: &mut mpsc::Receiver<Stanza>) {
        self.list(room, None);
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        rooms.remove(room);
        rx.close();
        while let Ok(stanza) = rx.try_recv() {
            self.queue(ctx, &mut rooms, room.clone(), stanza, true);
        }
    }

    /// Records (`Some`) or removes (`None`) a room's directory listing.
    pub fn list(&self, room: &BareJid, listing: Option<Listing>) {
        let mut listings = self.listings.lock().unwrap_or_else(|e| e.into_inner());
        match listing {
            Some(listing) => listings.insert(room.clone(), listing),
            None => listings.remove(room),
        };
    }

    /// Loaded public rooms of `domain`, with their listings.
    pub fn listed(&self, domain: &str) -> Vec<(BareJid, Listing)> {
        let listings = self.listings.lock().unwrap_or_else(|e| e.into_inner());
        listings
            .iter()
            .filter(|(jid, _)| jid.domain().as_str() == domain)
            .map(|(j, l)| (j.clone(), l.clone()))
            .collect()
    }

    /// The virtual host a service domain belongs to.
    pub fn host_of(&self, domain: &str) -> Option<&str> {
        self.domains.get(domain).map(String::as_str)
    }
}

fn room_name(stanza: &Stanza) -> String {
    stanza
        .to()
        .and_then(|to| starling_api::parse_jid(to).ok())
        .map(|j: Jid| j.to_bare().to_string())
        .unwrap_or_default()
}

/// Answers `stanza` with an error (never an error with an error).
pub fn refuse(ctx: &Context, stanza: &Stanza, type_: ErrorType, condition: DefinedCondition) {
    if let Some(reply) = error_reply(stanza, &stanza_error(type_, condition)) {
        ctx.send(reply);
    }
}
