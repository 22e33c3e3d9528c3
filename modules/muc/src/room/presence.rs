//! Entering, leaving, presence updates and nickname changes (XEP-0045 §7.1–7.6, §7.14).

use starling_api::tracing;
use std::time::{Duration, SystemTime};

use starling_api::Stanza;
use starling_api::jid::{FullJid, Jid};
use starling_api::minidom::Element;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::{HistoryEntry, Occupant, PresenceExtra, Room, Session};
use crate::model::{Affiliation, NS_DELAY, NS_MUC, NS_OCCUPANT_ID, NS_USER};
use crate::service::refuse;
use crate::xml::{self, Children, NS_CLIENT, Node};

/// What a joining client asked of the history (§7.2.15).
#[derive(Debug, Default)]
struct HistoryRequest {
    max_stanzas: Option<usize>,
    max_chars: Option<usize>,
    since: Option<SystemTime>,
}

impl HistoryRequest {
    fn parse(join: Option<&Element>) -> HistoryRequest {
        let Some(history) = join.and_then(|x| x.get_child("history", NS_MUC)) else { return HistoryRequest::default() };
        let number = |name: &str| history.attr(name).and_then(|v| v.parse::<usize>().ok());
        // A period longer than the clock's past means everything.
        let seconds = number("seconds")
            .map(|s| SystemTime::now().checked_sub(Duration::from_secs(s as u64)).unwrap_or(SystemTime::UNIX_EPOCH));
        let since = history
            .attr("since")
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| SystemTime::from(t.with_timezone(&chrono::Utc)));
        HistoryRequest {
            max_stanzas: number("maxstanzas"),
            max_chars: number("maxchars"),
            since: match (seconds, since) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
        }
    }

    /// The entries to send, oldest first.
    fn select<'a>(&self, history: &'a std::collections::VecDeque<HistoryEntry>) -> Vec<&'a HistoryEntry> {
        let mut chosen = Vec::new();
        let mut chars = 0;
        for entry in history.iter().rev() {
            if self.max_stanzas.is_some_and(|max| chosen.len() >= max)
                || self.since.is_some_and(|since| entry.at < since)
            {
                break;
            }
            chars += entry.children.len();
            if self.max_chars.is_some_and(|max| chars > max) {
                break;
            }
            chosen.push(entry);
        }
        chosen.reverse();
        chosen
    }
}

/// A presence's children without the MUC elements the room adds itself.
fn presence_payload(element: &Element) -> bytes::Bytes {
    let mut children = Children::new();
    for child in element.children() {
        // The room vouches for occupant ids and hats: a client's own are dropped.
        if child.is("x", NS_MUC)
            || child.is("x", NS_USER)
            || child.is("occupant-id", NS_OCCUPANT_ID)
            || child.is("hats", crate::model::NS_HATS)
        {
            continue;
        }
        children.push_raw(&starling_api::reply::child_xml(child, NS_CLIENT));
    }
    children.into_bytes()
}

impl Room {
    pub(super) async fn on_presence(&mut self, stanza: &Stanza, element: &Element, from: Jid, to: Jid, created: bool) {
        let Ok(from) = from.try_into_full() else { return };
        let session_nick = self.sessions.get(&from).cloned();
        match stanza.type_() {
            None => {}
            // §7.14: an occupant's client that bounces presence is gone.
            Some("unavailable") | Some("error") => {
                if let Some(nick) = session_nick {
                    let status = element.children().find(|c| c.is("status", NS_CLIENT)).map(|s| s.text());
                    self.leave(&nick, &from, status);
                }
                return;
            }
            Some(_) => return,
        }
        let Some(nick) = to.resource().map(|r| r.as_str().to_owned()) else {
            // §7.2.1: a join needs a nickname.
            refuse(&self.ctx, stanza, ErrorType::Modify, DefinedCondition::JidMalformed);
            return;
        };
        match session_nick {
            Some(current) if current == nick => self.update_presence(&nick, &from, element),
            Some(current) => self.change_nick(stanza, &current, &nick, &from, element),
            None => self.join(stanza, element, &nick, from, created).await,
        }
    }

