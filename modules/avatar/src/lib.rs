//! XEP-0398: User Avatar to vCard-Based Avatars Conversion — an account's avatar is
//! the same whether a client publishes it with User Avatar (XEP-0084, PEP nodes
//! `urn:xmpp:avatar:data` + `:metadata`) or inside its vCard (XEP-0153 `PHOTO`), and
//! the server stamps its hash into the account's available presence (`vcard-temp:x:update`),
//! so clients need not download their own vCard on every connect.
//!
//! The module talks to the `pep` and `vcard` modules only through their services.
//! Each conversion first records the new hash; the write it causes comes back through
//! the other hook with the same hash and stops there, so the two never loop.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use diesel::prelude::*;
use sha1::{Digest, Sha1};
use starling_api::hooks::Routing;
use starling_api::jid::BareJid;
use starling_api::minidom::Element;
use starling_api::minidom::rxml::xml_ncname;
use starling_api::pep::{NodeDefaults, PepItem, PepPublished, PepService};
use starling_api::vcard::{VCardService, VCardStored};
use starling_api::{
    Context, DbConn, Flow, Migrations, ModuleError, ModuleSpec, Registrar, Scope, Spec, SpecSupport, Stanza, Support,
    tracing,
};

/// The module.
pub static MODULE: ModuleSpec = ModuleSpec {
    name: "avatar",
    summary: "XEP-0398 User Avatar ↔ vCard avatar conversion",
    specs: &[SpecSupport {
        spec: Spec::Xep(398),
        version: "1.0.0",
        status: Support::Complete,
        features: &[NS_CONVERSION],
    }],
    migrations: Some(&MIGRATIONS),
    forget_user: Some(forget_user),
    start,
};

static MIGRATIONS: Migrations = starling_api::migrations!();

const NS_CONVERSION: &str = "urn:xmpp:pep-vcard-conversion:0";
const NS_DATA: &str = "urn:xmpp:avatar:data";
const NS_METADATA: &str = "urn:xmpp:avatar:metadata";
const NS_VCARD: &str = "vcard-temp";
const NS_VCARD_UPDATE: &str = "vcard-temp:x:update";

/// A vCard avatar is public (XEP-0398 §6), so the PEP copy is too.
const AVATAR_NODES: NodeDefaults = NodeDefaults { access_model: "open", max_items: Some(1) };

diesel::table! {
    /// The SHA-1 (hex) of each account's current avatar.
    avatar_hashes (host, username) {
        host -> Text,
        username -> Text,
        sha1 -> Text,
    }
}

/// Current avatar hashes by bare JID, all in memory: presence is stamped on the
/// routing path, which must not wait for the database.
#[derive(Default)]
struct Hashes(RwLock<HashMap<String, String>>);

impl Hashes {
    fn get(&self, owner: &str) -> Option<String> {
        self.0.read().ok()?.get(owner).cloned()
    }

    /// Records `hash` (or its absence) for `owner`; returns whether it changed.
    fn replace(&self, owner: &BareJid, hash: Option<&str>) -> bool {
        let Ok(mut map) = self.0.write() else { return false };
        let key = owner.to_string();
        match hash {
            Some(hash) if map.get(&key).map(String::as_str) != Some(hash) => {
                map.insert(key, hash.to_owned());
                true
            }
            None => map.remove(&key).is_some(),
            Some(_) => false,
        }
    }
}

fn start(reg: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let hashes = Arc::new(Hashes::default());
    reg.disco_feature(Scope::Account, NS_CONVERSION);

    let h = hashes.clone();
    reg.on_start(move |ctx| {
        let h = h.clone();
        async move {
            let rows: Vec<(String, String, String)> = ctx
                .db()
                .run(|c| {
                    avatar_hashes::table
                        .select((avatar_hashes::host, avatar_hashes::username, avatar_hashes::sha1))
                        .load(c)
                })
                .await
                .map_err(|err| ModuleError::Start { module: "avatar", message: err.to_string() })?;
            if let Ok(mut map) = h.0.write() {
                map.extend(rows.into_iter().map(|(host, user, sha1)| (format!("{user}@{host}"), sha1)));
            }
            Ok(())
        }
    });
    // One account's conversions run in order, so the newest avatar is the one that stays.
    let conversions = Arc::new(starling_api::OrderedSpawner::default());
    let (h, work) = (hashes.clone(), conversions.clone());
    reg.hook::<PepPublished, _>(0, move |ctx, event| {
        if event.node == NS_METADATA {
            let conversion = pep_to_vcard(ctx.clone(), h.clone(), event.owner.clone(), event.item.payload.clone());
            work.spawn(&event.owner, conversion);
        }
        Flow::Continue
    });
    let h = hashes.clone();
    reg.hook::<VCardStored, _>(0, move |ctx, event| {
        conversions.spawn(&event.owner, vcard_to_pep(ctx.clone(), h.clone(), event.owner.clone(), event.vcard.clone()));
        Flow::Continue
    });
    let h = hashes;
    reg.hook::<Routing, _>(40, move |_, event| {
        stamp_presence(&h, event);
        Flow::Continue
    });
    Ok(())
}

