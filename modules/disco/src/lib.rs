//! XEP-0030: Service Discovery — answers `disco#info` and `disco#items` for the server,
//! for accounts and for component domains, from what every enabled module registered.
//!
//! The server is `server/im` (XEP-0030 §3.1, the Registrar's category list); an account
//! is `account/registered`; a component shows the identities its module registered.
//! Features come from the registry, so a module that is not enabled is not advertised.
//! The server's `disco#items` lists its components (`conference.…`, `upload.…`), which
//! is how clients find them (XEP-0030 §4, XEP-0045 §6.1). Other modules add items and
//! node answers through providers (`Registrar::disco_items`, `disco_node_info`: a PEP
//! service's nodes, the ad-hoc commands node). A query on a node nobody serves is
//! `item-not-found`. A `disco#items` query with an XEP-0059 `<set/>` (the MUC room list)
//! is paged here, whoever provided the items.

use starling_api::disco::DiscoQuery;
use starling_api::module::DiscoIdentity;
use starling_api::module::DiscoIdentity as RegisteredIdentity;
use starling_api::xmpp_parsers::disco::{
    DiscoInfoQuery, DiscoInfoResult, DiscoItemsQuery, DiscoItemsResult, Identity, Item,
};
use starling_api::xmpp_parsers::ns;
use starling_api::xmpp_parsers::rsm::{First, SetQuery, SetResult};
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use starling_api::{
    Context, IqRequest, IqResult, ModuleSpec, Registrar, Scope, Spec, SpecSupport, Support, caps, stanza_error,
};

/// The module.
pub static MODULE: ModuleSpec = ModuleSpec {
    name: "disco",
    summary: "XEP-0030 Service Discovery for the server and accounts",
    specs: &[
        SpecSupport {
            spec: Spec::Xep(30),
            version: "2.5rc3",
            status: Support::Complete,
            features: &[ns::DISCO_INFO, ns::DISCO_ITEMS],
        },
        SpecSupport { spec: Spec::Xep(115), version: "1.6.0", status: Support::Complete, features: &[ns::CAPS] },
    ],
    migrations: None,
    forget_user: None,
    start,
};

fn start(reg: &mut Registrar<'_>) -> Result<(), starling_api::ModuleError> {
    for scope in [Scope::Server, Scope::Account, Scope::Component] {
        reg.disco_feature(scope, ns::DISCO_INFO);
        reg.disco_feature(scope, ns::DISCO_ITEMS);
    }
    reg.disco_feature(Scope::Server, ns::CAPS);
    reg.disco_identity(Scope::Server, DiscoIdentity { category: "server", type_: "im", name: "Starling" });
    reg.disco_identity(Scope::Account, DiscoIdentity { category: "account", type_: "registered", name: "" });

    reg.iq_get::<DiscoInfoQuery, _, _>(Scope::Server, |ctx, req| info(ctx, req, &[Scope::Server]));
    reg.iq_get::<DiscoInfoQuery, _, _>(Scope::Account, |ctx, req| info(ctx, req, &[Scope::Account]));
    reg.iq_get::<DiscoInfoQuery, _, _>(Scope::OwnAccount, |ctx, req| {
        info(ctx, req, &[Scope::Account, Scope::OwnAccount])
    });
    reg.iq_get::<DiscoInfoQuery, _, _>(Scope::Component, component_info);
    reg.iq_get::<DiscoItemsQuery, _, _>(Scope::Server, |ctx, req| items(ctx, req, &[Scope::Server]));
    reg.iq_get::<DiscoItemsQuery, _, _>(Scope::Account, |ctx, req| items(ctx, req, &[Scope::Account]));
    reg.iq_get::<DiscoItemsQuery, _, _>(Scope::OwnAccount, |ctx, req| {
        items(ctx, req, &[Scope::Account, Scope::OwnAccount])
    });
    reg.iq_get::<DiscoItemsQuery, _, _>(Scope::Component, |ctx, req| items(ctx, req, &[Scope::Component]));
    Ok(())
}

/// The first provider's answer for a node of an entity of `scopes`.
async fn node_info(ctx: &Context, query: DiscoQuery, scopes: &[Scope]) -> Option<DiscoInfoResult> {
    let host = query.to.domain().to_string();
    let providers: Vec<_> = scopes
        .iter()
        .flat_map(|scope| ctx.registry().disco_node_info(*scope))
        .filter(|(_, module)| module_runs(ctx, *module, &host))
        .map(|(provider, _)| provider.clone())
        .collect();
    for provider in providers {
        if let Some(answer) = provider(ctx.clone(), query.clone()).await {
            return Some(answer);
        }
    }
    None
}

/// Whether module `module` runs for `host` (component hosts count as their own).
fn module_runs(ctx: &Context, module: usize, host: &str) -> bool {
    let host = ctx.registry().component(host).map_or(host, |c| c.host.as_str());
    ctx.registry().modules().get(module).is_some_and(|m| ctx.module_enabled(m.name, host))
}

fn query_of<P>(req: &IqRequest<P>, node: Option<String>) -> DiscoQuery {
    DiscoQuery { from: req.from.clone(), to: req.to.clone(), node }
}

