//! XEP-0313: Message Archive Management (`urn:xmpp:mam:2` and `#extended`) — every
//! archivable message is kept for its sender and its recipient, with a server-made
//! XEP-0359 stanza id (`urn:xmpp:sid:0`; ids a sender made up claiming our accounts
//! are removed, §5), and an account queries only its own archive: by `with`,
//! `start`/`end`, `before-id`/`after-id`, `ids` (§4.1), paged with XEP-0059 Result Set
//! Management in both directions (`<before/>` for the last page, §4.3 `flip-page`,
//! `<fin complete/>`), searched with XEP-0431 full-text search
//! (`{urn:xmpp:fulltext:0}fulltext`), under §6 preferences (always/never/roster).
//!
//! - `service.rs`: the routing hooks and the `ArchiveService` (rooms use it too); the
//!   exactly-once rule between live delivery, offline storage and stream management.
//! - `writer.rs`: batched writes off the routing path. `store.rs`: the SQL.
//! - `query.rs`, `prefs.rs`, `archivable.rs`, `tokens.rs`, `stanza_id.rs`: sans-IO.
//! - Retention: `retention_days` and `max_per_user` applied by a background sweeper;
//!   `starling archive purge` deletes on demand ([`purge`]).

mod archivable;
mod prefs;
mod query;
mod queue;
mod service;
mod stanza_id;
mod store;
mod tokens;
mod writer;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use starling_api::archive::{ArchiveService, NS_MAM};
use starling_api::hooks::{MessageSent, MessageToAccount};
use starling_api::minidom::Element;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};
use starling_api::{
    Context, DbConn, IqPayload, IqRequest, IqResult, Migrations, ModuleError, ModuleSpec, Registrar, Scope, Spec,
    SpecSupport, Support, stanza_error, tracing,
};

pub use prefs::Mode;
use prefs::{Prefs, PrefsPayload};
use service::{Archive, Service};

/// The module.
pub static MODULE: ModuleSpec = ModuleSpec {
    name: "mam",
    summary: "XEP-0313 message archive with XEP-0431 full-text search",
    specs: &[
        SpecSupport {
            spec: Spec::Xep(313),
            version: "1.1.3",
            status: Support::Complete,
            features: &[NS_MAM, NS_MAM_EXTENDED],
        },
        SpecSupport { spec: Spec::Xep(359), version: "0.7.0", status: Support::Complete, features: &[NS_SID] },
        SpecSupport { spec: Spec::Xep(59), version: "1.0", status: Support::Partial, features: &[] },
        SpecSupport { spec: Spec::Xep(431), version: "0.2.0", status: Support::Complete, features: &[NS_FULLTEXT] },
    ],
    migrations: Some(&MIGRATIONS),
    forget_user: Some(store::forget_user),
    start,
};

static MIGRATIONS: Migrations = starling_api::migrations!();

const NS_MAM_EXTENDED: &str = "urn:xmpp:mam:2#extended";
const NS_SID: &str = "urn:xmpp:sid:0";
const NS_FULLTEXT: &str = "urn:xmpp:fulltext:0";

/// `[modules.mam]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MamConfig {
    /// Archiving for accounts that set no preferences: "always" (default), "roster", "never".
    pub default_mode: Mode,
    /// Days a message is kept; 0 (default) keeps it until deleted.
    pub retention_days: u32,
    /// Messages kept per archive, oldest deleted first; 0 (default) for no limit.
    pub max_per_user: i64,
    /// Seconds between retention sweeps (default 3600).
    pub sweep_interval: u64,
    /// Results per page when the client asks for no size (default 50).
    pub default_page_size: usize,
    /// Largest page a client may ask for (default 250).
    pub max_page_size: usize,
    /// Messages waiting to be written; from three-quarters of it on, client and server
    /// streams pause reading until the writer has caught up (default 65536).
    pub write_queue: usize,
    /// Messages written per transaction at most (default 500).
    pub write_batch: usize,
}

impl Default for MamConfig {
    fn default() -> Self {
        MamConfig {
            default_mode: Mode::Always,
            retention_days: 0,
            max_per_user: 0,
            sweep_interval: 3600,
            default_page_size: 50,
            max_page_size: 250,
            write_queue: 65536,
            write_batch: 500,
        }
    }
}

/// `<query xmlns='urn:xmpp:mam:2'/>`, kept as an element (parsed by `query.rs`).
struct QueryPayload(Element);

