//! Registering with a room (XEP-0045 §7.10): a JID becomes a member with a nickname
//! reserved for it, and §7.12 discovering that reserved nickname.

use starling_api::jid::{BareJid, Jid};
use starling_api::minidom::Element;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::Room;
use super::admin::Refusal;
use crate::model::{Affiliation, Standing};
use crate::roomconfig::NS_DATA;
use crate::xml::Node;

/// `jabber:iq:register`
pub const NS_REGISTER: &str = "jabber:iq:register";
const FORM_TYPE: &str = "http://jabber.org/protocol/muc#register";
const NICK_FIELD: &str = "muc#register_roomnick";

impl Room {
    /// The JID that registered `nick`, if any.
    pub(super) fn reserved_by(&self, nick: &str) -> Option<&BareJid> {
        self.affiliations.iter().find(|(_, s)| s.nick.as_deref() == Some(nick)).map(|(jid, _)| jid)
    }

    /// The nickname `jid` registered, if any.
    pub(super) fn reserved_nick(&self, jid: &BareJid) -> Option<&str> {
        self.affiliations.get(jid).and_then(|s| s.nick.as_deref())
    }

    /// §7.10.1: the registration form, or the registered nickname.
    pub(super) fn register_get(&self, from: &Jid) -> Result<Node, Refusal> {
        let bare = from.to_bare();
        if self.affiliation(&bare) == Affiliation::Outcast {
            return Err((ErrorType::Auth, DefinedCondition::Forbidden));
        }
        let query = Node::new("query", NS_REGISTER);
        if let Some(nick) = self.reserved_nick(&bare) {
            return Ok(query.child(Node::new("registered", NS_REGISTER)).child(Node::text_element(
                "username",
                NS_REGISTER,
                nick.to_owned(),
            )));
        }
        let form = Node::new("x", NS_DATA)
            .attr("type", "form")
            .child(Node::text_element("title", NS_DATA, format!("Registration with {}", self.jid)))
            .child(
                Node::new("field", NS_DATA)
                    .attr("var", "FORM_TYPE")
                    .attr("type", "hidden")
                    .child(Node::text_element("value", NS_DATA, FORM_TYPE)),
            )
            .child(
                Node::new("field", NS_DATA)
                    .attr("var", NICK_FIELD)
                    .attr("type", "text-single")
                    .attr("label", "Nickname")
                    .child(Node::new("required", NS_DATA)),
            );
        Ok(query
            .child(Node::text_element("instructions", NS_REGISTER, "Choose the nickname reserved for you."))
            .child(form))
    }

    /// §7.10.2: registers (membership and a reserved nickname) or, with `<remove/>`,
    /// unregisters (the JID loses both).
    pub(super) async fn register_set(&mut self, from: &Jid, query: &Element) -> Result<(), Refusal> {
        let bare = from.to_bare();
        let affiliation = self.affiliation(&bare);
        if affiliation == Affiliation::Outcast {
            return Err((ErrorType::Auth, DefinedCondition::Forbidden));
        }
        if query.has_child("remove", NS_REGISTER) {
            if affiliation == Affiliation::Owner {
                // Owners leave through the admin protocol, which keeps the last one.
                return Err((ErrorType::Cancel, DefinedCondition::NotAllowed));
            }
            self.set_standing(&bare, None).await;
            return Ok(());
        }
        let form = query.get_child("x", NS_DATA).ok_or((ErrorType::Modify, DefinedCondition::BadRequest))?;
        let value = |var: &str| {
            form.children()
                .find(|f| f.is("field", NS_DATA) && f.attr("var") == Some(var))
                .and_then(|f| f.get_child("value", NS_DATA))
                .map(|v| v.text())
        };
        if value("FORM_TYPE").is_some_and(|t| t != FORM_TYPE) {
            return Err((ErrorType::Modify, DefinedCondition::BadRequest));
        }
        // A nickname must be a valid resourcepart: it ends up in the occupant's JID.
        let nick = value(NICK_FIELD)
            .and_then(|nick| self.jid.with_resource_str(&nick).ok())
            .map(|full| full.resource().as_str().to_owned())
            .ok_or((ErrorType::Modify, DefinedCondition::NotAcceptable))?;
        let taken = self.reserved_by(&nick).is_some_and(|j| j != &bare)
            || self.occupants.get(&nick).is_some_and(|o| o.bare != bare);
        if taken {
            return Err((ErrorType::Cancel, DefinedCondition::Conflict));
        }
        if self.config.members_only && affiliation < Affiliation::Member {
            // Membership of a members-only room is granted by its admins.
            return Err((ErrorType::Auth, DefinedCondition::RegistrationRequired));
        }
        let standing = Standing {
            affiliation: affiliation.max(Affiliation::Member),
            reason: self.affiliations.get(&bare).and_then(|s| s.reason.clone()),
            nick: Some(nick),
        };
        self.set_standing(&bare, Some(standing)).await;
        Ok(())
    }
}
