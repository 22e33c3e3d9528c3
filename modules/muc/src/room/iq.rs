//! IQs to the room and to occupants: disco#info and #items (XEP-0030, §6.4), the
//! admin and owner namespaces, room MAM (XEP-0313), pings and self-pings (XEP-0410),
//! moderation (XEP-0425) and IQs between occupants (§7.3, answered through the room).

use std::time::Duration;

use starling_api::archive::{ArchiveService, NS_MAM};
use starling_api::jid::Jid;
use starling_api::minidom::Element;
use starling_api::push::NS_PUSH;
use starling_api::reply::{child_xml, error_reply};
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};
use starling_api::{Stanza, stanza_error};

use super::hats;
use super::register::NS_REGISTER;
use super::vcard::NS_VCARD;
use super::{HistoryEntry, Room};
use crate::model::{Affiliation, NS_ADMIN, NS_MODERATE, NS_MUC, NS_OCCUPANT_ID, NS_OWNER, NS_RETRACT, Role};
use crate::roomconfig::NS_DATA;
use crate::service::refuse;
use crate::xml::{self, Children, NS_CLIENT, Node};

const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
const NS_PING: &str = "urn:xmpp:ping";
/// How long an occupant gets to answer an IQ another occupant sent it.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

impl Room {
    pub(super) async fn on_iq(&mut self, stanza: &Stanza, element: &Element, from: Jid, to: Jid) {
        if !matches!(stanza.type_(), Some("get" | "set")) {
            // Answers travel through `send_iq`; anything else addressed here is stray.
            return;
        }
        let Some(payload) = element.children().next() else {
            refuse(&self.ctx, stanza, ErrorType::Modify, DefinedCondition::BadRequest);
            return;
        };
        if let Some(nick) = to.resource() {
            self.forward_to_occupant(stanza, payload, &from, nick.as_str());
            return;
        }
        if self.locked && self.affiliation(&from.to_bare()) != Affiliation::Owner {
            refuse(&self.ctx, stanza, ErrorType::Cancel, DefinedCondition::ItemNotFound);
            return;
        }
        let set = stanza.type_() == Some("set");
        let answer = match (set, payload.name(), payload.ns().as_str()) {
            (false, "query", NS_DISCO_INFO) => self.disco_info_node(&from, payload.attr("node")).map(Some),
            (false, "query", NS_DISCO_ITEMS) => Ok(Some(Node::new("query", NS_DISCO_ITEMS))),
            (false, "ping", NS_PING) => Ok(None),
            (false, "query", NS_REGISTER) => self.register_get(&from).map(Some),
            (true, "query", NS_REGISTER) => self.register_set(&from, payload).await.map(|()| None),
            (false, "query", NS_ADMIN) => self.admin_get(&from, payload).map(Some),
            (true, "query", NS_ADMIN) => self.admin_set(&from, payload).await.map(|()| None),
            (false, "query", NS_OWNER) => self.owner_get(&from).map(Some),
            (true, "query", NS_OWNER) => self.owner_set(&from, payload).await.map(|()| None),
            (true, "moderate", NS_MODERATE) => self.moderate(&from, payload).await.map(|()| None),
            (true, "enable" | "disable", NS_PUSH) => self.push_set(&from, payload).await.map(|()| None),
            (false, "vCard", NS_VCARD) => {
                self.ctx.send(starling_api::reply::iq_result(stanza, Some(&self.vcard_get())));
                return;
            }
            (true, "vCard", NS_VCARD) => self.vcard_set(&from, payload).await.map(|()| None),
            (true, "command", hats::NS_COMMANDS) => self.hat_command(&from.to_bare(), payload).await.map(Some),
            (true, "query", NS_MAM) => {
                self.archive_query(stanza, &from, payload);
                return;
            }
            _ => Err((ErrorType::Cancel, DefinedCondition::ServiceUnavailable)),
        };
        match answer {
            Ok(payload) => {
                let element = payload.map(|node| {
                    let mut children = Children::new();
                    children.push(&node);
                    children.into_bytes()
                });
                let to = stanza.to().unwrap_or_default();
                self.ctx.send(xml::stanza(
                    "iq",
                    to,
                    from.as_str(),
                    Some("result"),
                    stanza.id(),
                    element.unwrap_or_default(),
                ));
            }
            Err((type_, condition)) => refuse(&self.ctx, stanza, type_, condition),
        }
    }

