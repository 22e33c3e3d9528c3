//! Voice requests in moderated rooms (XEP-0045 §7.13, §8.6): a visitor asks, the
//! room passes the request to every moderator as a form, a moderator's approval
//! makes the visitor a participant.

use starling_api::jid::Jid;
use starling_api::minidom::Element;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::admin::Refusal;
use super::{PresenceExtra, Room};
use crate::model::Role;
use crate::roomconfig::NS_DATA;
use crate::xml::{self, Children, Node};

/// The `FORM_TYPE` of voice requests.
pub const FORM_TYPE: &str = "http://jabber.org/protocol/muc#request";

fn value(form: &Element, var: &str) -> Option<String> {
    form.children()
        .find(|f| f.is("field", NS_DATA) && f.attr("var") == Some(var))
        .and_then(|f| f.get_child("value", NS_DATA))
        .map(|v| v.text())
}

/// Whether `form` is a submitted voice request or approval.
pub fn is_voice_form(form: &Element) -> bool {
    form.attr("type") == Some("submit") && value(form, "FORM_TYPE").as_deref() == Some(FORM_TYPE)
}

fn field(var: &'static str, type_: &'static str, label: &'static str, value: String) -> Node {
    Node::new("field", NS_DATA)
        .attr("var", var)
        .attr("type", type_)
        .attr("label", label)
        .child(Node::text_element("value", NS_DATA, value))
}

impl Room {
    /// A submitted `muc#request` form: a visitor's request (§7.13) or a moderator's
    /// answer to one (§8.6).
    pub(super) fn voice_form(&mut self, from: &Jid, form: &Element) -> Result<(), Refusal> {
        let Some(sender) = self.occupant_of(from).cloned() else {
            return Err((ErrorType::Modify, DefinedCondition::NotAcceptable));
        };
        if sender.role == Role::Moderator {
            let approved = matches!(value(form, "muc#request_allow").as_deref(), Some("1" | "true"));
            let Some(nick) = value(form, "muc#roomnick") else {
                return Err((ErrorType::Modify, DefinedCondition::BadRequest));
            };
            if !approved {
                return Ok(());
            }
            let Some(occupant) = self.occupants.get_mut(&nick).filter(|o| o.role == Role::Visitor) else {
                return Ok(());
            };
            occupant.role = Role::Participant;
            let occupant = occupant.clone();
            let extra = PresenceExtra { actor: Some(sender.nick), ..PresenceExtra::default() };
            self.broadcast_presence(&occupant, true, &extra);
            return Ok(());
        }
        if sender.role != Role::Visitor {
            // Participants already have a voice.
            return Ok(());
        }
        let jid = sender.current().map(|s| s.jid.to_string()).unwrap_or_default();
        let request = Node::new("x", NS_DATA)
            .attr("type", "form")
            .child(Node::text_element("title", NS_DATA, "Voice request"))
            .child(Node::text_element(
                "instructions",
                NS_DATA,
                "To approve this request for voice, select \"Grant voice\" and submit the form.",
            ))
            .child(
                Node::new("field", NS_DATA)
                    .attr("var", "FORM_TYPE")
                    .attr("type", "hidden")
                    .child(Node::text_element("value", NS_DATA, FORM_TYPE)),
            )
            .child(field("muc#role", "list-single", "Requested role", "participant".to_owned()))
            .child(field("muc#jid", "jid-single", "User ID", jid))
            .child(field("muc#roomnick", "text-single", "Room nickname", sender.nick.clone()))
            .child(field("muc#request_allow", "boolean", "Grant voice", "false".to_owned()));
        let mut children = Children::new();
        children.push(&request);
        let children = children.into_bytes();
        for moderator in self.occupants.values().filter(|o| o.role == Role::Moderator) {
            for session in &moderator.sessions {
                self.ctx.send(xml::stanza(
                    "message",
                    self.jid.as_str(),
                    session.jid.as_str(),
                    None,
                    None,
                    children.clone(),
                ));
            }
        }
        Ok(())
    }
}
