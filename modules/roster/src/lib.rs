//! RFC 6121: the roster (§2, with XEP-0237 versioning), presence subscriptions (§3,
//! including pre-approval §3.4) and presence broadcast and probes (§4).
//!
//! Items and subscription states live in `roster_items`; `subscription.rs` is the
//! state machine, `store.rs` the queries. In memory the module keeps which resources
//! asked for the roster (they get roster pushes, §2.1.6) and each available resource's
//! last presence (answers to probes, presence for new subscribers).

mod presence;
mod roster;
mod schema;
mod store;
pub mod subscription;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use starling_api::hooks::{PresenceBroadcast, PresenceToAccount, SessionEnded, SubscriptionOut};
use starling_api::jid::BareJid;
use starling_api::jid::FullJid;
use starling_api::roster::{RosterContact, RosterService};
use starling_api::xmpp_parsers::roster::Roster;
use starling_api::{
    BoxFuture, Context, Migrations, ModuleSpec, Registrar, Scope, Spec, SpecSupport, Stanza, StorageError, Support,
};

/// The module.
pub static MODULE: ModuleSpec = ModuleSpec {
    name: "roster",
    summary: "RFC 6121 roster, presence subscriptions and presence broadcast",
    specs: &[
        SpecSupport { spec: Spec::Rfc(6121), version: "", status: Support::Complete, features: &[] },
        SpecSupport { spec: Spec::Xep(237), version: "1.3", status: Support::Complete, features: &[] },
    ],
    migrations: Some(&MIGRATIONS),
    forget_user: Some(store::forget_user),
    start,
};

static MIGRATIONS: Migrations = starling_api::migrations!();

/// `[modules.roster]`
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RosterConfig {
    /// Items one roster may hold; adding one more is refused (0: no limit). Default 1000.
    max_items: i64,
}

impl Default for RosterConfig {
    fn default() -> Self {
        RosterConfig { max_items: 1000 }
    }
}

/// What the module remembers between stanzas.
#[derive(Default)]
struct State {
    /// The configured roster size limit (0: none).
    max_items: i64,
    /// Resources that requested the roster and so receive pushes (RFC 6121 §2.1.6).
    interested: Mutex<HashSet<FullJid>>,
    /// The last available presence of each available resource.
    last_presence: Mutex<HashMap<FullJid, Stanza>>,
    /// Presence and subscription work, in order per account.
    work: starling_api::OrderedSpawner,
}

fn start(reg: &mut Registrar<'_>) -> Result<(), starling_api::ModuleError> {
    reg.stream_feature("<ver xmlns='urn:xmpp:features:rosterver'/>");
    reg.stream_feature("<sub xmlns='urn:xmpp:features:pre-approval'/>");
    let config: RosterConfig = reg.config()?;
    let state = Arc::new(State { max_items: config.max_items, ..State::default() });
    let s = state.clone();
    reg.iq_get::<Roster, _, _>(Scope::OwnAccount, move |ctx, req| roster::get(ctx, req, s.clone()));
    let s = state.clone();
    reg.iq_set::<Roster, _, _>(Scope::OwnAccount, move |ctx, req| roster::set(ctx, req, s.clone()));

    let s = state.clone();
    reg.hook::<PresenceBroadcast, _>(0, move |ctx, event| presence::on_broadcast(ctx, event, &s));
    let s = state.clone();
    reg.hook::<SessionEnded, _>(0, move |ctx, event| presence::on_session_ended(ctx, event, &s));
    let s = state.clone();
    reg.hook::<SubscriptionOut, _>(0, move |ctx, event| presence::on_subscription_out(ctx, event, &s));
    reg.provide::<dyn RosterService>(Arc::new(Rosters(state.clone())));
    let s = state;
    reg.hook::<PresenceToAccount, _>(0, move |ctx, event| presence::on_presence_to_account(ctx, event, &s));
    Ok(())
}

/// The roster as a typed service for other modules (with the state, for pushes).
struct Rosters(Arc<State>);

impl RosterService for Rosters {
    fn contact(
        &self,
        ctx: &Context,
        account: &BareJid,
        contact: &BareJid,
    ) -> BoxFuture<'static, Result<Option<RosterContact>, StorageError>> {
        let host = account.domain().to_string();
        let user = account.node().map(|n| n.to_string()).unwrap_or_default();
        let contact = contact.to_string();
        let db = ctx.db().clone();
        Box::pin(async move {
            let item = db.run(move |c| store::item(c, &host, &user, &contact)).await?;
            Ok(item
                .filter(|item| item.state.in_roster)
                .map(|item| RosterContact { subscription: item.state.subscription.into(), groups: item.groups }))
        })
    }

    fn contacts(
        &self,
        ctx: &Context,
        account: &BareJid,
    ) -> BoxFuture<'static, Result<Vec<(BareJid, RosterContact)>, StorageError>> {
        let host = account.domain().to_string();
        let user = account.node().map(|n| n.to_string()).unwrap_or_default();
        let db = ctx.db().clone();
        Box::pin(async move {
            let (items, _version) = db.run(move |c| store::roster(c, &host, &user)).await?;
            Ok(items
                .into_iter()
                .filter(|item| item.state.in_roster)
                .filter_map(|item| {
                    let jid = starling_api::parse_bare_jid(&item.contact).ok()?;
                    Some((jid, RosterContact { subscription: item.state.subscription.into(), groups: item.groups }))
                })
                .collect())
        })
    }

    fn subscribe_mutually(
        &self,
        ctx: &Context,
        a: &BareJid,
        b: &BareJid,
    ) -> BoxFuture<'static, Result<(), StorageError>> {
        let (ctx, state, a, b) = (ctx.clone(), self.0.clone(), a.clone(), b.clone());
        Box::pin(async move {
            for (user, contact) in [(&a, &b), (&b, &a)] {
                let host = user.domain().to_string();
                let name = user.node().map(|n| n.to_string()).unwrap_or_default();
                let contact = contact.to_string();
                let item = ctx
                    .db()
                    .run(move |c| {
                        let mut item = store::item(c, &host, &name, &contact)?
                            .unwrap_or_else(|| store::RosterItem { contact: contact.clone(), ..Default::default() });
                        // Nothing is left pending: the invite stands for both requests and
                        // both approvals.
                        item.state = subscription::ItemState {
                            subscription: subscription::Subscription::Both,
                            in_roster: true,
                            ..Default::default()
                        };
                        let version = store::save(c, &host, &name, &item)?;
                        Ok::<_, diesel::result::Error>((item, version))
                    })
                    .await?;
                if let Some(parsed) = roster::to_parsers_item(&item.0) {
                    roster::push(&ctx, &state, user, parsed, item.1);
                }
            }
            Ok(())
        })
    }
}