    /// disco#info of the room, or of its `x-roomuser-item` node: the requester's
    /// reserved nickname as the identity's name (§7.12).
    fn disco_info_node(&self, from: &Jid, node: Option<&str>) -> Result<Node, (ErrorType, DefinedCondition)> {
        match node {
            None => Ok(self.disco_info()),
            Some("x-roomuser-item") => {
                let mut identity =
                    Node::new("identity", NS_DISCO_INFO).attr("category", "conference").attr("type", "text");
                identity = identity.attr_opt("name", self.reserved_nick(&from.to_bare()).map(str::to_owned));
                Ok(Node::new("query", NS_DISCO_INFO).attr("node", "x-roomuser-item").child(identity))
            }
            Some(_) => Err((ErrorType::Cancel, DefinedCondition::ItemNotFound)),
        }
    }

    /// §6.4: identity, features and the `muc#roominfo` form.
    fn disco_info(&self) -> Node {
        let name = if self.config.name.is_empty() {
            self.jid.node().map(|n| n.to_string()).unwrap_or_default()
        } else {
            self.config.name.clone()
        };
        let mut query = Node::new("query", NS_DISCO_INFO).child(
            Node::new("identity", NS_DISCO_INFO).attr("category", "conference").attr("type", "text").attr("name", name),
        );
        let mut features = vec![
            NS_REGISTER,
            NS_VCARD,
            NS_MUC,
            NS_DISCO_INFO,
            NS_OCCUPANT_ID,
            "urn:xmpp:sid:0",
            NS_MODERATE,
            NS_PING,
            "http://jabber.org/protocol/muc#self-ping-optimization",
            "http://jabber.org/protocol/muc#stable_id",
            NS_PUSH,
        ];
        if self.logs() {
            features.push(NS_MAM);
        }
        features.extend(self.config.features());
        for feature in features {
            query.push(Node::new("feature", NS_DISCO_INFO).attr("var", feature));
        }
        let field = |var: &'static str, value: String| {
            Node::new("field", NS_DATA).attr("var", var).child(Node::text_element("value", NS_DATA, value))
        };
        let mut form = Node::new("x", NS_DATA)
            .attr("type", "result")
            .child(
                Node::new("field", NS_DATA).attr("var", "FORM_TYPE").attr("type", "hidden").child(Node::text_element(
                    "value",
                    NS_DATA,
                    "http://jabber.org/protocol/muc#roominfo",
                )),
            )
            .child(field("muc#roominfo_description", self.config.description.clone()))
            .child(field("muc#roominfo_occupants", self.occupants.len().to_string()))
            .child(field("muc#roominfo_subject", self.subject.clone().map(|(s, _)| s).unwrap_or_default()))
            .child(field(
                "muc#roomconfig_changesubject",
                if self.config.change_subject { "1" } else { "0" }.to_owned(),
            ));
        if let Some(hash) = self.avatar_hash() {
            form.push(field("muc#roominfo_avatarhash", hash.to_owned()));
        }
        query.child(form)
    }

    /// XEP-0313 §6: the room's archive, for those who may read the room: not
    /// outcasts, and only members in a members-only room.
    fn archive_query(&self, stanza: &Stanza, from: &Jid, payload: &Element) {
        let affiliation = self.affiliation(&from.to_bare());
        if affiliation == Affiliation::Outcast || (self.config.members_only && affiliation < Affiliation::Member) {
            refuse(&self.ctx, stanza, ErrorType::Auth, DefinedCondition::Forbidden);
            return;
        }
        let Some(service) = self.ctx.service::<dyn ArchiveService>() else {
            refuse(&self.ctx, stanza, ErrorType::Cancel, DefinedCondition::ServiceUnavailable);
            return;
        };
        let query = match service.parse_query(payload) {
            Ok(query) => query,
            Err(error) => {
                if let Some(reply) = error_reply(stanza, &error) {
                    self.ctx.send(reply);
                }
                return;
            }
        };
        // The answer streams from the archive: off the room's task, which goes on.
        let (ctx, room, requester, request) = (self.ctx.clone(), self.jid.clone(), from.clone(), stanza.clone());
        tokio::spawn(async move {
            let reply = match service.query(&ctx, room, requester, query).await {
                Ok(fin) => starling_api::reply::iq_result(&request, Some(&fin)),
                Err(error) => match error_reply(&request, &error) {
                    Some(reply) => reply,
                    None => return,
                },
            };
            ctx.send(reply);
        });
    }

    /// XEP-0425: a moderator retracts an occupant's message by its stanza id.
    async fn moderate(&mut self, from: &Jid, payload: &Element) -> Result<(), (ErrorType, DefinedCondition)> {
        let Some(moderator) = self.occupant_of(from).filter(|o| o.role == Role::Moderator).cloned() else {
            return Err((ErrorType::Auth, DefinedCondition::Forbidden));
        };
        let id = payload.attr("id").ok_or((ErrorType::Modify, DefinedCondition::BadRequest))?.to_owned();
        if payload.get_child("retract", NS_RETRACT).is_none() {
            return Err((ErrorType::Modify, DefinedCondition::BadRequest));
        }
        let reason = payload.get_child("reason", NS_MODERATE).map(|r| r.text());
        self.history.retain(|entry: &HistoryEntry| entry.stanza_id != id);
        let mut retract = Node::new("retract", NS_RETRACT).attr("id", id.clone()).child(
            Node::new("moderated", NS_MODERATE)
                .attr("by", self.occupant_jid(&moderator.nick))
                .child(self.occupant_id_node(&moderator.bare)),
        );
        let stamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut retracted = Node::new("retracted", NS_RETRACT).attr("stamp", stamp).child(
            Node::new("moderated", NS_MODERATE)
                .attr("by", self.occupant_jid(&moderator.nick))
                .child(self.occupant_id_node(&moderator.bare)),
        );
        if let Some(reason) = reason {
            retract.push(Node::text_element("reason", NS_RETRACT, reason.clone()));
            retracted.push(Node::text_element("reason", NS_RETRACT, reason));
        }
        self.tombstone(&id, retracted).await;
        let mut children = Children::new();
        children.push(&retract);
        children.push(&Node::text_element("body", NS_CLIENT, "This message has been retracted by a moderator."));
        let message_id = format!("retract-{id}");
        let room = self.jid.to_string();
        let copy =
            xml::stanza("message", &room, &room, Some("groupchat"), Some(&message_id), children.clone().into_bytes());
        let stanza_id = self.archive(&room, &copy);
        children.push(&Node::new("stanza-id", "urn:xmpp:sid:0").attr("id", stanza_id).attr("by", room.clone()));
        self.broadcast("message", &room, Some("groupchat"), Some(&message_id), &children.into_bytes());
        Ok(())
    }

    /// An IQ to `room/nick`: a self-ping is answered by the room (XEP-0410); other
    /// IQs from occupants go to the addressed occupant's current session, the answer
    /// comes back through the room.
    fn forward_to_occupant(&self, stanza: &Stanza, payload: &Element, from: &Jid, nick: &str) {
        let Some(sender) = self.occupant_of(from) else {
            // XEP-0410 §3: a client that is not joined learns it from this error.
            refuse(&self.ctx, stanza, ErrorType::Cancel, DefinedCondition::NotAcceptable);
            return;
        };
        if sender.nick == nick && payload.is("ping", NS_PING) {
            self.ctx.send(starling_api::reply::iq_result(stanza, None));
            return;
        }
        let Some(target) = self.occupants.get(nick).and_then(|o| o.current()) else {
            refuse(&self.ctx, stanza, ErrorType::Cancel, DefinedCondition::ItemNotFound);
            return;
        };
        let mut children = Children::new();
        children.push_raw(&child_xml(payload, NS_CLIENT));
        let request = xml::stanza(
            "iq",
            &self.occupant_jid(&sender.nick),
            target.jid.as_str(),
            stanza.type_(),
            None,
            children.into_bytes(),
        );
        let (ctx, original) = (self.ctx.clone(), stanza.clone());
        tokio::spawn(async move {
            let reply = match ctx.send_iq(request, FORWARD_TIMEOUT).await {
                Ok(answer) => {
                    let mut reply = Stanza::new("iq", NS_CLIENT);
                    reply.set_attr("from", original.to());
                    reply.set_attr("to", original.from());
                    reply.set_attr("id", original.id());
                    reply.set_attr("type", answer.type_());
                    reply.with_children_xml(answer.children_xml().to_vec().into())
                }
                Err(_) => {
                    match error_reply(&original, &stanza_error(ErrorType::Wait, DefinedCondition::RecipientUnavailable))
                    {
                        Some(reply) => reply,
                        None => return,
                    }
                }
            };
            ctx.send(reply);
        });
    }
}
