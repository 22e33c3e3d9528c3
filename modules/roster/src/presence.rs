//! Presence broadcast, probes and subscription stanzas (RFC 6121 §3, §4).
//!
//! Hook handlers are synchronous; anything that needs the roster runs later with a
//! clone of the context, queued per account (`State::work`) so that one account's
//! presence updates go out in the order sent and its roster items are rewritten by one
//! stanza at a time.

use std::sync::Arc;

use starling_api::hooks::{PresenceBroadcast, PresenceToAccount, SessionEnded, SubscriptionOut};
use starling_api::jid::BareJid;
use starling_api::{Context, Flow, Stanza};

use crate::State;
use crate::roster::{apply_outbound, push};
use crate::store::{self, Relation, RosterItem};
use crate::subscription::{Kind, inbound};

/// A presence stanza with no payload.
pub(crate) fn presence(from: &str, to: &str, type_: Option<&str>) -> Stanza {
    let mut stanza = Stanza::new("presence", "jabber:client");
    stanza.set_attr("from", Some(from));
    stanza.set_attr("to", Some(to));
    stanza.set_attr("type", type_);
    stanza
}

fn split(user: &BareJid) -> (String, String) {
    (user.domain().to_string(), user.node().map(|n| n.to_string()).unwrap_or_default())
}

async fn contacts(ctx: &Context, user: &BareJid, relation: Relation) -> Vec<String> {
    let (host, name) = split(user);
    match ctx.db().run(move |c| store::contacts(c, &host, &name, relation)).await {
        Ok(contacts) => contacts,
        Err(err) => {
            starling_api::tracing::error!(error = %err, "roster lookup failed");
            Vec::new()
        }
    }
}

