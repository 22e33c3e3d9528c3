//! One room: its state and the actor that owns it (XEP-0045).
//!
//! The actor handles the room's stanzas one at a time, in arrival order; database
//! writes of persistent rooms are awaited in line, so the stored state follows the
//! same order. The room's parts live in one file each: `presence` (join, leave, nick
//! change), `message` (groupchat, subject, private messages, invitations), `admin`
//! (affiliations, roles, configuration, destruction), `register` (nickname
//! registration), `vcard` (the room's avatar), `voice` (voice requests) and `iq` (disco, MAM, self-ping, moderation, IQs between occupants).

mod admin;
mod hats;
mod iq;
mod message;
mod presence;
mod push;
mod register;
mod vcard;
mod voice;

use starling_api::tracing;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use starling_api::archive::ArchiveService;
use starling_api::jid::{BareJid, FullJid, Jid};
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};
use starling_api::{Context, Stanza, parse_jid};
use tokio::sync::mpsc;

use crate::model::{Affiliation, Hat, NS_HATS, NS_OCCUPANT_ID, NS_USER, Role, Standing};
use crate::roomconfig::RoomConfig;
use crate::service::{Listing, Service, refuse};
use crate::store::{self, StoredRoom};
use crate::xml::{self, Children, Node};

pub use push::RoomPush;

/// One client session of an occupant (several for a multi-session nickname).
#[derive(Debug, Clone)]
struct Session {
    jid: FullJid,
    /// The children of its last presence, without MUC elements.
    presence: Bytes,
}

/// A nickname in the room and the real JID behind it.
#[derive(Debug, Clone)]
struct Occupant {
    nick: String,
    bare: BareJid,
    role: Role,
    sessions: Vec<Session>,
}

impl Occupant {
    /// The session whose presence represents the occupant (the latest to join or
    /// change presence).
    fn current(&self) -> Option<&Session> {
        self.sessions.last()
    }
}

/// A message kept for joiners (§7.2.15).
#[derive(Debug, Clone)]
struct HistoryEntry {
    nick: String,
    /// The sender's real bare JID, who alone may retract it (XEP-0424).
    bare: BareJid,
    /// The message's `id` attribute.
    id: Option<String>,
    /// The room's stanza id (XEP-0359), for moderation.
    stanza_id: String,
    /// The children as broadcast (with stanza-id and occupant-id).
    children: Bytes,
    at: SystemTime,
}

/// The presence details a broadcast carries beyond the occupant itself.
#[derive(Debug, Default, Clone)]
struct PresenceExtra {
    /// Status codes for everyone (303, 307, 301, …); 110 is added for the occupant's
    /// own sessions.
    codes: Vec<u16>,
    /// Codes for the occupant's own sessions only (100, 170, 201, 210).
    self_codes: Vec<u16>,
    /// `<item nick=…/>` (nick change, 303).
    new_nick: Option<String>,
    /// `<actor nick=…/>` and `<reason/>` of a kick or ban.
    actor: Option<String>,
    reason: Option<String>,
    /// `<destroy jid=…><reason/></destroy>`: (alternate venue, reason).
    destroy: Option<(Option<String>, Option<String>)>,
}

/// A room and everything it knows.
pub struct Room {
    jid: BareJid,
    svc: Arc<Service>,
    ctx: Context,
    config: RoomConfig,
    /// Created and not yet configured: only the owner may enter (§10.1).
    locked: bool,
    /// Subject text and the nick that set it.
    subject: Option<(String, String)>,
    affiliations: HashMap<BareJid, Standing>,
    occupants: BTreeMap<String, Occupant>,
    /// Full JID of a session → its nick.
    sessions: HashMap<FullJid, String>,
    history: VecDeque<HistoryEntry>,
    /// Keys occupant ids (XEP-0421): stable per real bare JID for the room's life.
    salt: String,
    /// Ended: destroyed, or a temporary room left empty.
    ended: bool,
    /// The room's vCard (XEP-0486) and the SHA-1 of its photo.
    vcard: Option<(String, Option<String>)>,
    /// Hats (XEP-0317) by the wearer's bare JID.
    hats: HashMap<BareJid, Vec<Hat>>,
    /// Members' push registrations (XEP-0357).
    push: push::Registrations,
}

