//! XEP-0398 avatar conversion over real sockets: a PEP avatar (XEP-0084) shows up in
//! the vCard (XEP-0153) and a vCard photo in PEP, both ways on one account, and the
//! server stamps the hash into available presence unless the client says `<photo/>`.

mod common;

use common::{Client, TestServer};
use minidom::Element;
use sha1::{Digest, Sha1};

const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const NS_METADATA: &str = "urn:xmpp:avatar:metadata";
const NS_UPDATE: &str = "vcard-temp:x:update";
const VCARD: &str = "vcard-temp";
/// The eight-byte PNG signature, as base64.
const IMAGE: &str = "iVBORw0KGgo=";

fn image_hash() -> String {
    Sha1::digest(b"\x89PNG\r\n\x1a\n").iter().map(|b| format!("{b:02x}")).collect()
}

async fn publish(client: &mut Client, node: &str, id: &str, payload: &str) {
    let (reply, _) = client
        .iq(&format!(
            "<iq type='set' id='{{id}}'><pubsub xmlns='{NS_PUBSUB}'><publish node='{node}'><item id='{id}'>{payload}</item></publish></pubsub></iq>"
        ))
        .await;
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
}

async fn vcard_of(client: &mut Client, owner: &str) -> Element {
    let (reply, _) = client.iq(&format!("<iq type='get' id='{{id}}' to='{owner}'><vCard xmlns='{VCARD}'/></iq>")).await;
    reply.get_child("vCard", VCARD).expect("vCard").clone()
}

