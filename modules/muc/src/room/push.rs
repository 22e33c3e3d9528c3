//! Push notifications for group chats: the room plays the user's server of XEP-0357.
//! A member registers an app server and node on the room (`<enable/>` sent to the
//! room's JID; Conversations registers its own full JID there, to learn that it must
//! join again after a restart lost its occupancy). When a message is posted while that
//! member is not in the room, the room publishes a notification — from its own JID,
//! with only the `message-count` since the member was last seen in the room. An app
//! server that refuses (an error other than `wait`) loses the registration.
//!
//! Registrations of persistent rooms are stored (`muc_push`) and survive restarts;
//! those of temporary rooms end with the room.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use starling_api::jid::{BareJid, Jid};
use starling_api::minidom::Element;
use starling_api::push::{PushDisable, PushEnable, PushSummary, PushTarget};
use starling_api::tracing;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::Room;
use crate::model::Affiliation;
use crate::store;

/// Registrations one member may hold on one room.
const MAX_PER_MEMBER: usize = 5;
/// How long an app server gets to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// One registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPush {
    /// The member's bare JID.
    pub member: BareJid,
    /// The app server (or the member's own full JID).
    pub service: Jid,
    /// The node on it.
    pub node: String,
    /// The serialised publish-options form.
    pub publish_options: Option<String>,
    /// Messages since the member was last in the room.
    pub missed: u32,
}

/// A room's registrations, shared with the tasks that publish notifications (which
/// remove refused ones).
pub type Registrations = Arc<Mutex<Vec<RoomPush>>>;

impl Room {
    /// `<enable/>` or `<disable/>` to the room, from an occupant or a member.
    pub(super) async fn push_set(
        &mut self,
        from: &Jid,
        payload: &Element,
    ) -> Result<(), (ErrorType, DefinedCondition)> {
        let member = from.to_bare();
        let allowed = self.occupant_of(from).is_some() || self.affiliation(&member) >= Affiliation::Member;
        if !allowed {
            return Err((ErrorType::Auth, DefinedCondition::Forbidden));
        }
        let bad = (ErrorType::Modify, DefinedCondition::BadRequest);
        if payload.name() == "enable" {
            let enable = PushEnable::try_from(payload.clone()).map_err(|_| bad)?;
            let registration = RoomPush {
                member: member.clone(),
                service: enable.service,
                node: enable.node,
                publish_options: enable.publish_options.as_ref().map(String::from),
                missed: 0,
            };
            {
                let mut all = self.push.lock().unwrap_or_else(|e| e.into_inner());
                all.retain(|r| {
                    !(r.member == member && r.service == registration.service && r.node == registration.node)
                });
                if all.iter().filter(|r| r.member == member).count() >= MAX_PER_MEMBER {
                    return Err((ErrorType::Wait, DefinedCondition::ResourceConstraint));
                }
                all.push(registration.clone());
            }
            if self.config.persistent {
                let room = self.jid.to_string();
                let stored = self.ctx.db().run(move |c| store::save_push(c, &room, &registration)).await;
                stored.map_err(|_| (ErrorType::Wait, DefinedCondition::InternalServerError))?;
            }
        } else {
            let disable = PushDisable::try_from(payload.clone()).map_err(|_| bad)?;
            self.push.lock().unwrap_or_else(|e| e.into_inner()).retain(|r| {
                !(r.member == member
                    && r.service == disable.service
                    && disable.node.as_ref().is_none_or(|n| *n == r.node))
            });
            if self.config.persistent {
                let (room, service, node) = (self.jid.to_string(), disable.service.to_string(), disable.node);
                let removed =
                    self.ctx.db().run(move |c| store::delete_push(c, &room, &member, &service, node.as_deref())).await;
                removed.map_err(|_| (ErrorType::Wait, DefinedCondition::InternalServerError))?;
            }
        }
        Ok(())
    }

    /// After a message was posted: members who are not in the room are told, those who
    /// are start counting again.
    pub(super) fn push_after_message(&self) {
        let mut due = Vec::new();
        {
            let mut all = self.push.lock().unwrap_or_else(|e| e.into_inner());
            for registration in all.iter_mut() {
                let present = self.occupants.values().any(|o| o.bare == registration.member);
                if present {
                    registration.missed = 0;
                } else {
                    registration.missed = registration.missed.saturating_add(1);
                    due.push(registration.clone());
                }
            }
        }
        for registration in due {
            let Some(request) = starling_api::push::notification(
                self.jid.as_str(),
                PushTarget {
                    service: &registration.service,
                    node: &registration.node,
                    publish_options: registration.publish_options.as_deref(),
                },
                &PushSummary { message_count: registration.missed, ..PushSummary::default() },
            ) else {
                continue;
            };
            let (ctx, registrations, room, persistent) =
                (self.ctx.clone(), self.push.clone(), self.jid.to_string(), self.config.persistent);
            tokio::spawn(async move {
                let Ok(answer) = ctx.send_iq(request, TIMEOUT).await else {
                    tracing::debug!(%room, service = %registration.service, "push service did not answer");
                    return;
                };
                if !starling_api::push::refused_for_good(&answer) {
                    return;
                }
                tracing::info!(%room, member = %registration.member, service = %registration.service, "push refused; registration removed");
                registrations.lock().unwrap_or_else(|e| e.into_inner()).retain(|r| {
                    !(r.member == registration.member
                        && r.service == registration.service
                        && r.node == registration.node)
                });
                if persistent {
                    let (member, service, node) =
                        (registration.member.clone(), registration.service.to_string(), registration.node.clone());
                    let removed =
                        ctx.db().run(move |c| store::delete_push(c, &room, &member, &service, Some(&node))).await;
                    if let Err(err) = removed {
                        tracing::warn!(error = %err, "could not remove a room push registration");
                    }
                }
            });
        }
    }
}
