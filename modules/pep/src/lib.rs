//! XEP-0163: Personal Eventing Protocol, on the subset of XEP-0060 Publish-Subscribe
//! that PEP clients use: per-account nodes created on first publish (§7.1.4 auto-create),
//! publish with item ids and persistent items (`max_items`, `max`), retract, items (all,
//! by id, `max_items`), delete and configure in the owner namespace, XEP-0223
//! publish-options with `precondition-not-met`, access models presence, open, roster
//! and whitelist. Subscriptions are implied by presence (XEP-0163 §4): notifications
//! go to the owner's own resources and to contacts' available resources whose XEP-0115
//! capabilities carry `<node>+notify`, and the last item of each such node is sent
//! when a resource becomes available. That is what XEP-0384 OMEMO (devicelist and
//! bundles, `access_model=open`), XEP-0084 avatars, XEP-0172 nicknames, XEP-0292
//! vCard4 and XEP-0402 bookmarks need.
//!
//! The module provides [`PepService`] so that other modules publish on an account's
//! behalf, and fires [`PepPublished`].

mod config;
mod presence;
mod store;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use starling_api::hooks::{PresenceBroadcast, Routing, SessionEnded};
use starling_api::jid::BareJid;
use starling_api::minidom::Element;
use starling_api::minidom::rxml::xml_ncname;
use starling_api::module::DiscoIdentity;
use starling_api::pep::{NodeDefaults, PepItem, PepPublished, PepService};
use starling_api::roster::RosterService;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use starling_api::{
    BoxFuture, Context, Flow, IqPayload, IqRequest, IqResult, Migrations, ModuleError, ModuleSpec, Registrar, Scope,
    Spec, SpecSupport, Stanza, Support, parse_jid, stanza_error, tracing,
};

use config::{AccessModel, NodeConfig};
use presence::{Watchers, caps_of};

/// The module.
pub static MODULE: ModuleSpec = ModuleSpec {
    name: "pep",
    summary: "XEP-0163 Personal Eventing Protocol (XEP-0060 subset, XEP-0223 publish-options)",
    specs: &[
        SpecSupport { spec: Spec::Xep(163), version: "1.2.2", status: Support::Complete, features: &[] },
        SpecSupport { spec: Spec::Xep(60), version: "1.26.0", status: Support::Partial, features: FEATURES },
        SpecSupport { spec: Spec::Xep(223), version: "1.1.1", status: Support::Complete, features: &[] },
        SpecSupport { spec: Spec::Xep(115), version: "1.6.0", status: Support::Complete, features: &[] },
        SpecSupport { spec: Spec::Xep(384), version: "0.9.0", status: Support::Complete, features: &[] },
        SpecSupport { spec: Spec::Xep(84), version: "1.1.4", status: Support::Complete, features: &[] },
        SpecSupport { spec: Spec::Xep(172), version: "1.1", status: Support::Complete, features: &[] },
        SpecSupport { spec: Spec::Xep(292), version: "0.12.0", status: Support::Complete, features: &[] },
        SpecSupport { spec: Spec::Xep(402), version: "1.2.0", status: Support::Complete, features: &[] },
    ],
    migrations: Some(&MIGRATIONS),
    forget_user: Some(store::forget_user),
    start,
};

static MIGRATIONS: Migrations = starling_api::migrations!();

const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";

/// What XEP-0163 §6 and clients look for on the account.
const FEATURES: &[&str] = &[
    "http://jabber.org/protocol/pubsub#access-open",
    "http://jabber.org/protocol/pubsub#access-presence",
    "http://jabber.org/protocol/pubsub#access-roster",
    "http://jabber.org/protocol/pubsub#access-whitelist",
    "http://jabber.org/protocol/pubsub#auto-create",
    "http://jabber.org/protocol/pubsub#auto-subscribe",
    "http://jabber.org/protocol/pubsub#config-node",
    "http://jabber.org/protocol/pubsub#create-nodes",
    "http://jabber.org/protocol/pubsub#delete-items",
    "http://jabber.org/protocol/pubsub#delete-nodes",
    "http://jabber.org/protocol/pubsub#filtered-notifications",
    "http://jabber.org/protocol/pubsub#item-ids",
    "http://jabber.org/protocol/pubsub#last-published",
    "http://jabber.org/protocol/pubsub#persistent-items",
    "http://jabber.org/protocol/pubsub#presence-notifications",
    "http://jabber.org/protocol/pubsub#publish",
    "http://jabber.org/protocol/pubsub#publish-options",
    "http://jabber.org/protocol/pubsub#retract-items",
    "http://jabber.org/protocol/pubsub#retrieve-items",
];