/// The actor: loads the room if stored, then handles its stanzas until it ends.
pub async fn run(svc: Arc<Service>, ctx: Context, jid: BareJid, mut rx: mpsc::Receiver<Stanza>) {
    let name = jid.to_string();
    let stored = match ctx.db().run(move |c| store::load(c, &name)).await {
        Ok(stored) => stored,
        Err(e) => {
            tracing::error!(room = %jid, error = %e, "cannot load room");
            while let Ok(stanza) = rx.try_recv() {
                refuse(&ctx, &stanza, ErrorType::Wait, DefinedCondition::InternalServerError);
            }
            svc.retire(&ctx, &jid, &mut rx);
            return;
        }
    };
    let mut room = stored.map(|stored| Room::from_stored(svc.clone(), ctx.clone(), jid.clone(), stored));
    if let Some(room) = &room {
        room.update_listing();
    }
    while let Some(stanza) = rx.recv().await {
        match &mut room {
            Some(room) => room.handle(stanza).await,
            None => room = Room::create(&svc, &ctx, &jid, stanza).await,
        }
        if room.as_ref().is_none_or(|r| r.ended) {
            svc.retire(&ctx, &jid, &mut rx);
            return;
        }
    }
}

impl Room {
    fn from_stored(svc: Arc<Service>, ctx: Context, jid: BareJid, stored: StoredRoom) -> Room {
        let affiliations = stored.affiliations.into_iter().collect();
        let mut hats: HashMap<BareJid, Vec<Hat>> = HashMap::new();
        for (jid, hat) in stored.hats {
            hats.entry(jid).or_default().push(hat);
        }
        Room {
            push: Arc::new(std::sync::Mutex::new(stored.push)),
            hats,
            jid,
            svc,
            ctx,
            config: stored.config,
            locked: false,
            subject: stored.subject,
            affiliations,
            occupants: BTreeMap::new(),
            sessions: HashMap::new(),
            history: VecDeque::new(),
            salt: stored.salt,
            ended: false,
            vcard: stored.vcard.map(|xml| {
                let hash = vcard::photo_hash(&xml);
                (xml, hash)
            }),
        }
    }

    /// The first stanza for a room that does not exist: a join creates it (when the
    /// sender may create rooms), anything else is answered `item-not-found`.
    async fn create(svc: &Arc<Service>, ctx: &Context, jid: &BareJid, stanza: Stanza) -> Option<Room> {
        let from = stanza.from().and_then(|f| parse_jid(f).ok());
        let to = stanza.to().and_then(|t| parse_jid(t).ok());
        let is_join = stanza.name() == "presence"
            && stanza.type_().is_none()
            && to.as_ref().is_some_and(|t| t.resource().is_some());
        let (Some(from), true) = (from, is_join) else {
            refuse(ctx, &stanza, ErrorType::Cancel, DefinedCondition::ItemNotFound);
            return None;
        };
        let host = svc.host_of(jid.domain().as_str()).unwrap_or_default();
        let allowed = match svc.config.create {
            crate::config::Creators::Anyone => true,
            crate::config::Creators::Local => ctx.is_local_host(from.domain().as_str()),
            crate::config::Creators::Admins => ctx.is_admin(&from),
        };
        if !allowed {
            tracing::debug!(room = %jid, %from, host, "room creation refused");
            refuse(ctx, &stanza, ErrorType::Cancel, DefinedCondition::NotAllowed);
            return None;
        }
        let salt: [u8; 16] = rand::random();
        let mut room = Room {
            jid: jid.clone(),
            svc: svc.clone(),
            ctx: ctx.clone(),
            config: RoomConfig { max_occupants: 0, ..RoomConfig::default() },
            locked: true,
            subject: None,
            affiliations: HashMap::from([(
                from.to_bare(),
                Standing { affiliation: Affiliation::Owner, reason: None, nick: None },
            )]),
            occupants: BTreeMap::new(),
            sessions: HashMap::new(),
            history: VecDeque::new(),
            salt: URL_SAFE_NO_PAD.encode(salt),
            ended: false,
            vcard: None,
            hats: HashMap::new(),
            push: Arc::default(),
        };
        room.config.history_length = room.config.history_length.min(svc.config.max_history);
        room.handle_created(stanza).await;
        // A refused creator (bad nick) leaves no room behind.
        (!room.occupants.is_empty()).then_some(room)
    }

