//! Moderator, admin and owner use cases (XEP-0045 §8–§10): roles and affiliations by
//! `muc#admin` items, the `muc#owner` configuration form and room destruction.

use starling_api::jid::{BareJid, Jid};
use starling_api::minidom::Element;
use starling_api::tracing;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::{PresenceExtra, Room};
use crate::model::{Affiliation, NS_ADMIN, NS_OWNER, Role, Standing};
use crate::roomconfig::NS_DATA;
use crate::store;
use crate::xml::Node;

/// A refusal: the IQ's error.
pub type Refusal = (ErrorType, DefinedCondition);

/// One validated `<item/>` of an admin request.
enum Change {
    Role { nick: String, role: Role, reason: Option<String> },
    Affiliation { jid: BareJid, affiliation: Affiliation, reason: Option<String> },
}

fn not_allowed() -> Refusal {
    (ErrorType::Cancel, DefinedCondition::NotAllowed)
}

fn bad_request() -> Refusal {
    (ErrorType::Modify, DefinedCondition::BadRequest)
}

impl Room {
    /// `<query xmlns='muc#admin'>` get: the list of one affiliation or role (§9.5, §8.5).
    pub(super) fn admin_get(&self, from: &Jid, query: &Element) -> Result<Node, Refusal> {
        let requester = self.affiliation(&from.to_bare());
        let item = query.get_child("item", NS_ADMIN).ok_or_else(bad_request)?;
        let mut out = Node::new("query", NS_ADMIN);
        if let Some(affiliation) = item.attr("affiliation") {
            let affiliation =
                Affiliation::parse(affiliation).filter(|a| *a != Affiliation::None).ok_or_else(bad_request)?;
            if requester < Affiliation::Admin {
                return Err((ErrorType::Auth, DefinedCondition::Forbidden));
            }
            let mut listed: Vec<_> = self.affiliations.iter().filter(|(_, s)| s.affiliation == affiliation).collect();
            listed.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
            for (jid, standing) in listed {
                let mut node = Node::new("item", NS_ADMIN)
                    .attr("affiliation", affiliation.as_str())
                    .attr("jid", jid.to_string())
                    .attr_opt("nick", standing.nick.clone());
                if let Some(reason) = &standing.reason {
                    node.push(Node::text_element("reason", NS_ADMIN, reason.clone()));
                }
                out.push(node);
            }
            return Ok(out);
        }
        let role = item.attr("role").and_then(Role::parse).filter(|r| *r != Role::None).ok_or_else(bad_request)?;
        if self.occupant_of(from).is_none_or(|o| o.role != Role::Moderator) {
            return Err((ErrorType::Auth, DefinedCondition::Forbidden));
        }
        for occupant in self.occupants.values().filter(|o| o.role == role) {
            let mut node = Node::new("item", NS_ADMIN)
                .attr("affiliation", self.affiliation(&occupant.bare).as_str())
                .attr("role", role.as_str())
                .attr("nick", occupant.nick.clone());
            if let Some(session) = occupant.current() {
                node = node.attr("jid", session.jid.to_string());
            }
            out.push(node);
        }
        Ok(out)
    }