/// `[modules.pep]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct PepConfig {
    /// Items a new node keeps unless configured otherwise (default 1).
    default_max_items: u32,
    /// Most items a node may keep; what `max_items=max` means (default 256).
    max_items: u32,
    /// Largest item payload, in bytes (default 262144).
    max_payload_bytes: usize,
    /// Nodes an account may have (default 256).
    max_nodes: usize,
}

impl Default for PepConfig {
    fn default() -> Self {
        PepConfig { default_max_items: 1, max_items: 256, max_payload_bytes: 262_144, max_nodes: 256 }
    }
}

/// `<pubsub xmlns='http://jabber.org/protocol/pubsub'/>`
struct PubSub(Element);
/// `<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'/>`
struct PubSubOwner(Element);

macro_rules! payload {
    ($ty:ident, $ns:expr) => {
        impl TryFrom<Element> for $ty {
            type Error = Element;
            fn try_from(element: Element) -> Result<Self, Element> {
                if element.is("pubsub", $ns) { Ok($ty(element)) } else { Err(element) }
            }
        }
        impl IqPayload for $ty {
            const NS: &'static str = $ns;
            const NAME: &'static str = "pubsub";
        }
    };
}
payload!(PubSub, NS_PUBSUB);
payload!(PubSubOwner, NS_OWNER);

/// The module's state.
struct Pep {
    config: PepConfig,
    watchers: Arc<Watchers>,
}

fn err(type_: ErrorType, condition: DefinedCondition) -> StanzaError {
    stanza_error(type_, condition)
}

fn bad_request() -> StanzaError {
    err(ErrorType::Modify, DefinedCondition::BadRequest)
}