/// XEP-0398 §4: the hash goes into every available presence of the account — broadcast
/// and directed (MUC joins) alike — unless the client says `<photo/>` (no avatar) or
/// names a hash itself.
fn stamp_presence(hashes: &Hashes, event: &mut Routing) {
    let stanza = &event.stanza;
    if stanza.name() != "presence" || stanza.type_().is_some() {
        return;
    }
    let Some(from) = &event.from else { return };
    let Some(hash) = hashes.get(&from.to_bare().to_string()) else { return };
    if !stanza.child_elements().any(|c| c.name() == "x" && c.ns() == NS_VCARD_UPDATE) {
        let mut carrier = Element::builder("presence", "jabber:client").build();
        carrier.append_child(update_element(&hash));
        let mut children = stanza.children_xml().to_vec();
        children.extend_from_slice(Stanza::from_element(&carrier).children_xml());
        event.stanza = event.stanza.clone().with_children_xml(children.into());
        return;
    }
    // An `<x/>` without `<photo/>` says nothing and is overwritten (§4).
    let Ok(mut element) = stanza.to_element() else { return };
    let Some(x) = element.get_child_mut("x", NS_VCARD_UPDATE) else { return };
    if x.get_child("photo", NS_VCARD_UPDATE).is_none() {
        *x = update_element(&hash);
        event.stanza = Stanza::from_element(&element);
    }
}

fn update_element(hash: &str) -> Element {
    Element::builder("x", NS_VCARD_UPDATE)
        .append(Element::builder("photo", NS_VCARD_UPDATE).append(hash.to_owned()).build())
        .build()
}

