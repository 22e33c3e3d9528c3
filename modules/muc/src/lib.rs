//! XEP-0045: Multi-User Chat — group chat rooms on a service domain of each host
//! (`conference.<host>` by default), with XEP-0421 occupant ids, XEP-0410 self-pings,
//! XEP-0317 hats (ad-hoc commands to the room, stored in `muc_hats`), XEP-0424
//! retraction by the sender and XEP-0425 moderation (both leaving a tombstone
//! in the room's archive), XEP-0359 stanza ids and XEP-0313 archives per room (through
//! the `mam` module's `ArchiveService`), XEP-0203 delayed history, XEP-0486 room
//! avatars, §7.10 nickname registration, and XEP-0357 push registrations on rooms
//! (`room::push`: members out of the room are told of new messages).
//!
//! Each room is an actor owning its state (`room`); the service (`service`) routes
//! the component's stanzas to them. Persistent rooms, their affiliations and subject
//! live in `muc_rooms` and `muc_affiliations` (`store`). Routing is by JID only:
//! occupants on other servers are sessions like any other.

mod config;
mod model;
mod room;
mod roomconfig;
mod service;
mod store;
mod xml;

use starling_api::tracing;
use std::collections::HashMap;
use std::sync::Arc;

use starling_api::disco::DiscoQuery;
use starling_api::module::DiscoIdentity;
use starling_api::xmpp_parsers::disco::Item;
use starling_api::{
    Context, DbConn, Migrations, ModuleError, ModuleSpec, Registrar, Scope, Spec, SpecSupport, Support,
};

use crate::config::MucConfig;
use crate::model::NS_MUC;
use crate::service::Service;

/// The module.
pub static MODULE: ModuleSpec = ModuleSpec {
    name: "muc",
    summary: "XEP-0045 multi-user chat: rooms, channels, moderation, room archives",
    specs: &[
        SpecSupport { spec: Spec::Xep(45), version: "1.35", status: Support::Partial, features: &[NS_MUC] },
        SpecSupport { spec: Spec::Xep(421), version: "0.1.0", status: Support::Complete, features: &[] },
        SpecSupport { spec: Spec::Xep(410), version: "1.0.1", status: Support::Complete, features: &[] },
        SpecSupport { spec: Spec::Xep(425), version: "0.3.0", status: Support::Partial, features: &[] },
        SpecSupport { spec: Spec::Xep(203), version: "2.0", status: Support::Complete, features: &[] },
        SpecSupport { spec: Spec::Xep(486), version: "0.1.0", status: Support::Complete, features: &[] },
        SpecSupport { spec: Spec::Xep(424), version: "0.4.0", status: Support::Complete, features: &[] },
        SpecSupport { spec: Spec::Xep(317), version: "0.2", status: Support::Complete, features: &[model::NS_HATS] },
        SpecSupport { spec: Spec::Xep(357), version: "0.4.1", status: Support::Complete, features: &[] },
    ],
    migrations: Some(&MIGRATIONS),
    forget_user: Some(forget_user),
    start,
};

static MIGRATIONS: Migrations = starling_api::migrations!();

fn forget_user(conn: &mut DbConn, host: &str, username: &str) -> starling_api::diesel::QueryResult<()> {
    store::forget_user(conn, host, username)
}

fn start(reg: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let config: MucConfig = reg.config()?;
    if reg.hosts().len() > 1 && !config.domain.contains("{host}") {
        return Err(ModuleError::Config {
            module: MODULE.name,
            message: "domain must contain {host} when the server has several hosts".to_owned(),
        });
    }
    let domains: HashMap<String, String> =
        reg.hosts().iter().map(|host| (config.domain_of(host).to_lowercase(), host.clone())).collect();
    let svc = Arc::new(Service::new(config, domains.clone()));
    for (domain, host) in &domains {
        let svc = svc.clone();
        reg.component(domain, host, move |ctx, stanza| svc.handle(ctx, stanza))?;
    }
    reg.disco_identity(Scope::Component, DiscoIdentity { category: "conference", type_: "text", name: "Chatrooms" });
    reg.disco_feature(Scope::Component, NS_MUC);
    reg.disco_feature(Scope::Component, model::NS_HATS);
    let directory = svc.clone();
    reg.disco_items(Scope::Component, move |ctx, query| public_rooms(directory.clone(), ctx, query));
    Ok(())
}

/// The service's disco#items: its public rooms, loaded or stored (XEP-0045 §6.3).
async fn public_rooms(svc: Arc<Service>, ctx: Context, query: DiscoQuery) -> Option<Vec<Item>> {
    let domain = query.to.domain().to_string();
    if query.node.is_some() || query.to.node().is_some() || svc.host_of(&domain).is_none() {
        return None;
    }
    let mut rooms: std::collections::BTreeMap<String, String> =
        svc.listed(&domain).into_iter().map(|(jid, listing)| (jid.to_string(), listing.name)).collect();
    let stored_domain = domain.clone();
    match ctx.db().run(move |c| store::public_rooms(c, &stored_domain)).await {
        Ok(stored) => {
            for (jid, config) in stored {
                rooms.entry(jid).or_insert(config.name);
            }
        }
        Err(e) => tracing::error!(%domain, error = %e, "cannot list stored rooms"),
    }
    Some(
        rooms
            .into_iter()
            .filter_map(|(jid, name)| {
                Some(Item {
                    jid: starling_api::parse_jid(&jid).ok()?,
                    node: None,
                    name: (!name.is_empty()).then_some(name),
                })
            })
            .collect(),
    )
}