    async fn handle(&mut self, stanza: Stanza) {
        let (Some(from), Some(to)) =
            (stanza.from().and_then(|f| parse_jid(f).ok()), stanza.to().and_then(|t| parse_jid(t).ok()))
        else {
            return;
        };
        let Ok(element) = stanza.to_element() else { return };
        match stanza.name() {
            "presence" => self.on_presence(&stanza, &element, from, to, false).await,
            "message" => self.on_message(&stanza, &element, from, to).await,
            "iq" => self.on_iq(&stanza, &element, from, to).await,
            _ => {}
        }
    }

    async fn handle_created(&mut self, stanza: Stanza) {
        let (Some(from), Some(to)) =
            (stanza.from().and_then(|f| parse_jid(f).ok()), stanza.to().and_then(|t| parse_jid(t).ok()))
        else {
            return;
        };
        let Ok(element) = stanza.to_element() else { return };
        self.on_presence(&stanza, &element, from, to, true).await;
    }

    fn affiliation(&self, jid: &BareJid) -> Affiliation {
        self.affiliations.get(jid).map(|s| s.affiliation).unwrap_or(Affiliation::None)
    }

    /// The role an occupant with `affiliation` gets on entering (§5.1.2).
    fn default_role(&self, affiliation: Affiliation) -> Role {
        match affiliation {
            Affiliation::Owner | Affiliation::Admin => Role::Moderator,
            Affiliation::Member => Role::Participant,
            Affiliation::None if self.config.moderated => Role::Visitor,
            Affiliation::None => Role::Participant,
            Affiliation::Outcast => Role::None,
        }
    }

    /// The occupant a session of `from` is, if it is one.
    fn occupant_of(&self, from: &Jid) -> Option<&Occupant> {
        let full = from.try_as_full().ok()?;
        self.occupants.get(self.sessions.get(full)?)
    }

    fn occupant_jid(&self, nick: &str) -> String {
        format!("{}/{}", self.jid, nick)
    }

    /// XEP-0421: the same for every session of one real JID, opaque to others.
    fn occupant_id(&self, bare: &BareJid) -> String {
        let mut hash = Sha256::new();
        hash.update(self.salt.as_bytes());
        hash.update([0]);
        hash.update(bare.as_str().as_bytes());
        URL_SAFE_NO_PAD.encode(hash.finalize())
    }

    fn occupant_id_node(&self, bare: &BareJid) -> Node {
        Node::new("occupant-id", NS_OCCUPANT_ID).attr("id", self.occupant_id(bare))
    }

    /// Whether `viewer` sees real JIDs (moderators always; everyone when non-anonymous).
    fn sees_jids(&self, viewer: &Occupant) -> bool {
        self.config.whois_anyone || viewer.role == Role::Moderator
    }

