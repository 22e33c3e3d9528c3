//! Who gets notifications (XEP-0163 §4, XEP-0115): the available resources the
//! account has seen presence from — its own (`PresenceBroadcast`) and its contacts'
//! (any presence routed to it) — with their entity-capabilities, resolved once per
//! `ver` by a disco#info query and verified (XEP-0115 §5.4) before it is cached.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};
use starling_api::minidom::Element;
use starling_api::{Context, Stanza};

const NS_CAPS: &str = "http://jabber.org/protocol/caps";
const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const NS_DATA: &str = "jabber:x:data";
/// How long a resource has to answer a capabilities query.
const CAPS_TIMEOUT: Duration = Duration::from_secs(5);

/// A resource's advertised capabilities (XEP-0115 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caps {
    pub node: String,
    pub ver: String,
    pub hash: String,
}

/// The `<c/>` of a presence, if any.
pub fn caps_of(stanza: &Stanza) -> Option<Caps> {
    if !stanza.child_elements().any(|c| c.name() == "c" && c.ns() == NS_CAPS) {
        return None;
    }
    let element = stanza.to_element().ok()?;
    let c = element.get_child("c", NS_CAPS)?;
    Some(Caps {
        node: c.attr("node")?.to_owned(),
        ver: c.attr("ver")?.to_owned(),
        hash: c.attr("hash").unwrap_or("sha-1").to_owned(),
    })
}

/// Available resources per account, and resolved features.
#[derive(Default)]
pub struct Watchers {
    /// owner bare JID → resource full JID → caps; own resources and contacts alike.
    by_owner: Mutex<HashMap<String, HashMap<String, Option<Caps>>>>,
    /// Verified `ver` → features.
    by_ver: Mutex<HashMap<String, Arc<BTreeSet<String>>>>,
    /// Unverifiable answers, by full JID.
    by_jid: Mutex<HashMap<String, Arc<BTreeSet<String>>>>,
}

impl Watchers {
    /// Records `resource` as available to `owner`; true when it is new or its caps changed.
    pub fn available(&self, owner: &str, resource: &str, caps: Option<Caps>) -> bool {
        let mut table = self.by_owner.lock().unwrap_or_else(|e| e.into_inner());
        let seen = table.entry(owner.to_owned()).or_default();
        let changed = seen.get(resource) != Some(&caps);
        seen.insert(resource.to_owned(), caps);
        changed
    }

    /// Forgets `resource` for `owner`.
    pub fn unavailable(&self, owner: &str, resource: &str) {
        let mut table = self.by_owner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(seen) = table.get_mut(owner) {
            seen.remove(resource);
            if seen.is_empty() {
                table.remove(owner);
            }
        }
        self.by_jid.lock().unwrap_or_else(|e| e.into_inner()).remove(resource);
    }

    /// The resources available to `owner`, with their caps.
    pub fn of(&self, owner: &str) -> Vec<(String, Option<Caps>)> {
        let table = self.by_owner.lock().unwrap_or_else(|e| e.into_inner());
        table.get(owner).map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
    }

    /// The features of `resource`, asking it (as `asker`) when its `ver` is unknown.
    pub async fn features(
        &self,
        ctx: &Context,
        asker: &str,
        resource: &str,
        caps: &Option<Caps>,
    ) -> Arc<BTreeSet<String>> {
        let Some(caps) = caps else { return Arc::default() };
        if let Some(known) = self.by_ver.lock().unwrap_or_else(|e| e.into_inner()).get(&caps.ver) {
            return known.clone();
        }
        if let Some(known) = self.by_jid.lock().unwrap_or_else(|e| e.into_inner()).get(resource) {
            return known.clone();
        }
        let mut iq = Stanza::new("iq", "jabber:client");
        iq.set_attr("type", Some("get"));
        iq.set_attr("from", Some(asker));
        iq.set_attr("to", Some(resource));
        let mut query = Vec::new();
        query.extend_from_slice(b"<query xmlns='http://jabber.org/protocol/disco#info'");
        starling_api::stanza::write_attr(&mut query, "node", &format!("{}#{}", caps.node, caps.ver));
        query.extend_from_slice(b"/>");
        let iq = iq.with_children_xml(query.into());
        let answer = match ctx.send_iq(iq, CAPS_TIMEOUT).await {
            Ok(answer) if answer.type_() == Some("result") => answer,
            _ => return Arc::default(),
        };
        let Some(info) = answer.to_element().ok().and_then(|e| e.get_child("query", NS_DISCO_INFO).cloned()) else {
            return Arc::default();
        };
        let features: Arc<BTreeSet<String>> = Arc::new(
            info.children()
                .filter(|c| c.is("feature", NS_DISCO_INFO))
                .filter_map(|c| c.attr("var"))
                .map(str::to_owned)
                .collect(),
        );
        if caps.hash == "sha-1" && verification_string_hash(&info) == caps.ver {
            self.by_ver.lock().unwrap_or_else(|e| e.into_inner()).insert(caps.ver.clone(), features.clone());
        } else {
            self.by_jid.lock().unwrap_or_else(|e| e.into_inner()).insert(resource.to_owned(), features.clone());
        }
        features
    }
}

