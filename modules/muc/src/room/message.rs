//! Groupchat messages, the subject, private messages and mediated invitations
//! (XEP-0045 §7.4, §7.5, §7.8, §8.1); voice request forms go to `voice`.

use starling_api::tracing;
use std::time::SystemTime;

use starling_api::archive::{ArchiveService, NS_STANZA_ID};
use starling_api::jid::{BareJid, Jid};
use starling_api::minidom::Element;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};
use starling_api::{Stanza, parse_bare_jid};

use super::{HistoryEntry, Room};
use crate::model::{Affiliation, NS_OCCUPANT_ID, NS_RETRACT, NS_USER, Role};
use crate::roomconfig::{NS_DATA, PmPolicy};
use crate::service::refuse;
use crate::xml::{self, Children, NS_CLIENT, Node};

impl Room {
    pub(super) async fn on_message(&mut self, stanza: &Stanza, element: &Element, from: Jid, to: Jid) {
        match (stanza.type_(), to.resource()) {
            (Some("error"), _) => {}
            (Some("groupchat"), None) => self.groupchat(stanza, element, &from).await,
            // §7.5: groupchat to an occupant is not a thing.
            (Some("groupchat"), Some(_)) => refuse(&self.ctx, stanza, ErrorType::Modify, DefinedCondition::BadRequest),
            (_, Some(nick)) => self.private_message(stanza, element, &from, nick.as_str()),
            (_, None) => self.addressed_to_room(stanza, element, &from).await,
        }
    }

    /// The message as the room broadcasts it: the sender's children without ids the
    /// room vouches for (a sender cannot forge them), plus the occupant id and the
    /// room's stanza id.
    fn rewrite(&self, element: &Element, bare: &BareJid, stanza_id: Option<&str>) -> bytes::Bytes {
        let room = self.jid.as_str();
        let mut children = Children::new();
        for child in element.children() {
            let forged_id = child.is("stanza-id", NS_STANZA_ID) && child.attr("by") == Some(room);
            if forged_id || child.is("occupant-id", NS_OCCUPANT_ID) {
                continue;
            }
            children.push_raw(&starling_api::reply::child_xml(child, NS_CLIENT));
        }
        children.push(&self.occupant_id_node(bare));
        if let Some(id) = stanza_id {
            children.push(&Node::new("stanza-id", NS_STANZA_ID).attr("id", id).attr("by", room));
        }
        children.into_bytes()
    }

    async fn groupchat(&mut self, stanza: &Stanza, element: &Element, from: &Jid) {
        let Some(occupant) = self.occupant_of(from).cloned() else {
            // §7.4: only occupants speak.
            refuse(&self.ctx, stanza, ErrorType::Modify, DefinedCondition::NotAcceptable);
            return;
        };
        if occupant.role < Role::Participant {
            // §8.1: a visitor in a moderated room has no voice.
            refuse(&self.ctx, stanza, ErrorType::Auth, DefinedCondition::Forbidden);
            return;
        }
        if let Some(retract) = element.get_child("retract", NS_RETRACT)
            && let Err((type_, condition)) = self.retract_own(&occupant.bare, retract).await
        {
            refuse(&self.ctx, stanza, type_, condition);
            return;
        }
        let body = element.get_child("body", NS_CLIENT).is_some();
        if let Some(subject) = element.get_child("subject", NS_CLIENT).filter(|_| !body) {
            if !(self.config.change_subject || occupant.role == Role::Moderator) {
                refuse(&self.ctx, stanza, ErrorType::Auth, DefinedCondition::Forbidden);
                return;
            }
            self.set_subject(subject.text(), &occupant.nick).await;
            return;
        }
        let from_nick = self.occupant_jid(&occupant.nick);
        let stanza_id = if body {
            let mut archived = Children::new();
            archived.push_raw(&self.rewrite(element, &occupant.bare, None));
            let copy = xml::stanza(
                "message",
                &from_nick,
                self.jid.as_str(),
                Some("groupchat"),
                stanza.id(),
                archived.into_bytes(),
            );
            Some(self.archive(&from_nick, &copy))
        } else {
            None
        };
        let children = self.rewrite(element, &occupant.bare, stanza_id.as_deref());
        self.broadcast("message", &from_nick, Some("groupchat"), stanza.id(), &children);
        if body {
            self.push_after_message();
        }
        if let Some(stanza_id) = stanza_id {
            self.remember(HistoryEntry {
                nick: occupant.nick.clone(),
                bare: occupant.bare.clone(),
                id: stanza.id().map(str::to_owned),
                stanza_id,
                children,
                at: SystemTime::now(),
            });
        }
    }