    /// The children of `occupant`'s presence as `with_jid` viewers and others see it.
    fn presence_children(
        &self,
        occupant: &Occupant,
        available: bool,
        extra: &PresenceExtra,
        own: bool,
        with_jid: bool,
    ) -> Bytes {
        let mut children = Children::new();
        if available && let Some(session) = occupant.current() {
            children.push_raw(&session.presence);
        }
        let role = if available { occupant.role } else { Role::None };
        let mut item = Node::new("item", NS_USER)
            .attr("affiliation", self.affiliation(&occupant.bare).as_str())
            .attr("role", role.as_str());
        if with_jid && let Some(session) = occupant.current() {
            item = item.attr("jid", session.jid.to_string());
        }
        item = item.attr_opt("nick", extra.new_nick.clone());
        if let Some(actor) = &extra.actor {
            item.push(Node::new("actor", NS_USER).attr("nick", actor.clone()));
        }
        if let Some(reason) = &extra.reason {
            item.push(Node::text_element("reason", NS_USER, reason.clone()));
        }
        let mut x = Node::new("x", NS_USER).child(item);
        if let Some((venue, reason)) = &extra.destroy {
            let mut destroy = Node::new("destroy", NS_USER).attr_opt("jid", venue.clone());
            if let Some(reason) = reason {
                destroy.push(Node::text_element("reason", NS_USER, reason.clone()));
            }
            x.push(destroy);
        }
        let own_codes = if own { extra.self_codes.iter().chain([&110]).collect::<Vec<_>>() } else { Vec::new() };
        for code in extra.codes.iter().chain(own_codes) {
            x.push(Node::new("status", NS_USER).attr("code", code.to_string()));
        }
        children.push(&x);
        if let Some(hats) = self.hats.get(&occupant.bare).filter(|h| !h.is_empty() && available) {
            let mut node = Node::new("hats", NS_HATS);
            for hat in hats {
                node.push(Node::new("hat", NS_HATS).attr("uri", hat.uri.clone()).attr("title", hat.title.clone()));
            }
            children.push(&node);
        }
        children.push(&self.occupant_id_node(&occupant.bare));
        children.into_bytes()
    }

    /// Sends `occupant`'s presence to every other occupant's sessions and to its own
    /// sessions (with 110 and the self codes). `occupant` may already be out of the
    /// table (leaving, kicked): its sessions still get their copy.
    fn broadcast_presence(&self, occupant: &Occupant, available: bool, extra: &PresenceExtra) {
        let from = self.occupant_jid(&occupant.nick);
        let type_ = (!available).then_some("unavailable");
        let mut cache: [Option<Bytes>; 2] = [None, None];
        for viewer in self.occupants.values().filter(|v| v.nick != occupant.nick) {
            let with_jid = self.sees_jids(viewer);
            let children = cache[usize::from(with_jid)]
                .get_or_insert_with(|| self.presence_children(occupant, available, extra, false, with_jid))
                .clone();
            for session in &viewer.sessions {
                self.ctx.send(xml::stanza("presence", &from, session.jid.as_str(), type_, None, children.clone()));
            }
        }
        let own = self.presence_children(occupant, available, extra, true, true);
        for session in &occupant.sessions {
            self.ctx.send(xml::stanza("presence", &from, session.jid.as_str(), type_, None, own.clone()));
        }
    }

    /// Sends a stanza from `from` to every session of every occupant.
    fn broadcast(&self, name: &str, from: &str, type_: Option<&str>, id: Option<&str>, children: &Bytes) {
        for occupant in self.occupants.values() {
            for session in &occupant.sessions {
                self.ctx.send(xml::stanza(name, from, session.jid.as_str(), type_, id, children.clone()));
            }
        }
    }

    /// Sends a room message (from the room itself) carrying status codes, e.g. 104.
    fn broadcast_status(&self, codes: &[u16]) {
        let mut x = Node::new("x", NS_USER);
        for code in codes {
            x.push(Node::new("status", NS_USER).attr("code", code.to_string()));
        }
        let mut children = Children::new();
        children.push(&x);
        self.broadcast("message", self.jid.as_str(), Some("groupchat"), None, &children.into_bytes());
    }