/// XEP-0115 §5.1: the SHA-1 verification string of a disco#info answer, forms included.
fn verification_string_hash(info: &Element) -> String {
    let mut identities: Vec<String> = info
        .children()
        .filter(|c| c.is("identity", NS_DISCO_INFO))
        .map(|i| {
            format!(
                "{}/{}/{}/{}<",
                i.attr("category").unwrap_or_default(),
                i.attr("type").unwrap_or_default(),
                i.attr_ns("http://www.w3.org/XML/1998/namespace", "lang").unwrap_or_default(),
                i.attr("name").unwrap_or_default()
            )
        })
        .collect();
    identities.sort();
    let mut features: Vec<&str> =
        info.children().filter(|c| c.is("feature", NS_DISCO_INFO)).filter_map(|c| c.attr("var")).collect();
    features.sort();
    let mut input = identities.concat();
    for feature in features {
        input.push_str(feature);
        input.push('<');
    }
    let mut forms: Vec<(String, String)> = Vec::new();
    for form in info.children().filter(|c| c.is("x", NS_DATA)) {
        let field_values = |field: &Element| {
            let mut values: Vec<String> =
                field.children().filter(|v| v.is("value", NS_DATA)).map(|v| v.text()).collect();
            values.sort();
            values
        };
        let Some(form_type) = form.children().find(|f| f.attr("var") == Some("FORM_TYPE")) else { continue };
        let form_type = field_values(form_type).concat();
        let mut text = format!("{form_type}<");
        let mut fields: Vec<&Element> =
            form.children().filter(|f| f.is("field", NS_DATA) && f.attr("var") != Some("FORM_TYPE")).collect();
        fields.sort_by_key(|f| f.attr("var").unwrap_or_default().to_owned());
        for field in fields {
            text.push_str(field.attr("var").unwrap_or_default());
            text.push('<');
            for value in field_values(field) {
                text.push_str(&value);
                text.push('<');
            }
        }
        forms.push((form_type, text));
    }
    forms.sort();
    for (_, text) in forms {
        input.push_str(&text);
    }
    STANDARD.encode(Sha1::digest(input.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xep_0115_complex_generation_example() {
        // XEP-0115 §5.3.
        let info: Element = "<query xmlns='http://jabber.org/protocol/disco#info' node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>\
            <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>\
            <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>\
            <feature var='http://jabber.org/protocol/caps'/>\
            <feature var='http://jabber.org/protocol/disco#info'/>\
            <feature var='http://jabber.org/protocol/disco#items'/>\
            <feature var='http://jabber.org/protocol/muc'/>\
            <x xmlns='jabber:x:data' type='result'>\
              <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>\
              <field var='ip_version'><value>ipv4</value><value>ipv6</value></field>\
              <field var='os'><value>Mac</value></field>\
              <field var='os_version'><value>10.5.1</value></field>\
              <field var='software'><value>Psi</value></field>\
              <field var='software_version'><value>0.11</value></field>\
            </x></query>"
            .parse()
            .expect("xml");
        assert_eq!(verification_string_hash(&info), "q07IKJEyjvHSyhy//CH0CxmKi8w=");
    }
}
