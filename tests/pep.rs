//! Personal Eventing (XEP-0163) over real sockets: OMEMO-style publishing with
//! publish-options (XEP-0223, XEP-0384), +notify filtering by entity capabilities
//! (XEP-0115), precondition-not-met, avatars (XEP-0084), access models, items,
//! retract, configure, delete, persistence across a restart.

mod common;

use common::{Client, TestServer};
use minidom::Element;

const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const DEVICELIST: &str = "eu.siacs.conversations.axolotl.devicelist";

fn publish_options(fields: &str) -> String {
    format!(
        "<publish-options><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
         {fields}</x></publish-options>"
    )
}

fn open_access() -> String {
    publish_options("<field var='pubsub#access_model'><value>open</value></field>")
}

async fn publish(client: &mut Client, node: &str, id: &str, payload: &str, options: &str) -> Element {
    client
        .iq(&format!(
            "<iq type='set' id='{{id}}'><pubsub xmlns='{NS_PUBSUB}'><publish node='{node}'><item id='{id}'>{payload}</item></publish>{options}</pubsub></iq>"
        ))
        .await
        .0
}

/// Announces `features` in caps by directed presence to `to`, then answers the
/// server's disco#info queries until a pubsub event arrives (returned) or, with
/// `until_queries` reached, returns `None`.
async fn watch(client: &mut Client, features: &[&str], until_queries: Option<usize>) -> Option<Element> {
    let mut queries = 0;
    loop {
        if until_queries == Some(queries) {
            return None;
        }
        let stanza = client.recv().await;
        if stanza.name() == "iq" && stanza.attr("type") == Some("get") {
            let query = stanza.get_child("query", "http://jabber.org/protocol/disco#info").expect("a disco#info query");
            let node = query.attr("node").expect("caps node#ver");
            let vars: String = features.iter().map(|f| format!("<feature var='{f}'/>")).collect();
            client
                .send(&format!(
                    "<iq type='result' id='{}' to='{}'><query xmlns='http://jabber.org/protocol/disco#info' node='{node}'>\
                     <identity category='client' type='pc' name='test'/>{vars}</query></iq>",
                    stanza.attr("id").expect("id"),
                    stanza.attr("from").expect("from")
                ))
                .await;
            queries += 1;
        } else if stanza.name() == "message" && stanza.has_child("event", NS_EVENT) {
            return Some(stanza);
        }
    }
}

async fn announce(client: &mut Client, to: &str, ver: &str) {
    client
        .send(&format!(
            "<presence to='{to}'><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='urn:test' ver='{ver}'/></presence>"
        ))
        .await;
}

fn devicelist(ids: &[u32]) -> String {
    let devices: String = ids.iter().map(|id| format!("<device id='{id}'/>")).collect();
    format!("<list xmlns='eu.siacs.conversations.axolotl'>{devices}</list>")
}