    /// `<query xmlns='muc#admin'>` set: every item is checked before any is applied.
    pub(super) async fn admin_set(&mut self, from: &Jid, query: &Element) -> Result<(), Refusal> {
        let actor = self.occupant_of(from).cloned();
        let requester = self.affiliation(&from.to_bare());
        let mut changes = Vec::new();
        for item in query.children().filter(|c| c.is("item", NS_ADMIN)) {
            let reason = item.get_child("reason", NS_ADMIN).map(|r| r.text());
            if let Some(affiliation) = item.attr("affiliation") {
                let affiliation = Affiliation::parse(affiliation).ok_or_else(bad_request)?;
                let jid =
                    item.attr("jid").and_then(|j| starling_api::parse_jid(j).ok()).ok_or_else(bad_request)?.to_bare();
                let current = self.affiliation(&jid);
                let allowed = match requester {
                    Affiliation::Owner => true,
                    // §9: admins manage members and bans below their own rank.
                    Affiliation::Admin => current < Affiliation::Admin && affiliation < Affiliation::Admin,
                    _ => false,
                };
                if !allowed {
                    return Err(not_allowed());
                }
                let owners = self.affiliations.values().filter(|s| s.affiliation == Affiliation::Owner).count();
                if current == Affiliation::Owner && affiliation != Affiliation::Owner && owners == 1 {
                    // §10.6: the last owner cannot go.
                    return Err((ErrorType::Cancel, DefinedCondition::Conflict));
                }
                changes.push(Change::Affiliation { jid, affiliation, reason });
            } else if let Some(role) = item.attr("role") {
                let role = Role::parse(role).ok_or_else(bad_request)?;
                let nick = item.attr("nick").ok_or_else(bad_request)?.to_owned();
                let Some(actor) = &actor else { return Err(not_allowed()) };
                let target = self.occupants.get(&nick).ok_or((ErrorType::Cancel, DefinedCondition::ItemNotFound))?;
                let target_affiliation = self.affiliation(&target.bare);
                let allowed = actor.role == Role::Moderator
                    && match role {
                        // §8.2, §8.4: moderators cannot kick or silence admins and owners.
                        Role::None | Role::Visitor | Role::Participant => {
                            target_affiliation < Affiliation::Admin || requester > target_affiliation
                        }
                        // §9.6: only admins and owners grant moderation.
                        Role::Moderator => requester >= Affiliation::Admin,
                    };
                if !allowed {
                    return Err(not_allowed());
                }
                changes.push(Change::Role { nick, role, reason });
            } else {
                return Err(bad_request());
            }
        }
        let actor_nick = actor.map(|a| a.nick);
        for change in changes {
            match change {
                Change::Role { nick, role: Role::None, reason } => {
                    let extra = PresenceExtra {
                        codes: vec![307],
                        actor: actor_nick.clone(),
                        reason,
                        ..PresenceExtra::default()
                    };
                    self.remove_occupant(&nick, &extra);
                }
                Change::Role { nick, role, reason } => {
                    let Some(occupant) = self.occupants.get_mut(&nick) else { continue };
                    occupant.role = role;
                    let occupant = occupant.clone();
                    let extra = PresenceExtra { actor: actor_nick.clone(), reason, ..PresenceExtra::default() };
                    self.broadcast_presence(&occupant, true, &extra);
                }
                Change::Affiliation { jid, affiliation, reason } => {
                    self.set_affiliation(&jid, affiliation, reason.clone()).await;
                    self.apply_affiliation(&jid, affiliation, actor_nick.clone(), reason);
                }
            }
        }
        self.end_if_empty();
        Ok(())
    }

    /// Records an affiliation, keeping a registered nickname (persisting it in a
    /// persistent room). [`Affiliation::None`] forgets the JID, nickname included.
    pub(super) async fn set_affiliation(&mut self, jid: &BareJid, affiliation: Affiliation, reason: Option<String>) {
        let nick = self.affiliations.get(jid).and_then(|s| s.nick.clone());
        let standing = (affiliation != Affiliation::None).then_some(Standing { affiliation, reason, nick });
        self.set_standing(jid, standing).await;
    }

    /// Records (`Some`) or forgets (`None`) a JID's standing.
    pub(super) async fn set_standing(&mut self, jid: &BareJid, standing: Option<Standing>) {
        match &standing {
            Some(standing) => self.affiliations.insert(jid.clone(), standing.clone()),
            None => self.affiliations.remove(jid),
        };
        if self.config.persistent {
            let (room, jid) = (self.jid.to_string(), jid.to_string());
            let result = self.ctx.db().run(move |c| store::save_standing(c, &room, &jid, standing.as_ref())).await;
            if let Err(e) = result {
                tracing::error!(room = %self.jid, error = %e, "cannot store an affiliation");
            }
        }
    }

    /// What a new affiliation does to the JID's occupants: a ban removes them (301),
    /// losing membership of a members-only room removes them (321), anything else
    /// updates their role and tells everyone.
    fn apply_affiliation(
        &mut self,
        jid: &BareJid,
        affiliation: Affiliation,
        actor: Option<String>,
        reason: Option<String>,
    ) {
        let nicks: Vec<String> = self.occupants.values().filter(|o| &o.bare == jid).map(|o| o.nick.clone()).collect();
        for nick in nicks {
            let removal = match affiliation {
                Affiliation::Outcast => Some(301),
                a if self.config.members_only && a < Affiliation::Member => Some(321),
                _ => None,
            };
            if let Some(code) = removal {
                let extra = PresenceExtra {
                    codes: vec![code],
                    actor: actor.clone(),
                    reason: reason.clone(),
                    ..PresenceExtra::default()
                };
                self.remove_occupant(&nick, &extra);
                continue;
            }
            let role = self.default_role(affiliation);
            let Some(occupant) = self.occupants.get_mut(&nick) else { continue };
            occupant.role = role;
            let occupant = occupant.clone();
            self.broadcast_presence(&occupant, true, &PresenceExtra::default());
        }
    }