    /// XEP-0424 §4: an occupant retracts its own message, named by the room's stanza
    /// id. Only the real bare JID that sent it may: the room checks it in its history
    /// or, for older messages, by the occupant id in the archived copy. The retraction
    /// itself is then broadcast and archived like any groupchat message.
    async fn retract_own(&mut self, sender: &BareJid, retract: &Element) -> Result<(), (ErrorType, DefinedCondition)> {
        let id = retract.attr("id").ok_or((ErrorType::Modify, DefinedCondition::BadRequest))?.to_owned();
        let own = match self.history.iter().find(|entry| entry.stanza_id == id) {
            Some(entry) => entry.bare == *sender,
            None => {
                let archived = self.archived(&id).await.ok_or((ErrorType::Cancel, DefinedCondition::ItemNotFound))?;
                let occupant_id = archived.get_child("occupant-id", NS_OCCUPANT_ID).and_then(|o| o.attr("id"));
                occupant_id == Some(self.occupant_id(sender).as_str())
            }
        };
        if !own {
            return Err((ErrorType::Auth, DefinedCondition::Forbidden));
        }
        self.history.retain(|entry| entry.stanza_id != id);
        let stamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        self.tombstone(&id, Node::new("retracted", NS_RETRACT).attr("stamp", stamp)).await;
        Ok(())
    }

    /// Stores `message` in the room's archive when the room logs; the stanza id
    /// either way (moderation needs one).
    pub(super) fn archive(&self, with: &str, message: &Stanza) -> String {
        let service = self.ctx.service::<dyn ArchiveService>().filter(|_| self.logs());
        match (service, starling_api::parse_jid(with)) {
            (Some(service), Ok(with)) => service.archive(&self.jid, &with, message),
            _ => {
                let bytes: [u8; 15] = rand::random();
                base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
            }
        }
    }

    fn remember(&mut self, entry: HistoryEntry) {
        let limit = self.config.history_length.min(self.svc.config.max_history);
        self.history.push_back(entry);
        while self.history.len() > limit {
            self.history.pop_front();
        }
    }

    async fn set_subject(&mut self, text: String, nick: &str) {
        self.subject = Some((text.clone(), nick.to_owned()));
        let mut children = Children::new();
        children.push(&Node::text_element("subject", NS_CLIENT, text.clone()));
        self.broadcast("message", &self.occupant_jid(nick), Some("groupchat"), None, &children.into_bytes());
        if self.config.persistent {
            let (room, nick) = (self.jid.to_string(), nick.to_owned());
            if let Err(e) = self.ctx.db().run(move |c| crate::store::save_subject(c, &room, &text, &nick)).await {
                tracing::error!(room = %self.jid, error = %e, "cannot store the subject");
            }
        }
    }

    /// §7.5: a private message, to every session of the addressed occupant.
    fn private_message(&self, stanza: &Stanza, element: &Element, from: &Jid, nick: &str) {
        let Some(sender) = self.occupant_of(from) else {
            refuse(&self.ctx, stanza, ErrorType::Modify, DefinedCondition::NotAcceptable);
            return;
        };
        let allowed = match self.config.allow_pm {
            PmPolicy::Anyone => true,
            PmPolicy::Participants => sender.role >= Role::Participant,
            PmPolicy::Moderators => sender.role == Role::Moderator,
            PmPolicy::None => false,
        };
        if !allowed {
            refuse(&self.ctx, stanza, ErrorType::Cancel, DefinedCondition::Forbidden);
            return;
        }
        let Some(target) = self.occupants.get(nick) else {
            refuse(&self.ctx, stanza, ErrorType::Cancel, DefinedCondition::ItemNotFound);
            return;
        };
        let mut children = Children::new();
        for child in element.children().filter(|c| !c.is("x", NS_USER) && !c.is("occupant-id", NS_OCCUPANT_ID)) {
            children.push_raw(&starling_api::reply::child_xml(child, NS_CLIENT));
        }
        children.push(&Node::new("x", NS_USER));
        children.push(&self.occupant_id_node(&sender.bare));
        let children = children.into_bytes();
        let from_nick = self.occupant_jid(&sender.nick);
        for session in &target.sessions {
            self.ctx.send(xml::stanza(
                "message",
                &from_nick,
                session.jid.as_str(),
                stanza.type_(),
                stanza.id(),
                children.clone(),
            ));
        }
    }