#[tokio::test]
async fn omemo_devicelist_and_bundle_reach_contacts_with_notify_only() {
    let server = TestServer::start().await;
    for user in ["alice", "bob", "carol"] {
        server.add_user(user, "pw").await;
    }
    let mut alice = server.login("alice", "a").await;
    alice.presence(0).await;
    let mut bob = server.login("bob", "b").await;
    let mut carol = server.login("carol", "c").await;
    announce(&mut bob, "alice@localhost", "bob-ver").await;
    announce(&mut carol, "alice@localhost", "carol-ver").await;
    bob.sync().await;
    carol.sync().await;
    alice.sync().await;

    let wants = [DEVICELIST, "eu.siacs.conversations.axolotl.devicelist+notify"];
    let (list, open) = (devicelist(&[1234]), open_access());
    let (reply, event, _) = tokio::join!(
        publish(&mut alice, DEVICELIST, "current", &list, &open),
        watch(&mut bob, &wants, None),
        watch(&mut carol, &[DEVICELIST], Some(1)),
    );
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    let published =
        reply.get_child("pubsub", NS_PUBSUB).and_then(|p| p.get_child("publish", NS_PUBSUB)).expect("publish");
    assert_eq!(published.get_child("item", NS_PUBSUB).and_then(|i| i.attr("id")), Some("current"));
    let event = event.expect("bob is notified");
    assert_eq!(event.attr("from"), Some("alice@localhost"));
    let items = event.get_child("event", NS_EVENT).and_then(|e| e.get_child("items", NS_EVENT)).expect("items");
    assert_eq!(items.attr("node"), Some(DEVICELIST));
    assert!(items.get_child("item", NS_EVENT).is_some_and(|i| i.attr("id") == Some("current")));
    assert!(carol.sync().await.iter().all(|s| !s.has_child("event", NS_EVENT)), "carol has no +notify");

    // The bundle, open too, readable by anyone (the node never notified anybody).
    let bundle = "<bundle xmlns='eu.siacs.conversations.axolotl'><signedPreKeyPublic signedPreKeyId='1'>AAAA</signedPreKeyPublic></bundle>";
    let node = "eu.siacs.conversations.axolotl.bundles:1234";
    let reply = publish(&mut alice, node, "current", bundle, &open_access()).await;
    assert_eq!(reply.attr("type"), Some("result"));
    let (got, _) = carol
        .iq(&format!("<iq type='get' id='{{id}}' to='alice@localhost'><pubsub xmlns='{NS_PUBSUB}'><items node='{node}'/></pubsub></iq>"))
        .await;
    let item = got
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("items", NS_PUBSUB))
        .and_then(|i| i.get_child("item", NS_PUBSUB));
    assert!(item.is_some_and(|i| i.has_child("bundle", "eu.siacs.conversations.axolotl")), "{got:?}");

    // A new device replaces the list (same id); max_items 1 keeps only the newest.
    let reply = publish(&mut alice, DEVICELIST, "current", &devicelist(&[1234, 5678]), &open_access()).await;
    assert_eq!(reply.attr("type"), Some("result"));
    let again = watch(&mut bob, &wants, None).await.expect("bob notified again");
    let list = again
        .get_child("event", NS_EVENT)
        .and_then(|e| e.get_child("items", NS_EVENT))
        .and_then(|i| i.get_child("item", NS_EVENT))
        .and_then(|i| i.get_child("list", "eu.siacs.conversations.axolotl"))
        .expect("list");
    assert_eq!(list.children().count(), 2);
}

#[tokio::test]
async fn publish_options_that_do_not_match_the_node_fail_with_precondition_not_met() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    let mut alice = server.login("alice", "a").await;
    let reply = publish(&mut alice, DEVICELIST, "current", &devicelist(&[1]), &open_access()).await;
    assert_eq!(reply.attr("type"), Some("result"));
    let presence_only = publish_options("<field var='pubsub#access_model'><value>presence</value></field>");
    let reply = publish(&mut alice, DEVICELIST, "current", &devicelist(&[2]), &presence_only).await;
    assert_eq!(reply.attr("type"), Some("error"));
    let error = reply.get_child("error", "jabber:client").expect("error");
    assert_eq!(error.attr("type"), Some("cancel"));
    assert!(error.has_child("conflict", "urn:ietf:params:xml:ns:xmpp-stanzas"));
    assert!(error.has_child("precondition-not-met", "http://jabber.org/protocol/pubsub#errors"));
    // The item was not replaced.
    let (got, _) = alice
        .iq(&format!(
            "<iq type='get' id='{{id}}'><pubsub xmlns='{NS_PUBSUB}'><items node='{DEVICELIST}'/></pubsub></iq>"
        ))
        .await;
    let list = got
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("items", NS_PUBSUB))
        .and_then(|i| i.get_child("item", NS_PUBSUB))
        .and_then(|i| i.get_child("list", "eu.siacs.conversations.axolotl"))
        .expect("list");
    assert!(list.children().any(|d| d.attr("id") == Some("1")));
}

