//! XEP-0280: Message Carbons — every resource that enabled carbons sees the
//! conversations of its account's other resources: messages they send come as
//! `<sent/>` copies, messages delivered to them as `<received/>` copies.
//!
//! Eligible (XEP-0280 §6): `chat` messages, and `normal` ones with a body; not
//! `groupchat`, `headline` or errors; not messages marked `<private/>` (XEP-0280 §7) or
//! `<no-copy/>` (XEP-0334), nor carbons themselves.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use starling_api::hooks::{MessageDelivered, MessageSent, SessionEnded};
use starling_api::jid::{BareJid, FullJid};
use starling_api::xmpp_parsers::carbons::{Disable, Enable};
use starling_api::xmpp_parsers::ns;
use starling_api::{
    Context, Flow, IqRequest, IqResult, ModuleSpec, Registrar, Scope, Spec, SpecSupport, Stanza, Support,
};

/// The module.
pub static MODULE: ModuleSpec = ModuleSpec {
    name: "carbons",
    summary: "XEP-0280 Message Carbons",
    specs: &[
        SpecSupport { spec: Spec::Xep(280), version: "1.0.1", status: Support::Complete, features: &[ns::CARBONS] },
        SpecSupport { spec: Spec::Xep(297), version: "1.0", status: Support::Complete, features: &[] },
    ],
    migrations: None,
    forget_user: None,
    start,
};

const NS_HINTS: &str = "urn:xmpp:hints";

/// Resources that enabled carbons.
#[derive(Default)]
struct Enabled(Mutex<HashSet<FullJid>>);

impl Enabled {
    fn set(&self, jid: FullJid, on: bool) {
        if let Ok(mut set) = self.0.lock() {
            if on {
                set.insert(jid);
            } else {
                set.remove(&jid);
            }
        }
    }

    /// `user`'s bound resources with carbons on, except those in `skip`.
    fn resources(&self, ctx: &Context, user: &BareJid, skip: &[FullJid]) -> Vec<FullJid> {
        let Ok(set) = self.0.lock() else { return Vec::new() };
        ctx.sessions().resources(user).into_iter().filter(|r| set.contains(r) && !skip.contains(r)).collect()
    }
}

fn start(reg: &mut Registrar<'_>) -> Result<(), starling_api::ModuleError> {
    reg.disco_feature(Scope::Server, ns::CARBONS);
    let enabled = Arc::new(Enabled::default());
    let e = enabled.clone();
    reg.iq_set::<Enable, _, _>(Scope::OwnAccount, move |_ctx: Context, req: IqRequest<Enable>| {
        set_state(&e, &req.from, true);
        async { IqResult::Ok(None) }
    });
    let e = enabled.clone();
    reg.iq_set::<Disable, _, _>(Scope::OwnAccount, move |_ctx: Context, req: IqRequest<Disable>| {
        set_state(&e, &req.from, false);
        async { IqResult::Ok(None) }
    });
    // XEP-0386 §2.2: `<enable/>` inside Bind 2 turns carbons on before the first stanza.
    let e = enabled.clone();
    reg.bind2_feature(ns::CARBONS, move |_ctx, jid, element| {
        if element.name() == "enable" {
            e.set(jid.clone(), true);
        }
        None
    });
    let e = enabled.clone();
    reg.hook::<SessionEnded, _>(0, move |_, event| {
        e.set(event.jid.clone(), false);
        Flow::Continue
    });
    let e = enabled.clone();
    reg.hook::<MessageSent, _>(0, move |ctx, event| {
        if eligible(&event.stanza) {
            let user = event.from.to_bare();
            for resource in e.resources(ctx, &user, std::slice::from_ref(&event.from)) {
                ctx.send(carbon("sent", &user, &resource, &event.stanza));
            }
        }
        Flow::Continue
    });
    let e = enabled;
    reg.hook::<MessageDelivered, _>(0, move |ctx, event| {
        if eligible(&event.stanza) {
            for resource in e.resources(ctx, &event.to, &event.delivered_to) {
                ctx.send(carbon("received", &event.to, &resource, &event.stanza));
            }
        }
        Flow::Continue
    });
    Ok(())
}

fn set_state(enabled: &Enabled, from: &starling_api::jid::Jid, on: bool) {
    if let Ok(full) = from.clone().try_into_full() {
        enabled.set(full, on);
    }
}

/// XEP-0280 §6 eligibility, with the §7 and XEP-0334 opt-outs.
fn eligible(message: &Stanza) -> bool {
    let children: Vec<_> = message.child_elements().collect();
    let has = |ns: &str, name: &str| children.iter().any(|c| c.ns() == ns && c.name() == name);
    if has(ns::CARBONS, "private")
        || has(NS_HINTS, "no-copy")
        || has(ns::CARBONS, "sent")
        || has(ns::CARBONS, "received")
    {
        return false;
    }
    match message.type_().unwrap_or("normal") {
        "chat" => true,
        "normal" => has(message.ns(), "body"),
        _ => false,
    }
}

/// `<message from=account to=resource><sent|received><forwarded>original…`
fn carbon(kind: &str, account: &BareJid, to: &FullJid, original: &Stanza) -> Stanza {
    let mut children = format!("<{kind} xmlns='{}'><forwarded xmlns='{}'>", ns::CARBONS, ns::FORWARD).into_bytes();
    original.write_to(&mut children, "");
    children.extend_from_slice(format!("</forwarded></{kind}>").as_bytes());
    let mut copy = Stanza::new("message", original.ns());
    copy.set_attr("from", Some(&account.to_string()));
    copy.set_attr("to", Some(&to.to_string()));
    copy.set_attr("type", original.type_());
    copy.with_children_xml(children.into())
}

#[cfg(test)]
mod tests {
    use starling_api::minidom::Element;

    use super::*;

    fn message(type_: &str, children: &str) -> Stanza {
        let element: Element =
            format!("<message xmlns='jabber:client' type='{type_}'>{children}</message>").parse().expect("xml");
        Stanza::from_element(&element)
    }

    #[test]
    fn eligibility_follows_xep_0280() {
        assert!(eligible(&message("chat", "<body>x</body>")));
        assert!(eligible(&message("chat", "<active xmlns='http://jabber.org/protocol/chatstates'/>")));
        assert!(eligible(&message("normal", "<body>x</body>")));
        assert!(!eligible(&message("normal", "<subject>x</subject>")));
        assert!(!eligible(&message("groupchat", "<body>x</body>")));
        assert!(!eligible(&message("headline", "<body>x</body>")));
        assert!(!eligible(&message("chat", "<body>x</body><private xmlns='urn:xmpp:carbons:2'/>")));
        assert!(!eligible(&message("chat", "<body>x</body><no-copy xmlns='urn:xmpp:hints'/>")));
    }

    #[test]
    fn carbon_wraps_the_original_with_its_namespace() {
        let original = message("chat", "<body>hi</body>");
        let account = BareJid::new("a@x").expect("jid");
        let to = FullJid::new("a@x/phone").expect("jid");
        let element = carbon("sent", &account, &to, &original).to_element().expect("parses");
        let forwarded = element
            .get_child("sent", ns::CARBONS)
            .and_then(|s| s.get_child("forwarded", ns::FORWARD))
            .and_then(|f| f.get_child("message", "jabber:client"))
            .expect("forwarded message");
        assert_eq!(forwarded.get_child("body", "jabber:client").map(|b| b.text()).as_deref(), Some("hi"));
        assert_eq!(element.attr("from"), Some("a@x"));
    }
}
