//! The `jabber:iq:register` payload (XEP-0077 §3, with the XEP-0004 form of §4).

use starling_api::IqPayload;
use starling_api::minidom::Element;
use starling_api::minidom::rxml::xml_ncname;

/// `jabber:iq:register`
pub const NS_REGISTER: &str = "jabber:iq:register";
const NS_DATA: &str = "jabber:x:data";

/// A request's `<query xmlns='jabber:iq:register'/>`: legacy fields or a submitted form.
#[derive(Debug, Clone, Default)]
pub struct RegisterQuery {
    /// `<username/>` or the form's `username`.
    pub username: Option<String>,
    /// `<password/>` or the form's `password`.
    pub password: Option<String>,
    /// The form's invite `token`.
    pub token: Option<String>,
    /// `<remove/>` (§3.2).
    pub remove: bool,
}

/// The payload is not a `jabber:iq:register` query.
#[derive(Debug)]
pub struct NotRegisterQuery;

impl TryFrom<Element> for RegisterQuery {
    type Error = NotRegisterQuery;

    fn try_from(element: Element) -> Result<Self, Self::Error> {
        if !element.is("query", NS_REGISTER) {
            return Err(NotRegisterQuery);
        }
        let text = |name: &str| element.get_child(name, NS_REGISTER).map(|c| c.text());
        let mut query = RegisterQuery {
            username: text("username"),
            password: text("password"),
            token: None,
            remove: element.get_child("remove", NS_REGISTER).is_some(),
        };
        if let Some(form) = element.get_child("x", NS_DATA).filter(|x| x.attr("type") == Some("submit")) {
            for field in form.children().filter(|f| f.is("field", NS_DATA)) {
                let value = field.get_child("value", NS_DATA).map(|v| v.text());
                match field.attr("var") {
                    Some("username") => query.username = value,
                    Some("password") => query.password = value,
                    Some("token") => query.token = value,
                    _ => {}
                }
            }
        }
        let trim = |v: Option<String>| v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        query.username = trim(query.username);
        query.token = trim(query.token);
        // Passwords are taken as typed, only an empty one counts as missing.
        query.password = query.password.filter(|p| !p.is_empty());
        Ok(query)
    }
}

impl IqPayload for RegisterQuery {
    const NS: &'static str = NS_REGISTER;
    const NAME: &'static str = "query";
}

fn form_field(var: &str, type_: &str, label: &str) -> Element {
    Element::builder("field", NS_DATA)
        .attr(xml_ncname!("var").into(), var)
        .attr(xml_ncname!("type").into(), type_)
        .attr(xml_ncname!("label").into(), label)
        .append(Element::builder("required", NS_DATA).build())
        .build()
}

/// §3.1 Example 2 with the §4 form: the fields to fill in (`token` when required).
pub fn fields(token: bool) -> Element {
    let instructions = if token {
        "Choose a username and password, and enter your invite token in the form."
    } else {
        "Choose a username and password."
    };
    let mut form = Element::builder("x", NS_DATA)
        .attr(xml_ncname!("type").into(), "form")
        .append(Element::builder("title", NS_DATA).append("Account registration").build())
        .append(Element::builder("instructions", NS_DATA).append(instructions).build())
        .append(
            Element::builder("field", NS_DATA)
                .attr(xml_ncname!("var").into(), "FORM_TYPE")
                .attr(xml_ncname!("type").into(), "hidden")
                .append(Element::builder("value", NS_DATA).append(NS_REGISTER).build())
                .build(),
        )
        .append(form_field("username", "text-single", "Username"))
        .append(form_field("password", "text-private", "Password"))
        .build();
    if token {
        form.append_child(form_field("token", "text-single", "Invite token"));
    }
    Element::builder("query", NS_REGISTER)
        .append(Element::builder("instructions", NS_REGISTER).append(instructions).build())
        .append(Element::builder("username", NS_REGISTER).build())
        .append(Element::builder("password", NS_REGISTER).build())
        .append(form)
        .build()
}

/// §3.1 Example 4: already registered, as `username`.
pub fn registered(username: &str) -> Element {
    Element::builder("query", NS_REGISTER)
        .append(Element::builder("registered", NS_REGISTER).build())
        .append(Element::builder("username", NS_REGISTER).append(username).build())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> RegisterQuery {
        RegisterQuery::try_from(xml.parse::<Element>().expect("xml")).expect("query")
    }

    #[test]
    fn legacy_fields_and_forms_both_parse() {
        let legacy =
            parse("<query xmlns='jabber:iq:register'><username> bill </username><password>Calliope</password></query>");
        assert_eq!((legacy.username.as_deref(), legacy.password.as_deref()), (Some("bill"), Some("Calliope")));
        let form = parse(
            "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>jabber:iq:register</value></field>\
             <field var='username'><value>juliet</value></field>\
             <field var='password'><value>R0m30</value></field>\
             <field var='token'><value>abc</value></field></x></query>",
        );
        assert_eq!(form.username.as_deref(), Some("juliet"));
        assert_eq!(form.token.as_deref(), Some("abc"));
        assert!(parse("<query xmlns='jabber:iq:register'><remove/></query>").remove);
        assert!(parse("<query xmlns='jabber:iq:register'><username/><password/></query>").username.is_none());
        assert!(RegisterQuery::try_from("<query xmlns='jabber:iq:roster'/>".parse::<Element>().expect("xml")).is_err());
    }

    #[test]
    fn the_token_field_is_offered_only_when_required() {
        let has_token = |e: &Element| {
            e.get_child("x", NS_DATA).is_some_and(|x| x.children().any(|f| f.attr("var") == Some("token")))
        };
        assert!(has_token(&fields(true)));
        assert!(!has_token(&fields(false)));
    }
}
