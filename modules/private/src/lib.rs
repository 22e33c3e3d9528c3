//! XEP-0049: Private XML Storage — an account keeps XML fragments, one per qualified
//! element name, that only it can read. `storage:bookmarks` is converted to and from
//! XEP-0402 PEP native bookmarks (XEP-0411, `bookmarks.rs`) when the pep module runs.

mod bookmarks;

use diesel::prelude::*;
use serde::Deserialize;
use starling_api::jid::BareJid;
use starling_api::minidom::Element;
use starling_api::pep::{NodeDefaults, PepService};
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use starling_api::{
    Context, DbConn, IqPayload, IqRequest, IqResult, Migrations, ModuleSpec, Registrar, Scope, Spec, SpecSupport,
    Stanza, Support, stanza_error,
};

/// The module.
pub static MODULE: ModuleSpec = ModuleSpec {
    name: "private",
    summary: "XEP-0049 private XML storage, XEP-0411 bookmarks conversion",
    specs: &[
        SpecSupport { spec: Spec::Xep(49), version: "1.2", status: Support::Complete, features: &[NS_PRIVATE] },
        SpecSupport { spec: Spec::Xep(48), version: "1.2", status: Support::Complete, features: &[] },
        SpecSupport { spec: Spec::Xep(411), version: "1.0.0", status: Support::Complete, features: &[NS_CONVERSION] },
    ],
    migrations: Some(&MIGRATIONS),
    forget_user: Some(forget_user),
    start,
};

static MIGRATIONS: Migrations = starling_api::migrations!();

const NS_PRIVATE: &str = "jabber:iq:private";
const NS_CONVERSION: &str = "urn:xmpp:bookmarks-conversion:0";

diesel::table! {
    /// One stored fragment per (account, qualified name).
    private_storage (host, username, namespace, name) {
        host -> Text,
        username -> Text,
        namespace -> Text,
        name -> Text,
        data -> Text,
    }
}

/// `[modules.private]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct PrivateConfig {
    /// Largest fragment stored, in bytes (default 65536).
    max_bytes: usize,
}

impl Default for PrivateConfig {
    fn default() -> Self {
        PrivateConfig { max_bytes: 65536 }
    }
}

/// `<query xmlns='jabber:iq:private'/>`
struct Query(Element);

impl TryFrom<Element> for Query {
    type Error = Element;
    fn try_from(element: Element) -> Result<Self, Element> {
        if element.is("query", NS_PRIVATE) { Ok(Query(element)) } else { Err(element) }
    }
}

impl IqPayload for Query {
    const NS: &'static str = NS_PRIVATE;
    const NAME: &'static str = "query";
}

fn start(reg: &mut Registrar<'_>) -> Result<(), starling_api::ModuleError> {
    let config: PrivateConfig = reg.config()?;
    reg.disco_feature(Scope::Server, NS_PRIVATE);
    reg.disco_feature(Scope::Account, NS_CONVERSION);
    reg.iq_get::<Query, _, _>(Scope::OwnAccount, get);
    let max = config.max_bytes;
    reg.iq_set::<Query, _, _>(Scope::OwnAccount, move |ctx, req| set(ctx, req, max));
    // XEP-0049 §3: another account's storage is not accessible.
    reg.iq_get::<Query, _, _>(Scope::Account, |_, _| async { Err(forbidden()) });
    reg.iq_set::<Query, _, _>(Scope::Account, |_, _| async { Err(forbidden()) });
    Ok(())
}

fn forbidden() -> StanzaError {
    stanza_error(ErrorType::Cancel, DefinedCondition::Forbidden)
}

fn not_acceptable() -> StanzaError {
    stanza_error(ErrorType::Modify, DefinedCondition::NotAcceptable)
}

/// The single fragment of a request; `jabber:*` namespaces are refused (§3).
fn fragments(query: &Element) -> Result<Vec<&Element>, StanzaError> {
    let children: Vec<&Element> = query.children().collect();
    if children.is_empty() || children.iter().any(|c| c.ns().starts_with("jabber:")) {
        return Err(not_acceptable());
    }
    Ok(children)
}

fn account(owner: &BareJid) -> (String, String) {
    (owner.domain().to_string(), owner.node().map(|n| n.to_string()).unwrap_or_default())
}

