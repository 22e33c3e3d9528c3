//! XEP-0054: vcard-temp — each account stores one vCard, which its owner sets and
//! anyone may read (it is public profile data). Avatars of XEP-0153 travel inside it
//! (`PHOTO`); clients announce the hash in presence themselves.
//!
//! A vCard is kept as the XML the owner sent, up to `max_bytes` (default 512 KiB, room
//! for a photo); an account without one answers an empty `<vCard/>` (XEP-0054 §3.1).

use std::time::{SystemTime, UNIX_EPOCH};

use diesel::prelude::*;
use serde::Deserialize;
use starling_api::minidom::Element;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};
use starling_api::{
    Context, DbConn, IqPayload, IqRequest, IqResult, Migrations, ModuleSpec, Registrar, Scope, Spec, SpecSupport,
    Stanza, Support, stanza_error,
};

/// The module.
pub static MODULE: ModuleSpec = ModuleSpec {
    name: "vcard",
    summary: "XEP-0054 vcard-temp",
    specs: &[
        SpecSupport { spec: Spec::Xep(54), version: "1.2", status: Support::Complete, features: &[NS_VCARD] },
        SpecSupport { spec: Spec::Xep(153), version: "1.1", status: Support::Complete, features: &[] },
    ],
    migrations: Some(&MIGRATIONS),
    forget_user: Some(forget_user),
    start,
};

static MIGRATIONS: Migrations = starling_api::migrations!();

const NS_VCARD: &str = "vcard-temp";

diesel::table! {
    /// One vCard per account, as XML.
    vcard_store (host, username) {
        host -> Text,
        username -> Text,
        vcard -> Text,
        updated_at -> BigInt,
    }
}

/// `<vCard xmlns='vcard-temp'>…</vCard>`, kept as it came.
struct VCard(Element);

impl TryFrom<Element> for VCard {
    type Error = Element;

    fn try_from(element: Element) -> Result<Self, Element> {
        if element.is("vCard", NS_VCARD) { Ok(VCard(element)) } else { Err(element) }
    }
}

impl IqPayload for VCard {
    const NS: &'static str = NS_VCARD;
    const NAME: &'static str = "vCard";
}

/// `[modules.vcard]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct VCardConfig {
    /// Largest vCard accepted, in bytes (default 524288).
    max_bytes: usize,
}

impl Default for VCardConfig {
    fn default() -> Self {
        VCardConfig { max_bytes: 512 * 1024 }
    }
}

fn start(reg: &mut Registrar<'_>) -> Result<(), starling_api::ModuleError> {
    let config: VCardConfig = reg.config()?;
    reg.disco_feature(Scope::Server, NS_VCARD);
    for scope in [Scope::OwnAccount, Scope::Account] {
        reg.iq_get::<VCard, _, _>(scope, get);
    }
    let max = config.max_bytes;
    reg.iq_set::<VCard, _, _>(Scope::OwnAccount, move |ctx, req| set(ctx, req, max));
    Ok(())
}

/// (host, user) of the addressed account.
fn account(req: &IqRequest<VCard>) -> Option<(String, String)> {
    Some((req.to.domain().to_string(), req.to.node()?.to_string()))
}

async fn get(ctx: Context, req: IqRequest<VCard>) -> IqResult {
    let (host, user) = account(&req).ok_or_else(|| stanza_error(ErrorType::Cancel, DefinedCondition::ItemNotFound))?;
    let stored: Option<String> = ctx
        .db()
        .run(move |c| {
            vcard_store::table
                .filter(vcard_store::host.eq(&host))
                .filter(vcard_store::username.eq(&user))
                .select(vcard_store::vcard)
                .first(c)
                .optional()
        })
        .await?;
    let vcard = match stored.and_then(|xml| xml.parse::<Element>().ok()) {
        Some(vcard) => vcard,
        None => Element::builder("vCard", NS_VCARD).build(),
    };
    Ok(Some(vcard))
}

async fn set(ctx: Context, req: IqRequest<VCard>, max_bytes: usize) -> IqResult {
    let (host, user) = account(&req).ok_or_else(|| stanza_error(ErrorType::Cancel, DefinedCondition::NotAllowed))?;
    let xml = String::from_utf8_lossy(&Stanza::from_element(&req.payload.0).to_bytes()).into_owned();
    if xml.len() > max_bytes {
        return Err(stanza_error(ErrorType::Modify, DefinedCondition::NotAcceptable));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    ctx.db()
        .run(move |c| {
            c.transaction(|c| {
                diesel::delete(
                    vcard_store::table.filter(vcard_store::host.eq(&host)).filter(vcard_store::username.eq(&user)),
                )
                .execute(c)?;
                diesel::insert_into(vcard_store::table)
                    .values((
                        vcard_store::host.eq(&host),
                        vcard_store::username.eq(&user),
                        vcard_store::vcard.eq(&xml),
                        vcard_store::updated_at.eq(now),
                    ))
                    .execute(c)
            })
        })
        .await?;
    Ok(None)
}

fn forget_user(conn: &mut DbConn, host: &str, user: &str) -> QueryResult<()> {
    diesel::delete(vcard_store::table.filter(vcard_store::host.eq(host)).filter(vcard_store::username.eq(user)))
        .execute(conn)?;
    Ok(())
}
