//! Node configuration (XEP-0060 §16.4.4 `pubsub#node_config`), sans-IO: the options
//! PEP clients use, read from a configure form or from XEP-0223 publish-options, and
//! the precondition check of XEP-0060 §7.1.5.

use starling_api::minidom::Element;
use starling_api::minidom::rxml::xml_ncname;
use starling_api::stanza_error;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

pub const NS_DATA: &str = "jabber:x:data";
pub const NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";
pub const PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";
pub const NS_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";

/// `pubsub#access_model` (XEP-0060 §4.5; `authorize` is not offered on PEP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessModel {
    /// Anyone.
    Open,
    /// Contacts subscribed to the owner's presence (the PEP default, XEP-0163 §5).
    #[default]
    Presence,
    /// Contacts in the owner's roster.
    Roster,
    /// The owner only (nobody else is ever affiliated with a PEP node here).
    Whitelist,
}

impl AccessModel {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessModel::Open => "open",
            AccessModel::Presence => "presence",
            AccessModel::Roster => "roster",
            AccessModel::Whitelist => "whitelist",
        }
    }
}

impl std::str::FromStr for AccessModel {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        match text {
            "open" => Ok(AccessModel::Open),
            "presence" => Ok(AccessModel::Presence),
            "roster" => Ok(AccessModel::Roster),
            "whitelist" => Ok(AccessModel::Whitelist),
            _ => Err(()),
        }
    }
}

/// A node's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    pub access_model: AccessModel,
    pub max_items: u32,
    pub persist_items: bool,
    /// `never`, `on_sub` or `on_sub_and_presence`.
    pub send_last_published_item: String,
    pub title: String,
}

impl NodeConfig {
    /// A new node's configuration.
    pub fn new(max_items: u32) -> NodeConfig {
        NodeConfig {
            access_model: AccessModel::Presence,
            max_items,
            persist_items: true,
            send_last_published_item: "on_sub_and_presence".into(),
            title: String::new(),
        }
    }
}

/// Options as (var, value) pairs from a submitted form of `form_type`.
pub fn options(form: &Element, form_type: &str) -> Result<Vec<(String, String)>, StanzaError> {
    let bad = || stanza_error(ErrorType::Modify, DefinedCondition::BadRequest);
    if !form.is("x", NS_DATA) {
        return Err(bad());
    }
    let mut out = Vec::new();
    for field in form.children().filter(|f| f.is("field", NS_DATA)) {
        let var = field.attr("var").unwrap_or_default();
        let value = field.children().find(|v| v.is("value", NS_DATA)).map(|v| v.text()).unwrap_or_default();
        if var == "FORM_TYPE" {
            if value != form_type {
                return Err(bad());
            }
            continue;
        }
        out.push((var.to_owned(), value));
    }
    Ok(out)
}

fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// `max_items` as a number; `max` is the server's limit (XEP-0060 §16.4.4).
fn parse_max(value: &str, limit: u32) -> Option<u32> {
    if value == "max" {
        return Some(limit);
    }
    value.parse::<u32>().ok().filter(|n| *n >= 1 && *n <= limit)
}

/// Applies configure-form options to `config`; unknown options are refused.
pub fn apply(config: &mut NodeConfig, options: &[(String, String)], limit: u32) -> Result<(), StanzaError> {
    let not_acceptable = || stanza_error(ErrorType::Modify, DefinedCondition::NotAcceptable);
    for (var, value) in options {
        match var.as_str() {
            "pubsub#access_model" => config.access_model = value.parse().map_err(|_| not_acceptable())?,
            "pubsub#max_items" => config.max_items = parse_max(value, limit).ok_or_else(not_acceptable)?,
            "pubsub#persist_items" => config.persist_items = parse_bool(value).ok_or_else(not_acceptable)?,
            "pubsub#send_last_published_item" => match value.as_str() {
                "never" | "on_sub" | "on_sub_and_presence" => config.send_last_published_item = value.clone(),
                _ => return Err(not_acceptable()),
            },
            "pubsub#title" => config.title = value.clone(),
            // Options every PEP node has fixed values for; accepted as they are.
            "pubsub#deliver_payloads"
            | "pubsub#deliver_notifications"
            | "pubsub#notify_retract"
            | "pubsub#notify_delete"
            | "pubsub#presence_based_delivery" => {}
            _ => return Err(not_acceptable()),
        }
    }
    Ok(())
}

