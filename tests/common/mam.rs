//! Message Archive Management (XEP-0313) queries as a client sends them.

use minidom::Element;

use super::Client;

pub const NS_MAM: &str = "urn:xmpp:mam:2";
pub const NS_RSM: &str = "http://jabber.org/protocol/rsm";

/// A finished query: the forwarded messages and the `<fin/>`.
pub struct Answer {
    pub ids: Vec<String>,
    pub bodies: Vec<String>,
    pub stamps: Vec<String>,
    pub fin: Element,
}

impl Answer {
    pub fn complete(&self) -> bool {
        self.fin.attr("complete") == Some("true")
    }

    pub fn rsm(&self, name: &str) -> Option<String> {
        self.fin.get_child("set", NS_RSM).and_then(|s| s.get_child(name, NS_RSM)).map(|e| e.text())
    }
}

pub fn field(var: &str, value: &str) -> String {
    format!("<field var='{var}'><value>{value}</value></field>")
}

/// Runs a MAM query with form `fields` and RSM `set` (inner XML) on `to` (own archive when empty).
pub async fn mam(client: &mut Client, to: &str, fields: &str, set: &str, extra: &str) -> Result<Answer, Element> {
    let to = if to.is_empty() { String::new() } else { format!(" to='{to}'") };
    let (reply, others) = client
        .iq(&format!(
            "<iq type='set' id='{{id}}'{to}><query xmlns='{NS_MAM}' queryid='q1'>\
             <x xmlns='jabber:x:data' type='submit'>{}{fields}</x>\
             <set xmlns='{NS_RSM}'>{set}</set>{extra}</query></iq>",
            field("FORM_TYPE", NS_MAM)
        ))
        .await;
    if reply.attr("type") != Some("result") {
        return Err(reply);
    }
    let mut answer = Answer {
        ids: Vec::new(),
        bodies: Vec::new(),
        stamps: Vec::new(),
        fin: reply.get_child("fin", NS_MAM).expect("fin").clone(),
    };
    for message in others.iter().filter(|s| s.name() == "message") {
        let Some(result) = message.get_child("result", NS_MAM) else { continue };
        assert_eq!(result.attr("queryid"), Some("q1"));
        let forwarded = result.get_child("forwarded", "urn:xmpp:forward:0").expect("forwarded");
        let inner = forwarded.get_child("message", "jabber:client").expect("forwarded message");
        answer.ids.push(result.attr("id").expect("result id").to_owned());
        answer.bodies.push(inner.get_child("body", "jabber:client").map(|b| b.text()).unwrap_or_default());
        answer.stamps.push(
            forwarded.get_child("delay", "urn:xmpp:delay").and_then(|d| d.attr("stamp")).expect("stamp").to_owned(),
        );
    }
    Ok(answer)
}
