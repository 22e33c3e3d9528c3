//! The XEP-0357 protocol pieces every place that sends push notifications shares: the
//! `<enable/>` and `<disable/>` requests, and the publish request to an app server
//! with its `urn:xmpp:push:summary` form. Used by the `push` module for accounts and by
//! group chat rooms (`muc`) for their members.

use jid::Jid;
use minidom::Element;

use crate::stanza::{escape_text, write_attr};
use crate::{IqPayload, Stanza};

/// XEP-0357's namespace, also its disco feature.
pub const NS_PUSH: &str = "urn:xmpp:push:0";
const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_DATA: &str = "jabber:x:data";
/// The summary form's `FORM_TYPE` (§5).
pub const SUMMARY_FORM: &str = "urn:xmpp:push:summary";

/// `<enable xmlns='urn:xmpp:push:0' jid=… node=…>` with an optional publish-options form.
#[derive(Debug, Clone)]
pub struct PushEnable {
    /// The app server.
    pub service: Jid,
    /// The device's node on it.
    pub node: String,
    /// The `<x/>` publish-options form (e.g. the vendor's secret).
    pub publish_options: Option<Element>,
}

/// `<disable xmlns='urn:xmpp:push:0' jid=… [node=…]/>`.
#[derive(Debug, Clone)]
pub struct PushDisable {
    /// The app server.
    pub service: Jid,
    /// One node, or all of the service's when absent.
    pub node: Option<String>,
}

/// The payload is not a valid `<enable/>` or `<disable/>`.
#[derive(Debug)]
pub struct BadPushRequest;

impl TryFrom<Element> for PushEnable {
    type Error = BadPushRequest;

    fn try_from(element: Element) -> Result<Self, BadPushRequest> {
        if !element.is("enable", NS_PUSH) {
            return Err(BadPushRequest);
        }
        let service = element.attr("jid").and_then(|j| Jid::new(j).ok()).ok_or(BadPushRequest)?;
        let node = element.attr("node").filter(|n| !n.is_empty()).ok_or(BadPushRequest)?.to_owned();
        let publish_options = element.get_child("x", NS_DATA).cloned();
        Ok(PushEnable { service, node, publish_options })
    }
}

impl TryFrom<Element> for PushDisable {
    type Error = BadPushRequest;

    fn try_from(element: Element) -> Result<Self, BadPushRequest> {
        if !element.is("disable", NS_PUSH) {
            return Err(BadPushRequest);
        }
        let service = element.attr("jid").and_then(|j| Jid::new(j).ok()).ok_or(BadPushRequest)?;
        let node = element.attr("node").filter(|n| !n.is_empty()).map(str::to_owned);
        Ok(PushDisable { service, node })
    }
}

impl IqPayload for PushEnable {
    const NS: &'static str = NS_PUSH;
    const NAME: &'static str = "enable";
}

impl IqPayload for PushDisable {
    const NS: &'static str = NS_PUSH;
    const NAME: &'static str = "disable";
}

/// What a notification tells (§5): counts, and the sender and body only when the
/// server's policy allows.
#[derive(Debug, Clone, Default)]
pub struct PushSummary {
    /// Messages since the device last looked.
    pub message_count: u32,
    /// Subscription requests in the same span (`None`: not told, as for rooms).
    pub pending_subscription_count: Option<u32>,
    /// `last-message-sender`.
    pub last_sender: Option<String>,
    /// `last-message-body`.
    pub last_body: Option<String>,
}

/// Where a notification goes.
#[derive(Debug, Clone, Copy)]
pub struct PushTarget<'a> {
    /// The app server.
    pub service: &'a Jid,
    /// The node on it.
    pub node: &'a str,
    /// The serialised publish-options form the client gave, if any.
    pub publish_options: Option<&'a str>,
}