    /// `<query xmlns='muc#owner'/>` get: the configuration form (§10.2).
    pub(super) fn owner_get(&self, from: &Jid) -> Result<Node, Refusal> {
        if self.affiliation(&from.to_bare()) != Affiliation::Owner {
            return Err((ErrorType::Auth, DefinedCondition::Forbidden));
        }
        let form = self.config.form(self.svc.config.max_occupants, self.svc.config.max_history);
        Ok(Node::new("query", NS_OWNER).child(form))
    }

    /// `<query xmlns='muc#owner'>` set: a submitted or cancelled form, or `<destroy/>`.
    pub(super) async fn owner_set(&mut self, from: &Jid, query: &Element) -> Result<(), Refusal> {
        if self.affiliation(&from.to_bare()) != Affiliation::Owner {
            return Err((ErrorType::Auth, DefinedCondition::Forbidden));
        }
        if let Some(destroy) = query.get_child("destroy", NS_OWNER) {
            let venue = destroy.attr("jid").map(str::to_owned);
            let reason = destroy.get_child("reason", NS_OWNER).map(|r| r.text());
            self.destroy(venue, reason).await;
            return Ok(());
        }
        let form = query.get_child("x", NS_DATA).ok_or_else(bad_request)?;
        match form.attr("type") {
            Some("cancel") => {
                // §10.1.4: cancelling the initial configuration destroys the new room.
                if self.locked {
                    self.destroy(None, None).await;
                }
                Ok(())
            }
            Some("submit") => {
                let before = self.config.clone();
                let mut config = before.clone();
                config.apply(form, self.svc.config.max_occupants, self.svc.config.max_history).map_err(|field| {
                    tracing::debug!(room = %self.jid, field, "malformed configuration field");
                    (ErrorType::Modify, DefinedCondition::NotAcceptable)
                })?;
                self.config = config;
                self.locked = false;
                self.after_configuration(&before).await;
                Ok(())
            }
            _ => Err(bad_request()),
        }
    }

    async fn after_configuration(&mut self, before: &crate::roomconfig::RoomConfig) {
        if self.config.persistent {
            self.persist().await;
        } else if before.persistent {
            let room = self.jid.to_string();
            if let Err(e) = self.ctx.db().run(move |c| store::delete(c, &room)).await {
                tracing::error!(room = %self.jid, error = %e, "cannot delete the stored room");
            }
        }
        while self.history.len() > self.config.history_length {
            self.history.pop_front();
        }
        if self.config.members_only && !before.members_only {
            // §9.3: non-members leave a room turned members-only (322).
            let outsiders: Vec<String> = self
                .occupants
                .values()
                .filter(|o| self.affiliation(&o.bare) < Affiliation::Member)
                .map(|o| o.nick.clone())
                .collect();
            for nick in outsiders {
                self.remove_occupant(&nick, &PresenceExtra { codes: vec![322], ..PresenceExtra::default() });
            }
        }
        if self.config.moderated != before.moderated {
            let updates: Vec<String> = self
                .occupants
                .values()
                .filter(|o| self.affiliation(&o.bare) == Affiliation::None)
                .map(|o| o.nick.clone())
                .collect();
            let role = self.default_role(Affiliation::None);
            for nick in updates {
                let Some(occupant) = self.occupants.get_mut(&nick) else { continue };
                occupant.role = role;
                let occupant = occupant.clone();
                self.broadcast_presence(&occupant, true, &PresenceExtra::default());
            }
        }
        let mut codes = vec![104];
        if self.config.whois_anyone != before.whois_anyone {
            codes.push(if self.config.whois_anyone { 172 } else { 173 });
        }
        let logged = before.archiving && before.persistent;
        if self.logs() != logged {
            codes.push(if self.logs() { 170 } else { 171 });
        }
        self.broadcast_status(&codes);
        self.update_listing();
        self.end_if_empty();
    }

    /// §10.9: every occupant leaves with the destruction notice; the room is gone.
    pub(super) async fn destroy(&mut self, venue: Option<String>, reason: Option<String>) {
        let extra = PresenceExtra { destroy: Some((venue, reason)), ..PresenceExtra::default() };
        let nicks: Vec<String> = self.occupants.keys().cloned().collect();
        for nick in nicks {
            self.remove_occupant(&nick, &extra);
        }
        let room = self.jid.to_string();
        if let Err(e) = self.ctx.db().run(move |c| store::delete(c, &room)).await {
            tracing::error!(room = %self.jid, error = %e, "cannot delete the destroyed room");
        }
        self.ended = true;
        tracing::debug!(room = %self.jid, "room destroyed");
    }
}