impl TryFrom<Element> for QueryPayload {
    type Error = Element;

    fn try_from(element: Element) -> Result<Self, Element> {
        if element.is("query", NS_MAM) { Ok(QueryPayload(element)) } else { Err(element) }
    }
}

impl IqPayload for QueryPayload {
    const NS: &'static str = NS_MAM;
    const NAME: &'static str = "query";
}

/// `<metadata xmlns='urn:xmpp:mam:2'/>` (§5.4).
struct MetadataPayload;

impl TryFrom<Element> for MetadataPayload {
    type Error = Element;

    fn try_from(element: Element) -> Result<Self, Element> {
        if element.is("metadata", NS_MAM) { Ok(MetadataPayload) } else { Err(element) }
    }
}

impl IqPayload for MetadataPayload {
    const NS: &'static str = NS_MAM;
    const NAME: &'static str = "metadata";
}

/// The fuzz target `payloads` (docs/fuzzing.md): the query and preferences parsers on
/// any element. Built only by cargo-fuzz, which sets `cfg(fuzzing)`.
#[cfg(fuzzing)]
pub fn fuzz_payload(element: &Element) {
    let _ = query::parse(element);
    if let Ok(prefs) = prefs::Prefs::from_element(element) {
        let again = prefs::Prefs::from_element(&prefs.to_element()).expect("own preferences parse");
        assert_eq!(again.to_element(), prefs.to_element(), "preferences survive a round trip");
    }
}

fn start(reg: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let config: MamConfig = reg.config()?;
    if config.max_page_size == 0 || config.write_batch == 0 || config.write_queue == 0 || config.sweep_interval == 0 {
        return Err(ModuleError::Config {
            module: "mam",
            message: "max_page_size, write_batch, write_queue and sweep_interval must be positive".into(),
        });
    }
    let archive = Arc::new(Archive::new(config.clone(), reg.ingress_pressure()));
    for feature in [NS_MAM, NS_MAM_EXTENDED, NS_SID, NS_FULLTEXT] {
        reg.disco_feature(Scope::OwnAccount, feature);
    }

    let a = archive.clone();
    reg.on_start(move |ctx| {
        let a = a.clone();
        async move { load(ctx, a).await }
    });
    let a = archive.clone();
    reg.hook::<MessageSent, _>(0, move |ctx, event| a.on_sent(ctx, event));
    let a = archive.clone();
    // Before anything that looks at or stores the delivered copy (offline, carbons).
    reg.hook::<MessageToAccount, _>(100, move |ctx, event| a.on_to_account(ctx, event));
    let a = archive.clone();
    reg.write_barrier(move |_| {
        let a = a.clone();
        async move { a.flush(false).await }
    });

    let a = archive.clone();
    reg.iq_set::<QueryPayload, _, _>(Scope::OwnAccount, move |ctx, req| {
        let a = a.clone();
        async move { own_query(ctx, req, a).await }
    });
    reg.iq_get::<QueryPayload, _, _>(Scope::OwnAccount, |_, _| async { Ok(Some(query::form())) });
    // Another account's archive is not ours to read (XEP-0313 §4: only the owner).
    reg.iq_set::<QueryPayload, _, _>(Scope::Account, |_, _| async { Err(forbidden()) });
    reg.iq_get::<QueryPayload, _, _>(Scope::Account, |_, _| async { Err(forbidden()) });
    let a = archive.clone();
    reg.iq_get::<PrefsPayload, _, _>(Scope::OwnAccount, move |_, req| {
        let prefs = a.prefs.get(&req.to.to_bare().to_string(), a.config.default_mode);
        async move { Ok(Some(prefs.to_element())) }
    });
    let a = archive.clone();
    reg.iq_set::<PrefsPayload, _, _>(Scope::OwnAccount, move |ctx, req| {
        let a = a.clone();
        async move { set_prefs(ctx, req, a).await }
    });
    let a = archive.clone();
    reg.iq_get::<MetadataPayload, _, _>(Scope::OwnAccount, move |ctx, req| metadata(ctx, req, a.clone()));

    reg.provide::<dyn ArchiveService>(Arc::new(Service(archive.clone())));
    let a = archive;
    reg.task("mam-retention", move |ctx, token| {
        let config = a.config.clone();
        async move {
            if config.retention_days == 0 && config.max_per_user == 0 {
                return;
            }
            let every = Duration::from_secs(config.sweep_interval);
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                let (days, cap) = (config.retention_days, config.max_per_user);
                match ctx.db().run(move |c| sweep(c, now_us(), days, cap)).await {
                    Ok(0) => {}
                    Ok(deleted) => tracing::info!(deleted, "archive retention sweep"),
                    Err(err) => tracing::error!(error = %err, "archive retention sweep failed"),
                }
            }
        }
    });
    Ok(())
}

