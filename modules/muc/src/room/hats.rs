//! Hats (XEP-0317): owners and admins put hats on users (`urn:xmpp:hats:commands:don`)
//! and take them off (`…:doff`) with ad-hoc commands (XEP-0050) to the room; the hats
//! a user wears go out in their occupant presence and, in a persistent room, are
//! stored with it.

use starling_api::jid::BareJid;
use starling_api::minidom::Element;
use starling_api::parse_bare_jid;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::admin::Refusal;
use super::{PresenceExtra, Room};
use crate::model::{Affiliation, Hat};
use crate::roomconfig::NS_DATA;
use crate::xml::Node;

/// `http://jabber.org/protocol/commands` (XEP-0050)
pub const NS_COMMANDS: &str = "http://jabber.org/protocol/commands";
/// Puts a hat on.
pub const NODE_DON: &str = "urn:xmpp:hats:commands:don";
/// Takes a hat off.
pub const NODE_DOFF: &str = "urn:xmpp:hats:commands:doff";
const FORM_TYPE: &str = "urn:xmpp:hats:commands";

fn field_value(form: &Element, var: &str) -> Option<String> {
    form.children()
        .find(|f| f.name() == "field" && f.attr("var") == Some(var))
        .and_then(|f| f.children().find(|v| v.name() == "value"))
        .map(|v| v.text())
        .filter(|v| !v.is_empty())
}

fn text_field(var: &'static str, type_: &'static str, label: &'static str) -> Node {
    Node::new("field", NS_DATA).attr("var", var).attr("type", type_).attr("label", label)
}

impl Room {
    /// A hats command: without a submitted form, the form to fill (XEP-0050 §3.4);
    /// with one, the hat is put on or taken off and the command completes.
    pub(super) async fn hat_command(&mut self, from: &BareJid, command: &Element) -> Result<Node, Refusal> {
        let node = command.attr("node").unwrap_or_default();
        let don = match node {
            NODE_DON => true,
            NODE_DOFF => false,
            _ => return Err((ErrorType::Cancel, DefinedCondition::ItemNotFound)),
        };
        if self.affiliation(from) < Affiliation::Admin {
            return Err((ErrorType::Auth, DefinedCondition::Forbidden));
        }
        if command.attr("action") == Some("cancel") {
            return Ok(Node::new("command", NS_COMMANDS).attr("node", node).attr("status", "canceled"));
        }
        let session = command.attr("sessionid").map(str::to_owned).unwrap_or_else(|| {
            let bytes: [u8; 12] = rand::random();
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
        });
        let reply = Node::new("command", NS_COMMANDS).attr("node", node).attr("sessionid", session);
        let Some(form) = command.get_child("x", NS_DATA).filter(|x| x.attr("type") == Some("submit")) else {
            let mut form = Node::new("x", NS_DATA)
                .attr("type", "form")
                .child(Node::text_element("title", NS_DATA, if don { "Assigning a Hat" } else { "Removing a Hat" }))
                .child(
                    Node::new("field", NS_DATA)
                        .attr("var", "FORM_TYPE")
                        .attr("type", "hidden")
                        .child(Node::text_element("value", NS_DATA, FORM_TYPE)),
                )
                .child(text_field("accountjid", "jid-single", "User Address").child(Node::new("required", NS_DATA)))
                .child(text_field("hat", "text-single", "Hat URI").child(Node::new("required", NS_DATA)));
            if don {
                form.push(text_field("title", "text-single", "Hat title"));
            }
            return Ok(reply.attr("status", "executing").child(form));
        };
        let (Some(account), Some(uri)) = (field_value(form, "accountjid"), field_value(form, "hat")) else {
            return Err((ErrorType::Modify, DefinedCondition::BadRequest));
        };
        let account = parse_bare_jid(&account).map_err(|_| (ErrorType::Modify, DefinedCondition::JidMalformed))?;
        let worn = self.hats.entry(account.clone()).or_default();
        worn.retain(|hat| hat.uri != uri);
        if don {
            let title = field_value(form, "title").unwrap_or_else(|| uri.clone());
            worn.push(Hat { uri, title });
        }
        if worn.is_empty() {
            self.hats.remove(&account);
        }
        self.persist().await;
        // Occupants see the change at once, as they would a new affiliation.
        let wearers: Vec<_> = self.occupants.values().filter(|o| o.bare == account).cloned().collect();
        for occupant in wearers {
            self.broadcast_presence(&occupant, true, &PresenceExtra::default());
        }
        Ok(reply.attr("status", "completed"))
    }
}
