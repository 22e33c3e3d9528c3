//! XEP-0357: Push Notifications, the user's server side.
//!
//! A client registers an app server (a publish-subscribe service, usually run by the
//! client's vendor) and a node for its device (`<enable/>`), with optional
//! publish-options such as the vendor's secret. When a message arrives that this
//! device cannot show — its session is hibernating after a lost connection (XEP-0198),
//! its client said it is inactive (XEP-0352), or it has no session at all — the server
//! publishes a notification to that node, and the app server wakes the device through
//! the platform's push service. A subscription request wakes it the same way.
//!
//! The notification carries the `urn:xmpp:push:summary` form: `message-count` (what
//! arrived since the device last bound a session or enabled push),
//! `pending-subscription-count`, and `last-message-sender` / `last-message-body` only
//! when `include_sender` / `include_body` are set: a vendor's app server, and the
//! platform behind it, learn nothing else by default (Prosody's default too).
//!
//! In group chats only mentions wake a device: a groupchat message delivered to an
//! inactive or hibernating session counts when its body contains the nickname that
//! session joined the room with (followed from the session's own presence to rooms).
//!
//! Registrations are stored in `push_registrations` and held in memory, because the
//! routing hooks that decide whether to push are synchronous. An app server that
//! answers with an error other than `wait` has the registration removed (§6, so that
//! a device that was uninstalled stops costing anything); a timeout keeps it.
//! Notifications for one account go out one after another, in arrival order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use diesel::prelude::*;
use serde::Deserialize;
use starling_api::hooks::{
    MessageDelivered, MessageUndelivered, PresenceToAccount, Routing, SessionEnded, SessionStarted,
};
use starling_api::jid::{BareJid, FullJid, Jid};
use starling_api::minidom::Element;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};
use starling_api::{
    ClientState, Context, DbConn, Flow, IqRequest, IqResult, Migrations, ModuleError, ModuleSpec, OrderedSpawner,
    Registrar, Scope, Spec, SpecSupport, Stanza, Support, stanza_error,
};

pub use starling_api::push::NS_PUSH;
use starling_api::push::{PushDisable as Disable, PushEnable as Enable, PushSummary, PushTarget};

const NS_CLIENT: &str = "jabber:client";
const NS_MUC: &str = "http://jabber.org/protocol/muc";

/// The module.
pub static MODULE: ModuleSpec = ModuleSpec {
    name: "push",
    summary: "XEP-0357 Push Notifications (user's server)",
    specs: &[SpecSupport { spec: Spec::Xep(357), version: "0.4.1", status: Support::Complete, features: &[NS_PUSH] }],
    migrations: Some(&MIGRATIONS),
    forget_user: Some(forget_user),
    start,
};

static MIGRATIONS: Migrations = starling_api::migrations!();

diesel::table! {
    /// One row per device registration.
    push_registrations (host, username, service, node) {
        host -> Text,
        username -> Text,
        service -> Text,
        node -> Text,
        resource -> Text,
        publish_options -> Nullable<Text>,
    }
}

/// `[modules.push]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct PushConfig {
    /// Put the sender's JID into notifications.
    include_sender: bool,
    /// Put the message body into notifications.
    include_body: bool,
    /// Registrations one account may hold (one per device).
    max_per_account: usize,
    /// How long to wait for an app server's answer.
    timeout_seconds: u64,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig { include_sender: false, include_body: false, max_per_account: 10, timeout_seconds: 10 }
    }
}

/// One device's registration.
#[derive(Debug, Clone)]
struct Registration {
    /// The app server.
    service: Jid,
    /// The device's node on it.
    node: String,
    /// The resource that enabled it: while a session is bound there and active, the
    /// device shows messages itself.
    resource: String,
    /// The `<x/>` publish-options form the client gave, serialised.
    publish_options: Option<String>,
    /// Messages since the device last bound a session or enabled push.
    messages: Arc<AtomicU32>,
    /// Subscription requests in the same span.
    subscriptions: Arc<AtomicU32>,
}

impl Registration {
    fn same_target(&self, service: &Jid, node: &str) -> bool {
        &self.service == service && self.node == node
    }
}

/// What the hooks and handlers share.
struct Push {
    /// Replaced by a reload.
    config: RwLock<PushConfig>,
    registrations: RwLock<HashMap<BareJid, Vec<Registration>>>,
    spawner: OrderedSpawner,
    /// The nickname each session uses in each room it joined.
    nicks: RwLock<HashMap<FullJid, HashMap<BareJid, String>>>,
}

