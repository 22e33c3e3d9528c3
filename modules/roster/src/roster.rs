//! Roster get and set (RFC 6121 §2.2–§2.5) with versioning (XEP-0237 / RFC 6121 §2.6)
//! and roster pushes.

use std::sync::Arc;

use starling_api::jid::{BareJid, FullJid, Jid};
use starling_api::minidom::Element;
use starling_api::xmpp_parsers::roster::{self, Ask, Group, Roster};
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};
use starling_api::{Context, IqRequest, IqResult, Stanza, StorageError, stanza_error};

use crate::State;
use crate::store::{self, RosterItem};
use crate::subscription::{Kind, Subscription, outbound};

/// The sender's account as (host, user), with its full JID.
pub(crate) fn account_of(from: &Jid) -> Option<(FullJid, String, String)> {
    let full = from.clone().try_into_full().ok()?;
    let user = full.node()?.to_string();
    Some((full.clone(), full.domain().to_string(), user))
}

/// The xmpp-parsers form of an item, for results and pushes.
pub(crate) fn to_parsers_item(item: &RosterItem) -> Option<roster::Item> {
    let subscription = match item.state.subscription {
        Subscription::None => roster::Subscription::None,
        Subscription::To => roster::Subscription::To,
        Subscription::From => roster::Subscription::From,
        Subscription::Both => roster::Subscription::Both,
    };
    Some(roster::Item {
        jid: BareJid::new(&item.contact).ok()?,
        name: item.name.clone(),
        subscription,
        ask: if item.state.ask { Ask::Subscribe } else { Ask::None },
        groups: item.groups.iter().cloned().map(Group).collect(),
        approved: item.state.approved.then_some(true),
    })
}

/// `<iq type='get'><query xmlns='jabber:iq:roster' ver='…'/></iq>`
pub(crate) async fn get(ctx: Context, req: IqRequest<Roster>, state: Arc<State>) -> IqResult {
    let (full, host, user) =
        account_of(&req.from).ok_or_else(|| stanza_error(ErrorType::Cancel, DefinedCondition::NotAllowed))?;
    if let Ok(mut interested) = state.interested.lock() {
        interested.insert(full);
    }
    let (items, version) = ctx.db().run(move |c| store::roster(c, &host, &user)).await?;
    let version = version.to_string();
    if req.payload.ver.as_deref() == Some(version.as_str()) {
        // Unchanged since the client's copy: an empty result (RFC 6121 §2.6.3).
        return Ok(None);
    }
    let roster = Roster { ver: Some(version), items: items.iter().filter_map(to_parsers_item).collect() };
    Ok(Some(roster.into()))
}

/// `<iq type='set'>` with one item: add/update, or remove with `subscription='remove'`.
/// Runs in the account's lane of `state.work`, after its earlier roster sets and
/// subscription changes, so concurrent sets neither race each other's read-modify-write
/// nor slip past the roster size limit together.
pub(crate) async fn set(ctx: Context, req: IqRequest<Roster>, state: Arc<State>) -> IqResult {
    let (account, _, _) =
        account_of(&req.from).ok_or_else(|| stanza_error(ErrorType::Modify, DefinedCondition::NotAllowed))?;
    let (done, result) = tokio::sync::oneshot::channel();
    let lanes = state.clone();
    lanes.work.spawn(&account.to_bare(), async move {
        let _ = done.send(apply_set(ctx, req, state).await);
    });
    result.await.unwrap_or_else(|_| Err(stanza_error(ErrorType::Wait, DefinedCondition::InternalServerError)))
}

