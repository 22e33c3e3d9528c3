//! The server's own service-discovery view and its XEP-0115 entity-capabilities hash,
//! shared by the disco module (which answers `node#ver` queries) and the core (which
//! announces the hash in stream features, XEP-0115 §6.3).

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

use xmpp_parsers::data_forms::DataForm;

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

/// Extended-information forms (XEP-0128) of the entities in `scopes` on `host`, from
/// the modules that run there.
pub fn disco_forms(ctx: &Context, host: &str, scopes: &[Scope]) -> Vec<DataForm> {
    let registry = ctx.registry();
    let enabled = |module: usize| registry.modules().get(module).is_some_and(|m| ctx.module_enabled(m.name, host));
    scopes
        .iter()
        .flat_map(|scope| registry.disco_forms(*scope))
        .filter(|(_, module)| enabled(*module))
        .map(|(form, _)| form.clone())
        .collect()
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

/// The XEP-0115 §5.1 verification string (SHA-1), extended forms included (§5.1
/// steps 6–7: forms by `FORM_TYPE`, their fields by `var`, values sorted).
pub fn ver(identities: &[DiscoIdentity], features: &BTreeSet<String>, forms: &[DataForm]) -> String {
    let mut sorted: Vec<String> =
        identities.iter().map(|i| format!("{}/{}//{}<", i.category, i.type_, i.name)).collect();
    sorted.sort();
    let mut input = sorted.concat();
    for feature in features {
        input.push_str(feature);
        input.push('<');
    }
    let mut forms: Vec<&DataForm> = forms.iter().filter(|f| f.form_type().is_some()).collect();
    forms.sort_by_key(|f| f.form_type());
    for form in forms {
        input.push_str(form.form_type().unwrap_or_default());
        input.push('<');
        let mut fields: Vec<_> =
            form.fields.iter().filter(|f| f.var.as_deref().is_some_and(|v| v != "FORM_TYPE")).collect();
        fields.sort_by_key(|f| f.var.as_deref());
        for field in fields {
            input.push_str(field.var.as_deref().unwrap_or_default());
            input.push('<');
            let mut values: Vec<&String> = field.values.iter().collect();
            values.sort();
            for value in values {
                input.push_str(value);
                input.push('<');
            }
        }
    }
    STANDARD.encode(Sha1::digest(input.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The four features of both XEP-0115 examples.
    fn example_features() -> BTreeSet<String> {
        [
            "http://jabber.org/protocol/caps",
            "http://jabber.org/protocol/disco#info",
            "http://jabber.org/protocol/disco#items",
            "http://jabber.org/protocol/muc",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    }

    #[test]
    fn xep_0115_simple_generation_example() {
        // XEP-0115 §5.2: client/pc//Exodus 0.9.1 with four features.
        let identities = [DiscoIdentity { category: "client", type_: "pc", name: "Exodus 0.9.1" }];
        let features = example_features();
        assert_eq!(ver(&identities, &features, &[]), "QgayPKawpkPSDYmwT/WM94uAlu0=");
    }

    #[test]
    fn xep_0115_complex_generation_example_forms() {
        // XEP-0115 §5.3 with one identity (the example's second identity carries an
        // xml:lang, which servers do not use); the expected value is SHA-1 over the
        // §5.1 string built by hand:
        // "client/pc//Psi 0.11<" + features + "urn:xmpp:dataforms:softwareinfo<ip_version<ipv4<ipv6<os<Mac<os_version<10.5.1<software<Psi<software_version<0.11<"
        use xmpp_parsers::data_forms::{DataFormType, Field, FieldType};
        let identities = [DiscoIdentity { category: "client", type_: "pc", name: "Psi 0.11" }];
        let features = example_features();
        let field = |var: &str, values: &[&str]| {
            let mut field = Field::new(var, FieldType::TextMulti);
            field.values = values.iter().map(|v| (*v).to_owned()).collect();
            field
        };
        let form = DataForm::new(
            DataFormType::Result_,
            "urn:xmpp:dataforms:softwareinfo",
            vec![
                field("software_version", &["0.11"]),
                field("os", &["Mac"]),
                field("ip_version", &["ipv6", "ipv4"]),
                field("software", &["Psi"]),
                field("os_version", &["10.5.1"]),
            ],
        );
        let input = "client/pc//Psi 0.11<http://jabber.org/protocol/caps<http://jabber.org/protocol/disco#info<\
            http://jabber.org/protocol/disco#items<http://jabber.org/protocol/muc<urn:xmpp:dataforms:softwareinfo<\
            ip_version<ipv4<ipv6<os<Mac<os_version<10.5.1<software<Psi<software_version<0.11<";
        assert_eq!(ver(&identities, &features, &[form]), STANDARD.encode(Sha1::digest(input.as_bytes())));
    }
}