    /// Removes an occupant with every session, telling everyone (kick, ban,
    /// destruction, loss of membership).
    fn remove_occupant(&mut self, nick: &str, extra: &PresenceExtra) {
        let Some(occupant) = self.occupants.remove(nick) else { return };
        for session in &occupant.sessions {
            self.sessions.remove(&session.jid);
        }
        self.broadcast_presence(&occupant, false, extra);
    }

    fn stored(&self) -> StoredRoom {
        StoredRoom {
            config: self.config.clone(),
            subject: self.subject.clone(),
            salt: self.salt.clone(),
            affiliations: self.affiliations.iter().map(|(j, s)| (j.clone(), s.clone())).collect(),
            vcard: self.vcard.as_ref().map(|(xml, _)| xml.clone()),
            hats: self.hats.iter().flat_map(|(j, hats)| hats.iter().map(|h| (j.clone(), h.clone()))).collect(),
            push: self.push.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    /// Writes the whole room if it is persistent.
    async fn persist(&self) {
        if !self.config.persistent {
            return;
        }
        let (name, stored, now) = (self.jid.to_string(), self.stored(), now_us());
        if let Err(e) = self.ctx.db().run(move |c| store::save(c, &name, &stored, now)).await {
            tracing::error!(room = %self.jid, error = %e, "cannot store room");
        }
    }

    fn update_listing(&self) {
        let listing =
            (self.config.public && !self.locked && !self.ended).then(|| Listing { name: self.config.name.clone() });
        self.svc.list(&self.jid, listing);
    }

    /// Ends a temporary room whose last occupant left.
    fn end_if_empty(&mut self) {
        if self.occupants.is_empty() && !self.config.persistent {
            self.ended = true;
        }
    }

    /// Whether messages go to the room's archive: archiving on, and the room
    /// persistent (a temporary room's archive would outlive it and greet the next
    /// room of that name).
    /// The message `stanza_id` as the room's archive holds it, when the room logs.
    async fn archived(&self, stanza_id: &str) -> Option<starling_api::minidom::Element> {
        let service = self.ctx.service::<dyn ArchiveService>().filter(|_| self.logs())?;
        match service.fetch(&self.ctx, self.jid.clone(), stanza_id.to_owned()).await {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(room = %self.jid, error = ?e, "cannot read the room's archive");
                None
            }
        }
    }

    /// XEP-0424 §6 and XEP-0425: the archived message `stanza_id` becomes a tombstone,
    /// its envelope and occupant id with `retracted` in place of its content, so later
    /// archive queries (and full-text searches) no longer return what was retracted.
    async fn tombstone(&self, stanza_id: &str, retracted: xml::Node) {
        let Some(original) = self.archived(stanza_id).await else { return };
        let Some(service) = self.ctx.service::<dyn ArchiveService>() else { return };
        let mut children = xml::Children::new();
        children.push(&retracted);
        if let Some(occupant_id) = original.get_child("occupant-id", NS_OCCUPANT_ID) {
            children.push_raw(&starling_api::reply::child_xml(occupant_id, xml::NS_CLIENT));
        }
        let tombstone = xml::stanza(
            "message",
            original.attr("from").unwrap_or_default(),
            original.attr("to").unwrap_or_default(),
            original.attr("type"),
            original.attr("id"),
            children.into_bytes(),
        );
        if let Err(e) = service.replace(&self.ctx, self.jid.clone(), stanza_id.to_owned(), tombstone).await {
            tracing::error!(room = %self.jid, error = ?e, "cannot replace a retracted message in the archive");
        }
    }

    fn logs(&self) -> bool {
        self.config.archiving && self.config.persistent && self.ctx.service::<dyn ArchiveService>().is_some()
    }

    fn max_occupants(&self) -> usize {
        match self.config.max_occupants {
            0 => self.svc.config.max_occupants,
            n => n.min(self.svc.config.max_occupants),
        }
    }
}

/// Microseconds since the epoch.
fn now_us() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or_default()
}