async fn apply_set(ctx: Context, req: IqRequest<Roster>, state: Arc<State>) -> IqResult {
    let bad = |condition| stanza_error(ErrorType::Modify, condition);
    let (full, host, user) = account_of(&req.from).ok_or_else(|| bad(DefinedCondition::NotAllowed))?;
    let [requested] = req.payload.items.as_slice() else {
        return Err(bad(DefinedCondition::BadRequest));
    };
    let contact = requested.jid.to_string();
    if requested.jid == full.to_bare() {
        return Err(stanza_error(ErrorType::Cancel, DefinedCondition::NotAllowed));
    }
    let mut groups: Vec<String> = Vec::new();
    for Group(group) in &requested.groups {
        if group.is_empty() {
            return Err(bad(DefinedCondition::NotAcceptable));
        }
        if groups.contains(group) {
            return Err(bad(DefinedCondition::BadRequest));
        }
        groups.push(group.clone());
    }
    let (h, u, c) = (host.clone(), user.clone(), contact.clone());
    let existing = ctx.db().run(move |conn| store::item(conn, &h, &u, &c)).await?;
    let user_bare = full.to_bare().to_string();

    if requested.subscription == roster::Subscription::Remove {
        let Some(existing) = existing.filter(|i| i.state.in_roster) else {
            return Err(stanza_error(ErrorType::Cancel, DefinedCondition::ItemNotFound));
        };
        // RFC 6121 §2.5.2: cancel both directions of the subscription.
        if existing.state.subscription.has_to() || existing.state.ask {
            ctx.send(crate::presence::presence(&user_bare, &contact, Some("unsubscribe")));
        }
        if existing.state.subscription.has_from() || existing.state.pending_in {
            ctx.send(crate::presence::presence(&user_bare, &contact, Some("unsubscribed")));
        }
        let removed = RosterItem { contact: contact.clone(), ..RosterItem::default() };
        let version = ctx.db().run(move |conn| store::save(conn, &host, &user, &removed)).await?;
        let mut item = to_parsers_item(&existing).ok_or_else(|| bad(DefinedCondition::JidMalformed))?;
        item.subscription = roster::Subscription::Remove;
        item.ask = Ask::None;
        item.approved = None;
        push(&ctx, &state, &full.to_bare(), item, version);
        return Ok(None);
    }

    if !existing.as_ref().is_some_and(|i| i.state.in_roster) && roster_full(&ctx, &state, &host, &user).await? {
        // A flood of roster sets stops here, before any write or push.
        let mut error = stanza_error(ErrorType::Cancel, DefinedCondition::NotAllowed);
        error.texts.insert(String::new(), format!("a roster holds at most {} items", state.max_items));
        return Err(error);
    }
    let mut item = existing.unwrap_or_else(|| RosterItem { contact: contact.clone(), ..RosterItem::default() });
    item.name = requested.name.clone().filter(|n| !n.is_empty());
    item.groups = groups;
    item.state.in_roster = true;
    let saved = item.clone();
    let version = ctx.db().run(move |conn| store::save(conn, &host, &user, &saved)).await?;
    if let Some(parsed) = to_parsers_item(&item) {
        push(&ctx, &state, &full.to_bare(), parsed, version);
    }
    Ok(None)
}

/// Whether `user`'s roster holds as many items as it may (`[modules.roster] max_items`).
async fn roster_full(ctx: &Context, state: &State, host: &str, user: &str) -> Result<bool, StorageError> {
    if state.max_items == 0 {
        return Ok(false);
    }
    let (h, u) = (host.to_owned(), user.to_owned());
    Ok(ctx.db().run(move |conn| store::count(conn, &h, &u)).await? >= state.max_items)
}

/// Sends a roster push (RFC 6121 §2.1.6) to every interested resource of `user`.
pub(crate) fn push(ctx: &Context, state: &State, user: &BareJid, item: roster::Item, version: i64) {
    let bound = ctx.sessions().resources(user);
    let targets: Vec<FullJid> = match state.interested.lock() {
        Ok(interested) => bound.into_iter().filter(|r| interested.contains(r)).collect(),
        Err(_) => return,
    };
    let query: Element = Roster { ver: Some(version.to_string()), items: vec![item] }.into();
    let mut iq = Stanza::new("iq", "jabber:client");
    iq.set_attr("type", Some("set"));
    let iq = iq.with_children_xml(starling_api::reply::child_xml(&query, "jabber:client").into());
    for target in targets {
        let mut push = iq.clone();
        push.set_attr("id", Some(&format!("push-{version}-{:08x}", next_push_id())));
        push.set_attr("to", Some(&target.to_string()));
        ctx.send(push);
    }
}

fn next_push_id() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Applies an outbound subscription transition for `user` → `contact` and pushes
/// the change; returns what else must happen.
pub(crate) async fn apply_outbound(
    ctx: &Context,
    state: &State,
    user: &BareJid,
    contact: &str,
    kind: Kind,
) -> Result<crate::subscription::Outbound, starling_api::StorageError> {
    let host = user.domain().to_string();
    let name = user.node().map(|n| n.to_string()).unwrap_or_default();
    let (h, n, c) = (host.clone(), name.clone(), contact.to_owned());
    let existing = ctx.db().run(move |conn| store::item(conn, &h, &n, &c)).await?;
    let mut item = existing.unwrap_or_else(|| RosterItem { contact: contact.to_owned(), ..RosterItem::default() });
    let transition = outbound(item.state, kind);
    if transition.state.in_roster && !item.state.in_roster && roster_full(ctx, state, &host, &name).await? {
        // A subscription to one more contact than the roster may hold goes nowhere.
        return Ok(crate::subscription::Outbound {
            state: item.state,
            push: false,
            route: false,
            send_presence: false,
            send_unavailable: false,
        });
    }
    if transition.state != item.state {
        item.state = transition.state;
        let saved = item.clone();
        let version = ctx.db().run(move |conn| store::save(conn, &host, &name, &saved)).await?;
        if let Some(parsed) = to_parsers_item(&item).filter(|_| transition.push) {
            push(ctx, state, user, parsed, version);
        }
    }
    Ok(transition)
}