#[tokio::test]
async fn avatar_metadata_notifies_and_data_is_fetched_by_id() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    let mut alice = server.login("alice", "a").await;
    let mut bob = server.login("bob", "b").await;
    announce(&mut bob, "alice@localhost", "avatar-ver").await;
    bob.sync().await;
    alice.sync().await;
    let id = "111f4b3c50d7b0df729d299bc6f8e9ef9066971f";
    let data = publish(
        &mut alice,
        "urn:xmpp:avatar:data",
        id,
        "<data xmlns='urn:xmpp:avatar:data'>iVBORw0KGgo=</data>",
        &open_access(),
    )
    .await;
    assert_eq!(data.attr("type"), Some("result"));
    let metadata = format!(
        "<metadata xmlns='urn:xmpp:avatar:metadata'><info bytes='8' id='{id}' type='image/png' height='64' width='64'/></metadata>"
    );
    let open = open_access();
    let (reply, event) = tokio::join!(
        publish(&mut alice, "urn:xmpp:avatar:metadata", id, &metadata, &open),
        watch(&mut bob, &["urn:xmpp:avatar:metadata+notify"], None),
    );
    assert_eq!(reply.attr("type"), Some("result"));
    let event = event.expect("metadata event");
    let items = event.get_child("event", NS_EVENT).and_then(|e| e.get_child("items", NS_EVENT)).expect("items");
    assert_eq!(items.attr("node"), Some("urn:xmpp:avatar:metadata"));
    let (got, _) = bob
        .iq(&format!("<iq type='get' id='{{id}}' to='alice@localhost'><pubsub xmlns='{NS_PUBSUB}'><items node='urn:xmpp:avatar:data'><item id='{id}'/></items></pubsub></iq>"))
        .await;
    let data = got
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("items", NS_PUBSUB))
        .and_then(|i| i.get_child("item", NS_PUBSUB))
        .and_then(|i| i.get_child("data", "urn:xmpp:avatar:data"))
        .expect("data");
    assert_eq!(data.text(), "iVBORw0KGgo=");
}