async fn get(ctx: Context, req: IqRequest<Query>) -> IqResult {
    let owner = req.to.to_bare();
    let fragments = fragments(&req.payload.0)?;
    let [wanted] = fragments.as_slice() else { return Err(not_acceptable()) };
    let (ns, name) = (wanted.ns(), wanted.name().to_owned());
    let stored = if ns == bookmarks::NS_LEGACY
        && name == "storage"
        && let Some(pep) = ctx.service::<dyn PepService>()
    {
        let items = pep.items(&ctx, &owner, bookmarks::NS_NATIVE).await?;
        bookmarks::to_legacy(&items)
    } else {
        let (host, user) = account(&owner);
        let (n, m) = (ns.clone(), name.clone());
        let data: Option<String> = ctx
            .db()
            .run(move |c| {
                private_storage::table
                    .filter(private_storage::host.eq(&host))
                    .filter(private_storage::username.eq(&user))
                    .filter(private_storage::namespace.eq(&n))
                    .filter(private_storage::name.eq(&m))
                    .select(private_storage::data)
                    .first(c)
                    .optional()
            })
            .await?;
        match data.and_then(|d| d.parse::<Element>().ok()) {
            Some(element) => element,
            // §3.2: nothing stored answers the empty element as asked.
            None => Element::builder(name, ns).build(),
        }
    };
    Ok(Some(Element::builder("query", NS_PRIVATE).append(stored).build()))
}

async fn set(ctx: Context, req: IqRequest<Query>, max_bytes: usize) -> IqResult {
    let owner = req.to.to_bare();
    let fragments = fragments(&req.payload.0)?;
    let pep = ctx.service::<dyn PepService>();
    for fragment in fragments {
        let data = String::from_utf8_lossy(&Stanza::from_element(fragment).to_bytes()).into_owned();
        if data.len() > max_bytes {
            return Err(not_acceptable());
        }
        if fragment.is("storage", bookmarks::NS_LEGACY)
            && let Some(pep) = &pep
        {
            sync_bookmarks(&ctx, pep.as_ref(), &owner, fragment).await?;
            continue;
        }
        let (host, user) = account(&owner);
        let (ns, name) = (fragment.ns(), fragment.name().to_owned());
        ctx.db()
            .run(move |c| {
                c.transaction(|c| {
                    let key = private_storage::table
                        .filter(private_storage::host.eq(&host))
                        .filter(private_storage::username.eq(&user))
                        .filter(private_storage::namespace.eq(&ns))
                        .filter(private_storage::name.eq(&name));
                    diesel::delete(key).execute(c)?;
                    diesel::insert_into(private_storage::table)
                        .values((
                            private_storage::host.eq(&host),
                            private_storage::username.eq(&user),
                            private_storage::namespace.eq(&ns),
                            private_storage::name.eq(&name),
                            private_storage::data.eq(&data),
                        ))
                        .execute(c)
                })
            })
            .await?;
    }
    Ok(None)
}

/// Makes the XEP-0402 node hold exactly the rooms of a legacy bookmarks set.
async fn sync_bookmarks(
    ctx: &Context,
    pep: &dyn PepService,
    owner: &BareJid,
    storage: &Element,
) -> Result<(), StanzaError> {
    let wanted = bookmarks::to_native(storage);
    let existing = pep.items(ctx, owner, bookmarks::NS_NATIVE).await?;
    // XEP-0402 §3: the node is private and keeps every bookmark.
    let defaults = NodeDefaults { access_model: "whitelist", max_items: None };
    for item in &wanted {
        if !existing.contains(item) {
            pep.publish(ctx, owner, bookmarks::NS_NATIVE, item.clone(), defaults).await?;
        }
    }
    for old in existing.iter().filter(|old| !wanted.iter().any(|w| w.id == old.id)) {
        pep.retract(ctx, owner, bookmarks::NS_NATIVE, &old.id).await?;
    }
    Ok(())
}

fn forget_user(conn: &mut DbConn, host: &str, user: &str) -> QueryResult<()> {
    diesel::delete(
        private_storage::table.filter(private_storage::host.eq(host)).filter(private_storage::username.eq(user)),
    )
    .execute(conn)?;
    Ok(())
}