fn item_not_found() -> StanzaError {
    err(ErrorType::Cancel, DefinedCondition::ItemNotFound)
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

fn xml_text(element: &Element) -> String {
    String::from_utf8_lossy(&Stanza::from_element(element).to_bytes()).into_owned()
}

fn start(reg: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let config: PepConfig = reg.config()?;
    if config.max_items == 0 || config.default_max_items == 0 || config.default_max_items > config.max_items {
        return Err(ModuleError::Config { module: "pep", message: "need 1 <= default_max_items <= max_items".into() });
    }
    let pep = Arc::new(Pep { config, watchers: Arc::default() });
    reg.disco_identity(Scope::Account, DiscoIdentity { category: "pubsub", type_: "pep", name: "" });
    for feature in FEATURES {
        reg.disco_feature(Scope::Account, feature);
    }
    let p = pep.clone();
    reg.iq_set::<PubSub, _, _>(Scope::OwnAccount, move |ctx, req| {
        let p = p.clone();
        async move { p.own_set(ctx, req).await }
    });
    let p = pep.clone();
    reg.iq_get::<PubSub, _, _>(Scope::OwnAccount, move |ctx, req| {
        let p = p.clone();
        async move { p.items(ctx, req).await }
    });
    let p = pep.clone();
    reg.iq_get::<PubSub, _, _>(Scope::Account, move |ctx, req| {
        let p = p.clone();
        async move { p.items(ctx, req).await }
    });
    reg.iq_set::<PubSub, _, _>(Scope::Account, |_, _| async { Err(err(ErrorType::Auth, DefinedCondition::Forbidden)) });
    let p = pep.clone();
    reg.iq_get::<PubSubOwner, _, _>(Scope::OwnAccount, move |ctx, req| {
        let p = p.clone();
        async move { p.owner_get(ctx, req).await }
    });
    let p = pep.clone();
    reg.iq_set::<PubSubOwner, _, _>(Scope::OwnAccount, move |ctx, req| {
        let p = p.clone();
        async move { p.owner_set(ctx, req).await }
    });
    reg.iq_get::<PubSubOwner, _, _>(Scope::Account, |_, _| async {
        Err(err(ErrorType::Auth, DefinedCondition::Forbidden))
    });
    reg.iq_set::<PubSubOwner, _, _>(Scope::Account, |_, _| async {
        Err(err(ErrorType::Auth, DefinedCondition::Forbidden))
    });

    let p = pep.clone();
    reg.hook::<Routing, _>(50, move |ctx, event| p.on_routing(ctx, event));
    let p = pep.clone();
    reg.hook::<PresenceBroadcast, _>(0, move |ctx, event| p.on_own_presence(ctx, event));
    let p = pep.clone();
    reg.hook::<SessionEnded, _>(0, move |_, event| {
        p.watchers.unavailable(&event.jid.to_bare().to_string(), &event.jid.to_string());
        Flow::Continue
    });
    reg.provide::<dyn PepService>(Arc::new(Service(pep)));
    Ok(())
}

/// Whether `requester` may see `owner`'s node.
async fn allowed(ctx: &Context, owner: &BareJid, requester: &BareJid, node: &NodeConfig) -> bool {
    if requester == owner {
        return true;
    }
    let roster = || async {
        let service = ctx.service::<dyn RosterService>()?;
        service.contact(ctx, owner, requester).await.ok().flatten()
    };
    match node.access_model {
        AccessModel::Open => true,
        AccessModel::Whitelist => false,
        AccessModel::Roster => roster().await.is_some(),
        AccessModel::Presence => roster().await.is_some_and(|c| c.subscription.contact_sees_account()),
    }
}

/// `<message type='headline'><event><items node>…</items></event></message>` children.
fn event(node: &str, inner: Vec<Element>) -> Element {
    Element::builder("event", NS_EVENT)
        .append(Element::builder("items", NS_EVENT).attr(xml_ncname!("node").into(), node).append_all(inner).build())
        .build()
}

fn event_item(id: &str, payload: &Element, publisher: &str) -> Element {
    Element::builder("item", NS_EVENT)
        .attr(xml_ncname!("id").into(), id)
        .attr(xml_ncname!("publisher").into(), publisher)
        .append(payload.clone())
        .build()
}

fn send_event(ctx: &Context, from: &str, to: &str, event: &Element) {
    let message = Element::builder("message", "jabber:client")
        .attr(xml_ncname!("from").into(), from)
        .attr(xml_ncname!("to").into(), to)
        .attr(xml_ncname!("type").into(), "headline")
        .append(event.clone())
        .build();
    ctx.send(Stanza::from_element(&message));
}

impl Pep {
    /// Sends `event` about `owner`'s `node` to every watcher allowed to see it whose
    /// capabilities ask for `<node>+notify`. Unknown capabilities are asked for all at
    /// once; the publisher's answer waits for them, so notifications keep their order.
    async fn notify(&self, ctx: &Context, owner: &BareJid, node: &str, config: &NodeConfig, event: Element) {
        let owner_text = owner.to_string();
        let wanted = format!("{node}+notify");
        let mut access: HashMap<BareJid, bool> = HashMap::new();
        let mut lookups = tokio::task::JoinSet::new();
        for (resource, caps) in self.watchers.of(&owner_text) {
            let Ok(jid) = parse_jid(&resource) else { continue };
            let bare = jid.to_bare();
            let ok = match access.get(&bare) {
                Some(ok) => *ok,
                None => {
                    let ok = allowed(ctx, owner, &bare, config).await;
                    access.insert(bare, ok);
                    ok
                }
            };
            if ok {
                let (watchers, ctx, asker) = (self.watchers.clone(), ctx.clone(), owner_text.clone());
                lookups.spawn(async move {
                    let features = watchers.features(&ctx, &asker, &resource, &caps).await;
                    (resource, features)
                });
            }
        }
        while let Some(done) = lookups.join_next().await {
            if let Ok((resource, features)) = done
                && features.contains(&wanted)
            {
                send_event(ctx, &owner_text, &resource, &event);
            }
        }
    }

    /// The last item of each of `owner`'s nodes that `resource` wants, sent to it.
    async fn send_last_items(&self, ctx: &Context, owner: &BareJid, resource: &str, caps: Option<presence::Caps>) {
        let Ok(jid) = parse_jid(resource) else { return };
        let owner_text = owner.to_string();
        let o = owner_text.clone();
        let nodes = match ctx.db().run(move |c| store::nodes(c, &o)).await {
            Ok(nodes) => nodes,
            Err(err) => return tracing::error!(error = %err, "loading PEP nodes failed"),
        };
        if nodes.is_empty() {
            return;
        }
        let features = self.watchers.features(ctx, &owner_text, resource, &caps).await;
        for (node, config) in nodes {
            if config.send_last_published_item == "never"
                || !features.contains(&format!("{node}+notify"))
                || !allowed(ctx, owner, &jid.to_bare(), &config).await
            {
                continue;
            }
            let (o, n) = (owner_text.clone(), node.clone());
            let Ok(last) = ctx.db().run(move |c| store::items(c, &o, &n, Some(1))).await else { continue };
            for (id, payload) in last {
                if let Ok(payload) = payload.parse::<Element>() {
                    send_event(ctx, &owner_text, resource, &event(&node, vec![event_item(&id, &payload, &owner_text)]));
                }
            }
        }
    }

    /// Presence routed to a local account: its sender is (or no longer is) a watcher.
    fn on_routing(self: &Arc<Self>, ctx: &Context, event: &mut Routing) -> Flow {
        if event.stanza.name() != "presence"
            || event.to.node().is_none()
            || !ctx.is_local_host(event.to.domain().as_str())
        {
            return Flow::Continue;
        }
        let Some(from) = event.from.as_ref().filter(|f| f.resource().is_some()) else { return Flow::Continue };
        let owner = event.to.to_bare();
        if from.to_bare() == owner {
            return Flow::Continue;
        }
        let (owner_text, resource) = (owner.to_string(), from.to_string());
        match event.stanza.type_() {
            None => {
                let caps = caps_of(&event.stanza);
                if self.watchers.available(&owner_text, &resource, caps.clone()) {
                    let (pep, ctx) = (self.clone(), ctx.clone());
                    tokio::spawn(async move { pep.send_last_items(&ctx, &owner, &resource, caps).await });
                }
            }
            Some("unavailable") => self.watchers.unavailable(&owner_text, &resource),
            _ => {}
        }
        Flow::Continue
    }

    /// The owner's own resources get its notifications too (XEP-0163 §4.3.2).
    fn on_own_presence(self: &Arc<Self>, ctx: &Context, event: &mut PresenceBroadcast) -> Flow {
        let (owner, resource) = (event.from.to_bare(), event.from.to_string());
        if event.stanza.type_() == Some("unavailable") {
            self.watchers.unavailable(&owner.to_string(), &resource);
            return Flow::Continue;
        }
        let caps = caps_of(&event.stanza);
        if self.watchers.available(&owner.to_string(), &resource, caps.clone()) {
            let (pep, ctx) = (self.clone(), ctx.clone());
            tokio::spawn(async move { pep.send_last_items(&ctx, &owner, &resource, caps).await });
        }
        Flow::Continue
    }

    /// Publishes `item` and notifies; `options` are publish-options (preconditions).
    async fn publish(
        &self,
        ctx: &Context,
        owner: &BareJid,
        node: &str,
        item: PepItem,
        options: Option<&[(String, String)]>,
        defaults: Option<NodeDefaults>,
    ) -> Result<(), StanzaError> {
        let payload = xml_text(&item.payload);
        if payload.len() > self.config.max_payload_bytes {
            return Err(err(ErrorType::Modify, DefinedCondition::NotAcceptable));
        }
        let owner_text = owner.to_string();
        let (o, n) = (owner_text.clone(), node.to_owned());
        let existing = ctx.db().run(move |c| store::node(c, &o, &n)).await?;
        let config = match existing {
            Some(config) => {
                if let Some(options) = options {
                    config::check_preconditions(&config, options, self.config.max_items)?;
                }
                config
            }
            None => {
                let o = owner_text.clone();
                let count = ctx.db().run(move |c| store::nodes(c, &o)).await?.len();
                if count >= self.config.max_nodes {
                    return Err(err(ErrorType::Wait, DefinedCondition::ResourceConstraint));
                }
                let mut config = NodeConfig::new(self.config.default_max_items);
                if let Some(defaults) = defaults {
                    config.access_model = defaults.access_model.parse().unwrap_or_default();
                    config.max_items = defaults.max_items.unwrap_or(self.config.max_items).min(self.config.max_items);
                }
                if let Some(options) = options {
                    config::apply(&mut config, options, self.config.max_items)
                        .map_err(|_| config::precondition_not_met())?;
                }
                let (o, n, c2) = (owner_text.clone(), node.to_owned(), config.clone());
                ctx.db().run(move |c| store::save_node(c, &o, &n, &c2)).await?;
                config
            }
        };
        let (o, n, id, max) = (owner_text.clone(), node.to_owned(), item.id.clone(), config.max_items);
        ctx.db().run(move |c| store::publish(c, &o, &n, &id, &payload, now_us(), max)).await?;
        let event_element = event(node, vec![event_item(&item.id, &item.payload, &owner_text)]);
        ctx.run_hook(&mut PepPublished { owner: owner.clone(), node: node.to_owned(), item });
        self.notify(ctx, owner, node, &config, event_element).await;
        Ok(())
    }

    async fn retract(
        &self,
        ctx: &Context,
        owner: &BareJid,
        node: &str,
        id: &str,
        must_exist: bool,
    ) -> Result<(), StanzaError> {
        let owner_text = owner.to_string();
        let (o, n) = (owner_text.clone(), node.to_owned());
        let Some(config) = ctx.db().run(move |c| store::node(c, &o, &n)).await? else {
            return if must_exist { Err(item_not_found()) } else { Ok(()) };
        };
        let (o, n, i) = (owner_text, node.to_owned(), id.to_owned());
        let existed = ctx.db().run(move |c| store::retract(c, &o, &n, &i)).await?;
        if !existed {
            return if must_exist { Err(item_not_found()) } else { Ok(()) };
        }
        let retract = Element::builder("retract", NS_EVENT).attr(xml_ncname!("id").into(), id).build();
        self.notify(ctx, owner, node, &config, event(node, vec![retract])).await;
        Ok(())
    }

    /// `<iq type='set'><pubsub/></iq>` to one's own account: publish, retract, create.
    async fn own_set(&self, ctx: Context, req: IqRequest<PubSub>) -> IqResult {
        let owner = req.to.to_bare();
        let pubsub = &req.payload.0;
        let mut children = pubsub.children();
        let action = children.next().ok_or_else(bad_request)?;
        let node = action.attr("node").filter(|n| !n.is_empty()).ok_or_else(bad_request)?.to_owned();
        match action.name() {
            "publish" => {
                let options = match pubsub.get_child("publish-options", NS_PUBSUB) {
                    Some(po) => match po.get_child("x", config::NS_DATA) {
                        Some(form) => Some(config::options(form, config::PUBLISH_OPTIONS)?),
                        None => None,
                    },
                    None => None,
                };
                let mut items = action.children().filter(|c| c.is("item", NS_PUBSUB));
                let (Some(item), None) = (items.next(), items.next()) else { return Err(bad_request()) };
                let mut payloads = item.children();
                let (Some(payload), None) = (payloads.next(), payloads.next()) else { return Err(bad_request()) };
                let id = match item.attr("id").filter(|id| !id.is_empty()) {
                    Some(id) => id.to_owned(),
                    None => format!("{:016x}", rand::random::<u64>()),
                };
                let item = PepItem { id: id.clone(), payload: payload.clone() };
                self.publish(&ctx, &owner, &node, item, options.as_deref(), None).await?;
                let published = Element::builder("publish", NS_PUBSUB)
                    .attr(xml_ncname!("node").into(), node)
                    .append(Element::builder("item", NS_PUBSUB).attr(xml_ncname!("id").into(), id).build())
                    .build();
                Ok(Some(Element::builder("pubsub", NS_PUBSUB).append(published).build()))
            }
            "retract" => {
                let mut items = action.children().filter(|c| c.is("item", NS_PUBSUB));
                let (Some(item), None) = (items.next(), items.next()) else { return Err(bad_request()) };
                let id = item.attr("id").ok_or_else(bad_request)?;
                self.retract(&ctx, &owner, &node, id, true).await?;
                Ok(None)
            }
            "create" => {
                let (o, n) = (owner.to_string(), node.clone());
                if ctx.db().run(move |c| store::node(c, &o, &n)).await?.is_some() {
                    return Err(err(ErrorType::Cancel, DefinedCondition::Conflict));
                }
                let mut config = NodeConfig::new(self.config.default_max_items);
                if let Some(form) =
                    pubsub.get_child("configure", NS_PUBSUB).and_then(|c| c.get_child("x", config::NS_DATA))
                {
                    config::apply(&mut config, &config::options(form, config::NODE_CONFIG)?, self.config.max_items)?;
                }
                let (o, n) = (owner.to_string(), node);
                ctx.db().run(move |c| store::save_node(c, &o, &n, &config)).await?;
                Ok(None)
            }
            "subscribe" | "unsubscribe" | "options" => {
                // Subscriptions to PEP nodes follow presence (XEP-0163 §4).
                Err(err(ErrorType::Cancel, DefinedCondition::FeatureNotImplemented))
            }
            _ => Err(bad_request()),
        }
    }

    /// `<iq type='get'><pubsub><items/></pubsub></iq>` (XEP-0060 §6.5).
    async fn items(&self, ctx: Context, req: IqRequest<PubSub>) -> IqResult {
        let owner = req.to.to_bare();
        let requester = req.from.to_bare();
        let items = req
            .payload
            .0
            .get_child("items", NS_PUBSUB)
            .ok_or_else(|| err(ErrorType::Cancel, DefinedCondition::FeatureNotImplemented))?;
        let node = items.attr("node").ok_or_else(bad_request)?.to_owned();
        let (o, n) = (owner.to_string(), node.clone());
        let config = ctx.db().run(move |c| store::node(c, &o, &n)).await?.ok_or_else(item_not_found)?;
        if !allowed(&ctx, &owner, &requester, &config).await {
            let mut error = err(ErrorType::Auth, DefinedCondition::Forbidden);
            if config.access_model == AccessModel::Presence {
                error.defined_condition = DefinedCondition::NotAuthorized;
                error.other = Some(Element::builder("presence-subscription-required", config::NS_ERRORS).build());
            }
            return Err(error);
        }
        let ids: Vec<String> = items
            .children()
            .filter(|c| c.is("item", NS_PUBSUB))
            .filter_map(|c| c.attr("id"))
            .map(str::to_owned)
            .collect();
        let max = match items.attr("max_items") {
            Some(max) => Some(max.parse::<i64>().map_err(|_| bad_request())?),
            None => None,
        };
        let (o, n) = (owner.to_string(), node.clone());
        let found = ctx
            .db()
            .run(
                move |c| {
                    if ids.is_empty() { store::items(c, &o, &n, max) } else { store::items_by_id(c, &o, &n, &ids) }
                },
            )
            .await?;
        let mut out = Element::builder("items", NS_PUBSUB).attr(xml_ncname!("node").into(), node).build();
        for (id, payload) in found {
            let Ok(payload) = payload.parse::<Element>() else { continue };
            out.append_child(
                Element::builder("item", NS_PUBSUB).attr(xml_ncname!("id").into(), id).append(payload).build(),
            );
        }
        Ok(Some(Element::builder("pubsub", NS_PUBSUB).append(out).build()))
    }

    /// Owner namespace get: the configure form (XEP-0060 §8.2).
    async fn owner_get(&self, ctx: Context, req: IqRequest<PubSubOwner>) -> IqResult {
        let configure = req
            .payload
            .0
            .get_child("configure", NS_OWNER)
            .ok_or_else(|| err(ErrorType::Cancel, DefinedCondition::FeatureNotImplemented))?;
        let node = configure.attr("node").ok_or_else(bad_request)?.to_owned();
        let (o, n) = (req.to.to_bare().to_string(), node.clone());
        let config = ctx.db().run(move |c| store::node(c, &o, &n)).await?.ok_or_else(item_not_found)?;
        let configure = Element::builder("configure", NS_OWNER)
            .attr(xml_ncname!("node").into(), node)
            .append(config::form(&config))
            .build();
        Ok(Some(Element::builder("pubsub", NS_OWNER).append(configure).build()))
    }

    /// Owner namespace set: configure or delete a node (XEP-0060 §8.2, §8.4).
    async fn owner_set(&self, ctx: Context, req: IqRequest<PubSubOwner>) -> IqResult {
        let owner = req.to.to_bare();
        let action = req.payload.0.children().next().ok_or_else(bad_request)?;
        let node = action.attr("node").ok_or_else(bad_request)?.to_owned();
        let (o, n) = (owner.to_string(), node.clone());
        let mut config = ctx.db().run(move |c| store::node(c, &o, &n)).await?.ok_or_else(item_not_found)?;
        match action.name() {
            "configure" => {
                let form = action.get_child("x", config::NS_DATA).ok_or_else(bad_request)?;
                if form.attr("type") == Some("cancel") {
                    return Ok(None);
                }
                config::apply(&mut config, &config::options(form, config::NODE_CONFIG)?, self.config.max_items)?;
                let (o, n) = (owner.to_string(), node);
                ctx.db().run(move |c| store::save_node(c, &o, &n, &config)).await?;
                Ok(None)
            }
            "delete" => {
                let (o, n) = (owner.to_string(), node.clone());
                ctx.db().run(move |c| store::delete_node(c, &o, &n)).await?;
                let delete = Element::builder("event", NS_EVENT)
                    .append(
                        Element::builder("delete", NS_EVENT).attr(xml_ncname!("node").into(), node.as_str()).build(),
                    )
                    .build();
                self.notify(&ctx, &owner, &node, &config, delete).await;
                Ok(None)
            }
            _ => Err(err(ErrorType::Cancel, DefinedCondition::FeatureNotImplemented)),
        }
    }
}

/// The service handed to other modules.
struct Service(Arc<Pep>);

impl PepService for Service {
    fn items(
        &self,
        ctx: &Context,
        owner: &BareJid,
        node: &str,
    ) -> BoxFuture<'static, Result<Vec<PepItem>, StanzaError>> {
        let (ctx, o, n) = (ctx.clone(), owner.to_string(), node.to_owned());
        Box::pin(async move {
            let rows = ctx.db().run(move |c| store::items(c, &o, &n, None)).await?;
            Ok(rows
                .into_iter()
                .filter_map(|(id, payload)| payload.parse::<Element>().ok().map(|payload| PepItem { id, payload }))
                .collect())
        })
    }

    fn publish(
        &self,
        ctx: &Context,
        owner: &BareJid,
        node: &str,
        item: PepItem,
        defaults: NodeDefaults,
    ) -> BoxFuture<'static, Result<(), StanzaError>> {
        let (pep, ctx, owner, node) = (self.0.clone(), ctx.clone(), owner.clone(), node.to_owned());
        Box::pin(async move { pep.publish(&ctx, &owner, &node, item, None, Some(defaults)).await })
    }

    fn retract(
        &self,
        ctx: &Context,
        owner: &BareJid,
        node: &str,
        id: &str,
    ) -> BoxFuture<'static, Result<(), StanzaError>> {
        let (pep, ctx, owner, node, id) = (self.0.clone(), ctx.clone(), owner.clone(), node.to_owned(), id.to_owned());
        Box::pin(async move { pep.retract(&ctx, &owner, &node, &id, false).await })
    }
}