#[tokio::test]
async fn access_models_items_retract_configure_delete_and_restart() {
    let mut server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    let mut alice = server.login("alice", "a").await;
    let mut bob = server.login("bob", "b").await;
    let get = |node: &str, extra: &str| {
        format!(
            "<iq type='get' id='{{id}}' to='alice@localhost'><pubsub xmlns='{NS_PUBSUB}'><items node='{node}'{extra}/></pubsub></iq>"
        )
    };

    // Nickname with the default (presence) access: bob is no contact, so he may not read it.
    let reply = publish(
        &mut alice,
        "http://jabber.org/protocol/nick",
        "current",
        "<nick xmlns='http://jabber.org/protocol/nick'>Al</nick>",
        "",
    )
    .await;
    assert_eq!(reply.attr("type"), Some("result"));
    let (refused, _) = bob.iq(&get("http://jabber.org/protocol/nick", "")).await;
    assert_eq!(refused.attr("type"), Some("error"));
    // A whitelist node: only alice.
    let whitelist = publish_options(
        "<field var='pubsub#access_model'><value>whitelist</value></field><field var='pubsub#max_items'><value>max</value></field>",
    );
    for i in 0..3 {
        let reply = publish(
            &mut alice,
            "urn:test:private",
            &format!("i{i}"),
            &format!("<x xmlns='urn:test'>{i}</x>"),
            &whitelist,
        )
        .await;
        assert_eq!(reply.attr("type"), Some("result"));
    }
    let (refused, _) = bob.iq(&get("urn:test:private", "")).await;
    assert!(
        refused
            .get_child("error", "jabber:client")
            .is_some_and(|e| e.has_child("forbidden", "urn:ietf:params:xml:ns:xmpp-stanzas"))
    );
    let ids = |reply: &Element| -> Vec<String> {
        reply
            .get_child("pubsub", NS_PUBSUB)
            .and_then(|p| p.get_child("items", NS_PUBSUB))
            .map(|i| i.children().filter_map(|c| c.attr("id").map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let own = |node: &str, extra: &str| {
        format!("<iq type='get' id='{{id}}'><pubsub xmlns='{NS_PUBSUB}'><items node='{node}'{extra}/></pubsub></iq>")
    };
    assert_eq!(ids(&alice.iq(&own("urn:test:private", "")).await.0), ["i0", "i1", "i2"]);
    assert_eq!(ids(&alice.iq(&own("urn:test:private", " max_items='2'")).await.0), ["i1", "i2"]);
    // Retract one; an unknown one is item-not-found.
    let retract = |id: &str| {
        format!(
            "<iq type='set' id='{{id}}'><pubsub xmlns='{NS_PUBSUB}'><retract node='urn:test:private' notify='true'><item id='{id}'/></retract></pubsub></iq>"
        )
    };
    assert_eq!(alice.iq(&retract("i1")).await.0.attr("type"), Some("result"));
    assert_eq!(alice.iq(&retract("i1")).await.0.attr("type"), Some("error"));
    assert_eq!(ids(&alice.iq(&own("urn:test:private", "")).await.0), ["i0", "i2"]);
    // Configure: open it up, and bob can read it.
    let (form, _) = alice.iq("<iq type='get' id='{id}'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='urn:test:private'/></pubsub></iq>").await;
    let x = form
        .get_child("pubsub", "http://jabber.org/protocol/pubsub#owner")
        .and_then(|p| p.get_child("configure", "http://jabber.org/protocol/pubsub#owner"))
        .and_then(|c| c.get_child("x", "jabber:x:data"))
        .expect("form");
    assert!(x.children().any(|f| f.attr("var") == Some("pubsub#access_model")
        && f.get_child("value", "jabber:x:data").is_some_and(|v| v.text() == "whitelist")));
    let (set, _) = alice.iq("<iq type='set' id='{id}'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='urn:test:private'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field><field var='pubsub#access_model'><value>open</value></field></x></configure></pubsub></iq>").await;
    assert_eq!(set.attr("type"), Some("result"), "{set:?}");
    assert_eq!(ids(&bob.iq(&get("urn:test:private", "")).await.0), ["i0", "i2"]);
    // Someone else cannot publish, configure or delete.
    let (refused, _) = bob.iq(&format!("<iq type='set' id='{{id}}' to='alice@localhost'><pubsub xmlns='{NS_PUBSUB}'><publish node='urn:test:private'><item id='x'><x xmlns='urn:test'/></item></publish></pubsub></iq>")).await;
    assert_eq!(refused.attr("type"), Some("error"));

    // Items persist across a restart.
    drop((alice, bob));
    server.restart().await;
    let mut alice = server.login("alice", "a").await;
    assert_eq!(ids(&alice.iq(&own("urn:test:private", "")).await.0), ["i0", "i2"]);
    // Delete the node.
    let (deleted, _) = alice.iq("<iq type='set' id='{id}'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='urn:test:private'/></pubsub></iq>").await;
    assert_eq!(deleted.attr("type"), Some("result"));
    let (gone, _) = alice.iq(&own("urn:test:private", "")).await;
    assert!(
        gone.get_child("error", "jabber:client")
            .is_some_and(|e| e.has_child("item-not-found", "urn:ietf:params:xml:ns:xmpp-stanzas"))
    );
}

#[tokio::test]
async fn the_last_item_reaches_a_resource_that_comes_online() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    let mut alice = server.login("alice", "a").await;
    let reply = publish(&mut alice, DEVICELIST, "current", &devicelist(&[42]), &open_access()).await;
    assert_eq!(reply.attr("type"), Some("result"));
    let mut bob = server.login("bob", "b").await;
    announce(&mut bob, "alice@localhost", "late-ver").await;
    let event = watch(&mut bob, &[&format!("{DEVICELIST}+notify")], None).await.expect("last item");
    assert!(
        event
            .get_child("event", NS_EVENT)
            .and_then(|e| e.get_child("items", NS_EVENT))
            .is_some_and(|i| i.attr("node") == Some(DEVICELIST))
    );
    // Alice's own second resource with +notify gets it too on initial presence.
    let mut phone = server.login("alice", "phone").await;
    phone.send("<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='urn:test' ver='own-ver'/></presence>").await;
    let own = watch(&mut phone, &[&format!("{DEVICELIST}+notify")], None).await.expect("own last item");
    assert_eq!(own.attr("from"), Some("alice@localhost"));
}

#[tokio::test]
async fn the_account_advertises_pep() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    let mut alice = server.login("alice", "a").await;
    let (info, _) = alice
        .iq("<iq type='get' id='{id}' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    let query = info.get_child("query", "http://jabber.org/protocol/disco#info").expect("info");
    assert!(
        query
            .children()
            .any(|c| c.name() == "identity" && c.attr("category") == Some("pubsub") && c.attr("type") == Some("pep"))
    );
    let features: Vec<&str> = query.children().filter_map(|c| c.attr("var")).collect();
    for f in [
        "publish",
        "publish-options",
        "auto-create",
        "persistent-items",
        "retrieve-items",
        "access-presence",
        "last-published",
        "filtered-notifications",
    ] {
        assert!(features.contains(&format!("http://jabber.org/protocol/pubsub#{f}").as_str()), "{f}: {features:?}");
    }
}

#[tokio::test]
async fn bookmarks_via_xep_0402_and_xep_0049_are_one_list() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    let mut alice = server.login("alice", "a").await;
    // A new client (XEP-0402) adds a room.
    let options = publish_options(
        "<field var='pubsub#persist_items'><value>true</value></field>\
         <field var='pubsub#max_items'><value>max</value></field>\
         <field var='pubsub#send_last_published_item'><value>never</value></field>\
         <field var='pubsub#access_model'><value>whitelist</value></field>",
    );
    let conference =
        "<conference xmlns='urn:xmpp:bookmarks:1' name='The Play' autojoin='true'><nick>JC</nick></conference>";
    let reply = publish(&mut alice, "urn:xmpp:bookmarks:1", "theplay@conference.localhost", conference, &options).await;
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    // An old client (XEP-0049) sees it ...
    let get =
        "<iq type='get' id='{id}'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>";
    let (legacy, _) = alice.iq(get).await;
    let storage = legacy
        .get_child("query", "jabber:iq:private")
        .and_then(|q| q.get_child("storage", "storage:bookmarks"))
        .expect("storage");
    let rooms: Vec<(Option<&str>, Option<&str>)> =
        storage.children().map(|c| (c.attr("jid"), c.attr("autojoin"))).collect();
    assert_eq!(rooms, [(Some("theplay@conference.localhost"), Some("true"))]);
    // ... and replaces the list: one room kept, one added.
    let (set, _) = alice
        .iq("<iq type='set' id='{id}'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>\
             <conference jid='orchard@conference.localhost' name='Orchard'><nick>JC</nick></conference>\
             </storage></query></iq>")
        .await;
    assert_eq!(set.attr("type"), Some("result"), "{set:?}");
    let (items, _) = alice
        .iq(&format!(
            "<iq type='get' id='{{id}}'><pubsub xmlns='{NS_PUBSUB}'><items node='urn:xmpp:bookmarks:1'/></pubsub></iq>"
        ))
        .await;
    let ids: Vec<&str> = items
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("items", NS_PUBSUB))
        .map(|i| i.children().filter_map(|c| c.attr("id")).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["orchard@conference.localhost"]);
    // Other private data is stored as it came, and only for its owner.
    let (stored, _) = alice.iq("<iq type='set' id='{id}'><query xmlns='jabber:iq:private'><prefs xmlns='urn:test:prefs'><colour>blue</colour></prefs></query></iq>").await;
    assert_eq!(stored.attr("type"), Some("result"));
    let (back, _) = alice
        .iq("<iq type='get' id='{id}'><query xmlns='jabber:iq:private'><prefs xmlns='urn:test:prefs'/></query></iq>")
        .await;
    assert!(
        back.get_child("query", "jabber:iq:private")
            .and_then(|q| q.get_child("prefs", "urn:test:prefs"))
            .is_some_and(|p| p.has_child("colour", "urn:test:prefs"))
    );
    server.add_user("bob", "pw").await;
    let mut bob = server.login("bob", "b").await;
    let (refused, _) = bob.iq("<iq type='get' id='{id}' to='alice@localhost'><query xmlns='jabber:iq:private'><prefs xmlns='urn:test:prefs'/></query></iq>").await;
    assert_eq!(refused.attr("type"), Some("error"));
    let (info, _) = alice
        .iq("<iq type='get' id='{id}' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    assert!(
        info.get_child("query", "http://jabber.org/protocol/disco#info")
            .is_some_and(|q| q.children().any(|f| f.attr("var") == Some("urn:xmpp:bookmarks-conversion:0")))
    );
}
