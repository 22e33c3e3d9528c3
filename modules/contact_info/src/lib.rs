//! XEP-0157: Contact Addresses for XMPP Services — the server's disco#info carries a
//! `http://jabber.org/network/serverinfo` form (XEP-0128) listing where to report
//! abuse, reach the admins, ask for support or learn of outages, as URIs
//! (`mailto:`, `xmpp:`, `https:`). Clients show them (Gajim, Conversations), and
//! other operators look them up when one of this server's users misbehaves.
//!
//! ```toml
//! [modules.contact_info]
//! abuse = ["mailto:abuse@example.org", "xmpp:abuse@example.org"]
//! admin = ["xmpp:admin@example.org"]
//! security = ["mailto:security@example.org"]
//! ```

use serde::Deserialize;
use starling_api::xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use starling_api::{ModuleError, ModuleSpec, Registrar, Scope, Spec, SpecSupport, Support};

/// The form's `FORM_TYPE`.
pub const SERVERINFO: &str = "http://jabber.org/network/serverinfo";

/// The module.
pub static MODULE: ModuleSpec = ModuleSpec {
    name: "contact_info",
    summary: "XEP-0157 contact addresses in the server's disco#info",
    specs: &[SpecSupport { spec: Spec::Xep(157), version: "1.1.1", status: Support::Complete, features: &[] }],
    migrations: None,
    forget_user: None,
    start,
};

/// `[modules.contact_info]`: address URIs per XEP-0157 §2 field.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ContactConfig {
    abuse: Vec<String>,
    admin: Vec<String>,
    feedback: Vec<String>,
    sales: Vec<String>,
    security: Vec<String>,
    status: Vec<String>,
    support: Vec<String>,
}

impl ContactConfig {
    /// The `(field var, addresses)` pairs, in the XEP's order.
    fn fields(&self) -> [(&'static str, &[String]); 7] {
        [
            ("abuse-addresses", &self.abuse),
            ("admin-addresses", &self.admin),
            ("feedback-addresses", &self.feedback),
            ("sales-addresses", &self.sales),
            ("security-addresses", &self.security),
            ("status-addresses", &self.status),
            ("support-addresses", &self.support),
        ]
    }
}

fn start(reg: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let config: ContactConfig = reg.config()?;
    for (var, addresses) in config.fields() {
        if let Some(bad) = addresses.iter().find(|a| !a.contains(':')) {
            return Err(ModuleError::Config {
                module: "contact_info",
                message: format!("{bad:?} in {var} is not a URI (mailto:…, xmpp:…, https:…)"),
            });
        }
    }
    if let Some(form) = serverinfo_form(&config) {
        reg.disco_form(Scope::Server, form);
    }
    Ok(())
}

/// The XEP-0157 form, or `None` when no address is configured.
fn serverinfo_form(config: &ContactConfig) -> Option<DataForm> {
    let fields: Vec<Field> = config
        .fields()
        .into_iter()
        .filter(|(_, addresses)| !addresses.is_empty())
        .map(|(var, addresses)| {
            let mut field = Field::new(var, FieldType::ListMulti);
            field.values = addresses.to_vec();
            field
        })
        .collect();
    if fields.is_empty() {
        return None;
    }
    Some(DataForm::new(DataFormType::Result_, SERVERINFO, fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_addresses_are_listed() {
        assert!(serverinfo_form(&ContactConfig::default()).is_none());
        let config = ContactConfig {
            abuse: vec!["mailto:abuse@example.org".into()],
            support: vec!["xmpp:help@example.org".into(), "https://example.org/help".into()],
            ..ContactConfig::default()
        };
        let form = serverinfo_form(&config).expect("a form");
        assert_eq!(form.form_type(), Some(SERVERINFO));
        let vars: Vec<_> = form.fields.iter().filter_map(|f| f.var.as_deref()).collect();
        assert_eq!(vars, ["FORM_TYPE", "abuse-addresses", "support-addresses"]);
        assert_eq!(form.fields[2].values, ["xmpp:help@example.org", "https://example.org/help"]);
    }
}
