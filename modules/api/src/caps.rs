//! The server's own service-discovery view and its XEP-0115 entity-capabilities hash,
//! shared by the disco module (which answers `node#ver` queries) and the core (which
//! announces the hash in stream features, XEP-0115 §6.3).

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

use crate::module::DiscoIdentity;
use crate::{Context, Scope};

/// The caps `node` of this software.
pub const CAPS_NODE: &str = "urn:starling:server";

/// Identities and features of the entities in `scopes` on `host`, counting only the
/// modules that run there.
pub fn disco_info(ctx: &Context, host: &str, scopes: &[Scope]) -> (Vec<DiscoIdentity>, BTreeSet<String>) {
    let registry = ctx.registry();
    let enabled = |module: usize| registry.modules().get(module).is_some_and(|m| ctx.module_enabled(m.name, host));
    let mut identities: Vec<DiscoIdentity> = Vec::new();
    let mut features = BTreeSet::new();
    for scope in scopes {
        for (identity, module) in registry.identities(*scope) {
            if enabled(module) && !identities.contains(identity) {
                identities.push(identity.clone());
            }
        }
        features.extend(registry.features(*scope).filter(|(_, m)| enabled(*m)).map(|(var, _)| var.to_owned()));
    }
    (identities, features)
}

/// Identities and features of component `domain`: what its own module registered for
/// [`Scope::Component`], plus what modules owning no component registered there (ping,
/// disco itself). `None` when no module serves `domain`.
pub fn component_disco_info(ctx: &Context, domain: &str) -> Option<(Vec<DiscoIdentity>, BTreeSet<String>)> {
    let registry = ctx.registry();
    let component = registry.component(domain)?;
    let applies = |module: usize| {
        (module == component.module || !registry.owns_components(module))
            && registry.modules().get(module).is_some_and(|m| ctx.module_enabled(m.name, &component.host))
    };
    let mut identities: Vec<DiscoIdentity> = Vec::new();
    for (identity, module) in registry.identities(Scope::Component) {
        if applies(module) && !identities.contains(identity) {
            identities.push(identity.clone());
        }
    }
    let features =
        registry.features(Scope::Component).filter(|(_, m)| applies(*m)).map(|(v, _)| v.to_owned()).collect();
    Some((identities, features))
}

/// The XEP-0115 §5.1 verification string (SHA-1, no data forms).
pub fn ver(identities: &[DiscoIdentity], features: &BTreeSet<String>) -> String {
    let mut sorted: Vec<String> =
        identities.iter().map(|i| format!("{}/{}//{}<", i.category, i.type_, i.name)).collect();
    sorted.sort();
    let mut input = sorted.concat();
    for feature in features {
        input.push_str(feature);
        input.push('<');
    }
    STANDARD.encode(Sha1::digest(input.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xep_0115_simple_generation_example() {
        // XEP-0115 §5.2: client/pc//Exodus 0.9.1 with four features.
        let identities = [DiscoIdentity { category: "client", type_: "pc", name: "Exodus 0.9.1" }];
        let features: BTreeSet<String> = [
            "http://jabber.org/protocol/caps",
            "http://jabber.org/protocol/disco#info",
            "http://jabber.org/protocol/disco#items",
            "http://jabber.org/protocol/muc",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        assert_eq!(ver(&identities, &features), "QgayPKawpkPSDYmwT/WM94uAlu0=");
    }
}