    async fn join(&mut self, stanza: &Stanza, element: &Element, nick: &str, from: FullJid, created: bool) {
        let bare = from.to_bare();
        let affiliation = self.affiliation(&bare);
        let request = element.get_child("x", NS_MUC);
        let refusal = if self.locked && affiliation != Affiliation::Owner {
            Some((ErrorType::Cancel, DefinedCondition::ItemNotFound))
        } else if affiliation == Affiliation::Outcast {
            Some((ErrorType::Auth, DefinedCondition::Forbidden))
        } else if self.config.members_only && affiliation < Affiliation::Member {
            Some((ErrorType::Auth, DefinedCondition::RegistrationRequired))
        } else if self.occupants.get(nick).is_some_and(|o| o.bare != bare)
            || self.reserved_by(nick).is_some_and(|j| j != &bare)
        {
            Some((ErrorType::Cancel, DefinedCondition::Conflict))
        } else if !self.config.password.is_empty()
            && affiliation < Affiliation::Admin
            && request.and_then(|x| x.get_child("password", NS_MUC)).map(|p| p.text()).as_deref()
                != Some(self.config.password.as_str())
        {
            Some((ErrorType::Auth, DefinedCondition::NotAuthorized))
        } else if affiliation < Affiliation::Admin
            && !self.occupants.contains_key(nick)
            && self.occupants.len() >= self.max_occupants()
        {
            Some((ErrorType::Wait, DefinedCondition::ServiceUnavailable))
        } else {
            None
        };
        if let Some((type_, condition)) = refusal {
            refuse(&self.ctx, stanza, type_, condition);
            return;
        }
        let role = self.default_role(affiliation);
        let session = Session { jid: from.clone(), presence: presence_payload(element) };
        let occupant = self.occupants.entry(nick.to_owned()).or_insert_with(|| Occupant {
            nick: nick.to_owned(),
            bare: bare.clone(),
            role,
            sessions: Vec::new(),
        });
        occupant.sessions.push(session);
        self.sessions.insert(from.clone(), nick.to_owned());
        let Some(occupant) = self.occupants.get(nick).cloned() else { return };

        // §7.2.3: the others' presence first, then the new occupant's everywhere
        // (its own copy last, with 110), then history, then the subject.
        let me = &occupant;
        for other in self.occupants.values().filter(|o| o.nick != nick) {
            let children = self.presence_children(other, true, &PresenceExtra::default(), false, self.sees_jids(me));
            self.ctx.send(xml::stanza(
                "presence",
                &self.occupant_jid(&other.nick),
                from.as_str(),
                None,
                None,
                children,
            ));
        }
        let mut self_codes = Vec::new();
        if self.config.whois_anyone {
            self_codes.push(100);
        }
        if self.logs() {
            self_codes.push(170);
        }
        if created {
            self_codes.push(201);
        }
        let extra = PresenceExtra { self_codes, ..PresenceExtra::default() };
        self.broadcast_presence(&occupant, true, &extra);

        let room = self.jid.to_string();
        for entry in HistoryRequest::parse(request).select(&self.history) {
            let mut children = Children::new();
            children.push_raw(&entry.children);
            let stamp =
                chrono::DateTime::<chrono::Utc>::from(entry.at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            children.push(&Node::new("delay", NS_DELAY).attr("from", room.clone()).attr("stamp", stamp));
            let sender = self.occupant_jid(&entry.nick);
            self.ctx.send(xml::stanza(
                "message",
                &sender,
                from.as_str(),
                Some("groupchat"),
                entry.id.as_deref(),
                children.into_bytes(),
            ));
        }
        self.send_subject(&from);
        if created {
            tracing::debug!(room = %self.jid, owner = %bare, "room created");
        }
        self.update_listing();
    }

    /// §7.2.15: the subject (empty when none) ends the join.
    pub(super) fn send_subject(&self, to: &FullJid) {
        let (text, nick) = self.subject.clone().unwrap_or_default();
        let from = if nick.is_empty() { self.jid.to_string() } else { self.occupant_jid(&nick) };
        let mut children = Children::new();
        children.push(&Node::text_element("subject", NS_CLIENT, text));
        self.ctx.send(xml::stanza("message", &from, to.as_str(), Some("groupchat"), None, children.into_bytes()));
    }

    fn update_presence(&mut self, nick: &str, from: &FullJid, element: &Element) {
        let Some(occupant) = self.occupants.get_mut(nick) else { return };
        if let Some(index) = occupant.sessions.iter().position(|s| &s.jid == from) {
            let mut session = occupant.sessions.remove(index);
            session.presence = presence_payload(element);
            occupant.sessions.push(session);
        }
        let occupant = occupant.clone();
        self.broadcast_presence(&occupant, true, &PresenceExtra::default());
    }

    /// §7.6: unavailable with 303 and the new nick under the old one, then the
    /// occupant under the new one.
    fn change_nick(&mut self, stanza: &Stanza, current: &str, nick: &str, from: &FullJid, element: &Element) {
        let Some(occupant) = self.occupants.get(current) else { return };
        if self.occupants.contains_key(nick) || self.reserved_by(nick).is_some_and(|j| j != &occupant.bare) {
            refuse(&self.ctx, stanza, ErrorType::Cancel, DefinedCondition::Conflict);
            return;
        }
        if occupant.sessions.len() > 1 {
            // Other sessions share the nickname: one device cannot rename them all.
            refuse(&self.ctx, stanza, ErrorType::Modify, DefinedCondition::NotAcceptable);
            return;
        }
        let Some(mut occupant) = self.occupants.remove(current) else { return };
        let leaving = PresenceExtra { codes: vec![303], new_nick: Some(nick.to_owned()), ..PresenceExtra::default() };
        self.broadcast_presence(&occupant, false, &leaving);
        occupant.nick = nick.to_owned();
        if let Some(session) = occupant.sessions.first_mut() {
            session.presence = presence_payload(element);
        }
        self.sessions.insert(from.clone(), nick.to_owned());
        self.occupants.insert(nick.to_owned(), occupant.clone());
        self.broadcast_presence(&occupant, true, &PresenceExtra::default());
    }

    /// §7.14: a session leaves; the occupant leaves with its last session.
    fn leave(&mut self, nick: &str, from: &FullJid, status: Option<String>) {
        self.sessions.remove(from);
        let Some(occupant) = self.occupants.get_mut(nick) else { return };
        let Some(index) = occupant.sessions.iter().position(|s| &s.jid == from) else { return };
        let session = occupant.sessions.remove(index);
        let mut payload = Children::new();
        if let Some(status) = status {
            payload.push(&Node::text_element("status", NS_CLIENT, status));
        }
        if !occupant.sessions.is_empty() {
            // Other devices stay: only this one hears that it left.
            let alone =
                Occupant { sessions: vec![Session { presence: payload.into_bytes(), ..session }], ..occupant.clone() };
            let children = self.presence_children(&alone, false, &PresenceExtra::default(), true, true);
            self.ctx.send(xml::stanza(
                "presence",
                &self.occupant_jid(nick),
                from.as_str(),
                Some("unavailable"),
                None,
                children,
            ));
            return;
        }
        occupant.sessions.push(Session { presence: payload.into_bytes(), ..session });
        if let Some(occupant) = self.occupants.remove(nick) {
            self.broadcast_presence_unavailable(&occupant);
        }
        self.end_if_empty();
    }

    /// Leaving carries the occupant's status text (unlike kicks, whose presence
    /// carries only the room's elements).
    fn broadcast_presence_unavailable(&self, occupant: &Occupant) {
        let status = occupant.current().map(|s| s.presence.clone()).unwrap_or_default();
        let from = self.occupant_jid(&occupant.nick);
        let extra = PresenceExtra::default();
        let send = |to: &FullJid, own: bool, with_jid: bool| {
            let mut children = Children::new();
            children.push_raw(&status);
            children.push_raw(&self.presence_children(occupant, false, &extra, own, with_jid));
            self.ctx.send(xml::stanza(
                "presence",
                &from,
                to.as_str(),
                Some("unavailable"),
                None,
                children.into_bytes(),
            ));
        };
        for viewer in self.occupants.values() {
            for session in &viewer.sessions {
                send(&session.jid, false, self.sees_jids(viewer));
            }
        }
        for session in &occupant.sessions {
            send(&session.jid, true, true);
        }
    }
}