/// The conversion runs after the publish is answered and tells nobody when it is
/// done, so the reader asks again until the photo is there (bounded).
async fn photo_when_converted(client: &mut Client, owner: &str) -> Option<Element> {
    for _ in 0..500 {
        if let Some(photo) = vcard_of(client, owner).await.get_child("PHOTO", VCARD) {
            return Some(photo.clone());
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    None
}

/// The `vcard-temp:x:update` photo of the next presence from alice that `client` receives.
async fn next_presence_photo(client: &mut Client) -> Option<String> {
    loop {
        let stanza = client.recv().await;
        if stanza.name() == "presence" && stanza.attr("from").is_some_and(|f| f.starts_with("alice@")) {
            return stanza.get_child("x", NS_UPDATE).and_then(|x| x.get_child("photo", NS_UPDATE)).map(|p| p.text());
        }
    }
}

#[tokio::test]
async fn a_pep_avatar_reaches_the_vcard_and_presence() {
    let server = TestServer::start().await;
    for user in ["alice", "bob"] {
        server.add_user(user, "pw").await;
    }
    let mut alice = server.login("alice", "a").await;
    let (info, _) = alice
        .iq("<iq type='get' id='{id}' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    assert!(
        info.get_child("query", "http://jabber.org/protocol/disco#info")
            .is_some_and(|q| q.children().any(|f| f.attr("var") == Some("urn:xmpp:pep-vcard-conversion:0"))),
        "{info:?}"
    );
    let hash = image_hash();
    publish(&mut alice, "urn:xmpp:avatar:data", &hash, &format!("<data xmlns='urn:xmpp:avatar:data'>{IMAGE}</data>"))
        .await;
    publish(
        &mut alice,
        NS_METADATA,
        &hash,
        &format!("<metadata xmlns='{NS_METADATA}'><info bytes='8' id='{hash}' type='image/png'/></metadata>"),
    )
    .await;

    let mut bob = server.login("bob", "b").await;
    bob.presence(0).await;
    let photo = photo_when_converted(&mut bob, "alice@localhost").await.expect("the PEP avatar in alice's vCard");
    assert_eq!(photo.get_child("BINVAL", VCARD).map(|b| b.text()).as_deref(), Some(IMAGE));
    assert_eq!(photo.get_child("TYPE", VCARD).map(|t| t.text()).as_deref(), Some("image/png"));

    // Presence carries the hash: plain presence gets it added, `<photo/>` is left alone.
    alice.send("<presence to='bob@localhost'/>").await;
    assert_eq!(next_presence_photo(&mut bob).await, Some(hash.clone()));
    alice.send(&format!("<presence to='bob@localhost'><x xmlns='{NS_UPDATE}'/></presence>")).await;
    assert_eq!(next_presence_photo(&mut bob).await, Some(hash));
    alice.send(&format!("<presence to='bob@localhost'><x xmlns='{NS_UPDATE}'><photo/></x></presence>")).await;
    assert_eq!(next_presence_photo(&mut bob).await, Some(String::new()));

    // Disabling the PEP avatar (XEP-0084 §4.6) removes the vCard photo.
    publish(&mut alice, NS_METADATA, "current", &format!("<metadata xmlns='{NS_METADATA}'/>")).await;
    let mut cleared = false;
    for _ in 0..500 {
        if vcard_of(&mut bob, "alice@localhost").await.get_child("PHOTO", VCARD).is_none() {
            cleared = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(cleared, "the photo left the vCard");
}

#[tokio::test]
async fn a_vcard_photo_is_published_as_a_pep_avatar_and_survives_a_restart() {
    let mut server = TestServer::start().await;
    for user in ["alice", "bob"] {
        server.add_user(user, "pw").await;
    }
    let mut alice = server.login("alice", "a").await;
    let mut bob = server.login("bob", "b").await;
    // Bob watches alice's avatar metadata (directed presence with +notify caps).
    bob.send("<presence to='alice@localhost'><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='urn:test' ver='avatar'/></presence>").await;
    let (reply, _) = alice
        .iq(&format!(
            "<iq type='set' id='{{id}}'><vCard xmlns='{VCARD}'><FN>Alice</FN><PHOTO><TYPE>image/png</TYPE>\
             <BINVAL>iVBO\nRw0KGgo=</BINVAL></PHOTO></vCard></iq>"
        ))
        .await;
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    let hash = image_hash();
    let event = loop {
        let stanza = bob.recv().await;
        if stanza.name() == "iq" && stanza.attr("type") == Some("get") {
            let query = stanza.get_child("query", "http://jabber.org/protocol/disco#info").expect("caps query");
            let node = query.attr("node").expect("node");
            bob.send(&format!(
                "<iq type='result' id='{}' to='{}'><query xmlns='http://jabber.org/protocol/disco#info' node='{node}'>\
                 <identity category='client' type='pc'/><feature var='{NS_METADATA}+notify'/></query></iq>",
                stanza.attr("id").expect("id"),
                stanza.attr("from").expect("from")
            ))
            .await;
        } else if stanza.name() == "message" && stanza.has_child("event", NS_EVENT) {
            break stanza;
        }
    };
    let items = event.get_child("event", NS_EVENT).and_then(|e| e.get_child("items", NS_EVENT)).expect("items");
    assert_eq!(items.attr("node"), Some(NS_METADATA));
    let info = items
        .get_child("item", NS_EVENT)
        .and_then(|i| i.get_child("metadata", NS_METADATA))
        .and_then(|m| m.get_child("info", NS_METADATA))
        .expect("info");
    assert_eq!(info.attr("id"), Some(hash.as_str()));
    assert_eq!(info.attr("bytes"), Some("8"));
    assert_eq!(info.attr("type"), Some("image/png"));
    let (data, _) = bob
        .iq(&format!(
            "<iq type='get' id='{{id}}' to='alice@localhost'><pubsub xmlns='{NS_PUBSUB}'><items node='urn:xmpp:avatar:data'><item id='{hash}'/></items></pubsub></iq>"
        ))
        .await;
    let payload = data
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("items", NS_PUBSUB))
        .and_then(|i| i.get_child("item", NS_PUBSUB))
        .and_then(|i| i.get_child("data", "urn:xmpp:avatar:data"))
        .map(|d| d.text());
    assert_eq!(payload.as_deref(), Some(IMAGE));
    drop((alice, bob));

    // The hash is remembered across a restart: presence still carries it.
    server.restart().await;
    let mut alice = server.login("alice", "a").await;
    let mut bob = server.login("bob", "b").await;
    bob.presence(0).await;
    alice.send("<presence to='bob@localhost'/>").await;
    assert_eq!(next_presence_photo(&mut bob).await, Some(hash));
}