fn forbidden() -> starling_api::xmpp_parsers::stanza_error::StanzaError {
    stanza_error(ErrorType::Auth, DefinedCondition::Forbidden)
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// Loads the id key and every account's preferences, then starts the writer.
async fn load(ctx: Context, archive: Arc<Archive>) -> Result<(), ModuleError> {
    let fail = |err: starling_api::StorageError| ModuleError::Start { module: "mam", message: err.to_string() };
    let secret = ctx.db().run(|c| store::secret(c, || stanza_id::IdKey::generate().1)).await.map_err(fail)?;
    let key = stanza_id::IdKey::from_stored(&secret)
        .ok_or_else(|| ModuleError::Start { module: "mam", message: "the stored id key is unreadable".into() })?;
    let _ = archive.key.set(key);
    if let Some(last) = ctx.db().run(store::last_row).await.map_err(fail)? {
        archive.continue_after(last);
    }
    for row in ctx.db().run(store::all_prefs).await.map_err(fail)? {
        archive.prefs.set(row.0.clone(), Prefs::from_row(&row, archive.config.default_mode));
    }
    let (jobs, intake) = queue::job_queue(archive.config.write_queue, archive.pressure.clone());
    let _ = archive.jobs.set(jobs);
    tokio::spawn(writer::run(ctx, intake, archive.config.write_batch));
    Ok(())
}

async fn own_query(ctx: Context, req: IqRequest<QueryPayload>, archive: Arc<Archive>) -> IqResult {
    let query = query::parse(&req.payload.0)?;
    let owner = req.to.to_bare();
    archive.answer(ctx, owner, req.from, query).await.map(Some)
}

async fn set_prefs(ctx: Context, req: IqRequest<PrefsPayload>, archive: Arc<Archive>) -> IqResult {
    let prefs = Prefs::from_element(&req.payload.0)?;
    let owner = req.to.to_bare().to_string();
    let row = prefs.to_row(&owner);
    ctx.db().run(move |c| store::save_prefs(c, &row)).await?;
    let answer = prefs.to_element();
    archive.prefs.set(owner, prefs);
    Ok(Some(answer))
}

async fn metadata(ctx: Context, req: IqRequest<MetadataPayload>, archive: Arc<Archive>) -> IqResult {
    let owner = req.to.to_bare().to_string();
    let queried = owner.clone();
    let (first, last) = ctx.db().run(move |c| store::bounds(c, &queried)).await?;
    let bound = |name: &str, row: Option<store::Archived>| {
        row.map(|row| {
            Element::builder(name, NS_MAM)
                .attr(starling_api::minidom::rxml::xml_ncname!("id").into(), archive.stanza_id_of(&owner, &row))
                .attr(
                    starling_api::minidom::rxml::xml_ncname!("timestamp").into(),
                    query::format_time(store::time_of(row.id)),
                )
                .build()
        })
    };
    let mut element = Element::builder("metadata", NS_MAM).build();
    for child in [bound("start", first), bound("end", last)].into_iter().flatten() {
        element.append_child(child);
    }
    Ok(Some(element))
}

/// One retention pass at `now_us`: deletes messages older than `retention_days`
/// (0: none) and trims archives over `max_per_user` (0: no cap). Returns how many
/// messages were deleted.
pub fn sweep(conn: &mut DbConn, now_us: i64, retention_days: u32, max_per_user: i64) -> diesel::QueryResult<usize> {
    let mut deleted = 0;
    if retention_days > 0 {
        deleted += store::delete_older_than(conn, now_us - i64::from(retention_days) * 86_400_000_000)?;
    }
    if max_per_user > 0 {
        deleted += store::enforce_cap(conn, max_per_user)?;
    }
    Ok(deleted)
}

/// `starling archive purge`: deletes `owner`'s archive (a bare JID; every archive when
/// `None`), only messages archived before `before_us` when given.
pub fn purge(conn: &mut DbConn, owner: Option<&str>, before_us: Option<i64>) -> diesel::QueryResult<usize> {
    store::purge(conn, owner, before_us)
}