async fn component_info(ctx: Context, req: IqRequest<DiscoInfoQuery>) -> IqResult {
    if let Some(node) = req.payload.node.clone() {
        let query = query_of(&req, Some(node));
        return match node_info(&ctx, query, &[Scope::Component]).await {
            Some(answer) => Ok(Some(answer.into())),
            None => Err(stanza_error(ErrorType::Cancel, DefinedCondition::ItemNotFound)),
        };
    }
    let Some((found, features)) = caps::component_disco_info(&ctx, req.to.domain().as_str()) else {
        return Err(stanza_error(ErrorType::Cancel, DefinedCondition::ItemNotFound));
    };
    let result = DiscoInfoResult { node: None, identities: identities(&found), features, extensions: Vec::new() };
    Ok(Some(result.into()))
}

fn identities(found: &[RegisteredIdentity]) -> Vec<Identity> {
    found
        .iter()
        .map(|identity| {
            let mut id = Identity::new_anonymous::<_, _, String, String>(identity.category, identity.type_);
            if !identity.name.is_empty() {
                id.name = Some(identity.name.to_owned());
            }
            id
        })
        .collect()
}

async fn info(ctx: Context, req: IqRequest<DiscoInfoQuery>, scopes: &'static [Scope]) -> IqResult {
    let host = req.to.domain().to_string();
    let (found, features) = caps::disco_info(&ctx, &host, scopes);
    let forms = caps::disco_forms(&ctx, &host, scopes);
    // XEP-0115 §6.2: the server's own caps node answers like the server.
    let node = match req.payload.node.clone() {
        None => None,
        Some(node)
            if scopes == [Scope::Server]
                && node == format!("{}#{}", caps::CAPS_NODE, caps::ver(&found, &features, &forms)) =>
        {
            Some(node)
        }
        Some(node) => {
            return match node_info(&ctx, query_of(&req, Some(node)), scopes).await {
                Some(answer) => Ok(Some(answer.into())),
                None => Err(stanza_error(ErrorType::Cancel, DefinedCondition::ItemNotFound)),
            };
        }
    };
    let result = DiscoInfoResult { node, identities: identities(&found), features, extensions: forms };
    Ok(Some(result.into()))
}

/// Items of the server are its components; providers add theirs (a component with items
/// of its own, such as MUC rooms, may answer for itself instead). For a node, the first
/// provider serving it answers.
async fn items(ctx: Context, req: IqRequest<DiscoItemsQuery>, scopes: &'static [Scope]) -> IqResult {
    let node = req.payload.node.clone();
    let host = req.to.domain().to_string();
    let providers: Vec<_> = scopes
        .iter()
        .flat_map(|scope| ctx.registry().disco_items(*scope))
        .filter(|(_, module)| module_runs(&ctx, *module, &host))
        .map(|(provider, _)| provider.clone())
        .collect();
    let mut items = Vec::new();
    let mut served = node.is_none();
    for provider in providers {
        if let Some(found) = provider(ctx.clone(), query_of(&req, node.clone())).await {
            items.extend(found);
            served = true;
            if node.is_some() {
                break;
            }
        }
    }
    if !served {
        return Err(stanza_error(ErrorType::Cancel, DefinedCondition::ItemNotFound));
    }
    let host = host.as_str();
    if node.is_none() && req.to.node().is_none() && ctx.is_local_host(host) {
        let registry = ctx.registry();
        let mut domains: Vec<&str> = registry
            .components()
            .filter(|(_, route)| route.host == host && ctx.module_enabled(registry.modules()[route.module].name, host))
            .map(|(domain, _)| domain)
            .collect();
        domains.sort_unstable();
        for domain in domains {
            if let Ok(jid) = starling_api::parse_jid(domain) {
                items.push(Item { jid, node: None, name: None });
            }
        }
    }
    let (items, rsm) = match &req.payload.rsm {
        Some(set) => {
            let (page, result) = page(items, set)?;
            (page, Some(result))
        }
        None => (items, None),
    };
    let result = DiscoItemsResult { node, items, rsm };
    Ok(Some(result.into()))
}

/// An item's RSM id: its JID, and its node when it has one.
fn item_uid(item: &Item) -> String {
    match &item.node {
        None => item.jid.to_string(),
        Some(node) => format!("{} {node}", item.jid),
    }
}

/// XEP-0059 paging of a complete item list (its order is the providers', stable from
/// one query to the next): `<max/>` with `<after/>`, `<before/>` (empty: the last
/// page) or `<index/>`; `<max>0</max>` only counts. An unknown id is `item-not-found`.
fn page(items: Vec<Item>, set: &SetQuery) -> Result<(Vec<Item>, SetResult), StanzaError> {
    let count = items.len();
    let max = set.max.unwrap_or(count);
    let position = |uid: &str| {
        items
            .iter()
            .position(|item| item_uid(item) == uid)
            .ok_or_else(|| stanza_error(ErrorType::Cancel, DefinedCondition::ItemNotFound))
    };
    let (start, end) = match (set.after.as_deref(), set.before.as_deref()) {
        (Some(after), _) => {
            let start = position(after)? + 1;
            (start, start.saturating_add(max).min(count))
        }
        (None, Some("")) => (count.saturating_sub(max), count),
        (None, Some(before)) => {
            let end = position(before)?;
            (end.saturating_sub(max), end)
        }
        (None, None) => {
            let start = set.index.unwrap_or(0).min(count);
            (start, start.saturating_add(max).min(count))
        }
    };
    let page: Vec<Item> = items.into_iter().skip(start).take(end - start).collect();
    let result = SetResult {
        first: page.first().map(|item| First { index: Some(start), item: item_uid(item) }),
        last: page.last().map(item_uid),
        count: Some(count),
    };
    Ok((page, result))
}