/// The §5 publish request from `from` (the account's bare JID, or the room's).
pub fn notification(from: &str, target: PushTarget<'_>, summary: &PushSummary) -> Option<Stanza> {
    let mut xml = Vec::with_capacity(512);
    let field = |xml: &mut Vec<u8>, var: &str, value: &str| {
        xml.extend_from_slice(b"<field");
        write_attr(xml, "var", var);
        xml.extend_from_slice(b"><value>");
        escape_text(xml, value);
        xml.extend_from_slice(b"</value></field>");
    };
    xml.extend_from_slice(b"<iq xmlns='jabber:client' type='set'");
    write_attr(&mut xml, "from", from);
    write_attr(&mut xml, "to", target.service.as_str());
    xml.extend_from_slice(format!("><pubsub xmlns='{NS_PUBSUB}'><publish").as_bytes());
    write_attr(&mut xml, "node", target.node);
    xml.extend_from_slice(
        format!("><item><notification xmlns='{NS_PUSH}'><x xmlns='{NS_DATA}' type='submit'>").as_bytes(),
    );
    field(&mut xml, "FORM_TYPE", SUMMARY_FORM);
    field(&mut xml, "message-count", &summary.message_count.to_string());
    if let Some(count) = summary.pending_subscription_count {
        field(&mut xml, "pending-subscription-count", &count.to_string());
    }
    if let Some(sender) = &summary.last_sender {
        field(&mut xml, "last-message-sender", sender);
    }
    if let Some(body) = &summary.last_body {
        field(&mut xml, "last-message-body", body);
    }
    xml.extend_from_slice(b"</x></notification></item></publish>");
    if let Some(options) = target.publish_options {
        // Serialised by minidom from the client's form when it enabled push.
        xml.extend_from_slice(b"<publish-options>");
        xml.extend_from_slice(options.as_bytes());
        xml.extend_from_slice(b"</publish-options>");
    }
    xml.extend_from_slice(b"</pubsub></iq>");
    // Parsed back so that the stanza is in canonical form whatever minidom wrote.
    let iq = std::str::from_utf8(&xml).ok()?.parse::<Element>().ok()?;
    Some(Stanza::from_element(&iq))
}

/// Whether an app server's answer means the registration is dead (§6): an error other
/// than `wait`.
pub fn refused_for_good(answer: &Stanza) -> bool {
    if answer.type_() != Some("error") {
        return false;
    }
    let error_type = answer
        .to_element()
        .ok()
        .and_then(|e| e.get_child("error", "jabber:client").and_then(|e| e.attr("type").map(str::to_owned)));
    error_type.as_deref() != Some("wait")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notification_carries_the_summary_and_the_publish_options() {
        let options: Element =
            "<x xmlns='jabber:x:data' type='submit'><field var='secret'><value>s3</value></field></x>"
                .parse()
                .expect("xml");
        let options = String::from(&options);
        let service = Jid::new("push.example").expect("jid");
        let target = PushTarget { service: &service, node: "n1", publish_options: Some(&options) };
        let summary = PushSummary {
            message_count: 2,
            pending_subscription_count: Some(0),
            last_sender: Some("romeo@montague.example/garden".into()),
            last_body: Some("hi".into()),
        };
        let iq = notification("juliet@capulet.example", target, &summary).expect("stanza").to_element().expect("xml");
        assert_eq!((iq.attr("from"), iq.attr("to")), (Some("juliet@capulet.example"), Some("push.example")));
        let pubsub = iq.get_child("pubsub", NS_PUBSUB).expect("pubsub");
        let publish = pubsub.get_child("publish", NS_PUBSUB).expect("publish");
        assert_eq!(publish.attr("node"), Some("n1"));
        let form = publish
            .get_child("item", NS_PUBSUB)
            .and_then(|i| i.get_child("notification", NS_PUSH))
            .and_then(|n| n.get_child("x", NS_DATA))
            .expect("summary form");
        let value = |var: &str| {
            form.children()
                .find(|f| f.attr("var") == Some(var))
                .and_then(|f| f.get_child("value", NS_DATA))
                .map(Element::text)
        };
        assert_eq!(value("FORM_TYPE").as_deref(), Some(SUMMARY_FORM));
        assert_eq!(value("message-count").as_deref(), Some("2"));
        assert_eq!(value("pending-subscription-count").as_deref(), Some("0"));
        assert_eq!(value("last-message-sender").as_deref(), Some("romeo@montague.example/garden"));
        assert_eq!(value("last-message-body").as_deref(), Some("hi"));
        let secret = pubsub
            .get_child("publish-options", NS_PUBSUB)
            .and_then(|o| o.get_child("x", NS_DATA))
            .and_then(|x| x.children().find(|f| f.attr("var") == Some("secret")))
            .and_then(|f| f.get_child("value", NS_DATA))
            .map(Element::text);
        assert_eq!(secret.as_deref(), Some("s3"));
        let room = PushSummary { message_count: 1, ..PushSummary::default() };
        let iq = notification("room@muc.example", target, &room).expect("stanza");
        assert!(!String::from(&iq.to_element().expect("xml")).contains("pending-subscription-count"));
    }
}