impl Push {
    fn config(&self) -> PushConfig {
        self.config.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn of(&self, account: &BareJid) -> Vec<Registration> {
        self.registrations.read().ok().and_then(|all| all.get(account).cloned()).unwrap_or_default()
    }

    fn remove(&self, account: &BareJid, service: &Jid, node: Option<&str>) {
        if let Ok(mut all) = self.registrations.write()
            && let Some(list) = all.get_mut(account)
        {
            list.retain(|r| !(&r.service == service && node.is_none_or(|n| r.node == n)));
            if list.is_empty() {
                all.remove(account);
            }
        }
    }
}

fn start(reg: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let config: PushConfig = reg.config()?;
    let push = Arc::new(Push {
        config: RwLock::new(config),
        registrations: RwLock::new(HashMap::new()),
        spawner: OrderedSpawner::default(),
        nicks: RwLock::default(),
    });
    reg.disco_feature(Scope::OwnAccount, NS_PUSH);
    let p = push.clone();
    reg.on_start(move |ctx| load(ctx, p.clone()));
    let p = push.clone();
    reg.on_reload(move |_, settings| {
        *p.config.write().unwrap_or_else(|e| e.into_inner()) = starling_api::module::parse_settings(settings)?;
        Ok(())
    });
    let p = push.clone();
    reg.iq_set::<Enable, _, _>(Scope::OwnAccount, move |ctx, req| enable(ctx, req, p.clone()));
    let p = push.clone();
    reg.iq_set::<Disable, _, _>(Scope::OwnAccount, move |ctx, req| disable(ctx, req, p.clone()));
    let p = push.clone();
    reg.hook::<MessageDelivered, _>(0, move |ctx, event| {
        on_message(ctx, &p, &event.to, Some(&event.delivered_to), &event.stanza);
        Flow::Continue
    });
    let p = push.clone();
    // Before the offline module, which ends the chain once it has stored the message.
    reg.hook::<MessageUndelivered, _>(10, move |ctx, event| {
        on_message(ctx, &p, &event.to, None, &event.stanza);
        Flow::Continue
    });
    let p = push.clone();
    reg.hook::<PresenceToAccount, _>(10, move |ctx, event| {
        if event.stanza.type_() == Some("subscribe") {
            on_subscription(ctx, &p, &event.to);
        }
        Flow::Continue
    });
    let p = push.clone();
    reg.hook::<Routing, _>(-100, move |ctx, event| {
        follow_room_presence(ctx, &p, event);
        Flow::Continue
    });
    let p = push.clone();
    reg.hook::<SessionEnded, _>(0, move |_, event| {
        p.nicks.write().unwrap_or_else(|e| e.into_inner()).remove(&event.jid);
        Flow::Continue
    });
    reg.hook::<SessionStarted, _>(0, move |_, event| {
        for registration in push.of(&event.jid.to_bare()) {
            if registration.resource == event.jid.resource().as_str() {
                registration.messages.store(0, Ordering::Relaxed);
                registration.subscriptions.store(0, Ordering::Relaxed);
            }
        }
        Flow::Continue
    });
    Ok(())
}

type Row = (String, String, String, String, String, Option<String>);

async fn load(ctx: Context, push: Arc<Push>) -> Result<(), ModuleError> {
    use push_registrations::dsl as r;
    let rows: Vec<Row> = ctx
        .db()
        .run(|c| {
            push_registrations::table
                .select((r::host, r::username, r::service, r::node, r::resource, r::publish_options))
                .load(c)
        })
        .await
        .map_err(|e| ModuleError::Start { module: "push", message: e.to_string() })?;
    let mut all: HashMap<BareJid, Vec<Registration>> = HashMap::new();
    for (host, username, service, node, resource, publish_options) in rows {
        let (Ok(account), Ok(service)) = (BareJid::new(&format!("{username}@{host}")), Jid::new(&service)) else {
            continue;
        };
        all.entry(account).or_default().push(Registration {
            service,
            node,
            resource,
            publish_options,
            messages: Arc::default(),
            subscriptions: Arc::default(),
        });
    }
    if let Ok(mut registrations) = push.registrations.write() {
        *registrations = all;
    }
    Ok(())
}

/// The account's host and user name, as the tables key them.
fn account_key(account: &BareJid) -> (String, String) {
    (account.domain().to_string(), account.node().map(|n| n.to_string()).unwrap_or_default())
}

async fn enable(ctx: Context, req: IqRequest<Enable>, push: Arc<Push>) -> IqResult {
    let Ok(from) = req.from.clone().try_into_full() else {
        return Err(stanza_error(ErrorType::Modify, DefinedCondition::BadRequest));
    };
    let account = from.to_bare();
    let Enable { service, node, publish_options } = req.payload;
    let existing = push.of(&account);
    let replaces = existing.iter().any(|r| r.same_target(&service, &node));
    if !replaces && existing.len() >= push.config().max_per_account {
        return Err(stanza_error(ErrorType::Wait, DefinedCondition::ResourceConstraint));
    }
    let registration = Registration {
        service,
        node,
        resource: from.resource().to_string(),
        publish_options: publish_options.as_ref().map(String::from),
        messages: Arc::default(),
        subscriptions: Arc::default(),
    };
    let (host, username) = account_key(&account);
    let row = registration.clone();
    ctx.db()
        .run(move |c| {
            use push_registrations::dsl as r;
            c.transaction(|c| {
                let service = row.service.to_string();
                diesel::delete(
                    push_registrations::table
                        .filter(r::host.eq(&host))
                        .filter(r::username.eq(&username))
                        .filter(r::service.eq(&service))
                        .filter(r::node.eq(&row.node)),
                )
                .execute(c)?;
                diesel::insert_into(push_registrations::table)
                    .values((
                        r::host.eq(&host),
                        r::username.eq(&username),
                        r::service.eq(&service),
                        r::node.eq(&row.node),
                        r::resource.eq(&row.resource),
                        r::publish_options.eq(&row.publish_options),
                    ))
                    .execute(c)
            })
        })
        .await?;
    if let Ok(mut all) = push.registrations.write() {
        let list = all.entry(account).or_default();
        list.retain(|r| !r.same_target(&registration.service, &registration.node));
        list.push(registration);
    }
    Ok(None)
}

async fn disable(ctx: Context, req: IqRequest<Disable>, push: Arc<Push>) -> IqResult {
    let account = req.from.to_bare();
    let Disable { service, node } = req.payload;
    forget_registration(&ctx, &push, &account, &service, node.as_deref()).await?;
    Ok(None)
}

/// Removes the registrations of `account` on `service` (all of its nodes when `node`
/// is `None`), from memory and storage.
async fn forget_registration(
    ctx: &Context,
    push: &Push,
    account: &BareJid,
    service: &Jid,
    node: Option<&str>,
) -> Result<(), starling_api::StorageError> {
    push.remove(account, service, node);
    let (host, username) = account_key(account);
    let service = service.to_string();
    let node = node.map(str::to_owned);
    ctx.db()
        .run(move |c| {
            use push_registrations::dsl as r;
            let rows = push_registrations::table
                .filter(r::host.eq(host))
                .filter(r::username.eq(username))
                .filter(r::service.eq(service));
            match node {
                Some(node) => diesel::delete(rows.filter(r::node.eq(node))).execute(c),
                None => diesel::delete(rows).execute(c),
            }
        })
        .await
        .map(|_| ())
}

fn forget_user(conn: &mut DbConn, host: &str, username: &str) -> QueryResult<()> {
    use push_registrations::dsl as r;
    diesel::delete(push_registrations::table.filter(r::host.eq(host)).filter(r::username.eq(username)))
        .execute(conn)
        .map(|_| ())
}

/// Whether the device behind `registration` cannot show a stanza for `account` now:
/// it has no session, or its session is hibernating or inactive and the stanza went
/// to it (`delivered_to`; `None` when nothing was delivered anywhere).
fn needs_waking(
    ctx: &Context,
    account: &BareJid,
    registration: &Registration,
    delivered_to: Option<&[FullJid]>,
) -> bool {
    let Ok(device) = account.with_resource_str(&registration.resource) else { return true };
    match ctx.sessions().client_state(&device) {
        None => true,
        Some(ClientState::Active) => false,
        Some(ClientState::Inactive | ClientState::Hibernating) => delivered_to.is_none_or(|d| d.contains(&device)),
    }
}

/// Messages a person would want to be woken for: chat and normal messages with a body,
/// an encrypted payload (OMEMO, which may carry no body) or a call proposal
/// (XEP-0353). Not chat states, receipts, carbon copies or errors.
fn wakes_the_device(message: &Stanza) -> bool {
    if !matches!(message.type_().unwrap_or("normal"), "chat" | "normal") {
        return false;
    }
    message.child_elements().any(|c| {
        matches!(
            (c.ns(), c.name()),
            (NS_CLIENT, "body")
                | ("eu.siacs.conversations.axolotl", "encrypted")
                | ("urn:xmpp:omemo:2", "encrypted")
                | ("urn:xmpp:jingle-message:0", "propose")
        )
    })
}

/// What the summary form says of the last message.
#[derive(Debug, Clone, Default)]
struct LastMessage {
    sender: Option<String>,
    body: Option<String>,
}

/// Records the nickname a local session joins a room with (presence to `room/nick`
/// with the MUC element, or a nick change while joined) and forgets it when it leaves.
fn follow_room_presence(ctx: &Context, push: &Push, event: &Routing) {
    if event.stanza.name() != "presence" {
        return;
    }
    let (Some(from), Some(nick)) = (event.from.as_ref().and_then(|f| f.try_as_full().ok()), event.to.resource()) else {
        return;
    };
    if !ctx.is_local_host(from.domain().as_str()) || !ctx.is_component(event.to.domain().as_str()) {
        return;
    }
    let room = event.to.to_bare();
    let mut nicks = push.nicks.write().unwrap_or_else(|e| e.into_inner());
    match event.stanza.type_() {
        None => {
            let joins = event.stanza.child_elements().any(|c| c.ns() == NS_MUC && c.name() == "x");
            let rooms = nicks.entry(from.clone()).or_default();
            if joins || rooms.contains_key(&room) {
                rooms.insert(room, nick.as_str().to_owned());
            }
        }
        Some("unavailable") => {
            if let Some(rooms) = nicks.get_mut(from) {
                rooms.remove(&room);
                if rooms.is_empty() {
                    nicks.remove(from);
                }
            }
        }
        _ => {}
    }
}

/// Whether a groupchat message mentions the nickname `device` uses in its room.
fn mentions(push: &Push, device: &FullJid, message: &Stanza) -> bool {
    let Some(room) = message.from().and_then(|f| starling_api::parse_jid(f).ok()).map(|j| j.to_bare()) else {
        return false;
    };
    let nicks = push.nicks.read().unwrap_or_else(|e| e.into_inner());
    let Some(nick) = nicks.get(device).and_then(|rooms| rooms.get(&room)) else { return false };
    let body = message.to_element().ok().and_then(|e| e.get_child("body", NS_CLIENT).map(Element::text));
    body.is_some_and(|b| b.to_lowercase().contains(&nick.to_lowercase()))
}

fn on_message(ctx: &Context, push: &Arc<Push>, account: &BareJid, delivered_to: Option<&[FullJid]>, message: &Stanza) {
    let registrations = push.of(account);
    let groupchat = message.type_() == Some("groupchat");
    if registrations.is_empty() || !(groupchat || wakes_the_device(message)) {
        return;
    }
    // After `needs_waking`: reading the body is only worth it for a device that sleeps.
    let mentioned = |r: &Registration| {
        !groupchat || account.with_resource_str(&r.resource).is_ok_and(|device| mentions(push, &device, message))
    };
    let targets: Vec<Registration> =
        registrations.into_iter().filter(|r| needs_waking(ctx, account, r, delivered_to) && mentioned(r)).collect();
    if targets.is_empty() {
        return;
    }
    let mut last = LastMessage::default();
    let config = push.config();
    if config.include_sender {
        last.sender = message.from().map(str::to_owned);
    }
    if config.include_body {
        last.body = message.to_element().ok().and_then(|e| e.get_child("body", NS_CLIENT).map(Element::text));
    }
    for target in &targets {
        target.messages.fetch_add(1, Ordering::Relaxed);
    }
    push.spawner.spawn(account, notify_all(ctx.clone(), push.clone(), account.clone(), targets, last));
}

fn on_subscription(ctx: &Context, push: &Arc<Push>, account: &BareJid) {
    let targets: Vec<Registration> =
        push.of(account).into_iter().filter(|r| needs_waking(ctx, account, r, None)).collect();
    if targets.is_empty() {
        return;
    }
    for target in &targets {
        target.subscriptions.fetch_add(1, Ordering::Relaxed);
    }
    push.spawner
        .spawn(account, notify_all(ctx.clone(), push.clone(), account.clone(), targets, LastMessage::default()));
}

/// The (service, node) pairs stored for `account`.
async fn stored_registrations(
    ctx: &Context,
    account: &BareJid,
) -> Result<Vec<(String, String)>, starling_api::StorageError> {
    let (host, username) = account_key(account);
    ctx.db()
        .run(move |c| {
            use push_registrations::dsl as r;
            push_registrations::table
                .filter(r::host.eq(host))
                .filter(r::username.eq(username))
                .select((r::service, r::node))
                .load(c)
        })
        .await
}

/// Publishes to each registration in turn; drops those the app server refuses.
async fn notify_all(ctx: Context, push: Arc<Push>, account: BareJid, targets: Vec<Registration>, last: LastMessage) {
    let timeout = Duration::from_secs(push.config().timeout_seconds);
    // Deleting an account removes its rows in the deletion's transaction (`forget_user`,
    // which has no way to reach this memory). A registration without its row belongs to
    // a deleted account — perhaps one re-created since under the same name — and must
    // not wake the old device.
    let stored = match stored_registrations(&ctx, &account).await {
        Ok(stored) => Some(stored),
        Err(error) => {
            starling_api::tracing::warn!(%account, %error, "could not check push registrations; pushing anyway");
            None
        }
    };
    for registration in targets {
        let service = registration.service.to_string();
        if let Some(stored) = &stored
            && !stored.iter().any(|(s, n)| *s == service && *n == registration.node)
        {
            push.remove(&account, &registration.service, Some(&registration.node));
            continue;
        }
        let Some(request) = notification(&account, &registration, &last) else { continue };
        match ctx.send_iq(request, timeout).await {
            Ok(answer) if answer.type_() == Some("error") => {
                if !starling_api::push::refused_for_good(&answer) {
                    starling_api::tracing::debug!(%account, service = %registration.service, "app server busy");
                    continue;
                }
                starling_api::tracing::info!(
                    %account, service = %registration.service, node = %registration.node,
                    "app server refused a notification; push disabled for that device"
                );
                let removed =
                    forget_registration(&ctx, &push, &account, &registration.service, Some(&registration.node)).await;
                if let Err(error) = removed {
                    starling_api::tracing::warn!(%account, %error, "could not remove a push registration");
                }
            }
            Ok(_) => {}
            Err(_) => {
                starling_api::tracing::warn!(%account, service = %registration.service, "app server did not answer");
            }
        }
    }
}

/// The XEP-0357 §5 publish request, from the account's bare JID.
fn notification(account: &BareJid, registration: &Registration, last: &LastMessage) -> Option<Stanza> {
    let target = PushTarget {
        service: &registration.service,
        node: &registration.node,
        publish_options: registration.publish_options.as_deref(),
    };
    let summary = PushSummary {
        message_count: registration.messages.load(Ordering::Relaxed),
        pending_subscription_count: Some(registration.subscriptions.load(Ordering::Relaxed)),
        last_sender: last.sender.clone(),
        last_body: last.body.clone(),
    };
    starling_api::push::notification(account.as_str(), target, &summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(attrs: &str, children: &str) -> Stanza {
        let element: Element =
            format!("<message xmlns='jabber:client' {attrs}>{children}</message>").parse().expect("xml");
        Stanza::from_element(&element)
    }

    #[test]
    fn only_messages_a_person_reads_wake_the_device() {
        assert!(wakes_the_device(&message("type='chat'", "<body>hi</body>")));
        assert!(wakes_the_device(&message("", "<body>hi</body>")));
        assert!(wakes_the_device(&message(
            "type='chat'",
            "<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'/></encrypted>"
        )));
        assert!(wakes_the_device(&message("type='chat'", "<propose xmlns='urn:xmpp:jingle-message:0' id='c'/>")));
        assert!(!wakes_the_device(&message("type='chat'", "<active xmlns='http://jabber.org/protocol/chatstates'/>")));
        assert!(!wakes_the_device(&message("type='groupchat'", "<body>hi</body>")));
        assert!(!wakes_the_device(&message("type='error'", "<body>hi</body>")));
        assert!(!wakes_the_device(&message(
            "type='chat'",
            "<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'/></received>"
        )));
    }
}