/// The conflict/precondition-not-met error (XEP-0060 §7.1.5).
pub fn precondition_not_met() -> StanzaError {
    let mut error = stanza_error(ErrorType::Cancel, DefinedCondition::Conflict);
    error.other = Some(Element::builder("precondition-not-met", NS_ERRORS).build());
    error
}

/// XEP-0223: whether an existing node satisfies publish-options.
pub fn check_preconditions(config: &NodeConfig, options: &[(String, String)], limit: u32) -> Result<(), StanzaError> {
    let mut wanted = config.clone();
    apply(&mut wanted, options, limit).map_err(|_| precondition_not_met())?;
    if wanted == *config { Ok(()) } else { Err(precondition_not_met()) }
}

/// The configure form (XEP-0060 §8.2.1).
pub fn form(config: &NodeConfig) -> Element {
    let field = |var: &str, type_: &str, value: &str| {
        Element::builder("field", NS_DATA)
            .attr(xml_ncname!("var").into(), var)
            .attr(xml_ncname!("type").into(), type_)
            .append(Element::builder("value", NS_DATA).append(value).build())
            .build()
    };
    let mut access = Element::builder("field", NS_DATA)
        .attr(xml_ncname!("var").into(), "pubsub#access_model")
        .attr(xml_ncname!("type").into(), "list-single")
        .append(Element::builder("value", NS_DATA).append(config.access_model.as_str()).build());
    for option in ["open", "presence", "roster", "whitelist"] {
        access = access.append(
            Element::builder("option", NS_DATA)
                .append(Element::builder("value", NS_DATA).append(option).build())
                .build(),
        );
    }
    Element::builder("x", NS_DATA)
        .attr(xml_ncname!("type").into(), "form")
        .append(field("FORM_TYPE", "hidden", NODE_CONFIG))
        .append(access.build())
        .append(field("pubsub#max_items", "text-single", &config.max_items.to_string()))
        .append(field("pubsub#persist_items", "boolean", if config.persist_items { "1" } else { "0" }))
        .append(field("pubsub#send_last_published_item", "list-single", &config.send_last_published_item))
        .append(field("pubsub#title", "text-single", &config.title))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish_options(fields: &str) -> Vec<(String, String)> {
        let xml = format!(
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>\
             <value>{PUBLISH_OPTIONS}</value></field>{fields}</x>"
        );
        options(&xml.parse().expect("xml"), PUBLISH_OPTIONS).expect("valid")
    }

    #[test]
    fn bookmarks_options_apply_and_max_means_the_limit() {
        // XEP-0402 §3.3 publish-options.
        let opts = publish_options(
            "<field var='pubsub#persist_items'><value>true</value></field>\
             <field var='pubsub#max_items'><value>max</value></field>\
             <field var='pubsub#send_last_published_item'><value>never</value></field>\
             <field var='pubsub#access_model'><value>whitelist</value></field>",
        );
        let mut config = NodeConfig::new(1);
        apply(&mut config, &opts, 256).expect("applies");
        assert_eq!(config.access_model, AccessModel::Whitelist);
        assert_eq!(config.max_items, 256);
        assert_eq!(config.send_last_published_item, "never");
        assert!(check_preconditions(&config, &opts, 256).is_ok());
    }

    #[test]
    fn a_different_access_model_is_a_failed_precondition() {
        let mut config = NodeConfig::new(1);
        config.access_model = AccessModel::Open;
        let opts = publish_options("<field var='pubsub#access_model'><value>presence</value></field>");
        let error = check_preconditions(&config, &opts, 256).expect_err("mismatch");
        assert_eq!(error.defined_condition, DefinedCondition::Conflict);
        assert!(error.other.is_some_and(|o| o.is("precondition-not-met", NS_ERRORS)));
        let bad = publish_options("<field var='pubsub#access_model'><value>authorize</value></field>");
        assert!(apply(&mut NodeConfig::new(1), &bad, 256).is_err());
    }
}
