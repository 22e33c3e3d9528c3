//! XEP-0054: vcard-temp — each account stores one vCard, which its owner sets and
//! anyone may read (it is public profile data). Avatars of XEP-0153 travel inside it
//! (`PHOTO`); the avatar module keeps them in step with XEP-0084 PEP avatars (XEP-0398).
//! Other modules read and write vCards through [`VCardService`].
//!
//! A vCard is kept as the XML the owner sent, up to `max_bytes` (default 512 KiB, room
//! for a photo); an account without one answers an empty `<vCard/>` (XEP-0054 §3.1).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use diesel::prelude::*;
use serde::Deserialize;
use starling_api::jid::BareJid;
use starling_api::minidom::Element;
use starling_api::vcard::{VCardService, VCardStored};
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use starling_api::{
    BoxFuture, Context, DbConn, IqPayload, Migrations, ModuleSpec, Registrar, Scope, Spec, SpecSupport, Stanza,
    Support, stanza_error,
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
        reg.iq_get::<VCard, _, _>(scope, |ctx, req| async move {
            let vcard = load(&ctx, req.to.to_bare()).await?;
            Ok(Some(vcard.unwrap_or_else(|| Element::builder("vCard", NS_VCARD).build())))
        });
    }
    let max = config.max_bytes;
    reg.iq_set::<VCard, _, _>(Scope::OwnAccount, move |ctx, req| async move {
        store(&ctx, req.to.to_bare(), req.payload.0, max).await?;
        Ok(None)
    });
    reg.provide::<dyn VCardService>(Arc::new(Service { max_bytes: max }));
    Ok(())
}

/// (host, user) of an account.
fn account(owner: &BareJid) -> Result<(String, String), StanzaError> {
    let user = owner.node().ok_or_else(|| stanza_error(ErrorType::Cancel, DefinedCondition::ItemNotFound))?;
    Ok((owner.domain().to_string(), user.to_string()))
}

/// `owner`'s stored vCard; a row that no longer parses counts as none.
async fn load(ctx: &Context, owner: BareJid) -> Result<Option<Element>, StanzaError> {
    let (host, user) = account(&owner)?;
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
    Ok(stored.and_then(|xml| xml.parse::<Element>().ok()))
}

/// Replaces `owner`'s vCard, then tells the modules that follow vCards ([`VCardStored`]).
async fn store(ctx: &Context, owner: BareJid, vcard: Element, max_bytes: usize) -> Result<(), StanzaError> {
    let (host, user) = account(&owner)?;
    let xml = String::from_utf8_lossy(&Stanza::from_element(&vcard).to_bytes()).into_owned();
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
    ctx.run_hook(&mut VCardStored { owner, vcard });
    Ok(())
}

/// [`VCardService`] for other modules.
struct Service {
    max_bytes: usize,
}

impl VCardService for Service {
    fn get(&self, ctx: &Context, owner: &BareJid) -> BoxFuture<'static, Result<Option<Element>, StanzaError>> {
        let (ctx, owner) = (ctx.clone(), owner.clone());
        Box::pin(async move { load(&ctx, owner).await })
    }

    fn set(&self, ctx: &Context, owner: &BareJid, vcard: Element) -> BoxFuture<'static, Result<(), StanzaError>> {
        let (ctx, owner, max) = (ctx.clone(), owner.clone(), self.max_bytes);
        Box::pin(async move { store(&ctx, owner, vcard, max).await })
    }
}

fn forget_user(conn: &mut DbConn, host: &str, user: &str) -> QueryResult<()> {
    diesel::delete(vcard_store::table.filter(vcard_store::host.eq(host)).filter(vcard_store::username.eq(user)))
        .execute(conn)?;
    Ok(())
}
