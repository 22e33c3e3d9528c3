//! The room's vCard (XEP-0486 MUC avatars, on XEP-0054 vcard-temp): owners set it,
//! anyone reads it, occupants learn the photo's hash from a presence of the room.

use base64::Engine;
use sha1::{Digest, Sha1};
use starling_api::Stanza;
use starling_api::jid::Jid;
use starling_api::minidom::Element;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::Room;
use super::admin::Refusal;
use crate::model::Affiliation;
use crate::xml::{self, Children, Node};

/// `vcard-temp`
pub const NS_VCARD: &str = "vcard-temp";
const NS_VCARD_UPDATE: &str = "vcard-temp:x:update";

/// The hex SHA-1 of the vCard's `PHOTO/BINVAL` (XEP-0153), if it has a photo.
pub fn photo_hash(xml: &str) -> Option<String> {
    let vcard: Element = xml.parse().ok()?;
    let binval = vcard.get_child("PHOTO", NS_VCARD)?.get_child("BINVAL", NS_VCARD)?.text();
    let compact: String = binval.split_whitespace().collect();
    let photo = base64::engine::general_purpose::STANDARD.decode(compact).ok()?;
    Some(Sha1::digest(&photo).iter().map(|b| format!("{b:02x}")).collect())
}

impl Room {
    /// The stored vCard, or an empty one.
    pub(super) fn vcard_get(&self) -> Element {
        self.vcard
            .as_ref()
            .and_then(|(xml, _)| xml.parse().ok())
            .unwrap_or_else(|| Element::builder("vCard", NS_VCARD).build())
    }

    /// The photo hash, for disco#info.
    pub(super) fn avatar_hash(&self) -> Option<&str> {
        self.vcard.as_ref().and_then(|(_, hash)| hash.as_deref())
    }

    /// An owner replaces the vCard; every occupant gets the room's presence with the
    /// new photo hash.
    pub(super) async fn vcard_set(&mut self, from: &Jid, vcard: &Element) -> Result<(), Refusal> {
        if self.affiliation(&from.to_bare()) != Affiliation::Owner {
            return Err((ErrorType::Auth, DefinedCondition::Forbidden));
        }
        let xml = String::from_utf8_lossy(&Stanza::from_element(vcard).to_bytes()).into_owned();
        if xml.len() > self.svc.config.max_vcard_bytes {
            return Err((ErrorType::Modify, DefinedCondition::NotAcceptable));
        }
        let hash = photo_hash(&xml);
        self.vcard = Some((xml.clone(), hash.clone()));
        if self.config.persistent {
            let room = self.jid.to_string();
            if let Err(e) = self.ctx.db().run(move |c| crate::store::save_vcard(c, &room, &xml)).await {
                starling_api::tracing::error!(room = %self.jid, error = %e, "cannot store the room's vCard");
            }
        }
        let mut update = Node::new("x", NS_VCARD_UPDATE);
        update.push(match hash {
            Some(hash) => Node::text_element("photo", NS_VCARD_UPDATE, hash),
            None => Node::new("photo", NS_VCARD_UPDATE),
        });
        let mut children = Children::new();
        children.push(&update);
        let children = children.into_bytes();
        for occupant in self.occupants.values() {
            for session in &occupant.sessions {
                self.ctx.send(xml::stanza(
                    "presence",
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