    /// A message to the room itself that is not groupchat: invitations and declines.
    async fn addressed_to_room(&mut self, stanza: &Stanza, element: &Element, from: &Jid) {
        if let Some(form) = element.get_child("x", NS_DATA).filter(|f| super::voice::is_voice_form(f)) {
            if let Err((type_, condition)) = self.voice_form(from, form) {
                refuse(&self.ctx, stanza, type_, condition);
            }
            return;
        }
        let Some(x) = element.get_child("x", NS_USER) else {
            refuse(&self.ctx, stanza, ErrorType::Modify, DefinedCondition::BadRequest);
            return;
        };
        for invite in x.children().filter(|c| c.is("invite", NS_USER)) {
            if let Err(condition) = self.invite(invite, from).await {
                refuse(&self.ctx, stanza, condition.0, condition.1);
                return;
            }
        }
        for decline in x.children().filter(|c| c.is("decline", NS_USER)) {
            self.decline(decline, from);
        }
    }

    /// §7.8.2: a mediated invitation; in a members-only room the invitee becomes a
    /// member.
    async fn invite(&mut self, invite: &Element, from: &Jid) -> Result<(), (ErrorType, DefinedCondition)> {
        let Some(invitee) = invite.attr("to").and_then(|to| parse_bare_jid(to).ok()) else {
            return Err((ErrorType::Modify, DefinedCondition::JidMalformed));
        };
        let Some(inviter) = self.occupant_of(from).cloned() else {
            return Err((ErrorType::Modify, DefinedCondition::NotAcceptable));
        };
        let affiliation = self.affiliation(&inviter.bare);
        if self.config.members_only && !self.config.allow_invites && affiliation < Affiliation::Admin {
            return Err((ErrorType::Auth, DefinedCondition::Forbidden));
        }
        if self.affiliation(&invitee) == Affiliation::Outcast {
            return Err((ErrorType::Cancel, DefinedCondition::NotAllowed));
        }
        if self.config.members_only && self.affiliation(&invitee) < Affiliation::Member {
            self.set_affiliation(&invitee, Affiliation::Member, None).await;
        }
        let reason = invite.get_child("reason", NS_USER).map(|r| r.text());
        let mut inner = Node::new("invite", NS_USER).attr("from", inviter.bare.to_string());
        if let Some(reason) = &reason {
            inner.push(Node::text_element("reason", NS_USER, reason.clone()));
        }
        let mut x = Node::new("x", NS_USER).child(inner);
        if !self.config.password.is_empty() {
            x.push(Node::text_element("password", NS_USER, self.config.password.clone()));
        }
        let mut children = Children::new();
        children.push(&x);
        children.push(&Node::text_element(
            "body",
            NS_CLIENT,
            format!(
                "{} invites you to the room {}{}",
                inviter.bare,
                self.jid,
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            ),
        ));
        self.ctx.send(xml::stanza("message", self.jid.as_str(), invitee.as_str(), None, None, children.into_bytes()));
        Ok(())
    }

    /// §7.8.2: an invitee declines; the inviter hears it from the room.
    fn decline(&self, decline: &Element, from: &Jid) {
        let Some(inviter) = decline.attr("to").and_then(|to| starling_api::parse_jid(to).ok()) else { return };
        let mut inner = Node::new("decline", NS_USER).attr("from", from.to_bare().to_string());
        if let Some(reason) = decline.get_child("reason", NS_USER) {
            inner.push(Node::text_element("reason", NS_USER, reason.text()));
        }
        let mut children = Children::new();
        children.push(&Node::new("x", NS_USER).child(inner));
        self.ctx.send(xml::stanza("message", self.jid.as_str(), inviter.as_str(), None, None, children.into_bytes()));
    }
}