fn sha1_hex(bytes: &[u8]) -> String {
    Sha1::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Base64 text with the line breaks vCards usually carry removed.
fn decode(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(compact).ok().filter(|bytes| !bytes.is_empty())
}

/// XEP-0398 §3.1: a new avatar metadata item puts the image into the vCard's `PHOTO`;
/// an empty `<metadata/>` (XEP-0084 §4.6, avatar disabled) removes it.
async fn pep_to_vcard(ctx: Context, hashes: Arc<Hashes>, owner: BareJid, metadata: Element) {
    let (Some(pep), Some(vcards)) = (ctx.service::<dyn PepService>(), ctx.service::<dyn VCardService>()) else {
        return;
    };
    // §3.1: of several `<info/>`, the one stored here, not at an external URL.
    let info = metadata.children().find(|c| c.is("info", NS_METADATA) && c.attr("url").is_none());
    let photo = match info {
        None => None,
        Some(info) => {
            let Some(id) = info.attr("id").map(str::to_owned) else { return };
            if hashes.get(&owner.to_string()).as_deref() == Some(id.as_str()) {
                return;
            }
            let items = match pep.items(&ctx, &owner, NS_DATA).await {
                Ok(items) => items,
                Err(err) => return tracing::warn!(%owner, ?err, "avatar data unreadable"),
            };
            let Some(data) = items.iter().find(|item| item.id == id).map(|item| item.payload.text()) else {
                return tracing::debug!(%owner, %id, "avatar metadata without its data item");
            };
            // §3.1: the image must be the one the id names.
            let Some(bytes) = decode(&data).filter(|bytes| sha1_hex(bytes) == id) else {
                return tracing::warn!(%owner, %id, "avatar data does not match its hash; not converted");
            };
            let type_ = info.attr("type").unwrap_or("image/png").to_owned();
            Some((id, type_, STANDARD.encode(bytes)))
        }
    };
    if !hashes.replace(&owner, photo.as_ref().map(|(id, _, _)| id.as_str())) {
        return;
    }
    let mut vcard = match vcards.get(&ctx, &owner).await {
        Ok(vcard) => vcard.unwrap_or_else(|| Element::builder("vCard", NS_VCARD).build()),
        Err(err) => return tracing::warn!(%owner, ?err, "vCard unreadable; avatar not converted"),
    };
    vcard.remove_child("PHOTO", NS_VCARD);
    if let Some((_, type_, binval)) = &photo {
        vcard.append_child(
            Element::builder("PHOTO", NS_VCARD)
                .append(Element::builder("TYPE", NS_VCARD).append(type_.clone()).build())
                .append(Element::builder("BINVAL", NS_VCARD).append(binval.clone()).build())
                .build(),
        );
    }
    save_hash(&ctx, &owner, photo.as_ref().map(|(id, _, _)| id.clone())).await;
    if let Err(err) = vcards.set(&ctx, &owner, vcard).await {
        tracing::warn!(%owner, ?err, "storing the converted vCard avatar failed");
    }
}

/// XEP-0398 §3.2: a vCard with a new `PHOTO` is published as User Avatar data, then
/// metadata (which notifies the account's contacts); a vCard without one disables the
/// PEP avatar.
async fn vcard_to_pep(ctx: Context, hashes: Arc<Hashes>, owner: BareJid, vcard: Element) {
    let Some(pep) = ctx.service::<dyn PepService>() else { return };
    let photo = vcard.get_child("PHOTO", NS_VCARD);
    let image = photo.and_then(|p| p.get_child("BINVAL", NS_VCARD)).and_then(|b| decode(&b.text()));
    let hash = image.as_deref().map(sha1_hex);
    if !hashes.replace(&owner, hash.as_deref()) {
        return;
    }
    save_hash(&ctx, &owner, hash.clone()).await;
    let metadata = match (&image, &hash) {
        (Some(image), Some(hash)) => {
            let data = Element::builder("data", NS_DATA).append(STANDARD.encode(image)).build();
            let item = PepItem { id: hash.clone(), payload: data };
            if let Err(err) = pep.publish(&ctx, &owner, NS_DATA, item, AVATAR_NODES).await {
                return tracing::warn!(%owner, ?err, "publishing the vCard avatar to PEP failed");
            }
            let type_ = photo.and_then(|p| p.get_child("TYPE", NS_VCARD)).map(|t| t.text());
            let info = Element::builder("info", NS_METADATA)
                .attr(xml_ncname!("bytes").into(), image.len().to_string())
                .attr(xml_ncname!("id").into(), hash.clone())
                .attr(
                    xml_ncname!("type").into(),
                    type_.filter(|t| !t.trim().is_empty()).unwrap_or_else(|| "image/png".to_owned()),
                )
                .build();
            PepItem { id: hash.clone(), payload: Element::builder("metadata", NS_METADATA).append(info).build() }
        }
        _ => PepItem { id: "current".to_owned(), payload: Element::builder("metadata", NS_METADATA).build() },
    };
    if let Err(err) = pep.publish(&ctx, &owner, NS_METADATA, metadata, AVATAR_NODES).await {
        tracing::warn!(%owner, ?err, "publishing the vCard avatar metadata failed");
    }
}

async fn save_hash(ctx: &Context, owner: &BareJid, hash: Option<String>) {
    let (host, user) = (owner.domain().to_string(), owner.node().map(|n| n.to_string()).unwrap_or_default());
    let stored = ctx
        .db()
        .run(move |c| {
            c.transaction(|c| {
                forget_user(c, &host, &user)?;
                if let Some(hash) = &hash {
                    diesel::insert_into(avatar_hashes::table)
                        .values((
                            avatar_hashes::host.eq(&host),
                            avatar_hashes::username.eq(&user),
                            avatar_hashes::sha1.eq(hash),
                        ))
                        .execute(c)?;
                }
                Ok(())
            })
        })
        .await;
    if let Err(err) = stored {
        tracing::warn!(%owner, error = %err, "storing the avatar hash failed");
    }
}

fn forget_user(conn: &mut DbConn, host: &str, user: &str) -> QueryResult<()> {
    diesel::delete(avatar_hashes::table.filter(avatar_hashes::host.eq(host)).filter(avatar_hashes::username.eq(user)))
        .execute(conn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcard_base64_with_line_breaks_decodes() {
        assert_eq!(decode("aGVs\r\n bG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(decode("not base64!"), None);
        assert_eq!(decode(""), None);
    }

    #[test]
    fn hashes_are_lowercase_hex_sha1() {
        assert_eq!(sha1_hex(b"hello"), "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d");
    }
}