/// The last presences of `user`'s available resources.
fn current_presences(state: &State, user: &BareJid) -> Vec<Stanza> {
    match state.last_presence.lock() {
        Ok(map) => map.iter().filter(|(jid, _)| jid.to_bare() == *user).map(|(_, p)| p.clone()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Sends `stanza` (from one of `user`'s resources) to every subscriber and to the
/// user's own available resources (RFC 6121 §4.2.2, §4.4.2, §4.5.2).
async fn broadcast(ctx: &Context, user: &BareJid, stanza: &Stanza) {
    for contact in contacts(ctx, user, Relation::Subscribers).await {
        let mut copy = stanza.clone();
        copy.set_attr("to", Some(&contact));
        ctx.send(copy);
    }
    for resource in ctx.sessions().available_resources(user) {
        let mut copy = stanza.clone();
        copy.set_attr("to", Some(&resource.to_string()));
        ctx.send(copy);
    }
}

/// A client's presence broadcast; on the first one, probes and pending requests.
pub(crate) fn on_broadcast(ctx: &Context, event: &mut PresenceBroadcast, state: &Arc<State>) -> Flow {
    let from = event.from.clone();
    let available = event.stanza.type_().is_none();
    if let Ok(mut last) = state.last_presence.lock() {
        if available {
            last.insert(from.clone(), event.stanza.clone());
        } else {
            last.remove(&from);
        }
    }
    let (ctx, stanza, initial) = (ctx.clone(), event.stanza.clone(), event.initial);
    let user = from.to_bare();
    state.work.spawn(&user.clone(), async move {
        broadcast(&ctx, &user, &stanza).await;
        if initial {
            let user_text = user.to_string();
            for contact in contacts(&ctx, &user, Relation::Subscriptions).await {
                ctx.send(presence(&user_text, &contact, Some("probe")));
            }
            // RFC 6121 §3.1.3: requests that arrived while offline are delivered now.
            for contact in contacts(&ctx, &user, Relation::PendingIn).await {
                ctx.send(presence(&contact, &from.to_string(), Some("subscribe")));
            }
        }
    });
    Flow::Continue
}

/// A session ended: forget it, and tell subscribers it went offline.
pub(crate) fn on_session_ended(ctx: &Context, event: &mut SessionEnded, state: &Arc<State>) -> Flow {
    if let Ok(mut interested) = state.interested.lock() {
        interested.remove(&event.jid);
    }
    let had_presence = state.last_presence.lock().map(|mut last| last.remove(&event.jid).is_some()).unwrap_or(false);
    if event.was_available || had_presence {
        let (ctx, jid) = (ctx.clone(), event.jid.clone());
        state.work.spawn(&jid.to_bare(), async move {
            let mut stanza = Stanza::new("presence", "jabber:client");
            stanza.set_attr("from", Some(&jid.to_string()));
            stanza.set_attr("type", Some("unavailable"));
            broadcast(&ctx, &jid.to_bare(), &stanza).await;
        });
    }
    Flow::Continue
}

/// The user sent subscribe/subscribed/unsubscribe/unsubscribed (RFC 6121 §3).
pub(crate) fn on_subscription_out(ctx: &Context, event: &mut SubscriptionOut, state: &Arc<State>) -> Flow {
    let Some(kind) = event.stanza.type_().and_then(Kind::parse) else { return Flow::Continue };
    let (ctx, state) = (ctx.clone(), state.clone());
    let (user, contact, mut stanza) = (event.from.to_bare(), event.to.to_string(), event.stanza.clone());
    let work = state.clone();
    work.work.spawn(&user.clone(), async move {
        let transition = match apply_outbound(&ctx, &state, &user, &contact, kind).await {
            Ok(transition) => transition,
            Err(err) => {
                starling_api::tracing::error!(error = %err, "roster update failed");
                return;
            }
        };
        let user_text = user.to_string();
        if transition.route {
            // Subscription stanzas carry the user's bare JID (RFC 6121 §3.1.2).
            stanza.set_attr("from", Some(&user_text));
            stanza.set_attr("to", Some(&contact));
            ctx.send(stanza);
        }
        if transition.send_presence {
            for mut current in current_presences(&state, &user) {
                current.set_attr("to", Some(&contact));
                ctx.send(current);
            }
        }
        if transition.send_unavailable {
            for resource in ctx.sessions().available_resources(&user) {
                ctx.send(presence(&resource.to_string(), &contact, Some("unavailable")));
            }
        }
    });
    Flow::Handled
}

/// Presence to one of our accounts: subscription stanzas and probes are ours.
pub(crate) fn on_presence_to_account(ctx: &Context, event: &mut PresenceToAccount, state: &Arc<State>) -> Flow {
    let Some(type_) = event.stanza.type_() else { return Flow::Continue };
    let Some(sender) = event.stanza.from().and_then(|f| starling_api::parse_bare_jid(f).ok()) else {
        return Flow::Handled;
    };
    let (ctx, state, user, stanza) = (ctx.clone(), state.clone(), event.to.clone(), event.stanza.clone());
    if type_ == "probe" {
        let work = state.clone();
        work.work.spawn(&user.clone(), async move { answer_probe(&ctx, &state, &user, &sender, &stanza).await });
        return Flow::Handled;
    }
    let Some(kind) = Kind::parse(type_) else { return Flow::Continue };
    let work = state.clone();
    work.work
        .spawn(&user.clone(), async move { inbound_subscription(&ctx, &state, &user, &sender, stanza, kind).await });
    Flow::Handled
}

/// RFC 6121 §4.3.2: a subscriber gets the current presence of each available resource,
/// or unavailable when there is none; anyone else gets nothing.
async fn answer_probe(ctx: &Context, state: &State, user: &BareJid, prober: &BareJid, probe: &Stanza) {
    let (host, name) = split(user);
    let contact = prober.to_string();
    let item = ctx.db().run(move |c| store::item(c, &host, &name, &contact)).await;
    if !matches!(&item, Ok(Some(item)) if item.state.subscription.has_from()) {
        return;
    }
    let reply_to = probe.from().unwrap_or_default().to_owned();
    let current = current_presences(state, user);
    if current.is_empty() {
        ctx.send(presence(&user.to_string(), &reply_to, Some("unavailable")));
    }
    for mut stanza in current {
        stanza.set_attr("to", Some(&reply_to));
        ctx.send(stanza);
    }
}

async fn inbound_subscription(
    ctx: &Context,
    state: &State,
    user: &BareJid,
    sender: &BareJid,
    mut stanza: Stanza,
    kind: Kind,
) {
    let (host, name) = split(user);
    let contact = sender.to_string();
    let (h, n, c) = (host.clone(), name.clone(), contact.clone());
    let existing = match ctx.db().run(move |conn| store::item(conn, &h, &n, &c)).await {
        Ok(existing) => existing,
        Err(err) => {
            starling_api::tracing::error!(error = %err, "roster lookup failed");
            return;
        }
    };
    let mut item = existing.unwrap_or_else(|| RosterItem { contact: contact.clone(), ..RosterItem::default() });
    let transition = inbound(item.state, kind);
    if transition.state != item.state {
        item.state = transition.state;
        let saved = item.clone();
        match ctx.db().run(move |conn| store::save(conn, &host, &name, &saved)).await {
            Ok(version) if transition.push => {
                if let Some(parsed) = crate::roster::to_parsers_item(&item) {
                    push(ctx, state, user, parsed, version);
                }
            }
            Ok(_) => {}
            Err(err) => {
                starling_api::tracing::error!(error = %err, "roster update failed");
                return;
            }
        }
    }
    let user_text = user.to_string();
    if transition.auto_subscribed {
        ctx.send(presence(&user_text, &contact, Some("subscribed")));
        for mut current in current_presences(state, user) {
            current.set_attr("to", Some(&contact));
            ctx.send(current);
        }
    }
    if transition.deliver {
        stanza.set_attr("from", Some(&contact));
        for resource in ctx.sessions().available_resources(user) {
            let mut copy = stanza.clone();
            copy.set_attr("to", Some(&resource.to_string()));
            ctx.send(copy);
        }
    }
}
